import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { HashRing, type RingMember } from '../../../../host/ring/hash-ring.js';
import { buildContinuum, ketamaDigests, ketamaPoint } from '../../../../host/ring/ketama.js';
import { companions, deviceKeys } from './ring-fixtures.js';

/** The parts of the `hashring` package (3.x) these tests use; it ships no types. */
interface PeerRing {
  get(key: string): string;
  range(key: string, size: number, unique?: boolean): string[];
  add(servers: Record<string, number>): PeerRing;
  remove(server: string): PeerRing;
  points(servers?: string[]): Record<string, number[]>;
}
type PeerRingCtor = new (servers: Record<string, number> | string[], algorithm?: string, options?: Record<string, unknown>) => PeerRing;
const PeerHashRing = createRequire(import.meta.url)('hashring') as PeerRingCtor;

function peerOf(members: readonly RingMember[], options?: Record<string, unknown>): PeerRing {
  const servers: Record<string, number> = {};
  for (const m of members) servers[m.id] = m.weight;
  return new PeerHashRing(servers, 'md5', options);
}

const KEYS = deviceKeys(10_000, 21);

describe('ketama mode matches the hashring package', () => {
  const cases: Array<[string, RingMember[]]> = [
    ['10 equal members', companions(10, '10.0.0.')],
    ['3 members', companions(3, 'cache-')],
    ['weighted members', companions(7, 'w').map((m, i) => ({ id: m.id, weight: [1, 2, 3, 1.5, 7, 1, 4][i] }))],
    ['100 equal members', companions(100, 'node-')],
    ['non-ASCII ids', [{ id: 'café:1', weight: 1 }, { id: '東京:2', weight: 2 }, { id: 'plain:3', weight: 1 }]],
  ];

  it.each(cases)('same owner for 10k keys: %s', (_name, members) => {
    const ours = HashRing.create(members, { mode: 'ketama' });
    const peer = peerOf(members);
    for (const key of KEYS) expect(ours.owner(key)).toBe(peer.get(key));
    for (const key of ['温度', 'é', '', 'x'.repeat(300)]) expect(ours.owner(key)).toBe(peer.get(key));
  });

  it.each(cases)('same points per member: %s', (_name, members) => {
    const { points, owners } = buildContinuum(
      members.map((m) => m.id),
      members.map((m) => m.weight),
      40,
    );
    const peerPoints = peerOf(members).points(members.map((m) => m.id));
    for (let i = 0; i < members.length; i++) {
      const ours: number[] = [];
      for (let k = 0; k < points.length; k++) if (owners[k] === i) ours.push(points[k]);
      expect(ours).toEqual(peerPoints[members[i].id]);
    }
  });

  it('same replica lists as hashring range()', () => {
    const members = companions(10, '10.0.0.');
    const ours = HashRing.create(members, { mode: 'ketama' });
    const peer = peerOf(members);
    for (const key of KEYS.slice(0, 2000)) {
      for (const r of [1, 3, 10]) expect(ours.replicas(key, r)).toEqual(peer.range(key, r));
    }
  });

  it('follows hashring through add and remove', () => {
    const members = companions(8, 'host-');
    let ours = HashRing.create(members, { mode: 'ketama' });
    const peer = peerOf(members);
    ours = ours.with({ id: 'host-new', weight: 2 });
    peer.add({ 'host-new': 2 });
    for (const key of KEYS.slice(0, 3000)) expect(ours.owner(key)).toBe(peer.get(key));
    ours = ours.without('host-3:7000');
    peer.remove('host-3:7000');
    for (const key of KEYS.slice(0, 3000)) expect(ours.owner(key)).toBe(peer.get(key));
  });

  it('honours the vnode count like hashring "vnode count"', () => {
    const members = companions(5, 'v');
    const ours = HashRing.create(members, { mode: 'ketama', vnodes: 100 });
    const peer = peerOf(members, { 'vnode count': 100 });
    for (const key of KEYS.slice(0, 3000)) expect(ours.owner(key)).toBe(peer.get(key));
  });

  it('keeps hashring floor() of the weighted share, float rounding included', () => {
    // 0.1 * 40 * 10 and friends: the product is computed left to right as hashring does.
    for (let n = 1; n <= 40; n++) {
      expect(ketamaDigests(1, n, n, 40)).toBe(Math.floor((1 / n) * 40 * n));
    }
    expect(ketamaDigests(1, 3, 3, 40)).toBe(40);
  });

  it('key points are md5 little-endian, as hashring hashValue()', () => {
    expect(ketamaPoint('')).toBe(Buffer.from('d41d8cd98f00b204e9800998ecf8427e', 'hex').readUInt32LE(0));
    expect(ketamaPoint('a')).toBe(Buffer.from('0cc175b9c0f1b6a831c399e269772661', 'hex').readUInt32LE(0));
  });

  it('serialises, diffs and measures like the slots mode', () => {
    const ring = HashRing.create(companions(10, 'k'), { mode: 'ketama', epoch: 3 });
    const back = HashRing.fromJSON(JSON.stringify(ring));
    expect(back.mode).toBe('ketama');
    expect(back.fingerprint).toBe(ring.fingerprint);
    for (const key of KEYS.slice(0, 1000)) expect(back.owner(key)).toBe(ring.owner(key));
    const grown = ring.with({ id: 'k-new', weight: 1 });
    for (const mv of ring.diff(grown, KEYS)) expect(mv.to).toBe('k-new');
    let total = 0;
    for (const s of ring.shares().values()) total += s;
    expect(total).toBeCloseTo(1, 12);
    // Slots and ketama are different placements of the same members.
    const slots = HashRing.create(companions(10, 'k'));
    expect(ring.movedShare(slots)).toBeGreaterThan(0.5);
    expect(ring.movedShare(ring)).toBe(0);
  });
});
