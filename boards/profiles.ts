/**
 * Board profiles: the facts of ESPRUINO.md per board (vars, bytes per var, Storage, modules) and
 * the budgets the build and the tests hold each bundle to. The JSON files beside this module are
 * the single source; the build, the emulator and the CLI all read them through here.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BoardProfile {
  name: string;
  description: string;
  /** Espruino build the profile stands for. */
  port: string;
  /** JsVars the interpreter has in total. */
  vars: number;
  bytesPerVar: number;
  storageBytes: number;
  /** Espruino modules `require()` can load on this board. */
  modules: string[];
  network: 'wifi' | 'host';
  pins: { analog: string[]; led: string | null };
  /** Present when the full runtime does not fit the board's RAM: why, and what would. */
  ramNote?: string;
  budget: {
    /** Minified bundle size the build refuses to exceed. */
    bundleBytesMax: number;
    /** JsVars the runtime may hold at rest (code run from Storage plus state), leaving the rest for work. */
    varsAtRestMax: number;
  };
}

/** The repository root, found from this file whether it runs from source or from dist/node. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      if (pkg.name === 'espfleet') return dir;
    } catch {
      // not here: keep walking up
    }
    dir = dirname(dir);
  }
  throw new Error('espfleet package root not found above ' + fileURLToPath(import.meta.url));
}

export function boardsDir(): string {
  return join(packageRoot(), 'boards');
}

export function listBoards(): string[] {
  return readdirSync(boardsDir())
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5))
    .sort();
}

export function loadBoard(name: string): BoardProfile {
  const names = listBoards();
  if (!names.includes(name)) {
    throw new Error(`unknown board '${name}' (known: ${names.join(', ')})`);
  }
  const p = JSON.parse(readFileSync(join(boardsDir(), name + '.json'), 'utf8')) as BoardProfile;
  checkProfile(p, name);
  return p;
}

function checkProfile(p: BoardProfile, name: string): void {
  const bad = (why: string): never => {
    throw new Error(`board profile ${name}.json: ${why}`);
  };
  if (p.name !== name) bad(`name '${p.name}' does not match the file name`);
  for (const k of ['vars', 'bytesPerVar', 'storageBytes'] as const) {
    if (!Number.isInteger(p[k]) || p[k] <= 0) bad(`${k} must be a positive integer`);
  }
  if (!Array.isArray(p.modules)) bad('modules must be an array');
  if (!p.budget || !(p.budget.bundleBytesMax > 0) || !(p.budget.varsAtRestMax > 0)) bad('budget is incomplete');
  if (p.budget.varsAtRestMax > p.vars) bad('varsAtRestMax exceeds the board\'s vars');
}
