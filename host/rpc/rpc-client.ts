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
 *
 * Correlation, deadlines and retransmission are PendingRequests (host/resilience), the async
 * face of the firmware's Requester core; the breaker is the firmware's CircuitBreaker core.
 */
import { BREAKER_STATE_NAMES, CircuitBreaker } from '../../firmware/core/circuit-breaker.js';
import type { Bus } from '../bus/bus.js';
import { PendingError, PendingRequests } from '../resilience/pending-requests.js';
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


export class RpcClient {
  readonly counters = { calls: 0, ok: 0, failed: 0, retries: 0, late: 0, malformed: 0 };
  private readonly pending: PendingRequests;
  /** Request id -> the device asked: a reply from any other device is ignored. */
  private readonly asked = new Map<string, string>();
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly now: () => number;
  private unsubscribe: (() => Promise<void>) | null = null;

  constructor(private readonly o: RpcClientOptions) {
    this.now = o.now ?? Date.now;
    this.pending = new PendingRequests({ inflightMax: o.pendingMax ?? 1024, now: this.now });
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.o.bus.subscribe('espfleet/+/rpc/res', (topic, payload) => this.onResponse(topic, payload));
  }

  async stop(): Promise<void> {
    this.pending.close();
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
    const p = JSON.stringify(params ?? {});
    if (p.length > PARAMS_BYTES_MAX) throw new RpcError('bad_request', `params over ${PARAMS_BYTES_MAX} bytes`);
    const breaker = this.breaker(device);
    const started = this.now();
    if (!breaker.allow(started)) throw new RpcError('breaker_open', `breaker for ${device} is open after repeated failures; retry later`);
    this.counters.calls++;
    const attemptsMax = Math.max(1, this.o.attemptsMax ?? 3);
    const perAttempt = Math.max(200, Math.floor(timeoutMs / attemptsMax));
    let sentId = '';
    // The request carries its id (also its idempotency key) and deadline; a retransmission is
    // the same bytes, so a device that already answered replays its answer.
    const send = (id: string, dl: number): Promise<void> => {
      sentId = id;
      this.asked.set(id, device);
      return this.o.bus.publish(`espfleet/${device}/rpc/req`, `{"id":${JSON.stringify(id)},"m":${JSON.stringify(method)},"p":${p},"dl":${dl}}`, { qos: 1 });
    };
    const retry = setInterval(() => {
      if (sentId && this.pending.resend(sentId)) this.counters.retries++;
    }, perAttempt);
    try {
      const reply = await this.pending.request(send, { deadlineMs: started + timeoutMs });
      // The device answered: it is alive, whatever it thought of the request.
      breaker.success(this.now());
      if (!reply.ok) {
        this.counters.failed++;
        const e = reply.value as { code: string; msg: string };
        throw new RpcError('device_error', `${device}: ${e.code}: ${e.msg}`, e);
      }
      this.counters.ok++;
      return { result: reply.value, ms: this.now() - started, attempts: reply.sends };
    } catch (e) {
      if (!(e instanceof PendingError)) throw e;
      if (e.code === 'deadline') {
        breaker.failure(this.now());
        this.counters.failed++;
        throw new RpcError('timeout', `${device} did not answer ${method} within ${timeoutMs} ms`);
      }
      breaker.release();
      if (e.code === 'full') throw new RpcError('busy', 'too many calls in flight');
      throw new RpcError('device_down', `${device}: ${e.message}`);
    } finally {
      clearInterval(retry);
      this.asked.delete(sentId);
    }
  }

  private onResponse(topic: string, payload: Buffer): void {
    const device = topic.split('/')[1];
    let msg: { id?: unknown; r?: unknown; e?: unknown };
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
    // A reply from another device than the one asked is ignored: ids are random, so this is forgery.
    if (this.asked.get(msg.id) !== device) {
      this.counters.late++;
      return;
    }
    if (msg.e !== undefined) {
      const e = msg.e as { code?: unknown; msg?: unknown } | null;
      const err = e && typeof e === 'object' ? { code: String(e.code), msg: String(e.msg) } : { code: 'malformed', msg: 'error reply without code' };
      if (!this.pending.receive(msg.id, false, err)) this.counters.late++;
    } else if (!this.pending.receive(msg.id, true, msg.r)) this.counters.late++;
  }
}
