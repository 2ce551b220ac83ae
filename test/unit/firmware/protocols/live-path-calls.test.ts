/**
 * JS function calls per reading on the device's live path, counted exactly by V8 (precise
 * coverage with call counts): the outbox stores the reading, hands it out, the session publishes
 * it at QoS 1 and writes the bytes, the PUBACK comes back through data(), and the outbox lets
 * the reading go. On the interpreter every call re-parses the function's body (ESPRUINO.md), so
 * this count is the device's cost model; it is deterministic, so it is a budget, checked here on
 * the source (per function, by name) and on the minified bundle the device runs.
 *
 * Espruino's stock MQTT module, for scale: a QoS 1 publish is 6 JS calls (publish, mqttPublish,
 * mqttStr, mqttPid, mqttPacket, mqttPacketLength) and keeps no state; an incoming packet costs
 * its data handler, the length decoder and the ping re-arm.
 */
import inspector from 'node:inspector/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as sessionSrc from '../../../../firmware/protocols/mqtt-session.js';
import type { SessionHandler } from '../../../../firmware/protocols/mqtt-session.js';
import * as outboxSrc from '../../../../firmware/protocols/outbox.js';
import { loadFirmwareLib } from '../../../helpers/firmware-lib.js';
import { FlashFake } from './protocols-fixtures.js';

/** The live path's budget: 8 calls of MQTT (publish, encodePublish, head, takeOutput, data, push, next x2), 3 of the outbox, and the rare segment bookkeeping. */
const CALLS_PER_READING_MAX = 11.5;
const N = 1000;

describe('calls per reading on the live path', () => {
  const session = new inspector.Session();
  beforeAll(async () => {
    session.connect();
    await session.post('Profiler.enable');
  });
  afterAll(async () => {
    await session.post('Profiler.stopPreciseCoverage');
    session.disconnect();
  });

  const lib = loadFirmwareLib();
  it.each([
    // The source: counted per function, by name.
    ['source', sessionSrc.MqttSession, outboxSrc.Outbox, (url: string) => /\/firmware\/(protocols|wire|core)\//.test(url) && !url.includes('/test/')],
    // The minified bundle as the device runs it (the emulator names its code <board>/.bootcde).
    ['bundle', lib.mqttSession.MqttSession, lib.outbox.Outbox, (url: string) => url.endsWith('/.bootcde')],
  ] as const)('%s: within the budget of JS calls per reading (outbox append and next, QoS 1 publish, PUBACK, acked)', async (kind, MqttSession, Outbox, ours) => {
    // The outbox tests' Storage fake: flash semantics (a byte is programmed once), checked.
    const st = new FlashFake();
    const o = new Outbox({ storage: st, segmentBytes: 1024, segmentsMax: 4, drainPerSecMax: 1e9, drainBurstMax: 1e9 });
    let acked = 0;
    const h: SessionHandler = {
      onUp: () => o.setLive(true),
      onAck: (_id, tag) => {
        acked++;
        if (tag >= 0) o.acked(tag);
      },
      onMessage: () => {},
    };
    const s = new MqttSession({ clientId: 'calls', keepaliveMs: 60000, inflightMax: 8, will: { topic: 'espfleet/calls/status', payload: 'offline', qos: 1, retain: true } }, h);
    s.connected(0);
    s.takeOutput();
    s.data(String.fromCharCode(0x20, 2, 0, 0), 0);
    let n = 0;
    let bytes = 0;
    const one = (now: number) => {
      o.append({ t: 21.5 + (n % 10) / 10, h: 40 + (n % 7) }, 1700000000000 + n);
      n++;
      const seq = o.next(now);
      expect(seq).toBeGreaterThanOrEqual(0);
      const id = s.publish('espfleet/calls/telemetry', o.payload, 1, false, seq);
      bytes += s.takeOutput().length;
      s.data(String.fromCharCode(64, 2, id >> 8, id & 255), now);
    };
    // Warm up past several segment rolls, so the steady state is what is counted.
    for (let i = 0; i < 500; i++) one(i);
    await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
    await session.post('Profiler.takePreciseCoverage');
    const acked0 = acked;
    for (let i = 0; i < N; i++) one(1000 + i);
    const { result } = await session.post('Profiler.takePreciseCoverage');
    expect(acked - acked0).toBe(N);
    expect(bytes).toBeGreaterThan(N * 40);
    const calls = new Map<string, number>();
    for (const script of result) {
      if (!ours(script.url)) continue;
      for (const f of script.functions) {
        const c = f.ranges[0].count;
        // The script's top level is not a call; in the bundle methods may be anonymous.
        if (c > 0 && (f.functionName || kind === 'bundle') && f.ranges[0].startOffset > 0) {
          const key = `${script.url.split('/').pop()} ${f.functionName || '@' + f.ranges[0].startOffset}`;
          calls.set(key, (calls.get(key) ?? 0) + c / N);
        }
      }
    }
    const total = [...calls.values()].reduce((a, b) => a + b, 0);
    const table = [...calls].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v.toFixed(2)} ${k}`);
    console.log(`live path (${kind}): ${total.toFixed(2)} JS calls per reading\n  ` + table.join('\n  '));
    // Each named step is there exactly once per reading (the parser's next twice: the packet, then the drain).
    if (kind === 'source') for (const [name, per] of [
      ['mqtt-session.ts publish', 1],
      ['mqtt-session.ts data', 1],
      ['mqtt-codec.ts next', 2],
      ['outbox.ts append', 1],
      ['outbox.ts acked', 1],
    ] as const) {
      expect(calls.get(name), name).toBe(per);
    }
    expect(total).toBeLessThanOrEqual(CALLS_PER_READING_MAX);
  });
});
