/**
 * Reconnect supervisor: decides WHEN the device tries to reach its broker again. Pure: time is
 * an argument, randomness comes from the injected Rng, nothing here touches a socket.
 *
 * EVERY failure path ends in the same call, `failed(now, reason)`: Wi-Fi lost, a connect that
 * threw synchronously or was refused, a CONNACK timeout or refusal, a protocol error, a silent
 * broker, a dropped socket. The reason's kind (the text before ':', as the MQTT session writes
 * its close reasons) is counted. Each attempt goes through the retry and breaker cores:
 *   - Retry (../core/retry.ts): decorrelated jitter between baseMs and capMs, and a random
 *     initial phase in [0, phaseMs] at the start of every run, so a fleet that lost its broker
 *     at the same instant comes back spread out, not in lock-step;
 *   - CircuitBreaker (../core/circuit-breaker.ts): failuresToOpen failures in a row open it
 *     for a decorrelated-jitter duration in [openBaseMs, openCapMs] that grows while its
 *     half-open probes keep failing; while open no attempt starts.
 *
 *   sup.start(now)                  begin (boot): the first attempt waits the random phase
 *   act = sup.tick(now)             at sup.deadline(): ACT_CONNECT -> start an attempt now;
 *                                   ACT_ABORT -> the attempt took attemptTimeoutMs: drop its
 *                                   socket (the failure is already counted)
 *   sup.succeeded(now)              the attempt reached CONNACK accepted
 *   sup.failed(now, reason)         any failure of the attempt or of the live connection;
 *                                   returns false (and changes nothing) when no attempt or
 *                                   connection is current: a stale second report of one failure
 *
 * FLAPPING. A connection counts as a success for the breaker at CONNACK, but the retry run
 * only ends once it has stayed up for stableMs: a connection that drops sooner continues the
 * backoff (a broker that accepts and then kicks us is not hammered). A drop after stableMs
 * starts a fresh run: random phase, backoff from baseMs.
 *
 * PERSISTENCE. toJSON() is small and flat: breaker state, the backoff position of a failing
 * run, and the counters. `new ReconnectSupervisor(opts, saved, now)` restores it (damaged input
 * gives fresh state, never an exception): an open breaker stays open (a reboot never shortens an
 * open period) and a failing run continues its backoff, so a device that reboots in a loop while
 * its broker is down does not hit it at every boot. The shell persists it after failed() and
 * succeeded() (the runtime keeps it in its Storage state file).
 */
import { exponentialBackoff, restoreBackoff } from '../core/backoff.js';
import { BREAKER_STATE_NAMES, BreakerOptions, CircuitBreaker, OPEN, restoreBreaker } from '../core/circuit-breaker.js';
import { RETRY_RUNNING, RETRY_WAITING, Retry, RetryPolicy } from '../core/retry.js';
import { Rng } from '../core/rng.js';

export var SUP_IDLE = 0;
export var SUP_WAITING = 1;
export var SUP_ATTEMPT = 2;
export var SUP_UP = 3;
export var SUP_STATE_NAMES = ['idle', 'waiting', 'attempt', 'up'];

/** tick() results. */
export var ACT_NONE = 0;
export var ACT_CONNECT = 1;
export var ACT_ABORT = 2;

/** Distinct failure kinds counted, 'other' included (it takes the rest): kept in flash with the state. */
export var KINDS_MAX = 8;
/** A kind is at most this long: it is stored in flash with the state. */
export var KIND_CHARS_MAX = 12;

export interface SupervisorOptions {
  rng: Rng;
  /** Decorrelated jitter floor and cap between attempts. Defaults 1000 and 60000. */
  baseMs?: number;
  capMs?: number;
  /** The first attempt of every run waits uniform [0, phaseMs]. Default 10000. */
  phaseMs?: number;
  /** Failures in a row that open the breaker. Default 5. */
  failuresToOpen?: number;
  /** Open duration: decorrelated jitter between these. Defaults 30000 and 600000. */
  openBaseMs?: number;
  openCapMs?: number;
  /** An attempt with no outcome this long is abandoned (a TCP connect can hang). Default 30000; 0: never. */
  attemptTimeoutMs?: number;
  /** A connection must stay up this long for the run to count as over. Default 60000. */
  stableMs?: number;
  /** Breaker transitions: 'open' | 'halfOpen' | 'closed' | 'isolated'. */
  onEvent?: (name: string, breaker: CircuitBreaker) => void;
}

/** What toJSON() returns. */
export interface SupervisorJSON {
  /** Breaker state. */
  b: any;
  /** Backoff position of the failing run ([attempt, t, delay]), 0 when none. */
  k: number[] | 0;
  /** attempts, ups, failures. */
  n: number[];
  /** Failures by kind. */
  f: { [kind: string]: number };
}

export class ReconnectSupervisor {
  /** SUP_* code. */
  state: number;
  /** Counters, persisted: attempts started, connections up, failures reported. */
  attempts: number;
  ups: number;
  failures: number;
  /** Failures by kind ('wifi', 'refused', 'timeout', 'silent', 'protocol', 'closed', …). */
  kinds: { [kind: string]: number };
  lastReason: string;
  breaker: CircuitBreaker;
  _p: RetryPolicy;
  _r: Retry;
  /** Next attempt while waiting; attempt start; up since. */
  _w: number;
  _as: number;
  _ut: number;
  _at: number;
  _sm: number;
  /** Restored backoff position, applied when the next run starts. */
  _rb: any;

  constructor(o: SupervisorOptions, saved?: any, nowMs?: number) {
    var rng = o.rng;
    var bo: BreakerOptions;
    var n: any;
    var k: string;
    if (!rng) throw new Error('reconnect-supervisor: needs an rng');
    this._p = new RetryPolicy({
      attemptsMax: Infinity,
      backoff: exponentialBackoff({ baseMs: o.baseMs || 1000, capMs: o.capMs || 60000, jitter: 'decorrelated', rng: rng }),
      phaseMs: o.phaseMs === undefined ? 10000 : o.phaseMs,
      rng: rng,
    });
    this._r = new Retry(this._p);
    bo = {
      consecutiveFailures: o.failuresToOpen || 5,
      openBackoff: exponentialBackoff({ baseMs: o.openBaseMs || 30000, capMs: o.openCapMs || 600000, jitter: 'decorrelated', rng: rng }),
      // The supervisor abandons a silent attempt itself (attemptTimeoutMs) and reports it.
      probeTimeoutMs: 0,
      onEvent: o.onEvent,
    };
    this._at = o.attemptTimeoutMs === undefined ? 30000 : o.attemptTimeoutMs;
    this._sm = o.stableMs === undefined ? 60000 : o.stableMs;
    this.state = SUP_IDLE;
    this._w = this._as = this._ut = 0;
    this._rb = null;
    this.attempts = this.ups = this.failures = 0;
    this.kinds = {};
    this.lastReason = '';
    saved = saved && typeof saved === 'object' ? saved : null;
    this.breaker = restoreBreaker(bo, saved ? saved.b : null, nowMs);
    if (!saved) return;
    n = saved.n;
    if (n && n.length === 3 && isCount(n[0]) && isCount(n[1]) && isCount(n[2])) {
      this.attempts = n[0];
      this.ups = n[1];
      this.failures = n[2];
    }
    if (saved.f && typeof saved.f === 'object') {
      for (k in saved.f) {
        if (isCount(saved.f[k]) && k.length <= KIND_CHARS_MAX && countKeys(this.kinds) < KINDS_MAX) this.kinds[k] = saved.f[k];
      }
    }
    if (saved.k) this._rb = saved.k;
  }

  /** Begins supervising (at boot, or after stop()). The first attempt waits the random phase. */
  start(nowMs: number): void {
    if (this.state === SUP_IDLE) this._run(nowMs);
  }

  /** Stops: no attempt until start() again (e.g. the config went away). */
  stop(): void {
    this.state = SUP_IDLE;
    this._r.cancel('cancelled');
  }

  /** At deadline(): ACT_CONNECT to start an attempt now, ACT_ABORT to drop a hung one, else ACT_NONE. */
  tick(nowMs: number): number {
    var s = this.state;
    if (s === SUP_WAITING) {
      if (nowMs < this._w) return ACT_NONE;
      this._r.tick(nowMs);
      if (!this.breaker.allow(nowMs)) {
        // Open: wait until it admits a probe (Infinity while isolated).
        this._w = this.breaker.nextDeadlineMs();
        return ACT_NONE;
      }
      this.state = SUP_ATTEMPT;
      this._as = nowMs;
      this.attempts++;
      return ACT_CONNECT;
    }
    if (s === SUP_ATTEMPT) {
      if (this._at && nowMs >= this._as + this._at) {
        this._fail(nowMs, 'timeout: no connection within ' + this._at + ' ms');
        return ACT_ABORT;
      }
    } else if (s === SUP_UP && this._r.state === RETRY_RUNNING && nowMs >= this._ut + this._sm) {
      // Up long enough: the run is over; the next failure starts afresh.
      this._r.success(nowMs);
    }
    return ACT_NONE;
  }

  /** When tick() has work; -1 when none. */
  deadline(): number {
    var s = this.state;
    if (s === SUP_WAITING) return this._w === Infinity ? -1 : this._w;
    if (s === SUP_ATTEMPT) return this._at ? this._as + this._at : -1;
    if (s === SUP_UP && this._r.state === RETRY_RUNNING) return this._ut + this._sm;
    return -1;
  }

  /** The attempt came up (CONNACK accepted). */
  succeeded(nowMs: number): void {
    if (this.state !== SUP_ATTEMPT) return;
    this.breaker.success(nowMs);
    this.state = SUP_UP;
    this._ut = nowMs;
    this.ups++;
  }

  /** Any failure of the current attempt or connection; false for a stale report. */
  failed(nowMs: number, reason: string): boolean {
    if (this.state !== SUP_ATTEMPT && this.state !== SUP_UP) return false;
    this._fail(nowMs, reason);
    return true;
  }

  /** A short summary for health reports: state, breaker state, failures. */
  summary(): { s: string; b: string; f: number; last: string } {
    return { s: SUP_STATE_NAMES[this.state], b: BREAKER_STATE_NAMES[this.breaker.state], f: this.failures, last: this.lastReason };
  }

  toJSON(): SupervisorJSON {
    var rs = this._r.state;
    return {
      b: this.breaker.toJSON(),
      k: this._rb ? this._rb : rs === RETRY_RUNNING || rs === RETRY_WAITING ? this._r.backoff.toJSON() : 0,
      n: [this.attempts, this.ups, this.failures],
      f: this.kinds,
    };
  }

  _fail(nowMs: number, reason: string): void {
    var b = this.breaker;
    var i = reason.indexOf(':');
    var kind = (i < 0 ? reason : reason.substring(0, i)).substring(0, KIND_CHARS_MAX);
    var d: number;
    if (!(kind in this.kinds) && countKeys(this.kinds) >= KINDS_MAX - 1) kind = 'other';
    this.kinds[kind] = (this.kinds[kind] || 0) + 1;
    this.failures++;
    this.lastReason = reason;
    if (this.state === SUP_UP && this._r.state !== RETRY_RUNNING) {
      // A connection that had been stable dropped: a new run, with a random phase.
      this._run(nowMs);
      return;
    }
    b.failure(nowMs);
    d = this._r.failure(nowMs, reason, b.state === OPEN ? b.openedAtMs + b.openMs : undefined);
    if (d < 0) this._run(nowMs);
    else this._wait(nowMs + d);
  }

  _run(nowMs: number): void {
    var d = this._r.start(nowMs);
    if (this._rb) {
      // After a reboot mid-run: the backoff goes on from where it was.
      this._r.backoff = restoreBackoff(this._p._bo, this._rb);
      this._rb = null;
    }
    this._wait(nowMs + (d > 0 ? d : 0));
  }

  _wait(at: number): void {
    this.state = SUP_WAITING;
    this._w = at;
  }
}

function isCount(x: any): boolean {
  return typeof x === 'number' && x >= 0 && x <= 1e15 && x === Math.floor(x);
}

function countKeys(o: object): number {
  var n = 0;
  for (var k in o) if (k) n++;
  return n;
}

/** The supervisor for options o in the state toJSON() saved (damaged input: fresh state). */
export function restoreSupervisor(o: SupervisorOptions, saved: any, nowMs: number): ReconnectSupervisor {
  return new ReconnectSupervisor(o, saved, nowMs);
}
