import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeChange, diffConfig, reloadPlan } from '../../lib/config/diff.js';
import { loadConfig } from '../../lib/config/load.js';
import { tempDir } from '../helpers/temp.js';

const dir = tempDir();
const load = (config: Record<string, unknown>) =>
  loadConfig({
    file: dir.write(`c${Math.random().toString(36).slice(2)}.json`, JSON.stringify(config)),
    env: {},
  }).config;
const base = { service_start_process_cmd: 'node app.js %PORT%' };

describe('the config diff and the reload plan', () => {
  it('no change: an empty diff and a plan that does nothing', () => {
    const changes = diffConfig(load(base), load(base));
    assert.deepEqual(changes, []);
    assert.deepEqual(reloadPlan(changes), {
      pool: false,
      backends: false,
      replaceWorkers: false,
      resizeWorkers: false,
      needsRestart: [],
    });
  });

  it('lists each changed key in schema order, as written, the token hidden', () => {
    const changes = diffConfig(
      load({ ...base, admin_token: 'a', pool_size: 2, service_port_range: '10300..10350' }),
      load({ ...base, admin_token: 'b', pool_size: 3, service_port_range: [10400, 10450] }),
    );
    assert.deepEqual(changes.map(describeChange), [
      'pool_size: 2 → 3',
      'service_port_range: "10300..10350" → "10400..10450"',
      'admin_token: "(hidden)" → "(hidden)"',
    ]);
  });

  it('plans each part from the keys that changed', () => {
    const plan = reloadPlan(
      diffConfig(
        load(base),
        load({ ...base, pool_size: 6, workers: 3, http_proxy_timeout: 5000, admin_port: 4001 }),
      ),
    );
    assert.deepEqual(plan, {
      pool: true,
      backends: false,
      replaceWorkers: true,
      resizeWorkers: true,
      needsRestart: ['admin_port'],
    });
    const command = reloadPlan(
      diffConfig(load(base), load({ ...base, service_start_process_cmd: 'node b.js %PORT%' })),
    );
    assert.equal(command.backends, true);
    assert.equal(command.replaceWorkers, false);
  });
});
