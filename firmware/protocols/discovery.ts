/**
 * Device discovery: broadcasts authenticated beacons on the schedule of BeaconSchedule and
 * follows only an authenticated, fresh offer (verifyOffer, then OfferGate: the offer must echo
 * the nonce of one of our recent beacons). The owner learns of the offer and decides; it calls
 * accepted() when it moves to the offered broker and lost() when that session is lost, which
 * brings back a burst of beacons so the device finds a (possibly new) owner quickly.
 */
import { Board, UdpHandler, UdpSocket } from '../board.js';
import { DeviceConfig } from '../config.js';
import { BeaconSchedule } from '../core/beacon-schedule.js';
import { Rng } from '../core/rng.js';
import { buildBeacon, Mac, Offer, OfferGate, verifyOffer } from '../wire/beacon.js';

export interface DiscoveryOwner {
  /** An authentic, fresh offer for this device arrived. */
  offer(o: Offer, now: number): void;
}

/** How long a beacon waits for its offer: a companion answers within milliseconds on a LAN. */
export var OFFER_ANSWER_MS = 10000;
/**
 * A burst after boot or a lost session: 6 beacons 500 ms apart cover the 3 s a cluster takes to
 * hand a dead owner's devices to a new one, so the first beacon the new owner can answer comes
 * at most half a second after it can. A flapping session bursts at most every BURST_GAP_MS.
 */
export var BURST_COUNT = 6;
export var BURST_MS = 500;
export var BURST_GAP_MS = 10000;
/** Capabilities a beacon announces (INTERFACES.md `caps`). */
export var CAPS = ['mqtt', 'rpc', 'outbox', 'pipeline'];

export class Discovery implements UdpHandler {
  sent: number;
  offers: number;
  rejected: number;
  lastReject: string;
  schedule: BeaconSchedule;
  _board: Board;
  _cfg: DeviceConfig;
  _mac: Mac;
  _rng: Rng;
  _gate: OfferGate;
  _owner: DiscoveryOwner;
  _sock: UdpSocket | null;
  _boot: number;
  _bootAt: number;
  _seq: number;

  constructor(board: Board, cfg: DeviceConfig, mac: Mac, rng: Rng, boot: number, owner: DiscoveryOwner, now: number) {
    this._board = board;
    this._cfg = cfg;
    this._mac = mac;
    this._rng = rng;
    this._boot = boot;
    this._bootAt = now;
    this._owner = owner;
    this._gate = new OfferGate(cfg.id, OFFER_ANSWER_MS);
    this._sock = null;
    this._seq = 0;
    this.sent = 0;
    this.offers = 0;
    this.rejected = 0;
    this.lastReject = '';
    this.schedule = new BeaconSchedule({ beaconMs: cfg.beaconMs, rng: rng, burstCount: BURST_COUNT, burstMs: BURST_MS, burstGapMs: BURST_GAP_MS }, now);
  }

  /** Opens the socket (on an ephemeral port: offers come back to it). Call when the network is up. */
  open(): void {
    if (!this._sock) this._sock = this._board.udpOpen(0, this);
  }

  close(): void {
    if (this._sock) this._sock.close();
    this._sock = null;
  }

  tick(now: number): void {
    if (now < this.schedule.nextDeadlineMs()) return;
    var s = this._sock;
    if (!s || s.port() === 0) {
      // Not bound yet (or no network): try again shortly, without counting a beacon.
      this.schedule.sent(now);
      return;
    }
    var m = this._board.memory();
    var b = buildBeacon(
      {
        id: this._cfg.id,
        kind: this._board.name,
        fw: this._board.fw,
        caps: CAPS,
        port: s.port(),
        seq: this._seq,
        up: now - this._bootAt,
        mem: m.total - m.used,
        ts: this._wall(),
        boot: this._boot,
        nonce: this._gate.nonce(this._rng, now),
      },
      this._mac,
    );
    if (b.ok) {
      s.send(b.text, this._cfg.discoveryPort, this._cfg.discoveryAddr);
      this._seq++;
      this.sent++;
    } else {
      this._board.log('espfleet: beacon not built: ' + b.reason);
    }
    this.schedule.sent(now);
  }

  deadline(): number {
    return this.schedule.nextDeadlineMs();
  }

  onMessage(msg: string, address: string, port: number): void {
    var v = verifyOffer(msg, this._mac);
    var now = this._board.now();
    if (!v.ok) return this._reject(v.reason);
    var why = this._gate.accept(v.msg, now);
    if (why !== null) return this._reject(why);
    this.offers++;
    this._owner.offer(v.msg, now);
  }

  /** The owner moved to an offered broker: slow down to a heartbeat. */
  accepted(now: number): void {
    this.schedule.offerAccepted(now);
  }

  /** The session the offer led to is lost: beacon in a burst again. */
  lost(now: number): void {
    this.schedule.sessionLost(now);
  }

  _reject(reason: string): void {
    this.rejected++;
    this.lastReject = reason;
  }

  _wall(): number {
    var w = this._board.wallMs();
    // Before an offer set the clock the board's wall time is its uptime: report "unknown".
    return w > 1e12 ? Math.floor(w) : 0;
  }
}
