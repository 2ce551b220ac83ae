/**
 * MQTT 3.1.1 topic helpers for the bus: string checks that the packet parser does not make,
 * filter matching, and the espfleet topic layout (INTERFACES.md "MQTT topics").
 * Pure functions: no IO, no clock.
 */

/** First level of every espfleet device topic. */
export const TOPIC_ROOT = 'espfleet';

/** Leaves a device owns under `espfleet/<id>/` (INTERFACES.md, firmware/device.ts). */
export type DeviceLeaf = 'status' | 'telemetry' | 'meta' | 'health' | 'rpc/req' | 'rpc/res';

/** What a device publishes: birth and will, readings, its description, health reports, RPC answers. */
export const DEVICE_PUBLISH_LEAVES: readonly DeviceLeaf[] = ['status', 'telemetry', 'meta', 'health', 'rpc/res'];
/** What a device receives: RPC requests. */
export const DEVICE_SUBSCRIBE_LEAF: DeviceLeaf = 'rpc/req';

export function deviceTopic(id: string, leaf: DeviceLeaf): string {
  return TOPIC_ROOT + '/' + id + '/' + leaf;
}

/** `espfleet/<id>/<leaf>` split into its parts, or null for any other topic. */
export function parseDeviceTopic(topic: string): { id: string; leaf: DeviceLeaf } | null {
  if (!topic.startsWith(TOPIC_ROOT + '/')) return null;
  const rest = topic.slice(TOPIC_ROOT.length + 1);
  const slash = rest.indexOf('/');
  if (slash <= 0) return null;
  const id = rest.slice(0, slash);
  const leaf = rest.slice(slash + 1);
  if (leaf === DEVICE_SUBSCRIBE_LEAF) return { id, leaf };
  for (const l of DEVICE_PUBLISH_LEAVES) if (leaf === l) return { id, leaf: l };
  return null;
}

export type StringProblem = 'nul-in-string' | 'invalid-utf8';

/**
 * Checks a string decoded from the wire.
 * [MQTT-1.5.3-2] a UTF-8 encoded string MUST NOT include U+0000.
 * [MQTT-1.5.3-1] ill-formed UTF-8 (overlong forms, surrogates, truncated sequences) is a
 * protocol violation. The packet parser decodes with Node's decoder, which replaces every
 * ill-formed sequence by U+FFFD, so the raw bytes are gone by the time the broker sees the
 * string; U+FFFD in a decoded string is therefore treated as ill-formed input. A client that
 * really sent an encoded U+FFFD is refused too: no espfleet name contains it.
 */
export function stringProblem(s: string): StringProblem | null {
  if (s.indexOf('\u0000') !== -1) return 'nul-in-string';
  if (s.indexOf('\ufffd') !== -1) return 'invalid-utf8';
  return null;
}

/** A topic name a client may publish to: non-empty, no wildcards [MQTT-3.3.2-2], [MQTT-4.7.3-1]. */
export function isTopicName(topic: string): boolean {
  return topic.length > 0 && topic.indexOf('+') === -1 && topic.indexOf('#') === -1;
}

/**
 * MQTT filter matching [MQTT-4.7.1]: `+` one level, `#` the rest (including the parent level),
 * and a filter starting with a wildcard never matches a topic starting with `$` [MQTT-4.7.2-1].
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 36 /* $ */ && (filter.charCodeAt(0) === 43 || filter.charCodeAt(0) === 35)) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** True when some topic name matches both filters (used to decide what a filter can reach). */
export function filtersIntersect(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    if (x[i] === '#' || y[i] === '#') return true;
    if (x[i] !== '+' && y[i] !== '+' && x[i] !== y[i]) return false;
  }
  if (x.length === y.length) return true;
  // One filter is longer: it can still meet the other when its next level is '#' (which
  // also matches the parent level).
  const longer = x.length > y.length ? x : y;
  return longer.length === n + 1 && longer[n] === '#';
}
