/**
 * HaService over a recording fake bus with fake timers: publish once per distinct config
 * (retained, QoS 1), re-send on Home Assistant's birth spread over [0, delayMsMax), cancelled
 * by its will and by stop, removal on forget, ordering per device, failures retried.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import type { Bus, MessageHandler, PublishOptions } from '../../../../host/bus/bus.js';
import type { BusLogEntry } from '../../../../host/bus/rejection-log.js';
import { buildDeviceDiscovery, discoveryText, type HaDevice } from '../../../../host/ha/ha-discovery.js';
import { HaService, type HaServiceOptions } from '../../../../host/ha/ha-service.js';

interface Sent {
  topic: string;
  text: string;
  opts: PublishOptions | undefined;
  at: number;
}

class FakeBus implements Pick<Bus, 'publish' | 'subscribe'> {
  sent: Sent[] = [];
  handlers = new Map<string, MessageHandler>();
  failNext = 0;
  private _gate: Promise<void> | null = null;

  /** Holds every publish until open() is called. */
  hold(): { open: () => void } {
    let open!: () => void;
    this._gate = new Promise<void>((r) => (open = r));
    return { open };
  }

  async publish(topic: string, payload: Buffer | string, opts?: PublishOptions): Promise<void> {
    await Promise.resolve();
    if (this._gate !== null) await this._gate;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('link down');
    }
    this.sent.push({ topic, text: payload.toString(), opts, at: Date.now() });
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>> {
    this.handlers.set(filter, handler);
    return async () => {
      this.handlers.delete(filter);
    };
  }

  /** Home Assistant publishing on its status topic. */
  status(text: string, prefix = 'homeassistant'): void {
    const h = this.handlers.get(prefix + '/status');
    if (h === undefined) throw new Error('not subscribed');
    void h(prefix + '/status', Buffer.from(text), { qos: 0, retain: false, dup: false, will: false });
  }
}

function dev(id: string, sensors: HaDevice['sensors'] = [{ n: 't', u: '°C', k: 'analog' }], fw = '0.1.0'): HaDevice {
  return { id, fw, board: 'esp32', sensors };
}

let bus: FakeBus;
let logs: BusLogEntry[];
let svc: HaService;

function make(extra: Partial<HaServiceOptions> = {}): HaService {
  svc = new HaService({ bus, random: new SeededRng(7), delayMsMax: 5000, log: (e) => logs.push(e), ...extra });
  return svc;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
  bus = new FakeBus();
  logs = [];
});

afterEach(async () => {
  await svc?.stop();
  vi.useRealTimers();
});

describe('HaService: announce', () => {
  it('publishes the config retained with QoS 1, and not again while it is unchanged', async () => {
    make();
    expect(await svc.announce(dev('a'))).toBe('published');
    expect(bus.sent).toHaveLength(1);
    const expected = buildDeviceDiscovery(dev('a'));
    expect(bus.sent[0]).toMatchObject({ topic: expected.topic, text: discoveryText(expected.payload), opts: { qos: 1, retain: true } });
    expect(await svc.announce(dev('a'))).toBe('unchanged');
    expect(await svc.announce(structuredClone(dev('a')))).toBe('unchanged');
    expect(bus.sent).toHaveLength(1);
    expect(await svc.announce(dev('a', undefined, '0.2.0'))).toBe('published');
    expect(bus.sent).toHaveLength(2);
    expect(JSON.parse(bus.sent[1].text).device.sw_version).toBe('0.2.0');
    expect(svc.counters()).toMatchObject({ published: 2, unchanged: 2 });
    expect(svc.devices()).toEqual(['a']);
  });

  it('passes the display name and the companion version into the payload', async () => {
    make({ swVersion: '9.9.9', prefix: 'ha' });
    await svc.announce(dev('a'), 'Shed');
    const p = JSON.parse(bus.sent[0].text);
    expect(bus.sent[0].topic).toBe('ha/device/a/config');
    expect(p.device.name).toBe('Shed');
    expect(p.origin).toEqual({ name: 'espfleet', sw_version: '9.9.9' });
  });

  it('a failed publish is logged, not recorded: the next identical announce publishes', async () => {
    make();
    bus.failNext = 1;
    expect(await svc.announce(dev('a'))).toBe('failed');
    expect(bus.sent).toHaveLength(0);
    expect(logs.some((l) => l.ev === 'ha.publish-failed' && l.id === 'a')).toBe(true);
    expect(await svc.announce(dev('a'))).toBe('published');
    expect(bus.sent).toHaveLength(1);
    expect(svc.counters()).toMatchObject({ failed: 1, published: 1 });
  });

  it('a dropped sensor is first published reduced to its platform, then the config without it', async () => {
    make();
    const two: HaDevice['sensors'] = [
      { n: 't', u: '°C', k: 'analog' },
      { n: 'h', u: '%', k: 'simulated' },
    ];
    await svc.announce(dev('a', two));
    expect(await svc.announce(dev('a', [two[0]]))).toBe('published');
    expect(bus.sent).toHaveLength(3);
    expect(JSON.parse(bus.sent[1].text).components.h).toEqual({ platform: 'sensor' });
    expect(JSON.parse(bus.sent[1].text).components.t.unique_id).toBe('espfleet_a_t');
    expect(JSON.parse(bus.sent[2].text).components).not.toHaveProperty('h');
    expect(bus.sent.every((s) => s.opts?.retain === true && s.opts.qos === 1)).toBe(true);
  });

  it('refuses a device whose unique ids clash with another known device', async () => {
    make();
    expect(await svc.announce(dev('a_b', [{ n: 'c', u: '', k: 'analog' }]))).toBe('published');
    expect(await svc.announce(dev('a', [{ n: 'b_c', u: '', k: 'analog' }]))).toBe('clash');
    expect(logs.find((l) => l.ev === 'ha.unique-id-clash')).toMatchObject({ id: 'a', other: 'a_b', uniqueId: 'espfleet_a_b_c' });
    expect(bus.sent).toHaveLength(1);
    // Once the first is forgotten, its unique ids are free again.
    await svc.forget('a_b');
    expect(await svc.announce(dev('a', [{ n: 'b_c', u: '', k: 'analog' }]))).toBe('published');
  });

  it('a device left with no valid sensor is removed from Home Assistant', async () => {
    make();
    await svc.announce(dev('a'));
    expect(await svc.announce(dev('a', []))).toBe('no-sensors');
    expect(bus.sent.map((s) => s.text)).toEqual([bus.sent[0].text, '']);
    expect(svc.devices()).toEqual([]);
    expect(await svc.announce(dev('b', [{ n: '', u: '', k: 'analog' }]))).toBe('no-sensors');
    expect(bus.sent).toHaveLength(2);
    expect(logs.filter((l) => l.ev === 'ha.no-sensors')).toHaveLength(2);
  });

  it('logs skipped sensors once per distinct config', async () => {
    make();
    const bad: HaDevice['sensors'] = [
      { n: 't', u: '°C', k: 'analog' },
      { n: 't', u: '°C', k: 'analog' },
    ];
    await svc.announce(dev('a', bad));
    await svc.announce(dev('a', bad));
    const skippedLogs = logs.filter((l) => l.ev === 'ha.sensors-skipped');
    expect(skippedLogs).toHaveLength(1);
    expect(skippedLogs[0]).toMatchObject({ id: 'a', skipped: [{ n: 't', reason: 'duplicate-name' }] });
  });

  it('keeps call order per device: a removal AFTER a config in flight, a config AFTER a queued removal', async () => {
    make();
    const g = bus.hold();
    const p1 = svc.announce(dev('a'));
    await vi.advanceTimersByTimeAsync(0); // the config is now inside bus.publish
    const p2 = svc.forget('a');
    const p3 = svc.announce(dev('a', undefined, '0.3.0'));
    g.open();
    expect(await Promise.all([p1, p2, p3])).toEqual(['published', 'removed', 'published']);
    expect(bus.sent.map((s) => (s.text === '' ? 'removal' : JSON.parse(s.text).device.sw_version))).toEqual(['0.1.0', 'removal', '0.3.0']);
  });

  it('a config still queued when its device is forgotten is not sent at all', async () => {
    make();
    const p1 = svc.announce(dev('a'));
    const p2 = svc.forget('a');
    expect(await Promise.all([p1, p2])).toEqual(['superseded', 'removed']);
    expect(bus.sent.map((s) => s.text)).toEqual(['']);
  });
});

describe('HaService: forget', () => {
  it('publishes an empty retained payload, also for a device it never announced', async () => {
    make();
    await svc.announce(dev('a'));
    expect(await svc.forget('a')).toBe('removed');
    expect(await svc.forget('ghost')).toBe('removed');
    expect(bus.sent.slice(1)).toEqual([
      { topic: 'homeassistant/device/a/config', text: '', opts: { qos: 1, retain: true }, at: 0 },
      { topic: 'homeassistant/device/ghost/config', text: '', opts: { qos: 1, retain: true }, at: 0 },
    ]);
    expect(svc.devices()).toEqual([]);
    expect(svc.counters().removed).toBe(2);
  });
});

describe('HaService: Home Assistant birth', () => {
  async function fleet(n: number): Promise<string[]> {
    const ids = Array.from({ length: n }, (_, i) => 'dev-' + i);
    for (const id of ids) await svc.announce(dev(id));
    bus.sent = [];
    return ids;
  }

  it('subscribes to <prefix>/status on start and unsubscribes on stop', async () => {
    make({ prefix: 'ha' });
    await svc.start();
    await svc.start();
    expect([...bus.handlers.keys()]).toEqual(['ha/status']);
    await svc.stop();
    await svc.stop();
    expect(bus.handlers.size).toBe(0);
    expect(await svc.announce(dev('a'))).toBe('stopped');
  });

  it('re-sends every known config once, spread over [0, delayMsMax): one device per slot', async () => {
    make({ delayMsMax: 5000 });
    await svc.start();
    const ids = await fleet(10);
    bus.status('online');
    expect(svc.pendingResends()).toBe(10);
    expect(bus.sent).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(5000);
    expect(svc.pendingResends()).toBe(0);
    expect(bus.sent).toHaveLength(10);
    // Each device at most once, each at its slot [i, i+1) x 500 ms; re-sent even though unchanged.
    expect(bus.sent.map((s) => s.topic)).toEqual(ids.map((id) => 'homeassistant/device/' + id + '/config'));
    bus.sent.forEach((s, i) => {
      expect(s.at).toBeGreaterThanOrEqual(i * 500);
      expect(s.at).toBeLessThan((i + 1) * 500);
      expect(s.opts).toEqual({ qos: 1, retain: true });
    });
    expect(svc.counters()).toMatchObject({ births: 1, resent: 10 });
    await vi.advanceTimersByTimeAsync(60_000);
    expect(bus.sent).toHaveLength(10);
  });

  it('re-sends the newest config when the device changed while the re-send was pending', async () => {
    make();
    await svc.start();
    await fleet(1);
    bus.status('online');
    await svc.announce(dev('dev-0', undefined, '0.5.0'));
    await vi.advanceTimersByTimeAsync(5000);
    expect(bus.sent.map((s) => JSON.parse(s.text).device.sw_version)).toEqual(['0.5.0', '0.5.0']);
  });

  it('a second birth while re-sends are pending adds none', async () => {
    make();
    await svc.start();
    await fleet(4);
    bus.status('online');
    bus.status('online');
    await vi.advanceTimersByTimeAsync(5000);
    expect(bus.sent).toHaveLength(4);
    bus.status('online');
    await vi.advanceTimersByTimeAsync(5000);
    expect(bus.sent).toHaveLength(8);
  });

  it("Home Assistant's will cancels pending re-sends; other payloads are ignored", async () => {
    make();
    await svc.start();
    await fleet(3);
    bus.status('starting');
    expect(svc.pendingResends()).toBe(0);
    bus.status('online');
    expect(svc.pendingResends()).toBe(3);
    bus.status('offline');
    expect(svc.pendingResends()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(bus.sent).toHaveLength(0);
  });

  it('honours custom birth and will payloads', async () => {
    make({ birthPayload: 'up', willPayload: 'down' });
    await svc.start();
    await fleet(2);
    bus.status('online');
    expect(svc.pendingResends()).toBe(0);
    bus.status('up');
    expect(svc.pendingResends()).toBe(2);
    bus.status('down');
    expect(svc.pendingResends()).toBe(0);
  });

  it('stop cancels pending re-sends', async () => {
    make();
    await svc.start();
    await fleet(3);
    bus.status('online');
    await svc.stop();
    expect(svc.pendingResends()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(bus.sent).toHaveLength(0);
  });

  it('a forgotten device is not re-sent', async () => {
    make();
    await svc.start();
    await fleet(2);
    bus.status('online');
    await svc.forget('dev-1');
    await vi.advanceTimersByTimeAsync(5000);
    expect(bus.sent.map((s) => s.topic + ' ' + (s.text === '' ? 'removal' : 'config'))).toEqual([
      'homeassistant/device/dev-1/config removal',
      'homeassistant/device/dev-0/config config',
    ]);
  });

  it('delayMsMax 0 re-sends at once', async () => {
    make({ delayMsMax: 0 });
    await svc.start();
    await fleet(3);
    bus.status('online');
    await vi.advanceTimersByTimeAsync(0);
    expect(bus.sent).toHaveLength(3);
  });

  it('refuses a negative or infinite delayMsMax and a bad prefix', () => {
    expect(() => make({ delayMsMax: -1 })).toThrow(/delayMsMax/);
    expect(() => make({ delayMsMax: Infinity })).toThrow(/delayMsMax/);
    expect(() => make({ prefix: 'ha/#' })).toThrow(/prefix/);
    svc = new HaService({ bus });
  });
});
