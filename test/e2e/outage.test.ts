/**
 * Store and forward, end to end: emulated boards (the shipped bundle) keep sampling while their
 * broker is gone, and every reading produced within the outbox bound arrives exactly once per
 * (device, seq), in order per device, once it is back. Scenarios: the embedded broker stopped for
 * 10 minutes of board time (two boards rebooted meanwhile with non-empty outboxes) and killed
 * again mid-drain; a black-holed broker (TCP up, nothing answers); Mosquitto stopped and restarted.
 */
import * as net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Emulator } from '../../boards/emulator/emulator.js';
import type { EmulatedBoard } from '../../boards/emulator/board.js';
import { Companion, newFleetKey } from '../../host/companion.js';
import { startFleet } from '../../host/cli/emulate-command.js';
import { createLogger } from '../../host/log.js';
import { devicePassword } from '../../host/discovery/node-mac.js';
import { mosquittoAcl } from '../../host/bus/credentials.js';
import { freeLoopbackPort, mosquittoAvailable, startMosquitto, warnMosquittoMissing, type RunningMosquitto } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/fleet.js';
import { freeUdpPort } from '../helpers/ports.js';

/** Board time runs this many times faster than real time: 10 minutes take 20 s. */
const SPEED = 30;
const BOARDS = 20;
const MIN = 60_000;

interface World {
  dir: string;
  key: string;
  mqttPort: number;
  discoveryPort: number;
  emu: Emulator;
  companion: Companion | null;
  /** Per device, the seqs of NEW readings in the order the companion stored them. */
  arrivals: Map<string, number[]>;
  hist: Map<string, number>;
  brokerUrl?: string;
  offerPort?: number;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});


async function startCompanion(w: World): Promise<Companion> {
  const c = new Companion({
    nodeId: 'c1',
    dataDir: join(w.dir, 'host'),
    fleetKey: w.key,
    bind: '127.0.0.1',
    mqttPort: w.mqttPort,
    discoveryPort: w.discoveryPort,
    brokerUrl: w.brokerUrl,
    log: createLogger({ quiet: true, sink: () => {} }),
    offerFor: w.offerPort ? () => ({ host: 'c1', broker: { host: '127.0.0.1', port: w.offerPort! }, epoch: 0 }) : undefined,
  });
  await c.start();
  c.subscribe((ev) => {
    if (ev.type !== 'telemetry') return;
    const list = w.arrivals.get(ev.id) ?? [];
    list.push(ev.seq);
    w.arrivals.set(ev.id, list);
    if (ev.hist) w.hist.set(ev.id, (w.hist.get(ev.id) ?? 0) + 1);
  });
  w.companion = c;
  return c;
}

async function world(opts: { brokerUrl?: string; mqttPort?: number; offerPort?: number } = {}): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'espfleet-outage-'));
  const w: World = {
    dir,
    key: newFleetKey(),
    mqttPort: opts.mqttPort ?? (await freeLoopbackPort()),
    discoveryPort: await freeUdpPort(),
    emu: new Emulator({ speed: SPEED, dataDir: join(dir, 'boards') }),
    companion: null,
    arrivals: new Map(),
    hist: new Map(),
    brokerUrl: opts.brokerUrl,
    offerPort: opts.offerPort,
  };
  cleanups.push(async () => {
    w.emu.close();
    await w.companion?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await startCompanion(w);
  startFleet(w.emu, { count: BOARDS, board: 'esp32', fleetKey: w.key, prefix: 'ob-', discoveryPort: w.discoveryPort, discoveryAddr: '127.255.255.255', beaconMs: 10_000, sampleMs: 5_000 });
  return w;
}

function info(b: EmulatedBoard): Record<string, any> {
  return JSON.parse(b.evaluate('JSON.stringify(espfleet.device.info())') as string);
}

function online(w: World): number {
  return w.companion ? w.companion.devices().filter((d) => d.online).length : 0;
}

/** Board time passing, in real time. */
function boardTime(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms / SPEED));
}

/**
 * Every reading each board put in its outbox is stored exactly once, with no gap, and the
 * companion took them in increasing seq order per device.
 */
async function expectAllDelivered(w: World, what: string): Promise<void> {
  const c = w.companion!;
  const boards = [...w.emu.boards.values()];
  const target = new Map(boards.map((b) => [b.id, info(b).outbox.last as number]));
  await waitFor(
    `${what}: every reading up to each board's newest stored`,
    () => boards.every((b) => (c.telemetryStore.maxSeq(b.id) ?? -1) >= target.get(b.id)! && c.telemetryStore.count(b.id) >= target.get(b.id)! + 1),
    90_000,
  );
  for (const b of boards) {
    const i = info(b);
    expect(i.outbox.dropped, `${b.id} dropped readings`).toBe(0);
    expect(i.outbox.errors, `${b.id} outbox write errors`).toBe(0);
    const last = target.get(b.id)!;
    const seqs = c.telemetryStore.rangeSeqs(b.id, 0, last, 100_000);
    // A device's seqs start at 0 or 1 and count up across reboots: no gap, no duplicate.
    const first = seqs[0];
    expect(first, `${b.id} first seq`).toBeLessThanOrEqual(1);
    const have = new Set(seqs);
    const missing: number[] = [];
    for (let q = first; q <= last && missing.length < 10; q++) if (!have.has(q)) missing.push(q);
    expect(missing, `${b.id} readings ${first}..${last} missing`).toEqual([]);
    expect(seqs.length, `${b.id} readings stored once each`).toBe(last - first + 1);
    const arr = w.arrivals.get(b.id) ?? [];
    for (let k = 1; k < arr.length; k++) {
      if (arr[k] <= arr[k - 1]) throw new Error(`${b.id}: seq ${arr[k]} stored after ${arr[k - 1]} (out of order)`);
    }
    expect(b.counters.errors, `${b.id} uncaught errors`).toBe(0);
    expect(b.peakVars, `${b.id} JsVars`).toBeLessThan(b.profile.vars);
    expect(i.outbox.n, `${b.id} outbox length`).toBeLessThanOrEqual(500);
  }
}

describe('store and forward through broker outages', () => {
  it('embedded broker: down 10 board-minutes with reboots, then killed mid-drain: nothing is lost', async () => {
    const w = await world();
    await waitFor('all boards connected', () => online(w) === BOARDS, 30_000);
    await boardTime(1 * MIN);
    await w.companion!.stop();
    w.companion = null;
    const outageStart = Date.now();
    await boardTime(5 * MIN);
    // Two boards reboot with readings waiting in their outboxes.
    const rebooted = [w.emu.get('ob-1'), w.emu.get('ob-2')];
    for (const b of rebooted) {
      expect(info(b).outbox.n).toBeGreaterThan(20);
      b.reboot();
    }
    await boardTime(5 * MIN);
    const queued = [...w.emu.boards.values()].map((b) => info(b).outbox.n as number);
    console.log(`outage: ${((Date.now() - outageStart) * SPEED / MIN).toFixed(1)} board-minutes; outboxes hold ${Math.min(...queued)}-${Math.max(...queued)} readings`);
    await startCompanion(w);
    // Kill it again while the boards drain.
    await waitFor('draining', () => [...w.arrivals.values()].reduce((n, l) => n + l.length, 0) > BOARDS * 10, 60_000);
    await w.companion!.stop();
    w.companion = null;
    await boardTime(1 * MIN);
    await startCompanion(w);
    await expectAllDelivered(w, 'after restart');
    for (const b of rebooted) expect(info(b).boots).toBe(2);
    for (const b of w.emu.boards.values()) if (!rebooted.includes(b)) expect(info(b).boots, b.id).toBe(1);
    expect([...w.hist.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(BOARDS * 50);
  }, 240_000);

  it('a black-holed broker (TCP up, silent) is detected and nothing is lost', async () => {
    // Devices reach the broker through a proxy that can swallow traffic both ways.
    const brokerPort = await freeLoopbackPort();
    let silent = false;
    const pipes = new Set<net.Socket>();
    const proxy = net.createServer((down) => {
      const up = net.connect(brokerPort, '127.0.0.1');
      pipes.add(down).add(up);
      down.on('data', (d) => !silent && up.write(d));
      up.on('data', (d) => !silent && down.write(d));
      const end = (): void => {
        down.destroy();
        up.destroy();
        pipes.delete(down);
        pipes.delete(up);
      };
      down.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      for (const p of pipes) p.destroy();
      proxy.close();
    });
    const w = await world({ mqttPort: brokerPort, offerPort: (proxy.address() as net.AddressInfo).port });
    await waitFor('all boards connected', () => online(w) === BOARDS, 30_000);
    await boardTime(1 * MIN);
    const before = [...w.emu.boards.values()].map((b) => info(b).session.connects as number);
    silent = true;
    // keepalive 30 s: a silent broker must be noticed within 45 s of board time.
    await boardTime(3 * MIN);
    const after = [...w.emu.boards.values()].map((b) => info(b));
    for (const [k, i] of after.entries()) {
      expect(i.reconnect.failures, `${i.id} noticed the silence`).toBeGreaterThan(0);
      expect(i.outbox.n, `${i.id} buffered while silent`).toBeGreaterThan(10);
      expect(i.session.connects).toBeGreaterThanOrEqual(before[k]);
    }
    expect(after.some((i) => String(i.reconnect.last).startsWith('silent') || String(i.reconnect.last).startsWith('timeout'))).toBe(true);
    silent = false;
    await expectAllDelivered(w, 'after the broker answers again');
  }, 180_000);

  it.skipIf(!mosquittoAvailable())('Mosquitto as the external broker: down 5 board-minutes, nothing is lost', async () => {
    const persistDir = mkdtempSync(join(tmpdir(), 'espfleet-mosq-'));
    cleanups.push(() => rmSync(persistDir, { recursive: true, force: true }));
    const port = await freeLoopbackPort();
    const key = newFleetKey();
    const users: Record<string, string> = { companion: 'companion-secret' };
    for (let i = 1; i <= BOARDS; i++) users[`ob-${i}`] = devicePassword(key, `ob-${i}`);
    const start = (): Promise<RunningMosquitto> => startMosquitto({ port, users, acl: mosquittoAcl('companion'), persistDir });
    let mosq = await start();
    cleanups.push(() => mosq.stop());
    const w = await world({ brokerUrl: `mqtt://companion:companion-secret@127.0.0.1:${port}` });
    // The world made its own key: boards must use the one Mosquitto knows.
    w.emu.close();
    w.key = key;
    await w.companion!.stop();
    await startCompanion(w);
    w.emu = new Emulator({ speed: SPEED, dataDir: join(w.dir, 'boards2') });
    cleanups.push(() => w.emu.close());
    startFleet(w.emu, { count: BOARDS, board: 'esp32', fleetKey: key, prefix: 'ob-', discoveryPort: w.discoveryPort, discoveryAddr: '127.255.255.255', beaconMs: 10_000, sampleMs: 5_000 });
    await waitFor('all boards online through Mosquitto', () => online(w) === BOARDS, 30_000);
    await boardTime(1 * MIN);
    await mosq.stop();
    await boardTime(5 * MIN);
    mosq = await start();
    await expectAllDelivered(w, 'after Mosquitto restarted');
  }, 180_000);

  it.runIf(!mosquittoAvailable())('says loudly that the Mosquitto scenario did not run', () => {
    console.warn(warnMosquittoMissing('the Mosquitto outage scenario'));
  });
});
