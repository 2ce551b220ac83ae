/**
 * The Espruino adapter: the firmware's Board interface over Espruino's globals and modules
 * (ESPRUINO.md). The only file of the bundle that touches the interpreter directly.
 */
import { Board, BoardMemory, BoardStorage, BoardWifi, TcpHandler, TcpSocket, UdpHandler, UdpSocket } from '../../firmware/board.js';
import { BOARD, FW, HAS_CRYPTO, HAS_TELNET, HAS_WIFI } from 'espfleet:board';
import { Sha256Resume } from '../../firmware/core/hmac.js';
import { sha256, sha256Resume } from '../../firmware/core/sha256.js';

class EspruinoStorageAdapter implements BoardStorage {
  _s: EspruinoStorage;
  constructor() {
    this._s = require('Storage');
  }
  read(name: string, offset?: number, length?: number): string | null {
    var v = offset === undefined ? this._s.read(name) : this._s.read(name, offset, length);
    return v === undefined ? null : v;
  }
  writeAt(name: string, data: string, offset: number, size?: number): boolean {
    try {
      return (size === undefined ? this._s.write(name, data, offset) : this._s.write(name, data, offset, size)) !== false;
    } catch (e) {
      // Full flash, or bytes already programmed at that offset.
      return false;
    }
  }
  write(name: string, data: string): boolean {
    try {
      return this._s.write(name, data) !== false;
    } catch (e) {
      // Espruino throws when the flash is full and compaction cannot make room.
      return false;
    }
  }
  erase(name: string): void {
    this._s.erase(name);
  }
  list(prefix: string): string[] {
    var all = this._s.list();
    var out: string[] = [];
    for (var i = 0; i < all.length; i++) if (all[i].indexOf(prefix) === 0) out.push(all[i]);
    return out;
  }
  free(): number {
    return this._s.getFree();
  }
}

class EspruinoWifiAdapter implements BoardWifi {
  _w: EspruinoWifi;
  _onDown: (() => void) | null;
  constructor() {
    this._w = require('Wifi');
    this._onDown = null;
    var self = this;
    this._w.on('disconnected', function () {
      if (self._onDown) self._onDown();
    });
  }
  connect(ssid: string, pass: string, cb: (err: string | null) => void): void {
    try {
      this._w.connect(ssid, { password: pass }, function (err) {
        cb(err ? String(err) : null);
      });
    } catch (e) {
      defer(function () {
        cb(String(e));
      });
    }
  }
  onDisconnect(cb: () => void): void {
    this._onDown = cb;
  }
}

class TcpAdapter implements TcpSocket {
  _sock: EspruinoSocket | null;
  _h: TcpHandler;
  _closed: boolean;
  constructor(host: string, port: number, h: TcpHandler) {
    this._h = h;
    this._closed = false;
    this._sock = null;
    var self = this;
    try {
      var s = require('net').connect({ host: host, port: port }, function () {
        h.onConnect();
      });
      this._sock = s;
      s.on('data', function (d: string) {
        h.onData(d);
      });
      s.on('error', function (e: unknown) {
        h.onError(errText(e));
      });
      s.on('close', function () {
        self._done();
      });
    } catch (e) {
      // The Linux port throws synchronously on a refused connect; report it like the ESP32 does,
      // on a later turn, never from inside this call.
      defer(function () {
        h.onError(errText(e));
        self._done();
      });
    }
  }
  write(data: string): void {
    if (this._sock && !this._closed) this._sock.write(data);
  }
  close(): void {
    if (this._sock && !this._closed) this._sock.end();
  }
  _done(): void {
    if (this._closed) return;
    this._closed = true;
    this._sock = null;
    this._h.onClose();
  }
}

class UdpAdapter implements UdpSocket {
  _sock: EspruinoDgramSocket;
  _port: number;
  constructor(port: number, h: UdpHandler) {
    var s = require('dgram').createSocket('udp4');
    this._sock = s;
    this._port = 0;
    var self = this;
    s.on('message', function (msg: string, info: { address: string; port: number }) {
      h.onMessage(msg, info.address, info.port);
    });
    s.bind(port, function () {
      try {
        self._port = s.address().port;
      } catch (e) {
        self._port = port;
      }
    });
  }
  send(msg: string, port: number, address: string): void {
    this._sock.send(msg, port, address);
  }
  port(): number {
    return this._port;
  }
  close(): void {
    this._sock.close();
  }
}

function errText(e: unknown): string {
  if (e && typeof e === 'object' && (e as { message?: string }).message) return String((e as { message: string }).message);
  return String(e);
}

function defer(fn: () => void): void {
  setTimeout(fn, 0);
}

export class EspruinoBoard implements Board {
  name: string;
  fw: string;
  storage: BoardStorage;
  wifi: BoardWifi | null;
  sha256: (bytes: string) => string;
  sha256Resume: Sha256Resume | null;
  _timer: number;
  _wallOffsetMs: number;

  constructor() {
    this.name = BOARD;
    this.fw = FW;
    this.storage = new EspruinoStorageAdapter();
    this.wifi = HAS_WIFI ? new EspruinoWifiAdapter() : null;
    // HAS_CRYPTO is a build constant: the bundle of a board with the crypto module carries no
    // JavaScript SHA-256, and one without carries no reference to the module.
    if (HAS_CRYPTO) {
      var c = require('crypto');
      this.sha256 = function (bytes: string) {
        return E.toString(c.SHA256(bytes));
      };
      this.sha256Resume = null;
    } else {
      this.sha256 = sha256;
      this.sha256Resume = sha256Resume;
    }
    this._timer = -1;
    this._wallOffsetMs = 0;
  }
  now(): number {
    // getTime() moves if anyone calls setTime(): the runtime never does (see setWallMs).
    return Math.floor(getTime() * 1000);
  }
  wallMs(): number {
    return this.now() + this._wallOffsetMs;
  }
  setWallMs(ms: number): void {
    this._wallOffsetMs = ms - this.now();
  }
  entropy(): number {
    return E.hwRand() | 0;
  }
  arm(delayMs: number, fn: () => void): void {
    if (this._timer >= 0) clearTimeout(this._timer);
    var self = this;
    this._timer = setTimeout(function () {
      self._timer = -1;
      fn();
    }, delayMs < 0 ? 0 : delayMs);
  }
  log(line: string): void {
    console.log(line);
  }
  tcpConnect(host: string, port: number, handler: TcpHandler): TcpSocket {
    return new TcpAdapter(host, port, handler);
  }
  udpOpen(port: number, handler: UdpHandler): UdpSocket {
    return new UdpAdapter(port, handler);
  }
  memory(): BoardMemory {
    var m = process.memory();
    return { used: m.usage, total: m.total };
  }
  analogRead(pin: string): number {
    try {
      return analogRead(pin);
    } catch (e) {
      return NaN;
    }
  }
  temperature(): number {
    try {
      return E.getTemperature();
    } catch (e) {
      return NaN;
    }
  }
  digitalWrite(pin: string, value: boolean): void {
    digitalWrite(pin, value);
  }
  lockConsole(password: string | null): void {
    // Ports without the TelnetServer module (Linux) have no telnet console to switch off.
    if (HAS_TELNET) require('TelnetServer').setOptions({ mode: 'off' });
    if (password) {
      E.setPassword(password);
      E.lockConsole();
    }
  }
  reboot(): void {
    E.reboot();
  }
}
