// SHA-256 cross-checked with node:crypto on every padding boundary and on random byte strings,
// and the resumable form on multi-block prefixes; source and minified bundle.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import * as src from '../../../../firmware/core/sha256.js';

const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);
const impls: Array<[string, any]> = [['source', src]];
if (fw) impls.push(['bundle', fw.sha256]);

const ref = (s: string) => createHash('sha256').update(s, 'latin1').digest().toString('latin1');

function randomBytes(rng: SeededRng, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.nextU32() & 255);
  return s;
}

describe.each(impls)('sha256 (%s)', (_name, m) => {
  it('matches node:crypto for every length 0..300 (all padding cases: 55/56/63/64 and multiples)', () => {
    const rng = new SeededRng(1);
    for (let n = 0; n <= 300; n++) {
      const msg = randomBytes(rng, n);
      expect(m.sha256(msg), `length ${n}`).toBe(ref(msg));
    }
  });

  it('matches node:crypto on 500 random byte strings up to 2 KB, including bytes 0 and 128-255', () => {
    const rng = new SeededRng(42);
    for (let i = 0; i < 500; i++) {
      const msg = randomBytes(rng, rng.nextU32() % 2048);
      expect(m.sha256(msg)).toBe(ref(msg));
    }
    expect(m.sha256('\u0000\u0080\u00ff')).toBe(ref('\u0000\u0080\u00ff'));
  });

  it('resumes after 1..3 whole blocks and leaves the saved state untouched', () => {
    const rng = new SeededRng(7);
    for (const blocks of [1, 2, 3]) {
      const prefix = randomBytes(rng, 64 * blocks);
      const mid = m.sha256Mid(prefix);
      const saved = Array.from(mid as Int32Array);
      for (const n of [0, 1, 55, 56, 64, 119, 200]) {
        const tail = randomBytes(rng, n);
        expect(m.sha256Fin(mid, tail, prefix.length)).toBe(ref(prefix + tail));
      }
      expect(Array.from(mid as Int32Array)).toEqual(saved);
    }
  });

  it('is deterministic across interleaved calls (shared scratch state does not leak between messages)', () => {
    const a = m.sha256('first message');
    m.sha256('x'.repeat(1000));
    expect(m.sha256('first message')).toBe(a);
  });
});

if (!fw) it.todo('sha256 on the minified bundle (needs test/helpers/firmware-lib.ts)');
