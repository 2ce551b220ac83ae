/**
 * The cluster shell of one companion: the Raft service (host/raft), the replication transport,
 * the telemetry store and a timer, around the pure ClusterNode core. It holds no decisions; it
 * moves data between the core and the world, and plugs into the Companion through its hooks:
 *
 *   offerFor(beacon)   -> an offer naming this companion's broker, only for devices it owns;
 *   afterStore(reading) -> awaited AFTER the local durable write and BEFORE the device's PUBACK:
 *                         resolves once the replicas the policy needs (the heir among them)
 *                         stored it durably; REJECTS otherwise (timeout, refused, paused, not
 *                         the owner), and then the broker sends no PUBACK and closes the
 *                         device's session, so the device resends it, possibly to a new owner;
 *   cluster()          -> GET /api/cluster.
 *
 * ORDER of one entry point: read the Raft view AFTER delivering Raft's missed ticks (a leader
 * that slept through its lease steps down before we ask it anything), then call the core, then
 * drain the core's outputs: messages out, proposals to Raft, finished writes to their callers.
 * Replica pushes are appended DURABLY (group commit) BEFORE the core queues their ack.
 *
 * Clock: performance.now() (monotonic), the same clock the Raft service ticks by; the core's
 * pause guard watches it for gaps (SIGSTOP).
 */
import { performance } from 'node:perf_hooks';
import type { ClusterView, CompanionEvent } from '../companion-api.js';
import type { OfferTarget } from '../discovery/discovery-service.js';
import type { Logger } from '../log.js';
import type { ClusterCommand } from '../raft/cluster-state.js';
import { RaftService } from '../raft/raft-service.js';
import { RaftTransport } from '../raft/raft-transport.js';
import type { Message } from '../raft/raft-types.js';
import type { TelemetryRecord } from '../store/telemetry-record.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
import { ClusterNode, type ClusterNodeOptions, type RaftView, type StoreJob } from './cluster-node.js';
import { formatHostPort, formatMemberAddr } from './member-addr.js';
import { parseReplMessage, replicationKey, REPL_FRAME_BYTES_MAX, type ReplMessage } from './replication-wire.js';
import type { AckPolicy } from './write-quorum.js';

export interface ClusterServiceOptions {
  nodeId: string;
  /** Cluster secret (>= 16 bytes): authenticates Raft and (through a derived key) replication. */
  secret: Buffer;
  /** Raft addresses ("host:port") of the other members. */
  peers: Record<string, string>;
  /** Address the Raft and replication listeners bind (loopback unless an interface is named). */
  bind: string;
  /** Host peers reach this node at (default: the bind address; 127.0.0.1 for a wildcard bind). */
  advertiseHost?: string;
  raftPort: number;
  /** Replication port; 0 (default) picks one. Peers learn it from the committed membership. */
  replPort?: number;
  /** raft.sqlite goes here. */
  dataDir: string;
  weight?: number;
  replicas?: number;
  acks?: AckPolicy;
  /** Raft tick; election timeout = electionTicks x tickMs (defaults 100 ms x 10). */
  raftTickMs?: number;
  electionTicks?: number;
  /** The cluster timer (pings, coordination, anti-entropy, timeouts). Default 50 ms. */
  tickMs?: number;
  /** Timings and limits of the core (cluster-node.ts CLUSTER_DEFAULTS). */
  core?: Partial<Omit<ClusterNodeOptions, 'self' | 'advertise' | 'store' | 'replicas' | 'acks' | 'weight'>>;
  seed?: number;
  log: Logger;
  /**
   * Devices this node stopped owning: close their MQTT sessions so they re-beacon and reach
   * their new owner now (otherwise their next publish is refused and that closes the session).
   */
  onMovedAway?: (deviceIds: string[]) => void;
}

/** What the cluster needs from the running companion. */
export interface CompanionPort {
  readonly nodeId: string;
  telemetryStore: TelemetryStore;
  /** Where devices moved away lose their session (Bus.disconnect); absent in some tests. */
  bus?: { disconnect(deviceId: string, reason: string): boolean };
  selfOffer(): OfferTarget | null;
  emit?(ev: CompanionEvent): void;
}

/** The hooks to pass in CompanionOptions. */
export interface ClusterHooks {
  offerFor: (b: { id: string }) => OfferTarget | null;
  afterStore: (rec: TelemetryRecord) => Promise<void>;
  cluster: () => ClusterView;
}

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

export class ClusterError extends Error {
  constructor(readonly reason: string) {
    super('cluster: ' + reason);
  }
}

export class ClusterService {
  readonly nodeId: string;
  readonly o: ClusterServiceOptions;
  raft: RaftService | null = null;
  transport: RaftTransport | null = null;
  core: ClusterNode | null = null;
  _companion: CompanionPort | null = null;
  _broker: { host: string; port: number } | null = null;
  _timer: NodeJS.Timeout | null = null;
  _waiters = new Map<number, Waiter>();
  _drainQueued = false;
  _tickQueued = false;
  _closed = false;
  _peerRepl = new Map<string, string>();
  _peerRaft = new Map<string, string>();
  _lastLeader = '';
  _lastTerm = -1;
  _raftPort = 0;
  _replPort = 0;
  readonly counters = { dropped: {} as Record<string, number>, storeFailures: 0 };

  constructor(o: ClusterServiceOptions) {
    if (!Buffer.isBuffer(o.secret) || o.secret.length < 16) throw new Error('cluster: the cluster secret must be at least 16 bytes');
    this.nodeId = o.nodeId;
    this.o = o;
  }

  hooks(): ClusterHooks {
    return {
      offerFor: (b) => this.offerFor(b.id),
      afterStore: (rec) => this.afterStore(rec),
      cluster: () => this.view(),
    };
  }

  /** Start Raft and replication; call AFTER companion.start() (the store and the broker exist). */
  async start(companion: CompanionPort): Promise<void> {
    const o = this.o;
    this._companion = companion;
    const offer = companion.selfOffer();
    if (!offer) throw new Error('cluster: the companion has no broker address to advertise');
    this._broker = offer.broker;
    const host = o.advertiseHost ?? (o.bind === '0.0.0.0' || o.bind === '::' ? '127.0.0.1' : o.bind);
    this.transport = new RaftTransport({
      id: o.nodeId,
      secret: replicationKey(o.secret),
      host: o.bind,
      port: o.replPort ?? 0,
      peers: {},
      frameBytesMax: REPL_FRAME_BYTES_MAX,
      onMessage: (m) => this._onFrame(m),
      onDrop: (r) => this._drop('transport:' + r),
    });
    this._replPort = await this.transport.start();
    this.raft = new RaftService({
      id: o.nodeId,
      secret: o.secret,
      peers: o.peers,
      host: o.bind,
      port: o.raftPort,
      dataDir: o.dataDir,
      tickMs: o.raftTickMs,
      electionTicks: o.electionTicks,
      seed: o.seed,
      log: (ev) => o.log.info(String(ev.ev), ev),
      // A commit may move devices: look at it now rather than at the next tick.
      onApply: () => this._tickSoon(),
    });
    this._raftPort = await this.raft.start();
    for (const id of Object.keys(o.peers)) this._peerRaft.set(id, o.peers[id]);
    const advertise = formatMemberAddr({ broker: offer.broker, repl: { host, port: this._replPort }, raft: { host, port: this._raftPort } });
    const now = performance.now();
    this.core = new ClusterNode(
      {
        ...(o.core ?? {}),
        self: o.nodeId,
        advertise,
        weight: o.weight,
        replicas: o.replicas,
        acks: o.acks,
        store: companion.telemetryStore,
      },
      this.raft.state,
      now,
    );
    this._timer = setInterval(() => this._tick(), o.tickMs ?? 50);
    o.log.info('cluster started', { node: o.nodeId, raft: host + ':' + this._raftPort, replication: host + ':' + this._replPort, peers: o.peers, replicas: this.core.o.replicas, acks: this.core.o.acks });
  }

  async stop(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
    this._waiters.forEach((w) => w.reject(new ClusterError('stopped')));
    this._waiters.clear();
    if (this.transport) await this.transport.close();
    if (this.raft) await this.raft.close();
  }

  ports(): { raft: number; replication: number } {
    return { raft: this._raftPort, replication: this._replPort };
  }

  // ------------------------------------------------------------------ companion hooks

  offerFor(deviceId: string): OfferTarget | null {
    const core = this.core;
    if (!core || this._closed || !this._broker) return null;
    const r = core.offerFor(performance.now(), this.raftView(), deviceId);
    this._drain();
    return r ? { host: this.nodeId, broker: this._broker, epoch: r.epoch } : null;
  }

  afterStore(rec: TelemetryRecord): Promise<void> {
    const core = this.core;
    if (!core || this._closed) return Promise.reject(new ClusterError('not-running'));
    const w = core.beginWrite(performance.now(), this.raftView(), rec);
    if ('err' in w) return Promise.reject(new ClusterError(w.err));
    if ('done' in w) return Promise.resolve();
    // Pushes of one turn leave together (one frame per replica): drain at the end of the turn.
    this._soon();
    return new Promise<void>((resolve, reject) => this._waiters.set(w.id, { resolve, reject }));
  }

  view(): ClusterView {
    const core = this.core;
    if (!core || !this.raft) {
      return { nodeId: this.nodeId, members: [], leader: null, term: 0, ring: { epoch: 0, owners: [] }, replicas: [], mode: 'cluster' };
    }
    return core.view(performance.now(), this.raftView());
  }

  // ------------------------------------------------------------------ plumbing

  /**
   * The Raft view, AFTER Raft's missed ticks were delivered: a leader paused past its lease has
   * stepped down by the time we read its role.
   */
  raftView(): RaftView {
    const raft = this.raft as RaftService;
    raft._catchUp();
    raft._schedule();
    const n = raft._node;
    if (!n) return { role: 'follower', term: 0, leader: '', lease: false, commit: 0, applied: 0, voters: [] };
    return { role: n.role, term: n.term, leader: n.leader, lease: n.hasLease(), commit: n.log.committed, applied: n.log.applied, voters: n.voters() };
  }

  _soon(): void {
    if (this._drainQueued || this._closed) return;
    this._drainQueued = true;
    setImmediate(() => {
      this._drainQueued = false;
      if (!this._closed) this._drain();
    });
  }

  _tickSoon(): void {
    if (this._tickQueued || this._closed) return;
    this._tickQueued = true;
    setImmediate(() => {
      this._tickQueued = false;
      this._tick();
    });
  }

  _tick(): void {
    const core = this.core;
    if (!core || this._closed) return;
    const view = this.raftView();
    core.tick(performance.now(), view);
    this._learnPeers();
    this._noteLeader(view);
    this._drain();
  }

  _onFrame(raw: unknown): void {
    const core = this.core;
    if (!core || this._closed) return;
    const p = parseReplMessage(raw, this.nodeId);
    if (!p.ok) {
      this._drop(p.reason);
      return;
    }
    const job = core.receive(performance.now(), this.raftView(), p.msg);
    if (job) this._store(job);
    this._soon();
  }

  /** Append a job's readings durably, THEN tell the core (which then acks a push). */
  _store(job: StoreJob): void {
    const store = (this._companion as CompanionPort).telemetryStore;
    if (job.kind === 'rows') {
      let ok = true;
      try {
        if (job.recs.length > 0) store.importRows(job.recs);
      } catch (e) {
        ok = false;
        this.counters.storeFailures++;
        this.o.log.warn('cluster.store-failed', { from: job.from, rows: job.recs.length, error: String(e) });
      }
      (this.core as ClusterNode).stored(performance.now(), job, ok);
      this._soon();
      return;
    }
    // Group commit: pushes arriving in one turn share one transaction and one fsync.
    Promise.all(job.recs.map((r) => store.append(r))).then(
      () => {
        if (this._closed) return;
        (this.core as ClusterNode).stored(performance.now(), job, true);
        this._drain();
      },
      (e) => {
        if (this._closed) return;
        this.counters.storeFailures++;
        this.o.log.warn('cluster.store-failed', { from: job.from, rows: job.recs.length, error: String(e) });
        (this.core as ClusterNode).stored(performance.now(), job, false, 'store-failed');
        this._drain();
      },
    );
  }

  _drain(): void {
    const core = this.core;
    const t = this.transport;
    const raft = this.raft;
    if (!core || !t || !raft || this._closed) return;
    for (const o of core.takeOutbox()) this._send(o.to, o.msg);
    const props = core.takeProposals();
    if (props.length > 0) {
      const term = this.raftView().term;
      for (const cmd of props) this._propose(cmd, term);
    }
    for (const d of core.takeDone()) {
      const w = this._waiters.get(d.id);
      if (!w) continue;
      this._waiters.delete(d.id);
      if (d.ok) w.resolve();
      else w.reject(new ClusterError(d.reason));
    }
    const moved = core.takeMovedAway();
    if (moved.length > 0) {
      // Their sessions here end now: each device re-beacons and reaches its new owner at once.
      let closed = 0;
      const bus = this._companion?.bus;
      if (bus) for (const id of moved) if (bus.disconnect(id, 'moved')) closed++;
      this.o.log.info('cluster.moved-away', { devices: moved.length, sessionsClosed: closed, sample: moved.slice(0, 8) });
      if (this.o.onMovedAway) this.o.onMovedAway(moved);
    }
  }

  _send(to: string, msg: ReplMessage): void {
    if (!this._peerRepl.has(to)) {
      this._drop('no-address');
      return;
    }
    // The transport routes by `to` and frames any JSON; its Message type is Raft's.
    (this.transport as RaftTransport).send(msg as unknown as Message);
  }

  _propose(cmd: ClusterCommand, term: number): void {
    const summary = cmd.t === 'device.assign' ? { t: cmd.t, devices: Object.keys(cmd.set).length, ifEpoch: cmd.ifEpoch } : cmd;
    this.o.log.info('cluster.propose', { term, cmd: summary });
    (this.raft as RaftService).propose(cmd).then(
      () => undefined,
      (e: Error) => this.o.log.info('cluster.propose-failed', { term, cmd: cmd.t, reason: e.message }),
    );
  }

  /** Learn peers' replication and Raft addresses from the committed membership. */
  _learnPeers(): void {
    const core = this.core as ClusterNode;
    for (const m of core.placement().members) {
      if (m.id === this.nodeId) continue;
      const repl = m.parsed.repl ? formatHostPort(m.parsed.repl) : '';
      if (repl && this._peerRepl.get(m.id) !== repl) {
        this._peerRepl.set(m.id, repl);
        (this.transport as RaftTransport).setPeer(m.id, repl);
      }
      const raftAddr = m.parsed.raft ? formatHostPort(m.parsed.raft) : '';
      if (raftAddr && this._peerRaft.get(m.id) !== raftAddr) {
        this._peerRaft.set(m.id, raftAddr);
        (this.raft as RaftService).addPeer(m.id, raftAddr);
      }
    }
  }

  _noteLeader(v: RaftView): void {
    if (v.leader === this._lastLeader && v.term === this._lastTerm) return;
    this._lastLeader = v.leader;
    this._lastTerm = v.term;
    this.o.log.info('cluster.leader', { leader: v.leader, term: v.term, role: v.role });
    const c = this._companion;
    if (c && c.emit) c.emit({ type: 'cluster', leader: v.leader === '' ? null : v.leader, term: v.term, at: Date.now() });
  }

  _drop(reason: string): void {
    this.counters.dropped[reason] = (this.counters.dropped[reason] ?? 0) + 1;
  }
}
