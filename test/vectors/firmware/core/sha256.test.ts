// SHA-256 against the FIPS 180-2 Appendix B examples (and the empty message), on the source
// module and on the minified bundle; every digest is also checked against node:crypto.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as src from '../../../../firmware/core/sha256.js';

// The minified bundle's namespace once test/helpers/firmware-lib.ts exists (import failure only
// is tolerated; a helper that exists but cannot load the bundle fails the file).
const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);
const impls: Array<[string, any]> = [['source', src]];
if (fw) impls.push(['bundle', fw.sha256]);

const VECTORS: Array<[string, string, string]> = [
  // [name, message (byte string), digest hex]
  ['empty', '', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
  ['FIPS 180-2 B.1 "abc"', 'abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
  [
    'FIPS 180-2 B.2 448-bit (two blocks)',
    'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq',
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
  ],
  ['FIPS 180-2 B.3 one million "a"', 'a'.repeat(1000000), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0'],
  [
    '896-bit message (FIPS 180-2 SHA-512 example text)',
    'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
    'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
  ],
];

function hexOf(bytes: string): string {
  return Buffer.from(bytes, 'latin1').toString('hex');
}

it('the vector table agrees with node:crypto', () => {
  for (const [, msg, want] of VECTORS) expect(createHash('sha256').update(msg, 'latin1').digest('hex')).toBe(want);
});

describe.each(impls)('sha256 vectors (%s)', (_name, m) => {
  it.each(VECTORS)('%s', (_n, msg, want) => {
    const d = m.sha256(msg);
    expect(typeof d).toBe('string');
    expect(d.length).toBe(32);
    expect(hexOf(d)).toBe(want);
  });

  it('resumes from a saved block state (sha256Mid/sha256Fin) to the same digest', () => {
    const prefix = 'k'.repeat(64);
    const mid = m.sha256Mid(prefix);
    for (const [, msg, want] of VECTORS.slice(0, 3)) {
      expect(hexOf(m.sha256Fin(mid, msg, 64))).toBe(createHash('sha256').update(prefix + msg, 'latin1').digest('hex'));
      expect(want.length).toBe(64);
    }
  });
});

if (!fw) it.todo('sha256 vectors on the minified bundle (needs test/helpers/firmware-lib.ts)');
