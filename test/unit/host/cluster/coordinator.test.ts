import { describe, expect, it } from 'vitest';
import { Coordinator, type AssignmentSource } from '../../../../host/cluster/coordinator.js';
import type { LinkView } from '../../../../host/cluster/link-tracker.js';
import { formatMemberAddr, withRingFlag } from '../../../../host/cluster/member-addr.js';
import { Placement } from '../../../../host/cluster/placement.js';
import { ClusterState, type ClusterCommand } from '../../../../host/raft/cluster-state.js';

const adv = (id: string) => formatMemberAddr({ broker: { host: id, port: 1883 }, repl: { host: id, port: 7001 }, raft: { host: id, port: 7000 } });

function stateWith(ids: string[]): ClusterState {
  const s = new ClusterState();
  let i = 0;
  for (const id of ids) s.apply(++i, { t: 'member.add', id, addr: adv(id), weight: 1 });
  return s;
}

function source(s: ClusterState): AssignmentSource {
  return { get epoch() { return s.epoch; }, owner: (d) => s.owner(d), forEachOwner: (fn) => s._owners.forEach((o, d) => fn(d, o)) };
}

let index = 100;
function commit(s: ClusterState, cmds: ClusterCommand[]): void {
  for (const c of cmds) expect(s.apply(++index, c)).toEqual({ ok: true });
}

const devices = Array.from({ length: 200 }, (_, i) => 'dev-' + i);
const up = (sinceMs: number): LinkView => ({ up: true, sinceMs, lastHeardMs: sinceMs });
const down = (sinceMs: number): LinkView => ({ up: false, sinceMs, lastHeardMs: sinceMs - 1000 });

describe('Coordinator', () => {
  const opts = { self: 'a', ringOutAfterMs: 300, ringInAfterMs: 1000, retryMs: 2000 };

  it('assigns unassigned devices to their ring owners, in batches guarded by the epoch, and does not repeat itself', () => {
    const s = stateWith(['a', 'b', 'c']);
    const c = new Coordinator({ ...opts, assignBatchMax: 64 });
    const p = new Placement(s, 10);
    const cmds = c.plan({ nowMs: 0, state: source(s), placement: p, link: () => up(0), unassigned: devices });
    expect(cmds.length).toBe(Math.ceil(200 / 64));
    for (const cmd of cmds) {
      expect(cmd.t).toBe('device.assign');
      if (cmd.t === 'device.assign') expect(cmd.ifEpoch).toBe(s.epoch);
    }
    expect(c.plan({ nowMs: 100, state: source(s), placement: p, link: () => up(0), unassigned: devices })).toEqual([]);
    commit(s, cmds);
    for (const d of devices) expect(s.owner(d)).toBe(p.owner(d));
  });

  it('takes a member whose links stay down off the ring, then moves exactly its devices to their heirs', () => {
    const s = stateWith(['a', 'b', 'c']);
    const c = new Coordinator(opts);
    const p0 = new Placement(s, 10);
    commit(s, c.plan({ nowMs: 0, state: source(s), placement: p0, link: () => up(0), unassigned: devices }));
    const before = new Map(devices.map((d) => [d, s.owner(d) as string]));
    const link = (id: string) => (id === 'c' ? down(1000) : up(0));
    // Not yet: down for less than ringOutAfterMs.
    expect(c.plan({ nowMs: 1299, state: source(s), placement: p0, link, unassigned: [] })).toEqual([]);
    const out = c.plan({ nowMs: 1300, state: source(s), placement: p0, link, unassigned: [] });
    expect(out).toEqual([{ t: 'member.update', id: 'c', addr: withRingFlag(adv('c'), true) }]);
    // Nothing else while that change is in flight.
    expect(c.plan({ nowMs: 1600, state: source(s), placement: p0, link, unassigned: [] })).toEqual([]);
    commit(s, out);
    const p1 = new Placement(s, 10);
    expect(p1.inRing).toEqual(['a', 'b']);
    const moves = c.plan({ nowMs: 1700, state: source(s), placement: p1, link, unassigned: [] });
    commit(s, moves);
    for (const d of devices) {
      if (before.get(d) === 'c') expect(s.owner(d)).toBe(p0.ranking(d)[1]);
      else expect(s.owner(d)).toBe(before.get(d));
    }
  });

  it('brings a member back once its links have been up long enough, and moves its devices back', () => {
    const s = stateWith(['a', 'b', 'c']);
    commit(s, [{ t: 'member.update', id: 'c', addr: withRingFlag(adv('c'), true) }]);
    const c = new Coordinator(opts);
    commit(s, c.plan({ nowMs: 0, state: source(s), placement: new Placement(s, 10), link: () => up(0), unassigned: devices }));
    const cmds = c.plan({ nowMs: 5000, state: source(s), placement: new Placement(s, 10), link: (id) => (id === 'c' ? up(4500) : up(0)), unassigned: [] });
    expect(cmds).toEqual([]);
    const back = c.plan({ nowMs: 5500, state: source(s), placement: new Placement(s, 10), link: (id) => (id === 'c' ? up(4500) : up(0)), unassigned: [] });
    expect(back).toEqual([{ t: 'member.update', id: 'c', addr: adv('c') }]);
    commit(s, back);
    const p = new Placement(s, 10);
    commit(s, c.plan({ nowMs: 5600, state: source(s), placement: p, link: () => up(0), unassigned: [] }));
    for (const d of devices) expect(s.owner(d)).toBe(p.owner(d));
    expect(devices.some((d) => s.owner(d) === 'c')).toBe(true);
  });

  it('judges by the link view alone, right after taking over: the view is kept by every node all the time', () => {
    const s = stateWith(['a', 'b', 'c']);
    const c = new Coordinator(opts);
    const p = new Placement(s, 10);
    // b went silent; its link is down since 10_000 (last word + link timeout).
    const link = (id: string) => (id === 'b' ? down(10_000) : up(0));
    expect(c.plan({ nowMs: 10_000, state: source(s), placement: p, link, unassigned: [] })).toEqual([]);
    expect(c.plan({ nowMs: 10_299, state: source(s), placement: p, link, unassigned: [] })).toEqual([]);
    const fresh = new Coordinator(opts);
    expect(fresh.plan({ nowMs: 10_300, state: source(s), placement: p, link, unassigned: [] })[0]).toMatchObject({ t: 'member.update', id: 'b' });
    // A link never judged (sinceMs Infinity: never pinged) is left alone.
    expect(new Coordinator(opts).plan({ nowMs: 99_999, state: source(s), placement: p, link: (id) => (id === 'b' ? { up: false, sinceMs: Infinity, lastHeardMs: -1 } : up(0)), unassigned: [] })).toEqual([]);
  });

  it('never takes itself or the last ring member off, and puts itself back on', () => {
    const s = stateWith(['a', 'b']);
    commit(s, [{ t: 'member.update', id: 'a', addr: withRingFlag(adv('a'), true) }]);
    const c = new Coordinator(opts);
    const p = new Placement(s, 10);
    expect(c.plan({ nowMs: 9000, state: source(s), placement: p, link: () => down(0), unassigned: [] })).toEqual([{ t: 'member.update', id: 'a', addr: adv('a') }]);
    const s2 = stateWith(['a', 'b']);
    commit(s2, [{ t: 'member.update', id: 'b', addr: withRingFlag(adv('b'), true) }]);
    const c2 = new Coordinator({ ...opts, self: 'b' });
    expect(c2.plan({ nowMs: 9000, state: source(s2), placement: new Placement(s2, 10), link: () => down(0), unassigned: [] }).filter((x) => x.t === 'member.update')).toEqual([{ t: 'member.update', id: 'b', addr: adv('b') }]);
  });

  it('re-proposes a wish that did not apply after retryMs; standDown forgets it', () => {
    const s = stateWith(['a', 'b']);
    const c = new Coordinator(opts);
    const p = new Placement(s, 10);
    const first = c.plan({ nowMs: 0, state: source(s), placement: p, link: () => up(0), unassigned: ['dev-1'] });
    expect(first).toHaveLength(1);
    expect(c.plan({ nowMs: 1999, state: source(s), placement: p, link: () => up(0), unassigned: ['dev-1'] })).toEqual([]);
    expect(c.plan({ nowMs: 2000, state: source(s), placement: p, link: () => up(0), unassigned: ['dev-1'] })).toEqual(first);
    c.standDown();
    expect(c.plan({ nowMs: 2001, state: source(s), placement: p, link: () => up(0), unassigned: ['dev-1'] })).toEqual(first);
  });
});
