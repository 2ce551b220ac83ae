/**
 * How `espfleet devices` prints a reading (integers exact, fractions to 6 significant digits, as
 * binary floating point leaves tails such as 56.757000000000005; anything else as text) and a
 * time (the local wall clock).
 */
import { describe, expect, it } from 'vitest';
import { localTime, readingText } from '../../../../host/cli/client-commands.js';

describe('readingText', () => {
  it.each([
    [56.757000000000005, '56.757'],
    [21.7, '21.7'],
    [0.1 + 0.2, '0.3'],
    [-3.14159265, '-3.14159'],
    [1234567.891, '1234570'],
    [0.000012345678, '0.0000123457'],
    [123456789, '123456789'],
    [0, '0'],
    [-0.5, '-0.5'],
  ])('%s -> %s', (v, text) => {
    expect(readingText(v)).toBe(text);
  });

  it('passes non-numbers and non-finite values through as text', () => {
    expect(readingText('on')).toBe('on');
    expect(readingText(true)).toBe('true');
    expect(readingText(null)).toBe('null');
    expect(readingText(Infinity)).toBe('Infinity');
  });
});

describe('localTime', () => {
  it('prints the local wall clock of an instant, zero-padded', () => {
    const at = new Date(2026, 0, 2, 3, 4, 5).getTime();
    expect(localTime(at)).toBe('2026-01-02 03:04:05');
    expect(localTime(new Date(2026, 10, 28, 23, 59, 59).getTime())).toBe('2026-11-28 23:59:59');
  });
});
