/**
 * The companion's RPC client: request-response to devices over the bus, built on the firmware's
 * resilience cores (one protocol definition, two sides). Each call carries a correlation id that
 * is also its idempotency key: a retry re-sends the SAME id, so a device that already executed
 * it answers from its cache instead of executing twice. A per-device circuit breaker stops
 * hammering a device that does not answer; the request carries its deadline (`dl`, companion
 * wall clock) so a device drops work nobody waits for.
 *
 * Errors are RpcError with a stable code: timeout, device_down, breaker_open, device_error,
 * bad_request, busy.
 */
import { randomBytes } from 'node:crypto';
import { BREAKER_STATE_NAMES, CircuitBreaker } from '../../firmware/core/circuit-breaker.js';
import type { Bus } from '../bus/bus.js';
import { RpcError, type RpcResult } from '../companion-api.js';

export interface RpcClientOptions {
  bus: Bus;
  /** Attempts per call within its timeout (default 3). */
  attemptsMax?: number;
  /** Failed calls in a row that open a device's breaker (default 3). */
  breakerFailures?: number;
  /** How long a device's breaker stays open (default 15 s). */
  breakerOpenMs?: number;
  /** Calls waiting for an answer at once, all devices (default 1024). */
  pendingMax?: number;
  now?: () => number;
  onBreaker?: (deviceId: string, state: string) => void;
  log?: (line: string, fields?: Record<string, unknown>) => void;
}

/** Method names and params are small: a bound keeps a hostile API caller from bloating requests. */
export const METHOD_CHARS_MAX = 32;
export const PARAMS_BYTES_MAX = 768;

interface Pending {
  device: string;
  resolve: (msg: { r?: unknown; e?: { code: string; msg: string } }) => void;
}

export class RpcClient {
  readonly counters = { calls: 0, ok: 0, failed: 0, retries: 0, late: 0, malformed: 0 };
  private readonly pending = new Map<string, Pending>();
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly now: () => number;
  private unsubscribe: (() => Promise<void>) | null = null;

  constructor(private readonly o: RpcClientOptions) {
    this.now = o.now ?? Date.now;
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.o.bus.subscribe('espfleet/+/rpc/res', (topic, payload) => this.onResponse(topic, payload));
  }

  async stop(): Promise<void> {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.resolve({ e: { code: 'stopped', msg: 'companion stopping' } });
    }
    await this.unsubscribe?.();
    this.unsubscribe = null;
  }

  breakerState(device: string): string {
    const b = this.breakers.get(device);
    if (!b) return 'closed';
    b.tick(this.now());
    return BREAKER_STATE_NAMES[b.state];
  }

  private breaker(device: string): CircuitBreaker {
    let b = this.breakers.get(device);
    if (!b) {
      b = new CircuitBreaker({
        consecutiveFailures: this.o.breakerFailures ?? 3,
        openMs: this.o.breakerOpenMs ?? 15000,
        probeTimeoutMs: 60000,
        onEvent: (name) => this.o.onBreaker?.(device, name),
      });
      this.breakers.set(device, b);
    }
    return b;
  }

  /**
   * Calls `method` on `device`. online: whether the device has a session now (a call to a device
   * known to be down fails at once with device_down rather than waiting out its timeout).
   */
  async call(device: string, method: string, params: unknown, timeoutMs: number, online: boolean): Promise<RpcResult> {
    if (typeof method !== 'string' || method.length === 0 || method.length > METHOD_CHARS_MAX) {
      throw new RpcError('bad_request', `method must be a name of 1-${METHOD_CHARS_MAX} characters`);
    }
    if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params))) {
      throw new RpcError('bad_request', 'params must be a JSON object');
    }
    if (!(timeoutMs >= 100 && timeoutMs <= 120000)) throw new RpcError('bad_request', 'timeout must be 100-120000 ms');
    if (!online) throw new RpcError('device_down', `device ${device} has no session`);
    if (this.pending.size >= (this.o.pendingMax ?? 1024)) throw new RpcError('busy', 'too many calls in flight');
    const breaker = this.breaker(device);
    const started = this.now();
    if (!breaker.allow(started)) throw new RpcError('breaker_open', `breaker for ${device} is open after repeated failures; retry later`);
    this.counters.calls++;
    const id = randomBytes(8).toString('hex');
    const deadline = started + timeoutMs;
    const body = JSON.stringify({ id, m: method, p: params ?? {}, dl: deadline });
    if (body.length > PARAMS_BYTES_MAX + 128) {
      breaker.release();
      throw new RpcError('bad_request', `request over ${PARAMS_BYTES_MAX} bytes of params`);
    }
    const attemptsMax = Math.max(1, this.o.attemptsMax ?? 3);
    const perAttempt = Math.max(200, Math.floor(timeoutMs / attemptsMax));
    let attempts = 0;
    try {
      while (this.now() < deadline) {
        attempts++;
        if (attempts > 1) this.counters.retries++;
        const wait = Math.min(perAttempt, deadline - this.now());
        const reply = await this.attempt(device, id, body, wait);
        if (reply === null) continue;
        if (reply.e) {
          // The device answered: it is alive, whatever it thought of the request.
          breaker.success(this.now());
          this.counters.failed++;
          throw new RpcError('device_error', `${device}: ${reply.e.code}: ${reply.e.msg}`, reply.e);
        }
        breaker.success(this.now());
        this.counters.ok++;
        return { result: reply.r, ms: this.now() - started, attempts };
      }
      breaker.failure(this.now());
      this.counters.failed++;
      throw new RpcError('timeout', `${device} did not answer ${method} within ${timeoutMs} ms (${attempts} attempts)`);
    } catch (e) {
      if (!(e instanceof RpcError)) {
        breaker.release();
        throw e;
      }
      throw e;
    }
  }

  /** One send of the request; resolves with the reply, or null when waitMs passed without one. */
  private attempt(device: string, id: string, body: string, waitMs: number): Promise<{ r?: unknown; e?: { code: string; msg: string } } | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(null);
      }, waitMs);
      this.pending.set(id, {
        device,
        resolve: (msg) => {
          clearTimeout(timer);
          this.pending.delete(id);
          resolve(msg);
        },
      });
      this.o.bus.publish(`espfleet/${device}/rpc/req`, body, { qos: 1 }).catch((err) => {
        this.o.log?.('rpc publish failed', { device, error: String(err) });
      });
    });
  }

  private onResponse(topic: string, payload: Buffer): void {
    const device = topic.split('/')[1];
    let msg: { id?: unknown; r?: unknown; e?: { code: string; msg: string } };
    try {
      msg = JSON.parse(payload.toString('utf8'));
    } catch {
      this.counters.malformed++;
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.id !== 'string') {
      this.counters.malformed++;
      return;
    }
    const p = this.pending.get(msg.id);
    // A reply from another device than the one asked is ignored: ids are random, so this is forgery.
    if (!p || p.device !== device) {
      this.counters.late++;
      return;
    }
    if (msg.e !== undefined && (typeof msg.e !== 'object' || msg.e === null)) {
      p.resolve({ e: { code: 'malformed', msg: 'error reply without code' } });
      return;
    }
    p.resolve(msg.e ? { e: { code: String(msg.e.code), msg: String(msg.e.msg) } } : { r: msg.r });
  }
}
