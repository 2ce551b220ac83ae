/**
 * The replication protocol between companions: message shapes, limits and validation. One
 * definition for the TCP shell (replication-service.ts) and the simulator.
 *
 * Frames: raft-transport.ts's (u32 length | HMAC-SHA256 tag | JSON), keyed with a key DERIVED
 * from the cluster secret (`replicationKey`), so a Raft frame never authenticates on the
 * replication port and the other way round. As in Raft, the tag proves "holds the cluster
 * secret", not "is member X"; the receiver checks `from` against the committed members.
 *
 * Messages are one-way; each node writes on the connection it dialled and reads on the ones it
 * accepted, and an answer names its request by `id` (or `at` for pongs):
 *
 *   ping {at, term, commit}      -> pong {at (echoed), term, commit}   link health, pause guard
 *   push {id, ix, recs}          -> ack  {id, ix, refused, err}        owner -> replicas, BEFORE PUBACK
 *   sync {id, devs:[{d, r, upTo}]} -> rows {id, recs, more}           anti-entropy: "I hold runs r
 *                                                                     of d up to upTo; send me the rest"
 *
 * ORDER on a replica: a push is appended DURABLY (group commit, fsync) BEFORE its ack is sent;
 * an ack with `err` set, or a device in `refused`, is not an acknowledgement of those readings.
 * Peer input never throws: `parseReplMessage` returns a reason instead.
 */
import { createHmac } from 'node:crypto';
import { NODE_ID_RE } from '../raft/raft-types.js';
import { checkRecord, type TelemetryRecord } from '../store/telemetry-record.js';
import { validRanges, type SeqRange } from './seq-ranges.js';

/** Readings in one push or rows message: bounds one frame (a reading is ~100 bytes of JSON, 4 KiB at worst). */
export const RECS_PER_MSG_MAX = 1000;
/** Devices in one sync request: bounds the peer's work per request (one range query each). */
export const SYNC_DEVICES_MAX = 256;
/** Runs per device in a sync request: a device with more gaps is synced in several rounds (`upTo`). */
export const SYNC_RANGES_MAX = 64;
/** Refused devices listed in one ack: at most one per reading pushed. */
export const REFUSED_MAX = RECS_PER_MSG_MAX;
/** Frame size on the replication port: 1000 worst-case readings (4 KiB) plus JSON framing. */
export const REPL_FRAME_BYTES_MAX = 5 * 1024 * 1024;
/** Reason texts are short words; longer ones are cut. */
const REASON_CHARS_MAX = 64;

export interface PingMsg {
  t: 'ping';
  from: string;
  to: string;
  /** Sender's clock when sent; echoed in the pong. */
  at: number;
  term: number;
  commit: number;
}

export interface PongMsg {
  t: 'pong';
  from: string;
  to: string;
  at: number;
  term: number;
  commit: number;
}

export interface PushMsg {
  t: 'push';
  from: string;
  to: string;
  id: number;
  /**
   * The Raft index the owner had applied when it pushed. A replica that applied at least as
   * much knows the device's owner at least as well, and refuses to acknowledge for a sender
   * that is no longer the owner (a deposed owner waking from a pause, say).
   */
  ix: number;
  recs: TelemetryRecord[];
}

export interface AckMsg {
  t: 'ack';
  from: string;
  to: string;
  id: number;
  /** The replica's applied Raft index. */
  ix: number;
  /** Devices whose readings were stored but are NOT acknowledged (this replica knows a newer owner). */
  refused: string[];
  /** Non-empty: nothing in the push is acknowledged (the store failed). */
  err: string;
}

export interface SyncDevice {
  d: string;
  /** Runs the requester holds (up to upTo). */
  r: SeqRange[];
  /** Only seqs <= upTo are asked for (the requester's run list was cut at SYNC_RANGES_MAX). */
  upTo: number;
}

export interface SyncMsg {
  t: 'sync';
  from: string;
  to: string;
  id: number;
  devs: SyncDevice[];
}

export interface RowsMsg {
  t: 'rows';
  from: string;
  to: string;
  id: number;
  recs: TelemetryRecord[];
  /** The answer was cut at RECS_PER_MSG_MAX: ask again. */
  more: boolean;
}

export type ReplMessage = PingMsg | PongMsg | PushMsg | AckMsg | SyncMsg | RowsMsg;

export type Parsed = { ok: true; msg: ReplMessage } | { ok: false; reason: string };

/** The key replication frames are tagged with: HMAC(cluster secret, context). */
export function replicationKey(secret: Buffer): Buffer {
  return createHmac('sha256', secret).update('espfleet-replication/1').digest();
}

function isId(x: unknown): x is string {
  return typeof x === 'string' && NODE_ID_RE.test(x);
}

function isNat(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function isTime(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

function recsOf(x: unknown): TelemetryRecord[] | null {
  if (!Array.isArray(x) || x.length > RECS_PER_MSG_MAX) return null;
  const out: TelemetryRecord[] = [];
  for (let i = 0; i < x.length; i++) {
    const c = checkRecord(x[i]);
    if (!c.ok) return null;
    out.push(c.value);
  }
  return out;
}

/** Validate a decoded frame addressed to `self`. Never throws. */
export function parseReplMessage(x: unknown, self: string): Parsed {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return { ok: false, reason: 'not-object' };
  const m = x as Record<string, unknown>;
  if (!isId(m.from)) return { ok: false, reason: 'bad-from' };
  if (m.to !== self) return { ok: false, reason: 'not-for-us' };
  const from = m.from;
  switch (m.t) {
    case 'ping':
    case 'pong':
      if (!isTime(m.at) || !isNat(m.term) || !isNat(m.commit)) return { ok: false, reason: 'bad-' + m.t };
      return { ok: true, msg: { t: m.t, from, to: self, at: m.at, term: m.term, commit: m.commit } };
    case 'push': {
      if (!isNat(m.id) || !isNat(m.ix)) return { ok: false, reason: 'bad-push' };
      const recs = recsOf(m.recs);
      if (!recs) return { ok: false, reason: 'bad-recs' };
      return { ok: true, msg: { t: 'push', from, to: self, id: m.id, ix: m.ix, recs } };
    }
    case 'ack': {
      if (!isNat(m.id) || !isNat(m.ix) || typeof m.err !== 'string') return { ok: false, reason: 'bad-ack' };
      const r = m.refused;
      if (!Array.isArray(r) || r.length > REFUSED_MAX || !r.every((d) => typeof d === 'string' && d.length <= 64)) {
        return { ok: false, reason: 'bad-ack' };
      }
      return { ok: true, msg: { t: 'ack', from, to: self, id: m.id, ix: m.ix, refused: r as string[], err: m.err.slice(0, REASON_CHARS_MAX) } };
    }
    case 'sync': {
      if (!isNat(m.id) || !Array.isArray(m.devs) || m.devs.length > SYNC_DEVICES_MAX) return { ok: false, reason: 'bad-sync' };
      const devs: SyncDevice[] = [];
      for (const d of m.devs as unknown[]) {
        if (typeof d !== 'object' || d === null) return { ok: false, reason: 'bad-sync' };
        const o = d as Record<string, unknown>;
        if (typeof o.d !== 'string' || o.d.length === 0 || o.d.length > 64) return { ok: false, reason: 'bad-sync' };
        if (!validRanges(o.r, SYNC_RANGES_MAX) || !isNat(o.upTo)) return { ok: false, reason: 'bad-sync' };
        devs.push({ d: o.d, r: o.r, upTo: o.upTo });
      }
      return { ok: true, msg: { t: 'sync', from, to: self, id: m.id, devs } };
    }
    case 'rows': {
      if (!isNat(m.id) || typeof m.more !== 'boolean') return { ok: false, reason: 'bad-rows' };
      const recs = recsOf(m.recs);
      if (!recs) return { ok: false, reason: 'bad-recs' };
      return { ok: true, msg: { t: 'rows', from, to: self, id: m.id, recs, more: m.more } };
    }
    default:
      return { ok: false, reason: 'unknown-type' };
  }
}
