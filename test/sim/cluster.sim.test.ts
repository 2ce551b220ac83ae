/**
 * Deterministic simulation of the companion cluster (cluster-sim.ts): one seed drives clock,
 * network, disks, faults and a fleet of devices for 3 and 5 companions; invariants are checked
 * when anything that could break them happens, and the run must converge after the heal.
 *
 * A failing seed prints the line that replays it:
 *   SEED=<n> NODES=<k> SC=<scenario> ACKS=<quorum|all> npx vitest run test/sim/cluster.sim.test.ts -t replay
 * Random seeds are drawn per run and printed, so a failure found by chance is never lost.
 */
import { describe, expect, it } from 'vitest';
import type { Scenario } from './sim-world.js';
import { CLUSTER_SCENARIOS, simulateCluster, type ClusterSimConfig, type ClusterSimResult } from './cluster-sim.js';

function replayLine(c: ClusterSimConfig): string {
  return `SEED=${c.seed} NODES=${c.nodes} SC=${c.scenario} ACKS=${c.acks ?? 'quorum'} npx vitest run test/sim/cluster.sim.test.ts -t replay`;
}

function run(c: ClusterSimConfig): ClusterSimResult {
  const r = simulateCluster(c);
  if (!r.ok) {
    console.log('cluster sim FAILED: ' + r.violation + '\n  replay: ' + replayLine(c) + '\n  last events:\n    ' + r.trace.slice(-40).join('\n    '));
  }
  return r;
}

const figures: ClusterSimResult[] = [];
let wallMs = 0;

describe('cluster simulation: fixed seeds', () => {
  for (const nodes of [3, 5]) {
    for (const scenario of CLUSTER_SCENARIOS) {
      for (const seed of [11, 12, 13]) {
        const acks = seed === 13 ? 'all' : 'quorum';
        it(`${nodes} companions, ${scenario}, seed ${seed}, acks=${acks}`, () => {
          const t0 = performance.now();
          const r = run({ seed, nodes, scenario, acks });
          wallMs += performance.now() - t0;
          figures.push(r);
          expect(r.violation).toBe('');
          expect(r.ok).toBe(true);
          // The run did real work: readings were produced, acknowledged and replicated.
          expect(r.acked).toBeGreaterThan(0);
          expect(r.acked).toBeLessThanOrEqual(r.readings);
          expect(r.clusterConvergeMs).toBeGreaterThanOrEqual(0);
          expect(r.checks).toBeGreaterThan(r.events / 2);
        });
      }
    }
  }

  it('figures', () => {
    const events = figures.reduce((n, r) => n + r.events, 0);
    const conv = figures.map((r) => r.clusterConvergeMs).sort((a, b) => a - b);
    const out = figures.map((r) => r.outageP99Ms).sort((a, b) => a - b);
    console.log(
      `cluster sim: ${figures.length} runs, ${events} events in ${(wallMs / 1000).toFixed(1)} s (${(figures.length / (wallMs / 1000)).toFixed(1)} seeds/s, ${Math.round(events / (wallMs / 1000))} events/s); ` +
        `convergence after heal p50 ${conv[conv.length >> 1]} ms, max ${conv[conv.length - 1]} ms; device outage p99 (faults on) median ${out[out.length >> 1]} ms, max ${out[out.length - 1]} ms; ` +
        `acked ${figures.reduce((n, r) => n + r.acked, 0)} readings, ring-outs ${figures.reduce((n, r) => n + r.ringOuts, 0)}, reassignments ${figures.reduce((n, r) => n + r.assignments, 0)}, ` +
        `takeovers from owners off the ring ${figures.reduce((n, r) => n + r.takeovers, 0)} (acknowledged readings the new owner lacked when the log moved the device: ${figures.reduce((n, r) => n + r.takeoverMissing, 0)}; when it first offered: ${figures.reduce((n, r) => n + r.offerMissing, 0)})`,
    );
    expect(figures.length).toBe(2 * CLUSTER_SCENARIOS.length * 3);
  });
});

describe('cluster simulation: random seeds', () => {
  for (let i = 0; i < 4; i++) {
    const seed = (Math.random() * 0x7fffffff) | 0;
    const nodes = i % 2 === 0 ? 3 : 5;
    const scenario = (['chaos', 'crash', 'pause', 'flapping'] as Scenario[])[i];
    it(`${nodes} companions, ${scenario}, random seed ${seed}`, () => {
      const c: ClusterSimConfig = { seed, nodes, scenario };
      console.log('cluster sim random run: ' + replayLine(c));
      expect(run(c).violation).toBe('');
    });
  }
});

describe('cluster simulation: the checker', () => {
  it('a seed replays exactly: same events, same trace, same figures', () => {
    const a = simulateCluster({ seed: 7, nodes: 3, scenario: 'chaos', traceAll: true });
    const b = simulateCluster({ seed: 7, nodes: 3, scenario: 'chaos', traceAll: true });
    expect(b.events).toBe(a.events);
    expect(b.trace).toEqual(a.trace);
    expect({ ...b, trace: [] }).toEqual({ ...a, trace: [] });
  });

  it('catches a PUBACK sent before replication (invariant D)', () => {
    const r = simulateCluster({ seed: 1, nodes: 3, scenario: 'calm', buggyAckBeforeReplication: true });
    expect(r.ok).toBe(false);
    expect(r.violation).toMatch(/^D: .* durable copies, 2 needed/);
  });

  it('catches acting on stale authority after SIGSTOP when the pause guard is off (invariant S)', () => {
    const found: string[] = [];
    // The Raft lease alone stops a woken LEADER; a woken follower that still believes in its
    // old leader is what the guard is for. Seeds 20-40 at 5 companions contain such runs.
    for (let seed = 20; seed <= 40 && found.length === 0; seed++) {
      const r = simulateCluster({ seed, nodes: 5, scenario: 'pause', node: { pauseMaxMs: 1e12 } });
      if (!r.ok) found.push(r.violation);
    }
    expect(found[0]).toMatch(/^S: .* after waking from a pause, in term \d+ while term \d+ had a leader/);
  });

  it('replay (SEED, NODES, SC, ACKS from the environment)', () => {
    if (!process.env.SEED) return;
    const c: ClusterSimConfig = { seed: Number(process.env.SEED), nodes: Number(process.env.NODES ?? 3), scenario: (process.env.SC ?? 'chaos') as Scenario, acks: (process.env.ACKS as 'quorum' | 'all') ?? 'quorum', traceAll: true };
    const r = simulateCluster(c);
    console.log(JSON.stringify({ ...r, trace: undefined }));
    console.log(r.trace.slice(-Number(process.env.TAIL ?? 200)).join('\n'));
    expect(r.violation).toBe('');
  });
});
