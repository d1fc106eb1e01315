import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Config } from '../../lib/config/config.js';
import { Supervisor } from '../../lib/supervisor/supervisor.js';
import { captureLog } from '../helpers/capture-log.js';
import { parseFixture, request } from '../helpers/http.js';
import { fixture, uniqueMarker } from '../helpers/paths.js';
import { freePortRange } from '../helpers/ports.js';
import { pidsMatching } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

const supervisors: Supervisor[] = [];
after(() => supervisors.forEach((s) => s.killAllNow()));

async function config(overrides: Partial<Config>, marker: string): Promise<Config> {
  const range = await freePortRange(6);
  return {
    pool_size: 2,
    pool_max_overflow: 1,
    services: {},
    max_backends: 0,
    pool_strategy: 'fifo',
    pool_overflow_idle_ms: 0,
    http_port: 1,
    http_host: '127.0.0.1',
    http_proxy_timeout: 5000,
    buffer_requests: true,
    buffer_responses: true,
    buffer_memory_bytes: 1 << 20,
    buffer_memory_total_bytes: 64 << 20,
    buffer_disk_max_bytes: 1 << 30,
    client_max_body_bytes: 0,
    client_timeout_ms: 60_000,
    websocket: true,
    tunnel_idle_timeout_ms: 60_000,
    queue_max_per_client: 0,
    access_log: true,
    metrics: true,
    admin_hostnames: [],
    trusted_proxies: [],
    service_http_base_url: 'http://127.0.0.1',
    service_port_range: range,
    service_start_process_cmd: `node ${fixture('counting-service.mjs')} %PORT% ${marker}`,
    service_cwd: process.cwd(),
    service_start_delay_ms: 'wait_first_output',
    service_start_timeout_ms: 5000,
    service_start_concurrency: 0,
    service_boot_attempts: 5,
    service_max_requests: 0,
    service_max_requests_jitter: 0,
    service_max_rss_mb: 0,
    service_health_path: '',
    service_health_interval_ms: 10_000,
    service_stop_timeout_ms: 1000,
    service_kill_pattern: '',
    workers: 1,
    queue_timeout_ms: 0,
    queue_max: 10,
    shutdown_timeout_ms: 1000,
    admin_host: '127.0.0.1',
    exit_with_parent: true,
    admin_port: 0,
    admin_token: '',
    ...overrides,
  };
}

describe('the supervisor with real backends', () => {
  it('grants leases on real ports, queues when all are busy, grows into overflow, and stops everything', async () => {
    const marker = uniqueMarker();
    const grants: { worker: number; id: number; lease: number; port: number }[] = [];
    const drops: { worker: number; port: number }[] = [];
    let ready = false;
    const recorded = new Set<number>();
    const { log } = captureLog();
    const sup = new Supervisor(await config({}, marker), log, {
      grant: (g) => {
        grants.push({ worker: g.worker, id: g.checkoutSeq, lease: g.lease, port: g.port });
      },
      revoke: () => undefined,
      reject: () => assert.fail('nothing should be rejected'),
      dropConnections: (worker, port) => drops.push({ worker, port }),
      closeUpgraded: () => undefined,
      lost: () => undefined,
      poolReady: () => (ready = true),
      backendStarted: (pid) => recorded.add(pid),
      bootFailed: () => undefined,
      backendEnded: (pid) => recorded.delete(pid),
    });
    supervisors.push(sup);
    sup.start();
    await waitFor(() => ready, 'the pool to be ready');
    sup.checkout(1, 1);
    sup.checkout(1, 2);
    assert.equal(grants.length, 2);
    assert.notEqual(grants[0]!.port, grants[1]!.port);
    const seen = parseFixture(await request(grants[0]!.port, '/direct'));
    assert.equal(seen.port, grants[0]!.port);

    sup.checkout(1, 3);
    assert.equal(sup.queueLength, 1, 'waits while both are busy');
    await waitFor(() => grants.length === 3, 'the overflow backend to serve the waiter');
    assert.equal(sup.status().length, 3);
    for (const g of grants) sup.checkin(g.worker, g.lease, 'ok', {});
    assert.deepEqual(drops, [], 'worker 1 had every lease: nobody else to make room for');

    // Another worker gets a backend worker 1 used: worker 1 is told to drop its idle connection.
    sup.checkout(2, 4);
    const fourth = grants[3]!;
    assert.equal(fourth.worker, 2);
    assert.deepEqual(drops, [{ worker: 1, port: fourth.port }]);
    sup.checkin(2, fourth.lease, 'ok', {});
    await waitFor(
      () => sup.status().filter((b) => b.state !== 'retiring').length === 2,
      'the shrink',
    );

    assert.equal(recorded.size, sup.status().length, 'every live backend is recorded');
    await sup.stop();
    assert.equal(recorded.size, 0, 'every ended backend is forgotten');
    assert.deepEqual(pidsMatching(marker), []);
  });
});
