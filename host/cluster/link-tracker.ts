/**
 * Health of this node's replication links, from what it heard and when: pure, time is an
 * argument. A peer is UP while something from it (a pong, an ack, a push) arrived within
 * `linkTimeoutMs`; `sinceMs` is when the current state began, so the coordinator can require
 * a state to last (ring-out / ring-in hysteresis) before it commits anything.
 *
 * A peer never heard from counts as down since the tracker started (or was last reset): a
 * leader that has just taken over, or a node that has just woken from a pause, gives every
 * peer a full timeout before calling it down.
 */
export interface LinkView {
  up: boolean;
  /** When the current state (up or down) began. */
  sinceMs: number;
  /** Last time anything arrived; -1 never. */
  lastHeardMs: number;
}

interface Link {
  lastHeard: number;
  upSince: number;
}

export class LinkTracker {
  _timeoutMs: number;
  _startMs: number;
  _links = new Map<string, Link>();

  constructor(linkTimeoutMs: number, nowMs: number) {
    this._timeoutMs = linkTimeoutMs;
    this._startMs = nowMs;
  }

  /** Something authentic arrived from `id`. */
  heard(id: string, nowMs: number): void {
    const l = this._links.get(id);
    if (!l) {
      this._links.set(id, { lastHeard: nowMs, upSince: nowMs });
      return;
    }
    if (nowMs - l.lastHeard >= this._timeoutMs) l.upSince = nowMs;
    if (nowMs > l.lastHeard) l.lastHeard = nowMs;
  }

  view(id: string, nowMs: number): LinkView {
    const l = this._links.get(id);
    if (!l) return { up: false, sinceMs: this._startMs, lastHeardMs: -1 };
    if (nowMs - l.lastHeard < this._timeoutMs) return { up: true, sinceMs: l.upSince, lastHeardMs: l.lastHeard };
    return { up: false, sinceMs: Math.max(this._startMs, l.lastHeard + this._timeoutMs), lastHeardMs: l.lastHeard };
  }

  /**
   * Forget the past: every peer is treated as heard just now. Called when this node's own view
   * cannot be trusted (it woke from a pause: silence during the pause says nothing about peers).
   */
  reset(nowMs: number): void {
    this._startMs = nowMs;
    this._links.forEach((l) => {
      l.lastHeard = nowMs;
      l.upSince = nowMs;
    });
  }

  forget(id: string): void {
    this._links.delete(id);
  }
}
