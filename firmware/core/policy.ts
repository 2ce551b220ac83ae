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
import { CircuitBreaker, CLOSED, ISOLATED } from './circuit-breaker.js';
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
  declare timeoutMs: number;

  constructor(timeoutMs: number) {
    // Zero would let a retry around it start attempts that fail at once, forever.
    if (!(timeoutMs > 0)) throw new Error('deadline: timeoutMs must be > 0');
    this.timeoutMs = timeoutMs;
  }
}

export type Layer = Deadline | RetryPolicy | CircuitBreaker;

export interface PolicyOptions {
  /** Which failures are faults of the dependency. Default: all. */
  handles?: (reason: any) => boolean;
}

export class Policy {
  declare _l: Layer[];
  declare _k: number[];
  declare _h: ((reason: any) => boolean) | null;
  /** Whether a layer always needs the time: a Deadline, a retry with a budget or a phase. */
  declare _tm: boolean;

  constructor(layers: Layer[], o?: PolicyOptions) {
    var i: number;
    var l: Layer;
    this._l = layers;
    this._k = [];
    this._tm = false;
    for (i = 0; i < layers.length; i++) {
      l = layers[i];
      if (l instanceof Deadline) {
        this._k.push(K_DEADLINE);
        this._tm = true;
      } else if (l instanceof RetryPolicy) {
        this._k.push(K_RETRY);
        if (l._bm !== Infinity || l._pm > 0) this._tm = true;
      } else if (l instanceof CircuitBreaker) {
        this._k.push(K_BREAKER);
      } else {
        throw new Error('policy: layer ' + i + ' is not a Deadline, RetryPolicy or CircuitBreaker');
      }
    }
    this._h = (o && o.handles) || null;
  }

  /**
   * Whether a call started now, without a deadline of its own, would make a decision that
   * depends on the time: false when no layer has a deadline, budget or phase and every breaker
   * is closed (closed breakers and successes ignore the time). A shell whose clock is costly may
   * then pass any earlier reading of it to start() and to the success, and must read the clock
   * for everything else. (On some hosts one clock read costs more than the whole core.)
   */
  timed(): boolean {
    var i: number;
    if (this._tm) return true;
    for (i = 0; i < this._l.length; i++) if (this._k[i] === K_BREAKER && (this._l[i] as CircuitBreaker).state !== CLOSED) return true;
    return false;
  }

  /** A new, idle call through this policy; keep it and start() it again for the next call. */
  call(): Call {
    return new Call(this);
  }
}

export class Call {
  /** CALL_* code. */
  declare state: number;
  /** Operations run so far in this call. */
  declare attempt: number;
  /** Identifies the running attempt; outcomes must carry it. */
  declare token: number;
  /** Why the call failed (the last failure reported, or one of the REASON_* codes). */
  declare reason: any;
  /** The call's own deadline (Infinity: none). */
  declare deadlineMs: number;
  /** Outcomes that arrived for an attempt no longer running. */
  declare lateCount: number;
  declare _p: Policy;
  /** Per layer: the Retry of a retry layer. */
  declare _r: (Retry | null)[];
  /** Per layer: the active deadline of an entered Deadline layer, else Infinity. */
  declare _d: number[];
  /** Per layer: the breaker epoch that admitted the attempt, -1 when none. */
  declare _e: number[];
  /** Layers entered, from the outermost: [0, _in). */
  declare _in: number;
  /** The earliest active deadline: the call's own and those of the entered Deadline layers. */
  declare _dm: number;
  /** The retry layer that is waiting, -1 when none. */
  declare _wl: number;

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
    this._dm = Infinity;
    this._wl = -1;
  }

  /** Begins the call at nowMs; deadlineMs (absolute) is its own deadline. */
  start(nowMs: number, deadlineMs?: number): number {
    if (this.state === CALL_RUN || this.state === CALL_WAIT) this.cancel(nowMs);
    this.deadlineMs = deadlineMs === undefined ? Infinity : deadlineMs;
    this._dm = this.deadlineMs;
    this.attempt = 0;
    this.reason = undefined;
    if (nowMs >= this.deadlineMs) return this._end(CALL_FAILED, REASON_DEADLINE);
    return this._down(nowMs, 0);
  }

  succeeded(nowMs: number, token: number): number {
    if (this.state !== CALL_RUN || token !== this.token || (nowMs >= this._dm && this._expire(nowMs))) {
      this.lateCount++;
      return this.state;
    }
    return this._up(nowMs, this._in - 1, true, undefined, undefined);
  }

  /** retryAtMs: optional hint from the failure of when another attempt could succeed. */
  failed(nowMs: number, token: number, reason: any, retryAtMs?: number): number {
    if (this.state !== CALL_RUN || token !== this.token || (nowMs >= this._dm && this._expire(nowMs))) {
      this.lateCount++;
      return this.state;
    }
    return this._up(nowMs, this._in - 1, false, reason, retryAtMs);
  }

  /** Ends a wait that is over and fires deadlines that have passed. */
  tick(nowMs: number): number {
    var i: number;
    if (this._expire(nowMs)) return this.state;
    if (this.state === CALL_WAIT && (this._r[this._wl] as Retry).tick(nowMs)) {
      i = this._wl;
      this._wl = -1;
      return this._down(nowMs, i + 1);
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
    var d = this._dm;
    if (this.state !== CALL_RUN && this.state !== CALL_WAIT) return Infinity;
    if (this.state === CALL_WAIT && (this._r[this._wl] as Retry).wakeMs < d) d = (this._r[this._wl] as Retry).wakeMs;
    return d;
  }

  /**
   * Fires the outermost deadline that has passed, if any: the call's own (the call fails) or a
   * Deadline layer's (inside it is abandoned, then the timeout flows outward from it).
   */
  _expire(nowMs: number): boolean {
    var i: number;
    if (nowMs < this._dm || (this.state !== CALL_RUN && this.state !== CALL_WAIT)) return false;
    if (nowMs >= this.deadlineMs) {
      this._abandon(nowMs, 0, REASON_DEADLINE);
      this._end(CALL_FAILED, REASON_DEADLINE);
      return true;
    }
    for (i = 0; i < this._in; i++) {
      if (nowMs >= this._d[i]) {
        this._abandon(nowMs, i + 1, REASON_TIMEOUT);
        this._up(nowMs, i, false, REASON_TIMEOUT, undefined);
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
    this._dm = this._limit(to);
  }

  /**
   * Enters the layers from i inward. All admit: the attempt runs. A breaker rejects (or a retry
   * finds its deadline already passed): that failure flows outward from the layer before it.
   * _down and _up call each other only when a retry schedules an attempt with no delay, and a
   * synchronous rejection always carries a wait (an open breaker's reopening time) or ends the
   * retry, so the recursion stays a few frames deep; positive timeouts and budgets (asserted)
   * keep a retry from starting an inner layer that fails synchronously forever.
   */
  _down(nowMs: number, i: number): number {
    var p = this._p;
    var n = p._l.length;
    var k: number;
    var l: Layer;
    var w: number;
    for (; i < n; i++) {
      k = p._k[i];
      l = p._l[i];
      if (k === K_BREAKER) {
        if (!(l as CircuitBreaker).allow(nowMs)) {
          this._in = i;
          return this._up(nowMs, i - 1, false, (l as CircuitBreaker).state === ISOLATED ? REASON_ISOLATED : REASON_OPEN, (l as CircuitBreaker).nextDeadlineMs());
        }
        this._e[i] = (l as CircuitBreaker).epoch;
      } else if (k === K_RETRY) {
        // The entered layers are exactly those enclosing i: _dm is their tightest deadline.
        w = (this._r[i] as Retry).start(nowMs, this._dm);
        if (w < 0) {
          this._in = i;
          return this._up(nowMs, i - 1, false, REASON_DEADLINE, undefined);
        }
        if (w > 0) return this._wait(i);
      } else {
        w = nowMs + (l as Deadline).timeoutMs;
        this._d[i] = w;
        if (w < this._dm) this._dm = w;
      }
      this._in = i + 1;
    }
    this.attempt++;
    this.token++;
    this.state = CALL_RUN;
    return CALL_RUN;
  }

  /**
   * Passes an outcome outward from layer i: breakers count it (if still in the epoch that
   * admitted the attempt), Deadline layers close, a retry may turn a failure into a wait or an
   * immediate new attempt (back to _down); past the outermost layer the call ends.
   */
  _up(nowMs: number, i: number, ok: boolean, reason: any, hint: any): number {
    var p = this._p;
    var handled = ok || !p._h || p._h(reason);
    var k: number;
    var b: CircuitBreaker;
    var r: Retry;
    var w: number;
    for (; i >= 0; i--) {
      k = p._k[i];
      if (k === K_BREAKER) {
        b = p._l[i] as CircuitBreaker;
        if (this._e[i] === b.epoch) {
          if (ok) b.success(nowMs);
          else if (handled) b.failure(nowMs);
          else b.release();
        }
        this._e[i] = -1;
      } else if (k === K_RETRY) {
        r = this._r[i] as Retry;
        if (ok) r.success(nowMs);
        else if (!handled) r.cancel('fatal', reason);
        else {
          w = r.failure(nowMs, reason, hint);
          if (w === 0) return this._down(nowMs, i + 1);
          if (w > 0) return this._wait(i);
        }
      } else {
        this._d[i] = Infinity;
        this._dm = this._limit(i);
      }
      this._in = i;
    }
    return this._end(ok ? CALL_DONE : CALL_FAILED, reason);
  }

  /** The tightest deadline of the layers enclosing layer i (and of the call itself). */
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
