/**
 * Composition: a call passes through layers in the order the caller lists them, outermost
 * first, e.g. `new Policy([new Deadline(5000), retryPolicy, breaker])`:
 * - Deadline(timeoutMs): everything inside must finish within timeoutMs of entering the layer,
 *   or it is abandoned with reason 'timeout' (inside layers see the timeout as the outcome).
 * - RetryPolicy: the layers inside run again after a failure (retry.ts rules).
 * - CircuitBreaker: admits or rejects (reason 'open' or 'isolated'); sees the outcome.
 * Order is meaning: [retry, breaker] counts every attempt in the breaker and retries an open
 * breaker once it will admit a probe; [breaker, retry] counts one outcome per whole retry run;
 * [retry, Deadline] bounds each attempt; [Deadline, retry] bounds the whole run.
 *
 * A `Call` is one call through the policy, as a pure state machine driven by the shell:
 *
 *   a = call.start(now, deadlineMs?)      RUN: run the operation now (remember call.token)
 *   a = call.succeeded(now, token)        WAIT: sleep until call.nextDeadlineMs(), then tick
 *   a = call.failed(now, token, reason)   DONE / FAILED: finished (call.reason on failure)
 *   a = call.tick(now)                    at call.nextDeadlineMs(): waits end, deadlines fire
 *   a = call.cancel(now)                  the caller gave up
 *
 * Each method returns the new state (CALL_*). An outcome whose token is not the running
 * attempt's (it came after a timeout or a cancel) changes nothing and is counted in
 * `lateCount`. An outcome reported at or after an active deadline is judged as if tick() had
 * run first: the deadline wins, so the result does not depend on the timer's punctuality.
 * The call's own deadline (start's deadlineMs, e.g. the deadline carried by an RPC request)
 * is the outermost of all and fails the call with reason 'deadline'.
 *
 * Outcomes flow outward: a breaker counts a failure only if it is still in the epoch that
 * admitted the call (circuit-breaker.ts), a retry may turn a failure into a wait, and a
 * failure the policy does not handle (`handles(reason)` false) passes straight out: breakers
 * release the call with no verdict and retries give up ('fatal'), like an exception that is
 * not a fault of the dependency. A cancel releases breakers likewise; a timeout counts as a
 * failure in the breakers it abandons.
 *
 * Allocation: a Call holds its per-layer state in arrays sized once; `start()` reuses them, so
 * a shell that keeps its Call objects (a device supervisor, the host's pool) allocates nothing
 * per successful call. The hot path of [retry, breaker] is a few field writes per layer.
 */
import { CircuitBreaker, ISOLATED } from './circuit-breaker.js';
import { Retry, RetryPolicy } from './retry.js';

export var CALL_IDLE = 0;
export var CALL_RUN = 1;
export var CALL_WAIT = 2;
export var CALL_DONE = 3;
export var CALL_FAILED = 4;
export var CALL_STATE_NAMES = ['idle', 'run', 'wait', 'done', 'failed'];

/** Reasons the layers produce themselves. */
export var REASON_OPEN = 'open';
export var REASON_ISOLATED = 'isolated';
export var REASON_TIMEOUT = 'timeout';
export var REASON_DEADLINE = 'deadline';
export var REASON_CANCELLED = 'cancelled';

var K_DEADLINE = 0;
var K_RETRY = 1;
var K_BREAKER = 2;

/** A time limit on everything inside it, counted from entering the layer. */
export class Deadline {
  timeoutMs: number;

  constructor(timeoutMs: number) {
    if (!(timeoutMs >= 0)) throw new Error('deadline: timeoutMs must be >= 0');
    this.timeoutMs = timeoutMs;
  }
}

export type Layer = Deadline | RetryPolicy | CircuitBreaker;

export interface PolicyOptions {
  /** Which failures are faults of the dependency. Default: all. */
  handles?: (reason: any) => boolean;
}

export class Policy {
  _l: Layer[];
  _k: number[];
  _h: ((reason: any) => boolean) | null;

  constructor(layers: Layer[], o?: PolicyOptions) {
    var i: number;
    var l: Layer;
    this._l = layers;
    this._k = [];
    for (i = 0; i < layers.length; i++) {
      l = layers[i];
      if (l instanceof Deadline) this._k.push(K_DEADLINE);
      else if (l instanceof RetryPolicy) this._k.push(K_RETRY);
      else if (l instanceof CircuitBreaker) this._k.push(K_BREAKER);
      else throw new Error('policy: layer ' + i + ' is not a Deadline, RetryPolicy or CircuitBreaker');
    }
    this._h = (o && o.handles) || null;
  }

  /** A new, idle call through this policy; keep it and start() it again for the next call. */
  call(): Call {
    return new Call(this);
  }
}

export class Call {
  /** CALL_* code. */
  state: number;
  /** Operations run so far in this call. */
  attempt: number;
  /** Identifies the running attempt; outcomes must carry it. */
  token: number;
  /** Why the call failed (the last failure reported, or one of the REASON_* codes). */
  reason: any;
  /** The call's own deadline (Infinity: none). */
  deadlineMs: number;
  /** Outcomes that arrived for an attempt no longer running. */
  lateCount: number;
  _p: Policy;
  /** Per layer: the Retry of a retry layer. */
  _r: (Retry | null)[];
  /** Per layer: the active deadline of an entered Deadline layer, else Infinity. */
  _d: number[];
  /** Per layer: the breaker epoch that admitted the attempt, -1 when none. */
  _e: number[];
  /** Layers entered, from the outermost: [0, _in). */
  _in: number;
  /** The retry layer that is waiting, -1 when none. */
  _wl: number;

  constructor(p: Policy) {
    var i: number;
    this._p = p;
    this._r = [];
    this._d = [];
    this._e = [];
    for (i = 0; i < p._l.length; i++) {
      this._r.push(p._k[i] === K_RETRY ? new Retry(p._l[i] as RetryPolicy) : null);
      this._d.push(Infinity);
      this._e.push(-1);
    }
    this.state = CALL_IDLE;
    this.attempt = 0;
    this.token = 0;
    this.reason = undefined;
    this.deadlineMs = Infinity;
    this.lateCount = 0;
    this._in = 0;
    this._wl = -1;
  }

  /** Begins the call at nowMs; deadlineMs (absolute) is its own deadline. */
  start(nowMs: number, deadlineMs?: number): number {
    if (this.state === CALL_RUN || this.state === CALL_WAIT) this.cancel(nowMs);
    this.deadlineMs = deadlineMs === undefined ? Infinity : deadlineMs;
    this.attempt = 0;
    this.reason = undefined;
    if (nowMs >= this.deadlineMs) return this._end(CALL_FAILED, REASON_DEADLINE);
    return this._go(nowMs, 0, true, false, undefined, undefined);
  }

  succeeded(nowMs: number, token: number): number {
    if (this.state !== CALL_RUN || token !== this.token || this._expire(nowMs)) {
      this.lateCount++;
      return this.state;
    }
    return this._go(nowMs, this._in - 1, false, true, undefined, undefined);
  }

  /** retryAtMs: optional hint from the failure of when another attempt could succeed. */
  failed(nowMs: number, token: number, reason: any, retryAtMs?: number): number {
    if (this.state !== CALL_RUN || token !== this.token || this._expire(nowMs)) {
      this.lateCount++;
      return this.state;
    }
    return this._go(nowMs, this._in - 1, false, false, reason, retryAtMs);
  }

  /** Ends a wait that is over and fires deadlines that have passed. */
  tick(nowMs: number): number {
    var i: number;
    if (this._expire(nowMs)) return this.state;
    if (this.state === CALL_WAIT && (this._r[this._wl] as Retry).tick(nowMs)) {
      i = this._wl;
      this._wl = -1;
      return this._go(nowMs, i + 1, true, false, undefined, undefined);
    }
    return this.state;
  }

  cancel(nowMs: number): number {
    if (this.state !== CALL_RUN && this.state !== CALL_WAIT) return this.state;
    this._abandon(nowMs, 0, REASON_CANCELLED);
    return this._end(CALL_FAILED, REASON_CANCELLED);
  }

  /** When tick() must run next: the end of a wait or the earliest active deadline. */
  nextDeadlineMs(): number {
    var d = this.deadlineMs;
    var i: number;
    if (this.state !== CALL_RUN && this.state !== CALL_WAIT) return Infinity;
    for (i = 0; i < this._in; i++) if (this._d[i] < d) d = this._d[i];
    if (this.state === CALL_WAIT && (this._r[this._wl] as Retry).wakeMs < d) d = (this._r[this._wl] as Retry).wakeMs;
    return d;
  }

  /**
   * Fires the outermost deadline that has passed, if any: the call's own (the call fails) or a
   * Deadline layer's (inside it is abandoned, then the timeout flows outward from it).
   */
  _expire(nowMs: number): boolean {
    var i: number;
    if (this.state !== CALL_RUN && this.state !== CALL_WAIT) return false;
    if (nowMs >= this.deadlineMs) {
      this._abandon(nowMs, 0, REASON_DEADLINE);
      this._end(CALL_FAILED, REASON_DEADLINE);
      return true;
    }
    for (i = 0; i < this._in; i++) {
      if (nowMs >= this._d[i]) {
        this._abandon(nowMs, i + 1, REASON_TIMEOUT);
        this._go(nowMs, i, false, false, REASON_TIMEOUT, undefined);
        return true;
      }
    }
    return false;
  }

  /**
   * Unwinds the entered layers from the innermost down to layer `to` without giving any of
   * them a chance to retry: breakers count a timeout or deadline as a failure (the dependency
   * did not answer in time) and release a cancel (no verdict); retries stop with `why`.
   * The running attempt's token is retired so its outcome will be late.
   */
  _abandon(nowMs: number, to: number, why: string): void {
    var p = this._p;
    var i: number;
    var b: CircuitBreaker;
    this.token++;
    this._wl = -1;
    for (i = this._in - 1; i >= to; i--) {
      if (p._k[i] === K_BREAKER) {
        b = p._l[i] as CircuitBreaker;
        if (this._e[i] === b.epoch) {
          if (why !== REASON_CANCELLED) b.failure(nowMs);
          else b.release();
        }
        this._e[i] = -1;
      } else if (p._k[i] === K_RETRY) {
        (this._r[i] as Retry).cancel(why);
      } else {
        this._d[i] = Infinity;
      }
    }
    this._in = to;
  }

  /**
   * The engine: enters layers from i inward (down) or passes an outcome from layer i outward,
   * switching direction when a breaker rejects or a retry schedules another attempt, until the
   * call runs, waits or ends. A loop, not recursion, so retries without delay cost no stack.
   */
  _go(nowMs: number, i: number, down: boolean, ok: boolean, reason: any, hint: any): number {
    var p = this._p;
    var n = p._l.length;
    var k: number;
    var l: Layer;
    var r: Retry;
    var w: number;
    var handled = true;
    for (;;) {
      if (down) {
        if (i === n) {
          this.attempt++;
          this.token++;
          this.state = CALL_RUN;
          return CALL_RUN;
        }
        k = p._k[i];
        l = p._l[i];
        if (k === K_BREAKER) {
          if (!(l as CircuitBreaker).allow(nowMs)) {
            down = false;
            reason = (l as CircuitBreaker).state === ISOLATED ? REASON_ISOLATED : REASON_OPEN;
            hint = (l as CircuitBreaker).nextDeadlineMs();
            this._in = i;
            i--;
            continue;
          }
          this._e[i] = (l as CircuitBreaker).epoch;
        } else if (k === K_RETRY) {
          w = (this._r[i] as Retry).start(nowMs, this._limit(i));
          if (w < 0) {
            down = false;
            reason = REASON_DEADLINE;
            hint = undefined;
            this._in = i;
            i--;
            continue;
          }
          if (w > 0) return this._wait(i);
        } else {
          this._d[i] = nowMs + (l as Deadline).timeoutMs;
        }
        this._in = i + 1;
        i++;
      } else {
        if (i < 0) return this._end(ok ? CALL_DONE : CALL_FAILED, reason);
        if (!ok && handled && p._h && !p._h(reason)) handled = false;
        k = p._k[i];
        if (k === K_BREAKER) {
          l = p._l[i];
          if (this._e[i] === (l as CircuitBreaker).epoch) {
            if (ok) (l as CircuitBreaker).success(nowMs);
            else if (handled) (l as CircuitBreaker).failure(nowMs);
            else (l as CircuitBreaker).release();
          }
          this._e[i] = -1;
        } else if (k === K_RETRY) {
          r = this._r[i] as Retry;
          if (ok) r.success(nowMs);
          else if (!handled) r.cancel('fatal');
          else {
            w = r.failure(nowMs, reason, hint);
            if (w === 0) {
              down = true;
              i++;
              continue;
            }
            if (w > 0) return this._wait(i);
          }
        } else {
          this._d[i] = Infinity;
        }
        this._in = i;
        i--;
      }
    }
  }

  /** The tightest deadline enclosing layer i: no retry inside may start an attempt past it. */
  _limit(i: number): number {
    var d = this.deadlineMs;
    var j: number;
    for (j = 0; j < i; j++) if (this._d[j] < d) d = this._d[j];
    return d;
  }

  _wait(i: number): number {
    this._in = i + 1;
    this._wl = i;
    this.state = CALL_WAIT;
    return CALL_WAIT;
  }

  _end(st: number, reason: any): number {
    this.state = st;
    this.reason = st === CALL_FAILED ? reason : undefined;
    this._in = 0;
    this._wl = -1;
    return st;
  }
}
