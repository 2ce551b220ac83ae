/**
 * The discovery listener on a real loopback socket, where datagrams are checked in batches (all
 * the socket delivered in one event-loop turn): a burst of beacons from several devices with bad
 * datagrams among them gives the same verdicts as one by one, beacons reach the registry hook in
 * arrival order, and the offer goes back to the device's port, authentic and answering its nonce.
 */
import * as dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import * as wire from '../../firmware/wire/beacon.js';
import type { Beacon } from '../../firmware/wire/beacon.js';
import { DiscoveryService, type DiscoveryOptions } from '../../host/discovery/discovery-service.js';
import { nodeMac } from '../../host/discovery/node-mac.js';

const KEY = 'ab'.repeat(32);
const m = { ...wire, DiscoveryService, nodeMac };

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

async function until(f: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  expect(f()).toBe(true);
}

describe('discovery listener on a socket', () => {
  it.each([
    ['awaiting each datagram', true],
    ['in one burst', false],
  ])('sent %s: verdicts, order, offers', async (_name, paced) => {
    const mac = m.nodeMac(KEY);
    const device = await udp();
    const offers: string[] = [];
    device.on('message', (b) => offers.push(b.toString('latin1')));
    const seen: Beacon[] = [];
    const opts: DiscoveryOptions = {
      port: 0,
      bind: '127.0.0.1',
      mac,
      fleetKey: KEY,
      offerFor: (b) => (b.id === 'dev-0' ? { host: 'c1', broker: { host: '127.0.0.1', port: 1883 }, epoch: 1 } : null),
      onBeacon: (b) => seen.push(b),
    };
    const d = new m.DiscoveryService(opts);
    await d.start();
    closers.push(() => d.stop());
    const sender = await udp();
    const pending: Promise<void>[] = [];
    const send = (buf: Buffer) => {
      const p = new Promise<void>((r) => sender.send(buf, d.port(), '127.0.0.1', () => r()));
      if (paced) return p;
      pending.push(p);
      return Promise.resolve();
    };
    const sealed = (id: string, seq: number, key = mac) => {
      const b = m.buildBeacon({ id, kind: 'esp32', fw: '1.0.0', caps: ['mqtt'], port: device.address().port, seq, up: seq * 1000, mem: 9000, ts: 0, boot: 1, nonce: seq }, key);
      if (!b.ok) throw new Error(b.reason);
      return Buffer.from(b.text, 'latin1');
    };
    // 3 devices x 40 beacons, interleaved, then the bad ones.
    for (let seq = 1; seq <= 40; seq++) for (let dev = 0; dev < 3; dev++) await send(sealed('dev-' + dev, seq));
    await send(sealed('dev-1', 5)); // replay
    await send(sealed('dev-9', 1, m.nodeMac('cd'.repeat(32)))); // forged
    await send(Buffer.from('not a beacon at all'));
    await send(Buffer.alloc(600, 0x7b));
    await Promise.all(pending);
    await until(() => d.counters.datagrams === 124 && d.counters.beacons + Object.values(d.counters.dropped).reduce((a, b) => a + b, 0) === 124);
    expect(d.counters.beacons).toBe(120);
    expect(d.counters.dropped).toEqual({ replay: 1, mac: 1, shape: 1, oversize: 1 });
    // Arrival order per device, every beacon once.
    for (let dev = 0; dev < 3; dev++) expect(seen.filter((b) => b.id === 'dev-' + dev).map((b) => b.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // dev-0 was offered a broker (the first beacon; the rest are paced), and the offer is authentic.
    await until(() => offers.length >= 1);
    const o = m.verifyOffer(offers[0], mac);
    expect(o.ok && o.msg.id === 'dev-0' && o.msg.re === 1).toBe(true);
  });

  it('a failing handler costs neither the rest of the turn nor the process, and is said', async () => {
    const mac = m.nodeMac(KEY);
    const device = await udp();
    const logs: string[] = [];
    const seen: string[] = [];
    const d = new m.DiscoveryService({
      port: 0,
      bind: '127.0.0.1',
      mac,
      fleetKey: KEY,
      offerFor: (b) => {
        if (b.id === 'dev-1') throw new Error('ring not ready');
        return null;
      },
      onBeacon: (b) => {
        if (b.id === 'dev-2') throw new Error('registry closed');
        seen.push(b.id);
      },
      log: (line) => logs.push(line),
    });
    await d.start();
    closers.push(() => d.stop());
    const sender = await udp();
    const sends: Promise<void>[] = [];
    for (let seq = 1; seq <= 10; seq++) {
      for (let dev = 0; dev < 4; dev++) {
        const b = m.buildBeacon({ id: 'dev-' + dev, kind: 'esp32', fw: '1.0.0', caps: [], port: device.address().port, seq, up: 0, mem: 1, ts: 0, boot: 1, nonce: seq }, mac);
        if (!b.ok) throw new Error(b.reason);
        sends.push(new Promise<void>((r) => sender.send(Buffer.from(b.text, 'latin1'), d.port(), '127.0.0.1', () => r())));
      }
    }
    await Promise.all(sends);
    await until(() => d.counters.datagrams === 40);
    expect(d.counters.beacons).toBe(40);
    expect(seen.filter((id) => id === 'dev-3')).toHaveLength(10);
    expect(seen.filter((id) => id === 'dev-1')).toHaveLength(10);
    expect(logs).toEqual(expect.arrayContaining(['offer target failed', 'beacon handler failed']));
  });
});
