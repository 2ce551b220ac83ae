/**
 * The device config, read from the Storage file `espfleet.json` (INTERFACES.md). Validation is
 * total: any input (absent file, bad JSON, wrong types, hostile keys) gives either a config or a
 * one-line reason, never an exception, so a bad config can never boot-loop the device.
 */

import { isForbiddenKey } from './core/keys.js';

export var CONFIG_FILE = 'espfleet.json';

export interface SensorConfig {
  name: string;
  /** analog | temperature | simulated */
  kind: string;
  pin: string | null;
  /** analog: maps the pin's [0,1] read onto [lo, hi]. */
  scale: number[] | null;
  unit: string;
  everyMs: number;
  /** simulated: seed of the synthetic source. */
  seed: number;
  /** Reads outside [min, max] are faults, never published (defaults: ±1e9). */
  min: number;
  max: number;
}

export interface DeviceConfig {
  id: string;
  wifi: { ssid: string; pass: string } | null;
  /** Fleet key as hex (HMAC key for beacons, offers and derived MQTT credentials). */
  fleetKey: string;
  discoveryPort: number;
  discoveryAddr: string;
  beaconMs: number;
  /** Explicit MQTT credentials; null derives them from the fleet key. */
  mqtt: { user: string | null; pass: string | null; host: string | null; port: number; keepaliveS: number };
  sensors: SensorConfig[];
  /** Per-sensor pipeline specs, compiled by the pipeline core. */
  pipeline: { [sensor: string]: unknown };
  /** Console lock-down on boot (default on: telnet off). */
  console: { lock: boolean; password: string | null };
}

export interface ConfigResult {
  config: DeviceConfig | null;
  error: string | null;
}

/** Limits, each with its reason. */
export var ID_LENGTH_MAX = 32; // ids travel in topics and beacons: short keeps datagrams under 512 bytes
export var SENSORS_MAX = 8; // each sensor costs vars for its schedule and pipeline state
export var BEACON_MS_MIN = 1000; // faster beacons flood the network for no gain
export var SAMPLE_MS_MIN = 100; // the interpreter cannot sample and process faster per sensor
export var KIND_NAMES = ['analog', 'temperature', 'simulated'];

export function parseConfig(text: string | null): ConfigResult {
  if (text === null || text === undefined) return fail('no ' + CONFIG_FILE + ' in Storage');
  var raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return fail(CONFIG_FILE + ' is not valid JSON');
  }
  return validateConfig(raw);
}

export function validateConfig(raw: unknown): ConfigResult {
  if (!isObject(raw)) return fail('config must be a JSON object');
  var o = raw as { [k: string]: any };
  var bad = hostileKey(o);
  if (bad) return fail(bad);
  if (!isId(o.id)) return fail('id must be 1-' + ID_LENGTH_MAX + ' characters of A-Z a-z 0-9 _ -');
  if (!isHex(o.fleetKey) || o.fleetKey.length < 32) return fail('fleetKey must be hex, at least 16 bytes');
  var wifi: DeviceConfig['wifi'] = null;
  if (o.wifi !== undefined) {
    if (!isObject(o.wifi) || typeof o.wifi.ssid !== 'string' || o.wifi.ssid.length === 0 || o.wifi.ssid.length > 32)
      return fail('wifi.ssid must be a string of 1-32 characters');
    if (o.wifi.pass !== undefined && (typeof o.wifi.pass !== 'string' || o.wifi.pass.length > 64))
      return fail('wifi.pass must be a string of at most 64 characters');
    wifi = { ssid: o.wifi.ssid, pass: o.wifi.pass || '' };
  }
  var port = opt(o.discoveryPort, 41900);
  if (!isPort(port)) return fail('discoveryPort must be an integer 1-65535');
  var addr = opt(o.discoveryAddr, '255.255.255.255');
  if (!isIpv4(addr)) return fail('discoveryAddr must be a dotted IPv4 address');
  var beaconMs = opt(o.beaconMs, 10000);
  if (!isInt(beaconMs) || beaconMs < BEACON_MS_MIN || beaconMs > 3600000) return fail('beaconMs must be an integer 1000-3600000');
  var m = o.mqtt === undefined ? {} : o.mqtt;
  if (!isObject(m)) return fail('mqtt must be an object');
  var mqtt = {
    user: opt(m.user, null),
    pass: opt(m.pass, null),
    host: opt(m.host, null),
    port: opt(m.port, 1883),
    keepaliveS: opt(m.keepaliveS, 30),
  };
  if (mqtt.user !== null && (typeof mqtt.user !== 'string' || mqtt.user.length > 64)) return fail('mqtt.user must be a string');
  if (mqtt.pass !== null && (typeof mqtt.pass !== 'string' || mqtt.pass.length > 128)) return fail('mqtt.pass must be a string');
  if (mqtt.host !== null && (typeof mqtt.host !== 'string' || mqtt.host.length === 0 || mqtt.host.length > 64))
    return fail('mqtt.host must be a host name or address');
  if (!isPort(mqtt.port)) return fail('mqtt.port must be an integer 1-65535');
  if (!isInt(mqtt.keepaliveS) || mqtt.keepaliveS < 5 || mqtt.keepaliveS > 600) return fail('mqtt.keepaliveS must be 5-600');
  var sensors: SensorConfig[] = [];
  var list = opt(o.sensors, []);
  if (!isArray(list)) return fail('sensors must be an array');
  if (list.length > SENSORS_MAX) return fail('at most ' + SENSORS_MAX + ' sensors');
  for (var i = 0; i < list.length; i++) {
    var r = validateSensor(list[i], i);
    if (typeof r === 'string') return fail(r);
    for (var j = 0; j < sensors.length; j++) if (sensors[j].name === r.name) return fail('sensor name ' + r.name + ' repeats');
    sensors.push(r);
  }
  var pipeline = opt(o.pipeline, {});
  if (!isObject(pipeline)) return fail('pipeline must be an object keyed by sensor name');
  for (var k in pipeline) {
    var found = false;
    for (var s = 0; s < sensors.length; s++) if (sensors[s].name === k) found = true;
    if (!found) return fail('pipeline names unknown sensor ' + k);
  }
  var c = opt(o.console, {});
  if (!isObject(c)) return fail('console must be an object');
  var lock = opt(c.lock, true);
  var password = opt(c.password, null);
  if (typeof lock !== 'boolean') return fail('console.lock must be true or false');
  if (password !== null && (typeof password !== 'string' || password.length > 20)) return fail('console.password must be a string of at most 20 characters');
  return {
    config: {
      id: o.id,
      wifi: wifi,
      fleetKey: o.fleetKey.toLowerCase(),
      discoveryPort: port,
      discoveryAddr: addr,
      beaconMs: beaconMs,
      mqtt: mqtt,
      sensors: sensors,
      pipeline: pipeline,
      console: { lock: lock, password: password },
    },
    error: null,
  };
}

function validateSensor(s: any, i: number): SensorConfig | string {
  var at = 'sensors[' + i + ']';
  if (!isObject(s)) return at + ' must be an object';
  var bad = hostileKey(s);
  if (bad) return at + ': ' + bad;
  if (!isId(s.name) || s.name.length > 16) return at + '.name must be 1-16 characters of A-Z a-z 0-9 _ -';
  var kind = s.kind;
  var known = false;
  for (var k = 0; k < KIND_NAMES.length; k++) if (KIND_NAMES[k] === kind) known = true;
  if (!known) return at + '.kind must be one of ' + KIND_NAMES.join(', ');
  var pin = opt(s.pin, null);
  if (kind === 'analog' && (typeof pin !== 'string' || pin.length === 0 || pin.length > 8)) return at + '.pin is required for an analog sensor';
  var scale = opt(s.scale, null);
  if (scale !== null && !(isArray(scale) && scale.length === 2 && isNum(scale[0]) && isNum(scale[1])))
    return at + '.scale must be [lo, hi]';
  var everyMs = opt(s.everyMs, 5000);
  if (!isInt(everyMs) || everyMs < SAMPLE_MS_MIN || everyMs > 86400000) return at + '.everyMs must be an integer 100-86400000';
  var unit = opt(s.unit, '');
  if (typeof unit !== 'string' || unit.length > 8) return at + '.unit must be a string of at most 8 bytes';
  var seed = opt(s.seed, i + 1);
  if (!isInt(seed)) return at + '.seed must be an integer';
  var min = opt(s.min, -1e9);
  var max = opt(s.max, 1e9);
  if (!isNum(min) || !isNum(max) || min >= max) return at + '.min must be a number below max';
  return { name: s.name, kind: kind, pin: pin, scale: scale, unit: unit, everyMs: everyMs, seed: seed, min: min, max: max };
}

function fail(reason: string): ConfigResult {
  return { config: null, error: reason };
}

function opt(v: any, d: any): any {
  return v === undefined || v === null ? d : v;
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !isArray(v);
}

function isArray(v: unknown): boolean {
  return v instanceof Array;
}

function isNum(v: unknown): boolean {
  return typeof v === 'number' && isFinite(v as number);
}

function isInt(v: unknown): boolean {
  return isNum(v) && Math.floor(v as number) === v;
}

function isPort(v: unknown): boolean {
  return isInt(v) && (v as number) >= 1 && (v as number) <= 65535;
}

/** 1-32 of [A-Za-z0-9_-], checked per char: Espruino's RegExp has no {n,m}. */
export function isId(v: unknown): boolean {
  if (typeof v !== 'string' || v.length === 0 || v.length > ID_LENGTH_MAX) return false;
  for (var i = 0; i < v.length; i++) {
    var c = v.charCodeAt(i);
    var ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 95;
    if (!ok) return false;
  }
  return true;
}

export function isHex(v: unknown): boolean {
  if (typeof v !== 'string' || v.length === 0 || v.length % 2 !== 0) return false;
  for (var i = 0; i < v.length; i++) {
    var c = v.charCodeAt(i) | 32;
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

function isIpv4(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  var parts = v.split('.');
  if (parts.length !== 4) return false;
  for (var i = 0; i < 4; i++) {
    var p = parts[i];
    if (p.length === 0 || p.length > 3) return false;
    for (var j = 0; j < p.length; j++) {
      var c = p.charCodeAt(j);
      if (c < 48 || c > 57) return false;
    }
    if (parseInt(p, 10) > 255) return false;
  }
  return true;
}

/** Rejects keys that would reach prototypes if a later step copied the object. */
function hostileKey(o: { [k: string]: any }): string | null {
  for (var k in o) {
    if (isForbiddenKey(k)) return 'key ' + k + ' is not allowed';
  }
  return null;
}
