/**
 * The Bus over a real external broker: Mosquitto from the distribution's packages, started on a
 * free loopback port with a generated password file and the ACL from credentials.mosquittoAcl.
 * Proves the external-mode contract: deliveries acknowledged only after the ingest hooks, a
 * persistent session that keeps what arrives while the companion is away, redelivery after a
 * failed hook, the ACL enforced by the broker, device events from status topics.
 * Skipped, loudly, when mosquitto is not installed.
 */
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClientEvent } from '../../host/bus/bus.js';
import { deriveDevicePassword, mosquittoAcl } from '../../host/bus/credentials.js';
import { ExternalBus, type ExternalBrokerOptions } from '../../host/bus/external-broker.js';
import type { BusLogEntry } from '../../host/bus/rejection-log.js';
import { mosquittoAvailable, startMosquitto, warnMosquittoMissing, type RunningMosquitto } from '../helpers/mosquitto.js';

const HAVE_MOSQUITTO = mosquittoAvailable();
if (!HAVE_MOSQUITTO) warnMosquittoMissing('test/e2e/bus-external.test.ts (external broker mode)');

const KEY = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0';
const COMPANION = { user: 'companion', pass: 'companion-secret' };

let mosq: RunningMosquitto;
const buses: ExternalBus[] = [];
const clients: MqttClient[] = [];
let logs: BusLogEntry[];

function newBus(extra: Partial<ExternalBrokerOptions> = {}): ExternalBus {
  const u = new URL(mosq.url);
  u.username = COMPANION.user;
  u.password = COMPANION.pass;
  const bus = new ExternalBus({ url: u.toString(), clientId: 'espfleet-companion-test', reconnectMs: 100, log: (e) => logs.push(e), ...extra });
  buses.push(bus);
  return bus;
}

async function device(id: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectAsync(mosq.url, {
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

async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!HAVE_MOSQUITTO)('external bus against Mosquitto', () => {
  beforeEach(async () => {
    logs = [];
    const users: Record<string, string> = { [COMPANION.user]: COMPANION.pass };
    for (const id of ['shed-1', 'shed-2']) users[id] = deriveDevicePassword(KEY, id);
    mosq = await startMosquitto({ users, acl: mosquittoAcl(COMPANION.user), allowAnonymous: true });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    for (const b of buses.splice(0)) await b.stop();
    await mosq.stop();
  });

  it('ingests device telemetry through the hook (device id from the topic) and dispatches to subscribers', async () => {
    const bus = newBus();
    const got: string[] = [];
    bus.onDevicePublish(async (id, topic, payload, packet) => {
      got.push(`${id} ${topic} ${payload.toString()} qos=${packet.qos}`);
    });
    await bus.start();
    const sub: string[] = [];
    await bus.subscribe('espfleet/+/telemetry', (topic, payload) => {
      sub.push(topic + '=' + payload.toString());
    });
    expect(bus.address()).toEqual({ host: '127.0.0.1', port: mosq.port });
    const d = await device('shed-1');
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":1}', { qos: 1 });
    await until(() => got.length === 1 && sub.length === 1);
    expect(got).toEqual(['shed-1 espfleet/shed-1/telemetry {"seq":1} qos=1']);
    expect(sub).toEqual(['espfleet/shed-1/telemetry={"seq":1}']);
    expect(bus.counters().ingested).toBe(1);
  });

  it('keeps what devices publish while the companion is away (persistent session) and delivers it, in order, when it returns', async () => {
    const first = newBus();
    first.onDevicePublish(async () => {});
    await first.start();
    await first.stop();
    const d = await device('shed-1');
    for (let seq = 1; seq <= 5; seq++) await d.publishAsync('espfleet/shed-1/telemetry', JSON.stringify({ seq }), { qos: 1 });
    const second = newBus();
    const seqs: number[] = [];
    second.onDevicePublish(async (_id, _t, payload) => {
      seqs.push(JSON.parse(payload.toString()).seq);
    });
    await second.start();
    await until(() => seqs.length === 5, 5000, 'queued messages');
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
  });

  it('acknowledges a delivery only AFTER the hook resolved: a companion that stops mid-hook gets the message again', async () => {
    const first = newBus();
    let entered = false;
    first.onDevicePublish(() => {
      entered = true;
      return new Promise<void>(() => {}); // never stores
    });
    await first.start();
    const d = await device('shed-1');
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":42}', { qos: 1 });
    await until(() => entered);
    await first.stop();
    const second = newBus();
    const got: string[] = [];
    second.onDevicePublish(async (_id, _t, payload) => {
      got.push(payload.toString());
    });
    await second.start();
    await until(() => got.length === 1, 5000, 'redelivery');
    expect(got).toEqual(['{"seq":42}']);
  });

  it('a failing hook drops the link; the broker redelivers and the next attempt stores it', async () => {
    const bus = newBus();
    const events: ClientEvent[] = [];
    bus.onClientEvent((e) => events.push(e));
    const attempts: string[] = [];
    bus.onDevicePublish(async (_id, _t, payload) => {
      attempts.push(payload.toString());
      if (attempts.length === 1) throw new Error('disk full');
    });
    await bus.start();
    const d = await device('shed-1');
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":9}', { qos: 1 });
    await until(() => attempts.length === 2, 5000, 'redelivery after the failed hook');
    expect(attempts).toEqual(['{"seq":9}', '{"seq":9}']);
    const c = bus.counters();
    expect(c.ingestFailed).toBe(1);
    expect(c.ingested).toBe(1);
    expect(c.linkDrops).toBeGreaterThanOrEqual(1);
    expect(c.rejections['ingest-failed']).toBe(1);
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['link-up', 'link-down']));
  });

  it("the broker's ACL keeps devices and anonymous clients out of other namespaces", async () => {
    const bus = newBus();
    const got: string[] = [];
    bus.onDevicePublish(async (id, topic, payload) => {
      got.push(`${id} ${topic} ${payload.toString()}`);
    });
    await bus.start();
    const intruder = await device('shed-2');
    await intruder.publishAsync('espfleet/shed-1/telemetry', '{"seq":666}', { qos: 1 });
    const anon = await connectAsync(mosq.url, { clientId: 'tool', protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(anon);
    await anon.publishAsync('espfleet/shed-1/telemetry', '{"seq":667}', { qos: 1 });
    // A legitimate message after the forged ones: once it is in, the forged ones would have been too.
    const d = await device('shed-1');
    await d.publishAsync('espfleet/shed-1/telemetry', '{"seq":1}', { qos: 1 });
    await until(() => got.length >= 1);
    await sleep(200);
    expect(got).toEqual(['shed-1 espfleet/shed-1/telemetry {"seq":1}']);
  });

  it('delivers RPC requests to the device they are for, and only to it', async () => {
    const bus = newBus();
    await bus.start();
    const a = await device('shed-1');
    const b = await device('shed-2');
    const gotA: string[] = [];
    const gotB: string[] = [];
    a.on('message', (t, p) => gotA.push(t + '=' + p.toString()));
    b.on('message', (t, p) => gotB.push(t + '=' + p.toString()));
    await a.subscribeAsync('espfleet/shed-1/rpc/req', { qos: 1 });
    await b.subscribeAsync('espfleet/+/rpc/req', { qos: 1 });
    await bus.publish('espfleet/shed-1/rpc/req', '{"id":"1","m":"ping"}', { qos: 1 });
    await until(() => gotA.length === 1);
    await sleep(200);
    expect(gotA).toEqual(['espfleet/shed-1/rpc/req={"id":"1","m":"ping"}']);
    expect(gotB).toEqual([]);
  });

  it('reports device connect/disconnect from the status topic (retained birth, will)', async () => {
    const bus = newBus();
    const events: ClientEvent[] = [];
    bus.onClientEvent((e) => {
      if (e.deviceId !== null) events.push(e);
    });
    await bus.start();
    const d = await device('shed-1', { will: { topic: 'espfleet/shed-1/status', payload: Buffer.from('offline'), qos: 1, retain: true } });
    await d.publishAsync('espfleet/shed-1/status', 'online', { qos: 1, retain: true });
    await until(() => events.length === 1);
    expect(events[0]).toMatchObject({ type: 'connect', deviceId: 'shed-1', reason: 'status-online' });
    expect(bus.counters().clientsConnected).toBe(1);
    d.stream.destroy();
    await until(() => events.length === 2, 5000, 'will');
    expect(events[1]).toMatchObject({ type: 'disconnect', deviceId: 'shed-1', reason: 'status-offline' });
  });

  it('start() fails clearly when the companion credentials are refused', async () => {
    const bus = newBus({ password: 'wrong' });
    await expect(bus.start()).rejects.toThrow(/Not authorized|Bad username/i);
  });
});
