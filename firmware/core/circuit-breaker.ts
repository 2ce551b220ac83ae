/**
 * Circuit breaker as a pure state machine: closed -> open -> half-open -> closed (or back to
 * open), plus a manual isolated state. Time is an argument of every method; nothing here reads
 * a clock or starts a timer. The shell asks `allow(now)` before a call and reports the outcome
 * with `success(now)` / `failure(now)` (or `release()` for an admitted call that ended with no
 * verdict, e.g. cancelled by its caller).
 *
 * Opening (from closed), either strategy or both:
 * - consecutive: `consecutiveFailures` failures in a row;
 * - rate: over the last `windowSize` calls (a count window), once at least `callsMin` calls
 *   are in it, failures / calls >= `failureRate`.
 * Open lasts `openMs`, or the next delay of `openBackoff` when given: the backoff advances each
 * time a half-open probe fails and starts over when the breaker closes, so a dead peer is
 * probed less and less often (e.g. decorrelated jitter, capped).
 * Half-open admits at most `probesMax` calls in total. It closes once `probesToClose` of them
 * succeed, and reopens as soon as enough fail that this can no longer happen
 * (failures > probesMax - probesToClose). With the defaults (1, 1) one probe decides.
 * A probe that has not reported within `probeTimeoutMs` of entering half-open counts as failed,
 * so a lost outcome cannot wedge the breaker in half-open.
 * Outcomes reported while open or isolated are ignored (calls admitted before the breaker
 * opened). `epoch` increases on every transition so a caller can tell whether the state it was
 * admitted under still holds (policy.ts only reports outcomes of its own epoch).
 *
 * Transitions are lazy: open becomes half-open when `allow()` or `tick()` runs at or after the
 * end of the open period. `nextDeadlineMs()` tells the shell when a `tick()` would change
 * something, so one board timer can drive every core.
 *
 * Events: `onEvent(name, breaker)` on every transition, name in 'open' | 'halfOpen' | 'closed'
 * | 'isolated', fired AFTER the state has changed (read breaker.state, openMs, openedAtMs).
 *
 * Persistence: `toJSON()` is a small plain object; `restoreBreaker(opts, json, nowMs)` rebuilds
 * the breaker (a device keeps it across a reboot or deep sleep). Half-open is saved as open
 * with its open period already over, so a restored breaker probes at once. Call toJSON()
 * yourself (`Storage.writeJSON(name, breaker.toJSON())`): Espruino's JSON.stringify does not
 * call toJSON methods, it would dump the private fields instead.
 */
import { Backoff, constantBackoff, restoreBackoff } from './backoff.js';

export var CLOSED = 0;
export var OPEN = 1;
export var HALF_OPEN = 2;
export var ISOLATED = 3;
export var BREAKER_STATE_NAMES = ['closed', 'open', 'halfOpen', 'isolated'];

/** Largest count window: 32 words of 32 bits; larger windows only cost memory, not accuracy. */
export var WINDOW_SIZE_MAX = 1024;

export interface BreakerOptions {
  /** Open after this many failures in a row. Default 5 unless failureRate is given. */
  consecutiveFailures?: number;
  /** Open when failures / calls >= failureRate over the window, 0 < rate <= 1. */
  failureRate?: number;
  /** Calls in the count window (rate strategy); 1..WINDOW_SIZE_MAX. Default 20. */
  windowSize?: number;
  /** Fewest calls in the window before the rate is judged. Default windowSize. */
  callsMin?: number;
  /** Fixed open duration. Default 10000 (ignored when openBackoff is given). */
  openMs?: number;
  /** Open duration from a backoff; grows while probes keep failing. */
  openBackoff?: Backoff;
  /** Calls admitted in one half-open period. Default 1. */
  probesMax?: number;
  /** Successful probes needed to close; 1..probesMax. Default probesMax. */
  probesToClose?: number;
  /** A probe silent this long after half-open began counts as failed; 0 disables. Default 60000. */
  probeTimeoutMs?: number;
  onEvent?: (name: string, breaker: CircuitBreaker) => void;
}

/** What toJSON() returns; short keys because it is stored in flash and parsed at boot. */
export interface BreakerJSON {
  s: number;
  o: number;
  d: number;
  b: number[] | 0;
  c: number;
  w?: number[];
  n?: number;
  f?: number;
  i?: number;
}

export class CircuitBreaker {
  /** CLOSED | OPEN | HALF_OPEN | ISOLATED. */
  declare state: number;
  /** Increases on every transition. */
  declare epoch: number;
  /** When the current open period began and how long it lasts. */
  declare openedAtMs: number;
  declare openMs: number;
  declare _cf: number;
  declare _fr: number;
  declare _ws: number;
  declare _cm: number;
  declare _pm: number;
  declare _pc: number;
  declare _pt: number;
  declare _b0: Backoff;
  declare _ev: ((name: string, breaker: CircuitBreaker) => void) | null;
  /** Open-duration backoff position (null while closed). */
  declare _bo: Backoff | null;
  /** Consecutive failures. */
  declare _c: number;
  /** Count window: one bit per call (1 = failure), ring position _i, _n calls, _f failures. */
  declare _w: number[];
  declare _i: number;
  declare _n: number;
  declare _f: number;
  /** Half-open: since when, probes admitted, succeeded, failed. */
  declare _ht: number;
  declare _pa: number;
  declare _ps: number;
  declare _pf: number;

  constructor(o: BreakerOptions) {
    var rate = o.failureRate || 0;
    var ws = rate > 0 ? o.windowSize || 20 : 0;
    var pm = o.probesMax || 1;
    var i: number;
    this._cf = o.consecutiveFailures || (rate > 0 ? 0 : 5);
    this._fr = rate;
    this._ws = ws;
    this._cm = o.callsMin || ws;
    this._pm = pm;
    this._pc = o.probesToClose || pm;
    this._pt = o.probeTimeoutMs === undefined ? 60000 : o.probeTimeoutMs;
    this._b0 = o.openBackoff ? o.openBackoff.first() : constantBackoff({ baseMs: o.openMs === undefined ? 10000 : o.openMs });
    this._ev = o.onEvent || null;
    if (!(rate >= 0 && rate <= 1) || ws > WINDOW_SIZE_MAX || this._cm > ws || this._pc > pm || this._pc < 1) {
      throw new Error('breaker: bad failureRate, windowSize, callsMin or probes');
    }
    this._w = [];
    for (i = 0; i < ws; i += 32) this._w.push(0);
    this.state = CLOSED;
    this.epoch = 0;
    this.openedAtMs = 0;
    this.openMs = 0;
    this._bo = null;
    this._c = 0;
    this._i = 0;
    this._n = 0;
    this._f = 0;
    this._ht = 0;
    this._pa = 0;
    this._ps = 0;
    this._pf = 0;
  }

  /** May a call start now? A true in half-open takes one probe slot. */
  allow(nowMs: number): boolean {
    var s = this.state;
    if (s === CLOSED) return true;
    if (s === ISOLATED) return false;
    if (s === OPEN) {
      if (nowMs < this.openedAtMs + this.openMs) return false;
      this._halfOpen(nowMs);
    } else if (this._probeLate(nowMs)) {
      this._open(nowMs);
      return false;
    }
    if (this._pa >= this._pm) return false;
    this._pa++;
    return true;
  }

  success(nowMs: number): void {
    var s = this.state;
    if (s === CLOSED) {
      this._c = 0;
      if (this._ws) this._record(0);
    } else if (s === HALF_OPEN && this._pa > this._ps + this._pf) {
      if (++this._ps >= this._pc) this._close();
    }
  }

  failure(nowMs: number): void {
    var s = this.state;
    if (s === CLOSED) {
      this._c++;
      if (this._ws) this._record(1);
      if ((this._cf && this._c >= this._cf) || (this._ws && this._n >= this._cm && this._f >= this._fr * this._n)) {
        this._open(nowMs);
      }
    } else if (s === HALF_OPEN && this._pa > this._ps + this._pf) {
      if (++this._pf > this._pm - this._pc) this._open(nowMs);
    }
  }

  /** An admitted call ended with no verdict: in half-open its probe slot is given back. */
  release(): void {
    if (this.state === HALF_OPEN && this._pa > this._ps + this._pf) this._pa--;
  }

  /** Applies the transitions that are due at nowMs (see nextDeadlineMs). */
  tick(nowMs: number): void {
    if (this.state === OPEN && nowMs >= this.openedAtMs + this.openMs) this._halfOpen(nowMs);
    else if (this.state === HALF_OPEN && this._probeLate(nowMs)) this._open(nowMs);
  }

  /** When tick() would next change the state; Infinity when nothing is scheduled. */
  nextDeadlineMs(): number {
    if (this.state === OPEN) return this.openedAtMs + this.openMs;
    if (this.state === HALF_OPEN && this._pt > 0 && this._pa > this._ps + this._pf) return this._ht + this._pt;
    return Infinity;
  }

  /** Holds the breaker open until reset(), whatever happens. */
  isolate(nowMs: number): void {
    if (this.state === ISOLATED) return;
    this._clear();
    this._to(ISOLATED, 'isolated');
  }

  /** Back to closed with empty counters and the open backoff started over. */
  reset(nowMs: number): void {
    this._bo = null;
    this._clear();
    if (this.state !== CLOSED) this._to(CLOSED, 'closed');
  }

  toJSON(): BreakerJSON {
    var s = this.state;
    var j: BreakerJSON = {
      s: s === HALF_OPEN ? OPEN : s,
      o: s === HALF_OPEN ? this._ht - this.openMs : this.openedAtMs,
      d: this.openMs,
      b: this._bo ? this._bo.toJSON() : 0,
      c: this._c,
    };
    if (this._ws) {
      j.w = this._w.slice();
      j.n = this._n;
      j.f = this._f;
      j.i = this._i;
    }
    return j;
  }

  _probeLate(nowMs: number): boolean {
    return this._pt > 0 && this._pa > this._ps + this._pf && nowMs >= this._ht + this._pt;
  }

  _record(failed: number): void {
    var k = this._i >> 5;
    var m = 1 << (this._i & 31);
    if (this._n === this._ws) {
      if (this._w[k] & m) this._f--;
    } else {
      this._n++;
    }
    if (failed) {
      this._w[k] |= m;
      this._f++;
    } else {
      this._w[k] &= ~m;
    }
    this._i = this._i + 1 === this._ws ? 0 : this._i + 1;
  }

  _clear(): void {
    var i: number;
    this._c = 0;
    this._i = 0;
    this._n = 0;
    this._f = 0;
    for (i = 0; i < this._w.length; i++) this._w[i] = 0;
    this._pa = 0;
    this._ps = 0;
    this._pf = 0;
  }

  _open(nowMs: number): void {
    // The backoff advances only while probes keep failing; from closed it starts over.
    this._bo = this.state === HALF_OPEN && this._bo ? this._bo.next() : this._b0.next();
    this.openMs = this._bo.delayMs;
    this.openedAtMs = nowMs;
    this._clear();
    this._to(OPEN, 'open');
  }

  _halfOpen(nowMs: number): void {
    this._ht = nowMs;
    this._pa = 0;
    this._ps = 0;
    this._pf = 0;
    this._to(HALF_OPEN, 'halfOpen');
  }

  _close(): void {
    this._bo = null;
    this._clear();
    this._to(CLOSED, 'closed');
  }

  _to(s: number, name: string): void {
    this.state = s;
    this.epoch++;
    if (this._ev) this._ev(name, this);
  }
}

function isCount(x: any, max: number): boolean {
  return typeof x === 'number' && x >= 0 && x <= max && x === Math.floor(x);
}

/**
 * A breaker with options o in the state saved by toJSON(). The JSON comes from flash and may be
 * damaged or written by another firmware version: whatever does not fit gives a fresh closed
 * breaker (or fresh counters), never an exception. With nowMs, an open period that claims to
 * have begun in the future (the clock restarted at boot) is taken to begin at nowMs, so a
 * reboot never shortens an open period.
 */
export function restoreBreaker(o: BreakerOptions, json: any, nowMs?: number): CircuitBreaker {
  var br = new CircuitBreaker(o);
  var i: number;
  var n: any;
  var w: any;
  if (!json || typeof json !== 'object') return br;
  if (json.s === OPEN) {
    if (!(typeof json.o === 'number' && isFinite(json.o) && isCount(json.d, 1e10))) return br;
    br._bo = json.b ? restoreBackoff(br._b0, json.b) : br._b0;
    if (br._bo.attempt === 0) br._bo = br._b0.next();
    br.openMs = json.d;
    br.openedAtMs = nowMs !== undefined && json.o > nowMs ? nowMs : json.o;
    br.state = OPEN;
  } else if (json.s === ISOLATED) {
    br.state = ISOLATED;
  } else if (json.s === CLOSED) {
    if (isCount(json.c, 1e9)) br._c = json.c;
    // The failure count is recounted from the bits, never trusted, so the window stays
    // consistent whatever the file says (a stale count could go negative later).
    w = json.w;
    n = json.n;
    if (br._ws && w && w.length === br._w.length && isCount(n, br._ws) && json.i === (n === br._ws ? json.i : n) && isCount(json.i, br._ws - 1)) {
      for (i = 0; i < n; i++) {
        if (w[i >> 5] & (1 << (i & 31))) {
          br._w[i >> 5] |= 1 << (i & 31);
          br._f++;
        }
      }
      br._n = n;
      br._i = json.i;
    }
  }
  return br;
}
