import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type OpenDatabase, openDatabase } from '../../../../host/store/database.js';
import {
  type BeaconSighting,
  HEALTH_BYTES_MAX,
  RegistryStore,
  type RegistryStoreOptions,
} from '../../../../host/store/registry-store.js';

let dir: string;
let path: string;
let open: OpenDatabase;
let reg: RegistryStore;

function make(options: RegistryStoreOptions = {}): RegistryStore {
  open = openDatabase({ path });
  reg = new RegistryStore(open.db, options);
  return reg;
}

function reopen(options: RegistryStoreOptions = {}): RegistryStore {
  reg.close();
  open.close();
  return make(options);
}

function beacon(id: string, over: Partial<BeaconSighting> = {}): BeaconSighting {
  return { id, kind: 'esp32', fw: '0.1.0', caps: ['t', 'rpc'], mem: 3000, seq: 1, upMs: 500, addr: '127.0.0.1', port: 40001, ...over };
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'espfleet-reg-'));
  path = join(dir, 'espfleet.db');
});
afterEach(() => {
  reg?.close();
  open?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('upsertBeacon', () => {
  it('puts the device in the state the caller says a beacon shows, and reports only real changes', () => {
    make();
    // A device that beacons without a session: stale from its first beacon, and it stays so.
    expect(reg.upsertBeacon(beacon('a'), 1000, 'stale', 'beacon without session')).toMatchObject({
      created: true,
      change: { from: null, to: 'stale', reason: 'beacon without session', atMs: 1000 },
    });
    expect(reg.upsertBeacon(beacon('a', { seq: 2 }), 2000, 'stale', 'beacon without session')).toMatchObject({ ok: true, change: null });
    expect(reg.get('a')).toMatchObject({ state: 'stale', stateSinceMs: 1000, lastSeenMs: 2000 });
    expect(reg.upsertBeacon(beacon('a', { seq: 3 }), 3000)).toMatchObject({ ok: true, change: { id: 'a', from: 'stale', to: 'up', reason: 'beacon', atMs: 3000 } });
  });

  it('creates a device from its first beacon, up, with the beacon fields', () => {
    make();
    const r = reg.upsertBeacon(beacon('shed-1'), 1000);
    expect(r).toMatchObject({ ok: true, created: true, rebooted: false, change: { id: 'shed-1', from: null, to: 'up', reason: 'first beacon', atMs: 1000 } });
    expect(reg.get('shed-1')).toEqual({
      id: 'shed-1',
      kind: 'esp32',
      fw: '0.1.0',
      caps: ['t', 'rpc'],
      mem: 3000,
      addr: '127.0.0.1',
      port: 40001,
      beaconSeq: 1,
      upMs: 500,
      firstSeenMs: 1000,
      lastSeenMs: 1000,
      state: 'up',
      stateReason: 'first beacon',
      stateSinceMs: 1000,
      owner: null,
      health: null,
      healthAtMs: null,
    });
  });

  it('updates fields and last-seen on later beacons without a state change', () => {
    make();
    reg.upsertBeacon(beacon('a'), 1000);
    const r = reg.upsertBeacon(beacon('a', { fw: '0.2.0', addr: '10.0.0.7', port: 5, seq: 2, upMs: 10500, mem: 2900 }), 11000);
    expect(r).toMatchObject({ ok: true, created: false, rebooted: false, change: null });
    expect(reg.get('a')).toMatchObject({ fw: '0.2.0', addr: '10.0.0.7', port: 5, beaconSeq: 2, mem: 2900, firstSeenMs: 1000, lastSeenMs: 11000, stateSinceMs: 1000 });
    // A late datagram does not move last-seen back.
    reg.upsertBeacon(beacon('a', { seq: 3, upMs: 20000 }), 9000);
    expect(reg.get('a')!.lastSeenMs).toBe(11000);
  });

  it('notices a reboot when the beacon seq or uptime goes back', () => {
    make();
    reg.upsertBeacon(beacon('a', { seq: 5, upMs: 50000 }), 1000);
    expect(reg.upsertBeacon(beacon('a', { seq: 6, upMs: 60000 }), 2000)).toMatchObject({ rebooted: false });
    expect(reg.upsertBeacon(beacon('a', { seq: 0, upMs: 300 }), 3000)).toMatchObject({ rebooted: true });
  });

  const bad: [string, Partial<BeaconSighting>, RegExp][] = [
    ['id with a slash', { id: 'a/b' }, /forbidden/],
    ['empty kind', { kind: '' }, /kind/],
    ['long fw', { fw: 'x'.repeat(33) }, /fw/],
    ['caps not an array', { caps: 't' as unknown as string[] }, /caps/],
    ['too many caps', { caps: Array.from({ length: 33 }, (_, i) => 'c' + i) }, /more than 32 caps/],
    ['non-string cap', { caps: [5 as unknown as string] }, /cap/],
    ['negative mem', { mem: -1 }, /mem/],
    ['fractional seq', { seq: 1.5 }, /seq/],
    ['bad port', { port: 70000 }, /port/],
    ['empty addr', { addr: '' }, /addr/],
  ];
  it.each(bad)('refuses a beacon with %s, with a reason', (_name, over, reason) => {
    make();
    const r = reg.upsertBeacon({ ...beacon('a'), ...over }, 1);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
    expect(reg.count()).toBe(0);
  });
});

describe('bounds', () => {
  it('refuses new devices beyond devicesMax, still updates known ones, and frees a place on remove', () => {
    make({ devicesMax: 3 });
    for (const id of ['a', 'b', 'c']) expect(reg.upsertBeacon(beacon(id), 1).ok).toBe(true);
    expect(reg.upsertBeacon(beacon('d'), 2)).toEqual({ ok: false, reason: 'registry full: 3 devices (devicesMax)' });
    expect(reg.upsertBeacon(beacon('a'), 2)).toMatchObject({ ok: true, created: false });
    expect(reg.remove('b')).toBe(true);
    expect(reg.remove('b')).toBe(false);
    expect(reg.upsertBeacon(beacon('d'), 3)).toMatchObject({ ok: true, created: true });
    expect(reg.list().map((d) => d.id)).toEqual(['a', 'c', 'd']);
  });

  it('keeps a file larger than a lowered devicesMax, refusing only new devices', () => {
    make({ devicesMax: 5 });
    for (const id of ['a', 'b', 'c', 'd']) reg.upsertBeacon(beacon(id), 1);
    reopen({ devicesMax: 2 });
    expect(reg.count()).toBe(4);
    expect(reg.upsertBeacon(beacon('e'), 2).ok).toBe(false);
    expect(reg.upsertBeacon(beacon('a'), 2).ok).toBe(true);
  });
});

describe('liveness', () => {
  const policy = (nowMs: number) => ({ nowMs, staleAfterMs: 30000, downAfterMs: 90000 });

  it('sweeps silent devices to stale, then down, and a beacon brings them back up', () => {
    make();
    reg.upsertBeacon(beacon('a'), 0);
    reg.upsertBeacon(beacon('b'), 20000);
    expect(reg.sweep(policy(29999))).toEqual([]);
    expect(reg.sweep(policy(30000))).toEqual([{ id: 'a', from: 'up', to: 'stale', reason: 'no beacon for 30000 ms', atMs: 30000 }]);
    expect(reg.sweep(policy(40000))).toEqual([]); // a is stale already; b silent 20 s
    expect(reg.sweep(policy(95000)).map((c) => [c.id, c.from, c.to])).toEqual([
      ['a', 'stale', 'down'],
      ['b', 'up', 'stale'],
    ]);
    expect(reg.get('a')).toMatchObject({ state: 'down', stateReason: 'no beacon for 95000 ms', stateSinceMs: 95000 });
    expect(reg.list({ state: 'down' }).map((d) => d.id)).toEqual(['a']);
    const r = reg.upsertBeacon(beacon('a'), 100000);
    expect(r).toMatchObject({ ok: true, change: { from: 'down', to: 'up', reason: 'beacon', atMs: 100000 } });
    expect(reg.get('a')).toMatchObject({ state: 'up', stateReason: 'beacon', stateSinceMs: 100000 });
  });

  it('goes straight from up to down when the silence exceeds downAfterMs', () => {
    make();
    reg.upsertBeacon(beacon('a'), 0);
    expect(reg.sweep(policy(90000)).map((c) => [c.from, c.to])).toEqual([['up', 'down']]);
  });

  it('records other evidence with setState', () => {
    make();
    reg.upsertBeacon(beacon('a'), 0);
    expect(reg.setState('a', 'down', 'mqtt will: offline', 500)).toEqual({ id: 'a', from: 'up', to: 'down', reason: 'mqtt will: offline', atMs: 500 });
    expect(reg.setState('a', 'down', 'again', 600)).toBeNull();
    expect(reg.setState('nobody', 'down', 'x', 600)).toBeNull();
    expect(reg.get('a')).toMatchObject({ state: 'down', stateReason: 'mqtt will: offline', stateSinceMs: 500 });
    expect(() => reg.setState('a', 'gone' as 'down', 'x', 1)).toThrow(RangeError);
    const long = reg.setState('a', 'up', 'r'.repeat(500), 700);
    expect(long!.reason.length).toBe(128);
  });
});

describe('owner and health', () => {
  it('records the owner and filters by it', () => {
    make();
    reg.upsertBeacon(beacon('a'), 0);
    reg.upsertBeacon(beacon('b'), 0);
    expect(reg.setOwner('a', 'node-1')).toBe(true);
    expect(reg.setOwner('nobody', 'node-1')).toBe(false);
    expect(reg.list({ owner: 'node-1' }).map((d) => d.id)).toEqual(['a']);
    expect(reg.list({ owner: null }).map((d) => d.id)).toEqual(['b']);
  });

  it('stores the reported breaker and outbox state, bounded', () => {
    make();
    reg.upsertBeacon(beacon('a'), 0);
    const health = { breaker: { state: 'open', failures: 3, openedAt: 100 }, outbox: { n: 12, bytes: 900, dropped: 0 } };
    expect(reg.reportHealth('a', health, 50)).toEqual({ ok: true });
    expect(reg.get('a')).toMatchObject({ health, healthAtMs: 50 });
    expect(reg.reportHealth('a', { outbox: 'x'.repeat(HEALTH_BYTES_MAX) }, 60)).toMatchObject({ ok: false, reason: expect.stringMatching(/longer than/) });
    expect(reg.reportHealth('nobody', health, 60)).toEqual({ ok: false, reason: 'unknown device' });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(reg.reportHealth('a', { breaker: cyclic }, 60)).toEqual({ ok: false, reason: 'health report is not serialisable' });
    expect(reg.get('a')!.healthAtMs).toBe(50);
  });

  it('hands out copies: changing a returned record changes nothing stored', () => {
    make();
    reg.upsertBeacon(beacon('a'), 0);
    reg.reportHealth('a', { breaker: { state: 'closed' } }, 1);
    const d = reg.get('a')!;
    d.caps.push('evil');
    (d.health!.breaker as { state: string }).state = 'open';
    d.state = 'down';
    expect(reg.get('a')).toMatchObject({ caps: ['t', 'rpc'], health: { breaker: { state: 'closed' } }, state: 'up' });
  });
});

describe('persistence', () => {
  it('writes behind after flushDelayMs in one transaction, and reloads everything on reopen', async () => {
    make({ flushDelayMs: 30 });
    const reader = new Database(path, { readonly: true });
    const rows = reader.prepare('SELECT COUNT(*) FROM devices').pluck();
    reg.upsertBeacon(beacon('a'), 1000);
    reg.upsertBeacon(beacon('b'), 1000);
    reg.setOwner('a', 'node-2');
    reg.reportHealth('a', { outbox: { n: 1 } }, 1001);
    reg.setState('b', 'stale', 'test', 1002);
    expect(rows.get()).toBe(0);
    expect(reg.stats()).toMatchObject({ dirty: 2, flushes: 0 });
    await turn();
    // Not yet: the write waits for the window, so a beacon storm costs one fsync per window.
    expect(rows.get()).toBe(0);
    await new Promise((r) => setTimeout(r, 60));
    expect(rows.get()).toBe(2);
    expect(reg.stats()).toMatchObject({ dirty: 0, flushes: 1 });
    reader.close();
    const before = reg.list();
    reopen();
    expect(reg.list()).toEqual(before);
    expect(reg.get('a')).toMatchObject({ owner: 'node-2', health: { outbox: { n: 1 } }, healthAtMs: 1001 });
    expect(reg.get('b')).toMatchObject({ state: 'stale', stateReason: 'test', stateSinceMs: 1002 });
  });

  it('writes a beacon that only refreshes a sighting after sightingFlushMs; a new address or a state change after flushDelayMs', async () => {
    make({ flushDelayMs: 20, sightingFlushMs: 300 });
    const reader = new Database(path, { readonly: true });
    const seqOf = reader.prepare('SELECT beacon_seq FROM devices WHERE id = ?').pluck();
    const addrOf = reader.prepare('SELECT addr FROM devices WHERE id = ?').pluck();
    reg.upsertBeacon(beacon('a'), 1000);
    reg.upsertBeacon(beacon('b'), 1000);
    await new Promise((r) => setTimeout(r, 60));
    expect(seqOf.get('a')).toBe(1); // new devices: the short window
    reg.upsertBeacon(beacon('a', { seq: 2 }), 2000);
    await new Promise((r) => setTimeout(r, 60));
    expect(seqOf.get('a')).toBe(1); // a sighting waits
    reg.upsertBeacon(beacon('b', { seq: 2, addr: '127.0.0.9' }), 2000);
    await new Promise((r) => setTimeout(r, 60));
    // The moved device brings the pending flush forward; everything dirty goes in it.
    expect(addrOf.get('b')).toBe('127.0.0.9');
    expect(seqOf.get('a')).toBe(2);
    reg.upsertBeacon(beacon('a', { seq: 3 }), 3000);
    reg.setState('a', 'down', 'test', 3001);
    await new Promise((r) => setTimeout(r, 60));
    expect(seqOf.get('a')).toBe(3);
    reg.upsertBeacon(beacon('a', { seq: 4 }), 4000); // back up: a state change, written soon
    await new Promise((r) => setTimeout(r, 60));
    expect(seqOf.get('a')).toBe(4);
    reg.upsertBeacon(beacon('a', { seq: 5 }), 5000);
    await new Promise((r) => setTimeout(r, 60));
    expect(seqOf.get('a')).toBe(4);
    await new Promise((r) => setTimeout(r, 400));
    expect(seqOf.get('a')).toBe(5); // and the sighting, within its own window
    reader.close();
    expect(() => new RegistryStore(open.db, { flushDelayMs: 100, sightingFlushMs: 50 })).toThrow(/sightingFlushMs/);
  });

  it('writes a changed kind, firmware, capability list or port after flushDelayMs, like a new address', async () => {
    make({ flushDelayMs: 20, sightingFlushMs: 10_000 });
    const reader = new Database(path, { readonly: true });
    const row = reader.prepare('SELECT kind, fw, caps, port FROM devices WHERE id = ?');
    reg.upsertBeacon(beacon('a'), 1000);
    await new Promise((r) => setTimeout(r, 60));
    const changes: Array<[Partial<BeaconSighting>, Record<string, unknown>]> = [
      [{ kind: 'esp8266' }, { kind: 'esp8266' }],
      [{ kind: 'esp8266', fw: '0.2.0' }, { fw: '0.2.0' }],
      [{ kind: 'esp8266', fw: '0.2.0', caps: ['t'] }, { caps: '["t"]' }],
      [{ kind: 'esp8266', fw: '0.2.0', caps: ['t'], port: 40002 }, { port: 40002 }],
    ];
    let seq = 2;
    for (const [over, want] of changes) {
      reg.upsertBeacon(beacon('a', { seq: seq++, ...over }), 1000 + seq);
      await new Promise((r) => setTimeout(r, 60));
      expect(row.get('a'), JSON.stringify(over)).toMatchObject(want);
    }
    reader.close();
  });

  it('refuses an unknown liveness state from a caller, and a failed close can be retried', () => {
    make({ flushDelayMs: 0 });
    expect(() => reg.upsertBeacon(beacon('a'), 1, 'gone' as never)).toThrow(/unknown liveness state/);
    reg.upsertBeacon(beacon('a'), 1);
    open.db.exec(`CREATE TRIGGER no_devices BEFORE INSERT ON devices BEGIN SELECT RAISE(ABORT, 'read-only disk'); END`);
    expect(() => reg.close()).toThrow(expect.objectContaining({ code: 'commit-failed' }));
    open.db.exec('DROP TRIGGER no_devices');
    reg.close();
    expect(reg.stats()).toMatchObject({ dirty: 0 });
    reopen();
    expect(reg.get('a')).not.toBeNull();
  });

  it('close() flushes; remove() is persisted', () => {
    make();
    reg.upsertBeacon(beacon('a'), 1);
    reg.upsertBeacon(beacon('b'), 1);
    reopen();
    reg.remove('a');
    reopen();
    expect(reg.list().map((d) => d.id)).toEqual(['b']);
    reg.close();
    expect(reg.upsertBeacon(beacon('c'), 2)).toEqual({ ok: false, reason: 'registry is closed' });
  });

  it('keeps changes pending when a write fails, counts it, and writes them on the next flush', async () => {
    make({ flushDelayMs: 0 });
    open.db.exec(`CREATE TRIGGER no_devices BEFORE INSERT ON devices BEGIN SELECT RAISE(ABORT, 'read-only disk'); END`);
    reg.upsertBeacon(beacon('a'), 1);
    await new Promise((r) => setTimeout(r, 20)); // the scheduled flush fails without an uncaught error
    expect(reg.stats()).toMatchObject({ dirty: 1, flushErrors: 1, lastFlushError: 'read-only disk' });
    expect(() => reg.flush()).toThrow(expect.objectContaining({ code: 'commit-failed' }));
    open.db.exec('DROP TRIGGER no_devices');
    reg.flush();
    expect(reg.stats()).toMatchObject({ dirty: 0, flushErrors: 2 });
    reopen();
    expect(reg.get('a')).not.toBeNull();
  });
});
