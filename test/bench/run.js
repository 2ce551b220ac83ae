#!/usr/bin/env node
// Runs the benchmark suites compiled into dist/node/test/bench/suites (npm run bench builds them).
// Usage: npm run bench [-- <suite>…]
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const suitesDir = join(root, 'dist', 'node', 'test', 'bench', 'suites');
const harness = await import(pathToFileURL(join(root, 'dist', 'node', 'test', 'bench', 'harness.js')).href);
const wanted = process.argv.slice(2);
const files = readdirSync(suitesDir).filter((f) => f.endsWith('.js')).sort();
const names = files.map((f) => f.replace(/\.js$/, ''));
for (const w of wanted) {
  if (!names.includes(w)) {
    console.error(`bench: unknown suite '${w}' (have: ${names.join(', ')})`);
    process.exit(2);
  }
}
let failed = 0;
for (const f of files) {
  const name = f.replace(/\.js$/, '');
  if (wanted.length && !wanted.includes(name)) continue;
  const mod = await import(pathToFileURL(join(suitesDir, f)).href);
  const suite = mod.default;
  const started = Date.now();
  try {
    const { rows, goals } = await suite.run();
    const result = harness.writeResult(join(root, 'dist', 'bench'), suite.name, rows, goals);
    harness.printResult(result);
    console.log(`  (${((Date.now() - started) / 1000).toFixed(1)} s, dist/bench/${suite.name}.json)`);
  } catch (err) {
    failed++;
    console.error(`bench ${name} failed:`, err);
  }
}
process.exit(failed ? 1 : 0);
