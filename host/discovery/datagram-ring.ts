/**
 * A single-producer, single-consumer ring of datagrams in a SharedArrayBuffer: the discovery
 * listener's main thread puts each received datagram in (one copy, no message, no syscall unless
 * the consumer sleeps), the verifier thread (./verify-worker.ts) takes them out in order.
 *
 * Layout: 4 control words, then one length word per slot, then slots of DATAGRAM_BYTES_MAX bytes.
 *   ctl[HEAD]     datagrams put in so far (the producer's counter; only it writes it)
 *   ctl[TAKEN]    datagrams the consumer has taken (only it writes it)
 *   ctl[SLEEPING] 1 while the consumer waits on HEAD: only then does put() notify
 *   ctl[STOP]     1 asks the consumer to end
 * Counters grow without wrapping (2^31 datagrams at 100 k/s is 6 hours; they are compared by
 * difference, which stays right across the int32 wrap). A slot is free again once the PRODUCER
 * has processed the consumer's result for it (`release`), so whatever the producer keeps per slot
 * (the sender's address) is still there when the result comes back.
 */
import { DATAGRAM_BYTES_MAX } from '../../firmware/wire/beacon.js';

const HEAD = 0;
const TAKEN = 1;
const SLEEPING = 2;
const STOP = 3;
const CTL_WORDS = 4;

export class DatagramRing {
  readonly slots: number;
  readonly sab: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly lens: Int32Array;
  private readonly data: Uint8Array;
  /** Producer side: datagrams whose results were processed (slots before it are free). */
  private released = 0;

  /** A new ring (producer side) of `slots` slots, or a view of an existing one (consumer side). */
  constructor(slotsOrSab: number | SharedArrayBuffer) {
    if (typeof slotsOrSab === 'number') {
      this.slots = slotsOrSab;
      this.sab = new SharedArrayBuffer(4 * (CTL_WORDS + slotsOrSab) + slotsOrSab * DATAGRAM_BYTES_MAX);
    } else {
      this.sab = slotsOrSab;
      this.slots = (slotsOrSab.byteLength - 4 * CTL_WORDS) / (4 + DATAGRAM_BYTES_MAX);
    }
    this.ctl = new Int32Array(this.sab, 0, CTL_WORDS);
    this.lens = new Int32Array(this.sab, 4 * CTL_WORDS, this.slots);
    this.data = new Uint8Array(this.sab, 4 * (CTL_WORDS + this.slots));
  }

  // --- producer (the listener's thread) ---

  /** Puts a datagram in; returns its index, or -1 when every slot is in use (the consumer lags). */
  put(msg: Uint8Array): number {
    const head = this.ctl[HEAD];
    if (((head - this.released) | 0) >= this.slots || msg.length > DATAGRAM_BYTES_MAX) return -1;
    const slot = (head >>> 0) % this.slots;
    this.data.set(msg, slot * DATAGRAM_BYTES_MAX);
    this.lens[slot] = msg.length;
    // Release order: the bytes and the length are written BEFORE the head moves past them.
    Atomics.store(this.ctl, HEAD, (head + 1) | 0);
    return head;
  }

  /**
   * Wakes the consumer if it sleeps. Not done per put(): a wake is a system call, dearer than
   * the copy; the producer calls it once per batch of datagrams (once per event-loop turn).
   */
  wake(): void {
    if (Atomics.load(this.ctl, SLEEPING) === 1) Atomics.notify(this.ctl, HEAD, 1);
  }

  /** The slot index of datagram i (for what the producer keeps beside the ring). */
  slotOf(i: number): number {
    return (i >>> 0) % this.slots;
  }

  /** The results for every datagram up to index `upTo` (exclusive) were processed: free their slots. */
  release(upTo: number): void {
    this.released = upTo;
  }

  /** Datagrams put in whose results have not been processed yet. */
  inFlight(): number {
    return (this.ctl[HEAD] - this.released) | 0;
  }

  /** Asks the consumer to end (it finishes the datagram it is on). */
  stop(): void {
    Atomics.store(this.ctl, STOP, 1);
    Atomics.notify(this.ctl, HEAD, 1);
  }

  // --- consumer (the verifier thread) ---

  /** Index of the next datagram to take. */
  taken(): number {
    return Atomics.load(this.ctl, TAKEN);
  }

  /** Index one past the last datagram put in (acquire: its bytes are visible). */
  head(): number {
    return Atomics.load(this.ctl, HEAD);
  }

  stopped(): boolean {
    return Atomics.load(this.ctl, STOP) === 1;
  }

  /** A view (no copy) of datagram i's bytes; valid until the producer releases it. */
  view(i: number): Buffer {
    const slot = (i >>> 0) % this.slots;
    return Buffer.from(this.data.buffer, this.data.byteOffset + slot * DATAGRAM_BYTES_MAX, this.lens[slot]);
  }

  /** Datagrams before i are done with (the consumer's progress, for inFlight on its side). */
  take(i: number): void {
    Atomics.store(this.ctl, TAKEN, i | 0);
  }

  /** Sleeps until the head moves past `head` or timeoutMs passes (the consumer only). */
  wait(head: number, timeoutMs: number): void {
    Atomics.store(this.ctl, SLEEPING, 1);
    // Re-checked after raising the flag: a put() between the caller's check and the flag would
    // otherwise not notify, and the datagram would wait for the timeout.
    if (Atomics.load(this.ctl, HEAD) === head && !this.stopped()) Atomics.wait(this.ctl, HEAD, head, timeoutMs);
    Atomics.store(this.ctl, SLEEPING, 0);
  }
}
