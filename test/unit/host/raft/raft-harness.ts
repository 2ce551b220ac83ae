/**
 * An in-process network of RaftNodes for unit and trace tests (etcd's `network` in raft_test.go,
 * in spirit): messages are queued and delivered in order by `deliver()`, links can be cut, nodes
 * isolated, paused or restarted from what they persisted. Each Ready is handled in the shell's
 * order: persist, then send, then apply, then advance.
 */
import { SeededRng } from '../../../../firmware/core/rng.js';
import { RaftNode, type RaftConfig, type Ready } from '../../../../host/raft/raft-core.js';
import type { Entry, Message, NodeId, PersistedState, Snapshot } from '../../../../host/raft/raft-types.js';

export interface Disk {
  persisted: PersistedState | null;
}

/** Apply a Ready's persistent part to a plain PersistedState (what storage would hold). */
export function persistReady(d: Disk, rd: Ready): void {
  let p = d.persisted;
  if (!p) {
    p = { hardState: { term: 0, vote: '', commit: 0 }, snapshot: { index: 0, term: 0, voters: [], data: '' }, entries: [] };
    d.persisted = p;
  }
  if (rd.snapshot) {
    p.snapshot = rd.snapshot;
    p.entries = [];
  }
  if (rd.compacted) {
    const s = rd.compacted;
    p.snapshot = s;
    p.entries = p.entries.filter((e) => e.index > s.index);
  }
  if (rd.entries.length > 0) {
    const first = rd.entries[0].index;
    p.entries = p.entries.filter((e) => e.index < first).concat(rd.entries.map((e) => clone(e)));
  }
  if (rd.hardState) p.hardState = { ...rd.hardState };
}

export function clone<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T;
}

export interface NetNode {
  node: RaftNode;
  disk: Disk;
  applied: Entry[];
  snapshotsApplied: Snapshot[];
  paused: boolean;
  pausedInbox: Message[];
}

export class Net {
  nodes = new Map<NodeId, NetNode>();
  queue: Message[] = [];
  /** Cut links "a->b". */
  cut = new Set<string>();
  /** Every message ever sent, for trace assertions. */
  sent: Message[] = [];
  cfg: Partial<RaftConfig>;
  seed: number;

  constructor(ids: NodeId[], cfg: Partial<RaftConfig> = {}, seed = 1) {
    this.cfg = cfg;
    this.seed = seed;
    for (let i = 0; i < ids.length; i++) this.add(ids[i], ids, null);
  }

  makeCfg(id: NodeId, voters: NodeId[], k: number): RaftConfig {
    return {
      id,
      electionTicks: 10,
      heartbeatTicks: 1,
      rng: new SeededRng(this.seed * 1000 + k),
      voters,
      peers: voters,
      ...this.cfg,
    };
  }

  add(id: NodeId, voters: NodeId[], persisted: PersistedState | null, extra: Partial<RaftConfig> = {}): NetNode {
    const k = this.nodes.size + 1;
    const cfg = { ...this.makeCfg(id, voters, k), ...extra };
    const disk: Disk = { persisted: persisted ? clone(persisted) : null };
    const n: NetNode = {
      node: new RaftNode(cfg, disk.persisted ? clone(disk.persisted) : null),
      disk,
      applied: [],
      snapshotsApplied: [],
      paused: false,
      pausedInbox: [],
    };
    this.nodes.set(id, n);
    this.flush(id);
    return n;
  }

  get(id: NodeId): RaftNode {
    return (this.nodes.get(id) as NetNode).node;
  }

  /** Crash `id` (RAM lost) and start it again from its disk. */
  restart(id: NodeId, extra: Partial<RaftConfig> = {}): NetNode {
    const old = this.nodes.get(id) as NetNode;
    const k = [...this.nodes.keys()].indexOf(id) + 100;
    const cfg = { ...this.makeCfg(id, old.node.voters(), k), ...extra };
    const n: NetNode = {
      node: new RaftNode(cfg, old.disk.persisted ? clone(old.disk.persisted) : null),
      disk: old.disk,
      applied: [],
      snapshotsApplied: [],
      paused: false,
      pausedInbox: [],
    };
    this.nodes.set(id, n);
    this.flush(id);
    return n;
  }

  /** Handle every Ready of `id`: PERSIST, then SEND, then APPLY, then advance. */
  flush(id: NodeId): void {
    const n = this.nodes.get(id) as NetNode;
    while (n.node.hasReady()) {
      const rd = n.node.ready();
      persistReady(n.disk, rd);
      for (let i = 0; i < rd.messages.length; i++) {
        const m = clone(rd.messages[i]);
        this.sent.push(m);
        this.queue.push(m);
      }
      if (rd.snapshot) n.snapshotsApplied.push(rd.snapshot);
      for (let i = 0; i < rd.committed.length; i++) n.applied.push(rd.committed[i]);
      n.node.advance(rd);
    }
  }

  /** SIGSTOP: no ticks, messages wait in the inbox. */
  pause(id: NodeId): void {
    (this.nodes.get(id) as NetNode).paused = true;
  }

  /**
   * SIGCONT: deliver `missedTicks` FIRST (what the service's catch-up does), then the messages
   * that queued up while paused.
   */
  resume(id: NodeId, missedTicks: number): void {
    const n = this.nodes.get(id) as NetNode;
    n.paused = false;
    if (missedTicks > 0) n.node.tick(missedTicks);
    this.flush(id);
    const inbox = n.pausedInbox;
    n.pausedInbox = [];
    for (const m of inbox) this.queue.push(m);
  }

  /** Entries of `id`'s log after its snapshot, as "term" numbers (for compact assertions). */
  terms(id: NodeId): number[] {
    const l = this.get(id).log;
    const out: number[] = [];
    for (let i = l.firstIndex(); i <= l.lastIndex(); i++) out.push(l.term(i));
    return out;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(id + '->' + other);
      this.cut.add(other + '->' + id);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Deliver queued messages (and what they cause) until the queue is empty or `max` steps. */
  deliver(max = 100000, filter?: (m: Message) => boolean | Message): number {
    let n = 0;
    while (this.queue.length > 0 && n < max) {
      let m = this.queue.shift() as Message;
      n++;
      if (this.cut.has(m.from + '->' + m.to)) continue;
      if (filter) {
        // false drops the message; a Message replaces it (a network that rewrites).
        const f = filter(m);
        if (f === false) continue;
        if (f !== true) m = f;
      }
      const dst = this.nodes.get(m.to);
      if (!dst) continue;
      if (dst.paused) {
        dst.pausedInbox.push(m);
        continue;
      }
      dst.node.step(m);
      this.flush(m.to);
    }
    return n;
  }

  tick(id: NodeId, times = 1): void {
    const n = this.nodes.get(id) as NetNode;
    if (n.paused) return;
    for (let i = 0; i < times; i++) {
      n.node.tick();
      this.flush(id);
    }
  }

  tickAll(times = 1): void {
    for (let t = 0; t < times; t++) {
      for (const id of this.nodes.keys()) this.tick(id);
      this.deliver();
    }
  }

  /** Make `id` campaign now and deliver everything that follows. */
  elect(id: NodeId): void {
    this.get(id).campaign();
    this.flush(id);
    this.deliver();
  }

  leaders(): NodeId[] {
    const out: NodeId[] = [];
    for (const [id, n] of this.nodes) if (n.node.role === 'leader') out.push(id);
    return out;
  }

  propose(id: NodeId, data: string): ReturnType<RaftNode['propose']> {
    const r = this.get(id).propose({ data });
    this.flush(id);
    return r;
  }
}
