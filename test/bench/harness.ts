/**
 * Benchmark harness shared by every suite: timing loops bounded in count and time, the table
 * printed to the console, and dist/bench/<suite>.json in the shape INTERFACES.md gives.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

export interface BenchRow {
  name: string;
  value: number;
  unit: string;
}

export interface BenchGoal {
  name: string;
  ours: number;
  peer: number;
  peerName: string;
  /** ours compared with peer, higher is better (the suite decides the direction). */
  ratio: number;
  target: number;
  met: boolean;
}

export interface BenchResult {
  suite: string;
  at: string;
  node: string;
  cpus: number;
  rows: BenchRow[];
  goals: BenchGoal[];
}

export interface Suite {
  name: string;
  run(): Promise<{ rows: BenchRow[]; goals: BenchGoal[] }>;
}

/** A goal where a larger value of ours is better (throughput). */
export function goalHigher(name: string, ours: number, peer: number, peerName: string, target: number): BenchGoal {
  const ratio = peer === 0 ? 0 : ours / peer;
  return { name, ours, peer, peerName, ratio: round(ratio, 3), target, met: ratio >= target };
}

/** A goal where a smaller value of ours is better (latency, overhead); ratio = peer / ours. */
export function goalLower(name: string, ours: number, peer: number, peerName: string, target: number): BenchGoal {
  const ratio = ours === 0 ? Infinity : peer / ours;
  return { name, ours, peer, peerName, ratio: round(ratio, 3), target, met: ratio >= target };
}

export function round(x: number, digits: number): number {
  const f = Math.pow(10, digits);
  return Math.round(x * f) / f;
}

/**
 * Runs fn repeatedly for about timeMs (at most maxIterations), in batches, and returns
 * operations per second. fn returns how many operations it performed.
 */
export function opsPerSec(fn: () => number, timeMs = 1000, maxIterations = 1e9): number {
  for (let i = 0; i < 3; i++) fn();
  let ops = 0;
  let iterations = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(timeMs * 1e6));
  let elapsed = 0n;
  while (elapsed < limit && iterations < maxIterations) {
    ops += fn();
    iterations++;
    elapsed = process.hrtime.bigint() - start;
  }
  return ops / (Number(elapsed) / 1e9);
}

/** Async variant: fn resolves with how many operations it performed. */
export async function opsPerSecAsync(fn: () => Promise<number>, timeMs = 1000, maxIterations = 1e9): Promise<number> {
  for (let i = 0; i < 3; i++) await fn();
  let ops = 0;
  let iterations = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(timeMs * 1e6));
  let elapsed = 0n;
  while (elapsed < limit && iterations < maxIterations) {
    ops += await fn();
    iterations++;
    elapsed = process.hrtime.bigint() - start;
  }
  return ops / (Number(elapsed) / 1e9);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function writeResult(outDir: string, suite: string, rows: BenchRow[], goals: BenchGoal[]): BenchResult {
  const result: BenchResult = {
    suite,
    at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    rows,
    goals,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${suite}.json`), JSON.stringify(result, null, 2) + '\n');
  return result;
}

export function printResult(r: BenchResult): void {
  const lines: string[] = [];
  lines.push(`\n== ${r.suite}`);
  const w = Math.max(10, ...r.rows.map((x) => x.name.length));
  for (const row of r.rows) lines.push(`  ${row.name.padEnd(w)}  ${fmt(row.value).padStart(14)} ${row.unit}`);
  if (r.goals.length) {
    lines.push('  goals:');
    for (const g of r.goals) {
      lines.push(
        `  ${g.met ? 'MET ' : 'MISS'} ${g.name}: ours ${fmt(g.ours)} vs ${g.peerName} ${fmt(g.peer)} -> ratio ${g.ratio} (target ${g.target})`,
      );
    }
  }
  console.log(lines.join('\n'));
}

function fmt(x: number): string {
  if (!isFinite(x)) return String(x);
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  return String(round(x, 3));
}
