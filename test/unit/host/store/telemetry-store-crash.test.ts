/**
 * Crash safety: a child process appends readings and prints each seq as soon as its promise
 * resolves; it is then SIGKILLed (by itself right after a resolution, or by us at an arbitrary
 * moment while commits are in flight). On reopen, every printed seq must be stored.
 *
 * A SIGKILL loses the process, not the page cache, so this proves the ordering contract
 * (resolve AFTER commit) and recovery of the WAL; the fsync half of durability is the
 * synchronous=FULL pragma checked in database.test.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../../../host/store/database.js';
import { TelemetryStore } from '../../../../host/store/telemetry-store.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
let dir: string;
let child: string;

// Node 20 cannot run TypeScript: transpile the store modules next to a small child script.
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'espfleet-crash-'));
  const out = join(dir, 'host', 'store');
  mkdirSync(out, { recursive: true });
  for (const f of readdirSync(join(repo, 'host', 'store'))) {
    if (!f.endsWith('.ts')) continue;
    const src = readFileSync(join(repo, 'host', 'store', f), 'utf8');
    const js = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    writeFileSync(join(out, f.replace(/\.ts$/, '.js')), js);
  }
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'), 'dir');
  child = join(dir, 'child.js');
  writeFileSync(
    child,
    `
import { writeSync } from 'node:fs';
import { openDatabase } from './host/store/database.js';
import { TelemetryStore } from './host/store/telemetry-store.js';
const [path, mode, roundsArg] = process.argv.slice(2);
const { db } = openDatabase({ path });
const store = new TelemetryStore(db, { batchRowsMax: 256 });
let seq = 0;
const acked = (s) => () => writeSync(1, s + '\\n');
function burst(n) {
  const ps = [];
  for (let i = 0; i < n; i++) {
    const s = seq++;
    ps.push(store.append({ device: 'd' + (s % 3), seq: s, ts: 1000 + s, hist: 0, r: { t: s } }).then(acked(s)));
  }
  return ps;
}
if (mode === 'self') {
  // Rounds of concurrent appends; die the moment the last round has resolved.
  for (let r = 0; r < Number(roundsArg); r++) await Promise.all(burst(300));
  process.kill(process.pid, 'SIGKILL');
} else {
  // Keep commits in flight on every turn until the parent kills us.
  writeSync(2, 'ready\\n');
  const tick = () => { burst(97); setImmediate(tick); };
  tick();
}
`,
  );
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], onLine: (count: number, proc: ChildProcess) => void): Promise<{ signal: string | null; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let buf = '';
    let err = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        onLine(lines.length, proc);
      }
    });
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (c: string) => (err += c));
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      if (signal === null) reject(new Error(`child exited with ${code}: ${err}`));
      else resolve({ signal, lines });
    });
  });
}

function storedSeqs(path: string): Set<number> {
  const o = openDatabase({ path });
  const s = new TelemetryStore(o.db);
  const seqs = new Set<number>();
  for (const d of s.devices()) for (const q of s.rangeSeqs(d, 0, Number.MAX_SAFE_INTEGER, 1e9)) seqs.add(q);
  o.close();
  return seqs;
}

describe('crash safety', () => {
  it('keeps every reading whose promise resolved when the process dies right after', async () => {
    const path = join(dir, 'self.db');
    const { signal, lines } = await run([path, 'self', '5'], () => undefined);
    expect(signal).toBe('SIGKILL');
    expect(lines.length).toBe(1500);
    const stored = storedSeqs(path);
    for (const l of lines) expect(stored.has(Number(l))).toBe(true);
    expect(stored.size).toBe(1500);
  });

  it('keeps every acknowledged reading when killed at an arbitrary moment mid-ingest', async () => {
    for (const [i, killAfter] of [3000, 7919, 12345].entries()) {
      const path = join(dir, `loop-${i}.db`);
      let killed = false;
      const { signal, lines } = await run([path, 'loop'], (count, proc) => {
        if (!killed && count >= killAfter) {
          killed = true;
          proc.kill('SIGKILL');
        }
      });
      expect(signal).toBe('SIGKILL');
      const acked = lines.filter((l) => l.length > 0).map(Number);
      expect(acked.length).toBeGreaterThanOrEqual(killAfter);
      const stored = storedSeqs(path);
      const missing = acked.filter((s) => !stored.has(s));
      expect(missing).toEqual([]);
      // Rows may be stored without an ack (committed, then killed before the callback):
      // that is allowed; the device resends and gets dup:true.
      expect(stored.size).toBeGreaterThanOrEqual(acked.length);
    }
  });
});
