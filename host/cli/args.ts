/**
 * Command-line parsing for every `espfleet` command: flags are declared with their type, range
 * and help line; an unknown flag or a bad value is a UsageError (one line, exit code 2).
 */

export class UsageError extends Error {}

export type FlagType = 'string' | 'int' | 'number' | 'bool' | 'hex' | 'port' | 'url';

export interface FlagSpec {
  type: FlagType;
  help: string;
  /** For int/number: inclusive bounds. */
  min?: number;
  max?: number;
  /** For string: allowed values. */
  choices?: string[];
  default?: string | number | boolean;
  /** Environment variable that supplies the value when the flag is absent. */
  env?: string;
  /** Placeholder in the help text. */
  arg?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  flags: Record<string, FlagSpec>;
  /** Positional arguments: names for help and how many are required / allowed. */
  positionals?: { names: string[]; required: number };
}

export interface Parsed {
  flags: Record<string, string | number | boolean | undefined>;
  positionals: string[];
  help: boolean;
}

export function parseArgs(spec: CommandSpec, argv: string[], env: NodeJS.ProcessEnv = process.env): Parsed {
  const flags: Parsed['flags'] = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      const f = spec.flags[name];
      if (!f) throw new UsageError(`${spec.name}: unknown flag --${name} (see espfleet ${spec.name} --help)`);
      let raw: string;
      if (f.type === 'bool') {
        raw = eq > 0 ? a.slice(eq + 1) : 'true';
      } else if (eq > 0) {
        raw = a.slice(eq + 1);
      } else {
        if (i + 1 >= argv.length) throw new UsageError(`${spec.name}: --${name} needs a value (${f.arg ?? f.type})`);
        raw = argv[++i];
      }
      flags[name] = convert(spec.name, name, f, raw);
      continue;
    }
    if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) throw new UsageError(`${spec.name}: unknown flag ${a} (see espfleet ${spec.name} --help)`);
    positionals.push(a);
  }
  if (help) return { flags, positionals, help };
  for (const [name, f] of Object.entries(spec.flags)) {
    if (flags[name] !== undefined) continue;
    if (f.env && env[f.env] !== undefined && env[f.env] !== '') flags[name] = convert(spec.name, `${name} (from ${f.env})`, f, env[f.env]!);
    else if (f.default !== undefined) flags[name] = f.default;
  }
  const pos = spec.positionals ?? { names: [], required: 0 };
  if (positionals.length < pos.required) throw new UsageError(`${spec.name}: missing ${pos.names.slice(positionals.length, pos.required).map((n) => `<${n}>`).join(' ')} (usage: ${spec.usage})`);
  if (positionals.length > pos.names.length) throw new UsageError(`${spec.name}: unexpected argument '${positionals[pos.names.length]}' (usage: ${spec.usage})`);
  return { flags, positionals, help };
}

function convert(cmd: string, name: string, f: FlagSpec, raw: string): string | number | boolean {
  const bad = (why: string): never => {
    throw new UsageError(`${cmd}: --${name} ${why}, got '${raw}'`);
  };
  switch (f.type) {
    case 'bool':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return bad('must be true or false');
    case 'int':
    case 'port': {
      if (!/^-?\d+$/.test(raw)) bad('must be an integer');
      const n = Number(raw);
      const min = f.type === 'port' ? (f.min ?? 0) : f.min;
      const max = f.type === 'port' ? 65535 : f.max;
      if (min !== undefined && n < min) bad(`must be at least ${min}`);
      if (max !== undefined && n > max) bad(`must be at most ${max}`);
      return n;
    }
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) bad('must be a number');
      if (f.min !== undefined && n < f.min) bad(`must be at least ${f.min}`);
      if (f.max !== undefined && n > f.max) bad(`must be at most ${f.max}`);
      return n;
    }
    case 'hex':
      if (!/^([0-9a-fA-F]{2})+$/.test(raw)) bad('must be hex digits (an even number of them)');
      if (f.min !== undefined && raw.length / 2 < f.min) bad(`must be at least ${f.min} bytes`);
      return raw.toLowerCase();
    case 'url':
      try {
        const u = new URL(raw);
        if (f.choices && !f.choices.includes(u.protocol.replace(/:$/, ''))) bad(`must be a ${f.choices.join(' or ')} URL`);
      } catch (e) {
        if (e instanceof UsageError) throw e;
        bad('must be a URL');
      }
      return raw;
    case 'string':
      if (f.choices && !f.choices.includes(raw)) bad(`must be one of ${f.choices.join(', ')}`);
      if (raw.length === 0) bad('must not be empty');
      return raw;
  }
}

export function helpText(spec: CommandSpec): string {
  const lines = [`espfleet ${spec.name}: ${spec.summary}`, '', `usage: ${spec.usage}`, ''];
  const rows = Object.entries(spec.flags).map(([name, f]) => {
    const left = `  --${name}${f.type === 'bool' ? '' : ` <${f.arg ?? f.type}>`}`;
    const extra = [f.default !== undefined ? `default ${f.default}` : '', f.env ? `env ${f.env}` : '', f.choices ? `one of ${f.choices.join(', ')}` : '']
      .filter(Boolean)
      .join('; ');
    return [left, f.help + (extra ? ` (${extra})` : '')];
  });
  rows.push(['  --help', 'this text']);
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  for (const [l, r] of rows) lines.push(l.padEnd(w) + r);
  return lines.join('\n');
}
