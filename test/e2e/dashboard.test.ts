/**
 * The dashboard in a real headless Chromium against the HTTP service with an in-memory
 * CompanionApi: the device table renders, devices added or changed through the live event
 * stream appear and update without a reload, readings extend the sparklines, and the RPC form
 * returns the device's answer and shows errors. The page must run under its own CSP with no
 * console error (a CSP violation or a script error would be one).
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RpcError } from '../../host/companion-api.js';
import { HttpService } from '../../host/http/http-service.js';
import { memoryLogger } from '../../host/log.js';
import { FakeCompanionApi } from '../unit/host/http/fake-companion-api.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn('CHROMIUM NOT INSTALLED: dashboard test skipped');

const TOKEN = 'dashboard-test-token-5d1c9e';

let browser: Browser;
let svc: HttpService;
let api: FakeCompanionApi;
let page: Page;
let problems: string[];
let base: string;

describe.skipIf(!HAVE_CHROMIUM)('dashboard in headless Chromium', () => {
  beforeAll(async () => {
    // launch() gives the browser a fresh temporary profile and removes it on close.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  afterAll(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    api = new FakeCompanionApi();
    svc = new HttpService({ api, host: '127.0.0.1', port: 0, token: TOKEN, log: memoryLogger() });
    await svc.start();
    base = `http://127.0.0.1:${svc.address()!.port}`;
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    problems = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => {
      // The event stream is cut when the page closes; anything else failing is a fault.
      if (!r.url().endsWith('/api/events')) problems.push(`requestfailed: ${r.url()}`);
    });
    await page.goto(base + '/');
    await page.locator('#live.on').waitFor();
  });

  afterEach(async () => {
    await page?.close();
    await svc?.stop();
  });

  const row = (id: string) => page.locator(`#devices tr[data-device="${id}"]`);

  it('renders the header, the devices and the cluster from the API', async () => {
    await row('dev-2').waitFor();
    expect(await page.locator('#devices tbody tr[data-device]').evaluateAll((rs) => rs.map((r) => (r as HTMLElement).dataset.device))).toEqual(['dev-1', 'dev-2']);
    await expect.poll(() => page.locator('#node').textContent()).toBe('node-a');
    expect(await page.locator('#health').textContent()).toBe('ok');
    expect(await page.locator('#leader').textContent()).toBe('node-a');
    expect(await page.locator('#term').textContent()).toBe('3');
    expect(await page.locator('#no-devices').isHidden()).toBe(true);

    const r1 = row('dev-1');
    expect(await r1.locator('[data-state]').getAttribute('data-state')).toBe('up');
    expect(await r1.locator('.pill.up').textContent()).toBe('up');
    expect(await r1.locator('.readings [data-sensor="t"] .v').textContent()).toBe('22.5');
    expect(await r1.locator('.readings [data-sensor="t"]').textContent()).toContain('°C');
    // The sparkline holds the stored history fetched from the telemetry endpoint.
    await expect.poll(() => r1.locator('.spark[data-sensor="t"]').getAttribute('data-points')).toBe('3');
    expect(await r1.locator('.spark[data-sensor="t"] polyline').getAttribute('points')).toMatch(/^[\d.]+,[\d.]+ [\d.]+,[\d.]+ [\d.]+,[\d.]+$/);
    expect(api.queries.some((q) => q.id === 'dev-1' && typeof q.q.since === 'number' && q.q.limit === 2000)).toBe(true);
    expect(await r1.locator('[data-breaker]').getAttribute('data-breaker')).toBe('closed');
    expect(await r1.locator('.health').textContent()).toContain('2 queued · 1 dropped');
    expect(await r1.locator('.health .pill').textContent()).toBe('closed');

    const r2 = row('dev-2');
    expect(await r2.locator('.pill.stale').textContent()).toBe('stale');
    expect(await r2.textContent()).toContain('no readings');

    expect(await page.locator('#members tbody tr').count()).toBe(2);
    expect(await page.locator('#ring').textContent()).toContain('Ring epoch 5');
    expect(await page.locator('#rpc-device option').allTextContents()).toEqual(['dev-1', 'dev-2']);
    expect(problems).toEqual([]);
  });

  it('shows new devices, state changes, readings and breaker changes live, without a reload', async () => {
    await row('dev-2').waitFor();
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));

    // A new device: the event alone makes it appear (the page fetches its record).
    api.addDevice('dev-0', { state: 'up', readings: [5, 6] });
    api.emit({ type: 'device', id: 'dev-0', state: 'up', reason: 'birth', at: Date.now() });
    await row('dev-0').waitFor();
    expect(await page.locator('#devices tbody tr[data-device]').evaluateAll((rs) => rs.map((r) => (r as HTMLElement).dataset.device))).toEqual(['dev-0', 'dev-1', 'dev-2']);
    await expect.poll(() => page.locator('#rpc-device option').allTextContents()).toEqual(['dev-0', 'dev-1', 'dev-2']);
    expect(await page.locator('#count').textContent()).toBe('3');

    // A state change recolours the row.
    api.setState('dev-1', 'down', 'will');
    await row('dev-1').locator('[data-state="down"]').waitFor();
    expect(await row('dev-1').locator('.pill.down').textContent()).toBe('down');
    expect(await row('dev-1').locator('.dot.online').count()).toBe(0);

    // Readings update the latest values and extend the sparkline.
    const spark = row('dev-1').locator('.spark[data-sensor="t"]');
    await expect.poll(() => spark.getAttribute('data-points')).toBe('3');
    api.ingest('dev-1', 4, Date.now(), { t: 30.25, hum: 50 });
    await expect.poll(() => row('dev-1').locator('.readings [data-sensor="t"] .v').textContent()).toBe('30.25');
    await expect.poll(() => spark.getAttribute('data-points')).toBe('4');
    // A reading that carries one sensor only (sampled at its own rate): the other keeps its value.
    api.ingest('dev-1', 5, Date.now() + 1, { hum: 51 });
    await expect.poll(() => row('dev-1').locator('.readings [data-sensor="hum"] .v').textContent()).toBe('51');
    expect(await row('dev-1').locator('.readings [data-sensor="t"] .v').textContent()).toBe('30.25');
    api.ingest('dev-2', 1, Date.now(), { t: 12 });
    await expect.poll(() => row('dev-2').locator('.spark[data-sensor="t"]').getAttribute('data-points')).toBe('1');

    // The RPC breaker of a device, and the cluster leader.
    api.emit({ type: 'breaker', id: 'dev-1', state: 'open', at: Date.now() });
    await row('dev-1').locator('[data-breaker="open"]').waitFor();
    api.leader = 'node-b';
    api.term = 4;
    api.emit({ type: 'cluster', leader: 'node-b', term: 4, at: Date.now() });
    await expect.poll(() => page.locator('#leader').textContent()).toBe('node-b');
    expect(await page.locator('#term').textContent()).toBe('4');

    expect(navigations).toEqual([]);
    const shot = join(tmpdir(), `espfleet-dashboard-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot: ${shot}`);
    expect(problems).toEqual([]);
  });

  it('the RPC form sends the call with the page token and shows the answer', async () => {
    await row('dev-2').waitFor();
    await page.selectOption('#rpc-device', 'dev-1');
    await page.fill('#rpc-method', 'info');
    await page.fill('#rpc-params', '{"verbose": true}');
    await page.fill('#rpc-timeout', '1500');
    await page.click('#rpc-send');
    await page.locator('#rpc-status.ok').waitFor();
    expect(await page.locator('#rpc-status').textContent()).toMatch(/^200 · info answered in \d+ ms \(1 attempt\)$/);
    expect(JSON.parse((await page.locator('#rpc-result').textContent())!)).toEqual({ id: 'dev-1', fw: '0.1.0' });
    expect(api.calls).toEqual([{ id: 'dev-1', method: 'info', params: { verbose: true }, timeoutMs: 1500 }]);
    expect(problems).toEqual([]);
  });

  it('the RPC form shows a device error and a timeout with their status', async () => {
    await row('dev-2').waitFor();
    await page.selectOption('#rpc-device', 'dev-2');
    await page.fill('#rpc-method', 'frobnicate');
    await page.click('#rpc-send');
    await page.locator('#rpc-status.err').waitFor();
    expect(await page.locator('#rpc-status').textContent()).toBe('502 · device_error: no method frobnicate');
    expect(await page.locator('#rpc-result').textContent()).toContain('E_METHOD');

    api.rpcHandler = () => Promise.reject(new RpcError('timeout', 'no answer within 1500 ms'));
    await page.fill('#rpc-method', 'ping');
    await page.click('#rpc-send');
    await expect.poll(() => page.locator('#rpc-status').textContent()).toBe('504 · timeout: no answer within 1500 ms');

    await page.fill('#rpc-params', '{not json');
    await page.click('#rpc-send');
    await expect.poll(() => page.locator('#rpc-status').textContent()).toBe('Params are not valid JSON.');
    expect(api.calls).toHaveLength(2);
    // The browser logs failed fetches (502, 504) as console errors; nothing else may appear.
    expect(problems.filter((p) => !/status of 50[24]/.test(p))).toEqual([]);
  });

  it('a page loaded with a wrong token gets a 401 and asks for the token', async () => {
    await row('dev-2').waitFor();
    // The token field is hidden when the page came with a token; a user with a stale one sees it
    // after a 401. Here the user types a wrong one first.
    expect(await page.locator('#rpc-token-row').isVisible()).toBe(false);
    await page.evaluate(() => document.getElementById('rpc-token-row')!.classList.remove('hidden'));
    await page.fill('#rpc-token', 'not-the-token-at-all');
    await page.click('#rpc-send');
    await page.locator('#rpc-status.err').waitFor();
    expect(await page.locator('#rpc-status').textContent()).toBe('401 · unauthorized: bad token');
    expect(await page.locator('#rpc-token-row').isVisible()).toBe(true);
    await page.fill('#rpc-token', TOKEN);
    await page.click('#rpc-send');
    await page.locator('#rpc-status.ok').waitFor();
    expect(JSON.parse((await page.locator('#rpc-result').textContent())!)).toBe('pong');
    expect(problems.filter((p) => !/status of 401/.test(p))).toEqual([]);
  });
});
