/**
 * Three real companions (embedded broker, SQLite, discovery) with their cluster services on
 * loopback, and devices played by FakeDevice (UDP beacons, an MQTT client): offers name owners,
 * a PUBACK means the owner AND its heir hold the reading, and when the owner stops its devices
 * find their new owner, which already holds everything acknowledged.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterService } from '../../../../host/cluster/cluster-service.js';
import { Companion, newFleetKey } from '../../../../host/companion.js';
import { memoryLogger } from '../../../../host/log.js';
import { FakeDevice } from './fake-device.js';
import { freeTcpPort, freeUdpPort } from '../../../helpers/ports.js';



async function until<T>(what: string, fn: () => T | null | undefined | false, timeoutMs = 15000, everyMs = 50): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

interface Node {
  id: string;
  companion: Companion;
  cluster: ClusterService;
  log: ReturnType<typeof memoryLogger>;
  running: boolean;
}

const ids = ['n1', 'n2', 'n3'];
const fleetKey = newFleetKey();
const secret = Buffer.alloc(32, 9);
let dir = '';
let discoveryPort = 0;
const nodes: Node[] = [];
const devices: FakeDevice[] = [];

function node(id: string): Node {
  return nodes.find((n) => n.id === id) as Node;
}

function live(): Node[] {
  return nodes.filter((n) => n.running);
}

async function stopNode(n: Node): Promise<void> {
  n.running = false;
  await n.cluster.stop();
  await n.companion.stop();
}

const raftPorts: Record<string, number> = {};

/** Starts member `id` on its data directory (kept across a stop, as a restarted process would find it). */
async function startNode(id: string): Promise<Node> {
  const log = memoryLogger();
  const peers: Record<string, string> = {};
  for (const p of ids) if (p !== id) peers[p] = '127.0.0.1:' + raftPorts[p];
  const cluster = new ClusterService({ nodeId: id, secret, peers, bind: '127.0.0.1', raftPort: raftPorts[id], dataDir: join(dir, id, 'raft'), log });
  const companion = new Companion({ nodeId: id, dataDir: join(dir, id), fleetKey, bind: '127.0.0.1', mqttPort: 0, discoveryPort, log, ...cluster.hooks() });
  await companion.start();
  await cluster.start(companion);
  return { id, companion, cluster, log, running: true };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'espfleet-cluster-'));
  discoveryPort = await freeUdpPort();
  for (const id of ids) raftPorts[id] = await freeTcpPort();
  for (const id of ids) nodes.push(await startNode(id));
}, 30000);

afterAll(async () => {
  for (const d of devices) d.close();
  for (const n of nodes) if (n.running) await stopNode(n);
  rmSync(dir, { recursive: true, force: true });
});

describe('cluster service (3 companions on loopback)', () => {
  it('elects a leader and registers every member on the ring', async () => {
    await until('a leader and 3 members on every node', () =>
      nodes.every((n) => {
        const v = n.cluster.view();
        return v.leader !== null && v.members.length === 3 && v.ring.owners.length === 3;
      }),
    );
    const leaders = new Set(nodes.map((n) => n.cluster.view().leader));
    expect(leaders.size).toBe(1);
    const v = node('n1').cluster.view();
    expect(v.mode).toBe('cluster');
    expect(v.members.map((m) => m.id)).toEqual(ids);
    expect(v.members.find((m) => m.self)?.id).toBe('n1');
  });

  it('offers name the owner the committed state assigns, and only the owner answers', async () => {
    for (let i = 0; i < 9; i++) {
      const d = new FakeDevice({ id: 'fake-' + i, fleetKey, discoveryPort });
      await d.open();
      devices.push(d);
    }
    const epoch0 = node('n1').cluster.view().ring.epoch;
    for (const d of devices) await d.findOwner(8000);
    // On a loaded machine a member can miss its links long enough (800 + 300 ms) to be taken off
    // the ring and put back: its devices then move, and move again. A device whose offer no longer
    // names the owner every node has applied asks again, as a device does when its session drops.
    const owner = (id: string) => {
      const o = nodes.map((n) => n.cluster.raft!.state.owner(id));
      return o.every((x) => x !== undefined && x === o[0]) ? o[0] : undefined;
    };
    let asked = 0;
    const deadline = Date.now() + 20000;
    for (;;) {
      const stale = devices.filter((d) => owner(d.id) !== d.offer!.host);
      if (!stale.length) break;
      if (Date.now() > deadline) throw new Error('devices whose offer is not the applied owner: ' + stale.map((d) => `${d.id} offer ${d.offer!.host} owner ${owner(d.id)}`).join(', '));
      for (const d of stale) {
        if (owner(d.id) === undefined) continue;
        asked++;
        await d.findOwner(8000);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const epoch1 = node('n1').cluster.view().ring.epoch;
    if (asked) console.log(`cluster service: the ring moved under load (epoch ${epoch0} -> ${epoch1}); ${asked} offers asked again`);
    for (const d of devices) {
      // The companion that offered owns the device in every node's applied state, and its offer
      // names its own broker.
      expect(node(d.offer!.host).cluster.raft!.state.owner(d.id)).toBe(d.offer!.host);
      expect(d.offer!.broker.port).toBe(node(d.offer!.host).companion.bus.address()!.port);
      expect(node('n1').cluster.core!.placement().owner(d.id)).toBe(d.offer!.host);
    }
    await new Promise((r) => setTimeout(r, 300));
    // Only the owner answers: under any one ring epoch, every offer a device got came from one companion.
    for (const d of devices) {
      const byEpoch = new Map<number, Set<string>>();
      for (const o of d.offers) byEpoch.set(o.epoch, (byEpoch.get(o.epoch) ?? new Set()).add(o.host));
      for (const [epoch, hosts] of byEpoch) expect([...hosts], `${d.id} at epoch ${epoch}`).toHaveLength(1);
    }
    if (!asked) for (const d of devices) expect(new Set(d.offers.map((o) => o.host)).size).toBe(1);
  }, 60000);

  it('a PUBACK means the owner and its heir hold the reading', async () => {
    for (const d of devices) await d.connect(d.offer!);
    for (const d of devices) for (let s = 1; s <= 5; s++) await d.publish(s, s * 1.5);
    for (const d of devices) {
      const owner = node(d.offer!.host);
      const heir = owner.cluster.core!.placement().replicaSet(owner.id, d.id, 3)[1];
      for (const id of [owner.id, heir]) expect(node(id).companion.telemetryStore.rangeSeqs(d.id, 0, 100)).toEqual([1, 2, 3, 4, 5]);
    }
    // Anti-entropy brings the third replica along.
    await until('every replica holding every reading', () => devices.every((d) => nodes.every((n) => n.companion.telemetryStore.count(d.id) === 5)));
  }, 30000);

  it('refuses (no PUBACK) a reading sent to a companion that does not own the device', async () => {
    const d = devices[0];
    const other = ids.find((id) => id !== d.offer!.host) as string;
    const port = node(other).companion.bus.address()!.port;
    await d.connect({ ...d.offer!, host: other, broker: { host: '127.0.0.1', port } });
    await expect(d.publish(6, 1)).rejects.toThrow();
    await d.connect(d.offer!);
  }, 15000);

  it('when an owner stops, its devices find the heir, which already holds what was acknowledged', async () => {
    const leader = node('n1').cluster.view().leader as string;
    const victim = ids.find((id) => id !== leader && devices.some((d) => d.offer!.host === id)) as string;
    const moved = devices.filter((d) => d.offer!.host === victim);
    const heirs = new Map(moved.map((d) => [d.id, node(victim).cluster.core!.placement().replicaSet(victim, d.id, 3)[1]]));
    const t0 = Date.now();
    await stopNode(node(victim));
    for (const d of moved) {
      const offer = await d.findOwner(10000);
      expect(offer.host).toBe(heirs.get(d.id));
      // Everything acknowledged (1..5) is there before the device reconnects; 6 was refused by a
      // non-owner, stored there anyway, and may have spread: more copies never hurt.
      expect(node(offer.host).companion.telemetryStore.rangeSeqs(d.id, 0, 5)).toEqual([1, 2, 3, 4, 5]);
      await d.connect(offer);
      await d.publish(7, 7);
    }
    const outageMs = Date.now() - t0;
    expect(outageMs).toBeLessThan(10000);
    // The leader took the stopped member off the ring, committed.
    const v = node(leader).cluster.view() as ReturnType<ClusterService['view']> & { members: Array<{ id: string; onRing: boolean; up: boolean }> };
    expect(v.members.find((m) => m.id === victim)).toMatchObject({ onRing: false, up: false });
    expect(
      node(leader).log.lines.some((l) => {
        const c = l.cmd as { t?: string; id?: string; addr?: string } | undefined;
        return l.ev === 'cluster.propose' && c?.t === 'member.update' && c.id === victim && String(c.addr).endsWith('|out');
      }),
    ).toBe(true);
    // Devices that did not move kept their owner (only the keys the ring moved were reassigned).
    for (const d of devices.filter((x) => x.offer!.host !== victim && !moved.includes(x))) expect(node(leader).cluster.raft!.state.owner(d.id)).toBe(d.offer!.host);
    expect(live().length).toBe(2);
  }, 30000);

  it('a member that comes back gets its devices back; the companion they leave closes their sessions at once', async () => {
    const back = nodes.find((n) => !n.running) as Node;
    const away = devices.filter((d) => d.offer!.host !== back.id && d.connected());
    nodes.splice(nodes.indexOf(back), 1, await startNode(back.id));
    await until('the member back on the ring of every node', () =>
      nodes.every((n) => n.cluster.view().ring.owners.some((o) => o.id === back.id)),
    );
    // The keys the ring gives back move back, and only those.
    await until('the returning member owning devices again', () => devices.some((d) => node(back.id).cluster.raft!.state.owner(d.id) === back.id));
    const returned = away.filter((d) => node(back.id).cluster.raft!.state.owner(d.id) === back.id);
    expect(returned.length).toBeGreaterThan(0);
    const lefts = new Set(returned.map((d) => d.offer!.host));
    for (const d of returned) {
      const left = d.offer!.host;
      // Not at the device's next publish: the companion it leaves closes its session now.
      await until(`${d.id}'s session on ${left} closed`, () => !d.connected(), 5000);
      expect(node(left).companion.registry.get(d.id)).toMatchObject({ state: 'down', stateReason: 'moved' });
      const offer = await d.findOwner(10000);
      expect(offer.host).toBe(back.id);
      await d.connect(offer);
      await d.publish(8, 8);
    }
    // Each companion they left said so, with the sessions it closed.
    for (const id of lefts) {
      expect(node(id).log.lines.some((l) => l.ev === 'cluster.moved-away' && Number(l.sessionsClosed) >= 1)).toBe(true);
    }
  }, 45000);
});
