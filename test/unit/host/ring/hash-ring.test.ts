import { describe, expect, it } from 'vitest';
import { DEFAULT_SLOT_BITS, HashRing, type RingMember } from '../../../../host/ring/hash-ring.js';
import { murmur3Bytes } from '../../../../host/ring/murmur3.js';
import { keyLoad, movedFraction, shareLoad } from '../../../../host/ring/ring-stats.js';
import { companions, deviceKeys } from './ring-fixtures.js';

/**
 * The placement as documented, written independently of slot-table.ts: slot = top slotBits bits
 * of murmur3(utf8(key), 0); the slot goes to the member with the smallest -ln(u)/weight,
 * u = (murmur3(uint32le(slot), murmur3(utf8(id), 0x52494e47)) + 0.5) / 2^32, ties to the smaller id.
 */
function refSlotOwner(members: readonly RingMember[], slot: number): string {
  const le = Buffer.alloc(4);
  le.writeUInt32LE(slot);
  let best = '';
  let bestKey = Infinity;
  for (const m of members) {
    const score = murmur3Bytes(le, murmur3Bytes(Buffer.from(m.id, 'utf8'), 0x52494e47));
    const k = -Math.log((score + 0.5) / 2 ** 32) / m.weight;
    if (k < bestKey || (k === bestKey && m.id < best)) {
      best = m.id;
      bestKey = k;
    }
  }
  return best;
}

function refSlot(key: string, bits: number): number {
  return murmur3Bytes(Buffer.from(key, 'utf8'), 0) >>> (32 - bits);
}

const KEYS = deviceKeys(20_000, 11);

describe('HashRing (slots mode)', () => {
  it('places keys exactly as documented (independent reference, equal and unequal weights)', () => {
    const equal = companions(7);
    const weighted = companions(7).map((m, i) => ({ id: m.id, weight: 1 + i * 0.75 }));
    for (const members of [equal, weighted]) {
      for (const bits of [10, DEFAULT_SLOT_BITS]) {
        const ring = HashRing.create(members, { slotBits: bits });
        for (const key of KEYS.slice(0, 1500)) expect(ring.owner(key)).toBe(refSlotOwner(members, refSlot(key, bits)));
      }
    }
  });

  it('replicas are the next distinct owners clockwise, the first being the owner', () => {
    const members = companions(6);
    const bits = 10;
    const ring = HashRing.create(members, { slotBits: bits });
    for (const key of KEYS.slice(0, 300)) {
      const want: string[] = [];
      const s0 = refSlot(key, bits);
      for (let i = 0; i < 1 << bits && want.length < 4; i++) {
        const o = refSlotOwner(members, (s0 + i) % (1 << bits));
        if (!want.includes(o)) want.push(o);
      }
      expect(ring.replicas(key, 4)).toEqual(want);
    }
  });

  it('is deterministic: any member order, separate instances and epochs give the same placement', () => {
    const members = companions(12);
    const shuffled = [...members].reverse();
    const a = HashRing.create(members);
    const b = HashRing.create(shuffled, { epoch: 9 });
    expect(b.fingerprint).not.toBe(a.fingerprint); // member order is part of the committed value...
    for (const key of KEYS) expect(b.owner(key)).toBe(a.owner(key)); // ...but never of the placement
    const c = HashRing.create(members);
    expect(c.fingerprint).toBe(a.fingerprint);
    expect(a.movedShare(b)).toBe(0);
  });

  it('pins the placement: a rolling upgrade must not move keys', () => {
    // Recorded from this implementation; any change to hashing or placement shows up here.
    const ring = HashRing.create(companions(5));
    expect(ring.fingerprint).toBe(PINNED.fingerprint);
    for (const [key, owner] of PINNED.owners) expect(ring.owner(key)).toBe(owner);
  });

  it('replica sets are distinct, ordered prefixes, at most the member count', () => {
    const ring = HashRing.create(companions(10));
    for (const key of KEYS.slice(0, 2000)) {
      const all = ring.replicas(key, 10);
      expect(new Set(all).size).toBe(10);
      expect(all[0]).toBe(ring.owner(key));
      for (const r of [1, 2, 3, 5]) expect(ring.replicas(key, r)).toEqual(all.slice(0, r));
      expect(ring.replicas(key, 50)).toEqual(all);
    }
  });

  it('keeps the busiest of 10 equal owners within 1.05 x the mean (100k keys, several id sets)', () => {
    const keys = deviceKeys(100_000, 3);
    for (const tag of ['companion-', 'node', 'host-b', '10.0.0.']) {
      const ring = HashRing.create(companions(10, tag));
      expect(keyLoad(ring, keys).maxOverMean).toBeLessThanOrEqual(1.05);
      expect(shareLoad(ring).maxOverMean).toBeLessThanOrEqual(1.03);
    }
  });

  it('gives each member a share proportional to its weight', () => {
    const members = [1, 2, 3, 4, 0.5, 9.5].map((w, i) => ({ id: `w${i}`, weight: w }));
    const ring = HashRing.create(members);
    const total = members.reduce((s, m) => s + m.weight, 0);
    const shares = ring.shares();
    for (const m of members) expect(shares.get(m.id)! / (m.weight / total)).toBeCloseTo(1, 1);
    const load = keyLoad(ring, deviceKeys(100_000, 4));
    expect(load.maxOverMean).toBeLessThan(1.06);
    expect(load.minOverMean).toBeGreaterThan(0.94);
  });

  it.each([10, 100])('adding a member to %i moves about 1/(n+1) of the keys, all to the newcomer', (n) => {
    const ring = HashRing.create(companions(n));
    const next = ring.with({ id: 'newcomer', weight: 1 });
    expect(next.epoch).toBe(ring.epoch + 1);
    const ideal = 1 / (n + 1);
    expect(Math.abs(ring.movedShare(next) / ideal - 1)).toBeLessThan(0.1);
    const moves = ring.diff(next, KEYS);
    expect(Math.abs(moves.length / KEYS.length / ideal - 1)).toBeLessThan(0.25);
    for (const mv of moves) expect(mv.to).toBe('newcomer');
    expect(next.shares().get('newcomer')).toBeCloseTo(ring.movedShare(next), 12);
  });

  it.each([10, 100])('removing a member of %i moves only its keys (about 1/n), spread over the rest', (n) => {
    const ring = HashRing.create(companions(n));
    const gone = ring.members[3].id;
    const next = ring.without(gone);
    const ideal = 1 / n;
    expect(Math.abs(ring.movedShare(next) / ideal - 1)).toBeLessThan(0.1);
    expect(ring.movedShare(next)).toBeCloseTo(ring.shares().get(gone)!, 12);
    const moves = ring.diff(next, KEYS);
    for (const mv of moves) expect(mv.from).toBe(gone);
    expect(new Set(moves.map((m) => m.to)).size).toBeGreaterThan(n / 2);
    expect(movedFraction(ring, next, KEYS)).toBe(moves.length / KEYS.length);
  });

  it('with/without equal a fresh build of the same members (equal, unequal and mixed weights)', () => {
    const equal = companions(9);
    const weighted = companions(9).map((m, i) => ({ id: m.id, weight: (i % 3) + 1 }));
    for (const base of [equal, weighted]) {
      const ring = HashRing.create(base, { slotBits: 14 });
      for (const add of [{ id: 'added', weight: 1 }, { id: 'heavy', weight: 2.5 }, { id: 'a', weight: 1 }]) {
        const grown = ring.with(add);
        expect(grown.fingerprint).toBe(HashRing.create([...base, add], { slotBits: 14 }).fingerprint);
        expect(grown.without(add.id).fingerprint).toBe(ring.fingerprint);
      }
      for (const m of base) {
        expect(ring.without(m.id).fingerprint).toBe(HashRing.create(base.filter((x) => x !== m), { slotBits: 14 }).fingerprint);
      }
    }
    // Removing the only odd weight switches the remaining draw to integer scores: same winners.
    const odd = HashRing.create([...equal, { id: 'odd', weight: 3 }], { slotBits: 14 });
    expect(odd.without('odd').fingerprint).toBe(HashRing.create(equal, { slotBits: 14 }).fingerprint);
  });

  it('round-trips through JSON and rejects a ring this process would build differently', () => {
    const ring = HashRing.create(companions(8).map((m, i) => ({ id: m.id, weight: 1 + (i % 2) })), { epoch: 41 });
    const text = JSON.stringify(ring);
    const back = HashRing.fromJSON(text);
    expect(back.epoch).toBe(41);
    expect(back.fingerprint).toBe(ring.fingerprint);
    expect(back.members).toEqual(ring.members);
    for (const key of KEYS.slice(0, 2000)) expect(back.owner(key)).toBe(ring.owner(key));
    expect(HashRing.fromJSON(ring.toJSON()).fingerprint).toBe(ring.fingerprint);

    const j = ring.toJSON();
    expect(() => HashRing.fromJSON({ ...j, fingerprint: (j.fingerprint + 1) >>> 0 })).toThrow(/fingerprint mismatch/);
    expect(() => HashRing.fromJSON({ ...j, members: j.members.slice(1) })).toThrow(/fingerprint mismatch/);
    expect(() => HashRing.fromJSON({ ...j, param: 12 })).toThrow(/fingerprint mismatch/);
    expect(() => HashRing.fromJSON({ ...j, v: 2 } as never)).toThrow(/v must be 1/);
    expect(() => HashRing.fromJSON('{"v":1}')).toThrow(/members/);
    expect(() => HashRing.fromJSON({ ...j, mode: 'maglev' } as never)).toThrow(/unknown mode/);
  });

  it('hashes non-ASCII keys and ids as UTF-8', () => {
    const members = [{ id: 'café-1', weight: 1 }, { id: 'naïve-2', weight: 1 }, { id: '東京-3', weight: 1 }];
    const ring = HashRing.create(members, { slotBits: 12 });
    for (const key of ['温度-1', 'sensor-é', 'plain', '\u{1F321}-probe']) {
      expect(ring.owner(key)).toBe(refSlotOwner(members, refSlot(key, 12)));
    }
  });
});

describe('HashRing input checks', () => {
  const ok = companions(3);
  it.each([
    ['an empty member list', () => HashRing.create([]), /at least one member/],
    ['a duplicate id', () => HashRing.create([...ok, { id: ok[1].id, weight: 2 }]), /duplicate member id "companion-1:7000"/],
    ['weight 0', () => HashRing.create([{ id: 'a', weight: 0 }]), /weight 0; weights must be finite and > 0/],
    ['a negative weight', () => HashRing.create([{ id: 'a', weight: -1 }]), /weights must be finite and > 0/],
    ['a NaN weight', () => HashRing.create([{ id: 'a', weight: NaN }]), /weights must be finite and > 0/],
    ['an infinite weight', () => HashRing.create([{ id: 'a', weight: Infinity }]), /weights must be finite and > 0/],
    ['a string weight', () => HashRing.create([{ id: 'a', weight: '2' as never }]), /weights must be finite and > 0/],
    ['an empty id', () => HashRing.create([{ id: '', weight: 1 }]), /non-empty string/],
    ['a numeric id', () => HashRing.create([{ id: 7 as never, weight: 1 }]), /non-empty string/],
    ['a null member', () => HashRing.create([null as never]), /must be an object/],
    ['not an array', () => HashRing.create({} as never), /must be an array/],
    ['slotBits 7', () => HashRing.create(ok, { slotBits: 7 }), /slotBits must be an integer in \[8, 22\]/],
    ['slotBits 16.5', () => HashRing.create(ok, { slotBits: 16.5 }), /slotBits/],
    ['vnodes 0', () => HashRing.create(ok, { mode: 'ketama', vnodes: 0 }), /vnodes must be an integer/],
    ['a ketama ring with no points', () => HashRing.create(companions(49), { mode: 'ketama', vnodes: 1 }), /no points at vnodes 1/],
    ['a negative epoch', () => HashRing.create(ok, { epoch: -1 }), /epoch must be a non-negative integer/],
    ['a fractional epoch', () => HashRing.create(ok, { epoch: 1.5 }), /epoch/],
    ['adding a present id', () => HashRing.create(ok).with({ id: ok[0].id, weight: 1 }), /duplicate member id/],
    ['adding a bad weight', () => HashRing.create(ok).with({ id: 'x', weight: 0 }), /weights must be finite and > 0/],
    ['removing an absent id', () => HashRing.create(ok).without('nobody'), /no member "nobody"/],
    ['removing the last member', () => HashRing.create([ok[0]]).without(ok[0].id), /cannot remove the last member/],
    ['replica count 0', () => HashRing.create(ok).replicas('k', 0), /replica count must be an integer >= 1/],
    ['replica count 1.5', () => HashRing.create(ok).replicas('k', 1.5), /replica count/],
    ['a non-string key', () => HashRing.create(ok).owner(42 as never), /keys are strings/],
  ])('rejects %s with a clear error', (_name, fn, msg) => {
    expect(fn).toThrow(msg);
  });

  it('a one-member ring owns everything and still answers replicas', () => {
    const ring = HashRing.create([{ id: 'solo', weight: 3 }]);
    expect(ring.owner('anything')).toBe('solo');
    expect(ring.replicas('anything', 3)).toEqual(['solo']);
    expect(ring.shares().get('solo')).toBe(1);
  });

  it('members are frozen copies', () => {
    const input = companions(2);
    const ring = HashRing.create(input);
    input[0] = { id: 'changed', weight: 1 };
    expect(ring.members[0].id).toBe('companion-0:7000');
    expect(Object.isFrozen(ring.members)).toBe(true);
    expect(Object.isFrozen(ring.members[1])).toBe(true);
  });
});

/** HashRing.create(companions(5)) as first built; see 'pins the placement'. */
const PINNED = {
  fingerprint: 2111363850,
  owners: [
    ['shed-1', 'companion-4:7000'],
    ['greenhouse-2', 'companion-0:7000'],
    ['esp32-82f75e6b87aa', 'companion-4:7000'],
    ['esp8266-0a1b2c', 'companion-3:7000'],
    ['pi-zero', 'companion-4:7000'],
    ['garage-door', 'companion-2:7000'],
    ['温室-3', 'companion-0:7000'],
    ['boiler', 'companion-2:7000'],
  ] as Array<[string, string]>,
};
