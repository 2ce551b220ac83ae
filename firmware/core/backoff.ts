/**
 * Backoff as an immutable value: `next()` returns the next backoff and never changes this one,
 * so a retry loop, a circuit breaker and a persisted state can all hold the same value safely.
 *
 * A fresh backoff (from `constantBackoff` / `exponentialBackoff`) sits before the first delay:
 * `attempt === 0`, `delayMs === 0`. Each `next()` yields the next delay with `attempt` counting
 * the delays taken so far. Randomness comes only from the Rng given in the options; a jittered
 * `next()` draws exactly one number from it, an unjittered one draws none, so a seed replays
 * the same delays on the device, the emulator and the host.
 *
 * Formulas ("Exponential Backoff And Jitter", AWS Architecture Blog, 2015), with
 * t(n) = min(cap, base * factor^(n-1)) for the n-th delay (n >= 1):
 * - none:         delay = t
 * - full:         delay = random_between(0, t)
 * - half (equal): delay = t/2 + random_between(0, t/2)
 * - decorrelated: delay = min(cap, random_between(base, previous * factor)), previous(0) = base
 *                 (factor defaults to 3 here, as in the article)
 * All delays are whole milliseconds; random_between is inclusive at both ends.
 * Bounds: none and decorrelated stay within [base, cap]; half within [t/2, t]; full within [0, t].
 */
import { Rng } from './rng.js';

export var JITTER_NONE = 0;
export var JITTER_FULL = 1;
export var JITTER_HALF = 2;
export var JITTER_DECORRELATED = 3;

/** Names accepted in options, indexed by the JITTER_* codes. */
export var JITTER_NAMES = ['none', 'full', 'half', 'decorrelated'];

export interface BackoffOptions {
  /** First un-jittered delay (and the floor of decorrelated jitter). */
  baseMs: number;
  /** Largest delay ever returned. Default: baseMs for a constant backoff, 30000 for exponential. */
  capMs?: number;
  /** Growth per delay; >= 1. Default 2 (3 for decorrelated jitter). */
  factor?: number;
  /** 'none' | 'full' | 'half' | 'decorrelated'. Default 'none'. */
  jitter?: string;
  /** Required whenever jitter is not 'none'. */
  rng?: Rng;
}

/** Shared, immutable settings of a family of backoff values (one per policy, not per delay). */
class BackoffConfig {
  declare _b: number;
  declare _c: number;
  declare _f: number;
  declare _j: number;
  declare _r: Rng | null;

  constructor(o: BackoffOptions, capDefault: number, factorDefault: number) {
    var j = JITTER_NAMES.indexOf(o.jitter === undefined ? 'none' : o.jitter);
    var b = o.baseMs;
    var c = o.capMs === undefined ? Math.max(b, capDefault) : o.capMs;
    var f = o.factor === undefined ? (j === JITTER_DECORRELATED ? 3 : factorDefault) : o.factor;
    if (j < 0) throw new Error('backoff: unknown jitter ' + o.jitter);
    if (!(b >= 0) || !(c >= b) || !isFinite(c) || !(f >= 1)) {
      throw new Error('backoff: need 0 <= baseMs <= capMs < Infinity, factor >= 1');
    }
    if (j !== JITTER_NONE && !o.rng) throw new Error('backoff: jitter needs an rng');
    this._b = b;
    this._c = c;
    this._f = f;
    this._j = j;
    this._r = o.rng || null;
  }
}

export class Backoff {
  /** Delays taken so far; 0 for a fresh backoff. */
  declare attempt: number;
  /** This step's delay in ms (0 for a fresh backoff). */
  declare delayMs: number;
  declare _g: BackoffConfig;
  /** The un-jittered term t(n) (exponential) or the previous delay (decorrelated). */
  declare _t: number;

  constructor(g: BackoffConfig, attempt: number, delayMs: number, t: number) {
    this._g = g;
    this.attempt = attempt;
    this.delayMs = delayMs;
    this._t = t;
  }

  /** The next backoff value; this one is unchanged. */
  next(): Backoff {
    var g = this._g;
    var b = g._b;
    var c = g._c;
    var t: number;
    var d: number;
    if (g._j === JITTER_DECORRELATED) {
      d = Math.min(c, randBetween(g._r as Rng, b, Math.floor((this.attempt ? this._t : b) * g._f)));
      return new Backoff(g, this.attempt + 1, d, d);
    }
    t = this.attempt ? Math.min(c, this._t * g._f) : b;
    d = Math.floor(t);
    if (g._j === JITTER_FULL) d = randBetween(g._r as Rng, 0, d);
    else if (g._j === JITTER_HALF) d = Math.floor(d / 2) + randBetween(g._r as Rng, 0, d - Math.floor(d / 2));
    return new Backoff(g, this.attempt + 1, d, t);
  }

  /** The fresh backoff (attempt 0) of the same family. */
  first(): Backoff {
    return this.attempt ? new Backoff(this._g, 0, 0, 0) : this;
  }

  /**
   * [attempt, t, delayMs]: enough to continue the sequence after a reboot (restoreBackoff).
   * Call it explicitly: Espruino's JSON.stringify ignores toJSON methods.
   */
  toJSON(): number[] {
    return [this.attempt, this._t, this.delayMs];
  }
}

/**
 * A uniform integer in [lo, hi], inclusive. Not rng.ts's randInt because half and full jitter
 * must never exceed hi even when hi - lo is huge (the floor keeps it there).
 */
function randBetween(r: Rng, lo: number, hi: number): number {
  return hi <= lo ? lo : Math.min(hi, lo + Math.floor(r.next() * (hi - lo + 1)));
}

/** The same delay every time (jitter optional): `constantBackoff({ baseMs: 1000 })`. */
export function constantBackoff(o: BackoffOptions): Backoff {
  var g = new BackoffConfig(o, o.baseMs, 1);
  g._f = 1;
  return new Backoff(g, 0, 0, 0);
}

/** Exponential growth from baseMs up to capMs with the chosen jitter. */
export function exponentialBackoff(o: BackoffOptions): Backoff {
  return new Backoff(new BackoffConfig(o, 30000, 2), 0, 0, 0);
}

/**
 * The backoff of `start`'s family at the position saved by `toJSON()`. Input from Storage may be
 * damaged: anything that is not three finite non-negative numbers gives `start.first()`.
 */
export function restoreBackoff(start: Backoff, json: any): Backoff {
  var g = start._g;
  if (!json || json.length !== 3) return start.first();
  var a = json[0];
  var t = json[1];
  var d = json[2];
  if (!(a >= 0 && a === Math.floor(a) && t >= 0 && d >= 0 && d <= g._c && t <= g._c)) return start.first();
  if (a === 0) return start.first();
  return new Backoff(g, a, d, t);
}
