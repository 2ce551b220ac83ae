/**
 * When a device sends its discovery beacons (ARCHITECTURE.md flow 2: "every beaconMs, with
 * jitter, never in lock-step"). A pure schedule: it holds the next deadline and moves it on
 * events; the shell sends a beacon when the board clock reaches nextDeadlineMs(), THEN calls
 * sent(nowMs).
 *
 * Modes:
 * - burst (at boot, and when a session is lost): burstCount beacons burstMs apart, so a device
 *   is found within seconds even if a beacon or an offer is lost. The first one waits a uniform
 *   [0, burstMs): boards that lost power together do not all speak at the instant power returns.
 * - fast (no offer followed yet): every beaconMs.
 * - slow (an offer was followed): every slowMs = min(beaconMs * slowFactor, slowMsMax), a
 *   heartbeat for the registry; the MQTT session carries liveness.
 * Gaps within a mode are the mode's interval times a uniform factor in [1 - jitter, 1 + jitter].
 * The FIRST gap after a mode change is the interval times a uniform factor in [0.5, 1.5): a
 * window one interval wide, so each board's phase within the interval becomes uniform at once,
 * whatever the boards shared before (a burst that ended together, a companion that answered
 * everyone in the same second). Jitter alone would take many rounds to spread them.
 *
 * Lost session: back to a burst, unless a burst began less than burstGapMs ago (default
 * slowMs); then fast mode. A flapping session must not turn every device into a 1 Hz sender.
 *
 * Deadlines are computed from the nowMs passed in, never from the previous deadline: a shell
 * that wakes late sends one beacon, not a catch-up burst. Each event draws exactly one number
 * from the Rng, so a seed replays the same schedule on the device, the emulator and the host.
 *
 * Airtime: broadcasts go out at the lowest Wi-Fi rate. During a burst a fleet of N boards sends
 * about N / burstMs beacons per ms (1000 boards: ~5000 beacons of ~300 bytes in 5 s); large
 * fleets on one access point should lower burstCount or raise burstMs.
 */
import { Rng } from './rng.js';

export var BEACON_BURST = 0;
export var BEACON_FAST = 1;
export var BEACON_SLOW = 2;
export var BEACON_MODE_NAMES = ['burst', 'fast', 'slow'];

/** Beacons in one burst at most: each is a broadcast on a shared channel. */
export var BURST_COUNT_MAX = 20;
/** Jitter fraction at most: beyond 0.5 consecutive beacons could nearly coincide. */
export var JITTER_MAX = 0.5;

export interface BeaconScheduleOptions {
  /** Fast-mode interval (the config's beaconMs). */
  beaconMs: number;
  rng: Rng;
  /** Beacons per burst. Default 5; 0 skips bursts. */
  burstCount?: number;
  /** Spacing within a burst. Default 1000. */
  burstMs?: number;
  /** ± fraction applied to every steady gap. Default 0.2. */
  jitter?: number;
  /** Slow interval = beaconMs * slowFactor, at most slowMsMax. Default 6. */
  slowFactor?: number;
  /** Default 300000 (5 minutes): the registry should hear from a device at least that often. */
  slowMsMax?: number;
  /** Minimum time between the starts of two bursts. Default: the slow interval. */
  burstGapMs?: number;
}

export class BeaconSchedule {
  /** BEACON_BURST | BEACON_FAST | BEACON_SLOW. */
  mode: number;
  _r: Rng;
  _f: number;
  _s: number;
  _bm: number;
  _bn: number;
  _j: number;
  _gap: number;
  /** Beacons left in the current burst. */
  _left: number;
  /** When the last burst began. */
  _bs: number;
  _at: number;

  /** Boots the schedule at nowMs: a burst begins. Throws on options no config could produce. */
  constructor(o: BeaconScheduleOptions, nowMs: number) {
    var f = o.beaconMs;
    var bn = o.burstCount === undefined ? 5 : o.burstCount;
    var bm = o.burstMs === undefined ? 1000 : o.burstMs;
    var j = o.jitter === undefined ? 0.2 : o.jitter;
    var sf = o.slowFactor === undefined ? 6 : o.slowFactor;
    var smax = o.slowMsMax === undefined ? 300000 : o.slowMsMax;
    var bad = !(f > 0 && f < Infinity) ? 'beaconMs'
      : !(bn >= 0 && bn <= BURST_COUNT_MAX && Math.floor(bn) === bn) ? 'burstCount'
      : !(bm > 0 && bm < Infinity) ? 'burstMs'
      : !(j >= 0 && j <= JITTER_MAX) ? 'jitter'
      : !(sf >= 1) ? 'slowFactor'
      : !(smax >= f) ? 'slowMsMax'
      : !o.rng ? 'rng' : '';
    if (bad) throw new Error('beacon schedule: bad ' + bad);
    this._r = o.rng;
    this._f = f;
    this._s = f * sf < smax ? f * sf : smax;
    this._bm = bm;
    this._bn = bn;
    this._j = j;
    this._gap = o.burstGapMs === undefined ? this._s : o.burstGapMs;
    this._bs = -Infinity;
    this._left = 0;
    this.mode = BEACON_BURST;
    this._at = 0;
    this._burst(nowMs);
  }

  /** When the next beacon is due (board ms). Always finite: a device never stops beaconing. */
  nextDeadlineMs(): number {
    return this._at;
  }

  /** The slow-mode interval in use. */
  slowMs(): number {
    return this._s;
  }

  /** A beacon went out at nowMs (call AFTER sending). Returns the next deadline. */
  sent(nowMs: number): number {
    if (this.mode !== BEACON_BURST) {
      this._at = nowMs + this._jit(this.mode === BEACON_SLOW ? this._s : this._f);
    } else if (--this._left > 0) {
      this._at = nowMs + this._jit(this._bm);
    } else {
      this.mode = BEACON_FAST;
      this._at = nowMs + this._phase(this._f);
    }
    return this._at;
  }

  /** The device followed an offer: slow mode. Returns the next deadline. */
  offerAccepted(nowMs: number): number {
    this.mode = BEACON_SLOW;
    this._at = nowMs + this._phase(this._s);
    return this._at;
  }

  /**
   * The session an offer led to is gone: a burst (or fast mode if a burst began less than
   * burstGapMs ago). Ignored unless in slow mode: without a session there is nothing to lose.
   */
  sessionLost(nowMs: number): number {
    if (this.mode !== BEACON_SLOW) return this._at;
    if (nowMs - this._bs >= this._gap) {
      this._burst(nowMs);
    } else {
      this.mode = BEACON_FAST;
      this._at = nowMs + this._phase(this._f);
    }
    return this._at;
  }

  _burst(nowMs: number): void {
    this._bs = nowMs;
    if (this._bn === 0) {
      this.mode = BEACON_FAST;
      this._at = nowMs + this._r.next() * this._f;
      return;
    }
    this.mode = BEACON_BURST;
    this._left = this._bn;
    this._at = nowMs + this._r.next() * this._bm;
  }

  /** ms times a uniform factor in [1 - jitter, 1 + jitter). */
  _jit(ms: number): number {
    return ms * (1 - this._j + 2 * this._j * this._r.next());
  }

  /** ms times a uniform factor in [0.5, 1.5): a uniform phase within the interval. */
  _phase(ms: number): number {
    return ms * (0.5 + this._r.next());
  }
}
