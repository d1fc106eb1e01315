import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostName, Router, type RouteSpec } from '../../lib/router.js';

const spec = (service: string, m: Partial<Omit<RouteSpec, 'service'>> = {}): RouteSpec => ({
  service,
  hosts: [],
  pathPrefix: undefined,
  stripPrefix: false,
  ...m,
});

const router = new Router([
  spec('default'),
  spec('api', { pathPrefix: '/api', stripPrefix: true }),
  spec('api-v2', { pathPrefix: '/api/v2' }),
  spec('admin', { hosts: ['admin.example.test'] }),
  spec('admin-reports', { hosts: ['admin.example.test'], pathPrefix: '/reports' }),
  spec('tenants', { hosts: ['*.example.test'] }),
  spec('eu-tenants', { hosts: ['*.eu.example.test'] }),
]);

describe('routing by Host and path', () => {
  it('case by case', () => {
    const table: [string | undefined, string, string | undefined, string?][] = [
      // Host and path → service (and the path the backend sees, when it differs)
      ['example.test', '/', 'default'],
      [undefined, '/x', 'default'],
      ['anything.else', '/api', 'api', '/'],
      ['anything.else', '/api/users?id=1', 'api', '/users?id=1'],
      ['anything.else', '/api?x=1', 'api', '/?x=1'],
      ['anything.else', '/apix', 'default'],
      ['anything.else', '/api/v2/users', 'api-v2', '/api/v2/users'],
      ['anything.else', '/api/v20', 'api', '/v20'],
      ['admin.example.test', '/', 'admin'],
      ['ADMIN.example.test:8080', '/', 'admin'],
      ['admin.example.test.', '/', 'admin'],
      ['admin.example.test', '/reports/q3', 'admin-reports'],
      // The Host decides first: admin's own services, then the ones for any Host.
      ['admin.example.test', '/api/x', 'admin'],
      ['shop.example.test', '/api/x', 'tenants'],
      ['shop.eu.example.test', '/', 'eu-tenants'],
      // The bare domain is not under its wildcard.
      ['example.test', '/api/x', 'api', '/x'],
      ['[::1]:3000', '/', 'default'],
    ];
    for (const [host, path, service, sent] of table) {
      const route = router.route(host, path);
      assert.equal(route?.service, service, `${host} ${path}`);
      assert.equal(route?.path, sent ?? path, `${host} ${path}: the path sent`);
    }
  });

  it('with no service for any Host, a request nothing matches has no service', () => {
    const only = new Router([
      spec('admin', { hosts: ['admin.example.test'] }),
      spec('api', { pathPrefix: '/api' }),
    ]);
    assert.equal(only.route('other.test', '/'), undefined);
    assert.equal(only.route('other.test', '/api')?.service, 'api');
    assert.equal(only.route(undefined, '/x'), undefined);
  });

  it('reads a Host header as names compare', () => {
    assert.equal(hostName('Example.TEST:443'), 'example.test');
    assert.equal(hostName('[::1]:8080'), '[::1]');
    assert.equal(hostName(''), '');
    assert.equal(hostName(undefined), '');
  });
});
