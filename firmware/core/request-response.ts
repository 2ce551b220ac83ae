/**
 * Request-response over a message bus, both ends, as pure state machines.
 *
 * Requester: many requests in flight, each in a fixed slot (no allocation per request besides
 * its id string). One request walks
 *
 *   idle --sent--> sent --ack--> processing --reply--> received --complete--> completed
 *     \______________\_______________\___ deadline / fail ____________________> error
 *
 * - Correlation: every request has an id; a reply names it. The id doubles as the idempotency
 *   key: a retry sends the same id again (`sent()` once more on the same slot, or `open()` with
 *   the same key after an error), so the answering side can recognise it.
 * - Deadline: each request carries an absolute deadline (encode `deadline(slot)` into it, the
 *   `dl` field of the RPC request) so the answering side can drop work nobody waits for.
 *   A request still unanswered at its deadline becomes an error; a reply arriving at or after
 *   the deadline is late even if tick() has not run yet, so the outcome never depends on how
 *   punctual the shell's timer was.
 * - Bounded: at most `inflightMax` requests; open() refuses more.
 * - Late and duplicate replies are dropped and counted: a reply for a request that ended in an
 *   error is late, a second reply for one that got its reply is a duplicate, a reply nobody
 *   remembers is unknown. The ids of the last `recentMax` finished requests are kept to tell
 *   these apart.
 * - completed happens at most once per request: complete() returns true only for the call
 *   that moves it from received; error and completed exclude each other.
 *
 * Events: `onEvent(name, slot, id)` on every transition, name = the state entered ('idle',
 * 'sent', 'processing', 'received', 'completed', 'error'), and for dropped replies ('late',
 * 'duplicate', 'unknown', slot -1). Terminal events fire BEFORE the slot is freed, so a
 * handler may still read value(slot) (the error reason for 'error').
 * Lookups scan the slots: O(inflightMax), which is small on purpose (a device has a few).
 *
 * AnswerCache (answering side): a bounded cache of recent answers keyed by request id, so a
 * retried request is answered again, not executed twice. See below.
 */

export var RR_IDLE = 0;
export var RR_SENT = 1;
export var RR_PROCESSING = 2;
export var RR_RECEIVED = 3;
export var RR_COMPLETED = 4;
export var RR_ERROR = 5;
/** A slot holding no request. */
export var RR_FREE = -1;
export var RR_STATE_NAMES = ['idle', 'sent', 'processing', 'received', 'completed', 'error'];

/** open() results when no slot is handed out. */
export var OPEN_FULL = -1;
export var OPEN_KEY_BUSY = -2;

/** Longest correlation id accepted from a peer: ids are kept per cached answer and per slot. */
export var ID_LENGTH_MAX = 64;

export interface RequesterOptions {
  /** Requests in flight at once (slots). */
  inflightMax: number;
  /** Finished ids remembered to classify stray replies. Default 2 * inflightMax. */
  recentMax?: number;
  /** Prefix of generated ids; make it unique per boot (e.g. drawn from the seeded rng). */
  idPrefix?: string;
  onEvent?: (name: string, slot: number, id: string) => void;
}

export class Requester {
  declare lateCount: number;
  declare duplicateCount: number;
  declare unknownCount: number;
  declare completedCount: number;
  declare errorCount: number;
  /** Requests holding a slot. */
  declare size: number;
  declare _id: string[];
  declare _st: number[];
  declare _dl: number[];
  declare _sn: number[];
  declare _ok: boolean[];
  declare _v: any[];
  declare _rid: string[];
  declare _rst: number[];
  declare _ri: number;
  declare _sq: number;
  declare _px: string;
  declare _ev: ((name: string, slot: number, id: string) => void) | null;

  constructor(o: RequesterOptions) {
    var n = o.inflightMax;
    var r = o.recentMax === undefined ? 2 * n : o.recentMax;
    var i: number;
    if (!(n >= 1) || !(r >= 0)) throw new Error('requester: inflightMax must be >= 1');
    this._id = [];
    this._st = [];
    this._dl = [];
    this._sn = [];
    this._ok = [];
    this._v = [];
    for (i = 0; i < n; i++) {
      this._id.push('');
      this._st.push(RR_FREE);
      this._dl.push(Infinity);
      this._sn.push(0);
      this._ok.push(false);
      this._v.push(undefined);
    }
    this._rid = [];
    this._rst = [];
    for (i = 0; i < r; i++) {
      this._rid.push('');
      this._rst.push(RR_FREE);
    }
    this._ri = 0;
    this._sq = 0;
    this._px = o.idPrefix || '';
    this._ev = o.onEvent || null;
    this.lateCount = 0;
    this.duplicateCount = 0;
    this.unknownCount = 0;
    this.completedCount = 0;
    this.errorCount = 0;
    this.size = 0;
  }

  /**
   * A new request, idle, with an absolute deadline (Infinity: none). key reuses an idempotency
   * key (a retry of an earlier request); without it a fresh id is generated. Returns the slot,
   * OPEN_FULL when inflightMax requests are in flight, OPEN_KEY_BUSY when key is in flight.
   */
  open(nowMs: number, deadlineMs: number, key?: string): number {
    var s: number;
    if (key !== undefined && this._find(key) >= 0) return OPEN_KEY_BUSY;
    s = this._st.indexOf(RR_FREE);
    if (s < 0) return OPEN_FULL;
    this._id[s] = key !== undefined ? key : this._px + (++this._sq).toString(36);
    this._dl[s] = deadlineMs;
    this._sn[s] = 0;
    this._ok[s] = false;
    this._v[s] = undefined;
    this.size++;
    this._to(s, RR_IDLE);
    return s;
  }

  /** The shell handed the request to the transport (again, for a retransmission). */
  sent(slot: number, nowMs: number): boolean {
    var st = this._st[slot];
    if (!(st >= RR_IDLE && st <= RR_PROCESSING)) return false;
    this._sn[slot]++;
    this._to(slot, RR_SENT);
    return true;
  }

  /** The peer (or the transport) confirmed it has the request. Returns the slot or -1. */
  ack(id: string, nowMs: number): number {
    var s = this._find(id);
    if (s < 0 || this._st[s] !== RR_SENT) return -1;
    this._to(s, RR_PROCESSING);
    return s;
  }

  /**
   * A reply for id: ok with its value, or an error reply (ok false, value = the error).
   * Returns the slot now holding it (state received), or -1 when the reply was dropped.
   */
  receive(id: string, ok: boolean, value: any, nowMs: number): number {
    var s = this._find(id);
    var st = s < 0 ? RR_FREE : this._st[s];
    var i: number;
    if (st >= RR_IDLE && st <= RR_PROCESSING) {
      if (nowMs >= this._dl[s]) {
        // The deadline passed before the reply: the request fails now and the reply is late.
        this._fail(s, 'deadline');
        return this._drop('late', id);
      }
      this._ok[s] = ok;
      this._v[s] = value;
      this._to(s, RR_RECEIVED);
      return s;
    }
    if (st === RR_RECEIVED) return this._drop('duplicate', id);
    for (i = 0; i < this._rid.length; i++) {
      if (this._rst[i] !== RR_FREE && this._rid[i] === id) {
        return this._drop(this._rst[i] === RR_COMPLETED ? 'duplicate' : 'late', id);
      }
    }
    return this._drop('unknown', id);
  }

  /** Hands the received reply over: true exactly once per request, then the slot is free. */
  complete(slot: number): boolean {
    if (this._st[slot] !== RR_RECEIVED) return false;
    this.completedCount++;
    this._to(slot, RR_COMPLETED);
    this._free(slot, RR_COMPLETED);
    return true;
  }

  /** Ends a request that has no reply yet with an error (send failed, cancelled...). */
  fail(slot: number, reason: any, nowMs: number): boolean {
    var st = this._st[slot];
    if (!(st >= RR_IDLE && st <= RR_PROCESSING)) return false;
    this._fail(slot, reason);
    return true;
  }

  /** Fails every unanswered request whose deadline is at or before nowMs; returns how many. */
  tick(nowMs: number): number {
    var n = 0;
    var s: number;
    for (s = 0; s < this._st.length; s++) {
      if (this._st[s] >= RR_IDLE && this._st[s] <= RR_PROCESSING && nowMs >= this._dl[s]) {
        this._fail(s, 'deadline');
        n++;
      }
    }
    return n;
  }

  /** The earliest deadline of an unanswered request; Infinity when none. */
  nextDeadlineMs(): number {
    var d = Infinity;
    var s: number;
    for (s = 0; s < this._st.length; s++) {
      if (this._st[s] >= RR_IDLE && this._st[s] <= RR_PROCESSING && this._dl[s] < d) d = this._dl[s];
    }
    return d;
  }

  /** The slot of the request with this id, or -1. */
  slotOf(id: string): number {
    return this._find(id);
  }

  id(slot: number): string {
    return this._id[slot];
  }

  state(slot: number): number {
    return this._st[slot];
  }

  deadline(slot: number): number {
    return this._dl[slot];
  }

  /** How many times the request was sent. */
  sends(slot: number): number {
    return this._sn[slot];
  }

  /** After received: whether the reply was a success. */
  ok(slot: number): boolean {
    return this._ok[slot];
  }

  /** After received: the reply's value or error; in the 'error' event: the reason. */
  value(slot: number): any {
    return this._v[slot];
  }

  _find(id: string): number {
    var s: number;
    for (s = 0; s < this._st.length; s++) if (this._st[s] !== RR_FREE && this._id[s] === id) return s;
    return -1;
  }

  _fail(s: number, reason: any): void {
    this._v[s] = reason;
    this.errorCount++;
    this._to(s, RR_ERROR);
    this._free(s, RR_ERROR);
  }

  _free(s: number, how: number): void {
    if (this._rid.length) {
      this._rid[this._ri] = this._id[s];
      this._rst[this._ri] = how;
      this._ri = this._ri + 1 === this._rid.length ? 0 : this._ri + 1;
    }
    this._st[s] = RR_FREE;
    this._v[s] = undefined;
    this.size--;
  }

  _drop(name: string, id: string): number {
    if (name === 'late') this.lateCount++;
    else if (name === 'duplicate') this.duplicateCount++;
    else this.unknownCount++;
    if (this._ev) this._ev(name, -1, id);
    return -1;
  }

  _to(s: number, st: number): void {
    this._st[s] = st;
    if (this._ev) this._ev(RR_STATE_NAMES[st], s, this._id[s]);
  }
}

/** AnswerCache.begin() decisions. */
export var ANSWER_EXECUTE = 0;
export var ANSWER_REPLAY = 1;
export var ANSWER_PENDING = 2;
export var ANSWER_EXPIRED = 3;
export var ANSWER_BUSY = 4;
export var ANSWER_INVALID = 5;
export var ANSWER_NAMES = ['execute', 'replay', 'pending', 'expired', 'busy', 'invalid'];

export interface AnswerCacheOptions {
  /** Answers kept (and requests executing at once): each holds its encoded reply in RAM. */
  answersMax: number;
}

/**
 * The answering side's idempotency cache: a ring of the last answersMax entries keyed by
 * request id. For each incoming request the shell asks begin(id, dl, now):
 * - EXECUTE: new id; run the handler, then finish(id, encodedAnswer).
 * - REPLAY: answered before; send `answer` (set by begin) again, do not execute.
 * - PENDING: the same id is executing right now; drop this copy (its answer will follow).
 * - EXPIRED: the request's deadline has passed; nobody waits for the answer, drop it.
 * - BUSY: every entry is executing; answersMax bounds concurrent work too, so refuse.
 * - INVALID: the id is not a string of 1..ID_LENGTH_MAX chars or dl is not a number.
 * Eviction: a free entry first, then one whose request deadline has passed (a retry of it
 * would be EXPIRED anyway, so its answer can never be replayed), then the oldest answered
 * entry. An executing entry is never evicted: that is what keeps execution at most once.
 */
export class AnswerCache {
  /** The cached answer, set by begin() when it returns ANSWER_REPLAY. */
  declare answer: string;
  declare replayCount: number;
  declare pendingCount: number;
  declare expiredCount: number;
  declare busyCount: number;
  declare invalidCount: number;
  declare _id: string[];
  declare _a: (string | null)[];
  declare _dl: number[];
  declare _sq: number[];
  declare _n: number;

  constructor(o: AnswerCacheOptions) {
    var i: number;
    if (!(o.answersMax >= 1)) throw new Error('answer cache: answersMax must be >= 1');
    this._id = [];
    this._a = [];
    this._dl = [];
    this._sq = [];
    for (i = 0; i < o.answersMax; i++) {
      this._id.push('');
      this._a.push(null);
      this._dl.push(0);
      this._sq.push(0);
    }
    this._n = 0;
    this.answer = '';
    this.replayCount = 0;
    this.pendingCount = 0;
    this.expiredCount = 0;
    this.busyCount = 0;
    this.invalidCount = 0;
  }

  /** Decides what to do with a request (id, deadline dl or undefined) arriving at nowMs. */
  begin(id: any, dl: any, nowMs: number): number {
    var s: number;
    var best = -1;
    var i: number;
    if (typeof id !== 'string' || id.length === 0 || id.length > ID_LENGTH_MAX || (dl !== undefined && typeof dl !== 'number')) {
      this.invalidCount++;
      return ANSWER_INVALID;
    }
    if (dl === undefined) dl = Infinity;
    if (nowMs >= dl) {
      this.expiredCount++;
      return ANSWER_EXPIRED;
    }
    s = this._find(id);
    if (s >= 0) {
      if (this._a[s] === null) {
        this.pendingCount++;
        return ANSWER_PENDING;
      }
      this.answer = this._a[s] as string;
      this.replayCount++;
      return ANSWER_REPLAY;
    }
    for (i = 0; i < this._id.length; i++) {
      if (this._id[i] === '') {
        best = i;
        break;
      }
    }
    if (best < 0) {
      for (i = 0; i < this._id.length; i++) {
        if (this._a[i] !== null && nowMs >= this._dl[i]) {
          best = i;
          break;
        }
      }
    }
    if (best < 0) {
      for (i = 0; i < this._id.length; i++) if (this._a[i] !== null && (best < 0 || this._sq[i] < this._sq[best])) best = i;
    }
    if (best < 0) {
      this.busyCount++;
      return ANSWER_BUSY;
    }
    this._id[best] = id;
    this._a[best] = null;
    this._dl[best] = dl;
    this._sq[best] = ++this._n;
    return ANSWER_EXECUTE;
  }

  /** Stores the encoded answer of an executing request. False if id is not executing. */
  finish(id: string, answer: string): boolean {
    var s = this._find(id);
    if (s < 0 || this._a[s] !== null) return false;
    this._a[s] = answer;
    return true;
  }

  /** The state of id: ANSWER_REPLAY (answered), ANSWER_PENDING (executing) or -1 (unknown). */
  lookup(id: string): number {
    var s = this._find(id);
    return s < 0 ? -1 : this._a[s] === null ? ANSWER_PENDING : ANSWER_REPLAY;
  }

  _find(id: string): number {
    var i: number;
    if (id === '') return -1;
    for (i = 0; i < this._id.length; i++) if (this._id[i] === id) return i;
    return -1;
  }
}
