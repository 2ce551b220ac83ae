import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { FrameGuard } from '../../../../host/bus/frame-guard.js';

const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 30 });
const publish = (n: number, qos: 0 | 1 = 1) =>
  mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(n, 0x61), qos, messageId: qos ? 1 : undefined, retain: false, dup: false });
const subscribe = mqttPacket.generate({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'a/#', qos: 1 }] });
const puback = mqttPacket.generate({ cmd: 'puback', messageId: 3 });
const pingreq = mqttPacket.generate({ cmd: 'pingreq' });
const disconnect = mqttPacket.generate({ cmd: 'disconnect' });

function feedAll(g: FrameGuard, chunks: Buffer[]): string | null {
  let r: string | null = null;
  for (const c of chunks) r = g.feed(c) ?? r;
  return r;
}

describe('FrameGuard on well-formed streams', () => {
  const stream = Buffer.concat([connect, publish(0), publish(127), publish(200), publish(20000), subscribe, puback, pingreq, disconnect]);

  it('accepts the whole stream in one chunk and sees the DISCONNECT', () => {
    const g = new FrameGuard(64 * 1024);
    expect(g.feed(stream)).toBeNull();
    expect(g.sawDisconnect).toBe(true);
  });

  it('accepts it split at every offset (two chunks)', () => {
    for (let i = 1; i < stream.length; i += 7) {
      const g = new FrameGuard(64 * 1024);
      expect(feedAll(g, [stream.subarray(0, i), stream.subarray(i)])).toBeNull();
    }
  });

  it('accepts it byte by byte', () => {
    const g = new FrameGuard(64 * 1024);
    for (let i = 0; i < stream.length; i++) expect(g.feed(stream.subarray(i, i + 1))).toBeNull();
    expect(g.sawDisconnect).toBe(true);
  });

  it('accepts a packet of exactly packetBytesMax and refuses one byte more', () => {
    const body = publish(100).length - 2; // 1 header byte + 1 length byte
    expect(new FrameGuard(body).feed(Buffer.concat([connect, publish(100)]))).toBeNull();
    const g = new FrameGuard(body - 1);
    expect(g.feed(Buffer.concat([connect, publish(100)]))).toBe('packet-too-large');
    expect(g.detail).toMatch(/over/);
  });
});

describe('FrameGuard rejections', () => {
  const c = connect;
  it.each<[string, Buffer, string]>([
    ['5-byte Remaining Length', Buffer.concat([c, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]), 'bad-remaining-length'],
    ['oversized by header alone (no body sent)', Buffer.concat([c, Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])]), 'packet-too-large'],
    ['PUBACK with Remaining Length 3', Buffer.concat([c, Buffer.from([0x40, 0x03, 0, 1, 0])]), 'bad-remaining-length'],
    ['PINGREQ with a body', Buffer.concat([c, Buffer.from([0xc0, 0x01, 0])]), 'bad-remaining-length'],
    ['SUBSCRIBE with flags 0000', Buffer.concat([c, Buffer.from([0x80, 0x06, 0, 1, 0, 1, 0x61, 0])]), 'reserved-flags'],
    ['PUBREL with flags 0000', Buffer.concat([c, Buffer.from([0x60, 0x02, 0, 1])]), 'reserved-flags'],
    ['PINGREQ with flag bit 0', Buffer.concat([c, Buffer.from([0xc1, 0x00])]), 'reserved-flags'],
    ['PUBLISH QoS 3', Buffer.concat([c, Buffer.from([0x36, 0x05, 0, 1, 0x74, 0, 1])]), 'reserved-flags'],
    ['PUBLISH QoS 0 with DUP', Buffer.concat([c, Buffer.from([0x38, 0x03, 0, 1, 0x74])]), 'reserved-flags'],
    ['CONNECT with flags', Buffer.from([0x12, 0x00]), 'reserved-flags'],
    ['packet type 0', Buffer.concat([c, Buffer.from([0x00, 0x00])]), 'reserved-packet-type'],
    ['packet type 15', Buffer.concat([c, Buffer.from([0xf0, 0x00])]), 'reserved-packet-type'],
    ['CONNACK from a client', Buffer.concat([c, Buffer.from([0x20, 0x02, 0, 0])]), 'unexpected-packet'],
    ['PINGRESP from a client', Buffer.concat([c, Buffer.from([0xd0, 0x00])]), 'unexpected-packet'],
    ['PUBLISH before CONNECT', publish(1), 'first-packet-not-connect'],
    ['second CONNECT', Buffer.concat([c, c]), 'second-connect'],
  ])('%s', (_name, bytes, reason) => {
    const g = new FrameGuard(1 << 20);
    expect(g.feed(bytes)).toBe(reason);
    // Sticky: later bytes change nothing.
    expect(g.feed(pingreq)).toBe(reason);
    expect(g.reason).toBe(reason);
    // Same verdict when the bytes arrive one at a time.
    const h = new FrameGuard(1 << 20);
    let got: string | null = null;
    for (let i = 0; i < bytes.length && got === null; i++) got = h.feed(bytes.subarray(i, i + 1));
    expect(got).toBe(reason);
  });
});
