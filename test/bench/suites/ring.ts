/**
 * Hash ring: balance, movement and lookup rate of ours (slots mode, and the hashring-compatible
 * ketama mode) side by side with `hashring` (ketama, md5, default options) and
 * `consistent-hash` (160 control points per node), over one key set in one run.
 */
import { createRequire } from 'node:module';
import { SeededRng } from '../../../firmware/core/rng.js';
import { DEFAULT_SLOT_BITS, HashRing, type RingMember } from '../../../host/ring/hash-ring.js';
import { keyLoad, movedFraction, shareLoad } from '../../../host/ring/ring-stats.js';
import { goalHigher, goalLower, opsPerSec, round, type BenchGoal, type BenchRow, type Suite } from '../harness.js';

/** `hashring` 3.x, as far as used here (the package ships no types). */
interface HashringPeer {
  get(key: string): string;
}
type HashringCtor = new (servers: Record<string, number>, algorithm?: string) => HashringPeer;
/** `consistent-hash` 1.x. */
interface ConsistentHashPeer {
  add(node: string): ConsistentHashPeer;
  get(name: string): string;
}
type ConsistentHashCtor = new (options: { weight: number }) => ConsistentHashPeer;

const requirePeer = createRequire(import.meta.url);
const Hashring = requirePeer('hashring') as HashringCtor;
const ConsistentHash = requirePeer('consistent-hash') as ConsistentHashCtor;

/** Keys placed for balance and movement, and looked up for the rates; 10,000 per owner at 10 owners. */
const KEY_COUNT = 100_000; // a multiple of BATCH
/** Lookups per timed batch: one batch of the slowest peer stays well under 100 ms. */
const BATCH = 5_000;
/** Each contender is timed ROUNDS times, interleaved, for ROUND_MS each; the median counts. */
const ROUNDS = 5;
const ROUND_MS = 300;
/** consistent-hash control points per node, as in the figures. */
const CH_POINTS = 160;

function deviceKeys(count: number, seed: number): string[] {
  const rng = new SeededRng(seed);
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const a = rng.nextU32().toString(16).padStart(8, '0');
    const b = rng.nextU32().toString(16).padStart(8, '0').slice(0, 4);
    keys.push('esp32-' + a + b);
  }
  return keys;
}

function companions(n: number): RingMember[] {
  const out: RingMember[] = [];
  for (let i = 0; i < n; i++) out.push({ id: `companion-${i}:7000`, weight: 1 });
  return out;
}

/** Build-time figures: the best of TIMING_REPS runs, so one-off JIT warm-up does not count. */
const TIMING_REPS = 3;

function bestMs<T>(fn: () => T): { ms: number; value: T } {
  let best = Infinity;
  let value = fn();
  for (let i = 0; i < TIMING_REPS; i++) {
    const t0 = process.hrtime.bigint();
    value = fn();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms < best) best = ms;
  }
  return { ms: best, value };
}

/** max/mean and std-dev/mean of key counts for any owner function over `keys`. */
function peerBalance(owner: (key: string) => string, keys: readonly string[], n: number): { max: number; sd: number } {
  const counts = new Map<string, number>();
  for (const k of keys) {
    const o = owner(k);
    counts.set(o, (counts.get(o) ?? 0) + 1);
  }
  const mean = keys.length / n;
  let max = 0;
  let sq = 0;
  for (const c of counts.values()) {
    if (c > max) max = c;
    sq += (c - mean) * (c - mean);
  }
  sq += (n - counts.size) * mean * mean;
  return { max: max / mean, sd: Math.sqrt(sq / n) / mean };
}

/*
 * One batch function per contender, each its own function literal, so every lookup call site
 * sees one receiver type and no contender pays for another's inline-cache misses. Each batch
 * walks the same key list from where its previous batch stopped.
 */
let sink = 0;

function ringBatch(ring: HashRing, keys: readonly string[]): () => number {
  let at = 0;
  return () => {
    const end = at + BATCH;
    for (let i = at; i < end; i++) sink += ring.owner(keys[i]).length;
    at = end >= keys.length ? 0 : end;
    return BATCH;
  };
}

function replicaBatch(ring: HashRing, keys: readonly string[], r: number): () => number {
  let at = 0;
  return () => {
    const end = at + BATCH;
    for (let i = at; i < end; i++) sink += ring.replicas(keys[i], r).length;
    at = end >= keys.length ? 0 : end;
    return BATCH;
  };
}

function hashringBatch(peer: HashringPeer, keys: readonly string[]): () => number {
  let at = 0;
  return () => {
    const end = at + BATCH;
    for (let i = at; i < end; i++) sink += peer.get(keys[i]).length;
    at = end >= keys.length ? 0 : end;
    return BATCH;
  };
}

function consistentHashBatch(peer: ConsistentHashPeer, keys: readonly string[]): () => number {
  let at = 0;
  return () => {
    const end = at + BATCH;
    for (let i = at; i < end; i++) sink += peer.get(keys[i]).length;
    at = end >= keys.length ? 0 : end;
    return BATCH;
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

export default {
  name: 'ring',
  async run() {
    const rows: BenchRow[] = [];
    const goals: BenchGoal[] = [];
    const keys = deviceKeys(KEY_COUNT, 0x5eed);
    const r3 = (x: number) => round(x, 4);

    rows.push({ name: 'slots per ring (default)', value: 2 ** DEFAULT_SLOT_BITS, unit: 'slots' });
    rows.push({ name: 'slot table memory', value: (2 ** DEFAULT_SLOT_BITS * 2) / 1024, unit: 'KiB' });

    let ourMaxAt10 = 0;
    let chMaxAt10 = 0;
    for (const n of [10, 100]) {
      const members = companions(n);
      const built = bestMs(() => HashRing.create(members));
      const ours = built.value;
      rows.push({ name: `build ms, ${n} owners`, value: round(built.ms, 1), unit: 'ms' });
      rows.push({ name: `arcs (effective points), ${n} owners`, value: ours.arcCount, unit: 'arcs' });

      const load = keyLoad(ours, keys);
      const exact = shareLoad(ours);
      if (n === 10) ourMaxAt10 = load.maxOverMean;
      rows.push({ name: `ours max/mean, ${n} owners (${KEY_COUNT / 1000}k keys)`, value: r3(load.maxOverMean), unit: 'x' });
      rows.push({ name: `ours std-dev/mean, ${n} owners`, value: r3(load.stdDevOverMean), unit: 'x' });
      rows.push({ name: `ours max/mean, ${n} owners (exact shares)`, value: r3(exact.maxOverMean), unit: 'x' });

      const ketama = HashRing.create(members, { mode: 'ketama' });
      const kl = keyLoad(ketama, keys);
      rows.push({ name: `ketama/hashring max/mean, ${n} owners`, value: r3(kl.maxOverMean), unit: 'x' });
      rows.push({ name: `ketama/hashring std-dev/mean, ${n} owners`, value: r3(kl.stdDevOverMean), unit: 'x' });

      const ch = new ConsistentHash({ weight: CH_POINTS });
      for (const m of members) ch.add(m.id);
      const cb = peerBalance((k) => ch.get(k), keys, n);
      if (n === 10) chMaxAt10 = cb.max;
      rows.push({ name: `consistent-hash max/mean, ${n} owners`, value: r3(cb.max), unit: 'x' });
      rows.push({ name: `consistent-hash std-dev/mean, ${n} owners`, value: r3(cb.sd), unit: 'x' });

      const grown = bestMs(() => ours.with({ id: 'newcomer:7000', weight: 1 }));
      const shrunk = bestMs(() => ours.without(members[n >> 1].id));
      rows.push({ name: `with() ms, ${n} owners`, value: round(grown.ms, 2), unit: 'ms' });
      rows.push({ name: `without() ms, ${n} owners`, value: round(shrunk.ms, 2), unit: 'ms' });
      const movedAdd = movedFraction(ours, grown.value, keys);
      const movedRemove = movedFraction(ours, shrunk.value, keys);
      rows.push({ name: `keys moved on add, ${n} -> ${n + 1} owners`, value: r3(movedAdd), unit: 'fraction' });
      rows.push({ name: `  ideal 1/(n+1)`, value: r3(1 / (n + 1)), unit: 'fraction' });
      rows.push({ name: `  moved/ideal on add, ${n} owners`, value: r3(movedAdd * (n + 1)), unit: 'x' });
      rows.push({ name: `keys moved on remove, ${n} -> ${n - 1} owners`, value: r3(movedRemove), unit: 'fraction' });
      rows.push({ name: `  ideal 1/n`, value: r3(1 / n), unit: 'fraction' });
      rows.push({ name: `  moved/ideal on remove, ${n} owners`, value: r3(movedRemove * n), unit: 'x' });
      const kg = ketama.with({ id: 'newcomer:7000', weight: 1 });
      rows.push({ name: `ketama keys moved on add, ${n} owners`, value: r3(movedFraction(ketama, kg, keys)), unit: 'fraction' });
    }
    rows.push({ name: 'ours max/mean at 10 owners <= 1.05', value: ourMaxAt10 <= 1.05 ? 1 : 0, unit: 'yes=1' });

    // What plain random vnodes would need for the same balance (same hashing as hashring).
    for (const vnodes of [40, 250, 500]) {
      const plain = HashRing.create(companions(10), { mode: 'ketama', vnodes });
      rows.push({
        name: `plain vnodes, ${vnodes * 4} points/owner: max/mean, 10 owners`,
        value: r3(keyLoad(plain, keys).maxOverMean),
        unit: 'x',
      });
    }

    // Lookup rate, 10 owners, same keys, interleaved rounds.
    const members = companions(10);
    const ours = HashRing.create(members);
    const ketama = HashRing.create(members, { mode: 'ketama' });
    const servers: Record<string, number> = {};
    for (const m of members) servers[m.id] = 1;
    const hashring = new Hashring(servers, 'md5');
    const ch = new ConsistentHash({ weight: CH_POINTS });
    for (const m of members) ch.add(m.id);
    const contenders: Array<[string, () => number]> = [
      ['ours', ringBatch(ours, keys)],
      ['ours-ketama', ringBatch(ketama, keys)],
      ['hashring', hashringBatch(hashring, keys)],
      ['consistent-hash', consistentHashBatch(ch, keys)],
    ];
    const rates = new Map<string, number[]>();
    for (const [name] of contenders) rates.set(name, []);
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, batch] of contenders) rates.get(name)!.push(opsPerSec(batch, ROUND_MS, 1e6));
    }
    const rate = (name: string) => Math.round(median(rates.get(name)!));
    for (const [name] of contenders) rows.push({ name: `lookups/s ${name}, 10 owners`, value: rate(name), unit: 'ops/s' });
    rows.push({
      name: 'lookups/s ours, 100 owners',
      value: Math.round(opsPerSec(ringBatch(HashRing.create(companions(100)), keys), ROUND_MS * 2, 1e6)),
      unit: 'ops/s',
    });
    rows.push({
      name: 'replicas(key, 3)/s ours, 10 owners',
      value: Math.round(opsPerSec(replicaBatch(ours, keys, 3), ROUND_MS * 2, 1e6)),
      unit: 'ops/s',
    });
    if (sink === 0) throw new Error('ring bench: lookups returned nothing');

    goals.push(goalHigher('lookups/s, 10 owners (ours at max/mean <= 1.05)', rate('ours'), rate('consistent-hash'), `consistent-hash (${CH_POINTS} points)`, 1.0));
    goals.push(goalHigher('ketama-compatible lookups/s, 10 owners', rate('ours-ketama'), rate('hashring'), 'hashring', 2.0));
    goals.push(goalLower('max/mean at 10 owners (lower is better)', round(ourMaxAt10, 4), round(chMaxAt10, 4), `consistent-hash (${CH_POINTS} points)`, 1.0));
    return { rows, goals };
  },
} satisfies Suite;
