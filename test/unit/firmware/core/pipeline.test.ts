// The edge pipeline as data: one script per stage and per composition (pushes and ticks in,
// the whole list of readings out), the capacity rules (allowance per tick, bounded queue
// shedding the oldest), and every compile error; source and minified bundle.
import { describe, expect, it } from 'vitest';
import * as src from '../../../../firmware/core/pipeline.js';

const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);
const impls: Array<[string, any]> = [['source', src]];
if (fw) impls.push(['bundle', fw.pipeline]);

/** ['push', sensor, value, atMs] or ['tick', atMs]. */
type Step = ['push', string, number, number] | ['tick', number];

const fmt = (r: { n: string; v: number; ts: number }) => `${r.n}=${Number(r.v.toFixed(6))}@${r.ts}`;

/** Runs the steps and returns one line per step that emitted, e.g. 'push t 20@1000 -> t=20@1000'. */
function run(m: any, cfg: unknown, steps: Step[], opts?: object): { lines: string[]; p: any } {
  const p = m.compilePipeline(cfg, opts);
  if (p.error) throw new Error(p.error);
  const lines: string[] = [];
  const out: any[] = [];
  for (const s of steps) {
    out.length = 0;
    const ret = s[0] === 'push' ? p.push(s[1], s[2], s[3], out) : p.tick(s[1], out);
    expect(ret).toBe(out);
    if (out.length) lines.push(`${s.join(' ')} -> ${out.map(fmt).join(' ')}`);
  }
  return { lines, p };
}

const push = (v: number, t: number, sensor = 't'): Step => ['push', sensor, v, t];
const tick = (t: number): Step => ['tick', t];

// [name, pipeline config, steps, expected lines]
const SCRIPTS: Array<[string, unknown, Step[], string[]]> = [
  ['range keeps [lo, hi] inclusive', { t: [{ range: [0, 100] }] },
    [push(-1, 1), push(0, 2), push(50, 3), push(100, 4), push(100.5, 5)],
    ['push t 0 2 -> t=0@2', 'push t 50 3 -> t=50@3', 'push t 100 4 -> t=100@4']],
  ['deadband passes changes larger than d (first always)', { t: [{ deadband: 0.5 }] },
    [push(20, 1), push(20.25, 2), push(20.5, 3), push(20.75, 4), push(20.5, 5), push(20, 6)],
    ['push t 20 1 -> t=20@1', 'push t 20.75 4 -> t=20.75@4', 'push t 20 6 -> t=20@6']],
  ['deadband 0 passes every change, drops repeats', { t: [{ deadband: 0 }] },
    [push(1, 1), push(1, 2), push(2, 3), push(2, 4), push(1, 5)],
    ['push t 1 1 -> t=1@1', 'push t 2 3 -> t=2@3', 'push t 1 5 -> t=1@5']],
  ['rate: one value per ms, restarting if the clock goes back', { t: [{ rate: { ms: 1000 } }] },
    [push(1, 0), push(2, 500), push(3, 999), push(4, 1000), push(5, 1500), push(6, 2500), push(7, 100), push(8, 200)],
    ['push t 1 0 -> t=1@0', 'push t 4 1000 -> t=4@1000', 'push t 6 2500 -> t=6@2500', 'push t 7 100 -> t=7@100']],
  ['ewma 0.5', { t: [{ ewma: 0.5 }] },
    [push(10, 1), push(20, 2), push(20, 3), push(0, 4)],
    ['push t 10 1 -> t=10@1', 'push t 20 2 -> t=15@2', 'push t 20 3 -> t=17.5@3', 'push t 0 4 -> t=8.75@4']],
  ['ewma 1 is the identity', { t: [{ ewma: 1 }] }, [push(3, 1), push(-4, 2)], ['push t 3 1 -> t=3@1', 'push t -4 2 -> t=-4@2']],
  ['linear y = a x + b (Celsius to Fahrenheit); a non-finite result is dropped', { t: [{ linear: [1.8, 32] }], o: [{ linear: [1e308, 0] }] },
    [push(0, 1), push(100, 2), push(-40, 3), push(10, 4, 'o'), push(1, 5, 'o')],
    ['push t 0 1 -> t=32@1', 'push t 100 2 -> t=212@2', 'push t -40 3 -> t=-40@3', 'push o 1 5 -> o=1e+308@5']],
  ['round d keeps d decimals and drops binary tails; halves go up; 0 decimals gives integers', { t: [{ round: 3 }], h: [{ linear: [0.1, 0] }, { round: 0 }] },
    [push(56.757000000000005, 1), push(0.1 + 0.2, 2), push(-1.2345, 3), push(21.7, 4), push(25, 5, 'h'), push(-25, 6, 'h'), push(14, 7, 'h')],
    ['push t 56.757000000000005 1 -> t=56.757@1', 'push t 0.30000000000000004 2 -> t=0.3@2', 'push t -1.2345 3 -> t=-1.234@3', 'push t 21.7 4 -> t=21.7@4',
      'push h 25 5 -> h=3@5', 'push h -25 6 -> h=-2@6', 'push h 14 7 -> h=1@7']],
  ['window emits every kind at its end, aligned to multiples of ms', { t: [{ window: { ms: 1000, emit: ['count', 'min', 'max', 'mean'] } }] },
    [push(1, 100), push(3, 400), push(2, 900), tick(999), tick(1000), tick(5000), push(5, 1500), push(7, 3200), tick(3999)],
    ['tick 1000 -> t_count=3@1000 t_min=1@1000 t_max=3@1000 t_mean=2@1000',
      'push t 7 3200 -> t_count=1@2000 t_min=5@2000 t_max=5@2000 t_mean=5@2000']],
  ['window with one kind keeps the sensor name; a later sample flushes without a tick', { t: [{ window: { ms: 1000, emit: ['mean'] } }] },
    [push(2, 0), push(4, 999), push(10, 1000), push(20, 2500)],
    ['push t 10 1000 -> t=3@1000', 'push t 20 2500 -> t=10@2000']],
  ['window flushes at once when the clock goes back (wall clock set from an offer)', { t: [{ window: { ms: 1000, emit: ['max'] } }] },
    [push(1, 5100), push(2, 5200), push(9, 100), tick(1000)],
    ['push t 9 100 -> t=2@100', 'tick 1000 -> t=9@1000']],
  ['stages after a window run per kind with their own state', { t: [{ window: { ms: 1000, emit: ['mean', 'max'] } }, { deadband: 1 }] },
    [push(8, 0), push(12, 500), tick(1000), push(9, 1000), push(12, 1500), tick(2000), push(11, 2000), push(13.5, 2100), tick(3000)],
    ['tick 1000 -> t_mean=10@1000 t_max=12@1000', 'tick 3000 -> t_mean=12.25@3000 t_max=13.5@3000']],
  ['the INTERFACES.md example: deadband 0.2 then a 60 s mean/min/max window', { t: [{ deadband: 0.2 }, { window: { ms: 60000, emit: ['mean', 'min', 'max'] } }] },
    [push(21, 5000), push(21.1, 10000), push(21.5, 15000), push(20.5, 20000), tick(59999), tick(60000)],
    ['tick 60000 -> t_mean=21@60000 t_min=20.5@60000 t_max=21.5@60000']],
  ['composition: range, scale, smooth, throttle', { t: [{ range: [0, 1] }, { linear: [100, 0] }, { ewma: 0.5 }, { rate: { ms: 100 } }] },
    [push(0.5, 0), push(2, 10), push(1, 50), push(1, 100), push(-1, 200), push(0, 300)],
    ['push t 0.5 0 -> t=50@0', 'push t 1 100 -> t=87.5@100', 'push t 0 300 -> t=43.75@300']],
  ['a sensor without a chain passes through; chains are per sensor', { t: [{ deadband: 5 }] },
    [push(1, 1, 'h'), push(1, 2, 'h'), push(1, 3), push(2, 4), push(2, 5, 'h')],
    ['push h 1 1 -> h=1@1', 'push h 1 2 -> h=1@2', 'push t 1 3 -> t=1@3', 'push h 2 5 -> h=2@5']],
  ['no pipeline at all passes everything through', undefined, [push(1.5, 7, 'x')], ['push x 1.5 7 -> x=1.5@7']],
];

describe.each(impls)('pipeline (%s)', (_name, m) => {
  it.each(SCRIPTS)('%s', (_n, cfg, steps, want) => {
    expect(run(m, cfg, steps).lines).toEqual(want);
  });

  it('refuses non-finite values and counts them in bad', () => {
    const { lines, p } = run(m, { t: [{ window: { ms: 10, emit: ['count'] } }] }, [push(NaN, 1), push(Infinity, 2), push('3' as unknown as number, 3), push(1, 4), tick(10)]);
    expect(lines).toEqual(['tick 10 -> t=1@10']);
    expect(p.bad).toBe(3);
  });

  it('nextDeadlineMs: the earliest open window end, Infinity when none', () => {
    const p = m.compilePipeline({ a: [{ window: { ms: 1000, emit: ['mean'] } }], b: [{ window: { ms: 300, emit: ['mean'] } }] });
    expect(p.nextDeadlineMs()).toBe(Infinity);
    p.push('a', 1, 1500);
    expect(p.nextDeadlineMs()).toBe(2000);
    p.push('b', 1, 1550);
    expect(p.nextDeadlineMs()).toBe(1800);
    expect(p.tick(1800).map(fmt)).toEqual(['b=1@1800']);
    expect(p.nextDeadlineMs()).toBe(2000);
    expect(p.tick(2000).map(fmt)).toEqual(['a=1@2000']);
    expect(p.nextDeadlineMs()).toBe(Infinity);
  });

  it('processes at most samplesPerTickMax between ticks, queues the rest, sheds the oldest when full', () => {
    const steps: Step[] = [];
    for (let i = 1; i <= 10; i++) steps.push(push(i, i));
    const { lines, p } = run(m, undefined, steps, { samplesPerTickMax: 2, queueMax: 3 });
    expect(lines).toEqual(['push t 1 1 -> t=1@1', 'push t 2 2 -> t=2@2']);
    expect([p.pending(), p.shed]).toEqual([3, 5]);
    expect(p.nextDeadlineMs()).toBe(8); // the oldest queued sample is due
    expect(p.tick(20).map(fmt)).toEqual(['t=8@8', 't=9@9']);
    expect([p.pending(), p.shed]).toEqual([1, 5]);
    p.push('t', 11, 21); // queued behind sample 10: order is kept
    expect(p.tick(22).map(fmt)).toEqual(['t=10@10', 't=11@21']);
    expect(p.pending()).toBe(0);
    expect(p.push('t', 12, 23).map(fmt)).toEqual([]); // allowance of this tick used up: queued
    expect(p.tick(24).map(fmt)).toEqual(['t=12@23']);
    expect(p.push('t', 13, 25).map(fmt)).toEqual(['t=13@25']); // allowance left: processed at once
  });

  it('never grows past queueMax however fast samples come', () => {
    const p = m.compilePipeline({ t: [{ ewma: 0.1 }] }, { samplesPerTickMax: 4, queueMax: 8 });
    for (let i = 0; i < 10000; i++) p.push('t', i, i);
    expect(p.pending()).toBe(8);
    expect(p.shed).toBe(10000 - 4 - 8);
    expect(p.tick(10000).length).toBe(4);
    expect(p.tick(10001).length).toBe(4);
    expect(p.pending()).toBe(0);
  });

  it('keeps a window open while samples for it are still queued, and flushes it once they are in', () => {
    const p = m.compilePipeline({ t: [{ window: { ms: 1000, emit: ['count', 'max'] } }] }, { samplesPerTickMax: 2, queueMax: 8 });
    for (const [v, t] of [[1, 100], [2, 200], [3, 300], [4, 400], [5, 500]]) p.push('t', v, t);
    expect(p.tick(1500).map(fmt)).toEqual([]); // 2 of 3 queued processed, the window waits
    expect(p.nextDeadlineMs()).toBe(500);
    expect(p.tick(1600).map(fmt)).toEqual(['t_count=5@1000', 't_max=5@1000']);
  });

  it('lists reading names per sensor', () => {
    const p = m.compilePipeline({ t: [{ deadband: 0.2 }, { window: { ms: 60000, emit: ['mean', 'min', 'max'] } }], h: [{ window: { ms: 1000, emit: ['count'] } }], x: [] });
    expect(p.names('t')).toEqual(['t_mean', 't_min', 't_max']);
    expect(p.names('h')).toEqual(['h']);
    expect(p.names('x')).toEqual(['x']);
    expect(p.names('other')).toEqual(['other']);
  });

  const nine = Array.from({ length: 9 }, () => ({ deadband: 1 }));
  const ERRORS: Array<[string, unknown, string]> = [
    ['a number', 5, 'pipeline must be an object keyed by sensor name'],
    ['an array', [], 'pipeline must be an object keyed by sensor name'],
    ['a chain that is not an array', { t: {} }, 'pipeline.t: must be an array of stages'],
    ['a null stage', { t: [null] }, 'pipeline.t[0]: a stage must be an object'],
    ['an empty stage', { t: [{}] }, 'pipeline.t[0]: stage must have exactly one key'],
    ['two keys in a stage', { t: [{ deadband: 1, ewma: 0.5 }] }, 'pipeline.t[0]: stage must have exactly one key'],
    ['an unknown stage', { t: [{ deadband: 1 }, { median: 3 }] }, 'pipeline.t[1]: unknown stage median'],
    ['range of one number', { t: [{ range: [1] }] }, 'pipeline.t[0]: range must be [lo, hi] with lo <= hi'],
    ['range reversed', { t: [{ range: [2, 1] }] }, 'pipeline.t[0]: range must be [lo, hi] with lo <= hi'],
    ['range with a string', { t: [{ range: ['0', 1] }] }, 'pipeline.t[0]: range must be [lo, hi] with lo <= hi'],
    ['negative deadband', { t: [{ deadband: -1 }] }, 'pipeline.t[0]: deadband must be a number >= 0'],
    ['deadband as a string', { t: [{ deadband: '1' }] }, 'pipeline.t[0]: deadband must be a number >= 0'],
    ['rate as a number', { t: [{ rate: 5 }] }, 'pipeline.t[0]: rate must be {"ms": n}'],
    ['rate 0 ms', { t: [{ rate: { ms: 0 } }] }, 'pipeline.t[0]: rate.ms must be an integer 1-86400000'],
    ['rate fractional ms', { t: [{ rate: { ms: 1.5 } }] }, 'pipeline.t[0]: rate.ms must be an integer 1-86400000'],
    ['rate with another option', { t: [{ rate: { ms: 1, burst: 2 } }] }, 'pipeline.t[0]: unknown rate option burst'],
    ['ewma 0', { t: [{ ewma: 0 }] }, 'pipeline.t[0]: ewma must be a number in (0, 1]'],
    ['ewma above 1', { t: [{ ewma: 1.5 }] }, 'pipeline.t[0]: ewma must be a number in (0, 1]'],
    ['round with 7 decimals', { t: [{ round: 7 }] }, 'pipeline.t[0]: round must be an integer 0-6 (decimals)'],
    ['round with a fraction', { t: [{ round: 1.5 }] }, 'pipeline.t[0]: round must be an integer 0-6 (decimals)'],
    ['round negative', { t: [{ round: -1 }] }, 'pipeline.t[0]: round must be an integer 0-6 (decimals)'],
    ['round as a string', { t: [{ round: '2' }] }, 'pipeline.t[0]: round must be an integer 0-6 (decimals)'],
    ['linear of one number', { t: [{ linear: [1] }] }, 'pipeline.t[0]: linear must be [a, b]'],
    ['linear with null', { t: [{ linear: [1, null] }] }, 'pipeline.t[0]: linear must be [a, b]'],
    ['window 0 ms', { t: [{ window: { ms: 0, emit: ['mean'] } }] }, 'pipeline.t[0]: window.ms must be an integer 1-86400000'],
    ['window over a day', { t: [{ window: { ms: 86400001, emit: ['mean'] } }] }, 'pipeline.t[0]: window.ms must be an integer 1-86400000'],
    ['window without emit', { t: [{ window: { ms: 1000 } }] }, 'pipeline.t[0]: window.emit must list 1-4 of count, min, max, mean'],
    ['window emitting nothing', { t: [{ window: { ms: 1000, emit: [] } }] }, 'pipeline.t[0]: window.emit must list 1-4 of count, min, max, mean'],
    ['window emitting a median', { t: [{ window: { ms: 1000, emit: ['median'] } }] }, 'pipeline.t[0]: window.emit must list 1-4 of count, min, max, mean'],
    ['window emitting mean twice', { t: [{ window: { ms: 1000, emit: ['mean', 'mean'] } }] }, 'pipeline.t[0]: window.emit repeats mean'],
    ['window with another option', { t: [{ window: { ms: 1000, emit: ['mean'], align: 1 } }] }, 'pipeline.t[0]: unknown window option align'],
    ['two windows', { t: [{ window: { ms: 1000, emit: ['mean'] } }, { window: { ms: 9000, emit: ['max'] } }] }, 'pipeline.t[1]: at most one window per sensor'],
    ['a bad stage after a window', { t: [{ window: { ms: 1000, emit: ['mean'] } }, { ewma: 2 }] }, 'pipeline.t[1]: ewma must be a number in (0, 1]'],
    ['nine stages', { t: nine }, 'pipeline.t: more than 8 stages'],
    ['nine sensors', Object.fromEntries(Array.from({ length: 9 }, (_, i) => ['s' + i, []])), 'pipeline: more than 8 sensors'],
    ['a sensor named with a space', { 'a b': [] }, 'pipeline: sensor name a b must be 1-16 of A-Z a-z 0-9 _ -'],
    ['an empty sensor name', { '': [] }, 'pipeline: sensor name  must be 1-16 of A-Z a-z 0-9 _ -'],
    ['a 17-char sensor name', { ['s'.repeat(17)]: [] }, 'pipeline: sensor name sssssssssssssssss must be 1-16 of A-Z a-z 0-9 _ -'],
    ['__proto__ as a sensor', JSON.parse('{"__proto__": []}'), 'pipeline: key __proto__ is not allowed'],
    ['constructor as a sensor', { constructor: [] }, 'pipeline: key constructor is not allowed'],
    ['__proto__ as a stage', JSON.parse('{"t": [{"__proto__": {"deadband": 1}}]}'), 'pipeline.t[0]: key __proto__ is not allowed'],
    ['__proto__ in window options', JSON.parse('{"t": [{"window": {"ms": 1000, "emit": ["mean"], "__proto__": {}}}]}'), 'pipeline.t[0]: key __proto__ is not allowed'],
    ['constructor in rate options', { t: [{ rate: { ms: 5, constructor: 1 } }] }, 'pipeline.t[0]: key constructor is not allowed'],
  ];

  it.each(ERRORS)('refuses %s with a reason', (_n, cfg, reason) => {
    expect(m.compilePipeline(cfg)).toEqual({ error: reason });
  });

  it('applies the configured limits', () => {
    expect(m.compilePipeline({ t: [{ deadband: 1 }, { deadband: 2 }, { deadband: 3 }] }, { stagesMax: 2 })).toEqual({ error: 'pipeline.t: more than 2 stages' });
    expect(m.compilePipeline({ a: [], b: [] }, { sensorsMax: 1 })).toEqual({ error: 'pipeline: more than 1 sensors' });
    expect(m.compilePipeline({}, { queueMax: 0 })).toEqual({ error: 'pipeline: samplesPerTickMax and queueMax must be >= 1' });
    expect(m.compilePipeline({ t: nine.slice(0, 8) }).error).toBe(undefined);
    expect(({} as any).deadband).toBe(undefined);
  });
});

if (!fw) it.todo('pipeline on the minified bundle (needs test/helpers/firmware-lib.ts)');
