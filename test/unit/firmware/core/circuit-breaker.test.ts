// Circuit breaker: trace scripts (every command's result, events, state, epoch and next
// deadline), persistence, and properties (fast-check) for the admission invariants; source and
// minified bundle.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as backoffSrc from '../../../../firmware/core/backoff.js';
import * as breakerSrc from '../../../../firmware/core/circuit-breaker.js';
import * as rngSrc from '../../../../firmware/core/rng.js';

let fwError: unknown = null;
const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  (e) => ((fwError = e), null),
);
type Impl = { cb: typeof breakerSrc; backoff: typeof backoffSrc; rng: typeof rngSrc };
const impls: Array<[string, Impl]> = [['source', { cb: breakerSrc, backoff: backoffSrc, rng: rngSrc }]];
if (fw) impls.push(['bundle', { cb: fw.circuitBreaker, backoff: fw.backoff, rng: fw.rng }]);

it('the minified bundle loads (dist/firmware/lib.js, built by npm run build)', () => {
  if (fwError) throw fwError;
  expect(fw!.circuitBreaker.CircuitBreaker).toBeTypeOf('function');
});

/**
 * Runs a script against a breaker. Commands: `allow T`, `ok T`, `fail T`, `release`, `tick T`,
 * `isolate T`, `reset T`, `save`, `restore T` (a new breaker from the last save, as after a
 * reboot whose clock reads T). Each command prints one line:
 *   <command> -> <result> [events] | <state> e<epoch> dl=<next deadline>
 */
function trace(cb: typeof breakerSrc, opts: any, script: string): string {
  const events: string[] = [];
  const o = { ...opts, onEvent: (name: string) => events.push(name) };
  let br = new cb.CircuitBreaker(o);
  let saved = '';
  const out: string[] = [];
  for (const raw of script.trim().split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const [cmd, arg] = line.split(/\s+/);
    const t = Number(arg);
    let res = '';
    events.length = 0;
    switch (cmd) {
      case 'allow':
        res = String(br.allow(t));
        break;
      case 'ok':
        br.success(t);
        break;
      case 'fail':
        br.failure(t);
        break;
      case 'release':
        br.release();
        break;
      case 'tick':
        br.tick(t);
        break;
      case 'isolate':
        br.isolate(t);
        break;
      case 'reset':
        br.reset(t);
        break;
      case 'save':
        saved = JSON.stringify(br.toJSON());
        res = saved;
        break;
      case 'restore':
        br = cb.restoreBreaker(o, JSON.parse(saved), t);
        break;
      default:
        throw new Error('unknown command ' + cmd);
    }
    const dl = br.nextDeadlineMs();
    const said = [res, ...events.map((e) => '!' + e)].filter(Boolean).join(' ');
    out.push(`${line} ->${said ? ' ' + said : ''} | ${cb.BREAKER_STATE_NAMES[br.state]} e${br.epoch} dl=${dl === Infinity ? 'inf' : dl}`);
  }
  return out.join('\n');
}

const expected = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .join('\n');

describe.each(impls)('circuit breaker traces (%s)', (_name, { cb, backoff: B }) => {
  it('consecutive failures: closed -> open -> half-open -> open -> half-open -> closed', () => {
    const got = trace(
      cb,
      { consecutiveFailures: 3, openMs: 1000 },
      `
      allow 0
      fail 5
      allow 10
      ok 12
      fail 15
      fail 20
      fail 25
      allow 500
      allow 1024
      allow 1025
      allow 1030
      fail 1100
      tick 2099
      tick 2100
      allow 2200
      ok 2300
      allow 2301
      `,
    );
    expect(got).toBe(
      expected(`
      allow 0 -> true | closed e0 dl=inf
      fail 5 -> | closed e0 dl=inf
      allow 10 -> true | closed e0 dl=inf
      ok 12 -> | closed e0 dl=inf
      fail 15 -> | closed e0 dl=inf
      fail 20 -> | closed e0 dl=inf
      fail 25 -> !open | open e1 dl=1025
      allow 500 -> false | open e1 dl=1025
      allow 1024 -> false | open e1 dl=1025
      allow 1025 -> true !halfOpen | halfOpen e2 dl=61025
      allow 1030 -> false | halfOpen e2 dl=61025
      fail 1100 -> !open | open e3 dl=2100
      tick 2099 -> | open e3 dl=2100
      tick 2100 -> !halfOpen | halfOpen e4 dl=inf
      allow 2200 -> true | halfOpen e4 dl=62100
      ok 2300 -> !closed | closed e5 dl=inf
      allow 2301 -> true | closed e5 dl=inf
    `),
    );
  });

  it('failure rate over a count window, open duration from a backoff that grows and starts over', () => {
    const got = trace(
      cb,
      {
        failureRate: 0.5,
        windowSize: 4,
        callsMin: 4,
        openBackoff: B.exponentialBackoff({ baseMs: 100, capMs: 400 }),
        probesMax: 2,
      },
      `
      ok 0
      fail 1
      ok 2
      fail 3
      allow 103
      allow 104
      allow 105
      ok 110
      fail 120
      allow 320
      fail 330
      tick 730
      allow 731
      allow 732
      ok 740
      ok 750
      fail 800
      fail 801
      ok 802
      ok 803
      fail 804
      `,
    );
    // fail 3: 2 failures of 4 calls = 0.5 -> open 100. Probe failures: 200, then 400 (cap).
    // After closing, the window is empty again: fail 804 evicts fail 800 and 2/4 opens it,
    // with the backoff started over (100).
    expect(got).toBe(
      expected(`
      ok 0 -> | closed e0 dl=inf
      fail 1 -> | closed e0 dl=inf
      ok 2 -> | closed e0 dl=inf
      fail 3 -> !open | open e1 dl=103
      allow 103 -> true !halfOpen | halfOpen e2 dl=60103
      allow 104 -> true | halfOpen e2 dl=60103
      allow 105 -> false | halfOpen e2 dl=60103
      ok 110 -> | halfOpen e2 dl=60103
      fail 120 -> !open | open e3 dl=320
      allow 320 -> true !halfOpen | halfOpen e4 dl=60320
      fail 330 -> !open | open e5 dl=730
      tick 730 -> !halfOpen | halfOpen e6 dl=inf
      allow 731 -> true | halfOpen e6 dl=60730
      allow 732 -> true | halfOpen e6 dl=60730
      ok 740 -> | halfOpen e6 dl=60730
      ok 750 -> !closed | closed e7 dl=inf
      fail 800 -> | closed e7 dl=inf
      fail 801 -> | closed e7 dl=inf
      ok 802 -> | closed e7 dl=inf
      ok 803 -> | closed e7 dl=inf
      fail 804 -> !open | open e8 dl=904
    `),
    );
  });

  it('half-open with 3 probes closing on 2 successes tolerates one failure, not two', () => {
    const got = trace(
      cb,
      { consecutiveFailures: 1, openMs: 50, probesMax: 3, probesToClose: 2 },
      `
      fail 0
      allow 50
      allow 51
      allow 52
      allow 53
      fail 60
      ok 61
      ok 62
      fail 70
      allow 120
      allow 121
      fail 130
      fail 131
      `,
    );
    expect(got).toBe(
      expected(`
      fail 0 -> !open | open e1 dl=50
      allow 50 -> true !halfOpen | halfOpen e2 dl=60050
      allow 51 -> true | halfOpen e2 dl=60050
      allow 52 -> true | halfOpen e2 dl=60050
      allow 53 -> false | halfOpen e2 dl=60050
      fail 60 -> | halfOpen e2 dl=60050
      ok 61 -> | halfOpen e2 dl=60050
      ok 62 -> !closed | closed e3 dl=inf
      fail 70 -> !open | open e4 dl=120
      allow 120 -> true !halfOpen | halfOpen e5 dl=60120
      allow 121 -> true | halfOpen e5 dl=60120
      fail 130 -> | halfOpen e5 dl=60120
      fail 131 -> !open | open e6 dl=181
    `),
    );
  });

  it('release gives a probe slot back; a silent probe times out; outcomes while open are ignored', () => {
    const got = trace(
      cb,
      { consecutiveFailures: 1, openMs: 100, probeTimeoutMs: 1000 },
      `
      fail 0
      allow 100
      release
      allow 200
      allow 1099
      tick 1100
      ok 1150
      fail 1160
      allow 1200
      `,
    );
    expect(got).toBe(
      expected(`
      fail 0 -> !open | open e1 dl=100
      allow 100 -> true !halfOpen | halfOpen e2 dl=1100
      release -> | halfOpen e2 dl=inf
      allow 200 -> true | halfOpen e2 dl=1100
      allow 1099 -> false | halfOpen e2 dl=1100
      tick 1100 -> !open | open e3 dl=1200
      ok 1150 -> | open e3 dl=1200
      fail 1160 -> | open e3 dl=1200
      allow 1200 -> true !halfOpen | halfOpen e4 dl=2200
    `),
    );
  });

  it('a late probe is caught by allow() as well as by tick()', () => {
    const got = trace(cb, { consecutiveFailures: 1, openMs: 10, probeTimeoutMs: 100 }, `
      fail 0
      allow 10
      allow 110
      `);
    expect(got).toBe(
      expected(`
      fail 0 -> !open | open e1 dl=10
      allow 10 -> true !halfOpen | halfOpen e2 dl=110
      allow 110 -> false !open | open e3 dl=120
    `),
    );
  });

  it('isolate holds it open whatever happens; reset closes with fresh counters', () => {
    const got = trace(
      cb,
      { consecutiveFailures: 2, openMs: 100 },
      `
      fail 0
      isolate 5
      allow 10
      fail 20
      ok 21
      tick 100000
      allow 100000
      isolate 100001
      reset 100002
      fail 100003
      allow 100004
      fail 100005
      reset 100006
      reset 100007
      `,
    );
    expect(got).toBe(
      expected(`
      fail 0 -> | closed e0 dl=inf
      isolate 5 -> !isolated | isolated e1 dl=inf
      allow 10 -> false | isolated e1 dl=inf
      fail 20 -> | isolated e1 dl=inf
      ok 21 -> | isolated e1 dl=inf
      tick 100000 -> | isolated e1 dl=inf
      allow 100000 -> false | isolated e1 dl=inf
      isolate 100001 -> | isolated e1 dl=inf
      reset 100002 -> !closed | closed e2 dl=inf
      fail 100003 -> | closed e2 dl=inf
      allow 100004 -> true | closed e2 dl=inf
      fail 100005 -> !open | open e3 dl=100105
      reset 100006 -> !closed | closed e4 dl=inf
      reset 100007 -> | closed e4 dl=inf
    `),
    );
  });

  it('survives a reboot: open stays open for the rest of its period, a reset clock never shortens it', () => {
    const got = trace(
      cb,
      { consecutiveFailures: 1, openMs: 5000 },
      `
      fail 1000
      save
      restore 2000
      allow 5999
      allow 6000
      save
      restore 7000
      allow 7000
      `,
    );
    // Half-open is saved as open with its period over (o = 6000 - 5000): restored, it probes at once.
    expect(got).toBe(
      expected(`
      fail 1000 -> !open | open e1 dl=6000
      save -> {"s":1,"o":1000,"d":5000,"b":[1,5000,5000],"c":0} | open e1 dl=6000
      restore 2000 -> | open e0 dl=6000
      allow 5999 -> false | open e0 dl=6000
      allow 6000 -> true !halfOpen | halfOpen e1 dl=66000
      save -> {"s":1,"o":1000,"d":5000,"b":[1,5000,5000],"c":0} | halfOpen e1 dl=66000
      restore 7000 -> | open e0 dl=6000
      allow 7000 -> true !halfOpen | halfOpen e1 dl=67000
    `),
    );
    const reboot = trace(cb, { consecutiveFailures: 1, openMs: 5000 }, `
      fail 1000
      save
      restore 10
    `);
    expect(reboot.split('\n')[2]).toBe('restore 10 -> | open e0 dl=5010');
  });

  it('restores the open backoff position and the count window', () => {
    const opts = { consecutiveFailures: 1, openBackoff: B.exponentialBackoff({ baseMs: 100, capMs: 10000 }) };
    const got = trace(cb, opts, `
      fail 0
      allow 100
      fail 100
      save
      restore 150
      allow 300
      fail 300
    `);
    expect(got.split('\n').slice(4)).toEqual([
      'restore 150 -> | open e0 dl=300',
      'allow 300 -> true !halfOpen | halfOpen e1 dl=60300',
      'fail 300 -> !open | open e2 dl=700',
    ]);
    const rate = { failureRate: 0.5, windowSize: 40, callsMin: 4 };
    const w = trace(cb, rate, `
      fail 0
      ok 1
      ok 2
      save
      restore 3
      fail 4
    `);
    expect(w.split('\n').slice(3)).toEqual([
      'save -> {"s":0,"o":0,"d":0,"b":0,"c":0,"w":[1,0],"n":3,"f":1,"i":3} | closed e0 dl=inf',
      'restore 3 -> | closed e0 dl=inf',
      'fail 4 -> !open | open e1 dl=10004',
    ]);
  });

  it('restoreBreaker never throws on damaged or foreign JSON', () => {
    const o = { failureRate: 0.5, windowSize: 8, callsMin: 2 };
    const bad = [
      null,
      7,
      'x',
      [],
      { s: 9 },
      { s: 1, o: 'a', d: 5 },
      { s: 1, o: 5, d: -1 },
      { s: 0, c: -3 },
      { s: 0, c: 0, w: [255, 1], n: 8, f: 8, i: 0 },
      { s: 0, c: 0, w: [255], n: 9, f: 1, i: 0 },
      { s: 0, c: 0, w: [255], n: 3, f: 99, i: 7 },
      { s: 1, o: 0, d: 100, b: [3, 'x'] },
    ];
    for (const j of bad) {
      const br = cb.restoreBreaker(o, j, 0);
      expect([cb.CLOSED, cb.OPEN]).toContain(br.state);
      if (br.state === cb.CLOSED) {
        // A fresh or consistent window: two more failures (2 >= 0.5 * n) must be able to open it.
        br.failure(1);
        br.failure(2);
        expect(br.state).toBe(cb.OPEN);
      }
    }
    // The failure count is rebuilt from the bits: 3 calls, bits say 2 failed, whatever f says.
    const br = cb.restoreBreaker({ failureRate: 0.5, windowSize: 8, callsMin: 4 }, { s: 0, c: 0, w: [5], n: 3, f: 0, i: 3 }, 0);
    br.success(1);
    expect(br.state).toBe(cb.CLOSED);
    br.failure(2);
    expect(br.state).toBe(cb.OPEN);
  });

  it('rejects impossible settings (programmer errors)', () => {
    expect(() => new cb.CircuitBreaker({ failureRate: 1.5 })).toThrow();
    expect(() => new cb.CircuitBreaker({ failureRate: 0.5, windowSize: 5000 })).toThrow();
    expect(() => new cb.CircuitBreaker({ failureRate: 0.5, windowSize: 4, callsMin: 5 })).toThrow();
    expect(() => new cb.CircuitBreaker({ probesMax: 2, probesToClose: 3 })).toThrow();
  });
});

type Op =
  | { k: 'allow' | 'ok' | 'fail' | 'tick' | 'isolate' | 'reset'; dt: number }
  | { k: 'release' }
  | { k: 'reboot'; dt: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('allow' as const), dt: fc.integer({ min: 0, max: 400 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('ok' as const), dt: fc.integer({ min: 0, max: 100 }) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('fail' as const), dt: fc.integer({ min: 0, max: 100 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'release' as const }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 2000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reboot' as const), dt: fc.integer({ min: 0, max: 300 }) }) },
);
const rareOpArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 30, arbitrary: opArb },
  { weight: 1, arbitrary: fc.record({ k: fc.constantFrom('isolate' as const, 'reset' as const), dt: fc.integer({ min: 0, max: 50 }) }) },
);

const optsArb = fc.record({
  rate: fc.boolean(),
  consecutive: fc.integer({ min: 1, max: 5 }),
  windowSize: fc.integer({ min: 1, max: 70 }),
  callsMinPart: fc.double({ min: 0, max: 1, noNaN: true }),
  failureRate: fc.double({ min: 0.05, max: 1, noNaN: true }),
  probesMax: fc.integer({ min: 1, max: 4 }),
  closePart: fc.double({ min: 0, max: 1, noNaN: true }),
  openMs: fc.integer({ min: 1, max: 1000 }),
  backoff: fc.boolean(),
  probeTimeoutMs: fc.constantFrom(0, 500, 60000),
  seed: fc.integer(),
});

function makeOpts(impl: Impl, a: typeof optsArb extends fc.Arbitrary<infer T> ? T : never, onEvent: (name: string, br: any) => void) {
  const probesToClose = 1 + Math.floor(a.closePart * (a.probesMax - 1) + 0.5);
  const o: any = { probesMax: a.probesMax, probesToClose, probeTimeoutMs: a.probeTimeoutMs, onEvent };
  if (a.rate) {
    o.failureRate = a.failureRate;
    o.windowSize = a.windowSize;
    o.callsMin = Math.max(1, Math.round(a.callsMinPart * a.windowSize));
  } else {
    o.consecutiveFailures = a.consecutive;
  }
  if (a.backoff) o.openBackoff = impl.backoff.exponentialBackoff({ baseMs: a.openMs, capMs: a.openMs * 8, jitter: 'decorrelated', rng: new impl.rng.SeededRng(a.seed) });
  else o.openMs = a.openMs;
  return o;
}

describe.each(impls)('circuit breaker properties (%s)', (name, impl) => {
  const runs = name === 'source' ? 400 : 80;
  const { cb } = impl;

  /**
   * Drives a breaker with random operations (time never goes back; a reboot saves, restores
   * and continues) while an observer built only from events and return values checks:
   * - no call is admitted while open before the open period announced at 'open' ends;
   * - 'halfOpen' never comes before that end;
   * - nothing is admitted while isolated;
   * - in one half-open period, probes admitted minus probes given back <= probesMax;
   * - 'closed' from half-open only after probesToClose successes reported in that period.
   */
  it('admission invariants hold under any sequence of operations, reboots included', () => {
    const seen: Record<string, number> = {};
    fc.assert(
      fc.property(optsArb, fc.array(rareOpArb, { minLength: 20, maxLength: 200 }), (a, ops) => {
        let now = 0;
        let view = 'closed';
        let openUntil = 0;
        let admitted = 0;
        let given = 0;
        let outstanding = 0;
        let succeeded = 0;
        let resetting = false;
        const onEvent = (ev: string, br: any) => {
          seen[ev] = (seen[ev] || 0) + 1;
          if (ev === 'open') {
            expect(br.openedAtMs).toBe(now);
            openUntil = br.openedAtMs + br.openMs;
          } else if (ev === 'halfOpen') {
            expect(view).toBe('open');
            expect(now).toBeGreaterThanOrEqual(openUntil);
            admitted = given = outstanding = succeeded = 0;
          } else if (ev === 'closed' && !resetting) {
            expect(view).toBe('halfOpen');
            expect(succeeded).toBeGreaterThanOrEqual(o.probesToClose);
          }
          view = ev;
        };
        const o = makeOpts(impl, a, onEvent);
        let br = new cb.CircuitBreaker(o);
        for (const op of ops) {
          if ('dt' in op) now += op.dt;
          switch (op.k) {
            case 'allow': {
              const before = view;
              const ok = br.allow(now);
              if (before === 'open' && now < openUntil) expect(ok).toBe(false);
              if (view === 'isolated') expect(ok).toBe(false);
              if (ok && view === 'halfOpen') {
                admitted++;
                outstanding++;
                expect(admitted - given).toBeLessThanOrEqual(o.probesMax);
              }
              if (ok) expect(['closed', 'halfOpen']).toContain(view);
              break;
            }
            case 'ok':
              if (view === 'halfOpen' && outstanding > 0) {
                outstanding--;
                succeeded++;
              }
              br.success(now);
              break;
            case 'fail':
              if (view === 'halfOpen' && outstanding > 0) outstanding--;
              br.failure(now);
              break;
            case 'release':
              if (view === 'halfOpen' && outstanding > 0) {
                outstanding--;
                given++;
              }
              br.release();
              break;
            case 'tick':
              br.tick(now);
              break;
            case 'isolate':
              br.isolate(now);
              break;
            case 'reset':
              resetting = true;
              br.reset(now);
              resetting = false;
              break;
            case 'reboot': {
              const saved = JSON.parse(JSON.stringify(br.toJSON()));
              br = cb.restoreBreaker(o, saved, now);
              // A restored breaker is what the saved JSON says: half-open comes back as open
              // with its period over (a fresh probe), so the observer follows the same way.
              view = cb.BREAKER_STATE_NAMES[br.state];
              if (view === 'open') openUntil = br.openedAtMs + br.openMs;
              break;
            }
          }
          // The deadline the shell would sleep until is never in the past for an open breaker.
          if (view === 'open') expect(br.nextDeadlineMs()).toBe(openUntil);
        }
      }),
      { numRuns: runs },
    );
    // The generator must reach every transition often, or the invariants above prove little.
    for (const ev of ['open', 'halfOpen', 'closed', 'isolated']) expect(seen[ev] || 0, JSON.stringify(seen)).toBeGreaterThan(runs / 20);
  });

  it('without give-backs, one half-open period admits at most probesMax calls', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 60 }), (probesMax, gaps) => {
        const br = new cb.CircuitBreaker({ consecutiveFailures: 1, openMs: 10, probesMax, probeTimeoutMs: 0 });
        br.failure(0);
        let now = 10;
        let admitted = 0;
        for (const g of gaps) {
          now += g;
          if (br.allow(now)) admitted++;
        }
        expect(br.state).toBe(cb.HALF_OPEN);
        expect(admitted).toBe(Math.min(probesMax, gaps.length));
      }),
      { numRuns: runs },
    );
  });

  it('toJSON / restoreBreaker: a restored closed, open or isolated breaker behaves like the original', () => {
    fc.assert(
      fc.property(optsArb, fc.array(rareOpArb, { maxLength: 60 }), fc.array(opArb, { maxLength: 60 }), (a, before, after) => {
        const o = makeOpts(impl, { ...a, backoff: false }, () => {});
        const br = new cb.CircuitBreaker(o);
        let now = 0;
        const apply = (b: any, op: Op, t: number) => {
          if (op.k === 'allow') return b.allow(t);
          if (op.k === 'ok') b.success(t);
          else if (op.k === 'fail') b.failure(t);
          else if (op.k === 'release') b.release();
          else if (op.k === 'tick') b.tick(t);
          else if (op.k === 'isolate') b.isolate(t);
          else if (op.k === 'reset') b.reset(t);
          return b.state;
        };
        for (const op of before) {
          if ('dt' in op) now += op.dt;
          if (op.k !== 'reboot') apply(br, op, now);
        }
        if (br.state === cb.HALF_OPEN) return;
        const copy = cb.restoreBreaker(o, JSON.parse(JSON.stringify(br.toJSON())), now);
        expect(copy.state).toBe(br.state);
        expect(copy.nextDeadlineMs()).toBe(br.nextDeadlineMs());
        for (const op of after) {
          if ('dt' in op) now += op.dt;
          if (op.k === 'reboot') continue;
          expect(apply(copy, op, now)).toBe(apply(br, op, now));
          expect(copy.state).toBe(br.state);
        }
      }),
      { numRuns: runs },
    );
  });
});
