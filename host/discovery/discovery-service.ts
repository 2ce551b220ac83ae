/**
 * The discovery listener: validates every datagram on the discovery port (size, MAC, JSON shape,
 * types, replay window), records the device in the registry and answers an authenticated beacon
 * with a unicast offer naming the broker the device should use. Bad datagrams are dropped with a
 * counter per reason and a rate-limited log line; the listener keeps serving everyone else.
 *
 * The socket binds the wildcard address of its port (a broadcast reaches no socket bound to a
 * unicast address) with SO_REUSEADDR, so several companions on one machine all hear beacons.
 */
import * as dgram from 'node:dgram';
import { endianness } from 'node:os';
import { beaconFromBody, buildOffer, DATAGRAM_BYTES_MAX, verifyBeacon, type Beacon, type Mac } from '../../firmware/wire/beacon.js';
import { readBeacon } from './beacon-reader.js';
import { BeaconWindow } from './beacon-window.js';
import { DatagramVerifier } from './datagram-verifier.js';

export interface OfferTarget {
  /** The companion that will own the device (its node id). */
  host: string;
  broker: { host: string; port: number };
  epoch: number;
}

export interface DiscoveryOptions {
  port: number;
  /** Address to bind (default the wildcard, see above). */
  bind?: string;
  mac: Mac;
  /**
   * The same key as mac, for the hot path: the seal is checked on the received Buffer
   * (./datagram-verifier.ts) instead of through mac. Same verdicts; absent, mac does it all.
   */
  fleetKey?: string;
  /** Where a device should go; null to stay silent (this companion does not answer for it). */
  offerFor(b: Beacon, from: { address: string; port: number }): OfferTarget | null;
  /**
   * Called for every fresh authenticated beacon, BEFORE the offer is sent. nowMs: when it was
   * received (the listener's clock, read once per event-loop turn of datagrams).
   */
  onBeacon(b: Beacon, from: { address: string; port: number }, nowMs: number): void;
  /** Wall clock (ms since 1970), injectable for tests. */
  now?: () => number;
  log?: (line: string, fields?: Record<string, unknown>) => void;
  /** Devices the replay window tracks (default 4096). */
  sendersMax?: number;
  /**
   * Clock skew tolerated for devices that know the time (default: any). Replays are stopped by
   * the (boot, seq) window, not by the clock; rejecting a skewed device would also stop the
   * offer that resets its clock, so a drifted device could never recover. Skew is counted.
   */
  skewMs?: number;
  /** Silence after which a device whose boot counter went back is accepted again (default 10 min). */
  forgetMs?: number;
  /**
   * At most one offer per device this often (default 2 s). A device beacons in bursts of one a
   * second and accepts an offer answering any of its last few beacons, so one answer per burst
   * step is enough; the rest would be work (a MAC and a datagram each) for nobody.
   */
  offerEveryMs?: number;
}

/**
 * The Buffer seal check, or null (mac does it all) where it cannot run: where this V8 cannot
 * compile WebAssembly SIMD (SSE4.1 on x86), or on a big-endian host. Same verdicts either way;
 * only the speed differs, and it is said once.
 */
function fastVerifier(fleetKey: string, log: (line: string, fields?: Record<string, unknown>) => void): DatagramVerifier | null {
  // Its JS views of WebAssembly memory are host-endian and WebAssembly is little-endian.
  if (endianness() !== 'LE') {
    log('discovery: big-endian host, checking seals with node:crypto (slower)');
    return null;
  }
  try {
    return new DatagramVerifier(fleetKey);
  } catch (e) {
    if (!(e instanceof Error) || e.name !== 'CompileError') throw e;
    log('discovery: WebAssembly SIMD unavailable, checking seals with node:crypto (slower)', { error: e.message });
    return null;
  }
}

/** One log line per reason per this many ms, so a flood cannot flood the log. */
const LOG_EVERY_MS = 10_000;
/** The log limiter's key for handling failures (not a drop reason, so never shared with one). */
const FAILED_LOG_KEY = 'handling failed';
/** Datagrams held for one batch at most (libuv hands over 32 per wakeup; this is a hard bound). */
const BATCH_MAX = 256;

export class DiscoveryService {
  /** failed: datagrams whose handling threw (a bug or a failing hook; logged, the rest go on). */
  readonly counters = { datagrams: 0, beacons: 0, offers: 0, offersPaced: 0, failed: 0, dropped: {} as Record<string, number> };
  private sock: dgram.Socket | null = null;
  private readonly window: BeaconWindow;
  private readonly now: () => number;
  private readonly lastLog = new Map<string, number>();
  /** When each device was last sent an offer; bounded like the replay window. */
  private readonly offeredAt = new Map<string, number>();
  private readonly verifier: DatagramVerifier | null;
  /** Datagrams received this event-loop turn and not yet checked, and their senders. */
  private msgs: Buffer[] = [];
  private froms: { address: string; port: number }[] = [];
  /** The seal verdicts of a batch (reused). */
  private readonly verdicts: (string | null)[] = [];

  constructor(private readonly o: DiscoveryOptions) {
    this.verifier = o.fleetKey ? fastVerifier(o.fleetKey, (l, f) => this.log(l, f)) : null;
    this.window = new BeaconWindow(o.sendersMax ?? 4096, o.skewMs ?? Number.MAX_SAFE_INTEGER, o.forgetMs ?? 600_000);
    this.now = o.now ?? Date.now;
  }

  async start(): Promise<void> {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    this.sock = sock;
    sock.on('message', (msg, rinfo) => this.defer(msg, rinfo));
    sock.on('error', (e) => this.log('discovery socket error', { error: e.message }));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(this.o.port, this.o.bind ?? '0.0.0.0', () => {
        sock.off('error', reject);
        resolve();
      });
    });
  }

  port(): number {
    return this.sock ? this.sock.address().port : 0;
  }

  async stop(): Promise<void> {
    const s = this.sock;
    this.sock = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  /**
   * Checking, batched: the socket hands over every datagram it holds in one event-loop turn
   * (libuv reads up to 32 per wakeup); they are checked together at the end of the turn, the
   * seals four at a time in one call (./datagram-verifier.ts checkAll), so the checking code runs
   * warm instead of between receive calls. Same order, same verdicts as onDatagram one by one.
   */
  private defer(msg: Buffer, rinfo: { address: string; port: number }): void {
    this.msgs.push(msg);
    this.froms.push(rinfo);
    if (this.msgs.length === 1) setImmediate(this.runBatch);
    // Bounded whatever the socket does: a full batch is checked at once.
    else if (this.msgs.length >= BATCH_MAX) this.runBatch();
  }

  private readonly runBatch = (): void => {
    const msgs = this.msgs;
    const froms = this.froms;
    if (msgs.length === 0) return;
    this.msgs = [];
    this.froms = [];
    // Stopped in the meantime: the registry behind onBeacon may be closed already.
    if (this.sock === null) return;
    // One clock reading for the turn: these datagrams arrived together.
    const now = this.now();
    const v = this.verifier;
    const verdicts = this.verdicts;
    if (v !== null) v.checkAll(msgs, msgs.length, verdicts);
    for (let i = 0; i < msgs.length; i++) {
      // One datagram's failure (a hook that throws) must cost neither the rest of the batch nor
      // the process: this runs from setImmediate, where a throw would be uncaught.
      try {
        this.handle(msgs[i], froms[i], now, v === null ? undefined : verdicts[i]);
      } catch (e) {
        this.counters.failed++;
        const from = `${froms[i].address}:${froms[i].port}`;
        this.logEvery(FAILED_LOG_KEY, 'datagram handling failed', { from, error: String(e), count: this.counters.failed });
      }
    }
  };

  /** Handles one datagram; exposed for tests and benchmarks (no socket needed). Returns the drop reason or null. */
  onDatagram(msg: Buffer, rinfo: { address: string; port: number }, nowMs = this.now()): string | null {
    return this.handle(msg, rinfo, nowMs, undefined);
  }

  /** One datagram; sealed: the verifier's verdict when checkAll already gave it. */
  private handle(msg: Buffer, rinfo: { address: string; port: number }, nowMs: number, sealed: string | null | undefined): string | null {
    this.counters.datagrams++;
    if (msg.length > DATAGRAM_BYTES_MAX) return this.drop('oversize', rinfo);
    if (this.verifier) return this.opened(msg, rinfo, sealed !== undefined ? sealed : this.verifier.check(msg), nowMs);
    // latin1: the MAC covers the bytes that travelled, whatever they are.
    const v = verifyBeacon(msg.toString('latin1'), this.o.mac);
    if (!v.ok) return this.drop(v.reason, rinfo);
    return this.accept(v.msg, rinfo, nowMs);
  }

  /** A datagram whose seal the verifier checked (sealed: its verdict): the body, then accept. */
  private opened(msg: Buffer, rinfo: { address: string; port: number }, sealed: string | null, nowMs: number): string | null {
    if (sealed !== null) return this.drop(sealed, rinfo);
    const end = DatagramVerifier.bodyEnd(msg);
    // The devices' own form in one pass over the bytes; anything else through JSON.parse (same verdicts).
    const b = readBeacon(msg, end);
    if (b !== null) return this.accept(b, rinfo, nowMs);
    const v = beaconFromBody(msg.toString('latin1', 0, end) + '}');
    if (!v.ok) return this.drop(v.reason, rinfo);
    return this.accept(v.msg, rinfo, nowMs);
  }

  /** An authentic, well-formed beacon: replay window, registry, offer. */
  private accept(b: Beacon, rinfo: { address: string; port: number }, now: number): string | null {
    const fresh = this.window.check(b, now);
    if (fresh !== null) return this.drop(fresh, rinfo);
    this.counters.beacons++;
    const from = { address: rinfo.address, port: rinfo.port };
    try {
      this.o.onBeacon(b, from, now);
    } catch (e) {
      this.logEvery('beacon handler failed', 'beacon handler failed', { id: b.id, error: String(e) });
    }
    // offerFor first, every beacon: in a cluster it is also how the coordinator learns of a
    // device no one owns yet.
    let target: OfferTarget | null;
    try {
      target = this.o.offerFor(b, from);
    } catch (e) {
      this.logEvery('offer target failed', 'offer target failed', { id: b.id, error: String(e) });
      return null;
    }
    if (!target) return null;
    const last = this.offeredAt.get(b.id);
    if (last !== undefined && now - last < (this.o.offerEveryMs ?? 2000) && now >= last) {
      this.counters.offersPaced++;
      return null;
    }
    if (this.offeredAt.size >= (this.o.sendersMax ?? 4096)) this.offeredAt.clear();
    this.offeredAt.set(b.id, now);
    const built = buildOffer({ id: b.id, host: target.host, broker: target.broker, epoch: target.epoch, ts: Math.floor(now), re: b.nonce }, this.o.mac);
    if (!built.ok) {
      this.log('offer not built', { id: b.id, reason: built.reason });
      return null;
    }
    this.counters.offers++;
    this.sock?.send(Buffer.from(built.text, 'latin1'), b.port, rinfo.address);
    return null;
  }

  /** Forgets a device's replay record (it was re-provisioned and its boot counter restarted). */
  forget(id: string): void {
    this.window.forget(id);
  }

  private drop(reason: string, rinfo: { address: string; port: number }): string {
    this.counters.dropped[reason] = (this.counters.dropped[reason] ?? 0) + 1;
    this.logEvery(reason, 'datagram dropped', { reason, from: `${rinfo.address}:${rinfo.port}`, count: this.counters.dropped[reason] });
    return reason;
  }

  /** One log line per key per LOG_EVERY_MS: nothing a peer or a failing hook does floods the log. */
  private logEvery(key: string, line: string, fields: Record<string, unknown>): void {
    const now = Date.now();
    if (now - (this.lastLog.get(key) ?? 0) < LOG_EVERY_MS) return;
    this.lastLog.set(key, now);
    this.log(line, fields);
  }

  private log(line: string, fields?: Record<string, unknown>): void {
    this.o.log?.(line, fields);
  }
}
