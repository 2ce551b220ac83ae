/**
 * Shape and range checks for every message a peer sends, BEFORE the core looks at it.
 *
 * Peer input never throws: a message is either valid or dropped with a short reason the core
 * counts. The transport has already checked the HMAC, so what arrives here comes from a holder of
 * the cluster secret; these checks stop a buggy or confused member (or an old version) from
 * pushing the core into a state Raft cannot leave: a term that cannot be incremented exactly,
 * entries that are not contiguous, a configuration with thousands of voters.
 */
import {
  isSafeRaftNumber,
  NODE_ID_RE,
  VOTERS_MAX,
  type Entry,
  type MessageType,
  type Snapshot,
} from './raft-types.js';

export interface ValidateLimits {
  /** Entries one append or proposal may carry. */
  entriesPerMsgMax: number;
  /** Bytes of one entry's data. */
  entryBytesMax: number;
  /** Bytes of a snapshot's data. */
  snapshotBytesMax: number;
}

const TYPES: Record<MessageType, true> = {
  app: true,
  appResp: true,
  hb: true,
  hbResp: true,
  vote: true,
  voteResp: true,
  preVote: true,
  preVoteResp: true,
  snap: true,
  prop: true,
};

export function isNodeId(x: unknown): x is string {
  return typeof x === 'string' && NODE_ID_RE.test(x);
}

/** A voter list: valid ids, no duplicates, at most VOTERS_MAX. '' when fine, else a reason. */
export function checkVoters(v: unknown): string {
  if (!Array.isArray(v) || v.length > VOTERS_MAX) return 'bad-voters';
  for (let i = 0; i < v.length; i++) {
    if (!isNodeId(v[i])) return 'bad-voters';
    for (let j = 0; j < i; j++) if (v[j] === v[i]) return 'bad-voters';
  }
  return '';
}

function checkEntry(e: unknown, lim: ValidateLimits): string {
  if (typeof e !== 'object' || e === null) return 'bad-entry';
  const x = e as Record<string, unknown>;
  if (!isSafeRaftNumber(x.index) || !isSafeRaftNumber(x.term)) return 'absurd-number';
  if (typeof x.data !== 'string') return 'bad-entry';
  if (x.data.length > lim.entryBytesMax) return 'entry-too-big';
  if (x.kind === 'cmd' || x.kind === 'noop') {
    if (x.voters !== undefined || x.change !== undefined) return 'bad-entry';
    return '';
  }
  if (x.kind !== 'conf') return 'bad-entry';
  const c = x.change as Record<string, unknown> | undefined;
  if (typeof c !== 'object' || c === null) return 'bad-entry';
  if ((c.op !== 'add' && c.op !== 'remove') || !isNodeId(c.id)) return 'bad-entry';
  if (x.voters !== undefined) return checkVoters(x.voters);
  return '';
}

function checkSnapshot(s: unknown, lim: ValidateLimits): string {
  if (typeof s !== 'object' || s === null) return 'bad-snapshot';
  const x = s as Record<string, unknown>;
  if (!isSafeRaftNumber(x.index) || !isSafeRaftNumber(x.term)) return 'absurd-number';
  if (typeof x.data !== 'string') return 'bad-snapshot';
  if (x.data.length > lim.snapshotBytesMax) return 'snapshot-too-big';
  return checkVoters(x.voters);
}

/**
 * '' when `m` is a well-formed message addressed to `self`; otherwise the reason to drop it.
 * Checks that need the node's state (known sender, index beyond our log) are in the core.
 */
export function validateMessage(m: unknown, self: string, lim: ValidateLimits): string {
  if (typeof m !== 'object' || m === null) return 'not-object';
  const x = m as Record<string, unknown>;
  if (typeof x.type !== 'string' || !Object.prototype.hasOwnProperty.call(TYPES, x.type)) {
    return 'bad-type';
  }
  if (!isNodeId(x.from) || !isNodeId(x.to)) return 'bad-id';
  if (x.to !== self) return 'not-for-us';
  if (x.from === self) return 'from-self';
  if (
    !isSafeRaftNumber(x.term) ||
    !isSafeRaftNumber(x.index) ||
    !isSafeRaftNumber(x.logTerm) ||
    !isSafeRaftNumber(x.commit) ||
    !isSafeRaftNumber(x.hint)
  ) {
    return 'absurd-number';
  }
  if (typeof x.reject !== 'boolean') return 'bad-field';
  if (!Array.isArray(x.entries)) return 'bad-field';
  if (x.entries.length > lim.entriesPerMsgMax) return 'too-many-entries';
  const type = x.type as MessageType;
  if (x.entries.length > 0 && type !== 'app' && type !== 'prop') return 'bad-field';
  const term = x.term as number;
  // A message at term 0 would be a local message in etcd; no peer ever sends one.
  if (term === 0 && type !== 'prop') return 'zero-term';
  for (let k = 0; k < x.entries.length; k++) {
    const r = checkEntry(x.entries[k], lim);
    if (r) return r;
  }
  if (type === 'app') {
    // Contiguous, terms never decreasing, none newer than the leader's term (Raft §5.3: a
    // leader only sends entries of its log, whose terms are <= its own).
    if ((x.logTerm as number) > term) return 'bad-entries';
    let prevTerm = x.logTerm as number;
    for (let k = 0; k < x.entries.length; k++) {
      const e = x.entries[k] as Entry;
      if (e.index !== (x.index as number) + 1 + k) return 'bad-entries';
      if (e.term < prevTerm || e.term > term || e.term === 0) return 'bad-entries';
      if (e.kind === 'conf' && e.voters === undefined) return 'bad-entries';
      prevTerm = e.term;
    }
  }
  if (type === 'vote' || type === 'preVote') {
    if ((x.logTerm as number) > term) return 'bad-field';
  }
  if (type === 'snap') {
    const r = checkSnapshot(x.snapshot, lim);
    if (r) return r;
    const s = x.snapshot as Snapshot;
    if (s.term > term || s.index === 0) return 'bad-snapshot';
  } else if (x.snapshot !== null) {
    return 'bad-field';
  }
  return '';
}
