import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import {
  ASSIGNMENTS_PER_CMD_MAX,
  ClusterState,
  commandShapeError,
  type ClusterCommand,
} from '../../../../host/raft/cluster-state.js';

function withMembers(): ClusterState {
  const s = new ClusterState();
  s.apply(1, { t: 'member.add', id: 'a', addr: '127.0.0.1:1883', weight: 1 });
  s.apply(2, { t: 'member.add', id: 'b', addr: '127.0.0.1:1884', weight: 2 });
  return s;
}

describe('cluster state: commands', () => {
  it('membership changes bump the ring epoch; removing a member unassigns its devices', () => {
    const s = withMembers();
    expect(s.epoch).toBe(2);
    expect(s.members().map((m) => m.id)).toEqual(['a', 'b']);
    expect(s.apply(3, { t: 'device.assign', set: { d1: 'a', d2: 'b', d3: 'a' } })).toEqual({ ok: true });
    expect(s.devicesOf('a')).toEqual(['d1', 'd3']);
    expect(s.apply(4, { t: 'member.remove', id: 'a' })).toEqual({ ok: true });
    expect(s.epoch).toBe(3);
    expect(s.owner('d1')).toBeUndefined();
    expect(s.owner('d2')).toBe('b');
    expect(s.deviceCount()).toBe(1);
    expect(s.apply(5, { t: 'member.update', id: 'b', weight: 5 })).toEqual({ ok: true });
    expect(s.member('b')).toEqual({ id: 'b', addr: '127.0.0.1:1884', weight: 5 });
    expect(s.epoch).toBe(4);
    expect(s.apply(6, { t: 'member.update', id: 'b', weight: 5 })).toEqual({ ok: false, reason: 'unchanged' });
  });

  it('refusals change nothing but the applied index, identically everywhere', () => {
    const cases: [unknown, string][] = [
      [{ t: 'member.add', id: 'a', addr: 'x:1', weight: 1 }, 'member-exists'],
      [{ t: 'member.add', id: 'c', addr: 'has space:1', weight: 1 }, 'bad-addr'],
      [{ t: 'member.add', id: 'c', addr: 'x:1', weight: 0 }, 'bad-weight'],
      [{ t: 'member.add', id: 'c', addr: 'x:1', weight: 1.5 }, 'bad-weight'],
      [{ t: 'member.add', id: '', addr: 'x:1', weight: 1 }, 'bad-id'],
      [{ t: 'member.remove', id: 'zz' }, 'unknown-member'],
      [{ t: 'ring.epoch', epoch: 1 }, 'stale-epoch'],
      [{ t: 'ring.epoch', epoch: -3 }, 'bad-epoch'],
      [{ t: 'device.assign', set: { d1: 'nobody' } }, 'unknown-owner'],
      [{ t: 'device.assign', set: { 'bad id': 'a' } }, 'bad-device'],
      [{ t: 'device.assign', set: {} }, 'bad-set'],
      [{ t: 'device.assign', set: [] }, 'bad-set'],
      [{ t: 'device.assign', ifEpoch: 1, set: { d1: 'a' } }, 'epoch-mismatch'],
      [{ t: 'exec', cmd: 'rm -rf /' }, 'unknown-command'],
      [null, 'not-object'],
      [undefined, 'not-object'],
      ['member.add', 'not-object'],
    ];
    for (const [cmd, reason] of cases) {
      const s = withMembers();
      const before = s.snapshot();
      expect(s.apply(3, cmd)).toEqual({ ok: false, reason });
      expect(s.appliedIndex).toBe(3);
      const after = JSON.parse(s.snapshot());
      after.index = 2;
      expect(JSON.stringify(after)).toBe(before);
    }
  });

  it('an assignment applies whole or not at all', () => {
    const s = withMembers();
    expect(s.apply(3, { t: 'device.assign', set: { d1: 'a', d2: 'ghost', d3: 'b' } }).ok).toBe(false);
    expect(s.deviceCount()).toBe(0);
    expect(s.apply(4, { t: 'device.assign', ifEpoch: 2, set: { d1: 'a', d3: 'b' } }).ok).toBe(true);
    expect(s.apply(5, { t: 'device.assign', set: { d1: null } }).ok).toBe(true);
    expect(s.owner('d1')).toBeUndefined();
    const big: Record<string, string> = {};
    for (let i = 0; i <= ASSIGNMENTS_PER_CMD_MAX; i++) big['d' + i] = 'a';
    expect(s.apply(6, { t: 'device.assign', set: big })).toEqual({ ok: false, reason: 'bad-set' });
  });

  it('a replayed index is ignored (restart re-delivers committed entries)', () => {
    const s = withMembers();
    expect(s.apply(2, { t: 'ring.epoch', epoch: 50 })).toEqual({ ok: false, reason: 'already-applied' });
    expect(s.epoch).toBe(2);
  });

  it('commandShapeError accepts exactly the commands apply understands', () => {
    const good: ClusterCommand[] = [
      { t: 'noop' },
      { t: 'member.add', id: 'x', addr: 'h:1', weight: 3 },
      { t: 'member.remove', id: 'x' },
      { t: 'member.update', id: 'x', addr: 'h:2' },
      { t: 'ring.epoch', epoch: 9 },
      { t: 'device.assign', ifEpoch: 2, set: { d: 'x', e: null } },
    ];
    for (const c of good) expect(commandShapeError(c)).toBe('');
    expect(commandShapeError({ t: 'member.add', id: 'x', addr: 'h:1' })).toBe('bad-weight');
    expect(commandShapeError({ t: 'device.assign', set: { d: 5 } })).toBe('unknown-owner');
    expect(commandShapeError({ t: 'nope' })).toBe('unknown-command');
    expect(commandShapeError([])).toBe('not-object');
  });
});

describe('cluster state: snapshots', () => {
  function randomCommands(seed: number, n: number): ClusterCommand[] {
    const rng = new SeededRng(seed);
    const ids = ['a', 'b', 'c', 'd'];
    const pick = <T,>(xs: T[]): T => xs[Math.floor(rng.next() * xs.length)];
    const out: ClusterCommand[] = [];
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (r < 0.15) out.push({ t: 'member.add', id: pick(ids), addr: 'h:' + (1000 + i), weight: 1 + (i % 5) });
      else if (r < 0.2) out.push({ t: 'member.remove', id: pick(ids) });
      else if (r < 0.3) out.push({ t: 'ring.epoch', epoch: i });
      else {
        const set: Record<string, string | null> = {};
        for (let k = 0; k < 3; k++) set['dev' + Math.floor(rng.next() * 30)] = rng.next() < 0.1 ? null : pick(ids);
        out.push({ t: 'device.assign', set });
      }
    }
    return out;
  }

  it('restore(snapshot) then the rest of the log = the whole log (every split point)', () => {
    const cmds = randomCommands(7, 120);
    const full = new ClusterState();
    cmds.forEach((c, i) => full.apply(i + 1, c));
    expect(full.deviceCount()).toBeGreaterThan(0);
    for (let cut = 0; cut <= cmds.length; cut += 7) {
      const a = new ClusterState();
      for (let i = 0; i < cut; i++) a.apply(i + 1, cmds[i]);
      const b = ClusterState.fromSnapshot(a.snapshot());
      expect(typeof b).not.toBe('string');
      const bs = b as ClusterState;
      for (let i = cut; i < cmds.length; i++) bs.apply(i + 1, cmds[i]);
      expect(bs.snapshot()).toBe(full.snapshot());
    }
  });

  it('refuses a malformed snapshot and keeps its state', () => {
    const s = withMembers();
    s.apply(3, { t: 'device.assign', set: { d1: 'a' } });
    const before = s.snapshot();
    const bad = [
      'not json',
      '[]',
      JSON.stringify({ v: 2, index: 1, epoch: 1, members: [], owners: [] }),
      JSON.stringify({ v: 1, index: 1, epoch: 1, members: [], owners: [['d1', 'ghost']] }),
      JSON.stringify({ v: 1, index: 1, epoch: 1, members: [{ id: 'a', addr: 'h:1', weight: 1 }, { id: 'a', addr: 'h:1', weight: 1 }], owners: [] }),
      JSON.stringify({ v: 1, index: -1, epoch: 1, members: [], owners: [] }),
    ];
    for (const text of bad) {
      expect(s.restore(text)).not.toBe('');
      expect(s.snapshot()).toBe(before);
    }
  });
});
