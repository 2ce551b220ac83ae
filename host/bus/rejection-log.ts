/**
 * Rejection counters and the rate-limited structured log of the bus.
 * Every rejection is counted; at most `burst` lines per reason are logged per window, the rest
 * are summed into one summary line when the next window opens (or on flush), so a client
 * hammering the broker with bad packets cannot flood the log. Pure: the caller passes the time.
 * Reasons are a fixed vocabulary chosen by the broker, never text from a peer, so the maps
 * below stay small.
 */

export interface BusLogEntry {
  level: 'info' | 'warn' | 'error';
  ev: string;
  [field: string]: unknown;
}

export type BusLog = (entry: BusLogEntry) => void;

/** Default sink: one JSON object per line on stderr. */
export function jsonLineLog(entry: BusLogEntry): void {
  process.stderr.write(JSON.stringify({ t: new Date().toISOString(), ...entry }) + '\n');
}

interface Window {
  startMs: number;
  logged: number;
  suppressed: number;
}

export class RejectionLog {
  private readonly _counts = new Map<string, number>();
  private readonly _windows = new Map<string, Window>();

  constructor(
    private readonly _log: BusLog,
    /** Lines logged per reason per window: enough to see who and why, not a flood. */
    readonly burst = 5,
    readonly windowMs = 10_000,
  ) {}

  record(reason: string, fields: Record<string, unknown>, nowMs: number): void {
    this._counts.set(reason, (this._counts.get(reason) ?? 0) + 1);
    let w = this._windows.get(reason);
    if (w === undefined || nowMs - w.startMs >= this.windowMs) {
      if (w !== undefined) this._summary(reason, w);
      w = { startMs: nowMs, logged: 0, suppressed: 0 };
      this._windows.set(reason, w);
    }
    if (w.logged < this.burst) {
      w.logged++;
      this._log({ level: 'warn', ev: 'bus.reject', reason, ...fields });
    } else {
      w.suppressed++;
    }
  }

  /** Logs the pending summaries (on stop). */
  flush(): void {
    for (const [reason, w] of this._windows) this._summary(reason, w);
    this._windows.clear();
  }

  counts(): Record<string, number> {
    return Object.fromEntries(this._counts);
  }

  private _summary(reason: string, w: Window): void {
    if (w.suppressed > 0) {
      this._log({ level: 'warn', ev: 'bus.reject.suppressed', reason, count: w.suppressed, windowMs: this.windowMs });
      w.suppressed = 0;
    }
  }
}
