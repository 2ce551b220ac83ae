// Vars at rest: what the resilience cores' state costs on the interpreter, counted on objects
// built by the minified bundle (minified member names, as shipped) with the emulator's JsVar
// accounting (ESPRUINO.md rules). Budgets hold the figures reported for issue #3 with a little
// room; a change that grows the device's state past them should be a conscious one.
import { describe, expect, it } from 'vitest';
import { sizeOf } from '../../../../boards/emulator/memory.js';

let fwError: unknown = null;
const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  (e) => ((fwError = e), null),
);

it('the minified bundle loads (dist/firmware/lib.js, built by npm run build)', () => {
  if (fwError) throw fwError;
});

/** Vars reachable from x, the interpreter's Object.prototype excluded. */
const vars = (x: object) => sizeOf(x, new WeakSet([Object.getPrototypeOf(Object.getPrototypeOf(x))]));

describe.skipIf(!fw)('vars at rest (bundle)', () => {
  const { backoff: B, retry: R, circuitBreaker: C, requestResponse: RR, policy: P, rng: G } = fw ?? ({} as any);

  it('reconnect supervisor state: breaker with a decorrelated open backoff, and a retry run with phase', () => {
    const rng = new G.SeededRng(1);
    const br = new C.CircuitBreaker({
      consecutiveFailures: 5,
      openBackoff: B.exponentialBackoff({ baseMs: 1000, capMs: 300000, jitter: 'decorrelated', rng }),
    });
    const closed = vars(br);
    for (let i = 0; i < 5; i++) br.failure(i);
    expect(br.state).toBe(C.OPEN);
    const open = vars(br);
    const rp = new R.RetryPolicy({
      attemptsMax: Infinity,
      backoff: B.exponentialBackoff({ baseMs: 500, capMs: 60000, jitter: 'decorrelated', rng }),
      phaseMs: 5000,
      rng,
    });
    const run = new R.Retry(rp);
    run.start(0);
    expect(closed).toBeLessThanOrEqual(50);
    expect(open).toBeLessThanOrEqual(56);
    expect(vars(run)).toBeLessThanOrEqual(50);
    // The persisted form is small too: it goes to Storage as JSON.
    expect(JSON.stringify(br.toJSON()).length).toBeLessThanOrEqual(60);
  });

  it('a rate breaker keeps its 20-call window in one word', () => {
    const rb = new C.CircuitBreaker({ failureRate: 0.5, windowSize: 20, callsMin: 10, openMs: 30000 });
    for (let i = 0; i < 15; i++) rb.success(i);
    expect(vars(rb)).toBeLessThanOrEqual(50);
  });

  it('RPC answering side: an answer cache of 8, empty and full of 47-byte answers', () => {
    const ac = new RR.AnswerCache({ answersMax: 8 });
    const empty = vars(ac);
    for (let i = 0; i < 8; i++) {
      const id = 'c0ffee' + i.toString(16).padStart(10, '0');
      expect(ac.begin(id, 1e12, 0)).toBe(RR.ANSWER_EXECUTE);
      ac.finish(id, JSON.stringify({ id, r: { ok: 1, t: 21.5 } }));
    }
    const full = vars(ac);
    expect(empty).toBeLessThanOrEqual(70);
    // Each cached answer adds its id and its text: ~10 vars for 16 + 47 chars.
    expect(full - empty).toBeLessThanOrEqual(8 * 11);
  });

  it('requester with 4 slots, and a reusable call through [retry, breaker]', () => {
    expect(vars(new RR.Requester({ inflightMax: 4 }))).toBeLessThanOrEqual(100);
    const rp = new R.RetryPolicy({ attemptsMax: 3 });
    const br = new C.CircuitBreaker({ consecutiveFailures: 5 });
    const call = new P.Policy([rp, br]).call();
    const shared = vars(rp) + vars(br);
    // The call's own share (its arrays and its Retry run), the shared layers set aside.
    expect(vars(call) - shared).toBeLessThanOrEqual(70);
  });
});
