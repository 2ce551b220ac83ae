/**
 * The device registry, persisted in SQLite (`devices` table, database.ts).
 *
 * Reads come from an in-memory copy loaded at open (the registry is bounded by devicesMax, so it
 * fits). Writes change the copy at once and reach the file in one transaction flushDelayMs
 * later (write-behind, default 250 ms): a fleet beacons every few seconds, and one fsync per beacon
 * would block the event loop for nothing, because a lost last-seen time is restored by the
 * next beacon. A beacon that only refreshes a known device's sighting waits longer
 * (sightingFlushMs, default 5 s), so a fleet's steady beaconing rewrites each row once per
 * window. flush() writes at once; close() flushes.
 *
 * The liveness state (up / stale / down) is what the companion last decided, with the reason
 * and the time of that change. A valid beacon is proof of life, so it moves a device to 'up'
 * (or, as the companion says for a device beaconing without a session, to 'stale');
 * sweep() moves silent devices to 'stale' and 'down'; setState() records other evidence (the
 * MQTT will 'offline', an RPC timeout, an operator).
 *
 * Peer input (beacon fields, health reports) never throws: it yields `{ ok: false, reason }`.
 */
import { type Db, type Statement, StoreError } from './database.js';
import { checkDeviceId } from './telemetry-record.js';

export type Liveness = 'up' | 'stale' | 'down';

/** What a validated beacon tells the registry, with the datagram's source. */
export interface BeaconSighting {
  id: string;
  kind: string;
  fw: string;
  caps: string[];
  /** Free memory the device reported (JsVars). */
  mem?: number;
  /** Beacon sequence number; increases per boot. */
  seq?: number;
  /** Device uptime in ms. */
  upMs?: number;
  /** Source address and port of the datagram. */
  addr: string;
  port: number;
}

/** Breaker and outbox state as last reported by the device; opaque JSON to the registry. */
export interface DeviceHealth {
  breaker?: unknown;
  outbox?: unknown;
}

export interface DeviceRecord {
  id: string;
  kind: string;
  fw: string;
  caps: string[];
  mem: number | null;
  addr: string | null;
  port: number | null;
  beaconSeq: number | null;
  upMs: number | null;
  firstSeenMs: number;
  lastSeenMs: number;
  state: Liveness;
  stateReason: string;
  stateSinceMs: number;
  /** Node id of the companion that owns the device, or null. */
  owner: string | null;
  health: DeviceHealth | null;
  healthAtMs: number | null;
}

export interface StateChange {
  id: string;
  /** null when the device is new. */
  from: Liveness | null;
  to: Liveness;
  reason: string;
  atMs: number;
}

export type UpsertResult =
  | {
      ok: true;
      created: boolean;
      /** The beacon seq or uptime went backwards: the device restarted since its last beacon. */
      rebooted: boolean;
      change: StateChange | null;
    }
  | { ok: false; reason: string };

export interface RegistryStoreOptions {
  /**
   * Devices the registry holds (default 1024). Beacons from further new devices are refused
   * with a reason, so a flood of forged or misconfigured ids cannot grow memory and disk.
   */
  devicesMax?: number;
  /**
   * How long changes wait before one transaction writes them all (default 250 ms). A beacon
   * storm costs one fsync per window instead of one per event-loop turn; what a crash loses is
   * at most this much of last-seen times and states, which the next beacon or session restores.
   */
  flushDelayMs?: number;
  /**
   * How long a beacon that changes nothing but its sighting (last seen, seq, uptime, free memory)
   * may wait (default 5000 ms, at least flushDelayMs). A fleet beacons all the time and each beacon
   * touches its row; those rows are rewritten once per this window instead of once per
   * flushDelayMs. New devices, state changes and changed kind, fw, caps or address still go out
   * after flushDelayMs; a crash loses at most this much of last-seen times.
   */
  sightingFlushMs?: number;
}

export interface LivenessPolicy {
  nowMs: number;
  /** Silence after which an 'up' device becomes 'stale'. */
  staleAfterMs: number;
  /** Silence after which a device becomes 'down'. */
  downAfterMs: number;
}

export interface RegistryStats {
  devices: number;
  /** Devices changed in memory and not yet written. */
  dirty: number;
  flushes: number;
  flushErrors: number;
  lastFlushError: string | null;
}

/** Short text fields (kind, fw, a capability name): 32 chars bounds each row. */
export const FIELD_CHARS_MAX = 32;
/** Capabilities per device: a beacon is at most 512 bytes, so far fewer fit anyway. */
export const CAPS_MAX = 32;
/** An address as text: IPv6 with a zone id fits in 64. */
export const ADDR_CHARS_MAX = 64;
/** Reasons are short phrases; longer ones are cut so a row stays bounded. */
export const REASON_CHARS_MAX = 128;
/** A health report as JSON: breaker and outbox counters, not payloads. */
export const HEALTH_BYTES_MAX = 2048;

const STATES: readonly Liveness[] = ['up', 'stale', 'down'];

type DeviceRow = {
  id: string;
  kind: string;
  fw: string;
  caps: string;
  mem: number | null;
  addr: string | null;
  port: number | null;
  beacon_seq: number | null;
  up_ms: number | null;
  first_seen: number;
  last_seen: number;
  state: Liveness;
  state_reason: string;
  state_since: number;
  owner: string | null;
  health: string | null;
  health_at: number | null;
};

export class RegistryStore {
  private readonly _devicesMax: number;
  private readonly _byId = new Map<string, DeviceRecord>();
  /** Ids to write; a missing record means delete. */
  private readonly _dirty = new Set<string>();
  private _scheduled: NodeJS.Timeout | null = null;
  /** When the scheduled flush is due (Date.now() time). */
  private _scheduledAt = 0;
  private readonly _flushDelayMs: number;
  private readonly _sightingFlushMs: number;
  private _closed = false;
  private _flushes = 0;
  private _flushErrors = 0;
  private _lastFlushError: string | null = null;
  private readonly _upsert: Statement;
  private readonly _delete: Statement;
  private readonly _write: (ids: string[]) => void;
  /** Scheduled flushes report failures through stats(); they must not become uncaught errors. */
  private readonly _flushCb = () => {
    this._scheduled = null;
    try {
      this.flush();
    } catch {
      // Counted in stats(); the changes stay pending for the next flush.
    }
  };

  constructor(db: Db, options: RegistryStoreOptions = {}) {
    const max = options.devicesMax ?? 1024;
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('devicesMax must be a positive integer');
    this._devicesMax = max;
    const delay = options.flushDelayMs ?? 250;
    if (!(delay >= 0 && delay <= 60_000)) throw new RangeError('flushDelayMs must be 0-60000');
    this._flushDelayMs = delay;
    const sighting = options.sightingFlushMs ?? Math.max(5000, delay);
    if (!(sighting >= delay && sighting <= 600_000)) throw new RangeError('sightingFlushMs must be flushDelayMs-600000');
    this._sightingFlushMs = sighting;
    this._upsert = db.prepare(`INSERT INTO devices (id, kind, fw, caps, mem, addr, port, beacon_seq, up_ms,
        first_seen, last_seen, state, state_reason, state_since, owner, health, health_at)
      VALUES (@id, @kind, @fw, @caps, @mem, @addr, @port, @beacon_seq, @up_ms,
        @first_seen, @last_seen, @state, @state_reason, @state_since, @owner, @health, @health_at)
      ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, fw = excluded.fw, caps = excluded.caps,
        mem = excluded.mem, addr = excluded.addr, port = excluded.port, beacon_seq = excluded.beacon_seq,
        up_ms = excluded.up_ms, first_seen = excluded.first_seen, last_seen = excluded.last_seen,
        state = excluded.state, state_reason = excluded.state_reason, state_since = excluded.state_since,
        owner = excluded.owner, health = excluded.health, health_at = excluded.health_at`);
    this._delete = db.prepare('DELETE FROM devices WHERE id = ?');
    this._write = db.transaction((ids: string[]) => {
      for (const id of ids) {
        const d = this._byId.get(id);
        if (d) this._upsert.run(toRow(d));
        else this._delete.run(id);
      }
    }).immediate;
    for (const row of db.prepare('SELECT * FROM devices').all() as DeviceRow[]) {
      this._byId.set(row.id, fromRow(row));
    }
  }

  /**
   * Records a valid beacon seen at nowMs: creates the device (if there is room) or updates it,
   * and puts it in the state the beacon shows (default 'up': a beacon is proof of life; the
   * companion passes 'stale' for a device that beacons without a session, so the beacon does not
   * flip it up and back). Returns the state change, if any, for the caller to publish.
   */
  upsertBeacon(b: BeaconSighting, nowMs: number, state: Liveness = 'up', reason = 'beacon'): UpsertResult {
    if (this._closed) return { ok: false, reason: 'registry is closed' };
    // An unknown state would fail the table's CHECK at every flush after it, for every device.
    if (STATES.indexOf(state) < 0) throw new RangeError(`unknown liveness state '${String(state)}'`);
    const bad = checkSighting(b);
    if (bad) return { ok: false, reason: bad };
    const prev = this._byId.get(b.id);
    if (!prev && this._byId.size >= this._devicesMax) {
      return { ok: false, reason: `registry full: ${this._devicesMax} devices (devicesMax)` };
    }
    const d: DeviceRecord = prev ?? {
      id: b.id,
      kind: b.kind,
      fw: b.fw,
      caps: [],
      mem: null,
      addr: null,
      port: null,
      beaconSeq: null,
      upMs: null,
      firstSeenMs: nowMs,
      lastSeenMs: nowMs,
      state,
      stateReason: state === 'up' ? 'first beacon' : cut(reason),
      stateSinceMs: nowMs,
      owner: null,
      health: null,
      healthAtMs: null,
    };
    const rebooted =
      !!prev &&
      ((b.seq !== undefined && prev.beaconSeq !== null && b.seq < prev.beaconSeq) ||
        (b.upMs !== undefined && prev.upMs !== null && b.upMs < prev.upMs));
    // What the device is and where it is: a change here is written soon, like a state change.
    const described = !prev || d.kind !== b.kind || d.fw !== b.fw || d.addr !== b.addr || d.port !== b.port || !sameList(d.caps, b.caps);
    d.kind = b.kind;
    d.fw = b.fw;
    if (described) d.caps = b.caps.slice();
    d.mem = b.mem ?? null;
    d.addr = b.addr;
    d.port = b.port;
    d.beaconSeq = b.seq ?? null;
    d.upMs = b.upMs ?? null;
    // A delayed datagram must not move last-seen backwards.
    if (nowMs > d.lastSeenMs) d.lastSeenMs = nowMs;
    let change: StateChange | null = null;
    if (!prev) change = { id: d.id, from: null, to: state, reason: d.stateReason, atMs: nowMs };
    else if (d.state !== state) change = this._change(d, state, reason, nowMs);
    if (!prev) this._byId.set(d.id, d);
    this._touch(d.id, described || change !== null ? this._flushDelayMs : this._sightingFlushMs);
    // No copy of the record here: this is the listener's hot path (a device with a health report
    // would make it a structuredClone per beacon); get(id) gives one to whoever needs it.
    return { ok: true, created: !prev, rebooted, change };
  }

  /**
   * Records a liveness decision made elsewhere. Returns the change, or null when the device is
   * unknown or already in that state.
   */
  setState(id: string, state: Liveness, reason: string, nowMs: number): StateChange | null {
    if (STATES.indexOf(state) < 0) throw new RangeError(`unknown liveness state '${String(state)}'`);
    const d = this._byId.get(id);
    if (!d || d.state === state || this._closed) return null;
    const change = this._change(d, state, reason, nowMs);
    this._touch(id);
    return change;
  }

  /**
   * Moves devices silent for staleAfterMs to 'stale' and for downAfterMs to 'down'. Call it on
   * a timer from the registry shell; returns the changes in id order.
   */
  sweep(policy: LivenessPolicy): StateChange[] {
    const changes: StateChange[] = [];
    if (this._closed) return changes;
    for (const d of this._byId.values()) {
      const silentMs = policy.nowMs - d.lastSeenMs;
      let to: Liveness | null = null;
      if (d.state !== 'down' && silentMs >= policy.downAfterMs) to = 'down';
      else if (d.state === 'up' && silentMs >= policy.staleAfterMs) to = 'stale';
      if (to) {
        changes.push(this._change(d, to, `no beacon for ${silentMs} ms`, policy.nowMs));
        this._touch(d.id);
      }
    }
    return changes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Records which companion owns the device (null: none). False when the device is unknown. */
  setOwner(id: string, owner: string | null): boolean {
    const d = this._byId.get(id);
    if (!d || this._closed) return false;
    if (d.owner !== owner) {
      d.owner = owner;
      this._touch(id);
    }
    return true;
  }

  /** Stores the breaker/outbox state a device reported (peer input: checked and bounded). */
  reportHealth(id: string, health: DeviceHealth, nowMs: number): { ok: true } | { ok: false; reason: string } {
    if (this._closed) return { ok: false, reason: 'registry is closed' };
    const d = this._byId.get(id);
    if (!d) return { ok: false, reason: 'unknown device' };
    if (health === null || typeof health !== 'object' || Array.isArray(health)) {
      return { ok: false, reason: 'health report is not an object' };
    }
    const h: DeviceHealth = {};
    if (health.breaker !== undefined) h.breaker = health.breaker;
    if (health.outbox !== undefined) h.outbox = health.outbox;
    let text: string;
    try {
      text = JSON.stringify(h);
    } catch {
      return { ok: false, reason: 'health report is not serialisable' };
    }
    if (text.length > HEALTH_BYTES_MAX) return { ok: false, reason: `health report longer than ${HEALTH_BYTES_MAX} bytes` };
    d.health = JSON.parse(text) as DeviceHealth;
    d.healthAtMs = nowMs;
    this._touch(id);
    return { ok: true };
  }

  get(id: string): DeviceRecord | null {
    const d = this._byId.get(id);
    return d ? copy(d) : null;
  }

  /** Devices sorted by id, optionally only those in one state or of one owner. */
  list(filter: { state?: Liveness; owner?: string | null } = {}): DeviceRecord[] {
    const out: DeviceRecord[] = [];
    for (const d of this._byId.values()) {
      if (filter.state !== undefined && d.state !== filter.state) continue;
      if (filter.owner !== undefined && d.owner !== filter.owner) continue;
      out.push(copy(d));
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  count(): number {
    return this._byId.size;
  }

  /** Forgets a device (frees a place under devicesMax). */
  remove(id: string): boolean {
    if (this._closed || !this._byId.delete(id)) return false;
    this._touch(id);
    return true;
  }

  stats(): RegistryStats {
    return {
      devices: this._byId.size,
      dirty: this._dirty.size,
      flushes: this._flushes,
      flushErrors: this._flushErrors,
      lastFlushError: this._lastFlushError,
    };
  }

  /**
   * Writes every pending change in one transaction, now. On failure the changes stay pending
   * and are retried at the next change or flush (recorded in stats), and this throws.
   */
  flush(): void {
    if (this._scheduled) {
      clearTimeout(this._scheduled);
      this._scheduled = null;
    }
    if (this._dirty.size === 0) return;
    const ids = Array.from(this._dirty);
    try {
      this._write(ids);
    } catch (err) {
      this._flushErrors++;
      this._lastFlushError = err instanceof Error ? err.message : String(err);
      throw new StoreError('commit-failed', `registry changes not stored: ${this._lastFlushError}`, { cause: err });
    }
    // AFTER the commit: only now are these changes no longer pending.
    for (const id of ids) this._dirty.delete(id);
    this._flushes++;
  }

  /** Flushes, then refuses changes. Idempotent; the database stays open (database.ts owns it). */
  close(): void {
    if (this._closed) return;
    // Closed only once everything is written: a failed flush throws, and close() can be retried.
    this.flush();
    this._closed = true;
  }

  private _change(d: DeviceRecord, to: Liveness, reason: string, nowMs: number): StateChange {
    const change: StateChange = { id: d.id, from: d.state, to, reason: cut(reason), atMs: nowMs };
    d.state = to;
    d.stateReason = change.reason;
    d.stateSinceMs = nowMs;
    return change;
  }

  /** Marks id for writing within delayMs: the pending flush is kept, or brought forward. */
  private _touch(id: string, delayMs = this._flushDelayMs): void {
    this._dirty.add(id);
    if (this._closed) return;
    // Every flush is scheduled at most sightingFlushMs ahead: a sighting never needs the clock.
    if (this._scheduled !== null && delayMs >= this._sightingFlushMs) return;
    const at = Date.now() + delayMs;
    if (this._scheduled !== null) {
      if (this._scheduledAt <= at) return;
      clearTimeout(this._scheduled);
    }
    this._scheduledAt = at;
    this._scheduled = setTimeout(this._flushCb, delayMs);
    this._scheduled.unref();
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function cut(reason: string): string {
  const s = String(reason);
  return s.length > REASON_CHARS_MAX ? s.slice(0, REASON_CHARS_MAX) : s;
}

function checkSighting(b: BeaconSighting): string | null {
  if (b === null || typeof b !== 'object') return 'beacon is not an object';
  const bad = checkDeviceId(b.id);
  if (bad) return bad;
  if (!shortText(b.kind)) return `kind must be a string of 1..${FIELD_CHARS_MAX} chars`;
  if (!shortText(b.fw)) return `fw must be a string of 1..${FIELD_CHARS_MAX} chars`;
  if (!Array.isArray(b.caps)) return 'caps is not an array';
  if (b.caps.length > CAPS_MAX) return `more than ${CAPS_MAX} caps`;
  for (const c of b.caps) if (!shortText(c)) return `each cap must be a string of 1..${FIELD_CHARS_MAX} chars`;
  if (b.mem !== undefined && !count(b.mem)) return 'mem is not a non-negative integer';
  if (b.seq !== undefined && !count(b.seq)) return 'seq is not a non-negative integer';
  if (b.upMs !== undefined && !count(b.upMs)) return 'upMs is not a non-negative integer';
  if (typeof b.addr !== 'string' || b.addr.length === 0 || b.addr.length > ADDR_CHARS_MAX) return 'addr is not an address';
  if (!Number.isInteger(b.port) || b.port < 0 || b.port > 65535) return 'port is not 0..65535';
  return null;
}

function shortText(x: unknown): boolean {
  return typeof x === 'string' && x.length > 0 && x.length <= FIELD_CHARS_MAX;
}

function count(x: unknown): boolean {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function copy(d: DeviceRecord): DeviceRecord {
  return { ...d, caps: d.caps.slice(), health: d.health ? structuredClone(d.health) : null };
}

function toRow(d: DeviceRecord): DeviceRow {
  return {
    id: d.id,
    kind: d.kind,
    fw: d.fw,
    caps: JSON.stringify(d.caps),
    mem: d.mem,
    addr: d.addr,
    port: d.port,
    beacon_seq: d.beaconSeq,
    up_ms: d.upMs,
    first_seen: d.firstSeenMs,
    last_seen: d.lastSeenMs,
    state: d.state,
    state_reason: d.stateReason,
    state_since: d.stateSinceMs,
    owner: d.owner,
    health: d.health ? JSON.stringify(d.health) : null,
    health_at: d.healthAtMs,
  };
}

function fromRow(r: DeviceRow): DeviceRecord {
  return {
    id: r.id,
    kind: r.kind,
    fw: r.fw,
    caps: JSON.parse(r.caps) as string[],
    mem: r.mem,
    addr: r.addr,
    port: r.port,
    beaconSeq: r.beacon_seq,
    upMs: r.up_ms,
    firstSeenMs: r.first_seen,
    lastSeenMs: r.last_seen,
    state: r.state,
    stateReason: r.state_reason,
    stateSinceMs: r.state_since,
    owner: r.owner,
    health: r.health ? (JSON.parse(r.health) as DeviceHealth) : null,
    healthAtMs: r.health_at,
  };
}
