import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type OpenDatabase, StoreError, openDatabase } from '../../../../host/store/database.js';
import {
  type TelemetryRecord,
  TelemetryStore,
  type TelemetryStoreOptions,
} from '../../../../host/store/telemetry-store.js';

let dir: string;
let path: string;
let open: OpenDatabase;
let store: TelemetryStore;
const extra: { close(): void }[] = [];

function make(options: TelemetryStoreOptions = {}, busyTimeoutMs?: number): TelemetryStore {
  open = openDatabase({ path, busyTimeoutMs });
  store = new TelemetryStore(open.db, options);
  return store;
}

function rec(device: string, seq: number, ts = 1000 + seq, r: Record<string, number> = { t: seq / 2 }): TelemetryRecord {
  return { device, seq, ts, hist: 0, r };
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'espfleet-tel-'));
  path = join(dir, 'espfleet.db');
});
afterEach(() => {
  store?.close();
  open?.close();
  while (extra.length) extra.pop()!.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('append: dedup', () => {
  it('stores a reading once per (device, seq) and says which appends were duplicates', async () => {
    make();
    expect(await store.append(rec('a', 1))).toEqual({ dup: false });
    expect(await store.append(rec('a', 1, 5000, { t: 99 }))).toEqual({ dup: true });
    expect(await store.append(rec('b', 1))).toEqual({ dup: false });
    expect(store.count('a')).toBe(1);
    expect(store.latest('a')).toEqual(rec('a', 1)); // the first copy wins
  });

  it('treats a duplicate inside the same batch as a duplicate', async () => {
    make();
    const out = await Promise.all([store.append(rec('a', 1)), store.append(rec('a', 1)), store.append(rec('a', 2))]);
    expect(out.map((x) => x.dup)).toEqual([false, true, false]);
    expect(store.stats()).toMatchObject({ commits: 1, rows: 3, duplicates: 1 });
  });

  it('refuses an invalid record alone, with a reason', async () => {
    make();
    const good = store.append(rec('a', 1));
    const bad = store.append({ device: 'a', seq: -1, ts: 1, hist: 0, r: {} });
    await expect(bad).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/seq/) });
    await expect(good).resolves.toEqual({ dup: false });
    expect(store.count()).toBe(1);
  });
});

describe('group commit', () => {
  it('commits many concurrent appends in few transactions, each resolving only after its commit', async () => {
    make({ batchRowsMax: 1000 });
    const reader = new Database(path, { readonly: true });
    extra.push(reader);
    const has = reader.prepare('SELECT COUNT(*) FROM telemetry WHERE device = ? AND seq = ?').pluck();
    const n = 3500;
    const seenAtResolve: number[] = [];
    const seenAtCall: number[] = [];
    const ps: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const d = 'dev-' + (i % 7);
      ps.push(
        store.append(rec(d, i)).then((res) => {
          // A second connection sees the row by the time the promise resolves.
          seenAtResolve.push(has.get(d, i) as number);
          return res;
        }),
      );
      // The first 999 of each 1000 wait for the scheduler; nothing is visible yet.
      if (i % 1000 !== 999) seenAtCall.push(has.get(d, i) as number);
    }
    const results = await Promise.all(ps);
    expect(results.every((r) => (r as { dup: boolean }).dup === false)).toBe(true);
    expect(seenAtResolve.length).toBe(n);
    expect(seenAtResolve.every((x) => x === 1)).toBe(true);
    expect(seenAtCall.every((x) => x === 0)).toBe(true);
    const s = store.stats();
    expect(s.commits).toBe(Math.ceil(n / 1000)); // 3 full batches at the limit + 1 at setImmediate
    expect(s.batchRowsPeak).toBe(1000);
    expect(s.batchRowsLast).toBe(500);
    expect(s.pending).toBe(0);
    expect(reader.prepare('SELECT COUNT(*) FROM telemetry').pluck().get()).toBe(n);
  });

  it('gathers appends of separate turns inside batchWindowMs into one commit', async () => {
    make({ batchWindowMs: 30 });
    const ps = [store.append(rec('a', 1))];
    await turn();
    ps.push(store.append(rec('a', 2)));
    await turn();
    ps.push(store.append(rec('a', 3)));
    expect(store.stats().commits).toBe(0);
    await Promise.all(ps);
    expect(store.stats()).toMatchObject({ commits: 1, rows: 3 });
  });

  it('rejects every append of a batch whose commit fails, stores none of it, then recovers', async () => {
    make();
    // A trigger makes the 5th insert fail inside the transaction.
    open.db.exec(`CREATE TRIGGER fail_seq BEFORE INSERT ON telemetry WHEN NEW.seq = 5
                  BEGIN SELECT RAISE(ABORT, 'disk says no'); END`);
    const ps = [];
    for (let i = 1; i <= 10; i++) ps.push(store.append(rec('a', i)));
    const settled = await Promise.allSettled(ps);
    expect(settled.every((s) => s.status === 'rejected')).toBe(true);
    const reason = (settled[0] as PromiseRejectedResult).reason as StoreError;
    expect(reason).toBeInstanceOf(StoreError);
    expect(reason.code).toBe('commit-failed');
    expect(reason.message).toMatch(/batch of 10 not stored: disk says no/);
    expect(store.count()).toBe(0);
    expect(store.stats()).toMatchObject({ failedCommits: 1, failedRows: 10, commits: 0 });
    open.db.exec('DROP TRIGGER fail_seq');
    await expect(store.append(rec('a', 5))).resolves.toEqual({ dup: false });
    expect(store.count()).toBe(1);
  });

  it('rejects the batch when another connection holds the write lock past busy_timeout', async () => {
    make({}, 20);
    const other = new Database(path);
    extra.push(other);
    other.exec('BEGIN IMMEDIATE');
    const blocked = [store.append(rec('a', 1)), store.append(rec('a', 2))];
    for (const p of blocked) await expect(p).rejects.toMatchObject({ code: 'commit-failed' });
    other.exec('COMMIT');
    await expect(store.append(rec('a', 1))).resolves.toEqual({ dup: false });
  });

  it('never counts a savepoint inside a caller\'s transaction as a durable commit', async () => {
    make({ batchRowsMax: 2 });
    const reader = new Database(path, { readonly: true });
    extra.push(reader);
    let p: Promise<unknown> = Promise.resolve();
    let settled = false;
    open.db.transaction(() => {
      p = Promise.all([store.append(rec('a', 1)), store.append(rec('a', 2))]).then(() => (settled = true));
      store.flush();
      expect(() => store.appendBatch([rec('a', 3)])).toThrow(/not be durable/);
    })();
    expect(store.stats()).toMatchObject({ commits: 0, pending: 2 });
    await p;
    expect(settled).toBe(true);
    expect(store.stats().commits).toBe(1);
    expect(reader.prepare('SELECT COUNT(*) FROM telemetry').pluck().get()).toBe(2);
  });

  it('close() writes what is pending and refuses later appends', async () => {
    make();
    const p = store.append(rec('a', 1));
    store.close();
    await expect(p).resolves.toEqual({ dup: false });
    await expect(store.append(rec('a', 2))).rejects.toMatchObject({ code: 'closed' });
    expect(() => store.appendBatch([rec('a', 3)])).toThrow(StoreError);
    open.close();
    open = openDatabase({ path });
    store = new TelemetryStore(open.db);
    expect(store.count()).toBe(1);
  });
});

describe('appendBatch', () => {
  it('stores valid rows in one transaction and reports duplicates and invalid rows', () => {
    make();
    const r1 = store.appendBatch([rec('a', 1), rec('a', 2), { device: 'a', seq: 'x' }, rec('a', 2)]);
    expect(r1).toEqual({ inserted: 2, duplicates: 1, invalid: [{ index: 2, reason: 'seq is not a non-negative integer' }] });
    const r2 = store.appendBatch([rec('a', 2), rec('a', 3)]);
    expect(r2).toEqual({ inserted: 1, duplicates: 1, invalid: [] });
    expect(store.count('a')).toBe(3);
  });

  it('refuses more than importRowsMax rows', () => {
    make({ importRowsMax: 2 });
    expect(() => store.appendBatch([rec('a', 1), rec('a', 2), rec('a', 3)])).toThrow(RangeError);
  });
});

describe('queries', () => {
  beforeEach(() => {
    make({ queryRowsMax: 50 });
    // Out of order on purpose, with ts ties ordered by seq.
    store.appendBatch([
      rec('a', 5, 300),
      rec('a', 1, 100),
      rec('a', 3, 200),
      rec('a', 2, 200),
      rec('a', 4, 250),
      { ...rec('a', 6, 400), hist: 1 },
      rec('b', 1, 150),
      rec('c', 9, 50),
    ]);
  });

  it('orders by ts, then seq', () => {
    expect(store.query('a').map((x) => x.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(store.query('a', { order: 'desc' }).map((x) => x.seq)).toEqual([6, 5, 4, 3, 2, 1]);
  });

  it('selects [since, until) and limits', () => {
    expect(store.query('a', { since: 200, until: 300 }).map((x) => x.seq)).toEqual([2, 3, 4]);
    expect(store.query('a', { since: 201 }).map((x) => x.seq)).toEqual([4, 5, 6]);
    expect(store.query('a', { until: 200 }).map((x) => x.seq)).toEqual([1]);
    expect(store.query('a', { limit: 2 }).map((x) => x.seq)).toEqual([1, 2]);
    expect(store.query('a', { limit: 0 })).toEqual([]);
    expect(store.query('nobody')).toEqual([]);
  });

  it('pages with `after`, through ts ties, in both orders', () => {
    const pages: number[][] = [];
    let after: { ts: number; seq: number } | undefined;
    for (;;) {
      const page = store.query('a', { limit: 2, after });
      if (!page.length) break;
      pages.push(page.map((x) => x.seq));
      after = page[page.length - 1];
    }
    expect(pages).toEqual([[1, 2], [3, 4], [5, 6]]);
    const first = store.query('a', { order: 'desc', limit: 3 });
    const second = store.query('a', { order: 'desc', limit: 3, after: first[2] });
    expect(second.map((x) => x.seq)).toEqual([3, 2, 1]);
  });

  it('caps a query at queryRowsMax', () => {
    const many = [];
    for (let i = 0; i < 80; i++) many.push(rec('m', i));
    store.appendBatch(many);
    expect(store.query('m').length).toBe(50);
    expect(store.query('m', { limit: 1000 }).length).toBe(50);
  });

  it('returns records as stored', () => {
    expect(store.query('a', { since: 400 })).toEqual([{ device: 'a', seq: 6, ts: 400, hist: 1, r: { t: 3 } }]);
  });

  it('gives the latest reading per device, devices and counts', () => {
    expect(store.latest('a')?.seq).toBe(6);
    expect(store.latest('nobody')).toBeNull();
    expect(store.devices()).toEqual(['a', 'b', 'c']);
    expect(store.latestAll().map((x) => [x.device, x.seq])).toEqual([
      ['a', 6],
      ['b', 1],
      ['c', 9],
    ]);
    expect(store.count()).toBe(8);
    expect(store.count('a')).toBe(6);
    expect(store.count('nobody')).toBe(0);
  });
});

describe('replication support', () => {
  beforeEach(() => {
    make({ queryRowsMax: 100 });
    const rows = [];
    for (const s of [0, 1, 2, 3, 7, 8, 10, 20, 21, 22]) rows.push(rec('a', s));
    rows.push(rec('b', 4));
    store.appendBatch(rows);
  });

  it('reports max seq and the seqs held in a range', () => {
    expect(store.maxSeq('a')).toBe(22);
    expect(store.maxSeq('nobody')).toBeNull();
    expect(store.rangeSeqs('a', 2, 10)).toEqual([2, 3, 7, 8, 10]);
    expect(store.rangeSeqs('a', 2, 10, 2)).toEqual([2, 3]);
    expect(store.rangeSeqs('a', 11, 19)).toEqual([]);
  });

  it('reports the runs of seqs held', () => {
    expect(store.seqRanges('a')).toEqual({ ranges: [[0, 3], [7, 8], [10, 10], [20, 22]], truncated: false });
    expect(store.seqRanges('a', { fromSeq: 2, toSeq: 20 })).toEqual({
      ranges: [[2, 3], [7, 8], [10, 10], [20, 20]],
      truncated: false,
    });
    expect(store.seqRanges('a', { rangesMax: 2 })).toEqual({ ranges: [[0, 3], [7, 8]], truncated: true });
    expect(store.seqRanges('nobody')).toEqual({ ranges: [], truncated: false });
    expect(store.seqRanges('b')).toEqual({ ranges: [[4, 4]], truncated: false });
  });

  it('exports rows that another store imports to the same state', () => {
    const other = openDatabase({ path: join(dir, 'replica.db') });
    extra.push(other);
    const replica = new TelemetryStore(other.db);
    replica.appendBatch([rec('a', 8)]); // the replica already has one of them
    const rows = store.exportRows('a', 0, 100);
    expect(rows.map((x) => x.seq)).toEqual([0, 1, 2, 3, 7, 8, 10, 20, 21, 22]);
    expect(replica.importRows(rows)).toEqual({ inserted: 9, duplicates: 1, invalid: [] });
    expect(replica.seqRanges('a')).toEqual(store.seqRanges('a'));
    expect(replica.query('a')).toEqual(store.query('a'));
    expect(store.exportRows('a', 3, 9, 2).map((x) => x.seq)).toEqual([3, 7]);
  });
});

describe('retention', () => {
  function fill(device: string, n: number, tsOf: (i: number) => number = (i) => i): void {
    const rows = [];
    for (let i = 0; i < n; i++) rows.push(rec(device, i, tsOf(i)));
    store.appendBatch(rows);
  }

  it('deletes readings older than maxAgeMs', async () => {
    make();
    fill('a', 100);
    fill('b', 30);
    const r = await store.prune({ maxAgeMs: 50 }, 100);
    expect(r).toMatchObject({ deleted: 50 + 30, devices: 2 });
    expect(store.count('a')).toBe(50);
    expect(store.query('a', { limit: 1 })[0].ts).toBe(50);
    expect(store.count('b')).toBe(0);
  });

  it('keeps at most rowsPerDeviceMax newest readings per device, ties by seq', async () => {
    make();
    fill('a', 100, (i) => Math.floor(i / 4)); // four readings per ms
    fill('b', 5);
    const r = await store.prune({ rowsPerDeviceMax: 10 }, 0);
    expect(r.deleted).toBe(90);
    expect(store.query('a').map((x) => x.seq)).toEqual([90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
    expect(store.count('b')).toBe(5);
  });

  it('applies whichever rule deletes more, and 0 rows deletes all', async () => {
    make();
    fill('a', 100); // ts 0..99
    await store.prune({ maxAgeMs: 80, rowsPerDeviceMax: 40 }, 100); // age keeps 80, cap keeps 40
    expect(store.count('a')).toBe(40);
    await store.prune({ maxAgeMs: 10, rowsPerDeviceMax: 40 }, 100); // age keeps 10
    expect(store.query('a').map((x) => x.ts)).toEqual([90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
    await store.prune({ rowsPerDeviceMax: 0 }, 100);
    expect(store.count()).toBe(0);
  });

  it('does nothing without a policy', async () => {
    make();
    fill('a', 10);
    expect(await store.prune({}, 1e12)).toEqual({ deleted: 0, batches: 0, devices: 0 });
    expect(store.count()).toBe(10);
  });

  it('deletes in small transactions and lets appends commit between them', async () => {
    make({ pruneBatchRowsMax: 7 });
    fill('a', 100);
    const events: string[] = [];
    const pruning = store.prune({ maxAgeMs: 0 }, 1000);
    expect(store.prune({ maxAgeMs: 0 }, 1000)).toBe(pruning); // one run at a time
    const run = pruning.then((r) => {
      events.push('prune done');
      return r;
    });
    const appended = store.append(rec('live', 1, 5000)).then(() => events.push('append committed'));
    const [r] = await Promise.all([run, appended]);
    // 15 transactions of at most 7 rows for 'a', then one (deleting nothing) for 'live'.
    expect(r.batches).toBe(15 + 1);
    expect(r.devices).toBe(2);
    expect(r.deleted).toBe(100);
    expect(events).toEqual(['append committed', 'prune done']);
    expect(store.count()).toBe(1); // the new reading (ts 5000) is newer than the cutoff (ts 1000)
  });

  it('rejects a bad policy', async () => {
    make();
    await expect(store.prune({ rowsPerDeviceMax: -1 }, 0)).rejects.toThrow(RangeError);
  });
});
