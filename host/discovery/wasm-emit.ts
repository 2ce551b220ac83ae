/**
 * The pieces of the WebAssembly binary format (Core Specification 2.0, §5) that the discovery
 * listener's emitted modules share (./sha256-wasm.ts, ./seal-wasm.ts): LEB128 numbers, sections,
 * names, and the one shape both modules have: one function taking i32 parameters and returning
 * nothing, one page of memory, both exported. No toolchain and no binary in the repository.
 */

export const I32 = 0x7f;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Signed LEB128 of an i32 (number) or i64 (bigint) immediate. */
export function sleb(v: number | bigint): number[] {
  let n = typeof v === 'bigint' ? v : BigInt(v | 0);
  const out: number[] = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && !(b & 0x40)) || (n === -1n && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function section(id: number, bytes: number[]): number[] {
  return [id, ...uleb(bytes.length), ...bytes];
}

function name(s: string): number[] {
  return [...uleb(s.length), ...Buffer.from(s, 'latin1')];
}

/**
 * A module of one function, (i32 × params) -> (), exported as fn, and one page of memory
 * exported as `memory`. body: the function's code entry (size, locals, instructions, end).
 */
export function oneFunctionModule(params: number, fn: string, body: number[]): Uint8Array {
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, params, ...new Array<number>(params).fill(I32), 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0, 1]),
    ...section(7, [2, ...name('memory'), 2, 0, ...name(fn), 0, 0]),
    ...section(10, [1, ...body]),
  ]);
}

/** The part of the WebAssembly JS API used here (the host's lib has no DOM types). */
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
};

/** Compiles bytes (throws WebAssembly.CompileError where this V8 cannot). */
export function compileModule(bytes: Uint8Array): object {
  return new WebAssembly.Module(bytes);
}

/** A new instance of a compiled module: its memory's buffer and its one function. */
export function instantiate(module: object, fn: string): { buffer: ArrayBuffer; fn: (...args: number[]) => void } {
  const inst = new WebAssembly.Instance(module);
  return { buffer: (inst.exports.memory as { buffer: ArrayBuffer }).buffer, fn: inst.exports[fn] as (...args: number[]) => void };
}
