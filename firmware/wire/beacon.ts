/**
 * Discovery datagrams (INTERFACES.md "Discovery"): the beacon a device broadcasts and the offer a
 * companion answers with, built and verified by the same code on both sides.
 *
 * Wire form, one UDP datagram each, at most DATAGRAM_BYTES_MAX bytes, members in this order:
 *   beacon  {"t":"beacon","v":1,"id","kind","fw","caps":[…],"port","seq","up","mem","ts","boot","nonce","mac"}
 *   offer   {"t":"offer","v":1,"id","host","broker":{"host","port"},"epoch","ts","re","mac"}
 * `mac` is the LAST member: the lower-case hex HMAC-SHA256, under the fleet key (hex-decoded), of
 * the datagram's exact text with `,"mac":"<64 hex>"` removed, i.e. of the JSON text serialised
 * before the mac was appended. A receiver checks the suffix shape, strips it, recomputes the MAC
 * and compares in constant time BEFORE it parses anything: unauthenticated input never reaches
 * JSON.parse.
 *
 * Texts are byte Strings (chars 0-255): the device's sockets deliver them so; the host must
 * decode a datagram Buffer as 'latin1' (never utf8) so the MAC covers the bytes that travelled.
 * Every string field is restricted to ASCII, so both sides serialise the same bytes.
 *
 * Fields (additions to INTERFACES.md are marked +; the README should list them):
 *   id     device id, 1-32 of [A-Za-z0-9_-]            kind  board profile name, 1-16 of the same
 *   fw     firmware version, 1-32 of [A-Za-z0-9_.+-]   caps  0-8 capability names, each 1-16 of [A-Za-z0-9_-]
 *   port   UDP port the device listens on for offers   seq   beacons sent this boot (0, 1, 2, …)
 *   up     ms since boot on the device's monotonic clock
 *   mem    free JsVars                                 ts    device wall clock, ms since 1970; 0 while unknown
 * + boot   boots of this device (its persisted boot counter): orders beacons across reboots
 * + nonce  a fresh random integer in [0, 2^31) per beacon, drawn by OfferGate
 *   offer: id = the device the offer is for; host = the companion's node id (1-32 of [A-Za-z0-9_-]);
 *   broker = where to connect (host: 1-128 of [A-Za-z0-9_.:-], a name, IPv4 or bare IPv6); epoch =
 *   the ring epoch; ts = the companion's wall clock, ms since 1970;
 * + re     the nonce of the beacon this offer answers.
 * Integers are in [0, 2^31) (ports 1-65535); `up` and `ts` are non-negative finite numbers, since
 * epoch milliseconds pass 2^31 and Espruino prints such doubles with 12 significant digits
 * (1735689600123 may travel as 1.73568960012e12): the MAC covers whatever text was sent.
 *
 * Freshness (the MAC alone does not stop a recorded datagram from being replayed):
 * - Offers, at the device, strictly: an offer is accepted only if `re` echoes the nonce of one
 *   of the device's last OFFER_NONCES_MAX beacons, sent at most answerMs ago, and each nonce
 *   answers once (accepting an offer forgets them all). Nonces come from the runtime's Rng,
 *   seeded from hardware entropy at boot, so an offer recorded earlier (this boot or another)
 *   matches only by a 2^-31 chance per remembered nonce. See OfferGate.
 * - Beacons, at the companion: per device, (boot, seq) must increase; a device that knows the
 *   time must send a `ts` within skewMs of the companion's clock. An attacker holding old beacons
 *   cannot produce a larger (boot, seq), so replays are dropped and cannot lock a device out.
 *   A device whose boot counter went back (its Storage was erased) is accepted again once its
 *   record has been silent for forgetMs. The companion's host/discovery/beacon-window.ts.
 *
 * Peer input never throws: every verify returns {ok:true,msg} or {ok:false,reason}.
 */
import { hex, sameBytes } from '../core/hmac.js';

/** INTERFACES.md: one datagram, at most 512 bytes (fits any IPv4 path without fragmentation). */
export var DATAGRAM_BYTES_MAX = 512;
/** Device and companion ids: they travel in topics too (config.ts has the same limit). */
export var ID_CHARS_MAX = 32;
/** Board kinds and capability names: short words. */
export var NAME_CHARS_MAX = 16;
/** Version strings such as 1.2.3-rc.1+abcdef0. */
export var FW_CHARS_MAX = 32;
/** Broker host: names, IPv4, bare IPv6 (45 chars); 128 keeps the worst-case offer within 512 bytes. */
export var HOST_CHARS_MAX = 128;
/** Capabilities per beacon: keeps the worst-case beacon within 512 bytes. */
export var CAPS_MAX = 8;
/** Upper bound (exclusive) of counters, epochs and nonces: 31 bits stay an integer on the interpreter. */
export var INT_LIMIT = 2147483648;
/** Nonces an OfferGate remembers: a burst of beacons may be answered late, to any of them. */
export var OFFER_NONCES_MAX = 4;

/** `,"mac":"` + 64 hex + `"}`: the fixed tail every datagram ends with. */
var MAC_HEAD = ',"mac":"';
var MAC_TAIL_CHARS = 74;

// Character classes written for Espruino's regex engine as well as V8's: `-` first in the class
// (Espruino reads a `-` after any char as a range), `.` escaped (Espruino treats an unescaped `.`
// inside a class as "any char"), no {n,m} (absent there); lengths are checked separately.
export var NAME_RE = /^[-A-Za-z0-9_]+$/;
export var FW_RE = /^[-A-Za-z0-9_\.+]+$/;
export var HOST_RE = /^[-A-Za-z0-9_\.:]+$/;
export var HEX_RE = /^[0-9a-f]+$/;

/** HMAC-SHA256 of a byte String, 32 raw bytes out: core/hmac.ts's Hmac, or a node:crypto adapter. */
export interface Mac {
  digest(msg: string): string;
  /**
   * Optional fast path: whether hexMac (64 lower-case hex chars) is the MAC of msg, compared in
   * constant time. A host with native HMAC provides it; without it, digest() is hex-encoded and
   * compared here.
   */
  verifyHex?(msg: string, hexMac: string): boolean;
}

export interface Beacon {
  id: string;
  kind: string;
  fw: string;
  caps: string[];
  port: number;
  seq: number;
  up: number;
  mem: number;
  ts: number;
  boot: number;
  nonce: number;
}

export interface Offer {
  id: string;
  host: string;
  broker: { host: string; port: number };
  epoch: number;
  ts: number;
  re: number;
}

export type Built = { ok: true; text: string } | { ok: false; reason: string };
export type Checked<T> = { ok: true; msg: T } | { ok: false; reason: string };

function isStr(v: any, re: RegExp, max: number): boolean {
  return typeof v === 'string' && v.length > 0 && v.length <= max && re.test(v);
}

function isInt(v: any, lo: number, hi: number): boolean {
  return typeof v === 'number' && Math.floor(v) === v && v >= lo && v <= hi;
}

function isTime(v: any): boolean {
  return typeof v === 'number' && isFinite(v) && v >= 0;
}

/** The first beacon field that is invalid, or '' when all are valid. */
function badBeacon(b: any): string {
  if (!isStr(b.id, NAME_RE, ID_CHARS_MAX)) return 'id';
  if (!isStr(b.kind, NAME_RE, NAME_CHARS_MAX)) return 'kind';
  if (!isStr(b.fw, FW_RE, FW_CHARS_MAX)) return 'fw';
  var c = b.caps;
  if (!Array.isArray(c) || c.length > CAPS_MAX) return 'caps';
  for (var i = 0; i < c.length; i++) if (!isStr(c[i], NAME_RE, NAME_CHARS_MAX)) return 'caps';
  if (!isInt(b.port, 1, 65535)) return 'port';
  if (!isInt(b.seq, 0, INT_LIMIT - 1)) return 'seq';
  if (!isTime(b.up)) return 'up';
  if (!isInt(b.mem, 0, INT_LIMIT - 1)) return 'mem';
  if (!isTime(b.ts)) return 'ts';
  if (!isInt(b.boot, 0, INT_LIMIT - 1)) return 'boot';
  if (!isInt(b.nonce, 0, INT_LIMIT - 1)) return 'nonce';
  return '';
}

/** The first offer field that is invalid, or '' when all are valid. */
function badOffer(o: any): string {
  if (!isStr(o.id, NAME_RE, ID_CHARS_MAX)) return 'id';
  if (!isStr(o.host, NAME_RE, ID_CHARS_MAX)) return 'host';
  var br = o.broker;
  if (typeof br !== 'object' || br === null || Array.isArray(br)) return 'broker';
  if (!isStr(br.host, HOST_RE, HOST_CHARS_MAX)) return 'broker.host';
  if (!isInt(br.port, 1, 65535)) return 'broker.port';
  if (!isInt(o.epoch, 0, INT_LIMIT - 1)) return 'epoch';
  if (!isTime(o.ts)) return 'ts';
  if (!isInt(o.re, 0, INT_LIMIT - 1)) return 're';
  return '';
}

/** Appends the mac member to serialised JSON text. */
function seal(text: string, mac: Mac): Built {
  if (text.length + MAC_TAIL_CHARS > DATAGRAM_BYTES_MAX) return { ok: false, reason: 'size' };
  return { ok: true, text: text.substr(0, text.length - 1) + MAC_HEAD + hex(mac.digest(text)) + '"}' };
}

/** The beacon datagram for these fields, or the name of the first invalid field as the reason. */
export function buildBeacon(b: Beacon, mac: Mac): Built {
  var bad = badBeacon(b);
  if (bad) return { ok: false, reason: 'field ' + bad };
  // Member order is the wire order: JSON.stringify keeps insertion order (on Espruino too).
  return seal(
    JSON.stringify({
      t: 'beacon', v: 1, id: b.id, kind: b.kind, fw: b.fw, caps: b.caps, port: b.port, seq: b.seq,
      up: b.up, mem: b.mem, ts: b.ts, boot: b.boot, nonce: b.nonce,
    }),
    mac,
  );
}

/** The offer datagram for these fields, or the name of the first invalid field as the reason. */
export function buildOffer(o: Offer, mac: Mac): Built {
  var bad = badOffer(o);
  if (bad) return { ok: false, reason: 'field ' + bad };
  return seal(
    JSON.stringify({
      t: 'offer', v: 1, id: o.id, host: o.host, broker: { host: o.broker.host, port: o.broker.port },
      epoch: o.epoch, ts: o.ts, re: o.re,
    }),
    mac,
  );
}

/**
 * Authenticates a datagram and parses it: size, mac suffix shape, MAC (constant time), then
 * parse(). Returns the parsed object or a reason; never throws.
 */
function open(text: any, mac: Mac, t: string): { ok: true; msg: any } | { ok: false; reason: string } {
  if (typeof text !== 'string' || text.length > DATAGRAM_BYTES_MAX) return { ok: false, reason: 'size' };
  var n = text.length - MAC_TAIL_CHARS;
  if (n < 2 || text.substr(n, 8) !== MAC_HEAD || text.substr(text.length - 2) !== '"}') return { ok: false, reason: 'shape' };
  var got = text.substr(n + 8, 64);
  if (!HEX_RE.test(got)) return { ok: false, reason: 'shape' };
  var body = text.substr(0, n) + '}';
  if (!(mac.verifyHex ? mac.verifyHex(body, got) : sameBytes(hex(mac.digest(body)), got))) return { ok: false, reason: 'mac' };
  return parse(body, t);
}

/** An authenticated body: JSON, then `t` and `v`. */
function parse(body: string, t: string): { ok: true; msg: any } | { ok: false; reason: string } {
  var o: any;
  try {
    o = JSON.parse(body);
  } catch (e) {
    return { ok: false, reason: 'json' };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { ok: false, reason: 'json' };
  if (o.t !== t) return { ok: false, reason: 'type' };
  if (o.v !== 1) return { ok: false, reason: 'version' };
  return { ok: true, msg: o };
}

/** The beacon fields of an opened datagram, or the first invalid one. */
function beaconFields(r: { ok: true; msg: any } | { ok: false; reason: string }): Checked<Beacon> {
  if (!r.ok) return r;
  var b = r.msg;
  var bad = badBeacon(b);
  if (bad) return { ok: false, reason: 'field ' + bad };
  return {
    ok: true,
    msg: {
      id: b.id, kind: b.kind, fw: b.fw, caps: b.caps, port: b.port, seq: b.seq, up: b.up, mem: b.mem,
      ts: b.ts, boot: b.boot, nonce: b.nonce,
    },
  };
}

/**
 * Verifies a beacon datagram (a byte String). On success msg holds exactly the beacon fields
 * (unknown members are ignored: later versions may add some).
 */
export function verifyBeacon(text: string, mac: Mac): Checked<Beacon> {
  return beaconFields(open(text, mac, 'beacon'));
}

/**
 * The rest of verifyBeacon for a host that checked the seal itself (size, shape and MAC, on the
 * received bytes): body is the datagram up to its mac member, with `}` in its place.
 */
export function beaconFromBody(body: string): Checked<Beacon> {
  return beaconFields(parse(body, 'beacon'));
}

/** Verifies an offer datagram (a byte String). Freshness is OfferGate's job, after this. */
export function verifyOffer(text: string, mac: Mac): Checked<Offer> {
  var r = open(text, mac, 'offer');
  if (!r.ok) return r;
  var o = r.msg;
  var bad = badOffer(o);
  if (bad) return { ok: false, reason: 'field ' + bad };
  return {
    ok: true,
    msg: { id: o.id, host: o.host, broker: { host: o.broker.host, port: o.broker.port }, epoch: o.epoch, ts: o.ts, re: o.re },
  };
}

/**
 * Device side of offer freshness: remembers the nonces of its last OFFER_NONCES_MAX beacons and
 * accepts an offer only if it is for this device and echoes one of them, sent at most answerMs
 * ago. Accepting forgets every nonce, so a duplicate or a second companion's answer to the same
 * burst is refused ('unsolicited') and the device follows one offer per round of beacons.
 *
 * Order: call nonce() to get the value for a beacon BEFORE building it (so an answer that arrives
 * quickly finds it remembered); call accept() only on offers verifyOffer passed.
 */
export class OfferGate {
  _id: string;
  _ms: number;
  _n: number[];
  _t: number[];
  _i: number;

  /** id: this device's id; answerMs: how long a beacon may wait for its offer. */
  constructor(id: string, answerMs: number) {
    this._id = id;
    this._ms = answerMs;
    this._n = [];
    this._t = [];
    this._i = 0;
    this.clear();
  }

  /** Draws the nonce for the next beacon (rng: the runtime's, seeded from hardware entropy) and remembers it. */
  nonce(rng: { next(): number }, nowMs: number): number {
    var n = Math.floor(rng.next() * INT_LIMIT);
    var i = this._i;
    this._n[i] = n;
    this._t[i] = nowMs;
    this._i = (i + 1) % OFFER_NONCES_MAX;
    return n;
  }

  /** null when the offer is fresh and for us (then every nonce is forgotten); else the reason. */
  accept(o: Offer, nowMs: number): string | null {
    if (o.id !== this._id) return 'not-for-us';
    for (var i = 0; i < OFFER_NONCES_MAX; i++) {
      if (this._n[i] === o.re) {
        if (nowMs - this._t[i] > this._ms || nowMs < this._t[i]) return 'late';
        this.clear();
        return null;
      }
    }
    return 'unsolicited';
  }

  /** Forgets every nonce (also on accepting an offer). */
  clear(): void {
    for (var i = 0; i < OFFER_NONCES_MAX; i++) {
      this._n[i] = -1;
      this._t[i] = 0;
    }
  }
}
