// BeaconSchedule as a scripted trace (every deadline derived from a scripted Rng), its bounds
// under a seeded Rng, and its option checks; source and minified bundle.
import { describe, expect, it } from 'vitest';
import * as src from '../../../../firmware/core/beacon-schedule.js';
import { SeededRng } from '../../../../firmware/core/rng.js';

const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);
const impls: Array<[string, any]> = [['source', src]];
if (fw) impls.push(['bundle', fw.beaconSchedule]);

/** Returns the scripted values in order and counts the draws. */
class ScriptedRng {
  draws = 0;
  constructor(private values: number[]) {}
  next(): number {
    if (this.draws >= this.values.length) throw new Error('script ran out of random numbers');
    return this.values[this.draws++];
  }
}

describe.each(impls)('BeaconSchedule (%s)', (_name, m) => {
  it('follows the script: burst, fast, late wake, slow, lost session, flapping session', () => {
    // beaconMs 10 s, burst of 3 at 1 s, jitter 0.2, slow = 6 x 10 s = 60 s, burst gap = 60 s.
    // [event, at ms, random number drawn, expected mode, expected next deadline, why]
    const script: Array<[string, number, number, string, number, string]> = [
      ['boot', 0, 0.5, 'burst', 500, 'first burst beacon at U[0,1000): 0.5 * 1000'],
      ['sent', 500, 0.5, 'burst', 1500, 'burst gap 1000 * (0.8 + 0.4 * 0.5)'],
      ['sent', 1500, 0, 'burst', 2300, 'shortest burst gap: 1000 * 0.8'],
      ['sent', 2300, 0.25, 'fast', 9800, 'burst over; phase step 10000 * (0.5 + 0.25)'],
      ['sent', 9800, 0.75, 'fast', 20800, 'fast gap 10000 * (0.8 + 0.4 * 0.75)'],
      ['sent', 25000, 0.5, 'fast', 35000, 'woke 4.2 s late: the next gap counts from now, no catch-up'],
      ['offerAccepted', 30000, 0.5, 'slow', 90000, 'slow phase step 60000 * (0.5 + 0.5)'],
      ['sent', 90000, 0.5, 'slow', 150000, 'slow gap 60000 * 1.0'],
      ['sessionLost', 100000, 0.1, 'burst', 100100, 'last burst began 100 s ago (>= 60 s): burst, first at 0.1 * 1000'],
      ['offerAccepted', 101000, 0, 'slow', 131000, 'an offer ends the burst early: 60000 * 0.5'],
      ['sessionLost', 110000, 0.5, 'fast', 120000, 'burst began 10 s ago (< 60 s): fast, phase step 10000 * 1.0'],
      ['sessionLost', 111000, NaN, 'fast', 120000, 'no session to lose: ignored, no draw'],
      ['sent', 120000, 0.5, 'fast', 130000, 'fast gap 10000 * 1.0'],
    ];
    const rng = new ScriptedRng(script.filter((s) => !Number.isNaN(s[2])).map((s) => s[2]));
    let bs: any;
    const trace: string[] = [];
    const want: string[] = [];
    for (const [ev, at, , mode, deadline, why] of script) {
      let ret: number;
      if (ev === 'boot') {
        bs = new m.BeaconSchedule({ beaconMs: 10000, burstCount: 3, burstMs: 1000, jitter: 0.2, slowFactor: 6, rng }, at);
        ret = bs.nextDeadlineMs();
      } else ret = bs[ev](at);
      expect(ret).toBe(bs.nextDeadlineMs());
      trace.push(`${ev}@${at} -> ${m.BEACON_MODE_NAMES[bs.mode]} ${bs.nextDeadlineMs()}`);
      want.push(`${ev}@${at} -> ${mode} ${deadline}`);
      expect(trace, why).toEqual(want);
    }
    expect(rng.draws).toBe(12);
  });

  it('keeps every gap within its bounds over 10000 events with a seeded Rng', () => {
    const rng = new SeededRng(11);
    const bs = new m.BeaconSchedule({ beaconMs: 10000, rng }, 0);
    expect(bs.slowMs()).toBe(60000);
    let now = bs.nextDeadlineMs();
    expect(now).toBeGreaterThanOrEqual(0);
    expect(now).toBeLessThan(1000);
    let prevMode = bs.mode;
    const seen = new Set<string>();
    for (let i = 0; i < 10000; i++) {
      const roll = rng.next();
      let gap: number;
      let kind: string;
      if (roll < 0.2 && bs.mode !== m.BEACON_SLOW) {
        gap = bs.offerAccepted(now) - now;
        kind = 'toSlow';
      } else if (roll < 0.5 && bs.mode === m.BEACON_SLOW) {
        const before = bs.mode;
        gap = bs.sessionLost(now) - now;
        kind = bs.mode === m.BEACON_BURST ? 'toBurst' : 'toFast';
        expect(before).toBe(m.BEACON_SLOW);
      } else {
        prevMode = bs.mode;
        gap = bs.sent(now) - now;
        kind = prevMode === m.BEACON_BURST ? (bs.mode === m.BEACON_FAST ? 'burstEnd' : 'burst') : m.BEACON_MODE_NAMES[bs.mode];
      }
      seen.add(kind);
      const [lo, hi] = {
        burst: [800, 1200], burstEnd: [5000, 15000], fast: [8000, 12000], slow: [48000, 72000],
        toSlow: [30000, 90000], toBurst: [0, 1000], toFast: [5000, 15000],
      }[kind]!;
      expect(gap, kind).toBeGreaterThanOrEqual(lo);
      expect(gap, kind).toBeLessThan(hi + 1e-9);
      now += gap;
    }
    expect([...seen].sort()).toEqual(['burst', 'burstEnd', 'fast', 'slow', 'toBurst', 'toFast', 'toSlow']);
  });

  it('burstCount 0 starts in fast mode with a uniform first beacon; slowMsMax caps the slow interval', () => {
    const bs = new m.BeaconSchedule({ beaconMs: 10000, burstCount: 0, rng: new ScriptedRng([0.3]) }, 100);
    expect([m.BEACON_MODE_NAMES[bs.mode], bs.nextDeadlineMs()]).toEqual(['fast', 3100]);
    expect(new m.BeaconSchedule({ beaconMs: 100000, rng: new SeededRng(1) }, 0).slowMs()).toBe(300000);
    expect(new m.BeaconSchedule({ beaconMs: 100000, slowMsMax: 100000, rng: new SeededRng(1) }, 0).slowMs()).toBe(100000);
  });

  it.each([
    [{ beaconMs: 0 }, 'beaconMs'],
    [{ beaconMs: Infinity }, 'beaconMs'],
    [{ beaconMs: NaN }, 'beaconMs'],
    [{ beaconMs: 1000, burstCount: 21 }, 'burstCount'],
    [{ beaconMs: 1000, burstCount: 1.5 }, 'burstCount'],
    [{ beaconMs: 1000, burstMs: 0 }, 'burstMs'],
    [{ beaconMs: 1000, jitter: 0.6 }, 'jitter'],
    [{ beaconMs: 1000, jitter: -0.1 }, 'jitter'],
    [{ beaconMs: 1000, slowFactor: 0.5 }, 'slowFactor'],
    [{ beaconMs: 1000, slowMsMax: 999 }, 'slowMsMax'],
  ])('refuses options %j (%s)', (o, what) => {
    expect(() => new m.BeaconSchedule({ rng: new SeededRng(1), ...o }, 0)).toThrow(what);
  });
});

if (!fw) it.todo('BeaconSchedule on the minified bundle (needs test/helpers/firmware-lib.ts)');
