/**
 * The companion: the registry, the bus, durable ingest, discovery and RPC wired together. Every
 * part is its own module with its own tests; this file only connects them and owns the timers
 * that drive liveness. It implements CompanionApi for the front ends.
 *
 * Ingest ORDER: a telemetry PUBLISH is parsed, appended to SQLite and committed BEFORE the bus
 * hook resolves, and the embedded broker sends the PUBACK only AFTER that: a PUBACK means stored.
 * A malformed reading is acknowledged and counted (a poison message must not make a device
 * retransmit it forever) and never stored.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import type { Beacon } from '../firmware/wire/beacon.js';
import type { Bus, BusPacketInfo } from './bus/bus.js';
import { createBus } from './bus/create-bus.js';
import type { ClusterView, CompanionApi, CompanionEvent, DeviceMeta, DeviceView, HealthView, RpcResult, TelemetryQuery } from './companion-api.js';
import { RpcError, SENSORS_SHOWN_MAX } from './companion-api.js';
import { DiscoveryService, type OfferTarget } from './discovery/discovery-service.js';
import { HaService } from './ha/ha-service.js';
import { nodeMac } from './discovery/node-mac.js';
import type { Logger } from './log.js';
import { RpcClient } from './rpc/rpc-client.js';
import { openDataDir, type OpenDatabase } from './store/database.js';
import { RegistryStore, type Liveness } from './store/registry-store.js';
import { parseTelemetryPayload, type TelemetryRecord } from './store/telemetry-record.js';
import { TelemetryStore } from './store/telemetry-store.js';

export interface CompanionOptions {
  nodeId: string;
  dataDir: string;
  fleetKey: string;
  /** Address the TCP listeners (MQTT, HTTP) bind. */
  bind: string;
  mqttPort: number;
  discoveryPort: number;
  /** External broker URL instead of the embedded broker. */
  brokerUrl?: string;
  /** Host name devices use to reach the broker (default: the bind address, or 127.0.0.1 for a wildcard bind). */
  advertiseHost?: string;
  /** A device silent this long (no session, no beacon) becomes stale, then down (defaults 90 s, 10 min). */
  staleAfterMs?: number;
  downAfterMs?: number;
  /** Telemetry kept per device (default 30 days, 100k rows). */
  retentionMs?: number;
  rowsPerDeviceMax?: number;
  log: Logger;
  /** The companion's version, for Home Assistant's origin block. */
  version?: string;
  /** Replaces the offer target (the cluster decides owners). */
  offerFor?: (b: Beacon) => OfferTarget | null;
  /** Called after a reading is stored and BEFORE its PUBACK (replication hooks in here). */
  afterStore?: (rec: TelemetryRecord) => Promise<void>;
  cluster?: () => ClusterView;
}

/** Live events kept for one slow subscriber before it is dropped: the dashboard must not grow the heap. */
const SUBSCRIBERS_MAX = 256;
const LIVENESS_EVERY_MS = 2000;
const RETENTION_EVERY_MS = 3600_000;
const LOG_EVERY_MS = 10_000;
/** Stored readings a device's per-sensor values are seeded from after a restart. */
const SENSOR_SEED_ROWS = 64;

/** Records r's numeric values at ts where they are newer (a replayed reading is older). */
function noteSensors(m: Map<string, { v: number; ts: number }>, ts: number, r: Record<string, unknown>): void {
  for (const k of Object.keys(r)) {
    const v = r[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) continue;
    const prev = m.get(k);
    if (prev ? ts < prev.ts : m.size >= SENSORS_SHOWN_MAX) continue;
    m.set(k, { v, ts });
  }
}

export class Companion implements CompanionApi {
  readonly nodeId: string;
  readonly startedAt = Date.now();
  bus!: Bus;
  telemetryStore!: TelemetryStore;
  registry!: RegistryStore;
  discovery!: DiscoveryService;
  rpcClient!: RpcClient;
  ha!: HaService;
  private db: OpenDatabase | null = null;
  private readonly online = new Set<string>();
  private readonly metas = new Map<string, DeviceMeta>();
  /** Per device, each sensor's newest value (see sensorsOf); forgotten with the device. */
  private readonly sensorLatest = new Map<string, Map<string, { v: number; ts: number }>>();
  private readonly subscribers = new Set<(ev: CompanionEvent) => void>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly counters = { badTelemetry: 0, duplicates: 0, stored: 0 };
  private readonly log: Logger;
  private readonly lastBadLog = new Map<string, number>();
  private readonly badReasons: Record<string, number> = Object.create(null);
  private readonly onMetaHooks: Array<(id: string, meta: DeviceMeta) => void> = [];

  constructor(private readonly o: CompanionOptions) {
    this.nodeId = o.nodeId;
    this.log = o.log;
  }

  async start(): Promise<void> {
    mkdirSync(this.o.dataDir, { recursive: true });
    this.db = openDataDir(this.o.dataDir);
    this.telemetryStore = new TelemetryStore(this.db.db);
    this.registry = new RegistryStore(this.db.db);
    this.bus = createBus({
      brokerUrl: this.o.brokerUrl,
      embedded: { fleetKeyHex: this.o.fleetKey, host: this.o.bind, port: this.o.mqttPort, log: this.log.bus },
      external: { clientId: `espfleet-companion-${this.nodeId}`, log: this.log.bus },
    });
    // Hooks BEFORE start: an external broker delivers queued messages right after connecting.
    this.bus.onDevicePublish((id, topic, payload, packet) => this.ingest(id, topic, payload, packet));
    this.bus.onClientEvent((ev) => {
      if (!ev.deviceId) return;
      if (ev.type === 'connect') this.setOnline(ev.deviceId, true, 'session');
      else this.setOnline(ev.deviceId, false, ev.reason);
    });
    await this.bus.start();
    await this.bus.subscribe('espfleet/+/meta', (topic, payload) => this.onMeta(topic, payload));
    await this.bus.subscribe('espfleet/+/health', (topic, payload) => this.onHealth(topic, payload));
    if (this.bus.kind === 'external') {
      // With an external broker the companion learns liveness from the retained status topics.
      await this.bus.subscribe('espfleet/+/status', (topic, payload) => {
        const id = topic.split('/')[1];
        this.setOnline(id, payload.toString() === 'online', 'status ' + payload.toString());
      });
    }
    this.rpcClient = new RpcClient({
      bus: this.bus,
      onBreaker: (id, state) => this.emit({ type: 'breaker', id, state, at: Date.now() }),
      log: (l, f) => this.log.warn(l, f),
    });
    await this.rpcClient.start();
    this.discovery = new DiscoveryService({
      port: this.o.discoveryPort,
      mac: nodeMac(this.o.fleetKey),
      fleetKey: this.o.fleetKey,
      // A device with a session here needs no offer: it is where it should be.
      offerFor: (b) => (this.o.offerFor ? this.o.offerFor(b) : this.online.has(b.id) ? null : this.selfOffer()),
      onBeacon: (b, from, now) => this.onBeacon(b, from, now),
      log: (l, f) => this.log.warn(l, f),
    });
    await this.discovery.start();
    // Home Assistant sees every device that tells us its sensors (its retained meta topic).
    this.ha = new HaService({ bus: this.bus, log: this.log.bus, swVersion: this.o.version });
    await this.ha.start();
    this.onMetaChange((id, meta) => {
      void this.ha.announce({ id, fw: meta.fw, board: meta.board, sensors: meta.sensors });
    });
    this.timers.push(setInterval(() => this.sweep(), LIVENESS_EVERY_MS));
    this.timers.push(setInterval(() => void this.prune(), RETENTION_EVERY_MS));
    for (const t of this.timers) t.unref();
    this.log.info('companion started', { node: this.nodeId, bus: this.bus.kind, broker: this.bus.address(), discoveryPort: this.discovery.port() });
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    await this.discovery?.stop();
    await this.ha?.stop();
    await this.rpcClient?.stop();
    await this.bus?.stop();
    this.telemetryStore?.close();
    this.registry?.close();
    this.db?.close();
    this.db = null;
  }

  /** Where this companion tells devices to connect. */
  selfOffer(): OfferTarget | null {
    const a = this.bus.address();
    if (!a) return null;
    const host = this.o.advertiseHost ?? (a.host === '0.0.0.0' || a.host === '::' ? '127.0.0.1' : a.host);
    return { host: this.nodeId, broker: { host, port: a.port }, epoch: 0 };
  }

  onMetaChange(fn: (id: string, meta: DeviceMeta) => void): void {
    this.onMetaHooks.push(fn);
  }

  private async ingest(id: string, topic: string, payload: Buffer, _packet: BusPacketInfo): Promise<void> {
    const kind = topic.slice(topic.lastIndexOf('/') + 1);
    if (kind === 'telemetry') {
      const rec = parseTelemetryPayload(id, payload);
      if (!rec.ok) {
        this.counters.badTelemetry++;
        // Counted by reason (bounded: reasons can quote a device's field names).
        const key = this.badReasons[rec.reason] !== undefined || Object.keys(this.badReasons).length < 64 ? rec.reason : 'other';
        this.badReasons[key] = (this.badReasons[key] ?? 0) + 1;
        // One line per device per LOG_EVERY_MS: an authenticated client must not flood the log.
        const now = Date.now();
        if (now - (this.lastBadLog.get(id) ?? 0) >= LOG_EVERY_MS) {
          if (this.lastBadLog.size >= 4096) this.lastBadLog.clear();
          this.lastBadLog.set(id, now);
          this.log.warn('telemetry rejected', { device: id, reason: rec.reason, rejected: this.counters.badTelemetry });
        }
        return;
      }
      const r = await this.telemetryStore.append(rec.value);
      // A retransmission may be of a reading whose replication failed the first time (no PUBACK
      // then): replicate again BEFORE acknowledging it. Replication is idempotent per (device, seq).
      if (this.o.afterStore) await this.o.afterStore(rec.value);
      if (r.dup) {
        this.counters.duplicates++;
        return;
      }
      this.counters.stored++;
      const known = this.sensorLatest.get(id);
      if (known) noteSensors(known, rec.value.ts, rec.value.r);
      this.emit({ type: 'telemetry', id, seq: rec.value.seq, ts: rec.value.ts, r: rec.value.r, hist: rec.value.hist });
    } else if (kind === 'status') {
      const s = payload.toString('latin1');
      if (s === 'online' || s === 'offline') this.setOnline(id, s === 'online', s === 'offline' ? 'will' : 'birth');
    }
  }

  private onMeta(topic: string, payload: Buffer): void {
    const id = topic.split('/')[1];
    if (payload.length === 0 || payload.length > 2048) return;
    try {
      const m = JSON.parse(payload.toString('utf8'));
      if (!m || typeof m.fw !== 'string' || typeof m.board !== 'string' || !Array.isArray(m.sensors)) return;
      const sensors = (m.sensors as unknown[])
        .filter((s): s is { n: string; u?: string; k?: string } => !!s && typeof (s as { n?: unknown }).n === 'string')
        .slice(0, 16)
        .map((s) => ({ n: String(s.n).slice(0, 32), u: String(s.u ?? '').slice(0, 16), k: String(s.k ?? '').slice(0, 16) }));
      const meta: DeviceMeta = { fw: m.fw.slice(0, 32), board: m.board.slice(0, 16), sensors };
      this.metas.set(id, meta);
      for (const fn of this.onMetaHooks) fn(id, meta);
    } catch {
      this.log.warn('meta rejected', { device: id });
    }
  }

  private onHealth(topic: string, payload: Buffer): void {
    const id = topic.split('/')[1];
    if (payload.length > 1024) return;
    try {
      const h = JSON.parse(payload.toString('utf8'));
      if (h && typeof h === 'object') this.registry.reportHealth(id, { breaker: h.br, outbox: h.ob }, Date.now());
    } catch {
      // malformed health reports are ignored: they are advisory
    }
  }

  private onBeacon(b: Beacon, from: { address: string; port: number }, now: number): void {
    // A beaconing device without a session is reachable but not connected: stale until it connects.
    const online = this.online.has(b.id);
    const sighting = { id: b.id, kind: b.kind, fw: b.fw, caps: b.caps, mem: b.mem, seq: b.seq, upMs: b.up, addr: from.address, port: b.port };
    const r = this.registry.upsertBeacon(sighting, now, online ? 'up' : 'stale', online ? 'beacon' : 'beacon without session');
    if (!r.ok) {
      this.log.warn('beacon not recorded', { device: b.id, reason: r.reason });
      return;
    }
    if (r.change) this.emit({ type: 'device', id: b.id, state: r.change.to, reason: r.change.reason, at: r.change.atMs });
  }

  private setOnline(id: string, on: boolean, reason: string): void {
    if (on) {
      this.online.add(id);
      this.applyState(id, 'up', reason);
    } else if (this.online.delete(id) || reason === 'will') {
      this.applyState(id, 'down', reason);
    }
  }

  private applyState(id: string, state: Liveness, reason: string, now = Date.now()): void {
    const c = this.registry.setState(id, state, reason, now);
    if (c) this.emit({ type: 'device', id, state: c.to, reason: c.reason, at: c.atMs });
  }

  /** Devices without a session move to stale, then down, by the silence of their beacons. */
  private sweep(): void {
    const now = Date.now();
    const stale = this.o.staleAfterMs ?? 90_000;
    const down = this.o.downAfterMs ?? 600_000;
    for (const d of this.registry.list()) {
      if (this.online.has(d.id)) continue;
      const silent = now - d.lastSeenMs;
      if (silent >= down && d.state !== 'down') this.applyState(d.id, 'down', 'silent');
      else if (silent >= stale && d.state === 'up') this.applyState(d.id, 'stale', 'silent');
    }
  }

  private async prune(): Promise<void> {
    try {
      await this.telemetryStore.prune({ maxAgeMs: this.o.retentionMs ?? 30 * 86400_000, rowsPerDeviceMax: this.o.rowsPerDeviceMax ?? 100_000 }, Date.now());
    } catch (e) {
      this.log.error('retention failed', { error: String(e) });
    }
  }

  emit(ev: CompanionEvent): void {
    for (const fn of this.subscribers) {
      try {
        fn(ev);
      } catch (e) {
        this.log.warn('event subscriber failed', { error: String(e) });
      }
    }
  }

  // --- CompanionApi ---

  health(): HealthView {
    const c = this.bus.counters();
    return {
      ok: true,
      nodeId: this.nodeId,
      uptimeMs: Date.now() - this.startedAt,
      devices: this.registry.count(),
      bus: { kind: this.bus.kind, clients: c.clientsConnected },
      ingested: this.counters.stored,
    };
  }

  private view(d: ReturnType<RegistryStore['get']> & object): DeviceView {
    const latest = this.telemetryStore.latest(d.id);
    return { ...d, meta: this.metas.get(d.id) ?? null, online: this.online.has(d.id), latest, sensors: this.sensorsOf(d.id, latest), rpcBreaker: this.rpcClient.breakerState(d.id) };
  }

  /**
   * Each sensor's newest value, kept as readings are stored; a device not seen since start is
   * seeded from its newest SENSOR_SEED_ROWS stored readings. Bounded: the registry's devices,
   * SENSORS_SHOWN_MAX names each.
   */
  private sensorsOf(id: string, latest: TelemetryRecord | null): Record<string, { v: number; ts: number }> {
    let m = this.sensorLatest.get(id);
    if (!m) {
      m = new Map();
      if (latest) for (const rec of this.telemetryStore.query(id, { order: 'desc', limit: SENSOR_SEED_ROWS })) noteSensors(m, rec.ts, rec.r);
      this.sensorLatest.set(id, m);
    }
    return Object.fromEntries(m);
  }

  devices(): DeviceView[] {
    return this.registry.list().map((d) => this.view(d));
  }

  device(id: string): DeviceView | null {
    const d = this.registry.get(id);
    return d ? this.view(d) : null;
  }

  telemetry(id: string, q: TelemetryQuery): TelemetryRecord[] {
    return this.telemetryStore.query(id, { since: q.since, until: q.until, limit: q.limit });
  }

  async rpc(id: string, method: string, params: unknown, timeoutMs: number): Promise<RpcResult> {
    if (!this.registry.get(id) && !this.online.has(id)) throw new RpcError('unknown_device', `no device ${id}`);
    return this.rpcClient.call(id, method, params, timeoutMs, this.online.has(id));
  }

  cluster(): ClusterView {
    if (this.o.cluster) return this.o.cluster();
    return {
      nodeId: this.nodeId,
      members: [{ id: this.nodeId, addr: this.o.bind, up: true, weight: 1, self: true }],
      leader: this.nodeId,
      term: 0,
      ring: { epoch: 0, owners: [{ id: this.nodeId, devices: this.registry.count() }] },
      replicas: [],
      mode: 'single',
    };
  }

  subscribe(fn: (ev: CompanionEvent) => void): () => void {
    if (this.subscribers.size >= SUBSCRIBERS_MAX) throw new Error(`more than ${SUBSCRIBERS_MAX} event subscribers`);
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  stats(): Record<string, unknown> {
    return { ...this.counters, badTelemetryReasons: { ...this.badReasons }, bus: this.bus.counters(), discovery: this.discovery.counters, rpc: this.rpcClient.counters, store: this.telemetryStore.stats() };
  }
}

/** A fresh random fleet key (32 bytes, hex). */
export function newFleetKey(): string {
  return randomBytes(32).toString('hex');
}
