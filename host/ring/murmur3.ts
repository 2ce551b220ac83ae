/**
 * MurmurHash3 x86_32 (Austin Appleby, public domain; reference `MurmurHash3_x86_32` in smhasher),
 * the key hash and the placement hash of the hash ring.
 *
 * Strings are hashed as their UTF-8 bytes, so any other implementation that feeds UTF-8 to the
 * reference function gets the same value. The fast path reads four UTF-16 code units per block:
 * while every code unit is below 0x80 a code unit IS its UTF-8 byte, so the value is the same.
 * The first code unit at or above 0x80 sends the whole string through `Buffer.from(key, 'utf8')`
 * (lone surrogates become EF BF BD there, as in TextEncoder). Device ids are ASCII, so the
 * fallback costs nothing on the hot path.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** murmur3_32 of the UTF-8 bytes of `key`, as an unsigned 32-bit integer. */
export function murmur3(key: string, seed = 0): number {
  const len = key.length;
  const end = len & ~3;
  let h = seed | 0;
  let i = 0;
  for (; i < end; i += 4) {
    const c0 = key.charCodeAt(i);
    const c1 = key.charCodeAt(i + 1);
    const c2 = key.charCodeAt(i + 2);
    const c3 = key.charCodeAt(i + 3);
    if ((c0 | c1 | c2 | c3) > 0x7f) return murmur3Bytes(Buffer.from(key, 'utf8'), seed);
    let k = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = len - end;
  if (rest > 0) {
    let k = 0;
    let any = 0;
    for (let j = rest - 1; j >= 0; j--) {
      const c = key.charCodeAt(end + j);
      any |= c;
      k = (k << 8) | c;
    }
    if (any > 0x7f) return murmur3Bytes(Buffer.from(key, 'utf8'), seed);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  return fmix32(h ^ len);
}

/** murmur3_32 of raw bytes. */
export function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  const len = bytes.length;
  const end = len & ~3;
  let h = seed | 0;
  for (let i = 0; i < end; i += 4) {
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = len - end;
  if (rest > 0) {
    let k = 0;
    for (let j = rest - 1; j >= 0; j--) k = (k << 8) | bytes[end + j];
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  return fmix32(h ^ len);
}

/**
 * murmur3_32 of the four little-endian bytes of the unsigned 32-bit `word`: the same value as
 * `murmur3Bytes(uint32le(word), seed)`, without building the bytes. The ring's placement hash.
 */
export function murmur3Word(word: number, seed: number): number {
  let k = Math.imul(word | 0, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  let h = (seed | 0) ^ k;
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  return fmix32(h ^ 4);
}

/**
 * murmur3_32 of `count` 32-bit words taken little-endian (one block each): a fingerprint over
 * number tables that does not depend on the platform's byte order.
 */
export function murmur3Words(words: ArrayLike<number>, count: number, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < count; i++) {
    let k = Math.imul(words[i] | 0, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  return fmix32(h ^ ((count * 4) | 0));
}

/** The final avalanche of murmur3 (fmix32); returns an unsigned 32-bit integer. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
