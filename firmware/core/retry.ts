/**
 * Retry as a pure state machine. A `RetryPolicy` is the shared, immutable configuration; a
 * `Retry` is one run of it (reusable: `start()` resets it, so a supervisor or a pooled call
 * allocates it once). The shell runs the attempts and reports their outcome with the time:
 *
 *   d = r.start(now)               d < 0: gave up; d === 0: run attempt 1 now; else wait
 *   r.tick(now)                    true when the wait is over: run attempt r.attempt now
 *   r.success(now)                 done
 *   d = r.failure(now, reason)     d < 0: gave up (r.why says why); else as for start()
 *
 * Rules, checked in this order on every failure:
 * 1. `retryable(reason)` false -> give up, why 'fatal'.
 * 2. `attempt >= attemptsMax` -> give up, why 'attempts'.
 * 3. delay = max(next backoff delay, retryAtMs - now) where retryAtMs is an optional hint from
 *    the failure (an open breaker says when it will admit a probe; a server says Retry-After).
 * 4. `now + delay >= deadline` -> give up, why 'deadline': an attempt that would start at or
 *    after the overall deadline could not finish before it, so the wait would be wasted.
 * The deadline is the earlier of `start(now) + budgetMs` and the deadline passed to start().
 * It bounds when attempts START; aborting a running attempt is the Deadline layer's job
 * (policy.ts), so the two stay separate concerns.
 *
 * Random phase: with `phaseMs > 0` the first attempt waits a uniform [0, phaseMs] (drawn from
 * the injected rng). A fleet that loses its broker at the same instant then reconnects spread
 * over the phase instead of in lock-step (the thundering-herd problem).
 *
 * Events: `onEvent('retry', r)` after a retry is scheduled (r.attempt is the attempt about to
 * run, r.delayMs the wait, r.reason the failure), `onEvent('giveUp', r)` (r.why, r.reason).
 * The Retry itself is the event data, so firing an event allocates nothing.
 */
import { Backoff, constantBackoff } from './backoff.js';
import { Rng } from './rng.js';

export var RETRY_IDLE = 0;
export var RETRY_WAITING = 1;
export var RETRY_RUNNING = 2;
export var RETRY_DONE = 3;
export var RETRY_GAVE_UP = 4;
export var RETRY_STATE_NAMES = ['idle', 'waiting', 'running', 'done', 'gaveUp'];

export interface RetryOptions {
  /**
   * Attempts in one run, the first included. Infinity only for a supervisor that must never
   * stop trying (it then sits behind a circuit breaker and a capped backoff).
   */
  attemptsMax: number;
  /** No attempt starts at or after start + budgetMs. Default: no budget. */
  budgetMs?: number;
  /** Delays between attempts; a fresh backoff (attempt 0). Default: no delay. */
  backoff?: Backoff;
  /** Which failures are worth another attempt. Default: all. */
  retryable?: (reason: any) => boolean;
  /** Random initial phase: the first attempt waits uniform [0, phaseMs]. Default 0. */
  phaseMs?: number;
  /** Required when phaseMs > 0. */
  rng?: Rng;
  onEvent?: (name: string, retry: Retry) => void;
}

export class RetryPolicy {
  declare _am: number;
  declare _bm: number;
  declare _bo: Backoff;
  declare _rf: ((reason: any) => boolean) | null;
  declare _pm: number;
  declare _rg: Rng | null;
  declare _ev: ((name: string, retry: Retry) => void) | null;

  constructor(o: RetryOptions) {
    var pm = o.phaseMs || 0;
    if (!(o.attemptsMax >= 1)) throw new Error('retry: attemptsMax must be >= 1');
    if (o.budgetMs !== undefined && !(o.budgetMs > 0)) throw new Error('retry: budgetMs must be > 0');
    if (pm > 0 && !o.rng) throw new Error('retry: phaseMs needs an rng');
    this._am = o.attemptsMax;
    this._bm = o.budgetMs === undefined ? Infinity : o.budgetMs;
    this._bo = o.backoff ? o.backoff.first() : constantBackoff({ baseMs: 0 });
    this._rf = o.retryable || null;
    this._pm = pm;
    this._rg = o.rng || null;
    this._ev = o.onEvent || null;
  }
}

export class Retry {
  /** RETRY_* code. */
  declare state: number;
  /** The attempt running or about to run, 1-based; 0 before start(). */
  declare attempt: number;
  /** When the next attempt is due (while waiting). */
  declare wakeMs: number;
  /** No attempt starts at or after this. */
  declare deadlineMs: number;
  /** The last wait chosen (phase or backoff), ms. */
  declare delayMs: number;
  /** The backoff position reached in this run. */
  declare backoff: Backoff;
  /** The last failure reported. */
  declare reason: any;
  /** After giving up: 'fatal' | 'attempts' | 'deadline' | 'cancelled'. */
  declare why: string;
  declare _p: RetryPolicy;

  constructor(p: RetryPolicy) {
    this._p = p;
    this.state = RETRY_IDLE;
    this.attempt = 0;
    this.wakeMs = Infinity;
    this.deadlineMs = Infinity;
    this.delayMs = 0;
    this.backoff = p._bo;
    this.reason = undefined;
    this.why = '';
  }

  /**
   * Begins a run at nowMs; deadlineMs (optional, absolute) tightens the policy's budget.
   * Returns the wait before attempt 1 (0: run it now), or -1 when the deadline has passed.
   */
  start(nowMs: number, deadlineMs?: number): number {
    var p = this._p;
    var dl = nowMs + p._bm;
    var d = 0;
    if (deadlineMs !== undefined && deadlineMs < dl) dl = deadlineMs;
    this.deadlineMs = dl;
    this.attempt = 1;
    this.backoff = p._bo;
    this.reason = undefined;
    this.why = '';
    if (nowMs >= dl) return this._giveUp('deadline');
    // A phase that would reach the deadline is dropped: being late beats not trying.
    if (p._pm > 0) {
      d = Math.floor((p._rg as Rng).next() * (p._pm + 1));
      if (nowMs + d >= dl) d = 0;
    }
    return this._wait(nowMs, d);
  }

  /** Returns true (and marks the attempt running) once a wait has ended. */
  tick(nowMs: number): boolean {
    if (this.state !== RETRY_WAITING || nowMs < this.wakeMs) return false;
    this.state = RETRY_RUNNING;
    this.wakeMs = Infinity;
    return true;
  }

  success(nowMs: number): void {
    if (this.state === RETRY_RUNNING) this.state = RETRY_DONE;
  }

  /**
   * The running attempt failed with reason. Returns the wait before the next attempt (0: run it
   * now) or -1 after giving up. A failure while not running (a stale report) changes nothing
   * and returns -1.
   */
  failure(nowMs: number, reason: any, retryAtMs?: number): number {
    var p = this._p;
    var d: number;
    if (this.state !== RETRY_RUNNING) return -1;
    this.reason = reason;
    if (p._rf && !p._rf(reason)) return this._giveUp('fatal');
    if (this.attempt >= p._am) return this._giveUp('attempts');
    this.backoff = this.backoff.next();
    d = this.backoff.delayMs;
    if (retryAtMs !== undefined && retryAtMs - nowMs > d) d = retryAtMs - nowMs;
    if (nowMs + d >= this.deadlineMs) return this._giveUp('deadline');
    this.attempt++;
    d = this._wait(nowMs, d);
    if (p._ev) p._ev('retry', this);
    return d;
  }

  /**
   * Stops the run from outside (caller cancelled, enclosing deadline passed, a failure that is
   * not the dependency's fault); reason, when given, becomes the last failure.
   */
  cancel(why: string, reason?: any): void {
    if (this.state !== RETRY_WAITING && this.state !== RETRY_RUNNING) return;
    if (reason !== undefined) this.reason = reason;
    this._giveUp(why);
  }

  /** When this run needs a wake-up (Infinity: none). */
  nextDeadlineMs(): number {
    return this.wakeMs;
  }

  _wait(nowMs: number, d: number): number {
    this.delayMs = d;
    if (d > 0) {
      this.state = RETRY_WAITING;
      this.wakeMs = nowMs + d;
    } else {
      this.state = RETRY_RUNNING;
      this.wakeMs = Infinity;
    }
    return d;
  }

  _giveUp(why: string): number {
    this.state = RETRY_GAVE_UP;
    this.wakeMs = Infinity;
    this.why = why;
    if (this._p._ev) this._p._ev('giveUp', this);
    return -1;
  }
}
