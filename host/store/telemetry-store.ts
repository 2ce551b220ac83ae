/**
 * Durable telemetry: every reading the owner companion acknowledges is in SQLite first.
 *
 * ORDERING CONTRACT (ARCHITECTURE.md flow 5, "a PUBACK means the reading is stored"):
 *   append(rec) resolves only AFTER the transaction holding rec has committed, and with
 *   synchronous=FULL a commit has fsynced the WAL (database.ts). The ingest shell sends the
 *   PUBACK AFTER the promise resolves, never before. A failed commit rejects every append of its
 *   batch; none of them may be acknowledged, and the device resends them (QoS 1).
 *
 * Group commit: appends arriving in one event-loop turn (or within `batchWindowMs`) share one
 * transaction, so one fsync covers the whole batch. A batch is written at the next setImmediate
 * (or when the window closes), or at once when it reaches `batchRowsMax`.
 *
 * Deduplication: (device, seq) is the primary key and inserts skip an existing pair. `dup: true`
 * means an equal key was already stored (or stored earlier in the same batch): the reading is
 * durable either way, so a duplicate is acknowledged like a new one.
 *
 * better-sqlite3 is synchronous: each commit blocks the event loop for its fsync. Batching
 * keeps that to one fsync per turn; retention runs in small transactions with a setImmediate
 * between them so a large delete never holds ingest back for long.
 */
import { type Db, type Statement, StoreError } from './database.js';
import { type TelemetryRecord, checkRecord } from './telemetry-record.js';

export type { TelemetryRecord } from './telemetry-record.js';

export interface TelemetryStoreOptions {
  /**
   * Rows per group-commit transaction (default 4096). Bounds the memory of the pending batch
   * and the time one commit blocks the loop (a few ms at 4096 rows).
   */
  batchRowsMax?: number;
  /** 0 (default): write at the next setImmediate. More: gather up to this many ms first. */
  batchWindowMs?: number;
  /** Rows one query or export may return (default 10000): bounds a response held in memory. */
  queryRowsMax?: number;
  /** Rows one appendBatch/importRows call may carry (default 100000): one transaction's size. */
  importRowsMax?: number;
  /** Rows deleted per retention transaction (default 1000): bounds how long ingest waits. */
  pruneBatchRowsMax?: number;
}

export interface AppendResult {
  /** true: this (device, seq) was already stored; nothing was written. */
  dup: boolean;
}

export interface BatchResult {
  inserted: number;
  duplicates: number;
  /** Rows refused by validation, by index in the input. Valid rows are stored regardless. */
  invalid: { index: number; reason: string }[];
}

export interface QueryOptions {
  /** Inclusive lower bound on ts (ms). */
  since?: number;
  /** Exclusive upper bound on ts (ms). */
  until?: number;
  /** At most this many rows (capped by queryRowsMax). */
  limit?: number;
  /** 'asc' (default): oldest first; 'desc': newest first. Ties on ts are ordered by seq. */
  order?: 'asc' | 'desc';
  /** Continue after this row in the chosen order (paging: pass the last row of a page). */
  after?: { ts: number; seq: number };
}

export interface RetentionPolicy {
  /** Delete readings whose ts is older than nowMs - maxAgeMs. */
  maxAgeMs?: number;
  /** Keep at most this many readings per device (the newest by ts, then seq). */
  rowsPerDeviceMax?: number;
}

export interface PruneResult {
  deleted: number;
  /** Transactions used. */
  batches: number;
  /** Devices examined. */
  devices: number;
}

/** Inclusive range of sequence numbers, [from, to]. */
export type SeqRange = [number, number];

export interface SeqRangesResult {
  ranges: SeqRange[];
  /** true when rangesMax was reached: more ranges follow the last one. */
  truncated: boolean;
}

export interface GroupCommitStats {
  /** Group-commit transactions that committed. */
  commits: number;
  /** Rows in those transactions (new and duplicate). */
  rows: number;
  duplicates: number;
  failedCommits: number;
  /** Appends rejected because their transaction failed. */
  failedRows: number;
  /** Appends waiting for the next commit. */
  pending: number;
  batchRowsLast: number;
  batchRowsPeak: number;
}

interface Waiter {
  resolve(r: AppendResult): void;
  reject(e: unknown): void;
}

type Row = { device: string; seq: number; ts: number; hist: number; r: string };

const COLS = 'device, seq, ts, hist, r';
const MIN_SEQ = Number.MIN_SAFE_INTEGER;
const MAX_TS = Number.MAX_SAFE_INTEGER;
const DUP: AppendResult = Object.freeze({ dup: true }) as AppendResult;
const NEW: AppendResult = Object.freeze({ dup: false }) as AppendResult;

export class TelemetryStore {
  private readonly _db: Db;
  private readonly _batchRowsMax: number;
  private readonly _windowMs: number;
  private readonly _queryRowsMax: number;
  private readonly _importRowsMax: number;
  private readonly _pruneRowsMax: number;

  private _q: TelemetryRecord[] = [];
  private _w: Waiter[] = [];
  private _scheduled = false;
  private _timer: NodeJS.Immediate | NodeJS.Timeout | null = null;
  private _closed = false;
  private _pruning: Promise<PruneResult> | null = null;
  private readonly _stats: GroupCommitStats = {
    commits: 0,
    rows: 0,
    duplicates: 0,
    failedCommits: 0,
    failedRows: 0,
    pending: 0,
    batchRowsLast: 0,
    batchRowsPeak: 0,
  };

  private readonly _writeBatch: (recs: TelemetryRecord[], out: boolean[]) => void;
  private readonly _flushCb = () => {
    this._scheduled = false;
    this._timer = null;
    this.flush();
  };

  constructor(db: Db, options: TelemetryStoreOptions = {}) {
    this._db = db;
    this._batchRowsMax = positive(options.batchRowsMax, 4096, 'batchRowsMax');
    this._windowMs = Math.max(0, options.batchWindowMs ?? 0);
    this._queryRowsMax = positive(options.queryRowsMax, 10000, 'queryRowsMax');
    this._importRowsMax = positive(options.importRowsMax, 100000, 'importRowsMax');
    this._pruneRowsMax = positive(options.pruneBatchRowsMax, 1000, 'pruneBatchRowsMax');
    // ON CONFLICT names the key: only a duplicate (device, seq) is skipped, never another error.
    const insert = db.prepare(
      `INSERT INTO telemetry (${COLS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (device, seq) DO NOTHING`,
    );
    this._writeBatch = db
      .transaction((recs: TelemetryRecord[], out: boolean[]) => {
        for (let i = 0; i < recs.length; i++) {
          const x = recs[i];
          out[i] = insert.run(x.device, x.seq, x.ts, x.hist, JSON.stringify(x.r)).changes === 0;
        }
      })
      .immediate;
  }

  // ---------------------------------------------------------------- ingest

  /**
   * Stores one reading. Resolves AFTER the batch holding it has committed durably; rejects with
   * StoreError 'invalid' (the record is refused, nothing else is affected), 'commit-failed'
   * (the whole batch failed: acknowledge none of it) or 'closed'.
   */
  append(rec: TelemetryRecord): Promise<AppendResult> {
    if (this._closed) return Promise.reject(new StoreError('closed', 'telemetry store is closed'));
    const c = checkRecord(rec);
    if (!c.ok) return Promise.reject(new StoreError('invalid', c.reason));
    return new Promise<AppendResult>((resolve, reject) => {
      this._q.push(c.value);
      this._w.push({ resolve, reject });
      if (this._q.length >= this._batchRowsMax) this.flush();
      else this._schedule();
    });
  }

  /**
   * Writes the pending batch now (normally the scheduler does it). Synchronous: when it returns,
   * the batch has committed or failed, and its promises are settled (callbacks run later).
   */
  flush(): void {
    const recs = this._q;
    const waiters = this._w;
    const n = recs.length;
    if (n === 0) return;
    // Inside a caller's open transaction our commit would only be a savepoint, not durable:
    // wait for a turn where the connection is idle.
    if (this._db.inTransaction) {
      this._schedule();
      return;
    }
    this._q = [];
    this._w = [];
    const dups: boolean[] = new Array(n);
    try {
      this._writeBatch(recs, dups);
    } catch (err) {
      this._stats.failedCommits++;
      this._stats.failedRows += n;
      const e = new StoreError('commit-failed', `telemetry batch of ${n} not stored: ${errMessage(err)}`, {
        cause: err,
      });
      for (let i = 0; i < n; i++) waiters[i].reject(e);
      return;
    }
    // AFTER the commit: only now may anyone learn that these readings are stored.
    let d = 0;
    for (let i = 0; i < n; i++) {
      if (dups[i]) d++;
      waiters[i].resolve(dups[i] ? DUP : NEW);
    }
    const s = this._stats;
    s.commits++;
    s.rows += n;
    s.duplicates += d;
    s.batchRowsLast = n;
    if (n > s.batchRowsPeak) s.batchRowsPeak = n;
  }

  /**
   * Stores many readings in one transaction, synchronously (replication, catch-up, import).
   * Invalid rows are reported and skipped; a failed commit throws StoreError 'commit-failed'
   * and stores none of them.
   */
  appendBatch(recs: readonly unknown[]): BatchResult {
    if (this._closed) throw new StoreError('closed', 'telemetry store is closed');
    if (this._db.inTransaction) {
      throw new Error('appendBatch inside an open transaction would not be durable when it returns');
    }
    if (recs.length > this._importRowsMax) {
      throw new RangeError(`appendBatch of ${recs.length} rows exceeds importRowsMax ${this._importRowsMax}`);
    }
    const valid: TelemetryRecord[] = [];
    const invalid: { index: number; reason: string }[] = [];
    for (let i = 0; i < recs.length; i++) {
      const c = checkRecord(recs[i]);
      if (c.ok) valid.push(c.value);
      else invalid.push({ index: i, reason: c.reason });
    }
    const dups: boolean[] = new Array(valid.length);
    if (valid.length) {
      try {
        this._writeBatch(valid, dups);
      } catch (err) {
        throw new StoreError('commit-failed', `batch of ${valid.length} not stored: ${errMessage(err)}`, { cause: err });
      }
    }
    let duplicates = 0;
    for (let i = 0; i < dups.length; i++) if (dups[i]) duplicates++;
    return { inserted: valid.length - duplicates, duplicates, invalid };
  }

  /** Same as appendBatch: rows exported by another store (exportRows) go back in here. */
  importRows(rows: readonly unknown[]): BatchResult {
    return this.appendBatch(rows);
  }

  stats(): GroupCommitStats {
    return { ...this._stats, pending: this._q.length };
  }

  /**
   * Writes what is pending, then refuses further appends. Idempotent. Does not close the
   * database, which other stores share (database.ts owns it).
   */
  close(): void {
    if (this._closed) return;
    if (this._timer !== null) {
      if (this._windowMs > 0) clearTimeout(this._timer as NodeJS.Timeout);
      else clearImmediate(this._timer as NodeJS.Immediate);
      this._timer = null;
      this._scheduled = false;
    }
    this.flush();
    this._closed = true;
  }

  private _schedule(): void {
    if (this._scheduled) return;
    this._scheduled = true;
    this._timer = this._windowMs > 0 ? setTimeout(this._flushCb, this._windowMs) : setImmediate(this._flushCb);
  }

  // ---------------------------------------------------------------- queries

  /** Readings of one device ordered by (ts, seq), within [since, until). */
  query(device: string, options: QueryOptions = {}): TelemetryRecord[] {
    const desc = options.order === 'desc';
    const limit = this._limit(options.limit);
    const since = options.since ?? 0;
    const until = options.until ?? MAX_TS;
    const a = options.after;
    let rows: Row[];
    if (a) {
      const sql = desc
        ? `SELECT ${COLS} FROM telemetry WHERE device = ? AND ts >= ? AND ts < ? AND (ts, seq) < (?, ?) ORDER BY ts DESC, seq DESC LIMIT ?`
        : `SELECT ${COLS} FROM telemetry WHERE device = ? AND ts >= ? AND ts < ? AND (ts, seq) > (?, ?) ORDER BY ts, seq LIMIT ?`;
      rows = this._stmt(sql).all(device, since, until, a.ts, a.seq, limit) as Row[];
    } else {
      const sql = desc
        ? `SELECT ${COLS} FROM telemetry WHERE device = ? AND ts >= ? AND ts < ? ORDER BY ts DESC, seq DESC LIMIT ?`
        : `SELECT ${COLS} FROM telemetry WHERE device = ? AND ts >= ? AND ts < ? ORDER BY ts, seq LIMIT ?`;
      rows = this._stmt(sql).all(device, since, until, limit) as Row[];
    }
    return rows.map(toRecord);
  }

  /** The newest reading of a device by (ts, seq), or null. */
  latest(device: string): TelemetryRecord | null {
    const row = this._stmt(
      `SELECT ${COLS} FROM telemetry WHERE device = ? ORDER BY ts DESC, seq DESC LIMIT 1`,
    ).get(device) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  /** The newest reading of every device that has one, by device id. */
  latestAll(): TelemetryRecord[] {
    const out: TelemetryRecord[] = [];
    for (const d of this.devices()) {
      const r = this.latest(d);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Devices with stored readings, sorted. One index seek per device (a loose index scan), not
   * a scan of every row.
   */
  devices(): string[] {
    return this._stmt(
      `WITH RECURSIVE d(x) AS (
         SELECT MIN(device) FROM telemetry
         UNION ALL
         SELECT (SELECT MIN(device) FROM telemetry WHERE device > d.x) FROM d WHERE d.x IS NOT NULL
       ) SELECT x FROM d WHERE x IS NOT NULL`,
    )
      .pluck()
      .all() as string[];
  }

  /** Stored readings of one device, or of all devices. */
  count(device?: string): number {
    if (device === undefined) return this._stmt('SELECT COUNT(*) FROM telemetry').pluck().get() as number;
    return this._stmt('SELECT COUNT(*) FROM telemetry WHERE device = ?').pluck().get(device) as number;
  }

  // ---------------------------------------------------------------- replication

  /** Highest stored seq of a device, or null when it has none. */
  maxSeq(device: string): number | null {
    const v = this._stmt('SELECT MAX(seq) FROM telemetry WHERE device = ?').pluck().get(device);
    return typeof v === 'number' ? v : null;
  }

  /** The seqs held for a device within [fromSeq, toSeq], ascending, at most `limit`. */
  rangeSeqs(device: string, fromSeq: number, toSeq: number, limit?: number): number[] {
    return this._stmt('SELECT seq FROM telemetry WHERE device = ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?')
      .pluck()
      .all(device, fromSeq, toSeq, this._limit(limit)) as number[];
  }

  /**
   * The seqs held for a device as maximal runs [from, to], ascending: what anti-entropy
   * compares between replicas. Computed by SQLite over the primary key, returning only the
   * ends of runs, so a device with few gaps costs few rows however many readings it has.
   */
  seqRanges(device: string, options: { fromSeq?: number; toSeq?: number; rangesMax?: number } = {}): SeqRangesResult {
    const from = options.fromSeq ?? 0;
    const to = options.toSeq ?? Number.MAX_SAFE_INTEGER;
    const rangesMax = options.rangesMax ?? this._queryRowsMax;
    const first = this._stmt('SELECT MIN(seq) FROM telemetry WHERE device = ? AND seq >= ? AND seq <= ?')
      .pluck()
      .get(device, from, to);
    const ranges: SeqRange[] = [];
    if (typeof first !== 'number') return { ranges, truncated: false };
    // Each row is the last seq of a run and the first seq of the next run (null at the end).
    const it = this._stmt(
      `SELECT seq, nxt FROM (
         SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt FROM telemetry
         WHERE device = ? AND seq >= ? AND seq <= ?
       ) WHERE nxt IS NULL OR nxt <> seq + 1`,
    )
      .raw()
      .iterate(device, from, to) as IterableIterator<[number, number | null]>;
    let start = first;
    for (const [end, nxt] of it) {
      if (ranges.length >= rangesMax) return { ranges, truncated: true };
      ranges.push([start, end]);
      if (nxt === null) break;
      start = nxt;
    }
    return { ranges, truncated: false };
  }

  /** Readings of a device with seq in [fromSeq, toSeq], ascending by seq, at most `limit`. */
  exportRows(device: string, fromSeq: number, toSeq: number, limit?: number): TelemetryRecord[] {
    const rows = this._stmt(
      `SELECT ${COLS} FROM telemetry WHERE device = ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`,
    ).all(device, fromSeq, toSeq, this._limit(limit)) as Row[];
    return rows.map(toRecord);
  }

  // ---------------------------------------------------------------- retention

  /**
   * Deletes readings older than maxAgeMs and beyond rowsPerDeviceMax per device, device by
   * device, in transactions of at most pruneBatchRowsMax rows with a setImmediate between them,
   * so appends keep committing while it runs. One run at a time: a call during a run returns
   * that run's promise.
   */
  prune(policy: RetentionPolicy, nowMs: number): Promise<PruneResult> {
    if (this._pruning) return this._pruning;
    if (this._closed) return Promise.reject(new StoreError('closed', 'telemetry store is closed'));
    const run = this._prune(policy, nowMs).finally(() => {
      this._pruning = null;
    });
    this._pruning = run;
    return run;
  }

  private async _prune(policy: RetentionPolicy, nowMs: number): Promise<PruneResult> {
    const result: PruneResult = { deleted: 0, batches: 0, devices: 0 };
    const hasAge = policy.maxAgeMs !== undefined;
    const hasCap = policy.rowsPerDeviceMax !== undefined;
    if (!hasAge && !hasCap) return result;
    if (hasAge && !(policy.maxAgeMs! >= 0)) throw new RangeError('maxAgeMs must be >= 0');
    if (hasCap && !(Number.isSafeInteger(policy.rowsPerDeviceMax) && policy.rowsPerDeviceMax! >= 0)) {
      throw new RangeError('rowsPerDeviceMax must be a non-negative integer');
    }
    const nextDevice = this._stmt('SELECT MIN(device) FROM telemetry WHERE device > ?').pluck();
    const nth = this._stmt('SELECT ts, seq FROM telemetry WHERE device = ? ORDER BY ts DESC, seq DESC LIMIT 1 OFFSET ?');
    const del = this._stmt(
      `DELETE FROM telemetry WHERE device = @d AND seq IN (
         SELECT seq FROM telemetry WHERE device = @d AND (ts, seq) < (@ts, @seq) ORDER BY ts, seq LIMIT @n)`,
    );
    const n = this._pruneRowsMax;
    const delBatch = this._db.transaction((d: string, ts: number, seq: number) => del.run({ d, ts, seq, n }).changes);
    let device = nextDevice.get('') as string | null;
    while (device !== null) {
      result.devices++;
      // Everything strictly before (bTs, bSeq) in (ts, seq) order goes. Both rules delete a
      // prefix of that order, so the bound is the later of the two prefixes' ends.
      let bTs = -1;
      let bSeq = MIN_SEQ;
      if (hasAge) bTs = nowMs - policy.maxAgeMs!;
      if (hasCap) {
        const keepFrom = nth.get(device, policy.rowsPerDeviceMax) as { ts: number; seq: number } | undefined;
        // keepFrom is the newest row beyond the cap: it and all older rows go.
        if (keepFrom && (keepFrom.ts > bTs || (keepFrom.ts === bTs && keepFrom.seq + 1 > bSeq))) {
          bTs = keepFrom.ts;
          bSeq = keepFrom.seq + 1;
        }
      }
      if (bTs >= 0) {
        for (;;) {
          const k = delBatch.immediate(device, bTs, bSeq) as number;
          result.batches++;
          result.deleted += k;
          // BETWEEN transactions: let queued appends commit before the next delete.
          await yieldTurn();
          if (this._closed || !this._db.open || k < n) break;
        }
      } else if ((result.devices & 63) === 0) {
        await yieldTurn();
      }
      if (this._closed || !this._db.open) break;
      device = nextDevice.get(device) as string | null;
    }
    return result;
  }

  // ---------------------------------------------------------------- helpers

  private readonly _stmts = new Map<string, Statement>();

  /** Prepared statements, compiled once per SQL text (each text is used in one mode only). */
  private _stmt(sql: string): Statement {
    let s = this._stmts.get(sql);
    if (!s) {
      s = this._db.prepare(sql);
      this._stmts.set(sql, s);
    }
    return s;
  }

  private _limit(limit: number | undefined): number {
    if (limit === undefined || Number.isNaN(limit)) return this._queryRowsMax;
    return Math.max(0, Math.min(Math.floor(limit), this._queryRowsMax));
  }
}

function toRecord(row: Row): TelemetryRecord {
  return { device: row.device, seq: row.seq, ts: row.ts, hist: row.hist ? 1 : 0, r: JSON.parse(row.r) };
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer`);
  return v;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

