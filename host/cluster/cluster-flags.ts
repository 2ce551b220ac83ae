/**
 * `espfleet host` cluster flags -> a ClusterService (INTERFACES.md):
 *
 *   --node-id <id> --raft-port <port> --peers <id>=<host>:<raftPort>,… --cluster-secret <hex>
 *
 * `--peers` may list this node too (the same list on every member is easiest to deploy); its
 * own entry then gives the Raft port when --raft-port is absent. Cluster mode is on when
 * --peers or --raft-port is given; it needs a cluster secret (flag, env ESPFLEET_CLUSTER_SECRET
 * or config). A bad value is a UsageError: one line, exit code 2.
 */
import { join } from 'node:path';
import { UsageError } from '../cli/args.js';
import type { Logger } from '../log.js';
import { NODE_ID_RE } from '../raft/raft-types.js';
import { ClusterService, type ClusterServiceOptions } from './cluster-service.js';
import { formatHostPort, parseHostPort } from './member-addr.js';

/** Members of one Raft group (cluster-state.ts MEMBERS_MAX). */
const PEERS_MAX = 15;

export interface ClusterFlagContext {
  nodeId: string;
  dataDir: string;
  bind: string;
  advertiseHost?: string;
  log: Logger;
  onMovedAway?: (deviceIds: string[]) => void;
}

/** Parses `<id>=<host>:<port>,…`; throws UsageError naming the bad entry. */
export function parsePeers(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const items = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError('host: --peers is empty (expected <id>=<host>:<raftPort>,…)');
  if (items.length > PEERS_MAX) throw new UsageError(`host: --peers lists ${items.length} members, at most ${PEERS_MAX}`);
  for (const item of items) {
    const eq = item.indexOf('=');
    const id = eq > 0 ? item.slice(0, eq) : '';
    const addr = eq > 0 ? parseHostPort(item.slice(eq + 1)) : null;
    if (!NODE_ID_RE.test(id) || !addr) throw new UsageError(`host: --peers entry '${item}' is not <id>=<host>:<raftPort>`);
    if (out[id] !== undefined) throw new UsageError(`host: --peers names '${id}' twice`);
    out[id] = formatHostPort(addr);
  }
  return out;
}

/** The ClusterService the flags ask for, or null when they ask for none. */
export function clusterFromFlags(f: Record<string, unknown>, ctx: ClusterFlagContext, extra: Partial<ClusterServiceOptions> = {}): ClusterService | null {
  const peersText = f.peers === undefined ? '' : String(f.peers);
  if (peersText === '' && f['raft-port'] === undefined) return null;
  const all = peersText === '' ? {} : parsePeers(peersText);
  const peers: Record<string, string> = {};
  let ownPort: number | null = null;
  for (const id of Object.keys(all)) {
    if (id === ctx.nodeId) ownPort = (parseHostPort(all[id]) as { port: number }).port;
    else peers[id] = all[id];
  }
  const raftPort = f['raft-port'] !== undefined ? Number(f['raft-port']) : ownPort;
  if (raftPort === null || !Number.isInteger(raftPort) || raftPort < 0 || raftPort > 65535) {
    throw new UsageError(`host: cluster mode needs --raft-port (or an entry for '${ctx.nodeId}' in --peers)`);
  }
  if (f['cluster-secret'] === undefined) {
    throw new UsageError('host: cluster mode needs --cluster-secret <hex> (or ESPFLEET_CLUSTER_SECRET): it authenticates every message between companions');
  }
  const secret = Buffer.from(String(f['cluster-secret']), 'hex');
  if (secret.length < 16) throw new UsageError('host: --cluster-secret must be at least 16 bytes of hex');
  const replicas = f.replicas === undefined ? undefined : Number(f.replicas);
  const acks = f.acks === undefined ? undefined : (String(f.acks) as 'quorum' | 'all');
  return new ClusterService({
    nodeId: ctx.nodeId,
    secret,
    ...(replicas !== undefined ? { replicas } : {}),
    ...(acks !== undefined ? { acks } : {}),
    peers,
    bind: ctx.bind,
    advertiseHost: ctx.advertiseHost,
    raftPort,
    dataDir: join(ctx.dataDir, 'raft'),
    log: ctx.log.with({ part: 'cluster' }),
    onMovedAway: ctx.onMovedAway,
    ...extra,
  });
}
