// The bundle gate: parses a firmware bundle as ES5 and rejects every construct ESPRUINO.md lists
// as failing (or silently differing) on the Espruino interpreter, with the offending snippet.
// Used by the build (a bundle that fails is not shipped) and by test/bundle.
import * as acorn from 'acorn';
import * as walk from 'acorn-walk';

/** Globals the interpreter does not have (ESPRUINO.md "Fails") and Node-only names. */
const MISSING_GLOBALS = new Set(['Map', 'Set', 'WeakMap', 'WeakSet', 'WeakRef', 'Symbol', 'Proxy', 'Reflect', 'BigInt', 'Intl']);
const NODE_GLOBALS = new Set(['Buffer', 'setImmediate', 'clearImmediate', 'queueMicrotask', 'TextEncoder', 'TextDecoder', '__dirname', '__filename', 'module', 'exports', 'structuredClone', 'fetch']);
/** Static members missing on the interpreter: object -> names. */
const MISSING_STATICS = {
  Object: ['freeze', 'seal', 'setPrototypeOf', 'getOwnPropertySymbols'],
  Array: ['from', 'of'],
  Promise: ['race', 'allSettled', 'any'],
  Number: ['isInteger', 'isNaN', 'isSafeInteger', 'MAX_SAFE_INTEGER', 'MIN_SAFE_INTEGER', 'EPSILON'],
  Math: ['trunc', 'sign'],
  process: ['nextTick', 'hrtime'],
};
/** Instance methods missing on the interpreter (any receiver: the type is unknown statically). */
const MISSING_METHODS = new Set(['finally', 'reduceRight', 'lastIndexOf', 'localeCompare']);
const BUILTIN_CTORS = new Set(['Array', 'Object', 'String', 'Function', 'Number', 'Boolean', 'RegExp', 'Date', 'Error', 'Promise', 'Uint8Array', 'ArrayBuffer', 'DataView']);

/**
 * @typedef {{ rule: string, message: string, snippet: string, line: number, column: number }} Violation
 */

export const RULES = {
  syntax: 'not ES5: the interpreter parses ES5 plus a few ES2015 features, and the bundle must be plain ES5',
  'array-hole': 'array literal with a hole ([a,,b]): a syntax error in code the interpreter parses but skips',
  'builtin-prototype': 'X.prototype.method read on a built-in is undefined on Espruino (use [].slice.call, or a loop)',
  'missing-global': 'a global the interpreter does not have (Map, Set, WeakMap, Symbol, Proxy, Reflect, …)',
  'node-global': 'a Node.js-only global (Buffer, setImmediate, process.nextTick, …)',
  'missing-static': 'a static method the interpreter does not have (Object.freeze, Array.from, Promise.race, Math.trunc, Number.isInteger, …)',
  'missing-method': 'an instance method the interpreter does not have (.finally, .reduceRight, .lastIndexOf, .localeCompare)',
  'static-inheritance': "TypeScript's __extends helper (class … extends): static inheritance fails and it reads Object.prototype.hasOwnProperty",
  'generator-helper': "TypeScript's __generator/__awaiter helper (async functions, generators)",
  'regex': 'a regular expression feature the interpreter lacks ((?:…), quantified groups, {n,m}, lazy quantifiers, lookaround, \\u escapes)',
  'labelled-statement': 'labelled break/continue fails on the interpreter',
  'json-replacer': 'JSON.stringify ignores a replacer on the interpreter',
  'function-hoisting': 'a function declaration after other statements: the interpreter does not hoist (terser hoist_funs must move it up)',
  'require-module': 'require() of a module the board does not have',
};

function snippetAt(code, start, end) {
  const from = Math.max(0, start - 30);
  const to = Math.min(code.length, Math.max(end, start + 1) + 30);
  return (from > 0 ? '…' : '') + code.slice(from, to).replace(/\s+/g, ' ') + (to < code.length ? '…' : '');
}

function memberName(node) {
  if (!node || node.type !== 'MemberExpression') return null;
  if (!node.computed && node.property.type === 'Identifier') return node.property.name;
  if (node.computed && node.property.type === 'Literal' && typeof node.property.value === 'string') return node.property.value;
  return null;
}

/** Checks a regex source for features the interpreter's RegExp lacks (it returns null silently). */
export function regexProblems(source) {
  const problems = [];
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      if (source[i + 1] === 'u') problems.push('\\u escape');
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(' && source[i + 1] === '?') {
      const k = source[i + 2];
      problems.push(k === ':' ? 'non-capturing group (?:' : k === '=' || k === '!' ? 'lookahead' : k === '<' ? 'lookbehind/named group' : 'group modifier (?');
    } else if (c === ')') {
      const n = source[i + 1];
      if (n === '*' || n === '+' || n === '?' || n === '{') problems.push('quantifier on a group');
    } else if (c === '{' && /^\{\d+(,\d*)?\}/.test(source.slice(i))) problems.push('{n,m} quantifier');
    else if ((c === '*' || c === '+' || c === '?' || c === '}') && source[i + 1] === '?' && i > 0) problems.push('lazy quantifier');
  }
  return [...new Set(problems)];
}

/**
 * @param {string} code the bundle text
 * @param {{ modules?: string[] }} [opts] modules: what require() may load on the board
 * @returns {Violation[]}
 */
export function checkBundle(code, opts = {}) {
  /** @type {Violation[]} */
  const out = [];
  let ast;
  try {
    ast = acorn.parse(code, { ecmaVersion: 5, locations: true, allowReserved: true });
  } catch (e) {
    const pos = typeof e.pos === 'number' ? e.pos : 0;
    out.push({ rule: 'syntax', message: `${RULES.syntax}: ${e.message}`, snippet: snippetAt(code, pos, pos + 1), line: e.loc?.line ?? 0, column: e.loc?.column ?? 0 });
    return out;
  }
  const add = (rule, node, detail) => {
    out.push({
      rule,
      message: detail ? `${RULES[rule]}: ${detail}` : RULES[rule],
      snippet: snippetAt(code, node.start, node.end),
      line: node.loc.start.line,
      column: node.loc.start.column,
    });
  };
  // Names declared anywhere in the bundle: a local `Map` (say) is not the missing global.
  const declared = new Set();
  walk.full(ast, (node) => {
    if (node.type === 'VariableDeclarator' && node.id.type === 'Identifier') declared.add(node.id.name);
    if ((node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression') && node.id) declared.add(node.id.name);
    if (node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression') for (const p of node.params) if (p.type === 'Identifier') declared.add(p.name);
    if (node.type === 'CatchClause' && node.param && node.param.type === 'Identifier') declared.add(node.param.name);
  });
  walk.fullAncestor(ast, (node, _state, ancestors) => {
    const parent = ancestors[ancestors.length - 2];
    switch (node.type) {
      case 'ArrayExpression':
        if (node.elements.some((e) => e === null)) add('array-hole', node);
        break;
      case 'LabeledStatement':
        add('labelled-statement', node, node.label.name);
        break;
      case 'Literal':
        if (node.regex) {
          const p = regexProblems(node.regex.pattern);
          if (p.length) add('regex', node, `/${node.regex.pattern}/ has ${p.join(', ')}`);
        }
        break;
      case 'NewExpression':
      case 'CallExpression': {
        const callee = node.callee;
        if (callee.type === 'Identifier' && callee.name === 'RegExp' && node.arguments[0]?.type === 'Literal' && typeof node.arguments[0].value === 'string') {
          const p = regexProblems(node.arguments[0].value);
          if (p.length) add('regex', node, `RegExp(${JSON.stringify(node.arguments[0].value)}) has ${p.join(', ')}`);
        }
        if (callee.type === 'Identifier' && callee.name === 'require' && !declared.has('require')) {
          const arg = node.arguments[0];
          if (arg && arg.type === 'Literal' && typeof arg.value === 'string' && opts.modules && !opts.modules.includes(arg.value)) {
            add('require-module', node, `require(${JSON.stringify(arg.value)}) but the board has ${opts.modules.join(', ')}`);
          }
        }
        if (callee.type === 'MemberExpression' && memberName(callee) === 'stringify' && callee.object.type === 'Identifier' && callee.object.name === 'JSON') {
          const r = node.arguments[1];
          if (r && !(r.type === 'Literal' && r.value === null) && !(r.type === 'Identifier' && r.name === 'undefined') && !(r.type === 'UnaryExpression' && r.operator === 'void')) {
            add('json-replacer', node);
          }
        }
        break;
      }
      case 'MemberExpression': {
        const name = memberName(node);
        const obj = node.object;
        if (obj.type === 'MemberExpression' && memberName(obj) === 'prototype' && obj.object.type === 'Identifier' && BUILTIN_CTORS.has(obj.object.name) && !declared.has(obj.object.name)) {
          // Reading X.prototype.y of a built-in (writing a polyfill onto it is a different matter).
          const isWrite = parent && parent.type === 'AssignmentExpression' && parent.left === node;
          if (!isWrite) add('builtin-prototype', node, `${obj.object.name}.prototype.${name}`);
        }
        if (obj.type === 'Identifier' && !declared.has(obj.name) && MISSING_STATICS[obj.name] && MISSING_STATICS[obj.name].includes(name)) {
          add(obj.name === 'Object' && name === 'setPrototypeOf' ? 'static-inheritance' : obj.name === 'process' ? 'node-global' : 'missing-static', node, `${obj.name}.${name}`);
        }
        if (name && MISSING_METHODS.has(name) && !(parent && parent.type === 'AssignmentExpression' && parent.left === node)) add('missing-method', node, `.${name}`);
        if (name === '__proto__' && parent && parent.type === 'AssignmentExpression' && parent.left === node) add('static-inheritance', node, '__proto__ assignment');
        break;
      }
      case 'Property':
        if (!node.computed && ((node.key.type === 'Identifier' && node.key.name === '__proto__') || (node.key.type === 'Literal' && node.key.value === '__proto__'))) {
          add('static-inheritance', node, '{__proto__: …} literal');
        }
        break;
      case 'ObjectExpression': {
        const keys = new Set(node.properties.map((p) => (p.key.type === 'Identifier' ? p.key.name : p.key.value)));
        if (keys.has('label') && keys.has('sent') && keys.has('trys') && keys.has('ops')) add('generator-helper', node);
        break;
      }
      case 'Identifier': {
        if (declared.has(node.name)) break;
        // Only references: not property names, not object keys.
        if (parent && parent.type === 'MemberExpression' && parent.property === node && !parent.computed) break;
        if (parent && parent.type === 'Property' && parent.key === node && !parent.computed) break;
        if (MISSING_GLOBALS.has(node.name)) add('missing-global', node, node.name);
        else if (NODE_GLOBALS.has(node.name)) add('node-global', node, node.name);
        break;
      }
      default:
        break;
    }
  });
  // Function hoisting: in every body, function declarations must come before anything that runs.
  walk.full(ast, (node) => {
    let body = null;
    if (node.type === 'Program') body = node.body;
    else if ((node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression') && node.body.type === 'BlockStatement') body = node.body.body;
    if (!body) return;
    let ran = null;
    for (const st of body) {
      if (st.type === 'FunctionDeclaration') {
        if (ran && callsBefore(ran.stmts, st.id.name)) add('function-hoisting', st, `function ${st.id.name} is declared after code that calls it`);
      } else if (!(st.type === 'ExpressionStatement' && st.directive)) {
        ran = ran || { stmts: [] };
        ran.stmts.push(st);
      }
    }
  });
  return out;
}

/** Whether any of the statements calls `name` directly at their own level (not inside nested functions). */
function callsBefore(stmts, name) {
  let found = false;
  for (const st of stmts) {
    walk.recursive(st, null, {
      Function() {
        // a nested function runs later: by then the declaration exists
      },
      CallExpression(node, state, c) {
        if (node.callee.type === 'Identifier' && node.callee.name === name) found = true;
        c(node.callee, state);
        for (const a of node.arguments) c(a, state);
      },
      NewExpression(node, state, c) {
        if (node.callee.type === 'Identifier' && node.callee.name === name) found = true;
        c(node.callee, state);
        for (const a of node.arguments) c(a, state);
      },
    });
    if (found) return true;
  }
  return false;
}

export function formatViolations(file, violations) {
  return violations.map((v) => `${file}:${v.line}:${v.column} [${v.rule}] ${v.message}\n    ${v.snippet}`).join('\n');
}
