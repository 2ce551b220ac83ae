/**
 * Durable telemetry ingest: appends per second when each promise resolves only after an
 * fsynced commit (WAL, synchronous=FULL), with group commit against one transaction per row.
 * Real files in a temp dir; every loop is bounded in time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BenchRow, type Suite, opsPerSec, opsPerSecAsync, percentile, round } from '../harness.js';
import { openDatabase } from '../../../host/store/database.js';
import { type TelemetryRecord, TelemetryStore } from '../../../host/store/telemetry-store.js';

const DEVICES = 50;
const RUN_MS = 1500;

function reading(seq: number): TelemetryRecord {
  return { device: 'dev-' + (seq % DEVICES), seq, ts: 1700000000000 + seq, hist: 0, r: { t: 21.5 + (seq % 10) / 10, h: 40 } };
}

function withStore<T>(dir: string, name: string, batchRowsMax: number, fn: (s: TelemetryStore) => Promise<T>): Promise<T> {
  const o = openDatabase({ path: join(dir, name + '.db') });
  const s = new TelemetryStore(o.db, { batchRowsMax });
  return fn(s).finally(() => {
    s.close();
    o.close();
  });
}

/** Appends `perTurn` readings at once (as an ingest turn would), awaiting all; appends/s. */
async function groupCommit(dir: string, name: string, perTurn: number, batchRowsMax: number) {
  return withStore(dir, name, batchRowsMax, async (s) => {
    let seq = 0;
    const latencies: number[] = [];
    const rate = await opsPerSecAsync(async () => {
      const t0 = performance.now();
      const ps: Promise<unknown>[] = new Array(perTurn);
      for (let i = 0; i < perTurn; i++) ps[i] = s.append(reading(seq++));
      await Promise.all(ps);
      latencies.push(performance.now() - t0);
      return perTurn;
    }, RUN_MS);
    const st = s.stats();
    latencies.sort((a, b) => a - b);
    return { rate, rowsPerCommit: st.rows / Math.max(1, st.commits), p99Ms: percentile(latencies, 99) };
  });
}

export default {
  name: 'store',
  async run() {
    const dir = mkdtempSync(join(tmpdir(), 'espfleet-bench-store-'));
    const rows: BenchRow[] = [];
    try {
      // One transaction (one fsync) per reading: what a store without group commit does.
      const single = await withStore(dir, 'single', 1, async (s) => {
        let seq = 0;
        return opsPerSecAsync(async () => {
          await s.append(reading(seq++));
          return 1;
        }, RUN_MS);
      });
      const g100 = await groupCommit(dir, 'g100', 100, 4096);
      const g1000 = await groupCommit(dir, 'g1000', 1000, 4096);
      const g10000 = await groupCommit(dir, 'g10000', 10000, 4096);
      const batch = await withStore(dir, 'batch', 4096, async (s) => {
        let seq = 0;
        return opsPerSec(() => {
          const recs: TelemetryRecord[] = new Array(1000);
          for (let i = 0; i < 1000; i++) recs[i] = reading(seq++);
          s.appendBatch(recs);
          return 1000;
        }, RUN_MS);
      });
      rows.push(
        { name: 'durable append, one transaction per row', value: round(single, 0), unit: 'appends/s' },
        { name: 'durable append, group commit, 100 per turn', value: round(g100.rate, 0), unit: 'appends/s' },
        { name: 'durable append, group commit, 1000 per turn', value: round(g1000.rate, 0), unit: 'appends/s' },
        { name: 'durable append, group commit, 10000 per turn', value: round(g10000.rate, 0), unit: 'appends/s' },
        { name: 'group commit speed-up (1000 per turn)', value: round(g1000.rate / single, 1), unit: 'x' },
        { name: 'rows per commit (10000 per turn, batchRowsMax 4096)', value: round(g10000.rowsPerCommit, 0), unit: 'rows' },
        { name: 'append-to-durable p99 (1000 per turn)', value: round(g1000.p99Ms, 2), unit: 'ms' },
        { name: 'appendBatch, 1000 rows per transaction', value: round(batch, 0), unit: 'rows/s' },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return { rows, goals: [] };
  },
} satisfies Suite;
