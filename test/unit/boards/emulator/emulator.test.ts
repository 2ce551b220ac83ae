/**
 * The emulator keeps Espruino's quirks (ESPRUINO.md) and hides Node: these tests run small
 * bundles on emulated boards and check what a real board would do.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Emulator } from '../../../../boards/emulator/emulator.js';
import type { EmulatedBoard } from '../../../../boards/emulator/board.js';

let emu: Emulator | null = null;
afterEach(() => {
  emu?.close();
  emu = null;
});

function board(code: string, name = 'esp32', speed = 1): EmulatedBoard {
  emu = new Emulator({ speed });
  return emu.add({ id: 'b1', board: name, bundle: code });
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('no Node inside the board', () => {
  it.each([
    ['Buffer.from("x")', 'Buffer is a Node.js global'],
    ['setImmediate(function(){})', 'setImmediate is a Node.js global'],
    ['new TextEncoder()', 'TextEncoder is a Node.js global'],
    ['process.nextTick(function(){})', 'process.nextTick is not a function'],
    ['require("fs")', "Module fs not found (a Node.js module: Espruino has no 'fs')"],
    ['new Map()', 'Map is not defined (Espruino has no Map)'],
    ['Symbol("x")', 'Symbol is not defined'],
    ['Object.freeze({})', 'Object.freeze is not a function'],
    ['Array.from([1])', 'Array.from is not a function'],
    ['Promise.resolve(1).finally(function(){})', 'finally is not a function'],
    ['Math.trunc(1.5)', 'Math.trunc is not a function'],
  ])('a bundle using %s fails with a clear error', (code, message) => {
    const b = board(`print("start"); ${code};`);
    expect(b.bootError).toContain(message);
    expect(b.logs.join('\n')).toContain('Uncaught');
    expect(b.logs[0]).toBe('start');
  });

  it('a require of a module the board lacks names what the board has', () => {
    const b = board('require("Wifi")', 'linux');
    expect(b.bootError).toContain('Module Wifi not found (board linux has: net, dgram');
  });

  it('errors thrown in a timer print and the loop goes on', async () => {
    const b = board('var n = 0; setInterval(function () { n++; if (n === 2) throw new Error("boom"); }, 5);');
    await until(() => (b.evaluate('n') as number) >= 4);
    expect(b.counters.errors).toBe(1);
    expect(b.logs).toContain('Uncaught Error: boom');
    expect(b.state).toBe('running');
  });
});

describe('sockets take and give byte Strings', () => {
  it('TCP: a Uint8Array is sent as its decimal text; received data is a byte String', async () => {
    const got: Buffer[] = [];
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', (d) => got.push(d));
      s.write(Buffer.from([0xff, 0x00, 0x41]));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const b = board(`
      var rx = null;
      var s = require("net").connect({host: "127.0.0.1", port: ${port}}, function () {
        s.write(new Uint8Array([1, 2, 3]));
        s.write("\\xff\\x00");
      });
      s.on("data", function (d) { rx = (typeof d) + ":" + d.length + ":" + d.charCodeAt(0) + "," + d.charCodeAt(1) + "," + d.charCodeAt(2); });
    `, 'linux');
    await until(() => b.evaluate('rx') !== null && Buffer.concat(got).length >= 7);
    expect(Buffer.concat(got)).toEqual(Buffer.concat([Buffer.from('1,2,3'), Buffer.from([0xff, 0x00])]));
    expect(b.evaluate('rx')).toBe('string:3:255,0,65');
    server.close();
  });

  it('UDP: datagrams go out as bytes and arrive as byte Strings with the sender', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    const port = sock.address().port;
    const got: Buffer[] = [];
    sock.on('message', (m, rinfo) => {
      got.push(m);
      sock.send(Buffer.from([0xc3, 0xa9]), rinfo.port, rinfo.address);
    });
    const b = board(`
      var rx = null;
      var u = require("dgram").createSocket("udp4");
      u.on("message", function (msg, info) { rx = msg.length + ":" + msg.charCodeAt(0) + ":" + info.address + ":" + (info.port > 0); });
      u.bind(0, function () { u.send("hi\\xff", ${port}, "127.0.0.1"); });
    `, 'linux');
    await until(() => b.evaluate('rx') !== null);
    expect(got[0]).toEqual(Buffer.from([0x68, 0x69, 0xff]));
    expect(b.evaluate('rx')).toBe('2:195:127.0.0.1:true');
    sock.close();
  });

  it('addMembership works only before bind', () => {
    const b = board(`
      var u1 = require("dgram").createSocket("udp4"); u1.addMembership("239.1.2.3"); u1.bind(0);
      var u2 = require("dgram").createSocket("udp4"); u2.bind(0); u2.addMembership("239.1.2.3");
    `);
    expect(b.bootError).toBeNull();
    const m1 = (b.evaluate('u1') as { memberships: string[] }).memberships;
    const m2 = (b.evaluate('u2') as { memberships: string[] }).memberships;
    expect(m1).toEqual(['239.1.2.3']);
    expect(m2).toEqual([]);
  });

  it('Linux port: once a port has refused, connect to it throws synchronously; ESP32 reports through events', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const code = `
      var events = [], thrown = [];
      function attempt() {
        try {
          var s = require("net").connect({host: "127.0.0.1", port: ${closedPort}}, function () { events.push("connect"); });
          s.on("error", function (e) { events.push("error"); });
          s.on("close", function () { events.push("close"); });
        } catch (e) { thrown.push(String(e.message)); }
      }
    `;
    const linux = board(code + 'attempt();', 'linux');
    await until(() => (linux.evaluate('events.length') as number) >= 2);
    linux.evaluate('attempt()');
    expect(linux.evaluate('thrown.length')).toBe(1);
    expect(String(linux.evaluate('thrown[0]'))).toContain('Unable to connect');
    emu!.close();
    // An ESP32 must join Wi-Fi before it has a network at all.
    const esp = board(code + 'require("Wifi").connect("lab", {password: "pw"}, function (err) { if (!err) attempt(); });', 'esp32');
    await until(() => (esp.evaluate('events.length') as number) >= 2);
    esp.evaluate('attempt()');
    expect(esp.evaluate('thrown.length')).toBe(0);
  });
});

describe('Storage', () => {
  it('persists across reboot; RAM does not', async () => {
    const b = board(`
      var S = require("Storage");
      var n = (S.readJSON("count", true) || 0) + 1;
      S.writeJSON("count", n);
      var ram = "set at boot " + n;
    `);
    expect(b.evaluate('n')).toBe(1);
    b.evaluate('global.extra = 42');
    b.reboot();
    expect(b.evaluate('n')).toBe(2);
    expect(b.evaluate('typeof extra')).toBe('undefined');
    expect(b.storage.read('count')).toBe('2');
  });

  it('rejects names over 28 characters and writes past the board size', () => {
    const b = board('var S = require("Storage");', 'esp8266');
    expect(() => b.evaluate('S.write("' + 'x'.repeat(29) + '", "a")')).not.toThrow();
    expect(b.logs.join('\n')).toContain('longer than 28 characters');
    b.evaluate('S.write("big", "' + 'y'.repeat(1000) + '")');
    expect(b.storage.read('big')!.length).toBe(1000);
    const free = b.storage.getFree();
    b.evaluate(`try { S.write("huge", new Uint8Array(${free + 10})); } catch (e) { print("full: " + e.message); }`);
    expect(b.logs.join('\n')).toContain('not enough free space');
    expect(b.storage.read('huge')).toBeUndefined();
  });

  it('keeps flash semantics for writes at an offset', () => {
    const b = board('var S = require("Storage"); S.write("f", "ab", 0, 6); S.write("f", "cd", 2);');
    expect(b.storage.read('f')).toBe('abcd\xff\xff');
    b.evaluate('try { S.write("f", "zz", 0); } catch (e) { print(e.message); }');
    expect(b.logs.join('\n')).toContain('already written');
  });

  it('a power cut in the middle of a write leaves a torn file and stops the board', () => {
    const b = board('var S = require("Storage"); S.write("log", "first");');
    b.storage.tornWrite = { bytes: 3, name: 'log' };
    b.evaluate('S.write("log", "second-record")');
    expect(b.state).toBe('dead');
    expect(b.storage.read('log')).toBe('sec');
    b.boot();
    expect(b.state).toBe('running');
    expect(b.storage.read('log')).toBe('first');
  });
});

describe('time, entropy and memory', () => {
  it('runs faster than real time when asked', async () => {
    const b = board('var fired = 0; var t0 = getTime(); setTimeout(function () { fired = getTime() - t0; }, 10000);', 'esp32', 1000);
    await until(() => (b.evaluate('fired') as number) > 0, 2000);
    expect(b.evaluate('fired')).toBeGreaterThanOrEqual(9.9);
  });

  it('E.toString, E.hwRand and crypto behave as on the device', () => {
    const b = board(`
      var s = E.toString(new Uint8Array([104, 105, 255]));
      var r1 = E.hwRand(), r2 = E.hwRand();
      var h = E.toString(require("crypto").SHA256("abc"));
    `);
    expect(b.evaluate('s')).toBe('hi\xff');
    expect(b.evaluate('r1 === r2')).toBe(false);
    expect(Buffer.from(b.evaluate('h') as string, 'latin1').toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('counts JsVars of what the bundle holds, against the board total', () => {
    const b = board('var small = {a: 1}; var arr = [1, 2, 3];', 'esp32c3');
    expect(b.evaluate('E.getSizeOf(small)')).toBe(2);
    expect(b.evaluate('E.getSizeOf(arr)')).toBe(4);
    const before = b.evaluate('process.memory().usage') as number;
    b.evaluate('global.big = []; for (var i = 0; i < 500; i++) big.push({v: "value number " + i});');
    const m = b.evaluate('process.memory()') as { usage: number; total: number; free: number };
    expect(m.total).toBe(4095);
    expect(m.usage - before).toBeGreaterThan(500 * 4);
    expect(m.free).toBe(m.total - m.usage);
  });
});

describe('torn writes keep flash semantics', () => {
  it('a torn write that creates a file lands its prefix over 0xFF', () => {
    const b = board('var S = require("Storage");');
    b.storage.tornWrite = { bytes: 3, name: 'seg' };
    b.evaluate('S.write("seg", "abcdefgh", 0, 12)');
    expect(b.storage.read('seg')).toBe('abc' + '\xff'.repeat(9));
  });

  it('a torn write that re-creates a file does not keep its old bytes', () => {
    const b = board('var S = require("Storage"); S.write("seg", "old-old-old");');
    b.storage.tornWrite = { bytes: 3, name: 'seg' };
    b.evaluate('S.write("seg", "NEW", 0, 11)');
    expect(b.storage.read('seg')).toBe('NEW' + '\xff'.repeat(8));
  });

  it('a torn append programs only its landed bytes', () => {
    const b = board('var S = require("Storage"); S.write("seg", "ab", 0, 8);');
    b.storage.tornWrite = { bytes: 2, name: 'seg' };
    b.evaluate('S.write("seg", "cdef", 2)');
    expect(b.storage.read('seg')).toBe('abcd' + '\xff'.repeat(4));
  });
});
