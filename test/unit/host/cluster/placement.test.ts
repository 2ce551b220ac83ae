import { describe, expect, it } from 'vitest';
import { HashRing } from '../../../../host/ring/hash-ring.js';
import { Placement, PlacementCache } from '../../../../host/cluster/placement.js';
import { formatMemberAddr, withRingFlag } from '../../../../host/cluster/member-addr.js';

function addr(id: string, out = false): string {
  const a = formatMemberAddr({ broker: { host: '127.0.0.1', port: 1883 }, repl: { host: '127.0.0.1', port: 7001 }, raft: { host: '127.0.0.1', port: 7000 } });
  return out ? withRingFlag(a, true) : a;
}

function src(members: Array<[string, number, boolean?]>, epoch = 1) {
  return { epoch, members: () => members.map(([id, weight, out]) => ({ id, weight, addr: addr(id, out) })) };
}

const keys = Array.from({ length: 3000 }, (_, i) => 'dev-' + i);

describe('Placement', () => {
  it.each([
    ['equal weights', [['a', 1], ['b', 1], ['c', 1], ['d', 1], ['e', 1]]],
    ['unequal weights', [['a', 1], ['b', 3], ['c', 2], ['d', 7], ['e', 1]]],
  ] as Array<[string, Array<[string, number]>]>)('ranking[0] is the ring owner for every key (%s)', (_n, members) => {
    const p = new Placement(src(members), 12);
    for (const k of keys) expect(p.ranking(k)[0]).toBe(p.owner(k));
  });

  it.each([
    ['equal weights', [['a', 1], ['b', 1], ['c', 1], ['d', 1], ['e', 1]]],
    ['unequal weights', [['a', 1], ['b', 3], ['c', 2], ['d', 7], ['e', 1]]],
  ] as Array<[string, Array<[string, number]>]>)('the heir owns the key once the owner leaves the ring (%s)', (_n, members) => {
    const p = new Placement(src(members), 12);
    for (const gone of ['a', 'b', 'd']) {
      const after = new Placement(src(members.map(([id, w]) => [id, w, id === gone] as [string, number, boolean]), 2), 12);
      for (const k of keys) {
        const r = p.ranking(k);
        if (r[0] !== gone) {
          // Keys of other owners do not move.
          expect(after.owner(k)).toBe(r[0]);
        } else {
          expect(after.owner(k)).toBe(r[1]);
          // And the rest of the order is kept.
          expect(after.ranking(k)).toEqual(r.filter((id) => id !== gone));
        }
      }
    }
  });

  it('agrees with a ring built directly by HashRing (same members, same table)', () => {
    const p = new Placement(src([['x', 2], ['y', 1], ['z', 1]]), 12);
    const ring = HashRing.create([{ id: 'x', weight: 2 }, { id: 'y', weight: 1 }, { id: 'z', weight: 1 }], { slotBits: 12 });
    for (const k of keys.slice(0, 500)) expect(p.owner(k)).toBe(ring.owner(k));
  });

  it('members off the ring own nothing and are not replicas, but stay members', () => {
    const p = new Placement(src([['a', 1], ['b', 1, true], ['c', 1]]), 10);
    expect(p.inRing).toEqual(['a', 'c']);
    expect(p.members.map((m) => m.id)).toEqual(['a', 'b', 'c']);
    for (const k of keys.slice(0, 300)) {
      expect(p.owner(k)).not.toBe('b');
      expect(p.replicaSet(p.owner(k) as string, k, 3)).not.toContain('b');
    }
  });

  it('replicaSet puts the committed owner first even when the ring would pick another', () => {
    const p = new Placement(src([['a', 1], ['b', 1], ['c', 1]]), 10);
    const k = keys.find((x) => p.owner(x) === 'a') as string;
    expect(p.replicaSet('b', k, 3)[0]).toBe('b');
    expect(p.replicaSet('b', k, 3)).toHaveLength(3);
    expect(new Set(p.replicaSet('b', k, 3)).size).toBe(3);
    expect(p.replicaSet('b', k, 2)).toEqual(['b', 'a']);
  });

  it('an empty ring places nothing', () => {
    const p = new Placement(src([['a', 1, true]]), 10);
    expect(p.ring).toBeNull();
    expect(p.owner('dev-1')).toBeNull();
    expect(p.ranking('dev-1')).toEqual([]);
  });

  it('the cache rebuilds only when the epoch or the members change', () => {
    const c = new PlacementCache(10);
    const s1 = src([['a', 1], ['b', 1]], 3);
    const p1 = c.of(s1);
    expect(c.of(src([['a', 1], ['b', 1]], 3))).toBe(p1);
    expect(c.of(src([['a', 1], ['b', 1]], 4))).not.toBe(p1);
    expect(c.of(src([['a', 1], ['b', 1, true]], 4)).inRing).toEqual(['a']);
  });
});
