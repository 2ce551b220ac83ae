/**
 * The companion's HTTP API and dashboard (INTERFACES.md, "HTTP API"), on node:http with no
 * framework. It holds no state of its own beyond its connections: every answer comes from the
 * CompanionApi it is given.
 *
 * Routes: GET /healthz, GET /api/devices, GET /api/devices/<id>, GET /api/devices/<id>/telemetry,
 * POST /api/devices/<id>/rpc, GET /api/cluster, GET /api/events (server-sent events) and the
 * dashboard at / (with /dashboard.js and /dashboard.css). HEAD is answered wherever GET is.
 * Errors are JSON `{"error":{"code","message"}}` with a status that says what went wrong.
 *
 * Security, in the ORDER every request is checked:
 *  1. Host header: only names this server answers for (loopback names, the bound address, the
 *     address the connection arrived on, configured extra names); anything else is 421. A page
 *     on an attacker's domain that re-resolves to 127.0.0.1 (DNS rebinding) sends its own
 *     domain as Host and never gets an answer.
 *  2. Route, then method (404, 405 with Allow).
 *  3. State-changing calls (POST) only: Origin, when present, must be this Host (403);
 *     Sec-Fetch-Site, when present, must not be cross-site or same-site (403); then
 *     `Authorization: Bearer <token>` (401). The dashboard gets the token in a meta tag, only
 *     when a loopback client loads it, and sends it in that header like any other client.
 *     No Access-Control-* header is ever sent: the API is same-origin only, so a foreign page
 *     can neither read answers nor send the Authorization header (a preflight would be needed).
 *  4. Body: content-type application/json (415), at most bodyBytesMax (413), UTF-8 JSON (400).
 *     Bodies are read only AFTER authentication, so an anonymous client cannot make us buffer.
 *
 * Server-sent events: one subscription to the CompanionApi, each event serialised once and
 * written to every stream. res.write never blocks; a client whose unsent bytes exceed
 * sseBufferBytesMax is dropped, so one slow reader costs a bounded amount of memory and
 * never delays the others.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../../boards/profiles.js';
import { RpcError, type CompanionApi, type CompanionEvent, type RpcErrorCode, type TelemetryQuery } from '../companion-api.js';
import type { Logger } from '../log.js';

export interface HttpServiceOptions {
  api: CompanionApi;
  /** Address to bind; loopback unless the operator names an interface (INTERFACES.md). */
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** Bearer token for state-changing calls: RFC 6750 b64token syntax, 16..512 chars. */
  token: string;
  /** Extra names accepted in the Host header (e.g. the machine's DNS name), without port. */
  allowedHosts?: string[];
  log: Logger;
  /** Concurrent event streams (default 64). */
  sseClientsMax?: number;
  /** Unsent bytes a stream may hold before it is dropped (default 256 KiB). */
  sseBufferBytesMax?: number;
  /** Comment line sent on every stream so proxies and browsers keep it open (default 15 s). */
  heartbeatMs?: number;
  /** Request body size (default 16 KiB). */
  bodyBytesMax?: number;
}

/** A JSON request here is an RPC call of a small device; 16 KiB is far above any real one. */
export const BODY_BYTES_MAX = 16 * 1024;
/** Dashboards and CLI watchers open one stream each; 64 bounds sockets and fan-out work. */
export const SSE_CLIENTS_MAX = 64;
/** About a thousand events at 250 bytes: a reader that far behind is gone or hostile. */
export const SSE_BUFFER_BYTES_MAX = 256 * 1024;
/** Well under the 30-60 s idle timeouts of common proxies. */
export const HEARTBEAT_MS = 15_000;
/** Sockets the server accepts at once (streams, keep-alive clients); beyond, Node refuses them. */
export const CONNECTIONS_MAX = 256;
/** Rows one telemetry query may ask for: the store caps its answers at 10000 too. */
export const TELEMETRY_LIMIT_MAX = 10_000;
/** RPC deadline when the caller names none, and the longest one accepted. */
export const RPC_TIMEOUT_MS_DEFAULT = 5000;
export const RPC_TIMEOUT_MS_MAX = 60_000;
/** Method names are short identifiers on the device (`ping`, `pipeline.set`). */
export const RPC_METHOD_CHARS_MAX = 64;
/** Device ids in URLs; ids with other characters are not addressable over HTTP. */
export const DEVICE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** RFC 6750 b64token: no quotes, spaces or angle brackets, so it is safe in a header and in HTML. */
const TOKEN_RE = /^[A-Za-z0-9\-._~+/]{16,512}=*$/;

/** The status each RpcError code maps to. */
export const RPC_STATUS: Record<RpcErrorCode, number> = {
  timeout: 504,
  device_down: 503,
  breaker_open: 503,
  device_error: 502,
  bad_request: 400,
  unknown_device: 404,
  busy: 429,
};

/** An answer with an error status; thrown by handlers and turned into the JSON error shape. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export interface HttpCounters {
  requests: number;
  errors: Record<string, number>;
  sseOpened: number;
  sseDropped: number;
  sseRefused: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, ctx: Ctx) => Promise<void> | void;

interface Ctx {
  url: URL;
  /** The Host header as sent (name and optional port). */
  host: string;
  /** The device id path segment, when the route has one. */
  id: string;
}

interface Route {
  /** Matches the path; returns the id segment ('' for routes without one) or null. */
  match(path: string): string | null;
  methods: Partial<Record<'GET' | 'POST', Handler>>;
}

const EVENT_TYPES = new Set(['device', 'telemetry', 'breaker', 'cluster']);

/** Sent on every answer. */
const COMMON_HEADERS: Record<string, string> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cross-Origin-Opener-Policy': 'same-origin',
};
/** JSON and event streams are data, never documents: they may load nothing and be framed by no one. */
const API_CSP = "default-src 'none'; frame-ancestors 'none'";
/** The dashboard: its own script and style files only, no inline script or style, no other origin. */
const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'dashboard.html', type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
};
const TOKEN_META = '<meta name="espfleet-token" content="">';

interface SseClient {
  res: ServerResponse;
  peer: string;
}

export class HttpService {
  readonly counters: HttpCounters = { requests: 0, errors: {}, sseOpened: 0, sseDropped: 0, sseRefused: 0 };
  private server: Server | null = null;
  private readonly sse = new Set<SseClient>();
  private unsubscribe: (() => void) | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private assets = new Map<string, Buffer>();
  private readonly tokenDigest: Buffer;
  private readonly routes: Route[];
  private readonly extraHosts: Set<string>;
  private readonly sseClientsMax: number;
  private readonly sseBufferBytesMax: number;
  private readonly heartbeatMs: number;
  private readonly bodyBytesMax: number;

  constructor(private readonly o: HttpServiceOptions) {
    if (!TOKEN_RE.test(o.token)) throw new Error('http token must be 16..512 chars of [A-Za-z0-9-._~+/] (RFC 6750 b64token)');
    this.tokenDigest = digest(o.token);
    this.extraHosts = new Set((o.allowedHosts ?? []).map(hostName));
    this.sseClientsMax = positive(o.sseClientsMax, SSE_CLIENTS_MAX, 'sseClientsMax');
    this.sseBufferBytesMax = positive(o.sseBufferBytesMax, SSE_BUFFER_BYTES_MAX, 'sseBufferBytesMax');
    this.heartbeatMs = positive(o.heartbeatMs, HEARTBEAT_MS, 'heartbeatMs');
    this.bodyBytesMax = positive(o.bodyBytesMax, BODY_BYTES_MAX, 'bodyBytesMax');
    this.routes = [
      exact('/healthz', { GET: (_q, res, c) => this.getHealth(res, c) }),
      exact('/api/devices', { GET: (_q, res, c) => this.getDevices(res, c) }),
      exact('/api/cluster', { GET: (_q, res, c) => this.getCluster(res, c) }),
      exact('/api/events', { GET: (req, res, c) => this.getEvents(req, res, c) }),
      device('', { GET: (_q, res, c) => this.getDevice(res, c) }),
      device('/telemetry', { GET: (_q, res, c) => this.getTelemetry(res, c) }),
      device('/rpc', { POST: (req, res, c) => this.postRpc(req, res, c) }),
      ...Object.keys(ASSETS).map((p) => exact(p, { GET: (req: IncomingMessage, res: ServerResponse) => this.getAsset(req, res, p) })),
    ];
  }

  async start(): Promise<void> {
    if (this.server) throw new Error('http service already started');
    // Read the assets now: a broken install fails at start, not at the first page load.
    const dir = join(packageRoot(), 'host', 'http');
    const assets = new Map<string, Buffer>();
    for (const a of Object.values(ASSETS)) assets.set(a.file, readFileSync(join(dir, a.file)));
    if (!assets.get('dashboard.html')!.includes(TOKEN_META)) throw new Error(`dashboard.html lacks ${TOKEN_META}`);
    this.assets = assets;

    const server = createServer({ requestTimeout: 15_000, headersTimeout: 10_000, keepAliveTimeout: 5000, maxHeaderSize: 16 * 1024 }, (req, res) =>
      void this.handle(req, res),
    );
    server.maxConnections = CONNECTIONS_MAX;
    // Subscribe BEFORE listening: a refused subscription then leaves no listener behind.
    const unsubscribe = this.o.api.subscribe((ev) => this.onEvent(ev));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.o.port, this.o.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      unsubscribe();
      throw e;
    }
    server.on('error', (e) => this.o.log.error('http server error', { error: e.message }));
    this.server = server;
    this.unsubscribe = unsubscribe;
    this.heartbeat = setInterval(() => this.broadcast(':\n\n'), this.heartbeatMs);
    this.heartbeat.unref();
    const a = this.address()!;
    this.o.log.info('http listening', { address: a.address, port: a.port });
  }

  /** Stops listening, ends every event stream and closes every connection. Idempotent. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
    for (const c of this.sse) c.res.end();
    this.sse.clear();
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  address(): AddressInfo | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : null;
  }

  /** Event streams open now. */
  sseClients(): number {
    return this.sse.size;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counters.requests++;
    try {
      await this.route(req, res);
    } catch (e) {
      if (e instanceof HttpError) {
        this.sendError(req, res, e);
      } else {
        this.o.log.error('http handler failed', { method: req.method, path: pathOf(req.url), error: (e as Error)?.message ?? String(e) });
        this.sendError(req, res, new HttpError(500, 'internal', 'internal error'));
      }
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const host = this.checkHost(req);
    const raw = req.url ?? '';
    if (!raw.startsWith('/')) throw new HttpError(400, 'bad_request', 'request target must be a path');
    let url: URL;
    try {
      url = new URL(raw, 'http://h');
    } catch {
      throw new HttpError(400, 'bad_request', 'request target is not a valid URL');
    }
    for (const r of this.routes) {
      const id = r.match(url.pathname);
      if (id === null) continue;
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      const h = method === 'GET' || method === 'POST' ? r.methods[method] : undefined;
      if (!h) {
        const allow = r.methods.GET ? 'GET, HEAD' : 'POST';
        throw new HttpError(405, 'method_not_allowed', `${req.method} is not allowed here (allowed: ${allow})`, { Allow: allow });
      }
      if (id !== '' && !DEVICE_ID_RE.test(id)) {
        throw new HttpError(400, 'bad_device_id', 'device id must be 1..64 chars of A-Z a-z 0-9 _ -');
      }
      if (method === 'POST') this.authorize(req, host);
      await h(req, res, { url, host, id });
      return;
    }
    throw new HttpError(404, 'not_found', `no route ${url.pathname.slice(0, 128)}`);
  }

  /** Returns the Host header when this server answers for it (see the file comment, step 1). */
  private checkHost(req: IncomingMessage): string {
    const host = req.headers.host;
    if (!host) throw new HttpError(400, 'bad_request', 'missing Host header');
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/.exec(host);
    if (!m) throw new HttpError(400, 'bad_request', 'malformed Host header');
    const name = m[1].toLowerCase();
    if (name === 'localhost' || name === '127.0.0.1' || name === '[::1]' || this.extraHosts.has(name)) return host;
    const bound = this.address()?.address;
    if (bound && bound !== '0.0.0.0' && bound !== '::' && hostName(bound) === name) return host;
    // An IP literal naming the interface the connection arrived on: reachable by that address,
    // and a page served from an IP literal is already same-origin with us, so no rebinding.
    const local = req.socket.localAddress;
    if (local && (hostName(local) === name || hostName(local.replace(/^::ffff:/, '')) === name)) return host;
    throw new HttpError(421, 'misdirected_request', `host '${name}' is not served here (allowed: localhost, 127.0.0.1, [::1], the bound address, configured names)`);
  }

  /** Step 3 of the file comment. */
  private authorize(req: IncomingMessage, host: string): void {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      const o = origin.toLowerCase();
      const h = host.toLowerCase();
      if (o !== 'http://' + h && o !== 'https://' + h) throw new HttpError(403, 'forbidden', `origin ${origin.slice(0, 128)} does not match host ${host}`);
    }
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') throw new HttpError(403, 'forbidden', `cross-origin request (sec-fetch-site: ${site})`);
    const auth = req.headers.authorization;
    if (!auth) {
      throw new HttpError(401, 'unauthorized', 'this call needs Authorization: Bearer <token>', { 'WWW-Authenticate': 'Bearer realm="espfleet"' });
    }
    const m = /^Bearer +(\S+) *$/i.exec(auth);
    if (!m || !timingSafeEqual(digest(m[1]), this.tokenDigest)) {
      throw new HttpError(401, 'unauthorized', 'bad token', { 'WWW-Authenticate': 'Bearer realm="espfleet", error="invalid_token"' });
    }
  }

  private getHealth(res: ServerResponse, c: Ctx): void {
    noQuery(c.url);
    const h = this.o.api.health();
    this.sendJson(res, h.ok ? 200 : 503, h);
  }

  private getDevices(res: ServerResponse, c: Ctx): void {
    noQuery(c.url);
    this.sendJson(res, 200, { devices: this.o.api.devices() });
  }

  private getDevice(res: ServerResponse, c: Ctx): void {
    noQuery(c.url);
    this.sendJson(res, 200, this.knownDevice(c.id));
  }

  private getTelemetry(res: ServerResponse, c: Ctx): void {
    const q = telemetryQuery(c.url.searchParams);
    this.knownDevice(c.id);
    this.sendJson(res, 200, { device: c.id, readings: this.o.api.telemetry(c.id, q) });
  }

  private getCluster(res: ServerResponse, c: Ctx): void {
    noQuery(c.url);
    this.sendJson(res, 200, this.o.api.cluster());
  }

  private knownDevice(id: string): unknown {
    const d = this.o.api.device(id);
    if (!d) throw new HttpError(404, 'unknown_device', `no device ${id}`);
    return d;
  }

  private async postRpc(req: IncomingMessage, res: ServerResponse, c: Ctx): Promise<void> {
    noQuery(c.url);
    const body = await this.readJson(req);
    const call = rpcCall(body);
    let r;
    try {
      r = await this.o.api.rpc(c.id, call.m, call.p, call.timeoutMs);
    } catch (e) {
      if (!(e instanceof RpcError)) throw e;
      const status = RPC_STATUS[e.code] ?? 500;
      const headers: Record<string, string> = e.code === 'busy' ? { 'Retry-After': '1' } : {};
      throw new HttpError(status, e.code, e.message, headers, e.device ? { device: { code: e.device.code, msg: e.device.msg } } : {});
    }
    this.sendJson(res, 200, { result: r.result, ms: r.ms, attempts: r.attempts });
  }

  /** Step 4 of the file comment. */
  private async readJson(req: IncomingMessage): Promise<unknown> {
    const type = req.headers['content-type'];
    if (!type) throw new HttpError(415, 'unsupported_media_type', 'body must be application/json');
    const [media, ...params] = type.split(';').map((s) => s.trim().toLowerCase());
    if (media !== 'application/json') throw new HttpError(415, 'unsupported_media_type', `body must be application/json, not ${media}`);
    for (const p of params) {
      if (p.startsWith('charset=') && p !== 'charset=utf-8' && p !== 'charset="utf-8"') {
        throw new HttpError(415, 'unsupported_media_type', 'body charset must be utf-8');
      }
    }
    const max = this.bodyBytesMax;
    const tooLarge = new HttpError(413, 'payload_too_large', `body larger than ${max} bytes`);
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > max) throw tooLarge;
    const chunks: Buffer[] = [];
    let size = 0;
    await new Promise<void>((resolve, reject) => {
      const onData = (b: Buffer) => {
        size += b.length;
        if (size > max) {
          req.off('data', onData);
          req.pause();
          reject(tooLarge);
        } else chunks.push(b);
      };
      req.on('data', onData);
      req.once('end', resolve);
      req.once('error', reject);
      // A client that goes away mid-body: 'end' never comes (a no-op once settled).
      req.once('close', () => reject(new HttpError(400, 'bad_request', 'request aborted')));
    });
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
    } catch {
      throw new HttpError(400, 'bad_request', 'body is not valid UTF-8');
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new HttpError(400, 'bad_request', 'body is not valid JSON');
    }
  }

  private getEvents(req: IncomingMessage, res: ServerResponse, c: Ctx): void {
    noQuery(c.url);
    if (this.sse.size >= this.sseClientsMax) {
      this.counters.sseRefused++;
      throw new HttpError(503, 'too_many_streams', `more than ${this.sseClientsMax} event streams open`, { 'Retry-After': '5' });
    }
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'Content-Security-Policy': API_CSP,
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      // Proxies that buffer responses (nginx) would hold events back.
      'X-Accel-Buffering': 'no',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const client: SseClient = { res, peer: `${req.socket.remoteAddress}:${req.socket.remotePort}` };
    this.sse.add(client);
    this.counters.sseOpened++;
    req.socket.setNoDelay(true);
    // Detects a peer that vanished without a FIN (laptop lid closed) within a couple of minutes.
    req.socket.setKeepAlive(true, 30_000);
    res.on('close', () => this.sse.delete(client));
    // The first bytes make the browser fire `open`; retry sets its reconnect delay.
    this.write(client, ': espfleet events\nretry: 3000\n\n');
  }

  private onEvent(ev: CompanionEvent): void {
    if (this.sse.size === 0) return;
    if (!EVENT_TYPES.has(ev.type)) return;
    let data: string;
    try {
      data = JSON.stringify(ev);
    } catch (e) {
      this.o.log.error('event not serialisable', { type: ev.type, error: (e as Error).message });
      return;
    }
    // JSON.stringify escapes line breaks inside strings, so data stays one SSE line.
    this.broadcast(`event: ${ev.type}\ndata: ${data}\n\n`);
  }

  private broadcast(frame: string): void {
    for (const c of this.sse) this.write(c, frame);
  }

  private write(c: SseClient, frame: string): void {
    if (c.res.destroyed) return;
    c.res.write(frame);
    if (c.res.writableLength > this.sseBufferBytesMax) {
      this.counters.sseDropped++;
      this.sse.delete(c);
      this.o.log.warn('event stream dropped', { peer: c.peer, reason: `more than ${this.sseBufferBytesMax} bytes unsent` });
      c.res.destroy();
    }
  }

  private getAsset(req: IncomingMessage, res: ServerResponse, path: string): void {
    const a = ASSETS[path];
    let body = this.assets.get(a.file)!;
    if (a.file === 'dashboard.html') {
      // The token goes only to a loopback client: one that could read it from the process anyway.
      // Beyond loopback the page asks the user for it.
      if (isLoopback(req.socket.remoteAddress)) body = Buffer.from(body.toString('utf8').replace(TOKEN_META, `<meta name="espfleet-token" content="${this.o.token}">`));
    }
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'Content-Security-Policy': DASHBOARD_CSP,
      'Content-Type': a.type,
      'Content-Length': String(body.length),
      'Cache-Control': a.file === 'dashboard.html' ? 'no-store' : 'no-cache',
    });
    res.end(body);
  }

  private sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
    const body = Buffer.from(JSON.stringify(value));
    res.writeHead(status, {
      ...COMMON_HEADERS,
      ...headers,
      'Content-Security-Policy': API_CSP,
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': String(body.length),
      'Cache-Control': 'no-store',
    });
    res.end(body);
  }

  private sendError(req: IncomingMessage, res: ServerResponse, e: HttpError): void {
    this.counters.errors[e.code] = (this.counters.errors[e.code] ?? 0) + 1;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers = { ...e.headers };
    // A body we did not read to its end must not be parsed as the next request on this socket.
    if (!req.complete) headers.Connection = 'close';
    this.sendJson(res, e.status, { error: { code: e.code, message: e.message, ...e.extra } }, headers);
  }
}

function exact(path: string, methods: Route['methods']): Route {
  return { match: (p) => (p === path ? '' : null), methods };
}

/** /api/devices/<id><suffix>; the id is matched loosely here and validated after the method. */
function device(suffix: string, methods: Route['methods']): Route {
  return {
    match: (p) => {
      if (!p.startsWith('/api/devices/') || !p.endsWith(suffix)) return null;
      const id = p.slice('/api/devices/'.length, p.length - suffix.length);
      return id.length > 0 && !id.includes('/') ? id : null;
    },
    methods,
  };
}

function noQuery(url: URL): void {
  for (const k of url.searchParams.keys()) throw new HttpError(400, 'bad_query', `unknown query parameter '${k}'`);
}

/** since, until, limit: each at most once, a non-negative integer; limit 1..TELEMETRY_LIMIT_MAX. */
export function telemetryQuery(params: URLSearchParams): TelemetryQuery {
  const q: TelemetryQuery = {};
  const seen = new Set<string>();
  for (const [k, v] of params) {
    if (k !== 'since' && k !== 'until' && k !== 'limit') throw new HttpError(400, 'bad_query', `unknown query parameter '${k}' (known: since, until, limit)`);
    if (seen.has(k)) throw new HttpError(400, 'bad_query', `query parameter '${k}' given twice`);
    seen.add(k);
    if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(Number(v))) {
      throw new HttpError(400, 'bad_query', `${k} must be a non-negative integer${k === 'limit' ? '' : ' (ms since 1970)'}, not '${v.slice(0, 32)}'`);
    }
    q[k] = Number(v);
  }
  if (q.limit !== undefined && (q.limit < 1 || q.limit > TELEMETRY_LIMIT_MAX)) {
    throw new HttpError(400, 'bad_query', `limit must be 1..${TELEMETRY_LIMIT_MAX}`);
  }
  if (q.since !== undefined && q.until !== undefined && q.since > q.until) throw new HttpError(400, 'bad_query', 'since is after until');
  return q;
}

/** The RPC body `{"m","p","timeoutMs"}`: m required, p any JSON (default {}), timeoutMs 1..max. */
export function rpcCall(body: unknown): { m: string; p: unknown; timeoutMs: number } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'bad_request', 'body must be a JSON object {"m","p","timeoutMs"}');
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'm' && k !== 'p' && k !== 'timeoutMs') throw new HttpError(400, 'bad_request', `unknown member '${k.slice(0, 32)}' (known: m, p, timeoutMs)`);
  }
  const m = o.m;
  if (typeof m !== 'string' || m.length === 0 || m.length > RPC_METHOD_CHARS_MAX || !/^[A-Za-z0-9_.:-]+$/.test(m)) {
    throw new HttpError(400, 'bad_request', `m must be a method name of 1..${RPC_METHOD_CHARS_MAX} chars of A-Z a-z 0-9 _ . : -`);
  }
  const t = o.timeoutMs ?? RPC_TIMEOUT_MS_DEFAULT;
  if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 1 || t > RPC_TIMEOUT_MS_MAX) {
    throw new HttpError(400, 'bad_request', `timeoutMs must be an integer 1..${RPC_TIMEOUT_MS_MAX}`);
  }
  return { m, p: o.p === undefined ? {} : o.p, timeoutMs: t };
}

/** A host name as it appears in a Host header: lower case, IPv6 in brackets. */
function hostName(a: string): string {
  const s = a.toLowerCase();
  return s.includes(':') && !s.startsWith('[') ? `[${s}]` : s;
}

/** A peer address on the loopback network (IPv4 127/8, IPv6 ::1, or 127/8 mapped into IPv6). */
export function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = addr.replace(/^::ffff:/i, '');
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** Equal-length digests, so timingSafeEqual neither throws nor leaks the token's length. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function pathOf(url: string | undefined): string {
  return (url ?? '').split('?')[0].slice(0, 128);
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
}
