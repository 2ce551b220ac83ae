/**
 * End-to-end harness: a real companion (embedded broker, SQLite in a temp folder, discovery on a
 * free UDP port, loopback only) and emulated boards running the shipped bundle, in one process.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Emulator } from '../../boards/emulator/emulator.js';
import { Companion, newFleetKey } from '../../host/companion.js';
import { createLogger, type Logger } from '../../host/log.js';
import { startFleet, type FleetOptions } from '../../host/cli/emulate-command.js';

export interface Fleet {
  companion: Companion;
  emulator: Emulator;
  fleetKey: string;
  dataDir: string;
  ids: string[];
  log: Logger;
  lines: string[];
  add(count: number, opts?: Partial<FleetOptions>): string[];
  stop(): Promise<void>;
}

export interface FleetSetup {
  boards?: number;
  board?: string;
  speed?: number;
  sampleMs?: number;
  beaconMs?: number;
  prefix?: string;
  mqttPort?: number;
  /** Keep the companion's warnings in memory instead of printing them. */
  quiet?: boolean;
}

export async function startFleetWithCompanion(s: FleetSetup = {}): Promise<Fleet> {
  const dataDir = mkdtempSync(join(tmpdir(), 'espfleet-e2e-'));
  const fleetKey = newFleetKey();
  const lines: string[] = [];
  const log = createLogger({ quiet: true, sink: (l) => lines.push(l) });
  const companion = new Companion({ nodeId: 'c1', dataDir: join(dataDir, 'host'), fleetKey, bind: '127.0.0.1', mqttPort: s.mqttPort ?? 0, discoveryPort: 0, log });
  await companion.start();
  const emulator = new Emulator({ speed: s.speed ?? 1, dataDir: join(dataDir, 'boards') });
  let next = 1;
  const fleet: Fleet = {
    companion,
    emulator,
    fleetKey,
    dataDir,
    ids: [],
    log,
    lines,
    add(count, opts = {}) {
      const ids = startFleet(emulator, {
        count,
        board: s.board ?? 'esp32',
        fleetKey,
        prefix: s.prefix ?? 'dev-',
        discoveryPort: companion.discovery.port(),
        discoveryAddr: '127.255.255.255',
        beaconMs: s.beaconMs ?? 10000,
        sampleMs: s.sampleMs ?? 1000,
        first: next,
        ...opts,
      });
      next += count;
      fleet.ids.push(...ids);
      return ids;
    },
    async stop() {
      emulator.close();
      await companion.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  if (s.boards) fleet.add(s.boards);
  return fleet;
}

/** Polls cond every 20 ms until it holds or ms pass; the error says what was awaited. */
export async function waitFor(what: string, cond: () => boolean, ms: number): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - start;
}
