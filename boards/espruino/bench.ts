/**
 * The device benchmark (dist/firmware/bench.js): the shipped codec, MQTT session and outbox,
 * minified with the shipped settings, on any Espruino or the emulator. Upload it and it prints
 * ONE JSON line:
 *   {"publishPerSec":…,"parsePerSec":…,"varsAtRest":…,"varsFullWindow":…}
 * publishPerSec: readings taken through the whole live path, append to the outbox (a RAM store
 *   with flash semantics, so the flash is neither worn nor timed), hand out, QoS 1 PUBLISH into
 *   a socket that only counts bytes, and the broker's PUBACK parsed and acked back to the outbox;
 * parsePerSec: packets parsed from a stream of PUBACKs and inbound QoS 1 PUBLISHes (RPC-sized);
 * varsAtRest: process.memory().usage once the session is up and the outbox live and empty;
 * varsFullWindow: the same with inflightMax readings in flight.
 * Bounded: at most PUBLISH_N readings and PARSE_N packets, each phase at most PHASE_MS of
 * measured time; the work runs in batches between timer turns, so the board stays responsive.
 */
import { MqttSession, SessionHandler } from '../../firmware/protocols/mqtt-session.js';
import { Outbox, OutboxStorage } from '../../firmware/protocols/outbox.js';
import { MqttParser, encodePuback, encodePublish } from '../../firmware/wire/mqtt-codec.js';

var PUBLISH_N = 2000;
var PARSE_N = 20000;
var PHASE_MS = 2000;
var BATCH = 50;
var INFLIGHT_MAX = 8;
var TOPIC = 'espfleet/bench/telemetry';

var FF = String.fromCharCode(0xff);

/** Storage with flash semantics in RAM: files created 0xFF-filled, written in place. */
class RamStorage implements OutboxStorage {
  _f: { [name: string]: string };
  _ff: string;
  constructor() {
    this._f = {};
    this._ff = FF;
  }
  read(name: string, offset?: number, length?: number): string | null {
    var v = this._f[name];
    if (v === undefined) return null;
    return offset === undefined ? v : v.substr(offset, length as number);
  }
  writeAt(name: string, data: string, offset: number, size?: number): boolean {
    var b: string;
    if (size !== undefined) {
      while (this._ff.length < size) this._ff += this._ff;
      b = this._ff.substring(0, size);
    } else {
      b = this._f[name];
      if (b === undefined) return false;
    }
    this._f[name] = b.substring(0, offset) + data + b.substring(offset + data.length);
    return true;
  }
  erase(name: string): void {
    delete this._f[name];
  }
  list(prefix: string): string[] {
    var out: string[] = [];
    for (var k in this._f) if (k.indexOf(prefix) === 0) out.push(k);
    return out;
  }
}

class Bench implements SessionHandler {
  s: MqttSession;
  o: Outbox;
  st: RamStorage;
  /** Bytes the socket took, PUBACKs seen, readings taken. */
  bytes: number;
  acks: number;
  n: number;
  /** Measured seconds and operations per phase. */
  pubS: number;
  pubN: number;
  parseS: number;
  parseN: number;
  varsAtRest: number;
  varsFullWindow: number;
  stream: string;

  constructor() {
    this.st = new RamStorage();
    this.o = new Outbox({ storage: this.st, segmentBytes: 1024, segmentsMax: 4, drainPerSecMax: 1e9, drainBurstMax: 1e9 });
    this.s = new MqttSession({ clientId: 'bench', keepaliveMs: 60000, inflightMax: INFLIGHT_MAX, will: { topic: 'espfleet/bench/status', payload: 'offline', qos: 1, retain: true } }, this);
    this.bytes = this.acks = this.n = 0;
    this.pubS = this.pubN = this.parseS = this.parseN = 0;
    this.varsAtRest = this.varsFullWindow = 0;
    this.stream = '';
  }

  onUp(sessionPresent: boolean): void {
    this.o.setLive(true);
  }

  onAck(id: number, tag: number): void {
    this.acks++;
    if (tag >= 0) this.o.acked(tag);
  }

  onMessage(topic: string, payload: string, qos: number, retain: boolean): void {}

  /** One reading through the whole live path; the broker acks it at once when ack is set. */
  one(now: number, ack: boolean): void {
    var o = this.o;
    var s = this.s;
    var seq: number;
    var id: number;
    o.append({ t: 21.5 + (this.n % 10) / 10, h: 40 + (this.n % 7) }, 1700000000000 + this.n);
    this.n++;
    seq = o.next(now);
    if (seq < 0) return;
    id = s.publish(TOPIC, o.payload, 1, false, seq);
    this.bytes += s.takeOutput().length;
    if (ack && id > 0) s.data(String.fromCharCode(64, 2, id >> 8, id & 255), now);
  }

  setup(): void {
    var now = getTime() * 1000;
    var i: number;
    var rpc = '{"id":"a1b2c3","m":"read","p":{"sensor":"t"},"dl":1700000005000}';
    this.s.connected(now);
    this.bytes += this.s.takeOutput().length;
    this.s.data(String.fromCharCode(0x20, 2, 0, 0), now);
    this.varsAtRest = process.memory().usage;
    for (i = 0; i < INFLIGHT_MAX; i++) this.one(now, false);
    this.varsFullWindow = process.memory().usage;
    for (i = 1; i <= INFLIGHT_MAX; i++) this.s.data(encodePuback(i), now);
    // The parse stream: PUBACKs and RPC-sized inbound QoS 1 PUBLISHes, alternating.
    for (i = 1; i <= 50; i++) this.stream += encodePuback(i) + encodePublish('espfleet/bench/rpc/req', rpc, 1, false, false, i);
  }

  /** A batch of the publish phase; false when the phase is over. */
  publishBatch(): boolean {
    var t0 = getTime();
    var now = t0 * 1000;
    for (var i = 0; i < BATCH; i++) this.one(now, true);
    this.pubS += getTime() - t0;
    this.pubN += BATCH;
    return this.pubN < PUBLISH_N && this.pubS * 1000 < PHASE_MS;
  }

  /** A batch of the parse phase: the whole stream, 200 bytes at a time. */
  parseBatch(): boolean {
    var p = new MqttParser(2048);
    var b = this.stream;
    var n = 0;
    var t0 = getTime();
    for (var at = 0; at < b.length; at += 200) {
      p.push(b.substring(at, at + 200));
      while (p.next() > 0) n++;
    }
    this.parseS += getTime() - t0;
    this.parseN += n;
    return this.parseN < PARSE_N && this.parseS * 1000 < PHASE_MS;
  }

  report(): void {
    console.log(
      JSON.stringify({
        publishPerSec: Math.round(this.pubN / this.pubS),
        parsePerSec: Math.round(this.parseN / this.parseS),
        varsAtRest: this.varsAtRest,
        varsFullWindow: this.varsFullWindow,
      }),
    );
  }
}

var bench = new Bench();
// Reachable from the global object, so the emulator's memory accounting sees it.
global.espfleetBench = bench;
bench.setup();

function publishStep(): void {
  if (bench.publishBatch()) setTimeout(publishStep, 0);
  else setTimeout(parseStep, 0);
}

function parseStep(): void {
  if (bench.parseBatch()) setTimeout(parseStep, 0);
  else bench.report();
}

setTimeout(publishStep, 0);
