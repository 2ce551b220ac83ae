/**
 * The leader's view of one follower (etcd's tracker.Progress, reduced to what we use).
 *
 * States:
 *   probe      - we do not know where the follower's log matches ours; send ONE append, then
 *                wait for its answer (or a heartbeat answer) before sending the next.
 *   replicate  - the follower matched; stream appends optimistically, at most inflightMax
 *                unanswered at a time.
 *   snapshot   - the follower needs entries we compacted; a snapshot is on its way.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  /** Highest index known to match ours (Raft §5.3 matchIndex). */
  match = 0;
  /** Next index to send (Raft §5.3 nextIndex). */
  next: number;
  state: ProgressState = 'probe';
  /** probe: one append is out and unanswered. */
  probeSent = false;
  /** snapshot: index of the snapshot sent, and the tick it was sent at. */
  pendingSnapshot = 0;
  snapshotTick = 0;
  /** replicate: last index and send tick of each unanswered append, oldest first. */
  inflightLast: number[] = [];
  inflightTick: number[] = [];
  /** Leader tick at which this follower was last heard from in the leader's term. */
  lastHeardTick: number;

  constructor(next: number, nowTick: number) {
    this.next = next;
    this.lastHeardTick = nowTick;
  }

  isPaused(inflightMax: number): boolean {
    if (this.state === 'probe') return this.probeSent;
    if (this.state === 'snapshot') return true;
    return this.inflightLast.length >= inflightMax;
  }

  becomeProbe(): void {
    // From snapshot: if it arrived the follower is at pendingSnapshot; if not, its rejection
    // of the next append brings `next` back down and we send the snapshot again.
    if (this.state === 'snapshot') {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = 'probe';
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflightLast.length = 0;
    this.inflightTick.length = 0;
  }

  /** snapshot -> probe at match: the next send finds the entries compacted and resends it. */
  retrySnapshot(): void {
    this.state = 'probe';
    this.next = this.match + 1;
    this.probeSent = false;
    this.pendingSnapshot = 0;
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflightLast.length = 0;
    this.inflightTick.length = 0;
  }

  becomeSnapshot(index: number, nowTick: number): void {
    this.state = 'snapshot';
    this.pendingSnapshot = index;
    this.snapshotTick = nowTick;
    this.probeSent = false;
    this.inflightLast.length = 0;
    this.inflightTick.length = 0;
  }

  /** An acknowledgement up to n. True when it moved match forward. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < n + 1) this.next = n + 1;
    return updated;
  }

  /**
   * A rejection of the append whose previous index was `rejected`; `hint` is where the follower
   * thinks the logs may match. False when the rejection is stale (answers an older append).
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  sentAppend(last: number, nowTick: number): void {
    if (this.state === 'replicate') {
      if (last >= this.next) {
        this.next = last + 1;
        this.inflightLast.push(last);
        this.inflightTick.push(nowTick);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /** Forget unanswered appends that `index` acknowledges. */
  freeTo(index: number): void {
    let k = 0;
    while (k < this.inflightLast.length && this.inflightLast[k] <= index) k++;
    if (k > 0) {
      this.inflightLast.splice(0, k);
      this.inflightTick.splice(0, k);
    }
  }
}
