// The text-to-bytes RULE of firmware/wire/utf8.ts, against Node's own UTF-8 (Buffer, and
// TextDecoder in fatal mode for well-formedness). Source module and minified bundle.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as src from '../../../../firmware/wire/utf8.js';
import { utf8Targets } from './mqtt-codec-fixtures.js';

const nodeUtf8 = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');
const fatal = new TextDecoder('utf-8', { fatal: true });
function wellFormed(bytes: string): boolean {
  if (/[^\x00-\xff]/.test(bytes)) return false;
  try {
    fatal.decode(Buffer.from(bytes, 'latin1'));
    return true;
  } catch {
    return false;
  }
}
const bytes = (...n: number[]): string => String.fromCharCode(...n);

/** Any UTF-16 code unit, lone surrogates included, weighted towards the interesting ranges. */
const unit = fc.oneof(
  fc.integer({ min: 0, max: 0x7f }),
  fc.integer({ min: 0x80, max: 0xff }),
  fc.integer({ min: 0x100, max: 0xffff }),
  fc.integer({ min: 0xd800, max: 0xdfff }),
).map((c) => String.fromCharCode(c));
/** A byte that is often a UTF-8 lead or continuation byte. */
const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0x80, max: 0xbf }), fc.integer({ min: 0xc0, max: 0xf7 }));

describe.each(utf8Targets)('utf8 (%s)', (_name, u8: typeof src) => {
  it('rule 1: ASCII is returned as the same string', () => {
    const s = 'espfleet/shed-1/telemetry \x00\x7f';
    expect(u8.utf8Bytes(s)).toBe(s);
    expect(u8.NON_ASCII.test(s)).toBe(false);
    expect(u8.NON_ASCII.test('a\x80')).toBe(true);
    expect(u8.NON_ASCII.test('a\u20ac')).toBe(true);
  });

  it('rule 2: a byte string that is well-formed UTF-8 (the device) is returned unchanged', () => {
    for (const text of ['caf\u00e9', '\u20ac', '\ud83d\ude00 x', '\u00fc/\u00e9\u00e8']) {
      const b = nodeUtf8(text);
      expect(u8.isUtf8Bytes(b)).toBe(true);
      expect(u8.utf8Bytes(b)).toBe(b);
    }
  });

  it('rule 3: UTF-16 text (the host) is encoded; lone surrogates become U+FFFD', () => {
    expect(u8.utf8Bytes('caf\u00e9')).toBe(bytes(0x63, 0x61, 0x66, 0xc3, 0xa9));
    expect(u8.utf8Bytes('\u20ac')).toBe(bytes(0xe2, 0x82, 0xac));
    expect(u8.utf8Bytes('\ud83d\ude00')).toBe(bytes(0xf0, 0x9f, 0x98, 0x80));
    expect(u8.utf8Bytes('\u07ff\u0800\uffff')).toBe(nodeUtf8('\u07ff\u0800\uffff'));
    expect(u8.utf8Bytes('a\ud800b')).toBe('a' + bytes(0xef, 0xbf, 0xbd) + 'b');
    expect(u8.utf8Bytes('\udc00\ud83d')).toBe(bytes(0xef, 0xbf, 0xbd, 0xef, 0xbf, 0xbd));
  });

  it('the documented ambiguity: Latin-1 text that spells UTF-8 is taken as bytes', () => {
    expect(u8.utf8Bytes('\u00c3\u00a9')).toBe('\u00c3\u00a9');
  });

  it.each([
    ['2-byte', [0xc2, 0x80], true],
    ['3-byte', [0xe2, 0x82, 0xac], true],
    ['4-byte, last code point', [0xf4, 0x8f, 0xbf, 0xbf], true],
    ['E0 lowest', [0xe0, 0xa0, 0x80], true],
    ['overlong C0 80', [0xc0, 0x80], false],
    ['overlong C1 BF', [0xc1, 0xbf], false],
    ['overlong E0 9F BF', [0xe0, 0x9f, 0xbf], false],
    ['overlong F0 8F BF BF', [0xf0, 0x8f, 0xbf, 0xbf], false],
    ['surrogate ED A0 80', [0xed, 0xa0, 0x80], false],
    ['beyond U+10FFFF', [0xf4, 0x90, 0x80, 0x80], false],
    ['F5 lead', [0xf5, 0x80, 0x80, 0x80], false],
    ['lone continuation', [0x80], false],
    ['truncated 3-byte', [0xe2, 0x82], false],
    ['lead then ASCII', [0xc3, 0x41], false],
  ])('isUtf8Bytes %s', (_n, b, want) => {
    expect(u8.isUtf8Bytes(bytes(...(b as number[])))).toBe(want);
    expect(wellFormed(bytes(...(b as number[])))).toBe(want);
  });

  it('isUtf8Bytes rejects chars above 0xFF', () => {
    expect(u8.isUtf8Bytes('\u20ac')).toBe(false);
    expect(u8.isUtf8Bytes(bytes(0xc3) + '\u01a9')).toBe(false);
  });

  it('isUtf8Bytes agrees with a fatal UTF-8 decoder on random bytes', () => {
    fc.assert(
      fc.property(fc.array(byte, { maxLength: 12 }), (b) => {
        const s = bytes(...b);
        expect(u8.isUtf8Bytes(s)).toBe(wellFormed(s));
      }),
      { numRuns: 3000, seed: 0x5eed },
    );
  });

  it('isUtf8Bytes agrees with a fatal UTF-8 decoder on every 1- and 2-byte string, and on 3- and 4-byte ones from boundary bytes', () => {
    const edges = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff];
    const wrong: string[] = [];
    const check = (...b: number[]) => {
      const s = bytes(...b);
      if (u8.isUtf8Bytes(s) !== wellFormed(s)) wrong.push(b.map((x) => x.toString(16)).join(' '));
    };
    for (let a = 0; a < 256; a++) {
      check(a);
      for (let b = 0; b < 256; b++) check(a, b);
    }
    for (const a of edges) for (const b of edges) for (const c of edges) check(a, b, c);
    for (const a of [0xf0, 0xf1, 0xf3, 0xf4, 0xf5]) for (const b of edges) for (const c of edges) for (const d of edges) check(a, b, c, d);
    // Sequences after ASCII and after another sequence (the cut goes on from where it stopped).
    for (const a of edges) for (const b of edges) check(0x61, 0xc3, 0xa9, a, b);
    expect(wrong.slice(0, 10)).toEqual([]);
  });

  it('utf8Bytes follows the RULE on random UTF-16 strings', () => {
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 16 }), (s) => {
        const got = u8.utf8Bytes(s);
        const want = wellFormed(s) ? s : nodeUtf8(s);
        expect(got).toBe(want);
        expect(/[^\x00-\xff]/.test(got)).toBe(false);
        expect(wellFormed(got)).toBe(true);
      }),
      { numRuns: 3000, seed: 0x5eed },
    );
  });
});
