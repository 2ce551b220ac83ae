/**
 * The parts the build measures on their own (dist/firmware/report.json `parts`, written by the
 * firmware build): the device's MQTT client (codec, UTF-8 rules, session), minified alone with
 * the shipped settings, is no larger than Espruino's stock MQTT module.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { packageRoot } from '../../boards/profiles.js';

const file = join(packageRoot(), 'dist', 'firmware', 'report.json');

interface Part {
  part: string;
  modules: string[];
  bytes: number;
  gzipBytes: number;
  peer?: string;
  peerBytes?: number;
}

it('the MQTT client part is no larger than the stock Espruino MQTT module', () => {
  expect(existsSync(file), `${file} is missing: run npm run build`).toBe(true);
  const parts: Part[] = JSON.parse(readFileSync(file, 'utf8')).parts;
  const mqtt = parts.find((p) => p.part === 'mqtt');
  expect(mqtt, 'no mqtt part in report.json').toBeDefined();
  // The part is the whole client: codec, UTF-8 rules and session.
  expect(mqtt!.modules.slice().sort()).toEqual(['firmware/protocols/mqtt-session.ts', 'firmware/wire/mqtt-codec.ts', 'firmware/wire/utf8.ts']);
  expect(mqtt!.peerBytes).toBeGreaterThan(0);
  expect(mqtt!.gzipBytes).toBeGreaterThan(0);
  expect(mqtt!.gzipBytes).toBeLessThan(mqtt!.bytes);
  console.log(`mqtt part: ${mqtt!.bytes} B (gzip ${mqtt!.gzipBytes} B); ${mqtt!.peer}: ${mqtt!.peerBytes} B`);
  expect(mqtt!.bytes).toBeLessThanOrEqual(mqtt!.peerBytes!);
});
