/**
 * The interpreter's global environment inside a node:vm context: what Espruino has, nothing Node
 * has. Built-ins that ESPRUINO.md lists as missing on the interpreter are removed, and Node-only
 * names throw an error that says so, so a bundle that would fail on a board fails here too.
 */

/** Globals of Node (and browsers) a bundle must not use: each throws a clear error when read. */
export const NODE_ONLY_GLOBALS = [
  'Buffer',
  'setImmediate',
  'clearImmediate',
  'queueMicrotask',
  'TextEncoder',
  'TextDecoder',
  'module',
  'exports',
  '__dirname',
  '__filename',
  'fetch',
  'structuredClone',
  'performance',
  'window',
  'document',
  'navigator',
];

/** ES2015+ built-ins the interpreter does not have (ESPRUINO.md "Fails"). */
export const MISSING_GLOBALS = ['Map', 'Set', 'WeakMap', 'WeakSet', 'WeakRef', 'Symbol', 'Proxy', 'Reflect', 'BigInt', 'Intl', 'FinalizationRegistry', 'SharedArrayBuffer', 'Atomics', 'WebAssembly'];

/** Methods of built-ins the interpreter does not have: [object path, name]. */
export const MISSING_METHODS: Array<[string, string]> = [
  ['Promise', 'race'],
  ['Promise', 'allSettled'],
  ['Promise', 'any'],
  ['Promise.prototype', 'finally'],
  ['Array', 'from'],
  ['Array', 'of'],
  ['Number', 'isInteger'],
  ['Number', 'isNaN'],
  ['Number', 'MAX_SAFE_INTEGER'],
  ['Number', 'EPSILON'],
  ['Math', 'trunc'],
  ['Math', 'sign'],
  ['Object', 'freeze'],
  ['Object', 'seal'],
  ['Array.prototype', 'reduceRight'],
  ['Array.prototype', 'lastIndexOf'],
  ['String.prototype', 'localeCompare'],
];

/**
 * Source run inside the context before the bundle: strips what the interpreter lacks and plants
 * the throwing getters. Runs in the context's own realm, so the host's built-ins are untouched.
 */
export function preludeSource(): string {
  return `(function (g) {
  var nodeOnly = ${JSON.stringify(NODE_ONLY_GLOBALS)};
  nodeOnly.forEach(function (name) {
    Object.defineProperty(g, name, { configurable: true, enumerable: false, get: function () {
      throw new ReferenceError(name + ' is a Node.js global: Espruino has no ' + name + ' (the bundle uses a Node-only API)');
    } });
  });
  var missing = ${JSON.stringify(MISSING_GLOBALS)};
  missing.forEach(function (name) {
    Object.defineProperty(g, name, { configurable: true, enumerable: false, get: function () {
      throw new ReferenceError(name + ' is not defined (Espruino has no ' + name + ')');
    } });
  });
  var methods = ${JSON.stringify(MISSING_METHODS)};
  methods.forEach(function (m) {
    var o = m[0].split('.').reduce(function (acc, k) { return acc[k]; }, g);
    delete o[m[1]];
  });
})(this);`;
}
