/**
 * What the runtime needs from a board. The firmware declares it; boards implement it
 * (boards/espruino for real devices and, through the same Espruino globals, the emulator).
 * Dependencies run boards -> firmware, never back.
 *
 * The IO shape follows ECMA-419: one options/handler object per call, callbacks out, idempotent
 * close(). Handlers are objects with methods (not closures) so a long-lived session object can
 * be its own handler and no closure is allocated per connection. A board NEVER calls a handler
 * synchronously from inside the call that registered it: errors a port reports by throwing
 * (Espruino's Linux port throws on connect to a closed port) are deferred to the next turn.
 */
import { Sha256Resume } from './core/hmac.js';

/** Receives the events of one TCP connection. */
export interface TcpHandler {
  onConnect(): void;
  /** data is a byte String (chars 0-255), as Espruino delivers it. */
  onData(data: string): void;
  /** Called once, after onError if there was one. */
  onClose(): void;
  onError(reason: string): void;
}

export interface TcpSocket {
  /** Takes a byte String only: Espruino sockets send a Uint8Array as its decimal text. */
  write(data: string): void;
  /** Idempotent. onClose follows once. */
  close(): void;
}

/** Receives datagrams of one UDP socket. */
export interface UdpHandler {
  onMessage(msg: string, address: string, port: number): void;
}

export interface UdpSocket {
  send(msg: string, port: number, address: string): void;
  /** The local port once bound (0 before). */
  port(): number;
  close(): void;
}

/** Flash-backed key/value files (Espruino's Storage): names at most 28 characters. */
export interface BoardStorage {
  /** The file's contents (or length bytes from offset), or null when absent. */
  read(name: string, offset?: number, length?: number): string | null;
  /** Writes the whole file; false when the flash is full or the write failed. */
  write(name: string, data: string): boolean;
  /**
   * Writes data at offset. With size the file is first created as size bytes of 0xFF; without,
   * it must exist and only bytes still 0xFF may change (flash programs bits 1 -> 0 only).
   * false when the flash is full or the write failed.
   */
  writeAt(name: string, data: string, offset: number, size?: number): boolean;
  erase(name: string): void;
  /** Names that start with prefix. */
  list(prefix: string): string[];
  /** Free bytes. */
  free(): number;
}

export interface BoardWifi {
  /** Joins the network; cb(null) when connected, cb(reason) on failure. */
  connect(ssid: string, pass: string, cb: (err: string | null) => void): void;
  /** Registers the one handler called when the link drops after having been up. */
  onDisconnect(cb: () => void): void;
}

export interface BoardMemory {
  /** JsVars in use. */
  used: number;
  /** JsVars in total. */
  total: number;
}

export interface Board {
  /** Board profile name: esp32, esp8266, linux, … */
  readonly name: string;
  /** Firmware version string baked in at build time. */
  readonly fw: string;
  /** Milliseconds since an arbitrary origin; never goes backwards within a boot. */
  now(): number;
  /** Wall-clock milliseconds since 1970 as the board believes it (may be unset until an offer sets it). */
  wallMs(): number;
  /** Sets the wall clock (from an authenticated offer). */
  setWallMs(ms: number): void;
  /** 32 bits of hardware entropy, to seed the runtime's Rng. */
  entropy(): number;
  /**
   * The single timer of the runtime: fires fn once after delayMs. Arming again replaces the
   * pending one, so the shell can always re-arm to the nearest core deadline.
   */
  arm(delayMs: number, fn: () => void): void;
  log(line: string): void;
  readonly storage: BoardStorage;
  /** null on ports without Wi-Fi (Linux): the network is assumed up. */
  readonly wifi: BoardWifi | null;
  /**
   * SHA-256 over a byte String, returning the 32-byte digest as a byte String: the crypto
   * module where the port has one, else the JavaScript one (firmware/core/sha256.ts).
   */
  readonly sha256: (bytes: string) => string;
  /** The JavaScript hash's resumable form (saves two compressions per HMAC); null with native crypto. */
  readonly sha256Resume: Sha256Resume | null;
  tcpConnect(host: string, port: number, handler: TcpHandler): TcpSocket;
  udpOpen(port: number, handler: UdpHandler): UdpSocket;
  memory(): BoardMemory;
  /** An analog pin read in [0, 1]; NaN when the pin cannot be read. */
  analogRead(pin: string): number;
  /** The chip's own temperature in °C; NaN where the port has none. */
  temperature(): number;
  digitalWrite(pin: string, value: boolean): void;
  /** Locks the console: telnet off and, with a password, E.setPassword + E.lockConsole. */
  lockConsole(password: string | null): void;
  reboot(): void;
}
