/**
 * dist/firmware/bench.js (the device benchmark: the shipped codec, session and outbox under the
 * shipped minifier settings) runs on an emulated ESP32 and prints one JSON line of the promised
 * shape with sane numbers. Shape, not speed: the emulator is V8, not the interpreter.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Emulator } from '../../boards/emulator/emulator.js';
import { packageRoot } from '../../boards/profiles.js';

const file = join(packageRoot(), 'dist', 'firmware', 'bench.js');
const emu = new Emulator();
afterAll(() => emu.close());

it('bench.js prints {publishPerSec, parsePerSec, varsAtRest, varsFullWindow} on an emulated board', async () => {
  expect(existsSync(file), `${file} is missing: run npm run build`).toBe(true);
  const board = emu.add({ id: 'bench', board: 'esp32', bundle: readFileSync(file, 'latin1') });
  expect(board.bootError).toBeNull();
  let line: string | undefined;
  for (let i = 0; i < 300 && !line; i++) {
    line = board.logs.find((l) => l.startsWith('{'));
    if (!line) await new Promise((r) => setTimeout(r, 50));
  }
  expect(line, 'no JSON line; logs: ' + board.logs.join('\n')).toBeDefined();
  expect(board.logs.filter((l) => l.startsWith('Uncaught'))).toEqual([]);
  const r = JSON.parse(line!);
  expect(Object.keys(r).sort()).toEqual(['parsePerSec', 'publishPerSec', 'varsAtRest', 'varsFullWindow']);
  for (const k of Object.keys(r)) {
    expect(Number.isInteger(r[k]), k).toBe(true);
    expect(r[k], k).toBeGreaterThan(0);
  }
  // A full window holds eight encoded readings more than the session at rest.
  expect(r.varsFullWindow).toBeGreaterThan(r.varsAtRest);
  expect(r.varsAtRest).toBeLessThan(board.profile.vars);
  // Exactly one line: the benchmark ends by itself.
  expect(board.logs.filter((l) => l.startsWith('{')).length).toBe(1);
  console.log('bench.js on the emulator: ' + line);
});
