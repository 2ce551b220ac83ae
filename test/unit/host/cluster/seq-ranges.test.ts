import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clipRanges, rangesCount, rangesOf, subtractRanges, validRanges } from '../../../../host/cluster/seq-ranges.js';

const seqSet = fc.uniqueArray(fc.integer({ min: 0, max: 200 }), { maxLength: 80 }).map((a) => a.sort((x, y) => x - y));

describe('seq ranges', () => {
  it.each([
    [[[1, 10]], [], [[1, 10]]],
    [[[1, 10]], [[1, 10]], []],
    [[[1, 10]], [[3, 4], [7, 7]], [[1, 2], [5, 6], [8, 10]]],
    [[[1, 3], [6, 9]], [[0, 1], [8, 20]], [[2, 3], [6, 7]]],
    [[[5, 5]], [[1, 4], [6, 9]], [[5, 5]]],
  ])('subtract %j - %j = %j', (a, b, want) => {
    expect(subtractRanges(a as [number, number][], b as [number, number][])).toEqual(want);
  });

  it('subtract is set difference (property)', () => {
    fc.assert(
      fc.property(seqSet, seqSet, (a, b) => {
        const got = subtractRanges(rangesOf(a), rangesOf(b));
        const want = a.filter((s) => b.indexOf(s) < 0);
        expect(rangesOf(want)).toEqual(got);
        expect(rangesCount(got)).toBe(want.length);
      }),
    );
  });

  it('clip keeps seqs <= upTo', () => {
    expect(clipRanges([[1, 3], [5, 9], [12, 13]], 6)).toEqual([[1, 3], [5, 6]]);
    expect(clipRanges([[1, 3]], 0)).toEqual([]);
  });

  it('validRanges accepts only sorted, disjoint, non-adjacent integer runs within the limit', () => {
    expect(validRanges([[0, 1], [3, 5]], 4)).toBe(true);
    expect(validRanges([], 0)).toBe(true);
    for (const bad of [[[1, 0]], [[0, 1], [2, 3]], [[3, 4], [0, 1]], [[-1, 2]], [[0, 1.5]], [[0]], 'x', [[0, 1], [3, 4], [6, 7]]]) {
      expect(validRanges(bad, 2)).toBe(false);
    }
  });
});
