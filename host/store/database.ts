/**
 * The companion's SQLite database: one file in the data dir (`<data>/espfleet.db`), or ':memory:'
 * for tests. Opening it sets the durability pragmas and applies the schema migrations in order;
 * the stores (telemetry-store.ts, registry-store.ts) share the one connection this returns.
 *
 * Durability contract: journal_mode=WAL with synchronous=FULL, so every COMMIT appends to the WAL
 * and fsyncs it BEFORE better-sqlite3 returns. A store may therefore acknowledge a write as soon
 * as its transaction function has returned (ARCHITECTURE.md flow 5: a PUBACK means stored).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;
export type Statement = Database.Statement;

export const DB_FILE_NAME = 'espfleet.db';

/** Why a store operation failed; `code` is stable, `message` is for people. */
export type StoreErrorCode =
  | 'closed' // the store or database was closed
  | 'invalid' // a record failed validation (peer input)
  | 'commit-failed' // the transaction did not commit: nothing of it is stored
  | 'schema-newer' // the file was written by a newer companion
  | 'schema-mismatch' // the file's migration history differs from ours
  | 'not-durable'; // the file could not be put in WAL mode

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}

/** One schema step. Versions start at 1 and increase by one; a step never changes once shipped. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The schema, oldest first. Append new steps; never edit or reorder a shipped one (the name of
 * every applied step is recorded and checked on open).
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'telemetry and device registry',
    sql: `
      -- One row per reading. (device, seq) is the identity the device gives a reading; a
      -- replayed or replicated copy carries the same pair, so the primary key deduplicates.
      -- WITHOUT ROWID: the primary key is the table, one B-tree fewer to update per insert.
      CREATE TABLE telemetry (
        device TEXT NOT NULL,
        seq    INTEGER NOT NULL,
        ts     INTEGER NOT NULL,   -- device time, ms since the epoch
        hist   INTEGER NOT NULL,   -- 1 = replayed from the device outbox
        r      TEXT NOT NULL,      -- JSON object {name: number}
        PRIMARY KEY (device, seq)
      ) WITHOUT ROWID;
      -- Time-range queries, latest reading, and retention all walk this index in (ts, seq) order.
      CREATE INDEX telemetry_by_time ON telemetry (device, ts, seq);

      CREATE TABLE devices (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        fw           TEXT NOT NULL,
        caps         TEXT NOT NULL,      -- JSON array of strings
        mem          INTEGER,            -- free JsVars reported by the last beacon
        addr         TEXT,               -- source address of the last beacon
        port         INTEGER,            -- source port of the last beacon
        beacon_seq   INTEGER,
        up_ms        INTEGER,
        first_seen   INTEGER NOT NULL,
        last_seen    INTEGER NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('up', 'stale', 'down')),
        state_reason TEXT NOT NULL,
        state_since  INTEGER NOT NULL,
        owner        TEXT,               -- companion node id that owns the device
        health       TEXT,               -- JSON {breaker, outbox} last reported by the device
        health_at    INTEGER
      );
    `,
  },
];

export interface OpenOptions {
  /** File path, or ':memory:'. */
  path: string;
  /** Schema steps to apply; MIGRATIONS unless a test passes its own. */
  migrations?: readonly Migration[];
  /**
   * How long a write waits for another connection's lock before failing. It blocks the event
   * loop while it waits, so it stays short; only tests and tools open a second connection.
   */
  busyTimeoutMs?: number;
  /** Clock for the migration record; the default is the wall clock. */
  nowMs?: () => number;
}

export interface OpenDatabase {
  db: Db;
  path: string;
  /** Schema version after migrating. */
  schemaVersion: number;
  /** Versions applied by this open (empty when the file was already current). */
  applied: number[];
  /** Idempotent. */
  close(): void;
}

/** `<dataDir>/espfleet.db` */
export function databasePath(dataDir: string): string {
  return join(dataDir, DB_FILE_NAME);
}

/** Creates the data dir if needed and opens `<dataDir>/espfleet.db`. */
export function openDataDir(dataDir: string, options: Omit<OpenOptions, 'path'> = {}): OpenDatabase {
  mkdirSync(dataDir, { recursive: true });
  return openDatabase({ ...options, path: databasePath(dataDir) });
}

export function openDatabase(options: OpenOptions): OpenDatabase {
  const migrations = options.migrations ?? MIGRATIONS;
  checkMigrationList(migrations);
  const db = new Database(options.path);
  try {
    applyPragmas(db, options.path === ':memory:', options.busyTimeoutMs ?? 2000);
    const applied = migrate(db, migrations, options.nowMs ?? Date.now);
    const schemaVersion = currentVersion(db);
    let closed = false;
    return {
      db,
      path: options.path,
      schemaVersion,
      applied,
      close() {
        if (closed) return;
        closed = true;
        db.close();
      },
    };
  } catch (err) {
    db.close();
    throw err;
  }
}

function applyPragmas(db: Db, memory: boolean, busyTimeoutMs: number): void {
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  const mode = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
  // An in-memory database reports 'memory' and has nothing to make durable.
  if (!memory && mode !== 'wal') {
    throw new StoreError('not-durable', `cannot enable WAL on this file system (journal_mode=${mode})`);
  }
  // FULL: the WAL is fsynced at every commit, so a commit that returned survives power loss.
  // (NORMAL would only fsync at checkpoints: a committed transaction could roll back.)
  db.pragma('synchronous = FULL');
  // Bound the WAL file kept after a checkpoint (64 MiB), so a burst does not pin disk forever.
  db.pragma('journal_size_limit = 67108864');
  db.pragma('foreign_keys = ON');
}

function checkMigrationList(migrations: readonly Migration[]): void {
  for (let i = 0; i < migrations.length; i++) {
    if (migrations[i].version !== i + 1) {
      throw new Error(`migration #${i} has version ${migrations[i].version}, expected ${i + 1}`);
    }
  }
}

function currentVersion(db: Db): number {
  const v = db.prepare('SELECT MAX(version) FROM schema_version').pluck().get();
  return typeof v === 'number' ? v : 0;
}

/**
 * Applies every step the file lacks, each in its own transaction together with its record in
 * schema_version, so a crash mid-migration leaves the file at the previous version.
 */
function migrate(db: Db, migrations: readonly Migration[], nowMs: () => number): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const rows = db.prepare('SELECT version, name FROM schema_version ORDER BY version').all() as {
    version: number;
    name: string;
  }[];
  const known = migrations.length;
  const have = rows.length ? rows[rows.length - 1].version : 0;
  if (have > known) {
    throw new StoreError(
      'schema-newer',
      `database schema is v${have}, this companion knows up to v${known}: upgrade the companion`,
    );
  }
  for (const row of rows) {
    const m = migrations[row.version - 1];
    if (!m || m.name !== row.name) {
      throw new StoreError(
        'schema-mismatch',
        `database step v${row.version} is '${row.name}', this companion's is '${m ? m.name : '(none)'}'`,
      );
    }
  }
  const record = db.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)');
  const applied: number[] = [];
  for (let v = have + 1; v <= known; v++) {
    const m = migrations[v - 1];
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, Math.floor(nowMs()));
    }).immediate();
    applied.push(v);
  }
  return applied;
}
