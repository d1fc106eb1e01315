import { asWritten } from './formats.js';
import { configKeys, keysFor, schema, type KeySpec, type Scope } from './schema.js';

/** Where the generated table sits in the README. */
export const TABLE_START =
  '<!-- config table: generated from lib/config/schema.ts by `npm run docs:config` -->';
export const TABLE_END = '<!-- end of config table -->';

const WHEN: Record<Scope, string> = {
  pool: 'at once',
  backends: 'rolling restart of the backends',
  workers: 'front workers replaced',
  'worker-count': 'front workers added or drained',
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

const keyList = (keys: readonly string[]): string => keys.map((k) => `\`${k}\``).join(', ');

/** The signals table's SIGHUP row: what a reload does, key by key, from each key's appliesOn. */
export function sighupRow(): string {
  const atOnce = configKeys.filter(
    (k) => schema[k].appliesOn.length === 0 || keysFor('pool').includes(k),
  );
  return [
    '| `SIGHUP` | reload: read the config file again (environment and flags still apply on top). Invalid: every problem is logged and nothing changes. Valid, key by key as the schema says (`appliesOn`; this row is generated from it):',
    `**at once**, growing or shrinking the pool without touching busy backends: ${keyList(atOnce)};`,
    `**rolling restart of the backends**: ${keyList(keysFor('backends'))};`,
    `**front workers replaced**, one at a time, the new one listening before the old one stops accepting, the old one draining for as long as its requests may take (\`queue_timeout_ms\` + \`http_proxy_timeout\`, not \`shutdown_timeout_ms\`): ${keyList(keysFor('workers'))};`,
    `**front workers added or drained** (none replaced): ${keyList(keysFor('worker-count'))};`,
    `**at the next start** (the reload says so): ${keyList(keysFor('restart'))}. |`,
  ].join(' ');
}

/** The README with its table and SIGHUP row replaced by the current ones. */
export function withTable(readme: string): string {
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  if (start < 0 || end < start) throw new Error('the README has no generated config table markers');
  const tabled = readme.slice(0, start) + configTable() + readme.slice(end + TABLE_END.length);
  const lines = tabled.split('\n');
  const row = lines.findIndex((line) => line.startsWith('| `SIGHUP` |'));
  if (row < 0) throw new Error('the README has no SIGHUP row in its signals table');
  lines[row] = sighupRow();
  return lines.join('\n');
}
