// HMAC-SHA256 against every RFC 4231 test case (4.2-4.8; case 5 truncated to 128 bits), with the
// JS hash plain and resumable, with node:crypto's hash as the Sha256Fn (the host's way), and on
// the minified bundle. The table itself is checked against node:crypto's HMAC.
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as hm from '../../../../firmware/core/hmac.js';
import * as sh from '../../../../firmware/core/sha256.js';

const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);

const bytes = (hex: string) => Buffer.from(hex, 'hex').toString('latin1');
const rep = (byte: number, n: number) => String.fromCharCode(byte).repeat(n);

// [case, key bytes, data bytes, expected hex (truncated where the RFC truncates)]
const RFC4231: Array<[string, string, string, string]> = [
  ['4.2 case 1', rep(0x0b, 20), 'Hi There', 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
  ['4.3 case 2 (key shorter than the output)', 'Jefe', 'what do ya want for nothing?', '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
  ['4.4 case 3 (combined length > block)', rep(0xaa, 20), rep(0xdd, 50), '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
  ['4.5 case 4', bytes('0102030405060708090a0b0c0d0e0f10111213141516171819'), rep(0xcd, 50), '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b'],
  ['4.6 case 5 (truncated to 128 bits)', rep(0x0c, 20), 'Test With Truncation', 'a3b6167473100ee06e0c796c2955552b'],
  ['4.7 case 6 (key larger than a block)', rep(0xaa, 131), 'Test Using Larger Than Block-Size Key - Hash Key First', '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'],
  [
    '4.8 case 7 (key and data larger than a block)',
    rep(0xaa, 131),
    'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.',
    '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
  ],
];

it('the RFC 4231 table agrees with node:crypto', () => {
  for (const [, key, data, want] of RFC4231) {
    const full = createHmac('sha256', Buffer.from(key, 'latin1')).update(data, 'latin1').digest('hex');
    expect(full.slice(0, want.length)).toBe(want);
  }
});

const nodeSha = (s: string) => createHash('sha256').update(s, 'latin1').digest().toString('latin1');

type Variant = [string, any, (new (k: string) => { digest(m: string): string })];
const variants: Variant[] = [
  ['source, JS sha256', hm, class { constructor(k: string) { return new hm.Hmac(k, sh.sha256); } } as any],
  ['source, JS sha256 resumable', hm, class { constructor(k: string) { return new hm.Hmac(k, sh.sha256, sh.sha256Resume); } } as any],
  ['source, node:crypto sha256', hm, class { constructor(k: string) { return new hm.Hmac(k, nodeSha); } } as any],
];
if (fw) {
  const b = fw.hmac;
  const s = fw.sha256;
  variants.push(['bundle, JS sha256', b, class { constructor(k: string) { return new b.Hmac(k, s.sha256); } } as any]);
  variants.push(['bundle, JS sha256 resumable', b, class { constructor(k: string) { return new b.Hmac(k, s.sha256, s.sha256Resume); } } as any]);
}

describe.each(variants)('HMAC-SHA256 RFC 4231 (%s)', (_name, mod, Make) => {
  it.each(RFC4231)('%s', (_c, key, data, want) => {
    const mac = new Make(key).digest(data);
    expect(mac.length).toBe(32);
    expect(mod.hex(mac).slice(0, want.length)).toBe(want);
  });

  it('one Hmac gives the same MAC for every message on repeated use (cached pads are not mutated)', () => {
    const [, key, data, want] = RFC4231[1];
    const h = new Make(key);
    for (let i = 0; i < 3; i++) {
      expect(mod.hex(h.digest(data))).toBe(want);
      h.digest('other message ' + i);
    }
  });
});

if (!fw) it.todo('HMAC-SHA256 RFC 4231 on the minified bundle (needs test/helpers/firmware-lib.ts)');
