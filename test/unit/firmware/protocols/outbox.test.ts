// Outbox: order and exactly-once acks, drop-oldest accounting (records and segments), reboot
// recovery, a power cut at every byte of a record (in-memory flash and the emulator's Storage),
// mark batching, drain pacing, hist flags, and a property over any interleaving of append,
// send, ack, rewind, link changes and power cuts; source and bundle.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { PowerCut } from '../../../../boards/emulator/storage.js';
import { emuStorage, FlashFake, outboxTargets, PowerCutError } from './protocols-fixtures.js';

const TS = 1700000000000;
const disposers: Array<() => void> = [];
afterAll(() => disposers.forEach((d) => d()));

describe.each(outboxTargets)('outbox (%s)', (_name, M) => {
  const make = (st: any, o: any = {}) => new M.Outbox({ storage: st, drainPerSecMax: 1e6, drainBurstMax: 1e6, ...o });

  /** Hands out and acks everything it can at `now`, returning the payloads parsed. */
  function drain(ob: any, now = 0, ack = true): any[] {
    const got: any[] = [];
    for (let i = 0; i < 100000; i++) {
      const seq = ob.next(now);
      if (seq < 0) break;
      const p = JSON.parse(ob.payload);
      expect(p.seq).toBe(seq);
      expect(p.hist).toBe(ob.hist);
      got.push(p);
      if (ack) ob.acked(seq);
    }
    return got;
  }

  it('stores readings with seq and ts, hands them out in order with the telemetry JSON, and forgets them on ack', () => {
    const st = new FlashFake();
    const ob = make(st);
    ob.setLive(true);
    expect(ob.append({ t: 21.5, h: 40 }, TS + 123)).toBe(1);
    expect(ob.append({ t: -3.25 }, TS + 456)).toBe(2);
    expect([ob.size(), ob.unsent(), ob.pending()]).toEqual([2, 2, 0]);
    expect(ob.next(0)).toBe(1);
    expect(ob.payload).toBe('{"seq":1,"ts":1700000000123,"r":{"t":21.5,"h":40},"hist":0}');
    expect(ob.next(0)).toBe(2);
    expect(ob.payload).toBe('{"seq":2,"ts":1700000000456,"r":{"t":-3.25},"hist":0}');
    expect([ob.size(), ob.unsent(), ob.pending(), ob.next(0)]).toEqual([2, 0, 2, -1]);
    ob.acked(2);
    ob.acked(2);
    ob.acked(99);
    expect([ob.size(), ob.pending()]).toEqual([1, 1]);
    ob.acked(1);
    expect([ob.size(), ob.pending(), ob.deadline()]).toEqual([0, 0, -1]);
    // A small ts (not a wall clock yet) is written as it is.
    expect(ob.append({ t: 1 }, 5)).toBe(3);
    expect(drain(ob)[0]).toEqual({ seq: 3, ts: 5, r: { t: 1 }, hist: 0 });
  });

  it('thousands of readings through few segments: order kept, every one exactly once, finished segments erased', () => {
    const st = new FlashFake();
    const ob = make(st, { segmentBytes: 512, segmentsMax: 3, recordsMax: 100 });
    ob.setLive(true);
    const seen: number[] = [];
    for (let i = 0; i < 3000; i++) {
      ob.append({ t: i }, TS + i);
      if (i % 7 === 6) for (const p of drain(ob)) seen.push(p.seq);
    }
    for (const p of drain(ob)) seen.push(p.seq);
    expect(seen).toEqual(Array.from({ length: 3000 }, (_, i) => i + 1));
    expect([ob.size(), ob.dropped]).toEqual([0, 0]);
    expect(st.list('ob.').filter((n) => /^ob\.\d+$/.test(n)).length).toBe(1);
    // Marks: about one write per markEvery acks, never one per ack.
    expect(ob.marks).toBeGreaterThan(3000 / 16 - 10);
    expect(ob.marks).toBeLessThanOrEqual(3000 / 16);
  });

  it('full: the oldest reading is dropped, counted, and the count survives a reboot', () => {
    const st = new FlashFake();
    const ob = make(st, { recordsMax: 10, markEvery: 4 });
    for (let i = 0; i < 25; i++) ob.append({ v: i }, TS + i);
    expect([ob.size(), ob.dropped]).toEqual([10, 15]);
    ob.setLive(true);
    const got = drain(ob);
    expect(got.map((p) => p.seq)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    expect(got.every((p) => p.hist === 1)).toBe(true); // taken while not live
    const again = make(st, { recordsMax: 10, markEvery: 4 });
    expect(again.dropped).toBe(15);
    expect(again.size()).toBeLessThan(4); // acked after the last mark: sent again

    expect(again.append({ v: 0 }, TS)).toBe(26);
  });

  it('flash bound: a whole oldest segment is dropped when segmentsMax are in use, counted per reading', () => {
    const st = new FlashFake();
    const ob = make(st, { segmentBytes: 256, segmentsMax: 2, recordsMax: 1000 });
    let n = 0;
    while (st.list('ob.').length < 2 || ob.size() === n) {
      ob.append({ v: n }, TS);
      n++;
      if (n > 100) break;
    }
    // The append that needed a third segment dropped the first one's readings.
    const perSegment = n - ob.size() + 0;
    expect(ob.dropped).toBe(perSegment);
    expect(ob.dropped).toBeGreaterThan(0);
    expect(st.list('ob.').filter((x) => /\d$/.test(x)).length).toBe(2);
    ob.setLive(true);
    const got = drain(ob).map((p) => p.seq);
    expect(got[0]).toBe(ob.dropped + 1);
    expect(got[got.length - 1]).toBe(n);
    expect(got.length + ob.dropped).toBe(n);
  });

  it('reboot: unacked readings come back (hist 1), acked ones before the mark do not, seq goes on', () => {
    const st = new FlashFake();
    const ob = make(st, { markEvery: 4 });
    ob.setLive(true);
    for (let i = 0; i < 10; i++) ob.append({ v: i }, TS + i);
    for (let i = 0; i < 6; i++) ob.next(0);
    for (let s = 1; s <= 5; s++) ob.acked(s); // mark written at 4: 5 is acked after it
    const r = make(st, { markEvery: 4 });
    expect([r.recovered, r.size(), r.torn]).toEqual([6, 6, 0]);
    r.setLive(true);
    const got = drain(r);
    // 5 was acked but after the last mark: sent again (the host deduplicates); 1-4 never.
    expect(got.map((p) => [p.seq, p.hist])).toEqual([
      [5, 1],
      [6, 1],
      [7, 1],
      [8, 1],
      [9, 1],
      [10, 1],
    ]);
    expect(got[0].r).toEqual({ v: 4 });
    expect(r.append({ v: 10 }, TS)).toBe(11);
    expect(drain(r)[0]).toEqual({ seq: 11, ts: TS, r: { v: 10 }, hist: 0 });
    // Everything acked and nothing left in flash but the newest segment: seq still goes on.
    const r2 = make(st, { markEvery: 4 });
    expect(r2.size()).toBeLessThanOrEqual(3);
    expect(r2.append({ v: 0 }, TS)).toBe(12);
  });

  it('a drop not yet in the mark is persisted by the next record: a reboot never brings a dropped reading back after newer ones', () => {
    const st = new FlashFake();
    const ob = make(st, { recordsMax: 5, markEvery: 16 });
    for (let i = 0; i < 8; i++) ob.append({ v: i }, TS); // down: 1..3 dropped
    expect(ob.dropped).toBe(3);
    ob.setLive(true);
    expect(drain(ob, 0, false).map((p) => p.seq)).toEqual([4, 5, 6, 7, 8]);
    // Power cut: no mark was ever written.
    expect(st.list('ob.').filter((n) => !/\d$/.test(n))).toEqual([]);
    const r = make(st, { recordsMax: 5, markEvery: 16 });
    r.setLive(true);
    expect([r.dropped, drain(r).map((p) => p.seq)]).toEqual([3, [4, 5, 6, 7, 8]]);
  });

  it('acks ride on the next record too: after a power cut nothing acked before the last append comes back', () => {
    const st = new FlashFake();
    const ob = make(st, { markEvery: 16 });
    ob.setLive(true);
    for (let i = 0; i < 10; i++) ob.append({ v: i }, TS);
    for (let i = 0; i < 5; i++) ob.acked(ob.next(0));
    ob.append({ v: 10 }, TS); // carries the floor 5
    expect(ob.marks).toBe(0);
    const r = make(st, { markEvery: 16 });
    r.setLive(true);
    expect(drain(r).map((p) => p.seq)).toEqual([6, 7, 8, 9, 10, 11]);
  });

  it('a mark far behind the oldest segment (acks erased segments, then a power cut): recovery starts at the oldest record', () => {
    const st = new FlashFake();
    const ob = make(st, { segmentBytes: 256, recordBytesMax: 128, segmentsMax: 40, recordsMax: 1000, markEvery: 1000, pendingMax: 31 });
    ob.setLive(true);
    for (let i = 0; i < 100; i++) ob.append({ v: i }, TS);
    for (let i = 0; i < 90; i++) {
      const s = ob.next(0);
      ob.acked(s);
    }
    expect(ob.marks).toBe(0);
    const r = make(st, { segmentBytes: 256, recordBytesMax: 128, segmentsMax: 40, recordsMax: 1000, markEvery: 1000, pendingMax: 31 });
    r.setLive(true);
    const got = drain(r).map((p) => p.seq);
    // Acked readings of the oldest remaining segment come again (deduplicated by the host).
    expect(got[got.length - 1]).toBe(100);
    expect(got.length).toBeLessThan(20);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => 101 - got.length + i));
  });

  it('hist: live readings 0; taken while down, queued before the session came back, or handed out again: 1', () => {
    const st = new FlashFake();
    const ob = make(st);
    ob.append({ v: 0 }, TS); // before any connection
    ob.setLive(true);
    ob.append({ v: 1 }, TS);
    expect(drain(ob, 0, false).map((p) => [p.seq, p.hist])).toEqual([
      [1, 1],
      [2, 0],
    ]);
    ob.append({ v: 2 }, TS); // live, but the link drops before it is sent
    ob.setLive(false);
    expect(ob.next(0)).toBe(-1); // nothing goes out while down
    ob.append({ v: 3 }, TS);
    ob.setLive(true);
    ob.append({ v: 4 }, TS);
    ob.rewind(); // the session's window was lost: 1 and 2 go again
    expect(drain(ob).map((p) => [p.seq, p.hist])).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 1],
      [5, 0],
    ]);
  });

  it('rewind skips readings acked meanwhile, and late acks of re-handed readings are harmless', () => {
    const st = new FlashFake();
    const ob = make(st);
    ob.setLive(true);
    for (let i = 0; i < 6; i++) ob.append({ v: i }, TS);
    for (let i = 0; i < 6; i++) ob.next(0);
    ob.acked(3);
    ob.acked(5);
    ob.rewind();
    expect([ob.unsent(), ob.pending(), ob.size()]).toEqual([4, 0, 4]);
    ob.acked(1); // the session's old copy of 1 was acked after all
    const got: number[] = [];
    let s: number;
    while ((s = ob.next(0)) >= 0) got.push(s);
    expect(got).toEqual([2, 4, 6]);
    for (const x of [2, 4, 6, 2]) ob.acked(x);
    expect([ob.size(), ob.pending(), ob.unsent()]).toEqual([0, 0, 0]);
  });

  it('drain pacing: drainBurstMax at once, then drainPerSecMax a second; deadline() says when', () => {
    const st = new FlashFake();
    const ob = new M.Outbox({ storage: st, drainPerSecMax: 5, drainBurstMax: 3, pendingMax: 31 });
    for (let i = 0; i < 20; i++) ob.append({ v: i }, TS);
    ob.setLive(true);
    const sent: number[] = [];
    let now = 1000;
    expect(ob.deadline()).toBeLessThanOrEqual(now);
    for (let guard = 0; guard < 200 && ob.unsent(); guard++) {
      const s = ob.next(now);
      if (s >= 0) {
        sent.push(now);
        ob.acked(s);
        continue;
      }
      const d = ob.deadline();
      expect(d).toBeGreaterThan(now);
      // Never early: one ms before the deadline there is still nothing.
      expect(ob.next(d - 1)).toBe(-1);
      now = d;
    }
    expect(sent.length).toBe(20);
    expect(sent.slice(0, 3)).toEqual([1000, 1000, 1000]);
    // Then one every 200 ms.
    for (let i = 3; i < 20; i++) expect(sent[i] - sent[i - 1]).toBe(200);
    // At any instant, no second holds more than burst + rate.
    for (let i = 0; i < 20; i++) expect(sent.filter((t) => t >= sent[i] && t < sent[i] + 1000).length).toBeLessThanOrEqual(3 + 5);
  });

  it('pendingMax bounds readings handed out without an ack', () => {
    const ob = make(new FlashFake(), { pendingMax: 4 });
    ob.setLive(true);
    for (let i = 0; i < 10; i++) ob.append({ v: i }, TS);
    expect(drain(ob, 0, false).length).toBe(4);
    expect([ob.deadline(), ob.pending()]).toEqual([-1, 4]);
    ob.acked(2);
    expect(ob.next(0)).toBe(5);
  });

  it('refuses what it cannot frame: a reading over recordBytesMax, a 0xFF byte, a bad ts', () => {
    const ob = make(new FlashFake(), { recordBytesMax: 96 });
    expect(ob.append({ long: 'x'.repeat(80) }, TS)).toBe(-1);
    expect(ob.append({ k: 'a\xffb' }, TS)).toBe(-1);
    expect(ob.append({ t: 1 }, NaN)).toBe(-1);
    expect([ob.writeErrors, ob.size()]).toEqual([3, 0]);
    expect(ob.append({ t: 1 }, TS)).toBe(1);
  });

  it('a storage write that fails is counted, seals the segment, and loses nothing already stored', () => {
    const st = new FlashFake();
    const ob = make(st);
    ob.append({ v: 1 }, TS);
    const real = st.writeAt.bind(st);
    st.writeAt = () => false;
    expect(ob.append({ v: 2 }, TS)).toBe(-1);
    st.writeAt = real;
    expect(ob.append({ v: 3 }, TS)).toBe(2);
    expect(st.list('ob.').length).toBe(2); // the next reading opened a new segment
    ob.setLive(true);
    expect(drain(ob).map((p) => p.r.v)).toEqual([1, 3]);
  });

  /** Three stored readings, then a power cut k bytes into the fourth; returns what a reboot sees. */
  function tornAt(k: number, storage: 'fake' | 'emu') {
    let st: any;
    let cut: () => void;
    if (storage === 'fake') {
      const f = new FlashFake();
      st = f;
      cut = () => (f.cutAfter = [0, k]);
    } else {
      const e = emuStorage();
      disposers.push(e.dispose);
      st = e.adapter;
      cut = () => (e.st.tornWrite = { bytes: k, name: 'ob.1' });
    }
    const ob = make(st);
    for (let i = 0; i < 3; i++) ob.append({ t: 20 + i }, TS + i);
    cut();
    let threw = false;
    try {
      ob.append({ t: 99.5 }, TS + 9);
    } catch (e) {
      threw = e instanceof PowerCutError || e instanceof PowerCut;
    }
    expect(threw).toBe(true);
    let r: any;
    expect(() => (r = make(st))).not.toThrow();
    return { st, r };
  }

  const REC4 = '0,0 {"seq":4,"ts":1700000000009,"r":{"t":99.5}\n';
  for (const storage of ['fake', 'emu'] as const) {
    it(`power cut at every byte of a record (${storage}): everything before it recovered, only it dropped, never a throw`, () => {
      for (let k = 0; k <= REC4.length; k++) {
        const { st, r } = tornAt(k, storage);
        const whole = k === REC4.length;
        expect([r.recovered, r.torn]).toEqual([whole ? 4 : 3, k > 0 && !whole ? 1 : 0]);
        // New readings go on (in a new segment after a torn one), and all are delivered in order.
        const next = r.append({ t: 1 }, TS + 10);
        expect(next).toBe(whole ? 5 : 4);
        r.setLive(true);
        const got = drain(r);
        expect(got.map((p: any) => p.r.t)).toEqual(whole ? [20, 21, 22, 99.5, 1] : [20, 21, 22, 1]);
        // And the next boot agrees: the torn record went with its (acked) segment, seq goes on.
        const again = make(st);
        expect(again.torn).toBe(0);
        expect(again.size()).toBeLessThan(16);
        expect(again.append({ t: 2 }, TS)).toBe(next + 1);
      }
    });
  }

  it('power cut while creating a segment (the record lands on erased flash) or writing a mark', () => {
    for (let k = 0; k < 30; k++) {
      const st = new FlashFake();
      const ob = make(st, { segmentBytes: 128, recordBytesMax: 128, markEvery: 2 });
      ob.setLive(true);
      let n = 0;
      // Fill the first segment; the next append creates the second.
      while (st.list('ob.').length < 2) {
        ob.append({ v: n++ }, TS);
        drain(ob);
      }
      const before = n;
      st.cutAfter = [0, k];
      try {
        while (true) {
          ob.append({ v: n++ }, TS);
          drain(ob);
        }
      } catch (e) {
        expect(e).toBeInstanceOf(PowerCutError);
      }
      let r: any;
      expect(() => (r = make(st, { segmentBytes: 128, recordBytesMax: 128, markEvery: 2 }))).not.toThrow();
      r.setLive(true);
      const got = drain(r);
      // Nothing that was stored and not acked is missing; seqs keep increasing.
      for (const p of got) expect(p.r.v).toBe(p.seq - 1);
      expect(r.append({ v: -1 }, TS)).toBeGreaterThan(before - 1);
    }
  });

  it('garbage in flash (foreign files, bad marks, a corrupt middle record) never throws and loses only what is unreadable', () => {
    const st = new FlashFake();
    const ob = make(st, { segmentBytes: 256 });
    for (let i = 0; i < 12; i++) ob.append({ v: i }, TS);
    st.files.set('ob.a', 'garbage\n12,0,5\n1,0,1\n\xff\xff');
    st.files.set('ob.x7', 'not a segment');
    st.files.set('obx.3', 'not ours');
    const seg = [...st.files.keys()].filter((n) => /^ob\.\d+$/.test(n)).sort()[0];
    const text = st.files.get(seg)!;
    const at = text.indexOf('"seq":3');
    st.files.set(seg, text.slice(0, at) + 'X' + text.slice(at + 1));
    let r: any;
    expect(() => (r = make(st, { segmentBytes: 256 }))).not.toThrow();
    expect(r.torn).toBe(1);
    r.setLive(true);
    const got = drain(r).map((p: any) => p.seq);
    // 1 was acked by the valid mark entry (1,0,1); 3.. of the damaged segment are unreadable.
    expect(got[0]).toBe(2);
    expect(got).not.toContain(3);
    expect(got[got.length - 1]).toBe(12);
    expect(r.append({ v: 0 }, TS)).toBe(13);
  });

  it('property: any interleaving of append, send, ack, rewind, link changes and power cuts delivers every reading not dropped, first deliveries in seq order, acked ones again only after a power cut and within markEvery - 1 + pendingMax', () => {
    const MARK = 8;
    const PEND = 6;
    const op = fc.oneof(
      fc.constant({ k: 'append' as const }),
      fc.constant({ k: 'append' as const }),
      fc.constant({ k: 'send' as const }),
      fc.record({ k: fc.constant('ack' as const), i: fc.nat(20) }),
      fc.constant({ k: 'rewind' as const }),
      fc.constant({ k: 'down' as const }),
      fc.constant({ k: 'up' as const }),
      fc.record({ k: fc.constant('cut' as const), w: fc.nat(3), b: fc.nat(60) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), fc.boolean(), (ops, small) => {
        const opts = { segmentBytes: small ? 160 : 512, recordBytesMax: 128, segmentsMax: 3, recordsMax: small ? 8 : 40, markEvery: MARK, pendingMax: PEND };
        const st = new FlashFake();
        let ob = make(st, opts);
        let live = false;
        let value = 0;
        const content = new Map<number, number>(); // seq -> the reading's value
        const maybe = new Set<number>(); // values whose append a power cut interrupted
        const acked = new Set<number>();
        let ackedThisBoot = new Set<number>();
        let reAcked = new Set<number>();
        const delivered = new Set<number>();
        let handed: number[] = [];
        let lastFirst = 0;
        let tornValue = -1;
        const hand = () => {
          const s = ob.next(0);
          if (s < 0) return;
          const p = JSON.parse(ob.payload);
          expect(p.seq).toBe(s);
          if (!content.has(s)) {
            // Only a reading whose append was cut, but whose record landed whole, may appear.
            expect(maybe.has(p.r.v)).toBe(true);
            maybe.delete(p.r.v);
            content.set(s, p.r.v);
          }
          // The seq always names the same reading, across reboots.
          expect(p.r.v).toBe(content.get(s));
          if (!delivered.has(s)) {
            expect(s).toBeGreaterThan(lastFirst);
            lastFirst = s;
            delivered.add(s);
          } else expect(p.hist).toBe(1);
          if (acked.has(s)) {
            // Acked readings come again only after a power cut, and only a few.
            expect(ackedThisBoot.has(s)).toBe(false);
            reAcked.add(s);
            expect(reAcked.size).toBeLessThanOrEqual(2 * MARK - 1 + PEND);
          }
          handed.push(s);
        };
        const ack = (s: number) => {
          acked.add(s);
          ackedThisBoot.add(s);
          ob.acked(s);
        };
        const append = () => {
          const v = value++;
          tornValue = v;
          const s = ob.append({ v }, TS + v);
          tornValue = -1;
          if (s >= 0) content.set(s, v);
        };
        for (const o of ops) {
          if (o.k === 'append') append();
          else if (o.k === 'send') {
            if (live) hand();
          } else if (o.k === 'ack') {
            if (handed.length) ack(handed.splice(o.i % handed.length, 1)[0]);
          } else if (o.k === 'rewind') {
            ob.rewind();
            handed = [];
          } else if (o.k === 'down') {
            live = false;
            ob.setLive(false);
          } else if (o.k === 'up') {
            live = true;
            ob.setLive(true);
          } else {
            // A power cut during one of the next writes (record, mark or segment), then a reboot.
            st.cutAfter = [o.w, o.b];
            try {
              for (let i = 0; i < 6; i++) {
                append();
                if (live) hand();
                if (handed.length) ack(handed.shift()!);
              }
            } catch (e) {
              if (!(e instanceof PowerCutError)) throw e;
              if (tornValue >= 0) maybe.add(tornValue);
              tornValue = -1;
            }
            st.cutAfter = null;
            ob = make(st, opts);
            if (live) ob.setLive(true);
            handed = [];
            ackedThisBoot = new Set();
            reAcked = new Set();
          }
        }
        // Liveness: link up, no more faults, drain to the end.
        live = true;
        ob.setLive(true);
        ob.rewind();
        handed = [];
        for (let i = 0; i < 10000 && ob.size(); i++) {
          hand();
          if (!handed.length) break;
          ack(handed.shift()!);
        }
        expect(ob.size()).toBe(0);
        // Every reading the outbox accepted was delivered, or dropped and counted.
        const missing = [...content.keys()].filter((s) => !delivered.has(s));
        expect(missing.length).toBeLessThanOrEqual(ob.dropped);
      }),
      { numRuns: 400 },
    );
  });
});
