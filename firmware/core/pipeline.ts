/**
 * The edge pipeline (ARCHITECTURE.md flow 4): per sensor, a chain of stages configured by the
 * device config's `pipeline` object (INTERFACES.md), e.g.
 *   { "t": [ { "deadband": 0.2 }, { "window": { "ms": 60000, "emit": ["mean", "min", "max"] } } ] }
 *
 * Stages (each object has exactly one key):
 *   {"range":[lo,hi]}      drops values outside [lo, hi]
 *   {"deadband":d}         passes a value only if |x - last passed| > d (the first always passes;
 *                          OPC UA's absolute deadband rule, DataChangeFilter in Part 4), d >= 0
 *   {"rate":{"ms":n}}      at most one value per n ms: passes x if none passed in the last n ms
 *   {"ewma":a}             y = y + a * (x - y), first y = x; 0 < a <= 1; passes every y
 *   {"linear":[a,b]}       y = a * x + b
 *   {"round":d}            x rounded to d decimals, 0 <= d <= 6 (halves upwards, as
 *                          Math.round): drops the binary tails scaling leaves (56.757000000000005),
 *                          which cost JSON bytes in the outbox and on the air
 *   {"window":{"ms":n,"emit":[…]}}  tumbling windows aligned to multiples of n on the sample
 *                          clock; at the window's end emits each of count|min|max|mean. Empty
 *                          windows emit nothing. At most one window per chain; the stages after
 *                          it run once per emitted kind, each with its own state.
 * Readings are {n, v, ts}: n is the sensor name, or `<sensor>_<kind>` when a window emits more
 * than one kind (names(sensor) lists them); ts is the sample's time, or the window's end.
 * Non-finite values never pass (a NaN input is counted in `bad`; a stage yielding a non-finite
 * value drops it). Sensors with no chain pass their values through unchanged.
 *
 * Time is the sample's nowMs. A window whose end has passed is flushed by the first later sample
 * or by tick(); a sample older than the open window's start (the clock went back, e.g. when the
 * wall clock was set from an offer) flushes it at once with that sample's time.
 *
 * Capacity: at most samplesPerTickMax samples are processed between two tick() calls; beyond
 * that, push() only queues. The queue holds queueMax samples; when it is full the OLDEST queued
 * sample is shed and counted in `shed`, so memory never grows when sampling outruns processing.
 * tick(nowMs) renews the allowance, drains the queue (oldest first), and only then, with the
 * queue empty, flushes the windows that are due, so no queued sample misses its window.
 * Work per sample is bounded: at most stagesMax stage calls, plus, when it closes a window, one
 * chain of at most stagesMax stages per emitted kind.
 *
 * compilePipeline never throws on config input: it returns a Pipeline or {error}.
 */

import { isForbiddenKey } from './keys.js';

/** Stages per sensor: every stage is a call per sample on an interpreter that re-parses it. */
export var STAGES_MAX = 8;
/** Sensors with a chain: the device config allows 8 sensors (config.ts SENSORS_MAX). */
export var SENSORS_MAX = 8;
/** Samples processed between ticks: bounds the time one turn of the event loop spends here. */
export var SAMPLES_PER_TICK_MAX = 16;
/** Queued samples at most: 2 turns of processing; older ones are shed. */
export var QUEUE_MAX = 32;
/** Longest window (1 day): longer belongs on the companion. */
export var WINDOW_MS_MAX = 86400000;
/** Sensor names in a pipeline: as in config.ts (1-16 of [A-Za-z0-9_-]). */
export var SENSOR_CHARS_MAX = 16;

/** What a window can emit, in this order of codes. */
export var EMIT_NAMES = ['count', 'min', 'max', 'mean'];

export interface Reading {
  /** Sensor name, or `<sensor>_<kind>` for a window emitting several kinds. */
  n: string;
  v: number;
  ts: number;
}

export interface PipelineOptions {
  stagesMax?: number;
  sensorsMax?: number;
  samplesPerTickMax?: number;
  queueMax?: number;
}

/** A stage maps a value to a value, or to NaN to drop it. */
interface Stage {
  p(x: number, t: number): number;
}

class RangeStage {
  _lo: number;
  _hi: number;
  constructor(lo: number, hi: number) {
    this._lo = lo;
    this._hi = hi;
  }
  p(x: number, t: number): number {
    return x >= this._lo && x <= this._hi ? x : NaN;
  }
}

class DeadbandStage {
  _d: number;
  _l: number;
  constructor(d: number) {
    this._d = d;
    this._l = NaN;
  }
  p(x: number, t: number): number {
    // `!(… <= d)` also passes the first value, while _l is NaN.
    if (!(Math.abs(x - this._l) <= this._d)) {
      this._l = x;
      return x;
    }
    return NaN;
  }
}

class RateStage {
  _ms: number;
  _t: number;
  constructor(ms: number) {
    this._ms = ms;
    this._t = NaN;
  }
  p(x: number, t: number): number {
    // Passes the first value, one at least _ms after the last passed, and any value from before
    // the last passed one (the clock went back: restart rather than stay silent).
    if (!(t - this._t < this._ms) || t < this._t) {
      this._t = t;
      return x;
    }
    return NaN;
  }
}

class EwmaStage {
  _a: number;
  _y: number;
  constructor(a: number) {
    this._a = a;
    this._y = NaN;
  }
  p(x: number, t: number): number {
    this._y = this._y === this._y ? this._y + this._a * (x - this._y) : x;
    return this._y;
  }
}

class LinearStage {
  _a: number;
  _b: number;
  constructor(a: number, b: number) {
    this._a = a;
    this._b = b;
  }
  p(x: number, t: number): number {
    var y = this._a * x + this._b;
    return isFinite(y) ? y : NaN;
  }
}

/** 10^d for d = 0..6, written out: no Math.pow, whose result need not be exact on the interpreter. */
var POW10 = [1, 10, 100, 1000, 10000, 100000, 1000000];

class RoundStage {
  _p: number;
  constructor(p: number) {
    this._p = p;
  }
  p(x: number, t: number): number {
    // The quotient is the double nearest the decimal, which JSON prints in its short form.
    return Math.round(x * this._p) / this._p;
  }
}

/** A tumbling window: its accumulators and the chains after it, one per emitted kind. */
class WindowStage {
  _ms: number;
  /** Emitted kinds as EMIT_NAMES codes, and the reading name of each. */
  _k: number[];
  _nm: string[];
  _post: Stage[][];
  /** Start of the open window; NaN while empty. */
  _s: number;
  _c: number;
  _lo: number;
  _hi: number;
  _sum: number;
  constructor(ms: number, kinds: number[], names: string[], post: Stage[][]) {
    this._ms = ms;
    this._k = kinds;
    this._nm = names;
    this._post = post;
    this._s = NaN;
    this._c = 0;
    this._lo = 0;
    this._hi = 0;
    this._sum = 0;
  }

  /** Adds a value at time t, first closing the open window if t is past its end or before its start. */
  add(x: number, t: number, out: Reading[]): void {
    if (this._c > 0 && (t >= this._s + this._ms || t < this._s)) this.flush(t < this._s ? t : this._s + this._ms, out);
    if (this._c === 0) {
      this._s = t - (t % this._ms);
      this._lo = x;
      this._hi = x;
      this._sum = 0;
    }
    this._c++;
    this._sum += x;
    if (x < this._lo) this._lo = x;
    if (x > this._hi) this._hi = x;
  }

  /** End of the open window; Infinity while empty. */
  end(): number {
    return this._c > 0 ? this._s + this._ms : Infinity;
  }

  /** Emits the open window's aggregates, stamped ts, through each kind's chain, and empties it. */
  flush(ts: number, out: Reading[]): void {
    var i, j, k, v, post;
    for (i = 0; i < this._k.length; i++) {
      k = this._k[i];
      v = k === 0 ? this._c : k === 1 ? this._lo : k === 2 ? this._hi : this._sum / this._c;
      post = this._post[i];
      for (j = 0; j < post.length && v === v; j++) v = post[j].p(v, ts);
      if (v === v && isFinite(v)) out.push({ n: this._nm[i], v: v, ts: ts });
    }
    this._c = 0;
    this._s = NaN;
  }
}

/** One sensor's compiled chain. */
class Chain {
  _n: string;
  _pre: Stage[];
  _w: WindowStage | null;
  _names: string[];
  constructor(name: string, pre: Stage[], w: WindowStage | null, names: string[]) {
    this._n = name;
    this._pre = pre;
    this._w = w;
    this._names = names;
  }
}

export class Pipeline {
  /** Samples dropped because the queue was full (oldest first). */
  shed: number;
  /** Samples refused because their value was not a finite number. */
  bad: number;
  _c: { [key: string]: Chain };
  _w: WindowStage[];
  _per: number;
  _left: number;
  _qn: string[];
  _qv: Float64Array;
  _qt: Float64Array;
  _qh: number;
  _qc: number;

  constructor(chains: Chain[], samplesPerTickMax: number, queueMax: number) {
    this.shed = 0;
    this.bad = 0;
    this._c = {};
    this._w = [];
    for (var i = 0; i < chains.length; i++) {
      // '$' prefix: sensor names are plain keys, never Object.prototype's members.
      this._c['$' + chains[i]._n] = chains[i];
      if (chains[i]._w) this._w.push(chains[i]._w as WindowStage);
    }
    this._per = samplesPerTickMax;
    this._left = samplesPerTickMax;
    this._qn = [];
    this._qv = new Float64Array(queueMax);
    this._qt = new Float64Array(queueMax);
    this._qh = 0;
    this._qc = 0;
  }

  /**
   * A sample of `sensor` taken at nowMs. Processed at once while this tick's allowance lasts,
   * else queued (shedding the oldest queued sample when the queue is full). Readings emitted are
   * appended to `out` (pass one array and reuse it to avoid an allocation), which is returned.
   */
  push(sensor: string, value: number, nowMs: number, out?: Reading[]): Reading[] {
    var o = out || [];
    if (typeof value !== 'number' || !isFinite(value)) {
      this.bad++;
      return o;
    }
    if (this._qc === 0 && this._left > 0) {
      this._left--;
      this._run(sensor, value, nowMs, o);
      return o;
    }
    var cap = this._qv.length;
    if (this._qc === cap) {
      // Full: the oldest sample gives way (its slot becomes the newest).
      this._qh = (this._qh + 1) % cap;
      this._qc--;
      this.shed++;
    }
    var i = (this._qh + this._qc) % cap;
    this._qn[i] = sensor;
    this._qv[i] = value;
    this._qt[i] = nowMs;
    this._qc++;
    return o;
  }

  /**
   * Renews the processing allowance, processes queued samples (oldest first) within it, then, if
   * the queue is empty, flushes every window whose end is at or before nowMs. Returns `out`.
   */
  tick(nowMs: number, out?: Reading[]): Reading[] {
    var o = out || [];
    var cap = this._qv.length;
    var i;
    this._left = this._per;
    while (this._qc > 0 && this._left > 0) {
      i = this._qh;
      this._qh = (i + 1) % cap;
      this._qc--;
      this._left--;
      this._run(this._qn[i], this._qv[i], this._qt[i], o);
    }
    if (this._qc > 0) return o;
    for (i = 0; i < this._w.length; i++) if (this._w[i].end() <= nowMs) this._w[i].flush(this._w[i].end(), o);
    return o;
  }

  /**
   * When tick() has work: the oldest queued sample's time while any is queued (it is due, so
   * the shell should tick again soon), else the earliest window end; Infinity when neither.
   */
  nextDeadlineMs(): number {
    if (this._qc > 0) return this._qt[this._qh];
    var d = Infinity;
    for (var i = 0; i < this._w.length; i++) if (this._w[i].end() < d) d = this._w[i].end();
    return d;
  }

  /** Samples waiting in the queue. */
  pending(): number {
    return this._qc;
  }

  /** The reading names this sensor produces (for Home Assistant discovery). */
  names(sensor: string): string[] {
    var c = this._c['$' + sensor];
    return c ? c._names.slice() : [sensor];
  }

  _run(sensor: string, x: number, t: number, out: Reading[]): void {
    var c = this._c['$' + sensor];
    if (!c) {
      out.push({ n: sensor, v: x, ts: t });
      return;
    }
    var s = c._pre;
    for (var i = 0; i < s.length && x === x; i++) x = s[i].p(x, t);
    if (x !== x) return;
    if (c._w) c._w.add(x, t, out);
    else out.push({ n: c._n, v: x, ts: t });
  }
}

function isNum(v: any): boolean {
  return typeof v === 'number' && isFinite(v);
}

function isObj(v: any): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isInt(v: any, lo: number, hi: number): boolean {
  return isNum(v) && Math.floor(v) === v && v >= lo && v <= hi;
}

/** A key that must never be used as a plain property name when config objects are copied. */

/** An error text (starting with '!') for a hostile or unlisted key of o, else ''. */
function badKey(o: any, what: string, allowed: string[]): string {
  var ks = Object.keys(o);
  for (var i = 0; i < ks.length; i++) {
    if (isForbiddenKey(ks[i])) return '!key ' + ks[i] + ' is not allowed';
    if (allowed.indexOf(ks[i]) < 0) return '!unknown ' + what + ' ' + ks[i].substr(0, 20);
  }
  return '';
}

var STAGE_KINDS = ['range', 'deadband', 'rate', 'ewma', 'linear', 'round', 'window'];

/** Compiles one stage; returns the stage or an error text starting with '!'. */
function stage(kind: string, a: any): Stage | string {
  if (kind === 'range') {
    if (!Array.isArray(a) || a.length !== 2 || !isNum(a[0]) || !isNum(a[1]) || a[0] > a[1]) return '!range must be [lo, hi] with lo <= hi';
    return new RangeStage(a[0], a[1]);
  }
  if (kind === 'deadband') {
    if (!isNum(a) || a < 0) return '!deadband must be a number >= 0';
    return new DeadbandStage(a);
  }
  if (kind === 'rate') {
    if (!isObj(a)) return '!rate must be {"ms": n}';
    var k = badKey(a, 'rate option', ['ms']);
    if (k) return k;
    if (!isInt(a.ms, 1, WINDOW_MS_MAX)) return '!rate.ms must be an integer 1-' + WINDOW_MS_MAX;
    return new RateStage(a.ms);
  }
  if (kind === 'ewma') {
    if (!isNum(a) || a <= 0 || a > 1) return '!ewma must be a number in (0, 1]';
    return new EwmaStage(a);
  }
  if (kind === 'round') {
    if (!isInt(a, 0, 6)) return '!round must be an integer 0-6 (decimals)';
    return new RoundStage(POW10[a]);
  }
  if (!Array.isArray(a) || a.length !== 2 || !isNum(a[0]) || !isNum(a[1])) return '!linear must be [a, b]';
  return new LinearStage(a[0], a[1]);
}

/** An error text (starting with '!') for a window's ms and emit, else ''. */
function windowError(w: any): string {
  if (!isInt(w.ms, 1, WINDOW_MS_MAX)) return '!window.ms must be an integer 1-' + WINDOW_MS_MAX;
  var e = w.emit;
  var n = e && e.length;
  if (!Array.isArray(e) || n === 0 || n > EMIT_NAMES.length) n = -1;
  for (var j = 0; j < n; j++) {
    if (EMIT_NAMES.indexOf(e[j]) < 0) n = -1;
    else if (e.indexOf(e[j]) !== j) return '!window.emit repeats ' + e[j];
  }
  return n < 0 ? '!window.emit must list 1-4 of ' + EMIT_NAMES.join(', ') : '';
}

/** Compiles one sensor's chain; returns it or an error text starting with '!'. */
function chain(name: string, list: any, stagesMax: number): Chain | string {
  if (!Array.isArray(list)) return '!must be an array of stages';
  if (list.length > stagesMax) return '!more than ' + stagesMax + ' stages';
  var pre: Stage[] = [];
  var post: Stage[] = [];
  var win: any = null;
  var i, j, kind, st, w, err: string;
  for (i = 0; i < list.length; i++) {
    st = list[i];
    err = isObj(st) ? badKey(st, 'stage', STAGE_KINDS) : '!a stage must be an object';
    if (!err && Object.keys(st).length !== 1) err = '!stage must have exactly one key';
    kind = err ? '' : Object.keys(st)[0];
    if (kind === 'window') {
      w = st.window;
      if (win) err = '!at most one window per sensor';
      else if (!isObj(w)) err = '!window must be {"ms": n, "emit": [...]}';
      else err = badKey(w, 'window option', ['ms', 'emit']) || windowError(w);
      win = w;
    } else if (kind) {
      st = stage(kind, st[kind]);
      if (typeof st === 'string') err = st;
      else (win ? post : pre).push(st);
    }
    if (err) return '[' + i + ']: ' + err.substr(1);
  }
  if (!win) return new Chain(name, pre, null, [name]);
  // Stages after the window: the raw specs are compiled again per emitted kind so each kind
  // gets its own state (a deadband on the mean must not remember the max).
  var kinds: number[] = [];
  var names: string[] = [];
  var posts: Stage[][] = [];
  var after = list.length - post.length;
  for (j = 0; j < win.emit.length; j++) {
    kinds.push(EMIT_NAMES.indexOf(win.emit[j]));
    names.push(win.emit.length === 1 ? name : name + '_' + win.emit[j]);
    var p: Stage[] = [];
    for (i = after; i < list.length; i++) {
      kind = Object.keys(list[i])[0];
      p.push(stage(kind, list[i][kind]) as Stage);
    }
    posts.push(p);
  }
  return new Chain(name, pre, new WindowStage(win.ms, kinds, names, posts), names);
}

/**
 * Validates and compiles the config's `pipeline` object (undefined or null: no chains). Never
 * throws; returns {error} with a one-line reason naming the sensor and stage at fault.
 */
export function compilePipeline(json: unknown, opts?: PipelineOptions): Pipeline | { error: string } {
  var o = opts || {};
  var stagesMax = o.stagesMax === undefined ? STAGES_MAX : o.stagesMax;
  var sensorsMax = o.sensorsMax === undefined ? SENSORS_MAX : o.sensorsMax;
  var per = o.samplesPerTickMax === undefined ? SAMPLES_PER_TICK_MAX : o.samplesPerTickMax;
  var qmax = o.queueMax === undefined ? QUEUE_MAX : o.queueMax;
  if (!(per >= 1 && qmax >= 1)) return { error: 'pipeline: samplesPerTickMax and queueMax must be >= 1' };
  if (json === undefined || json === null) return new Pipeline([], per, qmax);
  if (!isObj(json)) return { error: 'pipeline must be an object keyed by sensor name' };
  var names = Object.keys(json as object);
  if (names.length > sensorsMax) return { error: 'pipeline: more than ' + sensorsMax + ' sensors' };
  var chains: Chain[] = [];
  for (var i = 0; i < names.length; i++) {
    var n = names[i];
    if (isForbiddenKey(n)) return { error: 'pipeline: key ' + n + ' is not allowed' };
    if (n.length === 0 || n.length > SENSOR_CHARS_MAX || !/^[-A-Za-z0-9_]+$/.test(n))
      return { error: 'pipeline: sensor name ' + n.substr(0, 20) + ' must be 1-' + SENSOR_CHARS_MAX + ' of A-Z a-z 0-9 _ -' };
    var c = chain(n, (json as any)[n], stagesMax);
    if (typeof c === 'string') return { error: 'pipeline.' + n + (c.charAt(0) === '!' ? ': ' + c.substr(1) : c) };
    chains.push(c);
  }
  return new Pipeline(chains, per, qmax);
}
