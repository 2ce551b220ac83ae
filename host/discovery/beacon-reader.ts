/**
 * The discovery listener's body reader: the beacon of a sealed datagram, read in one pass over the
 * body when it has the exact form every device writes (firmware/wire/beacon.ts buildBeacon:
 * members in wire order, no white space, strings of their field's characters only); null for any
 * other text, which then takes the general path (JSON.parse, then beaconFromBody's checks).
 *
 * WHY. In the listener, between receive calls, JSON.parse plus the field checks cost about 4.7 us a
 * beacon (measured by the companion bench with the checks switched off one by one), as much as
 * receiving the datagram. This reader builds the same object with charCodeAt and substring only.
 *
 * SAME VERDICTS, by construction and checked by test/unit/host/discovery/beacon-reader.test.ts:
 * the reader accepts a subset of the texts the general path accepts, and for those it returns the
 * same fields. A string of a field's own characters has no quote and no escape, so it decodes to
 * itself; a number token is checked against the JSON grammar and converted as JSON.parse converts
 * it (digits up to 15 exactly, anything longer or with a fraction or exponent by Number(), which
 * rounds the same way). Every field then meets beaconFromBody's rules, or the reader returns null
 * and the general path gives the reason. It never rejects anything itself.
 */
import { CAPS_MAX, FW_CHARS_MAX, ID_CHARS_MAX, INT_LIMIT, NAME_CHARS_MAX, type Beacon } from '../../firmware/wire/beacon.js';

const HEAD = '{"t":"beacon","v":1,"id":"';
const QUOTE = 0x22;
const COMMA = 0x2c;
const BRACKET_CLOSE = 0x5d;

/** Character classes of firmware/wire/beacon.ts: NAME_RE [-A-Za-z0-9_], FW_RE adds `.` and `+`. */
const NAME = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/^[-A-Za-z0-9_]$/.test(ch)) NAME[c] = 2 | 1;
  else if (ch === '.' || ch === '+') NAME[c] = 2;
}
const IN_NAME = 1;
const IN_FW = 2;

/** JSON's number grammar (RFC 8259 §6) without the sign: the reader takes no negative number. */
const NUMBER_RE = /^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$/;

/** Where the last read ended (the reader's cursor; the module is single-threaded and not re-entrant). */
let at = 0;

/** The end of a string of class cls starting at p, 1..max chars long and closed by `"`; -1 otherwise. */
function strEnd(s: string, p: number, cls: number, max: number): number {
  let i = p;
  const lim = Math.min(s.length, p + max + 1);
  for (; i < lim; i++) {
    const c = s.charCodeAt(i);
    if (c === QUOTE) break;
    if (c >= 128 || (NAME[c] & cls) === 0) return -1;
  }
  if (i === p || i >= lim) return -1;
  return i;
}

/** The number token at p, non-negative (NaN when there is none, or JSON would not take it); sets `at`. */
function num(s: string, p: number): number {
  let i = p;
  let v = 0;
  let c = s.charCodeAt(i);
  while (c >= 0x30 && c <= 0x39) {
    v = v * 10 + (c - 0x30);
    c = s.charCodeAt(++i);
  }
  const digits = i - p;
  if (digits === 0) return NaN;
  if (c === 0x2e || c === 0x65 || c === 0x45) {
    // A fraction or an exponent (an interpreter prints large doubles so: 1.73568960012e12).
    while (c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d || (c >= 0x30 && c <= 0x39)) c = s.charCodeAt(++i);
    const token = s.substring(p, i);
    if (!NUMBER_RE.test(token)) return NaN;
    at = i;
    return Number(token);
  }
  // JSON has no leading zeros; past 15 digits the sum above may round differently from JSON.parse.
  if (digits > 1 && s.charCodeAt(p) === 0x30) return NaN;
  at = i;
  return digits > 15 ? Number(s.substring(p, i)) : v;
}

/** An integer member value in [lo, hi] at p (see num); -1 when not. */
function int(s: string, p: number, lo: number, hi: number): number {
  const v = num(s, p);
  return Math.floor(v) === v && v >= lo && v <= hi ? v : -1;
}

/** A time member value (finite, >= 0) at p; -1 when not. */
function time(s: string, p: number): number {
  const v = num(s, p);
  return isFinite(v) ? v : -1;
}

/** Whether s continues at p with the member name lit (`,"name":`); advances `at` past it. */
function key(s: string, p: number, lit: string): boolean {
  if (!s.startsWith(lit, p)) return false;
  at = p + lit.length;
  return true;
}

/**
 * The beacon in body, the datagram's text up to its `,"mac":…` member (without the closing
 * brace), when body has the devices' exact form and every field is valid; otherwise null.
 */
export function readBeacon(body: string): Beacon | null {
  if (!body.startsWith(HEAD)) return null;
  let p = HEAD.length;
  let e = strEnd(body, p, IN_NAME, ID_CHARS_MAX);
  if (e < 0) return null;
  const id = body.substring(p, e);
  if (!key(body, e + 1, ',"kind":"')) return null;
  p = at;
  e = strEnd(body, p, IN_NAME, NAME_CHARS_MAX);
  if (e < 0) return null;
  const kind = body.substring(p, e);
  if (!key(body, e + 1, ',"fw":"')) return null;
  p = at;
  e = strEnd(body, p, IN_FW, FW_CHARS_MAX);
  if (e < 0) return null;
  const fw = body.substring(p, e);
  if (!key(body, e + 1, ',"caps":[')) return null;
  p = at;
  const caps: string[] = [];
  if (body.charCodeAt(p) === BRACKET_CLOSE) p++;
  else {
    for (;;) {
      if (body.charCodeAt(p) !== QUOTE || caps.length === CAPS_MAX) return null;
      e = strEnd(body, p + 1, IN_NAME, NAME_CHARS_MAX);
      if (e < 0) return null;
      caps.push(body.substring(p + 1, e));
      const c = body.charCodeAt(e + 1);
      p = e + 2;
      if (c === BRACKET_CLOSE) break;
      if (c !== COMMA) return null;
    }
  }
  if (!key(body, p, ',"port":')) return null;
  const port = int(body, at, 1, 65535);
  if (port < 0 || !key(body, at, ',"seq":')) return null;
  const seq = int(body, at, 0, INT_LIMIT - 1);
  if (seq < 0 || !key(body, at, ',"up":')) return null;
  const up = time(body, at);
  if (up < 0 || !key(body, at, ',"mem":')) return null;
  const mem = int(body, at, 0, INT_LIMIT - 1);
  if (mem < 0 || !key(body, at, ',"ts":')) return null;
  const ts = time(body, at);
  if (ts < 0 || !key(body, at, ',"boot":')) return null;
  const boot = int(body, at, 0, INT_LIMIT - 1);
  if (boot < 0 || !key(body, at, ',"nonce":')) return null;
  const nonce = int(body, at, 0, INT_LIMIT - 1);
  if (nonce < 0 || at !== body.length) return null;
  // The member order of beaconFromBody's result, so both paths make objects of one shape.
  return { id, kind, fw, caps, port, seq, up, mem, ts, boot, nonce };
}
