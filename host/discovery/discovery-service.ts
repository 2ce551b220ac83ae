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
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BeaconWindow, beaconFromBody, buildOffer, DATAGRAM_BYTES_MAX, verifyBeacon, type Beacon, type Mac } from '../../firmware/wire/beacon.js';
import { DatagramRing } from './datagram-ring.js';
import { DatagramVerifier } from './datagram-verifier.js';
import type { Verdict, VerdictBatch, VerifyWorkerData } from './verify-worker.js';

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
  /**
   * With fleetKey: check seals and fields on a worker thread (./verify-worker.ts), so a flood
   * costs this thread one copy per datagram. Default: when the machine has more than 2 cores.
   * On 2 cores the thread competes with this one for a core and the whole costs more than it
   * saves (the companion bench on 2 cores: 0.50 x raw receive inline, 0.31-0.37 with the thread,
   * which still cuts this thread's share from ~6 to ~2.6 us per datagram). Where the compiled
   * worker script is absent (code run from its TypeScript source) the listener checks inline and
   * says so in the log.
   */
  verifyInWorker?: boolean;
  /** Datagrams between the socket and the verifier thread (default 4096, 2 MiB). */
  ringSlots?: number;
  /** Where a device should go; null to stay silent (this companion does not answer for it). */
  offerFor(b: Beacon, from: { address: string; port: number }): OfferTarget | null;
  /** Called for every fresh authenticated beacon, BEFORE the offer is sent. */
  onBeacon(b: Beacon, from: { address: string; port: number }): void;
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

/** One log line per reason per this many ms, so a flood cannot flood the log. */
const LOG_EVERY_MS = 10_000;
/** The verifier thread must be up within this, or the listener checks inline. */
const WORKER_READY_MS = 10_000;

export class DiscoveryService {
  readonly counters = { datagrams: 0, beacons: 0, offers: 0, offersPaced: 0, dropped: {} as Record<string, number> };
  private sock: dgram.Socket | null = null;
  private readonly window: BeaconWindow;
  private readonly now: () => number;
  private readonly lastLog = new Map<string, number>();
  /** When each device was last sent an offer; bounded like the replay window. */
  private readonly offeredAt = new Map<string, number>();
  private readonly verifier: DatagramVerifier | null;
  /** The verifier thread and its ring, while they run. */
  private worker: Worker | null = null;
  private ring: DatagramRing | null = null;
  /** Where each datagram in the ring came from, by slot. */
  private rinfos: ({ address: string; port: number } | undefined)[] = [];

  constructor(private readonly o: DiscoveryOptions) {
    this.verifier = o.fleetKey ? new DatagramVerifier(o.fleetKey) : null;
    this.window = new BeaconWindow(o.sendersMax ?? 4096, o.skewMs ?? Number.MAX_SAFE_INTEGER, o.forgetMs ?? 600_000);
    this.now = o.now ?? Date.now;
  }

  async start(): Promise<void> {
    const thread = this.o.verifyInWorker ?? availableParallelism() > 2;
    if (this.o.fleetKey && thread) await this.startWorker(this.o.fleetKey);
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    this.sock = sock;
    sock.on('message', (msg, rinfo) => (this.ring ? this.enqueue(msg, rinfo) : this.defer(msg, rinfo)));
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
    const w = this.worker;
    const ring = this.ring;
    this.worker = null;
    this.ring = null;
    if (w && ring) {
      const exited = new Promise<void>((r) => w.once('exit', () => r()));
      ring.stop();
      const timer = setTimeout(() => void w.terminate(), 1000);
      await exited;
      clearTimeout(timer);
    }
  }

  /**
   * Inline checking, batched: the socket hands over every datagram it holds in one event-loop
   * turn (libuv reads up to 32 per wakeup); they are checked together at the end of the turn,
   * so the checking code runs warm instead of between receive calls. Same order, same verdicts.
   */
  private defer(msg: Buffer, rinfo: { address: string; port: number }): void {
    this.batch.push(msg, rinfo);
    if (this.batch.length === 2) setImmediate(this.runBatch);
  }

  private batch: (Buffer | { address: string; port: number })[] = [];
  private readonly runBatch = (): void => {
    const b = this.batch;
    this.batch = [];
    for (let i = 0; i < b.length; i += 2) this.onDatagram(b[i] as Buffer, b[i + 1] as { address: string; port: number });
  };

  /** Whether seals are checked on the verifier thread (false: inline). */
  verifiesInWorker(): boolean {
    return this.worker !== null;
  }

  private async startWorker(fleetKey: string): Promise<void> {
    const script = new URL('./verify-worker.js', import.meta.url);
    if (!existsSync(fileURLToPath(script))) {
      this.log('discovery checks datagrams inline: no compiled verifier thread script', { script: fileURLToPath(script) });
      return;
    }
    const ring = new DatagramRing(this.o.ringSlots ?? 4096);
    const data: VerifyWorkerData & { espfleetVerifier: true } = { sab: ring.sab, fleetKey, espfleetVerifier: true };
    const w = new Worker(script, { workerData: data });
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), WORKER_READY_MS);
      w.once('message', (m) => {
        clearTimeout(timer);
        resolve(m === 'ready');
      });
      w.once('error', (e) => {
        clearTimeout(timer);
        this.log('discovery verifier thread failed to start', { error: String(e) });
        resolve(false);
      });
    });
    if (!ready) {
      await w.terminate();
      this.log('discovery checks datagrams inline: the verifier thread did not start');
      return;
    }
    this.rinfos = new Array(ring.slots);
    w.on('message', (batch: VerdictBatch) => this.onVerdicts(batch));
    // A thread that dies takes the datagrams in the ring with it: they are counted as lost, and
    // the listener goes on checking inline.
    const down = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      const lost = this.ring ? this.ring.inFlight() : 0;
      this.ring = null;
      if (lost > 0) this.counters.dropped.lost = (this.counters.dropped.lost ?? 0) + lost;
      this.log('discovery verifier thread ended; checking inline', { why, lost });
    };
    w.on('error', (e) => down(String(e)));
    w.on('exit', (code) => down('exit ' + code));
    this.worker = w;
    this.ring = ring;
  }

  /** The socket's path with the verifier thread: bounds, then one copy into the ring. */
  private enqueue(msg: Buffer, rinfo: { address: string; port: number }): void {
    this.counters.datagrams++;
    if (msg.length > DATAGRAM_BYTES_MAX) {
      this.drop('oversize', rinfo);
      return;
    }
    const ring = this.ring!;
    const i = ring.put(msg);
    // Full: the thread is behind by a whole ring. Dropping here is what the socket's buffer
    // would do a moment later, but counted, and without delaying anyone else.
    if (i < 0) {
      this.drop('overload', rinfo);
      return;
    }
    this.rinfos[ring.slotOf(i)] = rinfo;
    // One wake per event-loop turn: the socket hands over every datagram it holds in one turn.
    if (!this.wakeQueued) {
      this.wakeQueued = true;
      setImmediate(this.wakeRing);
    }
  }

  private wakeQueued = false;
  private readonly wakeRing = (): void => {
    this.wakeQueued = false;
    this.ring?.wake();
  };

  /** Verdicts from the thread, in arrival order: the rest of onDatagram for each. */
  private onVerdicts(batch: VerdictBatch): void {
    const ring = this.ring;
    if (!ring) return;
    const first = batch[0];
    for (let k = 1; k < batch.length; k++) {
      const slot = ring.slotOf((first + k - 1) | 0);
      const rinfo = this.rinfos[slot] ?? { address: '0.0.0.0', port: 0 };
      this.rinfos[slot] = undefined;
      const v = batch[k] as Verdict;
      if (typeof v === 'string') this.drop(v, rinfo);
      else this.accept(v, rinfo);
    }
    ring.release((first + batch.length - 1) | 0);
  }

  /** Handles one datagram; exposed for tests and benchmarks (no socket needed). Returns the drop reason or null. */
  onDatagram(msg: Buffer, rinfo: { address: string; port: number }): string | null {
    this.counters.datagrams++;
    if (msg.length > DATAGRAM_BYTES_MAX) return this.drop('oversize', rinfo);
    // latin1: the MAC covers the bytes that travelled, whatever they are.
    let v;
    if (this.verifier) {
      const sealed = this.verifier.check(msg);
      if (sealed !== null) return this.drop(sealed, rinfo);
      v = beaconFromBody(msg.toString('latin1', 0, DatagramVerifier.bodyEnd(msg)) + '}');
    } else {
      v = verifyBeacon(msg.toString('latin1'), this.o.mac);
    }
    if (!v.ok) return this.drop(v.reason, rinfo);
    return this.accept(v.msg, rinfo);
  }

  /** An authentic, well-formed beacon: replay window, registry, offer. */
  private accept(b: Beacon, rinfo: { address: string; port: number }): string | null {
    const now = this.now();
    const fresh = this.window.check(b, now);
    if (fresh !== null) return this.drop(fresh, rinfo);
    this.counters.beacons++;
    const from = { address: rinfo.address, port: rinfo.port };
    try {
      this.o.onBeacon(b, from);
    } catch (e) {
      this.log('beacon handler failed', { id: b.id, error: String(e) });
    }
    // Pacing first: it is one lookup, and a paced device needs no target worked out.
    const last = this.offeredAt.get(b.id);
    if (last !== undefined && now - last < (this.o.offerEveryMs ?? 2000) && now >= last) {
      this.counters.offersPaced++;
      return null;
    }
    const target = this.o.offerFor(b, from);
    if (!target) return null;
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
    const now = Date.now();
    const last = this.lastLog.get(reason) ?? 0;
    if (now - last >= LOG_EVERY_MS) {
      this.lastLog.set(reason, now);
      this.log('datagram dropped', { reason, from: `${rinfo.address}:${rinfo.port}`, count: this.counters.dropped[reason] });
    }
    return reason;
  }

  private log(line: string, fields?: Record<string, unknown>): void {
    this.o.log?.(line, fields);
  }
}
