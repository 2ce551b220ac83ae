/**
 * Health of this node's replication links, from what it heard and when: pure, time is an
 * argument. A peer is UP while something from it (a pong, an ack, a push) arrived within
 * `linkTimeoutMs`; `sinceMs` is when the current state began, so the coordinator can require
 * a state to last (ring-out / ring-in hysteresis) before it commits anything.
 *
 * A peer never heard from counts as down from the first time we pinged it after the tracker
 * started (or was last reset), plus the timeout: a node that has just started, learned a peer's
 * address, or woken from a pause gives every peer a full timeout before calling it down. Every
 * node tracks every peer all the time, so a newly elected leader judges with a warm view.
 */
export interface LinkView {
  up: boolean;
  /** When the current state (up or down) began. */
  sinceMs: number;
  /** Last time anything arrived; -1 never. */
  lastHeardMs: number;
}

interface Link {
  /** -1: never heard since start/reset. */
  lastHeard: number;
  upSince: number;
  /** First ping since start/reset; -1 none. */
  firstPing: number;
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
      this._links.set(id, { lastHeard: nowMs, upSince: nowMs, firstPing: -1 });
      return;
    }
    if (l.lastHeard < 0 || nowMs - l.lastHeard >= this._timeoutMs) l.upSince = nowMs;
    if (nowMs > l.lastHeard) l.lastHeard = nowMs;
  }

  /** We sent `id` a ping: from now on its silence counts. */
  pinged(id: string, nowMs: number): void {
    const l = this._links.get(id);
    if (!l) this._links.set(id, { lastHeard: -1, upSince: -1, firstPing: nowMs });
    else if (l.firstPing < 0) l.firstPing = nowMs;
  }

  view(id: string, nowMs: number): LinkView {
    const l = this._links.get(id);
    const t = this._timeoutMs;
    if (!l) return { up: false, sinceMs: Infinity, lastHeardMs: -1 };
    if (l.lastHeard >= 0 && nowMs - l.lastHeard < t) return { up: true, sinceMs: l.upSince, lastHeardMs: l.lastHeard };
    // Down since the last word (or the first ping, if none since start) plus the timeout.
    const from = l.lastHeard >= 0 ? l.lastHeard : l.firstPing >= 0 ? l.firstPing : Infinity;
    return { up: false, sinceMs: Math.max(this._startMs, from + t), lastHeardMs: l.lastHeard };
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
      l.firstPing = -1;
    });
  }

  forget(id: string): void {
    this._links.delete(id);
  }
}
