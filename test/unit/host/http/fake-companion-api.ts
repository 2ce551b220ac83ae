/**
 * An in-memory CompanionApi for the HTTP tests: devices, readings and the cluster view are plain
 * data the test changes; `emit` plays the companion's live events; RPC answers come from a
 * handler the test sets (default: ping -> "pong", info -> the device's record, read -> a value).
 */
import { RpcError, type ClusterView, type CompanionApi, type CompanionEvent, type DeviceView, type HealthView, type RpcResult, type TelemetryQuery } from '../../../../host/companion-api.js';
import type { TelemetryRecord } from '../../../../host/store/telemetry-record.js';

export interface RpcCallSeen {
  id: string;
  method: string;
  params: unknown;
  timeoutMs: number;
}

export class FakeCompanionApi implements CompanionApi {
  readonly nodeId = 'node-a';
  readonly views = new Map<string, DeviceView>();
  readonly readings = new Map<string, TelemetryRecord[]>();
  readonly calls: RpcCallSeen[] = [];
  readonly queries: Array<{ id: string; q: TelemetryQuery }> = [];
  ok = true;
  leader: string | null = 'node-a';
  term = 3;
  rpcHandler: (id: string, method: string, params: unknown) => Promise<unknown> | unknown = (id, method, params) => {
    if (method === 'ping') return 'pong';
    if (method === 'info') return { id, fw: this.views.get(id)?.fw };
    if (method === 'read') return 21.5;
    throw new RpcError('device_error', 'no method ' + method, { code: 'E_METHOD', msg: 'no method ' + method });
  };
  private readonly subs = new Set<(ev: CompanionEvent) => void>();

  constructor(now = Date.now()) {
    this.addDevice('dev-1', { now, state: 'up', readings: [20, 21, 22.5] });
    this.addDevice('dev-2', { now, state: 'stale', readings: [] });
  }

  /** Adds a device (no event: the test emits one when it wants the live path). */
  addDevice(id: string, o: { now?: number; state?: 'up' | 'stale' | 'down'; readings?: number[]; health?: DeviceView['health'] } = {}): DeviceView {
    const now = o.now ?? Date.now();
    const recs: TelemetryRecord[] = (o.readings ?? []).map((t, i) => ({ device: id, seq: i + 1, ts: now - (o.readings!.length - i) * 5000, hist: 0, r: { t, hum: 40 + i } }));
    const v: DeviceView = {
      id,
      kind: 'esp32',
      fw: '0.1.0',
      caps: ['mqtt', 'rpc'],
      mem: 9000,
      addr: '127.0.0.1',
      port: 5000,
      beaconSeq: 7,
      upMs: 60_000,
      firstSeenMs: now - 600_000,
      lastSeenMs: now - 2000,
      state: o.state ?? 'up',
      stateReason: o.state === 'up' || o.state === undefined ? 'birth' : 'silent',
      stateSinceMs: now - 60_000,
      owner: 'node-a',
      health: o.health === undefined ? { breaker: { s: 0 }, outbox: { len: 2, dropped: 1 } } : o.health,
      healthAtMs: now - 3000,
      meta: { fw: '0.1.0', board: 'ESP32', sensors: [{ n: 't', u: '°C', k: 'simulated' }, { n: 'hum', u: '%', k: 'simulated' }] },
      online: (o.state ?? 'up') === 'up',
      latest: recs.length ? recs[recs.length - 1] : null,
      sensors: {},
      rpcBreaker: 'closed',
    };
    for (const rec of recs) noteSensors(v, rec);
    this.views.set(id, v);
    this.readings.set(id, recs);
    return v;
  }

  /** Stores a reading and emits its telemetry event, as the ingest path does. */
  ingest(id: string, seq: number, ts: number, r: Record<string, number>): void {
    const rec: TelemetryRecord = { device: id, seq, ts, hist: 0, r };
    this.readings.get(id)!.push(rec);
    this.views.get(id)!.latest = rec;
    noteSensors(this.views.get(id)!, rec);
    this.emit({ type: 'telemetry', id, seq, ts, r, hist: 0 });
  }

  setState(id: string, state: 'up' | 'stale' | 'down', reason: string, at = Date.now()): void {
    const v = this.views.get(id)!;
    v.state = state;
    v.stateReason = reason;
    v.stateSinceMs = at;
    v.online = state === 'up';
    this.emit({ type: 'device', id, state, reason, at });
  }

  emit(ev: CompanionEvent): void {
    for (const fn of this.subs) fn(ev);
  }

  subscribers(): number {
    return this.subs.size;
  }

  health(): HealthView {
    return { ok: this.ok, nodeId: this.nodeId, uptimeMs: 123_456, devices: this.views.size, bus: { kind: 'embedded', clients: 1 }, ingested: 42 };
  }

  devices(): DeviceView[] {
    return [...this.views.values()];
  }

  device(id: string): DeviceView | null {
    return this.views.get(id) ?? null;
  }

  telemetry(id: string, q: TelemetryQuery): TelemetryRecord[] {
    this.queries.push({ id, q });
    const rows = (this.readings.get(id) ?? []).filter((r) => (q.since === undefined || r.ts >= q.since) && (q.until === undefined || r.ts < q.until));
    return rows.slice(0, q.limit ?? 10_000);
  }

  async rpc(id: string, method: string, params: unknown, timeoutMs: number): Promise<RpcResult> {
    this.calls.push({ id, method, params, timeoutMs });
    if (!this.views.has(id)) throw new RpcError('unknown_device', `no device ${id}`);
    const t0 = Date.now();
    const result = await this.rpcHandler(id, method, params);
    return { result, ms: Date.now() - t0, attempts: 1 };
  }

  cluster(): ClusterView {
    return {
      nodeId: this.nodeId,
      members: [
        { id: 'node-a', addr: '127.0.0.1:7001', up: true, weight: 1, self: true },
        { id: 'node-b', addr: '127.0.0.1:7002', up: false, weight: 1, self: false },
      ],
      leader: this.leader,
      term: this.term,
      ring: { epoch: 5, owners: [{ id: 'node-a', devices: this.views.size }, { id: 'node-b', devices: 0 }] },
      replicas: [{ id: 'node-b', lagReadings: 12, up: false }],
      mode: 'cluster',
    };
  }

  subscribe(fn: (ev: CompanionEvent) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
}

/** What the companion keeps per sensor: the newest value of each. */
function noteSensors(v: DeviceView, rec: TelemetryRecord): void {
  for (const [k, x] of Object.entries(rec.r)) if (typeof x === 'number' && !(v.sensors[k]?.ts > rec.ts)) v.sensors[k] = { v: x, ts: rec.ts };
}
