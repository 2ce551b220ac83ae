/**
 * The Bus over an external MQTT 3.1.1 broker (Mosquitto, EMQX), given by `--broker
 * mqtt://user:pass@host:port`. The broker authenticates devices and enforces the ACL
 * (credentials.ts mosquittoAcl gives the rules); this side is the companion's client.
 *
 * Durability (see bus.ts): the broker acknowledges the device, so a device PUBACK does NOT mean
 * stored here. The companion's session is persistent (clean=false, fixed client id) and its
 * subscriptions QoS 1, and a delivery is acknowledged only AFTER the ingest hooks resolve: the
 * broker keeps every unacknowledged or queued message for the companion and delivers it when
 * the companion (re)connects. A hook that rejects drops the link, so the broker redelivers the
 * message on the new connection. Ingest is at-least-once; the store dedups by (device, seq).
 *
 * Device identity comes from the topic (`espfleet/<id>/...`), which the broker's ACL ties to
 * the publishing user. Connect/disconnect events of devices come from their status topic
 * (retained `online` birth, `offline` will); the broker reports no other client events.
 */
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type {
  Bus,
  BusAddress,
  BusCounters,
  BusPacketInfo,
  ClientEvent,
  ClientEventHandler,
  DevicePublishHandler,
  MessageHandler,
  PublishOptions,
} from './bus.js';
import { dispatchMessage } from './bus.js';
import { RejectionLog, jsonLineLog, type BusLog } from './rejection-log.js';
import { DEVICE_PUBLISH_LEAVES, TOPIC_ROOT, parseDeviceTopic, topicMatches } from './topic.js';

export interface ExternalBrokerOptions {
  /** mqtt://[user:pass@]host[:port]; user and password may also be given below. */
  url: string;
  /** Fixed client id of the companion's persistent session (one per companion node). */
  clientId: string;
  username?: string;
  password?: string;
  /** Delay between reconnect attempts (default 1 s). */
  reconnectMs?: number;
  /** Time start() waits for the first connection (default 10 s). */
  connectTimeoutMs?: number;
  /** MQTT keepalive in seconds (default 30). */
  keepaliveSec?: number;
  log?: BusLog;
}

/** Device topics the companion ingests (all a device publishes); QoS 1 on the persistent session. */
export const INGEST_FILTERS = DEVICE_PUBLISH_LEAVES.map((leaf) => TOPIC_ROOT + '/+/' + leaf);

/** The URL without its password, for logs. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(invalid url)';
  }
}

export class ExternalBus implements Bus {
  readonly kind = 'external' as const;
  private readonly _o: ExternalBrokerOptions;
  private readonly _log: BusLog;
  private readonly _rejections: RejectionLog;
  private _client: MqttClient | null = null;
  private _stopping: Promise<void> | null = null;
  private readonly _subs = new Map<string, Set<MessageHandler>>();
  private readonly _hooks: DevicePublishHandler[] = [];
  private readonly _eventHandlers = new Set<ClientEventHandler>();
  private readonly _online = new Set<string>();
  private readonly _counts = { ingested: 0, ingestFailed: 0, linkDrops: 0 };
  private _linkUp = false;

  constructor(opts: ExternalBrokerOptions) {
    const u = new URL(opts.url);
    if (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') throw new Error('broker URL must be mqtt:// or mqtts://');
    this._o = opts;
    this._log = opts.log ?? jsonLineLog;
    this._rejections = new RejectionLog(this._log);
  }

  async start(): Promise<void> {
    if (this._client !== null) throw new Error('bus already started');
    const u = new URL(this._o.url);
    const opts: IClientOptions = {
      clientId: this._o.clientId,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: this._o.reconnectMs ?? 1000,
      connectTimeout: this._o.connectTimeoutMs ?? 10_000,
      keepalive: this._o.keepaliveSec ?? 30,
      resubscribe: true,
    };
    const username = this._o.username ?? (u.username !== '' ? decodeURIComponent(u.username) : undefined);
    const password = this._o.password ?? (u.password !== '' ? decodeURIComponent(u.password) : undefined);
    if (username !== undefined) opts.username = username;
    if (password !== undefined) opts.password = password;
    const url = u.protocol + '//' + u.host;
    const client = connect(url, opts);
    this._client = client;
    // Acknowledge a delivery only AFTER the hooks resolve: mqtt.js sends the PUBACK when this
    // callback succeeds and handles the connection's packets one at a time.
    client.handleMessage = (packet, callback) => {
      this._onMessage(packet).then(
        () => callback(),
        (err: unknown) => {
          this._counts.ingestFailed++;
          this._rejections.record('ingest-failed', { topic: packet.topic, detail: String(err) }, Date.now());
          // Drop the link BEFORE completing, so the packets mqtt.js already read are discarded
          // unacknowledged too; the broker redelivers all of them on the next connection.
          client.stream.destroy();
          callback(err instanceof Error ? err : new Error(String(err)));
        },
      );
    };
    client.on('connect', (connack) => {
      this._linkUp = true;
      this._log({ level: 'info', ev: 'bus.link.up', broker: redact(this._o.url), sessionPresent: connack.sessionPresent });
      this._emit({ type: 'connect', clientId: this._o.clientId, deviceId: null, reason: 'link-up' });
    });
    client.on('close', () => {
      if (!this._linkUp) return;
      this._linkUp = false;
      this._counts.linkDrops++;
      this._log({ level: 'warn', ev: 'bus.link.down', broker: redact(this._o.url) });
      this._emit({ type: 'disconnect', clientId: this._o.clientId, deviceId: null, reason: 'link-down' });
    });
    client.on('error', (err) => this._log({ level: 'warn', ev: 'bus.link.error', message: err.message }));

    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error('no connection to ' + redact(this._o.url) + ' within ' + opts.connectTimeout + ' ms'));
      }, opts.connectTimeout);
      const onConnect = () => {
        cleanup();
        resolve();
      };
      const onError = (err: Error) => {
        // Authentication refusals will not improve with retries.
        if ((err as { code?: number }).code === 4 || (err as { code?: number }).code === 5) {
          cleanup();
          reject(err);
        }
      };
      const cleanup = () => {
        clearTimeout(timer);
        client.off('connect', onConnect);
        client.off('error', onError);
      };
      client.on('connect', onConnect);
      client.on('error', onError);
    }).catch(async (err) => {
      await this.stop();
      throw err;
    });
    const filters = new Set<string>(this._subs.keys());
    for (const f of INGEST_FILTERS) filters.add(f);
    await client.subscribeAsync([...filters], { qos: 1 });
  }

  stop(): Promise<void> {
    if (this._stopping === null) this._stopping = this._doStop();
    return this._stopping;
  }

  private async _doStop(): Promise<void> {
    const client = this._client;
    if (client === null) return;
    // end(false): send DISCONNECT after in-flight messages; the session stays on the broker.
    await client.endAsync(false);
    this._rejections.flush();
  }

  async publish(topic: string, payload: Buffer | string, opts: PublishOptions = {}): Promise<void> {
    await this._need().publishAsync(topic, payload, { qos: opts.qos ?? 0, retain: opts.retain ?? false });
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>> {
    let set = this._subs.get(filter);
    const fresh = set === undefined;
    if (set === undefined) {
      set = new Set();
      this._subs.set(filter, set);
    }
    set.add(handler);
    // One broker subscription per distinct filter; messages are dispatched locally. Ingest
    // filters are already subscribed. A new subscription receives the retained messages.
    if (fresh && this._client !== null && !INGEST_FILTERS.includes(filter)) {
      await this._client.subscribeAsync(filter, { qos: 1 });
    }
    return async () => {
      const s = this._subs.get(filter);
      if (s === undefined || !s.delete(handler) || s.size > 0) return;
      this._subs.delete(filter);
      if (this._client !== null && !INGEST_FILTERS.includes(filter) && this._stopping === null) {
        await this._client.unsubscribeAsync(filter);
      }
    };
  }

  onDevicePublish(handler: DevicePublishHandler): () => void {
    this._hooks.push(handler);
    return () => {
      const i = this._hooks.indexOf(handler);
      if (i !== -1) this._hooks.splice(i, 1);
    };
  }

  onClientEvent(handler: ClientEventHandler): () => void {
    this._eventHandlers.add(handler);
    return () => this._eventHandlers.delete(handler);
  }

  counters(): BusCounters {
    return {
      rejections: this._rejections.counts(),
      ingested: this._counts.ingested,
      ingestFailed: this._counts.ingestFailed,
      throttled: 0,
      clientsConnected: this._online.size,
      connectionsAccepted: 0,
      linkDrops: this._counts.linkDrops,
    };
  }

  /** An external broker's sessions are not ours to close (see Bus.disconnect). */
  disconnect(_deviceId: string, _reason: string): boolean {
    return false;
  }

  address(): BusAddress | null {
    const u = new URL(this._o.url);
    return { host: u.hostname, port: u.port === '' ? (u.protocol === 'mqtts:' ? 8883 : 1883) : Number(u.port) };
  }

  /** One delivery: ingest hooks first (awaited; the PUBACK waits for them), then subscribers. */
  private async _onMessage(packet: IPublishPacket): Promise<void> {
    const topic = packet.topic;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload, 'utf8') : packet.payload;
    // `will` stays false: the broker publishes a will like any other message.
    const info: BusPacketInfo = { qos: packet.qos, retain: packet.retain, dup: packet.dup, messageId: packet.messageId, will: false };
    const dev = parseDeviceTopic(topic);
    if (dev !== null && INGEST_FILTERS.some((f) => topicMatches(f, topic))) {
      if (this._hooks.length > 0) {
        for (const h of this._hooks.slice()) await h(dev.id, topic, payload, info);
        this._counts.ingested++;
      }
      if (dev.leaf === 'status') this._status(dev.id, payload.toString('utf8'));
    }
    const handlers: MessageHandler[] = [];
    for (const [filter, set] of this._subs) if (topicMatches(filter, topic)) for (const h of set) handlers.push(h);
    dispatchMessage(handlers, topic, payload, info, (err) =>
      this._log({ level: 'error', ev: 'bus.subscriber.error', topic, message: String(err) }),
    );
  }

  private _status(id: string, text: string): void {
    if (text === 'online' && !this._online.has(id)) {
      this._online.add(id);
      this._emit({ type: 'connect', clientId: id, deviceId: id, reason: 'status-online' });
    } else if (text === 'offline' && this._online.has(id)) {
      this._online.delete(id);
      this._emit({ type: 'disconnect', clientId: id, deviceId: id, reason: 'status-offline' });
    }
  }

  private _emit(ev: ClientEvent): void {
    for (const h of this._eventHandlers) {
      try {
        h(ev);
      } catch (err) {
        this._log({ level: 'error', ev: 'bus.event-handler.error', message: String(err) });
      }
    }
  }

  private _need(): MqttClient {
    if (this._client === null || this._stopping !== null) throw new Error('bus not started');
    return this._client;
  }
}
