/**
 * The default ring: 2^bits equal arcs ("slots") of the 32-bit hash circle, each owned by the
 * member that wins a weighted rendezvous draw for it.
 *
 * Why slots. A ring of random virtual nodes balances slowly: an owner's share is a sum of
 * random arc lengths, so its relative spread is about 1/sqrt(points per owner), and holding the
 * busiest of 10 owners within 5 % of the mean needs thousands of points per owner. Equal-sized
 * arcs remove the arc-length noise (the "Q equal partitions, Q/S tokens per node" strategy of
 * Dynamo, SOSP 2007, section 6.2): an owner's share is then only its slot count, binomial with
 * relative spread sqrt((1 - p) / (S p)) for S slots and share p.
 *
 * Why rendezvous inside each slot. Slot s goes to the member with the smallest
 * key(s, m) = -ln(u) / weight(m), u = (murmur3Word(s, seed(m)) + 0.5) / 2^32, ties to the smaller
 * id (weighted rendezvous / "logarithmic method", Schindelhauer and Schomaker 2005; Ceph's
 * straw2 uses the same draw). Each slot's winner depends only on the members present, so:
 * - adding m moves exactly the slots m wins: a fraction weight(m) / total weight, 1/(n+1) at
 *   equal weights, all of them TO m;
 * - removing m moves exactly m's slots, about 1/n, each to that slot's runner-up;
 * - every process computes the same table from the same members, in any order.
 * With equal weights the draw is compared on the integer score directly (ln is monotonic, so
 * the winner is the same and no floating point is involved). With unequal weights the winner
 * depends on Math.log; V8 computes it with its fdlibm port on every platform, and the ring's
 * fingerprint (see hash-ring.ts) catches a process that ever computes a different table.
 */
import { murmur3, murmur3Word } from './murmur3.js';

/** Seed of the placement hash, distinct from the key hash (seed 0) so a member id never lines up with a key. */
export const PLACEMENT_SEED = 0x52494e47;

/** Members as the table builders see them: parallel arrays, owner indices are array positions. */
export interface SlotMembers {
  ids: readonly string[];
  weights: readonly number[];
  /** murmur3(id, PLACEMENT_SEED) per member. */
  seeds: Int32Array;
}

export function placementSeed(id: string): number {
  return murmur3(id, PLACEMENT_SEED) | 0;
}

const TWO_POW_M32 = 1 / 4294967296;

/** The rendezvous key of a score for a weight: smaller wins. */
function drawKey(score: number, weight: number): number {
  return -Math.log((score + 0.5) * TWO_POW_M32) / weight;
}

function allEqual(weights: readonly number[]): boolean {
  for (let i = 1; i < weights.length; i++) if (weights[i] !== weights[0]) return false;
  return true;
}

/** Member indices ordered by id (code-unit order): the tie-break order. */
function idOrder(ids: readonly string[]): number[] {
  const order: number[] = [];
  for (let i = 0; i < ids.length; i++) order.push(i);
  order.sort((a, b) => (ids[a] < ids[b] ? -1 : ids[a] > ids[b] ? 1 : 0));
  return order;
}

/**
 * Builds the whole table: slot -> member index. Member-major loops (one pass over the slots per
 * member) keep the inner loop small and the best-so-far arrays hot. Cost: 2^bits * n placement
 * hashes (plus as many Math.log calls when weights differ).
 */
export function buildSlotTable(m: SlotMembers, bits: number): Uint16Array {
  const size = 1 << bits;
  const table = new Uint16Array(size);
  const order = idOrder(m.ids);
  const seeds = m.seeds;
  if (allEqual(m.weights)) {
    const best = new Uint32Array(size);
    const first = order[0];
    const seed0 = seeds[first];
    for (let s = 0; s < size; s++) best[s] = murmur3Word(s, seed0);
    table.fill(first);
    // Strict '>' in ascending id order: on an equal score the smaller id, seen first, keeps the slot.
    for (let j = 1; j < order.length; j++) {
      const idx = order[j];
      const seed = seeds[idx];
      for (let s = 0; s < size; s++) {
        const sc = murmur3Word(s, seed);
        if (sc > best[s]) {
          best[s] = sc;
          table[s] = idx;
        }
      }
    }
    return table;
  }
  const best = new Float64Array(size);
  const first = order[0];
  const w0 = m.weights[first];
  const seed0 = seeds[first];
  for (let s = 0; s < size; s++) best[s] = drawKey(murmur3Word(s, seed0), w0);
  table.fill(first);
  for (let j = 1; j < order.length; j++) {
    const idx = order[j];
    const seed = seeds[idx];
    const w = m.weights[idx];
    for (let s = 0; s < size; s++) {
      const k = drawKey(murmur3Word(s, seed), w);
      if (k < best[s]) {
        best[s] = k;
        table[s] = idx;
      }
    }
  }
  return table;
}

/**
 * The table after adding member `added` (already present in `m` at that index; every other
 * index unchanged). Only slots the newcomer wins change, so the result equals buildSlotTable(m).
 * Cost: 2 * 2^bits placement hashes, whatever n is.
 */
export function addToSlotTable(prev: Uint16Array, m: SlotMembers, added: number): Uint16Array {
  const table = prev.slice();
  const size = table.length;
  const ids = m.ids;
  const seeds = m.seeds;
  const seedA = seeds[added];
  const idA = ids[added];
  if (allEqual(m.weights)) {
    for (let s = 0; s < size; s++) {
      const cur = table[s];
      const a = murmur3Word(s, seedA);
      const c = murmur3Word(s, seeds[cur]);
      if (a > c || (a === c && idA < ids[cur])) table[s] = added;
    }
    return table;
  }
  const wA = m.weights[added];
  for (let s = 0; s < size; s++) {
    const cur = table[s];
    const a = drawKey(murmur3Word(s, seedA), wA);
    const c = drawKey(murmur3Word(s, seeds[cur]), m.weights[cur]);
    if (a < c || (a === c && idA < ids[cur])) table[s] = added;
  }
  return table;
}

/**
 * The table after removing the member at index `removed` of the previous member list; `m` is
 * the new list (the previous one without that index, order kept). Slots of other members keep
 * their owner (indices above `removed` shift down by one); the removed member's slots go to
 * their runner-up. Cost: about 2^bits placement hashes (its 1/n of the slots times n - 1 members).
 */
export function removeFromSlotTable(prev: Uint16Array, m: SlotMembers, removed: number): Uint16Array {
  const size = prev.length;
  const table = new Uint16Array(size);
  const order = idOrder(m.ids);
  const seeds = m.seeds;
  const equal = allEqual(m.weights);
  for (let s = 0; s < size; s++) {
    const cur = prev[s];
    if (cur !== removed) {
      table[s] = cur > removed ? cur - 1 : cur;
      continue;
    }
    let win = order[0];
    if (equal) {
      let best = murmur3Word(s, seeds[win]);
      for (let j = 1; j < order.length; j++) {
        const sc = murmur3Word(s, seeds[order[j]]);
        if (sc > best) {
          best = sc;
          win = order[j];
        }
      }
    } else {
      let best = drawKey(murmur3Word(s, seeds[win]), m.weights[win]);
      for (let j = 1; j < order.length; j++) {
        const k = drawKey(murmur3Word(s, seeds[order[j]]), m.weights[order[j]]);
        if (k < best) {
          best = k;
          win = order[j];
        }
      }
    }
    table[s] = win;
  }
  return table;
}
