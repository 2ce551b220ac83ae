import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../../../host/bus/rate-limit.js';

describe('TokenBucket', () => {
  it('serves a burst at once, then spaces takes at the rate', () => {
    const b = new TokenBucket(10, 3, 0);
    expect([b.take(0, 1000), b.take(0, 1000), b.take(0, 1000)]).toEqual([0, 0, 0]);
    expect(b.take(0, 1000)).toBe(100); // 4th token due after 1/10 s
    expect(b.take(0, 1000)).toBe(200); // reserved behind the 4th
  });

  it('refuses (without reserving) a take that would wait longer than the maximum', () => {
    const b = new TokenBucket(10, 1, 0);
    expect(b.take(0, 50)).toBe(0);
    expect(b.take(0, 50)).toBe(-1);
    expect(b.take(0, 50)).toBe(-1);
    expect(b.take(100, 50)).toBe(0); // the refusals reserved nothing
  });

  it('refills with time, up to the burst', () => {
    const b = new TokenBucket(100, 5, 0);
    for (let i = 0; i < 5; i++) b.take(0, 0);
    expect(b.take(0, 0)).toBe(-1);
    // After 10 s, 1000 tokens would have accrued but the bucket holds 5.
    let served = 0;
    while (b.take(10_000, 0) === 0) served++;
    expect(served).toBe(5);
  });

  it('keeps the long-run rate when the caller waits as told', () => {
    const b = new TokenBucket(50, 10, 0);
    let now = 0;
    for (let i = 0; i < 510; i++) now += Math.max(0, b.take(now, 1e9));
    // 10 from the burst, then 500 at 50/s = 10 s.
    expect(now).toBeGreaterThanOrEqual(9_900);
    expect(now).toBeLessThanOrEqual(10_100);
  });

  it('asserts its parameters', () => {
    expect(() => new TokenBucket(0, 1, 0)).toThrow();
    expect(() => new TokenBucket(1, 0, 0)).toThrow();
  });
});
