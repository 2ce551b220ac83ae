/**
 * The coordinator: what the Raft leader proposes so that the committed state matches the
 * cluster. Pure: it reads the COMMITTED state (never a proposal in flight), this node's link
 * views and the time, and returns commands; the shell proposes them and learns the outcome only
 * by applying the log. Called only while this node leads with a lease and its pause guard is
 * clear (cluster-node.ts checks both BEFORE calling plan()).
 *
 * Rules, in order, one step per call:
 *  1. Ring membership, ONE member at a time: a member whose links have been down for
 *     `ringOutAfterMs` goes off the ring (`member.update` with the `out` flag, which bumps the
 *     epoch); one whose links have been up for `ringInAfterMs` comes back. The leader never
 *     takes itself or the last ring member off. While such a change is in flight, nothing else:
 *     assignments are computed against a settled ring.
 *  2. Assignments: every device whose committed owner differs from the ring's owner (or that has
 *     none yet) is assigned to the ring's owner, in batches, each guarded by `ifEpoch`: a batch
 *     computed against an older ring is refused by every replica instead of undoing a newer one.
 *     Devices the ring did not move keep their owner: a ring change reassigns only moved keys.
 *
 * Idempotence: a wish that is already proposed is not proposed again for `retryMs` (Raft may
 * have lost it with a leader); once applied, the state no longer differs and the wish is gone.
 */
import { ASSIGNMENTS_PER_CMD_MAX, type ClusterCommand } from '../raft/cluster-state.js';
import type { LinkView } from './link-tracker.js';
import { withRingFlag } from './member-addr.js';
import type { Placement } from './placement.js';

export interface CoordinatorOptions {
  self: string;
  /** Links down this long (after the link timeout already passed) -> off the ring. */
  ringOutAfterMs: number;
  /** Links up this long -> back on the ring. */
  ringInAfterMs: number;
  /** Re-propose a wish that did not show up in the state after this long. */
  retryMs: number;
  /** Assignments per command (<= ASSIGNMENTS_PER_CMD_MAX). */
  assignBatchMax?: number;
}

/** The committed state as the coordinator reads it (ClusterState satisfies it). */
export interface AssignmentSource {
  epoch: number;
  owner(device: string): string | undefined;
  /** Every (device, owner) pair. */
  forEachOwner(fn: (device: string, owner: string) => void): void;
}

export interface CoordinatorInput {
  nowMs: number;
  state: AssignmentSource;
  placement: Placement;
  link(id: string): LinkView;
  /** Devices seen (beacons) with no committed owner yet. */
  unassigned: Iterable<string>;
}

export class Coordinator {
  _o: Required<CoordinatorOptions>;
  _leading = false;
  /** Wish key -> when it was proposed. */
  _inflight = new Map<string, number>();
  /** Commands proposed since start, by kind (for logs and tests). */
  readonly counts = { ringOut: 0, ringIn: 0, assignCmds: 0, assigned: 0 };

  constructor(o: CoordinatorOptions) {
    this._o = {
      self: o.self,
      ringOutAfterMs: o.ringOutAfterMs,
      ringInAfterMs: o.ringInAfterMs,
      retryMs: o.retryMs,
      assignBatchMax: Math.min(o.assignBatchMax ?? ASSIGNMENTS_PER_CMD_MAX, ASSIGNMENTS_PER_CMD_MAX),
    };
  }

  /** This node stopped leading (or lost its lease): forget everything in flight. */
  standDown(): void {
    this._leading = false;
    this._inflight.clear();
  }

  plan(x: CoordinatorInput): ClusterCommand[] {
    const now = x.nowMs;
    if (!this._leading) {
      this._leading = true;
      this._inflight.clear();
    }
    this._expire(now);
    const member = this._membershipStep(x);
    if (member === 'busy') return [];
    if (member) return [member];
    return this._assignments(x);
  }

  _expire(now: number): void {
    const dead: string[] = [];
    this._inflight.forEach((at, k) => {
      if (now - at >= this._o.retryMs) dead.push(k);
    });
    for (const k of dead) this._inflight.delete(k);
  }

  _membershipStep(x: CoordinatorInput): ClusterCommand | 'busy' | null {
    const p = x.placement;
    const now = x.nowMs;
    // A membership wish is in flight until the state shows it (or retryMs passed).
    for (const k of Array.from(this._inflight.keys())) {
      if (!k.startsWith('m\n')) continue;
      const [, id, want] = k.split('\n');
      const m = p.member(id);
      if (!m || m.parsed.out === (want === 'out')) this._inflight.delete(k);
      else return 'busy';
    }
    for (const m of p.members) {
      let out: boolean | null = null;
      if (m.id === this._o.self) {
        if (m.parsed.out) out = false;
      } else {
        // The link view is kept by every node all the time (link-tracker.ts), so a new leader
        // judges with history; a link never heard since start counts from its first ping.
        const v = x.link(m.id);
        const since = v.sinceMs;
        if (!m.parsed.out && !v.up && now - since >= this._o.ringOutAfterMs && p.inRing.length > 1) out = true;
        else if (m.parsed.out && v.up && now - since >= this._o.ringInAfterMs) out = false;
      }
      if (out === null) continue;
      this._inflight.set('m\n' + m.id + '\n' + (out ? 'out' : 'in'), now);
      if (out) this.counts.ringOut++;
      else this.counts.ringIn++;
      return { t: 'member.update', id: m.id, addr: withRingFlag(m.addr, out) };
    }
    return null;
  }

  _assignments(x: CoordinatorInput): ClusterCommand[] {
    const p = x.placement;
    if (!p.ring) return [];
    const now = x.nowMs;
    const epoch = x.state.epoch;
    const want: Array<[string, string]> = [];
    const consider = (dev: string, owner: string | undefined): void => {
      const o = p.owner(dev);
      if (o === null || o === owner) return;
      const key = 'a:' + epoch + ':' + dev + '>' + o;
      if (this._inflight.has(key)) return;
      want.push([dev, o]);
    };
    x.state.forEachOwner((dev, owner) => consider(dev, owner));
    for (const dev of x.unassigned) if (x.state.owner(dev) === undefined) consider(dev, undefined);
    if (want.length === 0) return [];
    want.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const cmds: ClusterCommand[] = [];
    for (let i = 0; i < want.length; i += this._o.assignBatchMax) {
      const set: Record<string, string> = {};
      const batch = want.slice(i, i + this._o.assignBatchMax);
      for (const [dev, o] of batch) {
        set[dev] = o;
        this._inflight.set('a:' + epoch + ':' + dev + '>' + o, now);
      }
      cmds.push({ t: 'device.assign', ifEpoch: epoch, set });
      this.counts.assignCmds++;
      this.counts.assigned += batch.length;
    }
    return cmds;
  }
}
