/**
 * The host's async face of the resilience cores: `execute(fn)` runs fn through a policy
 * (deadline + retry + breaker layers from firmware/core, in the caller's order) with real timers.
 * All decisions are the pure cores' (policy.ts); this file only owns the clock, the timers, the
 * AbortSignals and the promises.
 *
 * Hot path: a call that starts at once, has no active deadline and no caller signal runs fn
 * directly and chains its promise to handlers bound once per pooled context, so a successful
 * call allocates nothing of ours: no closure, no timer, no AbortController, no Call (contexts
 * and their Call objects are pooled). Anything else (a wait, a deadline, a signal, a failure)
 * takes the general path, which may allocate freely.
 *
 * fn receives (signal, attempt): signal aborts when the attempt is abandoned (a deadline fired
 * or the caller cancelled); it is undefined on the hot path, where nothing can abandon it.
 * Errors: the last failure of fn as thrown, or a ResilienceError whose code is the core's
 * reason ('open', 'isolated', 'timeout', 'deadline', 'cancelled').
 */
import {
  CALL_DONE,
  CALL_FAILED,
  CALL_RUN,
  CALL_WAIT,
  Call,
  Layer,
  Policy,
  REASON_CANCELLED,
  REASON_DEADLINE,
  REASON_ISOLATED,
  REASON_OPEN,
  REASON_TIMEOUT,
} from '../../firmware/core/policy.js';

export type ResilienceCode = 'open' | 'isolated' | 'timeout' | 'deadline' | 'cancelled';

const MESSAGES: Record<ResilienceCode, string> = {
  open: 'circuit breaker is open',
  isolated: 'circuit breaker is isolated',
  timeout: 'timed out',
  deadline: 'deadline passed',
  cancelled: 'cancelled by the caller',
};
const CODES = new Set<string>([REASON_OPEN, REASON_ISOLATED, REASON_TIMEOUT, REASON_DEADLINE, REASON_CANCELLED]);

export class ResilienceError extends Error {
  constructor(readonly code: ResilienceCode) {
    super(MESSAGES[code]);
    this.name = 'ResilienceError';
  }
}

export type Operation<T> = (signal: AbortSignal | undefined, attempt: number) => T | PromiseLike<T>;

export interface ExecuteOptions {
  /** Cancels the call (the attempt's signal aborts, waits end): rejects with code 'cancelled'. */
  signal?: AbortSignal;
  /** The call's own absolute deadline in this executor's clock: rejects with code 'deadline'. */
  deadlineMs?: number;
}

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface ExecutorOptions {
  /** Which failures of fn are faults of the dependency (default: all); see policy.ts. */
  handles?: (reason: unknown) => boolean;
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** Timers (default setTimeout/clearTimeout); tests pass a manual scheduler. */
  timers?: Timers;
  /** Idle contexts kept for reuse: about the expected concurrency. Default 64. */
  poolMax?: number;
}

const realTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Per-call state, pooled: the core Call plus the two promise handlers bound once. */
class Ctx {
  readonly call: Call;
  fn: Operation<unknown> | null = null;
  token = 0;
  startMs = 0;
  value: unknown = undefined;
  /** Set while the general path waits: wakes it when the caller's signal aborts. */
  wake: (() => void) | null = null;
  readonly onOk: (v: unknown) => unknown;
  readonly onErr: (e: unknown) => unknown;

  constructor(ex: ResilienceExecutor) {
    this.call = ex.policy.call();
    // Bound once per context, never per call: the hot path passes these to then().
    this.onOk = (v) => {
      // No deadline was active and a success ignores the time: the start time will do.
      const st = this.call.succeeded(this.startMs, this.token);
      if (st === CALL_DONE) {
        ex._release(this);
        return v;
      }
      this.value = v;
      return ex._general(this, undefined, st);
    };
    this.onErr = (e) => ex._general(this, undefined, this.call.failed(ex.now(), this.token, e));
  }
}

export class ResilienceExecutor {
  readonly policy: Policy;
  readonly now: () => number;
  /** Outcomes of abandoned attempts (after a timeout or a cancel), dropped. */
  lateCount = 0;
  private lastNow = 0;
  private readonly timers: Timers;
  private readonly pool: Ctx[] = [];
  private readonly poolMax: number;

  constructor(layers: Layer[] | Policy, o: ExecutorOptions = {}) {
    this.policy = layers instanceof Policy ? layers : new Policy(layers, o.handles ? { handles: o.handles } : undefined);
    this.now = o.now ?? Date.now;
    this.lastNow = this.now();
    this.timers = o.timers ?? realTimers;
    this.poolMax = o.poolMax ?? 64;
  }

  execute<T>(fn: Operation<T>, o?: ExecuteOptions): Promise<T> {
    const ctx = this.pool.pop() ?? new Ctx(this);
    const call = ctx.call;
    // Read the clock only when a decision depends on it (policy.timed()): a clock read can cost
    // more than the whole core. Otherwise the last reading stands in; failures read it afresh.
    const now = o?.deadlineMs !== undefined || this.policy.timed() ? (this.lastNow = this.now()) : this.lastNow;
    const st = call.start(now, o?.deadlineMs);
    ctx.fn = fn as Operation<unknown>;
    if (st !== CALL_RUN || o?.signal !== undefined || call.nextDeadlineMs() !== Infinity) {
      return this._general(ctx, o?.signal, st) as Promise<T>;
    }
    ctx.token = call.token;
    ctx.startMs = now;
    let r: T | PromiseLike<T>;
    try {
      r = fn(undefined, call.attempt);
    } catch (e) {
      return ctx.onErr(e) as Promise<T>;
    }
    if (r !== null && (typeof r === 'object' || typeof r === 'function') && typeof (r as PromiseLike<T>).then === 'function') {
      return (r as PromiseLike<T>).then(ctx.onOk as (v: T) => T, ctx.onErr as (e: unknown) => T) as Promise<T>;
    }
    return Promise.resolve(ctx.onOk(r) as T);
  }

  /** @internal Puts a finished context back in the pool. */
  _release(ctx: Ctx): void {
    ctx.fn = null;
    ctx.value = undefined;
    ctx.wake = null;
    if (this.pool.length < this.poolMax) this.pool.push(ctx);
  }

  /** @internal The general path: runs the call to its end from state st. */
  async _general(ctx: Ctx, signal: AbortSignal | undefined, st: number): Promise<unknown> {
    const call = ctx.call;
    const onAbort = () => (ctx.wake ? ctx.wake() : undefined);
    if (signal) {
      if (signal.aborted) st = call.cancel(this.now());
      else signal.addEventListener('abort', onAbort);
    }
    try {
      for (;;) {
        // An abort between two steps (no wake handler registered then) is caught here.
        if (signal?.aborted && (st === CALL_RUN || st === CALL_WAIT)) st = call.cancel(this.now());
        if (st === CALL_RUN) st = await this.attempt(ctx, signal);
        else if (st === CALL_WAIT) st = await this.sleep(ctx);
        else if (st === CALL_DONE) return ctx.value;
        else if (st === CALL_FAILED) throw toError(call.reason);
        else throw new Error('resilience: call in unexpected state ' + st);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this._release(ctx);
    }
  }

  /** Runs one attempt; resolves with the call's next state (outcome, timeout or cancel). */
  private attempt(ctx: Ctx, signal: AbortSignal | undefined): Promise<number> {
    const call = ctx.call;
    const token = call.token;
    const fn = ctx.fn as Operation<unknown>;
    return new Promise<number>((resolve) => {
      const guarded = signal !== undefined || call.nextDeadlineMs() !== Infinity;
      const ac = guarded ? new AbortController() : null;
      let timer: unknown = null;
      let settled = false;
      const finish = (st: number, abandoned: ResilienceCode | null) => {
        if (settled) return;
        settled = true;
        ctx.wake = null;
        if (timer !== null) this.timers.clear(timer);
        if (abandoned && ac) ac.abort(new ResilienceError(abandoned));
        resolve(st);
      };
      const arm = () => {
        const dl = call.nextDeadlineMs();
        if (dl === Infinity) return;
        timer = this.timers.set(() => {
          timer = null;
          const st = call.tick(this.now());
          if (call.token !== token || st !== CALL_RUN) finish(st, call.reason === REASON_DEADLINE ? 'deadline' : 'timeout');
          else arm();
        }, Math.max(0, dl - this.now()));
      };
      ctx.wake = () => finish(call.cancel(this.now()), 'cancelled');
      arm();
      const onValue = (v: unknown) => {
        if (settled || call.token !== token) {
          this.lateCount++;
          return;
        }
        const st = call.succeeded(this.now(), token);
        if (st === CALL_DONE) ctx.value = v;
        finish(st, null);
      };
      const onError = (e: unknown) => {
        if (settled || call.token !== token) {
          this.lateCount++;
          return;
        }
        finish(call.failed(this.now(), token, e), null);
      };
      try {
        Promise.resolve(fn(ac ? ac.signal : undefined, call.attempt)).then(onValue, onError);
      } catch (e) {
        onError(e);
      }
    });
  }

  /** Waits for the call's next deadline (a backoff or a breaker's reopening); resolves with the new state. */
  private sleep(ctx: Ctx): Promise<number> {
    const call = ctx.call;
    return new Promise<number>((resolve) => {
      const timer = this.timers.set(
        () => {
          ctx.wake = null;
          resolve(call.tick(this.now()));
        },
        Math.max(0, call.nextDeadlineMs() - this.now()),
      );
      ctx.wake = () => {
        ctx.wake = null;
        this.timers.clear(timer);
        resolve(call.cancel(this.now()));
      };
    });
  }
}

function toError(reason: unknown): unknown {
  return typeof reason === 'string' && CODES.has(reason) ? new ResilienceError(reason as ResilienceCode) : reason;
}
