/**
 * The embedded broker: Aedes 1 on a net.Server (loopback by default), hardened for devices on
 * a LAN, behind the Bus interface (bus.ts).
 *
 * Where each defence sits, in the order a connection meets them:
 *  1. accept:            connectionsMax, connectionsPerAddressMax (non-loopback addresses).
 *  2. raw byte stream:   FrameGuard (frame-guard.ts): Remaining Length encoding and size
 *                        (packetBytesMax, checked BEFORE the body is buffered), reserved packet
 *                        types and flag bits, CONNECT first and only once.
 *  3. parser:            mqtt-packet rejects the remaining malformed packets (reason `malformed`).
 *  4. preConnect:        CONNECT contents the parser lets through: will QoS 3, password without
 *                        user name, NUL or ill-formed UTF-8 in client id / user name / will topic.
 *  5. authenticate:      device credentials (HMAC of the id under the fleet key), anonymous only
 *                        from loopback, empty client id with clean session off, client id equal
 *                        to the device id, no taking over another principal's client id, will
 *                        topic inside the ACL. Refusals answer with a CONNACK return code.
 *  6. authorizePublish:  topic strings, ACL, per-client publish rate, then the ingest hooks;
 *                        aedes writes the QoS 1 PUBACK only AFTER this callback
 *                        (lib/handlers/publish.js runs authorizePublish, then enqueuePublish
 *                        writes the PUBACK and routes the message), which is what makes a PUBACK
 *                        mean "stored".
 *  7. authorizeSubscribe / authorizeForward: ACL on filters (refused filters get SUBACK 0x80)
 *                        and on every delivery, retained and queued messages included.
 * Every rejection is counted by reason and logged (rate-limited, rejection-log.ts).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client, type ConnectPacket, type PublishPacket, type Subscription } from 'aedes';
import {
  BusRejection,
  dispatchMessage,
  type Bus,
  type BusAddress,
  type BusCounters,
  type BusPacketInfo,
  type ClientEvent,
  type ClientEventHandler,
  type DevicePublishHandler,
  type MessageHandler,
  type PublishOptions,
  type RejectReason,
} from './bus.js';
import { checkDeviceCredentials, isValidDeviceId, mayPublish, mayReceive, maySubscribe, type Principal } from './credentials.js';
import { FrameGuard, type FrameReason } from './frame-guard.js';
import { TokenBucket } from './rate-limit.js';
import { RejectionLog, jsonLineLog, type BusLog } from './rejection-log.js';
import { isTopicName, stringProblem } from './topic.js';

export interface EmbeddedBrokerOptions {
  /** Fleet key (hex) under which device passwords are derived. */
  fleetKeyHex: string;
  /** Bind address; loopback unless the operator names an interface (INTERFACES.md). */
  host?: string;
  /** TCP port; 0 picks a free one (tests). Default 1883. */
  port?: number;
  /**
   * Largest Remaining Length accepted. Default 64 KiB: espfleet messages (telemetry, RPC,
   * Home Assistant discovery) are a few KiB, and connectionsMax x packetBytesMax bounds the
   * memory the parsers can hold (1024 x 64 KiB = 64 MiB).
   */
  packetBytesMax?: number;
  /** Open TCP connections at most (default 1024): each costs a socket, a parser and a session. */
  connectionsMax?: number;
  /**
   * Open connections per remote address at most (default 32), not applied to loopback, where
   * the emulator runs many boards from one address. Stops one LAN host from taking all slots.
   */
  connectionsPerAddressMax?: number;
  /** Time allowed between accept and CONNECT (default 10 s; aedes' own default is 30 s). */
  connectTimeoutMs?: number;
  /**
   * Device publish rate: sustained messages/s and burst (defaults 50/s, burst 500: a device
   * samples every few seconds; the burst covers an outbox replay after a reconnect). A publish
   * beyond the rate is delayed (the client's next packets wait, which is TCP back-pressure);
   * one that would wait longer than publishWaitMaxMs is refused (`publish-rate`, disconnect).
   * 0 disables the limit.
   */
  devicePublishRatePerSec?: number;
  devicePublishBurst?: number;
  /** The same for anonymous loopback clients; default 0 (local tools are trusted like Mosquitto's local-only default). */
  localPublishRatePerSec?: number;
  localPublishBurst?: number;
  /** Longest delay a rate-limited publish may get before it is refused (default 5 s). */
  publishWaitMaxMs?: number;
  /**
   * Which peer addresses count as local: anonymous clients are accepted only from these, and
   * the per-address limit does not apply to them. Default: loopback (isLoopbackAddress).
   */
  isLocalAddress?: (address: string) => boolean;
  log?: BusLog;
  /** Rejection log lines per reason per window (default 5 per 10 s). */
  logBurst?: number;
  logWindowMs?: number;
  /** Clock for rate limits and logs (tests). */
  nowMs?: () => number;
}

const DEFAULTS = {
  host: '127.0.0.1',
  port: 1883,
  packetBytesMax: 64 * 1024,
  connectionsMax: 1024,
  connectionsPerAddressMax: 32,
  connectTimeoutMs: 10_000,
  devicePublishRatePerSec: 50,
  devicePublishBurst: 500,
  localPublishRatePerSec: 0,
  localPublishBurst: 1000,
  publishWaitMaxMs: 5000,
};

export function isLoopbackAddress(addr: string): boolean {
  return addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.');
}

/** What the broker knows about one connection, keyed by its stream. */
class ConnState {
  principal: Principal | null = null;
  connectClientId = '';
  connectClean = true;
  /** Will topic from CONNECT, checked against the ACL once the principal is known. */
  willTopic: string | null = null;
  bucket: TokenBucket | null = null;
  /** Tail of this client's publish pipeline: hooks run one at a time, in arrival order. */
  tail: Promise<void> = Promise.resolve();
  pending = 0;
  failed: BusRejection | null = null;
  /** First rejection or close reason seen; reported with the disconnect event. */
  closeReason: string | null = null;
  counted = false;

  constructor(
    readonly address: string,
    readonly local: boolean,
    readonly guard: FrameGuard,
  ) {}
}

/**
 * The socket as aedes sees it: the same bytes, each chunk passed through the FrameGuard before
 * the parser gets it. A rejected chunk is never pushed; the stream is destroyed with a
 * BusRejection, which aedes reports as a connection or client error.
 */
class GuardedStream extends Duplex {
  constructor(
    readonly socket: Socket,
    readonly guard: FrameGuard,
    onReject: (reason: FrameReason, detail: string) => BusRejection,
  ) {
    super({ allowHalfOpen: false });
    socket.on('data', (chunk: Buffer) => {
      const reason = guard.feed(chunk);
      if (reason !== null) {
        this.destroy(onReject(reason, guard.detail));
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.socket.write(chunk)) cb();
    else this.socket.once('drain', () => cb());
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    // mqtt-packet writes a packet in several pieces inside cork/uncork: send them as one segment.
    this.socket.cork();
    let ok = true;
    for (const c of chunks) ok = this.socket.write(c.chunk);
    this.socket.uncork();
    if (ok) cb();
    else this.socket.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

/** The parts of aedes' runtime objects the broker reads beyond the published types. */
interface AedesInternals {
  persistence: { createRetainedStream(pattern: string): AsyncIterable<{ topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean }> };
  clients: Record<string, Client | undefined>;
}

/** Maps aedes/mqtt-packet error messages to reasons; null = not a rejection (network close). */
export function classifyBrokerError(err: Error): RejectReason | null {
  if (err instanceof BusRejection) return err.reason;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || code === 'ERR_STREAM_PREMATURE_CLOSE') return null;
  const m = err.message;
  if (m === 'connection closed' || m === 'write after end') return null;
  if (m === 'keep alive timeout') return 'keepalive-timeout';
  if (m === 'connect did not arrive in time') return 'connect-timeout';
  if (m === 'unacceptable protocol version' || m === 'Invalid protocol version') return 'unsupported-protocol-version';
  if (m === 'Client queue limit reached') return 'queue-limit';
  if (m === 'drain timeout') return 'slow-consumer';
  if (m.startsWith('maxInflightInbound exceeded')) return 'inflight-max';
  if (m.startsWith('Connect flag bit 0') || m.startsWith('Will Retain Flag') || m.startsWith('Will QoS must be')) return 'reserved-flags';
  if (m === 'Invalid variable byte integer') return 'bad-remaining-length';
  // aedes' topic checks (lib/handlers/publish.js, lib/utils.js validateTopic).
  if (/(not|only) allowed in (PUBLISH|SUBSCRIBE)|empty topic|to an empty topic|too many levels/.test(m)) return 'invalid-topic';
  return 'malformed';
}

function packetInfo(p: { qos: 0 | 1 | 2; retain?: boolean; dup?: boolean; messageId?: number }, will: boolean): BusPacketInfo {
  return { qos: p.qos, retain: p.retain === true, dup: p.dup === true, messageId: p.messageId, will };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class EmbeddedBus implements Bus {
  readonly kind = 'embedded' as const;
  private readonly _o: Required<Omit<EmbeddedBrokerOptions, 'log' | 'logBurst' | 'logWindowMs' | 'nowMs' | 'isLocalAddress'>>;
  private readonly _isLocal: (address: string) => boolean;
  private readonly _log: BusLog;
  private readonly _now: () => number;
  private readonly _rejections: RejectionLog;
  private _broker: Aedes | null = null;
  private _server: Server | null = null;
  private _address: BusAddress | null = null;
  private _stopping: Promise<void> | null = null;
  private readonly _states = new WeakMap<object, ConnState>();
  private readonly _sockets = new Set<Socket>();
  private readonly _perAddress = new Map<string, number>();
  /** Device ids that have authenticated: their client ids are closed to every other principal. Bounded by the fleet (credential-gated). */
  private readonly _deviceIds = new Set<string>();
  private readonly _hooks: DevicePublishHandler[] = [];
  private readonly _eventHandlers = new Set<ClientEventHandler>();
  private readonly _counts = { ingested: 0, ingestFailed: 0, throttled: 0, clientsConnected: 0, connectionsAccepted: 0 };

  constructor(opts: EmbeddedBrokerOptions) {
    this._o = {
      fleetKeyHex: opts.fleetKeyHex,
      host: opts.host ?? DEFAULTS.host,
      port: opts.port ?? DEFAULTS.port,
      packetBytesMax: opts.packetBytesMax ?? DEFAULTS.packetBytesMax,
      connectionsMax: opts.connectionsMax ?? DEFAULTS.connectionsMax,
      connectionsPerAddressMax: opts.connectionsPerAddressMax ?? DEFAULTS.connectionsPerAddressMax,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      devicePublishRatePerSec: opts.devicePublishRatePerSec ?? DEFAULTS.devicePublishRatePerSec,
      devicePublishBurst: opts.devicePublishBurst ?? DEFAULTS.devicePublishBurst,
      localPublishRatePerSec: opts.localPublishRatePerSec ?? DEFAULTS.localPublishRatePerSec,
      localPublishBurst: opts.localPublishBurst ?? DEFAULTS.localPublishBurst,
      publishWaitMaxMs: opts.publishWaitMaxMs ?? DEFAULTS.publishWaitMaxMs,
    };
    // Decode once so a bad key fails at construction, not on the first device.
    checkDeviceCredentials(this._o.fleetKeyHex, 'probe', 'x');
    this._log = opts.log ?? jsonLineLog;
    this._now = opts.nowMs ?? Date.now;
    this._isLocal = opts.isLocalAddress ?? isLoopbackAddress;
    this._rejections = new RejectionLog(this._log, opts.logBurst, opts.logWindowMs);
  }

  async start(): Promise<void> {
    if (this._broker !== null) throw new Error('bus already started');
    const aedesOpts: AedesOptions = {
      connectTimeout: this._o.connectTimeoutMs,
      preConnect: (client, packet, cb) => this._preConnect(client, packet, cb),
      authenticate: (client, username, password, cb) => this._authenticate(client, username, password, cb),
      authorizePublish: (client, packet, cb) => this._authorizePublish(client, packet, cb),
      authorizeSubscribe: (client, sub, cb) => this._authorizeSubscribe(client, sub, cb),
      authorizeForward: (client, packet) => {
        const st = this._state(client);
        return st?.principal && mayReceive(st.principal, packet.topic) ? packet : null;
      },
    };
    const broker = await Aedes.createBroker(aedesOpts);
    this._broker = broker;
    broker.on('clientError', (client, err) => this._onClientError(client, err));
    broker.on('connectionError', (client, err) => this._onClientError(client, err));
    broker.on('clientReady', (client) => this._onClientReady(client));
    broker.on('clientDisconnect', (client) => this._onClientDisconnect(client));

    const server = createServer({ noDelay: true }, (socket) => this._accept(socket));
    this._server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this._o.port, this._o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this._log({ level: 'error', ev: 'bus.server.error', message: err.message }));
    const a = server.address();
    if (a === null || typeof a === 'string') throw new Error('server has no TCP address');
    this._address = { host: a.address, port: a.port };
    this._log({ level: 'info', ev: 'bus.listen', host: a.address, port: a.port });
  }

  stop(): Promise<void> {
    if (this._stopping === null) this._stopping = this._doStop();
    return this._stopping;
  }

  private async _doStop(): Promise<void> {
    const server = this._server;
    const broker = this._broker;
    if (server !== null) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of this._sockets) s.destroy();
      await closed;
    }
    if (broker !== null) await new Promise<void>((resolve) => broker.close(() => resolve()));
    this._rejections.flush();
    this._address = null;
  }

  async publish(topic: string, payload: Buffer | string, opts: PublishOptions = {}): Promise<void> {
    const broker = this._need();
    const packet = {
      cmd: 'publish' as const,
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload,
      qos: opts.qos ?? 0,
      retain: opts.retain ?? false,
      dup: false,
    };
    await new Promise<void>((resolve, reject) => broker.publish(packet, (err) => (err ? reject(err) : resolve())));
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>> {
    const broker = this._need();
    const dollar = filter.charCodeAt(0) === 36;
    const onError = (err: unknown) => this._log({ level: 'error', ev: 'bus.subscriber.error', filter, message: String(err) });
    // Called by the in-process emitter for every routed message; cb first so a slow handler
    // never holds the router. [MQTT-4.7.2-1]: wildcard filters do not see `$` topics.
    const deliver = (packet: { topic: string; payload: Buffer | string; qos: 0 | 1 | 2; retain?: boolean; dup?: boolean; messageId?: number }, cb: () => void) => {
      cb();
      if (!dollar && packet.topic.charCodeAt(0) === 36) return;
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      dispatchMessage([handler], packet.topic, payload, packetInfo(packet, false), onError);
    };
    await new Promise<void>((resolve) => broker.subscribe(filter, deliver, () => resolve()));
    // Retained messages, as a broker delivers them to a new subscription [MQTT-3.3.1-6].
    const persistence = (broker as unknown as AedesInternals).persistence;
    for await (const p of persistence.createRetainedStream(filter)) {
      dispatchMessage([handler], p.topic, p.payload, { qos: p.qos, retain: true, dup: false, will: false }, onError);
    }
    return () => new Promise<void>((resolve) => broker.unsubscribe(filter, deliver, () => resolve()));
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
    return { ...this._counts, rejections: this._rejections.counts(), linkDrops: 0 };
  }

  disconnect(deviceId: string, reason: string): boolean {
    if (this._broker === null) return false;
    const c = (this._broker as unknown as AedesInternals).clients[deviceId];
    const st = c ? this._state(c) : undefined;
    if (!c || !st || st.principal?.kind !== 'device') return false;
    if (st.closeReason === null) st.closeReason = reason;
    c.close();
    return true;
  }

  address(): BusAddress | null {
    return this._address;
  }

  // --- accept -------------------------------------------------------------------------------

  private _accept(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    const local = this._isLocal(address);
    if (this._stopping !== null) {
      socket.destroy();
      return;
    }
    if (this._sockets.size >= this._o.connectionsMax) {
      this._reject('connections-max', { address, open: this._sockets.size });
      socket.destroy();
      return;
    }
    const perAddress = this._perAddress.get(address) ?? 0;
    if (!local && perAddress >= this._o.connectionsPerAddressMax) {
      this._reject('connections-per-address-max', { address, open: perAddress });
      socket.destroy();
      return;
    }
    this._counts.connectionsAccepted++;
    this._sockets.add(socket);
    this._perAddress.set(address, perAddress + 1);
    socket.once('close', () => {
      this._sockets.delete(socket);
      const n = (this._perAddress.get(address) ?? 1) - 1;
      if (n <= 0) this._perAddress.delete(address);
      else this._perAddress.set(address, n);
    });
    socket.on('error', () => {
      /* reported through the stream that wraps it */
    });
    const guard = new FrameGuard(this._o.packetBytesMax);
    const st = new ConnState(address, local, guard);
    const stream = new GuardedStream(socket, guard, (reason, detail) => this._refuse(st, null, reason, detail));
    this._states.set(stream, st);
    this._need().handle(stream);
  }

  // --- CONNECT ------------------------------------------------------------------------------

  private _state(client: Client | null): ConnState | undefined {
    return client === null ? undefined : this._states.get(client.conn);
  }

  private _preConnect(client: Client, packet: ConnectPacket, cb: (err: Error | null, ok: boolean) => void): void {
    const st = this._state(client);
    if (st === undefined) return cb(new Error('unknown connection'), false);
    const refuse = (reason: RejectReason, detail: string) => cb(this._refuse(st, null, reason, detail), false);
    // Malformed CONNECT packets: close without CONNACK [MQTT-4.8.0-1].
    // [MQTT-3.1.2-14] Will QoS MUST NOT be 3 (mqtt-packet parses it as 3 and passes it on).
    if (packet.will && (packet.will.qos as number) > 2) return refuse('will-qos-invalid', 'will QoS ' + packet.will.qos);
    // [MQTT-3.1.2-22] a password flag without the user name flag.
    if (packet.password !== undefined && packet.username === undefined) return refuse('password-without-username', '');
    const strings: Array<[string, string | undefined]> = [
      ['client id', packet.clientId],
      ['user name', packet.username],
      ['will topic', packet.will?.topic],
    ];
    for (const [what, s] of strings) {
      if (s === undefined) continue;
      const p = stringProblem(s);
      if (p !== null) return refuse(p, what);
    }
    if (packet.will && !isTopicName(packet.will.topic)) return refuse('invalid-topic', 'will topic');
    st.connectClientId = packet.clientId;
    st.connectClean = packet.clean !== false;
    st.willTopic = packet.will ? packet.will.topic : null;
    cb(null, true);
  }

  private _authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    cb: (err: (Error & { returnCode: number }) | null, ok: boolean | null) => void,
  ): void {
    const st = this._state(client);
    if (st === undefined) return cb(Object.assign(new Error('unknown connection'), { returnCode: 3 }), false);
    const clientId = st.connectClientId;
    const refuse = (reason: RejectReason, code: 2 | 3 | 4 | 5, detail: string) =>
      cb(this._refuse(st, clientId, reason, detail, code) as BusRejection & { returnCode: number }, false);
    // [MQTT-3.1.3-8] a zero-byte client id with CleanSession 0: CONNACK 0x02, then close.
    if (clientId === '' && !st.connectClean) return refuse('empty-client-id-persistent', 2, '');
    let principal: Principal;
    if (username === undefined) {
      if (!st.local) return refuse('anonymous-remote', 5, st.address);
      principal = { kind: 'local' };
      if (this._deviceIds.has(clientId)) return refuse('client-id-in-use', 2, 'client id of device ' + clientId);
    } else {
      if (!checkDeviceCredentials(this._o.fleetKeyHex, username, password)) {
        return refuse('bad-credentials', 4, isValidDeviceId(username) ? 'user ' + username : 'invalid device id');
      }
      if (clientId !== username) return refuse('client-id-mismatch', 2, 'device ' + username + ' as client ' + clientId);
      principal = { kind: 'device', id: username };
    }
    if (st.willTopic !== null && !mayPublish(principal, st.willTopic)) return refuse('acl-will', 5, st.willTopic);
    // [MQTT-3.1.4-2] a second connection with a client id closes the first: only the same
    // principal (or the device that owns the id) may do that, so a local tool cannot knock a
    // device off, nor one device another.
    const existing = (this._need() as unknown as AedesInternals).clients[clientId];
    if (existing !== undefined && clientId !== '') {
      const other = this._state(existing);
      const owner = other?.principal ?? null;
      const samePrincipal =
        owner !== null && (owner.kind === 'local' ? principal.kind === 'local' : principal.kind === 'device' && principal.id === owner.id);
      // A device always uses its id as client id (checked above), so it owns that id.
      const rightfulOwner = principal.kind === 'device';
      if (!samePrincipal && !rightfulOwner) return refuse('client-id-in-use', 2, clientId);
      if (other !== undefined && other.closeReason === null) other.closeReason = 'takeover';
    }
    st.principal = principal;
    if (principal.kind === 'device') {
      this._deviceIds.add(principal.id);
      if (this._o.devicePublishRatePerSec > 0) {
        st.bucket = new TokenBucket(this._o.devicePublishRatePerSec, this._o.devicePublishBurst, this._now());
      }
    } else if (this._o.localPublishRatePerSec > 0) {
      st.bucket = new TokenBucket(this._o.localPublishRatePerSec, this._o.localPublishBurst, this._now());
    }
    cb(null, true);
  }

  // --- PUBLISH ------------------------------------------------------------------------------

  private _authorizePublish(client: Client | null, packet: PublishPacket, cb: (err?: Error | null) => void): void {
    // A will of a client from another broker instance (aedes' will sweeper) has no client here.
    if (client === null) return cb(null);
    const st = this._state(client);
    if (st === undefined || st.principal === null) return cb(this._refuse(st, client.id, 'acl-publish', 'not authenticated'));
    const principal = st.principal;
    // aedes authorizes a will when the connection is already closed (Client.close publishes it).
    const isWill = client.closed && st.willTopic === packet.topic;
    const problem = stringProblem(packet.topic);
    if (problem !== null) return cb(this._refuse(st, client.id, problem, 'topic'));
    if (!mayPublish(principal, packet.topic)) {
      return cb(this._refuse(st, client.id, isWill ? 'acl-will' : 'acl-publish', packet.topic));
    }
    let waitMs = 0;
    if (st.bucket !== null && !isWill) {
      waitMs = st.bucket.take(this._now(), this._o.publishWaitMaxMs);
      if (waitMs < 0) return cb(this._refuse(st, client.id, 'publish-rate', 'over ' + st.bucket.ratePerSec + '/s'));
      if (waitMs > 0) this._counts.throttled++;
    }
    const ingest = principal.kind === 'device' && this._hooks.length > 0;
    if (!ingest && waitMs === 0 && st.pending === 0) return cb(null);
    if (st.failed !== null && !isWill) return cb(st.failed);
    // Slow path. The hooks start at once, in arrival order (each runs synchronously up to its
    // first await, where the store has queued the reading), so one group commit takes every
    // publish of a device's window that has arrived, not one per device. The callbacks (and so
    // the PUBACKs) are chained: they go out in arrival order, each only AFTER its own hooks
    // resolved and every earlier one was acknowledged. After a failure nothing later is
    // acknowledged; what was stored anyway is a duplicate the device's retransmission dedupes.
    st.pending++;
    const run = async (): Promise<void> => {
      if (waitMs > 0) await delay(waitMs);
      if (ingest && principal.kind === 'device') await this._runHooks(principal.id, packet, isWill);
    };
    // A will is the connection's last word: its hooks start after every earlier publish settled.
    const work = isWill ? st.tail.then(run) : run();
    // Settled in order below; this keeps an early rejection from being reported as unhandled.
    work.catch(() => undefined);
    const step = (): Promise<void> => (st.failed !== null && !isWill ? Promise.reject(st.failed) : work);
    st.tail = st.tail.then(step).then(
      () => {
        st.pending--;
        cb(null);
      },
      (err: unknown) => {
        st.pending--;
        if (isWill) {
          // A will cannot be retried: it is still published, and the failure logged.
          this._log({ level: 'error', ev: 'bus.ingest.will-failed', clientId: client.id, message: String(err) });
          return cb(null);
        }
        if (st.failed === null) {
          this._counts.ingestFailed++;
          st.failed = this._refuse(st, client.id, 'ingest-failed', String(err));
        }
        // No PUBACK; the error closes the connection so the device retransmits on its next one.
        cb(st.failed);
      },
    )
      // A throwing callback must not leave the chain rejected (the next publish would take it
      // for its own failure) nor become an unhandled rejection.
      .catch((err: unknown) => this._log({ level: 'error', ev: 'bus.publish.callback-failed', clientId: client.id, message: String(err) }));
  }

  private async _runHooks(deviceId: string, packet: PublishPacket, isWill: boolean): Promise<void> {
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload, 'utf8') : packet.payload;
    const info = packetInfo(packet, isWill);
    for (const h of this._hooks.slice()) await h(deviceId, packet.topic, payload, info);
    this._counts.ingested++;
  }

  // --- SUBSCRIBE ----------------------------------------------------------------------------

  private _authorizeSubscribe(client: Client, sub: Subscription, cb: (err: Error | null, sub?: Subscription | null) => void): void {
    const st = this._state(client);
    if (st === undefined || st.principal === null) return cb(this._refuse(st, client.id, 'acl-subscribe', 'not authenticated'));
    const problem = stringProblem(sub.topic);
    // A malformed string is a protocol violation: close [MQTT-1.5.3-1].
    if (problem !== null) return cb(this._refuse(st, client.id, problem, 'topic filter'));
    if (!maySubscribe(st.principal, sub.topic)) {
      // A refused filter is answered with the failure return code 0x80 in SUBACK [MQTT-3.9.3],
      // the connection stays; on a session restore the filter is dropped.
      this._reject('acl-subscribe', { clientId: client.id, address: st.address, filter: sub.topic });
      return cb(null, null);
    }
    cb(null, sub);
  }

  // --- events -------------------------------------------------------------------------------

  private _onClientError(client: Client, err: Error): void {
    const st = this._state(client);
    const reason = classifyBrokerError(err);
    if (st === undefined) return;
    if (reason === null) {
      if (st.closeReason === null) st.closeReason = 'socket-error';
      return;
    }
    if (st.closeReason === null) st.closeReason = reason;
    if (st.counted) return;
    st.counted = true;
    this._reject(reason, {
      clientId: client.id ?? undefined,
      address: st.address,
      detail: err instanceof BusRejection ? err.message : err.message.slice(0, 200),
    });
  }

  private _onClientReady(client: Client): void {
    const st = this._state(client);
    if (st === undefined || st.principal === null) return;
    this._counts.clientsConnected++;
    const p = st.principal;
    this._emit({
      type: 'connect',
      clientId: client.id,
      deviceId: p.kind === 'device' ? p.id : null,
      reason: p.kind === 'device' ? 'device-credentials' : 'anonymous-loopback',
      address: st.address,
    });
  }

  private _onClientDisconnect(client: Client): void {
    const st = this._state(client);
    if (st === undefined || st.principal === null) return;
    this._counts.clientsConnected--;
    const p = st.principal;
    const reason = st.closeReason ?? (st.guard.sawDisconnect ? 'client-disconnect' : 'closed');
    this._emit({ type: 'disconnect', clientId: client.id, deviceId: p.kind === 'device' ? p.id : null, reason, address: st.address });
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

  /**
   * Counts and logs a rejection where it is decided (so the count is there before the client
   * sees the connection close or the CONNACK) and returns the error that closes the connection.
   * The error aedes reports afterwards for the same connection is then not counted again.
   */
  private _refuse(st: ConnState | undefined, clientId: string | null, reason: RejectReason, detail: string, code?: 2 | 3 | 4 | 5): BusRejection {
    const err = new BusRejection(reason, detail, code);
    if (st !== undefined) {
      if (st.closeReason === null) st.closeReason = reason;
      if (st.counted) return err;
      st.counted = true;
    }
    this._reject(reason, { clientId: clientId ?? undefined, address: st?.address, detail });
    return err;
  }

  private _reject(reason: RejectReason, fields: Record<string, unknown>): void {
    this._rejections.record(reason, fields, this._now());
  }

  private _need(): Aedes {
    if (this._broker === null) throw new Error('bus not started');
    return this._broker;
  }
}
