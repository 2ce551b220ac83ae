/**
 * Espruino's `net` and `dgram` modules over real Node sockets, with the device's quirks
 * (ESPRUINO.md): sockets take Strings only (a Uint8Array is sent as its decimal text, "1,2,3"),
 * received data is a byte String, `addMembership` works only before `bind()`, broadcast needs no
 * setBroadcast, and on the Linux port a connect to a port known to be closed throws
 * synchronously. Each board owns its sockets; a reboot or power cut closes them all.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

type Listener = (...args: unknown[]) => void;

/** The minimal event emitter of Espruino objects: on(event, fn), emit to every listener. */
export class EspEvents {
  private readonly listeners = new Map<string, Listener[]>();
  constructor(protected readonly guard: (fn: () => void) => void) {}
  on(event: string, fn: Listener): this {
    if (typeof fn !== 'function') throw new Error(`on('${event}'): listener must be a function`);
    const l = this.listeners.get(event) ?? [];
    l.push(fn);
    this.listeners.set(event, l);
    return this;
  }
  removeAllListeners(event?: string): void {
    if (event === undefined) this.listeners.clear();
    else this.listeners.delete(event);
  }
  emit(event: string, ...args: unknown[]): void {
    const l = this.listeners.get(event);
    if (!l) return;
    for (const fn of [...l]) this.guard(() => fn(...args));
  }
}

export interface NetHost {
  /** Runs a callback into the bundle, reporting what it throws as the interpreter does. */
  guard(fn: () => void): void;
  /** Whether the board's network link is up (Wi-Fi joined, not cut by a test). */
  linkUp(): boolean;
  /** Linux port quirk: connect throws synchronously on a refused port. */
  syncRefusal: boolean;
  /** host:port pairs that refused a connection lately (for the synchronous-throw quirk). */
  refused: Set<string>;
  track(closeable: { destroy(): void }): void;
  untrack(closeable: { destroy(): void }): void;
  /** Bytes moved, for the board's counters. */
  count(dir: 'tx' | 'rx', proto: 'tcp' | 'udp', bytes: number): void;
}

function espString(data: unknown): string {
  // ESPRUINO.md: "Sockets take Strings only. Writing a Uint8Array sends the text "1,2,3"."
  return typeof data === 'string' ? data : String(data);
}

export class EspSocket extends EspEvents {
  private sock: net.Socket | null;
  private closed = false;
  constructor(
    private readonly host: NetHost,
    target: { host: string; port: number },
    onConnect: (() => void) | undefined,
  ) {
    super((fn) => host.guard(fn));
    const key = `${target.host}:${target.port}`;
    const s = net.connect({ host: target.host, port: target.port });
    this.sock = s;
    s.setNoDelay(true);
    host.track(this);
    s.on('connect', () => {
      host.refused.delete(key);
      if (onConnect) host.guard(onConnect);
      this.emit('connect');
    });
    s.on('data', (b: Buffer) => {
      host.count('rx', 'tcp', b.length);
      this.emit('data', b.toString('latin1'));
    });
    s.on('drain', () => this.emit('drain'));
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') host.refused.add(key);
      this.emit('error', { code: e.code === 'ECONNREFUSED' ? -111 : -1, message: e.code ?? e.message });
    });
    s.on('close', () => this.finish(true));
  }
  write(data: unknown): boolean {
    if (!this.sock || this.closed) return false;
    if (!this.host.linkUp()) {
      this.destroy();
      return false;
    }
    const b = Buffer.from(espString(data), 'latin1');
    this.host.count('tx', 'tcp', b.length);
    return this.sock.write(b);
  }
  end(data?: unknown): void {
    if (data !== undefined) this.write(data);
    this.sock?.end();
  }
  /** Emulator-side: drop the connection at once (reboot, power cut, link loss). */
  destroy(): void {
    this.sock?.destroy();
    this.finish(false);
  }
  private finish(emit: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.sock = null;
    this.host.untrack(this);
    if (emit) this.emit('close', false);
  }
}

export function createNetModule(host: NetHost): object {
  return {
    connect(opts: { host?: string; port?: number }, cb?: () => void) {
      if (!opts || typeof opts !== 'object') throw new Error('net.connect: options {host, port} required');
      const target = { host: String(opts.host ?? 'localhost'), port: Number(opts.port) };
      if (!Number.isInteger(target.port) || target.port <= 0 || target.port > 65535) throw new Error('net.connect: bad port');
      if (host.syncRefusal && host.refused.has(`${target.host}:${target.port}`)) {
        // Espruino's Linux port: connect() to a closed port throws at once.
        throw new Error(`Unable to connect to ${target.host}:${target.port}`);
      }
      const sock = new EspSocket(host, target, cb);
      if (!host.linkUp()) setImmediate(() => sock.destroy());
      return sock;
    },
    createServer() {
      throw new Error('net.createServer is not emulated: boards act as clients only');
    },
  };
}

export class EspDgramSocket extends EspEvents {
  private readonly sock: dgram.Socket;
  private bound = false;
  private binding = false;
  private closed = false;
  private memberships: string[] = [];
  private pending: Array<() => void> = [];
  constructor(
    private readonly host: NetHost,
    reuseAddr: boolean,
  ) {
    super((fn) => host.guard(fn));
    // SO_REUSEADDR only when asked: with it, the kernel may hand two sockets bound to port 0 the
    // same ephemeral port, and unicast datagrams then reach only one of them.
    this.sock = dgram.createSocket({ type: 'udp4', reuseAddr });
    host.track(this);
    this.sock.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
      if (!host.linkUp()) return;
      host.count('rx', 'udp', msg.length);
      this.emit('message', msg.toString('latin1'), { address: rinfo.address, port: rinfo.port, size: msg.length });
    });
    this.sock.on('error', (e: Error) => this.emit('error', { message: e.message }));
    this.sock.on('close', () => {
      if (!this.closed) {
        this.closed = true;
        host.untrack(this);
      }
      this.emit('close');
    });
  }
  bind(port?: number, cb?: () => void): this {
    if (this.binding || this.bound) throw new Error('dgram: socket already bound');
    this.binding = true;
    this.sock.bind(port ?? 0, () => {
      this.bound = true;
      this.binding = false;
      // Espruino has no setBroadcast: a client socket may always send to a broadcast address.
      this.sock.setBroadcast(true);
      for (const group of this.memberships) {
        try {
          this.sock.addMembership(group);
        } catch {
          // a group the host cannot join: the device would not receive it either
        }
      }
      if (cb) this.host.guard(cb);
      this.emit('listening');
      const p = this.pending;
      this.pending = [];
      for (const fn of p) fn();
    });
    return this;
  }
  addMembership(group: string): void {
    // ESPRUINO.md: addMembership only works when called before bind().
    if (this.bound || this.binding) return;
    this.memberships.push(String(group));
  }
  address(): { address: string; port: number } {
    if (!this.bound) return { address: '0.0.0.0', port: 0 };
    const a = this.sock.address();
    return { address: a.address, port: a.port };
  }
  send(msg: unknown, a: unknown, b?: unknown, c?: unknown, d?: unknown): void {
    if (this.closed) return;
    let text = espString(msg);
    let port: number;
    let address: string;
    if (d !== undefined && typeof c === 'number') {
      // send(msg, offset, length, port, address)
      text = text.substr(Number(a), Number(b));
      port = c;
      address = String(d);
    } else {
      port = Number(a);
      address = String(b);
    }
    if (!this.host.linkUp()) return;
    const buf = Buffer.from(text, 'latin1');
    const go = (): void => {
      if (this.closed) return;
      this.host.count('tx', 'udp', buf.length);
      this.sock.send(buf, port, address, () => {
        // Datagrams are fire-and-forget on the device too: errors are dropped packets.
      });
    };
    if (this.bound) go();
    else {
      this.pending.push(go);
      if (!this.binding) this.bind(0);
    }
  }
  close(): void {
    this.destroy();
  }
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.untrack(this);
    try {
      this.sock.close();
    } catch {
      // already closed
    }
  }
}

export function createDgramModule(host: NetHost): object {
  return {
    createSocket(type: unknown) {
      const o = typeof type === 'object' && type !== null ? (type as { type?: string; reuseAddr?: boolean }) : null;
      const t = o ? o.type : type;
      if (t !== 'udp4') throw new Error("dgram.createSocket: only 'udp4' is supported");
      return new EspDgramSocket(host, o?.reuseAddr === true);
    },
  };
}
