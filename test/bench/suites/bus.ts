/**
 * Bench suite `bus`: raw MQTT pub/sub throughput of the embedded broker (the same EmbeddedBus
 * the companion runs, hardening included) and of Mosquitto, measured the same way: one
 * publisher -> one subscriber, QoS 1 both ways, a window of WINDOW unacknowledged publishes,
 * messages/s counted at the subscriber, the median of RUNS runs (the machine is shared: single
 * runs vary). The clients run in a worker thread so they do not share the embedded broker's
 * event loop (Mosquitto has its own process); both brokers face the same mqtt.js clients.
 * Bounded: MESSAGES per run or RUN_TIME_MS, whichever comes first. Network only on 127.0.0.1.
 * Rows only; the ingest-vs-raw goal is added with the store.
 */
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connectAsync, type IClientOptions } from 'mqtt';
import { deriveDevicePassword } from '../../../host/bus/credentials.js';
import { EmbeddedBus } from '../../../host/bus/embedded-broker.js';
import { mosquittoAvailable, startMosquitto, warnMosquittoMissing } from '../../helpers/mosquitto.js';
import { percentile, round, type BenchRow, type Suite } from '../harness.js';

/** Messages per measured run: enough for a stable rate, about a second each. */
const MESSAGES = 10_000;
const RUNS = 3;
const WARMUP_MESSAGES = 2_000;
/** Per-run time cap, so a slow machine still finishes. */
const RUN_TIME_MS = 10_000;
/** Unacknowledged publishes in flight: a pipelining publisher, as an outbox replay is. */
const WINDOW = 64;
/** A telemetry-sized payload. */
const PAYLOAD = Buffer.from(JSON.stringify({ seq: 123456, ts: 1700000000000, r: { t: 21.5, h: 40.25 }, hist: 0 }));
const FLEET_KEY = '62656e63682d666c6565742d6b65792d62656e63682d666c6565742d6b6579';

interface LoadSpec {
  busBench: true;
  url: string;
  topic: string;
  pub: IClientOptions;
}

interface LoadResult {
  received: number;
  ms: number;
}

interface LoadResults {
  /** Messages per second at the subscriber, one per measured run. */
  rates: number[];
  /** Messages lost (acknowledged to the publisher, never delivered) over all runs; 0 expected. */
  lost: number;
}

/** Worker side: subscriber and publisher, one warm-up and one measured run. */
async function runLoad(spec: LoadSpec): Promise<LoadResults> {
  const sub = await connectAsync(spec.url, { clientId: 'bench-sub', protocolVersion: 4, reconnectPeriod: 0 });
  await sub.subscribeAsync(spec.topic, { qos: 1 });
  const pub = await connectAsync(spec.url, { protocolVersion: 4, reconnectPeriod: 0, ...spec.pub });
  let received = 0;
  sub.on('message', () => received++);

  const run = (count: number): Promise<LoadResult & { sent: number }> =>
    new Promise((resolve, reject) => {
      const base = received;
      const start = performance.now();
      let sent = 0;
      let acked = 0;
      let stopAt = count;
      const finish = () => {
        // Wait for the subscriber to get everything that was acknowledged (bounded).
        const deadline = performance.now() + 5000;
        const check = () => {
          if (received - base >= sent || performance.now() > deadline) resolve({ sent, received: received - base, ms: performance.now() - start });
          else setTimeout(check, 1);
        };
        check();
      };
      const pump = () => {
        while (sent - acked < WINDOW && sent < stopAt) {
          sent++;
          pub.publish(spec.topic, PAYLOAD, { qos: 1 }, (err) => {
            if (err) return reject(err);
            acked++;
            if (performance.now() - start > RUN_TIME_MS) stopAt = sent;
            if (acked === stopAt) finish();
            else pump();
          });
        }
      };
      pump();
    });

  await run(WARMUP_MESSAGES);
  const rates: number[] = [];
  let lost = 0;
  for (let i = 0; i < RUNS; i++) {
    const r = await run(MESSAGES);
    rates.push(r.received / (r.ms / 1000));
    lost += r.sent - r.received;
  }
  await Promise.all([pub.endAsync(), sub.endAsync()]);
  return { rates, lost };
}

if (!isMainThread && (workerData as LoadSpec | undefined)?.busBench === true) {
  runLoad(workerData as LoadSpec).then(
    (r) => parentPort?.postMessage({ ok: true, ...r }),
    (err: unknown) => parentPort?.postMessage({ ok: false, error: String(err) }),
  );
}

/** Main side: runs the load in a worker thread; the median messages/s at the subscriber. */
function measure(spec: Omit<LoadSpec, 'busBench'>): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { busBench: true, ...spec } });
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error('bus bench worker timed out'));
    }, (RUNS + 2) * RUN_TIME_MS);
    w.once('message', (m: { ok: boolean; error?: string } & LoadResults) => {
      clearTimeout(timer);
      void w.terminate();
      if (!m.ok) return reject(new Error(m.error));
      if (m.lost !== 0) return reject(new Error(`bus bench: ${m.lost} acknowledged messages never reached the subscriber`));
      resolve(percentile([...m.rates].sort((a, b) => a - b), 50));
    });
    w.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

const rowName = (broker: string, what: string) => `${broker}: QoS 1 ${what}, 1 pub -> 1 sub, window ${WINDOW}, median of ${RUNS}`;

export default {
  name: 'bus',
  async run() {
    const rows: BenchRow[] = [];
    const quiet = () => {};

    // Embedded broker, anonymous local clients on a plain topic: the raw broker path.
    const embedded = new EmbeddedBus({ fleetKeyHex: FLEET_KEY, port: 0, log: quiet, devicePublishRatePerSec: 0 });
    await embedded.start();
    try {
      const url = `mqtt://127.0.0.1:${embedded.address()!.port}`;
      rows.push({ name: rowName('embedded', 'raw pub/sub'), value: round(await measure({ url, topic: 'bench/x', pub: { clientId: 'bench-pub' } }), 0), unit: 'msg/s' });
      // The same with a device publisher: credentials, ACL and a no-op ingest hook before each
      // PUBACK (the rate limit is off to measure the path, not the limit).
      embedded.onDevicePublish(async () => {});
      const id = 'bench-1';
      rows.push({
        name: rowName('embedded', 'device -> no-op ingest hook -> sub'),
        value: round(
          await measure({ url, topic: `espfleet/${id}/telemetry`, pub: { clientId: id, username: id, password: deriveDevicePassword(FLEET_KEY, id) } }),
          0,
        ),
        unit: 'msg/s',
      });
    } finally {
      await embedded.stop();
    }

    if (!mosquittoAvailable()) {
      const msg = warnMosquittoMissing('bench bus: Mosquitto row');
      rows.push({ name: rowName('mosquitto', 'raw pub/sub') + ' -- ' + msg, value: NaN, unit: 'skipped' });
    } else {
      const m = await startMosquitto();
      try {
        rows.push({ name: rowName('mosquitto', 'raw pub/sub'), value: round(await measure({ url: m.url, topic: 'bench/x', pub: { clientId: 'bench-pub' } }), 0), unit: 'msg/s' });
      } finally {
        await m.stop();
      }
    }
    return { rows, goals: [] };
  },
} satisfies Suite;
