/**
 * MQTT load for the bench suites, run in a worker thread so the clients never share the
 * measured broker's event loop (an embedded broker runs in the main thread; Mosquitto has its
 * own process). Both kinds of broker face the same mqtt.js clients.
 *
 * One load: P publishers (each its own connection and topic), QoS 1, at most `window`
 * unacknowledged publishes per publisher, and optionally one subscriber counting deliveries.
 * A warm-up pass, then `runs` measured runs; each run gives every publisher an equal share of
 * `count` messages and ends when every publish is acknowledged and (with a subscriber) every
 * acknowledged message has arrived. Bounded: a publisher stops taking new messages once the
 * run is `timeMs` old; a run still unfinished `drainMs` after that fails.
 */
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';

export interface MqttPublisher {
  /** Connection options (client id, credentials); protocol 3.1.1 and no reconnect are added. */
  options: IClientOptions;
  topic: string;
}

export interface MqttLoadSpec {
  url: string;
  publishers: MqttPublisher[];
  /** Filter one anonymous subscriber (QoS 1) counts deliveries on; none when absent. */
  subscribe?: string;
  /** Client id of the subscriber (default 'bench-sub'). */
  subscriberId?: string;
  /** Unacknowledged publishes per publisher. */
  window: number;
  /**
   * 'fixed': every message carries `fixedPayload`. 'telemetry': each message is a valid reading
   * `{"seq":n,"ts":ms,"r":{"t":21.5},"hist":0}` with n counting up per publisher from 0 (so a
   * store keyed by (device, seq) sees no duplicate across warm-up and runs).
   */
  payload: 'fixed' | 'telemetry';
  fixedPayload?: string;
  /** Messages per measured run, over all publishers. */
  count: number;
  /** Messages of the warm-up pass (not measured), over all publishers; 0 for none. */
  warmup: number;
  runs: number;
  /** A run stops taking new messages after this long. */
  timeMs: number;
  /** Time allowed after that for the last acknowledgements and deliveries (default 10 s). */
  drainMs?: number;
}

export interface MqttRun {
  /** Publishes handed to the clients. */
  sent: number;
  /** PUBACKs received. */
  acked: number;
  /** Messages the subscriber received during the run (0 without one). */
  received: number;
  /** From the first publish to the last PUBACK (and last delivery, with a subscriber). */
  ms: number;
  /** From the first publish to the last PUBACK. */
  ackMs: number;
}

export interface MqttLoadResult {
  runs: MqttRun[];
  /** Messages acknowledged over warm-up and runs (what a store behind the broker must hold). */
  ackedTotal: number;
}

async function runLoad(spec: MqttLoadSpec): Promise<MqttLoadResult> {
  const drainMs = spec.drainMs ?? 10_000;
  const base: IClientOptions = { protocolVersion: 4, reconnectPeriod: 0 };
  const clients: MqttClient[] = [];
  try {
    let received = 0;
    if (spec.subscribe !== undefined) {
      const sub = await connectAsync(spec.url, { ...base, clientId: spec.subscriberId ?? 'bench-sub' });
      clients.push(sub);
      await sub.subscribeAsync(spec.subscribe, { qos: 1 });
      sub.on('message', () => received++);
    }
    // Connect in small groups: a burst of hundreds of CONNECTs measures nothing useful.
    const pubs: MqttClient[] = [];
    for (let i = 0; i < spec.publishers.length; i += 16) {
      const group = spec.publishers.slice(i, i + 16).map((p) => connectAsync(spec.url, { ...base, ...p.options }));
      for (const c of await Promise.all(group)) {
        pubs.push(c);
        clients.push(c);
      }
    }
    const fixed = Buffer.from(spec.fixedPayload ?? '{}');
    const seqs = new Array<number>(pubs.length).fill(0);
    const payloadOf = (i: number): Buffer | string =>
      spec.payload === 'fixed' ? fixed : `{"seq":${seqs[i]++},"ts":${Date.now()},"r":{"t":21.5},"hist":0}`;
    let ackedTotal = 0;

    const run = (count: number): Promise<MqttRun> =>
      new Promise((resolve, reject) => {
        const share = Math.ceil(count / pubs.length);
        const baseReceived = received;
        const start = performance.now();
        let sent = 0;
        let acked = 0;
        let lastAck = start;
        let stopped = false;
        let done = false;
        const finish = (err?: Error) => {
          if (done) return;
          done = true;
          clearTimeout(watchdog);
          for (const c of pubs) c.removeListener('close', onClose);
          if (err) return reject(err);
          // Wait for the subscriber to get everything that was acknowledged (bounded).
          const deadline = performance.now() + drainMs;
          const check = () => {
            const got = received - baseReceived;
            if (spec.subscribe === undefined || got >= sent || performance.now() > deadline) {
              resolve({ sent, acked, received: got, ms: (spec.subscribe === undefined ? lastAck : performance.now()) - start, ackMs: lastAck - start });
            } else setTimeout(check, 1);
          };
          check();
        };
        const watchdog = setTimeout(
          () => finish(new Error(`mqtt load: ${sent - acked} of ${sent} publishes unacknowledged ${drainMs} ms after the run's time cap`)),
          spec.timeMs + drainMs,
        );
        const onClose = () => finish(new Error('mqtt load: a publisher lost its connection during the run'));
        for (const c of pubs) c.once('close', onClose);
        const inFlight = new Array<number>(pubs.length).fill(0);
        const mine = new Array<number>(pubs.length).fill(0);
        const pump = (i: number) => {
          const c = pubs[i];
          const topic = spec.publishers[i].topic;
          while (!stopped && inFlight[i] < spec.window && mine[i] < share) {
            inFlight[i]++;
            mine[i]++;
            sent++;
            c.publish(topic, payloadOf(i), { qos: 1 }, (err) => {
              if (err) return finish(err);
              inFlight[i]--;
              acked++;
              ackedTotal++;
              lastAck = performance.now();
              if (!stopped && lastAck - start > spec.timeMs) stopped = true;
              if (acked === sent && (stopped || sent === share * pubs.length)) finish();
              else pump(i);
            });
          }
        };
        for (let i = 0; i < pubs.length; i++) pump(i);
      });

    if (spec.warmup > 0) await run(spec.warmup);
    const runs: MqttRun[] = [];
    for (let i = 0; i < spec.runs; i++) runs.push(await run(spec.count));
    return { runs, ackedTotal };
  } finally {
    await Promise.all(clients.map((c) => c.endAsync().catch(() => {})));
  }
}

if (!isMainThread && (workerData as { mqttLoad?: boolean } | undefined)?.mqttLoad === true) {
  runLoad((workerData as { spec: MqttLoadSpec }).spec).then(
    (r) => parentPort?.postMessage({ ok: true, result: r }),
    (err: unknown) => parentPort?.postMessage({ ok: false, error: String(err) }),
  );
}

/** Runs the load in a worker thread and resolves with what it measured. */
export function runMqttLoad(spec: MqttLoadSpec): Promise<MqttLoadResult> {
  const budgetMs = (spec.runs + 1) * (spec.timeMs + (spec.drainMs ?? 10_000)) + 30_000;
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { mqttLoad: true, spec } });
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error('mqtt load worker timed out'));
    }, budgetMs);
    w.once('message', (m: { ok: true; result: MqttLoadResult } | { ok: false; error: string }) => {
      clearTimeout(timer);
      void w.terminate();
      if (!m.ok) reject(new Error(m.error));
      else resolve(m.result);
    });
    w.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Messages per second of each run, by the given count (deliveries or acknowledgements). */
export function runRates(r: MqttLoadResult, what: 'received' | 'acked'): number[] {
  return r.runs.map((x) => x[what] / ((what === 'acked' ? x.ackMs : x.ms) / 1000));
}

/** The median of some numbers (the machine is shared: single runs vary). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
