/**
 * The SHA-256 compression function (FIPS 180-4 §6.2.2) as a WebAssembly module, emitted at load
 * by the small encoder below (no toolchain, no binary in the repository): 64 rounds and the
 * message schedule fully unrolled over 26 i32 locals, the round variables renamed instead of
 * moved, K as immediates. In V8 it runs a block in about a third of the time the same function
 * written in JS takes, and a call costs tens of nanoseconds, where a node:crypto HMAC pays
 * microseconds per call before hashing anything (datagram-verifier.ts says why that matters).
 *
 * Memory (one 64 KiB page, exported): bytes 0..31 hold the state H0..H7 as little-endian i32
 * (the Int32Array view `state`), messages go from MSG_AT. compress(ptr, n) hashes n 64-byte
 * blocks at ptr into the state; padding is the caller's.
 *
 * Binary format: WebAssembly Core Specification 1.0, §5 (sections, LEB128, instruction opcodes).
 */
import { IV, K } from '../../firmware/core/sha256.js';
import { compileModule, I32, instantiate, oneFunctionModule, sleb, uleb } from './wasm-emit.js';

/** FIPS 180-4 §4.2.2 and §5.3.3, as signed int32: the firmware's own tables. */
export { IV as SHA256_IV } from '../../firmware/core/sha256.js';

/** Where messages go in the module's memory (after the state, on a cache line). */
export const MSG_AT = 64;
/** Bytes available for a message (one page). */
export const MSG_BYTES_MAX = 65536 - MSG_AT;

// Opcodes, §5.4.
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const I32_CONST = 0x41;
const I32_LOAD = 0x28;
const I32_STORE = 0x36;
const I32_EQZ = 0x45;
const I32_ADD = 0x6a;
const I32_SUB = 0x6b;
const I32_AND = 0x71;
const I32_OR = 0x72;
const I32_XOR = 0x73;
const I32_SHR_U = 0x76;
const I32_ROTL = 0x77;
const I32_ROTR = 0x78;
const BLOCK = 0x02;
const LOOP = 0x03;
const BR = 0x0c;
const BR_IF = 0x0d;
const END = 0x0b;
const VOID = 0x40;

/** The instructions the rounds need, on one lane (i32) or four (i32x4): ./seal-wasm.ts uses both. */
export interface RoundOps {
  get(local: number): void;
  set(local: number): void;
  add(): void;
  xor(): void;
  and(): void;
  or(): void;
  /** Shifts the value on the stack right (logical) by n. */
  shr(n: number): void;
  /** Pushes local rotated right by r. */
  rotr(local: number, r: number): void;
  /** Pushes a round constant. */
  kconst(word: number): void;
}

/**
 * The 64 rounds of FIPS 180-4 §6.2.2, fully unrolled: the working variables a..h in locals
 * V..V+7, renamed instead of moved (at round j the spec's `a` lives in V + ((0 - j) & 7), and so
 * on; 64 is a multiple of 8, so each ends in its own local), the message schedule in the rolling
 * window W..W+15 (expanded in place from round 16), T1 and T2 as scratch.
 */
export function emitRounds(o: RoundOps, V: number, W: number, T1: number, T2: number): void {
  const v = (j: number, i: number) => V + ((i - j + 64) & 7);
  for (let j = 0; j < 64; j++) {
    const a = v(j, 0);
    const b = v(j, 1);
    const cc = v(j, 2);
    const d = v(j, 3);
    const e = v(j, 4);
    const f = v(j, 5);
    const g = v(j, 6);
    const h = v(j, 7);
    const wj = W + (j & 15);
    if (j >= 16) {
      // W[j] = σ1(W[j-2]) + W[j-7] + σ0(W[j-15]) + W[j-16], in the rolling window of 16.
      const w2 = W + ((j - 2) & 15);
      const w7 = W + ((j - 7) & 15);
      const w15 = W + ((j - 15) & 15);
      o.rotr(w2, 17);
      o.rotr(w2, 19);
      o.xor();
      o.get(w2);
      o.shr(10);
      o.xor();
      o.get(w7);
      o.add();
      o.rotr(w15, 7);
      o.rotr(w15, 18);
      o.xor();
      o.get(w15);
      o.shr(3);
      o.xor();
      o.add();
      o.get(wj);
      o.add();
      o.set(wj);
    }
    // T1 = h + Σ1(e) + Ch(e, f, g) + K[j] + W[j]; Ch as g ^ (e & (f ^ g)).
    o.get(h);
    o.rotr(e, 6);
    o.rotr(e, 11);
    o.xor();
    o.rotr(e, 25);
    o.xor();
    o.add();
    o.get(f);
    o.get(g);
    o.xor();
    o.get(e);
    o.and();
    o.get(g);
    o.xor();
    o.add();
    o.kconst(K[j]);
    o.add();
    o.get(wj);
    o.add();
    o.set(T1);
    // T2 = Σ0(a) + Maj(a, b, c); Maj as (a & b) | (c & (a | b)).
    o.rotr(a, 2);
    o.rotr(a, 13);
    o.xor();
    o.rotr(a, 22);
    o.xor();
    o.get(a);
    o.get(b);
    o.and();
    o.get(cc);
    o.get(a);
    o.get(b);
    o.or();
    o.and();
    o.or();
    o.add();
    o.set(T2);
    // d + T1 becomes the next e, T1 + T2 the next a (the old h's local).
    o.get(d);
    o.get(T1);
    o.add();
    o.set(d);
    o.get(T1);
    o.get(T2);
    o.add();
    o.set(h);
  }
}

/** The body of compress(ptr: i32, n: i32). */
function compressBody(): number[] {
  const c: number[] = [];
  const PTR = 0;
  const N = 1;
  const V = 2; // a..h: locals 2..9
  const W = 10; // the schedule's 16 live words: locals 10..25
  const T1 = 26;
  const T2 = 27;
  const get = (i: number) => c.push(LOCAL_GET, ...uleb(i));
  const set = (i: number) => c.push(LOCAL_SET, ...uleb(i));
  const k = (v: number) => c.push(I32_CONST, ...sleb(v));
  const op = (o: number) => c.push(o);
  // align 2^2, offset
  const load = (off: number) => c.push(I32_LOAD, 2, ...uleb(off));
  const store = (off: number) => c.push(I32_STORE, 2, ...uleb(off));
  const rotr = (x: number, r: number) => {
    get(x);
    k(r);
    op(I32_ROTR);
  };
  c.push(BLOCK, VOID, LOOP, VOID);
  get(N);
  op(I32_EQZ);
  c.push(BR_IF, 1);
  for (let i = 0; i < 8; i++) {
    k(0);
    load(4 * i);
    set(V + i);
  }
  // Message words are big-endian (§3.1); memory loads are little-endian: swap bytes,
  // (x rotl 8) & 0x00ff00ff | (x rotr 8) & 0xff00ff00.
  for (let j = 0; j < 16; j++) {
    get(PTR);
    load(4 * j);
    set(T1);
    get(T1);
    k(8);
    op(I32_ROTL);
    k(0x00ff00ff);
    op(I32_AND);
    get(T1);
    k(8);
    op(I32_ROTR);
    k(0xff00ff00);
    op(I32_AND);
    op(I32_OR);
    set(W + j);
  }
  emitRounds(
    {
      get,
      set,
      add: () => op(I32_ADD),
      xor: () => op(I32_XOR),
      and: () => op(I32_AND),
      or: () => op(I32_OR),
      shr: (n) => {
        k(n);
        op(I32_SHR_U);
      },
      rotr,
      kconst: k,
    },
    V,
    W,
    T1,
    T2,
  );
  // 64 rounds are a multiple of 8: every variable is back in its own local.
  for (let i = 0; i < 8; i++) {
    k(0);
    k(0);
    load(4 * i);
    get(V + i);
    op(I32_ADD);
    store(4 * i);
  }
  get(PTR);
  k(64);
  op(I32_ADD);
  set(PTR);
  get(N);
  k(1);
  op(I32_SUB);
  set(N);
  c.push(BR, 0, END, END, END);
  const body = [1, ...uleb(26), I32, ...c];
  return [...uleb(body.length), ...body];
}

/** The module's bytes: compress(ptr: i32, n: i32), one page, both exported. */
export function sha256ModuleBytes(): Uint8Array {
  return oneFunctionModule(2, 'compress', compressBody());
}

let compiled: object | null = null;

/** One instance: its own memory, so users do not share state. */
export class Sha256Wasm {
  /** The module's memory, bytewise. */
  readonly mem: Uint8Array;
  /** H0..H7. */
  readonly state: Int32Array;
  readonly view: DataView;
  /** Hashes n 64-byte blocks at ptr (in mem) into state. */
  readonly compress: (ptr: number, n: number) => void;

  constructor() {
    compiled ??= compileModule(sha256ModuleBytes());
    const { buffer, fn } = instantiate(compiled, 'compress');
    this.mem = new Uint8Array(buffer);
    this.state = new Int32Array(buffer, 0, 8);
    this.view = new DataView(buffer);
    this.compress = fn;
  }

  /** SHA-256 of msg (at most MSG_BYTES_MAX - 72 bytes): for tests and key hashing, not the hot path. */
  digest(msg: Uint8Array): Buffer {
    const padded = Math.ceil((msg.length + 9) / 64) * 64;
    if (padded > MSG_BYTES_MAX) throw new Error('message too long for one page');
    this.state.set(IV);
    this.mem.fill(0, MSG_AT, MSG_AT + padded);
    this.mem.set(msg, MSG_AT);
    this.mem[MSG_AT + msg.length] = 0x80;
    this.view.setUint32(MSG_AT + padded - 4, msg.length * 8);
    this.view.setUint32(MSG_AT + padded - 8, Math.floor((msg.length * 8) / 2 ** 32));
    this.compress(MSG_AT, padded / 64);
    const out = Buffer.alloc(32);
    for (let i = 0; i < 8; i++) out.writeInt32BE(this.state[i], 4 * i);
    return out;
  }
}
