/**
 * Beacon load for the bench suites: a worker thread that pre-builds valid, signed beacon
 * datagrams (many device ids, seq increasing per device in sending order) and then, on each
 * send(), sends all of them over loopback UDP as fast as its socket takes them. The receiver
 * under test (a plain socket or the discovery listener) runs alone on the main thread, and
 * signing costs the sender nothing while it sends.
 *
 * One built set may be sent to several receivers: a plain socket does not care, and a
 * discovery listener sees each set once (its seqs are fresh to it). Build a new set, with a
 * higher seqBase, for a listener that already saw the previous one.
 *
 * Bounded: devices x perDevice datagrams per send, a send phase of at most timeMs. The beacons
 * name a port of the worker's own as the device port, so offers that come back are counted.
 */
import * as dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { buildBeacon } from '../../../firmware/wire/beacon.js';
import { nodeMac } from '../../../host/discovery/node-mac.js';

export interface BeaconSetSpec {
  fleetKey: string;
  /** Device ids prefix + 0 … prefix + devices-1. */
  prefix: string;
  devices: number;
  /** Beacons per device; seq runs seqBase … seqBase+perDevice-1. */
  perDevice: number;
  seqBase: number;
}

export interface BeaconSendResult {
  /** Datagrams the socket accepted (a send callback without error). */
  sent: number;
  sendErrors: number;
  /** From the first send to the last send callback. */
  sendMs: number;
  /** Offers received on the device port the beacons name, during the send and the linger. */
  offers: number;
}

/** Sends per batch before waiting for the socket's callbacks: keeps libuv's send queue short. */
const BATCH = 64;

type Cmd = { cmd: 'send'; port: number; timeMs: number; lingerMs: number };

async function workerMain(spec: BeaconSetSpec): Promise<void> {
  const port = parentPort!;
  const offersSock = dgram.createSocket('udp4');
  let offers = 0;
  offersSock.on('message', () => offers++);
  await new Promise<void>((r) => offersSock.bind(0, '127.0.0.1', () => r()));
  const devicePort = offersSock.address().port;
  const mac = nodeMac(spec.fleetKey);
  const t0 = performance.now();
  const total = spec.devices * spec.perDevice;
  // One buffer for the whole set (no per-datagram object): offsets[i] .. offsets[i+1].
  const texts: string[] = new Array(total);
  const offsets = new Uint32Array(total + 1);
  const now = Date.now();
  let k = 0;
  let bytes = 0;
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
      texts[k++] = b.text;
      bytes += b.text.length;
      offsets[k] = bytes;
    }
  }
  const all = Buffer.from(texts.join(''), 'latin1');
  texts.length = 0;
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  port.postMessage({ ok: true, ready: { buildMs: performance.now() - t0, bytes: offsets[1], count: total } });

  const send = async (c: { port: number; timeMs: number; lingerMs: number }): Promise<BeaconSendResult> => {
    offers = 0;
    let sent = 0;
    let sendErrors = 0;
    const start = performance.now();
    let i = 0;
    while (i < total && performance.now() - start < c.timeMs) {
      const end = Math.min(total, i + BATCH);
      await new Promise<void>((resolve) => {
        let left = end - i;
        const done = (err: Error | null) => {
          if (err) sendErrors++;
          else sent++;
          if (--left === 0) resolve();
        };
        for (; i < end; i++) sock.send(all, offsets[i], offsets[i + 1] - offsets[i], c.port, '127.0.0.1', done);
      });
    }
    const sendMs = performance.now() - start;
    await new Promise((r) => setTimeout(r, c.lingerMs));
    return { sent, sendErrors, sendMs, offers };
  };
  port.on('message', (c: Cmd) => {
    send(c).then(
      (result) => port.postMessage({ ok: true, result }),
      (err: unknown) => port.postMessage({ ok: false, error: String(err) }),
    );
  });
}

if (!isMainThread && (workerData as { beaconSet?: boolean } | undefined)?.beaconSet === true) {
  workerMain((workerData as { spec: BeaconSetSpec }).spec).catch((err: unknown) => parentPort?.postMessage({ ok: false, error: String(err) }));
}

/** A set of signed beacons held by a worker thread, ready to be sent (see the file comment). */
export class BeaconSender {
  private constructor(
    private readonly _w: Worker,
    readonly buildMs: number,
    /** Bytes of one datagram (the first). */
    readonly bytes: number,
    /** Datagrams in the set. */
    readonly count: number,
  ) {}

  /** Starts the worker and builds the set (bounded by timeoutMs). */
  static start(spec: BeaconSetSpec, timeoutMs = 60_000): Promise<BeaconSender> {
    const w = new Worker(new URL(import.meta.url), { workerData: { beaconSet: true, spec } });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        void w.terminate();
        reject(new Error('beacon sender: building the set timed out'));
      }, timeoutMs);
      w.once('message', (m: { ok: true; ready: { buildMs: number; bytes: number; count: number } } | { ok: false; error: string }) => {
        clearTimeout(timer);
        if (!m.ok) {
          void w.terminate();
          return reject(new Error(m.error));
        }
        resolve(new BeaconSender(w, m.ready.buildMs, m.ready.bytes, m.ready.count));
      });
      w.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Sends the whole set to 127.0.0.1:port (at most timeMs), then listens lingerMs more for offers. */
  send(port: number, timeMs: number, lingerMs = 300): Promise<BeaconSendResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._w.off('message', onMessage);
        reject(new Error('beacon sender: send timed out'));
      }, timeMs + lingerMs + 10_000);
      const onMessage = (m: { ok: true; result: BeaconSendResult } | { ok: false; error: string }) => {
        clearTimeout(timer);
        if (!m.ok) reject(new Error(m.error));
        else resolve(m.result);
      };
      this._w.once('message', onMessage);
      this._w.postMessage({ cmd: 'send', port, timeMs, lingerMs } satisfies Cmd);
    });
  }

  /** Ends the worker (its sockets close with it). */
  async close(): Promise<void> {
    await this._w.terminate();
  }
}
