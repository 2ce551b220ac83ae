/**
 * One companion's cluster logic as a pure core: coordination (on the leader), ownership and
 * offers, replication before PUBACK, anti-entropy, the pause guard and the cluster view. It
 * never reads a clock, opens a socket or writes a file: every input carries `nowMs` and this
 * node's Raft view; outputs are queued (`takeOutbox`, `takeProposals`, `takeDone`) or returned
 * as store jobs the shell runs. The TCP/SQLite shell (cluster-service.ts) and the deterministic
 * simulator (test/sim/cluster-sim.ts) drive this same code.
 *
 * What it reads: the COMMITTED cluster state (ClusterState, applied by the Raft shell), and
 * synchronous reads of this node's durable telemetry (LocalStore). It acts only on committed
 * state: a proposal's effect is seen when the log applies it, never when it is proposed.
 *
 * ORDERING RULES
 *  - Owner write: the companion stores the reading durably, THEN calls beginWrite; the write is
 *    pushed to the replica set; the PUBACK is allowed (takeDone ok) only AFTER the copies the
 *    policy needs acknowledged it, the heir among them (write-quorum.ts), AND, at that moment,
 *    this node still owns the device in its applied state and its pause guard is clear.
 *  - Replica: a push is stored durably by the shell BEFORE `stored()` queues its ack.
 *  - Leader: the coordinator runs only while Raft says leader WITH a lease and the pause guard
 *    is clear; after a pause the guard stays tripped until a quorum confirmed our term
 *    (pause-guard.ts). Every entry point reports the time to the guard FIRST.
 */
import type { ClusterView } from '../companion-api.js';
import type { ClusterCommand, ClusterState } from '../raft/cluster-state.js';
import type { Role } from '../raft/raft-types.js';
import type { TelemetryRecord } from '../store/telemetry-record.js';
import { Coordinator, type AssignmentSource } from './coordinator.js';
import { LinkTracker } from './link-tracker.js';
import { isOut, ringBase, withRingFlag } from './member-addr.js';
import { PauseGuard } from './pause-guard.js';
import { PlacementCache, type Placement } from './placement.js';
import { RECS_PER_MSG_MAX, SYNC_DEVICES_MAX, SYNC_RANGES_MAX, type ReplMessage, type SyncDevice } from './replication-wire.js';
import { clipRanges, subtractRanges, type SeqRange } from './seq-ranges.js';
import { copiesNeeded, WriteQuorum, type AckPolicy } from './write-quorum.js';

/** What the core needs from Raft, read by the shell AFTER it delivered missed ticks. */
export interface RaftView {
  role: Role;
  term: number;
  leader: string;
  /** Leader that heard from a quorum within the election timeout. */
  lease: boolean;
  commit: number;
  applied: number;
  voters: readonly string[];
}

/** Synchronous reads of this node's DURABLE telemetry (TelemetryStore satisfies it). */
export interface LocalStore {
  seqRanges(device: string, o: { toSeq?: number; rangesMax?: number }): { ranges: SeqRange[]; truncated: boolean };
  exportRows(device: string, fromSeq: number, toSeq: number, limit?: number): TelemetryRecord[];
}

export interface ClusterNodeOptions {
  self: string;
  /** This node's advertisement (member-addr.ts text, without the ring flag). */
  advertise: string;
  /** Ring weight (1..1000). */
  weight?: number;
  /** Replication factor R (owner included). */
  replicas?: number;
  acks?: AckPolicy;
  /** Hash ring table size (2^slotBits); smaller in the simulator. */
  slotBits?: number;
  pingEveryMs?: number;
  /** No word from a peer for this long: its link is down. */
  linkTimeoutMs?: number;
  ringOutAfterMs?: number;
  ringInAfterMs?: number;
  /** A write not acknowledged within this fails (no PUBACK; the device retransmits). */
  ackTimeoutMs?: number;
  /** Push a write again to targets silent for this long (lost push or ack). */
  pushRetryMs?: number;
  /** One anti-entropy round with one peer this often. */
  syncEveryMs?: number;
  /** A gap this long between two calls means this process was paused. */
  pauseMaxMs?: number;
  /** Re-propose a command that did not apply after this long. */
  retryMs?: number;
  /** How often the leader's coordinator looks at the whole state (also on every apply). */
  planEveryMs?: number;
  /** A follower proposes an assignment for a device nobody assigned after this long. */
  unassignedAfterMs?: number;
  /**
   * A device that just became ours gets no offer until every live peer answered a sync for it
   * (so its new owner holds what was acknowledged before the device resumes), or this long.
   */
  takeoverSyncMaxMs?: number;
  store: LocalStore;
}

export const CLUSTER_DEFAULTS = {
  weight: 1,
  replicas: 3,
  acks: 'quorum' as AckPolicy,
  slotBits: 17,
  pingEveryMs: 200,
  linkTimeoutMs: 800,
  ringOutAfterMs: 300,
  ringInAfterMs: 1000,
  ackTimeoutMs: 2000,
  pushRetryMs: 400,
  syncEveryMs: 500,
  pauseMaxMs: 400,
  retryMs: 2000,
  planEveryMs: 200,
  unassignedAfterMs: 1000,
  takeoverSyncMaxMs: 1000,
};

/** Devices seen without an owner that we remember: beacons of a fleet, not of the internet. */
export const UNASSIGNED_MAX = 4096;
/** Writes waiting for acks: bounds memory when replicas are slow (each is one reading). */
export const WRITES_PENDING_MAX = 20000;

export type WriteStart = { id: number } | { done: true } | { err: string };

export interface WriteDone {
  id: number;
  ok: boolean;
  reason: string;
}

/** Readings the shell must append DURABLY, then report with stored(). */
export interface StoreJob {
  kind: 'push' | 'rows';
  from: string;
  id: number;
  recs: TelemetryRecord[];
  /** push: devices not to acknowledge (stored anyway: data is data). */
  refused: string[];
  /** rows: the peer has more for us. */
  more: boolean;
}

interface PendingWrite {
  id: number;
  rec: TelemetryRecord;
  q: WriteQuorum;
  deadline: number;
  /** Ring epoch the targets were computed for: a ring change re-targets the write. */
  epoch: number;
  /** Last time it was pushed to the targets that have not answered. */
  pushedAt: number;
}

interface PushBuf {
  recs: TelemetryRecord[];
  writes: number[];
}

interface PushSent {
  writes: number[];
  at: number;
  n: number;
}

export class ClusterNode {
  readonly self: string;
  readonly o: Required<Omit<ClusterNodeOptions, 'store'>>;
  readonly state: ClusterState;
  readonly store: LocalStore;
  readonly guard: PauseGuard;
  readonly links: LinkTracker;
  readonly coordinator: Coordinator;
  readonly counters = {
    writesOk: 0,
    writesDirect: 0,
    writesFailed: {} as Record<string, number>,
    pushes: 0,
    acksIn: 0,
    refusedOut: 0,
    syncRounds: 0,
    rowsIn: 0,
    rowsOut: 0,
    offers: 0,
    proposals: 0,
    dropped: {} as Record<string, number>,
  };
  _placements: PlacementCache;
  _out: Array<{ to: string; msg: ReplMessage }> = [];
  _props: ClusterCommand[] = [];
  _done: WriteDone[] = [];
  _writes = new Map<number, PendingWrite>();
  _writeSeq = 0;
  _pushBuf = new Map<string, PushBuf>();
  _pushSent = new Map<string, PushSent>();
  _msgSeq = 0;
  _nextPingAt = 0;
  _nextSyncAt = 0;
  _nextPlanAt = 0;
  _syncCursor = 0;
  _peerCursor = new Map<string, number>();
  _peerTurn = 0;
  _lastApplied = -1;
  /** Devices whose replica set holds us (owner included), sorted; and those we own. */
  _mine: string[] = [];
  _owned = new Set<string>();
  _movedAway: string[] = [];
  _urgent = new Set<string>();
  /** Devices newly ours: peers whose sync answer we still wait for, and until when. */
  _takeover = new Map<string, { asked: boolean; pending: Set<string>; until: number }>();
  /** Sync requests made for takeovers: "peer id" -> devices. */
  _takeSync = new Map<string, string[]>();
  _unassigned = new Map<string, number>();
  _proposedAt = new Map<string, number>();
  _lagOut = new Map<string, number>();
  _lagRows = new Map<string, number>();
  _asSource: AssignmentSource;

  constructor(o: ClusterNodeOptions, state: ClusterState, nowMs: number) {
    const d = CLUSTER_DEFAULTS;
    this.self = o.self;
    this.o = {
      self: o.self,
      advertise: o.advertise,
      weight: o.weight ?? d.weight,
      replicas: o.replicas ?? d.replicas,
      acks: o.acks ?? d.acks,
      slotBits: o.slotBits ?? d.slotBits,
      pingEveryMs: o.pingEveryMs ?? d.pingEveryMs,
      linkTimeoutMs: o.linkTimeoutMs ?? d.linkTimeoutMs,
      ringOutAfterMs: o.ringOutAfterMs ?? d.ringOutAfterMs,
      ringInAfterMs: o.ringInAfterMs ?? d.ringInAfterMs,
      ackTimeoutMs: o.ackTimeoutMs ?? d.ackTimeoutMs,
      pushRetryMs: o.pushRetryMs ?? d.pushRetryMs,
      syncEveryMs: o.syncEveryMs ?? d.syncEveryMs,
      pauseMaxMs: o.pauseMaxMs ?? d.pauseMaxMs,
      retryMs: o.retryMs ?? d.retryMs,
      planEveryMs: o.planEveryMs ?? d.planEveryMs,
      unassignedAfterMs: o.unassignedAfterMs ?? d.unassignedAfterMs,
      takeoverSyncMaxMs: o.takeoverSyncMaxMs ?? d.takeoverSyncMaxMs,
    };
    if (!(this.o.replicas >= 1 && Number.isInteger(this.o.replicas))) throw new RangeError('cluster: replicas must be an integer >= 1');
    if (isOut(o.advertise)) throw new RangeError('cluster: the advertised address carries no ring flag');
    this.state = state;
    this.store = o.store;
    this.guard = new PauseGuard(o.self, this.o.pauseMaxMs, nowMs);
    this.links = new LinkTracker(this.o.linkTimeoutMs, nowMs);
    this.coordinator = new Coordinator({ self: o.self, ringOutAfterMs: this.o.ringOutAfterMs, ringInAfterMs: this.o.ringInAfterMs, retryMs: this.o.retryMs });
    this._placements = new PlacementCache(this.o.slotBits);
    this._asSource = {
      get epoch() {
        return state.epoch;
      },
      owner: (d) => state.owner(d),
      forEachOwner: (fn) => state._owners.forEach((owner, dev) => fn(dev, owner)),
    };
  }

  placement(): Placement {
    return this._placements.of(this.state);
  }

  // ------------------------------------------------------------------ outputs

  takeOutbox(): Array<{ to: string; msg: ReplMessage }> {
    this._flushPushes();
    const o = this._out;
    this._out = [];
    return o;
  }

  takeProposals(): ClusterCommand[] {
    const p = this._props;
    this._props = [];
    return p;
  }

  /**
   * Devices this node owned and no longer owns (the log moved them): the shell closes their
   * sessions, so they re-beacon and reach their new owner now rather than at their next
   * publish (which would be refused with 'not-owner').
   */
  takeMovedAway(): string[] {
    const m = this._movedAway;
    this._movedAway = [];
    return m;
  }

  takeDone(): WriteDone[] {
    const d = this._done;
    this._done = [];
    return d;
  }

  // ------------------------------------------------------------------ entry points

  /**
   * Report the time to the pause guard; on a detected pause, distrust everything we believed:
   * fail pending writes (no PUBACK after a pause), restart link timing, stop coordinating, and
   * ping everyone at once to re-confirm our term.
   */
  _enter(now: number): void {
    if (!this.guard.observe(now)) return;
    this._writes.forEach((w) => this._finish(w, 'failed', 'paused'));
    this._writes.clear();
    this._pushSent.clear();
    this.links.reset(now);
    this.coordinator.standDown();
    this._nextPingAt = now;
  }

  /**
   * An owner cut off from the Raft majority stops acknowledging: a follower that has lost its
   * leader (election timeout without a heartbeat), or a leader without a lease. The majority
   * needs longer than that to move the devices (link timeout + ring-out + commit), so a
   * partitioned owner stops before its devices get a new one.
   */
  _cutOff(raft: RaftView): string {
    if (raft.role === 'leader') return raft.lease ? '' : 'no-lease';
    return raft.leader === '' ? 'no-leader' : '';
  }

  /** Why this node may not act on its authority now ('' = it may). */
  blocked(now: number, raft: RaftView): string {
    this._enter(now);
    return this.guard.blocked(now, raft);
  }

  /** Periodic work: pings, apply-driven bookkeeping, coordination, anti-entropy, timeouts. */
  tick(now: number, raft: RaftView): void {
    this._enter(now);
    this._noteApplied(now);
    if (now >= this._nextPingAt) {
      this._nextPingAt = now + this.o.pingEveryMs;
      this._pingAll(now, raft);
    }
    this._expireWrites(now, raft);
    const why = this.guard.blocked(now, raft);
    if (why === '') {
      this._register(now, raft);
      if (raft.role === 'leader' && raft.lease) {
        if (now >= this._nextPlanAt) {
          this._nextPlanAt = now + this.o.planEveryMs;
          const cmds = this.coordinator.plan({
            nowMs: now,
            state: this._asSource,
            placement: this.placement(),
            link: (id) => this.links.view(id, now),
            unassigned: this._unassigned.keys(),
          });
          for (const c of cmds) this._propose(c);
        }
      } else {
        this.coordinator.standDown();
        this._followerAssign(now, raft);
      }
    } else {
      this.coordinator.standDown();
    }
    this._antiEntropy(now);
  }

  /** Should this node answer a beacon from `device`? Its ring epoch when yes. */
  offerFor(now: number, raft: RaftView, device: string): { epoch: number } | null {
    if (this.blocked(now, raft) !== '' || raft.leader === '') return null;
    const owner = this.state.owner(device);
    if (owner === undefined) {
      if (!this._unassigned.has(device) && this._unassigned.size < UNASSIGNED_MAX) this._unassigned.set(device, now);
      return null;
    }
    if (owner !== this.self) return null;
    const me = this.placement().member(this.self);
    if (!me || me.parsed.out) return null;
    const t = this._takeover.get(device);
    if (t) {
      if ((!t.asked || t.pending.size > 0) && now < t.until) return null;
      this._takeover.delete(device);
    }
    this.counters.offers++;
    return { epoch: this.state.epoch };
  }

  /** The companion stored `rec` durably; start replicating it (see ORDERING RULES). */
  beginWrite(now: number, raft: RaftView, rec: TelemetryRecord): WriteStart {
    const why = this.blocked(now, raft) || this._cutOff(raft);
    if (why) return this._refuse(why);
    if (this.state.owner(rec.device) !== this.self) return this._refuse('not-owner');
    const plan = this._plan(rec.device);
    if (plan.need <= 0) {
      this.counters.writesDirect++;
      return { done: true };
    }
    if (plan.q.state() === 'failed') return this._refuse('too-few-replicas');
    if (this._writes.size >= WRITES_PENDING_MAX) return this._refuse('writes-pending-max');
    const id = ++this._writeSeq;
    const w: PendingWrite = { id, rec, q: plan.q, deadline: now + this.o.ackTimeoutMs, epoch: this.state.epoch, pushedAt: now };
    this._writes.set(id, w);
    this._push(w, plan.q.targets);
    return { id };
  }

  /** The quorum a write of `device` needs under the ring as committed now. */
  _plan(device: string): { q: WriteQuorum; need: number } {
    const set = this.placement().replicaSet(this.self, device, this.o.replicas);
    const need = copiesNeeded(this.o.acks, this.o.replicas, set.length) - 1;
    return { q: new WriteQuorum(set.slice(1), Math.max(0, need)), need };
  }

  _push(w: PendingWrite, targets: readonly string[]): void {
    for (const t of targets) {
      let b = this._pushBuf.get(t);
      if (!b) {
        b = { recs: [], writes: [] };
        this._pushBuf.set(t, b);
      }
      b.recs.push(w.rec);
      b.writes.push(w.id);
    }
  }

  /** A validated replication message for us. Returns readings to store durably, if any. */
  receive(now: number, raft: RaftView, m: ReplMessage): StoreJob | null {
    this._enter(now);
    this.links.heard(m.from, now);
    switch (m.t) {
      case 'ping':
        this._send(m.from, { t: 'pong', from: this.self, to: m.from, at: m.at, term: raft.term, commit: raft.commit });
        return null;
      case 'pong':
        this.guard.confirm(m.from, m.at, m.term, m.commit);
        return null;
      case 'push': {
        // Stored whatever we think of the sender (a reading is a fact; more copies never
        // hurt), but acknowledged only for devices whose owner we do not know to be another.
        const refused: string[] = [];
        if (this.state.appliedIndex >= m.ix) {
          for (const r of m.recs) {
            if (this.state.owner(r.device) !== m.from && refused.indexOf(r.device) < 0) refused.push(r.device);
          }
        }
        this.counters.refusedOut += refused.length;
        return { kind: 'push', from: m.from, id: m.id, recs: m.recs, refused, more: false };
      }
      case 'ack':
        this._onAck(now, raft, m.from, m.id, m.err, m.refused);
        return null;
      case 'sync':
        this._answerSync(m.from, m.id, m.devs);
        return null;
      case 'rows':
        this.counters.rowsIn += m.recs.length;
        if (m.recs.length > 0 || m.more) return { kind: 'rows', from: m.from, id: m.id, recs: m.recs, refused: [], more: m.more };
        this._synced(m.from, m.id, false);
        return null;
      default:
        return null;
    }
  }

  /** The shell ran a StoreJob: `ok` = the readings are durable. */
  stored(now: number, job: StoreJob, ok: boolean, err = 'store-failed'): void {
    this._enter(now);
    if (job.kind === 'push') {
      this._send(job.from, {
        t: 'ack',
        from: this.self,
        to: job.from,
        id: job.id,
        ix: this.state.appliedIndex,
        refused: ok ? job.refused : [],
        err: ok ? '' : err,
      });
    } else if (ok) {
      this._synced(job.from, job.id, job.more);
    }
  }

  /**
   * A sync answer from `peer` is durable here. A takeover's devices are settled with that peer
   * once it has nothing more; with more, ask again at once (the same devices for a takeover).
   */
  _synced(peer: string, id: number, more: boolean): void {
    const key = peer + ' ' + id;
    const devs = this._takeSync.get(key);
    this._takeSync.delete(key);
    if (devs && more) {
      const next = this._syncWith(peer, devs, false);
      if (next > 0) this._takeSync.set(peer + ' ' + next, devs);
      return;
    }
    if (devs) {
      for (const d of devs) {
        const t = this._takeover.get(d);
        if (t) t.pending.delete(peer);
      }
      return;
    }
    // The peer had more for us: continue with it at once.
    if (more) this._syncWith(peer, this._mine, true);
  }

  // ------------------------------------------------------------------ owner side

  _refuse(reason: string): WriteStart {
    this.counters.writesFailed[reason] = (this.counters.writesFailed[reason] ?? 0) + 1;
    return { err: reason };
  }

  _flushPushes(): void {
    if (this._pushBuf.size === 0) return;
    const ix = this.state.appliedIndex;
    this._pushBuf.forEach((b, to) => {
      for (let i = 0; i < b.recs.length; i += RECS_PER_MSG_MAX) {
        const recs = b.recs.slice(i, i + RECS_PER_MSG_MAX);
        const writes = b.writes.slice(i, i + RECS_PER_MSG_MAX);
        const id = ++this._msgSeq;
        this._pushSent.set(to + ' ' + id, { writes, at: this._lastNow, n: recs.length });
        this._lagOut.set(to, (this._lagOut.get(to) ?? 0) + recs.length);
        this.counters.pushes++;
        this._out.push({ to, msg: { t: 'push', from: this.self, to, id, ix, recs } });
      }
    });
    this._pushBuf.clear();
  }

  get _lastNow(): number {
    return this.guard._last;
  }

  _onAck(now: number, raft: RaftView, from: string, id: number, err: string, refused: string[]): void {
    const key = from + ' ' + id;
    const sent = this._pushSent.get(key);
    if (!sent) return;
    this._pushSent.delete(key);
    this.counters.acksIn++;
    this._lagOut.set(from, Math.max(0, (this._lagOut.get(from) ?? 0) - sent.n));
    for (const wid of sent.writes) {
      const w = this._writes.get(wid);
      if (!w) continue;
      const ok = err === '' && refused.indexOf(w.rec.device) < 0;
      w.q.answer(from, ok, err || 'not-owner');
      this._settle(now, raft, w);
    }
  }

  /**
   * Finish a write whose quorum is decided. At the moment of acknowledging, re-check what the
   * ack stands on: our authority (pause guard), our ownership, and the ring (a write begun under
   * an older ring must satisfy the heir and quorum of the current one; if it does not, it is
   * re-targeted and pushed to the new replicas).
   */
  _settle(now: number, raft: RaftView, w: PendingWrite): void {
    let st = w.q.state();
    if (st === 'ok' && w.epoch !== this.state.epoch) {
      const plan = this._plan(w.rec.device);
      const q = plan.q;
      for (const id of w.q.okFrom) q.answer(id, true);
      for (const id of w.q.refusedFrom) if (q.targets.indexOf(id) >= 0) q.answer(id, false, 'refused');
      w.q = q;
      w.epoch = this.state.epoch;
      st = q.state();
      if (st === 'pending') {
        w.pushedAt = now;
        this._push(w, q.targets.filter((t) => q.okFrom.indexOf(t) < 0 && q.refusedFrom.indexOf(t) < 0));
      }
    }
    if (st === 'pending') return;
    this._writes.delete(w.id);
    if (st === 'failed') {
      this._finish(w, 'failed', w.q.reason || 'refused');
      return;
    }
    const why = this.guard.blocked(now, raft) || this._cutOff(raft);
    if (why) this._finish(w, 'failed', why);
    else if (this.state.owner(w.rec.device) !== this.self) this._finish(w, 'failed', 'not-owner');
    else this._finish(w, 'ok', '');
  }

  _finish(w: PendingWrite, st: 'ok' | 'failed', reason: string): void {
    if (st === 'ok') this.counters.writesOk++;
    else this.counters.writesFailed[reason] = (this.counters.writesFailed[reason] ?? 0) + 1;
    this._done.push({ id: w.id, ok: st === 'ok', reason });
  }

  _expireWrites(now: number, raft: RaftView): void {
    if (this._writes.size > 0) {
      const dead: PendingWrite[] = [];
      const moved: PendingWrite[] = [];
      this._writes.forEach((w) => {
        if (now >= w.deadline) dead.push(w);
        else if (w.epoch !== this.state.epoch) moved.push(w);
        else if (now - w.pushedAt >= this.o.pushRetryMs) {
          // A push or its ack was lost (a dropped connection, a full queue): push again to the
          // targets that have not answered. Replicas store idempotently by (device, seq).
          w.pushedAt = now;
          this._push(w, w.q.targets.filter((t) => w.q.okFrom.indexOf(t) < 0 && w.q.refusedFrom.indexOf(t) < 0));
        }
      });
      for (const w of dead) {
        this._writes.delete(w.id);
        this._finish(w, 'failed', 'timeout');
      }
      for (const w of moved) {
        const plan = this._plan(w.rec.device);
        for (const id of w.q.okFrom) plan.q.answer(id, true);
        w.q = plan.q;
        w.epoch = this.state.epoch;
        w.pushedAt = now;
        if (plan.need <= 0 || plan.q.state() !== 'pending') this._settle(now, raft, w);
        else this._push(w, plan.q.targets.filter((t) => plan.q.okFrom.indexOf(t) < 0));
      }
    }
    if (this._pushSent.size > 0) {
      const old: string[] = [];
      this._pushSent.forEach((s, k) => {
        if (now - s.at >= this.o.ackTimeoutMs) old.push(k);
      });
      for (const k of old) {
        const to = k.slice(0, k.indexOf(' '));
        const s = this._pushSent.get(k) as PushSent;
        this._lagOut.set(to, Math.max(0, (this._lagOut.get(to) ?? 0) - s.n));
        this._pushSent.delete(k);
      }
    }
  }

  // ------------------------------------------------------------------ membership, coordination

  _send(to: string, msg: ReplMessage): void {
    this._out.push({ to, msg });
  }

  _propose(c: ClusterCommand): void {
    this.counters.proposals++;
    this._props.push(c);
  }

  _pingAll(now: number, raft: RaftView): void {
    for (const id of this._peers(raft)) {
      this.links.pinged(id, now);
      this._send(id, { t: 'ping', from: this.self, to: id, at: now, term: raft.term, commit: raft.commit });
    }
  }

  /** Everyone we talk to: the committed members and the Raft voters, without ourselves. */
  _peers(raft?: RaftView): string[] {
    const out: string[] = [];
    for (const m of this.placement().members) if (m.id !== this.self) out.push(m.id);
    if (raft) for (const v of raft.voters) if (v !== this.self && out.indexOf(v) < 0) out.push(v);
    return out;
  }

  /** Register (or refresh) our own member record once a leader exists and we are a voter. */
  _register(now: number, raft: RaftView): void {
    if (raft.leader === '' || raft.voters.indexOf(this.self) < 0) return;
    const m = this.state.member(this.self);
    let cmd: ClusterCommand | null = null;
    if (!m) cmd = { t: 'member.add', id: this.self, addr: this.o.advertise, weight: this.o.weight };
    else if (ringBase(m.addr) !== this.o.advertise || m.weight !== this.o.weight) {
      // Keep the ring flag: only the coordinator decides when we are back on the ring.
      cmd = { t: 'member.update', id: this.self, addr: withRingFlag(this.o.advertise, isOut(m.addr)), weight: this.o.weight };
    }
    if (!cmd) return;
    const last = this._proposedAt.get('register');
    if (last !== undefined && now - last < this.o.retryMs) return;
    this._proposedAt.set('register', now);
    this._propose(cmd);
  }

  /** A follower that heard a device nobody assigned proposes its ring owner (the leader may be elsewhere). */
  _followerAssign(now: number, raft: RaftView): void {
    if (raft.leader === '' || this._unassigned.size === 0) return;
    const p = this.placement();
    const set: Record<string, string> = {};
    let n = 0;
    this._unassigned.forEach((seen, dev) => {
      if (n >= 500 || now - seen < this.o.unassignedAfterMs) return;
      const last = this._proposedAt.get('u:' + dev);
      if (last !== undefined && now - last < this.o.retryMs) return;
      const o = p.owner(dev);
      if (o === null) return;
      set[dev] = o;
      this._proposedAt.set('u:' + dev, now);
      n++;
    });
    if (n > 0) this._propose({ t: 'device.assign', ifEpoch: this.state.epoch, set });
  }

  /** After the log moved: forget assigned devices, find devices newly ours, refresh our replica list. */
  _noteApplied(now: number): void {
    const st = this.state;
    if (st.appliedIndex === this._lastApplied) return;
    this._lastApplied = st.appliedIndex;
    this._nextPlanAt = now;
    if (this._unassigned.size > 0) {
      const gone: string[] = [];
      this._unassigned.forEach((_, d) => {
        if (st.owner(d) !== undefined) gone.push(d);
      });
      for (const d of gone) {
        this._unassigned.delete(d);
        this._proposedAt.delete('u:' + d);
      }
    }
    const p = this.placement();
    const held = new Set(this._mine);
    const owned = this._owned;
    const mine: string[] = [];
    const nowOwned = new Set<string>();
    st._owners.forEach((owner, dev) => {
      if (p.replicaSet(owner, dev, this.o.replicas).indexOf(this.self) < 0) return;
      mine.push(dev);
      if (owner === this.self) nowOwned.add(dev);
      // Newly ours to hold, or newly ours to own: catch up on it at once, from every peer.
      if (!held.has(dev) || (owner === this.self && !owned.has(dev))) this._urgent.add(dev);
      if (owner === this.self && !owned.has(dev)) this._takeover.set(dev, { asked: false, pending: new Set(), until: now + this.o.takeoverSyncMaxMs });
    });
    mine.sort();
    this._mine = mine;
    owned.forEach((d) => {
      if (!nowOwned.has(d)) this._movedAway.push(d);
    });
    this._owned = nowOwned;
  }

  // ------------------------------------------------------------------ anti-entropy

  _antiEntropy(now: number): void {
    const live = this._peers().filter((id) => this.links.view(id, now).up);
    // Devices newly ours wait for a live peer (after a restart no link is up for a moment);
    // a takeover's offers wait too, up to takeoverSyncMaxMs.
    if (this._urgent.size > 0 && live.length > 0) {
      const devs = Array.from(this._urgent).slice(0, SYNC_DEVICES_MAX);
      for (const d of devs) this._urgent.delete(d);
      const taken = devs.filter((d) => this._takeover.has(d));
      for (const d of taken) (this._takeover.get(d) as { asked: boolean }).asked = true;
      for (const id of live) {
        const sid = this._syncWith(id, devs, false);
        if (taken.length > 0 && sid > 0) {
          this._takeSync.set(id + ' ' + sid, taken);
          for (const d of taken) (this._takeover.get(d) as { pending: Set<string> }).pending.add(id);
        }
      }
    }
    if (this._takeover.size > 0) {
      const done: string[] = [];
      this._takeover.forEach((t, d) => {
        if (now >= t.until) done.push(d);
      });
      for (const d of done) this._takeover.delete(d);
    }
    if (this._takeSync.size > 256) this._takeSync.clear();
    if (now < this._nextSyncAt) return;
    this._nextSyncAt = now + this.o.syncEveryMs;
    if (live.length === 0 || this._mine.length === 0) return;
    const peer = live[this._peerTurn++ % live.length];
    this._syncWith(peer, this._mine, true);
  }

  /** One sync request to `peer` for (a window of) `devs`. */
  _syncWith(peer: string, devs: readonly string[], rotate: boolean): number {
    if (devs.length === 0) return 0;
    let start = 0;
    if (rotate) {
      start = (this._peerCursor.get(peer) ?? 0) % devs.length;
      this._peerCursor.set(peer, start + SYNC_DEVICES_MAX);
    }
    const list: SyncDevice[] = [];
    const n = Math.min(devs.length, SYNC_DEVICES_MAX);
    for (let i = 0; i < n; i++) {
      const d = devs[(start + i) % devs.length];
      const r = this.store.seqRanges(d, { rangesMax: SYNC_RANGES_MAX });
      const upTo = r.truncated && r.ranges.length > 0 ? r.ranges[r.ranges.length - 1][1] : Number.MAX_SAFE_INTEGER;
      list.push({ d, r: r.ranges, upTo });
    }
    this.counters.syncRounds++;
    const id = ++this._msgSeq;
    this._send(peer, { t: 'sync', from: this.self, to: peer, id, devs: list });
    return id;
  }

  /** Answer a sync: the rows we hold that the peer's runs lack, at most RECS_PER_MSG_MAX. */
  _answerSync(from: string, id: number, devs: SyncDevice[]): void {
    const recs: TelemetryRecord[] = [];
    let more = false;
    for (let i = 0; i < devs.length && !more; i++) {
      const sd = devs[i];
      const mine = this.store.seqRanges(sd.d, { toSeq: sd.upTo, rangesMax: Number.MAX_SAFE_INTEGER }).ranges;
      const missing = subtractRanges(clipRanges(mine, sd.upTo), sd.r);
      for (let j = 0; j < missing.length; j++) {
        const room = RECS_PER_MSG_MAX - recs.length;
        if (room <= 0) {
          more = true;
          break;
        }
        const rows = this.store.exportRows(sd.d, missing[j][0], missing[j][1], room);
        for (const r of rows) recs.push(r);
        if (rows.length === room && (j < missing.length - 1 || rows[rows.length - 1].seq < missing[j][1])) more = true;
      }
    }
    this.counters.rowsOut += recs.length;
    this._lagRows.set(from, recs.length);
    this._send(from, { t: 'rows', from: this.self, to: from, id, recs, more });
  }

  // ------------------------------------------------------------------ view

  /** GET /api/cluster: members with health, leader, term, ring and replica lag. */
  view(now: number, raft: RaftView): ClusterView & ClusterViewExtra {
    const p = this.placement();
    const counts = new Map<string, number>();
    this.state._owners.forEach((o) => counts.set(o, (counts.get(o) ?? 0) + 1));
    const members = p.members.map((m) => ({
      id: m.id,
      addr: m.parsed.broker ? m.parsed.broker.host + ':' + m.parsed.broker.port : m.addr,
      up: m.id === this.self ? true : this.links.view(m.id, now).up,
      weight: m.weight,
      self: m.id === this.self,
      onRing: !m.parsed.out,
    }));
    const replicas = p.members
      .filter((m) => m.id !== this.self)
      .map((m) => ({ id: m.id, lagReadings: (this._lagOut.get(m.id) ?? 0) + (this._lagRows.get(m.id) ?? 0), up: this.links.view(m.id, now).up }));
    return {
      nodeId: this.self,
      members,
      leader: raft.leader === '' ? null : raft.leader,
      term: raft.term,
      ring: { epoch: this.state.epoch, owners: p.inRing.map((id) => ({ id, devices: counts.get(id) ?? 0 })) },
      replicas,
      mode: 'cluster',
      role: raft.role,
      commit: raft.commit,
      applied: raft.applied,
      replication: {
        factor: this.o.replicas,
        acks: this.o.acks,
        pendingWrites: this._writes.size,
        writesOk: this.counters.writesOk,
        writesFailed: { ...this.counters.writesFailed },
        syncRowsIn: this.counters.rowsIn,
        syncRowsOut: this.counters.rowsOut,
      },
      guard: { blocked: this.guard.blocked(now, raft), pauses: this.guard.trips, longestPauseMs: Math.round(this.guard.longestMs) },
      devices: { assigned: this.state.deviceCount(), unassigned: this._unassigned.size },
    };
  }
}

/** Fields GET /api/cluster adds to ClusterView in cluster mode. */
export interface ClusterViewExtra {
  members: Array<{ id: string; addr: string; up: boolean; weight: number; self: boolean; onRing: boolean }>;
  role: Role;
  commit: number;
  applied: number;
  replication: {
    factor: number;
    acks: AckPolicy;
    pendingWrites: number;
    writesOk: number;
    writesFailed: Record<string, number>;
    syncRowsIn: number;
    syncRowsOut: number;
  };
  guard: { blocked: string; pauses: number; longestPauseMs: number };
  devices: { assigned: number; unassigned: number };
}
