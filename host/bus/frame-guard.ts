/**
 * Fixed-header guard on the raw byte stream of one MQTT 3.1.1 connection, in front of the
 * packet parser. It reads only the fixed header of each packet (type, flags, Remaining Length)
 * and skips the bodies, so it costs a few operations per packet whatever the payload size.
 *
 * Why here: the parser (mqtt-packet 9, as aedes 1 creates it) has no size limit: it buffers a
 * packet until Remaining Length bytes have arrived, up to 256 MiB per connection. The guard
 * rejects a packet from its header, BEFORE its body is buffered anywhere. It also names each
 * fixed-header violation with a reason instead of the parser's generic error.
 *
 * Pure core: feed() takes bytes and returns null or the reason; the caller closes the
 * connection. After a rejection every further feed() returns the same reason.
 */

export type FrameReason =
  | 'bad-remaining-length'
  | 'packet-too-large'
  | 'reserved-flags'
  | 'reserved-packet-type'
  | 'unexpected-packet'
  | 'first-packet-not-connect'
  | 'second-connect';

const CONNECT = 1;
const DISCONNECT = 14;

/**
 * Per packet type (index = type, 3.1.1 Table 2.1/2.2): the required flags nibble, or -1 for
 * PUBLISH (flags carry DUP/QoS/RETAIN), or -2 for a type a client never sends (server-only
 * types and the reserved 0 and 15).
 */
const REQUIRED_FLAGS = [-2, 0, -2, -1, 0, 0, 2, 0, 2, -2, 2, -2, 0, -2, 0, -2];

/**
 * Remaining Length a packet type must have, or -1 when it varies: PUBACK/PUBREC/PUBREL/PUBCOMP
 * carry only a packet identifier (2 bytes, 3.4-3.7), PINGREQ and DISCONNECT nothing (3.12, 3.14).
 */
const FIXED_LENGTH = [-1, -1, -1, -1, 2, 2, 2, 2, -1, -1, -1, -1, 0, -1, 0, -1];

export class FrameGuard {
  /** 0: expecting the first header byte; 1: reading Remaining Length; 2: skipping the body. */
  private _phase = 0;
  private _type = 0;
  private _len = 0;
  private _mul = 1;
  private _lenBytes = 0;
  private _left = 0;
  private _packets = 0;
  private _reason: FrameReason | null = null;
  private _detail = '';
  /** True once a DISCONNECT header was seen: the client is closing on purpose. */
  sawDisconnect = false;

  constructor(readonly packetBytesMax: number) {}

  get reason(): FrameReason | null {
    return this._reason;
  }

  /** Human-readable detail of the rejection (packet type, lengths). */
  get detail(): string {
    return this._detail;
  }

  feed(buf: Uint8Array): FrameReason | null {
    if (this._reason !== null) return this._reason;
    const n = buf.length;
    let i = 0;
    while (i < n) {
      if (this._phase === 2) {
        const skip = Math.min(this._left, n - i);
        this._left -= skip;
        i += skip;
        if (this._left === 0) this._phase = 0;
        continue;
      }
      const b = buf[i++];
      if (this._phase === 0) {
        const r = this._header(b);
        if (r !== null) return this._reject(r);
        this._phase = 1;
        this._len = 0;
        this._mul = 1;
        this._lenBytes = 0;
        continue;
      }
      // Remaining Length: 1 to 4 bytes, 7 bits each, low group first; a 4th byte with the
      // continuation bit set is malformed (2.2.3, at most 268,435,455).
      this._len += (b & 127) * this._mul;
      this._mul *= 128;
      this._lenBytes++;
      if (b & 128) {
        if (this._lenBytes === 4) {
          this._detail = 'continuation bit set in the 4th Remaining Length byte';
          return this._reject('bad-remaining-length');
        }
        continue;
      }
      const r = this._length();
      if (r !== null) return this._reject(r);
      this._left = this._len;
      this._phase = this._left > 0 ? 2 : 0;
    }
    return null;
  }

  private _header(b: number): FrameReason | null {
    const type = b >> 4;
    const flags = b & 15;
    this._type = type;
    const required = REQUIRED_FLAGS[type];
    if (type === 0 || type === 15) {
      this._detail = 'packet type ' + type;
      return 'reserved-packet-type';
    }
    if (required === -2) {
      this._detail = 'packet type ' + type + ' is sent only by a server';
      return 'unexpected-packet';
    }
    // [MQTT-3.1.0-1] the first packet MUST be CONNECT; [MQTT-3.1.0-2] a second CONNECT is a
    // protocol violation.
    if (this._packets === 0 && type !== CONNECT) {
      this._detail = 'packet type ' + type;
      return 'first-packet-not-connect';
    }
    if (required === -1) {
      // PUBLISH: QoS 3 is reserved [MQTT-3.3.1-4]; DUP must be 0 for QoS 0 [MQTT-3.3.1-2].
      const qos = (flags >> 1) & 3;
      if (qos === 3 || (qos === 0 && (flags & 8) !== 0)) {
        this._detail = 'PUBLISH flags ' + flags;
        return 'reserved-flags';
      }
    } else if (flags !== required) {
      // [MQTT-2.2.2-1] reserved flag bits MUST have the listed values; [MQTT-2.2.2-2] close.
      this._detail = 'packet type ' + type + ' flags ' + flags + ', required ' + required;
      return 'reserved-flags';
    }
    if (this._packets > 0 && type === CONNECT) {
      this._detail = 'CONNECT after CONNECT';
      return 'second-connect';
    }
    if (type === DISCONNECT) this.sawDisconnect = true;
    this._packets++;
    return null;
  }

  private _length(): FrameReason | null {
    const fixed = FIXED_LENGTH[this._type];
    if (fixed !== -1 && this._len !== fixed) {
      this._detail = 'packet type ' + this._type + ' with Remaining Length ' + this._len + ', must be ' + fixed;
      return 'bad-remaining-length';
    }
    if (this._len > this.packetBytesMax) {
      this._detail = 'Remaining Length ' + this._len + ' over ' + this.packetBytesMax;
      return 'packet-too-large';
    }
    return null;
  }

  private _reject(r: FrameReason): FrameReason {
    this._reason = r;
    return r;
  }
}
