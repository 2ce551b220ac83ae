/**
 * Loads dist/firmware/lib.js (every firmware core, wire and protocol module, minified with the
 * shipped settings) inside an emulated board's interpreter context, so table and trace tests can
 * run against what ships as well as against the source.
 *
 * Objects the bundle returns come from another realm: compare them with toEqual (structure), not
 * toStrictEqual (which also compares prototypes).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Emulator } from '../../boards/emulator/emulator.js';
import { packageRoot } from '../../boards/profiles.js';

let cached: Record<string, any> | null = null;
let emulator: Emulator | null = null;

export function firmwareLibPath(): string {
  return join(packageRoot(), 'dist', 'firmware', 'lib.js');
}

export function loadFirmwareLib(): Record<string, any> {
  if (cached) return cached;
  const file = firmwareLibPath();
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` (npm test does) first`);
  emulator = new Emulator();
  const board = emulator.add({ id: 'lib', board: 'esp32', bundle: readFileSync(file, 'latin1') });
  if (board.bootError) throw new Error('lib.js failed to load on the emulated board: ' + board.bootError);
  const lib = board.evaluate('ESPFLEET_LIB') as Record<string, any> | undefined;
  if (!lib) throw new Error('lib.js did not define ESPFLEET_LIB: ' + board.logs.join('\n'));
  cached = lib;
  return lib;
}
