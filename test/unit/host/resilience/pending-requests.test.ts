// Requests in flight as promises over the Requester core, on a manual scheduler; and the whole
// RPC pattern end to end in memory: the host retries with the same idempotency key through
// deadline + retry + breaker, the device answers through its AnswerCache and executes once.
import { describe, expect, it } from 'vitest';
import { constantBackoff } from '../../../../firmware/core/backoff.js';
import { CircuitBreaker } from '../../../../firmware/core/circuit-breaker.js';
import { Deadline } from '../../../../firmware/core/policy.js';
import { ANSWER_EXECUTE, ANSWER_REPLAY, AnswerCache } from '../../../../firmware/core/request-response.js';
import { RetryPolicy } from '../../../../firmware/core/retry.js';
import { ResilienceExecutor } from '../../../../host/resilience/executor.js';
import { PendingError, PendingRequests } from '../../../../host/resilience/pending-requests.js';
import { ManualTimers, watch } from './manual-timers.js';

function setup(inflightMax = 4) {
  const mt = new ManualTimers();
  const pr = new PendingRequests({ inflightMax, idPrefix: 'h', now: mt.clock, timers: mt });
  const sent: Array<[string, number]> = [];
  const send = (id: string, dl: number) => void sent.push([id, dl]);
  return { mt, pr, sent, send };
}

describe('PendingRequests', () => {
  it('sends with the id and deadline, resolves with the reply, drops a duplicate', async () => {
    const { mt, pr, sent, send } = setup();
    const w = watch(pr.request(send, { deadlineMs: 1000 }));
    expect(sent).toEqual([['h1', 1000]]);
    expect(pr.ack('h1')).toBe(true);
    expect(pr.receive('h1', true, { t: 21.5 })).toBe(true);
    await mt.settle();
    expect(w.value).toEqual({ id: 'h1', ok: true, value: { t: 21.5 }, sends: 1 });
    expect(pr.receive('h1', true, { t: 21.5 })).toBe(false);
    expect(pr.stats).toEqual({ inflight: 0, completed: 1, errors: 0, late: 0, duplicate: 1, unknown: 0 });
    expect(mt.pending).toBe(0);
  });

  it('an error reply resolves with ok false; a request past its deadline rejects and its reply is late', async () => {
    const { mt, pr, send } = setup();
    const e = watch(pr.request(send, { deadlineMs: 100 }));
    pr.receive('h1', false, { code: 'nope', msg: 'unknown method' });
    const t = watch(pr.request(send, { deadlineMs: 300 }));
    await mt.advance(299);
    expect(t.done).toBe(false);
    await mt.advance(1);
    expect(e.value).toMatchObject({ ok: false, value: { code: 'nope' } });
    expect(t.error).toBeInstanceOf(PendingError);
    expect(t.error.code).toBe('deadline');
    expect(pr.receive('h2', true, 1)).toBe(false);
    expect(pr.stats.late).toBe(1);
    expect(mt.pending).toBe(0);
  });

  it('refuses beyond inflightMax and a key already in flight', async () => {
    const { pr, send } = setup(2);
    pr.request(send, { deadlineMs: 1000, key: 'k' });
    pr.request(send, { deadlineMs: 1000 });
    await expect(pr.request(send, { deadlineMs: 1000 })).rejects.toMatchObject({ code: 'full' });
    pr.receive('h1', true, 0);
    await expect(pr.request(send, { deadlineMs: 1000, key: 'k' })).rejects.toMatchObject({ code: 'key_busy' });
  });

  it('resend sends the same id again; send failures, aborts and close reject', async () => {
    const { mt, pr, sent, send } = setup();
    const w = watch(pr.request(send, { deadlineMs: 1000 }));
    expect(pr.resend('h1')).toBe(true);
    expect(sent.map((s) => s[0])).toEqual(['h1', 'h1']);
    pr.receive('h1', true, 'v');
    await mt.settle();
    expect(w.value!.sends).toBe(2);
    expect(pr.resend('h1')).toBe(false);

    await expect(pr.request(() => { throw new Error('socket'); }, { deadlineMs: 1000 })).rejects.toMatchObject({ code: 'send' });
    await expect(pr.request(() => Promise.reject(new Error('later')), { deadlineMs: 1000 })).rejects.toMatchObject({ code: 'send' });
    const ac = new AbortController();
    const a = watch(pr.request(send, { deadlineMs: 1000, signal: ac.signal }));
    ac.abort();
    await mt.settle();
    expect(a.error.code).toBe('cancelled');
    const c = watch(pr.request(send, { deadlineMs: 1000 }));
    pr.close();
    await mt.settle();
    expect(c.error.code).toBe('closed');
    expect(pr.stats.inflight).toBe(0);
  });
});

describe('RPC pattern end to end (in memory)', () => {
  it('a retried request reuses its key and the device executes it once', async () => {
    const mt = new ManualTimers();
    const pr = new PendingRequests({ inflightMax: 4, idPrefix: 'c', now: mt.clock, timers: mt });
    const breaker = new CircuitBreaker({ consecutiveFailures: 3, openMs: 5000 });
    const ex = new ResilienceExecutor([new RetryPolicy({ attemptsMax: 3, backoff: constantBackoff({ baseMs: 50 }) }), new Deadline(200), breaker], {
      now: mt.clock,
      timers: mt,
    });
    // The device: answers through its cache; its handler takes 300 ms the first time.
    const cache = new AnswerCache({ answersMax: 4 });
    const executed: string[] = [];
    const decisions: string[] = [];
    const device = (id: string, dl: number) => {
      const d = cache.begin(id, dl, mt.now);
      decisions.push(`${mt.now}:${d}`);
      if (d === ANSWER_EXECUTE) {
        executed.push(id);
        mt.set(() => {
          const answer = JSON.stringify({ id, r: 'done' });
          cache.finish(id, answer);
          pr.receive(id, true, JSON.parse(answer).r);
        }, 300);
      } else if (d === ANSWER_REPLAY) {
        pr.receive(id, true, JSON.parse(cache.answer).r);
      }
    };
    const key = 'rpc-1';
    const w = watch(
      ex.execute((signal) => {
        // Each attempt carries the same key and the call's deadline; an abandoned attempt fails its slot.
        const p = pr.request(device, { deadlineMs: 2000, key, signal });
        return p.then((r) => r.value);
      }),
    );
    await mt.advance(200); // attempt 1 abandoned at its 200 ms deadline
    await mt.advance(50); // backoff, attempt 2 sent: the device is still executing it
    await mt.advance(100); // at 300 the first execution answers: attempt 2 gets it
    expect(w).toEqual({ done: true, value: 'done' });
    expect(executed).toEqual(['rpc-1']);
    expect(decisions).toEqual([`0:${ANSWER_EXECUTE}`, `250:2`]);
    // A later retry of the same key is replayed from the cache, not executed.
    const again = await ex.execute((signal) => pr.request(device, { deadlineMs: 2000, key, signal }).then((r) => r.value));
    expect(again).toBe('done');
    expect(executed).toEqual(['rpc-1']);
    expect(decisions[2]).toBe(`350:${ANSWER_REPLAY}`);
    // The timed-out attempt counted once against the breaker, the successes reset it.
    expect(breaker.state).toBe(0);
  });
});
