/**
 * The embedded broker with well-behaved clients over real sockets on 127.0.0.1: device
 * credentials and ACL, the ingest hook contract (a PUBACK only AFTER the hook resolved, none
 * when it rejects, retransmission on the next connection), order, events, companion pub/sub.
 */
import { createConnection } from 'node:net';
import { ErrorWithSubackPacket, connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BusPacketInfo, ClientEvent } from '../../host/bus/bus.js';
import { deriveDevicePassword } from '../../host/bus/credentials.js';
import { EmbeddedBus, type EmbeddedBrokerOptions } from '../../host/bus/embedded-broker.js';
import type { BusLogEntry } from '../../host/bus/rejection-log.js';

const KEY = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';

let bus: EmbeddedBus;
let logs: BusLogEntry[];
let events: ClientEvent[];
const clients: MqttClient[] = [];

async function startBus(extra: Partial<EmbeddedBrokerOptions> = {}): Promise<void> {
  logs = [];
  events = [];
  bus = new EmbeddedBus({ fleetKeyHex: KEY, port: 0, log: (e) => logs.push(e), ...extra });
  bus.onClientEvent((e) => events.push(e));
}

function url(): string {
  const a = bus.address();
  if (a === null) throw new Error('not started');
  return `mqtt://127.0.0.1:${a.port}`;
}

async function device(id: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectAsync(url(), {
    clientId: id,
    username: id,
    password: deriveDevicePassword(KEY, id),
    protocolVersion: 4,
    reconnectPeriod: 0,
    ...opts,
  });
  clients.push(c);
  return c;
}

async function anonymous(clientId: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectAsync(url(), { clientId, protocolVersion: 4, reconnectPeriod: 0, ...opts });
  clients.push(c);
  return c;
}

async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** SUBACK return code for one filter (0x80 = refused). */
async function suback(c: MqttClient, filter: string): Promise<number> {
  try {
    return (await c.subscribeAsync(filter, { qos: 1 }))[0].qos;
  } catch (err) {
    if (err instanceof ErrorWithSubackPacket) return (err.packet as { granted: number[] }).granted[0];
    throw err;
  }
}

/** Opens a raw TCP connection and resolves with how long the broker took to close it (bytes received alongside). */
function rawClose(port: number): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let bytes = 0;
    const s = createConnection({ host: '127.0.0.1', port });
    s.on('data', (d) => (bytes += d.length));
    s.on('error', () => {});
    s.on('close', () => resolve({ ms: performance.now() - t0, bytes }));
  });
}

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

beforeEach(async () => {
  await startBus();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  await bus.stop();
});

describe('embedded bus: connections', () => {
  it('binds loopback on the port it reports, and a device with derived credentials connects', async () => {
    await bus.start();
    expect(bus.address()).toMatchObject({ host: '127.0.0.1' });
    expect(bus.address()!.port).toBeGreaterThan(0);
    const d = await device('shed-1');
    expect(d.connected).toBe(true);
    await until(() => events.length === 1);
    expect(events[0]).toMatchObject({ type: 'connect', clientId: 'shed-1', deviceId: 'shed-1', reason: 'device-credentials', address: '127.0.0.1' });
    expect(bus.counters().clientsConnected).toBe(1);
    await d.endAsync();
    await until(() => events.length === 2);
    expect(events[1]).toMatchObject({ type: 'disconnect', deviceId: 'shed-1', reason: 'client-disconnect' });
    expect(bus.counters().clientsConnected).toBe(0);
  });

  it('a second connection of the same device takes the session over; the first is reported as taken over', async () => {
    await bus.start();
    await device('shed-1');
    await device('shed-1');
    await until(() => events.some((e) => e.type === 'disconnect'));
    expect(events.find((e) => e.type === 'disconnect')).toMatchObject({ deviceId: 'shed-1', reason: 'takeover' });
  });

  it('disconnect(id) closes a device session with the reason given, its will goes out; unknown ids and local tools are left alone', async () => {
    await bus.start();
    const wills: string[] = [];
    await bus.subscribe('espfleet/+/status', (topic, payload) => {
      wills.push(topic + ' ' + payload.toString());
    });
    const d = await device('shed-1', { will: { topic: 'espfleet/shed-1/status', payload: Buffer.from('offline'), qos: 1, retain: true } });
    const tool = await anonymous('ha-tool');
    const closed = new Promise<void>((r) => d.once('close', () => r()));
    expect(bus.disconnect('nobody', 'moved')).toBe(false);
    expect(bus.disconnect('ha-tool', 'moved')).toBe(false);
    expect(bus.disconnect('shed-1', 'moved')).toBe(true);
    await closed;
    await until(() => events.some((e) => e.type === 'disconnect'), 5000, 'the disconnect event');
    expect(events.filter((e) => e.type === 'disconnect')).toEqual([expect.objectContaining({ deviceId: 'shed-1', reason: 'moved' })]);
    await until(() => wills.includes('espfleet/shed-1/status offline'), 5000, 'the will');
    expect(tool.connected).toBe(true);
    expect(bus.disconnect('shed-1', 'moved')).toBe(false);
  });

  it('a local tool cannot use the client id of a device', async () => {
    await bus.start();
    await device('shed-1');
    await expect(anonymous('shed-1')).rejects.toThrow(/Identifier rejected|identifier/i);
    expect(bus.counters().rejections['client-id-in-use']).toBe(1);
  });
});

describe('embedded bus: ingest hook and PUBACK', () => {
  it('the PUBACK is sent only AFTER the hook resolves', async () => {
    const g = gate();
    let hookResolvedAt = 0;
    bus.onDevicePublish(async () => {
      await g.wait;
      hookResolvedAt = performance.now();
    });
    await bus.start();
    const d = await device('shed-1');
    let ackedAt = 0;
    const p = d.publishAsync('espfleet/shed-1/telemetry', '{"seq":1}', { qos: 1 }).then(() => (ackedAt = performance.now()));
    await new Promise((r) => setTimeout(r, 300));
    expect(ackedAt).toBe(0); // the hook is still pending: no PUBACK
    g.open();
    await p;
    expect(hookResolvedAt).toBeGreaterThan(0);
    expect(ackedAt).toBeGreaterThanOrEqual(hookResolvedAt);
    expect(bus.counters().ingested).toBe(1);
  });

  it('a slow hook delays the PUBACK by its duration', async () => {
    bus.onDevicePublish(() => new Promise((r) => setTimeout(r, 250)));
    await bus.start();
    const d = await device('shed-1');
    const t0 = performance.now();
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":1}', { qos: 1 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(240);
  });

  it('a failing hook means no PUBACK; the device is disconnected, retransmits on its next connection and gets the PUBACK once stored', async () => {
    const seen: Array<{ payload: string; messageId: number | undefined }> = [];
    let fail = true;
    bus.onDevicePublish(async (id, topic, payload, packet) => {
      seen.push({ payload: payload.toString(), messageId: packet.messageId });
      if (fail) {
        fail = false;
        throw new Error('disk full');
      }
    });
    await bus.start();
    const d = await device('shed-1', { clean: false, reconnectPeriod: 100 });
    let closes = 0;
    d.on('close', () => closes++);
    let acked = false;
    const p = d.publishAsync('espfleet/shed-1/telemetry', '{"seq":7}', { qos: 1 }).then(() => (acked = true));
    await until(() => closes >= 1, 5000, 'disconnect after the failed hook');
    expect(acked).toBe(false);
    await p; // resent on reconnect, stored, acknowledged
    // The same PUBLISH twice: same payload, same packet identifier (a retransmission).
    expect(seen).toHaveLength(2);
    expect(seen[1]).toEqual(seen[0]);
    expect(seen[0].payload).toBe('{"seq":7}');
    expect(seen[0].messageId).toBeGreaterThan(0);
    const c = bus.counters();
    expect(c.ingestFailed).toBe(1);
    expect(c.ingested).toBe(1);
    expect(c.rejections['ingest-failed']).toBe(1);
    expect(events.find((e) => e.type === 'disconnect')).toMatchObject({ deviceId: 'shed-1', reason: 'ingest-failed' });
    expect(logs.some((l) => l.ev === 'bus.reject' && l.reason === 'ingest-failed' && l.clientId === 'shed-1')).toBe(true);
  });

  it('hooks of one device start in arrival order and overlap; PUBACKs keep that order, each after its own hook', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    let running = 0;
    let maxRunning = 0;
    bus.onDevicePublish(async (_id, _t, payload) => {
      const seq = JSON.parse(payload.toString()).seq as number;
      started.push(seq);
      running++;
      maxRunning = Math.max(maxRunning, running);
      // Later messages finish faster: without ordering their PUBACKs would overtake.
      await new Promise((r) => setTimeout(r, (20 - seq) * 2));
      finished.push(seq);
      running--;
    });
    await bus.start();
    const d = await device('shed-1');
    const ackOrder: number[] = [];
    const finishedAtAck: number[][] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, seq) =>
        d.publishAsync('espfleet/shed-1/telemetry', JSON.stringify({ seq }), { qos: 1 }).then(() => {
          ackOrder.push(seq);
          finishedAtAck.push(finished.slice());
        }),
      ),
    );
    const inOrder = Array.from({ length: 20 }, (_, i) => i);
    expect(started).toEqual(inOrder);
    expect(ackOrder).toEqual(inOrder);
    // Each PUBACK came after the hooks of its own and of every earlier publish had resolved.
    finishedAtAck.forEach((done, seq) => {
      for (let k = 0; k <= seq; k++) expect(done, `PUBACK ${seq}`).toContain(k);
    });
    // Pipelined: the hooks ran side by side (one group commit can take them all).
    expect(maxRunning).toBeGreaterThan(1);
  });

  it('after a hook rejects, no later publish of that connection is acknowledged', async () => {
    bus.onDevicePublish(async (_id, _t, payload) => {
      const seq = JSON.parse(payload.toString()).seq as number;
      await new Promise((r) => setTimeout(r, seq === 3 ? 20 : 1));
      if (seq === 3) throw new Error('disk full');
    });
    await bus.start();
    const d = await device('shed-1');
    const acked: number[] = [];
    for (let seq = 0; seq < 8; seq++) {
      d.publishAsync('espfleet/shed-1/telemetry', JSON.stringify({ seq }), { qos: 1 }).then(
        () => acked.push(seq),
        () => undefined,
      );
    }
    await until(() => !d.connected, 5000, 'disconnect after the failed hook');
    await new Promise((r) => setTimeout(r, 100));
    // 4-7 were stored before 3 failed (their hooks overlap), yet none of them is acknowledged.
    expect(acked).toEqual([0, 1, 2]);
  });

  it('the hook gets device id, topic, payload and QoS for everything a device publishes (status, telemetry, meta, health, RPC answers)', async () => {
    const got: Array<[string, string, string, BusPacketInfo]> = [];
    bus.onDevicePublish(async (id, topic, payload, packet) => {
      got.push([id, topic, payload.toString(), packet]);
    });
    await bus.start();
    const d = await device('shed-1');
    await d.publishAsync('espfleet/shed-1/status', 'online', { qos: 1, retain: true });
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":1,"ts":5,"r":{"t":21.5},"hist":0}', { qos: 1 });
    await d.publishAsync('espfleet/shed-1/meta', '{"kind":"esp32"}', { qos: 1, retain: true });
    await d.publishAsync('espfleet/shed-1/health', '{"mem":1}', { qos: 0 });
    await d.publishAsync('espfleet/shed-1/rpc/res', '{"id":"a","r":1}', { qos: 0 });
    await until(() => got.length === 5);
    expect(got.map((g) => [g[0], g[1], g[2], g[3].qos, g[3].retain])).toEqual([
      ['shed-1', 'espfleet/shed-1/status', 'online', 1, true],
      ['shed-1', 'espfleet/shed-1/telemetry', '{"seq":1,"ts":5,"r":{"t":21.5},"hist":0}', 1, false],
      ['shed-1', 'espfleet/shed-1/meta', '{"kind":"esp32"}', 1, true],
      ['shed-1', 'espfleet/shed-1/health', '{"mem":1}', 0, false],
      ['shed-1', 'espfleet/shed-1/rpc/res', '{"id":"a","r":1}', 0, false],
    ]);
  });

  it('a will that comes while publishes are still being stored starts its hooks after theirs ended', async () => {
    const events: string[] = [];
    bus.onDevicePublish(async (_id, _topic, payload, packet) => {
      const name = packet.will ? 'will' : String(JSON.parse(payload.toString()).seq);
      events.push('start ' + name);
      if (!packet.will) await new Promise((r) => setTimeout(r, 40));
      events.push('end ' + name);
    });
    await bus.start();
    const d = await device('shed-1', { will: { topic: 'espfleet/shed-1/status', payload: Buffer.from('offline'), qos: 1, retain: true } });
    for (let seq = 0; seq < 3; seq++) d.publish('espfleet/shed-1/telemetry', JSON.stringify({ seq }), { qos: 1 });
    await until(() => events.includes('start 2'), 5000, 'the publishes reach the hook');
    d.stream.destroy();
    await until(() => events.includes('end will'), 5000, 'the will');
    expect(events.indexOf('start will')).toBeGreaterThan(events.indexOf('end 2'));
    expect(events.filter((e) => e.startsWith('end')).sort()).toEqual(['end 0', 'end 1', 'end 2', 'end will']);
  });

  it("an abrupt loss publishes the device's will through the hook (marked as will) and to subscribers", async () => {
    const wills: Array<[string, string, boolean]> = [];
    bus.onDevicePublish(async (id, topic, payload, packet) => {
      if (packet.will) wills.push([id, payload.toString(), packet.retain]);
    });
    await bus.start();
    const seen: string[] = [];
    await bus.subscribe('espfleet/+/status', (topic, payload) => {
      seen.push(topic + '=' + payload.toString());
    });
    const d = await device('shed-1', { will: { topic: 'espfleet/shed-1/status', payload: Buffer.from('offline'), qos: 1, retain: true } });
    d.stream.destroy();
    await until(() => wills.length === 1 && seen.length === 1);
    expect(wills).toEqual([['shed-1', 'offline', true]]);
    expect(seen).toEqual(['espfleet/shed-1/status=offline']);
  });
});

describe('embedded bus: companion publish and subscribe', () => {
  it('delivers RPC requests only to the device they are for', async () => {
    await bus.start();
    const a = await device('shed-1');
    const b = await device('shed-2');
    const gotA: string[] = [];
    const gotB: string[] = [];
    a.on('message', (t, p) => gotA.push(t + '=' + p.toString()));
    b.on('message', (t, p) => gotB.push(t + '=' + p.toString()));
    expect(await suback(a, 'espfleet/shed-1/rpc/req')).toBe(1);
    // A device may not listen to another device's requests: SUBACK failure code 0x80.
    expect(await suback(b, 'espfleet/shed-1/rpc/req')).toBe(128);
    expect(await suback(b, 'espfleet/shed-2/rpc/req')).toBe(1);
    expect(b.connected).toBe(true);
    await bus.publish('espfleet/shed-1/rpc/req', '{"id":"1","m":"ping","p":{},"dl":1000}', { qos: 1 });
    await until(() => gotA.length === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(gotA).toEqual(['espfleet/shed-1/rpc/req={"id":"1","m":"ping","p":{},"dl":1000}']);
    expect(gotB).toEqual([]);
    expect(bus.counters().rejections['acl-subscribe']).toBe(1);
  });

  it('companion subscriptions see device messages after ingest, and retained ones on subscribe', async () => {
    const order: string[] = [];
    bus.onDevicePublish(async () => {
      order.push('hook');
    });
    await bus.start();
    await bus.subscribe('espfleet/+/telemetry', () => {
      order.push('subscriber');
    });
    const d = await device('shed-1');
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":1}', { qos: 1 });
    await d.publishAsync('espfleet/shed-1/status', 'online', { qos: 1, retain: true });
    await until(() => order.includes('subscriber') && order.length === 3);
    // telemetry: hook then subscriber; the status publish runs the hook too.
    expect(order.slice(0, 2)).toEqual(['hook', 'subscriber']);
    const late: string[] = [];
    await bus.subscribe('espfleet/+/status', (topic, payload, packet) => {
      late.push(`${topic}=${payload.toString()} retain=${packet.retain}`);
    });
    expect(late).toEqual(['espfleet/shed-1/status=online retain=true']);
  });

  it('wildcard companion subscriptions do not see $SYS topics; unsubscribe stops delivery', async () => {
    await bus.start();
    const seen: string[] = [];
    const off = await bus.subscribe('#', (topic) => {
      seen.push(topic);
    });
    const tool = await anonymous('tool-1');
    await tool.publishAsync('lab/x', '1', { qos: 1 });
    await until(() => seen.includes('lab/x'));
    expect(seen.every((t) => !t.startsWith('$'))).toBe(true);
    await off();
    await tool.publishAsync('lab/y', '2', { qos: 1 });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).not.toContain('lab/y');
  });

  it('a local tool reads telemetry (Home Assistant on the same machine) but never RPC traffic', async () => {
    await bus.start();
    const tool = await anonymous('ha');
    const got: string[] = [];
    tool.on('message', (t) => got.push(t));
    expect(await suback(tool, 'espfleet/#')).toBe(1);
    expect(await suback(tool, 'espfleet/+/rpc/req')).toBe(128);
    const d = await device('shed-1');
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":1}', { qos: 1 });
    await d.publishAsync('espfleet/shed-1/rpc/res', '{"id":"x","r":1}', { qos: 1 });
    await bus.publish('espfleet/shed-1/rpc/req', '{"id":"x"}', { qos: 1 });
    await until(() => got.length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual(['espfleet/shed-1/telemetry']);
  });
});

describe('embedded bus: limits', () => {
  it('delays a device publishing over its rate (PUBACK later), and disconnects one that would wait too long', async () => {
    await bus.stop();
    await startBus({ devicePublishRatePerSec: 20, devicePublishBurst: 2, publishWaitMaxMs: 400 });
    await bus.start();
    const d = await device('shed-1');
    const t0 = performance.now();
    // Burst 2, then 4 more at 20/s: about 200 ms.
    for (let i = 0; i < 6; i++) await d.publishAsync('espfleet/shed-1/telemetry', `{"seq":${i}}`, { qos: 1 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
    expect(bus.counters().throttled).toBeGreaterThanOrEqual(3);
    expect(bus.counters().rejections['publish-rate']).toBeUndefined();
    // A flood: 40 QoS 0 messages at once would need 2 s of waiting.
    let closed = false;
    d.on('close', () => (closed = true));
    for (let i = 0; i < 40; i++) d.publish('espfleet/shed-1/telemetry', 'x', { qos: 0 });
    await until(() => closed, 5000, 'flood disconnect');
    expect(bus.counters().rejections['publish-rate']).toBe(1);
  });

  it('throttled publishes sent together keep their order through the ingest hook and in their PUBACKs', async () => {
    await bus.stop();
    await startBus({ devicePublishRatePerSec: 20, devicePublishBurst: 2, publishWaitMaxMs: 1000 });
    const stored: number[] = [];
    bus.onDevicePublish(async (_id, _t, payload) => {
      const seq = JSON.parse(payload.toString()).seq as number;
      // Unthrottled ones take longer: without ordering, the delayed ones could be stored first.
      await new Promise((r) => setTimeout(r, seq < 2 ? 30 : 1));
      stored.push(seq);
    });
    await bus.start();
    const d = await device('shed-1');
    const acks: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, seq) => d.publishAsync('espfleet/shed-1/telemetry', JSON.stringify({ seq }), { qos: 1 }).then(() => acks.push(seq))),
    );
    expect(acks).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(stored.slice().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(bus.counters().throttled).toBeGreaterThanOrEqual(5);
    expect(bus.counters().rejections['publish-rate']).toBeUndefined();
  });

  it('refuses connections over connectionsMax at accept', async () => {
    await bus.stop();
    await startBus({ connectionsMax: 2 });
    await bus.start();
    const t1 = await anonymous('t1');
    await anonymous('t2');
    // The third connection is closed at once, before any byte is read.
    const third = await rawClose(bus.address()!.port);
    expect(third.bytes).toBe(0);
    expect(third.ms).toBeLessThan(1000);
    expect(bus.counters().rejections['connections-max']).toBe(1);
    // A slot frees when a client leaves.
    await t1.endAsync();
    await until(() => bus.counters().clientsConnected === 1);
    await anonymous('t3');
  });

  it('limits connections per non-local address and refuses anonymous clients from it', async () => {
    await bus.stop();
    // Treat 127.0.0.1 as a LAN address to exercise the remote rules on loopback sockets.
    await startBus({ isLocalAddress: () => false, connectionsPerAddressMax: 2 });
    await bus.start();
    await expect(anonymous('t1')).rejects.toThrow(/Not authorized/i);
    expect(bus.counters().rejections['anonymous-remote']).toBe(1);
    await device('shed-1');
    await device('shed-2');
    const third = await rawClose(bus.address()!.port);
    expect(third.bytes).toBe(0);
    expect(bus.counters().rejections['connections-per-address-max']).toBe(1);
  });
});
