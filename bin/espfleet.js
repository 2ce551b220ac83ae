#!/usr/bin/env node
// The `espfleet` command. The host is TypeScript compiled into dist/node by `npm run build`.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'node', 'host', 'cli', 'index.js');
if (!existsSync(entry)) {
  console.error('espfleet: the companion is not built yet: run `npm run build` in ' + root);
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error('espfleet: ' + (err && err.stack ? err.stack : err));
    process.exitCode = 1;
  },
);
