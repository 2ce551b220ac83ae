/**
 * Stale-authority guard: a companion that was paused (SIGSTOP, a VM freeze, a GC or disk stall)
 * must not act on what it believed before the pause. It acknowledges no reading (no PUBACK),
 * answers no beacon and proposes no command until it has re-confirmed, AFTER waking, that its
 * Raft term is still the newest one.
 *
 * Detection (pure, time is an argument): every entry point reports the time; a gap longer than
 * `pauseMaxMs` since the previous report means this process did not run for that long. The
 * shell reports from a fast timer, so in normal running the gap is one timer period; after a
 * pause the FIRST callback that runs (often an I/O callback, before any timer) sees the gap.
 *
 * Re-confirmation (a quorum check, as a Raft read index would do): the node pings every peer;
 * pongs to pings sent AFTER the trip carry the peer's term and commit index. Once a majority of
 * the voters (this node included) answered with terms no newer than ours, no leader of a newer
 * term can exist (it would have needed a majority, and majorities intersect), and once we have
 * applied the highest commit index they reported, we have seen every assignment committed
 * before the check. Until then `blocked()` names the reason.
 */
export interface GuardRaftView {
  term: number;
  leader: string;
  applied: number;
  /** Voter ids of the current configuration. */
  voters: readonly string[];
}

export class PauseGuard {
  _pauseMaxMs: number;
  _self: string;
  _last: number;
  /** -1 when not tripped; else when the pause was detected. */
  _trippedAt = -1;
  _confirm = new Map<string, { term: number; commit: number }>();
  /** Pauses detected since start. */
  trips = 0;
  /** Longest pause seen (ms). */
  longestMs = 0;

  constructor(self: string, pauseMaxMs: number, nowMs: number) {
    this._self = self;
    this._pauseMaxMs = pauseMaxMs;
    this._last = nowMs;
  }

  /**
   * Report the time; true if this call detected a pause. Call at EVERY entry point, first.
   * Time that goes backwards (a clock step) counts as no time.
   */
  observe(nowMs: number): boolean {
    const gap = nowMs - this._last;
    if (nowMs > this._last) this._last = nowMs;
    if (gap <= this._pauseMaxMs) return false;
    this.trips++;
    if (gap > this.longestMs) this.longestMs = gap;
    this._trippedAt = nowMs;
    this._confirm.clear();
    return true;
  }

  tripped(): boolean {
    return this._trippedAt >= 0;
  }

  trippedAt(): number {
    return this._trippedAt;
  }

  /** A pong to a ping sent at `pingSentMs` (our clock), from `from` at its `term` / `commit`. */
  confirm(from: string, pingSentMs: number, term: number, commit: number): void {
    if (this._trippedAt < 0 || pingSentMs < this._trippedAt) return;
    const prev = this._confirm.get(from);
    if (!prev || term > prev.term || commit > prev.commit) {
      this._confirm.set(from, { term: Math.max(term, prev ? prev.term : 0), commit: Math.max(commit, prev ? prev.commit : 0) });
    }
  }

  /**
   * '' when this node may act on its authority; else why not. Clears the trip once the
   * confirmation above holds.
   */
  blocked(nowMs: number, raft: GuardRaftView): string {
    this.observe(nowMs);
    if (this._trippedAt < 0) return '';
    const voters = raft.voters;
    let yes = voters.indexOf(this._self) >= 0 ? 1 : 0;
    let commit = 0;
    let newer = false;
    this._confirm.forEach((c, id) => {
      if (voters.indexOf(id) < 0) return;
      if (c.term > raft.term) newer = true;
      else yes++;
      if (c.commit > commit) commit = c.commit;
    });
    if (newer) return 'paused:newer-term';
    if (voters.length === 0 || yes < (voters.length >> 1) + 1) return 'paused:confirming';
    if (raft.leader === '') return 'paused:no-leader';
    if (raft.applied < commit) return 'paused:applying';
    this._trippedAt = -1;
    this._confirm.clear();
    return '';
  }
}
