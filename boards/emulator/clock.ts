/**
 * The emulator's clock: real time scaled by `speed`. Boards see virtual milliseconds; their
 * timers become real Node timers of delay / speed, so sockets stay real while a 10-minute outage
 * takes 10 seconds at speed 60. All boards of one emulator share one clock.
 */
export interface ClockOptions {
  /** Virtual milliseconds per real millisecond (1 = real time). */
  speed?: number;
  /** Virtual wall-clock time at start (ms since 1970); defaults to the real time. */
  startMs?: number;
}

export class EmuClock {
  readonly speed: number;
  private readonly realStart: number;
  private readonly virtualStart: number;

  constructor(opts: ClockOptions = {}) {
    const speed = opts.speed ?? 1;
    if (!(speed > 0) || !Number.isFinite(speed) || speed > 10000) {
      throw new Error(`clock speed must be a number in (0, 10000], got ${opts.speed}`);
    }
    this.speed = speed;
    this.realStart = performance.now();
    this.virtualStart = opts.startMs ?? Date.now();
  }

  /** Virtual wall-clock milliseconds (fractional, like Espruino's Date.now()). */
  now(): number {
    return this.virtualStart + (performance.now() - this.realStart) * this.speed;
  }

  /** Real milliseconds a virtual delay takes. */
  realDelay(virtualMs: number): number {
    return Math.max(0, virtualMs) / this.speed;
  }

  /** Waits a virtual duration (for tests and scenarios). */
  sleep(virtualMs: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.realDelay(virtualMs)));
  }
}
