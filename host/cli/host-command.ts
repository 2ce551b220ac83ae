/**
 * `espfleet host`: runs the companion. Flags override the config file (--config, JSON with the
 * same names as the flags); the fleet key comes from --fleet-key, ESPFLEET_FLEET_KEY, the config,
 * or `<data>/fleet.key` (created on first start). `--emulate <n>` also runs n emulated boards in
 * the same process with the companion's fleet key: what `npm start` does.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Emulator } from '../../boards/emulator/emulator.js';
import { listBoards } from '../../boards/profiles.js';
import { randomBytes } from 'node:crypto';
import { clusterFromFlags } from '../cluster/cluster-flags.js';
import type { ClusterService } from '../cluster/cluster-service.js';
import { Companion, newFleetKey } from '../companion.js';
import { HttpService } from '../http/http-service.js';
import { createLogger } from '../log.js';
import type { CommandSpec, FlagSpec, Parsed } from './args.js';
import { UsageError } from './args.js';
import { startFleet } from './emulate-command.js';

const flags: Record<string, FlagSpec> = {
  config: { type: 'string', help: 'JSON config file (keys as the flags below)', arg: 'file' },
  data: { type: 'string', help: 'data folder (SQLite store, fleet key, HTTP token)', default: '.espfleet/host', arg: 'dir' },
  'mqtt-port': { type: 'port', help: 'embedded broker port', default: 1883 },
  'discovery-port': { type: 'port', min: 1, help: 'UDP discovery port', default: 41900 },
  'http-port': { type: 'port', help: 'HTTP API and dashboard port', default: 8080 },
  bind: { type: 'string', help: 'address the TCP listeners bind (loopback unless you name an interface)', default: '127.0.0.1', arg: 'addr' },
  'advertise-host': { type: 'string', help: 'host name devices use to reach the broker (default: the bind address)', arg: 'host' },
  'fleet-key': { type: 'hex', min: 16, env: 'ESPFLEET_FLEET_KEY', help: 'fleet key (hex, >= 16 bytes)', arg: 'hex' },
  broker: { type: 'url', choices: ['mqtt', 'mqtts', 'tcp'], help: 'external MQTT broker instead of the embedded one', arg: 'mqtt://url' },
  redis: { type: 'url', choices: ['redis', 'rediss'], help: 'Redis for the workflow lock', arg: 'redis://url' },
  'node-id': { type: 'string', help: 'this companion\'s id in a cluster (default: the host name)', arg: 'id' },
  'raft-port': { type: 'port', help: 'Raft peer port (cluster)' },
  peers: { type: 'string', help: 'cluster members: <id>=<host>:<raftPort>,…', arg: 'list' },
  'cluster-secret': { type: 'hex', min: 16, env: 'ESPFLEET_CLUSTER_SECRET', help: 'HMAC key of Raft and replication messages', arg: 'hex' },
  replicas: { type: 'int', min: 1, max: 7, help: 'copies of every reading in a cluster (default 3, at most the members)', arg: 'n' },
  acks: { type: 'string', choices: ['quorum', 'all'], help: 'copies durable before a PUBACK: a majority of the replicas (default) or all', arg: 'policy' },
  emulate: { type: 'int', min: 0, max: 2000, help: 'also run n emulated boards in this process', default: 0, arg: 'n' },
  'emulate-board': { type: 'string', help: 'board profile of the emulated boards', default: 'esp32', arg: 'name' },
  'emulate-speed': { type: 'number', min: 0.01, max: 10000, help: 'virtual time per real time for emulated boards', default: 1, arg: 'x' },
  quiet: { type: 'bool', help: 'log warnings and errors only' },
};

export const hostSpec: CommandSpec = {
  name: 'host',
  summary: 'runs the host companion (discovery, registry, broker, ingest, RPC, dashboard)',
  usage: 'espfleet host [--config <file>] [--data <dir>] [--mqtt-port <p>] [--discovery-port <p>] [--http-port <p>] [--bind <addr>] [--fleet-key <hex>] [--broker <url>] [--emulate <n>] …',
  flags,
};

/** Reads --config and merges it under the flags given on the command line. */
function mergeConfig(p: Parsed, argv: string[]): Record<string, unknown> {
  const given = new Set(argv.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=')[0]));
  const out: Record<string, unknown> = { ...p.flags };
  if (p.flags.config === undefined) return out;
  const file = resolve(String(p.flags.config));
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`host: --config ${file}: ${e instanceof SyntaxError ? 'not valid JSON: ' + e.message : (e as Error).message}`);
  }
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw new UsageError(`host: --config ${file}: must be a JSON object`);
  for (const [k, v] of Object.entries(cfg as Record<string, unknown>)) {
    const spec = flags[k];
    if (!spec || k === 'config') throw new UsageError(`host: --config ${file}: unknown key '${k}'`);
    if (given.has(k)) continue;
    const ok =
      spec.type === 'bool' ? typeof v === 'boolean' :
      spec.type === 'int' || spec.type === 'port' || spec.type === 'number' ? typeof v === 'number' && Number.isFinite(v) && (spec.type === 'number' || Number.isInteger(v)) && (spec.min === undefined || v >= spec.min) && (v <= (spec.type === 'port' ? 65535 : spec.max ?? Infinity)) :
      spec.type === 'hex' ? typeof v === 'string' && /^([0-9a-fA-F]{2})+$/.test(v) && v.length / 2 >= (spec.min ?? 0) :
      typeof v === 'string' && v.length > 0;
    if (!ok) throw new UsageError(`host: --config ${file}: '${k}' has a bad value (${spec.help})`);
    out[k] = v;
  }
  return out;
}

/** The fleet key: given, or the one in the data folder, or a new one saved there (0600). */
export function resolveFleetKey(given: unknown, dataDir: string): { key: string; source: string } {
  if (typeof given === 'string') return { key: given, source: 'flag/env/config' };
  const file = join(dataDir, 'fleet.key');
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim();
    if (!/^([0-9a-f]{2}){16,}$/.test(key)) throw new UsageError(`host: ${file} does not hold a hex fleet key of at least 16 bytes`);
    return { key, source: file };
  }
  mkdirSync(dataDir, { recursive: true });
  const key = newFleetKey();
  writeFileSync(file, key + '\n', { mode: 0o600 });
  return { key, source: `${file} (new)` };
}

export interface RunningHost {
  companion: Companion;
  http: HttpService;
  emulator: Emulator | null;
  /** The cluster layer when --peers / --raft-port ask for one. */
  cluster: ClusterService | null;
  /** The dashboard's address. */
  url: string;
  stop(): Promise<void>;
}

/** The HTTP API token: `<data>/http.token`, created (0600) on first start; `espfleet call` reads it. */
export function resolveToken(dataDir: string): string {
  const file = join(dataDir, 'http.token');
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (/^[A-Za-z0-9._~+/-]{16,512}$/.test(t)) return t;
  }
  mkdirSync(dataDir, { recursive: true });
  const t = randomBytes(24).toString('base64url');
  writeFileSync(file, t + '\n', { mode: 0o600 });
  return t;
}

export async function startHost(f: Record<string, unknown>): Promise<RunningHost> {
  const dataDir = resolve(String(f.data));
  const { key, source } = resolveFleetKey(f['fleet-key'], dataDir);
  const nodeId = String(f['node-id'] ?? hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 32) ?? 'companion');
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(nodeId)) throw new UsageError(`host: --node-id must be 1-32 of A-Z a-z 0-9 _ -, got '${nodeId}'`);
  const board = String(f['emulate-board']);
  if (!listBoards().includes(board)) throw new UsageError(`host: --emulate-board must be one of ${listBoards().join(', ')}`);
  const log = createLogger({ quiet: f.quiet === true, fields: { node: nodeId } });
  const advertiseHost = f['advertise-host'] === undefined ? undefined : String(f['advertise-host']);
  const cluster = clusterFromFlags(f, { nodeId, dataDir, bind: String(f.bind), advertiseHost, log });
  const companion = new Companion({
    nodeId,
    dataDir,
    fleetKey: key,
    bind: String(f.bind),
    mqttPort: Number(f['mqtt-port']),
    discoveryPort: Number(f['discovery-port']),
    brokerUrl: f.broker === undefined ? undefined : String(f.broker),
    advertiseHost,
    log,
    ...(cluster ? cluster.hooks() : {}),
  });
  await companion.start();
  if (cluster) await cluster.start(companion);
  log.info('fleet key', { source });
  const http = new HttpService({ api: companion, host: String(f.bind), port: Number(f['http-port']), token: resolveToken(dataDir), log });
  try {
    await http.start();
  } catch (e) {
    await cluster?.stop();
    await companion.stop();
    throw e;
  }
  const ha = http.address();
  const shown = !ha || ha.address === '0.0.0.0' || ha.address === '::' ? '127.0.0.1' : ha.address;
  const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${ha ? ha.port : f['http-port']}/`;
  let emulator: Emulator | null = null;
  const count = Number(f.emulate);
  if (count > 0) {
    emulator = new Emulator({ speed: Number(f['emulate-speed']), dataDir: join(dataDir, 'emulator') });
    startFleet(emulator, {
      count,
      board,
      fleetKey: key,
      prefix: 'emu-',
      discoveryPort: companion.discovery.port(),
      discoveryAddr: '127.255.255.255',
      beaconMs: 10000,
      sampleMs: 5000,
    });
    log.info('emulated fleet started', { boards: count, board, speed: emulator.clock.speed });
  }
  return {
    companion,
    http,
    emulator,
    cluster,
    url,
    async stop() {
      emulator?.close();
      await http.stop();
      await cluster?.stop();
      await companion.stop();
    },
  };
}

export async function runHost(p: Parsed, argv: string[]): Promise<number> {
  const f = mergeConfig(p, argv);
  const host = await startHost(f);
  const a = host.companion.bus.address();
  console.log(`espfleet host ${host.companion.nodeId}: broker ${host.companion.bus.kind} ${a ? `${a.host}:${a.port}` : ''}, discovery udp ${host.companion.discovery.port()}`);
  if (host.emulator) console.log(`espfleet host: ${host.emulator.boards.size} emulated boards running`);
  console.log(`espfleet host: dashboard at ${host.url}`);
  await new Promise<void>((resolveStop) => {
    process.once('SIGINT', resolveStop);
    process.once('SIGTERM', resolveStop);
  });
  console.log('espfleet host: stopping');
  await host.stop();
  return 0;
}
