/**
 * The shell around the Raft core for one companion: a tick timer, SQLite storage, the TCP
 * transport, and the cluster state machine. It holds no decisions; it moves data between the
 * core and the world in the order the core's contract demands:
 *
 *   PERSIST (fsync) BEFORE SEND, SEND BEFORE APPLY, then advance.
 *
 * Time: the core counts ticks. The shell derives the tick count from a monotonic clock, and
 * delivers the ticks it missed (after SIGSTOP, a long GC pause, a slow disk) BEFORE it steps any
 * message or proposal. So a leader that slept through its lease runs its check-quorum first and
 * steps down before it can acknowledge or propose anything on stale authority.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SeededRng } from '../../firmware/core/rng.js';
import {
  ClusterState,
  commandShapeError,
  decodeCommand,
  type ApplyResult,
  type ClusterCommand,
  type ClusterSnapshot,
  type Member,
} from './cluster-state.js';
import { RaftNode, type Ready } from './raft-core.js';
import { SqliteStorage, type RaftStorage } from './raft-storage.js';
import { RaftTransport } from './raft-transport.js';
import type { ConfChange, Entry, Message, NodeId, Role } from './raft-types.js';

export interface RaftServiceOptions {
  id: NodeId;
  /** Cluster secret (>= 16 bytes) that authenticates every frame. */
  secret: Buffer;
  /** Raft addresses ("host:port") of the other companions. */
  peers: Record<NodeId, string>;
  /** Raft listen address; loopback by default. */
  host?: string;
  /** Raft listen port; 0 picks one (tests). */
  port: number;
  /** Directory for raft.sqlite; or pass `storage`. */
  dataDir?: string;
  storage?: RaftStorage;
  /** Voters of a brand-new cluster (default: this node and every peer). Ignored after that. */
  voters?: NodeId[];
  /** Start with no configuration and wait to be added by the leader. */
  join?: boolean;
  /** Register this node in the cluster state as a member with this service address and weight. */
  advertise?: { addr: string; weight: number };
  /** Tick period. Election timeout = electionTicks x tickMs. */
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Compact the log once this many entries are applied past the last snapshot. */
  snapshotEntries?: number;
  /** A proposal not committed within this is rejected (its outcome is then unknown). */
  proposeTimeoutMs?: number;
  /** Seed for election timeouts; random by default. */
  seed?: number;
  /** Structured log events. */
  log?: (ev: Record<string, unknown>) => void;
  /** Every applied command, in order, with the state machine's verdict. */
  onApply?: (index: number, cmd: unknown, result: ApplyResult) => void;
}

export interface RaftServiceStatus {
  id: NodeId;
  role: Role;
  term: number;
  leader: NodeId;
  /** Leader with a quorum heard from within the election timeout. */
  lease: boolean;
  commit: number;
  applied: number;
  voters: NodeId[];
  members: Member[];
  epoch: number;
  state: ClusterSnapshot;
  drops: Record<string, number>;
}

interface Pending {
  resolve: (index: number) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class RaftService {
  readonly id: NodeId;
  readonly state = new ClusterState();
  _o: RaftServiceOptions;
  _tickMs: number;
  _electionTicks: number;
  /**
   * Missed ticks delivered at once after a pause: enough for every timeout to fire (a
   * follower's randomised timeout is below 2 x electionTicks, check-quorum needs electionTicks),
   * and bounded so a pause of hours costs no long loop.
   */
  _catchUpTicksMax: number;
  _node: RaftNode | null = null;
  _storage: RaftStorage | null = null;
  _transport: RaftTransport | null = null;
  _timer: NodeJS.Timeout | null = null;
  _t0 = 0;
  _ticks = 0;
  _pending = new Map<string, Pending>();
  _seq = 0;
  /** Distinguishes this process's proposal ids from those of its earlier lives. */
  _nonce = randomBytes(6).toString('hex');
  _flushQueued = false;
  _closed = false;
  _failed = '';
  _soft = { role: 'follower' as Role, term: 0, leader: '' };
  _registering = false;

  constructor(o: RaftServiceOptions) {
    this.id = o.id;
    this._o = o;
    this._tickMs = o.tickMs ?? 100;
    this._electionTicks = o.electionTicks ?? 10;
    this._catchUpTicksMax = 2 * this._electionTicks + 1;
  }

  /** Open storage, restore, listen, start ticking. Resolves with the Raft port. */
  async start(): Promise<number> {
    const o = this._o;
    if (o.storage) {
      this._storage = o.storage;
    } else {
      if (!o.dataDir) throw new Error('raft service: dataDir or storage is required');
      mkdirSync(o.dataDir, { recursive: true });
      this._storage = new SqliteStorage(join(o.dataDir, 'raft.sqlite'));
    }
    const persisted = this._storage.load();
    if (persisted && persisted.snapshot.data !== '') {
      const r = this.state.restore(persisted.snapshot.data);
      if (r) throw new Error('raft service: stored snapshot unreadable: ' + r);
    }
    const peerIds = Object.keys(o.peers);
    const voters = o.join ? [] : (o.voters ?? [o.id].concat(peerIds));
    this._node = new RaftNode(
      {
        id: o.id,
        electionTicks: this._electionTicks,
        heartbeatTicks: o.heartbeatTicks ?? 1,
        rng: new SeededRng(o.seed ?? randomBytes(4).readInt32LE(0)),
        voters,
        peers: peerIds,
      },
      persisted,
    );
    this._transport = new RaftTransport({
      id: o.id,
      secret: o.secret,
      host: o.host,
      port: o.port,
      peers: o.peers,
      onMessage: (m) => this._onMessage(m),
    });
    const port = await this._transport.start();
    this._t0 = performance.now();
    this._ticks = 0;
    this._timer = setInterval(() => this._onTimer(), this._tickMs);
    this._flush();
    return port;
  }

  /**
   * Propose a cluster command; resolves with its log index once it is COMMITTED and APPLIED
   * here, rejects if the state machine refused it, if no leader took it, or on timeout (then
   * the outcome is unknown: it may still commit). Works on any member (followers forward).
   */
  propose(cmd: ClusterCommand): Promise<number> {
    if (this._closed || !this._node) return Promise.reject(new Error('raft: service not running'));
    if (this._failed) return Promise.reject(new Error('raft: ' + this._failed));
    const shape = commandShapeError(cmd);
    if (shape) return Promise.reject(new Error('raft: bad command: ' + shape));
    this._catchUp();
    const node = this._node;
    const isVoter = node.voters().indexOf((cmd as { id?: string }).id ?? '') >= 0;
    let change: ConfChange | undefined;
    // Membership of the Raft group changes through conf entries (one voter at a time); adding
    // a record for a node that is already a voter (bootstrap) is a plain command.
    if (cmd.t === 'member.add' && !isVoter) change = { op: 'add', id: cmd.id };
    if (cmd.t === 'member.remove' && isVoter) change = { op: 'remove', id: cmd.id };
    const pid = this._nonce + ':' + ++this._seq;
    const data = JSON.stringify({ p: pid, c: cmd });
    const r = node.propose(change ? { data, change } : { data });
    if (!r.ok) {
      this._schedule();
      return Promise.reject(new Error('raft: ' + r.reason));
    }
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this._pending.delete(pid)) reject(new Error('raft: proposal timed out'));
      }, this._o.proposeTimeoutMs ?? 20 * this._electionTicks * this._tickMs);
      this._pending.set(pid, { resolve, reject, timer });
      this._schedule();
    });
  }

  status(): RaftServiceStatus {
    const n = this._node;
    const s = n ? n.status() : null;
    const drops: Record<string, number> = {};
    if (s) Object.assign(drops, s.drops);
    if (this._transport) {
      const t = this._transport.stats.drops;
      for (const k of Object.keys(t)) drops['transport:' + k] = t[k];
    }
    return {
      id: this.id,
      role: s ? s.role : 'follower',
      term: s ? s.term : 0,
      leader: s ? s.leader : '',
      lease: n ? n.hasLease() : false,
      commit: s ? s.commit : 0,
      applied: s ? s.applied : 0,
      voters: s ? s.voters : [],
      members: this.state.members(),
      epoch: this.state.epoch,
      state: this.state.toJSON(),
      drops,
    };
  }

  /** Learn (or move) a peer's Raft address, e.g. before adding it as a voter. */
  addPeer(id: NodeId, addr: string): void {
    if (this._transport) this._transport.setPeer(id, addr);
    if (this._node) this._node.addPeer(id);
  }

  async close(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
    this._pending.forEach((p) => {
      clearTimeout(p.timer);
      p.reject(new Error('raft: service closed'));
    });
    this._pending.clear();
    if (this._transport) await this._transport.close();
    if (this._storage) this._storage.close();
  }

  // ---------------------------------------------------------------- loop

  _onTimer(): void {
    if (this._closed || this._failed) return;
    this._catchUp();
    this._maybeRegister();
    this._flush();
  }

  _onMessage(m: unknown): void {
    if (this._closed || this._failed || !this._node) return;
    // Missed ticks FIRST: a paused leader must learn it lost its lease before it reacts.
    this._catchUp();
    this._node.step(m);
    this._schedule();
  }

  /** Deliver every tick due by the monotonic clock, bounded by _catchUpTicksMax. */
  _catchUp(): void {
    const node = this._node;
    if (!node || this._failed) return;
    let due = Math.floor((performance.now() - this._t0) / this._tickMs) - this._ticks;
    if (due > this._catchUpTicksMax) {
      this._ticks += due - this._catchUpTicksMax;
      due = this._catchUpTicksMax;
    }
    if (due > 0) {
      // One call for all of them: the core evaluates its timeouts once, at the new time.
      node.tick(due);
      this._ticks += due;
    }
  }

  /** One flush per turn of the event loop: many messages, one fsync. */
  _schedule(): void {
    if (this._flushQueued || this._closed) return;
    this._flushQueued = true;
    setImmediate(() => {
      this._flushQueued = false;
      if (!this._closed && !this._failed) this._flush();
    });
  }

  _flush(): void {
    const node = this._node as RaftNode;
    const storage = this._storage as RaftStorage;
    const transport = this._transport as RaftTransport;
    while (node.hasReady()) {
      const rd = node.ready();
      // 1. PERSIST (durable when persist returns).
      try {
        storage.persist(rd);
      } catch (err) {
        // Nothing of this Ready may leave the process: we stop, with messages unsent.
        this._fail('storage failed: ' + (err as Error).message);
        return;
      }
      // 2. SEND, only now.
      for (let i = 0; i < rd.messages.length; i++) transport.send(rd.messages[i] as Message);
      // 3. APPLY.
      if (rd.snapshot) {
        const r = this.state.restore(rd.snapshot.data);
        if (r) {
          this._fail('snapshot from leader unreadable: ' + r);
          return;
        }
      }
      for (let i = 0; i < rd.committed.length; i++) this._apply(rd.committed[i]);
      node.advance(rd);
      this._noteSoft(rd);
      this._maybeCompact();
    }
  }

  _apply(e: Entry): void {
    if (e.kind === 'noop') {
      this.state.apply(e.index, { t: 'noop' });
      return;
    }
    const env = decodeCommand(e.data) as { p?: unknown; c?: unknown } | undefined;
    const cmd = env && typeof env === 'object' ? env.c : undefined;
    const res = this.state.apply(e.index, cmd);
    if (this._o.onApply) this._o.onApply(e.index, cmd, res);
    const pid = env && typeof env === 'object' && typeof env.p === 'string' ? env.p : '';
    const p = pid ? this._pending.get(pid) : undefined;
    if (p) {
      this._pending.delete(pid);
      clearTimeout(p.timer);
      if (res.ok) p.resolve(e.index);
      else p.reject(new Error('raft: command refused: ' + res.reason));
    }
  }

  _maybeCompact(): void {
    const node = this._node as RaftNode;
    const every = this._o.snapshotEntries ?? 1000;
    const applied = node.log.applied;
    if (applied - node.log.snapshot().index < every) return;
    // The state machine is exactly at `applied` here (we applied every committed entry we
    // were handed), so its snapshot is the state AT that index.
    node.compact(applied, this.state.snapshot());
  }

  /** Register this node's service address once it is a voter and a leader exists. */
  _maybeRegister(): void {
    const a = this._o.advertise;
    const node = this._node;
    if (!a || !node || this._registering || node.leader === '') return;
    if (node.voters().indexOf(this.id) < 0) return;
    const m = this.state.member(this.id);
    if (m && m.addr === a.addr && m.weight === a.weight) return;
    const cmd: ClusterCommand = m
      ? { t: 'member.update', id: this.id, addr: a.addr, weight: a.weight }
      : { t: 'member.add', id: this.id, addr: a.addr, weight: a.weight };
    this._registering = true;
    this.propose(cmd).then(
      () => {
        this._registering = false;
      },
      () => {
        this._registering = false;
      },
    );
  }

  _noteSoft(rd: Ready): void {
    const s = rd.soft;
    if (s.role === this._soft.role && s.term === this._soft.term && s.leader === this._soft.leader) return;
    this._soft = { role: s.role, term: s.term, leader: s.leader };
    if (this._o.log) this._o.log({ ev: 'raft.role', id: this.id, role: s.role, term: s.term, leader: s.leader });
  }

  _fail(reason: string): void {
    this._failed = reason;
    if (this._o.log) this._o.log({ ev: 'raft.failed', id: this.id, reason });
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
    this._pending.forEach((p) => {
      clearTimeout(p.timer);
      p.reject(new Error('raft: ' + reason));
    });
    this._pending.clear();
  }
}
