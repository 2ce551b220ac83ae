/**
 * A deterministic world for the Raft cluster (TigerBeetle VOPR / FoundationDB simulation style):
 * one seed drives the clock, the network, the disks, the faults and the clients, so a failing
 * run replays exactly from its seed.
 *
 *   clock    - one simulated timeline; each node ticks at its own drifting rate and phase.
 *   network  - every message is serialised to JSON (no shared objects between nodes), then
 *              dropped, duplicated, delayed (which reorders) or cut by a partition.
 *   disk     - MemoryStorage: a Ready is staged, then synced; a crash between the two loses
 *              the staged batch, as power loss loses the page cache.
 *   process  - crash (RAM lost) and restart from disk; pause (SIGSTOP) and resume, with the
 *              missed ticks delivered BEFORE the messages that queued up, as the service does.
 *
 * A run has a SAFETY phase (faults on) and a LIVENESS phase (faults healed: every node up and
 * reachable, no loss): a leader must appear within 2 x the election timeout and the replicas
 * must converge. Invariants are checked after EVERY event (see `_check`).
 */
import { SeededRng } from '../../firmware/core/rng.js';
import { ClusterState, type ClusterCommand } from '../../host/raft/cluster-state.js';
import { RaftNode, type Ready } from '../../host/raft/raft-core.js';
import { MemoryStorage } from '../../host/raft/raft-storage.js';
import type { ConfChange, Entry, Message, NodeId } from '../../host/raft/raft-types.js';

export type Scenario =
  | 'calm'
  | 'minority-leader'
  | 'isolated-follower'
  | 'flapping'
  | 'crash'
  | 'pause'
  | 'drift'
  | 'membership'
  | 'leader-churn'
  | 'chaos';

export const SCENARIOS: Scenario[] = [
  'calm',
  'minority-leader',
  'isolated-follower',
  'flapping',
  'crash',
  'pause',
  'drift',
  'membership',
  'leader-churn',
  'chaos',
];

export interface SimConfig {
  seed: number;
  nodes: number;
  scenario: Scenario;
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Length of the safety phase (faults injected). */
  safetyMs?: number;
  /** Compact a node's log once this many entries are applied past its snapshot. */
  compactEvery?: number;
  /**
   * Entries per append. Small values split a new leader's catch-up into many appends, so a
   * follower can hold old-term entries without the leader's own: the setting in which
   * committing by counting old-term entries (Raft §5.4.2, Figure 8) goes wrong.
   */
  entriesPerMsgMax?: number;
  /**
   * A deliberately broken shell that SENDS BEFORE it PERSISTS, with crashes between the two.
   * Used only to prove that the invariants catch the bug the ordering contract prevents.
   */
  buggySendBeforePersist?: boolean;
  /** Probability of a crash between writing a Ready and its fsync; default per scenario. */
  crashMidWriteP?: number;
  /** Keep every event in the trace instead of the last TRACE_TAIL. */
  traceAll?: boolean;
}

export interface SimResult {
  ok: boolean;
  violation: string;
  seed: number;
  scenario: Scenario;
  nodes: number;
  /** Events processed (ticks, deliveries, faults, client requests). */
  events: number;
  /** Invariant checks run (one per event, after it). */
  checks: number;
  sent: number;
  delivered: number;
  dropped: number;
  crashes: number;
  pauses: number;
  partitions: number;
  proposals: number;
  /** Highest commit index reached. */
  commit: number;
  /** Distinct terms that had a leader. */
  leaderTerms: number;
  /** From heal to a leader acknowledged by a majority; -1 if none in time. */
  leaderAfterHealMs: number;
  /** From heal to every replica applying the same state; -1 if not in time. */
  convergeAfterHealMs: number;
  simulatedMs: number;
  trace: string[];
}

const TRACE_TAIL = 80;

interface Ev {
  at: number;
  seq: number;
  kind: 'tick' | 'msg' | 'fault' | 'client' | 'heal';
  node: number;
  gen: number;
  msg: string;
  fn: (() => void) | null;
}

/** Min-heap of events by (at, seq): equal times keep insertion order, so runs are exact. */
class EventQueue {
  _h: Ev[] = [];

  get size(): number {
    return this._h.length;
  }

  push(e: Ev): void {
    const h = this._h;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (EventQueue._lt(h[p], h[i])) break;
      const t = h[p];
      h[p] = h[i];
      h[i] = t;
      i = p;
    }
  }

  pop(): Ev | undefined {
    const h = this._h;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop() as Ev;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && EventQueue._lt(h[l], h[m])) m = l;
        if (r < h.length && EventQueue._lt(h[r], h[m])) m = r;
        if (m === i) break;
        const t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
      }
    }
    return top;
  }

  static _lt(a: Ev, b: Ev): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }
}

interface SimNode {
  id: NodeId;
  k: number;
  up: boolean;
  /** Incarnation: events of an earlier life are ignored. */
  gen: number;
  paused: boolean;
  pausedAt: number;
  inbox: string[];
  node: RaftNode;
  storage: MemoryStorage;
  state: ClusterState;
  /** Local clock speed relative to simulated time (drift). */
  rate: number;
  /** Highest index whose commit this checker has already recorded for this node. */
  commitSeen: number;
}

interface CommittedRec {
  term: number;
  key: string;
  /** Term of the first node seen holding it committed (the leader that committed it). */
  commitTerm: number;
}

function entryKey(e: Entry): string {
  return e.kind + '|' + e.data + '|' + (e.voters ? e.voters.join(',') : '');
}

export class SimWorld {
  cfg: Required<Omit<SimConfig, 'buggySendBeforePersist' | 'traceAll' | 'crashMidWriteP'>> & {
    buggySendBeforePersist: boolean;
    traceAll: boolean;
  };
  rng: SeededRng;
  now = 0;
  q = new EventQueue();
  seq = 0;
  nodes: SimNode[] = [];
  ids: NodeId[] = [];
  /** Partition: nodes talk only within the same group. */
  group: number[] = [];
  loss = 0;
  dup = 0;
  delayMinMs = 1;
  delayMaxMs = 20;
  longDelayP = 0;
  crashMidWriteP = 0;
  healed = false;
  healAt = -1;

  // invariant records
  leaderOfTerm = new Map<number, NodeId>();
  entryAt = new Map<string, string>();
  committed = new Map<number, CommittedRec>();
  maxCommitted = 0;
  grants = new Map<string, NodeId>();
  violation = '';

  // figures
  events = 0;
  checks = 0;
  sent = 0;
  delivered = 0;
  dropped = 0;
  crashes = 0;
  pauses = 0;
  partitions = 0;
  proposals = 0;
  leaderAfterHealMs = -1;
  convergeAfterHealMs = -1;
  trace: string[] = [];
  _clientSeq = 0;
  _entriesPerMsg: number;
  _crashMidWriteOverride: number;
  _pendingConf: ConfChange | null = null;

  constructor(c: SimConfig) {
    this.cfg = {
      seed: c.seed,
      nodes: c.nodes,
      scenario: c.scenario,
      tickMs: c.tickMs ?? 50,
      electionTicks: c.electionTicks ?? 20,
      heartbeatTicks: c.heartbeatTicks ?? 2,
      safetyMs: c.safetyMs ?? 15000,
      compactEvery: c.compactEvery ?? 24,
      entriesPerMsgMax: c.entriesPerMsgMax ?? 0,
      buggySendBeforePersist: c.buggySendBeforePersist ?? false,
      traceAll: c.traceAll ?? false,
    };
    this.rng = new SeededRng(c.seed);
    this._crashMidWriteOverride = c.crashMidWriteP ?? -1;
    // 0 = chosen by the seed: mostly 16, sometimes 1 or 2 (see SimConfig.entriesPerMsgMax).
    this._entriesPerMsg = this.cfg.entriesPerMsgMax;
    if (this._entriesPerMsg <= 0) {
      const r = this.rng.next();
      this._entriesPerMsg = c.scenario === 'leader-churn' || r < 0.25 ? 1 + (this.rng.nextU32() & 1) : 16;
    }
    for (let k = 0; k < c.nodes; k++) this.ids.push('n' + (k + 1));
    for (let k = 0; k < c.nodes; k++) {
      const storage = new MemoryStorage();
      const sn: SimNode = {
        id: this.ids[k],
        k,
        up: true,
        gen: 0,
        paused: false,
        pausedAt: 0,
        inbox: [],
        node: null as unknown as RaftNode,
        storage,
        state: new ClusterState(),
        rate: 1,
        commitSeen: 0,
      };
      this.nodes.push(sn);
      this.group.push(0);
      this._boot(sn);
    }
  }

  electionTimeoutMs(): number {
    return this.cfg.electionTicks * this.cfg.tickMs;
  }

  // ---------------------------------------------------------------- run

  run(): SimResult {
    const T = this.electionTimeoutMs();
    this._setupScenario();
    this._schedule(this._rand(50, 300), 'client', -1, 0, '', () => this._client());
    this._schedule(this.cfg.safetyMs, 'heal', -1, 0, '', () => this._heal());
    // Liveness bounds, from the heal. A leader within 2 x the election timeout: the longest
    // randomised timeout (< 2T) of a node restarted at the heal, counted in ticks of its own
    // clock (so measured on the slowest clock; the heal keeps every rate within 5% of true
    // time), plus the tick it fires on and the pre-vote and vote round trips (4 one-way delays).
    // Convergence within the same again.
    const leaderBound = (2 * T + this.cfg.tickMs) / 0.95 + 4 * this.delayMaxMs;
    const convergeBound = 2 * leaderBound;
    const end = this.cfg.safetyMs + convergeBound + 1;
    let finalProposed = false;
    while (!this.violation) {
      const e = this.q.pop();
      if (!e || e.at > end) break;
      this.now = e.at;
      this._event(e);
      this.events++;
      if (this.violation) break;
      if (this.healed) {
        const since = this.now - this.healAt;
        if (this.leaderAfterHealMs < 0) {
          if (this._acknowledgedLeader() >= 0) this.leaderAfterHealMs = since;
          else if (since > leaderBound) {
            this._violate('liveness: no leader acknowledged by a majority within 2 x election timeout + one tick + two round trips (' + Math.round(leaderBound) + ' ms) after heal: ' + this._describe());
          }
        } else if (this.convergeAfterHealMs < 0) {
          if (!finalProposed) {
            finalProposed = true;
            this._proposeFinal();
          }
          if (this._converged()) {
            this.convergeAfterHealMs = since;
            break;
          } else if (since > convergeBound) {
            this._violate('liveness: replicas did not converge within ' + Math.round(convergeBound) + ' ms after heal: ' + this._describe());
          }
        }
      }
    }
    if (!this.violation && this.convergeAfterHealMs < 0) {
      this._violate('liveness: run ended before convergence: ' + this._describe());
    }
    return this._result();
  }

  _result(): SimResult {
    return {
      ok: this.violation === '',
      violation: this.violation,
      seed: this.cfg.seed,
      scenario: this.cfg.scenario,
      nodes: this.cfg.nodes,
      events: this.events,
      checks: this.checks,
      sent: this.sent,
      delivered: this.delivered,
      dropped: this.dropped,
      crashes: this.crashes,
      pauses: this.pauses,
      partitions: this.partitions,
      proposals: this.proposals,
      commit: this.maxCommitted,
      leaderTerms: this.leaderOfTerm.size,
      leaderAfterHealMs: this.leaderAfterHealMs,
      convergeAfterHealMs: this.convergeAfterHealMs,
      simulatedMs: this.now,
      trace: this.trace,
    };
  }

  _event(e: Ev): void {
    if (e.kind === 'tick') {
      const sn = this.nodes[e.node];
      if (!sn.up || sn.gen !== e.gen) return;
      this._scheduleTick(sn);
      if (sn.paused) return;
      sn.node.tick();
      this._flush(sn);
      this._check(sn);
      return;
    }
    if (e.kind === 'msg') {
      const sn = this.nodes[e.node];
      if (!sn.up) {
        this.dropped++;
        return;
      }
      if (sn.paused) {
        // The kernel keeps the bytes while the process is stopped.
        sn.inbox.push(e.msg);
        return;
      }
      this._deliver(sn, e.msg);
      this._check(sn);
      return;
    }
    (e.fn as () => void)();
    this._checkAll();
  }

  _deliver(sn: SimNode, text: string): void {
    this.delivered++;
    const m = JSON.parse(text) as Message;
    const r = sn.node.step(m);
    this._log(sn.id + ' <- ' + m.type + ' from ' + m.from + ' t' + m.term + ' i' + m.index + ' n' + m.entries.length + (m.reject ? ' REJ' : '') + (r ? ' [' + r + ']' : ''));
    this._flush(sn);
  }

  // ---------------------------------------------------------------- nodes

  _boot(sn: SimNode): void {
    const persisted = sn.storage.load();
    sn.state = new ClusterState();
    if (persisted && persisted.snapshot.data !== '') {
      const r = sn.state.restore(persisted.snapshot.data);
      if (r) this._violate(sn.id + ' cannot restore its own snapshot: ' + r);
    }
    sn.node = new RaftNode(
      {
        id: sn.id,
        electionTicks: this.cfg.electionTicks,
        heartbeatTicks: this.cfg.heartbeatTicks,
        rng: new SeededRng(this.rng.nextU32()),
        voters: this.ids,
        peers: this.ids,
        entriesPerMsgMax: this._entriesPerMsg,
      },
      persisted,
    );
    sn.up = true;
    sn.paused = false;
    sn.inbox = [];
    sn.commitSeen = sn.node.log.snapshot().index;
    // A random phase: nodes never tick in lock-step.
    this._schedule(this._rand(1, this.cfg.tickMs), 'tick', sn.k, sn.gen, '', null);
    this._flush(sn);
  }

  _scheduleTick(sn: SimNode): void {
    this._schedule(this.cfg.tickMs / sn.rate, 'tick', sn.k, sn.gen, '', null);
  }

  /** Handle every Ready: PERSIST (stage + sync), then SEND, then APPLY, then advance. */
  _flush(sn: SimNode): void {
    const node = sn.node;
    while (sn.up && node.hasReady()) {
      const rd = node.ready();
      sn.storage.stage(rd);
      if (this.cfg.buggySendBeforePersist) {
        // BROKEN ON PURPOSE: messages leave before the disk has them.
        this._sendAll(sn, rd);
        if (this._chance(this.crashMidWriteP)) {
          this._crash(sn, 'after send, before sync');
          return;
        }
        sn.storage.sync();
      } else {
        if (this._chance(this.crashMidWriteP)) {
          this._crash(sn, 'between write and fsync');
          return;
        }
        sn.storage.sync();
        this._sendAll(sn, rd);
      }
      this._apply(sn, rd);
      node.advance(rd);
      const applied = node.log.applied;
      if (applied - node.log.snapshot().index >= this.cfg.compactEvery) {
        node.compact(applied, sn.state.snapshot());
      }
    }
  }

  _apply(sn: SimNode, rd: Ready): void {
    if (rd.snapshot) {
      const r = sn.state.restore(rd.snapshot.data);
      if (r) this._violate(sn.id + ' received an unreadable snapshot: ' + r);
    }
    for (let i = 0; i < rd.committed.length; i++) {
      const e = rd.committed[i];
      let cmd: unknown = { t: 'noop' };
      if (e.kind !== 'noop') {
        const env = JSON.parse(e.data) as { c: unknown };
        cmd = env.c;
      }
      sn.state.apply(e.index, cmd);
      if (sn.state.appliedIndex !== e.index) this._violate(sn.id + ' applied out of order at ' + e.index);
    }
  }

  _sendAll(sn: SimNode, rd: Ready): void {
    for (let i = 0; i < rd.messages.length; i++) this._send(sn, rd.messages[i]);
  }

  _send(from: SimNode, m: Message): void {
    this.sent++;
    if (m.type === 'voteResp' && !m.reject) {
      // Election safety's root: one grant per (voter, term), across crashes.
      const key = m.from + '@' + m.term;
      const prev = this.grants.get(key);
      if (prev !== undefined && prev !== m.to) {
        this._violate(m.from + ' granted its vote twice in term ' + m.term + ': ' + prev + ' and ' + m.to);
      }
      this.grants.set(key, m.to);
    }
    const to = this.ids.indexOf(m.to);
    if (to < 0) return;
    if (this.group[from.k] !== this.group[to] || this._chance(this.loss)) {
      this.dropped++;
      return;
    }
    const text = JSON.stringify(m);
    this._schedule(this._delay(), 'msg', to, 0, text, null);
    if (this._chance(this.dup)) this._schedule(this._delay(), 'msg', to, 0, text, null);
  }

  _delay(): number {
    if (this._chance(this.longDelayP)) return this._rand(this.delayMaxMs, 20 * this.delayMaxMs);
    return this._rand(this.delayMinMs, this.delayMaxMs);
  }

  _crash(sn: SimNode, why: string, restartAfterMs = -1): void {
    if (!sn.up) return;
    this.crashes++;
    sn.up = false;
    sn.gen++;
    sn.paused = false;
    sn.inbox = [];
    sn.storage.crash();
    this._log(sn.id + ' CRASH (' + why + ')');
    const gen = sn.gen;
    if (!this.healed) {
      const after = restartAfterMs >= 0 ? restartAfterMs : this._rand(100, 4 * this.electionTimeoutMs());
      this._later(after, () => {
        if (sn.gen === gen) this._restart(sn);
      });
    }
  }

  _restart(sn: SimNode): void {
    if (sn.up) return;
    this._log(sn.id + ' RESTART');
    this._boot(sn);
  }

  _pause(sn: SimNode): void {
    if (!sn.up || sn.paused) return;
    this.pauses++;
    sn.paused = true;
    sn.pausedAt = this.now;
    this._log(sn.id + ' PAUSE (role ' + sn.node.role + ')');
  }

  /** SIGCONT: deliver the missed ticks FIRST (as the service does), then the queued messages. */
  _resume(sn: SimNode): void {
    if (!sn.up || !sn.paused) return;
    sn.paused = false;
    const wasLeader = sn.node.role === 'leader';
    const elapsedTicks = Math.floor(((this.now - sn.pausedAt) * sn.rate) / this.cfg.tickMs);
    const catchUp = Math.min(elapsedTicks, 2 * this.cfg.electionTicks + 1);
    if (catchUp > 0) sn.node.tick(catchUp);
    this._log(sn.id + ' RESUME after ' + Math.round(this.now - sn.pausedAt) + ' ms, ' + catchUp + ' ticks, role ' + sn.node.role);
    if (wasLeader && elapsedTicks >= this.cfg.electionTicks && sn.node.role === 'leader') {
      this._violate(sn.id + ' was paused past the election timeout and is still leader after its missed ticks, before any message');
    }
    this._flush(sn);
    const inbox = sn.inbox;
    sn.inbox = [];
    for (let i = 0; i < inbox.length && sn.up; i++) this._deliver(sn, inbox[i]);
    this._check(sn);
  }

  // ---------------------------------------------------------------- invariants

  _check(sn: SimNode): void {
    this.checks++;
    if (!sn.up || this.violation) return;
    const node = sn.node;
    const log = node.log;
    // 1. Election safety: at most one leader per term, over the whole run.
    if (node.role === 'leader') {
      const prev = this.leaderOfTerm.get(node.term);
      if (prev === undefined) this.leaderOfTerm.set(node.term, sn.id);
      else if (prev !== sn.id) {
        this._violate('two leaders in term ' + node.term + ': ' + prev + ' and ' + sn.id);
        return;
      }
    }
    // 2. Log matching: (index, term) names one entry, and one predecessor term, everywhere.
    const snap = log.snapshot();
    const last = log.lastIndex();
    let prevTerm = snap.term;
    for (let i = snap.index + 1; i <= last; i++) {
      const e = log.entry(i) as Entry;
      const key = i + ':' + e.term;
      const val = prevTerm + '|' + entryKey(e);
      const seen = this.entryAt.get(key);
      if (seen === undefined) this.entryAt.set(key, val);
      else if (seen !== val) {
        this._violate('log matching: ' + sn.id + ' holds a different entry or predecessor at index ' + i + ' term ' + e.term);
        return;
      }
      prevTerm = e.term;
    }
    // 3. State machine safety: one entry committed per index.
    const commit = log.committed;
    for (let i = Math.max(sn.commitSeen, snap.index) + 1; i <= commit; i++) {
      const e = log.entry(i) as Entry;
      const key = entryKey(e);
      const rec = this.committed.get(i);
      if (rec === undefined) {
        this.committed.set(i, { term: e.term, key, commitTerm: node.term });
        if (i > this.maxCommitted) this.maxCommitted = i;
      } else if (rec.term !== e.term || rec.key !== key) {
        this._violate('two different entries committed at index ' + i + ' (' + sn.id + ')');
        return;
      }
    }
    if (commit > sn.commitSeen) sn.commitSeen = commit;
    // 4. Leader completeness: a leader of term T holds every entry committed before T.
    if (node.role === 'leader') {
      for (let i = snap.index + 1; i <= this.maxCommitted; i++) {
        const rec = this.committed.get(i);
        if (!rec || rec.commitTerm >= node.term) continue;
        if (log.term(i) !== rec.term) {
          this._violate('leader completeness: ' + sn.id + ' leads term ' + node.term + ' without entry ' + i + ' committed in term ' + rec.commitTerm);
          return;
        }
      }
    }
  }

  _checkAll(): void {
    for (let k = 0; k < this.nodes.length; k++) this._check(this.nodes[k]);
  }

  _violate(why: string): void {
    if (this.violation) return;
    this.violation = why;
    this._log('VIOLATION ' + why);
  }

  // ---------------------------------------------------------------- liveness

  /** Index of a leader whose term is the highest and that a majority of its voters follow. */
  _acknowledgedLeader(): number {
    for (let k = 0; k < this.nodes.length; k++) {
      const sn = this.nodes[k];
      if (!sn.up || sn.paused || sn.node.role !== 'leader') continue;
      const term = sn.node.term;
      const voters = sn.node.voters();
      let ack = 0;
      let newer = false;
      for (let j = 0; j < voters.length; j++) {
        const o = this.nodes[this.ids.indexOf(voters[j])];
        if (!o.up) continue;
        if (o.node.term > term) newer = true;
        if (o.node.term === term && o.node.leader === sn.id) ack++;
      }
      if (!newer && ack >= (voters.length >> 1) + 1) return k;
    }
    return -1;
  }

  /** Every voter of the leader's configuration applied the leader's whole log, same state. */
  _converged(): boolean {
    const li = this._acknowledgedLeader();
    if (li < 0) return false;
    const leader = this.nodes[li];
    const target = leader.node.log.lastIndex();
    if (leader.node.log.committed !== target || leader.node.log.applied !== target) return false;
    const digest = leader.state.snapshot();
    const voters = leader.node.voters();
    for (let j = 0; j < voters.length; j++) {
      const o = this.nodes[this.ids.indexOf(voters[j])];
      if (o.node.log.applied !== target || o.node.log.lastIndex() !== target) return false;
      if (o.state.snapshot() !== digest) return false;
    }
    return true;
  }

  _describe(): string {
    const parts: string[] = [];
    for (let k = 0; k < this.nodes.length; k++) {
      const n = this.nodes[k].node;
      parts.push(
        this.nodes[k].id + '{' + (this.nodes[k].up ? '' : 'DOWN ') + n.role + ' t' + n.term + ' L' + n.leader + ' c' + n.log.committed + ' a' + n.log.applied + ' last' + n.log.lastIndex() + ' v' + n.voters().join(',') + '}',
      );
    }
    return parts.join(' ');
  }

  // ---------------------------------------------------------------- faults

  _heal(): void {
    this.healed = true;
    this.healAt = this.now;
    this.loss = 0;
    this.dup = 0;
    this.longDelayP = 0;
    this.crashMidWriteP = 0;
    for (let k = 0; k < this.nodes.length; k++) {
      this.group[k] = 0;
      const sn = this.nodes[k];
      // Drift stays (clocks do drift), within what NTP-less hosts see.
      if (sn.rate < 0.95 || sn.rate > 1.05) sn.rate = 0.95 + 0.1 * this.rng.next();
    }
    this._log('HEAL');
    for (let k = 0; k < this.nodes.length; k++) {
      const sn = this.nodes[k];
      if (!sn.up) this._restart(sn);
      else if (sn.paused) this._resume(sn);
    }
  }

  _setupScenario(): void {
    const s = this.cfg.scenario;
    // Background faults in every scenario: loss, duplication, reordering by random delay.
    this.loss = 0.03;
    this.dup = 0.02;
    this.delayMinMs = 1;
    this.delayMaxMs = 20;
    this.longDelayP = 0.02;
    for (let k = 0; k < this.nodes.length; k++) this.nodes[k].rate = 0.98 + 0.04 * this.rng.next();
    if (s === 'calm') {
      // No process or partition faults; a rough network only.
      this.loss = 0.1;
      this.dup = 0.1;
      this.longDelayP = 0.1;
    }
    if (s === 'chaos') {
      this.loss = 0.08;
      this.dup = 0.05;
      this.crashMidWriteP = 0.002;
    }
    if (s === 'crash') this.crashMidWriteP = 0.003;
    if (s === 'leader-churn') {
      this.loss = 0.05;
      this.longDelayP = 0.05;
    }
    if (this._crashMidWriteOverride >= 0) this.crashMidWriteP = this._crashMidWriteOverride;
    if (s === 'calm') return;
    this._schedule(this._rand(300, 1500), 'fault', -1, 0, '', () => this._fault());
  }

  _fault(): void {
    if (this.healed) return;
    let s = this.cfg.scenario;
    if (s === 'chaos') {
      const all: Scenario[] = ['minority-leader', 'isolated-follower', 'flapping', 'crash', 'pause', 'drift', 'membership', 'leader-churn'];
      s = all[this._int(0, all.length - 1)];
    }
    const T = this.electionTimeoutMs();
    let next = this._rand(300, 2000);
    switch (s) {
      case 'minority-leader': {
        const li = this._currentLeader();
        if (li < 0 || this._partitioned()) break;
        // The leader plus fewer than half of the others: it keeps its role for a while but can
        // never commit; the majority elects a new leader.
        const minority = [li];
        const others = this._shuffled(this.nodes.length).filter((k) => k !== li);
        const extra = ((this.nodes.length - 1) >> 1) - 1;
        for (let i = 0; i < extra; i++) minority.push(others[i]);
        this._split(minority);
        this._later(this._rand(T, 4 * T), () => this._unsplit());
        next = this._rand(5 * T, 7 * T);
        break;
      }
      case 'isolated-follower': {
        const li = this._currentLeader();
        const cands = this._shuffled(this.nodes.length).filter((k) => k !== li);
        if (this._partitioned()) break;
        this._split([cands[0]]);
        this._later(this._rand(T / 2, 5 * T), () => this._unsplit());
        next = this._rand(2 * T, 6 * T);
        break;
      }
      case 'flapping': {
        if (this._chance(0.3)) this._unsplit();
        else {
          const order = this._shuffled(this.nodes.length);
          this._split(order.slice(0, this._int(1, this.nodes.length - 1)));
        }
        next = this._rand(100, 1200);
        break;
      }
      case 'crash': {
        const order = this._shuffled(this.nodes.length);
        const sn = this.nodes[order[0]];
        if (sn.up) this._crash(sn, 'fault');
        next = this._rand(200, 2 * T);
        break;
      }
      case 'pause': {
        // SIGSTOP: mostly the leader, for longer than its lease.
        const li = this._currentLeader();
        const k = li >= 0 && this._chance(0.7) ? li : this._int(0, this.nodes.length - 1);
        const sn = this.nodes[k];
        if (sn.up && !sn.paused) {
          const gen = sn.gen;
          this._pause(sn);
          this._later(this._rand(T / 4, 4 * T), () => {
            if (sn.gen === gen) this._resume(sn);
          });
        }
        next = this._rand(T, 5 * T);
        break;
      }
      case 'drift': {
        const sn = this.nodes[this._int(0, this.nodes.length - 1)];
        sn.rate = 0.7 + 0.6 * this.rng.next();
        this._log(sn.id + ' DRIFT rate ' + sn.rate.toFixed(3));
        next = this._rand(500, 3000);
        break;
      }
      case 'leader-churn': {
        // Depose leaders soon after they win, before their own first entry spreads: crash
        // the leader, or cut it off with at most one follower, for a short while.
        const li = this._currentLeader();
        if (li >= 0) {
          const sn = this.nodes[li];
          if (this._chance(0.5)) this._crash(sn, 'churn', this._rand(50, T));
          else if (!this._partitioned()) {
            const others = this._shuffled(this.nodes.length).filter((k) => k !== li);
            this._split(this._chance(0.5) ? [li] : [li, others[0]]);
            this._later(this._rand(T / 2, 2 * T), () => this._unsplit());
          }
        }
        next = this._rand(T / 4, 1.5 * T);
        break;
      }
      case 'membership': {
        this._membershipStep();
        next = this._rand(T, 4 * T);
        break;
      }
      default:
        break;
    }
    this._schedule(next, 'fault', -1, 0, '', () => this._fault());
  }

  /** Remove a voter, or add a removed node back, through the leader (single-step changes). */
  _membershipStep(): void {
    const li = this._currentLeader();
    if (li < 0) return;
    const leader = this.nodes[li];
    const voters = leader.node.voters();
    const absent = this.ids.filter((id) => voters.indexOf(id) < 0);
    let change: ConfChange;
    let cmd: ClusterCommand;
    if (absent.length > 0 && (voters.length <= 3 || this._chance(0.5))) {
      const id = absent[this._int(0, absent.length - 1)];
      change = { op: 'add', id };
      cmd = { t: 'member.add', id, addr: id + ':1', weight: 1 };
    } else if (voters.length > 3 || (voters.length > 2 && this.nodes.length === 3)) {
      const id = voters[this._int(0, voters.length - 1)];
      change = { op: 'remove', id };
      cmd = { t: 'member.remove', id };
    } else {
      return;
    }
    const r = leader.node.propose({ data: this._envelope(cmd), change });
    this.proposals++;
    this._log(leader.id + ' CONF ' + change.op + ' ' + change.id + ' -> ' + (r.ok ? 'ok' : (r as { reason: string }).reason));
    this._flush(leader);
  }

  _split(side: number[]): void {
    this.partitions++;
    for (let k = 0; k < this.nodes.length; k++) this.group[k] = side.indexOf(k) >= 0 ? 1 : 0;
    this._log('PARTITION ' + side.map((k) => this.ids[k]).join(',') + ' | rest');
  }

  _unsplit(): void {
    if (this.healed) return;
    for (let k = 0; k < this.nodes.length; k++) this.group[k] = 0;
    this._log('UNPARTITION');
  }

  _partitioned(): boolean {
    for (let k = 0; k < this.nodes.length; k++) if (this.group[k] !== 0) return true;
    return false;
  }

  _currentLeader(): number {
    let best = -1;
    for (let k = 0; k < this.nodes.length; k++) {
      const sn = this.nodes[k];
      if (!sn.up || sn.node.role !== 'leader') continue;
      if (best < 0 || sn.node.term > this.nodes[best].node.term) best = k;
    }
    return best;
  }

  // ---------------------------------------------------------------- clients

  _envelope(cmd: ClusterCommand): string {
    return JSON.stringify({ p: 'sim:' + ++this._clientSeq, c: cmd });
  }

  _client(): void {
    if (!this.healed) {
      const sn = this.nodes[this._int(0, this.nodes.length - 1)];
      if (sn.up && !sn.paused) {
        const cmd = this._randomCommand(sn);
        const r = sn.node.propose({ data: this._envelope(cmd) });
        this.proposals++;
        this._log(sn.id + ' PROPOSE ' + cmd.t + ' -> ' + (r.ok ? 'ok' : (r as { reason: string }).reason));
        this._flush(sn);
      }
      this._schedule(this._rand(30, 300), 'client', -1, 0, '', () => this._client());
    }
  }

  _randomCommand(sn: SimNode): ClusterCommand {
    const members = sn.state.members();
    for (let i = 0; i < this.ids.length; i++) {
      if (!sn.state.member(this.ids[i]) && sn.node.voters().indexOf(this.ids[i]) >= 0 && this._chance(0.5)) {
        return { t: 'member.add', id: this.ids[i], addr: this.ids[i] + ':7000', weight: 1 };
      }
    }
    const r = this.rng.next();
    if (r < 0.6 && members.length > 0) {
      const set: Record<string, string | null> = {};
      const n = this._int(1, 4);
      for (let i = 0; i < n; i++) {
        const dev = 'dev-' + this._int(1, 40);
        set[dev] = this._chance(0.15) ? null : members[this._int(0, members.length - 1)].id;
      }
      return this._chance(0.5) ? { t: 'device.assign', set } : { t: 'device.assign', ifEpoch: sn.state.epoch, set };
    }
    if (r < 0.8) return { t: 'ring.epoch', epoch: sn.state.epoch + this._int(1, 3) };
    if (members.length > 0) {
      const m = members[this._int(0, members.length - 1)];
      return { t: 'member.update', id: m.id, weight: this._int(1, 10) };
    }
    return { t: 'noop' };
  }

  _proposeFinal(): void {
    const li = this._acknowledgedLeader();
    if (li < 0) return;
    const sn = this.nodes[li];
    sn.node.propose({ data: this._envelope({ t: 'ring.epoch', epoch: sn.state.epoch + 1 }) });
    this.proposals++;
    this._flush(sn);
  }

  // ---------------------------------------------------------------- plumbing

  _schedule(afterMs: number, kind: Ev['kind'], node: number, gen: number, msg: string, fn: (() => void) | null): void {
    this.q.push({ at: this.now + afterMs, seq: this.seq++, kind, node, gen, msg, fn });
  }

  _later(afterMs: number, fn: () => void): void {
    this._schedule(afterMs, 'fault', -1, 0, '', fn);
  }

  _rand(lo: number, hi: number): number {
    return lo + (hi - lo) * this.rng.next();
  }

  _int(lo: number, hi: number): number {
    return lo + Math.floor(this.rng.next() * (hi - lo + 1));
  }

  _chance(p: number): boolean {
    return p > 0 && this.rng.next() < p;
  }

  _shuffled(n: number): number[] {
    const a: number[] = [];
    for (let i = 0; i < n; i++) a.push(i);
    for (let i = n - 1; i > 0; i--) {
      const j = this._int(0, i);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  _log(s: string): void {
    this.trace.push(this.now.toFixed(1) + ' ' + s);
    if (!this.cfg.traceAll && this.trace.length > 2 * TRACE_TAIL) this.trace = this.trace.slice(-TRACE_TAIL);
  }
}

/** Run one simulation; convenience for tests and the replay command. */
export function simulate(c: SimConfig): SimResult {
  return new SimWorld(c).run();
}
