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
 *   encodeSubscribe(id, subscription(topic, qos) + ...)                -> SUBSCRIBE
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
 *   Then the parser holds at most one incomplete packet, as p.held, and p.held.length <
 *   packetBytesMax + 5 (a fixed header is at most 5 bytes, §2.2). A packet whose remaining
 *   length exceeds packetBytesMax fails as soon as its length is read, before its body is
 *   buffered.
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
  /** Clean session (§3.1.2.4); default false: the broker keeps the session. */
  clean?: boolean;
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
 * Programmer errors throw (never peer input): a caller broke a documented limit. One helper so
 * each check costs one short call in the bundle; the hot path (encodePublish) keeps its own.
 */
export function assertArg(ok: boolean, what: string): void {
  if (!ok) throw new Error('mqtt: ' + what);
}

/**
 * Fixed header (§2.2): byte 1, the remaining length as a variable length integer (§2.2.3: 7
 * bits a byte, low first, bit 7 set on every byte but the last), then one 16-bit word that every
 * caller needs right after it (topic length, packet id, or the protocol name length; at most
 * 65535). A remaining length under 128 (every reading, every ack) takes ONE native call.
 */
function head(b1: number, rl: number, w: number): string {
  if (rl < 128) return String.fromCharCode(b1, rl, w >> 8, w & 255);
  // Over 268435455 (§2.2.3), or a PUBLISH topic over 65535 bytes (w, §1.5.3), which makes rl
  // larger than 127: checked here, off the fast path.
  assertArg(rl <= REMAINING_LENGTH_MAX && w <= STRING_BYTES_MAX, 'too long');
  var s = String.fromCharCode(b1);
  for (; rl > 127; rl >>= 7) s += String.fromCharCode((rl & 127) | 128);
  return s + String.fromCharCode(rl, w >> 8, w & 255);
}

/** A length-prefixed field (§1.5.3 strings, §3.1.3.3 binary data) of bytes b; a text field is
 * field(utf8Bytes(text)). */
function field(b: string): string {
  var n = b.length;
  assertArg(n <= STRING_BYTES_MAX, 'too long');
  return String.fromCharCode(n >> 8, n & 255) + b;
}

/** CONNECT, §3.1. Not on a hot path: readable over lean. */
export function encodeConnect(o: MqttConnect): string {
  var w = o.will;
  var u = o.username;
  var p = o.password;
  var k = ((o.keepaliveMs + 999) / 1000) | 0;
  assertArg(p == null || u != null, 'password without username'); // [MQTT-3.1.2-22]
  assertArg(k >= 0 && k <= 65535, 'keepalive'); // §3.1.2.10: 16 bits
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
  // The topic's length limit is checked by head (n is its word).
  if (qos && !(id > 0 && id <= 65535)) throw new Error('mqtt: packet id');
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

/** One SUBSCRIBE payload entry, §3.8.3: a topic filter and its requested QoS. */
export function subscription(topic: string, qos: Qos): string {
  return field(utf8Bytes(topic)) + String.fromCharCode(qos);
}

/**
 * SUBSCRIBE, §3.8: flags 0010 [MQTT-3.8.1-1]; entries is subscription() results concatenated,
 * at least one [MQTT-3.8.3-3]. (A session keeps its subscriptions as these bytes: one String,
 * not an object per filter.)
 */
export function encodeSubscribe(id: number, entries: string): string {
  assertArg(!!entries, 'no topics');
  return head(0x82, entries.length + 2, id) + entries;
}

/** UNSUBSCRIBE, §3.10: flags 0010 [MQTT-3.10.1-1], at least one filter [MQTT-3.10.3-2]. */
export function encodeUnsubscribe(id: number, topics: string[]): string {
  var body = '';
  var i = 0;
  for (; i < topics.length; i++) body += field(utf8Bytes(topics[i]));
  assertArg(i > 0, 'no topics');
  return head(0xa2, body.length + 2, id) + body;
}

// Escapes, never raw chars: the minifier keeps them escaped (ascii_only), and a raw "\xC0" in a
// UTF-8 file would reach the device as two bytes.
var PINGREQ_BYTES = '\xc0\x00';
var DISCONNECT_BYTES = '\xe0\x00';

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

/**
 * Why a stream failed (err), short for the device's RAM and flash; the session prefixes
 * 'protocol: '. T is the packet type (§2.2.1), F its flag nibble, N a remaining length:
 *   'type T'            a type a client never receives (§2.2.1)
 *   'flags F/T'         reserved flags [MQTT-2.2.2-1] [MQTT-2.2.2-2], or PUBLISH QoS 3
 *                       [MQTT-3.3.1-4] (F 6, 7, 14 or 15 with T 3)
 *   'length'            a remaining length of more than 4 bytes (§2.2.3)
 *   'size N/T'          over packetBytesMax (a PUBLISH only when its topic and id do not fit)
 *   'length N/T'        not the length the type has: 2 (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP,
 *                       UNSUBACK), 0 (PINGRESP), 3 or more (SUBACK, §3.9.3), 2 + topic + id
 *                       or more (PUBLISH)
 *   'topic'             an empty topic [MQTT-4.7.3-1], a wildcard [MQTT-3.3.2-2], U+0000
 *                       [MQTT-1.5.3-2] or ill-formed UTF-8 [MQTT-1.5.3-1]
 *   'id 0'              a PUBLISH at QoS > 0 with packet id 0 [MQTT-2.3.1-1]
 *   'CONNACK flags'     reserved acknowledge flags set (§3.2.2.1)
 *   'SUBACK code'       a reserved SUBACK return code [MQTT-3.9.3-2]
 */
export class MqttParser {
  // The packet's fields: set by next() for the type it returns, undefined before.
  /** CONNACK session present. */
  sp!: boolean;
  /** CONNACK return code. */
  rc!: number;
  qos!: number;
  dup!: boolean;
  retain!: boolean;
  /** Packet identifier (§2.3.1); 0 for a PUBLISH at QoS 0. */
  id!: number;
  topic!: string;
  payload!: string;
  /** SUBACK return codes, one char each. */
  codes!: string;
  /** Why the stream failed; '' while it is healthy. (This and the fields after it are set by
   * reset(), which the constructor calls.) */
  err!: string;
  /**
   * For a PUBLISH larger than packetBytesMax: its remaining length (0 for every other PUBLISH).
   * Its topic and packet id are read and `payload` holds only the first OVERSIZE_PREFIX_BYTES of
   * the payload; the rest is skipped as it arrives, never buffered. The connection stays usable:
   * the session acknowledges it and the owner answers it as too large, so an oversized message
   * cannot make a persistent session redeliver it at every reconnect.
   */
  over!: number;
  /** Bytes of an oversized PUBLISH still to discard. */
  _skip!: number;
  /**
   * The input held; what is not consumed yet starts at _o. After a drain (next() returned 0 or
   * -1) _o is 0 and held is exactly the next, incomplete packet's bytes so far. A plain field,
   * read only to check the buffer bound; never written from outside.
   */
  held!: string;
  _o!: number;
  /** Largest remaining length accepted: the device's RAM is the limit (a PUBLISH body is held
   * whole before it is handed over). */
  _max: number;

  constructor(packetBytesMax: number) {
    this._max = packetBytesMax;
    this.reset();
  }

  /** Forget everything (buffer and failure) for a new connection. */
  reset(): void {
    this.err = this.held = '';
    this._o = this._skip = 0;
  }

  /**
   * Appends a byte String received from the socket. Ignored once failed. Under the ORDERING
   * the buffer holds only an incomplete packet here (next() returned 0 and dropped what was
   * consumed, _o is 0): usually nothing, and then the chunk is kept as it is, not copied.
   */
  push(chunk: string): void {
    if (!this.err) this.held = this.held ? this.held + chunk : chunk;
  }

  /** The next complete packet's type (> 0), 0 when more bytes are needed, -1 when failed. */
  next(): number {
    if (this.err) return -1;
    var b = this.held;
    var n = b.length;
    var i = this._o;
    var max = this._max;
    var d = this._skip;
    if (d) {
      // The rest of an oversized PUBLISH: drop it as it comes.
      if (d > n - i) d = n - i;
      this._skip -= d;
      this._o = i += d;
    }
    if (i >= n) {
      // All consumed (the usual end of a drain): hold nothing. Inline: no extra call per data().
      this.held = '';
      this._o = 0;
      return 0;
    }
    var h = b.charCodeAt(i);
    var t = h >> 4;
    var f = h & 15;
    var q = (f >> 1) & 3;
    // Checked on the first byte, before any more input is buffered. PUBLISH flags are DUP, QoS
    // and RETAIN, QoS 3 is forbidden [MQTT-3.3.1-4]; DUP with QoS 0 breaks [MQTT-3.3.1-2], a
    // sender rule with no duty to close: tolerated. Every other type has fixed flags: 0010 for
    // PUBREL, 0000 for the rest [MQTT-2.2.2-1] [MQTT-2.2.2-2].
    if (!((CLIENT_INBOUND >> t) & 1)) return this._fail('type ' + t);
    if (t == PUBLISH ? q == 3 : f != (t == PUBREL ? 2 : 0)) return this._fail('flags ' + f + '/' + t);
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
    if (c & 128) return this._fail('length');
    // The packet's body is b[i, e); it is handed over once b[i, k) is in: all of it, or for a
    // PUBLISH over packetBytesMax its topic, packet id and the first payload bytes (the payload
    // prefix also stays within packetBytesMax, so the buffer bound holds), the rest skipped.
    var e = ++i + rl;
    var k = e;
    // Topic length, or packet id, or CONNACK flags and return code: the word every type but
    // PINGRESP starts with. Read before the body is known to be in: a missing byte reads as NaN,
    // which the bit operators turn into 0, and a word read past a short packet is never used.
    var w = (b.charCodeAt(i) << 8) | b.charCodeAt(i + 1);
    // PUBLISH: topic length, topic [MQTT-3.3.2-1], then the packet id only at QoS > 0
    // [MQTT-2.3.1-5]; its header is hd bytes.
    var hd = 2 + w + (q ? 2 : 0);
    if (rl > max) {
      // Any other type fails at once; a PUBLISH once its topic length is in, if its topic and
      // packet id alone exceed packetBytesMax.
      if (t == PUBLISH && i + 2 > n) return this._need();
      if (t != PUBLISH || hd > max) return this._fail('size ' + rl + '/' + t);
      // The payload prefix: at most OVERSIZE_PREFIX_BYTES, and header + prefix within
      // packetBytesMax (rl - hd, the whole payload, is larger than max - hd).
      k = max - hd;
      if (k > OVERSIZE_PREFIX_BYTES) k = OVERSIZE_PREFIX_BYTES;
      k += i + hd;
    }
    if (k > n) return this._need();
    // The whole packet (or its handed-over part) is in: consume it BEFORE reading fields, so a
    // field error leaves nothing. Then its length: a PUBLISH holds at least its header (§3.3.2;
    // a shorter one is truncated), a SUBACK one return code per filter, at least one (§3.9.3);
    // CONNACK (§3.2.1), PUBACK (§3.4.1), PUBREC, PUBREL, PUBCOMP and UNSUBACK (§3.11.1) have
    // exactly 2 bytes, PINGRESP none (§3.13.1).
    this._o = k;
    if (t == PUBLISH ? rl < hd : t == SUBACK ? rl < 3 : rl != (t == PINGRESP ? 0 : 2)) return this._fail('length ' + rl + '/' + t);
    if (t == PUBLISH) {
      i += 2;
      var topic = b.substring(i, (i += w));
      if (!w || (TOPIC_SUSPECT.test(topic) && (TOPIC_FORBIDDEN.test(topic) || !isUtf8Bytes(topic)))) return this._fail('topic');
      this.id = q ? (b.charCodeAt(i) << 8) | b.charCodeAt(i + 1) : 0;
      if (q && !this.id) return this._fail('id 0');
      this.qos = q;
      this.dup = f > 7; // bit 3 of the flag nibble
      this.retain = (f & 1) > 0;
      this.topic = topic;
      this.payload = b.substring(i + (q ? 2 : 0), k);
      this.over = rl > max ? rl : 0;
      this._skip = e - k;
      return t;
    }
    if (t == CONNACK) {
      // §3.2.2.1: acknowledge flags bits 7-1 are reserved 0. A refusal with session present set
      // breaks [MQTT-3.2.2-4] but is passed on: the session drops the connection on any rc != 0
      // anyway, and keeps the refusal's reason to report.
      if (w >> 9) return this._fail('CONNACK flags');
      this.sp = w >> 8 == 1;
      this.rc = w & 255;
      return t;
    }
    this.id = w;
    if (t == SUBACK) {
      this.codes = b.substring(i + 2, e);
      if (SUBACK_RESERVED.test(this.codes)) return this._fail('SUBACK code');
    }
    return t;
  }

  /** More bytes needed (or none left): keep only the unconsumed tail, so a consumed chunk is not
   * held. */
  _need(): number {
    if (this._o) {
      this.held = this.held.substring(this._o);
      this._o = 0;
    }
    return 0;
  }

  /** Protocol error: drop the input, record why, stay failed until reset(). */
  _fail(reason: string): number {
    this.reset();
    this.err = reason;
    return -1;
  }
}
