/**
 * Bench suite `companion` (issue #6): what the companion does with real traffic, side by side
 * with the raw capacity of what it is built on, in one run.
 *
 * 1. Durable ingest: a real Companion (embedded broker, SQLite in a temp dir, loopback, port 0);
 *    INGEST_DEVICES device clients (each its own id and derived password) publish valid readings
 *    to espfleet/<id>/telemetry, QoS 1, WINDOW unacknowledged each. Counted: PUBACKs per second
 *    (a PUBACK means committed in SQLite); at the end the store must hold exactly as many rows as
 *    PUBACKs came back. Compared with the raw pub/sub throughput of the same embedded broker
 *    (an EmbeddedBus alone with the same defaults, the same device clients, one local subscriber
 *    on espfleet/+/telemetry counting deliveries, no store) and of Mosquitto (same clients,
 *    anonymous). Goal: ingest >= 0.5 x raw embedded. Clients run in a worker thread
 *    (lib/mqtt-load.ts, the one the bus suite uses), so the measured thread is the broker's.
 *    Each load connects fresh clients, so every device starts with a full publish-rate bucket
 *    (50/s, burst 500); the messages per device stay under the burst, and the throttled counter
 *    is reported to show the rate limit never slowed a run.
 * 2. Beacon validation: one sender (lib/beacon-sender.ts, a worker) sends pre-built signed
 *    beacons (BEACON_DEVICES ids, seq increasing) as fast as loopback takes them, to a plain
 *    dgram socket that only counts, and to a real Companion's discovery listener (MAC, window,
 *    registry upsert, offer back). Counted on the receiving side: datagrams received/validated
 *    per second between the first and the last one handled; drops = sent - received. Runs
 *    interleave raw and validated. Goal: validated >= 0.5 x raw receive rate.
 * 3. RPC round trip: a Companion and RPC_BOARDS emulated boards (the shipped bundle) in this
 *    process; once all are online, timed companion.rpc(id, 'ping') calls, sequential and with
 *    RPC_CONCURRENCY in flight, spread over the boards. Rows only.
 * Every loop is bounded in count and time; network only on 127.0.0.1.
 */
import * as dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EmbeddedBus } from '../../../host/bus/embedded-broker.js';
import { Companion, newFleetKey } from '../../../host/companion.js';
import { devicePassword } from '../../../host/discovery/node-mac.js';
import { createLogger, type Logger } from '../../../host/log.js';
import { startFleetWithCompanion, waitFor } from '../../helpers/fleet.js';
import { mosquittoAvailable, startMosquitto, warnMosquittoMissing } from '../../helpers/mosquitto.js';
import { goalHigher, percentile, round, type BenchGoal, type BenchRow, type Suite } from '../harness.js';
import { BeaconSender, type BeaconSendResult } from '../lib/beacon-sender.js';
import { median, runMqttLoad, runRates, type MqttLoadResult, type MqttLoadSpec } from '../lib/mqtt-load.js';

// --- ingest ---------------------------------------------------------------------------------
/** Device connections publishing at once: a fleet, so group commit has something to group. */
const INGEST_DEVICES = 100;
/** Unacknowledged publishes per device: a pipelining outbox replay. */
const WINDOW = 64;
/** Messages per measured run over all devices (100 per device: far under the burst of 500). */
const INGEST_MESSAGES = 10_000;
const INGEST_WARMUP = 2_000;
const INGEST_RUNS = 3;
const INGEST_RUN_TIME_MS = 10_000;

// --- beacons --------------------------------------------------------------------------------
/** Distinct device ids beaconing (a fresh registry holds 1024). */
const BEACON_DEVICES = 500;
/** Beacons per device per run: 150,000 datagrams (about 35 MB pre-built), about a second of sending. */
const BEACONS_PER_DEVICE = 300;
/** Rounds of (raw, listener): the machine's load drifts, so the median of five. */
const BEACON_RUNS = 5;
const BEACON_SEND_TIME_MS = 5_000;
/** The receiver is done when no datagram came for this long after the sender finished. */
const IDLE_MS = 150;

// --- rpc ------------------------------------------------------------------------------------
const RPC_BOARDS = 100;
const RPC_SEQUENTIAL = 300;
const RPC_CONCURRENT = 2_000;
const RPC_CONCURRENCY = 32;
const RPC_TIMEOUT_MS = 5_000;
/** Whole RPC phase cap (boot, online, calls). */
const RPC_PHASE_MS = 60_000;

/** A logger that keeps the first few warnings (for an error message) and drops the rest. */
function benchLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ quiet: true, sink: (l) => void (lines.length < 20 && lines.push(l)) });
  return Object.assign(log, { lines });
}

async function withCompanion<T>(fleetKey: string, fn: (c: Companion, log: { lines: string[] }) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'espfleet-bench-companion-'));
  const log = benchLogger();
  const c = new Companion({ nodeId: 'bench', dataDir: dir, fleetKey, bind: '127.0.0.1', mqttPort: 0, discoveryPort: 0, log });
  try {
    await c.start();
    return await fn(c, log);
  } finally {
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function devicePublishers(fleetKey: string, prefix: string): MqttLoadSpec['publishers'] {
  const out: MqttLoadSpec['publishers'] = [];
  for (let i = 0; i < INGEST_DEVICES; i++) {
    const id = prefix + i;
    out.push({ options: { clientId: id, username: id, password: devicePassword(fleetKey, id) }, topic: `espfleet/${id}/telemetry` });
  }
  return out;
}

function ingestLoad(url: string, publishers: MqttLoadSpec['publishers'], subscribe?: string): Promise<MqttLoadResult> {
  return runMqttLoad({
    url,
    publishers,
    subscribe,
    window: WINDOW,
    payload: 'telemetry',
    count: INGEST_MESSAGES,
    warmup: INGEST_WARMUP,
    runs: INGEST_RUNS,
    timeMs: INGEST_RUN_TIME_MS,
  });
}

function lostOf(r: MqttLoadResult): number {
  return r.runs.reduce((n, x) => n + x.sent - x.received, 0);
}

/** Wraps an instance method to time every call (no change to the class: the instance gets its own property). */
function timeCalls<T extends object, K extends keyof T>(obj: T, key: K): { calls: number; ms: number; restore(): void } {
  const orig = obj[key] as unknown as (...a: unknown[]) => unknown;
  const acc = {
    calls: 0,
    ms: 0,
    restore: () => {
      delete (obj as Record<PropertyKey, unknown>)[key as PropertyKey];
    },
  };
  (obj as Record<PropertyKey, unknown>)[key as PropertyKey] = function (this: unknown, ...a: unknown[]) {
    const t = performance.now();
    try {
      return orig.apply(this, a);
    } finally {
      acc.calls++;
      acc.ms += performance.now() - t;
    }
  };
  return acc;
}

async function benchIngest(rows: BenchRow[], goals: BenchGoal[]): Promise<void> {
  const fleetKey = newFleetKey();
  const shape = `${INGEST_DEVICES} devices, QoS 1, window ${WINDOW} each, median of ${INGEST_RUNS}`;

  // Durable ingest through the real companion.
  const ingest = await withCompanion(fleetKey, async (c) => {
    const a = c.bus.address()!;
    const flush = timeCalls(c.telemetryStore, 'flush');
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    const r = await ingestLoad(`mqtt://127.0.0.1:${a.port}`, devicePublishers(fleetKey, 'ing-'));
    const wallMs = performance.now() - t0;
    const elu = performance.eventLoopUtilization(elu0);
    flush.restore();
    const stored = c.telemetryStore.count();
    const st = c.telemetryStore.stats();
    const counters = c.stats() as { stored: number; badTelemetry: number; duplicates: number };
    if (stored !== r.ackedTotal || counters.stored !== r.ackedTotal) {
      throw new Error(`companion ingest: ${r.ackedTotal} PUBACKs but ${stored} rows in the store (${counters.stored} counted stored, ${counters.badTelemetry} rejected, ${counters.duplicates} duplicates)`);
    }
    return { r, stored, st, flush, elu, wallMs, throttled: c.bus.counters().throttled };
  });
  const ingestRate = median(runRates(ingest.r, 'acked'));
  rows.push({ name: `companion durable ingest: PUBACKed readings (each committed in SQLite), ${shape}`, value: round(ingestRate, 0), unit: 'msg/s' });

  // The same broker alone: no hooks, one local subscriber counting deliveries.
  const quiet = () => {};
  const bus = new EmbeddedBus({ fleetKeyHex: fleetKey, port: 0, log: quiet });
  let raw: MqttLoadResult;
  let noop: MqttLoadResult;
  let rawThrottled: number;
  let rawElu: number;
  await bus.start();
  try {
    const url = `mqtt://127.0.0.1:${bus.address()!.port}`;
    const e0 = performance.eventLoopUtilization();
    raw = await ingestLoad(url, devicePublishers(fleetKey, 'raw-'), 'espfleet/+/telemetry');
    rawElu = performance.eventLoopUtilization(e0).utilization;
    // The ingest path with nothing behind it: credentials, ACL and a no-op hook before each PUBACK.
    bus.onDevicePublish(async () => {});
    noop = await ingestLoad(url, devicePublishers(fleetKey, 'noop-'));
    rawThrottled = bus.counters().throttled;
  } finally {
    await bus.stop();
  }
  if (lostOf(raw) !== 0) throw new Error(`embedded raw: ${lostOf(raw)} acknowledged messages never reached the subscriber`);
  const rawRate = median(runRates(raw, 'received'));
  rows.push({ name: `embedded broker raw pub/sub: delivered to 1 subscriber, no store, ${shape}`, value: round(rawRate, 0), unit: 'msg/s' });
  rows.push({ name: `embedded broker, no-op ingest hook before each PUBACK, no subscriber, ${shape}`, value: round(median(runRates(noop, 'acked')), 0), unit: 'msg/s' });

  if (!mosquittoAvailable()) {
    const msg = warnMosquittoMissing('bench companion: Mosquitto raw pub/sub row');
    rows.push({ name: `mosquitto raw pub/sub -- ${msg}`, value: NaN, unit: 'skipped' });
  } else {
    const m = await startMosquitto();
    try {
      const r = await ingestLoad(m.url, devicePublishers(fleetKey, 'mq-'), 'espfleet/+/telemetry');
      if (lostOf(r) !== 0) throw new Error(`mosquitto raw: ${lostOf(r)} acknowledged messages never reached the subscriber`);
      const rate = median(runRates(r, 'received'));
      rows.push({ name: `mosquitto raw pub/sub: delivered to 1 subscriber, ${shape}`, value: round(rate, 0), unit: 'msg/s' });
      rows.push({ name: 'companion durable ingest / mosquitto raw pub/sub', value: round(ingestRate / rate, 3), unit: 'x' });
    } finally {
      await m.stop();
    }
  }

  // Where the ingest time goes (measured around the unchanged store; no code changed).
  const st = ingest.st;
  rows.push(
    { name: 'ingest: rows stored = PUBACKs received (warm-up and runs)', value: ingest.stored, unit: 'rows' },
    { name: 'ingest: group commits', value: st.commits, unit: 'commits' },
    { name: 'ingest: rows per group commit, mean', value: round(st.rows / Math.max(1, st.commits), 1), unit: 'rows' },
    { name: 'ingest: rows per group commit, peak', value: st.batchRowsPeak, unit: 'rows' },
    { name: 'ingest: time per commit (insert + fsync), mean', value: round(ingest.flush.ms / Math.max(1, ingest.flush.calls), 3), unit: 'ms' },
    { name: 'ingest: share of the load time spent committing', value: round((100 * ingest.flush.ms) / ingest.wallMs, 1), unit: '%' },
    { name: 'ingest: broker thread event-loop utilisation during the load (connects included)', value: round(100 * ingest.elu.utilization, 1), unit: '%' },
    { name: 'raw embedded: broker thread event-loop utilisation during the load (connects included)', value: round(100 * rawElu, 1), unit: '%' },
    { name: 'ingest: publishes delayed by the rate limit (companion, raw + no-op)', value: ingest.throttled + rawThrottled, unit: 'msgs' },
  );
  goals.push(goalHigher('durable ingest vs raw embedded-broker pub/sub', round(ingestRate, 0), round(rawRate, 0), 'embedded broker raw pub/sub', 0.5));
}

interface ReceiveRun {
  sender: BeaconSendResult;
  /** Datagrams that reached the receiver's handler. */
  received: number;
  /** Beacons validated and recorded (the plain socket: same as received). */
  handled: number;
  /** From the first to the last datagram the receiver handled. */
  ms: number;
  /** The receiving thread's busy (non-idle) time in that window. */
  busyMs: number;
}

/** Waits until the sender is done and the receiver has been idle for IDLE_MS (bounded). */
async function settle(sending: Promise<BeaconSendResult>, lastAt: () => number): Promise<BeaconSendResult> {
  const s = await sending;
  const deadline = performance.now() + 5000;
  while (performance.now() - lastAt() < IDLE_MS && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return s;
}

/** A plain socket, bound as the listener binds (wildcard, SO_REUSEADDR), that only counts. */
async function rawReceive(sender: BeaconSender): Promise<ReceiveRun> {
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  let n = 0;
  let first = 0;
  let last = 0;
  let elu0: ReturnType<typeof performance.eventLoopUtilization> | null = null;
  let eluLast: ReturnType<typeof performance.eventLoopUtilization> | null = null;
  sock.on('message', () => {
    last = performance.now();
    if (n++ === 0) {
      first = last;
      elu0 = performance.eventLoopUtilization();
    }
  });
  // The thread's busy share up to the last 5 ms tick that saw a new datagram.
  let seen = 0;
  const tick = setInterval(() => {
    if (elu0 !== null && last !== seen) {
      seen = last;
      eluLast = performance.eventLoopUtilization(elu0);
    }
  }, 5);
  await new Promise<void>((r) => sock.bind(0, '0.0.0.0', () => r()));
  try {
    const s = await settle(sender.send(sock.address().port, BEACON_SEND_TIME_MS), () => last);
    const busy = eluLast ? (eluLast as { active: number }).active : NaN;
    return { sender: s, received: n, handled: n, ms: last - first, busyMs: busy };
  } finally {
    clearInterval(tick);
    await new Promise<void>((r) => sock.close(() => r()));
  }
}

interface ValidatedRun extends ReceiveRun {
  rejected: Record<string, number>;
}

/**
 * The companion's own discovery listener, untouched: accepted beacons are counted from its
 * counters by a 2 ms poll (first and last change), and the thread's busy time comes from its
 * event-loop utilisation over the same window, so nothing is added per datagram.
 */
async function validatedReceive(c: Companion, sender: BeaconSender): Promise<ValidatedRun> {
  const d = c.discovery;
  const before = { datagrams: d.counters.datagrams, beacons: d.counters.beacons, dropped: { ...d.counters.dropped } };
  let first = 0;
  let last = 0;
  let seen = before.beacons;
  let elu0: ReturnType<typeof performance.eventLoopUtilization> | null = null;
  let busyMs = NaN;
  const poll = setInterval(() => {
    const n = d.counters.beacons;
    if (n === seen) return;
    const t = performance.now();
    if (first === 0) {
      first = t;
      elu0 = performance.eventLoopUtilization();
    }
    seen = n;
    last = t;
    busyMs = performance.eventLoopUtilization(elu0!).active;
  }, 2);
  try {
    const s = await settle(sender.send(d.port(), BEACON_SEND_TIME_MS), () => (last === 0 ? performance.now() : last));
    const rejected: Record<string, number> = {};
    for (const [k, v] of Object.entries(d.counters.dropped)) if (v - (before.dropped[k] ?? 0) > 0) rejected[k] = v - (before.dropped[k] ?? 0);
    return {
      sender: s,
      received: d.counters.datagrams - before.datagrams,
      handled: d.counters.beacons - before.beacons,
      ms: last - first,
      busyMs,
      rejected,
    };
  } finally {
    clearInterval(poll);
  }
}

async function benchBeacons(rows: BenchRow[], goals: BenchGoal[]): Promise<void> {
  const fleetKey = newFleetKey();
  await withCompanion(fleetKey, (c) => beaconRuns(fleetKey, c, rows, goals));
}

async function beaconRuns(fleetKey: string, c: Companion, rows: BenchRow[], goals: BenchGoal[]): Promise<void> {
  {
    const raws: ReceiveRun[] = [];
    const vals: ValidatedRun[] = [];
    const registryFlush = timeCalls(c.registry, 'flush');
    let bytes = 0;
    let buildMs = 0;
    // One set per round; the order alternates so a change in the machine's load hits both kinds
    // alike. Each set continues the seqs of the previous one, so every beacon the listener gets
    // is fresh to it.
    for (let i = 0; i < BEACON_RUNS; i++) {
      const sender = await BeaconSender.start({ fleetKey, prefix: 'bcn-', devices: BEACON_DEVICES, perDevice: BEACONS_PER_DEVICE, seqBase: i * BEACONS_PER_DEVICE });
      try {
        bytes = sender.bytes;
        buildMs += sender.buildMs;
        if (i % 2 === 0) {
          raws.push(await rawReceive(sender));
          vals.push(await validatedReceive(c, sender));
        } else {
          vals.push(await validatedReceive(c, sender));
          raws.push(await rawReceive(sender));
        }
      } finally {
        await sender.close();
      }
    }
    registryFlush.restore();
    const rate = (x: ReceiveRun) => x.handled / (x.ms / 1000);
    const rawRate = median(raws.map(rate));
    const valRate = median(vals.map(rate));
    const sendRate = median([...raws, ...vals].map((x) => x.sender.sent / (x.sender.sendMs / 1000)));
    const sum = <T extends ReceiveRun>(xs: T[], f: (x: T) => number) => xs.reduce((n, x) => n + f(x), 0);
    const rejected: Record<string, number> = {};
    for (const v of vals) for (const [k, n] of Object.entries(v.rejected)) rejected[k] = (rejected[k] ?? 0) + n;
    // The receiving thread's busy time per datagram it got: receive alone (raw), receive + check.
    const busyUs = (xs: ReceiveRun[]) => (1000 * sum(xs, (x) => x.busyMs)) / Math.max(1, sum(xs, (x) => x.received));
    const windowMs = sum(vals, (x) => x.ms);
    const shape = `${BEACON_DEVICES} devices, ${BEACON_DEVICES * BEACONS_PER_DEVICE} datagrams of ${bytes} B per run, median of ${BEACON_RUNS}`;
    rows.push(
      { name: `beacons validated by the discovery listener (MAC, window, registry, offer), ${shape}`, value: round(valRate, 0), unit: 'datagrams/s' },
      { name: `raw UDP receive rate, plain dgram socket counting, ${shape}`, value: round(rawRate, 0), unit: 'datagrams/s' },
      { name: 'sender rate (loopback, one worker thread)', value: round(sendRate, 0), unit: 'datagrams/s' },
      { name: 'raw socket: datagrams sent but never received (all runs)', value: sum(raws, (x) => x.sender.sent - x.received), unit: 'datagrams' },
      { name: 'listener: datagrams sent but never received (all runs)', value: sum(vals, (x) => x.sender.sent - x.received), unit: 'datagrams' },
      {
        name: 'listener: datagrams received but rejected (all runs)' + (Object.keys(rejected).length ? ' ' + JSON.stringify(rejected) : ''),
        value: sum(vals, (x) => x.received - x.handled),
        unit: 'datagrams',
      },
      { name: 'listener: offers that reached the sender (all runs; the sender is busy, so many are lost)', value: sum(vals, (x) => x.sender.offers), unit: 'datagrams' },
      { name: 'raw socket: receiving thread busy per datagram (receive only)', value: round(busyUs(raws), 2), unit: 'us' },
      { name: 'listener: receiving thread busy per datagram (receive, seal, body, window, registry, offer)', value: round(busyUs(vals), 2), unit: 'us' },
      { name: 'listener: registry write-behind flushes (one SQLite transaction each)', value: registryFlush.calls, unit: 'flushes' },
      { name: 'listener: registry flush time, mean', value: round(registryFlush.ms / Math.max(1, registryFlush.calls), 3), unit: 'ms' },
      { name: 'listener: share of the receiving window spent in registry flushes', value: round((100 * registryFlush.ms) / windowMs, 1), unit: '%' },
      { name: 'listener: datagrams per registry flush, mean', value: round(sum(vals, (x) => x.handled) / Math.max(1, registryFlush.calls), 1), unit: 'datagrams' },
      { name: 'listener: receiving thread event-loop utilisation, median', value: round(100 * median(vals.map((x) => x.busyMs / x.ms)), 1), unit: '%' },
      { name: 'raw socket: receiving thread event-loop utilisation, median', value: round(100 * median(raws.map((x) => x.busyMs / x.ms)), 1), unit: '%' },
      { name: 'beacon set build time per run (worker, before sending)', value: round(buildMs / BEACON_RUNS, 0), unit: 'ms' },
    );
    // The rounds one by one (each sends one set to both receivers): how far the load moved.
    for (let k = 0; k < vals.length; k++) {
      rows.push({ name: `round ${k + 1}: validated / raw UDP receive`, value: round(rate(vals[k]) / rate(raws[k]), 3), unit: 'x' });
    }
    goals.push(goalHigher('beacon validation vs raw UDP receive', round(valRate, 0), round(rawRate, 0), 'raw UDP receive (dgram socket)', 0.5));
  }
}

async function benchRpc(rows: BenchRow[]): Promise<void> {
  const phaseEnd = Date.now() + RPC_PHASE_MS;
  const t0 = performance.now();
  const fleet = await startFleetWithCompanion({ boards: RPC_BOARDS, sampleMs: 5000, quiet: true });
  try {
    const c = fleet.companion;
    await waitFor(`${RPC_BOARDS} boards online`, () => c.devices().filter((d) => d.online && d.state === 'up').length === RPC_BOARDS, 45_000);
    rows.push({ name: `time until ${RPC_BOARDS} emulated boards are online (boot, beacon, offer, CONNECT)`, value: round(performance.now() - t0, 0), unit: 'ms' });
    const ids = fleet.ids;
    // Warm-up: every board once, all at once.
    await Promise.all(ids.map((id) => c.rpc(id, 'ping', {}, RPC_TIMEOUT_MS)));
    let failed = 0;
    const call = async (i: number, out: number[]) => {
      const t = performance.now();
      try {
        await c.rpc(ids[i % ids.length], 'ping', {}, RPC_TIMEOUT_MS);
        out.push(performance.now() - t);
      } catch {
        failed++;
      }
    };
    const seq: number[] = [];
    const seqStart = performance.now();
    for (let i = 0; i < RPC_SEQUENTIAL && Date.now() < phaseEnd; i++) await call(i, seq);
    const seqMs = performance.now() - seqStart;
    const conc: number[] = [];
    let next = 0;
    const concStart = performance.now();
    await Promise.all(
      Array.from({ length: RPC_CONCURRENCY }, async () => {
        while (next < RPC_CONCURRENT && Date.now() < phaseEnd) await call(next++, conc);
      }),
    );
    const concMs = performance.now() - concStart;
    seq.sort((a, b) => a - b);
    conc.sort((a, b) => a - b);
    const lat = (label: string, xs: number[], ms: number) => {
      rows.push(
        { name: `rpc ping ${label}: p50`, value: round(percentile(xs, 50), 2), unit: 'ms' },
        { name: `rpc ping ${label}: p99`, value: round(percentile(xs, 99), 2), unit: 'ms' },
        { name: `rpc ping ${label}: max`, value: round(xs[xs.length - 1] ?? NaN, 2), unit: 'ms' },
        { name: `rpc ping ${label}: throughput`, value: round(xs.length / (ms / 1000), 0), unit: 'calls/s' },
      );
    };
    lat(`sequential, ${seq.length} calls over ${RPC_BOARDS} boards`, seq, seqMs);
    lat(`${RPC_CONCURRENCY} in flight, ${conc.length} calls over ${RPC_BOARDS} boards`, conc, concMs);
    rows.push({ name: 'rpc ping: failed calls', value: failed, unit: 'calls' });
  } finally {
    await fleet.stop();
  }
}

/** The suite's three parts, for running one alone while working on it. */
export const parts = { ingest: benchIngest, beacons: benchBeacons, rpc: benchRpc };

export default {
  name: 'companion',
  async run() {
    const rows: BenchRow[] = [];
    const goals: BenchGoal[] = [];
    await benchIngest(rows, goals);
    await benchBeacons(rows, goals);
    await benchRpc(rows);
    return { rows, goals };
  },
} satisfies Suite;
