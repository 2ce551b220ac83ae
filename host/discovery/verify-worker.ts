/**
 * The discovery listener's verifier thread. It takes datagrams from the ring in order, checks the
 * seal (./datagram-verifier.ts), parses and checks the fields (firmware/wire/beacon.ts, the same
 * code as the inline path), and posts the verdicts back in batches: [first index, verdict, ...],
 * a verdict being the Beacon or the drop reason. The replay window, the registry and the offers
 * stay on the listener's thread, which sees the verdicts in arrival order.
 *
 * Why a thread: the seal and the JSON cost a few microseconds per datagram, as much again as
 * receiving it. On the listener's thread a flood of beacons (valid or forged) would take that
 * time from the broker, the ingest and the HTTP API that share it; here it costs that thread one
 * copy per datagram, and the work runs on another core.
 *
 * Batching: a batch goes when it holds BATCH_MAX verdicts or the ring is empty, so a lone beacon
 * waits for no one. The thread sleeps on the ring's head when idle (no polling).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { beaconFromBody, type Beacon } from '../../firmware/wire/beacon.js';
import { DatagramRing } from './datagram-ring.js';
import { DatagramVerifier } from './datagram-verifier.js';

/** Verdicts per message back: amortises the message cost without delaying a busy stream much. */
const BATCH_MAX = 128;
/** Wakes this often even without a notify, to see a stop request (the notify is the normal path). */
const IDLE_WAKE_MS = 200;

export interface VerifyWorkerData {
  sab: SharedArrayBuffer;
  fleetKey: string;
}

export type Verdict = Beacon | string;

/** [index of the first datagram, its verdict, the next one's, ...]. */
export type VerdictBatch = [number, ...Verdict[]];

function main(data: VerifyWorkerData): void {
  const port = parentPort!;
  const ring = new DatagramRing(data.sab);
  const verifier = new DatagramVerifier(data.fleetKey);
  let next = ring.taken();
  port.postMessage('ready');
  while (!ring.stopped()) {
    const head = ring.head();
    if (head === next) {
      ring.wait(head, IDLE_WAKE_MS);
      continue;
    }
    const batch: VerdictBatch = [next];
    while (next !== head && batch.length <= BATCH_MAX) {
      const msg = ring.view(next);
      const sealed = verifier.check(msg);
      if (sealed !== null) {
        batch.push(sealed);
      } else {
        const v = beaconFromBody(msg.toString('latin1', 0, DatagramVerifier.bodyEnd(msg)) + '}');
        batch.push(v.ok ? v.msg : v.reason);
      }
      next = (next + 1) | 0;
    }
    ring.take(next);
    port.postMessage(batch);
  }
}

if (parentPort && (workerData as { espfleetVerifier?: boolean } | undefined)?.espfleetVerifier) {
  main(workerData as VerifyWorkerData);
}
