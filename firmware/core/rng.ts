/**
 * Seeded pseudo-random source. Cores never call Math.random: randomness is injected so the
 * simulator and the model checker can replay any run from its seed.
 *
 * Algorithm: mulberry32 (32-bit state, bit ops only). Espruino's integer bit ops are exact on
 * 32 bits, so the device, the emulator and the host draw the same sequence for the same seed.
 */
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
}

export class SeededRng implements Rng {
  _s: number;

  constructor(seed: number) {
    this._s = seed | 0;
  }

  /** The next unsigned 32-bit integer. */
  nextU32(): number {
    var t = (this._s = (this._s + 0x6d2b79f5) | 0);
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** The state, so a device can persist its generator across a reboot. */
  toJSON(): number {
    return this._s;
  }
}

/**
 * 32-bit integer multiply. Math.imul is ES2015 (absent from lib es5 and not guaranteed on the
 * interpreter); splitting into 16-bit halves keeps every intermediate below 2^53.
 */
export function imul(a: number, b: number): number {
  var ah = (a >>> 16) & 0xffff;
  var al = a & 0xffff;
  var bh = (b >>> 16) & 0xffff;
  var bl = b & 0xffff;
  return (al * bl + (((ah * bl + al * bh) << 16) >>> 0)) | 0;
}

/** A uniform integer in [lo, hi] (inclusive) drawn from rng. */
export function randInt(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng.next() * (hi - lo + 1));
}
