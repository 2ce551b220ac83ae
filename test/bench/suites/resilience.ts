/**
 * Resilience: the cost of wrapping a trivially succeeding call in retry + circuit breaker, ours
 * (host/resilience over the firmware cores) side by side with cockatiel 3 and opossum 9 and the
 * bare call, in one run. Overhead = ns per wrapped call minus ns per bare call; the goal is ours
 * at most a fifth of the cheaper peer's (ratio = peer overhead / our overhead, target 5).
 *
 * Same policy everywhere: up to 3 attempts with exponential backoff, a breaker opening after 5
 * consecutive failures (opossum has no consecutive mode: 50 % of a rolling window, the closest it
 * offers), no timeout (each library's timeout would add a timer per call; ours adds none only
 * when no deadline is set, so timeouts are left out of all of them). opossum has no retry: it is
 * given the smallest retry loop around fire(). Both kinds of operation are measured: an async
 * function (a promise per call, like a network call) and a plain function returning a value.
 */
import { createRequire } from 'node:module';
import { exponentialBackoff } from '../../../firmware/core/backoff.js';
import { CircuitBreaker } from '../../../firmware/core/circuit-breaker.js';
import { CALL_DONE, CALL_RUN, Policy } from '../../../firmware/core/policy.js';
import { RetryPolicy } from '../../../firmware/core/retry.js';
import { ResilienceExecutor } from '../../../host/resilience/executor.js';
import { goalLower, opsPerSec, opsPerSecAsync, round, type BenchRow, type Suite } from '../harness.js';

/** cockatiel 3.x, as far as used here. */
interface CockatielPolicy {
  execute<T>(fn: () => T | Promise<T>): Promise<T>;
}
interface Cockatiel {
  handleAll: unknown;
  retry(handle: unknown, o: { maxAttempts: number; backoff: unknown }): CockatielPolicy;
  circuitBreaker(handle: unknown, o: { halfOpenAfter: number; breaker: unknown }): CockatielPolicy;
  wrap(...p: CockatielPolicy[]): CockatielPolicy;
  ExponentialBackoff: new (o?: { initialDelay?: number; maxDelay?: number }) => unknown;
  ConsecutiveBreaker: new (n: number) => unknown;
}
/** opossum 9.x, as far as used here. */
interface OpossumBreaker {
  fire(): Promise<unknown>;
  shutdown(): void;
}
type OpossumCtor = new (fn: () => unknown, o: Record<string, unknown>) => OpossumBreaker;

const requirePeer = createRequire(import.meta.url);
const cockatiel = requirePeer('cockatiel') as Cockatiel;
const Opossum = requirePeer('opossum') as OpossumCtor;

/** Awaited calls per timed batch: large enough that the loop itself is noise, small enough for many batches per round. */
const BATCH = 2_000;
/** Each contender is timed ROUNDS times, interleaved, for ROUND_MS each; the median counts. */
const ROUNDS = 7;
const ROUND_MS = 250;
/** Retry: 3 attempts (2 retries), backoff from 128 ms; breaker: 5 failures in a row, 10 s open. */
const ATTEMPTS = 3;
const FAILURES = 5;
const OPEN_MS = 10_000;

let sink = 0;
const asyncOp = async (): Promise<number> => 1;
const syncOp = (): number => 1;

/*
 * One batch function per contender and operation kind, each its own literal, so each call site
 * sees one receiver type and no contender pays for another's inline-cache misses.
 */
function bareAsync(): () => Promise<number> {
  return async () => {
    for (let i = 0; i < BATCH; i++) sink += await asyncOp();
    return BATCH;
  };
}
function bareSync(): () => Promise<number> {
  return async () => {
    for (let i = 0; i < BATCH; i++) sink += await syncOp();
    return BATCH;
  };
}
function oursAsync(ex: ResilienceExecutor): () => Promise<number> {
  return async () => {
    for (let i = 0; i < BATCH; i++) sink += await ex.execute(asyncOp);
    return BATCH;
  };
}
function oursSync(ex: ResilienceExecutor): () => Promise<number> {
  return async () => {
    for (let i = 0; i < BATCH; i++) sink += await ex.execute(syncOp);
    return BATCH;
  };
}
function cockatielAsync(p: CockatielPolicy): () => Promise<number> {
  return async () => {
    for (let i = 0; i < BATCH; i++) sink += await p.execute(asyncOp);
    return BATCH;
  };
}
function cockatielSync(p: CockatielPolicy): () => Promise<number> {
  return async () => {
    for (let i = 0; i < BATCH; i++) sink += await p.execute(syncOp);
    return BATCH;
  };
}
/** opossum has no retry of its own: the smallest correct retry loop around fire(). */
async function fireWithRetry(b: OpossumBreaker): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await b.fire()) as number;
    } catch (e) {
      if (attempt >= ATTEMPTS) throw e;
    }
  }
}
function opossumBatch(b: OpossumBreaker): () => Promise<number> {
  return async () => {
    for (let i = 0; i < BATCH; i++) sink += await fireWithRetry(b);
    return BATCH;
  };
}
/** The pure core as the device drives it: no promise, no clock read, one reused Call. */
function coreSync(policy: Policy): () => number {
  const call = policy.call();
  return () => {
    for (let i = 0; i < BATCH; i++) {
      if (call.start(i) === CALL_RUN) {
        sink += syncOp();
        if (call.succeeded(i, call.token) !== CALL_DONE) throw new Error('bench: core call did not complete');
      }
    }
    return BATCH;
  };
}

function ourLayers() {
  return [
    new RetryPolicy({ attemptsMax: ATTEMPTS, backoff: exponentialBackoff({ baseMs: 128, capMs: 30_000 }) }),
    new CircuitBreaker({ consecutiveFailures: FAILURES, openMs: OPEN_MS }),
  ];
}

function cockatielPolicy(): CockatielPolicy {
  const c = cockatiel;
  return c.wrap(
    c.retry(c.handleAll, { maxAttempts: ATTEMPTS - 1, backoff: new c.ExponentialBackoff({ initialDelay: 128, maxDelay: 30_000 }) }),
    c.circuitBreaker(c.handleAll, { halfOpenAfter: OPEN_MS, breaker: new c.ConsecutiveBreaker(FAILURES) }),
  );
}

function opossum(fn: () => unknown): OpossumBreaker {
  return new Opossum(fn, { timeout: false, errorThresholdPercentage: 50, resetTimeout: OPEN_MS, volumeThreshold: FAILURES });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const suite: Suite = {
  name: 'resilience',
  async run() {
    const exA = new ResilienceExecutor(ourLayers());
    const exS = new ResilienceExecutor(ourLayers());
    const ckA = cockatielPolicy();
    const ckS = cockatielPolicy();
    const opA = opossum(asyncOp);
    const opS = opossum(syncOp);
    const contenders: Array<[string, () => Promise<number>]> = [
      ['bare async', bareAsync()],
      ['ours async', oursAsync(exA)],
      ['cockatiel async', cockatielAsync(ckA)],
      ['opossum async', opossumBatch(opA)],
      ['bare sync', bareSync()],
      ['ours sync', oursSync(exS)],
      ['cockatiel sync', cockatielSync(ckS)],
      ['opossum sync', opossumBatch(opS)],
    ];
    const core = coreSync(new Policy(ourLayers()));
    const rates = new Map<string, number[]>(contenders.map(([n]) => [n, []]));
    const coreRates: number[] = [];
    try {
      for (let r = 0; r < ROUNDS; r++) {
        for (const [name, fn] of contenders) (rates.get(name) as number[]).push(await opsPerSecAsync(fn, ROUND_MS));
        coreRates.push(opsPerSec(core, ROUND_MS));
      }
    } finally {
      opA.shutdown();
      opS.shutdown();
    }
    const ns = (name: string) => 1e9 / median(rates.get(name) as number[]);
    const rows: BenchRow[] = [];
    for (const [name] of contenders) {
      rows.push({ name: `${name}: calls/s`, value: round(median(rates.get(name) as number[]), 0), unit: 'calls/s' });
      rows.push({ name: `${name}: ns per call`, value: round(ns(name), 1), unit: 'ns' });
    }
    const goals = [];
    for (const kind of ['async', 'sync']) {
      const bare = ns(`bare ${kind}`);
      const over = (who: string) => ns(`${who} ${kind}`) - bare;
      const ours = over('ours');
      const peers: Array<[string, number]> = [
        ['cockatiel', over('cockatiel')],
        ['opossum', over('opossum')],
      ];
      for (const [who, o] of peers) rows.push({ name: `${who} ${kind}: overhead per call`, value: round(o, 1), unit: 'ns' });
      rows.push({ name: `ours ${kind}: overhead per call`, value: round(ours, 1), unit: 'ns' });
      const [peerName, peer] = peers[0][1] <= peers[1][1] ? peers[0] : peers[1];
      // An overhead at or below the timing noise reads as ~0; floor it at 1 ns so the ratio stays finite and honest.
      goals.push(goalLower(`overhead per ${kind} call (retry + breaker) vs the cheaper peer`, round(Math.max(1, ours), 1), round(peer, 1), peerName, 5));
    }
    rows.push({ name: 'pure core, sync, device-style: ns per call', value: round(1e9 / median(coreRates), 1), unit: 'ns' });
    return { rows, goals };
  },
};

export default suite;
