// Shared by the session, supervisor and outbox tests: the targets (source modules and the
// minified bundle's namespaces), an in-memory flash with Espruino Storage semantics and power
// cuts, an adapter over the emulator's EmuStorage, and MQTT packets built and read by
// mqtt-packet (an independent implementation) so the session is never checked against itself.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as mqttPacket from 'mqtt-packet';
import { EmuStorage } from '../../../../boards/emulator/storage.js';
import * as rngSrc from '../../../../firmware/core/rng.js';
import * as sessionSrc from '../../../../firmware/protocols/mqtt-session.js';
import * as outboxSrc from '../../../../firmware/protocols/outbox.js';
import * as supervisorSrc from '../../../../firmware/protocols/reconnect-supervisor.js';

export type SessionMod = typeof sessionSrc;
export type OutboxMod = typeof outboxSrc;
export type SupervisorMod = typeof supervisorSrc;
export type RngMod = typeof rngSrc;

export let bundleLib: Record<string, any> | null = null;
/** Why the bundle cannot be tested here ('' when it can). */
export let bundleMissing = '';
try {
  const helper: any = await import('../../../helpers/firmware-lib.js');
  bundleLib = helper.loadFirmwareLib();
  if (!bundleLib!.mqttSession || !bundleLib!.outbox || !bundleLib!.reconnectSupervisor) {
    bundleMissing = 'no mqttSession/outbox/reconnectSupervisor namespace in dist/firmware/lib.js';
  }
} catch (e) {
  bundleMissing = String(e instanceof Error ? e.message : e).split('\n')[0];
}

function targets<T>(src: T, name: string): [string, T][] {
  return bundleMissing ? [['source', src]] : [
    ['source', src],
    ['bundle', bundleLib![name] as T],
  ];
}

export const sessionTargets = targets(sessionSrc, 'mqttSession');
export const outboxTargets = targets(outboxSrc, 'outbox');
export const supervisorTargets: [string, { sup: SupervisorMod; rng: RngMod }][] = bundleMissing
  ? [['source', { sup: supervisorSrc, rng: rngSrc }]]
  : [
      ['source', { sup: supervisorSrc, rng: rngSrc }],
      ['bundle', { sup: bundleLib!.reconnectSupervisor, rng: bundleLib!.rng }],
    ];

export const bytesOf = (s: string): Buffer => Buffer.from(s, 'latin1');
export const latin1 = (b: Buffer): string => b.toString('latin1');

/** One inbound packet, built by mqtt-packet. */
export function gen(packet: Record<string, unknown>): string {
  return latin1(mqttPacket.generate({ ...packet } as any));
}

/** Every packet in a byte String, read by mqtt-packet (throws on anything it rejects). */
export function decode(bytes: string): any[] {
  const out: any[] = [];
  const p = mqttPacket.parser({ protocolVersion: 4 });
  p.on('packet', (x: any) => out.push(x));
  p.on('error', (e: Error) => {
    throw e;
  });
  p.parse(bytesOf(bytes));
  return out;
}

/** A compact line per outgoing packet. */
export function describePacket(x: any): string {
  switch (x.cmd) {
    case 'connect': {
      const w = x.will ? ` will=${x.will.topic}:${String(x.will.payload)}:q${x.will.qos}${x.will.retain ? 'r' : ''}` : '';
      return `CONNECT(${x.clientId} ka=${x.keepalive} clean=${x.clean ? 1 : 0}${w}${x.username !== undefined ? ' user=' + x.username : ''}${x.password !== undefined ? ' pass' : ''})`;
    }
    case 'publish':
      return `PUBLISH(${x.messageId ?? '-'} q${x.qos}${x.dup ? ' dup' : ''}${x.retain ? ' retain' : ''} ${x.topic} ${String(x.payload)})`;
    case 'puback':
      return `PUBACK(${x.messageId})`;
    case 'subscribe':
      return `SUBSCRIBE(${x.messageId} ${x.subscriptions.map((s: any) => s.topic + ':' + s.qos).join(',')})`;
    case 'pingreq':
      return 'PINGREQ';
    case 'disconnect':
      return 'DISCONNECT';
    default:
      return x.cmd.toUpperCase();
  }
}

/** Thrown by FlashFake when a power cut ends a write. */
export class PowerCutError extends Error {}

/**
 * Espruino Storage in RAM: a write with size creates size bytes of 0xFF first, an offset write
 * may only program bytes still 0xFF (anything else throws: that would be a bug in the outbox),
 * names are at most 28 chars. `cutAfter` = [n, k]: the n-th write from now lands only its
 * first k bytes (onto 0xFF for a created file), then the power goes (PowerCutError).
 */
export class FlashFake {
  files = new Map<string, string>();
  writes = 0;
  erases = 0;
  reads = 0;
  cutAfter: [number, number] | null = null;
  /** Writes per name prefix, for wear accounting. */
  log: string[] = [];

  read(name: string, offset?: number, length?: number): string | null {
    this.reads++;
    const v = this.files.get(name);
    if (v === undefined) return null;
    if (offset === undefined) return v;
    return v.substr(offset, length ?? v.length - offset);
  }

  writeAt(name: string, data: string, offset: number, size?: number): boolean {
    if (name.length > 28) throw new Error(`name over 28 chars: ${name}`);
    const old = this.files.get(name);
    const base = size !== undefined ? '\xff'.repeat(size) : old;
    if (base === undefined) throw new Error(`offset write to missing file ${name}`);
    if (offset + data.length > base.length) throw new Error(`write past the end of ${name}`);
    for (let i = 0; i < data.length; i++) {
      const c = base.charCodeAt(offset + i);
      if (c !== 0xff && c !== data.charCodeAt(i)) throw new Error(`${name}: byte ${offset + i} already programmed`);
    }
    let land = data;
    let cut = false;
    if (this.cutAfter) {
      if (this.cutAfter[0] === 0) {
        land = data.slice(0, this.cutAfter[1]);
        cut = true;
        this.cutAfter = null;
      } else this.cutAfter[0]--;
    }
    this.files.set(name, base.slice(0, offset) + land + base.slice(offset + land.length));
    this.writes++;
    this.log.push(name);
    if (cut) throw new PowerCutError(`power cut writing ${name}`);
    return true;
  }

  erase(name: string): void {
    this.erases++;
    this.files.delete(name);
  }

  list(prefix: string): string[] {
    return [...this.files.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  bytes(): number {
    let n = 0;
    for (const v of this.files.values()) n += v.length;
    return n;
  }
}

/** The emulator's Storage behind the outbox's interface (what the Espruino adapter will do). */
export function emuStorage(capacityBytes = 256 * 1024): { st: EmuStorage; adapter: any; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'espfleet-outbox-'));
  const st = new EmuStorage(dir, capacityBytes);
  const adapter = {
    read: (n: string, o?: number, l?: number) => st.read(n, o, l) ?? null,
    writeAt: (n: string, d: string, o: number, s?: number) => st.write(n, d, o, s),
    erase: (n: string) => st.erase(n),
    list: (p: string) => st.list().filter((n) => n.startsWith(p)),
  };
  return { st, adapter, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
