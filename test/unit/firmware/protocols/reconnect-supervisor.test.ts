// Reconnect supervisor: the timing of attempts (random phase, decorrelated backoff bounds, breaker
// open and half-open), attempt timeout, flapping, stale reports, persistence, and a 1000-board
// fleet whose reconnects spread out instead of moving in lock-step; source and bundle.
import { describe, expect, it } from 'vitest';
import { supervisorTargets } from './protocols-fixtures.js';

describe.each(supervisorTargets)('reconnect supervisor (%s)', (_name, { sup: M, rng: R }) => {
  const make = (seed: number, o: any = {}, saved?: any, now?: number) => new M.ReconnectSupervisor({ rng: new R.SeededRng(seed), ...o }, saved, now);

  /** Drives one board whose every attempt fails with `reason` until `until`; returns attempt times. */
  function failing(s: any, from: number, until: number, reason = 'refused: connection refused'): number[] {
    const times: number[] = [];
    let now = from;
    for (let guard = 0; guard < 100000; guard++) {
      const dl = s.deadline();
      if (dl < 0 || dl > until) break;
      now = Math.max(now, dl);
      const act = s.tick(now);
      if (act === M.ACT_CONNECT) {
        times.push(now);
        expect(s.failed(now, reason)).toBe(true);
      }
    }
    return times;
  }

  it('the first attempt waits a random phase in [0, phaseMs]; the delays after failures stay within decorrelated bounds', () => {
    for (let seed = 1; seed <= 50; seed++) {
      const s = make(seed, { phaseMs: 5000, failuresToOpen: 1000, attemptTimeoutMs: 0 });
      s.start(100);
      const first = s.deadline();
      expect(first).toBeGreaterThanOrEqual(100);
      expect(first).toBeLessThanOrEqual(5100);
      const t = failing(s, 100, 2_000_000);
      expect(t[0]).toBe(first);
      let prev = 1000;
      for (let i = 1; i < t.length; i++) {
        const d = t[i] - t[i - 1];
        // decorrelated: random_between(base, 3 * previous), capped; the first from base.
        expect(d).toBeGreaterThanOrEqual(1000);
        expect(d).toBeLessThanOrEqual(Math.min(60000, 3 * prev));
        prev = d;
      }
      expect(Math.max(...t.slice(1).map((x, i) => x - t[i]))).toBeLessThanOrEqual(60000);
    }
  });

  it('the breaker opens after failuresToOpen failures in a row, for a growing period; a probe that succeeds closes it', () => {
    const events: string[] = [];
    const s = make(7, { phaseMs: 0, failuresToOpen: 3, openBaseMs: 30000, openCapMs: 600000, attemptTimeoutMs: 0, onEvent: (n: string) => events.push(n) });
    s.start(0);
    let now = 0;
    const attempt = () => {
      now = s.deadline();
      // Nothing happens before the deadline.
      expect(s.tick(now - 1)).toBe(M.ACT_NONE);
      expect(s.tick(now)).toBe(M.ACT_CONNECT);
    };
    for (let i = 0; i < 3; i++) {
      attempt();
      s.failed(now, 'timeout: x');
    }
    expect(events).toEqual(['open']);
    const open1 = s.breaker.openMs;
    expect(open1).toBeGreaterThanOrEqual(30000);
    // The next attempt waits for the open period: it is the half-open probe.
    expect(s.deadline()).toBeGreaterThanOrEqual(s.breaker.openedAtMs + open1);
    attempt();
    expect(events).toEqual(['open', 'halfOpen']);
    s.failed(now, 'silent: x');
    expect(events).toEqual(['open', 'halfOpen', 'open']);
    const open2 = s.breaker.openMs;
    expect(s.deadline()).toBeGreaterThanOrEqual(now + open2);
    attempt();
    s.succeeded(now);
    expect(events).toEqual(['open', 'halfOpen', 'open', 'halfOpen', 'closed']);
    expect([M.SUP_STATE_NAMES[s.state], s.attempts, s.ups, s.failures]).toEqual(['up', 5, 1, 4]);
    expect(s.kinds).toEqual({ timeout: 3, silent: 1 });
    // Re-opening grew the period (decorrelated from the previous one, at least the base).
    expect(open2).toBeGreaterThanOrEqual(30000);
    expect(open2).toBeLessThanOrEqual(Math.max(30000, 3 * open1));
  });

  it('an attempt with no outcome is abandoned after attemptTimeoutMs (ACT_ABORT, counted once); a late report is stale', () => {
    const s = make(3, { phaseMs: 0, attemptTimeoutMs: 20000 });
    s.start(0);
    expect(s.tick(0)).toBe(M.ACT_CONNECT);
    expect(s.deadline()).toBe(20000);
    expect(s.tick(19999)).toBe(M.ACT_NONE);
    expect(s.tick(20000)).toBe(M.ACT_ABORT);
    expect([s.failures, s.lastReason, M.SUP_STATE_NAMES[s.state]]).toEqual([1, 'timeout: no connection within 20000 ms', 'waiting']);
    // The socket's own close after the abort must not count again.
    expect(s.failed(20001, 'closed: connection lost')).toBe(false);
    expect(s.failures).toBe(1);
    // Wi-Fi loss while waiting: the same supervised path, nothing new to schedule.
    const dl = s.deadline();
    expect(s.failed(20002, 'wifi: lost')).toBe(false);
    expect(s.deadline()).toBe(dl);
  });

  it('flapping: a connection that drops before stableMs continues the backoff; after stableMs a drop starts a new phased run', () => {
    const s = make(11, { phaseMs: 0, stableMs: 60000, failuresToOpen: 100, attemptTimeoutMs: 0 });
    s.start(0);
    s.tick(0);
    s.failed(0, 'refused: x');
    let now = s.deadline();
    s.tick(now);
    s.failed(now, 'refused: x');
    now = s.deadline();
    s.tick(now);
    s.succeeded(now);
    // Kicked after 5 s: the backoff goes on from its third delay, not from the base.
    const attemptBefore = (s.toJSON().k as number[])[0];
    expect(attemptBefore).toBe(2);
    s.failed(now + 5000, 'closed: kicked');
    expect((s.toJSON().k as number[])[0]).toBe(3);
    now = s.deadline();
    s.tick(now);
    s.succeeded(now);
    expect(s.deadline()).toBe(now + 60000);
    s.tick(now + 60000);
    expect(s.deadline()).toBe(-1);
    expect(s.toJSON().k).toBe(0);
    // Stable: the next drop is a fresh run (backoff from the start, phase 0 here: at once).
    s.failed(now + 70000, 'silent: x');
    expect(s.toJSON().k).toEqual([0, 0, 0]);
    expect(s.deadline()).toBe(now + 70000);
  });

  it('persists across a reboot: an open breaker stays open, a failing run continues its backoff, counters survive', () => {
    const s = make(5, { phaseMs: 1000, failuresToOpen: 4, attemptTimeoutMs: 0 });
    s.start(0);
    failing(s, 0, 20000);
    while (s.breaker.state !== 1) {
      const t = s.deadline();
      s.tick(t);
      s.failed(t, 'refused: x');
    }
    const saved = JSON.parse(JSON.stringify(s.toJSON()));
    expect(saved.n).toEqual([s.attempts, s.ups, s.failures]);
    expect(saved.k[0]).toBeGreaterThan(0);
    // After a reboot the clock starts near 0: the open period starts over from now, never shorter.
    const r = make(6, { phaseMs: 1000, failuresToOpen: 4, attemptTimeoutMs: 0 }, saved, 500);
    expect([r.attempts, r.failures, r.kinds]).toEqual([s.attempts, s.failures, s.kinds]);
    expect(r.breaker.state).toBe(1);
    r.start(500);
    const first = r.deadline();
    expect(r.tick(first)).toBe(M.ACT_NONE); // the phase ends while the breaker is still open
    expect(r.deadline()).toBe(500 + saved.b.d);
    expect(r.tick(r.deadline())).toBe(M.ACT_CONNECT);
    // The backoff went on from where it was.
    expect(r.toJSON().k).toEqual(saved.k);
    expect(JSON.parse(JSON.stringify(r.toJSON())).n).toEqual([s.attempts + 1, s.ups, s.failures]);
  });

  it('damaged saved state gives a fresh supervisor, never an exception', () => {
    for (const bad of [null, 7, 'x', [], { b: 'x', k: [1, 2], n: [-1, 'a', 3], f: { a: -1 } }, { b: { s: 1, o: 'x' }, k: 'q', n: [1, 2, 3, 4] }]) {
      const s = make(1, {}, bad, 0);
      expect([s.attempts, s.failures, s.breaker.state, s.kinds]).toEqual([0, 0, 0, {}]);
      s.start(0);
      expect(s.deadline()).toBeGreaterThanOrEqual(0);
    }
  });

  it('failure kinds are counted by the word before the colon, at most KINDS_MAX distinct', () => {
    const s = make(1, { phaseMs: 0, failuresToOpen: 1000, attemptTimeoutMs: 0 });
    s.start(0);
    for (let i = 0; i < 12; i++) {
      const t = s.deadline();
      s.tick(t);
      s.failed(t, (i < 10 ? 'kind' + i : 'kind0') + ': detail');
    }
    expect(Object.keys(s.kinds).length).toBe(M.KINDS_MAX);
    expect(s.kinds.kind0).toBe(3);
    expect(s.kinds.other).toBe(3);
    expect(s.summary()).toEqual({ s: 'waiting', b: 'closed', f: 12, last: 'kind0: detail' });
  });

  it('a fleet of 1000 that loses its broker at once reconnects spread out, never in lock-step', () => {
    const N = 1000;
    const phaseMs = 10000;
    const all: number[][] = [];
    for (let seed = 1; seed <= N; seed++) {
      const s = make(seed * 7919, { phaseMs });
      s.start(0);
      all.push(failing(s, 0, 600000));
    }
    // First attempts: spread over the phase, few at the same millisecond, every tenth of it used.
    const firsts = all.map((t) => t[0]);
    expect(new Set(firsts).size).toBeGreaterThan(900);
    const deciles = new Array(10).fill(0);
    for (const f of firsts) deciles[Math.min(9, Math.floor(f / (phaseMs / 10)))]++;
    for (const d of deciles) {
      expect(d).toBeGreaterThan(N / 10 / 2);
      expect(d).toBeLessThan((N / 10) * 2);
    }
    // Over the whole outage no 100 ms window carries more than 8% of the fleet's boards (in
    // lock-step all of them would land in one), and later attempts are more spread out than the
    // first ones (the jitter keeps them apart).
    const perWindow = new Map<number, number>();
    let total = 0;
    for (const t of all)
      for (const x of t) {
        perWindow.set(Math.floor(x / 100), (perWindow.get(Math.floor(x / 100)) ?? 0) + 1);
        total++;
      }
    expect(Math.max(...perWindow.values())).toBeLessThanOrEqual(0.08 * N);
    const kth = (k: number) => all.filter((t) => t.length > k).map((t) => t[k]);
    const spread = (xs: number[]) => Math.max(...xs) - Math.min(...xs);
    for (const k of [1, 3, 6]) expect(spread(kth(k))).toBeGreaterThan(spread(firsts));
    // The breaker holds each board to a few attempts in 10 minutes (one per second would be 600).
    expect(total / N).toBeLessThan(20);
  });
});
