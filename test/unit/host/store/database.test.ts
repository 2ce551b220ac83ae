import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MIGRATIONS,
  type Migration,
  StoreError,
  databasePath,
  openDataDir,
  openDatabase,
} from '../../../../host/store/database.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'espfleet-db-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const v2: Migration = { version: 2, name: 'notes table', sql: 'CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)' };

describe('openDatabase', () => {
  it('puts the file in WAL mode with synchronous=FULL and applies every migration', () => {
    const o = openDatabase({ path: join(dir, 'a.db') });
    expect(o.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(o.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(o.schemaVersion).toBe(MIGRATIONS.length);
    expect(o.applied).toEqual(MIGRATIONS.map((m) => m.version));
    const tables = o.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
    expect(tables).toEqual(['devices', 'schema_version', 'telemetry']);
    o.close();
    o.close(); // idempotent
    expect(o.db.open).toBe(false);
  });

  it('applies nothing on reopen and keeps the data', () => {
    const path = join(dir, 'a.db');
    const a = openDatabase({ path, nowMs: () => 1234 });
    a.db.prepare("INSERT INTO telemetry VALUES ('d', 1, 10, 0, '{}')").run();
    a.close();
    const b = openDatabase({ path, nowMs: () => 9999 });
    expect(b.applied).toEqual([]);
    expect(b.schemaVersion).toBe(MIGRATIONS.length);
    expect(b.db.prepare('SELECT COUNT(*) FROM telemetry').pluck().get()).toBe(1);
    expect(b.db.prepare('SELECT applied_at FROM schema_version WHERE version = 1').pluck().get()).toBe(1234);
    b.close();
  });

  it('applies a new migration exactly once on reopen', () => {
    const path = join(dir, 'a.db');
    openDatabase({ path }).close();
    const list = [...MIGRATIONS, { ...v2, version: MIGRATIONS.length + 1 }];
    const b = openDatabase({ path, migrations: list });
    expect(b.applied).toEqual([list.length]);
    expect(b.schemaVersion).toBe(list.length);
    b.db.prepare("INSERT INTO notes (text) VALUES ('x')").run();
    b.close();
    const c = openDatabase({ path, migrations: list });
    expect(c.applied).toEqual([]);
    expect(c.db.prepare('SELECT text FROM notes').pluck().all()).toEqual(['x']);
    c.close();
  });

  it('leaves the file at the previous version when a migration fails', () => {
    const path = join(dir, 'a.db');
    const bad: Migration[] = [
      { version: 1, name: 'one', sql: 'CREATE TABLE one (x)' },
      { version: 2, name: 'two', sql: 'CREATE TABLE two (x); INSERT INTO nowhere VALUES (1)' },
    ];
    expect(() => openDatabase({ path, migrations: bad })).toThrow(/nowhere/);
    const raw = new Database(path);
    expect(raw.prepare('SELECT MAX(version) FROM schema_version').pluck().get()).toBe(1);
    expect(raw.prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'two'").pluck().get()).toBe(0);
    raw.close();
  });

  it('refuses a file written by a newer schema', () => {
    const path = join(dir, 'a.db');
    openDatabase({ path, migrations: [...MIGRATIONS, { ...v2, version: MIGRATIONS.length + 1 }] }).close();
    let err: unknown;
    try {
      openDatabase({ path });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('schema-newer');
  });

  it('refuses a file whose recorded history differs from ours', () => {
    const path = join(dir, 'a.db');
    openDatabase({ path, migrations: [{ version: 1, name: 'something else', sql: 'CREATE TABLE z (x)' }] }).close();
    expect(() => openDatabase({ path })).toThrow(expect.objectContaining({ code: 'schema-mismatch' }));
  });

  it('rejects a migration list with a gap', () => {
    expect(() =>
      openDatabase({ path: ':memory:', migrations: [{ version: 2, name: 'x', sql: 'SELECT 1' }] }),
    ).toThrow(/expected 1/);
  });

  it('opens :memory: with the same schema', () => {
    const o = openDatabase({ path: ':memory:' });
    expect(o.schemaVersion).toBe(MIGRATIONS.length);
    expect(o.db.prepare('SELECT COUNT(*) FROM devices').pluck().get()).toBe(0);
    o.close();
  });

  it('openDataDir creates the directory and uses <data>/espfleet.db', () => {
    const data = join(dir, 'nested', 'data');
    const o = openDataDir(data);
    expect(o.path).toBe(databasePath(data));
    expect(o.path.endsWith(join('data', 'espfleet.db'))).toBe(true);
    expect(existsSync(o.path)).toBe(true);
    o.close();
  });
});
