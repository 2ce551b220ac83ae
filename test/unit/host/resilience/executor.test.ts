// The host's async wrapper: execute(fn) over the pure policy core with injected timers and
// clock (a manual scheduler, no global fake timers), plus one run on the real timers.
import { describe, expect, it } from 'vitest';
import { exponentialBackoff, constantBackoff } from '../../../../firmware/core/backoff.js';
import { CircuitBreaker, OPEN } from '../../../../firmware/core/circuit-breaker.js';
import { Deadline } from '../../../../firmware/core/policy.js';
import { RetryPolicy } from '../../../../firmware/core/retry.js';
import { ResilienceError, ResilienceExecutor } from '../../../../host/resilience/executor.js';
import { ManualTimers, watch } from './manual-timers.js';

function setup(layers: any[], o: any = {}) {
  const mt = new ManualTimers();
  const ex = new ResilienceExecutor(layers, { now: mt.clock, timers: mt, ...o });
  return { mt, ex };
}

describe('ResilienceExecutor', () => {
  it('hot path: sync and async functions, no signal, no timer; contexts are reused', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 3 });
    const { mt, ex } = setup([new RetryPolicy({ attemptsMax: 3 }), breaker]);
    const seen: unknown[][] = [];
    expect(await ex.execute((signal, attempt) => (seen.push([signal, attempt]), 7))).toBe(7);
    expect(await ex.execute(async (signal, attempt) => (seen.push([signal, attempt]), 'x'))).toBe('x');
    expect(seen).toEqual([
      [undefined, 1],
      [undefined, 1],
    ]);
    for (let i = 0; i < 100; i++) await ex.execute(() => i);
    expect((ex as any).pool.length).toBe(1);
    expect(mt.pending).toBe(0);
  });

  it('retries with the backoff on the injected timers and returns the first success', async () => {
    const retried: number[] = [];
    const { mt, ex } = setup([
      new RetryPolicy({ attemptsMax: 4, backoff: exponentialBackoff({ baseMs: 100 }), onEvent: (n, r) => n === 'retry' && retried.push(r.delayMs) }),
    ]);
    let calls = 0;
    const w = watch(
      ex.execute(async (_s, attempt) => {
        calls++;
        if (attempt < 3) throw new Error('flaky ' + attempt);
        return 'ok@' + mt.now;
      }),
    );
    await mt.advance(99);
    expect([calls, w.done]).toEqual([1, false]);
    await mt.advance(1);
    expect(calls).toBe(2);
    await mt.advance(200);
    expect(w).toEqual({ done: true, value: 'ok@300' });
    expect(retried).toEqual([100, 200]);
  });

  it('gives up with the last error of fn when attempts run out', async () => {
    const { mt, ex } = setup([new RetryPolicy({ attemptsMax: 2, backoff: constantBackoff({ baseMs: 10 }) })]);
    const w = watch(ex.execute(() => Promise.reject(new Error('always'))));
    await mt.advance(10);
    expect(w.error).toBeInstanceOf(Error);
    expect(w.error.message).toBe('always');
  });

  it('an open breaker rejects at once with code open, without calling fn', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1, openMs: 1000 });
    const { mt, ex } = setup([breaker]);
    await expect(ex.execute(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(breaker.state).toBe(OPEN);
    let called = false;
    const err = await ex.execute(() => (called = true)).catch((e) => e);
    expect(err).toBeInstanceOf(ResilienceError);
    expect(err.code).toBe('open');
    expect(called).toBe(false);
    await mt.advance(1000);
    expect(await ex.execute(() => 'probe')).toBe('probe');
  });

  it('a deadline layer abandons a hung attempt: its signal aborts, the retry runs, the late outcome is dropped', async () => {
    const { mt, ex } = setup([new RetryPolicy({ attemptsMax: 2 }), new Deadline(50)]);
    const signals: AbortSignal[] = [];
    let release: (v: string) => void = () => {};
    const w = watch(
      ex.execute((signal, attempt) => {
        signals.push(signal!);
        if (attempt === 1) return new Promise<string>((r) => (release = r));
        return 'second';
      }),
    );
    await mt.advance(49);
    expect(signals[0].aborted).toBe(false);
    await mt.advance(1);
    expect(signals[0].aborted).toBe(true);
    expect(signals[0].reason).toBeInstanceOf(ResilienceError);
    expect(signals[0].reason.code).toBe('timeout');
    expect(w).toEqual({ done: true, value: 'second' });
    release('first, too late');
    await mt.settle();
    expect(ex.lateCount).toBe(1);
  });

  it('a deadline around the retry ends the whole call with code timeout', async () => {
    const { mt, ex } = setup([new Deadline(250), new RetryPolicy({ attemptsMax: 10, backoff: constantBackoff({ baseMs: 100 }) })]);
    let calls = 0;
    const w = watch(ex.execute(() => (calls++, Promise.reject(new Error('no')))));
    await mt.advance(250);
    // Attempts at 0, 100, 200; the next would start at 300 > 250: the retry gives up first.
    expect(calls).toBe(3);
    expect(w.error.message).toBe('no');
    const w2 = watch(ex.execute(() => new Promise(() => {})));
    await mt.advance(250);
    expect(w2.error.code).toBe('timeout');
    expect(mt.pending).toBe(0);
  });

  it("the caller's signal cancels during an attempt and during a wait", async () => {
    const { mt, ex } = setup([new RetryPolicy({ attemptsMax: 5, backoff: constantBackoff({ baseMs: 100 }) })]);
    const ac = new AbortController();
    let attemptSignal: AbortSignal | undefined;
    const w = watch(ex.execute((s) => ((attemptSignal = s), new Promise(() => {})), { signal: ac.signal }));
    await mt.settle();
    ac.abort();
    await mt.settle();
    expect(w.error.code).toBe('cancelled');
    expect(attemptSignal!.aborted).toBe(true);

    const ac2 = new AbortController();
    const w2 = watch(ex.execute(() => Promise.reject(new Error('x')), { signal: ac2.signal }));
    await mt.advance(50);
    expect(w2.done).toBe(false);
    ac2.abort();
    await mt.settle();
    expect(w2.error.code).toBe('cancelled');
    expect(mt.pending).toBe(0);

    const ac3 = new AbortController();
    ac3.abort();
    let called = false;
    await expect(ex.execute(() => (called = true), { signal: ac3.signal })).rejects.toMatchObject({ code: 'cancelled' });
    expect(called).toBe(false);
  });

  it("the call's own deadline rejects with code deadline", async () => {
    const { mt, ex } = setup([new RetryPolicy({ attemptsMax: 5 })]);
    const w = watch(ex.execute(() => new Promise(() => {}), { deadlineMs: 500 }));
    await mt.advance(500);
    expect(w.error.code).toBe('deadline');
    await expect(ex.execute(() => 1, { deadlineMs: 500 })).rejects.toMatchObject({ code: 'deadline' });
  });

  it('failures the policy does not handle are thrown at once and leave the breaker alone', async () => {
    const breaker = new CircuitBreaker({ consecutiveFailures: 1 });
    const { ex } = setup([new RetryPolicy({ attemptsMax: 5 }), breaker], { handles: (e: any) => !(e instanceof TypeError) });
    let calls = 0;
    await expect(ex.execute(() => (calls++, Promise.reject(new TypeError('bug'))))).rejects.toBeInstanceOf(TypeError);
    expect(calls).toBe(1);
    expect(breaker.state).toBe(0);
  });

  it('many calls at once share the breaker and each settles once', async () => {
    const { mt, ex } = setup([new RetryPolicy({ attemptsMax: 3, backoff: constantBackoff({ baseMs: 5 }) }), new CircuitBreaker({ consecutiveFailures: 100 })]);
    const ws = Array.from({ length: 50 }, (_, i) => watch(ex.execute(async (_s, a) => (a === 1 && i % 3 === 0 ? Promise.reject(new Error('once')) : i))));
    await mt.advance(10);
    expect(ws.map((w) => w.value)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('runs on the real timers by default', async () => {
    const ex = new ResilienceExecutor([new RetryPolicy({ attemptsMax: 3, backoff: constantBackoff({ baseMs: 2 }) }), new Deadline(1000)]);
    let n = 0;
    expect(await ex.execute(async () => (++n < 3 ? Promise.reject(new Error('again')) : n))).toBe(3);
  });
});
