import assert from 'node:assert/strict';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { locateJsonError } from '../../lib/config/json-error.js';
import { loadConfig } from '../../lib/config/load.js';
import { MultiplexerError } from '../../lib/errors.js';
import { tempDir } from '../helpers/temp.js';

const tmp = tempDir();
const base = { service_start_process_cmd: 'node app.js %PORT%' };

function file(content: unknown): string {
  const text = typeof content === 'string' ? content : JSON.stringify(content);
  return tmp.write(`c${Math.random().toString(36).slice(2)}.json`, text);
}

function problems(input: Parameters<typeof loadConfig>[0]): string[] {
  try {
    loadConfig({ env: {}, ...input });
  } catch (err) {
    assert.ok(err instanceof MultiplexerError);
    assert.equal(err.code, 'MPX_CONFIG_INVALID');
    return [...err.problems];
  }
  assert.fail('expected the config to be refused');
}

describe('config', () => {
  it('fills defaults and reads the seed-style port range', () => {
    const { config, sources } = loadConfig({ file: file(base), env: {} });
    assert.equal(config.pool_size, 4);
    assert.equal(config.pool_strategy, 'fifo');
    assert.deepEqual(config.service_port_range, { first: 10300, last: 10350 });
    assert.equal(config.service_start_delay_ms, 'wait_first_output');
    assert.equal(sources.pool_size, 'default');
    assert.equal(sources.service_start_process_cmd, 'file');
    assert.ok(Object.isFrozen(config));
  });

  it('accepts the port range as a JSON pair and the start delay as milliseconds', () => {
    const { config } = loadConfig({
      file: file({ ...base, service_port_range: [20000, 20010], service_start_delay_ms: 250 }),
      env: {},
    });
    assert.deepEqual(config.service_port_range, { first: 20000, last: 20010 });
    assert.equal(config.service_start_delay_ms, 250);
  });

  it('reads booleans and address lists from the environment and flags', () => {
    const { config } = loadConfig({
      file: file(base),
      env: {
        MULTIPLEXER_TRUSTED_PROXIES: '10.0.0.0/8, ::1',
        MULTIPLEXER_BUFFER_RESPONSES: 'false',
      },
      flags: { websocket: 'false' },
    });
    assert.deepEqual(config.trusted_proxies, ['10.0.0.0/8', '::1']);
    assert.equal(config.buffer_responses, false);
    assert.equal(config.websocket, false);
    assert.equal(config.buffer_requests, true);
  });

  it('flag beats environment beats file beats default', () => {
    const path = file({ ...base, pool_size: 2, pool_max_overflow: 1, queue_max: 7 });
    const env = { MULTIPLEXER_POOL_SIZE: '3', MULTIPLEXER_POOL_MAX_OVERFLOW: '5' };
    const { config, sources } = loadConfig({ file: path, env, flags: { pool_size: '6' } });
    assert.equal(config.pool_size, 6);
    assert.equal(sources.pool_size, 'flag');
    assert.equal(config.pool_max_overflow, 5);
    assert.equal(sources.pool_max_overflow, 'env');
    assert.equal(config.queue_max, 7);
    assert.equal(sources.queue_max, 'file');
  });

  describe('refuses, naming the key, the value and what is expected', () => {
    const cases: [
      string,
      Parameters<typeof loadConfig>[0] | (() => Parameters<typeof loadConfig>[0]),
      RegExp,
    ][] = [
      [
        'a value out of range',
        () => ({ file: file({ ...base, pool_max_overflow: -1 }) }),
        /^pool_max_overflow must be an integer ≥ 0, got -1 \(from config file\)$/,
      ],
      [
        'a wrong type in the file',
        () => ({ file: file({ ...base, pool_size: '4' }) }),
        /^pool_size must be an integer ≥ 1, got "4"/,
      ],
      [
        'a fraction',
        () => ({ file: file({ ...base, queue_max: 1.5 }) }),
        /^queue_max must be an integer ≥ 0, got 1.5/,
      ],
      [
        'a timeout longer than a Node timer can hold (it would fire at once)',
        () => ({ file: file({ ...base, shutdown_timeout_ms: 3_000_000_000 }) }),
        /^shutdown_timeout_ms must be an integer from 0 to 2147483647 \(milliseconds\), got 3000000000/,
      ],
      [
        'more front workers than any machine needs',
        () => ({ file: file({ ...base, workers: 100_000 }) }),
        /^workers must be an integer from 1 to 256, got 100000/,
      ],
      [
        "an http_port inside the backends' port range",
        () => ({ file: file({ ...base, http_port: 10310 }) }),
        /^http_port 10310 must lie outside service_port_range "10300\.\.10350": backends are given ports from that range/,
      ],
      [
        'an unknown strategy',
        () => ({ file: file({ ...base, pool_strategy: 'random' }) }),
        /^pool_strategy must be one of "fifo", "lifo", got "random"/,
      ],
      [
        'a typo in a key',
        () => ({ file: file({ ...base, pool_sizee: 3 }) }),
        /^pool_sizee is not a known setting \(did you mean pool_size\?\), got 3$/,
      ],
      [
        'a key like no other: the way to the list, not the list',
        () => ({ file: file({ ...base, colour: 'red' }) }),
        /^colour is not a known setting \(every setting: multiplexer check --explain\), got "red"$/,
      ],
      [
        'a service_cwd that is not a directory',
        () => ({ file: file({ ...base, service_cwd: 'no-such-dir' }) }),
        /^service_cwd must name a directory \(relative to the config file's\), got "no-such-dir", which is \/.+\/no-such-dir: not a directory$/,
      ],
      [
        'a missing command',
        () => ({ file: file({}) }),
        /^service_start_process_cmd must be a non-empty command line \(it is required\)/,
      ],
      [
        'a bad port',
        () => ({ file: file({ ...base, http_port: 70000 }) }),
        /^http_port must be a TCP port, an integer from 1 to 65535, got 70000/,
      ],
      [
        'a reversed port range',
        () => ({ file: file({ ...base, service_port_range: '10350..10300' }) }),
        /^service_port_range must be a port range .*got "10350..10300"/,
      ],
      [
        'a bad start delay',
        () => ({ file: file({ ...base, service_start_delay_ms: 'soon' }) }),
        /^service_start_delay_ms must be an integer ≥ 0 \(milliseconds\), "wait_first_output" or "wait_port", got "soon"/,
      ],
      [
        'a base URL with a port',
        () => ({ file: file({ ...base, service_http_base_url: 'http://localhost:8080' }) }),
        /^service_http_base_url must be an http:\/\/ URL with a host and no port or path/,
      ],
      [
        'a bad environment variable',
        () => ({ file: file(base), env: { MULTIPLEXER_WORKERS: 'many' } }),
        /^workers must be an integer from 1 to 256, got "many" \(from environment variable MULTIPLEXER_WORKERS\)$/,
      ],
      [
        'a bad flag',
        () => ({ file: file(base), flags: { queue_timeout_ms: '-5' } }),
        /^queue_timeout_ms must be an integer from 0 to 2147483647 \(milliseconds\), got -5 \(from flag --queue_timeout_ms\)$/,
      ],
      [
        'a port range smaller than the pool can grow',
        () => ({
          file: file({
            ...base,
            pool_size: 3,
            pool_max_overflow: 2,
            service_port_range: [20000, 20003],
          }),
        }),
        /^service_port_range must hold at least pool_size \+ pool_max_overflow = 5 ports, got "20000..20003" \(4 ports\)$/,
      ],
      [
        'a boolean that is not one',
        () => ({ file: file({ ...base, buffer_requests: 'no' }) }),
        /^buffer_requests must be true or false, got "no"/,
      ],
      [
        'a boolean flag that is not one',
        () => ({ file: file(base), flags: { websocket: 'off' } }),
        /^websocket must be true or false, got "off" \(from flag --websocket\)$/,
      ],
      [
        'a trusted proxy that is neither an address nor a CIDR block',
        () => ({ file: file({ ...base, trusted_proxies: ['10.0.0.0/8', '10.0.0/33'] }) }),
        /^trusted_proxies must be a list of IP addresses or CIDR blocks.*got \["10.0.0.0\/8","10.0.0\/33"\]/,
      ],
      [
        'trusted proxies as a string in the file',
        () => ({ file: file({ ...base, trusted_proxies: '10.0.0.1' }) }),
        /^trusted_proxies must be a list of IP addresses/,
      ],
      [
        'a zero client timeout',
        () => ({ file: file({ ...base, client_timeout_ms: 0 }) }),
        /^client_timeout_ms must be an integer from 1 to 2147483647 \(milliseconds\), got 0/,
      ],
      [
        'a missing file',
        { file: '/nonexistent/app.json' },
        /^config file \/nonexistent\/app.json: cannot be read: no such file$/,
      ],
      ['a directory', () => ({ file: tmp.dir }), /cannot be read: is a directory/],
      [
        'invalid JSON, with line and column',
        () => ({ file: file('{\n  "pool_size": 2,\n  "workers": ,\n}') }),
        /^config file .*: invalid JSON at line 3, column 14: /,
      ],
      [
        'JSON that is not an object',
        () => ({ file: file('[1, 2]') }),
        /must hold a JSON object of settings, got \[1,2\]/,
      ],
    ];
    for (const [name, input, expected] of cases) {
      it(`${name}`, () => {
        const found = problems(typeof input === 'function' ? input() : input);
        assert.ok(
          found.some((p) => expected.test(p)),
          `no problem matched ${expected}:\n${found.join('\n')}`,
        );
      });
    }

    it(
      'an unreadable file',
      { skip: process.getuid?.() === 0 ? 'root reads any file' : false },
      () => {
        const path = file(base);
        chmodSync(path, 0o000);
        assert.match(problems({ file: path })[0]!, /permission denied/);
      },
    );

    it('every problem at once, one line each', () => {
      const found = problems({ file: file({ pool_size: 0, pool_strategy: 'x', extra: true }) });
      assert.equal(found.length, 4, found.join('\n'));
    });
  });
});

describe('locating a JSON error', () => {
  const cases: [string, string, number, number][] = [
    ['a missing value', '{\n  "a": ,\n}', 2, 8],
    ['a trailing comma', '{"a": 1,}', 1, 9],
    ['a comment', '{\n  // no\n  "a": 1\n}', 2, 3],
    ['single quotes', "{'a': 1}", 1, 2],
    ['an unterminated string', '{"a": "b', 1, 9],
    ['text after the object', '{} x', 1, 4],
  ];
  for (const [name, text, line, column] of cases) {
    it(`${name} at line ${line}, column ${column}`, () => {
      assert.throws(() => JSON.parse(text) as unknown);
      const place = locateJsonError(text);
      assert.deepEqual(place && [place.line, place.column], [line, column]);
    });
  }
  it('valid JSON has no error', () => {
    assert.equal(locateJsonError('{"a": [1, -2.5e3, "x\\u0041", true, null, {}]}'), undefined);
  });
});

describe('admin settings', () => {
  it('the admin API is off by default and on loopback when on', () => {
    const { config } = loadConfig({ file: file(base), env: {} });
    assert.equal(config.admin_port, 0);
    assert.equal(config.admin_host, '127.0.0.1');
  });

  it('off loopback it needs a token; on loopback, or with a token, it does not', () => {
    const open = { ...base, admin_host: '0.0.0.0', admin_port: 9901 };
    assert.deepEqual(problems({ file: file(open) }), [
      'admin_token must be set when the admin API listens beyond loopback, got admin_host "0.0.0.0" with admin_port 9901 and no token',
    ]);
    assert.equal(
      loadConfig({ file: file({ ...open, admin_token: 't' }), env: {} }).config.admin_token,
      't',
    );
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) {
      loadConfig({ file: file({ ...base, admin_host: host, admin_port: 9901 }), env: {} });
    }
    // Off (port 0) binds nothing, so no token is needed.
    loadConfig({ file: file({ ...base, admin_host: '0.0.0.0' }), env: {} });
  });

  it('admin_port must be a port or 0', () => {
    assert.deepEqual(problems({ file: file({ ...base, admin_port: 70000 }) }), [
      'admin_port must be a TCP port from 1 to 65535, or 0 for off, got 70000 (from config file)',
    ]);
  });

  it('warns about a MULTIPLEXER_* variable that names no setting, with the nearest one', () => {
    const { notes, config } = loadConfig({
      file: file(base),
      env: { MULTIPLEXER_POOL_SISE: '3', MULTIPLEXER_LOG_LEVEL: 'debug', MULTIPLEXER_XYZZY: '1' },
    });
    assert.equal(config.pool_size, 4);
    assert.deepEqual(notes, [
      'environment variable MULTIPLEXER_POOL_SISE names no setting and is ignored (did you mean MULTIPLEXER_POOL_SIZE?)',
      'environment variable MULTIPLEXER_XYZZY names no setting and is ignored (every setting: multiplexer check --explain)',
    ]);
  });

  it("runs the command in service_cwd: the config file's directory unless set, relative to it when set", () => {
    const dir = tempDir();
    mkdirSync(join(dir.dir, 'conf'));
    mkdirSync(join(dir.dir, 'app'));
    dir.write('app/server.js', 'process.env.PORT');
    const conf = (c: unknown) =>
      dir.write(`conf/c${Math.random().toString(36).slice(2)}.json`, JSON.stringify(c));
    const elsewhere = tmp.dir;
    const plain = loadConfig({ file: conf(base), env: {}, startDir: elsewhere });
    assert.equal(plain.config.service_cwd, join(dir.dir, 'conf'));
    assert.equal(plain.sources.service_cwd, 'default');
    const set = loadConfig({
      file: conf({ ...base, service_cwd: '../app' }),
      env: {},
      startDir: elsewhere,
    });
    assert.equal(set.config.service_cwd, join(dir.dir, 'app'));
    // Written before service_cwd existed, for a start from the project's root: kept, and said.
    const old = loadConfig({
      file: conf({ service_start_process_cmd: 'node app/server.js' }),
      env: {},
      startDir: dir.dir,
    });
    assert.equal(old.config.service_cwd, dir.dir);
    assert.match(
      old.notes.join('\n'),
      /service_cwd is not set: .*"app\/server\.js" exists only from there/,
    );
    // The same config once it says where: no note, from any start directory.
    const fixed = loadConfig({
      file: conf({ service_cwd: '..', service_start_process_cmd: 'node app/server.js' }),
      env: {},
      startDir: elsewhere,
    });
    assert.equal(fixed.config.service_cwd, dir.dir);
    assert.deepEqual(fixed.notes, []);
  });

  it('notes a command that can never learn its port', () => {
    const dir = tempDir();
    dir.write('reads.pl', 'my $port = $ENV{PORT};');
    dir.write('deaf.pl', 'listen on 8080;');
    const conf = (cmd: string) =>
      dir.write(
        `c${Math.random().toString(36).slice(2)}.json`,
        JSON.stringify({ service_start_process_cmd: cmd }),
      );
    for (const ok of [
      'perl reads.pl',
      'perl deaf.pl %PORT%',
      'python3 -m http.server $PORT',
      'sh -c "exec app --port=${PORT}"',
    ]) {
      assert.deepEqual(loadConfig({ file: conf(ok), env: {} }).notes, [], ok);
    }
    const { notes } = loadConfig({ file: conf('perl deaf.pl'), env: {} });
    assert.equal(notes.length, 1);
    assert.match(
      notes[0]!,
      /^service_start_process_cmd "perl deaf\.pl" has no %PORT% and does not read \$PORT \(nor does \/.+\/deaf\.pl mention PORT\)/,
    );
  });

  it('notes a path in the command that does not exist from service_cwd', () => {
    const dir = tempDir();
    mkdirSync(join(dir.dir, 'app'));
    dir.write('app/server.py', 'PORT');
    const conf = (c: unknown) =>
      dir.write(`c${Math.random().toString(36).slice(2)}.json`, JSON.stringify(c));
    const here = loadConfig({
      file: conf({ service_start_process_cmd: 'python3 app/server.py %PORT%' }),
      env: {},
    });
    assert.deepEqual(here.notes, []);
    const copied = loadConfig({
      file: conf({
        service_cwd: '..',
        service_start_process_cmd: 'python3 app/server.py %PORT% http://x/y',
      }),
      env: {},
    });
    assert.deepEqual(copied.notes, [
      `service_start_process_cmd names "app/server.py", which does not exist from service_cwd ${join(dir.dir, '..')} (service_cwd is relative to the config file's directory)`,
    ]);
  });
});
