/**
 * `espfleet emulate`: n emulated boards running the shipped bundle, each with its own id,
 * Storage folder and simulated sensors, until interrupted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Emulator } from '../../boards/emulator/emulator.js';
import { listBoards } from '../../boards/profiles.js';
import type { CommandSpec, Parsed } from './args.js';
import { UsageError } from './args.js';

export const emulateSpec: CommandSpec = {
  name: 'emulate',
  summary: 'runs n emulated boards with the shipped bundle (each with its own id, Storage folder and sensors)',
  usage: 'espfleet emulate --count <n> [--board <name>] [--data <dir>] [--speed <x>] [--fleet-key <hex> | --host-data <dir>]',
  flags: {
    count: { type: 'int', min: 1, max: 2000, help: 'how many boards', arg: 'n' },
    board: { type: 'string', help: 'board profile', default: 'esp32', arg: 'name' },
    data: { type: 'string', help: 'folder for the boards\' Storage', default: '.espfleet/emulator', arg: 'dir' },
    speed: { type: 'number', min: 0.01, max: 10000, help: 'virtual time per real time', default: 1, arg: 'x' },
    'fleet-key': { type: 'hex', min: 16, env: 'ESPFLEET_FLEET_KEY', help: 'fleet key the boards sign with (default: the one in --host-data)', arg: 'hex' },
    'host-data': { type: 'string', help: 'a local companion\'s data folder, whose fleet.key the boards use when --fleet-key is absent', default: '.espfleet/host', arg: 'dir' },
    prefix: { type: 'string', help: 'device id prefix', default: 'emu-', arg: 'text' },
    'discovery-port': { type: 'port', min: 1, help: 'UDP port the boards beacon to', default: 41900 },
    'discovery-addr': { type: 'string', help: 'address the boards beacon to', default: '127.255.255.255', arg: 'ipv4' },
    'beacon-ms': { type: 'int', min: 1000, max: 3600000, help: 'beacon interval', default: 10000, arg: 'ms' },
    'sample-ms': { type: 'int', min: 100, max: 86400000, help: 'sensor sampling interval', default: 5000, arg: 'ms' },
    quiet: { type: 'bool', help: 'do not echo the boards\' console lines' },
  },
};

export interface FleetOptions {
  count: number;
  board: string;
  fleetKey: string;
  prefix: string;
  discoveryPort: number;
  discoveryAddr: string;
  beaconMs: number;
  sampleMs: number;
  /** First index (ids run prefix+first … prefix+first+count-1). */
  first?: number;
}

/** The device config of emulated board i: simulated sensors, a pipeline, loopback discovery. */
export function emulatedConfig(o: FleetOptions, i: number): Record<string, unknown> {
  const id = `${o.prefix}${i}`;
  return {
    id,
    wifi: { ssid: 'emulated', pass: 'emulated' },
    fleetKey: o.fleetKey,
    discoveryPort: o.discoveryPort,
    discoveryAddr: o.discoveryAddr,
    beaconMs: o.beaconMs,
    sensors: [
      { name: 't', kind: 'simulated', unit: '°C', everyMs: o.sampleMs, seed: i * 2 + 1, min: -40, max: 85 },
      { name: 'h', kind: 'simulated', unit: '%', everyMs: o.sampleMs, seed: i * 2 + 2, min: 0, max: 100 },
    ],
    pipeline: { t: [{ range: [-40, 85] }, { deadband: 0.05 }], h: [{ range: [0, 100] }, { ewma: 0.3 }, { round: 2 }] },
  };
}

export function startFleet(emu: Emulator, o: FleetOptions): string[] {
  const ids: string[] = [];
  const first = o.first ?? 1;
  for (let i = first; i < first + o.count; i++) {
    const config = emulatedConfig(o, i);
    emu.add({ id: String(config.id), board: o.board, config });
    ids.push(String(config.id));
  }
  return ids;
}

export async function runEmulate(p: Parsed): Promise<number> {
  const f = p.flags;
  if (f.count === undefined) throw new UsageError('emulate: --count <n> is required');
  const board = String(f.board);
  if (!listBoards().includes(board)) throw new UsageError(`emulate: --board must be one of ${listBoards().join(', ')}, got '${board}'`);
  if (f['fleet-key'] === undefined) {
    // The companion on this machine keeps its key in its data folder: use that one.
    const file = join(process.cwd(), String(f['host-data']), 'fleet.key');
    const key = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
    if (!/^([0-9a-f]{2}){16,}$/.test(key)) {
      throw new UsageError(`emulate: no --fleet-key (or ESPFLEET_FLEET_KEY) and no fleet key in ${file}: the boards sign their beacons with it`);
    }
    f['fleet-key'] = key;
  }
  const quiet = f.quiet === true;
  const emu = new Emulator({
    speed: Number(f.speed),
    dataDir: join(process.cwd(), String(f.data)),
    onLog: quiet ? undefined : (b, line) => console.log(`[${b.id}] ${line}`),
  });
  const o: FleetOptions = {
    count: Number(f.count),
    board,
    fleetKey: String(f['fleet-key']),
    prefix: String(f.prefix),
    discoveryPort: Number(f['discovery-port']),
    discoveryAddr: String(f['discovery-addr']),
    beaconMs: Number(f['beacon-ms']),
    sampleMs: Number(f['sample-ms']),
  };
  const started = Date.now();
  const ids = startFleet(emu, o);
  console.log(`emulate: ${ids.length} ${board} boards running (${ids[0]} … ${ids[ids.length - 1]}), speed ${emu.clock.speed}x, Storage in ${emu.dataDir}; Ctrl-C stops`);
  console.log(`emulate: booted in ${Date.now() - started} ms`);
  const status = setInterval(() => {
    let running = 0;
    let errors = 0;
    for (const b of emu.boards.values()) {
      if (b.state === 'running') running++;
      errors += b.counters.errors;
    }
    console.log(`emulate: ${running}/${emu.boards.size} running, ${errors} uncaught errors`);
  }, 30000);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(status);
  emu.close();
  console.log('emulate: stopped');
  return 0;
}
