import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../../host/cli/args.js';
import { clusterFromFlags, parsePeers } from '../../../../host/cluster/cluster-flags.js';
import { memoryLogger } from '../../../../host/log.js';

const ctx = { nodeId: 'n1', dataDir: '/tmp/espfleet-flags-test', bind: '127.0.0.1', log: memoryLogger() };
const secret = 'ab'.repeat(16);

describe('cluster flags', () => {
  it('parses --peers, ignoring nothing and normalising addresses', () => {
    expect(parsePeers('n1=127.0.0.1:7100, n2=10.0.0.2:7100,n3=[::1]:7102')).toEqual({ n1: '127.0.0.1:7100', n2: '10.0.0.2:7100', n3: '[::1]:7102' });
  });

  it.each([
    ['', /empty/],
    ['n1', /not <id>=<host>:<raftPort>/],
    ['n1=host', /not <id>=<host>:<raftPort>/],
    ['n1=host:0', /not <id>=<host>:<raftPort>/],
    ['bad id=h:1', /not <id>=<host>:<raftPort>/],
    ['n1=h:1,n1=h:2', /twice/],
    [Array.from({ length: 16 }, (_, i) => `n${i}=h:${i + 1}`).join(','), /at most 15/],
  ])('refuses --peers %j with a one-line UsageError', (text, re) => {
    expect(() => parsePeers(text)).toThrow(UsageError);
    expect(() => parsePeers(text)).toThrow(re);
  });

  it('no cluster flags: no cluster', () => {
    expect(clusterFromFlags({}, ctx)).toBeNull();
  });

  it('takes the Raft port from its own --peers entry and drops itself from the peers', () => {
    const c = clusterFromFlags({ peers: 'n1=127.0.0.1:7100,n2=127.0.0.1:7200', 'cluster-secret': secret }, ctx)!;
    expect(c.o.raftPort).toBe(7100);
    expect(c.o.peers).toEqual({ n2: '127.0.0.1:7200' });
    expect(c.o.dataDir).toBe('/tmp/espfleet-flags-test/raft');
    const d = clusterFromFlags({ peers: 'n2=127.0.0.1:7200', 'raft-port': 7300, 'cluster-secret': secret }, ctx)!;
    expect(d.o.raftPort).toBe(7300);
  });

  it('needs a Raft port and a cluster secret of at least 16 bytes', () => {
    expect(() => clusterFromFlags({ peers: 'n2=127.0.0.1:7200', 'cluster-secret': secret }, ctx)).toThrow(/needs --raft-port/);
    expect(() => clusterFromFlags({ 'raft-port': 7100 }, ctx)).toThrow(/needs --cluster-secret/);
    expect(() => clusterFromFlags({ 'raft-port': 7100, 'cluster-secret': 'abcd' }, ctx)).toThrow(/at least 16 bytes/);
  });
});
