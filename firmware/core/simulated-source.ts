/**
 * The `simulated` sensor kind: a seeded synthetic signal for demos, tests and benches, on every
 * board (the emulator and the Linux port included). A slow daily-like wave plus noise, with
 * occasional faults as real sensors have them: a read that fails (NaN) or a spike far out of
 * range. Deterministic for a seed and a sequence of read times.
 */
import { SeededRng } from './rng.js';

/** One read in FAULT_EVERY fails, on average: often enough that fault handling is exercised. */
export var FAULT_EVERY = 200;
/** One read in SPIKE_EVERY is a spike far out of range (a loose wire, a bad conversion). */
export var SPIKE_EVERY = 500;

export class SimulatedSource {
  _rng: SeededRng;
  _base: number;
  _amp: number;
  _periodMs: number;
  _phase: number;
  _noise: number;

  /** unit picks a plausible range: '%' reads like humidity, anything else like a temperature. */
  constructor(seed: number, unit: string) {
    this._rng = new SeededRng(seed);
    var pct = unit === '%';
    this._base = pct ? 50 : 21;
    this._amp = pct ? 15 : 3;
    this._noise = pct ? 1 : 0.2;
    // Periods differ per seed so a fleet's curves do not move in step.
    this._periodMs = 3600000 + this._rng.nextU32() % 3600000;
    this._phase = this._rng.next() * 6.283185307179586;
  }

  /** The value at nowMs (board milliseconds); NaN for a failed read. */
  read(nowMs: number): number {
    var r = this._rng;
    var u = r.nextU32();
    if (u % FAULT_EVERY === 0) return NaN;
    if (u % SPIKE_EVERY === 1) return this._base + 1000;
    // Sum of three uniforms: a cheap bell-shaped noise in [-1.5, 1.5] * noise.
    var n = (r.next() + r.next() + r.next() - 1.5) * this._noise;
    var v = this._base + this._amp * Math.sin((nowMs / this._periodMs) * 6.283185307179586 + this._phase) + n;
    return Math.round(v * 100) / 100;
  }
}
