/**
 * Types and limits shared by the Raft core, its storage, its transport and the simulator.
 *
 * The core (raft-core.ts) is pure: it never reads a clock, opens a socket or touches a file.
 * Everything it wants done leaves through a `Ready` (raft-core.ts), which the shell handles in
 * this order, and ONLY in this order:
 *
 *   1. PERSIST the snapshot, the entries and the hard state, and FSYNC them;
 *   2. SEND the messages (PERSIST BEFORE SEND: a vote or an append acknowledgement promises that
 *      the voter or follower will remember it after a crash);
 *   3. APPLY the snapshot, then the committed entries, to the state machine;
 *   4. call `advance(ready)`. No `step`, `tick` or `propose` between `ready()` and `advance()`.
 *
 * Numbers on the wire: every term and index is a safe integer in [0, RAFT_NUMBER_MAX]. Raft lets
 * a peer announce any higher term, so "absurd" cannot mean "far ahead of ours"; it means "not an
 * integer we can increment and compare exactly" (2^53 and above lose exactness in a double).
 */

export type NodeId = string;

/**
 * Largest term or index accepted from a peer: 2^52 - 1. Below 2^53 by a factor of two, so
 * `term + 1` and `index + entriesPerMsgMax` stay exact however close a value is to the limit.
 */
export const RAFT_NUMBER_MAX = 4503599627370495;

/** Node ids: short printable names, because they are map keys, log fields and SQL values. */
export const NODE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/**
 * Voters in one configuration. A Raft group of more than 7 gains no availability and pays for
 * every extra member on each commit; 15 leaves room for a change in flight and bounds the work
 * a forged configuration can cause.
 */
export const VOTERS_MAX = 15;

/** Kinds of log entry. `noop` is the empty entry a new leader appends (Raft §5.4.2, §8). */
export type EntryKind = 'cmd' | 'conf' | 'noop';

/** A single-step membership change (Raft thesis §4.1): add or remove exactly one voter. */
export interface ConfChange {
  op: 'add' | 'remove';
  id: NodeId;
}

export interface Entry {
  index: number;
  term: number;
  kind: EntryKind;
  /** Opaque to the core: the state machine's command, usually JSON. */
  data: string;
  /**
   * conf entries only: the full voter list AFTER this change. The leader computes it when it
   * appends, so every replica derives its configuration from the log alone.
   */
  voters?: NodeId[];
  /** conf entries only: the change as proposed (kept for the state machine and for logs). */
  change?: ConfChange;
}

/** Persistent state that must be on disk BEFORE any message that depends on it is sent. */
export interface HardState {
  term: number;
  /** Candidate voted for in `term`, '' for none. */
  vote: NodeId;
  commit: number;
}

/** A compacted prefix of the log: state-machine data as of `index`, plus the voters then. */
export interface Snapshot {
  index: number;
  term: number;
  voters: NodeId[];
  /** The state machine's own serialisation (cluster-state.ts: JSON). */
  data: string;
}

export type MessageType =
  | 'app' // append entries (Raft §5.3); index/logTerm = the entry before `entries`
  | 'appResp' // index = last matching index, or the rejected prev index with reject=true
  | 'hb' // heartbeat; commit = min(follower match, leader commit)
  | 'hbResp'
  | 'vote' // index/logTerm = candidate's last entry (Raft §5.4.1)
  | 'voteResp'
  | 'preVote' // thesis §9.6: term = candidate term + 1, nobody changes state
  | 'preVoteResp'
  | 'snap' // install snapshot (Raft §7)
  | 'prop'; // a proposal forwarded by a follower to the leader

/**
 * One Raft message. Every field is always present (zero values when unused), so validation is a
 * flat list of checks and the JSON on the wire has one shape.
 */
export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  index: number;
  logTerm: number;
  commit: number;
  reject: boolean;
  /** appResp with reject: the follower's guess of the last index that may match. */
  hint: number;
  entries: Entry[];
  snapshot: Snapshot | null;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Volatile state a shell may show or log; not persisted. */
export interface SoftState {
  leader: NodeId;
  role: Role;
  term: number;
}

/** What storage hands back on restart. */
export interface PersistedState {
  hardState: HardState;
  snapshot: Snapshot;
  /** Entries after snapshot.index, contiguous, in order. */
  entries: Entry[];
}

export function emptyHardState(): HardState {
  return { term: 0, vote: '', commit: 0 };
}

export function emptySnapshot(voters: NodeId[]): Snapshot {
  return { index: 0, term: 0, voters: voters.slice(), data: '' };
}

/** A message with every field at its zero value. */
export function blankMessage(type: MessageType, from: NodeId, to: NodeId, term: number): Message {
  return {
    type,
    from,
    to,
    term,
    index: 0,
    logTerm: 0,
    commit: 0,
    reject: false,
    hint: 0,
    entries: [],
    snapshot: null,
  };
}

export function isSafeRaftNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= RAFT_NUMBER_MAX;
}
