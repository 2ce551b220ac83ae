/**
 * Bench suite `bus`: raw MQTT pub/sub throughput of the embedded broker (the same EmbeddedBus
 * the companion runs, hardening included) and of Mosquitto, measured the same way: one
 * publisher -> one subscriber, QoS 1 both ways, a window of WINDOW unacknowledged publishes,
 * messages/s counted at the subscriber, the median of RUNS runs (the machine is shared: single
 * runs vary). The clients run in a worker thread (lib/mqtt-load.ts) so they do not share the
 * embedded broker's event loop (Mosquitto has its own process); both brokers face the same
 * mqtt.js clients.
 * Bounded: MESSAGES per run or RUN_TIME_MS, whichever comes first. Network only on 127.0.0.1.
 * Rows only; the ingest-vs-raw goal is in the companion suite.
 */
import type { IClientOptions } from 'mqtt';
import { deriveDevicePassword } from '../../../host/bus/credentials.js';
import { EmbeddedBus } from '../../../host/bus/embedded-broker.js';
import { mosquittoAvailable, startMosquitto, warnMosquittoMissing } from '../../helpers/mosquitto.js';
import { percentile, round, type BenchRow, type Suite } from '../harness.js';
import { runMqttLoad, runRates } from '../lib/mqtt-load.js';

/** Messages per measured run: enough for a stable rate, about a second each. */
const MESSAGES = 10_000;
const RUNS = 3;
const WARMUP_MESSAGES = 2_000;
/** Per-run time cap, so a slow machine still finishes. */
const RUN_TIME_MS = 10_000;
/** Unacknowledged publishes in flight: a pipelining publisher, as an outbox replay is. */
const WINDOW = 64;
/** A telemetry-sized payload. */
const PAYLOAD = JSON.stringify({ seq: 123456, ts: 1700000000000, r: { t: 21.5, h: 40.25 }, hist: 0 });
const FLEET_KEY = '62656e63682d666c6565742d6b65792d62656e63682d666c6565742d6b6579';

/** Main side: runs the load in a worker thread (lib/mqtt-load.ts); the median messages/s at the subscriber. */
async function measure(spec: { url: string; topic: string; pub: IClientOptions }): Promise<number> {
  const r = await runMqttLoad({
    url: spec.url,
    publishers: [{ options: spec.pub, topic: spec.topic }],
    subscribe: spec.topic,
    window: WINDOW,
    payload: 'fixed',
    fixedPayload: PAYLOAD,
    count: MESSAGES,
    warmup: WARMUP_MESSAGES,
    runs: RUNS,
    timeMs: RUN_TIME_MS,
    drainMs: 5000,
  });
  const lost = r.runs.reduce((n, x) => n + x.sent - x.received, 0);
  if (lost !== 0) throw new Error(`bus bench: ${lost} acknowledged messages never reached the subscriber`);
  return percentile(runRates(r, 'received').sort((a, b) => a - b), 50);
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
