/**
 * The discovery listener's hot path: checks a datagram's seal (INTERFACES.md: the JSON body, then
 * `,"mac":"<64 lower-case hex>"}`, the MAC being HMAC-SHA256 of the body with `}` in place of the
 * mac member) straight on the received Buffer.
 *
 * WHY NOT node:crypto. On Node 20 every createHmac/createHash call pays for an OpenSSL 3 method
 * lookup and a JS/C++ object pair: about 4-5 us per HMAC of a 230-byte beacon, of which the six
 * SHA-256 compressions are well under one. Here the key pads are hashed ONCE per key (RFC 2104 §2:
 * the first block of the inner and outer hash is the key XOR ipad/opad, the same for every message),
 * so a beacon costs 4 inner compressions and 1 outer, in JIT-compiled code over Int32Arrays, with no
 * allocation and no string made of the bytes. The MAC is compared with the received one in constant
 * time (every word, OR of XORs).
 *
 * Same verdicts as firmware/wire/beacon.ts's open(), in the same order ('size', 'shape', 'mac'),
 * which the tests check on valid, tampered and random datagrams; the JSON checks after the seal
 * are shared code (beacon.ts beaconFrom).
 *
 * Not re-entrant (shared scratch buffers): one verifier per listener, used synchronously.
 */
import { createHash } from 'node:crypto';
import { DATAGRAM_BYTES_MAX } from '../../firmware/wire/beacon.js';

/** FIPS 180-4 §4.2.2, as signed int32. */
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
  0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
  0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
  0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
  0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** FIPS 180-4 §5.3.3. */
const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** `,"mac":"`: the member every sealed datagram ends with, then 64 hex chars and `"}`. */
const MAC_HEAD = Buffer.from(',"mac":"', 'latin1');
const MAC_TAIL_BYTES = 74;
const QUOTE = 0x22;
const BRACE_CLOSE = 0x7d;

/** Lower-case hex digit values; -1 for every other byte (beacon.ts's HEX_RE is /^[0-9a-f]+$/). */
const NIBBLE = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) NIBBLE[0x30 + c] = c;
for (let c = 0; c < 6; c++) NIBBLE[0x61 + c] = 10 + c;

/** Compresses nBlocks 64-byte blocks of m from off into the state h, in place (FIPS 180-4 §6.2.2). */
function compress(h: Int32Array, w: Int32Array, m: Uint8Array, off: number, nBlocks: number): void {
  for (let blk = 0; blk < nBlocks; blk++, off += 64) {
    for (let j = 0; j < 16; j++) {
      const p = off + (j << 2);
      w[j] = (m[p] << 24) | (m[p + 1] << 16) | (m[p + 2] << 8) | m[p + 3];
    }
    for (let j = 16; j < 64; j++) {
      const x = w[j - 15];
      const y = w[j - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      // Every sum folded to int32 at once: V8 then keeps the whole loop in int32 registers.
      w[j] = (((s1 + w[j - 7]) | 0) + ((s0 + w[j - 16]) | 0)) | 0;
    }
    let a = h[0];
    let b = h[1];
    let c = h[2];
    let d = h[3];
    let e = h[4];
    let f = h[5];
    let g = h[6];
    let hh = h[7];
    for (let j = 0; j < 64; j++) {
      const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (((s1 + ch) | 0) + ((hh + ((K[j] + w[j]) | 0)) | 0)) | 0;
      const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0;
    h[1] = (h[1] + b) | 0;
    h[2] = (h[2] + c) | 0;
    h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0;
    h[5] = (h[5] + f) | 0;
    h[6] = (h[6] + g) | 0;
    h[7] = (h[7] + hh) | 0;
  }
}

/** The state after one block of key XOR pad (RFC 2104 §2). */
function padState(key: Buffer, pad: number, w: Int32Array): Int32Array {
  const block = Buffer.alloc(64);
  for (let i = 0; i < 64; i++) block[i] = (i < key.length ? key[i] : 0) ^ pad;
  const h = Int32Array.from(IV);
  compress(h, w, block, 0, 1);
  return h;
}

export class DatagramVerifier {
  private readonly inner: Int32Array;
  private readonly outer: Int32Array;
  private readonly h = new Int32Array(8);
  private readonly w = new Int32Array(64);
  /** The last partial block(s) of the inner message with its padding; then the outer block. */
  private readonly tail = new Uint8Array(128);
  private readonly want = new Int32Array(8);

  constructor(keyHex: string) {
    if (!/^([0-9a-fA-F]{2})+$/.test(keyHex)) throw new Error('fleet key must be hex');
    let key = Buffer.from(keyHex, 'hex');
    // RFC 2104 §2: a key longer than the block is hashed first.
    if (key.length > 64) key = createHash('sha256').update(key).digest();
    this.inner = padState(key, 0x36, this.w);
    this.outer = padState(key, 0x5c, this.w);
  }

  /**
   * null when buf is a sealed datagram whose MAC holds; else why not: 'size' (over 512 bytes),
   * 'shape' (no `,"mac":"<64 lower-case hex>"}` tail), 'mac'. When null, the body is
   * buf[0, bodyEnd(buf)) followed by `}`.
   */
  check(buf: Uint8Array): string | null {
    const len = buf.length;
    if (len > DATAGRAM_BYTES_MAX) return 'size';
    const n = len - MAC_TAIL_BYTES;
    if (n < 2 || buf[len - 2] !== QUOTE || buf[len - 1] !== BRACE_CLOSE) return 'shape';
    for (let i = 0; i < 8; i++) if (buf[n + i] !== MAC_HEAD[i]) return 'shape';
    const want = this.want;
    for (let i = 0, p = n + 8; i < 8; i++) {
      let word = 0;
      for (let j = 0; j < 8; j++, p++) {
        const v = NIBBLE[buf[p]];
        if (v < 0) return 'shape';
        word = (word << 4) | v;
      }
      want[i] = word;
    }
    // Inner hash: the key pad block is in `inner`; the message is buf[0, n) + '}' (n + 1 bytes).
    const h = this.h;
    const w = this.w;
    const tail = this.tail;
    h.set(this.inner);
    const msgLen = n + 1;
    const full = n >> 6;
    compress(h, w, buf, 0, full);
    let t = 0;
    for (let p = full << 6; p < n; p++) tail[t++] = buf[p];
    tail[t++] = BRACE_CLOSE;
    tail[t++] = 0x80;
    // FIPS 180-4 §5.1.1: zeros up to 56 mod 64, then the length in bits (of pad block + message).
    const blocks = t + 8 > 64 ? 2 : 1;
    const end = blocks << 6;
    while (t < end - 8) tail[t++] = 0;
    writeBitLength(tail, end, 64 + msgLen);
    compress(h, w, tail, 0, blocks);
    // Outer hash: one block, the inner digest, padding, length 64 + 32 bytes.
    for (let i = 0; i < 8; i++) {
      const v = h[i];
      tail[i << 2] = v >>> 24;
      tail[(i << 2) + 1] = (v >>> 16) & 255;
      tail[(i << 2) + 2] = (v >>> 8) & 255;
      tail[(i << 2) + 3] = v & 255;
    }
    tail[32] = 0x80;
    for (let i = 33; i < 56; i++) tail[i] = 0;
    writeBitLength(tail, 64, 96);
    h.set(this.outer);
    compress(h, w, tail, 0, 1);
    // Constant time over the 8 words: no early exit on the first difference.
    let diff = 0;
    for (let i = 0; i < 8; i++) diff |= h[i] ^ want[i];
    return diff === 0 ? null : 'mac';
  }

  /** Where the body ends (the `,"mac":…` member starts) in a datagram check() accepted. */
  static bodyEnd(buf: Uint8Array): number {
    return buf.length - MAC_TAIL_BYTES;
  }
}

/** Big-endian 64-bit bit count of `bytes` into the 8 bytes before `end` (lengths here fit 32 bits). */
function writeBitLength(b: Uint8Array, end: number, bytes: number): void {
  const bits = bytes * 8;
  b[end - 8] = 0;
  b[end - 7] = 0;
  b[end - 6] = 0;
  b[end - 5] = 0;
  b[end - 4] = bits >>> 24;
  b[end - 3] = (bits >>> 16) & 255;
  b[end - 2] = (bits >>> 8) & 255;
  b[end - 1] = bits & 255;
}
