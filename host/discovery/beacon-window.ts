/**
 * Companion side of beacon freshness (firmware/wire/beacon.ts explains the scheme): per device,
 * the (boot, seq) of the last accepted beacon. A beacon is accepted when its (boot, seq) is
 * larger, or when the device's record is absent or older than forgetMs (an erased device restarts
 * its boot counter: it is accepted again after forgetMs of silence, or at once after forget(id)).
 * A device that knows the time (ts > 0) must be within skewMs of the companion's clock.
 *
 * Bounded: at most sendersMax records. A new device beyond that evicts the least recently
 * accepted one (a scan, only when full: the window holds MAC-valid fleet members only, so its size
 * is the fleet's). Records live in a Map keyed by the id itself, so any id (`__proto__`,
 * `constructor`) is a plain key and a lookup makes no string.
 */
import type { Beacon } from '../../firmware/wire/beacon.js';

interface Seen {
  boot: number;
  seq: number;
  /** When it was last accepted (companion clock, ms). */
  at: number;
}

export class BeaconWindow {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly sendersMax: number,
    private readonly skewMs: number,
    private readonly forgetMs: number,
  ) {
    if (!Number.isSafeInteger(sendersMax) || sendersMax < 1) throw new RangeError('sendersMax must be a positive integer');
  }

  /** null when fresh (and then recorded), else 'skew' or 'replay'. Call only on verified beacons. */
  check(b: Beacon, nowMs: number): string | null {
    if (b.ts > 0 && (b.ts > nowMs + this.skewMs || b.ts < nowMs - this.skewMs)) return 'skew';
    const e = this.seen.get(b.id);
    if (e === undefined) {
      if (this.seen.size >= this.sendersMax) this.evict();
      this.seen.set(b.id, { boot: b.boot, seq: b.seq, at: nowMs });
      return null;
    }
    if (nowMs - e.at <= this.forgetMs && (b.boot < e.boot || (b.boot === e.boot && b.seq <= e.seq))) return 'replay';
    e.boot = b.boot;
    e.seq = b.seq;
    e.at = nowMs;
    return null;
  }

  /** Drops a device's record (an operator re-provisioned it). */
  forget(id: string): void {
    this.seen.delete(id);
  }

  /** Devices with a record. */
  size(): number {
    return this.seen.size;
  }

  private evict(): void {
    let old: string | null = null;
    let at = Infinity;
    for (const [id, e] of this.seen) {
      if (e.at < at) {
        at = e.at;
        old = id;
      }
    }
    if (old !== null) this.seen.delete(old);
  }
}
