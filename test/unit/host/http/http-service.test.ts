/**
 * The HTTP API over real sockets on 127.0.0.1 against an in-memory CompanionApi: every route,
 * the error shape and status of each failure, validation, the Host check, authentication of
 * state-changing calls, body bounds, and the event stream (delivery, heartbeat, client bound,
 * slow-client drop, shutdown).
 */
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcError, type RpcErrorCode } from '../../../../host/companion-api.js';
import { HttpService, isLoopback, RPC_STATUS, type HttpServiceOptions } from '../../../../host/http/http-service.js';
import { memoryLogger } from '../../../../host/log.js';
import { FakeCompanionApi } from './fake-companion-api.js';

const TOKEN = 'tok_3f9a8c1d2e7b4a6f9c0d';

let svc: HttpService | null = null;
let api: FakeCompanionApi;
let log: ReturnType<typeof memoryLogger>;
const sockets: Socket[] = [];

async function start(extra: Partial<HttpServiceOptions> = {}): Promise<number> {
  api = new FakeCompanionApi();
  log = memoryLogger();
  svc = new HttpService({ api, host: '127.0.0.1', port: 0, token: TOKEN, log, ...extra });
  await svc.start();
  return svc.address()!.port;
}

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await svc?.stop();
  svc = null;
});

interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

/** One request; asserts what every answer must carry (security headers, never a CORS header). */
function call(method: string, path: string, o: { headers?: Record<string, string>; body?: string | Buffer; host?: string } = {}): Promise<Res> {
  const port = svc!.address()!.port;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { Host: o.host ?? `127.0.0.1:${port}`, ...o.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any = undefined;
        if (String(res.headers['content-type']).startsWith('application/json') && text) json = JSON.parse(text);
        for (const h of Object.keys(res.headers)) expect(h.startsWith('access-control-'), h).toBe(false);
        expect(res.headers['x-content-type-options']).toBe('nosniff');
        expect(res.headers['x-frame-options']).toBe('DENY');
        expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

const get = (path: string, host?: string) => call('GET', path, { host });

function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Res> {
  return call('POST', path, {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}`, ...headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}

function expectError(r: Res, status: number, code: string, message?: RegExp): void {
  expect(r.status).toBe(status);
  expect(r.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(r.json.error.code).toBe(code);
  expect(typeof r.json.error.message).toBe('string');
  expect(r.json.error.message.length).toBeGreaterThan(0);
  if (message) expect(r.json.error.message).toMatch(message);
}

describe('read routes', () => {
  it('GET /healthz is the health view, 503 when not ok', async () => {
    await start();
    const r = await get('/healthz');
    expect(r.status).toBe(200);
    expect(r.json).toEqual(api.health());
    api.ok = false;
    const bad = await get('/healthz');
    expect(bad.status).toBe(503);
    expect(bad.json.ok).toBe(false);
  });

  it('GET /api/devices lists device views', async () => {
    await start();
    const r = await get('/api/devices');
    expect(r.status).toBe(200);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.json.devices.map((d: { id: string }) => d.id)).toEqual(['dev-1', 'dev-2']);
    expect(r.json.devices[0]).toEqual(JSON.parse(JSON.stringify(api.device('dev-1'))));
  });

  it('GET /api/devices/<id> is one view; unknown 404, malformed 400', async () => {
    await start();
    const r = await get('/api/devices/dev-1');
    expect(r.status).toBe(200);
    expect(r.json.id).toBe('dev-1');
    expect(r.json.rpcBreaker).toBe('closed');
    expectError(await get('/api/devices/nope'), 404, 'unknown_device', /nope/);
    expectError(await get('/api/devices/bad.id'), 400, 'bad_device_id');
    expectError(await get('/api/devices/a%2Fb'), 400, 'bad_device_id');
    expectError(await get('/api/devices/' + 'x'.repeat(65)), 400, 'bad_device_id');
    expect((await get('/api/devices/' + 'x'.repeat(64))).status).toBe(404);
  });

  it('GET telemetry passes since/until/limit through and answers the readings', async () => {
    await start();
    const all = await get('/api/devices/dev-1/telemetry');
    expect(all.status).toBe(200);
    expect(all.json.device).toBe('dev-1');
    expect(all.json.readings).toHaveLength(3);
    expect(api.queries.at(-1)!.q).toEqual({});
    const since = all.json.readings[1].ts;
    const r = await get(`/api/devices/dev-1/telemetry?since=${since}&until=${since + 100000}&limit=5`);
    expect(r.status).toBe(200);
    expect(api.queries.at(-1)).toEqual({ id: 'dev-1', q: { since, until: since + 100000, limit: 5 } });
    expect(r.json.readings.map((x: { seq: number }) => x.seq)).toEqual([2, 3]);
    expectError(await get('/api/devices/ghost/telemetry?since=0'), 404, 'unknown_device');
  });

  it.each([
    ['since=abc', /since must be a non-negative integer/],
    ['since=-1', /since must be a non-negative integer/],
    ['since=1.5', /since must be a non-negative integer/],
    ['since=', /since must be a non-negative integer/],
    ['until=1e3', /until must be a non-negative integer/],
    ['since=99999999999999999', /since must be a non-negative integer/],
    ['limit=0', /limit must be 1\.\.10000/],
    ['limit=10001', /limit must be 1\.\.10000/],
    ['limit=x', /limit must be a non-negative integer/],
    ['since=5&until=4', /since is after until/],
    ['since=1&since=2', /'since' given twice/],
    ['from=1', /unknown query parameter 'from'/],
  ])('telemetry query %s is a 400 with a clear message', async (qs, msg) => {
    await start();
    expectError(await get(`/api/devices/dev-1/telemetry?${qs}`), 400, 'bad_query', msg);
  });

  it('routes that take no query refuse one', async () => {
    await start();
    expectError(await get('/api/devices?x=1'), 400, 'bad_query', /'x'/);
    expectError(await get('/api/cluster?since=1'), 400, 'bad_query');
  });

  it('GET /api/cluster is the cluster view', async () => {
    await start();
    const r = await get('/api/cluster');
    expect(r.status).toBe(200);
    expect(r.json).toEqual(api.cluster());
  });

  it('HEAD answers like GET without a body', async () => {
    await start();
    const r = await call('HEAD', '/api/devices');
    expect(r.status).toBe(200);
    expect(r.text).toBe('');
    expect(Number(r.headers['content-length'])).toBe(Buffer.byteLength(JSON.stringify({ devices: api.devices() })));
  });
});

describe('lifecycle', () => {
  it('a port in use fails start() and leaves no subscription behind', async () => {
    const port = await start();
    const other = new FakeCompanionApi();
    const second = new HttpService({ api: other, host: '127.0.0.1', port, token: TOKEN, log: memoryLogger() });
    await expect(second.start()).rejects.toThrow(/EADDRINUSE/);
    expect(other.subscribers()).toBe(0);
    expect(second.address()).toBeNull();
    await expect(svc!.start()).rejects.toThrow(/already started/);
  });
});

describe('routing errors', () => {
  it('unknown route 404, wrong method 405 with Allow', async () => {
    await start();
    expectError(await get('/api/nothing'), 404, 'not_found', /\/api\/nothing/);
    expectError(await get('/api/devices/'), 404, 'not_found');
    expectError(await get('/api/devices/dev-1/telemetry/x'), 404, 'not_found');
    const del = await call('DELETE', '/api/devices/dev-1');
    expectError(del, 405, 'method_not_allowed');
    expect(del.headers.allow).toBe('GET, HEAD');
    const getRpc = await get('/api/devices/dev-1/rpc');
    expectError(getRpc, 405, 'method_not_allowed');
    expect(getRpc.headers.allow).toBe('POST');
    const postList = await post('/api/devices', {});
    expectError(postList, 405, 'method_not_allowed');
    expect(postList.headers.allow).toBe('GET, HEAD');
  });

  it('a CORS preflight gets a 405 and no Access-Control header (checked on every answer)', async () => {
    await start();
    const r = await call('OPTIONS', '/api/devices/dev-1/rpc', {
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization' },
    });
    expectError(r, 405, 'method_not_allowed');
  });

  it('a handler that throws is a 500 with a generic message, logged', async () => {
    await start();
    api.devices = () => {
      throw new Error('database is locked');
    };
    const r = await get('/api/devices');
    expectError(r, 500, 'internal', /^internal error$/);
    expect(log.lines.some((l) => l.ev === 'http handler failed' && l.error === 'database is locked')).toBe(true);
  });
});

describe('Host header check', () => {
  it.each(['localhost', 'localhost:8080', 'LOCALHOST', '127.0.0.1', '127.0.0.1:1', '[::1]', '[::1]:8080'])('accepts %s', async (host) => {
    await start();
    expect((await get('/api/devices', host)).status).toBe(200);
  });

  it.each(['evil.example', 'evil.example:8080', 'localhost.evil.example', '127.0.0.1.nip.io', '10.0.0.1'])('refuses %s with 421', async (host) => {
    await start();
    expectError(await get('/api/devices', host), 421, 'misdirected_request', /not served here/);
    expectError(await get('/', host), 421, 'misdirected_request');
  });

  it('accepts configured extra names, case-insensitive', async () => {
    await start({ allowedHosts: ['Espfleet.LAN'] });
    expect((await get('/api/devices', 'espfleet.lan:8080')).status).toBe(200);
    expect((await get('/api/devices', 'ESPFLEET.lan')).status).toBe(200);
    expect((await get('/api/devices', 'other.lan')).status).toBe(421);
  });

  it('accepts the bound address when it is not a loopback name', async () => {
    const port = await (async () => {
      api = new FakeCompanionApi();
      log = memoryLogger();
      svc = new HttpService({ api, host: '127.0.0.2', port: 0, token: TOKEN, log });
      await svc.start();
      return svc.address()!.port;
    })();
    const r = await new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.2', port, path: '/api/devices', headers: { Host: `127.0.0.2:${port}` }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      })
        .on('error', reject)
        .end();
    });
    expect(r).toBe(200);
  });

  it('a missing or malformed Host header is a 400', async () => {
    const port = await start();
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const s = connect(port, '127.0.0.1', () => s.write(text));
        sockets.push(s);
        let out = '';
        s.on('data', (d) => (out += d.toString()));
        s.on('end', () => resolve(out));
        s.on('close', () => resolve(out));
      });
    const noHost = await raw('GET /api/devices HTTP/1.0\r\n\r\n');
    expect(noHost).toMatch(/^HTTP\/1\.1 400/);
    expect(noHost).toContain('missing Host header');
    const bad = await raw('GET /api/devices HTTP/1.0\r\nHost: a_b/c\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400/);
    expect(bad).toContain('malformed Host header');
  });
});

describe('POST /api/devices/<id>/rpc', () => {
  it('with the token: calls the device and answers result, ms, attempts', async () => {
    await start();
    const r = await post('/api/devices/dev-1/rpc', { m: 'ping', p: { a: 1 }, timeoutMs: 2500 });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ result: 'pong', attempts: 1 });
    expect(typeof r.json.ms).toBe('number');
    expect(api.calls).toEqual([{ id: 'dev-1', method: 'ping', params: { a: 1 }, timeoutMs: 2500 }]);
  });

  it('p defaults to {} and timeoutMs to 5000', async () => {
    await start();
    const r = await post('/api/devices/dev-1/rpc', { m: 'read' });
    expect(r.status).toBe(200);
    expect(r.json.result).toBe(21.5);
    expect(api.calls[0]).toEqual({ id: 'dev-1', method: 'read', params: {}, timeoutMs: 5000 });
  });

  it('without a token 401 with WWW-Authenticate; a wrong one 401; nothing is called', async () => {
    await start();
    const none = await call('POST', '/api/devices/dev-1/rpc', { headers: { 'Content-Type': 'application/json' }, body: '{"m":"ping"}' });
    expectError(none, 401, 'unauthorized', /Bearer/);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="espfleet"');
    const wrong = await post('/api/devices/dev-1/rpc', { m: 'ping' }, { Authorization: `Bearer ${TOKEN}x` });
    expectError(wrong, 401, 'unauthorized');
    expect(wrong.headers['www-authenticate']).toContain('invalid_token');
    expectError(await post('/api/devices/dev-1/rpc', { m: 'ping' }, { Authorization: `Basic ${TOKEN}` }), 401, 'unauthorized');
    expectError(await post('/api/devices/dev-1/rpc', { m: 'ping' }, { Authorization: TOKEN.slice(0, -1) }), 401, 'unauthorized');
    expect(api.calls).toEqual([]);
  });

  it('Origin must match Host; cross-site fetch metadata is refused even with the token', async () => {
    const port = await start();
    expectError(await post('/api/devices/dev-1/rpc', { m: 'ping' }, { Origin: 'http://evil.example' }), 403, 'forbidden', /evil\.example/);
    expectError(await post('/api/devices/dev-1/rpc', { m: 'ping' }, { Origin: 'null' }), 403, 'forbidden');
    expectError(await post('/api/devices/dev-1/rpc', { m: 'ping' }, { Origin: `http://localhost:${port}` }), 403, 'forbidden');
    expectError(await post('/api/devices/dev-1/rpc', { m: 'ping' }, { 'Sec-Fetch-Site': 'cross-site' }), 403, 'forbidden');
    expect(api.calls).toEqual([]);
    const same = await post('/api/devices/dev-1/rpc', { m: 'ping' }, { Origin: `http://127.0.0.1:${port}`, 'Sec-Fetch-Site': 'same-origin' });
    expect(same.status).toBe(200);
  });

  it('authentication comes before the body is read or checked', async () => {
    await start();
    const r = await call('POST', '/api/devices/dev-1/rpc', { headers: { 'Content-Type': 'text/plain' }, body: 'x'.repeat(100_000) });
    expectError(r, 401, 'unauthorized');
    expect(r.headers.connection).toBe('close');
  });

  it.each([
    [undefined, /application\/json/],
    ['text/plain', /not text\/plain/],
    ['application/x-www-form-urlencoded', /application\/json/],
    ['application/json; charset=latin1', /utf-8/],
  ])('content-type %s is a 415', async (type, msg) => {
    await start();
    const headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}` };
    if (type) headers['Content-Type'] = type;
    expectError(await call('POST', '/api/devices/dev-1/rpc', { headers, body: '{"m":"ping"}' }), 415, 'unsupported_media_type', msg);
    expect(api.calls).toEqual([]);
  });

  it('accepts application/json with charset=utf-8', async () => {
    await start();
    expect((await post('/api/devices/dev-1/rpc', { m: 'ping' }, { 'Content-Type': 'Application/JSON; charset=UTF-8' })).status).toBe(200);
  });

  it('a body over 16 KiB is a 413, declared or streamed chunked', async () => {
    await start();
    const big = JSON.stringify({ m: 'ping', p: { x: 'y'.repeat(17 * 1024) } });
    const declared = await post('/api/devices/dev-1/rpc', big);
    expectError(declared, 413, 'payload_too_large', /16384/);
    expect(declared.headers.connection).toBe('close');
    const chunked = await call('POST', '/api/devices/dev-1/rpc', {
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}`, 'Transfer-Encoding': 'chunked' },
      body: big,
    });
    expectError(chunked, 413, 'payload_too_large');
    // Just under the bound still goes through.
    const fits = JSON.stringify({ m: 'ping', p: { x: 'y'.repeat(16 * 1024 - 40) } });
    expect(Buffer.byteLength(fits)).toBeLessThanOrEqual(16 * 1024);
    expect((await post('/api/devices/dev-1/rpc', fits)).status).toBe(200);
    expect(api.calls).toHaveLength(1);
  });

  it.each([
    ['{"m":', /not valid JSON/],
    [Buffer.from([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), /not valid UTF-8/],
    ['[1,2]', /JSON object/],
    ['null', /JSON object/],
    ['"ping"', /JSON object/],
    ['{"m":"ping","x":1}', /unknown member 'x'/],
    ['{"p":{}}', /m must be a method name/],
    ['{"m":""}', /m must be a method name/],
    ['{"m":"a b"}', /m must be a method name/],
    [JSON.stringify({ m: 'x'.repeat(65) }), /m must be a method name/],
    ['{"m":"ping","timeoutMs":0}', /timeoutMs must be an integer 1\.\.60000/],
    ['{"m":"ping","timeoutMs":60001}', /timeoutMs must be an integer/],
    ['{"m":"ping","timeoutMs":1.5}', /timeoutMs must be an integer/],
    ['{"m":"ping","timeoutMs":"100"}', /timeoutMs must be an integer/],
  ])('body %s is a 400', async (body, msg) => {
    await start();
    expectError(await post('/api/devices/dev-1/rpc', body), 400, 'bad_request', msg);
    expect(api.calls).toEqual([]);
  });

  it('a malformed id is a 400 and an unknown device a 404, token checked first', async () => {
    await start();
    expectError(await post('/api/devices/no.pe/rpc', { m: 'ping' }), 400, 'bad_device_id');
    expectError(await post('/api/devices/ghost/rpc', { m: 'ping' }), 404, 'unknown_device', /ghost/);
    expectError(await call('POST', '/api/devices/ghost/rpc', { headers: { 'Content-Type': 'application/json' }, body: '{"m":"ping"}' }), 401, 'unauthorized');
  });

  const codes = Object.keys(RPC_STATUS) as RpcErrorCode[];
  it.each(codes.map((c) => [c, RPC_STATUS[c]] as const))('RpcError %s maps to %i', async (code, status) => {
    await start();
    api.rpcHandler = () => {
      throw new RpcError(code, `failed: ${code}`, code === 'device_error' ? { code: 'E_PARAMS', msg: 'sensor must be a sensor name' } : undefined);
    };
    const r = await post('/api/devices/dev-1/rpc', { m: 'read' });
    expectError(r, status, code, new RegExp(`failed: ${code}`));
    if (code === 'device_error') expect(r.json.error.device).toEqual({ code: 'E_PARAMS', msg: 'sensor must be a sensor name' });
    else expect(r.json.error.device).toBeUndefined();
    if (code === 'busy') expect(r.headers['retry-after']).toBe('1');
  });

  it('the mapping is the one the brief names', () => {
    expect(RPC_STATUS).toEqual({ timeout: 504, device_down: 503, breaker_open: 503, device_error: 502, bad_request: 400, unknown_device: 404, busy: 429 });
  });
});

describe('dashboard', () => {
  it('/ is the page with its CSP, and the token in a meta tag for a loopback client', async () => {
    await start();
    const r = await get('/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['cache-control']).toBe('no-store');
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(r.text).toContain(`<meta name="espfleet-token" content="${TOKEN}">`);
    // No inline script and no resource from another origin.
    expect(r.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(r.text).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it('the token goes only to loopback peers', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a), a).toBe(true);
    for (const a of [undefined, '', '10.0.0.1', '192.168.1.127', '::ffff:10.0.0.1', 'fe80::1', '::', '0.0.0.0', '128.0.0.1']) expect(isLoopback(a), String(a)).toBe(false);
  });

  it('serves the script and the stylesheet with their types', async () => {
    await start();
    const js = await get('/dashboard.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.text).toContain("new EventSource('/api/events')");
    expect(js.text).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    const css = await get('/dashboard.css');
    expect(css.status).toBe(200);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(css.text).not.toContain('@import');
    expect(css.text).not.toContain('url(');
    expectError(await get('/dashboard.html'), 404, 'not_found');
    expectError(await get('/../package.json'), 404, 'not_found');
  });

  it('refuses a token that could not travel in a header or the page', () => {
    const base = { api: new FakeCompanionApi(), host: '127.0.0.1', port: 0, log: memoryLogger() };
    expect(() => new HttpService({ ...base, token: 'short' })).toThrow(/16\.\.512/);
    expect(() => new HttpService({ ...base, token: 'a"><script>alert(1)</script>' })).toThrow(/b64token/);
    expect(() => new HttpService({ ...base, token: 'has space in the middle' })).toThrow();
  });
});

/** A minimal event-stream reader over a raw socket: frames as {event, data} or comments. */
class SseReader {
  readonly frames: Array<{ event?: string; data?: string; comment?: string }> = [];
  head = '';
  status = 0;
  ended = false;
  private buf = '';
  private waiters: Array<() => void> = [];
  readonly sock: Socket;

  constructor(port: number, path = '/api/events') {
    // HTTP/1.0: the body arrives as sent, without chunked framing.
    this.sock = connect(port, '127.0.0.1', () => this.sock.write(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`));
    sockets.push(this.sock);
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d: string) => this.feed(d));
    this.sock.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  private feed(d: string): void {
    this.buf += d;
    if (!this.status) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      this.head = this.buf.slice(0, i);
      this.status = Number(this.head.split(' ')[1]);
      this.buf = this.buf.slice(i + 4);
    }
    let j: number;
    while ((j = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, j);
      this.buf = this.buf.slice(j + 2);
      const f: { event?: string; data?: string; comment?: string } = {};
      for (const l of block.split('\n')) {
        if (l.startsWith(':')) f.comment = l.slice(1).trim();
        else if (l.startsWith('event: ')) f.event = l.slice(7);
        else if (l.startsWith('data: ')) f.data = l.slice(6);
      }
      this.frames.push(f);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  events(): Array<{ event: string; data: any }> {
    return this.frames.filter((f) => f.event).map((f) => ({ event: f.event!, data: JSON.parse(f.data!) }));
  }

  async until(pred: () => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error('timed out waiting; frames: ' + JSON.stringify(this.frames.slice(-5)) + ' head ' + this.head);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
}

describe('GET /api/events', () => {
  it('streams each companion event as `event: <type>` with JSON data', async () => {
    const port = await start();
    const c = new SseReader(port);
    await c.until(() => c.frames.length > 0);
    expect(c.status).toBe(200);
    expect(c.head.toLowerCase()).toContain('content-type: text/event-stream; charset=utf-8');
    expect(c.head.toLowerCase()).toContain('cache-control: no-store');
    expect(c.head.toLowerCase()).not.toContain('access-control');
    expect(c.frames[0].comment).toBeDefined();
    const evs = [
      { type: 'device', id: 'dev-3', state: 'up', reason: 'birth\nwith a line break', at: 1 },
      { type: 'telemetry', id: 'dev-1', seq: 4, ts: 2, r: { t: 23.5 }, hist: 0 },
      { type: 'breaker', id: 'dev-1', state: 'open', at: 3 },
      { type: 'cluster', leader: 'node-b', term: 4, at: 4 },
    ] as const;
    for (const ev of evs) api.emit(ev);
    await c.until(() => c.events().length === 4);
    expect(c.events()).toEqual(evs.map((ev) => ({ event: ev.type, data: ev })));
  });

  it('sends a heartbeat comment on every stream', async () => {
    const port = await start({ heartbeatMs: 40 });
    const c = new SseReader(port);
    await c.until(() => c.frames.filter((f) => f.comment === '').length >= 2);
  });

  it('bounds the number of streams: one too many is a 503 JSON error; a closed one frees its place', async () => {
    const port = await start({ sseClientsMax: 2 });
    const a = new SseReader(port);
    const b = new SseReader(port);
    await a.until(() => a.status === 200);
    await b.until(() => b.status === 200);
    expect(svc!.sseClients()).toBe(2);
    const r = await get('/api/events');
    expectError(r, 503, 'too_many_streams', /2/);
    expect(r.headers['retry-after']).toBe('5');
    a.sock.destroy();
    await b.until(() => svc!.sseClients() === 1);
    const c = new SseReader(port);
    await c.until(() => c.status === 200);
    expect(svc!.counters.sseRefused).toBe(1);
  });

  it('drops a client that stops reading, and the others keep receiving', async () => {
    const port = await start({ sseBufferBytesMax: 64 * 1024 });
    const slow = new SseReader(port);
    const fast = new SseReader(port);
    await slow.until(() => slow.status === 200);
    await fast.until(() => fast.status === 200);
    slow.sock.pause();
    const reason = 'r'.repeat(8 * 1024);
    let n = 0;
    // The kernel buffers a few MB per socket before the server has to hold bytes itself. Batches
    // stay under the bound, so the reading client drains between them and is never at risk.
    while (svc!.counters.sseDropped === 0 && n < 8000) {
      for (let i = 0; i < 4; i++) api.emit({ type: 'device', id: 'dev-1', state: 'up', reason, at: ++n });
      const last = n;
      await fast.until(() => fast.events().at(-1)?.data.at === last);
    }
    expect(svc!.counters.sseDropped).toBe(1);
    expect(svc!.sseClients()).toBe(1);
    expect(log.lines.some((l) => l.ev === 'event stream dropped' && String(l.reason).includes('65536'))).toBe(true);
    api.emit({ type: 'cluster', leader: 'node-a', term: 9, at: 0 });
    await fast.until(() => fast.events().at(-1)?.event === 'cluster');
    expect(fast.events()).toHaveLength(n + 1);
  });

  it('stop() ends open streams, unsubscribes and closes the listener', async () => {
    const port = await start();
    const c = new SseReader(port);
    await c.until(() => c.status === 200);
    expect(api.subscribers()).toBe(1);
    await svc!.stop();
    await c.until(() => c.ended);
    expect(api.subscribers()).toBe(0);
    expect(svc!.address()).toBeNull();
    const refused = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.on('connect', () => resolve('connected'));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
    svc = null;
  });
});
