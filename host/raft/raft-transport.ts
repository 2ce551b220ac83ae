/**
 * Raft messages over TCP, each frame authenticated with HMAC-SHA256 under the cluster secret.
 *
 * Frame:  u32 big-endian L | 32-byte tag | payload (L - 32 bytes of UTF-8 JSON)
 *         tag = HMAC-SHA256(secret, "espfleet-raft/1\n" || payload)
 * The prefix separates this use of the secret from any other protocol that might share it.
 *
 * Every frame is checked before its JSON is even parsed; a frame that fails (too small, too big,
 * bad tag, bad JSON) is DROPPED with a counted reason and never reaches the core, and a
 * connection that sends `badFramesMax` bad frames in a row is closed. An oversized frame is
 * skipped by length without being buffered.
 *
 * Trust model: the tag proves the sender holds the cluster secret, not which member it is; the
 * core checks `from` against the members it knows. A recorded frame can be replayed; Raft is
 * built for a network that duplicates and delays messages (the simulator injects exactly that),
 * so a replay is an old message, which the core already handles.
 *
 * Connections: each node dials every peer it sends to (lazily, on the first message) and only
 * WRITES on that socket; it READS from the connections peers dial to it. A lost connection is
 * redialled with exponential backoff while there is something to send.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { Message, NodeId } from './raft-types.js';

const MAC_BYTES = 32;
const MAC_CONTEXT = Buffer.from('espfleet-raft/1\n', 'ascii');

export const TRANSPORT_DEFAULTS = {
  /** One frame: the largest Raft message is a snapshot (4 MiB data, JSON-escaped) plus fields. */
  frameBytesMax: 9 * 1024 * 1024,
  /** Messages queued per peer while disconnected: Raft resends, so old ones are worth little. */
  queueMax: 256,
  /** Bytes buffered in one socket before we drop instead of write: a stalled peer costs no RAM. */
  socketBytesMax: 16 * 1024 * 1024,
  /**
   * Largest frame accepted on a connection that has not yet delivered one authentic frame: an
   * unauthenticated peer can make us buffer at most this much per connection (x inboundMax),
   * not a whole snapshot's worth. Raft's first message on a link is small (a heartbeat, a vote
   * or an append), and a snapshot refused once is sent again after the next heartbeat.
   */
  preAuthBytesMax: 64 * 1024,
  /** Consecutive bad frames before an inbound connection is closed. */
  badFramesMax: 8,
  /** Inbound connections at once: a handful per peer is plenty; this stops a connect flood. */
  inboundMax: 64,
  /** An inbound connection silent for this long is closed (peers send heartbeats every tick). */
  idleMs: 30000,
  reconnectMinMs: 50,
  reconnectMaxMs: 2000,
};

export function macOf(secret: Buffer, payload: Buffer): Buffer {
  const h = createHmac('sha256', secret);
  h.update(MAC_CONTEXT);
  h.update(payload);
  return h.digest();
}

/** One frame for `msg`. */
export function encodeFrame(secret: Buffer, msg: unknown): Buffer {
  const payload = Buffer.from(JSON.stringify(msg), 'utf8');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(MAC_BYTES + payload.length, 0);
  return Buffer.concat([head, macOf(secret, payload), payload]);
}

/**
 * Incremental frame decoder: feed it any split of the byte stream. Never throws; a bad frame
 * becomes `onDrop(reason)`. `bad` counts consecutive bad frames (reset by a good one).
 */
export class FrameDecoder {
  _secret: Buffer;
  _max: number;
  _chunks: Buffer[] = [];
  _have = 0;
  /** Body length of the frame being read, -1 while reading a header. */
  _need = -1;
  /** Bytes still to discard from an oversized frame. */
  _skip = 0;
  bad = 0;
  _halted = false;
  /** Set by the first frame whose tag verifies; until then _preAuthMax bounds a frame. */
  authenticated = false;
  _preAuthMax: number;
  onFrame: (msg: unknown) => void;
  onDrop: (reason: string) => void;

  constructor(
    secret: Buffer,
    frameBytesMax: number,
    onFrame: (m: unknown) => void,
    onDrop: (r: string) => void,
    preAuthBytesMax = frameBytesMax,
  ) {
    this._secret = secret;
    this._max = frameBytesMax;
    this._preAuthMax = Math.min(preAuthBytesMax, frameBytesMax);
    this.onFrame = onFrame;
    this.onDrop = onDrop;
  }

  /** Stop decoding for good (the connection is being closed): frames still buffered are dropped. */
  halt(): void {
    this._halted = true;
    this._chunks = [];
    this._have = 0;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0 || this._halted) return;
    this._chunks.push(chunk);
    this._have += chunk.length;
    while (!this._halted) {
      if (this._skip > 0) {
        const n = Math.min(this._skip, this._have);
        this._take(n);
        this._skip -= n;
        if (this._skip > 0) return;
      }
      if (this._need < 0) {
        if (this._have < 4) return;
        const len = this._take(4).readUInt32BE(0);
        if (len < MAC_BYTES) {
          this._bad('frame-too-small');
          this._skip = len;
          continue;
        }
        if (len > (this.authenticated ? this._max : this._preAuthMax)) {
          this._bad('frame-too-big');
          this._skip = len;
          continue;
        }
        this._need = len;
      }
      if (this._have < this._need) return;
      const body = this._take(this._need);
      this._need = -1;
      const payload = body.subarray(MAC_BYTES);
      const tag = body.subarray(0, MAC_BYTES);
      if (!timingSafeEqual(tag, macOf(this._secret, payload))) {
        this._bad('bad-mac');
        continue;
      }
      this.authenticated = true;
      let msg: unknown;
      try {
        msg = JSON.parse(payload.toString('utf8'));
      } catch {
        this._bad('bad-json');
        continue;
      }
      this.bad = 0;
      this.onFrame(msg);
    }
  }

  _bad(reason: string): void {
    this.bad++;
    this.onDrop(reason);
  }

  /** Remove and return the next n buffered bytes (n <= _have). */
  _take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this._chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this._chunks.shift();
      else this._chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this._chunks[0];
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this._chunks.shift();
        else this._chunks[0] = c.subarray(k);
      }
    }
    this._have -= n;
    return out;
  }
}

export interface RaftTransportOptions {
  id: NodeId;
  /** Cluster secret, at least 16 bytes. */
  secret: Buffer;
  /** Listen address; loopback unless the operator binds an interface (INTERFACES.md). */
  host?: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** Raft addresses of the peers, "host:port". */
  peers: Record<NodeId, string>;
  /** A frame that passed the tag check; still unvalidated JSON (the core validates). */
  onMessage: (msg: unknown) => void;
  /** A frame or message dropped here, with why. */
  onDrop?: (reason: string) => void;
  frameBytesMax?: number;
  preAuthBytesMax?: number;
  queueMax?: number;
  socketBytesMax?: number;
  badFramesMax?: number;
  inboundMax?: number;
  idleMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

interface Outbound {
  host: string;
  port: number;
  socket: Socket | null;
  connected: boolean;
  queue: Buffer[];
  backoffMs: number;
  timer: NodeJS.Timeout | null;
}

function parseAddr(a: string): { host: string; port: number } | null {
  const i = a.lastIndexOf(':');
  if (i <= 0) return null;
  let host = a.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(a.slice(i + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}

export class RaftTransport {
  readonly id: NodeId;
  _o: Required<Omit<RaftTransportOptions, 'onDrop' | 'peers' | 'host'>> & { host: string };
  _onDrop: (reason: string) => void;
  _out = new Map<NodeId, Outbound>();
  _in = new Set<Socket>();
  _server: Server | null = null;
  _closed = false;
  readonly stats = { sent: 0, received: 0, connects: 0, drops: {} as Record<string, number> };

  constructor(o: RaftTransportOptions) {
    if (!Buffer.isBuffer(o.secret) || o.secret.length < 16) {
      throw new Error('raft transport: the cluster secret must be at least 16 bytes');
    }
    const d = TRANSPORT_DEFAULTS;
    this.id = o.id;
    this._o = {
      id: o.id,
      secret: o.secret,
      host: o.host ?? '127.0.0.1',
      port: o.port,
      onMessage: o.onMessage,
      frameBytesMax: o.frameBytesMax ?? d.frameBytesMax,
      preAuthBytesMax: o.preAuthBytesMax ?? d.preAuthBytesMax,
      queueMax: o.queueMax ?? d.queueMax,
      socketBytesMax: o.socketBytesMax ?? d.socketBytesMax,
      badFramesMax: o.badFramesMax ?? d.badFramesMax,
      inboundMax: o.inboundMax ?? d.inboundMax,
      idleMs: o.idleMs ?? d.idleMs,
      reconnectMinMs: o.reconnectMinMs ?? d.reconnectMinMs,
      reconnectMaxMs: o.reconnectMaxMs ?? d.reconnectMaxMs,
    };
    this._onDrop = o.onDrop ?? (() => undefined);
    for (const id of Object.keys(o.peers)) this.setPeer(id, o.peers[id]);
  }

  /** Listen; resolves with the bound port. */
  start(): Promise<number> {
    return new Promise((resolve, reject) => {
      const srv = createServer((s) => this._accept(s));
      this._server = srv;
      srv.once('error', reject);
      srv.listen(this._o.port, this._o.host, () => {
        srv.off('error', reject);
        srv.on('error', () => this._drop('listen-error'));
        const a = srv.address();
        resolve(typeof a === 'object' && a ? a.port : this._o.port);
      });
    });
  }

  setPeer(id: NodeId, addr: string): void {
    const a = parseAddr(addr);
    if (!a) throw new Error('raft transport: bad peer address ' + addr);
    const old = this._out.get(id);
    if (old && old.host === a.host && old.port === a.port) return;
    if (old) this._closeOut(old);
    this._out.set(id, {
      host: a.host,
      port: a.port,
      socket: null,
      connected: false,
      queue: [],
      backoffMs: 0,
      timer: null,
    });
  }

  removePeer(id: NodeId): void {
    const o = this._out.get(id);
    if (o) this._closeOut(o);
    this._out.delete(id);
  }

  /** Queue or write `m` to m.to. Never throws: failures are counted drops (Raft resends). */
  send(m: Message): void {
    if (this._closed) return;
    const o = this._out.get(m.to);
    if (!o) {
      this._drop('unknown-peer');
      return;
    }
    const frame = encodeFrame(this._o.secret, m);
    if (frame.length - 4 > this._o.frameBytesMax) {
      this._drop('frame-too-big');
      return;
    }
    if (o.connected && o.socket) {
      if (o.socket.writableLength > this._o.socketBytesMax) {
        this._drop('backpressure');
        return;
      }
      o.socket.write(frame);
      this.stats.sent++;
      return;
    }
    if (o.queue.length >= this._o.queueMax) {
      o.queue.shift();
      this._drop('queue-full');
    }
    o.queue.push(frame);
    if (!o.socket && !o.timer) this._dial(o);
  }

  close(): Promise<void> {
    if (this._closed) return Promise.resolve();
    this._closed = true;
    this._out.forEach((o) => this._closeOut(o));
    this._in.forEach((s) => s.destroy());
    this._in.clear();
    const srv = this._server;
    if (!srv) return Promise.resolve();
    return new Promise((resolve) => srv.close(() => resolve()));
  }

  _dial(o: Outbound): void {
    if (this._closed) return;
    const s = connect({ host: o.host, port: o.port });
    o.socket = s;
    s.setNoDelay(true);
    s.on('connect', () => {
      this.stats.connects++;
      o.connected = true;
      o.backoffMs = 0;
      const q = o.queue;
      o.queue = [];
      for (let i = 0; i < q.length; i++) {
        s.write(q[i]);
        this.stats.sent++;
      }
    });
    // We never expect data on an outbound socket; ignore whatever arrives.
    s.on('data', () => undefined);
    s.on('error', () => this._drop('connect-error'));
    s.on('close', () => {
      if (o.socket !== s) return;
      o.socket = null;
      o.connected = false;
      if (this._closed) return;
      // Exponential backoff while there is something to send (Raft keeps sending, so the
      // link to a live peer comes back within reconnectMaxMs).
      o.backoffMs = Math.min(
        this._o.reconnectMaxMs,
        o.backoffMs === 0 ? this._o.reconnectMinMs : o.backoffMs * 2,
      );
      o.timer = setTimeout(() => {
        o.timer = null;
        if (!o.socket && o.queue.length > 0) this._dial(o);
      }, o.backoffMs);
    });
  }

  _closeOut(o: Outbound): void {
    if (o.timer) clearTimeout(o.timer);
    o.timer = null;
    const s = o.socket;
    o.socket = null;
    o.connected = false;
    o.queue = [];
    if (s) s.destroy();
  }

  _accept(s: Socket): void {
    if (this._closed || this._in.size >= this._o.inboundMax) {
      this._drop('too-many-connections');
      s.destroy();
      return;
    }
    this._in.add(s);
    s.setNoDelay(true);
    s.setTimeout(this._o.idleMs);
    const dec = new FrameDecoder(
      this._o.secret,
      this._o.frameBytesMax,
      (m) => {
        this.stats.received++;
        this._o.onMessage(m);
      },
      (reason) => {
        this._drop(reason);
        if (dec.bad >= this._o.badFramesMax) {
          dec.halt();
          s.destroy();
        }
      },
      this._o.preAuthBytesMax,
    );
    s.on('data', (chunk: Buffer) => {
      if (!s.destroyed) dec.push(chunk);
    });
    s.on('timeout', () => {
      this._drop('idle');
      s.destroy();
    });
    s.on('error', () => undefined);
    s.on('close', () => this._in.delete(s));
  }

  _drop(reason: string): void {
    this.stats.drops[reason] = (this.stats.drops[reason] ?? 0) + 1;
    this._onDrop(reason);
  }
}
