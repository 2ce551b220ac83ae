/**
 * The listener's seal check for up to four datagrams at once: one WebAssembly call checks the
 * `,"mac":"<64 hex>"}` tail of each, hashes the four bodies side by side (HMAC-SHA256, one SIMD
 * lane per datagram: multi-buffer hashing) and compares each MAC in constant time.
 *
 * WHY. A flood delivers datagrams in runs of up to 32 per event-loop turn (libuv), and every
 * beacon costs three inner compressions and one outer. SHA-256 has no parallelism within one
 * message, but four messages in the four i32 lanes of a v128 share every instruction, and the
 * tail and hex checks need no JS byte loop (the scalar version, on ./sha256-wasm.ts, did them in
 * JS). Measured on 243-byte beacons: 1.34 us a datagram in runs of 32, against 2.45 us for the
 * scalar check one per call. A lone datagram costs about 4 us (four lanes' work for one), which
 * only a quiet fleet sees, at a few beacons a second.
 *
 * Lanes may differ in length: each lane has its block count, and after block b a lane with fewer
 * blocks keeps its state (a lane mask and bitselect). The outer hash is one block for all.
 *
 * Memory (one 64 KiB page, exported), all little-endian i32:
 *   KEY_AT      inner pad state H0..H7, then outer pad state H0..H7 (RFC 2104 §2, set once per key)
 *   LEN_AT      the four datagram lengths (in); RES_AT the four verdicts (out): 0 sealed,
 *               1 shape (no tail of the form above), 2 mac (the MAC does not hold)
 *   SLOT_AT     four slots of SLOT_BYTES: datagram i is copied to SLOT_AT + i * SLOT_BYTES; the
 *               check writes its padding there (the datagram's tail is overwritten)
 * check(count) checks lanes 0..count-1.
 *
 * Binary format: WebAssembly Core Specification 2.0, §5 (SIMD: the 0xFD prefix, §5.4.8).
 */
import { emitRounds } from './sha256-wasm.js';
import { compileModule, I32, instantiate, oneFunctionModule, sleb, uleb } from './wasm-emit.js';

export const KEY_AT = 64;
export const LEN_AT = 128;
export const RES_AT = 144;
/** The expected MACs, transposed: word k of lane i at WANT_AT + 16 k + 4 i. */
const WANT_AT = 160;
/** Block counts per lane (0: lane not hashed). */
const BLK_AT = 288;
/** Scratch for the final comparison (one v128). */
const DIFF_AT = 304;
export const SLOT_AT = 1024;
/** A datagram (at most 512 bytes) and its padding: at most 512 + 1 + 9 + 63 bytes. */
export const SLOT_BYTES = 1024;
export const LANES = 4;
export const VERDICT_SEALED = 0;
export const VERDICT_SHAPE = 1;
export const VERDICT_MAC = 2;

/** `,"mac":"` as a little-endian i64 (the 8 bytes before the hex). */
const MAC_HEAD_I64 = Buffer.from(',"mac":"', 'latin1').readBigInt64LE(0);
const MAC_TAIL_BYTES = 74;

// Opcodes, §5.4.
const BLOCK = 0x02;
const LOOP = 0x03;
const IF = 0x04;
const END = 0x0b;
const RETURN = 0x0f;
const BR = 0x0c;
const BR_IF = 0x0d;
const SELECT = 0x1b;
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const LOCAL_TEE = 0x22;
const I32_LOAD = 0x28;
const I64_LOAD = 0x29;
const I32_LOAD8_U = 0x2d;
const I32_STORE = 0x36;
const I32_STORE8 = 0x3a;
const I32_CONST = 0x41;
const I64_CONST = 0x42;
const I32_EQZ = 0x45;
const I32_NE = 0x47;
const I32_LT_S = 0x48;
const I32_LT_U = 0x49;
const I32_GT_S = 0x4a;
const I64_NE = 0x52;
const I32_ADD = 0x6a;
const I32_SUB = 0x6b;
const I32_MUL = 0x6c;
const I32_AND = 0x71;
const I32_OR = 0x72;
const I32_SHL = 0x74;
const I32_SHR_U = 0x76;
const I32_ROTL = 0x77;
const I32_ROTR = 0x78;
const VOID = 0x40;
const V128 = 0x7b;
// SIMD, 0xFD prefix.
const V128_LOAD = 0x00;
const V128_STORE = 0x0b;
const V128_CONST = 0x0c;
const I8X16_SHUFFLE = 0x0d;
const I32X4_SPLAT = 0x11;
const I32X4_GT_S = 0x3b;
const V128_AND = 0x4e;
const V128_OR = 0x50;
const V128_XOR = 0x51;
const V128_BITSELECT = 0x52;
const I32X4_SHL = 0xab;
const I32X4_SHR_U = 0xad;
const I32X4_ADD = 0xae;

// i8x16.shuffle patterns (bytes 0-15 from the first operand, 16-31 from the second).
/** (a.w0, b.w0, a.w1, b.w1), each word byte-swapped (big-endian message words). */
const WORDS_LO_BSWAP = [3, 2, 1, 0, 19, 18, 17, 16, 7, 6, 5, 4, 23, 22, 21, 20];
/** (a.w2, b.w2, a.w3, b.w3), each word byte-swapped. */
const WORDS_HI_BSWAP = [11, 10, 9, 8, 27, 26, 25, 24, 15, 14, 13, 12, 31, 30, 29, 28];
/** (a.d0, b.d0): the low 64-bit halves. */
const HALVES_LO = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
/** (a.d1, b.d1): the high 64-bit halves. */
const HALVES_HI = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];

/** The body of check(count: i32). */
function checkBody(): number[] {
  const c: number[] = [];
  // Parameters and locals. i32: 0 count (param), then:
  const COUNT = 0;
  const L = 1; // lane
  const BASE = 2; // the lane's slot
  const N = 3; // body bytes (datagram minus the 74-byte tail)
  const RES = 4;
  const BLOCKS = 5;
  const MAXB = 6;
  const B = 7; // block index
  const P = 8; // a pointer
  const CH = 9; // a byte
  const D = 10; // a digit value
  const BAD = 11;
  const WORD = 12;
  const I32_LOCALS = 12;
  // v128: state S0..S7, working a..h, schedule W0..W15, T1, T2, the lane mask.
  const S = 13;
  const V = S + 8;
  const W = V + 8;
  const T1 = W + 16;
  const T2 = T1 + 1;
  const MASK = T2 + 1;
  const TA = MASK + 1; // TA..TD: the message transpose
  const V128_LOCALS = TA + 4 - S;

  const get = (i: number) => c.push(LOCAL_GET, ...uleb(i));
  const set = (i: number) => c.push(LOCAL_SET, ...uleb(i));
  const tee = (i: number) => c.push(LOCAL_TEE, ...uleb(i));
  const k = (v: number) => c.push(I32_CONST, ...sleb(v));
  const op = (o: number) => c.push(o);
  const simd = (o: number) => c.push(0xfd, ...uleb(o));
  const load = (off: number) => c.push(I32_LOAD, 2, ...uleb(off));
  const load8 = (off: number) => c.push(I32_LOAD8_U, 0, ...uleb(off));
  const store = (off: number) => c.push(I32_STORE, 2, ...uleb(off));
  const store8 = (off: number) => c.push(I32_STORE8, 0, ...uleb(off));
  const vload = (off: number) => {
    simd(V128_LOAD);
    c.push(4, ...uleb(off));
  };
  const vstore = (off: number) => {
    simd(V128_STORE);
    c.push(4, ...uleb(off));
  };
  const vconst = (word: number) => {
    simd(V128_CONST);
    const b = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) b.writeInt32LE(word | 0, 4 * i);
    c.push(...b);
  };
  const rotr = (x: number, r: number) => {
    get(x);
    k(r);
    simd(I32X4_SHR_U);
    get(x);
    k(32 - r);
    simd(I32X4_SHL);
    simd(V128_OR);
  };
  /** Big-endian word from the little-endian i32 on the stack: (x rotl 8) & 0x00ff00ff | (x rotr 8) & 0xff00ff00. */
  const bswapTo = (dst: number) => {
    tee(dst);
    k(8);
    op(I32_ROTL);
    k(0x00ff00ff);
    op(I32_AND);
    get(dst);
    k(8);
    op(I32_ROTR);
    k(0xff00ff00);
    op(I32_AND);
    op(I32_OR);
    set(dst);
  };

  /** for (counter = 0; counter < limit; counter++) body(); limit: what pushLimit pushes. */
  const countedLoop = (counter: number, pushLimit: () => void, body: () => void) => {
    k(0);
    set(counter);
    c.push(BLOCK, VOID, LOOP, VOID);
    get(counter);
    pushLimit();
    op(I32_LT_S);
    op(I32_EQZ);
    c.push(BR_IF, 1);
    body();
    get(counter);
    k(1);
    op(I32_ADD);
    set(counter);
    c.push(BR, 0, END, END);
  };

  // ---- Phase 1, per lane (scalar): the tail, the expected MAC, the padding, the block count.
  k(0);
  set(MAXB);
  countedLoop(L, () => k(LANES), () => {
    // base = SLOT_AT + L * SLOT_BYTES; blocks = 0 (a lane past count, or refused, is not hashed).
    get(L);
    k(SLOT_BYTES);
    op(I32_MUL);
    k(SLOT_AT);
    op(I32_ADD);
    set(BASE);
    k(0);
    set(BLOCKS);
    k(VERDICT_SHAPE);
    set(RES);
    get(L);
    get(COUNT);
    op(I32_LT_S);
    c.push(IF, VOID);
    {
      // n = len - 74; need n >= 2, `"}` last, `,"mac":"` at n.
      get(L);
      k(2);
      op(I32_SHL);
      load(LEN_AT);
      k(MAC_TAIL_BYTES);
      op(I32_SUB);
      set(N);
      c.push(BLOCK, VOID);
      {
        get(N);
        k(2);
        op(I32_LT_S);
        c.push(BR_IF, 0);
        get(BASE);
        get(N);
        op(I32_ADD);
        set(P); // P = base + n
        get(P);
        load8(MAC_TAIL_BYTES - 2);
        k(0x22);
        op(I32_NE);
        c.push(BR_IF, 0);
        get(P);
        load8(MAC_TAIL_BYTES - 1);
        k(0x7d);
        op(I32_NE);
        c.push(BR_IF, 0);
        get(P);
        c.push(I64_LOAD, 0, 0);
        c.push(I64_CONST, ...sleb(MAC_HEAD_I64));
        op(I64_NE);
        c.push(BR_IF, 0);
        // 64 lower-case hex digits, unrolled: 8 big-endian words into WANT (transposed), any
        // other byte sets BAD. digit: c - 48 < 10; letter: c - 97 < 6, value c - 87.
        k(0);
        set(BAD);
        for (let w = 0; w < 8; w++) {
          k(0);
          set(WORD);
          for (let j = 0; j < 8; j++) {
            get(P);
            load8(8 + 8 * w + j);
            set(CH);
            // D = (CH - 48 <u 10) ? CH - 48 : CH - 87
            get(CH);
            k(48);
            op(I32_SUB);
            get(CH);
            k(87);
            op(I32_SUB);
            get(CH);
            k(48);
            op(I32_SUB);
            k(10);
            op(I32_LT_U);
            op(SELECT);
            set(D);
            // BAD |= !(CH - 48 <u 10 || CH - 97 <u 6)
            get(BAD);
            get(CH);
            k(48);
            op(I32_SUB);
            k(10);
            op(I32_LT_U);
            get(CH);
            k(97);
            op(I32_SUB);
            k(6);
            op(I32_LT_U);
            op(I32_OR);
            op(I32_EQZ);
            op(I32_OR);
            set(BAD);
            get(WORD);
            k(4);
            op(I32_SHL);
            get(D);
            k(15);
            op(I32_AND);
            op(I32_OR);
            set(WORD);
          }
          get(L);
          k(2);
          op(I32_SHL);
          get(WORD);
          store(WANT_AT + 16 * w);
        }
        get(BAD);
        c.push(BR_IF, 0);
        // Sealed in shape: the body is [0, n) and `}`, then FIPS 180-4 §5.1.1 padding after the
        // 64-byte key block: 0x80, zeros, the bit length (64 + n + 1) * 8 big-endian at the end.
        get(P);
        k(0x7d);
        store8(0);
        get(P);
        k(0x80);
        store8(1);
        get(N);
        k(1 + 9 + 63);
        op(I32_ADD);
        k(6);
        op(I32_SHR_U);
        set(BLOCKS);
        // zero [base + n + 2, base + blocks * 64 - 4)
        get(P);
        k(2);
        op(I32_ADD);
        set(P);
        c.push(BLOCK, VOID, LOOP, VOID);
        {
          get(P);
          get(BASE);
          get(BLOCKS);
          k(6);
          op(I32_SHL);
          op(I32_ADD);
          k(4);
          op(I32_SUB);
          op(I32_LT_U);
          op(I32_EQZ);
          c.push(BR_IF, 1);
          get(P);
          k(0);
          store8(0);
          get(P);
          k(1);
          op(I32_ADD);
          set(P);
          c.push(BR, 0);
        }
        c.push(END, END);
        get(P); // = base + blocks * 64 - 4
        get(N);
        k(65);
        op(I32_ADD);
        k(3);
        op(I32_SHL);
        bswapTo(D);
        get(D);
        store(0);
        k(VERDICT_SEALED);
        set(RES);
        get(BLOCKS);
        get(MAXB);
        op(I32_GT_S);
        c.push(IF, VOID);
        get(BLOCKS);
        set(MAXB);
        c.push(END);
      }
      c.push(END);
      // A refused lane is not hashed.
      get(RES);
      c.push(IF, VOID);
      k(0);
      set(BLOCKS);
      c.push(END);
    }
    c.push(END);
    get(L);
    k(2);
    op(I32_SHL);
    get(RES);
    store(RES_AT);
    get(L);
    k(2);
    op(I32_SHL);
    get(BLOCKS);
    store(BLK_AT);
  });

  /** 64 rounds over V (a..h) and W (the schedule), four lanes at once (sha256-wasm.ts emitRounds). */
  const rounds = () =>
    emitRounds(
      {
        get,
        set,
        add: () => simd(I32X4_ADD),
        xor: () => simd(V128_XOR),
        and: () => simd(V128_AND),
        or: () => simd(V128_OR),
        shr: (n) => {
          k(n);
          simd(I32X4_SHR_U);
        },
        rotr,
        kconst: vconst,
      },
      V,
      W,
      T1,
      T2,
    );

  // No lane in shape (a flood of garbage): nothing to hash, the verdicts are written.
  get(MAXB);
  op(I32_EQZ);
  c.push(IF, VOID, RETURN, END);

  // ---- Phase 2: the inner hashes, block by block, from the inner pad state.
  for (let i = 0; i < 8; i++) {
    k(0);
    load(KEY_AT + 4 * i);
    simd(I32X4_SPLAT);
    set(S + i);
  }
  countedLoop(B, () => get(MAXB), () => {
    // P = SLOT_AT + B * 64: word j of lane i is at P + i * SLOT_BYTES + 4 j (big-endian).
    get(B);
    k(6);
    op(I32_SHL);
    k(SLOT_AT);
    op(I32_ADD);
    set(P);
    // Four words of each lane per step, byte-swapped and transposed with shuffles (a 4x4
    // transpose: interleave words of lanes 0,1 and 2,3, swapping bytes as they move, then
    // interleave the 64-bit halves), so W[j] holds word j of every lane.
    for (let q = 0; q < 4; q++) {
      const pair = (l0: number, l1: number, pattern: number[], dst: number) => {
        get(P);
        vload(l0 * SLOT_BYTES + 16 * q);
        get(P);
        vload(l1 * SLOT_BYTES + 16 * q);
        simd(I8X16_SHUFFLE);
        c.push(...pattern);
        set(dst);
      };
      pair(0, 1, WORDS_LO_BSWAP, TA);
      pair(0, 1, WORDS_HI_BSWAP, TA + 1);
      pair(2, 3, WORDS_LO_BSWAP, TA + 2);
      pair(2, 3, WORDS_HI_BSWAP, TA + 3);
      const halves = (x: number, y: number, pattern: number[], dst: number) => {
        get(x);
        get(y);
        simd(I8X16_SHUFFLE);
        c.push(...pattern);
        set(dst);
      };
      halves(TA, TA + 2, HALVES_LO, W + 4 * q);
      halves(TA, TA + 2, HALVES_HI, W + 4 * q + 1);
      halves(TA + 1, TA + 3, HALVES_LO, W + 4 * q + 2);
      halves(TA + 1, TA + 3, HALVES_HI, W + 4 * q + 3);
    }
    for (let i = 0; i < 8; i++) {
      get(S + i);
      set(V + i);
    }
    rounds();
    // Lanes with more blocks than B take the new state; the others keep theirs.
    k(0);
    vload(BLK_AT);
    get(B);
    simd(I32X4_SPLAT);
    simd(I32X4_GT_S);
    set(MASK);
    for (let i = 0; i < 8; i++) {
      get(S + i);
      get(V + i);
      simd(I32X4_ADD);
      get(S + i);
      get(MASK);
      simd(V128_BITSELECT);
      set(S + i);
    }
  });

  // ---- Phase 3: the outer hashes, one block: the inner digest, 0x80, zeros, 768 bits.
  for (let i = 0; i < 8; i++) {
    get(S + i);
    set(W + i);
  }
  vconst(0x80000000);
  set(W + 8);
  for (let i = 9; i < 15; i++) {
    vconst(0);
    set(W + i);
  }
  vconst((64 + 32) * 8);
  set(W + 15);
  for (let i = 0; i < 8; i++) {
    k(0);
    load(KEY_AT + 32 + 4 * i);
    simd(I32X4_SPLAT);
    tee(V + i);
    set(S + i);
  }
  rounds();
  // diff = OR over the words of (H ^ want): zero in a lane iff its MAC holds (no early exit).
  k(0);
  for (let i = 0; i < 8; i++) {
    get(S + i);
    get(V + i);
    simd(I32X4_ADD);
    k(0);
    vload(WANT_AT + 16 * i);
    simd(V128_XOR);
    if (i > 0) simd(V128_OR);
  }
  vstore(DIFF_AT);
  for (let lane = 0; lane < LANES; lane++) {
    // RES[lane] == 0 && DIFF[lane] != 0 -> 2
    k(0);
    load(RES_AT + 4 * lane);
    op(I32_EQZ);
    k(0);
    load(DIFF_AT + 4 * lane);
    k(0);
    op(I32_NE);
    op(I32_AND);
    c.push(IF, VOID);
    k(0);
    k(VERDICT_MAC);
    store(RES_AT + 4 * lane);
    c.push(END);
  }
  const body = [2, ...uleb(I32_LOCALS), I32, ...uleb(V128_LOCALS), V128, ...c, END];
  return [...uleb(body.length), ...body];
}

/** The module's bytes: check(count: i32), one page, both exported. */
export function sealModuleBytes(): Uint8Array {
  return oneFunctionModule(1, 'check', checkBody());
}

let compiled: object | null = null;

/** One instance: its own memory (not re-entrant; one per verifier). */
export class SealWasm {
  readonly mem: Uint8Array;
  /** The whole page as i32 (KEY_AT, LEN_AT, RES_AT are byte offsets: divide by 4). */
  readonly words: Int32Array;
  /** Checks lanes 0..count-1 (see the file comment). */
  readonly check: (count: number) => void;

  /** inner, outer: the HMAC key's pad states H0..H7 (./datagram-verifier.ts computes them). */
  constructor(inner: Int32Array, outer: Int32Array) {
    compiled ??= compileModule(sealModuleBytes());
    const { buffer, fn } = instantiate(compiled, 'check');
    this.mem = new Uint8Array(buffer);
    this.words = new Int32Array(buffer);
    this.words.set(inner, KEY_AT / 4);
    this.words.set(outer, KEY_AT / 4 + 8);
    this.check = fn;
  }
}
