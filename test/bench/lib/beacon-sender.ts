/**
 * Beacon load for the bench suites: a worker thread that pre-builds valid, signed beacon
 * datagrams (many device ids, seq increasing per device in sending order) and sends them over
 * loopback UDP as fast as its socket takes them, so the receiver under test (a plain socket or
 * the discovery listener) runs alone on the main thread. Building happens before the first
 * send, so signing costs the sender nothing while it sends.
 *
 * Bounded: devices x perDevice datagrams, and a send phase of at most timeMs. The beacons name
 * a port of the worker's own as the device port, so offers that come back are counted there.
 */
import * as dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { buildBeacon } from '../../../firmware/wire/beacon.js';
import { nodeMac } from '../../../host/discovery/node-mac.js';

export interface BeaconLoadSpec {
  fleetKey: string;
  /** UDP port on 127.0.0.1 the datagrams go to. */
  port: number;
  /** Device ids prefix + 0 … prefix + devices-1. */
  prefix: string;
  devices: number;
  /** Beacons per device; seq runs seqBase … seqBase+perDevice-1. */
  perDevice: number;
  seqBase: number;
  /** Send phase cap. */
  timeMs: number;
  /** How long to keep listening for offers after the last send (default 300 ms). */
  lingerMs?: number;
}

export interface BeaconLoadResult {
  /** Datagrams handed to the socket (every send callback reported success). */
  sent: number;
  sendErrors: number;
  /** From the first send to the last send callback. */
  sendMs: number;
  buildMs: number;
  /** Bytes of one datagram (the first). */
  bytes: number;
  /** Offers received on the device port the beacons name. */
  offers: number;
}

/** Sends per batch before waiting for the socket's callback: keeps libuv's send queue short. */
const BATCH = 64;

async function sendLoad(spec: BeaconLoadSpec): Promise<BeaconLoadResult> {
  const offersSock = dgram.createSocket('udp4');
  let offers = 0;
  offersSock.on('message', () => offers++);
  await new Promise<void>((r) => offersSock.bind(0, '127.0.0.1', () => r()));
  const devicePort = offersSock.address().port;
  const mac = nodeMac(spec.fleetKey);
  const t0 = performance.now();
  const total = spec.devices * spec.perDevice;
  const grams: Buffer[] = new Array(total);
  const now = Date.now();
  let k = 0;
  // Seq-major: every device's seq increases in sending order (loopback keeps the order).
  for (let s = 0; s < spec.perDevice; s++) {
    for (let d = 0; d < spec.devices; d++) {
      const b = buildBeacon(
        {
          id: spec.prefix + d,
          kind: 'esp32',
          fw: '1.0.0',
          caps: ['mqtt', 'rpc'],
          port: devicePort,
          seq: spec.seqBase + s,
          up: 1000 * (spec.seqBase + s),
          mem: 12000,
          ts: now,
          boot: 1,
          nonce: (d * 7919 + s * 104729) & 0x7fffffff,
        },
        mac,
      );
      if (!b.ok) throw new Error('beacon not built: ' + b.reason);
      grams[k++] = Buffer.from(b.text, 'latin1');
    }
  }
  const buildMs = performance.now() - t0;

  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  let sent = 0;
  let sendErrors = 0;
  const start = performance.now();
  let i = 0;
  while (i < total && performance.now() - start < spec.timeMs) {
    const end = Math.min(total, i + BATCH);
    await new Promise<void>((resolve) => {
      let left = end - i;
      for (; i < end; i++) {
        sock.send(grams[i], spec.port, '127.0.0.1', (err) => {
          if (err) sendErrors++;
          else sent++;
          if (--left === 0) resolve();
        });
      }
    });
  }
  const sendMs = performance.now() - start;
  await new Promise((r) => setTimeout(r, spec.lingerMs ?? 300));
  sock.close();
  offersSock.close();
  return { sent, sendErrors, sendMs, buildMs, bytes: grams[0].length, offers };
}

if (!isMainThread && (workerData as { beaconLoad?: boolean } | undefined)?.beaconLoad === true) {
  sendLoad((workerData as { spec: BeaconLoadSpec }).spec).then(
    (r) => parentPort?.postMessage({ ok: true, result: r }),
    (err: unknown) => parentPort?.postMessage({ ok: false, error: String(err) }),
  );
}

/** Runs the sender in a worker thread; resolves when it has sent everything (or hit timeMs). */
export function runBeaconLoad(spec: BeaconLoadSpec): Promise<BeaconLoadResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { beaconLoad: true, spec } });
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error('beacon load worker timed out'));
    }, spec.timeMs + 30_000);
    w.once('message', (m: { ok: true; result: BeaconLoadResult } | { ok: false; error: string }) => {
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
