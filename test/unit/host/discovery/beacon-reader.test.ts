/**
 * The listener's one-pass body reader (host/discovery/beacon-reader.ts) against the general path
 * (JSON.parse, then firmware/wire/beacon.ts beaconFromBody): whenever the reader returns a beacon,
 * the general path accepts the same text with the same fields; the reader takes every body the
 * firmware's buildBeacon writes (so the listener's fast path is the one devices use), including
 * the doubles the interpreter prints with an exponent; and it hands everything else to the
 * general path rather than rejecting it (the listener still accepts a valid beacon in another
 * form, and still gives the general path's reasons).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { beaconFromBody, buildBeacon, CAPS_MAX, type Beacon } from '../../../../firmware/wire/beacon.js';
import { readBeacon } from '../../../../host/discovery/beacon-reader.js';
import { DiscoveryService } from '../../../../host/discovery/discovery-service.js';
import { nodeMac } from '../../../../host/discovery/node-mac.js';

const KEY = 'ab'.repeat(32);
const mac = nodeMac(KEY);

function beacon(over: Partial<Beacon> = {}): Beacon {
  return { id: 'dev-1', kind: 'esp32', fw: '1.0.0', caps: ['mqtt', 'rpc'], port: 4210, seq: 7, up: 7000, mem: 12000, ts: 0, boot: 3, nonce: 99, ...over };
}

/** The body the reader is given: the datagram up to its mac member. */
function bodyOf(b: Beacon): string {
  const built = buildBeacon(b, mac);
  if (!built.ok) throw new Error(built.reason);
  return built.text.slice(0, built.text.length - 74);
}

/** The reader's promise: a beacon only where the general path gives the same one. */
function agrees(body: string): Beacon | null {
  const fast = readBeacon(Buffer.from(body + ',"mac":"' + '0'.repeat(64) + '"}', 'latin1'), body.length);
  if (fast !== null) {
    const slow = beaconFromBody(body + '}');
    expect(slow.ok, body).toBe(true);
    if (slow.ok) expect(fast, body).toStrictEqual(slow.msg);
  }
  return fast;
}

const nameChars = fc.constantFrom(...'-_abcXYZ0189'.split(''));
const name = (max: number) => fc.array(nameChars, { minLength: 1, maxLength: max }).map((a) => a.join(''));
const int31 = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const time = fc.oneof(fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.double({ min: 0, max: 1e300, noNaN: true }));
const validBeacon = fc.record({
  id: name(32),
  kind: name(16),
  fw: fc.array(fc.constantFrom(...'-_.+a9Z'.split('')), { minLength: 1, maxLength: 32 }).map((a) => a.join('')),
  caps: fc.array(name(16), { maxLength: CAPS_MAX }),
  port: fc.integer({ min: 1, max: 65535 }),
  seq: int31,
  up: time,
  mem: int31,
  ts: time,
  boot: int31,
  nonce: int31,
});

describe('readBeacon', () => {
  it('reads every beacon buildBeacon writes, with the fields the general path gives', () => {
    fc.assert(
      fc.property(validBeacon, (b) => {
        const body = bodyOf(b);
        const got = agrees(body);
        expect(got, body).toStrictEqual({ ...b });
      }),
      { numRuns: 3000, seed: 11 },
    );
  });

  it('reads the numbers an interpreter prints: exponents, fractions, 16+ digits, zero', () => {
    const cases: Array<[string, number]> = [
      ['1.73568960012e12', 1.73568960012e12],
      ['1.5', 1.5],
      ['0', 0],
      ['0.25', 0.25],
      ['1E3', 1000],
      ['2e-3', 0.002],
      ['12345678901234567890', 12345678901234567890],
      ['9007199254740993', 9007199254740993],
    ];
    for (const [text, value] of cases) {
      const body = bodyOf(beacon()).replace('"ts":0', '"ts":' + text);
      expect(agrees(body)?.ts, text).toBe(value);
    }
  });

  it('hands any other form to the general path, and never accepts what it refuses', () => {
    const base = bodyOf(beacon());
    const other: Array<[string, string]> = [
      ['white space', base.replace('"v":1,', '"v":1, ')],
      ['members in another order', base.replace('"t":"beacon","v":1', '"v":1,"t":"beacon"')],
      ['an extra member', base + ',"x":1'],
      ['an escape in the id', base.replace('"id":"dev-1"', '"id":"dev\\u002d1"')],
      ['a duplicate member', base + ',"nonce":100'],
      ['a leading zero', base.replace('"port":4210', '"port":04210')],
      ['a negative number', base.replace('"seq":7', '"seq":-7')],
      ['minus zero', base.replace('"ts":0', '"ts":-0')],
      ['a fraction in an integer field', base.replace('"seq":7', '"seq":7.5')],
      ['a number out of range', base.replace('"port":4210', '"port":65536')],
      ['an infinite time', base.replace('"ts":0', '"ts":1e999')],
      ['a bad exponent', base.replace('"ts":0', '"ts":1e+')],
      ['a string where a number goes', base.replace('"mem":12000', '"mem":"12000"')],
      ['too many caps', base.replace('"caps":["mqtt","rpc"]', '"caps":[' + Array(CAPS_MAX + 1).fill('"a"').join(',') + ']')],
      ['a trailing comma in caps', base.replace('"caps":["mqtt","rpc"]', '"caps":["mqtt",]')],
      ['an empty id', base.replace('"id":"dev-1"', '"id":""')],
      ['a long id', base.replace('"id":"dev-1"', '"id":"' + 'd'.repeat(33) + '"')],
      ['a dot in the kind', base.replace('"kind":"esp32"', '"kind":"esp.32"')],
      ['a cut body', base.slice(0, -3)],
      ['another type', base.replace('"t":"beacon"', '"t":"offer"')],
      ['another version', base.replace('"v":1', '"v":2')],
      ['nothing', ''],
    ];
    for (const [what, body] of other) expect(agrees(body), what).toBeNull();
    // Those the general path takes are still beacons to the listener.
    const taken = other.filter(([, body]) => beaconFromBody(body + '}').ok).map(([what]) => what);
    expect(taken).toEqual(['white space', 'members in another order', 'an extra member', 'an escape in the id', 'a duplicate member', 'minus zero']);
  });

  it('never gives a beacon the general path would not, on damaged bodies', () => {
    fc.assert(
      fc.property(validBeacon, fc.nat(), fc.constantFrom('replace', 'insert', 'delete'), fc.integer({ min: 0, max: 255 }), (b, at, how, byte) => {
        const body = bodyOf(b);
        const i = at % (body.length + 1);
        const ch = String.fromCharCode(byte);
        const damaged = how === 'replace' ? body.slice(0, i) + ch + body.slice(i + 1) : how === 'insert' ? body.slice(0, i) + ch + body.slice(i) : body.slice(0, i) + body.slice(i + 1);
        agrees(damaged);
      }),
      { numRuns: 20000, seed: 12 },
    );
  });

  it('lets the listener accept a valid beacon in another form, and keeps its reasons', () => {
    const s = new DiscoveryService({ port: 0, mac, fleetKey: KEY, offerFor: () => null, onBeacon: () => {}, now: () => 1_000_000 });
    const rinfo = { address: '127.0.0.1', port: 9 };
    const seal = (body: string) => {
      const text = body + '}';
      const m = Buffer.from(mac.digest(text), 'latin1').toString('hex');
      return Buffer.from(body + ',"mac":"' + m + '"}', 'latin1');
    };
    expect(s.onDatagram(seal(bodyOf(beacon({ seq: 1 }))), rinfo)).toBeNull();
    expect(s.onDatagram(seal(bodyOf(beacon({ seq: 2 })).replace('"v":1,', '"v":1, ')), rinfo)).toBeNull();
    expect(s.onDatagram(seal(bodyOf(beacon({ seq: 3 })).replace('"port":4210', '"port":0')), rinfo)).toBe('field port');
    expect(s.onDatagram(seal(bodyOf(beacon({ seq: 4 })).replace('"v":1', '"v":2')), rinfo)).toBe('version');
    expect(s.onDatagram(seal(bodyOf(beacon({ seq: 2 }))), rinfo)).toBe('replay');
    expect(s.counters.beacons).toBe(2);
  });
});
