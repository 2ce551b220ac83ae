/**
 * The replicated log as one node sees it: a snapshot (compacted prefix) followed by entries,
 * plus the commit and apply marks and which entries still have to reach the disk.
 *
 * Index arithmetic: entry i lives at _ents[i - _snapIndex - 1]. The snapshot's own index and
 * term stand in for the compacted prefix, so term(snapIndex) is always known (Raft §7: the
 * snapshot keeps "last included index and term" for the consistency check of the next append).
 *
 * Pure: no IO. The core moves entries to storage through its Ready (raft-core.ts).
 */
import type { Entry, NodeId, Snapshot } from './raft-types.js';

/** term() of an index this log cannot answer for (compacted away or beyond the end). */
export const TERM_UNKNOWN = -1;

export class RaftLog {
  _snap: Snapshot;
  _ents: Entry[] = [];
  /** Highest index known committed (Raft §5.3). Never beyond lastIndex(). */
  committed: number;
  /** Highest index handed to the state machine (through a Ready that was advanced). */
  applied: number;
  /** First index not yet handed to storage; lastIndex() + 1 when everything is stable. */
  _unstable: number;
  /** A snapshot received from the leader that storage and the state machine have not taken yet. */
  _pendingSnap: Snapshot | null = null;
  /** A local compaction that storage has not recorded yet. */
  _pendingCompact: Snapshot | null = null;

  constructor(snap: Snapshot, stableEntries: Entry[], committed: number) {
    this._snap = snap;
    this._ents = stableEntries.slice();
    this.committed = Math.max(snap.index, Math.min(committed, this.lastIndex()));
    this.applied = snap.index;
    this._unstable = this.lastIndex() + 1;
  }

  snapshot(): Snapshot {
    return this._snap;
  }

  firstIndex(): number {
    return this._snap.index + 1;
  }

  lastIndex(): number {
    return this._snap.index + this._ents.length;
  }

  lastTerm(): number {
    return this._ents.length > 0 ? this._ents[this._ents.length - 1].term : this._snap.term;
  }

  term(i: number): number {
    if (i === this._snap.index) return this._snap.term;
    if (i < this._snap.index || i > this.lastIndex()) return TERM_UNKNOWN;
    return this._ents[i - this._snap.index - 1].term;
  }

  entry(i: number): Entry | undefined {
    if (i <= this._snap.index || i > this.lastIndex()) return undefined;
    return this._ents[i - this._snap.index - 1];
  }

  matchTerm(i: number, t: number): boolean {
    const x = this.term(i);
    return x !== TERM_UNKNOWN && x === t;
  }

  /** Raft §5.4.1: a log with a later last term, or the same last term and at least our length. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Entries [lo, hi] that this log still holds (lo > snapshot index), at most `max` of them. */
  slice(lo: number, hi: number, max: number): Entry[] {
    if (lo <= this._snap.index) lo = this._snap.index + 1;
    if (hi > this.lastIndex()) hi = this.lastIndex();
    if (hi - lo + 1 > max) hi = lo + max - 1;
    if (hi < lo) return [];
    const base = this._snap.index + 1;
    return this._ents.slice(lo - base, hi - base + 1);
  }

  /**
   * The first entry of `ents` whose index is beyond our log or whose term differs from ours
   * there; 0 when every entry is already present. Entries at or below the snapshot count as
   * present: they are committed, and committed entries are identical everywhere (§5.4.3).
   */
  findConflict(ents: Entry[]): number {
    for (let k = 0; k < ents.length; k++) {
      const e = ents[k];
      if (e.index <= this._snap.index) continue;
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term` (etcd's conflict search by term): the
   * follower's hint lets the leader skip a whole term of mismatching entries per round trip
   * instead of one entry (Raft §5.3, the optimisation after Figure 7).
   */
  findConflictByTerm(index: number, term: number): number {
    if (index > this.lastIndex()) index = this.lastIndex();
    for (let i = index; i > this._snap.index; i--) {
      if (this.term(i) <= term) return i;
    }
    return this._snap.index;
  }

  /**
   * Append `ents`, replacing whatever we hold from ents[0].index on. The caller has checked that
   * ents[0].index - 1 matches and that nothing committed is replaced.
   */
  append(ents: Entry[]): void {
    if (ents.length === 0) return;
    const from = ents[0].index;
    const keep = from - this._snap.index - 1;
    if (keep < this._ents.length) this._ents.length = keep;
    for (let k = 0; k < ents.length; k++) this._ents.push(ents[k]);
    if (from < this._unstable) this._unstable = from;
  }

  /** Raft §5.3 receiver rule 5, bounded by what we hold. Never lowers the mark. */
  commitTo(i: number): void {
    if (i > this.lastIndex()) i = this.lastIndex();
    if (i > this.committed) this.committed = i;
  }

  /** Entries committed and not yet handed to the state machine. */
  nextCommitted(max: number): Entry[] {
    return this.slice(this.applied + 1, this.committed, max);
  }

  unstableEntries(): Entry[] {
    if (this._unstable > this.lastIndex()) return [];
    return this.slice(this._unstable, this.lastIndex(), Number.MAX_SAFE_INTEGER);
  }

  /**
   * Replace the whole log with a snapshot from the leader (Raft §7: "discard the entire log").
   * The caller has checked that our log does not already contain snapshot.index at its term.
   */
  restore(snap: Snapshot): void {
    this._snap = snap;
    this._ents = [];
    this.committed = snap.index;
    this._unstable = snap.index + 1;
    this._pendingSnap = snap;
    this._pendingCompact = null;
  }

  /**
   * Discard entries up to `index` (<= applied), keeping `data` as the state machine at `index`
   * and `voters` as the configuration in force at `index`.
   */
  compact(index: number, data: string, voters: NodeId[]): Snapshot {
    const snap: Snapshot = { index, term: this.term(index), voters: voters.slice(), data };
    this._ents = this._ents.slice(index - this._snap.index);
    this._snap = snap;
    this._pendingCompact = snap;
    return snap;
  }
}
