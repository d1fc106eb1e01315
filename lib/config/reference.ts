import { asWritten } from './formats.js';
import { configKeys, schema, type KeySpec, type Scope } from './schema.js';

/** Where the generated table sits in the README. */
export const TABLE_START =
  '<!-- config table: generated from lib/config/schema.ts by `npm run docs:config` -->';
export const TABLE_END = '<!-- end of config table -->';

const WHEN: Record<Scope, string> = {
  pool: 'at once',
  backends: 'rolling restart of the backends',
  workers: 'front workers replaced',
  restart: 'next start',
};

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** When a reload puts a new value in force, in words, from the key's appliesOn. */
export function appliesText(spec: KeySpec): string {
  if (spec.appliesOn.length === 0) return 'at once';
  return spec.appliesOn.map((scope) => WHEN[scope]).join(', ');
}

/** The README's configuration table: every key, its type, default, reload rule and meaning. */
export function configTable(): string {
  const rows = configKeys.map((key) => {
    const spec: KeySpec = schema[key];
    const shown = spec.defaultText ?? `\`${JSON.stringify(asWritten(spec.default))}\``;
    return `| \`${key}\` | ${cell(spec.format.expected)} | ${cell(shown)} | ${appliesText(spec)} | ${cell(spec.doc)} |`;
  });
  return [
    TABLE_START,
    '',
    '| key | type | default | on reload | meaning |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    TABLE_END,
  ].join('\n');
}

/** The README with its table replaced by the current one. */
export function withTable(readme: string): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error('the README has no generated config table markers');
  return readme.slice(0, start) + configTable() + readme.slice(end + TABLE_END.length);
}
