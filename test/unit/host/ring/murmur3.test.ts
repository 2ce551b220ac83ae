import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur3, murmur3Bytes, murmur3Word, murmur3Words } from '../../../../host/ring/murmur3.js';

// Published MurmurHash3_x86_32 values (smhasher reference; the usual cross-language test list).
const VECTORS: Array<[string, number, number]> = [
  ['', 0, 0x00000000],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  ['test', 0, 0xba6bd213],
  ['Hello, world!', 0, 0xc0363e43],
  ['Hello, world!', 1234, 0xfaf6cdb3],
  ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
  ['a', 0x9747b28c, 0x7fa09ea6],
  ['aaaa', 0x9747b28c, 0x5a97808a],
  ['abc', 0, 0xb3dd93fa],
  ['ππππππππ', 0x9747b28c, 0xd58063c1],
];

describe('murmur3', () => {
  it.each(VECTORS)('murmur3(%j, %i) matches the reference', (s, seed, want) => {
    expect(murmur3(s, seed)).toBe(want);
    expect(murmur3Bytes(Buffer.from(s, 'utf8'), seed)).toBe(want);
  });

  it('hashes any string as its UTF-8 bytes (ASCII fast path and fallback agree)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (s, seed) => {
        expect(murmur3(s, seed)).toBe(murmur3Bytes(Buffer.from(s, 'utf8'), seed));
      }),
      { numRuns: 2000 },
    );
  });

  it('a non-ASCII char in the tail still takes the UTF-8 path', () => {
    for (const s of ['abcdé', 'abcd€', 'x€', '€', 'abc\u{1F600}']) {
      expect(murmur3(s, 5)).toBe(murmur3Bytes(Buffer.from(s, 'utf8'), 5));
    }
  });

  it('murmur3Word equals murmur3 over the little-endian bytes', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (w, seed) => {
        const b = Buffer.alloc(4);
        b.writeUInt32LE(w);
        expect(murmur3Word(w, seed)).toBe(murmur3Bytes(b, seed));
      }),
      { numRuns: 2000 },
    );
  });

  it('murmur3Words equals murmur3 over the words laid out little-endian', () => {
    const words = [0, 1, 0xffffffff, 0x12345678, 65535];
    const b = Buffer.alloc(words.length * 4);
    words.forEach((w, i) => b.writeUInt32LE(w, i * 4));
    expect(murmur3Words(words, words.length, 99)).toBe(murmur3Bytes(b, 99));
    expect(murmur3Words(new Uint16Array([7, 8]), 2, 0)).toBe(murmur3Bytes(Buffer.from([7, 0, 0, 0, 8, 0, 0, 0]), 0));
  });
});
