/**
 * The device's request-response endpoint: requests arrive on `espfleet/<id>/rpc/req` as
 * {"id","m","p","dl"} and are answered on `rpc/res` with {"id","r":…} or {"id","e":{code,msg}}.
 *
 * Only the fixed table of handlers below runs, each checking its arguments; nothing received
 * reaches eval, new Function or the console. A request that is too large, too deeply nested,
 * not JSON, carries __proto__/constructor/prototype keys, names an unknown method or has bad
 * arguments gets an error reply and changes nothing. The AnswerCache makes a retried request
 * (same id) answered, not executed twice; a request past its deadline `dl` (the companion's wall
 * clock, ms) is dropped: nobody waits for its answer.
 */
import { isForbiddenKey } from '../core/keys.js';
import { AnswerCache, ANSWER_BUSY, ANSWER_EXPIRED, ANSWER_INVALID, ANSWER_PENDING, ANSWER_REPLAY } from '../core/request-response.js';

/** Requests larger than this are refused unparsed: a request is a method name and small params. */
export var REQUEST_BYTES_MAX = 1024;
/** Nesting deeper than this is refused unparsed: parsing recursion costs stack on the device. */
export var NESTING_MAX = 8;
/** Recent answers kept for retries (each holds its reply text in RAM). */
export var ANSWERS_MAX = 4;

/** What the handlers may do to the device: implemented by the device shell. */
export interface RpcHost {
  info(): object;
  /** A sensor's value now, or an error message. */
  read(sensor: string): { v: number } | { e: string };
  /** Replaces a sensor's pipeline; null when done, else why not. */
  setPipeline(sensor: string, spec: unknown): string | null;
  config(): object;
  /** Validates, persists and applies a config; null when done, else why not. */
  setConfig(config: unknown): string | null;
  /** Drives a pin the config allows; null when done, else why not. */
  gpioWrite(pin: string, value: boolean): string | null;
  /** Reboots after the reply has been sent. */
  reboot(): void;
}

export var E_BAD_REQUEST = 'bad_request';
export var E_UNKNOWN_METHOD = 'unknown_method';
export var E_BAD_PARAMS = 'bad_params';
export var E_BUSY = 'busy';
export var E_FAILED = 'failed';

export class RpcServer {
  served: number;
  refused: number;
  _host: RpcHost;
  _cache: AnswerCache;

  constructor(host: RpcHost) {
    this._host = host;
    this._cache = new AnswerCache({ answersMax: ANSWERS_MAX });
    this.served = 0;
    this.refused = 0;
  }

  /**
   * Handles one request payload (a byte String) received at wall-clock nowMs. Returns the reply
   * text to publish, or null when nothing should be sent (duplicate in flight, expired).
   */
  handle(payload: string, nowMs: number): string | null {
    if (payload.length > REQUEST_BYTES_MAX) return this._refuse('', E_BAD_REQUEST, 'request over ' + REQUEST_BYTES_MAX + ' bytes');
    // An upper bound on nesting, by native split: no parse, no per-char loop.
    if (payload.split('{').length + payload.split('[').length - 2 > NESTING_MAX * 4 && depth(payload) > NESTING_MAX) {
      return this._refuse('', E_BAD_REQUEST, 'nested deeper than ' + NESTING_MAX);
    }
    var req: any;
    try {
      req = JSON.parse(payload);
    } catch (e) {
      return this._refuse('', E_BAD_REQUEST, 'not JSON');
    }
    if (typeof req !== 'object' || req === null || req instanceof Array) return this._refuse('', E_BAD_REQUEST, 'not an object');
    var id = typeof req.id === 'string' ? req.id : '';
    if (hostile(req, 0)) return this._refuse(id, E_BAD_REQUEST, 'forbidden key');
    var d = this._cache.begin(req.id, req.dl, nowMs);
    if (d === ANSWER_REPLAY) return this._cache.answer;
    if (d === ANSWER_PENDING || d === ANSWER_EXPIRED) return null;
    if (d === ANSWER_INVALID) return this._refuse(id, E_BAD_REQUEST, 'id must be a string of 1-64 chars, dl a number');
    if (d === ANSWER_BUSY) return this._refuse(id, E_BUSY, 'too many requests at once');
    var reply: string;
    var after: (() => void) | null = null;
    var r = this._run(req.m, req.p === undefined ? {} : req.p);
    if (r.e !== undefined) reply = JSON.stringify({ id: id, e: { code: r.code, msg: r.e } });
    else reply = JSON.stringify({ id: id, r: r.r });
    if (r.reboot) after = r.reboot;
    this._cache.finish(id, reply);
    this.served++;
    if (after) after();
    return reply;
  }

  /**
   * A request the MQTT layer could not hold (over its packet limit): only its first bytes are
   * here. Answers bad_request with the request's id when those bytes show one (the companion's
   * client puts `id` first), so the caller learns at once instead of timing out.
   */
  tooLarge(prefix: string, bytes: number): string {
    var id = '';
    var k = prefix.indexOf('"id":"');
    if (k >= 0) {
      var end = prefix.indexOf('"', k + 6);
      var cand = end > 0 ? prefix.substring(k + 6, end) : '';
      if (cand.length <= 64 && cand.indexOf('\\') < 0) id = cand;
    }
    return this._refuse(id, E_BAD_REQUEST, 'request of ' + bytes + ' bytes over ' + REQUEST_BYTES_MAX);
  }

  _refuse(id: string, code: string, msg: string): string {
    this.refused++;
    return JSON.stringify({ id: id, e: { code: code, msg: msg } });
  }

  _run(m: any, p: any): { r?: any; e?: string; code?: string; reboot?: () => void } {
    var h = this._host;
    if (typeof p !== 'object' || p === null || p instanceof Array) return bad('params must be an object');
    switch (m) {
      case 'ping':
        return { r: 'pong' };
      case 'info':
        return { r: h.info() };
      case 'read': {
        if (typeof p.sensor !== 'string') return bad('sensor must be a sensor name');
        var v = h.read(p.sensor);
        return (v as { e: string }).e !== undefined ? bad((v as { e: string }).e) : { r: (v as { v: number }).v };
      }
      case 'pipeline.set': {
        if (typeof p.sensor !== 'string') return bad('sensor must be a sensor name');
        if (!(p.stages instanceof Array)) return bad('stages must be an array');
        var pe = h.setPipeline(p.sensor, p.stages);
        return pe ? bad(pe) : { r: true };
      }
      case 'config.get':
        return { r: h.config() };
      case 'config.set': {
        if (typeof p.config !== 'object' || p.config === null) return bad('config must be an object');
        var ce = h.setConfig(p.config);
        return ce ? bad(ce) : { r: true };
      }
      case 'gpio.write': {
        if (typeof p.pin !== 'string' || typeof p.value !== 'boolean') return bad('pin must be a pin name and value true or false');
        var ge = h.gpioWrite(p.pin, p.value);
        return ge ? bad(ge) : { r: true };
      }
      case 'reboot':
        return {
          r: true,
          reboot: function () {
            h.reboot();
          },
        };
      default:
        return { e: typeof m === 'string' ? 'no method ' + m.substr(0, 32) : 'm must be a method name', code: E_UNKNOWN_METHOD };
    }
  }
}

function bad(msg: string): { e: string; code: string } {
  return { e: msg, code: E_BAD_PARAMS };
}

/** The deepest nesting of {…} and […] outside strings. */
function depth(s: string): number {
  var d = 0;
  var max = 0;
  var q = false;
  for (var i = 0; i < s.length; i++) {
    var c = s.charCodeAt(i);
    if (q) {
      if (c === 92) i++;
      else if (c === 34) q = false;
    } else if (c === 34) q = true;
    else if (c === 123 || c === 91) {
      if (++d > max) max = d;
    } else if (c === 125 || c === 93) d--;
  }
  return max;
}

/** Whether any key at any depth is __proto__, constructor or prototype. */
export function hostile(o: any, level: number): boolean {
  if (typeof o !== 'object' || o === null) return false;
  if (level > NESTING_MAX) return true;
  for (var k in o) {
    if (isForbiddenKey(k)) return true;
    if (hostile(o[k], level + 1)) return true;
  }
  return false;
}
