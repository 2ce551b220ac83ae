/**
 * HaService on the real embedded broker (127.0.0.1, port 0) with an `mqtt` client playing Home
 * Assistant: it receives the retained discovery configs when it subscribes, receives them again
 * within delayMsMax after it publishes its birth (`online` on homeassistant/status), sees a
 * removal as an empty payload, and may read the availability and state topics the configs name.
 */
import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import { deriveDevicePassword } from '../../../../host/bus/credentials.js';
import { EmbeddedBus } from '../../../../host/bus/embedded-broker.js';
import type { BusLogEntry } from '../../../../host/bus/rejection-log.js';
import { buildDeviceDiscovery, type HaDevice } from '../../../../host/ha/ha-discovery.js';
import { HaService } from '../../../../host/ha/ha-service.js';

const KEY = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
const DELAY_MS_MAX = 800;

const DEVICES: HaDevice[] = [
  { id: 'shed-1', fw: '0.1.0', board: 'esp32', sensors: [{ n: 't', u: '°C', k: 'analog' }, { n: 'h', u: '%', k: 'simulated' }] },
  { id: 'shed-2', fw: '0.1.0', board: 'linux', sensors: [{ n: 'chip', u: '°C', k: 'temperature' }] },
  { id: 'greenhouse.3', fw: '0.2.0', board: 'esp8266', sensors: [{ n: 'soil', u: '%', k: 'analog' }] },
];

interface Received {
  topic: string;
  text: string;
  retain: boolean;
  at: number;
}

let bus: EmbeddedBus;
let svc: HaService;
let logs: BusLogEntry[];
const clients: MqttClient[] = [];

function url(): string {
  const a = bus.address();
  if (a === null) throw new Error('not started');
  return `mqtt://127.0.0.1:${a.port}`;
}

/** Home Assistant: an anonymous local client, with its will on the status topic as HA sets it. */
async function homeAssistant(received: Received[]): Promise<MqttClient> {
  const c = await connectAsync(url(), {
    clientId: 'home-assistant-' + clients.length,
    protocolVersion: 4,
    reconnectPeriod: 0,
    will: { topic: 'homeassistant/status', payload: Buffer.from('offline'), qos: 0, retain: false },
  });
  clients.push(c);
  c.on('message', (topic, payload, packet) => received.push({ topic, text: payload.toString('utf8'), retain: packet.retain, at: performance.now() }));
  return c;
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function configs(list: Received[]): Received[] {
  return list.filter((m) => m.topic.startsWith('homeassistant/device/'));
}

beforeEach(async () => {
  logs = [];
  bus = new EmbeddedBus({ fleetKeyHex: KEY, port: 0, log: (e) => logs.push(e) });
  await bus.start();
  svc = new HaService({ bus, random: new SeededRng(11), delayMsMax: DELAY_MS_MAX, log: (e) => logs.push(e), swVersion: '0.0.0-test' });
  await svc.start();
});

afterEach(async () => {
  await svc.stop();
  for (const c of clients.splice(0)) c.end(true);
  await bus.stop();
});

describe('HaService on the embedded broker', () => {
  it('Home Assistant gets the retained configs, and again within delayMsMax after its birth message', async () => {
    for (const d of DEVICES) expect(await svc.announce(d)).toBe('published');

    const received: Received[] = [];
    const ha = await homeAssistant(received);
    await ha.subscribeAsync('homeassistant/device/+/config', { qos: 1 });
    await until(() => configs(received).length === DEVICES.length, 5000, 'retained configs');

    const expected = new Map(DEVICES.map((d) => [buildDeviceDiscovery(d, { swVersion: '0.0.0-test' }).topic, d]));
    const first = configs(received);
    expect(new Set(first.map((m) => m.topic))).toEqual(new Set(expected.keys()));
    for (const m of first) {
      expect(m.retain).toBe(true);
      const payload = JSON.parse(m.text);
      expect(payload).toEqual(buildDeviceDiscovery(expected.get(m.topic)!, { swVersion: '0.0.0-test' }).payload);
      // The keys device-based discovery requires.
      expect(payload.device.identifiers.length).toBeGreaterThan(0);
      expect(payload.origin.name).toBe('espfleet');
      for (const c of Object.values(payload.components) as Array<Record<string, string>>) {
        expect(c.platform).toBe('sensor');
        expect(c.unique_id).toMatch(/^espfleet_/);
        expect(c.state_topic).toMatch(/^espfleet\/[^/]+\/telemetry$/);
      }
    }
    // The dot in greenhouse.3 is outside HA's id class: the topic carries the sanitized id.
    expect([...expected.keys()].some((t) => /^homeassistant\/device\/greenhouse_3_[0-9a-f]{8}\/config$/.test(t))).toBe(true);

    // Birth: every config again, within delayMsMax (plus scheduling slack), each device once.
    received.length = 0;
    const t0 = performance.now();
    await ha.publishAsync('homeassistant/status', 'online', { qos: 0 });
    await until(() => configs(received).length === DEVICES.length, DELAY_MS_MAX + 2000, 're-sent configs');
    const again = configs(received);
    expect(new Set(again.map((m) => m.topic))).toEqual(new Set(expected.keys()));
    for (const m of again) {
      expect(m.at - t0).toBeLessThanOrEqual(DELAY_MS_MAX + 500);
      expect(m.retain).toBe(false); // a live delivery to an existing subscription [MQTT-3.3.1-9]
      expect(JSON.parse(m.text)).toEqual(JSON.parse(first.find((f) => f.topic === m.topic)!.text));
    }
    // Spread, not all at once.
    const times = again.map((m) => m.at).sort((a, b) => a - b);
    expect(times[times.length - 1] - times[0]).toBeGreaterThan(DELAY_MS_MAX / DEVICES.length / 2);
    await new Promise((r) => setTimeout(r, DELAY_MS_MAX));
    expect(configs(received)).toHaveLength(DEVICES.length);
    expect(svc.counters()).toMatchObject({ births: 1, resent: DEVICES.length });
  });

  it('a forgotten device is removed: an empty payload, and no retained config for a later Home Assistant', async () => {
    for (const d of DEVICES) await svc.announce(d);
    const received: Received[] = [];
    const ha = await homeAssistant(received);
    await ha.subscribeAsync('homeassistant/device/+/config', { qos: 1 });
    await until(() => configs(received).length === DEVICES.length, 5000, 'retained configs');
    expect(await svc.forget('shed-2')).toBe('removed');
    await until(() => received.some((m) => m.topic === 'homeassistant/device/shed-2/config' && m.text === ''), 5000, 'removal');

    const later: Received[] = [];
    const ha2 = await homeAssistant(later);
    await ha2.subscribeAsync('homeassistant/device/+/config', { qos: 1 });
    await until(() => configs(later).length === DEVICES.length - 1, 5000, 'retained configs after removal');
    await new Promise((r) => setTimeout(r, 100));
    expect(configs(later).map((m) => m.topic)).not.toContain('homeassistant/device/shed-2/config');
  });

  it('Home Assistant may read the availability and state topics the config names', async () => {
    await svc.announce(DEVICES[0]);
    const received: Received[] = [];
    const ha = await homeAssistant(received);
    const cfg = buildDeviceDiscovery(DEVICES[0]).payload;
    const granted = await ha.subscribeAsync([cfg.availability_topic, (cfg.components.t as { state_topic: string }).state_topic], { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1, 1]);

    const device = await connectAsync(url(), {
      clientId: 'shed-1',
      username: 'shed-1',
      password: deriveDevicePassword(KEY, 'shed-1'),
      protocolVersion: 4,
      reconnectPeriod: 0,
      will: { topic: 'espfleet/shed-1/status', payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    clients.push(device);
    await device.publishAsync('espfleet/shed-1/status', 'online', { qos: 1, retain: true });
    await device.publishAsync('espfleet/shed-1/telemetry', '{"seq":1,"ts":1,"r":{"t":21.5,"h":40},"hist":0}', { qos: 1 });
    await until(() => received.length === 2, 5000, 'status and telemetry');
    expect(received.map((m) => [m.topic, m.text])).toEqual([
      ['espfleet/shed-1/status', cfg.payload_available],
      ['espfleet/shed-1/telemetry', '{"seq":1,"ts":1,"r":{"t":21.5,"h":40},"hist":0}'],
    ]);
  });
});
