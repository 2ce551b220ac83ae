/**
 * MQTT 3.1.1 client session for the device, as a pure state machine: no socket, no timer, no
 * clock. The shell feeds it events and time; it answers with one batched output String, handler
 * calls and the next deadline. Packets come from ../wire/mqtt-codec.ts.
 *
 * DRIVING IT (the shell owns the TCP socket and the board timer):
 *   s.connected(now)        TCP is up: CONNECT is queued (clean session off, will, credentials)
 *   s.data(bytes, now)      bytes from the socket, any split
 *   s.tick(now)             at s.deadline(): CONNACK timeout, PINGREQ, silent-broker watchdog
 *   reason = s.closed(now)  the socket is gone (whoever closed it); returns why, for the supervisor
 *   id = s.publish(topic, payload, qos, retain, tag)
 *   s.subscribe(topic, qos)
 * AFTER every call: write s.takeOutput() to the socket in ONE write (when not ''), then, if
 * s.closeReason is set, close the socket and call s.closed(now). BEFORE connecting again, the
 * previous socket must have been reported with closed().
 *
 * HANDLER (an object with methods, so no closure is made per message); each call is made AFTER
 * the session's own state is updated, so a handler may call publish() from inside it:
 *   onUp(sessionPresent)             CONNACK accepted (§3.2.2.2)
 *   onAck(id, tag)                   PUBACK for our QoS 1 publish id; tag is publish()'s tag
 *   onMessage(topic, payload, qos, retain, over)   an inbound PUBLISH (byte Strings, never
 *                                    decoded); over > 0 for one larger than packetBytesMax
 *
 * IN-FLIGHT WINDOW. A QoS 1 publish stays in the window, as its encoded bytes, until its PUBACK;
 * at most inflightMax at a time (publish() returns PUBLISH_FULL beyond). The window survives a
 * reconnect (not a reboot: the outbox covers that). On CONNACK:
 *   - session present: every message already sent goes again with DUP set and its original
 *     packet id, in the original order [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.6.0-1];
 *   - no session: the broker forgot them, so they go again as new publishes (DUP clear);
 *   - messages published while down go for the first time (DUP clear).
 * The bytes are re-sent unchanged, payload included: a re-delivery carries the same message.
 * Packet ids run 1..65535 and wrap, never 0 [MQTT-2.3.1-1], never one still in flight or
 * awaiting its SUBACK [MQTT-2.3.1-2].
 *
 * SUBSCRIPTIONS are part of the session: subscribe() records them (at most SUBS_MAX) and sends
 * them when up; they are sent again after a CONNACK without a session, and after the first
 * CONNACK of a boot even with one (re-subscribing is idempotent, [MQTT-3.8.4-3]).
 *
 * KEEPALIVE (§3.1.2.10) with K = keepaliveMs (announced rounded up to whole seconds, so K never
 * exceeds what the broker was told):
 *   - a PINGREQ goes at min(lastSent, lastReceived) + K when none is outstanding: we never stay
 *     silent for K [MQTT-3.1.2-23], and a link that only sends still hears from the broker;
 *   - SILENT-BROKER WATCHDOG: nothing received for 1.5 K closes the connection ('silent'). The
 *     ping goes at the latest K after the last packet received, so a healthy broker always has
 *     K/2 to answer, and a broker that goes quiet at time t is detected by t + 1.5 K.
 *   - CONNACK must come within connackTimeoutMs of connected() ('timeout').
 *
 * CLOSE REASONS (closeReason, and what closed() returns) start with a kind word the supervisor
 * counts by: 'timeout: …', 'refused: …', 'protocol: …', 'silent: …', 'closed: …' (the peer or
 * the network dropped the socket), 'disconnect' (our own DISCONNECT).
 *
 * PEER INPUT NEVER THROWS: a broken stream, a second CONNACK, a packet before CONNACK
 * [MQTT-3.2.0-1], a QoS 2 flow we never asked for, all become closeReason 'protocol: …'.
 * Programmer errors (a bad qos to subscribe, too many subscriptions) throw.
 *
 * COST of the live path: publish() QoS 1 is 3 JS calls (publish, encodePublish, head) plus
 * takeOutput(); a PUBACK through data() is 4 (data, push, next, next) plus the onAck handler.
 */
import {
  CONNACK,
  MqttParser,
  MqttSub,
  MqttWill,
  PINGRESP,
  PUBACK,
  PUBLISH,
  Qos,
  SUBACK,
  UNSUBACK,
  encodeConnect,
  encodeDisconnect,
  encodePingreq,
  encodePuback,
  encodePublish,
  encodeSubscribe,
} from '../wire/mqtt-codec.js';

export var SESSION_DOWN = 0;
export var SESSION_CONNECTING = 1;
export var SESSION_UP = 2;
/** closeReason is set: the shell must drop the socket and call closed(). */
export var SESSION_CLOSING = 3;
export var SESSION_STATE_NAMES = ['down', 'connecting', 'up', 'closing'];

/** publish() results that are not packet ids. */
export var PUBLISH_FULL = -1;
export var PUBLISH_DOWN = -2;

/** In-flight QoS 1 messages: each holds its encoded bytes in RAM (~len/12 vars); 8 covers many
 * round trips at sensor rates and keeps the window near 100 vars. */
export var INFLIGHT_MAX_DEFAULT = 8;
/** Largest inbound packet: RPC requests are at most 1 KB of JSON (rpc-server REQUEST_BYTES_MAX)
 * plus the topic; a PUBLISH body is held whole in RAM before it is handed over. */
export var PACKET_BYTES_MAX_DEFAULT = 2048;
/** A broker that accepted TCP but does not answer CONNECT within this is given up on. */
export var CONNACK_TIMEOUT_MS_DEFAULT = 10000;
/** Subscriptions restored after a lost session: the device has a handful (rpc/req). */
export var SUBS_MAX = 8;

/** CONNACK return codes, §3.2.2.3 Table 3.1. */
export var CONNACK_RC_NAMES = [
  'accepted',
  'unacceptable protocol version',
  'identifier rejected',
  'server unavailable',
  'bad user name or password',
  'not authorized',
];

export interface SessionHandler {
  onUp(sessionPresent: boolean): void;
  onAck(id: number, tag: number): void;
  /**
   * over > 0: the message was larger than packetBytesMax; payload holds only its first bytes
   * (the parser skipped the rest). It is acknowledged like any other so it is not redelivered.
   */
  onMessage(topic: string, payload: string, qos: number, retain: boolean, over: number): void;
}

export interface SessionOptions {
  /** The device id [MQTT-3.1.3-3]. */
  clientId: string;
  /** 0 turns keepalive (and the watchdog) off. Default 60000. */
  keepaliveMs?: number;
  /** Default false: the broker keeps the session (subscriptions, queued QoS 1) across drops. */
  clean?: boolean;
  /** The `offline` status, retained, sent by the broker when we vanish. */
  will?: MqttWill;
  username?: string;
  /** Byte String. */
  password?: string;
  inflightMax?: number;
  packetBytesMax?: number;
  connackTimeoutMs?: number;
}

export class MqttSession {
  /** SESSION_* code. */
  state: number;
  /** The last CONNACK's session present flag. */
  sessionPresent: boolean;
  /** Why the session wants the socket dropped ('' while it does not). */
  closeReason: string;
  /** Return code of the last refused CONNACK (0: none). */
  refusedRc: number;
  /** True once a SUBACK granted every filter (false again after a failed one). */
  subscribed: boolean;
  /** Counters since boot. */
  connects: number;
  published: number;
  acked: number;
  retransmits: number;
  pings: number;
  received: number;
  strayAcks: number;
  subFailures: number;
  _h: SessionHandler;
  _p: MqttParser;
  /** CONNECT bytes, built once. */
  _cp: string;
  _ka: number;
  /** Watchdog: 1.5 keepalive. */
  _wd: number;
  _ct: number;
  _im: number;
  /** Window, in publish order: packet ids, encoded packets, tags. */
  _wi: number[];
  _wp: string[];
  _wt: number[];
  /** The first _ws window entries have been sent at least once (the rest never). */
  _ws: number;
  /** Last packet id handed out. */
  _id: number;
  /** Packet id of the SUBSCRIBE awaiting its SUBACK (0: none). */
  _sid: number;
  _subs: MqttSub[];
  _out: string;
  /** Last time we queued a packet, last time a packet arrived, CONNACK deadline, latest now seen. */
  _tx: number;
  _rx: number;
  _cd: number;
  _now: number;
  /** A PINGREQ awaits its PINGRESP. */
  _pg: boolean;

  constructor(o: SessionOptions, handler: SessionHandler) {
    var ka = o.keepaliveMs === undefined ? 60000 : o.keepaliveMs;
    var im = o.inflightMax || INFLIGHT_MAX_DEFAULT;
    if (!(im >= 1 && im <= 65000)) throw new Error('mqtt-session: inflightMax must be 1..65000');
    this._h = handler;
    this._p = new MqttParser(o.packetBytesMax || PACKET_BYTES_MAX_DEFAULT);
    this._cp = encodeConnect({
      clientId: o.clientId,
      keepaliveMs: ka,
      clean: !!o.clean,
      will: o.will,
      username: o.username,
      password: o.password,
    });
    this._ka = ka;
    this._wd = ka + Math.floor(ka / 2);
    this._ct = o.connackTimeoutMs || CONNACK_TIMEOUT_MS_DEFAULT;
    this._im = im;
    this._wi = [];
    this._wp = [];
    this._wt = [];
    this._ws = 0;
    this._id = 0;
    this._sid = 0;
    this._subs = [];
    this._out = '';
    this._tx = this._rx = this._cd = this._now = 0;
    this._pg = false;
    this.state = SESSION_DOWN;
    this.sessionPresent = this.subscribed = false;
    this.closeReason = '';
    this.refusedRc = 0;
    this.connects = this.published = this.acked = this.retransmits = 0;
    this.pings = this.received = this.strayAcks = this.subFailures = 0;
  }

  /** TCP is up: queue CONNECT and start the CONNACK timer. */
  connected(now: number): void {
    this._p.reset();
    this.state = SESSION_CONNECTING;
    this.closeReason = '';
    this._sid = 0;
    this._pg = false;
    this._out = this._cp;
    this._now = this._tx = this._rx = now;
    this._cd = now + this._ct;
  }

  /** Bytes from the socket. */
  data(bytes: string, now: number): void {
    var p = this._p;
    var s = this.state;
    var t: number;
    var i: number;
    var tag: number;
    if (s !== SESSION_CONNECTING && s !== SESSION_UP) return;
    this._now = now;
    p.push(bytes);
    // The state is read again on every turn: a handler may have closed the session.
    while ((s = this.state) === SESSION_CONNECTING || s === SESSION_UP) {
      t = p.next();
      if (t === 0) return;
      if (t < 0) return this._close('protocol: ' + p.err);
      this._rx = now;
      this.received++;
      if (s === SESSION_CONNECTING && t !== CONNACK) return this._close('protocol: packet type ' + t + ' before CONNACK'); // [MQTT-3.2.0-1]
      if (t === PUBACK) {
        // The hot path, inlined: find the id, forget the message, tell the owner.
        i = this._wi.indexOf(p.id);
        if (i < 0) {
          // An ack for nothing we hold: a late duplicate, or left from before a reboot.
          this.strayAcks++;
          continue;
        }
        tag = this._wt[i];
        this._wi.splice(i, 1);
        this._wp.splice(i, 1);
        this._wt.splice(i, 1);
        if (i < this._ws) this._ws--;
        this.acked++;
        this._h.onAck(p.id, tag);
      } else if (t === PUBLISH) {
        // We subscribe at QoS 0 or 1 only, so a broker never sends QoS 2 [MQTT-3.8.4-6].
        if (p.qos > 1) return this._close('protocol: PUBLISH QoS 2 without a QoS 2 subscription');
        // [MQTT-4.3.2-2]: acknowledge QoS 1. The PUBACK leaves in this turn's write, after the
        // handler has run.
        if (p.qos) this._send(encodePuback(p.id));
        this._h.onMessage(p.topic, p.payload, p.qos, p.retain, p.over);
      } else if (t === PINGRESP) this._pg = false;
      else if (t === CONNACK) {
        if (s !== SESSION_CONNECTING) return this._close('protocol: second CONNACK');
        this._connack(p.sp, p.rc);
      } else if (t === SUBACK) {
        if (p.id === this._sid) {
          this._sid = 0;
          // 0x80 is a refused filter, §3.9.3.
          this.subscribed = p.codes.indexOf(String.fromCharCode(0x80)) < 0;
          if (!this.subscribed) this.subFailures++;
        }
      } else if (t !== UNSUBACK) {
        // PUBREC, PUBREL, PUBCOMP: QoS 2 flows, and we never start or accept one.
        return this._close('protocol: unexpected packet type ' + t);
      }
    }
  }

  /** Timers: CONNACK timeout, keepalive PINGREQ, silent-broker watchdog. Call at deadline(). */
  tick(now: number): void {
    var s = this.state;
    this._now = now;
    if (s === SESSION_CONNECTING) {
      if (now >= this._cd) this._close('timeout: no CONNACK within ' + this._ct + ' ms');
      return;
    }
    if (s !== SESSION_UP || !this._ka) return;
    if (now >= this._rx + this._wd) {
      this._close('silent: nothing received for ' + (now - this._rx) + ' ms (keepalive ' + this._ka + ' ms)');
    } else if (!this._pg && now >= (this._tx < this._rx ? this._tx : this._rx) + this._ka) {
      this._pg = true;
      this.pings++;
      this._send(encodePingreq());
    }
  }

  /** When tick() has work; -1 when none. */
  deadline(): number {
    var s = this.state;
    if (s === SESSION_CONNECTING) return this._cd;
    if (s !== SESSION_UP || !this._ka) return -1;
    return this._pg ? this._rx + this._wd : (this._tx < this._rx ? this._tx : this._rx) + this._ka;
  }

  /**
   * The socket is gone. Returns the reason: closeReason when the session asked for the close,
   * else 'closed: connection lost'. The window and the subscriptions are kept for the next
   * connection; output not yet written is dropped.
   */
  closed(now: number): string {
    var r = this.closeReason || 'closed: connection lost';
    this._now = now;
    this.state = SESSION_DOWN;
    this.closeReason = r;
    this._out = '';
    this._pg = false;
    this._sid = 0;
    this._p.reset();
    return r;
  }

  /**
   * Publishes. QoS 0: sent now when up (returns 0), else dropped (PUBLISH_DOWN). QoS 1: enters
   * the window and is sent now when up, or at the next CONNACK; returns its packet id, or
   * PUBLISH_FULL when inflightMax messages are in flight. payload is a byte String; tag comes
   * back with onAck (e.g. the outbox seq; -1 for messages that have none).
   */
  publish(topic: string, payload: string, qos: Qos, retain: boolean, tag: number): number {
    var up = this.state === SESSION_UP;
    var w = this._wi;
    var id: number;
    var pkt: string;
    if (!qos) {
      if (!up) return PUBLISH_DOWN;
      this._send(encodePublish(topic, payload, 0, retain, false, 0));
      this.published++;
      return 0;
    }
    if (w.length >= this._im) return PUBLISH_FULL;
    // Next free packet id, inlined (the hot path): 1..65535, skipping ids still in use.
    id = this._id;
    do id = id < 65535 ? id + 1 : 1;
    while (w.indexOf(id) >= 0 || id === this._sid);
    this._id = id;
    pkt = encodePublish(topic, payload, qos, retain, false, id);
    w.push(id);
    this._wp.push(pkt);
    this._wt.push(tag);
    if (up) {
      this._ws = w.length;
      this._out += pkt;
      this._tx = this._now;
      this.published++;
    }
    return id;
  }

  /** Adds a subscription (kept for the life of the session object) and sends it when up. */
  subscribe(topic: string, qos: Qos): void {
    if (!(qos === 0 || qos === 1)) throw new Error('mqtt-session: subscriptions are QoS 0 or 1');
    if (this._subs.length >= SUBS_MAX) throw new Error('mqtt-session: more than ' + SUBS_MAX + ' subscriptions');
    this._subs.push({ topic: topic, qos: qos });
    if (this.state === SESSION_UP) this._subscribe();
  }

  /** Sends DISCONNECT (§3.14: the broker then discards the will) and asks for the close. */
  disconnect(): void {
    if (this.state !== SESSION_UP) return;
    this._send(encodeDisconnect());
    this.state = SESSION_CLOSING;
    this.closeReason = 'disconnect';
  }

  /** What to write to the socket now ('' when nothing); the session forgets it. */
  takeOutput(): string {
    var o = this._out;
    this._out = '';
    return o;
  }

  /** QoS 1 messages in flight. */
  inflight(): number {
    return this._wi.length;
  }

  /** True when a QoS 1 publish would go out now. */
  canPublish(): boolean {
    return this.state === SESSION_UP && this._wi.length < this._im;
  }

  /**
   * Forgets the window and returns the tags it held, oldest first: for an owner that hands
   * the messages back to its outbox instead of letting the session re-send them.
   */
  dropWindow(): number[] {
    var tags = this._wt;
    this._wi = [];
    this._wp = [];
    this._wt = [];
    this._ws = 0;
    return tags;
  }

  _send(pkt: string): void {
    this._out += pkt;
    this._tx = this._now;
  }

  _close(reason: string): void {
    this.state = SESSION_CLOSING;
    this.closeReason = reason;
    this._out = '';
  }

  _connack(sp: boolean, rc: number): void {
    var n = this._wi.length;
    var i: number;
    var pkt: string;
    if (rc) {
      this.refusedRc = rc;
      return this._close('refused: ' + (CONNACK_RC_NAMES[rc] || 'return code ' + rc) + ' (' + rc + ')');
    }
    this.state = SESSION_UP;
    this.sessionPresent = sp;
    this.connects++;
    if (this._subs.length && (!sp || !this.subscribed)) this._subscribe();
    for (i = 0; i < n; i++) {
      pkt = this._wp[i];
      if (i < this._ws) {
        this.retransmits++;
        // DUP is bit 3 of the first byte, only on a re-delivery the broker may have seen.
        if (sp) pkt = String.fromCharCode(pkt.charCodeAt(0) | 8) + pkt.substring(1);
      } else {
        this.published++;
      }
      this._send(pkt);
    }
    this._ws = n;
    this._h.onUp(sp);
  }

  _subscribe(): void {
    var id = this._id;
    do id = id < 65535 ? id + 1 : 1;
    while (this._wi.indexOf(id) >= 0);
    this._id = this._sid = id;
    this._send(encodeSubscribe(id, this._subs));
  }

}
