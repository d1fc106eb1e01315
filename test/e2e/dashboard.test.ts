import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { request } from '../helpers/http.js';
import { adminAuth, adminTokenOf, fixtureCommand, startWithAdmin } from '../helpers/multiplexer.js';
import { tempDir } from '../helpers/temp.js';

/** Debian's chromium (.ci/run installs it); playwright's own browser download does not work here. */
const CHROMIUM = process.env.MPX_CHROMIUM ?? '/usr/bin/chromium';
/** Where the screenshot goes; `MPX_DASHBOARD_SCREENSHOT=docs/dashboard.png` makes the README's. */
const SCREENSHOT = process.env.MPX_DASHBOARD_SCREENSHOT;

const TOKEN = 'dashboard-token';

/** Debian's chromium, headless, closed after the test. */
async function launchBrowser(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  after(() => browser.close());
  return browser;
}

/** Requests, one after another on each of `clients` loops, until stop() (a bounded load). */
function backgroundLoad(port: number, clients: number): { stop(): Promise<number> } {
  let running = true;
  let sent = 0;
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; running && i < 5000; i++) {
      await request(port, `/load/${c}/${i}?ms=${20 + (i % 5) * 10}`).catch(() => undefined);
      sent++;
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return sent;
    },
  };
}

describe('the admin port against web pages', () => {
  it('refuses another Host name, actions without a JSON body, and actions without the token', async () => {
    const mpx = await startWithAdmin({ pool_size: 1, workers: 1, admin_token: TOKEN });
    const auth = { authorization: `Bearer ${TOKEN}` };
    const rebound = await request(mpx.adminPort, '/status', {
      headers: { ...auth, host: `attacker.example:${mpx.adminPort}` },
    });
    assert.equal(rebound.status, 403);
    assert.match(rebound.body, /admin_hostnames/);
    const form = await request(mpx.adminPort, '/scale', {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'pool_size=5',
    });
    assert.equal(form.status, 415, 'a cross-site form cannot scale');
    const noToken = await request(mpx.adminPort, '/reload', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(noToken.status, 401);
    assert.equal((await mpx.status()).pool.size, 1, 'nothing changed');
    // Names of the operator's own are accepted; probes by address always are.
    assert.equal((await request(mpx.adminPort, '/healthz')).status, 200);
    assert.equal((await mpx.stop()).code, 0);

    const named = await startWithAdmin({
      pool_size: 1,
      workers: 1,
      admin_hostnames: ['mpx-admin.internal'],
    });
    // No admin_token configured: one is made at start, and nothing is open without it.
    const unauthenticated = await request(named.adminPort, '/dashboard.json', {
      headers: { host: `mpx-admin.internal:${named.adminPort}` },
    });
    assert.equal(unauthenticated.status, 401);
    const scale = await request(named.adminPort, '/scale', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"pool_size":3}',
    });
    assert.equal(scale.status, 401, 'no local process scales without the token');
    const byName = await request(named.adminPort, '/dashboard.json', {
      headers: { host: `mpx-admin.internal:${named.adminPort}`, ...adminAuth(named) },
    });
    assert.equal(byName.status, 200);
    assert.deepEqual(JSON.parse(byName.body), { actions: true });
    const listening = named.logs().find((r) => r.event === 'admin.listening');
    assert.equal(
      listening?.dashboard,
      `http://127.0.0.1:${named.adminPort}/#token=${adminTokenOf(named)}`,
      'the dashboard address carries the token in its fragment',
    );
    assert.equal((await named.stop()).code, 0);
  });
});

describe('the dashboard in a real browser (headless Chromium)', () => {
  it('shows tiles and live counters under load, and scales the pool from the page', async (t) => {
    if (!existsSync(CHROMIUM)) {
      const reason = `no browser at ${CHROMIUM} (Debian's chromium package; .ci/run installs it)`;
      console.log(`# skipped: ${reason}`);
      return t.skip(reason);
    }
    const mpx = await startWithAdmin({ pool_size: 2, workers: 2, admin_token: TOKEN });
    const load = backgroundLoad(mpx.port, 3);
    after(() => load.stop());
    const browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));

    await page.goto(`http://127.0.0.1:${mpx.adminPort}/`);
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#token', TOKEN);
    await page.click('#login button');

    // Expressions evaluated in the page (this file is compiled without the DOM's types).
    const tileCount = (n: number): string =>
      `document.querySelectorAll('#backends .tile').length === ${n}`;
    const number = (id: string): string => `Number(document.querySelector('#${id}').textContent)`;
    const tiles = page.locator('#backends .tile');
    await page.waitForFunction(tileCount(2));
    assert.equal(await tiles.count(), 2);
    // Counters move while the load runs: the total grows and requests/s is above 0.
    await page.waitForFunction(`${number('requests')} > 0`);
    const first = Number(await page.textContent('#requests'));
    await page.waitForFunction(`${number('requests')} > ${first}`);
    await page.waitForFunction(`${number('rps')} > 0`);
    assert.match((await page.textContent('#lat99')) ?? '', /ms$/);
    assert.match((await page.textContent('#workers')) ?? '', /worker \d+.*worker \d+/s);
    assert.ok(await page.locator('#actions').isVisible(), 'actions offered with the token');

    // Scale from the page: the answer is shown, and a third tile appears.
    await page.fill('#scale-size', '3');
    await page.click('#scale');
    await page.waitForFunction(
      `document.querySelector('#answer').textContent.startsWith('200 /scale')`,
    );
    await page.waitForFunction(tileCount(3));
    assert.equal((await mpx.status()).pool.size, 3);

    const file = SCREENSHOT ?? join(tempDir().dir, 'dashboard.png');
    await page.screenshot({ path: file, fullPage: true });
    assert.ok(statSync(file).size > 10_000, 'a screenshot with something on it');
    assert.deepEqual(errors, [], 'no script error on the page');

    const sent = await load.stop();
    assert.ok(sent > 0);
    assert.equal((await mpx.stop()).code, 0);
  });

  it('groups backends by service, and scales the service chosen', async (t) => {
    if (!existsSync(CHROMIUM)) {
      const reason = `no browser at ${CHROMIUM} (Debian's chromium package; .ci/run installs it)`;
      console.log(`# skipped: ${reason}`);
      return t.skip(reason);
    }
    const command = (tag: string) => fixtureCommand('counting-service.mjs', '{marker}', ` ${tag}`);
    const mpx = await startWithAdmin({
      workers: 1,
      admin_token: TOKEN,
      services: {
        api: {
          match: { path_prefix: '/api' },
          pool_size: 1,
          service_start_process_cmd: command('api'),
        },
        site: { pool_size: 2, service_start_process_cmd: command('site') },
      },
    });
    const browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`http://127.0.0.1:${mpx.adminPort}/`);
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#token', TOKEN);
    await page.click('#login button');

    const tilesOf = (service: string, n: number): string =>
      `document.querySelectorAll('#backends .service[data-service="${service}"] .tile').length === ${n}`;
    await page.waitForFunction(tilesOf('api', 1));
    await page.waitForFunction(tilesOf('site', 2));
    assert.deepEqual(await page.locator('#backends .service h3 .name').allTextContents(), [
      'api',
      'site',
    ]);
    assert.ok(await page.locator('#scale-service').isVisible(), 'a service to choose for scale');
    await page.selectOption('#scale-service', 'api');
    await page.fill('#scale-size', '2');
    await page.click('#scale');
    await page.waitForFunction(
      `document.querySelector('#answer').textContent.startsWith('200 /scale')`,
    );
    await page.waitForFunction(tilesOf('api', 2));
    await page.waitForFunction(tilesOf('site', 2));
    const file = SCREENSHOT
      ? SCREENSHOT.replace(/\.png$/, '-services.png')
      : join(tempDir().dir, 'dashboard-services.png');
    await page.screenshot({ path: file, fullPage: true });
    t.diagnostic(`screenshot: ${file}`);
    assert.deepEqual(errors, [], 'no script error on the page');
    assert.equal((await mpx.stop()).code, 0);
  });
});
