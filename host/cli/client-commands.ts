/**
 * `espfleet devices` and `espfleet call`: clients of a running companion's HTTP API. `call`
 * authenticates with the companion's token (--token, ESPFLEET_TOKEN, or <data>/http.token).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CommandSpec, Parsed } from './args.js';
import { UsageError } from './args.js';

const common = {
  url: { type: 'url' as const, choices: ['http', 'https'], help: 'the companion\'s HTTP address', default: 'http://127.0.0.1:8080', env: 'ESPFLEET_URL', arg: 'http://host:port' },
};

export const devicesSpec: CommandSpec = {
  name: 'devices',
  summary: 'lists the registry of a running companion',
  usage: 'espfleet devices [--json] [--url <http://host:port>]',
  flags: { ...common, json: { type: 'bool', help: 'print JSON instead of a table' } },
};

export const callSpec: CommandSpec = {
  name: 'call',
  summary: 'request-response to one device; prints the JSON result or a clear error',
  usage: 'espfleet call <device> <method> [<json params>] [--timeout <ms>] [--url <http://host:port>]',
  flags: {
    ...common,
    timeout: { type: 'int', min: 100, max: 120000, help: 'how long to wait for the answer', default: 5000, arg: 'ms' },
    token: { type: 'string', env: 'ESPFLEET_TOKEN', help: 'the companion\'s API token (default: read from --data)', arg: 'token' },
    data: { type: 'string', help: 'the companion\'s data folder, for its token', default: '.espfleet/host', arg: 'dir' },
  },
  positionals: { names: ['device', 'method', 'json params'], required: 2 },
};

async function request(url: string, init?: RequestInit): Promise<{ status: number; body: any }> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(130_000) });
  } catch (e) {
    throw new ConnectError(`cannot reach the companion at ${url}: ${(e as Error).cause ? String((e as { cause: unknown }).cause) : (e as Error).message}`);
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // non-JSON answer: keep the text for the message
  }
  return { status: res.status, body };
}

class ConnectError extends Error {}

function fail(msg: string): number {
  console.error(msg);
  return 1;
}

export async function runDevices(p: Parsed): Promise<number> {
  try {
    const { status, body } = await request(new URL('/api/devices', String(p.flags.url)).href);
    if (status !== 200) return fail(`devices: ${status} ${JSON.stringify(body)}`);
    const list = Array.isArray(body) ? body : (body as { devices?: unknown[] }).devices ?? [];
    if (p.flags.json) {
      console.log(JSON.stringify(list, null, 2));
      return 0;
    }
    const rows = (list as Array<Record<string, any>>).map((d) => [
      d.id,
      d.state,
      d.kind ?? d.meta?.board ?? '',
      d.fw ?? '',
      d.lastSeenMs ? localTime(d.lastSeenMs) : '',
      latestText(d),
    ]);
    const head = ['ID', 'STATE', 'BOARD', 'FW', 'LAST SEEN', 'LATEST'];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
    console.log(head.map((h, i) => h.padEnd(w[i])).join('  '));
    for (const r of rows) console.log(r.map((c, i) => String(c).padEnd(w[i])).join('  '));
    console.log(`${rows.length} device(s)`);
    return 0;
  } catch (e) {
    if (e instanceof ConnectError) return fail(`devices: ${e.message}`);
    throw e;
  }
}

function readToken(p: Parsed): string {
  if (typeof p.flags.token === 'string') return p.flags.token;
  const file = join(resolve(String(p.flags.data)), 'http.token');
  if (!existsSync(file)) throw new UsageError(`call: no --token and no ${file}: pass the companion's token (ESPFLEET_TOKEN) or its --data folder`);
  return readFileSync(file, 'utf8').trim();
}

export async function runCall(p: Parsed): Promise<number> {
  const [device, method, raw] = p.positionals;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(device)) throw new UsageError(`call: device id must be 1-64 of A-Z a-z 0-9 _ -, got '${device}'`);
  if (!/^[A-Za-z0-9_.]{1,32}$/.test(method)) throw new UsageError(`call: method must be 1-32 of A-Z a-z 0-9 _ ., got '${method}'`);
  let params: unknown = {};
  if (raw !== undefined) {
    try {
      params = JSON.parse(raw);
    } catch (e) {
      throw new UsageError(`call: params are not valid JSON: ${(e as Error).message}`);
    }
    if (!params || typeof params !== 'object' || Array.isArray(params)) throw new UsageError('call: params must be a JSON object, e.g. \'{"sensor":"t"}\'');
  }
  const token = readToken(p);
  const timeoutMs = Number(p.flags.timeout);
  try {
    const { status, body } = await request(new URL(`/api/devices/${device}/rpc`, String(p.flags.url)).href, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ m: method, p: params, timeoutMs }),
    });
    if (status === 200) {
      const r = (body as { result?: unknown }).result;
      console.log(JSON.stringify(r, null, 2));
      return 0;
    }
    const err = (body as { error?: { code?: string; message?: string } }).error;
    return fail(`call ${device} ${method}: ${err?.code ?? status}: ${err?.message ?? JSON.stringify(body)}`);
  } catch (e) {
    if (e instanceof ConnectError) return fail(`call: ${e.message}`);
    throw e;
  }
}

/**
 * A reading for a table: integers as they are, fractions to 6 significant digits, so
 * 56.757000000000005 reads 56.757 (`--json` keeps the exact value).
 */
export function readingText(v: unknown): string {
  if (typeof v !== 'number' || !isFinite(v) || Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

/** Each sensor's newest value (the view's `sensors`), or the newest reading from an older companion. */
function latestText(d: Record<string, any>): string {
  const sensors = d.sensors && typeof d.sensors === 'object' ? Object.entries(d.sensors as Record<string, { v: unknown }>) : [];
  if (sensors.length) return sensors.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => `${k}=${readingText(x?.v)}`).join(' ');
  return d.latest ? Object.entries(d.latest.r ?? {}).map(([k, v]) => `${k}=${readingText(v)}`).join(' ') : '';
}

/** YYYY-MM-DD HH:MM:SS in this machine's time zone (the table is read by a person at it). */
export function localTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
