/**
 * The listener's batching (host/discovery/discovery-service.ts defer/runBatch), driven directly:
 * a turn with more datagrams than BATCH_MAX is checked in bounded pieces without losing or
 * reordering any; oversize and bad datagrams mixed into a batch keep their verdicts; a batch
 * still pending when the listener stops is dropped, and never reaches the (closed) registry.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildBeacon, type Beacon } from '../../../../firmware/wire/beacon.js';
import { DiscoveryService } from '../../../../host/discovery/discovery-service.js';
import { nodeMac } from '../../../../host/discovery/node-mac.js';

const KEY = 'ab'.repeat(32);
const mac = nodeMac(KEY);
const rinfo = { address: '127.0.0.1', port: 9 };

function sealed(id: string, seq: number): Buffer {
  const b = buildBeacon({ id, kind: 'esp32', fw: '1.0.0', caps: ['mqtt'], port: 4210, seq, up: seq, mem: 1, ts: 0, boot: 1, nonce: seq }, mac);
  if (!b.ok) throw new Error(b.reason);
  return Buffer.from(b.text, 'latin1');
}

const services: DiscoveryService[] = [];
afterEach(async () => {
  while (services.length) await services.pop()!.stop();
});

async function listener(seen: Beacon[]): Promise<{ d: DiscoveryService; defer: (m: Buffer) => void }> {
  const d = new DiscoveryService({ port: 0, bind: '127.0.0.1', mac, fleetKey: KEY, offerFor: () => null, onBeacon: (b) => seen.push(b) });
  await d.start();
  services.push(d);
  // The socket's own entry point, so the test controls what one turn delivers.
  const defer = (m: Buffer) => (d as unknown as { defer(m: Buffer, r: typeof rinfo): void }).defer(m, rinfo);
  return { d, defer };
}

const turn = () => new Promise((r) => setImmediate(r));

describe('discovery batching', () => {
  it('checks a turn of 600 datagrams in pieces of at most BATCH_MAX, all of them, in order, with bad ones among them', async () => {
    const seen: Beacon[] = [];
    const { d, defer } = await listener(seen);
    let sent = 0;
    for (let seq = 1; seq <= 600; seq++) {
      if (seq % 100 === 0) defer(Buffer.alloc(600, 0x7b)); // oversize
      else if (seq % 50 === 0) defer(Buffer.from('garbage'));
      else {
        defer(sealed('dev-' + (seq % 3), seq));
        sent++;
      }
    }
    // More than BATCH_MAX arrived in this turn: the full pieces were checked at once.
    expect(d.counters.datagrams).toBeGreaterThanOrEqual(512);
    await turn();
    expect(d.counters.datagrams).toBe(600);
    expect(d.counters.beacons).toBe(sent);
    expect(d.counters.dropped).toEqual({ oversize: 6, shape: 6 });
    expect(seen.map((b) => b.seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1).filter((s) => s % 50 !== 0));
  });

  it('drops a batch still pending when the listener stops, before it reaches the registry', async () => {
    const seen: Beacon[] = [];
    const { d, defer } = await listener(seen);
    for (let seq = 1; seq <= 10; seq++) defer(sealed('dev-1', seq));
    const stopping = d.stop();
    await turn();
    await stopping;
    expect(d.counters.datagrams).toBe(0);
    expect(seen).toEqual([]);
  });
});
