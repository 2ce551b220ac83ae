/**
 * The listener's seal check on Buffers (host/discovery/datagram-verifier.ts) against node:crypto's
 * HMAC and against the firmware's verifyBeacon: same MAC at every length around the SHA-256 block
 * boundaries and for keys shorter than, equal to and longer than a block; same verdict on valid,
 * tampered, truncated and random datagrams; and the DiscoveryService gives the same drop reasons
 * with and without it.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildBeacon, verifyBeacon, type Beacon } from '../../../../firmware/wire/beacon.js';
import { DatagramVerifier } from '../../../../host/discovery/datagram-verifier.js';
import { Sha256Wasm, sha256ModuleBytes } from '../../../../host/discovery/sha256-wasm.js';
import { DiscoveryService } from '../../../../host/discovery/discovery-service.js';
import { nodeMac } from '../../../../host/discovery/node-mac.js';

/** A sealed datagram as INTERFACES.md defines it, MAC'd by node:crypto. */
function sealWith(keyHex: string, body: Buffer, macHex?: string): Buffer {
  // body is `{…}`; the MAC covers it as it is, the mac member goes before its closing brace.
  const mac = macHex ?? createHmac('sha256', Buffer.from(keyHex, 'hex')).update(body).digest('hex');
  return Buffer.concat([body.subarray(0, body.length - 1), Buffer.from(`,"mac":"${mac}"}`, 'latin1')]);
}

function body(len: number, fill = 0x61): Buffer {
  const b = Buffer.alloc(len, fill);
  b[0] = 0x7b; // {
  b[len - 1] = 0x7d; // }
  return b;
}

const KEY = 'ab'.repeat(32);

function beacon(over: Partial<Beacon> = {}): Beacon {
  return { id: 'dev-1', kind: 'esp32', fw: '1.0.0', caps: ['mqtt', 'rpc'], port: 4210, seq: 7, up: 7000, mem: 12000, ts: 0, boot: 3, nonce: 99, ...over };
}

describe('Sha256Wasm (the compression function emitted as WebAssembly)', () => {
  it('gives the FIPS 180-4 example digests', () => {
    const sha = new Sha256Wasm();
    const hex = (s: string) => sha.digest(Buffer.from(s, 'latin1')).toString('hex');
    expect(hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')).toBe('248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  });

  it('agrees with node:crypto at every length across four blocks and on random messages', () => {
    const sha = new Sha256Wasm();
    for (let len = 0; len <= 260; len++) {
      const m = Buffer.alloc(len, len & 255);
      expect(sha.digest(m).toString('hex'), `length ${len}`).toBe(createHash('sha256').update(m).digest('hex'));
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4000 }), (m) => {
        expect(sha.digest(m).equals(createHash('sha256').update(m).digest())).toBe(true);
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it('is a valid WebAssembly module of one function and instances do not share memory', () => {
    const bytes = sha256ModuleBytes();
    expect(Buffer.from(bytes.subarray(0, 8)).toString('hex')).toBe('0061736d01000000');
    const a = new Sha256Wasm();
    const b = new Sha256Wasm();
    a.mem[100] = 42;
    expect(b.mem[100]).toBe(0);
  });
});

describe('DatagramVerifier', () => {
  it('accepts the HMAC node:crypto computes, at every body length up to the datagram limit', () => {
    for (const keyHex of [KEY, '01', 'cd'.repeat(64), 'ef'.repeat(65), randomBytes(100).toString('hex')]) {
      const v = new DatagramVerifier(keyHex);
      // 3 .. 439 body bytes (the shortest with a member, up to 439 - 1 + 74 = 512, the datagram limit); crosses every block boundary.
      for (let len = 3; len <= 439; len++) {
        const d = sealWith(keyHex, body(len, 0x20 + (len % 90)));
        expect(v.check(d), `key ${keyHex.length / 2} B, body ${len} B`).toBeNull();
      }
    }
  });

  it('rejects another key, any flipped bit, upper-case hex, a cut tail and oversize, with the reason', () => {
    const v = new DatagramVerifier(KEY);
    const good = sealWith(KEY, body(167));
    expect(v.check(good)).toBeNull();
    expect(v.check(sealWith('cd'.repeat(32), body(167)))).toBe('mac');
    for (let i = 0; i < good.length; i++) {
      for (const bit of [0, 3, 7]) {
        const d = Buffer.from(good);
        d[i] ^= 1 << bit;
        expect(v.check(d), `byte ${i} bit ${bit}`).not.toBeNull();
      }
    }
    const mac = createHmac('sha256', Buffer.from(KEY, 'hex')).update(body(100)).digest('hex');
    expect(v.check(sealWith(KEY, body(100), mac.toUpperCase()))).toBe('shape');
    expect(v.check(good.subarray(0, good.length - 1))).toBe('shape');
    expect(v.check(Buffer.alloc(0))).toBe('shape');
    expect(v.check(sealWith(KEY, body(440)))).toBe('size');
  });

  it('checkAll gives the verdict check() gives for every datagram, four lanes of any lengths at a time', () => {
    const v = new DatagramVerifier(KEY);
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: 520 }), fc.constantFrom('sealed', 'flip', 'cut', 'random', 'other key'), fc.nat()),
          { minLength: 1, maxLength: 40 },
        ),
        (spec) => {
          const msgs = spec.map(([len, how, at]) => {
            if (how === 'random') return randomBytes(len);
            const d = sealWith(how === 'other key' ? 'cd'.repeat(32) : KEY, body(Math.max(3, Math.min(len, 438)), 0x20 + (at % 90)));
            if (how === 'flip') d[at % d.length] ^= 1 << (at % 8);
            return how === 'cut' ? d.subarray(0, d.length - 1 - (at % 80)) : d;
          });
          const out: (string | null)[] = [];
          v.checkAll(msgs, msgs.length, out);
          expect(out).toEqual(msgs.map((m) => v.check(m)));
        },
      ),
      { numRuns: 400, seed: 99 },
    );
    // Lanes of 1 to 7 blocks in one call, each also correct on its own.
    const mixed = [3, 60, 120, 200, 300, 438, 54, 55].map((n) => sealWith(KEY, body(n)));
    const out: (string | null)[] = [];
    v.checkAll(mixed, mixed.length, out);
    expect(out).toEqual(mixed.map(() => null));
    v.checkAll([mixed[5], sealWith('cd'.repeat(32), body(3)), mixed[0]], 3, out);
    expect(out.slice(0, 3)).toEqual([null, 'mac', null]);
  });

  it('gives the verdict verifyBeacon gives, on valid, tampered, truncated and random datagrams', () => {
    const mac = nodeMac(KEY);
    const v = new DatagramVerifier(KEY);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.constantFrom('valid', 'flip', 'cut', 'random'),
        fc.nat(),
        (seq, how, at) => {
          const built = buildBeacon(beacon({ seq, id: 'dev-' + (seq % 1000), caps: ['mqtt', 'rpc', 'ota'].slice(0, seq % 4) }), mac);
          if (!built.ok) throw new Error(built.reason);
          let d = Buffer.from(built.text, 'latin1');
          if (how === 'flip') d[at % d.length] ^= 1 << (at % 8);
          if (how === 'cut') d = d.subarray(0, d.length - 1 - (at % 80));
          if (how === 'random') d = randomBytes(at % 600);
          const old = verifyBeacon(d.toString('latin1'), mac);
          const sealed = v.check(d);
          if (old.ok) expect(sealed).toBeNull();
          else if (['size', 'shape', 'mac'].includes(old.reason)) expect(sealed).toBe(old.reason);
          else expect(sealed).toBeNull(); // sealed, then refused by the JSON checks after it
        },
      ),
      { numRuns: 3000, seed: 4242 },
    );
  });
});

describe('DiscoveryService with and without the Buffer seal check', () => {
  it('drops and accepts the same datagrams for the same reasons', () => {
    const mac = nodeMac(KEY);
    const make = (fleetKey?: string) =>
      new DiscoveryService({ port: 0, mac, fleetKey, offerFor: () => null, onBeacon: () => {}, now: () => 1_000_000 });
    const fast = make(KEY);
    const slow = make();
    const rinfo = { address: '127.0.0.1', port: 9 };
    const datagrams: Buffer[] = [];
    for (let seq = 1; seq <= 50; seq++) {
      const b = buildBeacon(beacon({ seq }), mac);
      if (!b.ok) throw new Error(b.reason);
      datagrams.push(Buffer.from(b.text, 'latin1'));
    }
    const forged = buildBeacon(beacon({ seq: 1000 }), nodeMac('cd'.repeat(32)));
    if (!forged.ok) throw new Error(forged.reason);
    const typed = sealWith(KEY, Buffer.from(JSON.stringify({ t: 'offer', v: 1 }), 'latin1'));
    const notJson = sealWith(KEY, Buffer.from('{"t":"beacon",}', 'latin1'));
    datagrams.push(datagrams[3], Buffer.from(forged.text, 'latin1'), typed, notJson, randomBytes(300), Buffer.alloc(600, 0x7b));
    const verdicts = (s: DiscoveryService) => datagrams.map((d) => s.onDatagram(d, rinfo));
    const a = verdicts(fast);
    expect(a).toEqual(verdicts(slow));
    expect(a.slice(0, 50).every((r) => r === null)).toBe(true);
    expect(a.slice(50)).toEqual(['replay', 'mac', 'type', 'json', 'shape', 'oversize']);
    expect(fast.counters.beacons).toBe(50);
  });
});
