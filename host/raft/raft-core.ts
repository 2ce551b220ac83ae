/**
 * The Raft consensus core: leader election with pre-vote and check-quorum, log replication,
 * snapshots and single-step membership changes. Pure: inputs are `step(message)`, `tick()`,
 * `propose(...)` and `compact(...)`; outputs are collected by `ready()`.
 *
 * References: Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm" (§ numbers
 * below), and Ongaro's thesis "Consensus: Bridging Theory and Practice" (thesis §). The structure
 * follows etcd-io/raft: each role installs its own step and tick functions.
 *
 * ORDERING CONTRACT FOR THE SHELL (see raft-types.ts):
 *   rd = node.ready()
 *   PERSIST rd.snapshot, rd.compacted, rd.entries, rd.hardState, in that order, and FSYNC;
 *   ONLY THEN SEND rd.messages;
 *   APPLY rd.snapshot (if any) THEN rd.committed to the state machine;
 *   node.advance(rd).
 * No step/tick/propose/compact between ready() and advance(): the node asserts it.
 *
 * Time is counted in ticks; the shell calls tick() every tickMs, and after a pause (SIGSTOP, a
 * long GC) it MUST deliver the ticks it missed BEFORE it steps any message, so that a leader
 * that slept through its lease steps down before it can act on anything (check-quorum below).
 */
import type { Rng } from '../../firmware/core/rng.js';
import { RaftLog, TERM_UNKNOWN } from './raft-log.js';
import { Progress } from './raft-progress.js';
import {
  blankMessage,
  emptySnapshot,
  VOTERS_MAX,
  type ConfChange,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type PersistedState,
  type Role,
  type Snapshot,
  type SoftState,
} from './raft-types.js';
import { isNodeId, validateMessage, type ValidateLimits } from './raft-validate.js';

export interface RaftConfig {
  id: NodeId;
  /**
   * Election timeout T in ticks. A follower campaigns after a random timeout in [T, 2T) without
   * hearing from a leader; a leader steps down when it has not heard from a quorum for T.
   */
  electionTicks: number;
  /** Heartbeat interval in ticks; must be well below electionTicks. */
  heartbeatTicks: number;
  /** Randomness for election timeouts (firmware/core/rng.ts SeededRng in tests). */
  rng: Rng;
  /** Voters of a brand-new cluster; used only when storage holds nothing yet. */
  voters?: NodeId[];
  /** Other ids allowed to message us (the address book); configurations add theirs. */
  peers?: NodeId[];
  /** Pre-vote (thesis §9.6). Default true. */
  preVote?: boolean;
  /** Check-quorum and the follower lease (thesis §6.2, §4.2.3). Default true. */
  checkQuorum?: boolean;
  /** Entries per append or proposal message. Bounds one frame and one disk write. */
  entriesPerMsgMax?: number;
  /** Bytes of one entry's data: a cluster command is small; this stops a runaway proposer. */
  entryBytesMax?: number;
  /** Bytes of a snapshot: the cluster state must fit one transport frame. */
  snapshotBytesMax?: number;
  /** Unanswered appends per follower in replicate state: bounds memory and retransmission. */
  inflightMax?: number;
  /** Appended but uncommitted entries the leader accepts: backpressure when no quorum. */
  uncommittedMax?: number;
  /** Committed entries handed out per Ready: bounds one apply batch. */
  applyBatchMax?: number;
}

export const RAFT_DEFAULTS = {
  preVote: true,
  checkQuorum: true,
  entriesPerMsgMax: 64,
  entryBytesMax: 64 * 1024,
  snapshotBytesMax: 4 * 1024 * 1024,
  inflightMax: 16,
  uncommittedMax: 1024,
  applyBatchMax: 256,
};

/** Everything the shell must do, in the order of the contract at the top of this file. */
export interface Ready {
  /** Changed term/vote/commit to persist; null when unchanged. */
  hardState: HardState | null;
  /** Entries to persist, REPLACING any stored entry at or after entries[0].index. */
  entries: Entry[];
  /** A snapshot from the leader: persist it (dropping every stored entry), then restore from it. */
  snapshot: Snapshot | null;
  /** A local compaction: persist it and drop stored entries up to its index. */
  compacted: Snapshot | null;
  /** Committed entries to apply, in order, AFTER persisting. */
  committed: Entry[];
  /** Messages to send AFTER persisting. */
  messages: Message[];
  soft: SoftState;
}

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: true; forwardedTo: NodeId }
  | { ok: false; reason: string };

export interface Proposal {
  data: string;
  /** Present for a membership change: the entry becomes a conf entry. */
  change?: ConfChange;
}

export interface RaftStatus {
  id: NodeId;
  role: Role;
  term: number;
  vote: NodeId;
  leader: NodeId;
  commit: number;
  applied: number;
  lastIndex: number;
  snapshotIndex: number;
  voters: NodeId[];
  /** Messages and proposals dropped, by reason. */
  drops: Record<string, number>;
}

function quorumOf(n: number): number {
  return (n >> 1) + 1;
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function isPristine(p: PersistedState | null): boolean {
  return (
    p === null ||
    (p.hardState.term === 0 &&
      p.snapshot.index === 0 &&
      p.snapshot.voters.length === 0 &&
      p.entries.length === 0)
  );
}

export class RaftNode {
  readonly id: NodeId;
  readonly log: RaftLog;
  term = 0;
  vote: NodeId = '';
  leader: NodeId = '';
  role: Role = 'follower';
  /** Messages and proposals dropped, by reason; never reset. */
  readonly drops: Record<string, number> = {};

  _electionTicks: number;
  _heartbeatTicks: number;
  _rng: Rng;
  _preVote: boolean;
  _checkQuorum: boolean;
  _lim: ValidateLimits;
  _inflightMax: number;
  _uncommittedMax: number;
  _applyBatchMax: number;

  /** Configuration in force: voters of the LAST conf entry in the log, committed or not. */
  _voters: NodeId[] = [];
  /** Indices of conf entries in the log after the snapshot, ascending. */
  _confIdx: number[] = [];
  _known = new Set<NodeId>();

  /** Ticks since creation: the leader's clock for check-quorum. */
  _tick = 0;
  _electionElapsed = 0;
  _heartbeatElapsed = 0;
  _randomizedTimeout = 0;
  _votes = new Map<NodeId, boolean>();
  _prs = new Map<NodeId, Progress>();
  /** Leader: index of the last conf entry, or of the leader's first entry of its term. */
  _pendingConf = 0;

  _msgs: Message[] = [];
  _prevHard: HardState;
  _readyOut = false;
  _tickFn: (n: number) => void;
  _stepFn: (m: Message) => void;

  constructor(cfg: RaftConfig, persisted: PersistedState | null) {
    if (!isNodeId(cfg.id)) throw new Error('raft: invalid node id');
    if (!(cfg.heartbeatTicks >= 1 && cfg.electionTicks > cfg.heartbeatTicks)) {
      throw new Error('raft: need 1 <= heartbeatTicks < electionTicks');
    }
    this.id = cfg.id;
    this._electionTicks = cfg.electionTicks;
    this._heartbeatTicks = cfg.heartbeatTicks;
    this._rng = cfg.rng;
    this._preVote = cfg.preVote ?? RAFT_DEFAULTS.preVote;
    this._checkQuorum = cfg.checkQuorum ?? RAFT_DEFAULTS.checkQuorum;
    this._lim = {
      entriesPerMsgMax: cfg.entriesPerMsgMax ?? RAFT_DEFAULTS.entriesPerMsgMax,
      entryBytesMax: cfg.entryBytesMax ?? RAFT_DEFAULTS.entryBytesMax,
      snapshotBytesMax: cfg.snapshotBytesMax ?? RAFT_DEFAULTS.snapshotBytesMax,
    };
    this._inflightMax = cfg.inflightMax ?? RAFT_DEFAULTS.inflightMax;
    this._uncommittedMax = cfg.uncommittedMax ?? RAFT_DEFAULTS.uncommittedMax;
    this._applyBatchMax = cfg.applyBatchMax ?? RAFT_DEFAULTS.applyBatchMax;

    let bootstrap: Snapshot | null = null;
    let p: PersistedState;
    if (isPristine(persisted)) {
      // A new cluster: the initial configuration acts as a snapshot at index 0. It goes to
      // storage through the first Ready, so a restart finds the same configuration.
      const voters = (cfg.voters ?? []).slice().sort();
      bootstrap = emptySnapshot(voters);
      p = { hardState: { term: 0, vote: '', commit: 0 }, snapshot: bootstrap, entries: [] };
    } else {
      p = persisted as PersistedState;
    }
    this.log = new RaftLog(p.snapshot, p.entries, p.hardState.commit);
    if (bootstrap && bootstrap.voters.length > 0) this.log._pendingCompact = bootstrap;
    this.term = p.hardState.term;
    this.vote = p.hardState.vote;
    this._prevHard = { term: this.term, vote: this.vote, commit: this.log.committed };
    const peers = cfg.peers ?? [];
    for (let i = 0; i < peers.length; i++) this._known.add(peers[i]);
    this._rebuildConf();
    this._tickFn = this._tickElection;
    this._stepFn = this._stepFollower;
    this._becomeFollower(this.term, '');
  }

  // ---------------------------------------------------------------- inputs

  /**
   * Advance the logical clock by `n` ticks (default 1), evaluated ONCE at the end: after a pause
   * the shell passes every missed tick in one call, so a leader whose lease ran out steps down
   * without first sending a burst of heartbeats on authority it no longer has.
   */
  tick(n = 1): void {
    this._assertNotInReady();
    const k = n >= 1 ? Math.floor(n) : 1;
    this._tick += k;
    this._tickFn(k);
  }

  /**
   * Feed one message from a peer. Returns '' when accepted, else the reason it was dropped.
   * NEVER throws on peer input: whatever the bytes decoded to, the worst outcome is a count in
   * `drops`.
   */
  step(raw: unknown): string {
    this._assertNotInReady();
    const bad = validateMessage(raw, this.id, this._lim);
    if (bad) return this._drop(bad);
    const m = raw as Message;
    if (!this._known.has(m.from)) return this._drop('unknown-sender');
    if (m.type === 'prop') {
      // Proposals carry no term: they are a request, not a Raft RPC.
      if (this.role !== 'leader') return this._drop('not-leader');
      const r = this._appendProposals(m.entries);
      return r.ok ? '' : this._drop(r.reason);
    }
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        // Leader lease (thesis §4.2.3): a node that heard from a live leader within the
        // election timeout ignores candidates, so a partitioned or removed node that comes back
        // cannot depose a healthy leader.
        if (this._inLease()) return this._drop('in-lease');
      }
      if (m.type === 'preVote') {
        // Answer at the proposed term without adopting it (thesis §9.6).
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // A granted pre-vote echoes the future term; we adopt it only by winning.
      } else if (m.type === 'app' || m.type === 'hb' || m.type === 'snap') {
        this._becomeFollower(m.term, m.from);
      } else {
        this._becomeFollower(m.term, '');
      }
    } else if (m.term < this.term) {
      if ((this._checkQuorum || this._preVote) && (m.type === 'app' || m.type === 'hb')) {
        // A deposed leader that cannot hear the new one would otherwise keep its followers'
        // elections suppressed (lease) while never learning the new term; telling it our term
        // makes it step down (etcd does the same).
        this._send(blankMessage('appResp', this.id, m.from, this.term));
      } else if (m.type === 'preVote') {
        const r = blankMessage('preVoteResp', this.id, m.from, this.term);
        r.reject = true;
        this._send(r);
      }
      return this._drop('stale-term');
    }

    if (m.type === 'vote' || m.type === 'preVote') {
      this._handleVoteRequest(m);
      return '';
    }
    if (this.role === 'leader' && this._prs.has(m.from)) {
      (this._prs.get(m.from) as Progress).lastHeardTick = this._tick;
    }
    const before = this._dropCount;
    this._stepFn(m);
    return this._dropCount === before ? '' : this._lastDrop;
  }

  /**
   * Propose one entry (a cluster command, or a membership change with `change`). On the leader
   * it is appended at once; on a follower it is forwarded to the known leader.
   * The entry is durable only once COMMITTED; an index returned here may still be lost to a
   * new leader, so callers wait for the entry at that index to be applied with this term.
   */
  propose(p: Proposal): ProposeResult {
    this._assertNotInReady();
    // Local refusals are answers to the caller, not peer drops: they are not counted in drops.
    if (typeof p.data !== 'string' || p.data.length > this._lim.entryBytesMax) {
      return { ok: false, reason: 'entry-too-big' };
    }
    const c = p.change;
    if (c && ((c.op !== 'add' && c.op !== 'remove') || !isNodeId(c.id))) {
      return { ok: false, reason: 'bad-change' };
    }
    const e: Entry = { index: 0, term: 0, kind: c ? 'conf' : 'cmd', data: p.data };
    if (c) e.change = { op: c.op, id: c.id };
    if (this.role === 'leader') return this._appendProposals([e]);
    if (this.leader === '') return { ok: false, reason: 'no-leader' };
    const m = blankMessage('prop', this.id, this.leader, 0);
    m.entries.push(e);
    this._send(m);
    return { ok: true, forwardedTo: this.leader };
  }

  /** Start an election now (tests, leadership hand-off by an operator). */
  campaign(): void {
    this._assertNotInReady();
    if (this.role === 'leader') return;
    this._campaign(this._preVote ? 'preVote' : 'vote');
  }

  /**
   * Compact the log up to `index` (<= applied) with `data`, the state machine's snapshot AT
   * `index`. Returns '' or why nothing was done.
   */
  compact(index: number, data: string): string {
    this._assertNotInReady();
    if (index <= this.log.snapshot().index) return 'already-compacted';
    if (index > this.log.applied) return 'not-applied';
    if (data.length > this._lim.snapshotBytesMax) return 'snapshot-too-big';
    this.log.compact(index, data, this._votersAt(index));
    while (this._confIdx.length > 0 && this._confIdx[0] <= index) this._confIdx.shift();
    return '';
  }

  /** Allow messages from `id` (the shell learned a new peer address). */
  addPeer(id: NodeId): void {
    if (isNodeId(id)) this._known.add(id);
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    const l = this.log;
    return (
      this._msgs.length > 0 ||
      l._unstable <= l.lastIndex() ||
      l._pendingSnap !== null ||
      l._pendingCompact !== null ||
      l.committed > l.applied ||
      !sameHard(this._hardState(), this._prevHard)
    );
  }

  ready(): Ready {
    this._assertNotInReady();
    const hs = this._hardState();
    const l = this.log;
    const rd: Ready = {
      hardState: sameHard(hs, this._prevHard) ? null : hs,
      entries: l.unstableEntries(),
      snapshot: l._pendingSnap,
      compacted: l._pendingCompact,
      committed: l.nextCommitted(this._applyBatchMax),
      messages: this._msgs,
      soft: { leader: this.leader, role: this.role, term: this.term },
    };
    this._msgs = [];
    this._readyOut = true;
    return rd;
  }

  /** The shell PERSISTED, SENT and APPLIED `rd`. */
  advance(rd: Ready): void {
    if (!this._readyOut) throw new Error('raft: advance() without ready()');
    const l = this.log;
    if (rd.hardState) this._prevHard = rd.hardState;
    if (rd.snapshot) {
      if (l._pendingSnap === rd.snapshot) l._pendingSnap = null;
      if (l.applied < rd.snapshot.index) l.applied = rd.snapshot.index;
    }
    if (rd.compacted && l._pendingCompact === rd.compacted) l._pendingCompact = null;
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1].index;
      if (l._unstable <= last) l._unstable = last + 1;
    }
    if (rd.committed.length > 0) {
      const last = rd.committed[rd.committed.length - 1].index;
      if (l.applied < last) l.applied = last;
    }
    this._readyOut = false;
  }

  status(): RaftStatus {
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      snapshotIndex: this.log.snapshot().index,
      voters: this._voters.slice(),
      drops: Object.assign({}, this.drops),
    };
  }

  voters(): NodeId[] {
    return this._voters.slice();
  }

  /** True while this node is a leader that heard from a quorum within the election timeout. */
  hasLease(): boolean {
    return this.role === 'leader' && this._quorumActive();
  }

  // ---------------------------------------------------------------- roles

  _reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = '';
    }
    this.leader = '';
    this._heartbeatElapsed = 0;
    this._redraw();
    this._votes.clear();
    this._prs.clear();
  }

  /** Raft §5.2: a fresh random timeout in [T, 2T) at every reset makes split votes rare. */
  _redraw(): void {
    this._electionElapsed = 0;
    this._randomizedTimeout =
      this._electionTicks + Math.floor(this._rng.next() * this._electionTicks);
  }

  _becomeFollower(term: number, leader: NodeId): void {
    this._reset(term);
    this.leader = leader;
    this.role = 'follower';
    this._tickFn = this._tickElection;
    this._stepFn = this._stepFollower;
  }

  _becomePreCandidate(): void {
    // Pre-vote changes neither term nor vote: an isolated node that keeps failing it leaves
    // nothing behind that could disrupt the cluster when it comes back.
    this._votes.clear();
    this._prs.clear();
    this._redraw();
    this.leader = '';
    this.role = 'preCandidate';
    this._tickFn = this._tickElection;
    this._stepFn = this._stepCandidate;
  }

  _becomeCandidate(): void {
    this._reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this._tickFn = this._tickElection;
    this._stepFn = this._stepCandidate;
  }

  _becomeLeader(): void {
    this._reset(this.term);
    this.leader = this.id;
    this.role = 'leader';
    this._tickFn = this._tickHeartbeat;
    this._stepFn = this._stepLeader;
    const next = this.log.lastIndex() + 1;
    for (let i = 0; i < this._voters.length; i++) {
      const v = this._voters[i];
      if (v !== this.id) this._prs.set(v, new Progress(next, this._tick));
    }
    // Raft §8: a new leader commits an entry of its own term to learn what is committed.
    // No membership change until that entry commits (the single-step change fix posted to
    // raft-dev in 2015: a change proposed before it could overlap with an uncommitted one).
    this._appendLocal([{ index: 0, term: 0, kind: 'noop', data: '' }]);
    this._pendingConf = this.log.lastIndex();
    this._bcastAppend();
    this._maybeCommit();
  }

  _campaign(kind: 'preVote' | 'vote'): void {
    if (!this._promotable()) return;
    let voteTerm: number;
    if (kind === 'preVote') {
      this._becomePreCandidate();
      voteTerm = this.term + 1;
    } else {
      this._becomeCandidate();
      voteTerm = this.term;
    }
    this._votes.set(this.id, true);
    if (this._tally() === 'won') {
      if (kind === 'preVote') this._campaign('vote');
      else this._becomeLeader();
      return;
    }
    for (let i = 0; i < this._voters.length; i++) {
      const v = this._voters[i];
      if (v === this.id) continue;
      const m = blankMessage(kind, this.id, v, voteTerm);
      m.index = this.log.lastIndex();
      m.logTerm = this.log.lastTerm();
      this._send(m);
    }
  }

  _tally(): 'won' | 'lost' | 'pending' {
    let yes = 0;
    let no = 0;
    for (let i = 0; i < this._voters.length; i++) {
      const v = this._votes.get(this._voters[i]);
      if (v === true) yes++;
      else if (v === false) no++;
    }
    const q = quorumOf(this._voters.length);
    if (yes >= q) return 'won';
    if (no > this._voters.length - q) return 'lost';
    return 'pending';
  }

  // ---------------------------------------------------------------- ticks

  _tickElection(n: number): void {
    this._electionElapsed += n;
    if (this._promotable() && this._electionElapsed >= this._randomizedTimeout) {
      this._electionElapsed = 0;
      this._campaign(this._preVote ? 'preVote' : 'vote');
    }
  }

  _tickHeartbeat(n: number): void {
    // Check-quorum (thesis §6.2): a leader cut off from a quorum for a whole election timeout
    // steps down, BEFORE doing anything else on this tick. The followers stop honouring its
    // lease at about the same time (they count the same timeout since they last heard from it),
    // so by then a new leader may exist; this one must not act as leader any longer.
    if (this._checkQuorum && !this._quorumActive()) {
      this._becomeFollower(this.term, '');
      return;
    }
    this._heartbeatElapsed += n;
    if (this._heartbeatElapsed >= this._heartbeatTicks) {
      this._heartbeatElapsed = 0;
      this._bcastHeartbeat();
    }
  }

  _quorumActive(): boolean {
    let n = 0;
    for (let i = 0; i < this._voters.length; i++) {
      const v = this._voters[i];
      if (v === this.id) {
        n++;
        continue;
      }
      const pr = this._prs.get(v);
      if (pr && this._tick - pr.lastHeardTick < this._electionTicks) n++;
    }
    return n >= quorumOf(this._voters.length);
  }

  _inLease(): boolean {
    if (!this._checkQuorum || this.leader === '') return false;
    if (this.leader === this.id) return true;
    return this._electionElapsed < this._electionTicks;
  }

  // ---------------------------------------------------------------- step per role

  _handleVoteRequest(m: Message): void {
    // Raft §5.2 / §5.4.1. A pre-vote for a later term is granted on the log alone: it changes
    // nothing here, and the lease check above already refused it if our leader is alive.
    const respType: MessageType = m.type === 'vote' ? 'voteResp' : 'preVoteResp';
    let canVote =
      this.vote === m.from ||
      (this.vote === '' && this.leader === '') ||
      (m.type === 'preVote' && m.term > this.term);
    if (canVote && m.type === 'preVote' && this.role === 'preCandidate' && m.term === this.term + 1) {
      // Tie-break (our addition; pre-votes carry no safety): two pre-candidates whose requests
      // crossed in flight would both pass and then split the real vote, which in a two-voter
      // configuration is certain and elsewhere costs another election timeout. Unless the
      // other's log is strictly newer, the higher id yields to the lower one.
      const lastTerm = this.log.lastTerm();
      const newer = m.logTerm > lastTerm || (m.logTerm === lastTerm && m.index > this.log.lastIndex());
      if (!newer && m.from > this.id) canVote = false;
    }
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // The grant carries the candidate's term: for a pre-vote ours may be lower.
      this._send(blankMessage(respType, this.id, m.from, m.term));
      if (m.type === 'vote') {
        this._electionElapsed = 0;
        this.vote = m.from; // PERSISTED (hardState) BEFORE this response is SENT
      }
    } else {
      const r = blankMessage(respType, this.id, m.from, this.term);
      r.reject = true;
      this._send(r);
    }
  }

  _stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this._electionElapsed = 0;
        this.leader = m.from;
        this._handleAppend(m);
        return;
      case 'hb':
        this._electionElapsed = 0;
        this.leader = m.from;
        this._handleHeartbeat(m);
        return;
      case 'snap':
        this._electionElapsed = 0;
        this.leader = m.from;
        this._handleSnapshot(m);
        return;
      default:
        this._drop('unexpected-' + m.type);
    }
  }

  _stepCandidate(m: Message): void {
    const want: MessageType = this.role === 'preCandidate' ? 'preVoteResp' : 'voteResp';
    switch (m.type) {
      case 'app':
      case 'hb':
      case 'snap':
        // Raft §5.2: a leader of our term exists; return to follower and handle it.
        this._becomeFollower(m.term, m.from);
        this._stepFollower(m);
        return;
      case 'voteResp':
      case 'preVoteResp': {
        if (m.type !== want) {
          this._drop('stale-vote-resp');
          return;
        }
        if (this._voters.indexOf(m.from) < 0) {
          this._drop('vote-from-non-voter');
          return;
        }
        // A grant must be for the term we are asking about: a late grant of an earlier round
        // (pre-votes are asked at term + 1) must not count for this one.
        const askTerm = this.role === 'preCandidate' ? this.term + 1 : this.term;
        if (!m.reject && m.term !== askTerm) {
          this._drop('stale-vote-resp');
          return;
        }
        if (!this._votes.has(m.from)) this._votes.set(m.from, !m.reject);
        const t = this._tally();
        if (t === 'won') {
          if (this.role === 'preCandidate') this._campaign('vote');
          else this._becomeLeader();
        } else if (t === 'lost') {
          this._becomeFollower(this.term, '');
        }
        return;
      }
      default:
        this._drop('unexpected-' + m.type);
    }
  }

  _stepLeader(m: Message): void {
    const pr = this._prs.get(m.from);
    if (m.type !== 'appResp' && m.type !== 'hbResp') {
      this._drop('unexpected-' + m.type);
      return;
    }
    if (!pr) {
      this._drop('not-a-follower');
      return;
    }
    const last = this.log.lastIndex();
    if (m.index > last) {
      // A follower cannot match or reject beyond what we sent it, and we sent from our log.
      this._drop('index-beyond-log');
      return;
    }
    if (m.type === 'hbResp') {
      pr.probeSent = false;
      if (pr.match < last) {
        if (
          pr.state === 'replicate' &&
          pr.inflightTick.length > 0 &&
          this._tick - pr.inflightTick[0] >= 2 * this._heartbeatTicks
        ) {
          // An append unanswered for two heartbeats is presumed lost: resend from match.
          pr.becomeProbe();
        } else if (
          pr.state === 'snapshot' &&
          this._tick - pr.snapshotTick >= this._electionTicks
        ) {
          // No answer to the snapshot for an election timeout: presume it lost, send again.
          pr.retrySnapshot();
        }
        this._sendAppend(m.from, pr);
      }
      return;
    }
    if (m.reject) {
      // Raft §5.3 with the term-skipping hint: back `next` off to where the logs may match.
      let hint = Math.min(m.hint, m.index);
      if (m.logTerm > 0) hint = this.log.findConflictByTerm(hint, m.logTerm);
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this._sendAppend(m.from, pr);
      }
      return;
    }
    const wasPaused = pr.isPaused(this._inflightMax);
    if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === 'probe')) {
      if (pr.state === 'probe') {
        pr.becomeReplicate();
      } else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
        pr.becomeReplicate();
      } else if (pr.state === 'replicate') {
        pr.freeTo(m.index);
      }
      if (this._maybeCommit()) {
        this._bcastAppend();
      } else if (this.role !== 'leader') {
        return; // stepped down: it was removed and its removal is now committed
      } else if (wasPaused) {
        this._sendAppend(m.from, pr);
      }
      // Stream what is left while the window allows.
      while (pr.state === 'replicate' && pr.next <= this.log.lastIndex()) {
        if (!this._sendAppend(m.from, pr)) break;
      }
    }
  }

  // ---------------------------------------------------------------- follower handlers

  _handleAppend(m: Message): void {
    const l = this.log;
    const r = blankMessage('appResp', this.id, m.from, this.term);
    if (m.index < l.committed) {
      // Everything up to our commit already matches any leader (§5.4.3); say where we are.
      r.index = l.committed;
      this._send(r);
      return;
    }
    if (!l.matchTerm(m.index, m.logTerm)) {
      // Raft §5.3 receiver rule 2. The hint is the last index whose term is <= the leader's
      // term at m.index, so the leader can skip a term per round trip. An index far beyond our
      // log is legal (a new leader starts optimistic) and costs only this answer.
      r.reject = true;
      r.index = m.index;
      r.hint = l.findConflictByTerm(Math.min(m.index, l.lastIndex()), m.logTerm);
      r.logTerm = l.term(r.hint);
      if (r.logTerm === TERM_UNKNOWN) r.logTerm = 0;
      this._send(r);
      return;
    }
    const lastNew = m.index + m.entries.length;
    const ci = l.findConflict(m.entries);
    if (ci !== 0) {
      if (ci <= l.committed) {
        // Would overwrite a committed entry: impossible from a correct leader (Leader
        // Completeness, §5.4). Refuse rather than corrupt the log.
        this._drop('conflict-with-committed');
        return;
      }
      l.append(m.entries.slice(ci - m.index - 1));
      this._onAppended(ci);
    }
    l.commitTo(Math.min(m.commit, lastNew));
    r.index = lastNew;
    this._send(r); // SENT only after the entries are PERSISTED (Ready order)
  }

  _handleHeartbeat(m: Message): void {
    // The leader sends min(our match, its commit), so m.commit never exceeds what matches.
    // A commit beyond our log would mean a broken leader; committing a guess is never safe.
    if (m.commit > this.log.lastIndex()) {
      this._drop('commit-beyond-log');
    } else {
      this.log.commitTo(m.commit);
    }
    this._send(blankMessage('hbResp', this.id, m.from, this.term));
  }

  _handleSnapshot(m: Message): void {
    const s = m.snapshot as Snapshot;
    const l = this.log;
    const r = blankMessage('appResp', this.id, m.from, this.term);
    if (s.index <= l.committed) {
      r.index = l.committed;
    } else if (l.matchTerm(s.index, s.term)) {
      // We hold the snapshot's last entry: our prefix matches, just fast-forward the commit.
      l.commitTo(s.index);
      r.index = l.committed;
    } else {
      // Raft §7: discard the log and take the snapshot, with its configuration.
      const snap: Snapshot = { index: s.index, term: s.term, voters: s.voters.slice(), data: s.data };
      l.restore(snap);
      this._rebuildConf();
      r.index = l.lastIndex();
    }
    this._send(r);
  }

  // ---------------------------------------------------------------- leader helpers

  _appendProposals(ents: Entry[]): ProposeResult {
    const l = this.log;
    if (l.lastIndex() - l.committed + ents.length > this._uncommittedMax) {
      return { ok: false, reason: 'too-many-uncommitted' };
    }
    const out: Entry[] = [];
    let voters = this._voters;
    let confAt = -1;
    for (let k = 0; k < ents.length; k++) {
      const e = ents[k];
      if (e.kind === 'noop') return { ok: false, reason: 'bad-proposal' };
      const ne: Entry = { index: 0, term: 0, kind: e.kind, data: e.data };
      if (e.kind === 'conf') {
        // Single-step changes (thesis §4.1): one voter at a time, and only once the previous
        // change (or our first entry as leader) is committed, so any two consecutive
        // configurations share a majority.
        if (confAt >= 0 || this._pendingConf > l.committed) {
          return { ok: false, reason: 'conf-pending' };
        }
        const c = e.change as ConfChange;
        const has = voters.indexOf(c.id) >= 0;
        if (c.op === 'add') {
          if (has) return { ok: false, reason: 'conf-noop' };
          if (voters.length >= VOTERS_MAX) return { ok: false, reason: 'too-many-voters' };
          voters = voters.concat([c.id]).sort();
        } else {
          if (!has) return { ok: false, reason: 'conf-noop' };
          if (voters.length === 1) return { ok: false, reason: 'conf-last-voter' };
          voters = voters.filter((v) => v !== c.id);
        }
        ne.change = { op: c.op, id: c.id };
        ne.voters = voters.slice();
        confAt = k;
      }
      out.push(ne);
    }
    this._appendLocal(out);
    if (confAt >= 0) this._pendingConf = out[confAt].index;
    this._bcastAppend();
    this._maybeCommit();
    const lastE = out[out.length - 1];
    return { ok: true, index: lastE.index, term: lastE.term };
  }

  /** Leader: stamp and append entries to our own log. */
  _appendLocal(ents: Entry[]): void {
    const first = this.log.lastIndex() + 1;
    for (let k = 0; k < ents.length; k++) {
      ents[k].index = first + k;
      ents[k].term = this.term;
    }
    this.log.append(ents);
    this._onAppended(first);
  }

  /** Leader: commit the highest index a quorum holds, if it is of our term (Raft §5.4.2). */
  _maybeCommit(): boolean {
    const ms: number[] = [];
    for (let i = 0; i < this._voters.length; i++) {
      const v = this._voters[i];
      if (v === this.id) {
        // Our own entries: PERSISTED in the same Ready that SENDS the appends, so by the time
        // any acknowledgement can arrive, they are on our disk too.
        ms.push(this.log.lastIndex());
      } else {
        const pr = this._prs.get(v);
        ms.push(pr ? pr.match : 0);
      }
    }
    if (ms.length === 0) return false;
    ms.sort((a, b) => b - a);
    const qi = ms[quorumOf(ms.length) - 1];
    if (qi <= this.log.committed || this.log.term(qi) !== this.term) return false;
    this.log.commitTo(qi);
    if (this._voters.indexOf(this.id) < 0 && this._confIdx.length > 0) {
      const lastConf = this._confIdx[this._confIdx.length - 1];
      if (lastConf <= this.log.committed) {
        // Thesis §4.2.2: a leader removed from the configuration steps down once the entry
        // that removed it is committed; it tells the others the commit index first.
        this._bcastAppend();
        this._becomeFollower(this.term, '');
        return false;
      }
    }
    return true;
  }

  _bcastAppend(): void {
    this._prs.forEach((pr, id) => {
      this._sendAppend(id, pr);
    });
  }

  _bcastHeartbeat(): void {
    this._prs.forEach((pr, id) => {
      const m = blankMessage('hb', this.id, id, this.term);
      m.commit = Math.min(pr.match, this.log.committed);
      this._send(m);
    });
  }

  /** Send the next append (or the snapshot) to `to`. False when nothing was sent. */
  _sendAppend(to: NodeId, pr: Progress): boolean {
    if (pr.isPaused(this._inflightMax)) return false;
    const l = this.log;
    const prevIndex = pr.next - 1;
    const prevTerm = l.term(prevIndex);
    if (prevTerm === TERM_UNKNOWN && prevIndex < l.firstIndex()) {
      // Raft §7: the entries it needs are compacted; send the snapshot.
      const snap = l.snapshot();
      const m = blankMessage('snap', this.id, to, this.term);
      m.snapshot = snap;
      this._send(m);
      pr.becomeSnapshot(snap.index, this._tick);
      return true;
    }
    if (prevTerm === TERM_UNKNOWN) {
      // next beyond our log (cannot happen: next <= lastIndex + 1); resynchronise.
      pr.becomeProbe();
      pr.next = Math.min(pr.next, l.lastIndex() + 1);
      return false;
    }
    const ents = l.slice(pr.next, l.lastIndex(), this._lim.entriesPerMsgMax);
    if (ents.length === 0 && pr.state === 'replicate' && prevIndex !== pr.match) {
      // Entries are in flight: an empty append naming the last of them could overtake them
      // and be rejected. Their acknowledgements bring the next send. An up-to-date follower
      // (prevIndex === match) does get the empty append: it carries the new commit index.
      return false;
    }
    const m = blankMessage('app', this.id, to, this.term);
    m.index = prevIndex;
    m.logTerm = prevTerm;
    m.entries = ents;
    m.commit = l.committed;
    this._send(m);
    pr.sentAppend(ents.length > 0 ? ents[ents.length - 1].index : prevIndex, this._tick);
    return true;
  }

  // ---------------------------------------------------------------- configuration

  _promotable(): boolean {
    return this._voters.indexOf(this.id) >= 0;
  }

  /** After entries from `from` on were (re)written: drop overwritten conf entries, add new. */
  _onAppended(from: number): void {
    while (this._confIdx.length > 0 && this._confIdx[this._confIdx.length - 1] >= from) {
      this._confIdx.pop();
    }
    const last = this.log.lastIndex();
    for (let i = from; i <= last; i++) {
      const e = this.log.entry(i) as Entry;
      if (e.kind === 'conf') this._confIdx.push(i);
    }
    this._applyConf(this._currentVoters());
  }

  _rebuildConf(): void {
    this._confIdx = [];
    const first = this.log.firstIndex();
    const last = this.log.lastIndex();
    for (let i = first; i <= last; i++) {
      if ((this.log.entry(i) as Entry).kind === 'conf') this._confIdx.push(i);
    }
    this._applyConf(this._currentVoters());
  }

  _currentVoters(): NodeId[] {
    if (this._confIdx.length === 0) return this.log.snapshot().voters;
    const e = this.log.entry(this._confIdx[this._confIdx.length - 1]) as Entry;
    return e.voters as NodeId[];
  }

  _votersAt(index: number): NodeId[] {
    for (let k = this._confIdx.length - 1; k >= 0; k--) {
      if (this._confIdx[k] <= index) {
        return (this.log.entry(this._confIdx[k]) as Entry).voters as NodeId[];
      }
    }
    return this.log.snapshot().voters;
  }

  /**
   * A configuration takes effect as soon as its entry is in the log, committed or not (thesis
   * §4.1), and reverts if the entry is overwritten.
   */
  _applyConf(voters: NodeId[]): void {
    let same = voters.length === this._voters.length;
    for (let i = 0; same && i < voters.length; i++) same = voters[i] === this._voters[i];
    if (same) return;
    this._voters = voters.slice();
    for (let i = 0; i < voters.length; i++) this._known.add(voters[i]);
    if (this.role === 'leader') {
      const next = this.log.lastIndex() + 1;
      for (let i = 0; i < voters.length; i++) {
        const v = voters[i];
        if (v !== this.id && !this._prs.has(v)) this._prs.set(v, new Progress(next, this._tick));
      }
      this._prs.forEach((_pr, id) => {
        if (voters.indexOf(id) < 0) this._prs.delete(id);
      });
    }
  }

  // ---------------------------------------------------------------- misc

  _dropCount = 0;
  _lastDrop = '';

  _drop(reason: string): string {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
    this._dropCount++;
    this._lastDrop = reason;
    return reason;
  }

  _send(m: Message): void {
    this._msgs.push(m);
  }

  _hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  _assertNotInReady(): void {
    if (this._readyOut) throw new Error('raft: call advance() before feeding the node again');
  }
}

