// Hmac: pads built once per key (counted hash calls), random cross-check with node:crypto, and
// the hex / fromHex / sameBytes helpers; source and minified bundle.
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import * as hmSrc from '../../../../firmware/core/hmac.js';
import * as shSrc from '../../../../firmware/core/sha256.js';

const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);
const impls: Array<[string, any, any]> = [['source', hmSrc, shSrc]];
if (fw) impls.push(['bundle', fw.hmac, fw.sha256]);

const nodeSha = (s: string) => createHash('sha256').update(s, 'latin1').digest().toString('latin1');
const refMac = (k: string, m: string) => createHmac('sha256', Buffer.from(k, 'latin1')).update(m, 'latin1').digest().toString('latin1');

function randomBytes(rng: SeededRng, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.nextU32() & 255);
  return s;
}

describe.each(impls)('Hmac (%s)', (_name, hm, sh) => {
  it('matches node:crypto for random keys 0..200 bytes and messages 0..600 bytes, with each hash', () => {
    const rng = new SeededRng(3);
    for (let i = 0; i < 200; i++) {
      const key = randomBytes(rng, rng.nextU32() % 201);
      const msg = randomBytes(rng, rng.nextU32() % 601);
      const want = refMac(key, msg);
      expect(new hm.Hmac(key, sh.sha256).digest(msg)).toBe(want);
      expect(new hm.Hmac(key, sh.sha256, sh.sha256Resume).digest(msg)).toBe(want);
      expect(new hm.Hmac(key, nodeSha).digest(msg)).toBe(want);
    }
  });

  it('builds the key pads once: no hash call in the constructor for a short key, exactly two per MAC', () => {
    let calls = 0;
    const counted = (s: string) => {
      calls++;
      return nodeSha(s);
    };
    const h = new hm.Hmac('k'.repeat(32), counted);
    expect(calls).toBe(0);
    for (let i = 1; i <= 5; i++) {
      h.digest('message ' + i);
      expect(calls).toBe(2 * i);
    }
    calls = 0;
    new hm.Hmac('k'.repeat(65), counted);
    expect(calls).toBe(1); // RFC 2104 §3: a key longer than the block is hashed first, once
  });

  it('with a resumable hash: the two pad states once per key, two resumes per MAC, no full hash', () => {
    const log: string[] = [];
    const res = {
      mid: (p: string) => {
        log.push('mid' + p.length);
        return sh.sha256Mid(p);
      },
      fin: (mid: unknown, s: string, before: number) => {
        log.push('fin' + before);
        return sh.sha256Fin(mid, s, before);
      },
    };
    const full = (s: string) => {
      log.push('full');
      return sh.sha256(s);
    };
    const h = new hm.Hmac('key', full, res);
    expect(log).toEqual(['mid64', 'mid64']);
    log.length = 0;
    expect(h.digest('abc')).toBe(refMac('key', 'abc'));
    expect(log).toEqual(['fin64', 'fin64']);
  });

  it('hex / fromHex round-trip every byte value; fromHex accepts either case and rejects bad input', () => {
    let all = '';
    for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
    const h = hm.hex(all);
    expect(h).toBe(Buffer.from(all, 'latin1').toString('hex'));
    expect(hm.fromHex(h)).toBe(all);
    expect(hm.fromHex(h.toUpperCase())).toBe(all);
    expect(hm.fromHex('')).toBe('');
    for (const bad of ['a', 'abc', 'zz', '0g', '12 4', ' 1', '0x12', '+1', '-1']) expect(hm.fromHex(bad), bad).toBe(null);
    expect(hm.fromHex(undefined as unknown as string)).toBe(null);
  });

  it('sameBytes compares whole strings', () => {
    expect(hm.sameBytes('', '')).toBe(true);
    expect(hm.sameBytes('abc', 'abc')).toBe(true);
    expect(hm.sameBytes('abc', 'abd')).toBe(false);
    expect(hm.sameBytes('xbc', 'abc')).toBe(false);
    expect(hm.sameBytes('abc', 'ab')).toBe(false);
    expect(hm.sameBytes('\u0000', '\u0080')).toBe(false);
  });
});

if (!fw) it.todo('Hmac on the minified bundle (needs test/helpers/firmware-lib.ts)');
