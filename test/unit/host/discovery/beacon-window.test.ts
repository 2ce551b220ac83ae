// The companion's beacon freshness window: (boot, seq) must grow per device, clock skew only for
// devices that know the time, forgetting after silence, and a bounded record count with
// least-recently-accepted eviction. Traces, step by step.
import { describe, expect, it } from 'vitest';
import { BeaconWindow } from '../../../../host/discovery/beacon-window.js';

const BEACON = { id: 'shed-1', kind: 'esp32', fw: '0.1.0', caps: ['mqtt', 'rpc'], port: 41901, seq: 5, up: 60000, mem: 9000, ts: 0, boot: 3, nonce: 42 };

describe('BeaconWindow', () => {
  it('BeaconWindow: (boot, seq) must grow; skew only when the device knows the time (trace)', () => {
    const w = new BeaconWindow(100, 30000, 600000);
    const T = 1735689600000;
    const steps: Array<[string, Record<string, unknown>, number, string | null]> = [
      ['first sight', { seq: 5, boot: 3 }, T, null],
      ['duplicate', { seq: 5, boot: 3 }, T + 10, 'replay'],
      ['older seq, same boot', { seq: 4, boot: 3 }, T + 20, 'replay'],
      ['next seq', { seq: 6, boot: 3 }, T + 10000, null],
      ['reboot: seq restarts', { seq: 0, boot: 4 }, T + 20000, null],
      ['old boot replayed', { seq: 9, boot: 3 }, T + 21000, 'replay'],
      ['device knows time, in skew', { seq: 1, boot: 4, ts: T + 30000 + 29000 }, T + 30000, null],
      ['device knows time, 31 s ahead', { seq: 2, boot: 4, ts: T + 40000 + 31000 }, T + 40000, 'skew'],
      ['device knows time, 31 s behind', { seq: 2, boot: 4, ts: T + 40000 - 31000 }, T + 40000, 'skew'],
      ['erased device, counter back to 1, record still fresh', { seq: 0, boot: 1 }, T + 50000, 'replay'],
      ['same, after forgetMs of silence', { seq: 0, boot: 1 }, T + 30000 + 600001, null],
    ];
    for (const [what, over, now, want] of steps) expect(w.check({ ...BEACON, ...over }, now), what).toBe(want);
    expect(w.size()).toBe(1);
    w.forget('shed-1');
    expect(w.size()).toBe(0);
    expect(w.check({ ...BEACON, seq: 0, boot: 0 }, T + 700000)).toBe(null);
  });

  it('BeaconWindow keeps at most sendersMax records, evicting the least recently accepted; odd ids are plain keys', () => {
    const w = new BeaconWindow(3, 1000, 1e9);
    for (const [i, id] of ['__proto__', 'constructor', 'hasOwnProperty'].entries()) expect(w.check({ ...BEACON, id }, i)).toBe(null);
    expect(w.size()).toBe(3);
    expect(w.check({ ...BEACON, id: '__proto__' }, 5)).toBe('replay');
    expect(w.check({ ...BEACON, id: 'constructor', seq: 6 }, 6)).toBe(null); // refreshes constructor
    expect(w.check({ ...BEACON, id: 'd4' }, 7)).toBe(null); // evicts __proto__ (accepted at 0)
    expect(w.size()).toBe(3);
    expect(w.check({ ...BEACON, id: '__proto__' }, 8)).toBe(null); // forgotten: first sight again; evicts hasOwnProperty
    expect(w.check({ ...BEACON, id: 'constructor', seq: 6 }, 9)).toBe('replay'); // still remembered
    expect(({} as any).s).toBe(undefined);
  });

  it('refuses a window of no records', () => {
    expect(() => new BeaconWindow(0, 1000, 1000)).toThrow(/sendersMax/);
  });
});
