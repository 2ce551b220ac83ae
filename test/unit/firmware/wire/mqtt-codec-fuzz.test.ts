// Fuzzing the MQTT parser: random bytes and mutated valid streams, cut into random chunks, never
// make it throw; after every drain it holds less than packetBytesMax + 5 bytes; a failure is
// sticky and carries a reason. On unmutated streams it agrees with mqtt-packet packet for packet;
// on mutated ones every packet it delivers is one mqtt-packet reads too (never a packet the
// reference does not see). Bounded in runs and in time. Source module and minified bundle.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as mqttPacket from 'mqtt-packet';
import * as src from '../../../../firmware/wire/mqtt-codec.js';
import { SeededRng, randInt } from '../../../../firmware/core/rng.js';
import { codecTargets, latin1, refInbound, snapshot } from './mqtt-codec-fixtures.js';

type Codec = typeof src;

/** Runs per property and per target; the vm-hosted bundle is slower, so both stay modest. */
const RUNS = 400;
/** The seeded loop stops at whichever comes first. */
const LOOP_ITERATIONS_MAX = 4000;
const LOOP_MS_MAX = 4000;

const INBOUND_TYPES = [2, 3, 4, 5, 6, 7, 9, 11, 13];

interface Fed {
  packets: Record<string, unknown>[];
  failed: boolean;
}

/**
 * Feeds bytes in chunks of the given sizes (cycled) and checks the invariants after each
 * drain. Throws (fails the property) on any breach; the parser itself must never throw.
 */
function feed(codec: Codec, bytes: string, sizes: number[], max: number): Fed {
  const p = new codec.MqttParser(max);
  const packets: Record<string, unknown>[] = [];
  let failed = false;
  let at = 0;
  for (let k = 0; at < bytes.length; k++) {
    const size = sizes[k % sizes.length];
    p.push(bytes.slice(at, at + size));
    at += size;
    let t: number;
    while ((t = p.next()) > 0) {
      if (failed) throw new Error('a packet after a failure');
      if (!INBOUND_TYPES.includes(t)) throw new Error('type ' + t + ' returned');
      packets.push(snapshot(p, t));
    }
    if (t < 0) {
      if (!p.err) throw new Error('failed without a reason');
      failed = true;
    } else if (failed || p.err) {
      throw new Error('left the failed state');
    }
    if (p.held.length >= max + 5) throw new Error(`holding ${p.held.length} >= packetBytesMax + 5 (${max + 5})`);
  }
  if (failed && p.held !== '') throw new Error('failed but still holding bytes');
  return { packets, failed };
}

const topicChars = 'ab/cz-_09 .\u00e9\u20ac'.split('');
const topic = fc.string({ unit: fc.constantFrom(...topicChars), minLength: 1, maxLength: 24 });
const id = fc.integer({ min: 1, max: 65535 });
const packet = fc.oneof(
  { weight: 4, arbitrary: fc
    .record({
      topic,
      payload: fc.uint8Array({ maxLength: 200 }),
      qos: fc.constantFrom(0, 1, 2),
      dup: fc.boolean(),
      retain: fc.boolean(),
      messageId: id,
    })
    .map((r) => ({
      cmd: 'publish',
      topic: r.topic,
      payload: Buffer.from(r.payload),
      qos: r.qos,
      dup: r.qos > 0 && r.dup,
      retain: r.retain,
      messageId: r.qos ? r.messageId : undefined,
    })) },
  { weight: 3, arbitrary: fc.record({ cmd: fc.constantFrom('puback', 'pubrec', 'pubrel', 'pubcomp', 'unsuback'), messageId: id }) },
  { weight: 1, arbitrary: fc.record({ cmd: fc.constant('suback'), messageId: id, granted: fc.array(fc.constantFrom(0, 1, 2, 128), { minLength: 1, maxLength: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ cmd: fc.constant('connack'), sessionPresent: fc.boolean(), returnCode: fc.integer({ min: 0, max: 5 }) }) },
  { weight: 1, arbitrary: fc.constant({ cmd: 'pingresp' }) },
);
const stream = fc.array(packet, { minLength: 1, maxLength: 8 }).map((ps) => ps.map((p) => latin1(mqttPacket.generate(p as any))).join(''));
const sizes = fc.array(fc.integer({ min: 1, max: 70 }), { minLength: 1, maxLength: 6 });
const mutation = fc.record({ kind: fc.constantFrom('set', 'insert', 'delete', 'truncate'), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) });

function mutate(bytes: string, ms: { kind: string; at: number; byte: number }[]): string {
  let s = bytes;
  for (const m of ms) {
    const i = s.length ? m.at % s.length : 0;
    const c = String.fromCharCode(m.byte);
    if (m.kind === 'set') s = s.slice(0, i) + c + s.slice(i + 1);
    else if (m.kind === 'insert') s = s.slice(0, i) + c + s.slice(i);
    else if (m.kind === 'delete') s = s.slice(0, i) + s.slice(i + 1);
    else s = s.slice(0, i);
  }
  return s;
}

/** Every packet ours delivered is, in order, what the reference delivered. */
function agreesWithReference(fed: Fed, bytes: string): void {
  const ref = refInbound(bytes).slice(0, fed.packets.length);
  // An oversized PUBLISH (over packetBytesMax) is handed over with the first bytes of its
  // payload only, as soon as they arrive: compare it with the reference's packet cut the same
  // way. The reference emits a packet only once all of it arrived, so a last oversized packet
  // whose stream ends early has no counterpart there.
  let packets = fed.packets;
  const last = packets[packets.length - 1];
  if (last && last.over && ref.length < packets.length) packets = packets.slice(0, -1);
  const ours = packets.map((q, k) => {
    if (!q.over) return q;
    const r = ref[k] as { payload?: string } | undefined;
    expect(r && typeof r.payload === 'string' && r.payload.startsWith(q.payload as string), 'oversized payload prefix').toBe(true);
    const { over: _over, ...rest } = q;
    return { ...rest, payload: r!.payload };
  });
  expect(ours).toEqual(ref);
}

describe.each(codecTargets)('mqtt parser fuzz (%s)', (_name, codec: Codec) => {
  it('random bytes never throw; bounded buffer; sticky failure', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), sizes, fc.integer({ min: 0, max: 400 }), (u, sz, max) => {
        feed(codec, latin1(Buffer.from(u)), sz, max);
      }),
      { numRuns: RUNS, seed: 0x1c0de },
    );
  });

  it('valid streams in random chunks: the same packets as mqtt-packet', () => {
    fc.assert(
      fc.property(stream, sizes, (bytes, sz) => {
        const fed = feed(codec, bytes, sz, 1 << 16);
        expect(fed.failed).toBe(false);
        expect(fed.packets).toEqual(refInbound(bytes));
      }),
      { numRuns: RUNS, seed: 0xface },
    );
  });

  it('mutated valid streams never throw, stay bounded, and deliver only what the reference reads', () => {
    fc.assert(
      fc.property(stream, fc.array(mutation, { minLength: 1, maxLength: 4 }), sizes, fc.integer({ min: 2, max: 300 }), (bytes, ms, sz, max) => {
        const mutated = mutate(bytes, ms);
        agreesWithReference(feed(codec, mutated, sz, max), mutated);
      }),
      { numRuns: RUNS, seed: 0xbad },
    );
  });

  it('a seeded loop of random and mutated streams (bounded in count and time)', () => {
    const seed = 20240601;
    const rng = new SeededRng(seed);
    const valid = fc.sample(stream, { numRuns: 64, seed });
    const deadline = Date.now() + LOOP_MS_MAX;
    let i = 0;
    let failures = 0;
    for (; i < LOOP_ITERATIONS_MAX && Date.now() < deadline; i++) {
      let bytes: string;
      if (rng.next() < 0.3) {
        bytes = '';
        const n = randInt(rng, 0, 300);
        // High-nibble-weighted bytes hit the header paths more often than uniform ones.
        for (let k = 0; k < n; k++) bytes += String.fromCharCode(rng.next() < 0.5 ? randInt(rng, 0, 255) : randInt(rng, 0, 15) << 4);
      } else {
        bytes = valid[randInt(rng, 0, valid.length - 1)];
        const ms = [];
        for (let k = randInt(rng, 0, 3); k > 0; k--) {
          ms.push({ kind: ['set', 'insert', 'delete', 'truncate'][randInt(rng, 0, 3)], at: randInt(rng, 0, 1 << 20), byte: randInt(rng, 0, 255) });
        }
        bytes = mutate(bytes, ms);
      }
      const sz = [randInt(rng, 1, 40), randInt(rng, 1, 300)];
      const max = rng.next() < 0.5 ? randInt(rng, 0, 64) : 1 << 16;
      let fed: Fed;
      try {
        fed = feed(codec, bytes, sz, max);
      } catch (e) {
        throw new Error(`seed ${seed} iteration ${i}: ${e instanceof Error ? e.message : e}`);
      }
      if (fed.failed) failures++;
      if (max === 1 << 16) agreesWithReference(fed, bytes);
    }
    expect(i).toBeGreaterThan(100);
    // Both outcomes were exercised.
    expect(failures).toBeGreaterThan(0);
    expect(failures).toBeLessThan(i);
  });
});
