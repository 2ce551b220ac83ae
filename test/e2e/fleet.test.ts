/**
 * The whole system on loopback: 50 emulated boards running the shipped bundle discover a real
 * companion, connect to its embedded broker, stream telemetry that lands in SQLite and the API
 * exactly once per (device, seq), answer RPCs, and go down when killed.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcError } from '../../host/companion-api.js';
import { startFleetWithCompanion, waitFor, type Fleet } from '../helpers/fleet.js';

const BOARDS = 50;
let fleet: Fleet;

beforeAll(async () => {
  fleet = await startFleetWithCompanion({ boards: BOARDS, sampleMs: 1000, speed: 1 });
}, 30_000);

afterAll(async () => {
  await fleet?.stop();
});

describe(`${BOARDS} emulated boards and one companion`, () => {
  it('every board discovers the companion, connects and is up in the registry', async () => {
    const ms = await waitFor(
      `${BOARDS} devices up with a session`,
      () => fleet.companion.devices().filter((d) => d.state === 'up' && d.online).length === BOARDS,
      30_000,
    );
    console.log(`e2e: ${BOARDS} boards up and connected ${ms} ms after boot`);
    for (const b of fleet.emulator.boards.values()) expect(b.bootError, b.id).toBeNull();
  }, 40_000);

  it('telemetry reaches the store and the API exactly once per (device, seq), in order', async () => {
    await waitFor('5 readings from every device', () => fleet.ids.every((id) => fleet.companion.telemetry(id, { limit: 10 }).length >= 5), 30_000);
    const db = new Database(join(fleet.dataDir, 'host', 'espfleet.db'), { readonly: true });
    try {
      const dupes = db.prepare('SELECT device, seq, COUNT(*) AS n FROM telemetry GROUP BY device, seq HAVING n > 1').all();
      expect(dupes).toEqual([]);
      for (const id of fleet.ids) {
        const rows = fleet.companion.telemetry(id, { limit: 1000 });
        const seqs = rows.map((r) => r.seq);
        expect(new Set(seqs).size, id).toBe(seqs.length);
        // Seqs are handed out in order and published in order: sorted by seq is sorted by time.
        const bySeq = [...rows].sort((a, b) => a.seq - b.seq);
        for (let i = 1; i < bySeq.length; i++) expect(bySeq[i].ts, id).toBeGreaterThanOrEqual(bySeq[i - 1].ts);
        for (const r of rows) {
          expect(Object.keys(r.r).length).toBeGreaterThan(0);
          for (const v of Object.values(r.r)) expect(Number.isFinite(v)).toBe(true);
        }
        const stored = (db.prepare('SELECT COUNT(*) AS n FROM telemetry WHERE device = ?').get(id) as { n: number }).n;
        expect(stored).toBe(rows.length);
        // The API's per-sensor values: each sensor's newest stored reading, for every sensor (the
        // board samples t and h separately, so the newest reading carries only one of them).
        const view = fleet.companion.devices().find((d) => d.id === id)!;
        const after = fleet.companion.telemetry(id, { limit: 1000 });
        for (const sensor of ['t', 'h']) {
          const kept = view.sensors[sensor];
          expect(kept, `${id} ${sensor}`).toBeDefined();
          const newestBefore = Math.max(...rows.filter((r) => sensor in r.r).map((r) => r.ts));
          expect(kept.ts).toBeGreaterThanOrEqual(newestBefore);
          expect(after.find((r) => r.ts === kept.ts && sensor in r.r)?.r[sensor]).toBe(kept.v);
        }
      }
    } finally {
      db.close();
    }
  }, 40_000);

  it('every board answers RPCs: ping, info, read, and errors for bad calls', async () => {
    const results = await Promise.all(fleet.ids.map((id) => fleet.companion.rpc(id, 'ping', {}, 5000)));
    expect(results.map((r) => r.result)).toEqual(fleet.ids.map(() => 'pong'));
    const info = (await fleet.companion.rpc(fleet.ids[0], 'info', {}, 5000)).result as Record<string, any>;
    expect(info.id).toBe(fleet.ids[0]);
    expect(info.session.state).toBe('up');
    expect(info.mem.total).toBe(16383);
    const t = (await fleet.companion.rpc(fleet.ids[1], 'read', { sensor: 't' }, 5000)).result;
    expect(typeof t).toBe('number');
    await expect(fleet.companion.rpc(fleet.ids[2], 'nosuch', {}, 5000)).rejects.toMatchObject({ code: 'device_error' });
    await expect(fleet.companion.rpc(fleet.ids[2], 'read', { sensor: 'nope' }, 5000)).rejects.toMatchObject({ code: 'device_error' });
    await expect(fleet.companion.rpc('ghost', 'ping', {}, 1000)).rejects.toBeInstanceOf(RpcError);
  }, 30_000);

  it('a killed board goes down and the rest keep streaming', async () => {
    const victim = fleet.ids[BOARDS - 1];
    fleet.emulator.get(victim).powerOff();
    const ms = await waitFor(`${victim} down`, () => fleet.companion.device(victim)?.state === 'down', 15_000);
    console.log(`e2e: a killed board is down after ${ms} ms`);
    await expect(fleet.companion.rpc(victim, 'ping', {}, 1000)).rejects.toMatchObject({ code: 'device_down' });
    const other = fleet.ids[0];
    const before = fleet.companion.telemetry(other, { limit: 10000 }).length;
    await waitFor('the others still stream', () => fleet.companion.telemetry(other, { limit: 10000 }).length > before, 10_000);
    expect(fleet.companion.devices().filter((d) => d.state === 'up').length).toBe(BOARDS - 1);
  }, 30_000);
});
