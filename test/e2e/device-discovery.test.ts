/**
 * Device discovery end to end (issue #5), on emulated boards running the shipped bundle: a fake
 * companion in the test (a UDP socket the boards beacon to) checks every beacon with the fleet
 * key and answers with offers it builds itself, good or bad; small MQTT listeners record which
 * broker each board connects to (by the client id of its CONNECT).
 *
 * One board per hostile case, so each rejection's reason is the board's own `lastReject`:
 * unsigned, forged (another key), tampered (one byte changed after signing), for another device,
 * garbage and oversized datagrams, signed but malformed (bad field, wrong type, version, JSON),
 * late (a remembered nonce past the answer window), unsolicited (a nonce the board forgot), and
 * replayed (the same authentic datagram again, and an old offer after the board moved on). None
 * is followed: no CONNECT reaches any broker from those boards, and afterwards an authentic offer
 * still is. An authentic offer is followed; after the session is lost the board follows the next
 * companion's offer to another broker; a board with a static `mqtt.host` ignores offered brokers.
 */
import * as dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac, randomBytes } from 'node:crypto';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BURST_COUNT } from '../../firmware/protocols/discovery.js';
import { Emulator } from '../../boards/emulator/emulator.js';
import type { EmulatedBoard } from '../../boards/emulator/board.js';
import { newFleetKey } from '../../host/companion.js';
import { nodeMac } from '../../host/discovery/node-mac.js';
import { buildOffer, DATAGRAM_BYTES_MAX, verifyBeacon, type Beacon, type Mac } from '../../firmware/wire/beacon.js';
import { waitFor } from '../helpers/fleet.js';

/** Board time per real time: the 10 s answer window passes in 5 s. */
const SPEED = 2;
/** The device's answer window (firmware/protocols/discovery.ts OFFER_ANSWER_MS), board ms. */
const OFFER_ANSWER_MS = 10_000;

// --- a minimal MQTT broker: CONNACK, SUBACK, PUBACK, PINGRESP; records every CONNECT ---------

interface Connect {
  clientId: string;
  at: number;
}

class MiniBroker {
  readonly connects: Connect[] = [];
  readonly sockets = new Set<net.Socket>();
  /** 'ack': a working broker; 'refuse': the companion is gone (every connection reset at once). */
  mode: 'ack' | 'refuse' = 'ack';
  accepts = 0;
  private server: net.Server;

  constructor(readonly name: string) {
    this.server = net.createServer((s) => this.accept(s));
  }

  async start(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return this.port();
  }

  port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  from(id: string): number {
    return this.connects.filter((c) => c.clientId === id).length;
  }

  /** Session loss: every open connection dropped. */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async stop(): Promise<void> {
    this.dropAll();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(s: net.Socket): void {
    this.accepts++;
    if (this.mode === 'refuse') {
      s.destroy();
      return;
    }
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => {});
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const send = (p: object) => {
      if (!s.destroyed) s.write(mqttPacket.generate(p as mqttPacket.Packet));
    };
    parser.on('packet', (p: mqttPacket.Packet) => {
      if (p.cmd === 'connect') {
        this.connects.push({ clientId: p.clientId, at: Date.now() });
        send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
      } else if (p.cmd === 'subscribe') {
        send({ cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map((x) => x.qos) });
      } else if (p.cmd === 'publish' && p.qos === 1) {
        send({ cmd: 'puback', messageId: p.messageId });
      } else if (p.cmd === 'pingreq') {
        send({ cmd: 'pingresp' });
      } else if (p.cmd === 'disconnect') {
        s.end();
      }
    });
    parser.on('error', () => s.destroy());
    s.on('data', (d) => parser.parse(d));
  }
}

// --- the fake companion --------------------------------------------------------------------

interface Heard {
  b: Beacon;
  /** Board-clock time (emulator clock) the beacon arrived. */
  at: number;
  text: string;
}

/** Answers a beacon: may send datagrams through `send`. */
type Policy = (h: Heard, nth: number) => void;

let key: string;
let mac: Mac;
let dir: string;
let emu: Emulator;
let udp: dgram.Socket;
const heard = new Map<string, Heard[]>();
const badBeacons: string[] = [];
const policies = new Map<string, Policy>();
const decoy = new MiniBroker('decoy');
const brokerA = new MiniBroker('A');
const brokerB = new MiniBroker('B');
const staticBroker = new MiniBroker('static');
const recovery = new MiniBroker('recovery');
const brokers = [decoy, brokerA, brokerB, staticBroker, recovery];
/** The authentic offer that led d-auth to broker A (replayed later). */
let offerA = '';

function send(text: string | Buffer, port: number): void {
  udp.send(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, port, '127.0.0.1');
}

/** An authentic offer answering beacon h (or the fields given). */
function offer(h: Heard, broker: MiniBroker, o: { host?: string; id?: string; re?: number; with?: Mac } = {}): string {
  const built = buildOffer(
    { id: o.id ?? h.b.id, host: o.host ?? 'c1', broker: { host: '127.0.0.1', port: broker.port() }, epoch: 1, ts: Date.now(), re: o.re ?? h.b.nonce },
    o.with ?? mac,
  );
  if (!built.ok) throw new Error('offer not built: ' + built.reason);
  return built.text;
}

/** Signs any JSON text the way the wire does (mac member appended), bypassing buildOffer's checks. */
function seal(body: string, k: string = key): string {
  const m = createHmac('sha256', Buffer.from(k, 'hex')).update(body, 'latin1').digest('hex');
  return body.slice(0, -1) + ',"mac":"' + m + '"}';
}

function config(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    wifi: { ssid: 'emulated', pass: 'emulated' },
    fleetKey: key,
    discoveryPort: udp.address().port,
    discoveryAddr: '127.0.0.1',
    beaconMs: 4000,
    sensors: [{ name: 't', kind: 'simulated', unit: 'C', everyMs: 5000, seed: 7, min: -40, max: 85 }],
    ...extra,
  };
}

interface Disc {
  sent: number;
  offers: number;
  rejected: number;
  lastReject: string;
}

function disc(b: EmulatedBoard): Disc {
  return JSON.parse(
    b.evaluate('var d = espfleet.device.discovery; JSON.stringify({ sent: d.sent, offers: d.offers, rejected: d.rejected, lastReject: d.lastReject })') as string,
  );
}

function info(b: EmulatedBoard): Record<string, any> {
  return JSON.parse(b.evaluate('JSON.stringify(espfleet.device.info())') as string);
}

function board(id: string): EmulatedBoard {
  return emu.get(id);
}

function beacons(id: string): Heard[] {
  return heard.get(id) ?? [];
}

/** Waits until board `id` has rejected `n` offers in all, the last for `reason`. */
async function rejectedWith(id: string, n: number, reason: string): Promise<Disc> {
  await waitFor(`${id} rejects ${n} offers, the last as '${reason}'`, () => disc(board(id)).rejected >= n, 10_000);
  const d = disc(board(id));
  expect(d.rejected, `${id} rejected`).toBe(n);
  expect(d.lastReject, `${id} lastReject`).toBe(reason);
  return d;
}

/** Policy helper: act on the first beacon only. */
function once(fn: (h: Heard) => void): Policy {
  return (h, nth) => {
    if (nth === 0) fn(h);
  };
}

const HOSTILE = ['d-unsigned', 'd-forged', 'd-tampered', 'd-other', 'd-garbage', 'd-oversize', 'd-signed-bad', 'd-late', 'd-old'];

beforeAll(async () => {
  key = newFleetKey();
  mac = nodeMac(key);
  dir = mkdtempSync(join(tmpdir(), 'espfleet-disc-'));
  for (const b of brokers) await b.start();
  udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  udp.on('message', (msg, rinfo) => {
    const text = msg.toString('latin1');
    const v = verifyBeacon(text, mac);
    if (!v.ok) {
      badBeacons.push(v.reason);
      return;
    }
    // The beacon names the port it listens on: the one it sent from.
    if (v.msg.port !== rinfo.port) badBeacons.push(`port ${v.msg.port} != ${rinfo.port}`);
    const list = heard.get(v.msg.id) ?? [];
    const h: Heard = { b: v.msg, at: emu.clock.now(), text };
    list.push(h);
    heard.set(v.msg.id, list);
    policies.get(v.msg.id)?.(h, list.length - 1);
  });

  // Hostile answers, each to the board's first beacon.
  policies.set(
    'd-unsigned',
    once((h) => {
      const body = JSON.stringify({ t: 'offer', v: 1, id: h.b.id, host: 'c1', broker: { host: '127.0.0.1', port: decoy.port() }, epoch: 1, ts: Date.now(), re: h.b.nonce });
      send(body, h.b.port);
    }),
  );
  policies.set(
    'd-forged',
    once((h) => send(offer(h, decoy, { with: nodeMac(newFleetKey()) }), h.b.port)),
  );
  policies.set(
    'd-tampered',
    once((h) => {
      const good = offer(h, decoy);
      // One byte changed after signing: the broker port's last digit.
      const at = good.indexOf(`"port":${decoy.port()}`) + `"port":${decoy.port()}`.length - 1;
      const digit = good.charCodeAt(at) === 57 ? '0' : String.fromCharCode(good.charCodeAt(at) + 1);
      send(good.slice(0, at) + digit + good.slice(at + 1), h.b.port);
    }),
  );
  policies.set(
    'd-other',
    once((h) => send(offer(h, decoy, { id: 'd-elsewhere' }), h.b.port)),
  );
  policies.set(
    'd-garbage',
    once((h) => send(randomBytes(300), h.b.port)),
  );
  policies.set(
    'd-oversize',
    once((h) => {
      // Correctly signed, but over the 512-byte datagram bound.
      const body = JSON.stringify({ t: 'offer', v: 1, id: h.b.id, host: 'c1', broker: { host: '127.0.0.1', port: decoy.port() }, epoch: 1, ts: Date.now(), re: h.b.nonce, pad: 'x'.repeat(500) });
      const big = seal(body);
      expect(big.length).toBeGreaterThan(DATAGRAM_BYTES_MAX);
      send(big, h.b.port);
    }),
  );
  policies.set('d-signed-bad', () => {});
  policies.set('d-late', () => {});
  policies.set(
    'd-old',
    // Answers beacon 0 only once beacon 4 arrived: the board remembers the last 4 nonces.
    (h, nth) => {
      if (nth === 4) send(offer(beacons(h.b.id)[0], decoy), h.b.port);
    },
  );
  policies.set('d-auth', () => {});
  // A static broker in the config: offers still answer (they set the clock), to the decoy.
  policies.set('d-static', (h) => send(offer(h, decoy), h.b.port));

  emu = new Emulator({ speed: SPEED, dataDir: join(dir, 'boards') });
  for (const id of HOSTILE) emu.add({ id, config: config(id, id === 'd-late' ? { beaconMs: 8000 } : {}) });
  emu.add({ id: 'd-auth', config: config('d-auth') });
  emu.add({ id: 'd-static', config: config('d-static', { mqtt: { host: '127.0.0.1', port: staticBroker.port() } }) });
}, 20_000);

afterAll(async () => {
  emu?.close();
  udp?.close();
  for (const b of brokers) await b.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('device discovery on emulated boards (shipped bundle)', () => {
  it('every beacon the boards send verifies under the fleet key', async () => {
    // Generous: under a loaded CI machine a board's first beacon can be seconds late; what is
    // checked here is that every beacon verifies, not how fast the first one comes.
    await waitFor('a beacon from every board', () => [...emu.boards.keys()].every((id) => beacons(id).length > 0), 30_000);
    expect(badBeacons).toEqual([]);
  });

  it('an unsigned offer is rejected (shape) and not followed', async () => {
    await rejectedWith('d-unsigned', 1, 'shape');
  });

  it('an offer signed with another key is rejected (mac)', async () => {
    await rejectedWith('d-forged', 1, 'mac');
  });

  it('an authentic offer with one byte changed is rejected (mac)', async () => {
    await rejectedWith('d-tampered', 1, 'mac');
  });

  it('an authentic offer for another device is rejected (not-for-us)', async () => {
    await rejectedWith('d-other', 1, 'not-for-us');
  });

  it('garbage and oversized datagrams are rejected (shape, size)', async () => {
    await rejectedWith('d-garbage', 1, 'shape');
    await rejectedWith('d-oversize', 1, 'size');
    // A near-maximal UDP datagram of garbage: refused on its size, unparsed.
    send(randomBytes(60_000), beacons('d-oversize')[0].b.port);
    await rejectedWith('d-oversize', 2, 'size');
    // Empty and tiny datagrams.
    send(Buffer.alloc(0), beacons('d-garbage')[0].b.port);
    send('{}', beacons('d-garbage')[0].b.port);
    await rejectedWith('d-garbage', 3, 'shape');
  });

  it('signed but malformed datagrams are rejected with the field or kind that is wrong', async () => {
    const id = 'd-signed-bad';
    await waitFor(`a beacon from ${id}`, () => beacons(id).length > 0, 10_000);
    const h = beacons(id)[beacons(id).length - 1];
    const base = { t: 'offer', v: 1, id, host: 'c1', broker: { host: '127.0.0.1', port: decoy.port() }, epoch: 1, ts: Date.now(), re: h.b.nonce };
    const cases: Array<[string, string]> = [
      [seal(JSON.stringify({ ...base, broker: { host: "127.0.0.1 ; require('Storage').eraseAll()", port: decoy.port() } })), 'field broker.host'],
      [seal(JSON.stringify({ ...base, broker: { host: '127.0.0.1', port: 70000 } })), 'field broker.port'],
      [seal(JSON.stringify({ ...base, re: 'x' })), 'field re'],
      [seal(JSON.stringify({ ...base, id: '__proto__x!' })), 'field id'],
      [seal(JSON.stringify({ ...base, v: 2 })), 'version'],
      // A beacon is not an offer, even one signed by the fleet.
      [h.text, 'type'],
      [seal('{"t":"offer",,}'), 'json'],
      // Deeply nested but signed and within 512 bytes: parsed (the MAC held), then refused.
      [seal('{"a":'.repeat(60) + '1' + '}'.repeat(60)), 'type'],
      [seal(JSON.stringify({ ...base, t: undefined })), 'type'],
    ];
    let n = 0;
    for (const [text, reason] of cases) {
      send(text, h.b.port);
      await rejectedWith(id, ++n, reason);
    }
    // None was refused for lateness: each was judged on its own content.
    expect(emu.clock.now() - h.at).toBeLessThan(OFFER_ANSWER_MS);
  });

  it('an authentic offer answering a remembered beacon after the answer window is rejected (late)', async () => {
    const id = 'd-late';
    // A beacon still among the board's last 4 (its nonce remembered) but older than the answer
    // window: with beaconMs 8 s (gaps of at least 4 s) the oldest of the last 4 soon is.
    await waitFor(`${id}'s burst`, () => beacons(id).length >= BURST_COUNT, 15_000);
    const pick = () => beacons(id).slice(-4).find((x) => emu.clock.now() - x.at > OFFER_ANSWER_MS + 500);
    await waitFor('a remembered beacon older than the answer window', () => pick() !== undefined, 40_000);
    const last = pick()!;
    send(offer(last, decoy), last.b.port);
    await rejectedWith(id, 1, 'late');
  });

  it('an authentic offer answering a nonce the board no longer remembers is rejected (unsolicited)', async () => {
    await waitFor('d-old beacon 4', () => beacons('d-old').length >= 5, 15_000);
    await rejectedWith('d-old', 1, 'unsolicited');
  });

  it('an authentic offer is followed; the same datagram again is rejected (replay)', async () => {
    const id = 'd-auth';
    let first = '';
    policies.set(id, (h) => {
      if (first) return;
      first = offer(h, brokerA, { host: 'cA' });
      send(first, h.b.port);
      // The same datagram twice: a replay of an offer the board just accepted.
      send(first, h.b.port);
    });
    // A beacon may have been heard before the policy was set: answer the latest one now.
    const seen = beacons(id);
    if (seen.length) policies.get(id)!(seen[seen.length - 1], seen.length - 1);
    await waitFor(`${id} connects to broker A`, () => brokerA.from(id) >= 1, 10_000);
    await waitFor(`${id} session up`, () => info(board(id)).session.state === 'up', 10_000);
    const i = info(board(id));
    expect(i.session.owner).toBe('cA');
    expect(i.discovery.offers).toBe(1);
    await rejectedWith(id, 1, 'unsolicited');
    offerA = first;
  });

  it('after the session is lost the board follows the next companion to broker B; the old offer replayed is ignored', async () => {
    const id = 'd-auth';
    const b = board(id);
    const sentBefore = beacons(id).length;
    let offerB = '';
    policies.set(id, (h) => {
      if (offerB) return;
      offerB = offer(h, brokerB, { host: 'cB' });
      send(offerB, h.b.port);
    });
    // Companion A dies: its sockets drop and its broker refuses from now on.
    brokerA.mode = 'refuse';
    brokerA.dropAll();
    await waitFor(`${id} connects to broker B`, () => brokerB.from(id) >= 1, 15_000);
    await waitFor(`${id} session up on B`, () => info(b).session.state === 'up' && info(b).session.owner === 'cB', 10_000);
    // The lost session brought back a burst of beacons, answered by the new companion.
    expect(beacons(id).length).toBeGreaterThan(sentBefore);
    const acceptsA = brokerA.accepts;
    const connectsB = brokerB.from(id);
    const upB = info(b);
    // An attacker replays the offer that once led the board to A.
    send(offerA, beacons(id)[0].b.port);
    await rejectedWith(id, 2, 'unsolicited');
    await new Promise((r) => setTimeout(r, 1500));
    const after = info(b);
    expect(brokerA.accepts, 'no connection to A after the replay').toBe(acceptsA);
    expect(brokerB.from(id)).toBe(connectsB);
    expect(after.session.state).toBe('up');
    expect(after.session.owner).toBe('cB');
    expect(after.session.connects).toBe(upB.session.connects);
    expect(after.discovery.offers).toBe(2);
    expect(b.counters.errors).toBe(0);
  });

  it('a board with a static mqtt.host connects there and ignores the broker an offer names', async () => {
    const id = 'd-static';
    await waitFor(`${id} connects to its static broker`, () => staticBroker.from(id) >= 1, 10_000);
    await waitFor(`${id} accepted an authentic offer`, () => disc(board(id)).offers >= 1, 15_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(decoy.from(id), 'no CONNECT at the offered broker').toBe(0);
    const i = info(board(id));
    expect(i.session.state).toBe('up');
    expect(i.session.owner, 'no owner taken from an offer').toBe('');
  });

  it('no hostile offer was followed; the boards keep beaconing and still follow an authentic offer', async () => {
    for (const id of HOSTILE) {
      const b = board(id);
      const d = disc(b);
      expect(d.offers, `${id} offers accepted`).toBe(0);
      expect(d.rejected, `${id} rejections`).toBeGreaterThan(0);
      for (const br of brokers) expect(br.from(id), `${id} CONNECTs at ${br.name}`).toBe(0);
      const i = info(b);
      expect(i.session.connects, `${id} sessions`).toBe(0);
      expect(i.session.owner, `${id} owner`).toBe('');
      expect(b.counters.errors, `${id} uncaught errors`).toBe(0);
      expect(b.state).toBe('running');
    }
    // Now an authentic companion answers the next beacon of each: every one follows it.
    for (const id of HOSTILE) {
      let done = false;
      policies.set(id, (h) => {
        if (done) return;
        done = true;
        send(offer(h, recovery, { host: 'c9' }), h.b.port);
      });
    }
    await waitFor('every hostile-case board follows an authentic offer', () => HOSTILE.every((id) => recovery.from(id) >= 1), 25_000);
    for (const id of HOSTILE) expect(decoy.from(id), `${id} never reached the decoy`).toBe(0);
    expect(badBeacons).toEqual([]);
  }, 30_000);
});
