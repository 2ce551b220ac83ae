/**
 * A telemetry reading as the companion stores it, and the checks that turn peer input (the MQTT
 * payload of `espfleet/<id>/telemetry`, or a row from a replica) into one. Peer input never
 * throws here: it becomes `{ ok: false, reason }`.
 *
 * Wire payload (INTERFACES.md, QoS 1): `{"seq":n,"ts":ms,"r":{"t":21.5,…},"hist":0|1}`.
 */

export interface TelemetryRecord {
  device: string;
  /** The device's sequence number for this reading: (device, seq) identifies it. */
  seq: number;
  /** Device time in ms since the epoch (stored at millisecond resolution). */
  ts: number;
  /** 1 = replayed from the device's outbox after a disconnect. */
  hist: 0 | 1;
  /** Values by sensor name. */
  r: Record<string, number>;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Device ids are short names (config `id`); 64 bounds every key and topic built from one. */
export const DEVICE_ID_CHARS_MAX = 64;
/** A payload is one MQTT message from a small device; 4 KiB is far above any real reading. */
export const PAYLOAD_BYTES_MAX = 4096;
/** Sensors per reading: a board has a handful; 64 bounds the row size. */
export const READINGS_MAX = 64;
/** Sensor names are short keys (`t`, `hum`, `t_mean`); 32 bounds the stored JSON. */
export const READING_NAME_CHARS_MAX = 32;

/** Device ids: printable ASCII without space, '/', '+', '#' (they appear in MQTT topics). */
export function checkDeviceId(id: unknown): string | null {
  if (typeof id !== 'string') return 'device id is not a string';
  if (id.length === 0) return 'device id is empty';
  if (id.length > DEVICE_ID_CHARS_MAX) return `device id longer than ${DEVICE_ID_CHARS_MAX} chars`;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x2f || c === 0x2b || c === 0x23) {
      return `device id has a forbidden character at ${i}`;
    }
  }
  return null;
}

/** Checks a record from any source (the ingest path, a replica, an import) and normalises it. */
export function checkRecord(x: unknown): Checked<TelemetryRecord> {
  if (x === null || typeof x !== 'object') return { ok: false, reason: 'record is not an object' };
  const o = x as Record<string, unknown>;
  const bad = checkDeviceId(o.device);
  if (bad) return { ok: false, reason: bad };
  return checkBody(o.device as string, o);
}

/**
 * Parses the MQTT payload of one reading published by `device`. Accepts a string or the bytes
 * as delivered by the broker.
 */
export function parseTelemetryPayload(device: string, payload: string | Uint8Array): Checked<TelemetryRecord> {
  const bad = checkDeviceId(device);
  if (bad) return { ok: false, reason: bad };
  const size = typeof payload === 'string' ? payload.length : payload.byteLength;
  if (size > PAYLOAD_BYTES_MAX) return { ok: false, reason: `payload larger than ${PAYLOAD_BYTES_MAX} bytes` };
  const text = typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'payload is not JSON' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, reason: 'payload is not a JSON object' };
  }
  return checkBody(device, parsed as Record<string, unknown>);
}

function checkBody(device: string, o: Record<string, unknown>): Checked<TelemetryRecord> {
  const seq = o.seq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    return { ok: false, reason: 'seq is not a non-negative integer' };
  }
  const ts = o.ts;
  if (typeof ts !== 'number' || !Number.isFinite(ts) || ts < 0 || ts > Number.MAX_SAFE_INTEGER) {
    return { ok: false, reason: 'ts is not a non-negative number of ms' };
  }
  let hist: 0 | 1;
  if (o.hist === undefined || o.hist === 0 || o.hist === false) hist = 0;
  else if (o.hist === 1 || o.hist === true) hist = 1;
  else return { ok: false, reason: 'hist is not 0 or 1' };
  const r = o.r;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) return { ok: false, reason: 'r is not an object' };
  const values: Record<string, number> = {};
  let n = 0;
  for (const name in r as Record<string, unknown>) {
    if (!Object.prototype.hasOwnProperty.call(r, name)) continue;
    if (++n > READINGS_MAX) return { ok: false, reason: `more than ${READINGS_MAX} readings` };
    if (name.length === 0 || name.length > READING_NAME_CHARS_MAX) {
      return { ok: false, reason: `reading name must be 1..${READING_NAME_CHARS_MAX} chars` };
    }
    // Assigning '__proto__' on a plain object would drop the value silently.
    if (name === '__proto__') return { ok: false, reason: "reading name '__proto__' is reserved" };
    const v = (r as Record<string, unknown>)[name];
    // NaN/Infinity cannot arrive through JSON, but a replica or a caller could pass them.
    if (typeof v !== 'number' || !Number.isFinite(v)) return { ok: false, reason: `reading '${name}' is not a finite number` };
    values[name] = v;
  }
  return { ok: true, value: { device, seq, ts: Math.floor(ts), hist, r: values } };
}
