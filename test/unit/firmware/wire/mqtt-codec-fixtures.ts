// Shared by the MQTT codec vector, unit and fuzz tests: the targets (source module and the
// minified bundle's namespace), byte-String <-> Buffer helpers, and both parsers reduced to one
// comparable shape.
import * as mqttPacket from 'mqtt-packet';
import * as src from '../../../../firmware/wire/mqtt-codec.js';
import * as utf8src from '../../../../firmware/wire/utf8.js';

type Codec = typeof src;

/** The minified bundle's namespaces (dist/firmware/lib.js on an emulated board), or null. */
export let bundleLib: Record<string, any> | null = null;
/** Why the bundle cannot be tested here ('' when it can). */
export let bundleMissing = '';
try {
  const helper: any = await import('../../../helpers/firmware-lib.js');
  bundleLib = helper.loadFirmwareLib();
  if (!bundleLib!.mqttCodec || !bundleLib!.utf8) bundleMissing = 'no mqttCodec/utf8 namespace in dist/firmware/lib.js';
} catch (e) {
  bundleMissing = String(e instanceof Error ? e.message : e).split('\n')[0];
}

/** [name, codec] pairs for describe.each: the source always, the bundle when it is built. */
export const codecTargets: [string, Codec][] = bundleMissing ? [['source', src]] : [['source', src], ['bundle', bundleLib!.mqttCodec]];
/** The same for the utf8 module. */
export const utf8Targets: [string, typeof utf8src][] = bundleMissing ? [['source', utf8src]] : [['source', utf8src], ['bundle', bundleLib!.utf8]];

export const latin1 = (b: Buffer): string => b.toString('latin1');
export const bytesOf = (s: string): Buffer => Buffer.from(s, 'latin1');
/** A byte String of UTF-8 as text (host side). */
export const utf8Text = (s: string): string => Buffer.from(s, 'latin1').toString('utf8');

const NAMES = ['', 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect'];

export interface Parsed {
  packets: Record<string, unknown>[];
  err: string;
  /** Bytes held after the last drain (the parser's held.length). */
  pending: number;
  /** The largest held.length seen after a drain. */
  pendingMax: number;
}

/** Our parser's fields for the packet of type t, in the shape refInbound produces. */
export function snapshot(p: InstanceType<Codec['MqttParser']>, t: number): Record<string, unknown> {
  switch (t) {
    case 2:
      return { cmd: 'connack', sessionPresent: p.sp, returnCode: p.rc };
    case 3:
      return {
        cmd: 'publish',
        topic: utf8Text(p.topic),
        payload: p.payload,
        qos: p.qos,
        dup: p.dup,
        retain: p.retain,
        messageId: p.qos ? p.id : undefined,
        // A PUBLISH over packetBytesMax carries only the first bytes of its payload.
        ...(p.over ? { over: p.over } : {}),
      };
    case 9:
      return { cmd: 'suback', messageId: p.id, granted: p.codes.split('').map((c) => c.charCodeAt(0)) };
    case 13:
      return { cmd: 'pingresp' };
    default:
      return { cmd: NAMES[t], messageId: p.id };
  }
}

/** Feeds chunks to a fresh parser of ours, draining after every push (the documented ORDERING). */
export function parseOurs(codec: Codec, chunks: string[], packetBytesMax = 1 << 22): Parsed {
  const p = new codec.MqttParser(packetBytesMax);
  const packets: Record<string, unknown>[] = [];
  let pendingMax = 0;
  let t = 0;
  for (const c of chunks) {
    p.push(c);
    while ((t = p.next()) > 0) packets.push(snapshot(p, t));
    pendingMax = Math.max(pendingMax, p.held.length);
    if (t < 0) break;
  }
  return { packets, err: p.err, pending: p.held.length, pendingMax };
}

/** mqtt-packet's parser (protocol 3.1.1) over bytes: packets and errors. */
export function parseRef(bytes: string): { packets: any[]; errors: string[] } {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: any[] = [];
  const errors: string[] = [];
  parser.on('packet', (p: any) => packets.push(p));
  parser.on('error', (e: Error) => errors.push(e.message));
  parser.parse(bytesOf(bytes));
  return { packets, errors };
}

/** The packets mqtt-packet reads from bytes (stopping at its first error), in our comparable shape. */
export function refInbound(bytes: string): Record<string, unknown>[] {
  return parseRef(bytes).packets.map(refShape);
}

export function refShape(p: any): Record<string, unknown> {
  switch (p.cmd) {
    case 'connack':
      return { cmd: p.cmd, sessionPresent: p.sessionPresent, returnCode: p.returnCode };
    case 'publish':
      return {
        cmd: p.cmd,
        topic: p.topic,
        payload: latin1(p.payload),
        qos: p.qos,
        dup: p.dup,
        retain: p.retain,
        messageId: p.qos ? p.messageId : undefined,
      };
    case 'suback':
      return { cmd: p.cmd, messageId: p.messageId, granted: p.granted };
    case 'pingresp':
      return { cmd: p.cmd };
    default:
      return { cmd: p.cmd, messageId: p.messageId };
  }
}
