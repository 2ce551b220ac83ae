// Request-response: the requester's state machine as trace scripts (every transition, event
// and deadline), the answering side's idempotency cache, and properties (fast-check): a request
// completes at most once, a retried request is replayed, not executed twice; source and bundle.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as rrSrc from '../../../../firmware/core/request-response.js';

let fwError: unknown = null;
const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  (e) => ((fwError = e), null),
);
const impls: Array<[string, typeof rrSrc]> = [['source', rrSrc]];
if (fw) impls.push(['bundle', fw.requestResponse]);

it('the minified bundle loads (dist/firmware/lib.js, built by npm run build)', () => {
  if (fwError) throw fwError;
  expect(fw!.requestResponse.Requester).toBeTypeOf('function');
});

/**
 * Commands: `open T DL [KEY]`, `sent SLOT T`, `ack ID T`, `recv ID ok|err VALUE T`,
 * `complete SLOT`, `fail SLOT REASON T`, `tick T`. Each prints:
 *   <command> -> <result> [!event@slot:id] | n=<in flight> dl=<next deadline> late/dup/unknown
 */
function trace(RR: typeof rrSrc, opts: any, script: string): string {
  const events: string[] = [];
  const rq = new RR.Requester({ ...opts, onEvent: (name: string, slot: number, id: string) => events.push(`!${name}@${slot}:${id}`) });
  const out: string[] = [];
  for (const raw of script.trim().split('\n')) {
    const line = raw.trim();
    const [cmd, a, b, c, d] = line.split(/\s+/);
    events.length = 0;
    let res: unknown;
    if (cmd === 'open') res = rq.open(Number(a), b === 'inf' ? Infinity : Number(b), c);
    else if (cmd === 'sent') res = rq.sent(Number(a), Number(b));
    else if (cmd === 'ack') res = rq.ack(a, Number(b));
    else if (cmd === 'recv') res = rq.receive(a, b === 'ok', c, Number(d));
    else if (cmd === 'complete') {
      const s = Number(a);
      const v = rq.state(s) === RR.RR_RECEIVED ? `${rq.ok(s) ? 'ok' : 'err'}:${rq.value(s)}` : '';
      res = rq.complete(s) + (v ? ' ' + v : '');
    } else if (cmd === 'fail') res = rq.fail(Number(a), b, Number(c));
    else if (cmd === 'tick') res = rq.tick(Number(a));
    else throw new Error('unknown command ' + cmd);
    const dl = rq.nextDeadlineMs();
    out.push(
      `${line} -> ${[String(res), ...events].join(' ')} | n=${rq.size} dl=${dl === Infinity ? 'inf' : dl} ${rq.lateCount}/${rq.duplicateCount}/${rq.unknownCount}`,
    );
  }
  return out.join('\n');
}

const expected = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .join('\n');

describe.each(impls)('requester traces (%s)', (_name, RR) => {
  it('idle -> sent -> processing -> received -> completed; duplicates dropped before and after completion', () => {
    const got = trace(
      RR,
      { inflightMax: 2, idPrefix: 'p' },
      `
      open 0 1000
      sent 0 1
      ack p1 5
      ack p1 6
      recv p1 ok 42 20
      recv p1 ok 42 21
      complete 0
      complete 0
      recv p1 ok 42 30
      `,
    );
    expect(got).toBe(
      expected(`
      open 0 1000 -> 0 !idle@0:p1 | n=1 dl=1000 0/0/0
      sent 0 1 -> true !sent@0:p1 | n=1 dl=1000 0/0/0
      ack p1 5 -> 0 !processing@0:p1 | n=1 dl=1000 0/0/0
      ack p1 6 -> -1 | n=1 dl=1000 0/0/0
      recv p1 ok 42 20 -> 0 !received@0:p1 | n=1 dl=inf 0/0/0
      recv p1 ok 42 21 -> -1 !duplicate@-1:p1 | n=1 dl=inf 0/1/0
      complete 0 -> true ok:42 !completed@0:p1 | n=0 dl=inf 0/1/0
      complete 0 -> false | n=0 dl=inf 0/1/0
      recv p1 ok 42 30 -> -1 !duplicate@-1:p1 | n=0 dl=inf 0/2/0
    `),
    );
  });

  it('deadlines: unanswered requests fail at their deadline, replies at or after it are late', () => {
    const got = trace(
      RR,
      { inflightMax: 4, idPrefix: 'q' },
      `
      open 0 100
      open 0 200
      sent 0 0
      sent 1 0
      tick 99
      tick 100
      recv q1 ok x 101
      recv q2 ok y 200
      recv zz ok 1 201
      open 300 inf
      recv q3 err boom 100000
      complete 0
      `,
    );
    expect(got).toBe(
      expected(`
      open 0 100 -> 0 !idle@0:q1 | n=1 dl=100 0/0/0
      open 0 200 -> 1 !idle@1:q2 | n=2 dl=100 0/0/0
      sent 0 0 -> true !sent@0:q1 | n=2 dl=100 0/0/0
      sent 1 0 -> true !sent@1:q2 | n=2 dl=100 0/0/0
      tick 99 -> 0 | n=2 dl=100 0/0/0
      tick 100 -> 1 !error@0:q1 | n=1 dl=200 0/0/0
      recv q1 ok x 101 -> -1 !late@-1:q1 | n=1 dl=200 1/0/0
      recv q2 ok y 200 -> -1 !error@1:q2 !late@-1:q2 | n=0 dl=inf 2/0/0
      recv zz ok 1 201 -> -1 !unknown@-1:zz | n=0 dl=inf 2/0/1
      open 300 inf -> 0 !idle@0:q3 | n=1 dl=inf 2/0/1
      recv q3 err boom 100000 -> 0 !received@0:q3 | n=1 dl=inf 2/0/1
      complete 0 -> true err:boom !completed@0:q3 | n=0 dl=inf 2/0/1
    `),
    );
  });

  it('bounded in flight; the idempotency key is reused across retries and a late first reply answers the retry', () => {
    const got = trace(
      RR,
      { inflightMax: 2, idPrefix: 'r' },
      `
      open 0 1000 k1
      open 0 1000 k1
      open 0 1000
      open 0 1000
      sent 0 1
      fail 0 timeout 500
      open 500 1000 k1
      sent 0 501
      sent 0 700
      recv k1 ok v 800
      complete 0
      `,
    );
    expect(got).toBe(
      expected(`
      open 0 1000 k1 -> 0 !idle@0:k1 | n=1 dl=1000 0/0/0
      open 0 1000 k1 -> -2 | n=1 dl=1000 0/0/0
      open 0 1000 -> 1 !idle@1:r1 | n=2 dl=1000 0/0/0
      open 0 1000 -> -1 | n=2 dl=1000 0/0/0
      sent 0 1 -> true !sent@0:k1 | n=2 dl=1000 0/0/0
      fail 0 timeout 500 -> true !error@0:k1 | n=1 dl=1000 0/0/0
      open 500 1000 k1 -> 0 !idle@0:k1 | n=2 dl=1000 0/0/0
      sent 0 501 -> true !sent@0:k1 | n=2 dl=1000 0/0/0
      sent 0 700 -> true !sent@0:k1 | n=2 dl=1000 0/0/0
      recv k1 ok v 800 -> 0 !received@0:k1 | n=2 dl=1000 0/0/0
      complete 0 -> true ok:v !completed@0:k1 | n=1 dl=1000 0/0/0
    `),
    );
  });

  it('counts sends per request and refuses transitions out of terminal states', () => {
    const rq = new RR.Requester({ inflightMax: 1 });
    const s = rq.open(0, 100);
    expect(rq.id(s)).toBe('1');
    expect(rq.deadline(s)).toBe(100);
    rq.sent(s, 0);
    rq.sent(s, 10);
    expect(rq.sends(s)).toBe(2);
    expect(rq.fail(s, 'x', 20)).toBe(true);
    expect(rq.fail(s, 'x', 21)).toBe(false);
    expect(rq.sent(s, 22)).toBe(false);
    expect(rq.complete(s)).toBe(false);
    expect(rq.state(s)).toBe(RR.RR_FREE);
    expect([rq.completedCount, rq.errorCount, rq.size]).toEqual([0, 1, 0]);
  });
});

describe.each(impls)('answer cache (%s)', (_name, RR) => {
  it('executes once, replays afterwards, drops copies while executing, evicts expired then oldest, never an executing entry', () => {
    const c = new RR.AnswerCache({ answersMax: 2 });
    const log: string[] = [];
    const begin = (id: any, dl: any, now: number) => {
      const d = c.begin(id, dl, now);
      log.push(`${String(id)} ${RR.ANSWER_NAMES[d]}${d === RR.ANSWER_REPLAY ? ' ' + c.answer : ''}`);
    };
    begin('a', 1000, 0);
    begin('a', 1000, 1);
    expect(c.finish('a', 'A1')).toBe(true);
    expect(c.finish('a', 'A2')).toBe(false);
    begin('a', 1000, 2);
    begin('b', 500, 3);
    begin('c', 1000, 4); // a (answered) is the oldest: evicted
    begin('d', 1000, 5); // b and c executing: nothing may be evicted
    expect(c.finish('b', 'B')).toBe(true);
    begin('b', 500, 600); // past its deadline: dropped
    begin('e', 1000, 600); // b's deadline has passed: its entry goes first
    expect(c.lookup('b')).toBe(-1);
    expect(c.lookup('c')).toBe(RR.ANSWER_PENDING);
    expect(c.finish('c', 'C')).toBe(true);
    expect(c.lookup('c')).toBe(RR.ANSWER_REPLAY);
    begin('c', undefined, 700);
    for (const bad of ['', 7, null, 'x'.repeat(65)]) begin(bad, undefined, 800);
    begin('f', 'soon', 800);
    expect(log).toEqual([
      'a execute',
      'a pending',
      'a replay A1',
      'b execute',
      'c execute',
      'd busy',
      'b expired',
      'e execute',
      'c replay C',
      ' invalid',
      '7 invalid',
      'null invalid',
      `${'x'.repeat(65)} invalid`,
      'f invalid',
    ]);
    expect([c.replayCount, c.pendingCount, c.expiredCount, c.busyCount, c.invalidCount]).toEqual([2, 1, 1, 1, 5]);
  });
});

describe.each(impls)('request-response properties (%s)', (name, RR) => {
  const runs = name === 'source' ? 300 : 60;

  it('a request is completed at most once, never both completed and failed, and only after a reply', () => {
    let completions = 0;
    let failures = 0;
    const ids = ['1', '2', '3', '4', '5', '6', 'k1', 'k2', 'k3', 'zz'];
    const opArb = fc.oneof(
      { weight: 3, arbitrary: fc.record({ k: fc.constant('open'), dl: fc.integer({ min: 0, max: 600 }), key: fc.option(fc.constantFrom('k1', 'k2', 'k3'), { nil: undefined }) }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant('sent'), slot: fc.integer({ min: 0, max: 2 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('ack'), id: fc.constantFrom(...ids) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('recv'), id: fc.constantFrom(...ids), ok: fc.boolean() }) },
      { weight: 4, arbitrary: fc.record({ k: fc.constant('reply'), slot: fc.integer({ min: 0, max: 2 }), ok: fc.boolean() }) },
      { weight: 4, arbitrary: fc.record({ k: fc.constant('complete'), slot: fc.integer({ min: 0, max: 2 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('fail'), slot: fc.integer({ min: 0, max: 3 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('tick') }) },
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(opArb, fc.integer({ min: 0, max: 60 })), { minLength: 30, maxLength: 150 }), (ops) => {
        // One record per request (per 'idle' event), tracked by slot while it holds one.
        type Req = { received: boolean; completed: number; failed: number };
        const all: Req[] = [];
        const bySlot: Array<Req | null> = [null, null, null];
        let trueCompletes = 0;
        const rq = new RR.Requester({
          inflightMax: 3,
          recentMax: 4,
          onEvent: (ev: string, slot: number) => {
            if (slot < 0) return;
            if (ev === 'idle') {
              expect(bySlot[slot]).toBe(null);
              all.push((bySlot[slot] = { received: false, completed: 0, failed: 0 }));
            }
            const r = bySlot[slot]!;
            if (ev === 'received') r.received = true;
            if (ev === 'completed') {
              expect(r.received).toBe(true);
              r.completed++;
              bySlot[slot] = null;
            }
            if (ev === 'error') {
              r.failed++;
              bySlot[slot] = null;
            }
          },
        });
        let now = 0;
        for (const [op, dt] of ops) {
          now += dt;
          if (op.k === 'open') rq.open(now, now + op.dl, op.key);
          else if (op.k === 'sent') rq.sent(op.slot!, now);
          else if (op.k === 'ack') rq.ack(op.id!, now);
          else if (op.k === 'recv') rq.receive(op.id!, op.ok!, 'v', now);
          else if (op.k === 'reply') rq.receive(rq.id(op.slot!), op.ok!, 'v', now);
          else if (op.k === 'complete') trueCompletes += rq.complete(op.slot!) ? 1 : 0;
          else if (op.k === 'fail') rq.fail(op.slot!, 'x', now);
          else {
            rq.tick(now);
            // After a tick nothing unanswered is past its deadline.
            expect(rq.nextDeadlineMs()).toBeGreaterThan(now);
          }
          expect(rq.size).toBeLessThanOrEqual(3);
          expect(rq.size).toBe(bySlot.filter(Boolean).length);
        }
        for (const r of all) {
          expect(r.completed + r.failed).toBeLessThanOrEqual(1);
        }
        expect(trueCompletes).toBe(all.filter((r) => r.completed === 1).length);
        expect(rq.completedCount).toBe(trueCompletes);
        expect(rq.errorCount).toBe(all.filter((r) => r.failed === 1).length);
        completions += rq.completedCount;
        failures += rq.errorCount;
      }),
      { numRuns: runs },
    );
    // The random scripts must complete and fail requests often for the above to mean much.
    expect(completions).toBeGreaterThan(runs);
    expect(failures).toBeGreaterThan(runs);
  });

  it('answer cache: never executes an id twice while it is cached, replays exactly, matches a reference model', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), fc.boolean(), fc.integer({ min: 0, max: 50 })), { minLength: 30, maxLength: 150 }),
        (answersMax, reqs) => {
          const c = new RR.AnswerCache({ answersMax });
          // Reference model: at most answersMax entries; an executing entry is never evicted;
          // a new id takes a free entry, else the answered entry that began executing first.
          type E = { id: string; answer: string | null; seq: number };
          const model: E[] = [];
          let seq = 0;
          const modelBegin = (id: string): number => {
            const e = model.find((x) => x.id === id);
            if (e) return e.answer === null ? RR.ANSWER_PENDING : RR.ANSWER_REPLAY;
            if (model.length < answersMax) {
              model.push({ id, answer: null, seq: ++seq });
              return RR.ANSWER_EXECUTE;
            }
            let victim: E | null = null;
            for (const x of model) if (x.answer !== null && (!victim || x.seq < victim.seq)) victim = x;
            if (!victim) return RR.ANSWER_BUSY;
            Object.assign(victim, { id, answer: null, seq: ++seq });
            return RR.ANSWER_EXECUTE;
          };
          let now = 0;
          for (const [id, finishOne, dt] of reqs) {
            now += dt;
            const before = model.find((x) => x.id === id);
            // Deadlines far away: eviction here is by count and age only.
            const d = c.begin(id, now + 1e9, now);
            expect(RR.ANSWER_NAMES[d]).toBe(RR.ANSWER_NAMES[modelBegin(id)]);
            if (d === RR.ANSWER_EXECUTE) expect(before).toBe(undefined);
            if (d === RR.ANSWER_REPLAY) expect(c.answer).toBe(before!.answer);
            if (finishOne) {
              const first = model.filter((x) => x.answer === null).sort((x, y) => x.seq - y.seq)[0];
              if (first) {
                first.answer = first.id + '@' + now;
                expect(c.finish(first.id, first.answer)).toBe(true);
              }
            }
            for (const x of model) expect(c.lookup(x.id)).toBe(x.answer === null ? RR.ANSWER_PENDING : RR.ANSWER_REPLAY);
          }
        },
      ),
      { numRuns: runs },
    );
  });
});
