/**
 * The device: every protocol part wired to the board. This shell holds no protocol decisions:
 * the cores decide (discovery schedule and offer freshness, session and keepalive, reconnect
 * timing, outbox order and pacing, pipeline, RPC table); the shell moves bytes and events
 * between them and the board, and reports its nearest deadline to the runtime's one timer.
 *
 * Flows (ARCHITECTURE.md): join Wi-Fi (retried with backoff) -> beacon -> follow an authentic
 * offer -> connect MQTT to the offered broker (every attempt through the reconnect supervisor)
 * -> birth `online` (retained; the will says `offline`), meta, subscribe rpc/req -> drain the
 * outbox (paced) while samples flow sensor -> pipeline -> outbox -> PUBLISH QoS 1 -> PUBACK ->
 * acked. Losing the session sends the device back to a burst of beacons, so it finds a new owner
 * if its companion died.
 */
import { Board, TcpHandler, TcpSocket } from './board.js';
import { DeviceConfig, SensorConfig } from './config.js';
import { Backoff, exponentialBackoff } from './core/backoff.js';
import { fromHex, hex, Hmac } from './core/hmac.js';
import { compilePipeline, Pipeline, Reading } from './core/pipeline.js';
import { SeededRng } from './core/rng.js';
import { Discovery, DiscoveryOwner } from './protocols/discovery.js';
import { MqttSession, PUBLISH_FULL, SESSION_STATE_NAMES, SESSION_UP, SessionHandler } from './protocols/mqtt-session.js';
import { Outbox } from './protocols/outbox.js';
import { ACT_ABORT, ACT_CONNECT, ReconnectSupervisor } from './protocols/reconnect-supervisor.js';
import { BREAKER_STATE_NAMES } from './core/circuit-breaker.js';
import { RpcHost, RpcServer } from './protocols/rpc-server.js';
import { SampleSink, Sampler } from './protocols/sampler.js';
import { CONFIG_FILE, validateConfig } from './config.js';
import { Offer } from './wire/beacon.js';
import { Part, Runtime } from './runtime.js';

/** Health reports on `espfleet/<id>/health` this often: advisory, for dashboards. */
export var HEALTH_EVERY_MS = 60000;
/** RPC replies and control messages share the window with telemetry: telemetry gets the rest. */
export var CONTROL_SLOTS = 4;
/** Telemetry readings handed to the session at once (the outbox's pendingMax). */
export var TELEMETRY_INFLIGHT_MAX = 8;
/** A reboot asked over RPC waits this long so the reply reaches the broker first. */
export var REBOOT_DELAY_MS = 300;
/** First reconnect delay and the random phase of a fleet coming back (see the supervisor). */
export var RECONNECT_BASE_MS = 500;
export var RECONNECT_PHASE_MS = 500;

export class Device implements Part, TcpHandler, SessionHandler, DiscoveryOwner, RpcHost, SampleSink {
  rt: Runtime;
  board: Board;
  cfg: DeviceConfig;
  rng: SeededRng;
  discovery: Discovery;
  sampler: Sampler;
  pipeline: Pipeline;
  outbox: Outbox;
  session: MqttSession;
  supervisor: ReconnectSupervisor;
  rpc: RpcServer;
  /** Where the session goes: the offered broker, or the configured one. */
  broker: { host: string; port: number } | null;
  owner: string;
  /** Wi-Fi joined (or a port without Wi-Fi). */
  netUp: boolean;
  lastError: string;
  /** The seq of the newest reading put in the outbox (-1: none this boot). */
  seqLast: number;
  _sock: TcpSocket | null;
  _wifiRetry: Backoff;
  _wifiAt: number;
  _joining: boolean;
  _out: Reading[];
  _healthAt: number;
  _rebootAt: number;
  /** The socket is being closed to follow an offer to another broker. */
  _moving: boolean;
  _topics: { s: string; t: string; m: string; h: string; q: string; a: string };

  constructor(rt: Runtime, now: number) {
    var board = rt.board;
    var cfg = rt.config as DeviceConfig;
    this.rt = rt;
    this.board = board;
    this.cfg = cfg;
    this.rng = new SeededRng(board.entropy() ^ (rt.state.boots * 2654435761));
    var key = fromHex(cfg.fleetKey) as string;
    var mac = board.sha256Resume ? new Hmac(key, board.sha256, board.sha256Resume) : new Hmac(key, board.sha256);
    var base = 'espfleet/' + cfg.id + '/';
    this._topics = { s: base + 'status', t: base + 'telemetry', m: base + 'meta', h: base + 'health', q: base + 'rpc/req', a: base + 'rpc/res' };
    this.discovery = new Discovery(board, cfg, mac, this.rng, rt.state.boots, this, now);
    var self = this;
    this.sampler = new Sampler(board, cfg.sensors, this, now, function () {
      return self.rng.next();
    });
    var p = compilePipeline(cfg.pipeline);
    // The config validator checked the pipeline's sensor names; a bad stage is reported and
    // the device runs without edge processing rather than not at all.
    if ((p as { error: string }).error !== undefined) {
      board.log('espfleet: pipeline: ' + (p as { error: string }).error + '; running without one');
      p = compilePipeline(null);
    }
    this.pipeline = p as Pipeline;
    this.outbox = new Outbox({ storage: board.storage, pendingMax: TELEMETRY_INFLIGHT_MAX });
    var user = cfg.mqtt.user !== null ? cfg.mqtt.user : cfg.id;
    var pass = cfg.mqtt.pass !== null ? cfg.mqtt.pass : hex(mac.digest('mqtt:' + cfg.id));
    this.session = new MqttSession(
      {
        clientId: cfg.id,
        keepaliveMs: cfg.mqtt.keepaliveS * 1000,
        will: { topic: this._topics.s, payload: 'offline', qos: 1, retain: true },
        username: user,
        password: pass,
        inflightMax: TELEMETRY_INFLIGHT_MAX + CONTROL_SLOTS,
      },
      this,
    );
    this.session.subscribe(this._topics.q, 1);
    // Short phase and base: failover to a new owner should take seconds; the breaker and the
    // decorrelated backoff still keep a fleet from hammering a broker that stays down.
    this.supervisor = new ReconnectSupervisor({ rng: this.rng, baseMs: RECONNECT_BASE_MS, capMs: 60000, phaseMs: RECONNECT_PHASE_MS }, rt.state.reconnect, now);
    this.rpc = new RpcServer(this);
    this.broker = cfg.mqtt.host !== null ? { host: cfg.mqtt.host, port: cfg.mqtt.port } : null;
    this.owner = '';
    this.netUp = false;
    this.lastError = '';
    this.seqLast = -1;
    this._sock = null;
    this._wifiRetry = exponentialBackoff({ baseMs: 1000, capMs: 60000, jitter: 'full', rng: this.rng });
    this._wifiAt = now;
    this._joining = false;
    this._out = [];
    this._healthAt = now + HEALTH_EVERY_MS;
    this._rebootAt = -1;
    this._moving = false;
    if (cfg.console.lock) board.lockConsole(cfg.console.password);
    if (board.wifi) {
      board.wifi.onDisconnect(function () {
        self._linkDown('wifi lost');
      });
    } else {
      this._linkUp();
    }
  }

  // --- the runtime's part ---

  tick(now: number): void {
    if (this._rebootAt >= 0 && now >= this._rebootAt) {
      this.board.reboot();
      return;
    }
    if (this.board.wifi && !this.netUp && !this._joining && now >= this._wifiAt) this._join();
    this.sampler.tick(now);
    this._readings(this.pipeline.tick(now, this._out), now);
    if (this.netUp) this.discovery.tick(now);
    if (this._sock) {
      this.session.tick(now);
      this._flush();
    }
    var sd = this.supervisor.deadline();
    if (sd >= 0 && now >= sd) {
      var act = this.supervisor.tick(now);
      if (act === ACT_CONNECT) {
        if (this.netUp && this.broker && !this._sock) this._connect(now);
        else this.supervisor.failed(now, this.netUp ? 'offer: no broker yet' : 'wifi: down');
      } else if (act === ACT_ABORT && this._sock) this._sock.close();
    }
    this._drain(now);
    if (now >= this._healthAt) {
      this._healthAt = now + HEALTH_EVERY_MS;
      if (this.session.state === SESSION_UP) this._health();
    }
  }

  deadline(): number {
    var d = this.sampler.deadline();
    d = earliest(d, this.pipeline.nextDeadlineMs());
    if (this.netUp) d = earliest(d, this.discovery.deadline());
    if (this._sock) d = earliest(d, this.session.deadline());
    d = earliest(d, this.supervisor.deadline());
    if (this.session.state === SESSION_UP) d = earliest(d, this.outbox.deadline());
    if (this.board.wifi && !this.netUp && !this._joining) d = earliest(d, this._wifiAt);
    d = earliest(d, this._rebootAt);
    return earliest(d, this._healthAt);
  }

  // --- network ---

  _join(): void {
    var self = this;
    var w = this.cfg.wifi;
    this._joining = true;
    (this.board.wifi as NonNullable<Board['wifi']>).connect(w ? w.ssid : '', w ? w.pass : '', function (err) {
      self._joining = false;
      var now = self.board.now();
      if (err) {
        self.lastError = 'wifi: ' + err;
        self._wifiRetry = self._wifiRetry.next();
        self._wifiAt = now + self._wifiRetry.delayMs;
      } else {
        self._wifiRetry = self._wifiRetry.first();
        self._linkUp();
      }
      self.rt.schedule();
    });
  }

  _linkUp(): void {
    this.netUp = true;
    this.discovery.open();
    if (this.broker) this.supervisor.start(this.board.now());
  }

  _linkDown(why: string): void {
    var now = this.board.now();
    this.netUp = false;
    this.lastError = why;
    this._wifiAt = now;
    this.discovery.close();
    if (this._sock) this._sock.close();
    else this.supervisor.failed(now, 'wifi: ' + why);
    this.rt.schedule();
  }

  _connect(now: number): void {
    var b = this.broker as { host: string; port: number };
    this._sock = this.board.tcpConnect(b.host, b.port, this);
  }

  /** Writes what the session queued, in one write; drops the socket when the session asks. */
  _flush(): void {
    var out = this.session.takeOutput();
    var s = this._sock;
    if (!s) return;
    if (out) s.write(out);
    if (this.session.closeReason) s.close();
  }

  // --- TcpHandler ---

  onConnect(): void {
    this.session.connected(this.board.now());
    this._flush();
    this.rt.schedule();
  }

  onData(data: string): void {
    this.session.data(data, this.board.now());
    this._flush();
    this.rt.schedule();
  }

  onError(reason: string): void {
    this.lastError = reason;
  }

  onClose(): void {
    var now = this.board.now();
    var why = this.session.closed(now);
    this._sock = null;
    this.outbox.setLive(false);
    if (this._moving) {
      // We dropped the old broker for an offered new one: not a failure.
      this._moving = false;
      this._freshRun(now);
      this.supervisor.start(now);
      this.rt.schedule();
      return;
    }
    this.supervisor.failed(now, why || this.lastError || 'closed');
    this._persist();
    // Lost our broker: beacon in a burst so a live companion (maybe a new owner) answers.
    // Meanwhile the supervisor keeps trying the broker we had: the companion may just restart.
    if (!this.cfg.mqtt.host) this.discovery.lost(now);
    this.rt.schedule();
  }

  // --- SessionHandler ---

  onUp(sessionPresent: boolean): void {
    var now = this.board.now();
    this.supervisor.succeeded(now);
    this._persist();
    this.session.publish(this._topics.s, 'online', 1, true, -1);
    this.session.publish(this._topics.m, this._meta(), 1, true, -1);
    this.outbox.setLive(true);
    // Connected (through an offer or a configured broker): beacons slow to a heartbeat.
    this.discovery.accepted(now);
    this._drain(now);
  }

  onAck(id: number, tag: number): void {
    if (tag >= 0) this.outbox.acked(tag);
  }

  onMessage(topic: string, payload: string, qos: number, retain: boolean, over: number): void {
    if (topic !== this._topics.q) return;
    var reply = over ? this.rpc.tooLarge(payload, over) : this.rpc.handle(payload, this.board.wallMs());
    if (reply !== null) this.session.publish(this._topics.a, reply, 1, false, -1);
  }

  // --- DiscoveryOwner ---

  offer(o: Offer, now: number): void {
    this.board.setWallMs(o.ts);
    if (this.cfg.mqtt.host) return;
    var moved = !this.broker || this.broker.host !== o.broker.host || this.broker.port !== o.broker.port;
    this.owner = o.host;
    this.broker = { host: o.broker.host, port: o.broker.port };
    this.discovery.accepted(now);
    // A new broker starts a fresh run (random phase, first backoff step) with a closed breaker:
    // the old one's failures say nothing about it. A socket still open to the old broker is
    // dropped first; its close then starts the run (see onClose).
    if (moved && this._sock) {
      this._moving = true;
      this._sock.close();
      this.rt.schedule();
      return;
    }
    if (moved) this._freshRun(now);
    this.supervisor.start(now);
    this.rt.schedule();
  }

  _freshRun(now: number): void {
    this.supervisor.stop();
    this.supervisor.breaker.reset(now);
  }

  // --- sensors, pipeline, outbox ---

  sample(i: number, value: number, now: number): void {
    this.pipeline.push(this.cfg.sensors[i].name, value, now, this._out);
  }

  fault(i: number, reason: string, now: number): void {
    // Counted by the sampler (reported in info and health); a fault is never published as a value.
  }

  /** Groups the readings the pipeline emitted this turn into one telemetry record. */
  _readings(out: Reading[], now: number): void {
    if (out.length === 0) return;
    var r: { [name: string]: number } = {};
    for (var i = 0; i < out.length; i++) r[out[i].n] = out[i].v;
    out.length = 0;
    var seq = this.outbox.append(r, this._ts(now));
    if (seq >= 0) this.seqLast = seq;
  }

  /** Publishes what the outbox hands out while the session is up and the window has room. */
  _drain(now: number): void {
    if (this.session.state !== SESSION_UP) return;
    while (this.session.canPublish()) {
      var seq = this.outbox.next(now);
      if (seq < 0) break;
      // canPublish() said there is room: a full window here is a bug, not peer input.
      if (this.session.publish(this._topics.t, this.outbox.payload, 1, false, seq) === PUBLISH_FULL) throw new Error('session window full after canPublish');
    }
    this._flush();
  }

  /** Wall-clock ms for a reading: known once an offer set the clock; else the board's own clock. */
  _ts(now: number): number {
    return Math.floor(this.board.wallMs());
  }

  _meta(): string {
    var s: { n: string; u: string; k: string }[] = [];
    for (var i = 0; i < this.cfg.sensors.length; i++) {
      var c: SensorConfig = this.cfg.sensors[i];
      s.push({ n: c.name, u: c.unit, k: c.kind });
    }
    return JSON.stringify({ fw: this.board.fw, board: this.board.name, sensors: s });
  }

  _health(): void {
    var m = this.board.memory();
    this.session.publish(
      this._topics.h,
      JSON.stringify({ ob: { n: this.outbox.size(), dr: this.outbox.dropped }, br: BREAKER_STATE_NAMES[this.supervisor.breaker.state], mem: m.total - m.used, up: this.board.now() }),
      0,
      false,
      -1,
    );
  }

  _persist(): void {
    this.rt.state.reconnect = this.supervisor.toJSON();
    this.rt.saveState();
  }

  // --- RpcHost ---

  info(): object {
    var m = this.board.memory();
    return {
      id: this.cfg.id,
      fw: this.board.fw,
      board: this.board.name,
      up: this.board.now(),
      boots: this.rt.state.boots,
      mem: { used: m.used, total: m.total },
      session: { state: SESSION_STATE_NAMES[this.session.state], owner: this.owner, connects: this.session.connects, retransmits: this.session.retransmits },
      breaker: BREAKER_STATE_NAMES[this.supervisor.breaker.state],
      reconnect: { attempts: this.supervisor.attempts, ups: this.supervisor.ups, failures: this.supervisor.failures, last: this.supervisor.lastReason },
      outbox: { n: this.outbox.size(), dropped: this.outbox.dropped, torn: this.outbox.torn, last: this.seqLast, errors: this.outbox.writeErrors },
      sensors: { faults: this.sampler.faults, missed: this.sampler.missed, shed: this.pipeline.shed },
      rpc: { served: this.rpc.served, refused: this.rpc.refused },
      discovery: { sent: this.discovery.sent, offers: this.discovery.offers, rejected: this.discovery.rejected },
    };
  }

  read(sensor: string): { v: number } | { e: string } {
    var i = this.sampler.index(sensor);
    if (i < 0) return { e: 'no sensor ' + sensor.substr(0, 16) };
    var v = this.sampler.read(i, this.board.now());
    if (v !== v) return { e: 'sensor ' + sensor + ' read failed' };
    return { v: v };
  }

  setPipeline(sensor: string, spec: unknown): string | null {
    if (this.sampler.index(sensor) < 0) return 'no sensor ' + sensor.substr(0, 16);
    var all: { [k: string]: unknown } = {};
    for (var k in this.cfg.pipeline) all[k] = this.cfg.pipeline[k];
    all[sensor] = spec;
    var p = compilePipeline(all);
    if ((p as { error: string }).error !== undefined) return (p as { error: string }).error;
    this.pipeline = p as Pipeline;
    this.cfg.pipeline = all;
    return null;
  }

  config(): object {
    // The fleet key and Wi-Fi password stay on the device.
    var c = this.cfg;
    return { id: c.id, discoveryPort: c.discoveryPort, discoveryAddr: c.discoveryAddr, beaconMs: c.beaconMs, sensors: c.sensors, pipeline: c.pipeline, console: { lock: c.console.lock } };
  }

  setConfig(next: unknown): string | null {
    var merged: { [k: string]: unknown } = {};
    var cur = this.board.storage.read(CONFIG_FILE);
    var old: { [k: string]: unknown } = {};
    try {
      old = cur ? JSON.parse(cur) : {};
    } catch (e) {
      old = {};
    }
    var k: string;
    for (k in old) merged[k] = old[k];
    for (k in next as object) {
      if (k === 'id' || k === 'fleetKey') return k + ' cannot be changed over the network';
      merged[k] = (next as { [k: string]: unknown })[k];
    }
    var r = validateConfig(merged);
    if (r.error !== null) return r.error;
    if (!this.board.storage.write(CONFIG_FILE, JSON.stringify(merged))) return 'storage full';
    // Applied at the next boot: the parts are built from the config once.
    return null;
  }

  gpioWrite(pin: string, value: boolean): string | null {
    // Digital pins only (D0-D99), and never one a sensor reads.
    var n = pin.substr(1);
    if (pin.charAt(0) !== 'D' || n.length === 0 || n.length > 2 || !(parseInt(n, 10) >= 0) || String(parseInt(n, 10)) !== n) return 'pin must be a digital pin name like D2';
    for (var i = 0; i < this.cfg.sensors.length; i++) if (this.cfg.sensors[i].pin === pin) return 'pin ' + pin + ' belongs to sensor ' + this.cfg.sensors[i].name;
    this.board.digitalWrite(pin, value);
    return null;
  }

  reboot(): void {
    this._persist();
    // After the reply has left: the next wake-up of the shell.
    this._rebootAt = this.board.now() + REBOOT_DELAY_MS;
    this.rt.schedule();
  }
}

function earliest(a: number, b: number): number {
  if (a < 0) return b;
  if (b < 0) return a;
  return a < b ? a : b;
}
