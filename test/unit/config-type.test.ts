import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Config } from '../../lib/config/config.js';
import type { PortRange } from '../../lib/config/formats.js';
import { configKeys, schema } from '../../lib/config/schema.js';

/** True when A and B are the same type (not merely assignable: `never` would pass that). */
type Same<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

// Checked by the compiler: the Config type derived from the schema has each key's own type.
const derived: [
  Same<Config['pool_size'], number>,
  Same<Config['pool_strategy'], 'fifo' | 'lifo'>,
  Same<Config['service_port_range'], PortRange>,
  Same<Config['service_start_delay_ms'], number | 'wait_first_output' | 'wait_port'>,
  Same<Config['trusted_proxies'], readonly string[]>,
  Same<Config['websocket'], boolean>,
  Same<Config['admin_token'], string>,
  Same<keyof Config, (typeof configKeys)[number]>,
] = [true, true, true, true, true, true, true, true];

describe('the Config type', () => {
  it('is derived from the schema: one key each, typed by its format', () => {
    assert.ok(derived.every(Boolean));
    assert.deepEqual(configKeys, Object.keys(schema));
  });
});
