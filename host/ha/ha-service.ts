/**
 * The Home Assistant shell: publishes each device's discovery message (ha-discovery.ts) on the
 * bus, retained with QoS 1, and re-sends every known device's message when Home Assistant
 * announces itself with its birth message (`online` on `<prefix>/status`).
 *
 * Why both retained and re-sent: the documentation ("Discovery messages and availability")
 * names the birth message as the better trigger and retained configs as the alternative;
 * retained configs cover a Home Assistant that subscribes after the companion announced, the
 * re-send covers a broker that lost its retained store (an external broker restarted without
 * persistence). It also asks for "some random delay" so a large fleet does not hit the broker
 * at once: device i of n is re-sent at (i + u) * delayMsMax / n with u uniform in [0, 1), one
 * device per slot, so the re-sends spread evenly over [0, delayMsMax).
 *
 * Ordering rules:
 *  - Publishes of one device run one at a time in call order (a promise chain per device), so a
 *    newer config is never overtaken by an older one, and a removal comes AFTER any publish
 *    queued before it.
 *  - When a device loses sensors, the update that reduces the dropped components to their
 *    platform is published BEFORE the new config (the documented component removal).
 *  - A config is recorded as published only AFTER the bus accepted it; a failed publish leaves
 *    the old hash, so the next announce of the same config tries again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SeededRng, type Rng } from '../../firmware/core/rng.js';
import type { Bus } from '../bus/bus.js';
import type { BusLog } from '../bus/rejection-log.js';
import {
  HA_DEFAULT_PREFIX,
  buildDeviceDiscovery,
  buildDeviceRemoval,
  componentRemovalUpdate,
  discoveryText,
  type HaDevice,
  type HaDevicePayload,
} from './ha-discovery.js';

export interface HaServiceOptions {
  /** The companion's bus (embedded or external); only publish and subscribe are used. */
  bus: Pick<Bus, 'publish' | 'subscribe'>;
  /** Source of the re-send delays (default: seeded from the OS). */
  random?: Rng;
  /** Re-sends after a birth message are spread over [0, delayMsMax) (default 5000 ms). */
  delayMsMax?: number;
  log?: BusLog;
  /** Home Assistant's discovery prefix (default `homeassistant`); its status topic is `<prefix>/status`. */
  prefix?: string;
  /** Home Assistant's birth payload (default `online`) and will payload (default `offline`). */
  birthPayload?: string;
  willPayload?: string;
  /** Companion version, reported as the origin's sw_version. */
  swVersion?: string;
}

/** What announce() did. */
export type HaAnnounceResult =
  | 'published' // the config went out
  | 'unchanged' // identical to the last published config: nothing sent
  | 'no-sensors' // no valid sensor: nothing to discover (a previous config was removed)
  | 'clash' // a unique_id of this device is used by another known device: refused
  | 'failed' // the bus refused the publish (logged); the next announce retries
  | 'superseded' // forgotten before the queued publish ran: the removal went out instead
  | 'stopped';

export interface HaCounters {
  published: number;
  unchanged: number;
  resent: number;
  removed: number;
  failed: number;
  /** Birth messages seen on the status topic. */
  births: number;
}

interface Entry {
  id: string;
  /** The config wanted now, its text and hash. */
  payload: HaDevicePayload;
  text: string;
  hash: string;
  /** The config last accepted by the bus (null before the first success). */
  published: HaDevicePayload | null;
  publishedHash: string | null;
  /** Pending re-send after a birth message. */
  timer: NodeJS.Timeout | null;
}

export class HaService {
  private readonly _bus: Pick<Bus, 'publish' | 'subscribe'>;
  private readonly _rng: Rng;
  private readonly _delayMsMax: number;
  private readonly _log: BusLog;
  private readonly _prefix: string;
  private readonly _birth: string;
  private readonly _will: string;
  private readonly _swVersion: string | undefined;
  /** Known devices in announce order (the re-send order). */
  private readonly _entries = new Map<string, Entry>();
  /** unique_id -> device id, to refuse a device whose entities would collide with another's. */
  private readonly _owners = new Map<string, string>();
  /**
   * Tail of each device's publish chain, keyed by id rather than held by the entry, so a
   * removal and a later re-announce of the same id still go out in call order. An entry is
   * dropped when its chain settles, so the map holds only devices with publishes in flight.
   */
  private readonly _tails = new Map<string, Promise<void>>();
  private _unsubscribe: (() => Promise<void>) | null = null;
  private _started = false;
  private _stopped = false;
  private readonly _counts: HaCounters = { published: 0, unchanged: 0, resent: 0, removed: 0, failed: 0, births: 0 };

  constructor(o: HaServiceOptions) {
    const delayMsMax = o.delayMsMax ?? 5000;
    if (!(delayMsMax >= 0) || !Number.isFinite(delayMsMax)) throw new Error('delayMsMax must be a finite number >= 0');
    this._bus = o.bus;
    this._rng = o.random ?? new SeededRng(randomBytes(4).readInt32LE(0));
    this._delayMsMax = delayMsMax;
    this._log = o.log ?? (() => {});
    this._prefix = o.prefix ?? HA_DEFAULT_PREFIX;
    this._birth = o.birthPayload ?? 'online';
    this._will = o.willPayload ?? 'offline';
    this._swVersion = o.swVersion;
    // Fails early on a bad prefix (a configuration error).
    buildDeviceRemoval('x', { prefix: this._prefix });
  }

  /** Subscribes to Home Assistant's status topic. Idempotent. */
  async start(): Promise<void> {
    if (this._started || this._stopped) return;
    this._started = true;
    const unsubscribe = await this._bus.subscribe(this._prefix + '/status', (_topic, payload) => this._onStatus(payload.toString('utf8')));
    if (this._stopped) await unsubscribe();
    else this._unsubscribe = unsubscribe;
  }

  /** Cancels pending re-sends and unsubscribes. Idempotent; announce() does nothing afterwards. */
  async stop(): Promise<void> {
    if (this._stopped) return;
    this._stopped = true;
    for (const e of this._entries.values()) this._cancel(e);
    const u = this._unsubscribe;
    this._unsubscribe = null;
    if (u !== null) await u();
  }

  /**
   * Publishes the device's discovery config (retained, QoS 1) unless it is identical to the one
   * last published. Resolves when the publish is done; never rejects on bus errors (logged).
   */
  async announce(device: HaDevice, nodeName?: string): Promise<HaAnnounceResult> {
    if (this._stopped) return 'stopped';
    const built = buildDeviceDiscovery(device, { prefix: this._prefix, nodeName, swVersion: this._swVersion });
    const id = device.id;
    const old = this._entries.get(id);
    if (Object.keys(built.payload.components).length === 0) {
      this._log({ level: 'warn', ev: 'ha.no-sensors', id, skipped: skippedForLog(built.skipped) });
      if (old !== undefined) await this.forget(id);
      return 'no-sensors';
    }
    const uniqueIds = componentUniqueIds(built.payload);
    for (const u of uniqueIds) {
      const owner = this._owners.get(u);
      if (owner !== undefined && owner !== id) {
        this._log({ level: 'error', ev: 'ha.unique-id-clash', id, other: owner, uniqueId: u });
        return 'clash';
      }
    }
    const text = discoveryText(built.payload);
    const hash = sha256(text);
    let e = old;
    if (e === undefined) {
      e = { id, payload: built.payload, text, hash, published: null, publishedHash: null, timer: null };
      this._entries.set(id, e);
    } else {
      if (e.hash === hash && e.publishedHash === hash) {
        this._counts.unchanged++;
        return 'unchanged';
      }
      for (const u of componentUniqueIds(e.payload)) if (this._owners.get(u) === id) this._owners.delete(u);
      e.payload = built.payload;
      e.text = text;
      e.hash = hash;
    }
    for (const u of uniqueIds) this._owners.set(u, id);
    // Logged once per distinct config, not on every identical announce.
    if (built.skipped.length > 0) this._log({ level: 'warn', ev: 'ha.sensors-skipped', id, skipped: skippedForLog(built.skipped) });
    return this._enqueue(e, false);
  }

  /**
   * Removes a device deleted from the registry: publishes the empty retained payload on its
   * discovery topic (also when this companion never announced it: a retained config from an
   * earlier run may still be at the broker).
   */
  async forget(id: string): Promise<'removed' | 'failed'> {
    const e = this._entries.get(id);
    const removal = buildDeviceRemoval(id, { prefix: this._prefix });
    if (e !== undefined) {
      this._cancel(e);
      this._entries.delete(id);
      for (const u of componentUniqueIds(e.payload)) if (this._owners.get(u) === id) this._owners.delete(u);
    }
    return this._chain(id, async (): Promise<'removed' | 'failed'> => {
      try {
        await this._bus.publish(removal.topic, removal.payload, { qos: 1, retain: true });
        this._counts.removed++;
        return 'removed';
      } catch (err) {
        this._counts.failed++;
        this._log({ level: 'error', ev: 'ha.publish-failed', id, topic: removal.topic, message: String(err) });
        return 'failed';
      }
    });
  }

  /** Ids of the devices announced and not forgotten, in announce order. */
  devices(): string[] {
    return [...this._entries.keys()];
  }

  /** Re-sends scheduled and not yet sent. */
  pendingResends(): number {
    let n = 0;
    for (const e of this._entries.values()) if (e.timer !== null) n++;
    return n;
  }

  counters(): HaCounters {
    return { ...this._counts };
  }

  /** A message on `<prefix>/status`: the birth schedules the re-sends, the will cancels them. */
  private _onStatus(text: string): void {
    if (this._stopped) return;
    if (text === this._will) {
      for (const e of this._entries.values()) this._cancel(e);
      return;
    }
    if (text !== this._birth) return;
    this._counts.births++;
    const entries = [...this._entries.values()];
    const n = entries.length;
    this._log({ level: 'info', ev: 'ha.birth', devices: n, delayMsMax: this._delayMsMax });
    for (let i = 0; i < n; i++) {
      const e = entries[i];
      // One re-send pending per device at most: a second birth inside the window adds nothing,
      // the pending re-send will publish the newest config anyway.
      if (e.timer !== null) continue;
      const delayMs = Math.floor(((i + this._rng.next()) * this._delayMsMax) / n);
      e.timer = setTimeout(() => {
        e.timer = null;
        if (this._stopped || this._entries.get(e.id) !== e) return;
        this._counts.resent++;
        void this._enqueue(e, true);
      }, delayMs);
      e.timer.unref();
    }
  }

  /** Chains a publish of the entry's current config; `force` publishes even when unchanged. */
  private _enqueue(e: Entry, force: boolean): Promise<HaAnnounceResult> {
    return this._chain(e.id, () => this._publish(e, force));
  }

  /** Runs fn AFTER every publish queued before for this id. fn must not reject. */
  private _chain<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const run = (this._tails.get(id) ?? Promise.resolve()).then(fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this._tails.set(id, tail);
    void tail.then(() => {
      if (this._tails.get(id) === tail) this._tails.delete(id);
    });
    return run;
  }

  private async _publish(e: Entry, force: boolean): Promise<HaAnnounceResult> {
    if (this._stopped) return 'stopped';
    // Forgotten while queued: the removal queued after it owns the topic now.
    if (this._entries.get(e.id) !== e) return 'superseded';
    if (!force && e.publishedHash === e.hash) {
      this._counts.unchanged++;
      return 'unchanged';
    }
    const topic = buildDeviceRemoval(e.id, { prefix: this._prefix }).topic;
    const payload = e.payload;
    const text = e.text;
    const hash = e.hash;
    try {
      const dropping = e.published !== null ? componentRemovalUpdate(e.published, payload) : null;
      if (dropping !== null) await this._bus.publish(topic, discoveryText(dropping), { qos: 1, retain: true });
      await this._bus.publish(topic, text, { qos: 1, retain: true });
    } catch (err) {
      this._counts.failed++;
      this._log({ level: 'error', ev: 'ha.publish-failed', id: e.id, topic, message: String(err) });
      return 'failed';
    }
    e.published = payload;
    e.publishedHash = hash;
    this._counts.published++;
    return 'published';
  }

  private _cancel(e: Entry): void {
    if (e.timer !== null) {
      clearTimeout(e.timer);
      e.timer = null;
    }
  }
}

function componentUniqueIds(p: HaDevicePayload): string[] {
  const out: string[] = [];
  for (const c of Object.values(p.components)) if ('unique_id' in c) out.push(c.unique_id);
  return out;
}

function skippedForLog(skipped: Array<{ n: unknown; reason: string }>): Array<{ n: string; reason: string }> {
  // Peer strings are cut: a log line stays short whatever the meta holds.
  return skipped.slice(0, 8).map((s) => ({ n: String(s.n).slice(0, 40), reason: s.reason }));
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
