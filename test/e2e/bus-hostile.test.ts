/**
 * Hostile input against the embedded broker over real sockets on 127.0.0.1: raw connections
 * write hand-built malformed or forbidden packets; each must be refused with the expected
 * reason (counted and logged) and the expected answer (a CONNACK code, a SUBACK failure or a
 * plain close), while a well-behaved device keeps publishing QoS 1 telemetry and getting its
 * PUBACKs throughout, every message reaching the ingest hook once and in order.
 */
import mqttPacket from 'mqtt-packet';
import { connectAsync, type MqttClient } from 'mqtt';
import { createConnection } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeededRng } from '../../firmware/core/rng.js';
import type { ClientEvent } from '../../host/bus/bus.js';
import { deriveDevicePassword } from '../../host/bus/credentials.js';
import { EmbeddedBus } from '../../host/bus/embedded-broker.js';
import type { BusLogEntry } from '../../host/bus/rejection-log.js';

const KEY = '5f4dcc3b5aa765d61d8327deb882cf995f4dcc3b5aa765d61d8327deb882cf99';
const PACKET_BYTES_MAX = 4096;
const CONNECT_TIMEOUT_MS = 600;

// --- hand-built packets (bytes exactly as written; no encoder that would refuse bad input) ---

type Bytes = Buffer | string;
const b = (x: Bytes) => (typeof x === 'string' ? Buffer.from(x, 'utf8') : x);
const str = (x: Bytes) => {
  const v = b(x);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(v.length);
  return Buffer.concat([len, v]);
};
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 128;
    out.push(d);
  } while (n > 0);
  return Buffer.from(out);
}
const frame = (first: number, body: Buffer) => Buffer.concat([Buffer.from([first]), varint(body.length), body]);

interface ConnectSpec {
  clientId?: Bytes;
  clean?: boolean;
  keepalive?: number;
  will?: { topic: Bytes; payload?: Bytes; qos: number; retain?: boolean };
  username?: Bytes;
  password?: Bytes;
  /** Set the password flag without a password field (and vice versa) as written. */
  extraFlags?: number;
  protocolName?: string;
  level?: number;
}
function connect(c: ConnectSpec = {}): Buffer {
  let flags = c.extraFlags ?? 0;
  if (c.clean !== false) flags |= 0x02;
  if (c.will) flags |= 0x04 | ((c.will.qos & 3) << 3) | (c.will.retain ? 0x20 : 0);
  if (c.password !== undefined) flags |= 0x40;
  if (c.username !== undefined) flags |= 0x80;
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(c.keepalive ?? 30);
  const parts = [str(c.protocolName ?? 'MQTT'), Buffer.from([c.level ?? 4, flags]), ka, str(c.clientId ?? 'raw')];
  if (c.will) parts.push(str(c.will.topic), str(c.will.payload ?? 'x'));
  if (c.username !== undefined) parts.push(str(c.username));
  if (c.password !== undefined) parts.push(str(c.password));
  return frame(0x10, Buffer.concat(parts));
}
function publish(topic: Bytes, payload: Bytes, qos: 0 | 1 = 0, id = 1): Buffer {
  const parts: Buffer[] = [str(topic)];
  if (qos > 0) parts.push(Buffer.from([id >> 8, id & 255]));
  parts.push(b(payload));
  return frame(0x30 | (qos << 1), Buffer.concat(parts));
}
const subscribe = (filter: Bytes, id = 1) => frame(0x82, Buffer.concat([Buffer.from([id >> 8, id & 255]), str(filter), Buffer.from([1])]));
const deviceConnect = (id: string, extra: ConnectSpec = {}) =>
  connect({ clientId: id, username: id, password: deriveDevicePassword(KEY, id), ...extra });

// --- raw sessions --------------------------------------------------------------------------

interface RawResult {
  /** Packets the broker sent, parsed. */
  packets: Array<{ cmd: string; returnCode?: number; granted?: number[]; messageId?: number }>;
  /** The broker closed the connection (rather than the test giving up waiting). */
  closedByBroker: boolean;
}

function rawSession(port: number, chunks: Buffer[], waitMs = 2000): Promise<RawResult> {
  return new Promise((resolve) => {
    const packets: RawResult['packets'] = [];
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => packets.push(p as RawResult['packets'][number]));
    parser.on('error', () => {});
    const s = createConnection({ host: '127.0.0.1', port });
    let done = false;
    const finish = (closedByBroker: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ packets, closedByBroker });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    s.on('data', (d) => parser.parse(d));
    s.on('error', () => {});
    s.on('close', () => finish(true));
    s.on('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed) break;
        s.write(c);
        // Let the broker answer CONNECT before the next packet, as a real client would.
        await new Promise((r) => setTimeout(r, 20));
      }
    });
  });
}

// --- the broker and the well-behaved device ------------------------------------------------

let bus: EmbeddedBus;
let port: number;
const logs: BusLogEntry[] = [];
const events: ClientEvent[] = [];
const stored: number[] = [];
let good: MqttClient;
let acks = 0;
let running = true;
let loopError: unknown = null;
let loopDone: Promise<void>;

beforeAll(async () => {
  bus = new EmbeddedBus({
    fleetKeyHex: KEY,
    port: 0,
    packetBytesMax: PACKET_BYTES_MAX,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    log: (e) => logs.push(e),
    // One log line per reason per window is enough here; everything is still counted.
    logBurst: 1,
  });
  bus.onClientEvent((e) => events.push(e));
  bus.onDevicePublish(async (id, topic, payload) => {
    if (id === 'good-1' && topic === 'espfleet/good-1/telemetry') stored.push(JSON.parse(payload.toString()).seq);
  });
  await bus.start();
  port = bus.address()!.port;
  good = await connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: 'good-1',
    username: 'good-1',
    password: deriveDevicePassword(KEY, 'good-1'),
    clean: false,
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
  loopDone = (async () => {
    let seq = 0;
    try {
      while (running) {
        await good.publishAsync('espfleet/good-1/telemetry', JSON.stringify({ seq: seq++ }), { qos: 1 });
        acks++;
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (err) {
      loopError = err;
    }
  })();
});

afterAll(async () => {
  running = false;
  await loopDone;
  good.end(true);
  await bus.stop();
});

async function goodDeviceProgresses(): Promise<void> {
  const before = acks;
  const end = Date.now() + 5000;
  while (acks < before + 3) {
    if (loopError !== null) throw loopError;
    if (Date.now() > end) throw new Error('the well-behaved device stopped getting PUBACKs');
    await new Promise((r) => setTimeout(r, 10));
  }
}

type Expect = { connack?: number; suback?: number; noPuback?: boolean };

async function expectRejected(reason: string, chunks: Buffer[], exp: Expect = {}): Promise<RawResult> {
  const before = bus.counters().rejections[reason] ?? 0;
  // A refused subscription leaves the connection open: wait only for the SUBACK.
  const res = await rawSession(port, chunks, exp.suback === undefined ? 2000 : 300);
  if (exp.suback === undefined) expect(res.closedByBroker, 'broker closed the connection').toBe(true);
  const connacks = res.packets.filter((p) => p.cmd === 'connack');
  if (exp.connack === undefined) {
    // Either no CONNACK (malformed CONNECT) or an accepting one followed by the violation.
    expect(connacks.every((p) => p.returnCode === 0)).toBe(true);
  } else {
    expect(connacks.map((p) => p.returnCode)).toEqual([exp.connack]);
  }
  if (exp.suback !== undefined) expect(res.packets.find((p) => p.cmd === 'suback')?.granted).toEqual([exp.suback]);
  if (exp.noPuback) expect(res.packets.some((p) => p.cmd === 'puback')).toBe(false);
  expect(bus.counters().rejections[reason] ?? 0, 'count of ' + reason).toBe(before + 1);
  expect(logs.some((l) => l.ev === 'bus.reject' && l.reason === reason)).toBe(true);
  await goodDeviceProgresses();
  return res;
}

describe('hostile input: malformed packets', () => {
  it('Remaining Length with a continuation bit in its 4th byte', async () => {
    await expectRejected('bad-remaining-length', [connect(), Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]);
  });

  it('PUBACK with a wrong Remaining Length', async () => {
    await expectRejected('bad-remaining-length', [connect(), Buffer.from([0x40, 0x05, 0, 1, 0, 0, 0])]);
  });

  it('reserved flag bits: SUBSCRIBE with flags 0000', async () => {
    const bad = Buffer.from(subscribe('lab/#'));
    bad[0] = 0x80;
    await expectRejected('reserved-flags', [connect(), bad]);
  });

  it('reserved flag bit 0 of the CONNECT flags byte (checked by the parser)', async () => {
    await expectRejected('reserved-flags', [connect({ extraFlags: 0x01 })]);
  });

  it('PUBLISH with QoS 3', async () => {
    const bad = Buffer.from(publish('lab/x', 'p', 1));
    bad[0] = 0x36;
    await expectRejected('reserved-flags', [connect(), bad], { noPuback: true });
  });

  it('reserved packet type 0 and a server-only packet type from a client', async () => {
    await expectRejected('reserved-packet-type', [connect(), Buffer.from([0x00, 0x00])]);
    await expectRejected('unexpected-packet', [connect(), Buffer.from([0x20, 0x02, 0x00, 0x00])]);
  });

  it('a packet before CONNECT (an HTTP request on the MQTT port)', async () => {
    await expectRejected('first-packet-not-connect', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]);
  });

  it('a second CONNECT', async () => {
    await expectRejected('second-connect', [connect({ clientId: 'twice' }), connect({ clientId: 'twice' })]);
  });

  it('a CONNECT with a wrong protocol name (parser error)', async () => {
    await expectRejected('malformed', [connect({ protocolName: 'MQTX' })]);
  });

  it('an MQTT 5 CONNECT is answered with CONNACK 1 (unacceptable protocol version)', async () => {
    // MQTT 5 CONNECT has a properties length after keepalive: 0 properties.
    const ka = Buffer.from([0, 30]);
    const body = Buffer.concat([str('MQTT'), Buffer.from([5, 0x02]), ka, Buffer.from([0]), str('v5')]);
    await expectRejected('unsupported-protocol-version', [frame(0x10, body)], { connack: 1 });
  });

  it('a packet over the maximum size is refused from its header, before its body is read', async () => {
    // Announce 1 MiB, send only the first KiB: the broker closes without waiting for the rest.
    const header = Buffer.concat([Buffer.from([0x30]), varint(1 << 20), str('lab/x'), Buffer.alloc(1024, 0x61)]);
    const t0 = performance.now();
    await expectRejected('packet-too-large', [connect(), header]);
    expect(performance.now() - t0).toBeLessThan(1500);
    // The limit is exact: PACKET_BYTES_MAX passes, one more byte does not.
    // Body: topic (2 + 5 bytes), packet id (2), payload.
    const fits = publish('lab/x', Buffer.alloc(PACKET_BYTES_MAX - 9, 0x61), 1);
    expect(fits.length - 3).toBe(PACKET_BYTES_MAX);
    const ok = await rawSession(port, [connect({ clientId: 'fits' }), fits, Buffer.from([0xe0, 0x00])]);
    expect(ok.packets.map((p) => p.cmd)).toEqual(['connack', 'puback']);
    await expectRejected('packet-too-large', [connect(), publish('lab/x', Buffer.alloc(PACKET_BYTES_MAX - 8, 0x61), 1)], { noPuback: true });
  });

  it('an oversized CONNECT', async () => {
    await expectRejected('packet-too-large', [connect({ clientId: 'x'.repeat(PACKET_BYTES_MAX) })], {});
  });
});

describe('hostile input: CONNECT contents', () => {
  it('will QoS 3: closed without CONNACK', async () => {
    const r = await expectRejected('will-qos-invalid', [connect({ will: { topic: 'lab/will', qos: 3 } })]);
    expect(r.packets).toEqual([]);
  });

  it('a password without a user name: closed without CONNACK', async () => {
    const r = await expectRejected('password-without-username', [connect({ password: 'secret' })]);
    expect(r.packets).toEqual([]);
  });

  it('NUL in the client id', async () => {
    const r = await expectRejected('nul-in-string', [connect({ clientId: 'a\u0000b' })]);
    expect(r.packets).toEqual([]);
  });

  it('ill-formed UTF-8 in the user name (overlong encoding)', async () => {
    await expectRejected('invalid-utf8', [connect({ username: Buffer.from([0x61, 0xc0, 0xaf]), password: 'x' })]);
  });

  it('a will topic with a wildcard', async () => {
    await expectRejected('invalid-topic', [connect({ will: { topic: 'lab/+', qos: 0 } })]);
  });

  it('an empty client id with clean session off: CONNACK 2 (identifier rejected)', async () => {
    await expectRejected('empty-client-id-persistent', [connect({ clientId: '', clean: false })], { connack: 2 });
    // With clean session on, the same empty id is accepted (the broker assigns one) [MQTT-3.1.3-6].
    const ok = await rawSession(port, [connect({ clientId: '' }), Buffer.from([0xe0, 0x00])]);
    expect(ok.packets.map((p) => [p.cmd, p.returnCode])).toEqual([['connack', 0]]);
  });
});

describe('hostile input: authentication and ACL', () => {
  it('a wrong password: CONNACK 4', async () => {
    await expectRejected('bad-credentials', [connect({ clientId: 'shed-1', username: 'shed-1', password: 'f'.repeat(64) })], { connack: 4 });
  });

  it("another device's password: CONNACK 4", async () => {
    await expectRejected('bad-credentials', [connect({ clientId: 'shed-2', username: 'shed-2', password: deriveDevicePassword(KEY, 'shed-1') })], {
      connack: 4,
    });
  });

  it('a user name that is not a device id: CONNACK 4', async () => {
    await expectRejected('bad-credentials', [connect({ clientId: 'x', username: '#', password: deriveDevicePassword(KEY, '#') })], { connack: 4 });
  });

  it('a device connecting under another client id: CONNACK 2', async () => {
    await expectRejected('client-id-mismatch', [deviceConnect('shed-1', { clientId: 'good-1' })], { connack: 2 });
  });

  it('a device whose will is outside its namespace: CONNACK 5', async () => {
    await expectRejected('acl-will', [deviceConnect('shed-1', { will: { topic: 'espfleet/good-1/status', qos: 1 } })], { connack: 5 });
  });

  it('a local tool taking the client id of a connected device: CONNACK 2, the device stays', async () => {
    await expectRejected('client-id-in-use', [connect({ clientId: 'good-1' })], { connack: 2 });
    expect(events.some((e) => e.deviceId === 'good-1' && e.type === 'disconnect')).toBe(false);
  });

  it('a device publishing outside its namespace: no PUBACK, disconnected', async () => {
    await expectRejected('acl-publish', [deviceConnect('shed-1'), publish('espfleet/good-1/telemetry', '{"seq":999999}', 1)], { noPuback: true });
    await expectRejected('acl-publish', [deviceConnect('shed-1'), publish('homeassistant/device/x/config', '{}', 1)], { noPuback: true });
  });

  it("an anonymous local client publishing into a device's namespace: no PUBACK, disconnected", async () => {
    await expectRejected('acl-publish', [connect({ clientId: 'tool' }), publish('espfleet/good-1/telemetry', '{"seq":999999}', 1)], {
      noPuback: true,
    });
    await expectRejected('acl-publish', [connect({ clientId: 'tool' }), publish('espfleet/good-1/status', 'offline', 1)], { noPuback: true });
  });

  it("an anonymous local client subscribing to a device's RPC requests: SUBACK 0x80, the connection stays", async () => {
    await expectRejected('acl-subscribe', [connect({ clientId: 'tool' }), subscribe('espfleet/good-1/rpc/req')], { suback: 0x80 });
  });

  it('a topic with NUL', async () => {
    await expectRejected('nul-in-string', [connect({ clientId: 'tool' }), publish('lab/a\u0000b', 'x', 1)], { noPuback: true });
  });

  it('a topic with ill-formed UTF-8 (overlong, surrogate, stray byte)', async () => {
    for (const bad of [
      [0xc0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xff],
    ]) {
      const topic = Buffer.concat([Buffer.from('lab/'), Buffer.from(bad)]);
      await expectRejected('invalid-utf8', [connect({ clientId: 'tool' }), publish(topic, 'x', 1)], { noPuback: true });
    }
  });

  it('a subscription filter with ill-formed UTF-8', async () => {
    await expectRejected('invalid-utf8', [connect({ clientId: 'tool' }), subscribe(Buffer.from([0x6c, 0x2f, 0xe2, 0x82]))]);
  });

  it('a PUBLISH topic with a wildcard', async () => {
    await expectRejected('invalid-topic', [connect({ clientId: 'tool' }), publish('lab/#', 'x', 1)], { noPuback: true });
  });
});

describe('hostile input: idle and silent connections', () => {
  it('a connection that never sends CONNECT is closed after connectTimeoutMs', async () => {
    const t0 = performance.now();
    await expectRejected('connect-timeout', []);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 50);
  });

  it('a client silent past 1.5 x its keepalive is closed', async () => {
    await expectRejected('keepalive-timeout', [connect({ clientId: 'sleepy', keepalive: 1 })]);
  });
});

describe('hostile input: random bytes', () => {
  it('200 sessions of seeded random bytes after a valid CONNECT never stop the broker', async () => {
    const rng = new SeededRng(0xe5f1ee7);
    const before = bus.counters();
    for (let i = 0; i < 200; i++) {
      const n = 1 + Math.floor(rng.next() * 64);
      const junk = Buffer.alloc(n);
      for (let j = 0; j < n; j++) junk[j] = Math.floor(rng.next() * 256);
      await rawSession(port, [connect({ clientId: 'fuzz' + i }), junk], 150);
    }
    const after = bus.counters();
    const total = (r: Record<string, number>) => Object.values(r).reduce((a, x) => a + x, 0);
    // Most junk is refused; every refusal has a reason from the fixed vocabulary.
    expect(total(after.rejections) - total(before.rejections)).toBeGreaterThan(100);
    expect(Object.keys(after.rejections).every((k) => /^[a-z0-9-]+$/.test(k))).toBe(true);
    await goodDeviceProgresses();
  });

  it('300 sessions of well-framed packets with random contents (past the frame guard, into the parser and the hooks)', async () => {
    const rng = new SeededRng(0xbadf00d);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rng.next() * xs.length)];
    const bytes = (n: number) => {
      const out = Buffer.alloc(n);
      for (let j = 0; j < n; j++) out[j] = Math.floor(rng.next() * 256);
      return out;
    };
    // Topic-ish strings: mostly printable, sometimes a wildcard, NUL, a bad UTF-8 byte or the root.
    const topicish = () => {
      const parts: Buffer[] = [];
      const n = Math.floor(rng.next() * 6);
      for (let j = 0; j < n; j++) parts.push(pick([Buffer.from('a'), Buffer.from('/'), Buffer.from('+'), Buffer.from('#'), Buffer.from([0]), Buffer.from([0xc0, 0x80]), Buffer.from([0xff]), Buffer.from('espfleet/good-1/'), Buffer.from('$SYS/')]));
      return Buffer.concat(parts);
    };
    const before = bus.counters();
    for (let i = 0; i < 300; i++) {
      let chunks: Buffer[];
      switch (Math.floor(rng.next() * 4)) {
        case 0: // CONNECT with random contents, as the first packet
          chunks = [frame(0x10, bytes(Math.floor(rng.next() * 40)))];
          break;
        case 1: {
          const qos = pick([0, 1]) as 0 | 1;
          chunks = [connect({ clientId: 'fuzz' + i }), publish(topicish(), bytes(Math.floor(rng.next() * 8)), qos, 1 + i)];
          break;
        }
        case 2:
          chunks = [connect({ clientId: 'fuzz' + i }), frame(0x82, Buffer.concat([Buffer.from([0, 1]), str(topicish()), Buffer.from([Math.floor(rng.next() * 4)])]))];
          break;
        default:
          chunks = [connect({ clientId: 'fuzz' + i }), frame(pick([0x30, 0x32, 0x82, 0xa2]), bytes(Math.floor(rng.next() * 24)))];
      }
      await rawSession(port, chunks, 100);
    }
    const after = bus.counters();
    const grew = Object.keys(after.rejections).filter((k) => (after.rejections[k] ?? 0) > (before.rejections[k] ?? 0));
    // The parser and the CONNECT/topic/ACL checks did the refusing, not only the frame guard.
    for (const reason of ['malformed', 'invalid-utf8', 'nul-in-string', 'invalid-topic', 'acl-publish']) expect(grew).toContain(reason);
    await goodDeviceProgresses();
  });
});

describe('the well-behaved device, after all of the above', () => {
  it('was never disconnected and every acknowledged message reached the hook once, in order', async () => {
    await goodDeviceProgresses();
    expect(events.filter((e) => e.deviceId === 'good-1' && e.type === 'disconnect')).toEqual([]);
    expect(acks).toBeGreaterThan(20);
    // Every acknowledged message is stored (some may be stored and not yet acknowledged).
    expect(stored.length).toBeGreaterThanOrEqual(acks);
    expect(stored).toEqual(Array.from({ length: stored.length }, (_, i) => i));
    // The forged "seq 999999" publishes never reached the hook.
    expect(stored).not.toContain(999999);
  });
});
