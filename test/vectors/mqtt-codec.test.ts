// MQTT 3.1.1 codec vectors against the reference implementation (mqtt-packet):
// - every packet our encoders write is byte-identical to mqtt-packet's generate() for the same
//   fields, and mqtt-packet's parser reads it back to those fields;
// - every packet mqtt-packet generates for the types a client receives is parsed by ours to the
//   fields mqtt-packet's parser reads, with the bytes split at every offset and 1 byte at a time.
// Runs against the source module and the minified bundle's `mqttCodec` namespace.
import { describe, expect, it } from 'vitest';
import * as mqttPacket from 'mqtt-packet';
import * as src from '../../firmware/wire/mqtt-codec.js';
import { codecTargets, bundleMissing, latin1, bytesOf, utf8Text, parseOurs, parseRef, refInbound } from '../unit/firmware/wire/mqtt-codec-fixtures.js';

type Codec = typeof src;

const ALL_BYTES = (() => {
  let s = '';
  for (let i = 0; i < 256; i++) s += String.fromCharCode(i);
  return s;
})();

/** What mqtt-packet's parser reads from bytes, reduced to the fields our encoders set. */
function refOutbound(bytes: string): Record<string, unknown> {
  const { packets, errors } = parseRef(bytes);
  expect(errors).toEqual([]);
  expect(packets).toHaveLength(1);
  const p = packets[0] as any;
  expect(p.length + headerBytes(p.length)).toBe(bytes.length);
  switch (p.cmd) {
    case 'connect':
      return {
        cmd: p.cmd,
        protocolId: p.protocolId,
        protocolVersion: p.protocolVersion,
        clientId: p.clientId,
        clean: p.clean,
        keepalive: p.keepalive,
        will: p.will
          ? { topic: p.will.topic, payload: latin1(p.will.payload), qos: p.will.qos, retain: p.will.retain }
          : undefined,
        username: p.username,
        password: p.password === undefined ? undefined : latin1(p.password),
      };
    case 'publish':
      return {
        cmd: p.cmd,
        topic: p.topic,
        payload: latin1(p.payload),
        qos: p.qos,
        dup: p.dup,
        retain: p.retain,
        messageId: p.messageId,
      };
    case 'subscribe':
      return { cmd: p.cmd, messageId: p.messageId, subscriptions: p.subscriptions.map((s: any) => ({ topic: s.topic, qos: s.qos })) };
    case 'unsubscribe':
      return { cmd: p.cmd, messageId: p.messageId, unsubscriptions: p.unsubscriptions };
    case 'puback':
      return { cmd: p.cmd, messageId: p.messageId };
    default:
      return { cmd: p.cmd };
  }
}

function headerBytes(rl: number): number {
  return 1 + (rl < 128 ? 1 : rl < 16384 ? 2 : rl < 2097152 ? 3 : 4);
}

interface ConnectCase {
  name: string;
  o: src.MqttConnect;
  /** The fields mqtt-packet should read back. */
  want: Record<string, unknown>;
}

const connectCases: ConnectCase[] = [
  {
    name: 'minimal, clean, keepalive 60 s',
    o: { clientId: 'dev-1', keepaliveMs: 60000, clean: true },
    want: { clientId: 'dev-1', clean: true, keepalive: 60 },
  },
  {
    name: 'empty client id, keepalive off',
    o: { clientId: '', keepaliveMs: 0, clean: true },
    want: { clientId: '', clean: true, keepalive: 0 },
  },
  {
    name: 'persistent session (clean false)',
    o: { clientId: 'shed-1', keepaliveMs: 30000, clean: false },
    want: { clientId: 'shed-1', clean: false, keepalive: 30 },
  },
  {
    name: 'keepalive rounds up to whole seconds',
    o: { clientId: 'a', keepaliveMs: 1500, clean: true },
    want: { clientId: 'a', clean: true, keepalive: 2 },
  },
  {
    name: 'largest keepalive',
    o: { clientId: 'a', keepaliveMs: 65535000, clean: true },
    want: { clientId: 'a', clean: true, keepalive: 65535 },
  },
  {
    name: 'will QoS 1 + retain (the offline will)',
    o: {
      clientId: 'shed-1',
      keepaliveMs: 60000,
      clean: true,
      will: { topic: 'espfleet/shed-1/status', payload: 'offline', qos: 1, retain: true },
    },
    want: {
      clientId: 'shed-1',
      clean: true,
      keepalive: 60,
      will: { topic: 'espfleet/shed-1/status', payload: 'offline', qos: 1, retain: true },
    },
  },
  {
    name: 'will QoS 2, binary payload 0-255, no retain',
    o: { clientId: 'c', keepaliveMs: 10000, clean: true, will: { topic: 'w/t', payload: ALL_BYTES, qos: 2, retain: false } },
    want: { clientId: 'c', clean: true, keepalive: 10, will: { topic: 'w/t', payload: ALL_BYTES, qos: 2, retain: false } },
  },
  {
    name: 'will QoS 0 with empty payload',
    o: { clientId: 'c', keepaliveMs: 10000, clean: true, will: { topic: 'w', payload: '', qos: 0, retain: false } },
    want: { clientId: 'c', clean: true, keepalive: 10, will: { topic: 'w', payload: '', qos: 0, retain: false } },
  },
  {
    name: 'username without password',
    o: { clientId: 'c', keepaliveMs: 60000, clean: true, username: 'shed-1' },
    want: { clientId: 'c', clean: true, keepalive: 60, username: 'shed-1' },
  },
  {
    name: 'username and binary password',
    o: { clientId: 'c', keepaliveMs: 60000, clean: true, username: 'u', password: '\x00\xff\x80pw' },
    want: { clientId: 'c', clean: true, keepalive: 60, username: 'u', password: '\x00\xff\x80pw' },
  },
  {
    name: 'empty username and empty password',
    o: { clientId: 'c', keepaliveMs: 60000, clean: true, username: '', password: '' },
    want: { clientId: 'c', clean: true, keepalive: 60, username: '', password: '' },
  },
  {
    name: 'everything, non-ASCII text (host UTF-16 strings)',
    o: {
      clientId: 'caf\u00e9-\u20ac',
      keepaliveMs: 5000,
      clean: false,
      will: { topic: 'd/\u00fc/\ud83d\ude00', payload: 'gone', qos: 1, retain: true },
      username: '\u00e9l\u00e8ve',
      password: 'p',
    },
    want: {
      clientId: 'caf\u00e9-\u20ac',
      clean: false,
      keepalive: 5,
      will: { topic: 'd/\u00fc/\ud83d\ude00', payload: 'gone', qos: 1, retain: true },
      username: '\u00e9l\u00e8ve',
      password: 'p',
    },
  },
  {
    name: 'remaining length over 127 (2-byte length)',
    o: { clientId: 'c', keepaliveMs: 1000, clean: true, will: { topic: 't', payload: 'x'.repeat(200), qos: 0, retain: false } },
    want: { clientId: 'c', clean: true, keepalive: 1, will: { topic: 't', payload: 'x'.repeat(200), qos: 0, retain: false } },
  },
  {
    name: 'remaining length over 16383 (3-byte length)',
    o: { clientId: 'c', keepaliveMs: 1000, clean: true, will: { topic: 't', payload: 'y'.repeat(40000), qos: 0, retain: false } },
    want: { clientId: 'c', clean: true, keepalive: 1, will: { topic: 't', payload: 'y'.repeat(40000), qos: 0, retain: false } },
  },
];

/** The mqtt-packet generate() input for a connect case. */
function refConnect(o: src.MqttConnect): any {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clientId: o.clientId,
    clean: o.clean,
    keepalive: Math.ceil(o.keepaliveMs / 1000),
    will: o.will && { topic: o.will.topic, payload: bytesOf(o.will.payload), qos: o.will.qos, retain: o.will.retain },
    username: o.username,
    password: o.password === undefined ? undefined : bytesOf(o.password),
  };
}

interface PublishCase {
  name: string;
  topic: string;
  payload: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  id: number;
}

/** A payload that makes the PUBLISH remaining length exactly rl. */
function publishOfLength(rl: number, qos: 0 | 1 | 2, name: string): PublishCase {
  const topic = 'espfleet/dev/telemetry';
  const payload = 'p'.repeat(rl - 2 - topic.length - (qos ? 2 : 0));
  return { name, topic, payload, qos, retain: false, dup: false, id: 7 };
}

const publishCases: PublishCase[] = [
  { name: 'QoS 0, empty payload', topic: 'a', payload: '', qos: 0, retain: false, dup: false, id: 0 },
  { name: 'QoS 0 retained', topic: 'espfleet/shed-1/status', payload: 'online', qos: 0, retain: true, dup: false, id: 0 },
  { name: 'QoS 1 telemetry', topic: 'espfleet/shed-1/telemetry', payload: '{"seq":1,"ts":5,"r":{"t":21.5}}', qos: 1, retain: false, dup: false, id: 1 },
  { name: 'QoS 1 dup retained, id 65535', topic: 't/x', payload: 'again', qos: 1, retain: true, dup: true, id: 65535 },
  { name: 'QoS 1, id 256 (high byte only)', topic: 't', payload: 'x', qos: 1, retain: false, dup: false, id: 256 },
  { name: 'QoS 2 dup', topic: 't', payload: 'x', qos: 2, retain: false, dup: true, id: 300 },
  { name: 'QoS 1, binary payload 0-255', topic: 'bin', payload: ALL_BYTES, qos: 1, retain: false, dup: false, id: 42 },
  { name: 'QoS 1, empty payload', topic: 'e', payload: '', qos: 1, retain: false, dup: false, id: 9 },
  { name: 'non-ASCII topic (host UTF-16)', topic: 'caf\u00e9/\u20ac/\ud83d\ude00', payload: 'v', qos: 0, retain: false, dup: false, id: 0 },
  { name: 'topic of 300 bytes', topic: 'x/'.repeat(150), payload: 'v', qos: 1, retain: false, dup: false, id: 3 },
  publishOfLength(127, 0, 'remaining length 127 (1 byte)'),
  publishOfLength(128, 0, 'remaining length 128 (2 bytes)'),
  publishOfLength(16383, 1, 'remaining length 16383 (2 bytes)'),
  publishOfLength(16384, 1, 'remaining length 16384 (3 bytes)'),
  publishOfLength(2097151, 1, 'remaining length 2097151 (3 bytes)'),
  publishOfLength(2097152, 1, 'remaining length 2097152 (4 bytes)'),
];

function refPublish(c: PublishCase): any {
  return {
    cmd: 'publish',
    topic: c.topic,
    payload: bytesOf(c.payload),
    qos: c.qos,
    dup: c.dup && c.qos > 0,
    retain: c.retain,
    messageId: c.qos ? c.id : undefined,
  };
}

const gen = (p: any): string => latin1(mqttPacket.generate(p));

describe.each(codecTargets)('mqtt codec encoders (%s)', (_name, codec: Codec) => {
  it.each(connectCases)('CONNECT: $name', (c) => {
    const ours = codec.encodeConnect(c.o);
    expect(ours).toBe(gen(refConnect(c.o)));
    expect(refOutbound(ours)).toEqual({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      will: undefined,
      username: undefined,
      password: undefined,
      ...c.want,
    });
  });

  it.each(publishCases)('PUBLISH: $name', (c) => {
    const ours = codec.encodePublish(c.topic, c.payload, c.qos, c.retain, c.dup, c.id);
    const rl = c.topic.length < 128 && !/[^\x00-\x7f]/.test(c.topic) ? 2 + c.topic.length + (c.qos ? 2 : 0) + c.payload.length : -1;
    if (rl >= 0) expect(ours.length).toBe(headerBytes(rl) + rl);
    expect(ours === gen(refPublish(c))).toBe(true);
    const want = refPublish(c);
    const got = refOutbound(ours);
    expect(got.payload === c.payload).toBe(true);
    expect({ ...got, payload: '' }).toEqual({ ...want, payload: '' });
  });

  it('PUBLISH clears DUP at QoS 0 [MQTT-3.3.1-2]', () => {
    const ours = codec.encodePublish('t', 'x', 0, false, true, 0);
    expect(ours.charCodeAt(0)).toBe(0x30);
    expect(refOutbound(ours)).toMatchObject({ dup: false, qos: 0 });
  });

  it('PUBLISH passes a topic that is already UTF-8 bytes (the device) unchanged', () => {
    const bytes = Buffer.from('caf\u00e9/\u20ac', 'utf8').toString('latin1');
    const ours = codec.encodePublish(bytes, 'v', 0, false, false, 0);
    expect(ours).toBe(gen({ cmd: 'publish', topic: 'caf\u00e9/\u20ac', payload: Buffer.from('v'), qos: 0, dup: false, retain: false }));
  });

  it.each([1, 2, 255, 256, 4660, 65535])('PUBACK id %i', (id) => {
    const ours = codec.encodePuback(id);
    expect(ours).toBe(gen({ cmd: 'puback', messageId: id }));
    expect(refOutbound(ours)).toEqual({ cmd: 'puback', messageId: id });
  });

  const subCases: { name: string; id: number; subs: src.MqttSub[] }[] = [
    { name: 'one topic QoS 1', id: 1, subs: [{ topic: 'espfleet/shed-1/rpc/req', qos: 1 }] },
    {
      name: 'three topics, QoS 0/1/2, wildcards',
      id: 65535,
      subs: [
        { topic: 'a/+/c', qos: 0 },
        { topic: 'b/#', qos: 1 },
        { topic: '#', qos: 2 },
      ],
    },
    { name: 'non-ASCII filter', id: 513, subs: [{ topic: 'caf\u00e9/\u20ac', qos: 1 }] },
    { name: 'remaining length over 127', id: 2, subs: Array.from({ length: 12 }, (_, i) => ({ topic: 'topic/' + i + '/x', qos: (i % 3) as 0 | 1 | 2 })) },
  ];

  it.each(subCases)('SUBSCRIBE: $name', (c) => {
    const ours = codec.encodeSubscribe(c.id, c.subs.map((x) => codec.subscription(x.topic, x.qos)).join(''));
    expect(ours).toBe(gen({ cmd: 'subscribe', messageId: c.id, subscriptions: c.subs }));
    expect(refOutbound(ours)).toEqual({ cmd: 'subscribe', messageId: c.id, subscriptions: c.subs });
  });

  const unsubCases: { name: string; id: number; topics: string[] }[] = [
    { name: 'one topic', id: 3, topics: ['espfleet/shed-1/rpc/req'] },
    { name: 'three topics', id: 40000, topics: ['a', 'b/+', 'c/#'] },
    { name: 'non-ASCII topic', id: 5, topics: ['\u00fc/\ud83d\ude00'] },
  ];

  it.each(unsubCases)('UNSUBSCRIBE: $name', (c) => {
    const ours = codec.encodeUnsubscribe(c.id, c.topics);
    expect(ours).toBe(gen({ cmd: 'unsubscribe', messageId: c.id, unsubscriptions: c.topics }));
    expect(refOutbound(ours)).toEqual({ cmd: 'unsubscribe', messageId: c.id, unsubscriptions: c.topics });
  });

  it('PINGREQ and DISCONNECT', () => {
    expect(codec.encodePingreq()).toBe(gen({ cmd: 'pingreq' }));
    expect(refOutbound(codec.encodePingreq())).toEqual({ cmd: 'pingreq' });
    expect(codec.encodeDisconnect()).toBe(gen({ cmd: 'disconnect' }));
    expect(refOutbound(codec.encodeDisconnect())).toEqual({ cmd: 'disconnect' });
  });

  it('every encoded packet is a byte String', () => {
    const all = [
      ...connectCases.map((c) => codec.encodeConnect(c.o)),
      ...publishCases.slice(0, 10).map((c) => codec.encodePublish(c.topic, c.payload, c.qos, c.retain, c.dup, c.id)),
    ];
    for (const s of all) expect(/[^\x00-\xff]/.test(s)).toBe(false);
  });
});

/** mqtt-packet generate() inputs for every type a client receives. */
const inboundCases: { name: string; p: any }[] = [
  { name: 'CONNACK accepted', p: { cmd: 'connack', sessionPresent: false, returnCode: 0 } },
  { name: 'CONNACK accepted, session present', p: { cmd: 'connack', sessionPresent: true, returnCode: 0 } },
  ...[1, 2, 3, 4, 5].map((rc) => ({ name: 'CONNACK refused ' + rc, p: { cmd: 'connack', sessionPresent: false, returnCode: rc } })),
  { name: 'PUBLISH QoS 0 empty payload', p: { cmd: 'publish', topic: 'a', payload: Buffer.alloc(0), qos: 0, dup: false, retain: false } },
  { name: 'PUBLISH QoS 0 retained', p: { cmd: 'publish', topic: 'espfleet/x/status', payload: Buffer.from('online'), qos: 0, dup: false, retain: true } },
  { name: 'PUBLISH QoS 1 rpc request', p: { cmd: 'publish', topic: 'espfleet/x/rpc/req', payload: Buffer.from('{"id":"1","m":"ping","p":{},"dl":5000}'), qos: 1, messageId: 1, dup: false, retain: false } },
  { name: 'PUBLISH QoS 1 dup, id 65535', p: { cmd: 'publish', topic: 't', payload: Buffer.from('d'), qos: 1, messageId: 65535, dup: true, retain: false } },
  { name: 'PUBLISH QoS 2 dup retained', p: { cmd: 'publish', topic: 't/2', payload: Buffer.from('q2'), qos: 2, messageId: 258, dup: true, retain: true } },
  { name: 'PUBLISH binary payload 0-255', p: { cmd: 'publish', topic: 'bin', payload: bytesOf(ALL_BYTES), qos: 1, messageId: 77, dup: false, retain: false } },
  { name: 'PUBLISH non-ASCII topic', p: { cmd: 'publish', topic: 'caf\u00e9/\u20ac/\ud83d\ude00', payload: Buffer.from('v'), qos: 0, dup: false, retain: false } },
  { name: 'PUBLISH remaining length 127', p: { cmd: 'publish', topic: 'r', payload: Buffer.alloc(127 - 3, 0x61), qos: 0, dup: false, retain: false } },
  { name: 'PUBLISH remaining length 128', p: { cmd: 'publish', topic: 'r', payload: Buffer.alloc(128 - 3, 0x62), qos: 0, dup: false, retain: false } },
  { name: 'PUBACK id 1', p: { cmd: 'puback', messageId: 1 } },
  { name: 'PUBACK id 65535', p: { cmd: 'puback', messageId: 65535 } },
  { name: 'PUBREC', p: { cmd: 'pubrec', messageId: 256 } },
  { name: 'PUBREL', p: { cmd: 'pubrel', messageId: 255 } },
  { name: 'PUBCOMP', p: { cmd: 'pubcomp', messageId: 4660 } },
  { name: 'SUBACK one granted', p: { cmd: 'suback', messageId: 2, granted: [1] } },
  { name: 'SUBACK 0, 1, 2 and failure 0x80', p: { cmd: 'suback', messageId: 513, granted: [0, 1, 2, 128] } },
  { name: 'SUBACK failure only', p: { cmd: 'suback', messageId: 9, granted: [128] } },
  { name: 'UNSUBACK', p: { cmd: 'unsuback', messageId: 77 } },
  { name: 'PINGRESP', p: { cmd: 'pingresp' } },
];

const inbound = inboundCases.map((c) => ({ ...c, bytes: gen(c.p) }));
const bigInbound = [16383, 16384, 2097152].map((rl) => {
  const topic = 'big';
  const p = { cmd: 'publish', topic, payload: Buffer.alloc(rl - 2 - topic.length - 2, 0x7a), qos: 1, messageId: 5, dup: false, retain: false };
  return { name: 'PUBLISH remaining length ' + rl, bytes: gen(p) };
});

describe.each(codecTargets)('mqtt codec parser (%s)', (_name, codec: Codec) => {
  it.each(inbound)('$name: whole, split at every offset, 1 byte at a time', ({ bytes }) => {
    const want = refInbound(bytes);
    expect(want).toHaveLength(1);
    const whole = parseOurs(codec, [bytes]);
    expect(whole.err).toBe('');
    expect(whole.packets).toEqual(want);
    for (let k = 1; k < bytes.length; k++) {
      const r = parseOurs(codec, [bytes.slice(0, k), bytes.slice(k)]);
      expect(r.err).toBe('');
      expect(r.packets).toEqual(want);
    }
    const bytewise = parseOurs(codec, bytes.split(''));
    expect(bytewise.packets).toEqual(want);
    expect(bytewise.pending).toBe(0);
  });

  it.each(bigInbound)('$name: whole, 1 byte header splits, body halves', ({ bytes }) => {
    const want = refInbound(bytes);
    expect(want).toHaveLength(1);
    const cuts = [1, 2, 3, 4, 5, 6, 7, 8, bytes.length >> 1, bytes.length - 1];
    expect(parseOurs(codec, [bytes]).packets).toEqual(want);
    for (const k of cuts) {
      const r = parseOurs(codec, [bytes.slice(0, k), bytes.slice(k)]);
      expect(r.err).toBe('');
      expect(r.packets).toEqual(want);
    }
    // Header byte by byte, then the body in 4 KB chunks.
    const chunks = bytes.slice(0, 8).split('');
    for (let i = 8; i < bytes.length; i += 4096) chunks.push(bytes.slice(i, i + 4096));
    expect(parseOurs(codec, chunks).packets).toEqual(want);
  });

  it('a stream of every inbound packet, split at every offset and 1 byte at a time', () => {
    const stream = inbound.map((c) => c.bytes).join('');
    const want = refInbound(stream);
    expect(want).toHaveLength(inbound.length);
    expect(parseOurs(codec, [stream]).packets).toEqual(want);
    for (let k = 1; k < stream.length; k++) {
      const r = parseOurs(codec, [stream.slice(0, k), stream.slice(k)]);
      expect(r.err).toBe('');
      expect(r.packets).toEqual(want);
    }
    const bytewise = parseOurs(codec, stream.split(''));
    expect(bytewise.err).toBe('');
    expect(bytewise.packets).toEqual(want);
  });

  it('reads back what our own encoders write when the types overlap (PUBLISH, PUBACK)', () => {
    const bytes =
      codec.encodePublish('espfleet/x/rpc/res', '{"id":"1","r":true}', 1, false, false, 12) +
      codec.encodePublish('caf\u00e9', ALL_BYTES, 0, true, false, 0) +
      codec.encodePuback(12);
    expect(parseOurs(codec, [bytes]).packets).toEqual(refInbound(bytes));
  });

  it('topics come back as UTF-8 bytes; utf8Text decodes them on the host', () => {
    const p = new codec.MqttParser(1024);
    p.push(gen({ cmd: 'publish', topic: '\u20ac', payload: Buffer.from('v'), qos: 0, dup: false, retain: false }));
    expect(p.next()).toBe(codec.PUBLISH);
    expect(p.topic).toBe('\xe2\x82\xac');
    expect(utf8Text(p.topic)).toBe('\u20ac');
  });
});

// Visible in the report when the bundle could not be loaded, instead of silently testing less.
if (bundleMissing) {
  describe('mqtt codec against the bundle', () => {
    it.skip(`skipped: the bundle namespace mqttCodec is not loadable (${bundleMissing})`, () => {});
  });
}
