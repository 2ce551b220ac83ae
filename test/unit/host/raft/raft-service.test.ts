import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RaftService, type RaftServiceOptions } from '../../../../host/raft/raft-service.js';
import { MemoryStorage } from '../../../../host/raft/raft-storage.js';

const SECRET = Buffer.from('5ec2e75ec2e75ec2e75ec2e75ec2e700', 'hex');
const TICK_MS = 20;
const ELECTION_TICKS = 10;
const T = TICK_MS * ELECTION_TICKS;

const dir = mkdtempSync(join(tmpdir(), 'raft-service-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(p));
    });
  });
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out after ' + ms + ' ms');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const running: RaftService[] = [];
afterEach(async () => {
  await Promise.all(running.map((s) => s.close()));
  running.length = 0;
});

async function cluster(ids: string[], extra: (id: string) => Partial<RaftServiceOptions> = () => ({})): Promise<{ svcs: RaftService[]; ports: Record<string, number> }> {
  const ports: Record<string, number> = {};
  for (const id of ids) ports[id] = await freePort();
  const svcs = ids.map(
    (id, k) =>
      new RaftService({
        id,
        secret: SECRET,
        port: ports[id],
        peers: Object.fromEntries(ids.filter((x) => x !== id).map((x) => [x, '127.0.0.1:' + ports[x]])),
        storage: new MemoryStorage(),
        tickMs: TICK_MS,
        electionTicks: ELECTION_TICKS,
        seed: 100 + k,
        advertise: { addr: '127.0.0.1:' + (18830 + k), weight: 1 },
        ...extra(id),
      }),
  );
  for (const s of svcs) {
    running.push(s);
    await s.start();
  }
  return { svcs, ports };
}

function leaderOf(svcs: RaftService[]): RaftService | undefined {
  return svcs.find((s) => s.status().role === 'leader' && s.status().lease);
}

describe('raft service on loopback', () => {
  it('elects a leader, registers members, and commits a proposal made on a follower', async () => {
    const { svcs } = await cluster(['a', 'b', 'c']);
    await until(() => leaderOf(svcs) !== undefined);
    await until(() => svcs.every((s) => s.status().members.length === 3));
    const leader = leaderOf(svcs)!;
    const follower = svcs.find((s) => s !== leader)!;
    const index = await follower.propose({ t: 'ring.epoch', epoch: 100 });
    expect(index).toBeGreaterThan(0);
    // Resolved only once applied here: the follower already has it.
    expect(follower.state.epoch).toBe(100);
    await until(() => svcs.every((s) => s.status().applied >= index));
    const digests = svcs.map((s) => s.state.snapshot());
    expect(new Set(digests).size).toBe(1);
    const st = leader.status();
    expect(st.leader).toBe(leader.id);
    expect(st.voters).toEqual(['a', 'b', 'c']);
    expect(st.members.map((m) => m.id)).toEqual(['a', 'b', 'c']);
    // A refused command rejects with the state machine's reason, on every replica alike.
    await expect(follower.propose({ t: 'ring.epoch', epoch: 5 })).rejects.toThrow(/stale-epoch/);
    await expect(follower.propose({ t: 'device.assign', set: { d1: 'nobody' } })).rejects.toThrow(/unknown-owner/);
    await expect(leader.propose({ t: 'bogus' } as never)).rejects.toThrow(/bad command/);
  });

  it('a leader whose clock jumped past its lease steps down before it acknowledges anything', async () => {
    const applied: unknown[] = [];
    const { svcs } = await cluster(['a', 'b', 'c'], () => ({ onApply: (_i, cmd) => applied.push(cmd) }));
    await until(() => leaderOf(svcs) !== undefined);
    await until(() => svcs.every((s) => s.status().members.length === 3));
    const old = leaderOf(svcs)!;
    // What SIGSTOP for 3 x T looks like to the process: the monotonic clock moved on while
    // no timer ran. The next input first delivers the missed ticks.
    old._t0 -= 3 * T;
    old._catchUp();
    const st = old.status();
    expect(st.role).toBe('follower');
    expect(st.leader).toBe('');
    expect(st.lease).toBe(false);
    // It takes no command on its own authority: with no known leader it refuses.
    await expect(old.propose({ t: 'ring.epoch', epoch: 7 })).rejects.toThrow(/no-leader/);
    // The cluster carries on with a leader (whoever wins) and nothing was committed at epoch 7.
    await until(() => leaderOf(svcs) !== undefined, 5000);
    const idx = await leaderOf(svcs)!.propose({ t: 'ring.epoch', epoch: 8 });
    await until(() => svcs.every((s) => s.status().applied >= idx));
    for (const s of svcs) expect(s.state.epoch).toBe(8);
    expect(applied.some((c) => (c as { epoch?: number }).epoch === 7)).toBe(false);
  });

  it('restarts from SQLite with its state and keeps committing', async () => {
    const ids = ['a', 'b', 'c'];
    const dirs = (id: string) => ({ storage: undefined, dataDir: join(dir, 'restart-' + id) });
    const first = await cluster(ids, dirs);
    await until(() => leaderOf(first.svcs) !== undefined);
    await until(() => first.svcs.every((s) => s.status().members.length === 3));
    const idx = await leaderOf(first.svcs)!.propose({ t: 'device.assign', set: { dev1: 'a', dev2: 'c' } });
    await until(() => first.svcs.every((s) => s.status().applied >= idx));
    const before = first.svcs.map((s) => s.state.snapshot());
    await Promise.all(first.svcs.map((s) => s.close()));
    running.length = 0;
    const svcs = ids.map(
      (id, k) =>
        new RaftService({
          id,
          secret: SECRET,
          port: first.ports[id],
          peers: Object.fromEntries(ids.filter((x) => x !== id).map((x) => [x, '127.0.0.1:' + first.ports[x]])),
          dataDir: join(dir, 'restart-' + id),
          tickMs: TICK_MS,
          electionTicks: ELECTION_TICKS,
          seed: 200 + k,
        }),
    );
    for (const s of svcs) {
      running.push(s);
      await s.start();
    }
    // State is back from disk at once (snapshot + committed entries replayed on start).
    for (let k = 0; k < svcs.length; k++) {
      expect(svcs[k].state.owner('dev1')).toBe('a');
      expect(svcs[k].state.snapshot()).toBe(before[k]);
    }
    await until(() => leaderOf(svcs) !== undefined);
    // At the leader: a follower that has not heard from the new leader yet answers no-leader.
    const next = await leaderOf(svcs)!.propose({ t: 'device.assign', set: { dev3: 'b' } });
    expect(next).toBeGreaterThan(idx);
    await until(() => svcs.every((s) => s.state.owner('dev3') === 'b'));
  });

  it('a companion that was down catches up from a compacted log through a snapshot sent over TCP', async () => {
    const ids = ['a', 'b', 'c'];
    const opts = (id: string) => ({ storage: undefined, dataDir: join(dir, 'snap-' + id), snapshotEntries: 4 });
    const { svcs, ports } = await cluster(ids, opts);
    await until(() => leaderOf(svcs) !== undefined);
    await until(() => svcs.every((s) => s.status().members.length === 3));
    const c = svcs[2];
    await c.close();
    const live = svcs.slice(0, 2);
    await until(() => leaderOf(live) !== undefined);
    // 4000 assignments: a snapshot of ~80 KB, above the pre-authentication frame limit.
    let last = 0;
    for (let k = 0; k < 8; k++) {
      const set: Record<string, string> = {};
      for (let i = 0; i < 500; i++) set['device-' + String(k * 500 + i).padStart(4, '0')] = ids[i % 2];
      last = await leaderOf(live)!.propose({ t: 'device.assign', set });
    }
    await until(() => live.every((s) => s.status().applied >= last));
    expect(leaderOf(live)!._node!.log.snapshot().index).toBeGreaterThan(c.status().applied);
    const c2 = new RaftService({
      id: 'c',
      secret: SECRET,
      port: ports.c,
      peers: { a: '127.0.0.1:' + ports.a, b: '127.0.0.1:' + ports.b },
      tickMs: TICK_MS,
      electionTicks: ELECTION_TICKS,
      ...opts('c'),
    });
    running.push(c2);
    await c2.start();
    await until(() => c2.state.deviceCount() === 4000, 8000);
    expect(c2.state.snapshot()).toBe(leaderOf(live)!.state.snapshot());
    expect(c2._node!.log.snapshot().index).toBeGreaterThan(0);
  });

  it('adds a companion as a voter through the log (single-step change)', async () => {
    const ids = ['a', 'b', 'c'];
    const { svcs, ports } = await cluster(ids);
    await until(() => leaderOf(svcs) !== undefined);
    const pd = await freePort();
    const d = new RaftService({
      id: 'd',
      secret: SECRET,
      port: pd,
      peers: Object.fromEntries(ids.map((x) => [x, '127.0.0.1:' + ports[x]])),
      storage: new MemoryStorage(),
      tickMs: TICK_MS,
      electionTicks: ELECTION_TICKS,
      join: true,
    });
    running.push(d);
    await d.start();
    for (const s of svcs) s.addPeer('d', '127.0.0.1:' + pd);
    // A new leader takes no configuration change before its first entry commits ('conf-pending').
    const idx = await proposeConf(svcs, { t: 'member.add', id: 'd', addr: '127.0.0.1:18839', weight: 2 });
    await until(() => d.status().applied >= idx);
    expect(d.status().voters).toEqual(['a', 'b', 'c', 'd']);
    expect(d.state.member('d')).toEqual({ id: 'd', addr: '127.0.0.1:18839', weight: 2 });
    for (const s of svcs) expect(s.status().voters).toEqual(['a', 'b', 'c', 'd']);
    // Removing it again is the other single step.
    const rm = await proposeConf(svcs, { t: 'member.remove', id: 'd' });
    await until(() => svcs.every((s) => s.status().applied >= rm));
    for (const s of svcs) expect(s.status().voters).toEqual(['a', 'b', 'c']);
  });

  /** Proposes a membership change at the leader, retrying while a previous change is pending. */
  async function proposeConf(svcs: RaftService[], cmd: Parameters<RaftService['propose']>[0]): Promise<number> {
    for (let i = 0; ; i++) {
      try {
        return await leaderOf(svcs)!.propose(cmd);
      } catch (e) {
        if (i >= 100 || !String(e).includes('conf-pending')) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  it('a companion holding the wrong secret cannot disturb the cluster', async () => {
    const { svcs, ports } = await cluster(['a', 'b', 'c']);
    await until(() => leaderOf(svcs) !== undefined);
    const leader = leaderOf(svcs)!;
    const term = leader.status().term;
    const pe = await freePort();
    const evil = new RaftService({
      id: 'evil',
      secret: Buffer.alloc(16, 0x42),
      port: pe,
      peers: { a: '127.0.0.1:' + ports.a, b: '127.0.0.1:' + ports.b, c: '127.0.0.1:' + ports.c },
      storage: new MemoryStorage(),
      voters: ['a', 'b', 'c', 'evil'],
      tickMs: TICK_MS,
      electionTicks: ELECTION_TICKS,
    });
    running.push(evil);
    await evil.start();
    for (let i = 0; i < 5; i++) evil._node!.campaign();
    evil._flush();
    await new Promise((r) => setTimeout(r, 4 * T));
    const drops = svcs.map((s) => s.status().drops['transport:bad-mac'] ?? 0);
    expect(drops.reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
    expect(leaderOf(svcs)).toBe(leader);
    expect(leader.status().term).toBe(term);
  });
});
