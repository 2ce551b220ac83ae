/**
 * The companion's MQTT bus: the one interface the rest of the companion uses, whether the
 * broker is the embedded one (default) or an external one given by `--broker`.
 *
 * Durability contract of the ingest hook (onDevicePublish):
 *  - Embedded broker: every hook's promise resolves BEFORE the device's PUBACK (QoS 1) or
 *    PUBREC (QoS 2) is written. A PUBACK therefore means "stored". If a hook rejects, no
 *    PUBACK is sent and the device is disconnected (reason `ingest-failed`): MQTT 3.1.1 resends
 *    an unacknowledged PUBLISH only on a new connection [MQTT-4.4.0-1], so the device
 *    reconnects and retransmits it (DUP) from its outbox. Hooks of one client START in arrival
 *    order, each running synchronously up to its first await, and may then overlap: a device's
 *    whole window of publishes can share one group commit. PUBACKs keep the order of the
 *    PUBLISH packets [MQTT-4.6.0-2]: each goes out after its own hooks AND every earlier one
 *    resolved, and after a rejection none of that connection's later publishes is acknowledged
 *    (the store deduplicates what they wrote, by (device, seq)).
 *  - External broker: the broker sends the device its PUBACK when the broker has the message;
 *    the companion cannot delay it, so a PUBACK does NOT mean stored. What holds instead: the
 *    companion subscribes with QoS 1 on a persistent session (clean=false, fixed client id) and
 *    acknowledges each delivery only AFTER the hooks resolve; a rejected hook drops the link so
 *    the broker redelivers. Messages published while the companion is away are queued by the
 *    broker (up to its queue limit, e.g. Mosquitto's max_queued_messages, and only across broker
 *    restarts if the broker persists sessions) and delivered when it returns. Ingest is
 *    at-least-once in both modes; the store deduplicates by (device, seq).
 *
 * Register onDevicePublish hooks BEFORE start(): on an external broker queued messages arrive
 * right after the connection is made, and a message that finds no hook is acknowledged.
 */

/** QoS and flags of a message, the same shape in both modes. */
export interface BusPacketInfo {
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  messageId?: number;
  /** True when the broker publishes a device's will on its behalf. */
  will: boolean;
}

/** Ingest hook: resolve once the message is stored. */
export type DevicePublishHandler = (deviceId: string, topic: string, payload: Buffer, packet: BusPacketInfo) => Promise<void>;

/** Handler of the companion's own subscriptions. Errors are logged, never propagated. */
export type MessageHandler = (topic: string, payload: Buffer, packet: BusPacketInfo) => void | Promise<void>;

/**
 * A client coming or going. Embedded: every MQTT client (deviceId null for local tools).
 * External: devices seen through their status topic (reason `status-online` / `status-offline`)
 * and the companion's own link to the broker (deviceId null, reason `link-up` / `link-down`).
 */
export interface ClientEvent {
  type: 'connect' | 'disconnect';
  clientId: string;
  deviceId: string | null;
  /** connect: how the client authenticated; disconnect: why it went (a rejection reason, `client-disconnect`, `closed`, `takeover`, ...). */
  reason: string;
  address?: string;
}

export type ClientEventHandler = (ev: ClientEvent) => void;

export interface BusCounters {
  /** Rejections by reason (see RejectReason). */
  rejections: Record<string, number>;
  /** Device messages whose hooks all resolved. */
  ingested: number;
  /** Device messages whose hook rejected (never acknowledged). */
  ingestFailed: number;
  /** Publishes delayed by the per-client rate limit. */
  throttled: number;
  /** Clients connected now (embedded) / devices online by status (external). */
  clientsConnected: number;
  /** TCP connections accepted since start (embedded; 0 for external). */
  connectionsAccepted: number;
  /** Times the link to an external broker went down (0 for embedded). */
  linkDrops: number;
}

export interface PublishOptions {
  qos?: 0 | 1 | 2;
  retain?: boolean;
}

export interface BusAddress {
  /** Host the broker is reached at: the bound address (embedded; `0.0.0.0` means every interface) or the URL's host (external). */
  host: string;
  port: number;
}

export interface Bus {
  readonly kind: 'embedded' | 'external';
  start(): Promise<void>;
  /** Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the broker has taken the message (embedded: routed; external: PUBACK for QoS 1). */
  publish(topic: string, payload: Buffer | string, opts?: PublishOptions): Promise<void>;
  /** Subscribes the companion; resolves with a function that removes this handler. Retained messages are delivered too. */
  subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>>;
  /** Adds an ingest hook (see the contract above); returns a function that removes it. */
  onDevicePublish(handler: DevicePublishHandler): () => void;
  onClientEvent(handler: ClientEventHandler): () => void;
  counters(): BusCounters;
  /** Where devices reach the broker (for offers); null before start(). */
  address(): BusAddress | null;
  /**
   * Closes a device's session now (its disconnect event carries `reason`), e.g. when the device
   * moved to another companion: it re-beacons and finds its new owner at once instead of at its
   * next publish. The broker sends the device's will, as for any connection that ends without
   * DISCONNECT. False when the device has no session here, or the broker is external (a client
   * cannot close another client's session; such a device learns it when its publish is refused).
   */
  disconnect(deviceId: string, reason: string): boolean;
}

/** Rejection reasons, a fixed vocabulary (counters and logs use these names). */
export type RejectReason =
  // raw stream, before the parser (frame-guard.ts)
  | 'bad-remaining-length'
  | 'packet-too-large'
  | 'reserved-flags'
  | 'reserved-packet-type'
  | 'unexpected-packet'
  | 'first-packet-not-connect'
  | 'second-connect'
  // parser and protocol
  | 'malformed'
  | 'unsupported-protocol-version'
  | 'connect-timeout'
  | 'keepalive-timeout'
  | 'queue-limit'
  | 'inflight-max'
  | 'slow-consumer'
  // CONNECT contents
  | 'will-qos-invalid'
  | 'password-without-username'
  | 'nul-in-string'
  | 'invalid-utf8'
  | 'invalid-topic'
  | 'empty-client-id-persistent'
  // authentication and ACL
  | 'bad-credentials'
  | 'client-id-mismatch'
  | 'client-id-in-use'
  | 'anonymous-remote'
  | 'acl-will'
  | 'acl-publish'
  | 'acl-subscribe'
  // limits and ingest
  | 'connections-max'
  | 'connections-per-address-max'
  | 'publish-rate'
  | 'ingest-failed';

/** An error carrying a rejection reason and, for CONNECT refusals, the CONNACK return code. */
export class BusRejection extends Error {
  constructor(
    readonly reason: RejectReason,
    detail: string,
    /** CONNACK return code (3.2.2.3): 2 identifier rejected, 4 bad user name or password, 5 not authorized. */
    readonly returnCode?: 2 | 3 | 4 | 5,
  ) {
    super(detail === '' ? reason : reason + ': ' + detail);
  }
}

/** Runs handlers without letting one's failure reach the caller; failures go to onError. */
export function dispatchMessage(
  handlers: Iterable<MessageHandler>,
  topic: string,
  payload: Buffer,
  packet: BusPacketInfo,
  onError: (err: unknown) => void,
): void {
  for (const h of handlers) {
    try {
      const r = h(topic, payload, packet);
      if (r !== undefined && typeof (r as Promise<void>).then === 'function') (r as Promise<void>).then(undefined, onError);
    } catch (err) {
      onError(err);
    }
  }
}
