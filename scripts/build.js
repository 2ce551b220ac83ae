#!/usr/bin/env node
// Builds the firmware bundles (one per board profile), the firmware library bundle the tests
// load, and the host (tsc into dist/node). Usage: node scripts/build.js [--board <name>] [--firmware-only]
import { buildFirmware } from './firmware-build.js';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
let board = null;
let firmwareOnly = false;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--board' && args[i + 1]) board = args[++i];
  else if (args[i] === '--firmware-only') firmwareOnly = true;
  else {
    console.error(`build: unknown argument '${args[i]}' (usage: build [--board <name>] [--firmware-only])`);
    process.exit(2);
  }
}

const started = Date.now();
try {
  const report = await buildFirmware({ root, boards: board ? [board] : null, log: (l) => console.log(l) });
  if (report.boards.some((b) => !b.withinBudget)) {
    console.error('build: a bundle exceeds its board budget');
    process.exit(1);
  }
} catch (err) {
  console.error('build: firmware failed: ' + (err && err.message ? err.message : err));
  if (err && err.frame) console.error(err.frame);
  process.exit(1);
}
if (!firmwareOnly) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('build: host compile failed');
    process.exit(1);
  }
  console.log('host compiled into dist/node');
}
console.log(`build done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
