// Backoff values: the AWS formulas table-checked with scripted random draws, immutability,
// persistence, and the bounds as properties (fast-check); source and minified bundle.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as backoffSrc from '../../../../firmware/core/backoff.js';
import * as rngSrc from '../../../../firmware/core/rng.js';

let fwError: unknown = null;
const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  (e) => ((fwError = e), null),
);
type Impl = { backoff: typeof backoffSrc; rng: typeof rngSrc };
const impls: Array<[string, Impl]> = [['source', { backoff: backoffSrc, rng: rngSrc }]];
if (fw) impls.push(['bundle', { backoff: fw.backoff, rng: fw.rng }]);

it('the minified bundle loads (dist/firmware/lib.js, built by npm run build)', () => {
  if (fwError) throw fwError;
  expect(fw!.backoff.exponentialBackoff).toBeTypeOf('function');
});

/** An Rng that returns the given draws in turn and counts them. */
function scripted(draws: number[]) {
  let i = 0;
  return {
    get used() {
      return i;
    },
    next() {
      if (i >= draws.length) throw new Error('rng: no more scripted draws');
      return draws[i++];
    },
  };
}

function delays(b: any, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    b = b.next();
    out.push(b.delayMs);
  }
  return out;
}

/** The un-jittered term t(n) = min(cap, base * factor^(n-1)), computed independently. */
function terms(base: number, cap: number, factor: number, n: number): number[] {
  const out: number[] = [];
  let t = base;
  for (let i = 0; i < n; i++) {
    out.push(Math.floor(Math.min(cap, t)));
    t = Math.min(cap, t * factor);
  }
  return out;
}

describe.each(impls)('backoff (%s)', (_name, { backoff: B, rng: R }) => {
  it('a fresh backoff sits before the first delay', () => {
    const b = B.exponentialBackoff({ baseMs: 100 });
    expect([b.attempt, b.delayMs]).toEqual([0, 0]);
    expect(b.first()).toBe(b);
  });

  it('constant: the same delay every time, attempt counts the delays', () => {
    let b = B.constantBackoff({ baseMs: 250 });
    const seen: number[][] = [];
    for (let i = 0; i < 4; i++) {
      b = b.next();
      seen.push([b.attempt, b.delayMs]);
    }
    expect(seen).toEqual([
      [1, 250],
      [2, 250],
      [3, 250],
      [4, 250],
    ]);
  });

  it('exponential without jitter doubles up to the cap', () => {
    expect(delays(B.exponentialBackoff({ baseMs: 100, capMs: 1000 }), 7)).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
    expect(delays(B.exponentialBackoff({ baseMs: 10, capMs: 100, factor: 3 }), 4)).toEqual([10, 30, 90, 100]);
    expect(delays(B.exponentialBackoff({ baseMs: 1000, factor: 1.5, capMs: 5000 }), 5)).toEqual([1000, 1500, 2250, 3375, 5000]);
  });

  it('default cap is 30 s for exponential', () => {
    expect(delays(B.exponentialBackoff({ baseMs: 10000 }), 4)).toEqual([10000, 20000, 30000, 30000]);
  });

  it('is immutable: next() twice on one value gives the same step, the value is unchanged', () => {
    const b1 = B.exponentialBackoff({ baseMs: 100 }).next();
    const a = b1.next();
    const b = b1.next();
    expect([a.attempt, a.delayMs]).toEqual([2, 200]);
    expect([b.attempt, b.delayMs]).toEqual([2, 200]);
    expect([b1.attempt, b1.delayMs]).toEqual([1, 100]);
  });

  it('full jitter: uniform over [0, t], inclusive at both ends', () => {
    // t = 100, 200, 400: draws 0 -> 0, 0.999999 -> t, 0.5 -> floor(0.5 * (t + 1)).
    const rng = scripted([0, 0.999999, 0.5]);
    expect(delays(B.exponentialBackoff({ baseMs: 100, jitter: 'full', rng }), 3)).toEqual([0, 200, 200]);
    expect(rng.used).toBe(3);
  });

  it('half (equal) jitter: t/2 + uniform [0, t/2]', () => {
    const rng = scripted([0, 0.999999, 0.5]);
    expect(delays(B.exponentialBackoff({ baseMs: 100, jitter: 'half', rng }), 3)).toEqual([50, 200, 200 + 100]);
  });

  it('decorrelated jitter: min(cap, uniform [base, previous * 3]), previous starts at base', () => {
    // Highest draws: 300, 900, 2700, then capped at 5000 (8100), and stays capped.
    expect(delays(B.exponentialBackoff({ baseMs: 100, capMs: 5000, jitter: 'decorrelated', rng: scripted([0.999999, 0.999999, 0.999999, 0.999999, 0.999999]) }), 5)).toEqual([
      300, 900, 2700, 5000, 5000,
    ]);
    // Lowest draws stay at base; the range restarts from the previous delay each time.
    expect(delays(B.exponentialBackoff({ baseMs: 100, capMs: 5000, jitter: 'decorrelated', rng: scripted([0, 0.999999, 0]) }), 3)).toEqual([100, 300, 100]);
  });

  it('draws exactly one number per jittered step and none without jitter', () => {
    const rng = scripted([0.1, 0.2, 0.3, 0.4]);
    delays(B.exponentialBackoff({ baseMs: 10, jitter: 'decorrelated', rng }), 4);
    expect(rng.used).toBe(4);
    const none = scripted([]);
    delays(B.constantBackoff({ baseMs: 10, rng: none }), 5);
    expect(none.used).toBe(0);
  });

  it('the same seed gives the same delays (the device and the host agree)', () => {
    const run = () => delays(B.exponentialBackoff({ baseMs: 50, capMs: 60000, jitter: 'decorrelated', rng: new R.SeededRng(7) }), 20);
    expect(run()).toEqual(run());
    expect(delays(backoffSrc.exponentialBackoff({ baseMs: 50, capMs: 60000, jitter: 'decorrelated', rng: new rngSrc.SeededRng(7) }), 20)).toEqual(run());
  });

  it('toJSON / restoreBackoff continue the sequence where it stopped', () => {
    for (const jitter of ['none', 'full', 'half', 'decorrelated']) {
      const start = B.exponentialBackoff({ baseMs: 100, capMs: 20000, jitter, rng: new R.SeededRng(3) });
      let b = start;
      for (let i = 0; i < 4; i++) b = b.next();
      const saved = JSON.parse(JSON.stringify(b.toJSON()));
      const r = B.restoreBackoff(start, saved);
      expect([r.attempt, r.delayMs]).toEqual([b.attempt, b.delayMs]);
      // Same rng state from here on: both continue identically.
      const s1 = B.exponentialBackoff({ baseMs: 100, capMs: 20000, jitter, rng: new R.SeededRng(9) });
      const s2 = B.exponentialBackoff({ baseMs: 100, capMs: 20000, jitter, rng: new R.SeededRng(9) });
      const cont1 = delays(B.restoreBackoff(s1, saved), 5);
      const cont2 = delays(B.restoreBackoff(s2, JSON.parse(JSON.stringify(b.toJSON()))), 5);
      expect(cont1).toEqual(cont2);
      if (jitter === 'none') expect(cont1).toEqual([1600, 3200, 6400, 12800, 20000]);
    }
  });

  it('restoreBackoff never throws on damaged input: it starts over', () => {
    const start = B.exponentialBackoff({ baseMs: 100, capMs: 1000 });
    for (const bad of [null, undefined, 7, 'x', [], [1, 2], [-1, 100, 100], [1.5, 100, 100], [2, 5000, 100], [2, 'a', 100], { 0: 1 }, [0, 0, 0]]) {
      const r = B.restoreBackoff(start, bad);
      expect([r.attempt, r.delayMs]).toEqual([0, 0]);
    }
  });

  it('rejects impossible settings (programmer errors)', () => {
    expect(() => B.exponentialBackoff({ baseMs: -1 })).toThrow();
    expect(() => B.exponentialBackoff({ baseMs: 100, capMs: 50 })).toThrow();
    expect(() => B.exponentialBackoff({ baseMs: 100, capMs: Infinity })).toThrow();
    expect(() => B.exponentialBackoff({ baseMs: 100, factor: 0.5 })).toThrow();
    expect(() => B.exponentialBackoff({ baseMs: 100, jitter: 'full' })).toThrow();
    expect(() => B.exponentialBackoff({ baseMs: 100, jitter: 'wobbly' as any, rng: new R.SeededRng(1) })).toThrow();
  });
});

// Properties: source in full, the bundle with fewer runs (the same code minified).
describe.each(impls)('backoff properties (%s)', (name, { backoff: B, rng: R }) => {
  const runs = name === 'source' ? 300 : 60;
  const settings = fc.record({
    base: fc.integer({ min: 0, max: 5000 }),
    extra: fc.integer({ min: 0, max: 100000 }),
    factor: fc.double({ min: 1, max: 4, noNaN: true }),
    seed: fc.integer(),
    steps: fc.integer({ min: 1, max: 40 }),
  });

  it('no jitter and decorrelated jitter stay within [base, cap]', () => {
    fc.assert(
      fc.property(settings, fc.constantFrom('none', 'decorrelated'), ({ base, extra, factor, seed, steps }, jitter) => {
        const cap = base + extra;
        const ds = delays(B.exponentialBackoff({ baseMs: base, capMs: cap, factor, jitter, rng: new R.SeededRng(seed) }), steps);
        for (const d of ds) {
          expect(d).toBeGreaterThanOrEqual(base);
          expect(d).toBeLessThanOrEqual(cap);
          expect(Number.isInteger(d)).toBe(true);
        }
      }),
      { numRuns: runs },
    );
  });

  it('full jitter stays within [0, t] and half jitter within [floor(t/2), t], t the capped exponential term', () => {
    fc.assert(
      fc.property(settings, fc.constantFrom('full', 'half'), ({ base, extra, factor, seed, steps }, jitter) => {
        const cap = base + extra;
        const ds = delays(B.exponentialBackoff({ baseMs: base, capMs: cap, factor, jitter, rng: new R.SeededRng(seed) }), steps);
        const ts = terms(base, cap, factor, steps);
        ds.forEach((d, i) => {
          expect(d).toBeGreaterThanOrEqual(jitter === 'full' ? 0 : Math.floor(ts[i] / 2));
          expect(d).toBeLessThanOrEqual(ts[i]);
          expect(ts[i]).toBeLessThanOrEqual(cap);
        });
      }),
      { numRuns: runs },
    );
  });

  it('full jitter is spread over the whole of [0, t] (every tenth of the range is hit evenly)', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1000, max: 100000 }), (seed, t) => {
        const start = B.constantBackoff({ baseMs: t, jitter: 'full', rng: new R.SeededRng(seed) });
        const buckets = new Array(10).fill(0);
        let lo = Infinity;
        let hi = -Infinity;
        const n = 2000;
        for (let i = 0; i < n; i++) {
          const d = start.next().delayMs;
          buckets[Math.min(9, Math.floor((d / (t + 1)) * 10))]++;
          lo = Math.min(lo, d);
          hi = Math.max(hi, d);
        }
        // Expected 200 per bucket; 110..290 is beyond 6 standard deviations (sd ~ 13.4).
        for (const b of buckets) {
          expect(b).toBeGreaterThan(110);
          expect(b).toBeLessThan(290);
        }
        expect(lo).toBeLessThan(t * 0.01);
        expect(hi).toBeGreaterThan(t * 0.99);
      }),
      { numRuns: name === 'source' ? 20 : 5 },
    );
  });

  it('the un-jittered sequence never decreases and reaches the cap', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 0, max: 50000 }), (base, extra) => {
        const cap = base + extra;
        const ds = delays(B.exponentialBackoff({ baseMs: base, capMs: cap }), 40);
        for (let i = 1; i < ds.length; i++) expect(ds[i]).toBeGreaterThanOrEqual(ds[i - 1]);
        expect(ds[ds.length - 1]).toBe(cap);
      }),
      { numRuns: runs },
    );
  });
});
