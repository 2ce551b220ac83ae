// The firmware build recipe of ESPRUINO.md: TypeScript 5.9 to ES5, rollup with freeze off,
// terser with ecma 5 and hoist_funs, then no array hole left. Used by `npm run build` and by
// `espfleet build`.
import { rollup } from 'rollup';
import typescript from '@rollup/plugin-typescript';
import terser from '@rollup/plugin-terser';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, relative } from 'node:path';
import { checkBundle, formatViolations } from './bundle-gate.js';

const BOARD_MODULE = 'espfleet:board';
const LIB_MODULE = 'espfleet:lib';
const PART_PREFIX = 'espfleet:part:';

/**
 * Parts measured on their own (report.json `parts`): each is minified alone with the same settings,
 * from an entry that exports only what the device uses, so shared constants fold as they do in the
 * bundle. `mqtt` is the MQTT client as the device ships it (codec, UTF-8 rules, session): the
 * figure that compares with Espruino's stock MQTT module (6.1 KB minified).
 */
export const PARTS = {
  mqtt: { exports: { MqttSession: 'firmware/protocols/mqtt-session.ts' }, peerBytes: 6246, peer: 'Espruino stock MQTT module' },
  supervisor: { exports: { ReconnectSupervisor: 'firmware/protocols/reconnect-supervisor.ts' } },
  outbox: { exports: { Outbox: 'firmware/protocols/outbox.ts' } },
};

function partPlugin(root) {
  return {
    name: 'espfleet-part',
    resolveId(id) {
      return id.startsWith(PART_PREFIX) ? '\0' + id : null;
    },
    load(id) {
      if (!id.startsWith('\0' + PART_PREFIX)) return null;
      const part = PARTS[id.slice(1 + PART_PREFIX.length)];
      return Object.entries(part.exports)
        .map(([name, file]) => `export { ${name} } from ${JSON.stringify(join(root, file))};`)
        .join('\n');
    },
  };
}

/** Terser settings shared by every firmware artefact (what ships is what the tests load). */
export const terserOptions = {
  ecma: 5,
  compress: { hoist_funs: true, passes: 2, unsafe_arrows: false, arrows: false, keep_fargs: true },
  // Private members are `_name` (STYLE.md): shorten them. `__proto__`/`__esModule` keep their names.
  mangle: { properties: { regex: /^_[a-zA-Z0-9]/ } },
  format: { comments: false, ascii_only: true },
};

function boardPlugin(profile, fw) {
  const hasWifi = profile.modules.includes('Wifi');
  const hasCrypto = profile.modules.includes('crypto');
  const hasTelnet = profile.modules.includes('TelnetServer');
  const code =
    `export const BOARD = ${JSON.stringify(profile.name)};\n` +
    `export const FW = ${JSON.stringify(fw)};\n` +
    `export const HAS_WIFI = ${hasWifi};\n` +
    `export const HAS_CRYPTO = ${hasCrypto};\n` +
    `export const HAS_TELNET = ${hasTelnet};\n` +
    `export const VARS = ${profile.vars};\n` +
    `export const LINUX = ${profile.port === 'LINUX'};\n`;
  return {
    name: 'espfleet-board',
    resolveId(id) {
      return id === BOARD_MODULE ? '\0' + BOARD_MODULE : null;
    },
    load(id) {
      return id === '\0' + BOARD_MODULE ? code : null;
    },
  };
}

/** The library entry: every firmware core/wire/protocol module as a namespace keyed by camelCase file name. */
function libPlugin(root) {
  return {
    name: 'espfleet-lib',
    resolveId(id) {
      return id === LIB_MODULE ? '\0' + LIB_MODULE : null;
    },
    load(id) {
      if (id !== '\0' + LIB_MODULE) return null;
      const lines = [];
      const names = [];
      for (const dir of ['core', 'wire', 'protocols']) {
        const abs = join(root, 'firmware', dir);
        if (!existsSync(abs)) continue;
        for (const f of readdirSync(abs).sort()) {
          if (!f.endsWith('.ts') || f.endsWith('.d.ts')) continue;
          const name = f.slice(0, -3).replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
          lines.push(`import * as ${name} from ${JSON.stringify(join(abs, f))};`);
          names.push(name);
        }
      }
      lines.push(`export { ${names.join(', ')} };`);
      return lines.join('\n');
    },
  };
}

/** Rewrites array holes (`[a,,b]`): the interpreter rejects them in code it parses but skips. */
export function fillArrayHoles(code) {
  let out = code;
  for (let i = 0; i < 10; i++) {
    const next = out.replace(/\[,/g, '[void 0,').replace(/,,(?=[^"'`]*)/g, (m, off, s) => (inArray(s, off) ? ',void 0,' : m));
    if (next === out) break;
    out = next;
  }
  return out;
}

// A `,,` is a hole only inside an array literal and outside strings; the minifier emits strings
// with `"`, so count quotes and brackets up to the offset. Cheap enough for bundles of tens of KB.
function inArray(s, off) {
  let depth = [];
  let q = null;
  for (let i = 0; i < off; i++) {
    const c = s[i];
    if (q) {
      if (c === '\\') i++;
      else if (c === q) q = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') q = c;
    else if (c === '[' || c === '(' || c === '{') depth.push(c);
    else if (c === ']' || c === ')' || c === '}') depth.pop();
  }
  return !q && depth[depth.length - 1] === '[';
}

function tsPlugin(root, tsconfig) {
  return typescript({
    tsconfig,
    compilerOptions: { noEmit: false, sourceMap: false, declaration: false, noEmitOnError: true, outDir: undefined },
    include: [join(root, 'firmware', '**', '*.ts'), join(root, 'boards', 'espruino', '**', '*.ts')],
    noForceEmit: false,
  });
}

async function bundle({ input, plugins, name }) {
  const warnings = [];
  const b = await rollup({
    input,
    plugins,
    onwarn(w) {
      warnings.push(w);
    },
    treeshake: { moduleSideEffects: false },
  });
  const { output } = await b.generate({
    format: 'iife',
    name,
    freeze: false,
    generatedCode: { preset: 'es5', symbols: false },
    esModule: false,
    plugins: [terser(terserOptions)],
  });
  await b.close();
  const errs = warnings.filter((w) => w.plugin === 'typescript');
  if (errs.length) throw new Error(errs.map((w) => w.message).join('\n'));
  const code = fillArrayHoles(output[0].code);
  // Where the bytes come from: each module's share of the (unminified) rendered code.
  const modules = Object.entries(output[0].modules)
    .map(([id, m]) => ({ module: relative(process.cwd(), id.replace(/^\0/, '')), rendered: m.renderedLength }))
    .filter((m) => m.rendered > 0)
    .sort((a, b) => b.rendered - a.rendered);
  return Object.assign(new String(code), { modules });
}

export function loadProfiles(root) {
  const dir = join(root, 'boards');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
}

/**
 * Builds dist/firmware/<board>.js for each profile (or the named ones), dist/firmware/lib.js and
 * dist/firmware/report.json. Returns the report.
 */
export async function buildFirmware({ root, boards = null, log = () => {} }) {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const fw = pkg.version;
  const profiles = loadProfiles(root);
  const names = profiles.map((p) => p.name);
  for (const b of boards || []) {
    if (!names.includes(b)) throw new Error(`unknown board '${b}' (known: ${names.join(', ')})`);
  }
  const out = join(root, 'dist', 'firmware');
  mkdirSync(out, { recursive: true });
  const tsconfig = join(root, 'boards', 'espruino', 'tsconfig.json');
  const report = { fw, at: new Date().toISOString(), boards: [] };
  // The bundles are independent: build them side by side (terser and the type checker are CPU
  // bound, and a machine has more than one core), then report in profile order.
  const wanted = profiles.filter((p) => !boards || boards.includes(p.name));
  const libPromise = boards
    ? null
    : bundle({
        input: LIB_MODULE,
        plugins: [libPlugin(root), tsPlugin(root, join(root, 'firmware', 'tsconfig.json'))],
        name: 'ESPFLEET_LIB',
      });
  const benchEntry = join(root, 'boards', 'espruino', 'bench.ts');
  const benchPromise =
    boards || !existsSync(benchEntry)
      ? null
      : bundle({
          input: benchEntry,
          plugins: [boardPlugin(profiles.find((p) => p.name === 'esp32'), fw), tsPlugin(root, tsconfig)],
          name: undefined,
        });
  const partsPromise = boards
    ? null
    : Promise.all(
        Object.keys(PARTS).map((name) =>
          bundle({
            input: PART_PREFIX + name,
            plugins: [partPlugin(root), tsPlugin(root, join(root, 'firmware', 'tsconfig.json'))],
            name: 'P',
          }),
        ),
      );
  const builtAll = await Promise.all(
    wanted.map((profile) =>
      bundle({
        input: join(root, 'boards', 'espruino', 'main.ts'),
        plugins: [boardPlugin(profile, fw), tsPlugin(root, tsconfig)],
        name: undefined,
      }),
    ),
  );
  for (const [k, profile] of wanted.entries()) {
    const built = builtAll[k];
    const code = String(built);
    const file = join(out, `${profile.name}.js`);
    const violations = checkBundle(code, { modules: profile.modules });
    if (violations.length) {
      throw new Error(`${profile.name} bundle holds constructs Espruino cannot run:\n` + formatViolations(`${profile.name}.js`, violations));
    }
    writeFileSync(file, code);
    const bytes = Buffer.byteLength(code, 'latin1');
    const gzipBytes = gzipSync(code).length;
    // ESPRUINO.md: a 10 KB bundle run from Storage costs about 642 vars.
    const codeVarsFromStorage = Math.ceil((bytes / 10240) * 642);
    const entry = {
      board: profile.name,
      file: relative(root, file),
      bytes,
      gzipBytes,
      bundleBytesMax: profile.budget.bundleBytesMax,
      codeVarsFromStorage,
      vars: profile.vars,
      varsAtRestMax: profile.budget.varsAtRestMax,
      withinBudget: bytes <= profile.budget.bundleBytesMax,
      modules: built.modules,
    };
    report.boards.push(entry);
    log(
      `  ${profile.name.padEnd(8)} ${String(bytes).padStart(7)} B (gzip ${String(gzipBytes).padStart(6)} B) of ${profile.budget.bundleBytesMax} B budget; ` +
        `~${codeVarsFromStorage} vars of code from Storage of ${profile.vars} (at-rest budget ${profile.budget.varsAtRestMax})` +
        (entry.withinBudget ? '' : '  OVER BUDGET'),
    );
  }
  if (libPromise) {
    const lib = await libPromise;
    // Rollup builds namespace objects as {__proto__:null, …}; the library only needs plain ones.
    const libCode = String(lib).split('{__proto__:null,').join('{');
    const libViolations = checkBundle(libCode);
    if (libViolations.length) throw new Error('lib bundle holds constructs Espruino cannot run:\n' + formatViolations('lib.js', libViolations));
    writeFileSync(join(out, 'lib.js'), libCode);
    log(`  lib      ${String(libCode.length).padStart(7)} B (every firmware core, for the tests)`);
  }
  if (benchPromise) {
    // The device benchmark: the same codec, session and outbox, the same minifier settings.
    const bench = await benchPromise;
    const benchViolations = checkBundle(String(bench));
    if (benchViolations.length) throw new Error('bench bundle holds constructs Espruino cannot run:\n' + formatViolations('bench.js', benchViolations));
    writeFileSync(join(out, 'bench.js'), String(bench));
    log(`  bench    ${String(bench.length).padStart(7)} B (device benchmark: run it on any Espruino)`);
  }
  if (partsPromise) {
    const built = await partsPromise;
    report.parts = Object.keys(PARTS).map((name, k) => {
      const code = String(built[k]);
      const p = PARTS[name];
      const entry = { part: name, modules: built[k].modules.map((m) => m.module), bytes: code.length, gzipBytes: gzipSync(code).length };
      if (p.peerBytes) Object.assign(entry, { peer: p.peer, peerBytes: p.peerBytes });
      log(`  part ${name.padEnd(10)} ${String(code.length).padStart(6)} B` + (p.peerBytes ? ` (${p.peer}: ${p.peerBytes} B)` : ''));
      return entry;
    });
  }
  writeFileSync(join(out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}
