/**
 * Device credentials and the topic ACL of the bus.
 *
 * INTERFACES.md "Device config": without an explicit `mqtt` block a device's MQTT username is
 * its id and its password the hex HMAC-SHA256 of "mqtt:" + id under the fleet key (the key's
 * hex decoded to bytes). The companion recomputes it, so no per-device provisioning is needed.
 *
 * Principals:
 *  - device: authenticated with the derived password; lives inside `espfleet/<its id>/`.
 *  - local:  anonymous, accepted only from a loopback address (as Mosquitto accepts local
 *            tools by default); never inside a device's namespace: it cannot publish under
 *            `espfleet/` at all and may read what devices report (status, telemetry, meta,
 *            health: what Home Assistant on the same machine needs), never RPC traffic.
 *  - companion: the companion itself; in-process on the embedded broker (no ACL applies),
 *            a configured user on an external broker (see mosquittoAcl below).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ID_LENGTH_MAX, isId } from '../../firmware/config.js';
import { DEVICE_PUBLISH_LEAVES, DEVICE_SUBSCRIBE_LEAF, TOPIC_ROOT, deviceTopic, filtersIntersect } from './topic.js';

export type Principal = { kind: 'device'; id: string } | { kind: 'local' };

/**
 * Device ids appear as one topic level and as the MQTT client id. The device config's own rule
 * (firmware/config.ts isId: 1-32 of A-Z a-z 0-9 _ -) is the one definition, shared here: none of
 * these characters has a meaning in topics or filters.
 */
export const DEVICE_ID_MAX = ID_LENGTH_MAX;

export function isValidDeviceId(id: string): boolean {
  return isId(id);
}

function fleetKeyBytes(fleetKey: string | Buffer): Buffer {
  if (typeof fleetKey !== 'string') return fleetKey;
  if (fleetKey.length === 0 || fleetKey.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(fleetKey)) {
    throw new Error('fleet key must be a non-empty even-length hex string');
  }
  return Buffer.from(fleetKey, 'hex');
}

/** The password a device with this id presents: hex HMAC-SHA256("mqtt:" + id) under the key. */
export function deriveDevicePassword(fleetKey: string | Buffer, id: string): string {
  return createHmac('sha256', fleetKeyBytes(fleetKey)).update('mqtt:' + id, 'utf8').digest('hex');
}

/**
 * True when `password` is the derived password of device `id`. The comparison takes the same
 * time whatever the bytes presented (timingSafeEqual over equal lengths; the expected length,
 * 64 hex digits, is public). An invalid id or a missing password is simply false.
 */
export function checkDeviceCredentials(
  fleetKey: string | Buffer,
  id: string | undefined,
  password: Buffer | string | undefined,
): boolean {
  if (id === undefined || password === undefined || !isValidDeviceId(id)) return false;
  const expected = Buffer.from(deriveDevicePassword(fleetKey, id), 'latin1');
  const given = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  if (given.length !== expected.length) return false;
  return timingSafeEqual(given, expected);
}

/** Topics a device publishes (topic.ts DEVICE_PUBLISH_LEAVES). */
export function devicePublishTopics(id: string): string[] {
  return DEVICE_PUBLISH_LEAVES.map((leaf) => deviceTopic(id, leaf));
}

/** The only filter a device subscribes to: its RPC requests. */
export function deviceSubscribeFilter(id: string): string {
  return deviceTopic(id, DEVICE_SUBSCRIBE_LEAF);
}

/** Leaves a local (anonymous) client may read: what devices report, never RPC traffic. */
const LOCAL_READABLE_LEAVES = ['status', 'telemetry', 'meta', 'health'];
/** The same as filters. */
export const LOCAL_READABLE_FILTERS = LOCAL_READABLE_LEAVES.map((leaf) => TOPIC_ROOT + '/+/' + leaf);

function inRoot(topic: string): boolean {
  return topic === TOPIC_ROOT || topic.startsWith(TOPIC_ROOT + '/');
}

/** May this principal publish to this topic name? `$` topics belong to the broker. */
export function mayPublish(p: Principal, topic: string): boolean {
  if (topic.charCodeAt(0) === 36 /* $ */) return false;
  if (p.kind === 'device') {
    for (const leaf of DEVICE_PUBLISH_LEAVES) if (topic === deviceTopic(p.id, leaf)) return true;
    return false;
  }
  return !inRoot(topic);
}

/**
 * May this principal subscribe with this filter? A device: exactly its RPC request topic.
 * A local client: any filter that can reach something it may read; a filter that reaches only
 * device-private topics (`espfleet/x/rpc/req`, `espfleet/+/rpc/#`) is refused. Wider filters
 * (`#`, `espfleet/#`) are accepted and mayReceive filters each delivery.
 */
export function maySubscribe(p: Principal, filter: string): boolean {
  if (p.kind === 'device') return filter === deviceSubscribeFilter(p.id);
  // A first level other than the literal root ('+', '#', another name) reaches topics outside it.
  const slash = filter.indexOf('/');
  if ((slash === -1 ? filter : filter.slice(0, slash)) !== TOPIC_ROOT) return true;
  for (const readable of LOCAL_READABLE_FILTERS) if (filtersIntersect(filter, readable)) return true;
  return false;
}

/** May this message be delivered to this principal (checked on every forward)? */
export function mayReceive(p: Principal, topic: string): boolean {
  if (p.kind === 'device') return topic === deviceSubscribeFilter(p.id);
  if (!inRoot(topic)) return true;
  const parts = topic.split('/');
  return parts.length === 3 && LOCAL_READABLE_LEAVES.includes(parts[2]);
}

/**
 * The same ACL for an external Mosquitto (acl_file syntax). Anonymous entries come first
 * (lines before any `user` apply to anonymous clients); `pattern` lines apply to every
 * authenticated user with %u replaced by the username, which is the device id.
 * Mosquitto cannot derive passwords, so its password_file must list each device with its
 * derived password (deriveDevicePassword) and the companion user.
 * Differences from the embedded broker: Mosquitto cannot restrict anonymous clients to
 * loopback by ACL (use a loopback-only listener for anonymous access) and silently drops a
 * denied PUBLISH instead of disconnecting.
 */
export function mosquittoAcl(companionUser: string): string {
  return [
    '# anonymous clients: read what devices report; nothing else under espfleet/',
    ...LOCAL_READABLE_FILTERS.map((f) => `topic read ${f}`),
    `user ${companionUser}`,
    'topic readwrite #',
    '# every device (username = device id)',
    ...DEVICE_PUBLISH_LEAVES.map((leaf) => `pattern write ${TOPIC_ROOT}/%u/${leaf}`),
    `pattern read ${TOPIC_ROOT}/%u/${DEVICE_SUBSCRIBE_LEAF}`,
    '',
  ].join('\n');
}
