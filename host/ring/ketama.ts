/**
 * Ketama continuum, point for point the one the `hashring` package (3.x, md5, default options)
 * builds, so a ring in ketama mode sends every key to the same member `hashring` does.
 *
 * Placement (hashring `continuum()`): with total weight W over n members and `vnodes` (hashring's
 * 'vnode count', 40 by default), member m gets floor(weight/W * vnodes * n) digests
 * md5(utf8(id + '-' + i)); each 16-byte digest gives 4 points, the little-endian uint32 at bytes
 * 0, 4, 8, 12. Points are sorted ascending with a stable sort, so equal points keep member order,
 * then i, then the digest position, and the first of them wins a lookup.
 * Lookup (hashring `get()`/`find()`): the key's point is the little-endian uint32 of the first 4
 * bytes of md5(utf8(key)); the owner is the first point >= it, wrapping to the first point.
 * The floating-point expression and the summation order of W are kept exactly, because
 * floor() of a product such as 0.1 * 40 * 10 depends on them.
 */
import { hash } from 'node:crypto';

/** hashring's default 'vnode count'. */
export const KETAMA_VNODES = 40;
/** Points per md5 digest, as libketama (python hash_ring uses 3; not supported here). */
export const KETAMA_POINTS_PER_DIGEST = 4;
/**
 * Points are sorted as one exact double point * 2^21 + sequence, so a ring holds at most 2^21
 * points (about 13,000 members at the default 160 points each; clusters are tens of companions).
 */
export const KETAMA_POINTS_MAX = 1 << 21;

/**
 * The key's position on the continuum: md5 of its UTF-8 bytes, first 4 bytes little-endian.
 * The digest is taken as a latin1 string ('binary'): one char per byte and no Buffer to
 * allocate, about 2.5 x faster per lookup than a 'buffer' digest.
 */
export function ketamaPoint(key: string): number {
  const d = hash('md5', key, 'binary');
  return (d.charCodeAt(0) | (d.charCodeAt(1) << 8) | (d.charCodeAt(2) << 16) | (d.charCodeAt(3) << 24)) >>> 0;
}

export interface Continuum {
  /** Sorted ascending; duplicates allowed. */
  points: Uint32Array;
  /** Member index per point. */
  owners: Uint16Array;
}

/** How many digests member `weight` gets, exactly as hashring computes it. */
export function ketamaDigests(weight: number, total: number, n: number, vnodes: number): number {
  const percentage = weight / total;
  return Math.floor(percentage * vnodes * n);
}

export function buildContinuum(ids: readonly string[], weights: readonly number[], vnodes: number): Continuum {
  const n = ids.length;
  let total = 0;
  for (let i = 0; i < n; i++) total = total + weights[i];
  let count = 0;
  const digests: number[] = [];
  for (let m = 0; m < n; m++) {
    const d = ketamaDigests(weights[m], total, n, vnodes);
    digests.push(d);
    count += d * KETAMA_POINTS_PER_DIGEST;
  }
  // floor() can give every member 0 digests at vnodes 1 (e.g. (1/49) * 1 * 49 < 1); hashring then
  // answers undefined for every key, a ring here refuses to exist.
  if (count === 0) throw new RangeError(`hash ring: ketama continuum has no points at vnodes ${vnodes}; raise vnodes`);
  if (count > KETAMA_POINTS_MAX) {
    throw new RangeError(`hash ring: ketama continuum of ${count} points exceeds ${KETAMA_POINTS_MAX}`);
  }
  const packed = new Float64Array(count);
  const ownerOfSeq = new Uint16Array(count);
  let seq = 0;
  for (let m = 0; m < n; m++) {
    const id = ids[m];
    for (let i = 0; i < digests[m]; i++) {
      const x = hash('md5', id + '-' + i, 'buffer');
      for (let j = 0; j < KETAMA_POINTS_PER_DIGEST; j++) {
        packed[seq] = x.readUInt32LE(j * 4) * KETAMA_POINTS_MAX + seq;
        ownerOfSeq[seq] = m;
        seq++;
      }
    }
  }
  // Typed-array sort is numeric; sequence in the low bits makes equal points keep their order.
  packed.sort();
  const points = new Uint32Array(count);
  const owners = new Uint16Array(count);
  for (let k = 0; k < count; k++) {
    const v = packed[k];
    const s = v % KETAMA_POINTS_MAX;
    points[k] = (v - s) / KETAMA_POINTS_MAX;
    owners[k] = ownerOfSeq[s];
  }
  return { points, owners };
}
