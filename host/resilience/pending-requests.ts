/**
 * Requests in flight on the host, as promises: the firmware's Requester core (correlation ids
 * that double as idempotency keys, per-request deadlines, a bound on requests in flight, late
 * and duplicate replies dropped and counted) driven by one timer armed at the core's next
 * deadline. The transport is the caller's: `request(send, …)` hands it the id and deadline to
 * encode, `receive(id, ok, value)` feeds replies back.
 *
 * A retry re-sends the same request: `resend(id)` (same slot, same id), or after an error a new
 * `request(…, { key: id })` with the same id, so the answering side replays its cached answer
 * instead of executing twice.
 */
import { OPEN_FULL, Requester } from '../../firmware/core/request-response.js';
import type { Timers } from './executor.js';

export type PendingCode = 'full' | 'key_busy' | 'deadline' | 'cancelled' | 'send' | 'closed';

export class PendingError extends Error {
  constructor(
    readonly code: PendingCode,
    message: string,
    readonly id?: string,
  ) {
    super(message);
    this.name = 'PendingError';
  }
}

export interface Reply {
  id: string;
  /** false for an error reply from the peer (value is its error). */
  ok: boolean;
  value: unknown;
  /** Times the request was sent. */
  sends: number;
}

export type Send = (id: string, deadlineMs: number) => void | PromiseLike<void>;

export interface PendingOptions {
  /** Requests in flight at once. */
  inflightMax: number;
  /** Finished ids remembered to tell late from duplicate replies (default 2 * inflightMax). */
  recentMax?: number;
  /** Prefix of generated ids: make it unique per process (default: random). */
  idPrefix?: string;
  now?: () => number;
  timers?: Timers;
}

interface Waiter {
  resolve: (r: Reply) => void;
  reject: (e: PendingError) => void;
  send: Send;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

const realTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export class PendingRequests {
  private readonly rq: Requester;
  private readonly waiters: Array<Waiter | null>;
  private readonly now: () => number;
  private readonly timers: Timers;
  private timer: unknown = null;
  private timerAt = Infinity;

  constructor(o: PendingOptions) {
    this.now = o.now ?? Date.now;
    this.timers = o.timers ?? realTimers;
    this.waiters = new Array(o.inflightMax).fill(null);
    this.rq = new Requester({
      inflightMax: o.inflightMax,
      recentMax: o.recentMax,
      idPrefix: o.idPrefix ?? Math.floor(Math.random() * 0x7fffffff).toString(36) + '.',
      onEvent: (name, slot) => this.onEvent(name, slot),
    });
  }

  /**
   * Opens a request with an absolute deadline and sends it. Resolves with the reply (an error
   * reply resolves with ok false); rejects with a PendingError when it cannot be opened, the
   * send fails, the deadline passes or the signal aborts.
   */
  request(send: Send, o: { deadlineMs: number; key?: string; signal?: AbortSignal }): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      if (o.signal?.aborted) return reject(new PendingError('cancelled', 'cancelled before it was sent', o.key));
      const now = this.now();
      const slot = this.rq.open(now, o.deadlineMs, o.key);
      if (slot < 0) {
        return reject(
          slot === OPEN_FULL
            ? new PendingError('full', 'too many requests in flight', o.key)
            : new PendingError('key_busy', `request ${o.key} is already in flight`, o.key),
        );
      }
      const w: Waiter = { resolve, reject, send, signal: o.signal, onAbort: null };
      this.waiters[slot] = w;
      if (o.signal) {
        const id = this.rq.id(slot);
        w.onAbort = () => {
          const s = this.rq.slotOf(id);
          if (s >= 0 && this.waiters[s] === w) this.rq.fail(s, 'cancelled', this.now());
        };
        o.signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.transmit(slot);
      this.arm();
    });
  }

  /** Sends the request with this id again (a retransmission); false if it is not waiting. */
  resend(id: string): boolean {
    const s = this.rq.slotOf(id);
    if (s < 0 || this.waiters[s] === null) return false;
    return this.transmit(s);
  }

  /** A reply from the transport. Returns false when it was dropped (late, duplicate, unknown). */
  receive(id: string, ok: boolean, value: unknown): boolean {
    const s = this.rq.receive(id, ok, value, this.now());
    this.arm();
    return s >= 0;
  }

  /** The peer confirmed it is processing the request. */
  ack(id: string): boolean {
    return this.rq.ack(id, this.now()) >= 0;
  }

  get stats() {
    const r = this.rq;
    return {
      inflight: r.size,
      completed: r.completedCount,
      errors: r.errorCount,
      late: r.lateCount,
      duplicate: r.duplicateCount,
      unknown: r.unknownCount,
    };
  }

  /** Fails every request in flight with 'closed' and stops the timer. */
  close(): void {
    for (let s = 0; s < this.waiters.length; s++) if (this.waiters[s]) this.rq.fail(s, 'closed', this.now());
    if (this.timer !== null) this.timers.clear(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private transmit(slot: number): boolean {
    const w = this.waiters[slot] as Waiter;
    const id = this.rq.id(slot);
    // Mark it sent BEFORE handing it over: a reply may come back before send() returns.
    this.rq.sent(slot, this.now());
    try {
      const r = w.send(id, this.rq.deadline(slot));
      if (r && typeof r.then === 'function') r.then(undefined, () => this.sendFailed(id, w));
    } catch {
      this.sendFailed(id, w);
      return false;
    }
    return true;
  }

  private sendFailed(id: string, w: Waiter): void {
    const s = this.rq.slotOf(id);
    if (s >= 0 && this.waiters[s] === w) this.rq.fail(s, 'send', this.now());
  }

  private onEvent(name: string, slot: number): void {
    if (slot < 0) return;
    const w = this.waiters[slot];
    if (!w) return;
    if (name === 'received') {
      const reply: Reply = { id: this.rq.id(slot), ok: this.rq.ok(slot), value: this.rq.value(slot), sends: this.rq.sends(slot) };
      this.done(slot, w);
      this.rq.complete(slot);
      w.resolve(reply);
    } else if (name === 'error') {
      const reason = String(this.rq.value(slot)) as PendingCode;
      const id = this.rq.id(slot);
      this.done(slot, w);
      const msg = reason === 'deadline' ? 'no reply before the deadline' : reason === 'send' ? 'sending failed' : reason;
      w.reject(new PendingError(reason, `request ${id}: ${msg}`, id));
    }
  }

  private done(slot: number, w: Waiter): void {
    this.waiters[slot] = null;
    if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
  }

  /** Keeps one timer armed at the core's next deadline. */
  private arm(): void {
    const dl = this.rq.nextDeadlineMs();
    if (dl === this.timerAt) return;
    if (this.timer !== null) this.timers.clear(this.timer);
    this.timer = null;
    this.timerAt = dl;
    if (dl === Infinity) return;
    this.timer = this.timers.set(
      () => {
        this.timer = null;
        this.timerAt = Infinity;
        this.rq.tick(this.now());
        this.arm();
      },
      Math.max(0, dl - this.now()),
    );
  }
}
