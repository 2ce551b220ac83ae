/**
 * The datagram ring between the discovery listener and its verifier thread: order, bounds,
 * wrap-around, slot reuse only after release, and a real consumer thread on the same buffer.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { DATAGRAM_BYTES_MAX } from '../../../../firmware/wire/beacon.js';
import { DatagramRing } from '../../../../host/discovery/datagram-ring.js';

const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

describe('DatagramRing', () => {
  it('hands datagrams over in order, each with its own length, across many wraps', () => {
    const producer = new DatagramRing(4);
    const consumer = new DatagramRing(producer.sab);
    expect(consumer.slots).toBe(4);
    let next = 0;
    for (let round = 0; round < 50; round++) {
      const n = 1 + (round % 4);
      const put: number[] = [];
      for (let k = 0; k < n; k++) put.push(producer.put(bytes(1 + ((round * 7 + k) % DATAGRAM_BYTES_MAX), (round + k) & 255)));
      expect(put).toEqual(Array.from({ length: n }, (_, k) => next + k));
      expect(consumer.head()).toBe(next + n);
      for (let k = 0; k < n; k++) {
        const v = consumer.view(next + k);
        expect(v.length).toBe(1 + ((round * 7 + k) % DATAGRAM_BYTES_MAX));
        expect(v.every((b) => b === ((round + k) & 255))).toBe(true);
      }
      next += n;
      consumer.take(next);
      producer.release(next);
    }
  });

  it('refuses a datagram when every slot waits for its verdict, and takes one again after release', () => {
    const ring = new DatagramRing(3);
    expect([ring.put(bytes(10, 1)), ring.put(bytes(10, 2)), ring.put(bytes(10, 3))]).toEqual([0, 1, 2]);
    expect(ring.put(bytes(10, 4))).toBe(-1);
    expect(ring.inFlight()).toBe(3);
    // Taken by the consumer is not enough: the producer still needs the slot for the verdict.
    ring.take(3);
    expect(ring.put(bytes(10, 4))).toBe(-1);
    ring.release(1);
    expect(ring.put(bytes(10, 4))).toBe(3);
    expect(ring.view(3)[0]).toBe(4);
    expect(ring.slotOf(3)).toBe(0);
    expect(ring.put(bytes(DATAGRAM_BYTES_MAX + 1, 5))).toBe(-1);
  });

  it('wakes a consumer thread that sleeps on it, and stops it', async () => {
    const ring = new DatagramRing(64);
    // A consumer written inline: it sums the first byte of each datagram and reports when asked to stop.
    const src = `
      const { workerData, parentPort } = require('node:worker_threads');
      const ctl = new Int32Array(workerData.sab, 0, 4);
      const lens = new Int32Array(workerData.sab, 16, workerData.slots);
      const data = new Uint8Array(workerData.sab, 16 + 4 * workerData.slots);
      let next = 0, sum = 0, sleeps = 0;
      while (Atomics.load(ctl, 3) !== 1) {
        const head = Atomics.load(ctl, 0);
        if (head === next) { Atomics.store(ctl, 2, 1); if (Atomics.load(ctl, 0) === head) { sleeps++; Atomics.wait(ctl, 0, head, 5000); } Atomics.store(ctl, 2, 0); continue; }
        for (; next !== head; next++) sum += data[(next % workerData.slots) * ${DATAGRAM_BYTES_MAX}];
        Atomics.store(ctl, 1, next);
        parentPort.postMessage({ next, sum });
      }
      parentPort.postMessage({ stopped: true, sleeps });
    `;
    const w = new Worker(src, { eval: true, workerData: { sab: ring.sab, slots: ring.slots } });
    const seen: { next?: number; sum?: number; stopped?: boolean; sleeps?: number }[] = [];
    w.on('message', (m) => seen.push(m));
    const until = async (f: () => boolean) => {
      const end = Date.now() + 5000;
      while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      expect(f()).toBe(true);
    };
    let total = 0;
    for (let i = 0; i < 200; i++) {
      ring.put(bytes(20, i & 255));
      total += i & 255;
      ring.release(Math.max(0, i - 32));
      if (i % 10 === 9) {
        ring.wake();
        await until(() => seen.some((m) => m.next === i + 1));
      }
    }
    expect(seen.find((m) => m.next === 200)?.sum).toBe(total);
    ring.stop();
    await until(() => seen.some((m) => m.stopped));
    // It slept between the batches instead of spinning: the wakes reached it.
    expect(seen.find((m) => m.stopped)!.sleeps).toBeGreaterThan(5);
    await w.terminate();
  });
});
