/**
 * The companion cluster in one deterministic world: the Raft world of sim-world.ts (clock,
 * network, disks, crashes, pauses, partitions, drift, all from one seed) extended with what the
 * cluster layer adds on top of Raft:
 *
 *   - one ClusterNode core per companion (host/cluster/cluster-node.ts, the code the service
 *     runs), fed the node's own drifting clock and its Raft view;
 *   - a replication network between companions with the same loss, duplication, delay
 *     (reordering) and partitions as Raft's;
 *   - a durable telemetry disk per companion (survives crashes; a crash during a write loses
 *     that write, which was then never acknowledged);
 *   - a fleet of devices: they beacon (to every companion), follow the first offer, hold an MQTT
 *     session with their owner's embedded broker, publish QoS 1 readings from a bounded outbox,
 *     retransmit on a new session, and lose their session on a crash (at once), on a rejected
 *     publish (the broker disconnects them) or on a paused broker (keepalive).
 *
 * Invariants, checked when the event that could break them happens (and the Raft ones after
 * every event):
 *   D  durability: a PUBACK is sent only when the reading is durable on at least W companions
 *      (W = floor(R/2)+1, and min(R, ring) with acks=all); copies on disk never disappear, so it
 *      then holds for the rest of the run;
 *   H  heir: the heir named by the acking owner's placement holds the reading when it is acked;
 *   O  ownership: a PUBACK comes from the owner of the device in that companion's applied state;
 *   S  stale authority: a companion paused past the election timeout sends no PUBACK and proposes
 *      nothing until its term is at least the newest term that had a leader when it woke;
 *   M  moves: every applied assignment gives a device its ring owner at the state it applies to
 *      (a ring change reassigns only the keys it moves);
 * and, after the faults heal (liveness): every companion is back on the ring, every device is
 * assigned to its ring owner, connected to it and has drained its outbox, and every replica of
 * every device holds every reading of that device that any companion holds (convergence).
 */
import { ClusterNode, type ClusterNodeOptions, type RaftView, type StoreJob } from '../../host/cluster/cluster-node.js';
import { formatMemberAddr } from '../../host/cluster/member-addr.js';
import { PlacementCache } from '../../host/cluster/placement.js';
import { parseReplMessage, type ReplMessage } from '../../host/cluster/replication-wire.js';
import { rangesOf, type SeqRange } from '../../host/cluster/seq-ranges.js';
import { copiesNeeded, quorumOf, type AckPolicy } from '../../host/cluster/write-quorum.js';
import { ClusterState, decodeCommand, type ClusterCommand } from '../../host/raft/cluster-state.js';
import type { Ready } from '../../host/raft/raft-core.js';
import type { TelemetryRecord } from '../../host/store/telemetry-record.js';
import { SimWorld, type Scenario, type SimConfig, type SimResult } from './sim-world.js';

type SN = SimWorld['nodes'][number];

export const CLUSTER_SCENARIOS: Scenario[] = ['calm', 'minority-leader', 'isolated-follower', 'flapping', 'crash', 'pause', 'drift', 'leader-churn', 'chaos'];

export interface ClusterSimConfig extends SimConfig {
  devices?: number;
  replicas?: number;
  acks?: AckPolicy;
  /** Each device produces a reading this often during the safety phase. */
  sampleMs?: number;
  /** Time allowed after the heal for everything to converge. */
  livenessMs?: number;
  /**
   * BROKEN ON PURPOSE: PUBACK as soon as the owner stored the reading, before replication.
   * Used only to show that invariant D catches it.
   */
  buggyAckBeforeReplication?: boolean;
  /** Overrides of the companions' cluster options (timeouts; `pauseMaxMs` huge disables the pause guard). */
  node?: Partial<Omit<ClusterNodeOptions, 'self' | 'advertise' | 'store'>>;
}

export interface ClusterSimResult extends SimResult {
  devices: number;
  readings: number;
  acked: number;
  ackFailures: Record<string, number>;
  offers: number;
  sessions: number;
  /** Per session loss (safety phase): ms until the device's next PUBACK. */
  outageP50Ms: number;
  outageP99Ms: number;
  outageMaxMs: number;
  ringOuts: number;
  assignments: number;
  /** Devices taken over from an owner that left the ring, and acknowledged readings the new owner lacked at that moment. */
  takeovers: number;
  takeoverMissing: number;
  /** Acknowledged readings of a device that the companion offering it did not hold when it offered. */
  offerMissing: number;
  clusterConvergeMs: number;
}

/** Readings a device keeps unacknowledged: its flash outbox; the oldest is shed when full. */
const OUTBOX_MAX = 400;
/** QoS 1 publishes in flight per session (the device's window). */
const WINDOW = 4;
const DEVICE_TICK_MS = 100;
const CLUSTER_TICK_MS = 50;
const KEEPALIVE_MS = 1500;
const CONNECT_TIMEOUT_MS = 1000;
const CHECK_EVERY_MS = 250;

interface NodeExt {
  core: ClusterNode | null;
  disk: SimDisk;
  /** device -> session id on this companion's broker (RAM). */
  sessions: Map<string, number>;
  /** write id -> the publish waiting for its quorum (RAM). */
  pending: Map<number, { dev: string; seq: number; sid: number }>;
  /** Deliveries queued while the process is stopped (the kernel keeps them). */
  inbox: Array<() => void>;
  lastSim: number;
  local: number;
  /** Set on a resume after a pause of at least the election timeout. */
  wake: { term: number; at: number } | null;
}

interface SimDevice {
  id: string;
  seq: number;
  outbox: number[];
  sent: Set<number>;
  session: { k: number; gen: number; sid: number } | null;
  connecting: boolean;
  beaconAt: number;
  nextSampleAt: number;
  lastAckAt: number;
  sessionAt: number;
  lostAt: number;
}

/** A companion's durable telemetry: what TelemetryStore holds after a commit. */
export class SimDisk {
  _d = new Map<string, Map<number, TelemetryRecord>>();

  write(recs: readonly TelemetryRecord[]): void {
    for (const r of recs) {
      let m = this._d.get(r.device);
      if (!m) {
        m = new Map();
        this._d.set(r.device, m);
      }
      if (!m.has(r.seq)) m.set(r.seq, { device: r.device, seq: r.seq, ts: r.ts, hist: r.hist, r: { ...r.r } });
    }
  }

  has(device: string, seq: number): boolean {
    const m = this._d.get(device);
    return m !== undefined && m.has(seq);
  }

  seqs(device: string): number[] {
    const m = this._d.get(device);
    return m ? Array.from(m.keys()).sort((a, b) => a - b) : [];
  }

  seqRanges(device: string, o: { toSeq?: number; rangesMax?: number }): { ranges: SeqRange[]; truncated: boolean } {
    const to = o.toSeq ?? Number.MAX_SAFE_INTEGER;
    const all = rangesOf(this.seqs(device).filter((s) => s <= to));
    const max = o.rangesMax ?? all.length;
    return all.length > max ? { ranges: all.slice(0, max), truncated: true } : { ranges: all, truncated: false };
  }

  exportRows(device: string, fromSeq: number, toSeq: number, limit?: number): TelemetryRecord[] {
    const out: TelemetryRecord[] = [];
    const m = this._d.get(device);
    if (!m) return out;
    for (const s of this.seqs(device)) {
      if (s < fromSeq || s > toSeq) continue;
      if (limit !== undefined && out.length >= limit) break;
      const r = m.get(s) as TelemetryRecord;
      out.push({ device: r.device, seq: r.seq, ts: r.ts, hist: r.hist, r: { ...r.r } });
    }
    return out;
  }
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

export class ClusterSim extends SimWorld {
  ccfg!: Required<Omit<ClusterSimConfig, keyof SimConfig>>;
  ext!: NodeExt[];
  devs!: SimDevice[];
  sid!: number;
  /** device|seq -> copies needed when acknowledged. */
  ackedKeys!: Map<string, number>;
  ackedByDev!: Map<string, number[]>;
  takeovers!: number;
  takeoverMissing!: number;
  offerMissing!: number;
  readings!: number;
  ackFailures!: Record<string, number>;
  offers!: number;
  sessionsOpened!: number;
  outages!: number[];
  ringOuts!: number;
  assignments!: number;
  clusterConvergeMs!: number;
  placements!: PlacementCache;

  constructor(c: ClusterSimConfig) {
    super({ ...c, scenario: c.scenario });
    this.ccfg = {
      devices: c.devices ?? 4 * c.nodes,
      replicas: c.replicas ?? 3,
      acks: c.acks ?? 'quorum',
      sampleMs: c.sampleMs ?? 400,
      livenessMs: c.livenessMs ?? 25000,
      buggyAckBeforeReplication: c.buggyAckBeforeReplication ?? false,
      node: c.node ?? {},
    };
    this.sid = 0;
    this.ackedKeys = new Map();
    this.ackedByDev = new Map();
    this.takeovers = 0;
    this.takeoverMissing = 0;
    this.offerMissing = 0;
    this.readings = 0;
    this.ackFailures = {};
    this.offers = 0;
    this.sessionsOpened = 0;
    this.outages = [];
    this.ringOuts = 0;
    this.assignments = 0;
    this.clusterConvergeMs = -1;
    this.placements = new PlacementCache(10);
    this.ext = [];
    for (let k = 0; k < this.nodes.length; k++) {
      this.ext.push({ core: null, disk: new SimDisk(), sessions: new Map(), pending: new Map(), inbox: [], lastSim: 0, local: this._rand(0, 1e6), wake: null });
      this._newCore(this.nodes[k]);
    }
    this.devs = [];
    for (let i = 0; i < this.ccfg.devices; i++) {
      this.devs.push({ id: 'dev-' + (i + 1), seq: 1, outbox: [], sent: new Set(), session: null, connecting: false, beaconAt: this._rand(0, 500), nextSampleAt: this._rand(0, this.ccfg.sampleMs), lastAckAt: 0, sessionAt: 0, lostAt: 0 });
    }
  }

  // ---------------------------------------------------------------- run

  runCluster(): ClusterSimResult {
    this._setupScenario();
    for (let k = 0; k < this.nodes.length; k++) this._clusterTick(k, this.nodes[k].gen);
    for (let i = 0; i < this.devs.length; i++) {
      const d = i;
      this._later(this._rand(1, DEVICE_TICK_MS), () => this._deviceTick(d));
    }
    this._later(this.cfg.safetyMs, () => this._heal());
    this._later(CHECK_EVERY_MS, () => this._periodicCheck());
    const end = this.cfg.safetyMs + this.ccfg.livenessMs;
    while (!this.violation && this.clusterConvergeMs < 0) {
      const e = this.q.pop();
      if (!e) break;
      if (e.at > end) {
        this._violate('liveness: the cluster did not converge within ' + this.ccfg.livenessMs + ' ms after heal: ' + this._whyNotConverged());
        break;
      }
      this.now = e.at;
      this._event(e);
      this.events++;
    }
    if (!this.violation) this._finalCheck();
    return this._clusterResult();
  }

  _clusterResult(): ClusterSimResult {
    const r = this._result();
    return {
      ...r,
      devices: this.devs.length,
      readings: this.readings,
      acked: this.ackedKeys.size,
      ackFailures: this.ackFailures,
      offers: this.offers,
      sessions: this.sessionsOpened,
      outageP50Ms: Math.round(percentile(this.outages, 0.5)),
      outageP99Ms: Math.round(percentile(this.outages, 0.99)),
      outageMaxMs: Math.round(percentile(this.outages, 1)),
      ringOuts: this.ringOuts,
      assignments: this.assignments,
      takeovers: this.takeovers,
      takeoverMissing: this.takeoverMissing,
      offerMissing: this.offerMissing,
      clusterConvergeMs: this.clusterConvergeMs,
    };
  }

  // ---------------------------------------------------------------- raft world hooks

  /** No random client commands: the cluster layer is the only proposer. */
  override _client(): void {}

  /** No voter changes: the cluster keeps its voters and takes members off the ring instead. */
  override _membershipStep(): void {}

  override _crash(sn: SN, why: string, restartAfterMs = -1): void {
    if (!sn.up) return;
    super._crash(sn, why, restartAfterMs);
    const x = this.ext[sn.k];
    x.core = null;
    x.sessions.clear();
    x.pending.clear();
    x.inbox = [];
    x.wake = null;
    // The kernel resets the devices' TCP sessions at once.
    for (let i = 0; i < this.devs.length; i++) {
      const d = this.devs[i];
      if (d.session && d.session.k === sn.k) {
        const sid = d.session.sid;
        this._later(this._rand(5, 50), () => this._loseSession(i, sid, 'reset'));
      }
    }
  }

  override _restart(sn: SN): void {
    if (sn.up) return;
    super._restart(sn);
    if (!this.ext) return;
    this._newCore(sn);
    this._clusterTick(sn.k, sn.gen);
  }

  override _resume(sn: SN): void {
    if (!sn.up || !sn.paused) return;
    const x = this.ext[sn.k];
    if (this.now - sn.pausedAt >= this.electionTimeoutMs()) {
      let term = 0;
      this.leaderOfTerm.forEach((_, t) => {
        if (t > term) term = t;
      });
      x.wake = { term, at: this.now };
    }
    // The missed ticks first (as the service delivers them), then what queued up while stopped,
    // Raft's and ours INTERLEAVED in a random order: after SIGCONT the event loop serves the
    // sockets in no particular order.
    const raftInbox = sn.inbox;
    sn.inbox = [];
    super._resume(sn);
    const mine = x.inbox;
    x.inbox = [];
    let i = 0;
    let j = 0;
    while ((i < raftInbox.length || j < mine.length) && sn.up && !sn.paused) {
      if (j >= mine.length || (i < raftInbox.length && this._chance(0.5))) {
        this._deliver(sn, raftInbox[i++]);
        this._check(sn);
      } else mine[j++]();
    }
  }

  /** The Raft world's apply, plus invariant M on every assignment. */
  override _apply(sn: SN, rd: Ready): void {
    if (rd.snapshot) {
      const r = sn.state.restore(rd.snapshot.data);
      if (r) this._violate(sn.id + ' received an unreadable snapshot: ' + r);
    }
    for (let i = 0; i < rd.committed.length; i++) {
      const e = rd.committed[i];
      let cmd: unknown = { t: 'noop' };
      if (e.kind !== 'noop') cmd = (decodeCommand(e.data) as { c: unknown }).c;
      const c = cmd as ClusterCommand;
      const observer = sn.k === this._firstUp();
      let before: ClusterState | null = null;
      if (c && c.t === 'device.assign' && observer) before = ClusterState.fromSnapshot(sn.state.snapshot()) as ClusterState;
      const res = sn.state.apply(e.index, cmd);
      if (sn.state.appliedIndex !== e.index) this._violate(sn.id + ' applied out of order at ' + e.index);
      if (!res.ok || !observer) continue;
      if (c.t === 'device.assign' && before) {
        const p = this.placements.of(before);
        for (const dev of Object.keys(c.set)) {
          const to = c.set[dev];
          if (to === null || before.owner(dev) === to) continue;
          this.assignments++;
          const from = before.owner(dev);
          if (from !== undefined && !p.onRing(from)) {
            // A takeover from an owner that left the ring: how much acknowledged data is the new
            // owner missing right now (the heir rule makes this 0 unless the heir changed since)?
            this.takeovers++;
            const disk = this.ext[this.ids.indexOf(to)].disk;
            for (const seq of this.ackedByDev.get(dev) ?? []) {
              if (disk.has(dev, seq)) continue;
              this.takeoverMissing++;
            }
          }
          const want = p.owner(dev);
          if (to !== want) this._violate('M: ' + dev + ' assigned to ' + to + ' at index ' + e.index + ' but its ring owner at epoch ' + before.epoch + ' is ' + want);
        }
      } else if (c.t === 'member.update' && typeof c.addr === 'string' && c.addr.endsWith('|out')) {
        this.ringOuts++;
      }
    }
  }

  _firstUp(): number {
    for (let k = 0; k < this.nodes.length; k++) if (this.nodes[k].up) return k;
    return -1;
  }

  // ---------------------------------------------------------------- companions

  _newCore(sn: SN): void {
    const x = this.ext[sn.k];
    const id = sn.id;
    x.core = new ClusterNode(
      {
        self: id,
        advertise: formatMemberAddr({ broker: { host: id, port: 1883 }, repl: { host: id, port: 7001 }, raft: { host: id, port: 7000 } }),
        replicas: this.ccfg.replicas,
        acks: this.ccfg.acks,
        slotBits: 10,
        syncEveryMs: 300,
        ...this.ccfg.node,
        store: x.disk,
      },
      sn.state,
      this._local(sn.k),
    );
    x.sessions.clear();
    x.pending.clear();
  }

  /** The node's own clock: simulated time scaled by its drift rate. */
  _local(k: number): number {
    const x = this.ext[k];
    x.local += (this.now - x.lastSim) * this.nodes[k].rate;
    x.lastSim = this.now;
    return x.local;
  }

  _raft(sn: SN): RaftView {
    const n = sn.node;
    return { role: n.role, term: n.term, leader: n.leader, lease: n.hasLease(), commit: n.log.committed, applied: n.log.applied, voters: n.voters() };
  }

  /** Run `fn` on companion k now, or when it resumes; nothing if it is down. */
  _at(k: number, fn: (sn: SN, core: ClusterNode) => void): void {
    const sn = this.nodes[k];
    const x = this.ext[k];
    if (!sn.up || !x.core) return;
    if (sn.paused) {
      x.inbox.push(() => this._at(k, fn));
      return;
    }
    fn(sn, x.core);
    if (sn.up && this.ext[k].core) this._drain(k);
  }

  _clusterTick(k: number, gen: number): void {
    const sn = this.nodes[k];
    if (sn.gen !== gen) return;
    this._later(CLUSTER_TICK_MS / sn.rate, () => this._clusterTick(k, gen));
    if (!sn.up || sn.paused || !this.ext[k].core) return;
    (this.ext[k].core as ClusterNode).tick(this._local(k), this._raft(sn));
    this._drain(k);
  }

  /** Move the core's outputs into the world: messages, proposals, finished writes. */
  _drain(k: number): void {
    const sn = this.nodes[k];
    const x = this.ext[k];
    const core = x.core;
    if (!core || !sn.up) return;
    for (const o of core.takeOutbox()) this._replSend(k, o.to, o.msg);
    const props = core.takeProposals();
    for (const cmd of props) {
      this._checkStale(k, 'proposed ' + cmd.t);
      const r = sn.node.propose({ data: this._envelope(cmd) });
      this.proposals++;
      this._log(sn.id + ' CLUSTER ' + cmd.t + (cmd.t === 'member.update' ? ' ' + cmd.id + ' ' + cmd.addr : cmd.t === 'device.assign' ? ' ' + Object.keys(cmd.set).length : '') + ' -> ' + (r.ok ? 'ok' : (r as { reason: string }).reason));
      this._flush(sn);
      if (!sn.up) return;
    }
    for (const dev of core.takeMovedAway()) {
      const sid = x.sessions.get(dev);
      if (sid !== undefined) this._rejectPublish(k, dev, sid, 'moved');
    }
    for (const d of core.takeDone()) {
      const p = x.pending.get(d.id);
      if (!p) continue;
      x.pending.delete(d.id);
      if (d.ok) this._puback(k, p.dev, p.seq, p.sid);
      else this._rejectPublish(k, p.dev, p.sid, d.reason);
    }
  }

  _replSend(from: number, to: string, msg: ReplMessage): void {
    const k = this.ids.indexOf(to);
    if (k < 0) return;
    this.sent++;
    if (this.group[from] !== this.group[k] || this._chance(this.loss)) {
      this.dropped++;
      return;
    }
    const text = JSON.stringify(msg);
    this._later(this._delay(), () => this._replDeliver(k, text));
    if (this._chance(this.dup)) this._later(this._delay(), () => this._replDeliver(k, text));
  }

  _replDeliver(k: number, text: string): void {
    this._at(k, (sn, core) => {
      this.delivered++;
      const p = parseReplMessage(JSON.parse(text), sn.id);
      if (!p.ok) {
        this._violate(sn.id + ' could not parse a replication message from a peer: ' + p.reason);
        return;
      }
      const job = core.receive(this._local(k), this._raft(sn), p.msg);
      if (job) this._runJob(k, job);
    });
  }

  _runJob(k: number, job: StoreJob): void {
    const sn = this.nodes[k];
    if (this._chance(this.crashMidWriteP)) {
      this._crash(sn, 'during a telemetry write');
      return;
    }
    this.ext[k].disk.write(job.recs);
    (this.ext[k].core as ClusterNode).stored(this._local(k), job, true);
  }

  // ---------------------------------------------------------------- devices

  _deviceTick(i: number): void {
    this._later(DEVICE_TICK_MS, () => this._deviceTick(i));
    const d = this.devs[i];
    if (!this.healed && this.now >= d.nextSampleAt) {
      d.nextSampleAt = this.now + this.ccfg.sampleMs;
      d.outbox.push(d.seq++);
      this.readings++;
      if (d.outbox.length > OUTBOX_MAX) d.sent.delete(d.outbox.shift() as number);
    }
    if (d.session) {
      const sn = this.nodes[d.session.k];
      if (sn.gen !== d.session.gen || !sn.up) return;
      // MQTT keepalive: a stopped broker answers nothing; the device gives up on it.
      if (sn.paused && this.now - Math.max(d.lastAckAt, d.sessionAt) > KEEPALIVE_MS) {
        this._loseSession(i, d.session.sid, 'keepalive');
        return;
      }
      this._publishMore(i);
      return;
    }
    if (!d.connecting && this.now >= d.beaconAt) {
      // A burst while without a session, every 150-300 ms.
      d.beaconAt = this.now + this._rand(150, 300);
      for (let k = 0; k < this.nodes.length; k++) {
        if (this._chance(this.loss)) continue;
        this._later(this._delay(), () => this._beacon(k, i));
      }
    }
  }

  _beacon(k: number, i: number): void {
    this._at(k, (sn, core) => {
      const offer = core.offerFor(this._local(k), this._raft(sn), this.devs[i].id);
      if (!offer) return;
      this.offers++;
      // How much acknowledged data does the companion that offers lack? (Split brain leaves some:
      // an owner in a minority, or one that has not applied the move yet, acknowledges a little
      // longer; those readings are durable on W companions and reach the new owner by anti-entropy.)
      for (const seq of this.ackedByDev.get(this.devs[i].id) ?? []) {
        if (this.ext[k].disk.has(this.devs[i].id, seq)) continue;
        this.offerMissing++;
      }
      this._checkStale(k, 'offered ' + this.devs[i].id);
      const gen = sn.gen;
      if (this._chance(this.loss)) return;
      this._later(this._delay(), () => this._offer(i, k, gen));
    });
  }

  _offer(i: number, k: number, gen: number): void {
    const d = this.devs[i];
    if (d.session || d.connecting) return;
    d.connecting = true;
    this._later(this._delay(), () => this._connect(i, k, gen));
  }

  _connect(i: number, k: number, gen: number): void {
    const d = this.devs[i];
    const sn = this.nodes[k];
    if (!sn.up || sn.gen !== gen) {
      // Refused: nobody listens there any more.
      this._later(this._delay(), () => {
        d.connecting = false;
      });
      return;
    }
    if (sn.paused) {
      this._later(CONNECT_TIMEOUT_MS, () => {
        if (d.connecting && !d.session) d.connecting = false;
      });
      return;
    }
    const sid = ++this.sid;
    this.ext[k].sessions.set(d.id, sid);
    this.sessionsOpened++;
    this._later(this._delay(), () => {
      if (!d.connecting || d.session) return;
      d.connecting = false;
      if (!sn.up || sn.gen !== gen || this.ext[k].sessions.get(d.id) !== sid) return;
      d.session = { k, gen, sid };
      d.sessionAt = this.now;
      d.sent.clear();
      this._publishMore(i);
    });
  }

  _publishMore(i: number): void {
    const d = this.devs[i];
    const s = d.session;
    if (!s) return;
    for (let j = 0; j < d.outbox.length && d.sent.size < WINDOW; j++) {
      const seq = d.outbox[j];
      if (d.sent.has(seq)) continue;
      d.sent.add(seq);
      this._later(this._delay(), () => this._publish(s.k, s.gen, d.id, seq, s.sid));
    }
  }

  /** A QoS 1 PUBLISH reaches the companion's broker: store durably, then replicate, then PUBACK. */
  _publish(k: number, gen: number, dev: string, seq: number, sid: number): void {
    if (this.nodes[k].gen !== gen) return;
    this._at(k, (sn, core) => {
      const x = this.ext[k];
      if (x.sessions.get(dev) !== sid) return;
      if (this._chance(this.crashMidWriteP)) {
        this._crash(sn, 'during an ingest write');
        return;
      }
      const rec: TelemetryRecord = { device: dev, seq, ts: 1_700_000_000_000 + seq * 1000, hist: 0, r: { v: seq } };
      x.disk.write([rec]);
      if (this.ccfg.buggyAckBeforeReplication) {
        this._puback(k, dev, seq, sid);
        return;
      }
      // Duplicates go through replication too: a retransmission after a failed quorum must
      // not be acknowledged on the strength of the local copy alone.
      const w = core.beginWrite(this._local(k), this._raft(sn), rec);
      if ('err' in w) this._rejectPublish(k, dev, sid, w.err);
      else if ('done' in w) this._puback(k, dev, seq, sid);
      else x.pending.set(w.id, { dev, seq, sid });
    });
  }

  _rejectPublish(k: number, dev: string, sid: number, reason: string): void {
    this.ackFailures[reason] = (this.ackFailures[reason] ?? 0) + 1;
    const x = this.ext[k];
    if (x.sessions.get(dev) === sid) x.sessions.delete(dev);
    const i = this.devs.findIndex((d) => d.id === dev);
    // The broker closes the connection: no PUBACK, the device resends on its next session.
    this._later(this._delay(), () => this._loseSession(i, sid, 'rejected:' + reason));
  }

  _puback(k: number, dev: string, seq: number, sid: number): void {
    const sn = this.nodes[k];
    const key = dev + '|' + seq;
    this._checkStale(k, 'acknowledged ' + key);
    // O: only the owner in its own applied state acknowledges.
    const owner = sn.state.owner(dev);
    if (owner !== sn.id && !this.ccfg.buggyAckBeforeReplication) {
      this._violate('O: ' + sn.id + ' acknowledged ' + key + ' but its state names ' + owner + ' as the owner');
      return;
    }
    // D: durable on at least W companions now.
    const p = this.placements.of(sn.state);
    const set = p.replicaSet(sn.id, dev, this.ccfg.replicas);
    const need = Math.max(quorumOf(this.ccfg.replicas), copiesNeeded(this.ccfg.acks, this.ccfg.replicas, set.length));
    let copies = 0;
    for (let j = 0; j < this.ext.length; j++) if (this.ext[j].disk.has(dev, seq)) copies++;
    if (copies < need) {
      this._violate('D: ' + sn.id + ' acknowledged ' + key + ' with ' + copies + ' durable copies, ' + need + ' needed');
      return;
    }
    // H: the heir holds it.
    if (set.length > 1) {
      const heir = this.ids.indexOf(set[1]);
      if (!this.ext[heir].disk.has(dev, seq)) {
        this._violate('H: ' + sn.id + ' acknowledged ' + key + ' but the heir ' + set[1] + ' does not hold it');
        return;
      }
    }
    const prev = this.ackedKeys.get(key);
    if (prev === undefined) {
      const list = this.ackedByDev.get(dev) ?? [];
      list.push(seq);
      this.ackedByDev.set(dev, list);
    }
    if (prev === undefined || need > prev) this.ackedKeys.set(key, need);
    const i = this.devs.findIndex((d) => d.id === dev);
    this._later(this._delay(), () => {
      const d = this.devs[i];
      if (!d.session || d.session.sid !== sid) return;
      d.lastAckAt = this.now;
      if (d.lostAt > 0) {
        if (!this.healed) this.outages.push(this.now - d.lostAt);
        d.lostAt = 0;
      }
      const at = d.outbox.indexOf(seq);
      if (at >= 0) d.outbox.splice(at, 1);
      d.sent.delete(seq);
      this._publishMore(i);
    });
  }

  _loseSession(i: number, sid: number, why: string): void {
    const d = this.devs[i];
    if (!d.session || d.session.sid !== sid) return;
    const x = this.ext[d.session.k];
    if (x.sessions.get(d.id) === sid) x.sessions.delete(d.id);
    d.session = null;
    d.sent.clear();
    d.connecting = false;
    if (d.lostAt === 0) d.lostAt = this.now;
    d.beaconAt = this.now + this._rand(0, 100);
    this._log(d.id + ' session lost (' + why + ')');
  }

  // ---------------------------------------------------------------- invariants

  /** S: after a pause past the election timeout, nothing before catching up with the newest led term. */
  _checkStale(k: number, what: string): void {
    const x = this.ext[k];
    const sn = this.nodes[k];
    if (!x.wake) return;
    if (sn.node.term >= x.wake.term) {
      x.wake = null;
      return;
    }
    this._violate('S: ' + sn.id + ' ' + what + ' ' + Math.round(this.now - x.wake.at) + ' ms after waking from a pause, in term ' + sn.node.term + ' while term ' + x.wake.term + ' had a leader');
  }

  _periodicCheck(): void {
    this._later(CHECK_EVERY_MS, () => this._periodicCheck());
    if (this.healed && this._clusterConverged()) this.clusterConvergeMs = this.now - this.healAt;
  }

  /** The leader's committed state, or null. */
  _leaderState(): { sn: SN; state: ClusterState } | null {
    const li = this._acknowledgedLeader();
    if (li < 0) return null;
    return { sn: this.nodes[li], state: this.nodes[li].state };
  }

  _clusterConverged(): boolean {
    return this._whyNotConverged() === '';
  }

  _whyNotConverged(): string {
    const l = this._leaderState();
    if (!l) return 'no leader';
    const st = l.state;
    const members = st.members();
    if (members.length !== this.nodes.length) return 'members registered: ' + members.length;
    for (const m of members) if (m.addr.endsWith('|out')) return m.id + ' off the ring';
    const p = this.placements.of(st);
    for (let k = 0; k < this.nodes.length; k++) {
      const sn = this.nodes[k];
      if (!sn.up || sn.paused) return sn.id + ' not running';
      if (sn.state.appliedIndex < st.appliedIndex) return sn.id + ' behind the leader';
    }
    for (const d of this.devs) {
      const owner = st.owner(d.id);
      if (owner !== p.owner(d.id)) return d.id + ' owner ' + owner + ' is not its ring owner ' + p.owner(d.id);
      if (!d.session || this.ids[d.session.k] !== owner) return d.id + ' not connected to its owner ' + owner;
      if (d.outbox.length > 0) return d.id + ' has ' + d.outbox.length + ' unacknowledged readings';
      const union = new Set<number>();
      for (const x of this.ext) for (const s of x.disk.seqs(d.id)) union.add(s);
      for (const r of p.replicaSet(owner, d.id, this.ccfg.replicas)) {
        const disk = this.ext[this.ids.indexOf(r)].disk;
        let missing = 0;
        union.forEach((s) => {
          if (!disk.has(d.id, s)) missing++;
        });
        if (missing > 0) return r + ' lacks ' + missing + ' readings of ' + d.id;
      }
    }
    return '';
  }

  /** D again, over everything, at the end: copies on disk never disappear. */
  _finalCheck(): void {
    this.ackedKeys.forEach((need, key) => {
      if (this.violation) return;
      const bar = key.lastIndexOf('|');
      const dev = key.slice(0, bar);
      const seq = Number(key.slice(bar + 1));
      let copies = 0;
      for (const x of this.ext) if (x.disk.has(dev, seq)) copies++;
      if (copies < need) this._violate('D (final): ' + key + ' held by ' + copies + ' companions, ' + need + ' needed');
    });
  }
}

/** Run one cluster simulation (tests and replay). */
export function simulateCluster(c: ClusterSimConfig): ClusterSimResult {
  return new ClusterSim(c).runCluster();
}
