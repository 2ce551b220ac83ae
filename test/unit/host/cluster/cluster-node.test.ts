/**
 * Three ClusterNode cores wired by an in-memory, in-order network, with Raft replaced by a
 * log that commits every proposal on every node at once: the cores' own rules, step by step.
 */
import { describe, expect, it } from 'vitest';
import { ClusterNode, type RaftView, type WriteDone } from '../../../../host/cluster/cluster-node.js';
import { formatMemberAddr } from '../../../../host/cluster/member-addr.js';
import type { ReplMessage } from '../../../../host/cluster/replication-wire.js';
import { ClusterState, type ClusterCommand } from '../../../../host/raft/cluster-state.js';
import { SimDisk } from '../../../sim/cluster-sim.js';

const ids = ['a', 'b', 'c'];
const adv = (id: string) => formatMemberAddr({ broker: { host: id, port: 1883 }, repl: { host: id, port: 7001 }, raft: { host: id, port: 7000 } });

class Net {
  states = new Map<string, ClusterState>();
  disks = new Map<string, SimDisk>();
  nodes = new Map<string, ClusterNode>();
  index = 0;
  term = 1;
  leader = 'a';
  queue: Array<{ to: string; msg: ReplMessage }> = [];
  done = new Map<string, WriteDone[]>();
  /** Messages to these nodes are dropped. */
  cut = new Set<string>();

  constructor(o: Partial<ConstructorParameters<typeof ClusterNode>[0]> = {}) {
    for (const id of ids) {
      const st = new ClusterState();
      const disk = new SimDisk();
      this.states.set(id, st);
      this.disks.set(id, disk);
      this.nodes.set(id, new ClusterNode({ self: id, advertise: adv(id), slotBits: 10, store: disk, ...o }, st, 0));
      this.done.set(id, []);
    }
    for (const id of ids) this.commit({ t: 'member.add', id, addr: adv(id), weight: 1 });
  }

  raft(id: string): RaftView {
    return { role: id === this.leader ? 'leader' : 'follower', term: this.term, leader: this.leader, lease: id === this.leader, commit: this.index, applied: this.states.get(id)!.appliedIndex, voters: ids };
  }

  commit(cmd: ClusterCommand): void {
    this.index++;
    for (const st of this.states.values()) st.apply(this.index, cmd);
  }

  node(id: string): ClusterNode {
    return this.nodes.get(id)!;
  }

  /** Collect every node's outputs; proposals commit at once. */
  drain(): void {
    for (const [id, n] of this.nodes) {
      for (const o of n.takeOutbox()) if (!this.cut.has(o.to) && !this.cut.has(id)) this.queue.push(o);
      for (const p of n.takeProposals()) this.commit(p);
      this.done.get(id)!.push(...n.takeDone());
    }
  }

  /** Deliver everything queued (and what that causes), storing jobs durably before stored(). */
  run(now: number): void {
    this.drain();
    for (let guard = 0; this.queue.length > 0 && guard < 10000; guard++) {
      const { to, msg } = this.queue.shift()!;
      const n = this.node(to);
      const job = n.receive(now, this.raft(to), msg);
      if (job) {
        this.disks.get(to)!.write(job.recs);
        n.stored(now, job, true);
      }
      this.drain();
    }
  }

  tickAll(now: number): void {
    for (const id of ids) this.node(id).tick(now, this.raft(id));
    this.run(now);
  }

  ownedBy(owner: string, n = 1): string[] {
    const out: string[] = [];
    for (let i = 0; out.length < n; i++) if (this.states.get('a')!.owner('d' + i) === owner) out.push('d' + i);
    return out;
  }
}

function setup(o = {}): Net {
  const net = new Net(o);
  const devs = Array.from({ length: 60 }, (_, i) => 'd' + i);
  // Beacons reach every node; the leader assigns.
  for (const d of devs) for (const id of ids) net.node(id).offerFor(10, net.raft(id), d);
  net.tickAll(20);
  for (const d of devs) expect(net.states.get('a')!.owner(d)).toBeDefined();
  return net;
}

const rec = (device: string, seq: number) => ({ device, seq, ts: 1700000000000 + seq, hist: 0 as const, r: { v: seq } });

describe('ClusterNode', () => {
  it('answers beacons only for the devices it owns, and the leader assigns the ones it hears unassigned', () => {
    const net = setup();
    const d = net.ownedBy('b')[0];
    expect(net.node('a').offerFor(30, net.raft('a'), d)).toBeNull();
    expect(net.node('b').offerFor(30, net.raft('b'), d)).toEqual({ epoch: net.states.get('b')!.epoch });
    expect(net.node('c').offerFor(30, net.raft('c'), d)).toBeNull();
    // No leader known: no offers at all.
    net.leader = '';
    expect(net.node('b').offerFor(31, net.raft('b'), d)).toBeNull();
  });

  it('acknowledges a write only after the heir stored it; refuses writes for devices it does not own', () => {
    const net = setup();
    const d = net.ownedBy('b')[0];
    const b = net.node('b');
    expect(b.beginWrite(40, net.raft('b'), rec(net.ownedBy('a')[0], 1))).toEqual({ err: 'not-owner' });
    const heir = b.placement().replicaSet('b', d, 3)[1];
    const other = ids.find((x) => x !== 'b' && x !== heir)!;
    net.cut.add(heir);
    const w = b.beginWrite(40, net.raft('b'), rec(d, 1));
    expect('id' in w).toBe(true);
    net.run(41);
    // The third replica acknowledged, the heir did not: no PUBACK yet.
    expect(net.disks.get(other)!.has(d, 1)).toBe(true);
    expect(net.done.get('b')).toEqual([]);
    net.cut.delete(heir);
    // A lost push is pushed again after pushRetryMs.
    b.tick(41 + b.o.pushRetryMs, net.raft('b'));
    net.run(42 + b.o.pushRetryMs);
    expect(net.disks.get(heir)!.has(d, 1)).toBe(true);
    expect(net.done.get('b')).toEqual([{ id: (w as { id: number }).id, ok: true, reason: '' }]);
  });

  it('fails a write nobody acknowledges within ackTimeoutMs', () => {
    const net = setup({ ackTimeoutMs: 1000 });
    const d = net.ownedBy('c')[0];
    net.cut.add('a');
    net.cut.add('b');
    const w = net.node('c').beginWrite(50, net.raft('c'), rec(d, 7)) as { id: number };
    net.run(51);
    for (let t = 100; t < 1050; t += 100) net.node('c').tick(t, net.raft('c'));
    net.node('c').tick(1049, net.raft('c'));
    expect(net.node('c').takeDone()).toEqual([]);
    net.node('c').tick(1050, net.raft('c'));
    expect(net.node('c').takeDone()).toEqual([{ id: w.id, ok: false, reason: 'timeout' }]);
  });

  it('a replica that applied a newer owner stores the push but does not acknowledge it', () => {
    const net = setup();
    const d = net.ownedBy('a')[0];
    const a = net.node('a');
    // The device moves to b; a has not applied it yet (its state lags).
    const heir = a.placement().replicaSet('a', d, 3)[1];
    const w = a.beginWrite(60, net.raft('a'), rec(d, 3)) as { id: number };
    net.index++;
    for (const id of ids) if (id !== 'a') net.states.get(id)!.apply(net.index, { t: 'device.assign', set: { [d]: heir } });
    net.run(61);
    expect(net.disks.get(heir)!.has(d, 3)).toBe(true);
    expect(net.done.get('a')).toEqual([{ id: w.id, ok: false, reason: heir + ':not-owner' }]);
  });

  it('after a pause it refuses to act until a quorum confirmed its term, then acts again', () => {
    const net = setup();
    const d = net.ownedBy('a')[0];
    const a = net.node('a');
    a.tick(100, net.raft('a'));
    net.drain();
    net.queue = [];
    // SIGSTOP for 3 s: the first thing after waking is a write.
    expect(a.beginWrite(3100, net.raft('a'), rec(d, 9))).toEqual({ err: 'paused:confirming' });
    expect(a.offerFor(3101, net.raft('a'), d)).toBeNull();
    // It pinged everyone on waking; the pongs confirm term 1.
    a.tick(3102, net.raft('a'));
    net.run(3103);
    expect(a.blocked(3104, net.raft('a'))).toBe('');
    expect('id' in a.beginWrite(3105, net.raft('a'), rec(d, 9))).toBe(true);
    expect(a.guard.trips).toBe(1);
  });

  it('writes pending when the pause is detected fail: no PUBACK after waking', () => {
    const net = setup();
    const d = net.ownedBy('b')[0];
    const b = net.node('b');
    b.tick(200, net.raft('b'));
    const w = b.beginWrite(210, net.raft('b'), rec(d, 4)) as { id: number };
    net.drain();
    // The acks are in the socket while the process is stopped; it wakes 2 s later.
    const acksLater = net.queue;
    net.queue = [];
    for (const o of acksLater) {
      const job = net.node(o.to).receive(220, net.raft(o.to), o.msg);
      if (job) {
        net.disks.get(o.to)!.write(job.recs);
        net.node(o.to).stored(220, job, true);
      }
    }
    net.drain();
    const toB = net.queue.filter((o) => o.to === 'b');
    net.queue = [];
    for (const o of toB) b.receive(2300, net.raft('b'), o.msg);
    expect(b.takeDone()).toEqual([{ id: w.id, ok: false, reason: 'paused' }]);
  });

  it('a replica missing readings catches up from its peers by sequence ranges', () => {
    const net = setup();
    const d = net.ownedBy('a')[0];
    const set = net.node('a').placement().replicaSet('a', d, 3);
    const lagging = set[2];
    // Readings 1..50 exist on the owner and the heir only, 20..30 on nobody else.
    const recs = Array.from({ length: 50 }, (_, i) => rec(d, i + 1));
    net.disks.get('a')!.write(recs);
    net.disks.get(set[1])!.write(recs);
    net.disks.get(lagging)!.write(recs.filter((r) => r.seq < 20 || r.seq > 30));
    for (let t = 1000; t < 5000 && net.disks.get(lagging)!.seqs(d).length < 50; t += 100) net.tickAll(t);
    expect(net.disks.get(lagging)!.seqs(d)).toEqual(recs.map((r) => r.seq));
    expect(net.node(lagging).counters.rowsIn).toBeGreaterThanOrEqual(11);
  });

  it('reports devices that moved away when the log moves them', () => {
    const net = setup();
    const d = net.ownedBy('c', 2);
    net.node('c').tick(300, net.raft('c'));
    net.node('c').takeMovedAway();
    net.commit({ t: 'device.assign', set: { [d[0]]: 'a', [d[1]]: 'b' } });
    net.node('c').tick(310, net.raft('c'));
    expect(net.node('c').takeMovedAway().sort()).toEqual(d.slice().sort());
  });

  it('the view shows members, leader, term, ring shares and replica health', () => {
    const net = setup();
    net.tickAll(400);
    const v = net.node('b').view(401, net.raft('b'));
    expect(v.mode).toBe('cluster');
    expect(v.leader).toBe('a');
    expect(v.members.map((m) => [m.id, m.self, m.up, (m as typeof m & { onRing?: boolean }).onRing])).toEqual([['a', false, true, true], ['b', true, true, true], ['c', false, true, true]]);
    expect(v.members[0].addr).toBe('a:1883');
    expect(v.ring.owners.reduce((n, o) => n + o.devices, 0)).toBe(60);
    expect(v.replicas.map((r) => r.id)).toEqual(['a', 'c']);
  });
});
