/**
 * The bundle gate: every rule catches a seeded violation (with the snippet in the message), and
 * every shipped bundle passes all rules and stays within its board's budgets.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JS module shared with the build
import { checkBundle, formatViolations, regexProblems, RULES } from '../../scripts/bundle-gate.js';
import { listBoards, loadBoard, packageRoot } from '../../boards/profiles.js';

const dist = join(packageRoot(), 'dist', 'firmware');

interface Violation {
  rule: string;
  message: string;
  snippet: string;
  line: number;
}

const check = checkBundle as (code: string, opts?: { modules?: string[] }) => Violation[];

/** One violating sample per rule: [rule, code, text the snippet must show]. */
const SAMPLES: Array<[string, string, string]> = [
  ['syntax', 'var f = (a) => a + 1;', '=>'],
  ['syntax', 'let x = 1;', 'let x'],
  ['syntax', 'async function f() { await g(); }', 'async'],
  ['syntax', 'function* g() { yield 1; }', 'function*'],
  ['syntax', 'var o = { ...a };', '...a'],
  ['syntax', 'var x = a ** 2;', '**'],
  ['syntax', 'var y = a?.b;', '?.'],
  ['syntax', 'class A { static s() {} }', 'class A'],
  ['array-hole', 'var a = [0, 2, , 3];', '[0, 2, , 3]'],
  ['array-hole', 'var a = [, 1];', '[, 1]'],
  ['builtin-prototype', 'function f() { return Array.prototype.slice.call(arguments); }', 'Array.prototype.slice'],
  ['builtin-prototype', 'var h = Object.prototype.hasOwnProperty.call(o, "k");', 'Object.prototype.hasOwnProperty'],
  ['builtin-prototype', 'var s = Object.prototype.toString.call([]);', 'Object.prototype.toString'],
  ['missing-global', 'var m = new Map();', 'new Map()'],
  ['missing-global', 'var s = new Set([1]);', 'new Set'],
  ['missing-global', 'var w = new WeakMap();', 'WeakMap'],
  ['missing-global', 'var it = Symbol.iterator;', 'Symbol.iterator'],
  ['node-global', 'var b = Buffer.from("x");', 'Buffer.from'],
  ['node-global', 'setImmediate(function () {});', 'setImmediate'],
  ['node-global', 'process.nextTick(function () {});', 'process.nextTick'],
  ['missing-static', 'Object.freeze(o);', 'Object.freeze'],
  ['missing-static', 'var a = Array.from(x);', 'Array.from'],
  ['missing-static', 'Promise.race([p, q]);', 'Promise.race'],
  ['missing-static', 'var t = Math.trunc(1.5);', 'Math.trunc'],
  ['missing-static', 'var i = Number.isInteger(1);', 'Number.isInteger'],
  ['missing-method', 'p.then(f).finally(g);', '.finally'],
  ['missing-method', 'var r = a.reduceRight(f, 0);', 'reduceRight'],
  ['missing-method', 'var c = a.localeCompare(b);', 'localeCompare'],
  [
    'static-inheritance',
    'var __extends = function (d, b) { var s = Object.setPrototypeOf || ({ __proto__: [] } instanceof Array && function (d, b) { d.__proto__ = b; }); s(d, b); };',
    'Object.setPrototypeOf',
  ],
  [
    'generator-helper',
    'function g() { var _ = { label: 0, sent: function () { return t[1]; }, trys: [], ops: [] }; return _; }',
    'label: 0',
  ],
  ['regex', 'var r = /(?:ab)+/;', '(?:ab)'],
  ['regex', 'var r = /(ab)+c/;', '(ab)+'],
  ['regex', 'var r = /a{2,3}/;', 'a{2,3}'],
  ['regex', 'var r = /a+?b/;', 'a+?b'],
  ['regex', 'var r = /a(?=b)/;', '(?=b)'],
  ['regex', 'var r = /\\u0041/;', 'u0041'],
  ['regex', 'var r = new RegExp("(?:x)");', 'RegExp'],
  ['labelled-statement', 'outer: for (var i = 0; i < 3; i++) { for (;;) { break outer; } }', 'outer:'],
  ['json-replacer', 'var s = JSON.stringify(o, function (k, v) { return v; });', 'JSON.stringify'],
  ['function-hoisting', 'f(); function f() { return 1; }', 'function f'],
];

describe('bundle gate rules', () => {
  it('has a sample for every rule', () => {
    const covered = new Set(SAMPLES.map((s) => s[0]));
    covered.add('require-module'); // covered by its own test below
    expect([...covered].sort()).toEqual(Object.keys(RULES).sort());
  });

  it.each(SAMPLES)('catches %s in %s', (rule, code, shows) => {
    const v = check(code);
    const hit = v.find((x) => x.rule === rule);
    expect(hit, `expected rule ${rule}, got ${formatViolations('sample.js', v) || 'nothing'}`).toBeTruthy();
    expect(hit!.snippet).toContain(shows);
    expect(formatViolations('sample.js', v)).toContain(`[${rule}]`);
  });

  it('catches require() of a module the board lacks', () => {
    const v = check('var w = require("Wifi");', { modules: ['net', 'dgram', 'Storage'] });
    expect(v.map((x) => x.rule)).toEqual(['require-module']);
    expect(v[0].message).toContain('require("Wifi")');
    expect(check('var n = require("net");', { modules: ['net'] })).toEqual([]);
  });

  it('accepts the ES5 that the interpreter runs', () => {
    const ok = [
      'function f() { return [].slice.call(arguments); }',
      'var a = [1, void 0, 3];',
      'var o = { get x() { return 1; } }; Object.defineProperty(o, "y", { value: 2 });',
      'var r = /^[A-Za-z0-9_-]+$/;',
      'var s = JSON.stringify(o, null, 2);',
      'function g() { h(); function h() {} }'.replace('h(); function h() {}', 'function h() {} h();'),
      'var m = {}; m.Map = 1; var q = { Set: 2 };',
      'function f(Map) { return new Map(); }',
      'Array.prototype.indexOf2 = function () {};',
      'var p = new Promise(function (r) { r(1); }); p.then(function () {});',
    ];
    for (const code of ok) expect(check(code), code).toEqual([]);
  });

  it('reports every regex feature the interpreter lacks', () => {
    expect(regexProblems('^[a-z(?:]+$')).toEqual([]);
    expect(regexProblems('(a)*(?:b)c{1}\\u0041')).toEqual(expect.arrayContaining(['quantifier on a group', 'non-capturing group (?:', '{n,m} quantifier', '\\u escape']));
  });
});

describe('shipped bundles', () => {
  const boards = listBoards();

  it('the build wrote a bundle for at least four boards', () => {
    expect(boards.length).toBeGreaterThanOrEqual(4);
    for (const b of ['esp32', 'esp32c3', 'esp8266', 'linux']) expect(boards).toContain(b);
    for (const b of boards) expect(existsSync(join(dist, `${b}.js`)), `${b}.js (run npm run build)`).toBe(true);
  });

  it.each(listBoards())('%s passes every rule of the gate', (board) => {
    const code = readFileSync(join(dist, `${board}.js`), 'latin1');
    const v = check(code, { modules: loadBoard(board).modules });
    expect(formatViolations(`${board}.js`, v)).toBe('');
  });

  it('lib.js (the cores the tests load) passes every rule', () => {
    const v = check(readFileSync(join(dist, 'lib.js'), 'latin1'));
    expect(formatViolations('lib.js', v)).toBe('');
  });

  it.each(listBoards())('%s stays within its byte budget (report.json agrees with the file)', (board) => {
    const profile = loadBoard(board);
    const bytes = readFileSync(join(dist, `${board}.js`)).length;
    const report = JSON.parse(readFileSync(join(dist, 'report.json'), 'utf8'));
    const entry = report.boards.find((b: { board: string }) => b.board === board);
    expect(entry.bytes).toBe(bytes);
    expect(entry.gzipBytes).toBeGreaterThan(0);
    expect(entry.gzipBytes).toBeLessThan(bytes);
    expect(bytes).toBeLessThanOrEqual(profile.budget.bundleBytesMax);
  });
});
