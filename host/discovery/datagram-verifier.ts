/**
 * The discovery listener's hot path: checks a datagram's seal (INTERFACES.md: the JSON body, then
 * `,"mac":"<64 lower-case hex>"}`, the MAC being HMAC-SHA256 of the body with `}` in place of the
 * mac member) straight on the received Buffer.
 *
 * WHY NOT node:crypto. On Node 20 every createHmac/createHash call pays for an OpenSSL 3 method
 * lookup and a JS/C++ object pair: about 4-5 us per HMAC of a 230-byte beacon, of which the six
 * SHA-256 compressions are well under one. Here the key pads are hashed ONCE per key (RFC 2104 §2:
 * the first block of the inner and outer hash is the key XOR ipad/opad, the same for every message),
 * so a beacon costs 3-4 inner compressions and 1 outer, in WebAssembly (./sha256-wasm.ts: two calls
 * per datagram), with no allocation and no string made of the bytes. The MAC is compared with the
 * received one in constant time (every word, OR of XORs).
 *
 * Same verdicts as firmware/wire/beacon.ts's open(), in the same order ('size', 'shape', 'mac'),
 * which the tests check on valid, tampered and random datagrams; the JSON checks after the seal
 * are shared code (beacon.ts beaconFromBody).
 *
 * Not re-entrant (shared scratch buffers): one verifier per listener, used synchronously.
 */
import { createHash } from 'node:crypto';
import { DATAGRAM_BYTES_MAX } from '../../firmware/wire/beacon.js';
import { MSG_AT, SHA256_IV, Sha256Wasm } from './sha256-wasm.js';

/** `,"mac":"`: the member every sealed datagram ends with, then 64 hex chars and `"}`. */
const MAC_HEAD = Buffer.from(',"mac":"', 'latin1');
const MAC_TAIL_BYTES = 74;
const QUOTE = 0x22;
const BRACE_CLOSE = 0x7d;

/** Lower-case hex digit values; -1 for every other byte (beacon.ts's HEX_RE is /^[0-9a-f]+$/). */
const NIBBLE = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) NIBBLE[0x30 + c] = c;
for (let c = 0; c < 6; c++) NIBBLE[0x61 + c] = 10 + c;

/** The state after one block of key XOR pad (RFC 2104 §2). */
function padState(sha: Sha256Wasm, key: Uint8Array, pad: number): Int32Array {
  sha.state.set(SHA256_IV);
  for (let i = 0; i < 64; i++) sha.mem[MSG_AT + i] = (i < key.length ? key[i] : 0) ^ pad;
  sha.compress(MSG_AT, 1);
  return Int32Array.from(sha.state);
}

export class DatagramVerifier {
  private readonly sha = new Sha256Wasm();
  private readonly inner: Int32Array;
  private readonly outer: Int32Array;
  private readonly want = new Int32Array(8);

  constructor(keyHex: string) {
    if (!/^([0-9a-fA-F]{2})+$/.test(keyHex)) throw new Error('fleet key must be hex');
    let key: Uint8Array = Buffer.from(keyHex, 'hex');
    // RFC 2104 §2: a key longer than the block is hashed first.
    if (key.length > 64) key = createHash('sha256').update(key).digest();
    this.inner = padState(this.sha, key, 0x36);
    this.outer = padState(this.sha, key, 0x5c);
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
    const { mem, state, view, compress } = this.sha;
    // Inner hash: the key pad block is in `inner`; the message is buf[0, n) + '}', then the
    // padding of FIPS 180-4 §5.1.1 (0x80, zeros to 56 mod 64, the bit length of pad + message).
    // The whole datagram is copied (no subarray object); what follows the body is overwritten
    // by the brace and the padding, or lies past the last block and is never hashed.
    mem.set(buf, MSG_AT);
    mem[MSG_AT + n] = BRACE_CLOSE;
    mem[MSG_AT + n + 1] = 0x80;
    const blocks = (n + 1 + 9 + 63) >> 6;
    const end = MSG_AT + (blocks << 6);
    mem.fill(0, MSG_AT + n + 2, end - 4);
    view.setUint32(end - 4, (64 + n + 1) * 8);
    state.set(this.inner);
    compress(MSG_AT, blocks);
    // Outer hash: one block, the inner digest (big-endian words), padding, length 64 + 32 bytes.
    for (let i = 0; i < 8; i++) view.setInt32(MSG_AT + 4 * i, state[i]);
    mem[MSG_AT + 32] = 0x80;
    mem.fill(0, MSG_AT + 33, MSG_AT + 60);
    view.setUint32(MSG_AT + 60, 96 * 8);
    state.set(this.outer);
    compress(MSG_AT, 1);
    // Constant time over the 8 words: no early exit on the first difference.
    let diff = 0;
    for (let i = 0; i < 8; i++) diff |= state[i] ^ want[i];
    return diff === 0 ? null : 'mac';
  }

  /** Where the body ends (the `,"mac":…` member starts) in a datagram check() accepted. */
  static bodyEnd(buf: Uint8Array): number {
    return buf.length - MAC_TAIL_BYTES;
  }
}
