/**
 * The outbox: a bounded, flash-backed queue of readings waiting for their PUBACK. Pure: the
 * storage is injected, time is an argument, nothing here reads a clock.
 *
 *   var ob = new Outbox({ storage })      recovers what flash holds (never throws on its content)
 *   seq = ob.append(r, ts)                stores a reading {seq, ts, r}; -1 when it cannot
 *   ob.setLive(up)                        the broker session came up / went down
 *   seq = ob.next(now)                    the next reading to publish, or -1 (nothing, not live,
 *                                         pendingMax handed out, or the drain rate says wait);
 *                                         then ob.payload is its telemetry JSON, ob.hist its flag
 *   ob.acked(seq)                         its PUBACK came: it leaves the outbox
 *   ob.rewind()                           hand out again everything not acked (hist = 1)
 *   ob.deadline()                         when next() may give something; -1: wait for an event
 *
 * PAYLOAD (INTERFACES.md): {"seq":n,"ts":ms,"r":{...},"hist":0|1}. seq counts up per device
 * across reboots, never reused once a reading may have left; the host deduplicates by
 * (device, seq).
 *
 * HIST. hist = 1 when the reading is a replay: it was stored before the current live period
 * began (taken during an outage or before the first connection, or recovered after a reboot),
 * or it is handed out a second time (after rewind()). A reading taken while live and published
 * for the first time has hist = 0. (Messages the MQTT session re-sends from its in-flight window
 * after a reconnect keep their bytes, as a re-delivery must.)
 *
 * FLASH LAYOUT (Espruino Storage: names <= 28 chars; an offset write may only program bytes
 * that are still 0xFF, so appending never rewrites a file):
 *   <prefix>.<n>       segments of segmentBytes, created 0xFF-filled by their first record and
 *                      appended at increasing offsets. A record is its floor (the ack mark and
 *                      the dropped count when it was written), a space, the payload without its
 *                      hist member, '\n': `12,0 {"seq":15,"ts":1700000000000,"r":{"t":21.5}` +
 *                      '\n'. It never holds '\n' or 0xFF inside (JSON escapes control chars;
 *                      0xFF is refused), so the first 0xFF byte is the end of the data and a
 *                      record without its '\n' is torn.
 *   <prefix>.a / .b    the ack mark log: entries `acked,dropped,check\n` appended the same way;
 *                      when one file is full the other is created with the newest entry BEFORE
 *                      the full one is erased, so a valid mark always exists.
 * ORDERING RULES:
 *   - a record is written BEFORE next() can hand it out, so nothing leaves that flash lacks;
 *   - a drop is persisted by the floor of the record whose append caused it, so a reboot never
 *     brings back a dropped reading after newer ones were delivered (order per device holds);
 *   - a segment is erased only when every record in it is acked or dropped, AFTER the mark that
 *     covers it is written, and never while it is the newest (its last seq keeps seq counting);
 *   - after a torn record its segment takes no more appends (the next record opens a new
 *     segment), so a torn record is always the last thing in its segment.
 *
 * RECOVERY (constructor): segments are scanned in number order; a record missing its '\n',
 * malformed, or out of sequence ends its segment (counted in `torn`) and only it is lost; a
 * segment without a valid record is erased. Readings acked before the last persisted mark are
 * skipped. The mark is persisted every markEvery acks and with every record,
 * so after a power cut at most markEvery - 1 acked readings (2 markEvery - 1 when the cut tears
 * the mark write itself), plus pendingMax acked out of order, are sent again: the host
 * deduplicates them by (device, seq). None that was appended and not dropped is lost.
 *
 * BOUNDS. At most recordsMax readings (RAM holds no per-reading state, only the flash does)
 * and segmentsMax segments of segmentBytes. When full the OLDEST reading is dropped, or its
 * whole oldest segment when the flash bound is hit first; each is counted in `dropped`, which
 * the mark persists (so it survives a reboot and can be reported).
 *
 * DRAIN PACING. next() hands out at most drainPerSecMax readings a second, with bursts of
 * drainBurstMax (a GCRA token bucket), so a fleet coming back after an outage does not flood
 * the broker. Live readings go through the same bucket: set the rate above the sampling rate.
 *
 * COST of the live path: append() is 1 JS call plus JSON.stringify and one storage write;
 * next() is 1 JS call (the record just appended is kept in RAM, so flash is not read back);
 * acked() is 1, plus a mark write every markEvery acks.
 */

/** The storage the outbox needs: Espruino's Storage with offset reads and writes. */
export interface OutboxStorage {
  /** The whole file, or length bytes from offset (fewer at its end); null/undefined when absent. */
  read(name: string, offset?: number, length?: number): string | null | undefined;
  /**
   * Writes data at offset. With size, the file is first (re)created as size bytes of 0xFF.
   * Without size the file must exist and only bytes still 0xFF may change (flash programs bits
   * from 1 to 0 only). false when the flash is full or the write failed.
   */
  writeAt(name: string, data: string, offset: number, size?: number): boolean;
  erase(name: string): void;
  /** Names that start with prefix. */
  list(prefix: string): string[];
}

export interface OutboxOptions {
  storage: OutboxStorage;
  /** File names are <prefix>.<n>, <prefix>.a, <prefix>.b: at most 28 chars. Default 'ob'. */
  prefix?: string;
  segmentBytes?: number;
  segmentsMax?: number;
  recordsMax?: number;
  recordBytesMax?: number;
  markEvery?: number;
  markBytes?: number;
  drainPerSecMax?: number;
  drainBurstMax?: number;
  pendingMax?: number;
}

/** One flash sector on the ESP32: a segment is created, filled and erased as a unit. */
export var SEGMENT_BYTES_DEFAULT = 4096;
/** 8 x 4 KB = 32 KB of the ESP32's 896 KB Storage: ~600 readings of ~50 bytes. */
export var SEGMENTS_MAX_DEFAULT = 8;
/** A 10 minute outage at one reading every 2 s is 300; 500 leaves room for slower drains. */
export var RECORDS_MAX_DEFAULT = 500;
/** A record is read back through a window of this many bytes: a reading has a few sensors. */
export var RECORD_BYTES_MAX_DEFAULT = 256;
/** Acks between mark writes: bounds the re-sends after a power cut (and the flash wear). */
export var MARK_EVERY_DEFAULT = 16;
/** One mark file: ~8 entries of up to ~30 bytes before the other file takes over. */
export var MARK_BYTES_DEFAULT = 256;
/** Drain rate after an outage: 500 readings drain in under two minutes. */
export var DRAIN_PER_SEC_MAX_DEFAULT = 5;
export var DRAIN_BURST_MAX_DEFAULT = 10;
/** Readings handed out and not yet acked; also bounds the ack bitmap (31 bits of one int). */
export var PENDING_MAX_DEFAULT = 16;
export var PENDING_MAX_LIMIT = 31;

var REC_HEAD = '{"seq":';
/** The floor prefix `mark,dropped ` of a record: two counts and two separators. */
var FLOOR_CHARS_MAX = 34;
var FF = String.fromCharCode(0xff);

export class Outbox {
  /** The reading next() returned: its seq, telemetry JSON and hist flag. */
  seq: number;
  payload: string;
  hist: number;
  /** Readings dropped because the outbox was full (or unreadable), persisted with the mark. */
  dropped: number;
  /** Records found torn or corrupt at recovery (this boot). */
  torn: number;
  /** Readings recovered from flash at boot. */
  recovered: number;
  /** Appends that failed: storage refused the write, or the reading is too large. */
  writeErrors: number;
  /** Mark entries written (flash writes spent on acks). */
  marks: number;
  _st: OutboxStorage;
  _px: string;
  _sb: number;
  _sm: number;
  _rm: number;
  _rb: number;
  _me: number;
  _mb: number;
  /** GCRA: ms between hand-outs, burst tolerance, theoretical arrival time. */
  _iv: number;
  _bt: number;
  _gt: number;
  _pm: number;
  /** Segments, oldest first: number, first seq, last seq. */
  _sn: number[];
  _sf: number[];
  _sl: number[];
  /** Newest segment: name, size, write offset, sealed (takes no more appends). */
  _wn: string;
  _ws: number;
  _wo: number;
  _sd: boolean;
  /** Next segment number and next seq. */
  _nn: number;
  _q: number;
  /** Ack mark: every seq <= _a is acked or dropped; bit i of _m: seq _a + 1 + i is acked. */
  _a: number;
  _m: number;
  /** Acks since the last mark write; mark file in use (0 = .a, 1 = .b) and its write offset
   * (-1: full or its tail is torn, so the next entry opens the other file). */
  _mk: number;
  _mf: number;
  _mo: number;
  /** Size of the mark file in use. */
  _ms: number;
  /** Retiring a dropped segment: mark first. */
  _rk: boolean;
  /** Cursor: the record next() reads next (seq, segment index, offset). May lag behind _a. */
  _c: number;
  _ci: number;
  _co: number;
  /** Live readings, of which unsent, and handed out awaiting acks. */
  _n: number;
  _u: number;
  _h: number;
  /** The record last appended, kept so the live path does not read flash back ('' when none):
   * its payload part, its length in flash, its seq. */
  _lt: string;
  _ll: number;
  _ls: number;
  /** Live: readings with seq >= _uq were stored during the current live period. */
  _lv: boolean;
  _uq: number;
  /** Highest seq handed out this boot. */
  _hs: number;

  constructor(o: OutboxOptions) {
    var rate = o.drainPerSecMax || DRAIN_PER_SEC_MAX_DEFAULT;
    var burst = o.drainBurstMax || DRAIN_BURST_MAX_DEFAULT;
    this._st = o.storage;
    this._px = (o.prefix || 'ob') + '.';
    this._sb = o.segmentBytes || SEGMENT_BYTES_DEFAULT;
    this._sm = o.segmentsMax || SEGMENTS_MAX_DEFAULT;
    this._rm = o.recordsMax || RECORDS_MAX_DEFAULT;
    this._rb = o.recordBytesMax || RECORD_BYTES_MAX_DEFAULT;
    this._me = o.markEvery || MARK_EVERY_DEFAULT;
    this._mb = o.markBytes || MARK_BYTES_DEFAULT;
    this._pm = o.pendingMax || PENDING_MAX_DEFAULT;
    this._iv = 1000 / rate;
    this._bt = (burst - 1) * this._iv;
    if (this._sm < 2 || this._pm > PENDING_MAX_LIMIT || this._rb > this._sb || this._px.length > 22 || !(rate > 0 && burst >= 1)) {
      throw new Error('outbox: need segmentsMax >= 2, pendingMax <= 31, recordBytesMax <= segmentBytes, a short prefix, a positive rate');
    }
    this._gt = 0;
    this.seq = -1;
    this.payload = '';
    this.hist = 0;
    this.dropped = this.torn = this.recovered = this.writeErrors = this.marks = 0;
    this._sn = [];
    this._sf = [];
    this._sl = [];
    this._wn = '';
    this._ws = this._wo = 0;
    this._sd = true;
    this._nn = this._q = 1;
    this._a = this._m = 0;
    this._mk = 0;
    this._mf = 1;
    this._mo = -1;
    this._ms = 0;
    this._rk = false;
    this._c = 1;
    this._ci = this._co = 0;
    this._n = this._u = this._h = 0;
    this._lt = '';
    this._ll = 0;
    this._ls = -1;
    this._lv = false;
    this._hs = 0;
    this._recover();
    this._uq = this._q;
  }

  /** Readings held (not acked, not dropped). */
  size(): number {
    return this._n;
  }

  /** Readings not handed out yet. */
  unsent(): number {
    return this._u;
  }

  /** Readings handed out and awaiting their ack. */
  pending(): number {
    return this._h;
  }

  /**
   * Stores a reading (r: sensor name -> number; ts: wall-clock ms) under the next seq and
   * returns that seq; -1 when it cannot be stored (counted in writeErrors). Drops the oldest
   * reading (or segment) first when a bound is reached. A write that throws (a power cut in the
   * emulator) propagates: the caller is gone anyway, and recovery handles the torn record.
   */
  append(r: object, ts: number): number {
    var seq = this._q;
    // ts in two parts: the interpreter prints numbers past 2^31 with 12 significant digits,
    // and a millisecond time has 13.
    var hi = Math.floor(ts / 1000000);
    var body =
      REC_HEAD + seq + ',"ts":' + (hi ? hi + ('' + (1000000 + Math.floor(ts - hi * 1000000))).substring(1) : Math.floor(ts)) + ',"r":' + JSON.stringify(r);
    var st = this._st;
    var rec: string;
    var len: number;
    var k: number;
    var name: string;
    if (body.length + FLOOR_CHARS_MAX > this._rb || body.indexOf(FF) >= 0 || !(ts >= 0)) {
      this.writeErrors++;
      return -1;
    }
    if (this._n >= this._rm) this._dropOne();
    // The floor (mark and dropped count) rides on every record: a drop is persisted by the
    // very record that caused it, so a reboot never brings a dropped reading back late.
    rec = this._a + ',' + this.dropped + ' ' + body + '\n';
    len = rec.length;
    k = this._sn.length;
    if (this._sd || this._wo + len > this._ws) {
      // A new segment, created by its first record. The flash bound first: the oldest goes.
      if (k >= this._sm) this._dropSegment();
      name = this._px + this._nn;
      if (!st.writeAt(name, rec, 0, this._sb)) {
        st.erase(name);
        this.writeErrors++;
        return -1;
      }
      this._sn.push(this._nn++);
      this._sf.push(seq);
      this._sl.push(seq);
      this._wn = name;
      this._ws = this._sb;
      this._wo = len;
      this._sd = false;
      if (!this._u) {
        this._ci = this._sn.length - 1;
        this._co = 0;
        this._c = seq;
      }
      // The previous newest segment may be finished already.
      while (this._sn.length > 1 && this._a >= this._sl[0]) this._retire();
    } else {
      if (!st.writeAt(this._wn, rec, this._wo)) {
        // Part of it may have landed: nothing more goes into this segment.
        this._sd = true;
        this.writeErrors++;
        return -1;
      }
      if (!this._u) {
        this._ci = k - 1;
        this._co = this._wo;
        this._c = seq;
      }
      this._wo += len;
      this._sl[k - 1] = seq;
    }
    this._q = seq + 1;
    this._n++;
    this._u++;
    this._lt = body;
    this._ll = len;
    this._ls = seq;
    if (this._mk >= this._me) this._mark();
    return seq;
  }

  /**
   * The next reading to publish, oldest first: returns its seq and sets seq, payload and hist;
   * -1 when there is none to send now (see deadline()).
   */
  next(now: number): number {
    var t = this._gt > now ? this._gt : now;
    var seq: number;
    var body: string;
    var s: string | null | undefined;
    var e: number;
    var len: number;
    var h: number;
    if (!this._u || !this._lv || this._h >= this._pm || t - now > this._bt) return -1;
    for (;;) {
      seq = this._c;
      // The ack bitmap covers 31 seqs past the mark: wait for acks beyond it.
      if (seq - this._a > PENDING_MAX_LIMIT) return -1;
      if (seq === this._ls) {
        body = this._lt;
        len = this._ll;
      } else {
        s = this._st.read(this._px + this._sn[this._ci], this._co, this._rb);
        e = s ? s.indexOf('\n') : -1;
        body = e > 0 ? (s as string).substring((s as string).indexOf(' ') + 1, e) : '';
        len = e + 1;
        if (body.indexOf(REC_HEAD + seq + ',') !== 0) {
          // Flash no longer holds what recovery or append saw: the rest of this segment is lost.
          this._lose();
          if (!this._u) return -1;
          continue;
        }
      }
      this._co += len;
      this._c = seq + 1;
      if (this._ci < this._sn.length - 1 && seq >= this._sl[this._ci]) this._norm();
      if (seq > this._a && !((this._m >>> (seq - this._a - 1)) & 1)) break;
      // Acked or dropped while waiting behind the cursor (after rewind() or a drop): skip it.
    }
    if (seq === this._ls) {
      // Handed out: RAM need not hold it any more (a re-send after rewind() reads flash).
      this._lt = '';
      this._ls = -1;
    }
    h = seq < this._uq || seq <= this._hs ? 1 : 0;
    if (seq > this._hs) this._hs = seq;
    this._h++;
    this._u--;
    this._gt = t + this._iv;
    this.seq = seq;
    this.hist = h;
    this.payload = body + (h ? ',"hist":1}' : ',"hist":0}');
    return seq;
  }

  /** The PUBACK for seq came: the reading leaves the outbox. Stale or unknown seqs are ignored. */
  acked(seq: number): void {
    var b = seq - this._a - 1;
    if (b < 0 || b >= PENDING_MAX_LIMIT || seq >= this._q || (this._m >>> b) & 1) return;
    this._m |= 1 << b;
    this._n--;
    if (seq < this._c) this._h--;
    else this._u--;
    // _advance(), inlined: the hot path.
    while (this._m & 1) {
      this._m >>>= 1;
      this._a++;
      this._mk++;
      if (this._sn.length > 1 && this._a >= this._sl[0]) this._retire();
    }
    if (this._mk >= this._me) this._mark();
  }

  /**
   * The session lost what it had in flight (it was dropped, or the owner re-sends from the
   * outbox instead): every reading not acked is handed out again, oldest first, with hist = 1.
   */
  rewind(): void {
    this._u += this._h;
    this._h = 0;
    this._lt = '';
    this._ls = -1;
    if (this._sn.length) {
      this._ci = this._co = 0;
      this._c = this._sf[0];
    }
  }

  /** Readings taken from now on are live (hist = 0) while up; next() hands out only while up. */
  setLive(up: boolean): void {
    if (up && !this._lv) this._uq = this._q;
    this._lv = up;
  }

  /**
   * When next() may hand out a reading (absolute ms, possibly already past); -1 when it waits
   * for an event instead: nothing unsent, not live, or acks outstanding at the bound.
   */
  deadline(): number {
    if (!this._u || !this._lv || this._h >= this._pm || this._c - this._a > PENDING_MAX_LIMIT) return -1;
    return this._gt - this._bt;
  }

  /** Past the last record of a segment that is not the newest, the cursor moves to the next one. */
  _norm(): void {
    if (this._c > this._sl[this._ci] && this._ci < this._sn.length - 1) {
      this._ci++;
      this._co = 0;
      this._c = this._sf[this._ci];
    }
  }

  /** Moves the mark over the acked or dropped seqs at its front, retiring finished segments. */
  _advance(): void {
    while (this._m & 1) {
      this._m >>>= 1;
      this._a++;
      this._mk++;
      if (this._sn.length > 1 && this._a >= this._sl[0]) this._retire();
    }
  }

  /**
   * Segment 0 is finished and not the newest: erase it. No mark is needed first: recovery takes
   * every seq before the oldest segment in flash as acked. A whole-segment drop (_rk) persists
   * its dropped count BEFORE the erase, since its readings vanish with it.
   */
  _retire(): void {
    var g: number;
    if (this._rk && this._mk) this._mark();
    this._st.erase(this._px + this._sn[0]);
    this._sn.shift();
    this._sf.shift();
    this._sl.shift();
    if (--this._ci < 0) {
      this._ci = this._co = 0;
      this._c = this._sf[0];
    }
    // Seqs lost to corruption leave a gap before the next segment: the mark jumps it.
    g = this._sf[0] - this._a - 1;
    if (g > 0) {
      this._a += g;
      this._m = g < 32 ? this._m >>> g : 0;
    }
  }

  /** Drops the oldest reading: counted, and the mark moves over it. */
  _dropOne(): void {
    this.dropped++;
    this._n--;
    if (this._a + 1 < this._c) this._h--;
    else this._u--;
    this._m |= 1;
    this._advance();
  }

  /** Drops every reading left in the oldest segment, which is then erased. */
  _dropSegment(): void {
    var last = this._sl[0];
    this._rk = true;
    while (this._a < last) {
      if (this._m & 1) this._advance();
      else this._dropOne();
    }
    this._rk = false;
  }

  /** The cursor's segment cannot be read back: its remaining readings are counted as dropped. */
  _lose(): void {
    var i = this._ci;
    var k = 0;
    var seq: number;
    for (seq = this._c > this._a ? this._c : this._a + 1; seq <= this._sl[i]; seq++) {
      if (seq - this._a > PENDING_MAX_LIMIT || !((this._m >>> (seq - this._a - 1)) & 1)) k++;
    }
    this.dropped += k;
    this._n -= k;
    this._u -= k;
    this._sl[i] = this._c - 1;
    if (i === this._sn.length - 1) {
      // Nothing readable is left after the cursor: no reading waits.
      this._sd = true;
      this._u = 0;
    }
    this._norm();
    while (this._sn.length > 1 && this._a >= this._sl[0]) this._retire();
  }

  /** Appends the mark entry `acked,dropped,check`; switches files when this one is full. */
  _mark(): void {
    var e = this._a + ',' + this.dropped + ',' + ((this._a + this.dropped) % 997) + '\n';
    var f = this._mf;
    var st = this._st;
    if (this._mo >= 0 && this._mo + e.length <= this._ms) {
      if (!st.writeAt(this._px + (f ? 'b' : 'a'), e, this._mo)) {
        this._mo = -1;
        return;
      }
      this._mo += e.length;
    } else {
      // The other file gets the entry BEFORE this one is erased.
      f = 1 - f;
      if (!st.writeAt(this._px + (f ? 'b' : 'a'), e, 0, this._mb)) return;
      st.erase(this._px + (f ? 'a' : 'b'));
      this._mf = f;
      this._mo = e.length;
      this._ms = this._mb;
    }
    this._mk = 0;
    this.marks++;
  }

  /** Reads the mark log and the segments back (the constructor's work). */
  _recover(): void {
    var st = this._st;
    var px = this._px;
    var names = st.list(px) || [];
    var nums: number[] = [];
    var i: number;
    var t: string;
    var f: string[];
    var n: number;
    var d: number;
    var a = 0;
    var pl = -1;
    var s: string | null | undefined;
    var off: number;
    var e: number;
    var sp: number;
    var seq: number;
    var first: number;
    var last: number;
    var sealed: boolean;
    // The mark: the greatest valid entry of either file.
    for (i = 0; i < 2; i++) {
      s = st.read(px + (i ? 'b' : 'a'));
      if (!s) continue;
      off = 0;
      n = -1;
      while (off < s.length && s.charAt(off) !== FF) {
        e = s.indexOf('\n', off);
        if (e < 0) break;
        f = s.substring(off, e).split(',');
        off = e + 1;
        seq = parseInt(f[0], 10);
        d = parseInt(f[1], 10);
        if (f.length === 3 && String(seq) === f[0] && String(d) === f[1] && String((seq + d) % 997) === f[2] && seq > n) {
          n = seq;
          if (seq > a || (seq === a && d > this.dropped)) {
            a = seq;
            this.dropped = d;
          }
        }
      }
      if (n >= 0 && n === a) {
        // Entries go on after the last one only where nothing but 0xFF follows (no torn tail).
        this._mf = i;
        this._mo = off < s.length && s.charAt(off) === FF ? off : -1;
        this._ms = s.length;
      }
    }
    for (i = 0; i < names.length; i++) {
      if (names[i].indexOf(px) !== 0) continue;
      t = names[i].substring(px.length);
      n = parseInt(t, 10);
      if (String(n) === t && n >= 0) nums.push(n);
    }
    nums.sort(function (x, y) {
      return x - y;
    });
    if (nums.length) this._nn = nums[nums.length - 1] + 1;
    for (i = 0; i < nums.length; i++) {
      s = st.read(px + nums[i]);
      off = 0;
      first = last = -1;
      sealed = false;
      while (s && off < s.length && s.charAt(off) !== FF) {
        e = s.indexOf('\n', off);
        sp = e < 0 ? -1 : s.indexOf(' ', off);
        seq = sp < 0 || sp > e ? -1 : recordSeq(s, sp + 1, e);
        f = seq < 0 ? [] : s.substring(off, sp).split(',');
        n = parseInt(f[0], 10);
        d = parseInt(f[1], 10);
        // Torn (no '\n'), malformed, or out of sequence: it ends its segment.
        if (seq < 0 || f.length !== 2 || String(n) !== f[0] || String(d) !== f[1] || n >= seq || (last >= 0 ? seq !== last + 1 : seq <= pl)) {
          sealed = true;
          this.torn++;
          break;
        }
        if (n > a || (n === a && d > this.dropped)) {
          a = n;
          this.dropped = d;
        }
        if (first < 0) first = seq;
        last = seq;
        off = e + 1;
      }
      if (first < 0) {
        st.erase(px + nums[i]);
        continue;
      }
      this._sn.push(nums[i]);
      this._sf.push(first);
      this._sl.push(last);
      this._wn = px + nums[i];
      this._ws = (s as string).length;
      this._wo = off;
      this._sd = sealed || off >= this._ws;
      pl = last;
    }
    this._q = (pl > a ? pl : a) + 1;
    // Readings before the first one in flash were acked (the mark lags by design).
    if (this._sn.length && this._sf[0] - 1 > a) a = this._sf[0] - 1;
    this._a = a;
    this._c = this._q;
    this._ci = this._sn.length ? this._sn.length - 1 : 0;
    this._co = this._wo;
    for (i = this._sn.length - 1; i >= 0; i--) {
      if (this._sl[i] <= a) break;
      this._n += this._sl[i] - (this._sf[i] > a ? this._sf[i] : a + 1) + 1;
      // The cursor starts at the first reading not acked.
      this._ci = i;
      this._co = 0;
      this._c = this._sf[i];
    }
    if (this._c <= a) {
      // It is inside its segment: walk the records up to it.
      s = st.read(px + this._sn[this._ci]) as string;
      while (this._c <= a) {
        this._co = s.indexOf('\n', this._co) + 1;
        this._c++;
      }
    }
    this._u = this.recovered = this._n;
    while (this._sn.length > 1 && this._a >= this._sl[0]) this._retire();
    while (this._n > this._rm) this._dropOne();
  }
}

/** The seq of the record s[off..e) ('\n' at e), or -1 when it is not a whole record. */
function recordSeq(s: string, off: number, e: number): number {
  var c = s.indexOf(',', off + 7);
  var t: string;
  var n: number;
  if (s.substring(off, off + 7) !== REC_HEAD || c < 0 || c > e || s.charAt(e - 1) !== '}') return -1;
  t = s.substring(off + 7, c);
  n = parseInt(t, 10);
  return String(n) === t && n > 0 ? n : -1;
}
