/**
 * MQTT 3.1.1 codec for the device (OASIS MQTT Version 3.1.1, 2014). Pure: no IO, no time, no
 * allocation beyond the strings it returns. The session (keepalive, in-flight window, reconnect)
 * sits on top of this API.
 *
 * BYTES. Every packet is a byte String (chars 0-255): Espruino sockets take and deliver Strings.
 * Text fields (client id, topics, user name) go through utf8Bytes (./utf8.ts): ASCII is sent as
 * it is; a string that is already UTF-8 bytes (the device) is sent as it is; UTF-16 text with
 * chars beyond Latin-1 or ill-formed as bytes (the host) is encoded. Binary fields (payloads,
 * will payload, password) must already be byte Strings: the caller encodes text payloads with
 * utf8Bytes. Received topics, payloads and codes come back as byte Strings, never decoded.
 *
 * ENCODERS (each returns one whole packet; programmer errors such as a 70000-byte topic throw):
 *   encodeConnect({ clientId, keepaliveMs, clean, will?: { topic, payload, qos, retain },
 *                   username?, password? })                            -> CONNECT
 *   encodePublish(topic, payload, qos, retain, dup, id)                -> PUBLISH (id ignored at QoS 0)
 *   encodePuback(id)                                                   -> PUBACK
 *   encodeSubscribe(id, [{ topic, qos }, ...])                         -> SUBSCRIBE
 *   encodeUnsubscribe(id, [topic, ...])                                -> UNSUBSCRIBE
 *   encodePingreq(), encodeDisconnect()                                -> PINGREQ, DISCONNECT
 *
 * PARSER (one per connection; reset() to reuse it for the next one):
 *   var p = new MqttParser(packetBytesMax);
 *   socket data:  p.push(chunk); while ((t = p.next()) > 0) { ...read p's fields... }
 *                 if (t < 0) { drop the connection; p.err says why }
 *   next() returns the packet type (CONNACK..PINGRESP, > 0) of the next complete packet, 0 when
 *   more bytes are needed, -1 once the stream broke the protocol. The failed state is sticky:
 *   later push() calls are ignored and next() keeps returning -1 until reset() [MQTT-4.8.0-1].
 *   Fields, valid until the next call of next() (only those of the returned type are meaningful):
 *     CONNACK:  sp (session present, boolean), rc (return code; 0 = accepted, §3.2.2.3)
 *     PUBLISH:  topic, payload (byte Strings), qos (0..2), dup, retain (booleans), id (QoS > 0)
 *     PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: id
 *     SUBACK:   id, codes (byte String, one char per requested filter: 0, 1, 2 or 0x80 = failure)
 *     PINGRESP: none
 *   ORDERING: call next() until it returns 0 or -1 after EVERY push(), BEFORE the next push().
 *   Then the parser holds at most one incomplete packet: pending() < packetBytesMax + 5 (a
 *   fixed header is at most 5 bytes, §2.2). A packet whose remaining length exceeds
 *   packetBytesMax fails as soon as its length is read, before its body is buffered.
 *
 * COST on the interpreter (function bodies are re-parsed per call): a QoS 1 PUBLISH encode is 2
 * JS calls (encodePublish, head) and 3 native calls; a PUBACK parse is push + next + the
 * draining next (3 JS calls) and 4 charCodeAt calls.
 */
import { NON_ASCII, isUtf8Bytes, utf8Bytes } from './utf8.js';

/** Control packet types, §2.2.1 Table 2.1. */
export const CONNECT = 1;
export const CONNACK = 2;
export const PUBLISH = 3;
export const PUBACK = 4;
export const PUBREC = 5;
export const PUBREL = 6;
export const PUBCOMP = 7;
export const SUBSCRIBE = 8;
export const SUBACK = 9;
export const UNSUBSCRIBE = 10;
export const UNSUBACK = 11;
export const PINGREQ = 12;
export const PINGRESP = 13;
export const DISCONNECT = 14;

/** The largest remaining length a 4-byte variable length integer can carry, §2.2.3. */
export const REMAINING_LENGTH_MAX = 268435455;
/** The longest string or binary field: its length prefix is 2 bytes, §1.5.3. */
export const STRING_BYTES_MAX = 65535;

export type Qos = 0 | 1 | 2;

export interface MqttWill {
  topic: string;
  /** Byte String. */
  payload: string;
  qos: Qos;
  retain: boolean;
}

export interface MqttConnect {
  clientId: string;
  /** Rounded UP to whole seconds on the wire (§3.1.2.10), so the session's own ping interval
   * never exceeds what it announced [MQTT-3.1.2-23]. 0 turns keepalive off. */
  keepaliveMs: number;
  clean: boolean;
  will?: MqttWill;
  username?: string;
  /** Byte String; needs a username [MQTT-3.1.2-22]. */
  password?: string;
}

export interface MqttSub {
  topic: string;
  qos: Qos;
}

/**
 * Fixed header (§2.2): byte 1, the remaining length as a variable length integer (§2.2.3),
 * then one 16-bit word that every caller needs right after it (topic length, packet id, or the
 * protocol name length), all in ONE native call.
 */
function head(b1: number, rl: number, w: number): string {
  var hi = (w >> 8) & 255;
  var lo = w & 255;
  if (rl < 128) return String.fromCharCode(b1, rl, hi, lo);
  if (rl < 16384) return String.fromCharCode(b1, (rl & 127) | 128, rl >> 7, hi, lo);
  if (rl < 2097152) return String.fromCharCode(b1, (rl & 127) | 128, ((rl >> 7) & 127) | 128, rl >> 14, hi, lo);
  if (rl > REMAINING_LENGTH_MAX) throw new Error('mqtt: packet over 268435455 bytes');
  return String.fromCharCode(b1, (rl & 127) | 128, ((rl >> 7) & 127) | 128, ((rl >> 14) & 127) | 128, rl >> 21, hi, lo);
}

/** A length-prefixed field (§1.5.3 strings, §3.1.3.3 binary data) of bytes b. */
function field(b: string): string {
  var n = b.length;
  if (n > STRING_BYTES_MAX) throw new Error('mqtt: field over 65535 bytes');
  return String.fromCharCode(n >> 8, n & 255) + b;
}

/** CONNECT, §3.1. Not on a hot path: readable over lean. */
export function encodeConnect(o: MqttConnect): string {
  var w = o.will;
  var u = o.username;
  var p = o.password;
  var k = ((o.keepaliveMs + 999) / 1000) | 0;
  if (p != null && u == null) throw new Error('mqtt: password without username'); // [MQTT-3.1.2-22]
  if (k < 0 || k > 65535) throw new Error('mqtt: keepalive out of range'); // §3.1.2.10: 16 bits
  // Connect flags, §3.1.2.3: bit 0 reserved 0 [MQTT-3.1.2-3]; will QoS and retain only with
  // the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13].
  var flags =
    (o.clean ? 2 : 0) |
    (w ? 4 | (w.qos << 3) | (w.retain ? 32 : 0) : 0) |
    (p != null ? 64 : 0) |
    (u != null ? 128 : 0);
  // Protocol name "MQTT" (its length 4 rides in head), level 4 (§3.1.2.2), flags, keepalive,
  // then the payload in the order of [MQTT-3.1.3-1]: client id, will topic, will message,
  // user name, password.
  var body =
    'MQTT' +
    String.fromCharCode(4, flags, k >> 8, k & 255) +
    field(utf8Bytes(o.clientId)) +
    (w ? field(utf8Bytes(w.topic)) + field(w.payload) : '') +
    (u != null ? field(utf8Bytes(u)) : '') +
    (p != null ? field(p) : '');
  return head(0x10, body.length + 2, 4) + body;
}

/**
 * PUBLISH, §3.3. The hot path: the topic's ASCII test is inlined, the header, the remaining
 * length and the topic length come from one native call. payload is a byte String. id must be
 * 1..65535 when qos > 0 [MQTT-2.3.1-1] and is left out at QoS 0 [MQTT-2.3.1-5]; dup is cleared
 * at QoS 0 [MQTT-3.3.1-2].
 */
export function encodePublish(topic: string, payload: string, qos: Qos, retain: boolean, dup: boolean, id: number): string {
  var t = NON_ASCII.test(topic) ? utf8Bytes(topic) : topic;
  var n = t.length;
  if (n > STRING_BYTES_MAX) throw new Error('mqtt: topic over 65535 bytes');
  if (qos && !(id > 0 && id <= 65535)) throw new Error('mqtt: packet id out of range');
  return (
    head(48 | (dup && qos ? 8 : 0) | (qos << 1) | (retain ? 1 : 0), n + (qos ? 4 : 2) + payload.length, n) +
    t +
    (qos ? String.fromCharCode(id >> 8, id & 255) : '') +
    payload
  );
}

/** PUBACK, §3.4: fixed header 0x40, remaining length 2, packet id. */
export function encodePuback(id: number): string {
  return String.fromCharCode(64, 2, id >> 8, id & 255);
}

/** SUBSCRIBE, §3.8: flags 0010 [MQTT-3.8.1-1], at least one filter [MQTT-3.8.3-3]. */
export function encodeSubscribe(id: number, subs: MqttSub[]): string {
  var body = '';
  var i = 0;
  for (; i < subs.length; i++) body += field(utf8Bytes(subs[i].topic)) + String.fromCharCode(subs[i].qos);
  if (!i) throw new Error('mqtt: subscribe without topics');
  return head(0x82, body.length + 2, id) + body;
}

/** UNSUBSCRIBE, §3.10: flags 0010 [MQTT-3.10.1-1], at least one filter [MQTT-3.10.3-2]. */
export function encodeUnsubscribe(id: number, topics: string[]): string {
  var body = '';
  var i = 0;
  for (; i < topics.length; i++) body += field(utf8Bytes(topics[i]));
  if (!i) throw new Error('mqtt: unsubscribe without topics');
  return head(0xa2, body.length + 2, id) + body;
}

// Built with fromCharCode, never as literals: the minifier writes non-ASCII chars raw, and a raw
// "\xC0" in a UTF-8 file would reach the device as two bytes.
var PINGREQ_BYTES = String.fromCharCode(0xc0, 0);
var DISCONNECT_BYTES = String.fromCharCode(0xe0, 0);

/** PINGREQ, §3.12. */
export function encodePingreq(): string {
  return PINGREQ_BYTES;
}

/** DISCONNECT, §3.14. */
export function encodeDisconnect(): string {
  return DISCONNECT_BYTES;
}

/**
 * Types a client may receive (bit t set): CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP,
 * SUBACK, UNSUBACK, PINGRESP. CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and DISCONNECT only flow
 * client to server, 0 and 15 are reserved (§2.2.1 Table 2.1).
 */
var CLIENT_INBOUND = 0x2afc;

/** Payload bytes of an oversized PUBLISH handed over: enough for a request's id (see over). */
export var OVERSIZE_PREFIX_BYTES = 96;

/** A received topic name needs a second look: a wildcard [MQTT-3.3.2-2], U+0000
 * [MQTT-1.5.3-2], or a byte above 0x7F that must form well-formed UTF-8 [MQTT-1.5.3-1]. */
var TOPIC_SUSPECT = /[#+\x00\x80-\xff]/;
var TOPIC_FORBIDDEN = /[#+\x00]/;
/** SUBACK return codes other than 0x00, 0x01, 0x02 and 0x80 are reserved [MQTT-3.9.3-2]. */
var SUBACK_RESERVED = /[^\x00-\x02\x80]/;

export class MqttParser {
  /** CONNACK session present. */
  sp: boolean;
  /** CONNACK return code. */
  rc: number;
  qos: number;
  dup: boolean;
  retain: boolean;
  /** Packet identifier (§2.3.1). */
  id: number;
  topic: string;
  payload: string;
  /** SUBACK return codes, one char each. */
  codes: string;
  /** Why the stream failed; '' while it is healthy. */
  err: string;
  /**
   * For a PUBLISH larger than packetBytesMax: its remaining length (0 for every other packet).
   * Its topic and packet id are read and `payload` holds only the first OVERSIZE_PREFIX_BYTES of
   * the payload; the rest is skipped as it arrives, never buffered. The connection stays usable:
   * the session acknowledges it and the owner answers it as too large, so an oversized message
   * cannot make a persistent session redeliver it at every reconnect.
   */
  over: number;
  /** Bytes of an oversized PUBLISH still to discard. */
  _skip: number;
  /** Input not yet consumed starts at _o. */
  _b: string;
  _o: number;
  /** Largest remaining length accepted: the device's RAM is the limit (a PUBLISH body is held
   * whole before it is handed over). */
  _max: number;

  constructor(packetBytesMax: number) {
    this._max = packetBytesMax;
    this.sp = this.dup = this.retain = false;
    this.rc = this.qos = this.id = 0;
    this.topic = this.payload = this.codes = '';
    this.err = this._b = '';
    this._o = this.over = this._skip = 0;
  }

  /** Forget everything (buffer and failure) for a new connection. */
  reset(): void {
    this.err = this._b = '';
    this._o = this.over = this._skip = 0;
  }

  /** Bytes held: the unconsumed input. */
  pending(): number {
    return this._b.length - this._o;
  }

  /** Appends a byte String received from the socket. Ignored once failed. */
  push(chunk: string): void {
    if (this.err) return;
    var b = this._b;
    var o = this._o;
    // Usually everything was consumed (next() then empties _b) and the chunk is kept as it is.
    this._b = o < b.length ? (o ? b.substring(o) : b) + chunk : chunk;
    this._o = 0;
  }

  /** The next complete packet's type (> 0), 0 when more bytes are needed, -1 when failed. */
  next(): number {
    if (this.err) return -1;
    var b = this._b;
    var n = b.length;
    var i = this._o;
    if (this._skip) {
      // The rest of an oversized PUBLISH: drop it as it comes.
      var d = n - i < this._skip ? n - i : this._skip;
      this._skip -= d;
      i += d;
      this._o = i;
    }
    if (i >= n) {
      if (n) this._b = '';
      this._o = 0;
      return 0;
    }
    var h = b.charCodeAt(i);
    var t = h >> 4;
    var f = h & 15;
    // Checked on the first byte, before any more input is buffered.
    if (!((CLIENT_INBOUND >> t) & 1)) return this._fail('packet type ' + t + ' not sent to a client');
    if (t == PUBLISH) {
      if ((f & 6) == 6) return this._fail('PUBLISH with QoS 3'); // [MQTT-3.3.1-4]
      // DUP with QoS 0 breaks [MQTT-3.3.1-2], a sender rule with no duty to close: tolerated.
    } else if (f != (t == PUBREL ? 2 : 0)) {
      return this._fail('reserved flags ' + f + ' in packet type ' + t); // [MQTT-2.2.2-1] [MQTT-2.2.2-2]
    }
    // Remaining length, §2.2.3: 7 bits a byte, low first, at most 4 bytes.
    var rl = 0;
    var s = 0;
    var c: number;
    do {
      if (++i >= n) return this._need();
      c = b.charCodeAt(i);
      rl |= (c & 127) << s;
      s += 7;
    } while (c & 128 && s < 28);
    if (c & 128) return this._fail('remaining length over 4 bytes'); // §2.2.3
    if (rl > this._max) {
      if (t != PUBLISH) return this._fail('packet of ' + rl + ' bytes over packetBytesMax');
      return this._oversized(b, n, i + 1, rl, (f >> 1) & 3, f);
    }
    var e = ++i + rl;
    if (e > n) return this._need();
    // The whole packet is in: consume it BEFORE reading fields, so a field error leaves nothing.
    this._o = e;
    if (t == PUBLISH) {
      var q = (f >> 1) & 3;
      // Topic length, topic [MQTT-3.3.2-1], then the packet id only at QoS > 0 [MQTT-2.3.1-5].
      s = (b.charCodeAt(i) << 8) | b.charCodeAt(i + 1);
      i += 2;
      if (rl < 2 || i + s + (q ? 2 : 0) > e) return this._fail('PUBLISH truncated');
      var topic = b.substring(i, (i += s));
      if (!s) return this._fail('PUBLISH with empty topic'); // [MQTT-4.7.3-1]
      if (TOPIC_SUSPECT.test(topic) && (TOPIC_FORBIDDEN.test(topic) || !isUtf8Bytes(topic))) {
        return this._fail('PUBLISH topic with wildcard, U+0000 or bad UTF-8'); // [MQTT-3.3.2-2] [MQTT-1.5.3-1] [MQTT-1.5.3-2]
      }
      if (q) {
        this.id = (b.charCodeAt(i) << 8) | b.charCodeAt(i + 1);
        i += 2;
        if (!this.id) return this._fail('PUBLISH with packet id 0'); // [MQTT-2.3.1-1]
      }
      this.qos = q;
      this.dup = (f & 8) > 0;
      this.retain = (f & 1) > 0;
      this.topic = topic;
      this.payload = b.substring(i, e);
      this.over = 0;
      return t;
    }
    if (t == PINGRESP) {
      if (rl) return this._fail('PINGRESP with a body'); // §3.13.1: remaining length 0
      return t;
    }
    // Every other type starts with two bytes: packet id, or CONNACK flags and return code.
    if (rl < 2) return this._fail('packet type ' + t + ' truncated');
    s = (b.charCodeAt(i) << 8) | b.charCodeAt(i + 1);
    if (t == SUBACK) {
      // §3.9.3: one return code per filter, at least one.
      if (rl < 3) return this._fail('SUBACK without return codes');
      var codes = b.substring(i + 2, e);
      if (SUBACK_RESERVED.test(codes)) return this._fail('SUBACK with a reserved return code'); // [MQTT-3.9.3-2]
      this.id = s;
      this.codes = codes;
      return t;
    }
    // CONNACK (§3.2.1), PUBACK (§3.4.1), PUBREC, PUBREL, PUBCOMP, UNSUBACK (§3.11.1): exactly 2.
    if (rl != 2) return this._fail('packet type ' + t + ' with remaining length ' + rl + ', not 2');
    if (t == CONNACK) {
      // §3.2.2.1: acknowledge flags bits 7-1 are reserved 0. A refusal with session present set
      // breaks [MQTT-3.2.2-4] but is passed on: the session drops the connection on any rc != 0
      // anyway, and keeps the refusal's reason to report.
      if (s >> 9) return this._fail('CONNACK with reserved flags set');
      this.sp = s >> 8 == 1;
      this.rc = s & 255;
      return t;
    }
    this.id = s;
    return t;
  }

  /** More bytes needed: keep only the unconsumed tail, so a consumed chunk is not held. */
  /**
   * A PUBLISH of remaining length rl over packetBytesMax, whose body starts at i: waits for its
   * topic and packet id (which must fit packetBytesMax), then hands it over with `over` set and
   * the first OVERSIZE_PREFIX_BYTES of its payload, and skips the rest.
   */
  _oversized(b: string, n: number, i: number, rl: number, q: number, f: number): number {
    if (i + 2 > n) return this._need();
    var s = (b.charCodeAt(i) << 8) | b.charCodeAt(i + 1);
    var head = 2 + s + (q ? 2 : 0);
    if (head > this._max || head > rl) return this._fail('PUBLISH of ' + rl + ' bytes with a ' + s + '-byte topic');
    // The prefix also stays within packetBytesMax, so the buffer bound holds here too.
    var pre = rl - head;
    if (pre > OVERSIZE_PREFIX_BYTES) pre = OVERSIZE_PREFIX_BYTES;
    if (pre > this._max - head) pre = this._max - head;
    var want = i + head + pre;
    if (want > n) return this._need();
    var j = i + 2;
    var topic = b.substring(j, (j += s));
    if (!s || (TOPIC_SUSPECT.test(topic) && (TOPIC_FORBIDDEN.test(topic) || !isUtf8Bytes(topic)))) {
      return this._fail('PUBLISH with an empty or invalid topic');
    }
    this.id = 0;
    if (q) {
      this.id = (b.charCodeAt(j) << 8) | b.charCodeAt(j + 1);
      j += 2;
      if (!this.id) return this._fail('PUBLISH with packet id 0'); // [MQTT-2.3.1-1]
    }
    this.qos = q;
    this.dup = (f & 8) > 0;
    this.retain = (f & 1) > 0;
    this.topic = topic;
    this.payload = b.substring(j, want);
    this.over = rl;
    // Consumed so far: up to want; the rest of the packet is skipped by next().
    this._skip = i + rl - want;
    this._o = want;
    return PUBLISH;
  }

  _need(): number {
    if (this._o) {
      this._b = this._b.substring(this._o);
      this._o = 0;
    }
    return 0;
  }

  /** Protocol error: record why, drop the input, stay failed until reset(). */
  _fail(reason: string): number {
    this.err = reason;
    this._b = '';
    this._o = 0;
    return -1;
  }
}
