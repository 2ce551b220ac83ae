/**
 * The discovery listener's hot path: checks a datagram's seal (INTERFACES.md: the JSON body, then
 * `,"mac":"<64 lower-case hex>"}`, the MAC being HMAC-SHA256 of the body with `}` in place of the
 * mac member) straight on the received Buffer, up to four datagrams per call.
 *
 * WHY NOT node:crypto. On Node 20 every createHmac/createHash call pays for an OpenSSL 3 method
 * lookup and a JS/C++ object pair: about 4-5 us per HMAC of a 230-byte beacon, of which the
 * SHA-256 compressions are well under one. Here the key pads are hashed ONCE per key (RFC 2104 §2:
 * the first block of the inner and outer hash is the key XOR ipad/opad, the same for every
 * message), so a beacon costs three inner compressions and one outer, and the whole check (tail,
 * hex, padding, both hashes, the constant-time compare) is one WebAssembly call for up to four
 * datagrams hashed side by side (./seal-wasm.ts), with no allocation and no string made of the
 * bytes. checkAll() is what the listener uses on each event-loop turn's datagrams.
 *
 * Same verdicts as firmware/wire/beacon.ts's open(), in the same order ('size', 'shape', 'mac'),
 * which the tests check on valid, tampered and random datagrams; the JSON checks after the seal
 * are shared code (beacon.ts beaconFromBody) or agree with it (./beacon-reader.ts).
 *
 * Not re-entrant (shared scratch memory): one verifier per listener, used synchronously.
 */
import { createHash } from 'node:crypto';
import { DATAGRAM_BYTES_MAX } from '../../firmware/wire/beacon.js';
import { LANES, LEN_AT, RES_AT, SealWasm, SLOT_AT, SLOT_BYTES } from './seal-wasm.js';
import { MSG_AT, SHA256_IV, Sha256Wasm } from './sha256-wasm.js';

const MAC_TAIL_BYTES = 74;
/** seal-wasm.ts verdict codes to reasons. */
const VERDICTS: readonly (string | null)[] = [null, 'shape', 'mac'];

/** The state after one block of key XOR pad (RFC 2104 §2). */
function padState(sha: Sha256Wasm, key: Uint8Array, pad: number): Int32Array {
  sha.state.set(SHA256_IV);
  for (let i = 0; i < 64; i++) sha.mem[MSG_AT + i] = (i < key.length ? key[i] : 0) ^ pad;
  sha.compress(MSG_AT, 1);
  return Int32Array.from(sha.state);
}

export class DatagramVerifier {
  private readonly seal: SealWasm;
  /** Which datagram each lane holds, in the call being made. */
  private readonly lane = new Int32Array(LANES);

  constructor(keyHex: string) {
    if (!/^([0-9a-fA-F]{2})+$/.test(keyHex)) throw new Error('fleet key must be hex');
    let key: Uint8Array = Buffer.from(keyHex, 'hex');
    // RFC 2104 §2: a key longer than the block is hashed first.
    if (key.length > 64) key = createHash('sha256').update(key).digest();
    const sha = new Sha256Wasm();
    this.seal = new SealWasm(padState(sha, key, 0x36), padState(sha, key, 0x5c));
  }

  /**
   * null when buf is a sealed datagram whose MAC holds; else why not: 'size' (over 512 bytes),
   * 'shape' (no `,"mac":"<64 lower-case hex>"}` tail), 'mac'. When null, the body is
   * buf[0, bodyEnd(buf)) followed by `}`.
   */
  check(buf: Uint8Array): string | null {
    if (buf.length > DATAGRAM_BYTES_MAX) return 'size';
    const { mem, words, check } = this.seal;
    mem.set(buf, SLOT_AT);
    words[LEN_AT >> 2] = buf.length;
    check(1);
    return VERDICTS[words[RES_AT >> 2]];
  }

  /** check() of msgs[0, n) into out[0, n), four at a time. */
  checkAll(msgs: readonly Uint8Array[], n: number, out: (string | null)[]): void {
    const { mem, words, check } = this.seal;
    const lane = this.lane;
    let i = 0;
    while (i < n) {
      let lanes = 0;
      for (; i < n && lanes < LANES; i++) {
        const m = msgs[i];
        if (m.length > DATAGRAM_BYTES_MAX) {
          out[i] = 'size';
          continue;
        }
        mem.set(m, SLOT_AT + lanes * SLOT_BYTES);
        words[(LEN_AT >> 2) + lanes] = m.length;
        lane[lanes++] = i;
      }
      if (lanes === 0) continue;
      check(lanes);
      for (let l = 0; l < lanes; l++) out[lane[l]] = VERDICTS[words[(RES_AT >> 2) + l]];
    }
  }

  /** Where the body ends (the `,"mac":…` member starts) in a datagram check() accepted. */
  static bodyEnd(buf: Uint8Array): number {
    return buf.length - MAC_TAIL_BYTES;
  }
}
