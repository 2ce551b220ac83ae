/**
 * JsVar accounting: an estimate of what a value costs on the interpreter, by the rules measured
 * in ESPRUINO.md (a JsVar is 14 bytes on ESP32, 12 on ESP8266):
 *   number, boolean, {} and a string of up to 4 chars: 1 var; a longer string 2 + len/12;
 *   each object or array member: 1 var for its name (plus the name's own chars past 4), plus its
 *   value unless the value is a small integer or boolean kept inline ({a:1} = 2, [1,2,3] = 4);
 *   typed arrays dense (2 + bytes/12).
 * Code run from Storage costs about 642 vars per 10 KB of bundle (function bodies stay in flash);
 * that measured figure covers the bundle's functions and prototypes, so the walk counts a
 * function value as the 1 var of its reference and does not enter it (codeVars() adds the code).
 * The interpreter's modules (what `require` returns) are native and cost nothing here.
 *
 * Closures are invisible to a walker: the firmware keeps its state in objects reachable from
 * `global.espfleet`, so what the runtime holds is counted.
 */

export const CODE_VARS_PER_10KB_FROM_STORAGE = 642;
export const CODE_VARS_PER_10KB_IN_RAM = 1236;

export function stringVars(len: number): number {
  return len <= 4 ? 1 : 2 + Math.ceil(len / 12);
}

function inlineValue(v: unknown): boolean {
  return typeof v === 'boolean' || (typeof v === 'number' && Number.isInteger(v) && Math.abs(v) < 2 ** 31) || v === undefined || v === null;
}

export function codeVars(bundleBytes: number, fromStorage: boolean): number {
  return Math.ceil((bundleBytes / 10240) * (fromStorage ? CODE_VARS_PER_10KB_FROM_STORAGE : CODE_VARS_PER_10KB_IN_RAM));
}

/**
 * Counts the vars reachable from root, never entering objects in `skip` (the interpreter's own
 * built-ins) and never counting one object twice (`seen`, shared across calls for a total).
 */
export function sizeOf(root: unknown, skip: WeakSet<object>, seen: WeakSet<object> = new WeakSet(), depthMax = 64): number {
  let total = 0;
  const stack: Array<[unknown, number, boolean?]> = [[root, 0]];
  let steps = 0;
  while (stack.length) {
    const [v, depth, isProto] = stack.pop()!;
    if (++steps > 2_000_000) break; // a bound on the walk itself, whatever the bundle built
    if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'number') {
      total += 1;
      continue;
    }
    if (typeof v === 'string') {
      total += stringVars(v.length);
      continue;
    }
    if (typeof v !== 'object' && typeof v !== 'function') {
      total += 1;
      continue;
    }
    const o = v as object;
    if (skip.has(o) || seen.has(o)) continue;
    seen.add(o);
    if (ArrayBuffer.isView(o)) {
      total += 2 + Math.ceil((o as ArrayBufferView).byteLength / 12);
      continue;
    }
    if (o instanceof ArrayBuffer || Object.prototype.toString.call(o) === '[object ArrayBuffer]') {
      total += 2 + Math.ceil((o as ArrayBuffer).byteLength / 12);
      continue;
    }
    if (typeof o === 'function') {
      total += 1;
      continue;
    }
    if (!isProto) total += 1;
    if (depth >= depthMax) continue;
    let keys: string[];
    try {
      keys = Object.getOwnPropertyNames(o);
    } catch {
      continue;
    }
    for (const k of keys) {
      if (Array.isArray(o) && k === 'length') continue;
      const desc = Object.getOwnPropertyDescriptor(o, k);
      // A prototype's methods and accessors are code (see above): only its data is counted.
      if (isProto && (!desc || !('value' in desc) || typeof desc.value === 'function' || k === 'constructor')) continue;
      total += 1 + (k.length > 4 ? Math.ceil((k.length - 4) / 12) : 0);
      if (!desc || !('value' in desc)) continue;
      const val = desc.value;
      if (inlineValue(val)) continue;
      stack.push([val, depth + 1]);
    }
    // An instance's class prototype holds methods (code, counted by codeVars); data kept on a
    // prototype is rare in the firmware and would be counted once through any instance.
    const proto = Object.getPrototypeOf(o);
    if (proto && !skip.has(proto)) stack.push([proto, depth + 1, true]);
  }
  return total;
}

/** Every object reachable from the context's global at creation: the built-ins, never counted. */
export function intrinsics(global: object): WeakSet<object> {
  const set = new WeakSet<object>();
  const stack: unknown[] = [global];
  let n = 0;
  while (stack.length && n < 200_000) {
    const v = stack.pop();
    if (v === null || (typeof v !== 'object' && typeof v !== 'function')) continue;
    const o = v as object;
    if (set.has(o)) continue;
    set.add(o);
    n++;
    for (const k of Reflect.ownKeys(o)) {
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (!d) continue;
      if ('value' in d) stack.push(d.value);
      else {
        if (d.get) stack.push(d.get);
        if (d.set) stack.push(d.set);
      }
    }
    stack.push(Object.getPrototypeOf(o));
  }
  return set;
}
