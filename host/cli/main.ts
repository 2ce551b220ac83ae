/**
 * `espfleet`: the command line. Every command answers --help and rejects unknown flags and bad
 * values with a one-line reason and exit code 2.
 */
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { packageRoot } from '../../boards/profiles.js';
import { CommandSpec, helpText, parseArgs, Parsed, UsageError } from './args.js';
import { emulateSpec, runEmulate } from './emulate-command.js';
import { hostSpec, runHost } from './host-command.js';
import { callSpec, devicesSpec, runCall, runDevices } from './client-commands.js';

interface Command {
  spec: CommandSpec;
  run(p: Parsed, argv: string[]): Promise<number>;
}

const buildSpec: CommandSpec = {
  name: 'build',
  summary: 'builds the firmware bundles into dist/firmware/<board>.js and prints bytes and budgets per board',
  usage: 'espfleet build [--board <name>]',
  flags: { board: { type: 'string', help: 'build only this board', arg: 'name' } },
};

async function runBuild(p: Parsed): Promise<number> {
  const root = packageRoot();
  const mod = await import(pathToFileURL(join(root, 'scripts', 'firmware-build.js')).href);
  const boards = p.flags.board === undefined ? null : [String(p.flags.board)];
  try {
    const report = await mod.buildFirmware({ root, boards, log: (l: string) => console.log(l) });
    return report.boards.some((b: { withinBudget: boolean }) => !b.withinBudget) ? 1 : 0;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (msg.startsWith('unknown board')) throw new UsageError(`build: ${msg}`);
    console.error(`build: ${msg}`);
    return 1;
  }
}

export const commands: Record<string, Command> = {
  build: { spec: buildSpec, run: runBuild },
  emulate: { spec: emulateSpec, run: runEmulate },
  host: { spec: hostSpec, run: (p, argv) => runHost(p, argv) },
  devices: { spec: devicesSpec, run: runDevices },
  call: { spec: callSpec, run: runCall },
};

/** Registers a command (the host, devices, call, flash and verify commands add themselves). */
export function addCommand(name: string, c: Command): void {
  commands[name] = c;
}

function usage(): string {
  const w = Math.max(...Object.keys(commands).map((n) => n.length)) + 2;
  return [
    'espfleet: firmware runtime for Espruino boards and the companion that coordinates them',
    '',
    'usage: espfleet <command> [flags]   (espfleet <command> --help for its flags)',
    '',
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(w)}${c.spec.summary}`),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`espfleet: unknown command '${name}' (commands: ${Object.keys(commands).join(', ')})`);
    return 2;
  }
  try {
    const parsed = parseArgs(cmd.spec, rest);
    if (parsed.help) {
      console.log(helpText(cmd.spec));
      return 0;
    }
    return await cmd.run(parsed, rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
}
