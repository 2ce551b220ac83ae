/**
 * Exactly the Espruino APIs the adapter uses (ESPRUINO.md). Nothing else of the interpreter is
 * visible to TypeScript, and firmware/ sees none of it.
 */

declare function getTime(): number;
declare function setTime(seconds: number): void;
declare function setTimeout(fn: () => void, ms: number): number;
declare function clearTimeout(id: number): void;
declare function analogRead(pin: string): number;
declare function digitalWrite(pin: string, value: boolean | number): void;
declare function require(name: 'net'): EspruinoNet;
declare function require(name: 'dgram'): EspruinoDgram;
declare function require(name: 'Storage'): EspruinoStorage;
declare function require(name: 'Wifi'): EspruinoWifi;
declare function require(name: 'crypto'): EspruinoCrypto;
declare function require(name: 'TelnetServer'): { setOptions(o: { mode: string }): void };

declare var global: { [name: string]: any };

declare var E: {
  toString(data: ArrayBuffer | Uint8Array): string;
  hwRand(): number;
  getTemperature(): number;
  setPassword(password: string): void;
  lockConsole(): void;
  reboot(): void;
};

declare var process: {
  memory(): { free: number; usage: number; total: number };
  env: { VERSION: string; BOARD: string };
};

declare var console: { log(...args: unknown[]): void };

interface EspruinoEvents {
  on(event: string, fn: (...args: any[]) => void): void;
}

interface EspruinoSocket extends EspruinoEvents {
  write(data: string): void;
  end(): void;
}

interface EspruinoNet {
  connect(opts: { host: string; port: number }, cb: () => void): EspruinoSocket;
}

interface EspruinoDgramSocket extends EspruinoEvents {
  bind(port: number, cb?: () => void): EspruinoDgramSocket;
  send(msg: string, port: number, address: string): void;
  address(): { address: string; port: number };
  close(): void;
}

interface EspruinoDgram {
  createSocket(type: string): EspruinoDgramSocket;
}

interface EspruinoStorage {
  read(name: string, offset?: number, length?: number): string | undefined;
  write(name: string, data: string, offset?: number, size?: number): boolean;
  erase(name: string): void;
  list(match?: RegExp | string): string[];
  getFree(): number;
}

interface EspruinoWifi extends EspruinoEvents {
  connect(ssid: string, opts: { password: string }, cb: (err: string | null) => void): void;
}

interface EspruinoCrypto {
  SHA256(data: string): ArrayBuffer;
}
