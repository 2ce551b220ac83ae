// Retry runs: trace scripts (result, events, state, attempt and next wake-up after every
// command), the random initial phase, and properties (fast-check) for the limits; source and
// minified bundle.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as backoffSrc from '../../../../firmware/core/backoff.js';
import * as retrySrc from '../../../../firmware/core/retry.js';
import * as rngSrc from '../../../../firmware/core/rng.js';

let fwError: unknown = null;
const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  (e) => ((fwError = e), null),
);
type Impl = { retry: typeof retrySrc; backoff: typeof backoffSrc; rng: typeof rngSrc };
const impls: Array<[string, Impl]> = [['source', { retry: retrySrc, backoff: backoffSrc, rng: rngSrc }]];
if (fw) impls.push(['bundle', { retry: fw.retry, backoff: fw.backoff, rng: fw.rng }]);

it('the minified bundle loads (dist/firmware/lib.js, built by npm run build)', () => {
  if (fwError) throw fwError;
  expect(fw!.retry.Retry).toBeTypeOf('function');
});

function scripted(draws: number[]) {
  let i = 0;
  return {
    next() {
      if (i >= draws.length) throw new Error('rng: no more scripted draws');
      return draws[i++];
    },
  };
}

/**
 * Commands: `start T [DL]`, `tick T`, `ok T`, `fail T REASON [RETRY_AT]`, `cancel WHY`.
 * Each prints: <command> -> <result> [!event(detail)] | <state> a<attempt> wake=<next deadline>
 */
function trace(R: typeof retrySrc, opts: any, script: string): string {
  const events: string[] = [];
  const policy = new R.RetryPolicy({
    ...opts,
    onEvent: (name: string, r: any) => events.push(name === 'retry' ? `!retry(${r.reason} +${r.delayMs})` : `!giveUp(${r.why} ${r.reason})`),
  });
  const r = new R.Retry(policy);
  const out: string[] = [];
  for (const raw of script.trim().split('\n')) {
    const line = raw.trim();
    const [cmd, a, b, c] = line.split(/\s+/);
    events.length = 0;
    let res: unknown = '';
    if (cmd === 'start') res = r.start(Number(a), b === undefined ? undefined : Number(b));
    else if (cmd === 'tick') res = r.tick(Number(a));
    else if (cmd === 'ok') r.success(Number(a));
    else if (cmd === 'fail') res = r.failure(Number(a), b, c === undefined ? undefined : Number(c));
    else if (cmd === 'cancel') r.cancel(a);
    else throw new Error('unknown command ' + cmd);
    const said = [String(res), ...events].filter(Boolean).join(' ');
    const wake = r.nextDeadlineMs();
    out.push(`${line} ->${said ? ' ' + said : ''} | ${R.RETRY_STATE_NAMES[r.state]} a${r.attempt} wake=${wake === Infinity ? 'inf' : wake}`);
  }
  return out.join('\n');
}

const expected = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .join('\n');

describe.each(impls)('retry traces (%s)', (_name, { retry: R, backoff: B }) => {
  it('exponential backoff until the attempts run out', () => {
    const got = trace(
      R,
      { attemptsMax: 4, backoff: B.exponentialBackoff({ baseMs: 100, capMs: 1000 }) },
      `
      start 0
      fail 10 e1
      tick 109
      tick 110
      fail 120 e2
      tick 320
      fail 330 e3
      tick 730
      fail 800 e4
      tick 5000
      `,
    );
    expect(got).toBe(
      expected(`
      start 0 -> 0 | running a1 wake=inf
      fail 10 e1 -> 100 !retry(e1 +100) | waiting a2 wake=110
      tick 109 -> false | waiting a2 wake=110
      tick 110 -> true | running a2 wake=inf
      fail 120 e2 -> 200 !retry(e2 +200) | waiting a3 wake=320
      tick 320 -> true | running a3 wake=inf
      fail 330 e3 -> 400 !retry(e3 +400) | waiting a4 wake=730
      tick 730 -> true | running a4 wake=inf
      fail 800 e4 -> -1 !giveUp(attempts e4) | gaveUp a4 wake=inf
      tick 5000 -> false | gaveUp a4 wake=inf
    `),
    );
  });

  it('gives up when the next attempt could not start before the overall deadline', () => {
    const got = trace(
      R,
      { attemptsMax: 10, budgetMs: 1000, backoff: B.constantBackoff({ baseMs: 400 }) },
      `
      start 0
      fail 100 e1
      fail 200 stale
      tick 500
      fail 599 e2
      tick 999
      fail 999 e3
      `,
    );
    // 599 + 400 = 999 < 1000: one more. The stale fail while waiting changes nothing.
    expect(got).toBe(
      expected(`
      start 0 -> 0 | running a1 wake=inf
      fail 100 e1 -> 400 !retry(e1 +400) | waiting a2 wake=500
      fail 200 stale -> -1 | waiting a2 wake=500
      tick 500 -> true | running a2 wake=inf
      fail 599 e2 -> 400 !retry(e2 +400) | waiting a3 wake=999
      tick 999 -> true | running a3 wake=inf
      fail 999 e3 -> -1 !giveUp(deadline e3) | gaveUp a3 wake=inf
    `),
    );
    const dl = trace(R, { attemptsMax: 10, budgetMs: 1000 }, `
      start 0 300
      fail 299 x
      tick 299
      fail 299 y
      `);
    // Without a backoff the retry is immediate; the deadline passed to start() (300) wins over the budget.
    expect(dl).toBe(
      expected(`
      start 0 300 -> 0 | running a1 wake=inf
      fail 299 x -> 0 !retry(x +0) | running a2 wake=inf
      tick 299 -> false | running a2 wake=inf
      fail 299 y -> 0 !retry(y +0) | running a3 wake=inf
    `),
    );
  });

  it('non-retryable failures give up at once; a retry-at hint stretches the wait', () => {
    const got = trace(
      R,
      { attemptsMax: 5, retryable: (e: string) => e !== 'auth', backoff: B.constantBackoff({ baseMs: 100 }) },
      `
      start 0
      fail 10 busy 5000
      tick 5000
      fail 5001 busy 5050
      tick 5101
      fail 5200 auth
      ok 5300
      `,
    );
    expect(got).toBe(
      expected(`
      start 0 -> 0 | running a1 wake=inf
      fail 10 busy 5000 -> 4990 !retry(busy +4990) | waiting a2 wake=5000
      tick 5000 -> true | running a2 wake=inf
      fail 5001 busy 5050 -> 100 !retry(busy +100) | waiting a3 wake=5101
      tick 5101 -> true | running a3 wake=inf
      fail 5200 auth -> -1 !giveUp(fatal auth) | gaveUp a3 wake=inf
      ok 5300 -> | gaveUp a3 wake=inf
    `),
    );
  });

  it('random initial phase: the first attempt waits uniform [0, phaseMs], dropped if it would pass the deadline', () => {
    const got = trace(
      R,
      { attemptsMax: 3, phaseMs: 1000, rng: scripted([0.5, 0.999999, 0.25]) },
      `
      start 0
      tick 499
      tick 500
      ok 600
      start 1000 1500
      start 2000
      cancel stop
      start 9000 9000
      `,
    );
    // 0.5 -> 500; 0.999999 -> 1000, past the deadline 1500 - 1000 = 500 away, so 0;
    // 0.25 -> 250; a deadline already reached gives up without drawing.
    expect(got).toBe(
      expected(`
      start 0 -> 500 | waiting a1 wake=500
      tick 499 -> false | waiting a1 wake=500
      tick 500 -> true | running a1 wake=inf
      ok 600 -> | done a1 wake=inf
      start 1000 1500 -> 0 | running a1 wake=inf
      start 2000 -> 250 | waiting a1 wake=2250
      cancel stop -> !giveUp(stop undefined) | gaveUp a1 wake=inf
      start 9000 9000 -> -1 !giveUp(deadline undefined) | gaveUp a1 wake=inf
    `),
    );
  });

  it('a Retry is reusable: start() begins a fresh run with the backoff started over', () => {
    const got = trace(
      R,
      { attemptsMax: 2, backoff: B.exponentialBackoff({ baseMs: 10 }) },
      `
      start 0
      fail 1 a
      tick 11
      fail 12 b
      start 100
      fail 101 c
      `,
    );
    expect(got.split('\n').slice(4)).toEqual(['start 100 -> 0 | running a1 wake=inf', 'fail 101 c -> 10 !retry(c +10) | waiting a2 wake=111']);
  });

  it('rejects impossible settings (programmer errors)', () => {
    expect(() => new R.RetryPolicy({ attemptsMax: 0 })).toThrow();
    expect(() => new R.RetryPolicy({ attemptsMax: 2, phaseMs: 100 })).toThrow();
  });
});

describe.each(impls)('retry properties (%s)', (name, { retry: R, backoff: B, rng: Rn }) => {
  const runs = name === 'source' ? 300 : 60;
  it('attempts <= attemptsMax, no attempt starts at or after the deadline, one ending per run, retry events = attempts - 1', () => {
    fc.assert(
      fc.property(
        fc.record({
          attemptsMax: fc.integer({ min: 1, max: 12 }),
          budgetMs: fc.integer({ min: 1, max: 20000 }),
          base: fc.integer({ min: 0, max: 500 }),
          jitter: fc.constantFrom('none', 'full', 'half', 'decorrelated'),
          phaseMs: fc.integer({ min: 0, max: 300 }),
          seed: fc.integer(),
        }),
        fc.array(fc.record({ work: fc.integer({ min: 0, max: 400 }), ok: fc.double({ min: 0, max: 1, noNaN: true }) }), { minLength: 1, maxLength: 30 }),
        (o, outcomes) => {
          let retries = 0;
          let endings = 0;
          const rng = new Rn.SeededRng(o.seed);
          const policy = new R.RetryPolicy({
            attemptsMax: o.attemptsMax,
            budgetMs: o.budgetMs,
            phaseMs: o.phaseMs,
            rng,
            backoff: B.exponentialBackoff({ baseMs: o.base, capMs: o.base * 10, jitter: o.jitter, rng }),
            onEvent: (ev: string) => (ev === 'retry' ? retries++ : endings++),
          });
          const r = new R.Retry(policy);
          let now = 1000;
          let d = r.start(now);
          const deadline = 1000 + o.budgetMs;
          let started = 0;
          for (const step of outcomes) {
            if (d < 0) break;
            now += d;
            if (d > 0) expect(r.tick(now)).toBe(true);
            expect(r.state).toBe(R.RETRY_RUNNING);
            expect(now).toBeLessThan(deadline);
            started++;
            expect(r.attempt).toBe(started);
            expect(started).toBeLessThanOrEqual(o.attemptsMax);
            now += step.work;
            if (step.ok < 0.2) {
              r.success(now);
              endings++;
              break;
            }
            d = r.failure(now, 'e');
          }
          if (r.state === R.RETRY_GAVE_UP || r.state === R.RETRY_DONE) expect(endings).toBe(1);
          expect(retries).toBe(Math.max(0, r.attempt - 1));
        },
      ),
      { numRuns: runs },
    );
  });
});
