/**
 * What the companion offers its front ends (the HTTP API, the dashboard, the CLI through HTTP):
 * one interface, implemented by the running companion (companion.ts) and by fakes in tests.
 * Front ends hold no state of their own beyond their connections.
 */
import type { DeviceRecord } from './store/registry-store.js';
import type { TelemetryRecord } from './store/telemetry-record.js';

/** A device as the front ends show it: the registry record plus what the session reported. */
export interface DeviceView extends DeviceRecord {
  /** From the device's retained meta topic: sensors with units, board, firmware. */
  meta: DeviceMeta | null;
  /** Whether an MQTT session of the device is up right now (embedded broker) or its status says online. */
  online: boolean;
  /** The newest stored reading, if any. */
  latest: TelemetryRecord | null;
  /**
   * Each sensor's newest value and its time, also for sensors the newest reading lacks (sensors
   * sampled at different rates): at most SENSORS_SHOWN_MAX names, newest readings win.
   */
  sensors: Record<string, { v: number; ts: number }>;
  /** State of the companion's per-device RPC breaker: closed | open | halfOpen | isolated. */
  rpcBreaker: string;
}

/** Sensor names a device view carries: 8 sensors, each with up to 4 window kinds. */
export const SENSORS_SHOWN_MAX = 32;

export interface DeviceMeta {
  fw: string;
  board: string;
  sensors: Array<{ n: string; u: string; k: string }>;
}

export interface TelemetryQuery {
  since?: number;
  until?: number;
  limit?: number;
}

/** RPC failures, each with a stable code the HTTP API maps to a status. */
export type RpcErrorCode = 'timeout' | 'device_down' | 'breaker_open' | 'device_error' | 'bad_request' | 'unknown_device' | 'busy';

export class RpcError extends Error {
  constructor(
    readonly code: RpcErrorCode,
    message: string,
    /** The device's own error (code, msg) when code is device_error. */
    readonly device?: { code: string; msg: string },
  ) {
    super(message);
  }
}

export interface RpcResult {
  /** The device's answer (`r`). */
  result: unknown;
  /** Round trip, ms. */
  ms: number;
  /** Attempts made (retries reuse the idempotency key). */
  attempts: number;
}

export interface ClusterView {
  nodeId: string;
  /** Members with their address and health, this node included. */
  members: Array<{ id: string; addr: string; up: boolean; weight: number; self: boolean }>;
  leader: string | null;
  term: number;
  /** Ring epoch and the owners' share of devices. */
  ring: { epoch: number; owners: Array<{ id: string; devices: number }> };
  /** Per replica: how far behind it is. */
  replicas: Array<{ id: string; lagReadings: number; up: boolean }>;
  /** single: one companion, no Raft group. */
  mode: 'single' | 'cluster';
}

/** Events streamed to the dashboard (server-sent events) and to CLI watchers. */
export type CompanionEvent =
  | { type: 'device'; id: string; state: string; reason: string; at: number }
  | { type: 'telemetry'; id: string; seq: number; ts: number; r: Record<string, number>; hist: 0 | 1 }
  | { type: 'breaker'; id: string; state: string; at: number }
  | { type: 'cluster'; leader: string | null; term: number; at: number };

export interface HealthView {
  ok: boolean;
  nodeId: string;
  uptimeMs: number;
  devices: number;
  bus: { kind: 'embedded' | 'external'; clients: number };
  ingested: number;
}

export interface CompanionApi {
  readonly nodeId: string;
  health(): HealthView;
  devices(): DeviceView[];
  device(id: string): DeviceView | null;
  telemetry(id: string, q: TelemetryQuery): TelemetryRecord[];
  /** Calls a device method; rejects with RpcError. */
  rpc(id: string, method: string, params: unknown, timeoutMs: number): Promise<RpcResult>;
  cluster(): ClusterView;
  /** Subscribes to live events; returns the unsubscribe function. */
  subscribe(fn: (ev: CompanionEvent) => void): () => void;
}
