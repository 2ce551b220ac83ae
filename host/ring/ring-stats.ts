/**
 * Balance and movement figures of a ring, shared by the tests, the bench and the cluster's
 * status page. Loads are weight-normalised: a member's load is what it carries divided by what
 * its weight entitles it to, so 1.0 is ideal for every member whatever the weights.
 */
import type { HashRing } from './hash-ring.js';

export interface LoadStats {
  owners: number;
  /** Largest load over the mean load: 1.0 is perfect balance. */
  maxOverMean: number;
  minOverMean: number;
  /** Standard deviation of the loads over their mean (coefficient of variation). */
  stdDevOverMean: number;
}

/** Loads measured by placing `keys`. */
export function keyLoad(ring: HashRing, keys: readonly string[]): LoadStats {
  const index = new Map<string, number>();
  ring.members.forEach((m, i) => index.set(m.id, i));
  const counts = new Float64Array(ring.size);
  for (let i = 0; i < keys.length; i++) counts[index.get(ring.owner(keys[i]))!]++;
  return loadStats(ring, (i) => counts[i] / keys.length);
}

/** Loads from the exact share of the hash space each member owns (no sampling noise). */
export function shareLoad(ring: HashRing): LoadStats {
  const shares = ring.shares();
  return loadStats(ring, (i) => shares.get(ring.members[i].id)!);
}

/** The fraction of `keys` whose owner differs between two rings. */
export function movedFraction(a: HashRing, b: HashRing, keys: readonly string[]): number {
  if (keys.length === 0) return 0;
  let moved = 0;
  for (let i = 0; i < keys.length; i++) if (a.owner(keys[i]) !== b.owner(keys[i])) moved++;
  return moved / keys.length;
}

function loadStats(ring: HashRing, shareOf: (i: number) => number): LoadStats {
  const n = ring.size;
  let total = 0;
  for (const m of ring.members) total += m.weight;
  const loads: number[] = [];
  for (let i = 0; i < n; i++) loads.push(shareOf(i) / (ring.members[i].weight / total));
  let sum = 0;
  let max = -Infinity;
  let min = Infinity;
  for (const l of loads) {
    sum += l;
    if (l > max) max = l;
    if (l < min) min = l;
  }
  const mean = sum / n;
  let sq = 0;
  for (const l of loads) sq += (l - mean) * (l - mean);
  return { owners: n, maxOverMean: max / mean, minOverMean: min / mean, stdDevOverMean: Math.sqrt(sq / n) / mean };
}
