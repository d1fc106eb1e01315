import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { configTable, sighupRow, withTable } from '../../lib/config/reference.js';
import { configKeys, schema } from '../../lib/config/schema.js';
import { reloadPlan } from '../../lib/config/diff.js';
import { ROOT } from '../helpers/paths.js';

describe('the README configuration table', () => {
  it('is the one generated from the schema (npm run docs:config regenerates it)', () => {
    const readme = readFileSync(`${ROOT}README.md`, 'utf8');
    assert.ok(
      readme.includes(configTable()),
      'README.md differs from lib/config/schema.ts: run "npm run docs:config" and commit the result',
    );
    assert.equal(withTable(readme), readme);
  });

  it('has one row per key with its doc, and names when a reload puts it in force', () => {
    const table = configTable();
    for (const key of configKeys) {
      const row = table.split('\n').find((line) => line.startsWith(`| \`${key}\` |`));
      assert.ok(row, `a row for ${key}`);
      assert.ok(row.includes(schema[key].doc.replace(/\|/g, '\\|')), `${key}'s doc`);
    }
    assert.match(
      table,
      /\| `service_start_process_cmd` \|[^\n]*\| required \| rolling restart of the backends \|/,
    );
    assert.match(
      table,
      /\| `workers` \|[^\n]*\| half the number of CPUs, at least 1 \(at most 256\) \| front workers added or drained \|/,
    );
    assert.match(table, /\| `admin_token` \|[^\n]*\| at once \|/);
  });

  it('the SIGHUP row is generated from the schema, and the reload does what it says for every key', () => {
    const readme = readFileSync(`${ROOT}README.md`, 'utf8');
    assert.ok(readme.includes(`\n${sighupRow()}\n`), 'the README has the generated SIGHUP row');
    for (const key of configKeys) {
      const scopes = schema[key].appliesOn as readonly string[];
      const plan = reloadPlan([{ key: key, from: 1, to: 2 }]);
      assert.deepEqual(
        {
          pool: plan.pool,
          backends: plan.backends,
          replaceWorkers: plan.replaceWorkers,
          resizeWorkers: plan.resizeWorkers,
          restart: plan.needsRestart.includes(key),
        },
        {
          pool: scopes.includes('pool'),
          backends: scopes.includes('backends'),
          replaceWorkers: scopes.includes('workers'),
          resizeWorkers: scopes.includes('worker-count'),
          restart: scopes.includes('restart'),
        },
        key,
      );
      assert.ok(sighupRow().includes(`\`${key}\``), `${key} in the SIGHUP row`);
    }
  });
});
