/**
 * Hostile input against a real companion (issue #6) while one well-behaved emulated board (the
 * shipped bundle) streams telemetry to it:
 * - on the discovery port: garbage, oversized and non-JSON datagrams, JSON of the wrong shape,
 *   forged beacons (another key, or the real device's id), an authentic beacon replayed (captured
 *   off the air by a second socket sharing the port), signed but malformed beacons, JSON nested
 *   10k levels; each is dropped and counted under its reason in discovery.counters.dropped;
 * - on the broker, from a client holding valid device credentials of its own: telemetry that is
 *   deeply nested, oversized or malformed, each counted as bad telemetry and never stored; and a
 *   few malformed MQTT connections (raw bytes), refused with a reason;
 * meanwhile the board's readings keep being stored exactly once each, with no gap, its session is
 * never interrupted, and the discovery listener still admits a board that joins afterwards.
 */
import * as dgram from 'node:dgram';
import { createHmac, randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmulatedBoard } from '../../boards/emulator/board.js';
import { buildBeacon, buildOffer } from '../../firmware/wire/beacon.js';
import { newFleetKey } from '../../host/companion.js';
import { devicePassword, nodeMac } from '../../host/discovery/node-mac.js';
import { startFleetWithCompanion, waitFor, type Fleet } from '../helpers/fleet.js';

let fleet: Fleet;
let board: EmulatedBoard;
let id: string;
/** Seqs of the well-behaved board in the order the companion stored them (live events). */
const arrivals: number[] = [];
let sock: dgram.Socket;
let intruder: MqttClient | null = null;
/** The board's readings stored before any hostile input: they must all still be there at the end. */
let storedBefore: Array<{ seq: number; ts: number; r: Record<string, number>; hist: number }> = [];
/** One of the board's beacons, heard at its boot by a second socket on the discovery port. */
let captured: Buffer | null = null;

function info(b: EmulatedBoard): Record<string, any> {
  return JSON.parse(b.evaluate('JSON.stringify(espfleet.device.info())') as string);
}

function dropped(): Record<string, number> {
  return { ...fleet.companion.discovery.counters.dropped };
}

function stats(): Record<string, any> {
  return fleet.companion.stats() as Record<string, any>;
}

/** Signs JSON text as the wire does (mac member appended), with no field checks. */
function seal(body: string, key: string = fleet.fleetKey): string {
  const m = createHmac('sha256', Buffer.from(key, 'hex')).update(body, 'latin1').digest('hex');
  return body.slice(0, -1) + ',"mac":"' + m + '"}';
}

function sendToDiscovery(data: string | Buffer): Promise<void> {
  const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  return new Promise((resolve, reject) => sock.send(buf, fleet.companion.discovery.port(), '127.0.0.1', (e) => (e ? reject(e) : resolve())));
}

/** Sends one datagram and waits until the companion counted it dropped under `reason`. */
async function expectDropped(name: string, data: string | Buffer, reason: string): Promise<void> {
  const before = dropped();
  await sendToDiscovery(data);
  await waitFor(`${name} dropped as '${reason}'`, () => (dropped()[reason] ?? 0) > (before[reason] ?? 0), 5000);
  const after = dropped();
  // This datagram and nothing else: no other reason moved (the board's beacons are never dropped).
  const moved = Object.keys(after).filter((k) => after[k] !== (before[k] ?? 0));
  expect(moved, name).toEqual([reason]);
  expect(after[reason] - (before[reason] ?? 0), name).toBe(1);
}

function beaconFields(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { t: 'beacon', v: 1, id: 'ghost-1', kind: 'esp32', fw: '1.0.0', caps: ['mqtt'], port: 40000, seq: 0, up: 1, mem: 1000, ts: 0, boot: 1, nonce: 7, ...over };
}

beforeAll(async () => {
  fleet = await startFleetWithCompanion({ boards: 0, sampleMs: 500, speed: 1 });
  // A second socket on the discovery port (SO_REUSEADDR, as the companion's) hears the boards'
  // broadcast beacons too: an eavesdropper on the LAN.
  const cap = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  cap.on('message', (m) => {
    if (captured === null && m.toString('latin1').includes('"t":"beacon"')) captured = m;
  });
  await new Promise<void>((r) => cap.bind(fleet.companion.discovery.port(), '0.0.0.0', r));
  [id] = fleet.add(1);
  board = fleet.emulator.get(id);
  try {
    await waitFor('a beacon captured', () => captured !== null, 10_000);
  } finally {
    // With SO_REUSEADDR a unicast datagram reaches only one of the sockets: close ours before
    // the test sends any to the companion.
    await new Promise<void>((r) => cap.close(() => r()));
  }
  fleet.companion.subscribe((ev) => {
    if (ev.type === 'telemetry' && ev.id === id) arrivals.push(ev.seq);
  });
  await waitFor(`${id} up with a session`, () => fleet.companion.device(id)?.online === true, 20_000);
  await waitFor(`${id} streams`, () => arrivals.length >= 3, 10_000);
  storedBefore = fleet.companion.telemetryStore.query(id, { limit: 100_000 });
  sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
}, 30_000);

afterAll(async () => {
  await intruder?.endAsync().catch(() => {});
  sock?.close();
  await fleet?.stop();
});

describe('a companion under hostile input keeps serving a well-behaved board', () => {
  it('discovery: every bad datagram is dropped with its reason', async () => {
    const beaconsBefore = fleet.companion.discovery.counters.beacons;
    await expectDropped('garbage bytes', randomBytes(200), 'shape');
    await expectDropped('an empty datagram', Buffer.alloc(0), 'shape');
    await expectDropped('a 4 KB datagram', randomBytes(4096), 'oversize');
    await expectDropped('a 513-byte datagram', seal(JSON.stringify(beaconFields({ pad: 'x'.repeat(300) }))).padEnd(513, ' '), 'oversize');
    await expectDropped('512 bytes of non-JSON', 'z'.repeat(512), 'shape');
    await expectDropped('512 bytes of non-JSON with a well-formed mac tail', 'z'.repeat(512 - 74) + ',"mac":"' + 'a'.repeat(64) + '"}', 'mac');
    await expectDropped('JSON of the wrong shape (unsigned)', '{"hello":"world","list":[1,2,3]}', 'shape');
    await expectDropped('an unsigned beacon', JSON.stringify(beaconFields()), 'shape');
    await expectDropped('a beacon forged with another key', seal(JSON.stringify(beaconFields()), newFleetKey()), 'mac');
    await expectDropped('a forged beacon claiming the real device id', seal(JSON.stringify(beaconFields({ id, seq: 1e6, boot: 1e6 })), newFleetKey()), 'mac');
    await expectDropped('a signed beacon with a bad field', seal(JSON.stringify(beaconFields({ id: '../../etc' }))), 'field id');
    await expectDropped('a signed beacon with a port out of range', seal(JSON.stringify(beaconFields({ port: 0 }))), 'field port');
    await expectDropped('a signed beacon of version 2', seal(JSON.stringify(beaconFields({ v: 2 }))), 'version');
    const offer = buildOffer({ id, host: 'evil', broker: { host: '127.0.0.1', port: 1 }, epoch: 0, ts: Date.now(), re: 1 }, nodeMac(fleet.fleetKey));
    if (!offer.ok) throw new Error(offer.reason);
    await expectDropped('a signed offer sent to the companion', offer.text, 'type');
    await expectDropped('signed JSON that does not parse', seal('{"t":"beacon",,"v":1}'), 'json');
    await expectDropped('signed JSON nested 60 levels', seal('{"a":'.repeat(60) + '1' + '}'.repeat(60)), 'type');
    await expectDropped('JSON nested 10k levels', '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000), 'oversize');
    // A sustained flood of the same kinds, in rounds of 50 (a loopback socket buffer holds a
    // few hundred datagrams; the rounds keep the kernel from dropping any before the count).
    const flood = [randomBytes(100), 'z'.repeat(512), seal(JSON.stringify(beaconFields()), newFleetKey()), JSON.stringify(beaconFields()), randomBytes(3000)];
    const total = () => Object.values(dropped()).reduce((a, b) => a + b, 0);
    for (let round = 0; round < 10; round++) {
      const t0 = total();
      for (let k = 0; k < 50; k++) await sendToDiscovery(flood[k % flood.length]);
      await waitFor(`flood round ${round} counted`, () => total() >= t0 + 50, 5000);
      expect(total()).toBe(t0 + 50);
    }
    // None of them was taken for a beacon: no device record, nothing counted as a beacon but
    // the board's own (its slow heartbeat may fall in this window).
    expect(fleet.companion.device('ghost-1')).toBeNull();
    expect(fleet.companion.discovery.counters.beacons - beaconsBefore).toBeLessThanOrEqual(1);
  });

  it('discovery: an authentic beacon captured off the air and replayed is dropped (replay)', async () => {
    expect(captured, 'a beacon of the board captured at its boot').not.toBeNull();
    await expectDropped('the captured beacon, replayed', captured!, 'replay');
    await expectDropped('the captured beacon, replayed again', captured!, 'replay');
    // The board itself is not locked out by the replays: its record and session stand.
    expect(fleet.companion.device(id)?.online).toBe(true);
  });

  it('telemetry: nested, oversized and malformed payloads from an authenticated client are counted and never stored', async () => {
    const intruderId = 'intruder-1';
    const addr = fleet.companion.bus.address()!;
    intruder = await connectAsync(`mqtt://127.0.0.1:${addr.port}`, {
      clientId: intruderId,
      username: intruderId,
      password: devicePassword(fleet.fleetKey, intruderId),
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    const topic = `espfleet/${intruderId}/telemetry`;
    const r = (inner: string) => `{"seq":1,"ts":${Date.now()},"r":${inner}}`;
    const bad: Array<[string, string | Buffer, string]> = [
      ['nested 600 levels in r', r('{"a":'.repeat(600) + '1' + '}'.repeat(600)), "reading 'a' is not a finite number"],
      ['nested 10k levels (oversized)', '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000), 'payload larger than 4096 bytes'],
      ['arrays nested 2000 levels', r('{"t":' + '['.repeat(2000) + ']'.repeat(2000) + '}'), "reading 't' is not a finite number"],
      ['5 KB of valid JSON', r(`{"t":1,"pad":${JSON.stringify('x'.repeat(5000))}}`), 'payload larger than 4096 bytes'],
      ['not JSON', 'process.reboot()', 'payload is not JSON'],
      ['empty', '', 'payload is not JSON'],
      ['binary', Buffer.from([0xff, 0x00, 0x7b, 0x80, 0xc3]), 'payload is not JSON'],
      ['a JSON array', '[1,2,3]', 'payload is not a JSON object'],
      ['seq negative', `{"seq":-1,"ts":1,"r":{"t":1}}`, 'seq is not a non-negative integer'],
      ['seq fractional', `{"seq":1.5,"ts":1,"r":{"t":1}}`, 'seq is not a non-negative integer'],
      ['seq a string', `{"seq":"1","ts":1,"r":{"t":1}}`, 'seq is not a non-negative integer'],
      ['ts missing', `{"seq":1,"r":{"t":1}}`, 'ts is not a non-negative number of ms'],
      ['hist 2', `{"seq":1,"ts":1,"hist":2,"r":{"t":1}}`, 'hist is not 0 or 1'],
      ['r an array', `{"seq":1,"ts":1,"r":[1]}`, 'r is not an object'],
      ['a reading that is a string', `{"seq":1,"ts":1,"r":{"t":"21.5"}}`, "reading 't' is not a finite number"],
      ['__proto__ as a reading', `{"seq":1,"ts":1,"r":{"__proto__":1}}`, "reading name '__proto__' is reserved"],
      ['65 readings', r(JSON.stringify(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`s${i}`, i])))), 'more than 64 readings'],
      ['a reading name of 33 chars', r(`{"${'n'.repeat(33)}":1}`), 'reading name must be 1..32 chars'],
    ];
    const rejectedLines = () =>
      fleet.lines
        .map((l) => JSON.parse(l) as { ev: string; device?: string; reason?: string })
        .filter((l) => l.ev === 'telemetry rejected' && l.device === intruderId)
        .map((l) => l.reason);
    const s0 = stats();
    const lines0 = rejectedLines().length;
    for (const [, payload] of bad) await intruder.publishAsync(topic, payload as Buffer, { qos: 1 });
    // QoS 1: each PUBACK came after the ingest hook ran, so the counts are final now.
    expect(stats().badTelemetry - s0.badTelemetry, 'bad telemetry counted').toBe(bad.length);
    // Each is counted under its reason; the log says so once per device per 10 s (no flood).
    const reasons = stats().badTelemetryReasons as Record<string, number>;
    for (const [, , why] of bad) expect(reasons[why as string], `counted as '${why}'`).toBeGreaterThanOrEqual(1);
    expect(rejectedLines().slice(lines0), 'logged once, with its reason').toEqual([bad[0][2]]);
    // A sustained flood of the same while the board streams: 10 rounds.
    for (let k = 0; k < 10; k++) await Promise.all(bad.map(([, payload]) => intruder!.publishAsync(topic, payload as Buffer, { qos: 1 })));
    const s1 = stats();
    expect(s1.badTelemetry - s0.badTelemetry).toBe(bad.length * 11);
    expect(fleet.companion.telemetryStore.count(intruderId), 'nothing of it stored').toBe(0);
    // The same client's well-formed reading is stored: the counts above are not a closed door.
    await intruder.publishAsync(topic, `{"seq":7,"ts":${Date.now()},"r":{"t":20.5}}`, { qos: 1 });
    expect(fleet.companion.telemetryStore.count(intruderId)).toBe(1);
    expect(fleet.companion.telemetryStore.query(intruderId, {}).map((x) => x.r)).toEqual([{ t: 20.5 }]);
    expect(stats().badTelemetry).toBe(s1.badTelemetry);
  });

  it('the broker: malformed MQTT connections are refused with a reason', async () => {
    const port = fleet.companion.bus.address()!.port;
    const before = { ...fleet.companion.bus.counters().rejections };
    const raw = async (bytes: Buffer): Promise<void> => {
      const c = createConnection(port, '127.0.0.1');
      c.on('error', () => {});
      await new Promise<void>((r) => c.once('connect', () => r()));
      c.write(bytes);
      await new Promise<void>((r) => {
        c.once('close', () => r());
        setTimeout(() => {
          c.destroy();
          r();
        }, 3000);
      });
    };
    await raw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')); // not MQTT at all
    await raw(Buffer.from([0x30, 0x02, 0x00, 0x00])); // a PUBLISH before CONNECT
    await raw(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f])); // Remaining Length of 5 bytes
    const after = fleet.companion.bus.counters().rejections;
    const delta: Record<string, number> = {};
    for (const k of Object.keys(after)) if (after[k] !== (before[k] ?? 0)) delta[k] = after[k] - (before[k] ?? 0);
    expect(delta).toEqual({ 'first-packet-not-connect': 2, 'bad-remaining-length': 1 });
  });

  it("throughout, the board's readings are stored exactly once each with no gap, and a new board is still admitted", async () => {
    const last = info(board).outbox.last as number;
    const store = fleet.companion.telemetryStore;
    await waitFor(`${id}: every reading up to seq ${last} stored`, () => (store.maxSeq(id) ?? -1) >= last && store.count(id) >= last + 1, 20_000);
    const i = info(board);
    expect(i.outbox.dropped).toBe(0);
    expect(i.outbox.errors).toBe(0);
    const seqs = store.rangeSeqs(id, 0, last, 100_000);
    const first = seqs[0];
    expect(first).toBeLessThanOrEqual(1);
    const have = new Set(seqs);
    const missing: number[] = [];
    for (let q = first; q <= last && missing.length < 10; q++) if (!have.has(q)) missing.push(q);
    expect(missing, 'readings missing').toEqual([]);
    expect(seqs.length, 'each reading stored once').toBe(last - first + 1);
    for (let k = 1; k < arrivals.length; k++) expect(arrivals[k], `stored in order at ${k}`).toBeGreaterThan(arrivals[k - 1]);
    // What was stored before the hostile input is still there, unchanged.
    expect(storedBefore.length).toBeGreaterThanOrEqual(3);
    const now = new Map(store.query(id, { limit: 100_000 }).map((x) => [x.seq, x]));
    for (const rec of storedBefore) expect(now.get(rec.seq), `seq ${rec.seq}`).toEqual(rec);
    expect(board.counters.errors).toBe(0);
    // Its session was never interrupted, and its beacons were never dropped.
    expect(i.session.connects).toBe(1);
    expect(i.reconnect.failures).toBe(0);
    expect(fleet.companion.device(id)?.online).toBe(true);
    // The listener still serves: a board joining now is discovered, connects and streams.
    const [late] = fleet.add(1);
    await waitFor(`${late} up with a session`, () => fleet.companion.device(late)?.online === true, 20_000);
    await waitFor(`${late} streams`, () => store.count(late) > 0, 10_000);
    // And a test-built authentic beacon still gets its offer.
    const key = nodeMac(fleet.fleetKey);
    const nb = buildBeacon({ id: 'probe-1', kind: 'esp32', fw: '1', caps: [], port: sock.address().port, seq: 0, up: 0, mem: 1, ts: 0, boot: 1, nonce: 42 }, key);
    if (!nb.ok) throw new Error(nb.reason);
    const got = new Promise<string>((resolve) => sock.once('message', (m) => resolve(m.toString('latin1'))));
    await sendToDiscovery(nb.text);
    const offerText = await got;
    expect(offerText).toContain('"t":"offer"');
    expect(offerText).toContain('"re":42');
  }, 40_000);
});
