import mqtt from 'mqtt-packet';
// MQTT codec contracts that the reference cannot pin: protocol errors (each with its spec
// clause), the sticky failed state, bounded buffering, tolerated oddities, and encoder asserts.
// Runs against the source module and the minified bundle.
import { describe, expect, it } from 'vitest';
import * as src from '../../../../firmware/wire/mqtt-codec.js';
import { codecTargets, parseOurs } from './mqtt-codec-fixtures.js';

type Codec = typeof src;

/** A byte String from numbers and ASCII strings. */
function b(...parts: (number | string)[]): string {
  return parts.map((p) => (typeof p === 'number' ? String.fromCharCode(p) : p)).join('');
}

interface ErrorCase {
  name: string;
  bytes: string;
  /** A part of the reason. */
  why: RegExp;
  packetBytesMax?: number;
}

const errorCases: ErrorCase[] = [
  // §2.2.1 Table 2.1: reserved types, and types that only flow client to server.
  { name: 'reserved type 0', bytes: b(0x00, 0), why: /^type 0$/ },
  { name: 'reserved type 15', bytes: b(0xf0, 0), why: /^type 15$/ },
  { name: 'CONNECT', bytes: b(0x10, 0), why: /^type 1$/ },
  { name: 'SUBSCRIBE', bytes: b(0x82, 0), why: /^type 8$/ },
  { name: 'UNSUBSCRIBE', bytes: b(0xa2, 0), why: /^type 10$/ },
  { name: 'PINGREQ', bytes: b(0xc0, 0), why: /^type 12$/ },
  { name: 'DISCONNECT', bytes: b(0xe0, 0), why: /^type 14$/ },
  // [MQTT-2.2.2-1] [MQTT-2.2.2-2]: reserved flag bits.
  { name: 'CONNACK flags 0001', bytes: b(0x21, 2, 0, 0), why: /^flags 1\/2$/ },
  { name: 'PUBACK flags 0010', bytes: b(0x42, 2, 0, 1), why: /^flags 2\/4$/ },
  { name: 'PUBREC flags 1000', bytes: b(0x58, 2, 0, 1), why: /^flags 8\/5$/ },
  { name: 'PUBREL flags 0000 (must be 0010)', bytes: b(0x60, 2, 0, 1), why: /^flags 0\/6$/ },
  { name: 'PUBCOMP flags 0100', bytes: b(0x74, 2, 0, 1), why: /^flags 4\/7$/ },
  { name: 'SUBACK flags 0010', bytes: b(0x92, 3, 0, 1, 0), why: /^flags 2\/9$/ },
  { name: 'UNSUBACK flags 1111', bytes: b(0xbf, 2, 0, 1), why: /^flags 15\/11$/ },
  { name: 'PINGRESP flags 0001', bytes: b(0xd1, 0), why: /^flags 1\/13$/ },
  // [MQTT-3.3.1-4]
  { name: 'PUBLISH QoS 3', bytes: b(0x36, 3, 0, 1, 'a'), why: /^flags 6\/3$/ },
  { name: 'PUBLISH QoS 3 with dup and retain', bytes: b(0x3f, 3, 0, 1, 'a'), why: /^flags 15\/3$/ },
  // §2.2.3: at most 4 bytes of remaining length; limited by packetBytesMax.
  { name: 'remaining length of 5 bytes', bytes: b(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), why: /^length$/ },
  { name: 'remaining length of 5 bytes, all 0xFF', bytes: b(0x40, 0xff, 0xff, 0xff, 0xff, 0x7f), why: /^length$/ },
  { name: 'remaining length over packetBytesMax', bytes: b(0x90, 101) + 'x'.repeat(101), why: /^size 101\/9$/, packetBytesMax: 100 },
  { name: 'largest remaining length, default max', bytes: b(0x90, 0xff, 0xff, 0xff, 0x7f), why: /^size 268435455\/9$/ },
  { name: 'oversized PUBLISH whose topic alone exceeds packetBytesMax', bytes: b(0x30, 120, 0, 110) + 't'.repeat(110), why: /^size 120\/3$/, packetBytesMax: 100 },
  // An oversized PUBLISH is checked like any other before it is handed over.
  { name: 'oversized PUBLISH with an empty topic', bytes: b(0x30, 120, 0, 0) + 'x'.repeat(118), why: /^topic$/, packetBytesMax: 100 },
  { name: 'oversized PUBLISH with a wildcard topic', bytes: b(0x30, 120, 0, 3, 'a/#') + 'x'.repeat(115), why: /^topic$/, packetBytesMax: 100 },
  { name: 'oversized PUBLISH with ill-formed UTF-8 in its topic', bytes: b(0x30, 120, 0, 2, 0xe0, 0x80) + 'x'.repeat(116), why: /^topic$/, packetBytesMax: 100 },
  { name: 'oversized PUBLISH QoS 1 with packet id 0', bytes: b(0x32, 120, 0, 1, 'a', 0, 0) + 'x'.repeat(115), why: /^id 0$/, packetBytesMax: 100 },
  // Truncated fields inside a complete packet.
  { name: 'PUBLISH remaining length 0', bytes: b(0x30, 0), why: /^length 0\/3$/ },
  { name: 'PUBLISH remaining length 1', bytes: b(0x30, 1, 0), why: /^length 1\/3$/ },
  { name: 'PUBLISH topic longer than the packet', bytes: b(0x30, 3, 0, 5, 'a'), why: /^length 3\/3$/ },
  { name: 'PUBLISH QoS 1 without packet id', bytes: b(0x32, 3, 0, 1, 'a'), why: /^length 3\/3$/ },
  { name: 'PUBLISH QoS 1 with half a packet id', bytes: b(0x32, 4, 0, 1, 'a', 0), why: /^length 4\/3$/ },
  { name: 'PUBACK remaining length 0', bytes: b(0x40, 0), why: /^length 0\/4$/ },
  { name: 'PUBACK remaining length 1', bytes: b(0x40, 1, 0), why: /^length 1\/4$/ },
  { name: 'PUBACK remaining length 3', bytes: b(0x40, 3, 0, 1, 0), why: /^length 3\/4$/ },
  { name: 'UNSUBACK remaining length 4', bytes: b(0xb0, 4, 0, 1, 0, 0), why: /^length 4\/11$/ },
  { name: 'PUBREL remaining length 3', bytes: b(0x62, 3, 0, 1, 0), why: /^length 3\/6$/ },
  { name: 'CONNACK remaining length 3', bytes: b(0x20, 3, 0, 0, 0), why: /^length 3\/2$/ },
  { name: 'CONNACK remaining length 1', bytes: b(0x20, 1, 0), why: /^length 1\/2$/ },
  { name: 'SUBACK without return codes', bytes: b(0x90, 2, 0, 1), why: /^length 2\/9$/ },
  { name: 'PINGRESP with a body', bytes: b(0xd0, 1, 0), why: /^length 1\/13$/ },
  // Field values.
  { name: 'CONNACK reserved acknowledge flag bits (§3.2.2.1)', bytes: b(0x20, 2, 2, 0), why: /^CONNACK flags$/ },
  { name: 'PUBLISH empty topic [MQTT-4.7.3-1]', bytes: b(0x30, 2, 0, 0), why: /^topic$/ },
  { name: 'PUBLISH topic with # [MQTT-3.3.2-2]', bytes: b(0x30, 5, 0, 3, 'a/#'), why: /^topic$/ },
  { name: 'PUBLISH topic with + [MQTT-3.3.2-2]', bytes: b(0x30, 5, 0, 3, '+/a'), why: /^topic$/ },
  { name: 'PUBLISH topic with U+0000 [MQTT-1.5.3-2]', bytes: b(0x30, 5, 0, 3, 'a', 0, 'b'), why: /^topic$/ },
  { name: 'PUBLISH topic, lone UTF-8 lead byte [MQTT-1.5.3-1]', bytes: b(0x30, 4, 0, 2, 'a', 0xc3), why: /^topic$/ },
  { name: 'PUBLISH topic, encoded surrogate [MQTT-1.5.3-1]', bytes: b(0x30, 5, 0, 3, 0xed, 0xa0, 0x80), why: /^topic$/ },
  { name: 'PUBLISH topic, overlong NUL [MQTT-1.5.3-1]', bytes: b(0x30, 4, 0, 2, 0xc0, 0x80), why: /^topic$/ },
  { name: 'PUBLISH QoS 1 packet id 0 [MQTT-2.3.1-1]', bytes: b(0x32, 5, 0, 1, 'a', 0, 0), why: /^id 0$/ },
  { name: 'PUBLISH QoS 2 packet id 0 [MQTT-2.3.1-1]', bytes: b(0x34, 6, 0, 1, 'a', 0, 0, 'x'), why: /^id 0$/ },
  { name: 'SUBACK return code 3 [MQTT-3.9.3-2]', bytes: b(0x90, 4, 0, 1, 0, 3), why: /^SUBACK code$/ },
  { name: 'SUBACK return code 0x81 [MQTT-3.9.3-2]', bytes: b(0x90, 3, 0, 1, 0x81), why: /^SUBACK code$/ },
  { name: 'SUBACK return code 0xFF [MQTT-3.9.3-2]', bytes: b(0x90, 3, 0, 1, 0xff), why: /^SUBACK code$/ },
];

/** Packets that are odd but not errors a client must close on. */
const toleratedCases: { name: string; bytes: string; want: Record<string, unknown> }[] = [
  {
    name: 'DUP with QoS 0 (a sender rule, [MQTT-3.3.1-2])',
    bytes: b(0x38, 4, 0, 1, 'a', 'x'),
    want: { cmd: 'publish', topic: 'a', payload: 'x', qos: 0, dup: true, retain: false, messageId: undefined },
  },
  {
    name: 'non-minimal remaining length (3.1.1 does not require the shortest form)',
    bytes: b(0xd0, 0x80, 0x00),
    want: { cmd: 'pingresp' },
  },
  {
    name: 'CONNACK return code 6 (reserved value: a refusal, passed on)',
    bytes: b(0x20, 2, 0, 6),
    want: { cmd: 'connack', sessionPresent: false, returnCode: 6 },
  },
  {
    name: 'CONNACK refusal with session present (breaks [MQTT-3.2.2-4], reason kept)',
    bytes: b(0x20, 2, 1, 5),
    want: { cmd: 'connack', sessionPresent: true, returnCode: 5 },
  },
  {
    name: 'PUBACK with packet id 0 (matches nothing in flight)',
    bytes: b(0x40, 2, 0, 0),
    want: { cmd: 'puback', messageId: 0 },
  },
  {
    name: 'PUBLISH topic of well-formed 4-byte UTF-8',
    bytes: b(0x30, 7, 0, 4, 0xf0, 0x9f, 0x98, 0x80, 'v'),
    want: { cmd: 'publish', topic: '\ud83d\ude00', payload: 'v', qos: 0, dup: false, retain: false, messageId: undefined },
  },
  {
    name: 'PUBLISH payload may hold anything, U+0000 and # included',
    bytes: b(0x30, 6, 0, 1, 't', 0, '#', 0xff),
    want: { cmd: 'publish', topic: 't', payload: b(0, '#', 0xff), qos: 0, dup: false, retain: false, messageId: undefined },
  },
];

const PUBACK_1 = b(0x40, 2, 0, 1);

describe.each(codecTargets)('mqtt parser protocol errors (%s)', (_name, codec: Codec) => {
  it.each(errorCases)('$name', ({ bytes, why, packetBytesMax }) => {
    const max = packetBytesMax ?? 1 << 20;
    // Whole, after a valid packet, and 1 byte at a time: the error is reported once the
    // offending byte is in, the packets before it are delivered, and the state is sticky.
    for (const chunks of [[bytes], [PUBACK_1 + bytes], bytes.split('')]) {
      const r = parseOurs(codec, chunks, max);
      expect(r.err).toMatch(why);
      expect(r.pending).toBe(0);
      expect(r.packets).toEqual(chunks[0].startsWith(PUBACK_1) ? [{ cmd: 'puback', messageId: 1 }] : []);
    }
    const p = new codec.MqttParser(max);
    p.push(bytes);
    expect(p.next()).toBe(-1);
    const err = p.err;
    p.push(PUBACK_1);
    expect(p.held).toBe('');
    expect(p.next()).toBe(-1);
    expect(p.err).toBe(err);
    p.reset();
    expect(p.err).toBe('');
    p.push(PUBACK_1);
    expect(p.next()).toBe(codec.PUBACK);
    expect(p.id).toBe(1);
    expect(p.next()).toBe(0);
  });

  it('fails on the first byte of a packet type a client must not receive, before its length', () => {
    const p = new codec.MqttParser(100);
    p.push(b(0x10));
    expect(p.next()).toBe(-1);
  });

  it('fails as soon as the length of a non-PUBLISH exceeds packetBytesMax, before the body is buffered', () => {
    const p = new codec.MqttParser(100);
    p.push(b(0x90, 0xc8));
    expect(p.next()).toBe(0);
    p.push(b(0x01));
    expect(p.next()).toBe(-1);
    expect(p.err).toBe('size 200/9');
    expect(p.held).toBe('');
  });

  it('hands over a PUBLISH over packetBytesMax with its topic, id and first bytes, skips the rest, and goes on', () => {
    const body = '{"id":"big","m":"ping","p":{"pad":"' + 'x'.repeat(5000) + '"}}';
    const pub = Buffer.from(
      mqtt.generate({ cmd: 'publish', topic: 'espfleet/d/rpc/req', payload: Buffer.from(body, 'latin1'), qos: 1, messageId: 7, dup: false, retain: false }),
    ).toString('latin1');
    const stream = pub + b(0xd0, 0);
    for (const step of [1, 7, 64, 1000, stream.length]) {
      const p = new codec.MqttParser(256);
      const got: Array<[number, string, number, number, string]> = [];
      let peak = 0;
      for (let at = 0; at < stream.length; at += step) {
        p.push(stream.slice(at, at + step));
        let t: number;
        while ((t = p.next()) > 0) got.push([t, p.topic, p.id, p.over, t === 3 ? p.payload : '']);
        expect(t).toBe(0);
        peak = Math.max(peak, p.held.length);
      }
      expect(got.length, `step ${step}`).toBe(2);
      expect(got[0].slice(0, 4)).toEqual([3, 'espfleet/d/rpc/req', 7, pub.length - 3]);
      expect(body.startsWith(got[0][4]) && got[0][4].startsWith('{"id":"big"')).toBe(true);
      expect(got[1][0]).toBe(13);
      expect(peak).toBeLessThan(256 + 5);
    }
  });

  it('fails on a 4th length byte with the continuation bit, without waiting for a 5th', () => {
    const p = new codec.MqttParser(1 << 28);
    p.push(b(0x30, 0x80, 0x80, 0x80));
    expect(p.next()).toBe(0);
    p.push(b(0x80));
    expect(p.next()).toBe(-1);
  });
});

describe.each(codecTargets)('mqtt parser tolerated packets (%s)', (_name, codec: Codec) => {
  it.each(toleratedCases)('$name', ({ bytes, want }) => {
    expect(parseOurs(codec, [bytes])).toMatchObject({ err: '', packets: [want] });
    expect(parseOurs(codec, bytes.split(''))).toMatchObject({ err: '', packets: [want] });
  });
});

describe.each(codecTargets)('mqtt parser buffering (%s)', (_name, codec: Codec) => {
  it('holds less than packetBytesMax + 5 bytes after each drain, whatever the split', () => {
    const max = 300;
    const stream = [
      codec.encodePublish('a', 'x'.repeat(max - 3), 0, false, false, 0), // remaining length = max
      PUBACK_1,
      codec.encodePublish('topic/2', 'y'.repeat(200), 1, true, false, 9),
      b(0xd0, 0),
    ]
      .join('')
      // Our encoder's PUBLISH is valid inbound too; the stream is what a broker could send.
      .split('');
    for (const size of [1, 2, 3, 7, 64, 299, 300, 301, 305, 1000]) {
      const chunks: string[] = [];
      const all = stream.join('');
      for (let i = 0; i < all.length; i += size) chunks.push(all.slice(i, i + size));
      const r = parseOurs(codec, chunks, max);
      expect(r.err).toBe('');
      expect(r.packets.map((p) => p.cmd)).toEqual(['publish', 'puback', 'publish', 'pingresp']);
      expect(r.pendingMax).toBeLessThan(max + 5);
      expect(r.pending).toBe(0);
    }
  });

  it('keeps a packet of exactly packetBytesMax: 4-byte length header and body', () => {
    const max = 2097152;
    const pkt = codec.encodePublish('t', 'z'.repeat(max - 5), 1, false, false, 1);
    expect(pkt.length).toBe(max + 5);
    const p = new codec.MqttParser(max);
    p.push(pkt.slice(0, -1));
    expect(p.next()).toBe(0);
    expect(p.held.length).toBe(max + 4);
    p.push(pkt.slice(-1));
    expect(p.next()).toBe(codec.PUBLISH);
    expect(p.payload.length).toBe(max - 5);
    expect(p.next()).toBe(0);
    expect(p.held).toBe('');
  });

  it('after each drain it holds exactly the incomplete packet, never what it consumed', () => {
    const p = new codec.MqttParser(64);
    const chunk = PUBACK_1 + PUBACK_1 + b(0x40, 2);
    p.push(chunk);
    expect(p.held).toBe(chunk);
    expect(p.next()).toBe(codec.PUBACK);
    expect(p.next()).toBe(codec.PUBACK);
    expect(p.next()).toBe(0);
    expect(p.held).toBe(b(0x40, 2));
    p.push(b(0, 9));
    expect(p.next()).toBe(codec.PUBACK);
    expect(p.id).toBe(9);
    expect(p.next()).toBe(0);
    expect(p.held).toBe('');
    // A chunk that arrives into an empty buffer is kept as it is.
    p.push(b(0x40));
    expect(p.next()).toBe(0);
    expect(p.held).toBe(b(0x40));
  });

  it('tolerates empty chunks and next() without input', () => {
    const p = new codec.MqttParser(64);
    expect(p.next()).toBe(0);
    p.push('');
    expect(p.next()).toBe(0);
    p.push(b(0xd0));
    p.push('');
    expect(p.next()).toBe(0);
    p.push(b(0));
    expect(p.next()).toBe(codec.PINGRESP);
  });

  it('exposes the fields of each type', () => {
    const p = new codec.MqttParser(1024);
    p.push(b(0x20, 2, 1, 0) + b(0x90, 5, 0x12, 0x34, 1, 0x80, 0) + b(0x3b, 6, 0, 1, 't', 0xab, 0xcd, 'P') + b(0x62, 2, 1, 2));
    expect(p.next()).toBe(codec.CONNACK);
    expect([p.sp, p.rc]).toEqual([true, 0]);
    expect(p.next()).toBe(codec.SUBACK);
    expect([p.id, p.codes]).toEqual([0x1234, b(1, 0x80, 0)]);
    expect(p.next()).toBe(codec.PUBLISH);
    expect([p.topic, p.payload, p.qos, p.dup, p.retain, p.id]).toEqual(['t', 'P', 1, true, true, 0xabcd]);
    expect(p.next()).toBe(codec.PUBREL);
    expect(p.id).toBe(0x102);
    expect(p.next()).toBe(0);
  });
});

describe.each(codecTargets)('mqtt encoder asserts on programmer errors (%s)', (_name, codec: Codec) => {
  it('password without username [MQTT-3.1.2-22]', () => {
    expect(() => codec.encodeConnect({ clientId: 'c', keepaliveMs: 0, clean: true, password: 'p' })).toThrow(/password without username/);
  });
  it('keepalive beyond 16 bits of seconds', () => {
    expect(() => codec.encodeConnect({ clientId: 'c', keepaliveMs: 65536000, clean: true })).toThrow(/keepalive/);
  });
  it('a field over 65535 bytes', () => {
    expect(() => codec.encodeConnect({ clientId: 'c'.repeat(65536), keepaliveMs: 0, clean: true })).toThrow(/too long/);
    expect(() => codec.subscription('t'.repeat(65536), 0)).toThrow(/too long/);
    expect(() => codec.encodePublish('t'.repeat(65536), '', 0, false, false, 0)).toThrow(/too long/);
    // 65535 itself fits.
    expect(codec.encodePublish('t'.repeat(65535), '', 0, false, false, 0).length).toBe(1 + 3 + 2 + 65535);
  });
  it('packet id out of 1..65535 at QoS > 0 [MQTT-2.3.1-1]', () => {
    expect(() => codec.encodePublish('t', '', 1, false, false, 0)).toThrow(/packet id/);
    expect(() => codec.encodePublish('t', '', 2, false, false, 65536)).toThrow(/packet id/);
    expect(codec.encodePublish('t', '', 0, false, false, 0)).toBe(b(0x30, 3, 0, 1, 't'));
  });
  it('subscribe and unsubscribe need a topic [MQTT-3.8.3-3] [MQTT-3.10.3-2]', () => {
    expect(() => codec.encodeSubscribe(1, '')).toThrow(/no topics/);
    expect(() => codec.encodeUnsubscribe(1, [])).toThrow(/no topics/);
  });
});
