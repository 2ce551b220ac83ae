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
 * SUBSCRIPTIONS are part of the session: subscribe() records them (at most SUBS_MAX, kept as
 * SUBSCRIBE payload bytes) and sends them all when up; they are sent again after a CONNACK
 * without a session, and after one with a session unless a SUBACK in this boot granted every
 * filter of the last SUBSCRIBE (the first CONNACK of a boot always re-subscribes;
 * re-subscribing is idempotent, [MQTT-3.8.4-3]).
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
 * counts by; they are short, for the device's RAM and flash:
 *   'timeout: 10000 ms'      no CONNACK within connackTimeoutMs
 *   'refused: rc 5'          CONNACK return code 5 (§3.2.2.3 Table 3.1: 1 protocol version,
 *                            2 identifier rejected, 3 server unavailable, 4 bad user name or
 *                            password, 5 not authorized; the host names them)
 *   'protocol: <err>'        the parser's reason (MqttParser in ../wire/mqtt-codec.ts)
 *   'protocol: type 4'       a packet the session does not take now: anything before CONNACK
 *                            [MQTT-3.2.0-1], a second CONNACK, PUBREC/PUBREL/PUBCOMP (a QoS 2
 *                            flow we never start), 'protocol: type 3 QoS 2' a QoS 2 PUBLISH
 *                            (we never subscribe at QoS 2 [MQTT-3.8.4-6])
 *   'silent: 15000 ms'       nothing received for that long (the watchdog, 1.5 keepalive)
 *   'closed: connection lost' the peer or the network dropped the socket
 *   'disconnect'             our own DISCONNECT
 *
 * PEER INPUT NEVER THROWS: a broken stream, a second CONNACK, a packet before CONNACK
 * [MQTT-3.2.0-1], a QoS 2 flow we never asked for, all become closeReason 'protocol: …'.
 * Programmer errors (a bad qos to subscribe, too many subscriptions) throw.
 *
 * COUNTERS since boot, as the device reports them: connects (CONNACKs accepted) and
 * retransmits (window messages sent again after a reconnect, with DUP when the session was
 * kept).
 *
 * COST of the live path: publish() QoS 1 is 3 JS calls (publish, encodePublish, head) plus
 * takeOutput(); a PUBACK through data() is 4 (data, push, next, next) plus the onAck handler.
 */
import {
  CONNACK,
  MqttConnect,
  MqttParser,
  PINGRESP,
  PUBACK,
  PUBLISH,
  Qos,
  SUBACK,
  assertArg,
  encodeConnect,
  encodeDisconnect,
  encodePingreq,
  encodePuback,
  encodePublish,
  encodeSubscribe,
  subscription,
} from '../wire/mqtt-codec.js';

/** States. CONNECTING and UP, the two with a live connection, are the codes >= SESSION_CONNECTING. */
export var SESSION_DOWN = 0;
/** closeReason is set: the shell must drop the socket and call closed(). */
export var SESSION_CLOSING = 1;
export var SESSION_CONNECTING = 2;
export var SESSION_UP = 3;
export var SESSION_STATE_NAMES = ['down', 'closing', 'connecting', 'up'];

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

export interface SessionHandler {
  onUp(sessionPresent: boolean): void;
  onAck(id: number, tag: number): void;
  /**
   * over > 0: the message was larger than packetBytesMax; payload holds only its first bytes
   * (the parser skipped the rest). It is acknowledged like any other so it is not redelivered.
   */
  onMessage(topic: string, payload: string, qos: number, retain: boolean, over: number): void;
}

/**
 * The CONNECT fields (../wire/mqtt-codec.ts MqttConnect: clientId, the device id
 * [MQTT-3.1.3-3]; keepaliveMs, 0 turning keepalive and the watchdog off; clean, default false so
 * the broker keeps the session (subscriptions, queued QoS 1) across drops; will, the `offline`
 * status the broker sends when we vanish; username; password), and the session's limits.
 */
export interface SessionOptions extends MqttConnect {
  inflightMax?: number;
  packetBytesMax?: number;
  connackTimeoutMs?: number;
}

export class MqttSession {
  /** SESSION_* code. */
  state: number;
  /** Why the session wants the socket dropped ('' while it does not, and after closed()). */
  closeReason: string;
  /** Counters since boot (see COUNTERS). */
  connects: number;
  retransmits: number;
  _h: SessionHandler;
  _p: MqttParser;
  /** CONNECT bytes, built once. */
  _cp: string;
  _ka: number;
  /** CONNACK timeout. */
  _ct: number;
  _im: number;
  /** Window, in publish order: the packet ids (searched with indexOf), and beside them, two
   * entries per message, its encoded packet and its tag (never searched). */
  _wi: number[];
  _wm: (string | number)[];
  /** The first _ws window entries have been sent at least once (the rest never). */
  _ws: number;
  /** Last packet id handed out. */
  _id: number;
  /** Packet id of the last SUBSCRIBE, until its SUBACK (then 0). Left as it is when the
   * connection drops (its SUBACK never comes; publish() merely skips that id); undefined before
   * the first SUBSCRIBE. */
  _sid!: number;
  /** The subscriptions as SUBSCRIBE payload entries (subscription() bytes), and how many. */
  _subs: string;
  _sn: number;
  /** True once a SUBACK granted every filter; false again after a refused one, and when
   * subscribe() adds a filter. */
  _sok: boolean;
  _out: string;
  /** Last time we queued a packet, last time a packet arrived (from connected(): the CONNACK
   * timeout runs from it), latest now seen; all set by connected(). */
  _tx!: number;
  _rx!: number;
  _now!: number;
  /** A PINGREQ awaits its PINGRESP. */
  _pg!: boolean;

  constructor(o: SessionOptions, handler: SessionHandler) {
    var ka = o.keepaliveMs;
    var im = o.inflightMax || INFLIGHT_MAX_DEFAULT;
    assertArg(im >= 1 && im <= 65000, 'inflightMax');
    this._h = handler;
    this._p = new MqttParser(o.packetBytesMax || PACKET_BYTES_MAX_DEFAULT);
    this._cp = encodeConnect(o);
    this._ka = ka;
    this._ct = o.connackTimeoutMs || CONNACK_TIMEOUT_MS_DEFAULT;
    this._im = im;
    this._wi = [];
    this._wm = [];
    this._subs = this._out = this.closeReason = '';
    this.state = this._ws = this._id = this._sn = this.connects = this.retransmits = 0;
    this._sok = false;
  }

  /**
   * TCP is up: queue CONNECT and start the CONNACK timer. The parser is fresh: closed() reset it
   * (BEFORE connecting again the previous socket was reported with closed()).
   */
  connected(now: number): void {
    this.state = SESSION_CONNECTING;
    this._pg = false;
    this._out = this._cp;
    this._now = this._tx = this._rx = now;
  }

  /** Bytes from the socket. */
  data(bytes: string, now: number): void {
    var p = this._p;
    var s: number;
    var t: number;
    var i: number;
    var n: number;
    var tag: number;
    var pkt: string;
    if (this.state < SESSION_CONNECTING) return;
    this._now = now;
    p.push(bytes);
    // The state is read again on every turn: a handler may have closed the session.
    while ((s = this.state) >= SESSION_CONNECTING && (t = p.next())) {
      // A broken stream; or a packet not taken now: CONNACK first and only once [MQTT-3.2.0-1];
      // no QoS 2 flow: we never subscribe at QoS 2 [MQTT-3.8.4-6], so a broker never sends a QoS
      // 2 PUBLISH, nor PUBREC, PUBREL, PUBCOMP.
      if (t < 0 || (s === SESSION_CONNECTING) !== (t === CONNACK) || (t === PUBLISH ? p.qos > 1 : t > PUBACK && t < SUBACK)) {
        return this._close('protocol: ' + (t < 0 ? p.err : 'type ' + t + (t === PUBLISH && p.qos > 1 ? ' QoS 2' : '')));
      }
      this._rx = now;
      if (t === PUBACK) {
        // The hot path, inlined: find the id, forget the message, tell the owner. An ack for
        // nothing we hold (a late duplicate, or left from before a reboot) is ignored.
        i = this._wi.indexOf(p.id);
        if (i >= 0) {
          this._wi.splice(i, 1);
          tag = this._wm.splice(2 * i, 2)[1] as number;
          if (i < this._ws) this._ws--;
          this._h.onAck(p.id, tag);
        }
      } else if (t === PUBLISH) {
        // [MQTT-4.3.2-2]: acknowledge QoS 1. The PUBACK leaves in this turn's write, after the
        // handler has run.
        if (p.qos) this._send(encodePuback(p.id));
        this._h.onMessage(p.topic, p.payload, p.qos, p.retain, p.over);
      } else if (t === PINGRESP) this._pg = false;
      else if (t === SUBACK) {
        if (p.id === this._sid) {
          this._sid = 0;
          // 0x80 is a refused filter, §3.9.3.
          this._sok = p.codes.indexOf('\x80') < 0;
        }
      } else if (t === CONNACK) {
        if (p.rc) return this._close('refused: rc ' + p.rc);
        // Accepted (§3.2.2.3). Subscriptions go first when the broker has none of ours, then the
        // window: what was sent before goes again (with DUP when the session is kept), then what
        // was published while down, for the first time.
        this.state = SESSION_UP;
        this.connects++;
        if (this._sn && (!p.sp || !this._sok)) this._subscribe();
        n = this._wi.length;
        this.retransmits += this._ws;
        for (i = 0; i < n; i++) {
          pkt = this._wm[2 * i] as string;
          // DUP is bit 3 of the first byte, only on a re-delivery the broker may have seen.
          if (i < this._ws && p.sp) pkt = String.fromCharCode(pkt.charCodeAt(0) | 8) + pkt.substring(1);
          this._send(pkt);
        }
        this._ws = n;
        this._h.onUp(p.sp);
      }
      // UNSUBACK: nothing to do (we never unsubscribe).
    }
  }

  /**
   * Timers: CONNACK timeout, keepalive PINGREQ, silent-broker watchdog. Call at deadline(). Called
   * on time, a PINGREQ always goes before the watchdog can fire (its deadline is at most
   * lastReceived + K); a late call pings first and the watchdog closes at the next call.
   */
  tick(now: number): void {
    var d = this.deadline();
    this._now = now;
    if (d < 0 || now < d) return;
    if (this.state === SESSION_CONNECTING) this._close('timeout: ' + this._ct + ' ms');
    else if (this._pg) this._close('silent: ' + (now - this._rx) + ' ms');
    else {
      this._pg = true;
      this._send(encodePingreq());
    }
  }

  /**
   * When tick() has work; -1 when none. Up with keepalive on, a PINGREQ is due at
   * min(lastSent, lastReceived) + K; once one is out, the watchdog at lastReceived + 1.5 K.
   */
  deadline(): number {
    var s = this.state;
    var tx = this._tx;
    var rx = this._rx;
    if (s === SESSION_CONNECTING) return rx + this._ct;
    if (s !== SESSION_UP || !this._ka) return -1;
    // The watchdog: 1.5 K.
    return this._pg ? rx + this._ka + (this._ka >> 1) : (tx < rx ? tx : rx) + this._ka;
  }

  /**
   * The socket is gone. Returns the reason: closeReason when the session asked for the close,
   * else 'closed: connection lost'. The window and the subscriptions are kept for the next
   * connection; output not yet written and input not yet parsed are dropped.
   */
  closed(now: number): string {
    var r = this.closeReason || 'closed: connection lost';
    this.state = SESSION_DOWN;
    this.closeReason = this._out = '';
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
    var id = 0;
    var pkt: string;
    if (qos) {
      if (w.length >= this._im) return PUBLISH_FULL;
      // Next free packet id, inlined (the hot path): 1..65535, skipping ids still in use.
      id = this._id;
      do id = id < 65535 ? id + 1 : 1;
      while (w.indexOf(id) >= 0 || id === this._sid);
      this._id = id;
    } else if (!up) return PUBLISH_DOWN;
    pkt = encodePublish(topic, payload, qos, retain, false, id);
    if (qos) {
      w.push(id);
      this._wm.push(pkt, tag);
      if (up) this._ws = w.length;
    }
    if (up) {
      this._out += pkt;
      this._tx = this._now;
    }
    return id;
  }

  /** Adds a subscription (kept for the life of the session object) and sends it when up. */
  subscribe(topic: string, qos: Qos): void {
    assertArg(qos < 2, 'QoS 2 subscription');
    assertArg(this._sn < SUBS_MAX, 'SUBS_MAX');
    this._subs += subscription(topic, qos);
    this._sn++;
    // Not all granted until a SUBACK says so: a drop before it re-subscribes even when the
    // broker kept the session.
    this._sok = false;
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

  /** True when a QoS 1 publish would go out now. */
  canPublish(): boolean {
    return this.state === SESSION_UP && this._wi.length < this._im;
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

  _subscribe(): void {
    var id = this._id;
    do id = id < 65535 ? id + 1 : 1;
    while (this._wi.indexOf(id) >= 0);
    this._id = this._sid = id;
    this._send(encodeSubscribe(id, this._subs));
  }
}
