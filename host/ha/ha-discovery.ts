/**
 * Home Assistant MQTT discovery for espfleet devices: one DEVICE-BASED discovery message per
 * device (`<prefix>/device/<object_id>/config`) carrying every sensor of the device as a
 * `sensor` component. Pure and deterministic: the same device gives the same topic and the same
 * payload (same key order), so the service can hash it to skip identical re-publishes.
 *
 * References (Home Assistant MQTT integration documentation, "MQTT Discovery"):
 *  - Discovery topic `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, with
 *    `<component>` = `device` for device discovery; node_id and object_id "must only consist of
 *    characters from the character class [a-zA-Z0-9_-]" (sanitizeHaId below).
 *  - Device discovery payload: the root MUST include the `device` and `origin` mappings; shared
 *    root options: availability, `state_topic`, `command_topic`, `qos`, `encoding`. Component
 *    configs sit under `components` (abbreviated `cmps`), each with `platform` (`p`) and, for
 *    entity components, `unique_id`.
 *  - Removal: an empty retained payload on the discovery topic removes every component and the
 *    device entry. A single component is removed by an update in which that component is only
 *    `{ "platform": "sensor" }`, followed by an update that omits it (componentRemovalUpdate).
 *  - MQTT sensor `state_topic`: when `state_class` / `unit_of_measurement` / `device_class` is
 *    set a numeric value is expected, and "an empty value '' will be ignored and will not update
 *    the state". The value template renders '' for a message that lacks the sensor, so the
 *    entity keeps its previous state (sensorValueTemplate).
 *
 * Full key names are used throughout (no abbreviations): the companion is not memory-bound.
 */
import { createHash } from 'node:crypto';
import type { DeviceMeta } from '../companion-api.js';

/** Default discovery prefix of Home Assistant's MQTT integration. */
export const HA_DEFAULT_PREFIX = 'homeassistant';

/** Manufacturer shown for every device, and the origin name of every discovery message. */
export const HA_MANUFACTURER = 'espfleet';

/**
 * Sensors announced per device at most. 32 components of about 600 bytes each keep a discovery
 * message near 20 KiB, well under the embedded broker's 64 KiB packetBytesMax, and no board
 * samples more than a handful of sensors.
 */
export const HA_SENSORS_MAX = 32;

/** Longest sensor name accepted (it becomes part of a unique_id and of the template). */
export const HA_SENSOR_NAME_CHARS_MAX = 32;

/** Longest unit accepted (HA units are short: `°C`, `µg/m³`, `kWh`). */
export const HA_UNIT_CHARS_MAX = 16;

/** Longest fw / board / display name kept; longer peer strings are cut (device info is cosmetic). */
export const HA_INFO_CHARS_MAX = 64;

/** A device as the registry and its retained meta topic describe it. */
export interface HaDevice {
  id: string;
  fw?: string;
  board?: string;
  sensors: DeviceMeta['sensors'];
}

export interface HaDiscoveryOptions {
  /** Home Assistant's discovery prefix (default `homeassistant`). */
  prefix?: string;
  /** Display name of the device in Home Assistant (default: the device id). */
  nodeName?: string;
  /** Version of the companion, reported as the origin's sw_version. */
  swVersion?: string;
}

export interface HaSensorComponent {
  platform: 'sensor';
  name: string;
  unique_id: string;
  state_topic: string;
  value_template: string;
  unit_of_measurement?: string;
  device_class?: string;
  state_class: 'measurement';
  entity_category?: 'diagnostic';
}

/** A component reduced to its platform: the documented way to remove it from a device. */
export interface HaRemovedComponent {
  platform: 'sensor';
}

export interface HaDevicePayload {
  device: { identifiers: string[]; name: string; manufacturer: string; model?: string; sw_version?: string };
  origin: { name: string; sw_version?: string };
  availability_topic: string;
  payload_available: 'online';
  payload_not_available: 'offline';
  /** Telemetry is published with QoS 1 (INTERFACES.md); Home Assistant subscribes with the same. */
  qos: 1;
  components: Record<string, HaSensorComponent | HaRemovedComponent>;
}

export type HaSkipReason = 'bad-entry' | 'bad-name' | 'name-too-long' | 'bad-unit' | 'duplicate-name' | 'sensors-max';

export interface HaDiscovery {
  topic: string;
  payload: HaDevicePayload;
  /** Sensors of the meta left out, each with why (peer input never throws). */
  skipped: Array<{ n: unknown; reason: HaSkipReason }>;
}

const HA_ID_RE = /^[A-Za-z0-9_-]+$/;

/**
 * Maps any non-empty string to Home Assistant's id class [a-zA-Z0-9_-]. A string already in the
 * class is kept as is. Any other string has each outside character replaced by `_` and gets
 * `_` + the first 8 hex digits of its SHA-256 appended, so the mapping stays one-to-one in
 * practice: `shed.1` -> `shed_1_<hash>` never meets the literal id `shed_1`.
 */
export function sanitizeHaId(s: string): string {
  if (s.length === 0) throw new Error('sanitizeHaId: empty id');
  if (HA_ID_RE.test(s)) return s;
  const hash = createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 8);
  return s.replace(/[^A-Za-z0-9_-]/g, '_') + '_' + hash;
}

/** `<prefix>/device/<object_id>/config` for this device id. */
export function discoveryTopic(id: string, prefix: string = HA_DEFAULT_PREFIX): string {
  checkPrefix(prefix);
  return prefix + '/device/' + sanitizeHaId(id) + '/config';
}

/** The removal message of a device deleted from the registry: an empty retained payload. */
export function buildDeviceRemoval(id: string, opts: { prefix?: string } = {}): { topic: string; payload: '' } {
  return { topic: discoveryTopic(id, opts.prefix ?? HA_DEFAULT_PREFIX), payload: '' };
}

/** unique_id of one sensor entity: `espfleet_<id>_<sensor>`, both parts sanitized. */
export function sensorUniqueId(id: string, sensor: string): string {
  return 'espfleet_' + sanitizeHaId(id) + '_' + sanitizeHaId(sensor);
}

const TEMPERATURE_UNITS = ['°C', '°F', 'K'];
const PRESSURE_UNITS = ['Pa', 'hPa', 'kPa', 'bar', 'cbar', 'mbar', 'mmHg', 'inHg', 'psi'];
const VOLTAGE_UNITS = ['V', 'mV'];
const CURRENT_UNITS = ['A', 'mA'];
const POWER_UNITS = ['W', 'kW'];
const FREQUENCY_UNITS = ['Hz', 'kHz', 'MHz', 'GHz'];
const SIGNAL_UNITS = ['dB', 'dBm'];

/**
 * Home Assistant device_class from the unit (and, for ambiguous units, the sensor name), or
 * null. Only pairs Home Assistant accepts are produced: its MQTT sensor refuses a config whose
 * unit is not valid for its device_class, so an unknown or ambiguous unit gets no class.
 * Energy units are left out on purpose: an energy sensor needs state_class total or
 * total_increasing, which espfleet cannot know from the meta.
 */
export function inferDeviceClass(unit: string, name: string): string | null {
  const n = name.toLowerCase();
  if (TEMPERATURE_UNITS.indexOf(unit) !== -1) return 'temperature';
  if (unit === '%') {
    if (n === 'h' || n === 'rh' || n.startsWith('hum')) return 'humidity';
    if (n.startsWith('bat')) return 'battery';
    if (n.startsWith('moist') || n.startsWith('soil')) return 'moisture';
    return null;
  }
  if (PRESSURE_UNITS.indexOf(unit) !== -1) return 'pressure';
  if (VOLTAGE_UNITS.indexOf(unit) !== -1) return 'voltage';
  if (CURRENT_UNITS.indexOf(unit) !== -1) return 'current';
  if (POWER_UNITS.indexOf(unit) !== -1) return 'power';
  if (unit === 'lx') return 'illuminance';
  if (FREQUENCY_UNITS.indexOf(unit) !== -1) return 'frequency';
  if (SIGNAL_UNITS.indexOf(unit) !== -1) return 'signal_strength';
  if (unit === 'ppm' && (n === 'co2' || n.startsWith('co2_') || n === 'carbon_dioxide')) return 'carbon_dioxide';
  return null;
}

/**
 * A Jinja string literal for any text: characters outside [A-Za-z0-9_ .:-] are written as
 * \uXXXX (\UXXXXXXXX beyond the BMP), which Jinja's lexer decodes (it unescapes literals with
 * Python's unicode-escape). The literal therefore never holds a quote, a backslash of its own
 * or the `}}` / `%}` that would end the expression.
 */
export function jinjaString(s: string): string {
  let out = "'";
  for (const ch of s) {
    if (/^[A-Za-z0-9_ .:-]$/.test(ch)) {
      out += ch;
      continue;
    }
    const cp = ch.codePointAt(0)!;
    out += cp > 0xffff ? '\\U' + cp.toString(16).padStart(8, '0') : '\\u' + cp.toString(16).padStart(4, '0');
  }
  return out + "'";
}

/**
 * value_template of one sensor. It renders the reading when the message is a JSON object whose
 * `r` holds this sensor and is not a replay, and '' otherwise, which Home Assistant ignores
 * (the entity keeps its state). Messages without the sensor are normal: a window aggregate or a
 * sensor fault emits only some names. Replayed readings (`hist` 1, from the device outbox after
 * a reconnect) are ignored too: Home Assistant stamps a state with its arrival time, so an old
 * reading would be recorded as current; the companion's store keeps the history.
 */
export function sensorValueTemplate(name: string): string {
  const k = jinjaString(name);
  return (
    '{% if value_json is defined and value_json is mapping and value_json.r is mapping' +
    ' and value_json.hist != 1 and ' + k + ' in value_json.r %}{{ value_json.r[' + k + '] }}{% endif %}'
  );
}

/**
 * The device discovery message of one device. Sensors are validated (they come from the
 * device's meta, peer input): a bad entry is skipped with its reason, never thrown. Components
 * are keyed by the sanitized sensor name and sorted, so reordering the meta changes nothing.
 * The device id must be a registry id (non-empty); the prefix a plain topic prefix.
 */
export function buildDeviceDiscovery(device: HaDevice, opts: HaDiscoveryOptions = {}): HaDiscovery {
  const id = device.id;
  if (typeof id !== 'string' || id.length === 0) throw new Error('buildDeviceDiscovery: device id must be a non-empty string');
  const prefix = opts.prefix ?? HA_DEFAULT_PREFIX;
  const topic = discoveryTopic(id, prefix);
  const stateTopic = 'espfleet/' + id + '/telemetry';
  const skipped: HaDiscovery['skipped'] = [];
  const byKey = new Map<string, HaSensorComponent>();
  const sensors = Array.isArray(device.sensors) ? device.sensors : [];
  for (const s of sensors) {
    const problem = sensorProblem(s);
    if (problem !== null) {
      skipped.push({ n: isObject(s) ? s.n : s, reason: problem });
      continue;
    }
    const key = sanitizeHaId(s.n);
    if (byKey.has(key)) {
      skipped.push({ n: s.n, reason: 'duplicate-name' });
      continue;
    }
    if (byKey.size >= HA_SENSORS_MAX) {
      skipped.push({ n: s.n, reason: 'sensors-max' });
      continue;
    }
    const c: HaSensorComponent = {
      platform: 'sensor',
      name: s.n,
      unique_id: sensorUniqueId(id, s.n),
      state_topic: stateTopic,
      value_template: sensorValueTemplate(s.n),
      state_class: 'measurement',
    };
    if (s.u !== '') c.unit_of_measurement = s.u;
    const dc = inferDeviceClass(s.u, s.n);
    if (dc !== null) c.device_class = dc;
    // The chip's own temperature describes the board, not the room it is in.
    if (s.k === 'temperature') c.entity_category = 'diagnostic';
    byKey.set(key, c);
  }
  const components: Record<string, HaSensorComponent> = {};
  for (const key of [...byKey.keys()].sort()) components[key] = byKey.get(key)!;

  const dev: HaDevicePayload['device'] = {
    identifiers: ['espfleet_' + sanitizeHaId(id)],
    name: info(opts.nodeName) ?? id,
    manufacturer: HA_MANUFACTURER,
  };
  const model = info(device.board);
  if (model !== undefined) dev.model = model;
  const fw = info(device.fw);
  if (fw !== undefined) dev.sw_version = fw;
  const origin: HaDevicePayload['origin'] = { name: HA_MANUFACTURER };
  const sw = info(opts.swVersion);
  if (sw !== undefined) origin.sw_version = sw;

  return {
    topic,
    payload: {
      device: dev,
      origin,
      availability_topic: 'espfleet/' + id + '/status',
      payload_available: 'online',
      payload_not_available: 'offline',
      qos: 1,
      components,
    },
    skipped,
  };
}

/**
 * The intermediate update that removes the components `prev` had and `next` lacks (each reduced
 * to its platform, as the documentation requires), or null when none was dropped. Publish it
 * BEFORE `next`; `next` then omits them for good.
 */
export function componentRemovalUpdate(prev: HaDevicePayload, next: HaDevicePayload): HaDevicePayload | null {
  const removed: string[] = [];
  for (const key of Object.keys(prev.components)) {
    if (!(key in next.components)) removed.push(key);
  }
  if (removed.length === 0) return null;
  const components: HaDevicePayload['components'] = { ...next.components };
  for (const key of removed) components[key] = { platform: 'sensor' };
  return { ...next, components };
}

/** The JSON text published for a payload (stable: the builder fixes the key order). */
export function discoveryText(payload: HaDevicePayload): string {
  return JSON.stringify(payload);
}

function sensorProblem(s: unknown): HaSkipReason | null {
  if (!isObject(s)) return 'bad-entry';
  if (typeof s.n !== 'string' || s.n.length === 0) return 'bad-name';
  if (s.n.length > HA_SENSOR_NAME_CHARS_MAX) return 'name-too-long';
  if (typeof s.u !== 'string' || s.u.length > HA_UNIT_CHARS_MAX) return 'bad-unit';
  return null;
}

function isObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A cosmetic peer string: kept when it is a non-empty string, cut at HA_INFO_CHARS_MAX code points. */
function info(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length === 0) return undefined;
  if (v.length <= HA_INFO_CHARS_MAX) return v;
  // Cut by code points, never inside a surrogate pair.
  return [...v].slice(0, HA_INFO_CHARS_MAX).join('');
}

function checkPrefix(prefix: string): void {
  if (prefix.length === 0 || /[+#\u0000]/.test(prefix) || prefix.startsWith('/') || prefix.endsWith('/')) {
    throw new Error('discovery prefix must be a topic prefix without wildcards or outer slashes: ' + JSON.stringify(prefix));
  }
}
