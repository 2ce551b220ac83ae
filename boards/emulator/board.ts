/**
 * One emulated board: the shipped bundle (read back from the board's Storage as `.bootcde`, as
 * the interpreter runs boot code) inside its own node:vm context with Espruino's globals over
 * Node. Reboot drops RAM (the context, timers and sockets) and keeps Storage.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as vm from 'node:vm';
import type { BoardProfile } from '../profiles.js';
import type { EmuClock } from './clock.js';
import { codeVars, intrinsics, sizeOf } from './memory.js';
import { createDgramModule, createNetModule, EspSocket, NetHost } from './net.js';
import { preludeSource } from './globals.js';
import { EmuStorage, PowerCut } from './storage.js';

export type BoardState = 'off' | 'running' | 'dead';

export interface BoardOptions {
  id: string;
  profile: BoardProfile;
  clock: EmuClock;
  /** Folder for this board's Storage. */
  dir: string;
  /** Lines the board prints, as they come (the console). */
  onLog?: (board: EmulatedBoard, line: string) => void;
  /** Lines kept in memory for inspection. */
  logLinesMax?: number;
}

export interface BoardCounters {
  boots: number;
  errors: number;
  txTcp: number;
  rxTcp: number;
  txUdp: number;
  rxUdp: number;
}

/** Uncaught errors a board survives before the emulator declares it dead (a boot loop guard for tests). */
const ERRORS_MAX = 1000;
/** Joining Wi-Fi takes a moment on a real board: keeps the boot order realistic. */
const WIFI_JOIN_MS = 50;

export class EmulatedBoard {
  readonly id: string;
  readonly profile: BoardProfile;
  readonly storage: EmuStorage;
  readonly logs: string[] = [];
  readonly counters: BoardCounters = { boots: 0, errors: 0, txTcp: 0, rxTcp: 0, txUdp: 0, rxUdp: 0 };
  state: BoardState = 'off';
  /** Analog pin values in [0, 1] set by a test; unset pins read a slow deterministic wave. */
  readonly pins = new Map<string, number>();
  readonly digital = new Map<string, boolean>();
  /** The last error that stopped the boot code, if any. */
  bootError: string | null = null;
  consoleLocked = false;
  telnet = 'on';
  peakVars = 0;

  private readonly clock: EmuClock;
  private readonly onLog?: (board: EmulatedBoard, line: string) => void;
  private readonly logLinesMax: number;
  private context: vm.Context | null = null;
  private skip: WeakSet<object> = new WeakSet();
  private initialGlobals = new Set<string>();
  private timers = new Map<number, { handle: NodeJS.Timeout; interval: number | null; fn: () => void; due: number }>();
  private nextTimerId = 1;
  private readonly sockets = new Set<{ destroy(): void }>();
  private link = true;
  /** Whether the network is there at all (a test cuts it with setLink(false)). */
  private linkAllowed = true;
  private readonly refused = new Set<string>();
  private bootMs = 0;
  private codeBytes = 0;
  private wifi: { emit(ev: string, ...a: unknown[]): void; joined: boolean } | null = null;

  constructor(opts: BoardOptions) {
    this.id = opts.id;
    this.profile = opts.profile;
    this.clock = opts.clock;
    this.onLog = opts.onLog;
    this.logLinesMax = opts.logLinesMax ?? 200;
    this.storage = new EmuStorage(join(opts.dir, 'storage'), opts.profile.storageBytes);
    this.storage.onPowerCut = () => this.stop('dead');
  }

  /** Writes the bundle as boot code and, if given, the device config, as `espfleet flash` does. */
  flash(bundle: string, config?: object): void {
    this.storage.write('.bootcde', bundle);
    // The flash tool writes the config's JSON text as UTF-8 bytes, as a file on the device holds it.
    if (config) this.storage.write('espfleet.json', Buffer.from(JSON.stringify(config), 'utf8').toString('latin1'));
  }

  /** Powers the board on: a fresh interpreter runs `.bootcde` from Storage. */
  boot(): void {
    if (this.state === 'running') throw new Error(`board ${this.id} is already running`);
    this.counters.boots++;
    this.bootError = null;
    this.bootMs = this.clock.now();
    this.link = this.profile.network === 'host' && this.linkAllowed;
    const ctx = this.createContext();
    this.context = ctx;
    this.state = 'running';
    const code = this.storage.read('.bootcde');
    if (code === undefined) {
      this.print('No boot code in Storage (.bootcde): flash the bundle first');
      return;
    }
    this.codeBytes = code.length;
    try {
      new vm.Script(code, { filename: `${this.id}/.bootcde` }).runInContext(ctx, { timeout: 5000 });
    } catch (e) {
      if (e instanceof PowerCut) return;
      this.bootError = errorText(e);
      this.counters.errors++;
      this.print('Uncaught ' + this.bootError);
    }
  }

  /** Reboot: RAM (context, timers, sockets) is lost, Storage stays. */
  reboot(): void {
    this.stop('off');
    this.boot();
  }

  /** Power off at once, mid-whatever. */
  powerOff(): void {
    this.stop('off');
  }

  /** Cuts the Wi-Fi/network link (TCP sockets drop, datagrams vanish) or restores it. */
  setLink(up: boolean): void {
    this.linkAllowed = up;
    if (up) {
      // A host-networked port is simply back; a Wi-Fi board must re-join (its firmware does).
      if (this.profile.network === 'host') this.link = true;
      return;
    }
    const wasUp = this.link;
    this.link = false;
    for (const s of [...this.sockets]) if (s instanceof EspSocket) s.destroy();
    if (wasUp && this.wifi?.joined) {
      this.wifi.joined = false;
      this.wifi.emit('disconnected', { reason: 'emulated link loss' });
    }
  }

  /** Runs code in the board's context as the console would (the REPL of `espfleet flash`). */
  evaluate(code: string): unknown {
    if (!this.context) throw new Error(`board ${this.id} is not running`);
    return this.guardValue(() => new vm.Script(code, { filename: `${this.id}/console` }).runInContext(this.context!, { timeout: 5000 }));
  }

  /** JsVars in use: code run from Storage plus everything reachable from the bundle's globals. */
  varsUsed(): number {
    if (!this.context) return 0;
    const g = this.context as Record<string, unknown>;
    const seen = new WeakSet<object>();
    let total = codeVars(this.codeBytes, true);
    for (const k of Object.getOwnPropertyNames(g)) {
      if (this.initialGlobals.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(g, k);
      total += 1 + (k.length > 4 ? Math.ceil((k.length - 4) / 12) : 0);
      if (d && 'value' in d) total += sizeOf(d.value, this.skip, seen);
    }
    if (total > this.peakVars) this.peakVars = total;
    return total;
  }

  /** The runtime object the bundle leaves on `global.espfleet` (for tests: inspect, never drive). */
  runtime(): Record<string, any> | undefined {
    return this.context ? ((this.context as Record<string, unknown>).espfleet as Record<string, any>) : undefined;
  }

  uptimeMs(): number {
    return this.state === 'running' ? this.clock.now() - this.bootMs : 0;
  }

  private stop(state: BoardState): void {
    for (const t of this.timers.values()) clearTimeout(t.handle);
    this.timers.clear();
    for (const s of [...this.sockets]) s.destroy();
    this.sockets.clear();
    this.context = null;
    this.wifi = null;
    this.state = state;
  }

  print(line: string): void {
    this.logs.push(line);
    if (this.logs.length > this.logLinesMax) this.logs.splice(0, this.logs.length - this.logLinesMax);
    this.onLog?.(this, line);
  }

  /** Runs a callback into the bundle; what it throws is printed and counted, and the board goes on. */
  guard(fn: () => void): void {
    if (this.state !== 'running') return;
    try {
      fn();
    } catch (e) {
      if (e instanceof PowerCut) return;
      this.counters.errors++;
      this.print('Uncaught ' + errorText(e));
      if (this.counters.errors > ERRORS_MAX) {
        this.print(`emulator: more than ${ERRORS_MAX} uncaught errors, board stopped`);
        this.stop('dead');
      }
    }
  }

  private guardValue(fn: () => unknown): unknown {
    let out: unknown;
    this.guard(() => {
      out = fn();
    });
    return out;
  }

  private setTimer(fn: unknown, ms: unknown, interval: boolean): number {
    if (typeof fn !== 'function') throw new Error('setTimeout: first argument must be a function');
    const delay = Math.max(0, Number(ms) || 0);
    const id = this.nextTimerId++;
    const clock = this.clock;
    // Timers fire at their virtual deadline, never before it (a real timer may wake a little
    // early, which at speed 1000 would be a virtual second); intervals keep their phase.
    const timer = { handle: null as unknown as NodeJS.Timeout, interval: interval ? Math.max(1, delay) : null, fn: fn as () => void, due: clock.now() + delay };
    const run = (): void => {
      if (this.timers.get(id) !== timer) return;
      const early = timer.due - clock.now();
      if (early > 0) {
        timer.handle = setTimeout(run, clock.realDelay(early));
        return;
      }
      if (timer.interval === null) this.timers.delete(id);
      else {
        timer.due += timer.interval;
        timer.handle = setTimeout(run, clock.realDelay(timer.due - clock.now()));
      }
      this.guard(timer.fn);
    };
    timer.handle = setTimeout(run, clock.realDelay(delay));
    this.timers.set(id, timer);
    return id;
  }

  private clearTimer(id: unknown): void {
    const t = this.timers.get(Number(id));
    if (!t) return;
    clearTimeout(t.handle);
    this.timers.delete(Number(id));
  }

  private netHost(): NetHost {
    return {
      guard: (fn) => this.guard(fn),
      linkUp: () => this.link && this.state === 'running',
      syncRefusal: this.profile.port === 'LINUX',
      refused: this.refused,
      track: (s) => this.sockets.add(s),
      untrack: (s) => this.sockets.delete(s),
      count: (dir, proto, bytes) => {
        if (dir === 'tx' && proto === 'tcp') this.counters.txTcp += bytes;
        else if (dir === 'rx' && proto === 'tcp') this.counters.rxTcp += bytes;
        else if (dir === 'tx') this.counters.txUdp += bytes;
        else this.counters.rxUdp += bytes;
      },
    };
  }

  private createContext(): vm.Context {
    const board = this;
    const clock = this.clock;
    const profile = this.profile;
    const storage = this.storage;
    const netHost = this.netHost();
    const modules: Record<string, () => unknown> = {
      net: () => createNetModule(netHost),
      dgram: () => createDgramModule(netHost),
      Storage: () => storage,
      crypto: () => ({
        SHA1: (d: unknown) => digest('sha1', d),
        SHA256: (d: unknown) => digest('sha256', d),
        SHA512: (d: unknown) => digest('sha512', d),
      }),
      Wifi: () => board.createWifi(),
      TelnetServer: () => ({
        setOptions(o: { mode?: string }) {
          board.telnet = String(o?.mode ?? 'on');
        },
      }),
      heatshrink: () => ({
        compress: (d: unknown) => d,
        decompress: (d: unknown) => d,
      }),
      ESP32: () => ({ setBLE_Debug() {}, deepSleep() {}, getState: () => ({ sdkVersion: 'emulated' }) }),
      ESP8266: () => ({ getState: () => ({ sdkVersion: 'emulated' }) }),
    };
    const loaded = new Map<string, unknown>();
    const sandbox: Record<string, unknown> = {
      console: {
        log: (...args: unknown[]) => board.print(args.map((a) => (typeof a === 'string' ? a : safeJson(a))).join(' ')),
      },
      print: (...args: unknown[]) => board.print(args.map(String).join(' ')),
      getTime: () => (clock.now() - board.bootMs) / 1000 + board.timeOffsetS,
      setTime: (s: number) => {
        board.timeOffsetS = Number(s) - (clock.now() - board.bootMs) / 1000;
      },
      setTimeout: (fn: unknown, ms: unknown) => board.setTimer(fn, ms, false),
      setInterval: (fn: unknown, ms: unknown) => board.setTimer(fn, ms, true),
      clearTimeout: (id: unknown) => board.clearTimer(id),
      clearInterval: (id: unknown) => board.clearTimer(id),
      changeInterval: (id: unknown, ms: unknown) => {
        const t = board.timers.get(Number(id));
        if (!t || t.interval === null) return;
        t.interval = Math.max(1, Number(ms) || 1);
        t.due = clock.now() + t.interval;
      },
      analogRead: (pin: unknown) => board.readPin(String(pin)),
      digitalWrite: (pin: unknown, v: unknown) => {
        board.digital.set(String(pin), Boolean(v));
      },
      digitalRead: (pin: unknown) => (board.digital.get(String(pin)) ? 1 : 0),
      pinMode: () => undefined,
      require: (name: unknown) => {
        const n = String(name);
        if (!profile.modules.includes(n) || !modules[n]) {
          throw new Error(
            modules[n] === undefined && ['fs', 'os', 'path', 'child_process', 'http2', 'events', 'stream', 'util', 'buffer', 'node:fs'].includes(n)
              ? `Module ${n} not found (a Node.js module: Espruino has no '${n}')`
              : `Module ${n} not found (board ${profile.name} has: ${profile.modules.join(', ')})`,
          );
        }
        if (!loaded.has(n)) {
          const m = modules[n]() as object;
          // Native on the device: never counted as the bundle's memory.
          board.skip.add(m);
          loaded.set(n, m);
        }
        return loaded.get(n);
      },
      E: {
        toString: (...args: unknown[]) => espToString(args),
        hwRand: () => randomBytes(4).readInt32LE(0),
        getSizeOf: (v: unknown) => sizeOf(v, board.skip),
        getTemperature: () => (profile.port === 'LINUX' ? NaN : 40 + Math.sin(clock.now() / 600000) * 2),
        setPassword: (p: unknown) => {
          board.consolePassword = p === undefined ? null : String(p);
        },
        lockConsole: () => {
          board.consoleLocked = true;
        },
        setBootCode: (code: unknown) => storage.write('.bootcde', String(code)),
        reboot: () => setImmediate(() => board.state === 'running' && board.reboot()),
        getErrorFlags: () => [],
      },
      process: {
        memory: () => {
          const used = board.varsUsed();
          return { free: Math.max(0, profile.vars - used), usage: used, total: profile.vars, history: 0, gc: 0, gctime: 0, blocksize: profile.bytesPerVar };
        },
        env: { VERSION: '2v29', BOARD: profile.port },
        version: '2v29',
      },
      load: () => setImmediate(() => board.state === 'running' && board.reboot()),
      reset: () => setImmediate(() => board.state === 'running' && board.reboot()),
    };
    const ctx = vm.createContext(sandbox, { name: `board ${this.id}`, codeGeneration: { strings: true, wasm: false } });
    new vm.Script(preludeSource(), { filename: 'espruino-prelude' }).runInContext(ctx);
    // Espruino's `global` is the global object itself.
    new vm.Script('this.global = this;').runInContext(ctx);
    this.skip = intrinsics(ctx);
    this.initialGlobals = new Set(Object.getOwnPropertyNames(ctx));
    return ctx;
  }

  consolePassword: string | null = null;
  timeOffsetS = 0;

  private createWifi(): unknown {
    const board = this;
    const ev = new Map<string, Array<(...a: unknown[]) => void>>();
    const wifi = {
      joined: false,
      emit(name: string, ...a: unknown[]) {
        for (const fn of ev.get(name) ?? []) board.guard(() => fn(...a));
      },
    };
    this.wifi = wifi;
    return {
      on(name: string, fn: (...a: unknown[]) => void) {
        ev.set(name, [...(ev.get(name) ?? []), fn]);
      },
      connect(ssid: unknown, opts: unknown, cb?: (err: unknown) => void) {
        if (typeof ssid !== 'string') throw new Error('Wifi.connect: ssid must be a string');
        const callback = typeof opts === 'function' ? (opts as (e: unknown) => void) : cb;
        setTimeout(() => {
          if (board.state !== 'running') return;
          if (!board.linkAllowed) {
            if (callback) board.guard(() => callback('auth_fail: emulated network down'));
            return;
          }
          board.link = true;
          wifi.joined = true;
          if (callback) board.guard(() => callback(null));
          wifi.emit('connected', { ip: '127.0.0.1' });
        }, board.clock.realDelay(WIFI_JOIN_MS));
      },
      disconnect(cb?: () => void) {
        board.link = false;
        wifi.joined = false;
        if (cb) setImmediate(() => board.guard(cb));
      },
      getIP(cb?: (err: unknown, info: unknown) => void) {
        const info = { ip: board.link ? '127.0.0.1' : '0.0.0.0', netmask: '255.0.0.0', gw: '127.0.0.1', mac: board.mac() };
        if (cb) setImmediate(() => board.guard(() => cb(null, info)));
        return info;
      },
      getStatus: () => ({ station: board.link ? 'connected' : 'off' }),
      setHostname() {},
    };
  }

  /** A stable MAC-like id derived from the board id. */
  mac(): string {
    const h = createHash('sha256').update(this.id).digest();
    return [0x24, h[1], h[2], h[3], h[4], h[5]].map((b) => b.toString(16).padStart(2, '0')).join(':');
  }

  private readPin(pin: string): number {
    const v = this.pins.get(pin);
    if (v !== undefined) return v;
    if (!this.profile.pins.analog.includes(pin)) throw new Error(`analogRead: pin ${pin} is not an analog pin on ${this.profile.name}`);
    // A slow wave, different per board and pin, so dashboards show something alive.
    const h = createHash('sha1').update(this.id + pin).digest();
    const phase = (h[0] / 255) * Math.PI * 2;
    return 0.5 + 0.3 * Math.sin(this.clock.now() / 60000 + phase);
  }
}

function digest(alg: string, d: unknown): ArrayBuffer {
  const text = typeof d === 'string' ? d : String(d);
  const b = createHash(alg).update(Buffer.from(text, 'latin1')).digest();
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

/** E.toString: a byte String from strings, numbers, arrays, typed arrays and ArrayBuffers. */
function espToString(args: unknown[]): string {
  let out = '';
  for (const a of args) {
    if (typeof a === 'string') out += a;
    else if (typeof a === 'number') out += String.fromCharCode(a & 255);
    else if (ArrayBuffer.isView(a)) out += Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('latin1');
    else if (a && Object.prototype.toString.call(a) === '[object ArrayBuffer]') out += Buffer.from(a as ArrayBuffer).toString('latin1');
    else if (Array.isArray(a)) out += espToString(a);
    else if (a && typeof a === 'object' && 'data' in (a as object)) {
      const o = a as { data: unknown; count?: number };
      out += espToString([o.data]).repeat(o.count ?? 1);
    }
  }
  return out;
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function errorText(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e) {
    const name = (e as { name?: string }).name ?? 'Error';
    return `${name}: ${(e as { message: string }).message}`;
  }
  return String(e);
}
