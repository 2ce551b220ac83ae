/**
 * Where a Raft node keeps what it must not forget: term, vote, commit (the hard state), the log
 * entries after the last snapshot, and that snapshot.
 *
 * CONTRACT: `persist(batch)` returns only once the batch is DURABLE (fsync'd), and applies it
 * atomically: after a crash the storage holds either the whole batch or none of it. The shell
 * SENDS the Ready's messages only AFTER persist returns (raft-core.ts).
 *
 * Two implementations with one interface:
 *   SqliteStorage - better-sqlite3, WAL journal, synchronous=FULL (every commit fsyncs the WAL);
 *   MemoryStorage - for the simulator and unit tests; it can stage writes without syncing and
 *                   "crash", losing whatever was not synced.
 */
import Database from 'better-sqlite3';
import type { Entry, HardState, NodeId, PersistedState, Snapshot } from './raft-types.js';

/** The persistent part of a Ready, applied in this order: snapshot, compacted, entries, hardState. */
export interface PersistBatch {
  hardState: HardState | null;
  /** Replace stored entries from entries[0].index on with these. */
  entries: Entry[];
  /** Installed from the leader: store it and drop EVERY stored entry. */
  snapshot: Snapshot | null;
  /** Local compaction: store it and drop stored entries up to its index. */
  compacted: Snapshot | null;
}

export interface RaftStorage {
  /** What was persisted, or null for a brand-new node. */
  load(): PersistedState | null;
  /** Durable and atomic before it returns. */
  persist(b: PersistBatch): void;
  close(): void;
}

function cloneEntry(e: Entry): Entry {
  const c: Entry = { index: e.index, term: e.term, kind: e.kind, data: e.data };
  if (e.voters) c.voters = e.voters.slice();
  if (e.change) c.change = { op: e.change.op, id: e.change.id };
  return c;
}

function cloneSnap(s: Snapshot): Snapshot {
  return { index: s.index, term: s.term, voters: s.voters.slice(), data: s.data };
}

function emptyState(): PersistedState {
  return {
    hardState: { term: 0, vote: '', commit: 0 },
    snapshot: { index: 0, term: 0, voters: [], data: '' },
    entries: [],
  };
}

/** Apply one batch to a PersistedState in place (the reference semantics of persist). */
export function applyBatch(p: PersistedState, b: PersistBatch): void {
  if (b.snapshot) {
    p.snapshot = cloneSnap(b.snapshot);
    p.entries = [];
  }
  if (b.compacted) {
    const s = cloneSnap(b.compacted);
    if (s.index >= p.snapshot.index) {
      p.snapshot = s;
      let k = 0;
      while (k < p.entries.length && p.entries[k].index <= s.index) k++;
      p.entries = p.entries.slice(k);
    }
  }
  if (b.entries.length > 0) {
    const first = b.entries[0].index;
    let keep = p.entries.length;
    while (keep > 0 && p.entries[keep - 1].index >= first) keep--;
    p.entries.length = keep;
    for (let i = 0; i < b.entries.length; i++) p.entries.push(cloneEntry(b.entries[i]));
  }
  if (b.hardState) p.hardState = { term: b.hardState.term, vote: b.hardState.vote, commit: b.hardState.commit };
}

function cloneState(p: PersistedState): PersistedState {
  return {
    hardState: { term: p.hardState.term, vote: p.hardState.vote, commit: p.hardState.commit },
    snapshot: cloneSnap(p.snapshot),
    entries: p.entries.map(cloneEntry),
  };
}

/**
 * In-memory storage with an explicit sync: `stage` buffers a batch as the OS page cache would,
 * `sync` makes everything staged durable, `crash` forgets what was staged. `persist` is
 * stage + sync, which is what a correct shell uses.
 */
export class MemoryStorage implements RaftStorage {
  _durable: PersistedState | null = null;
  _staged: PersistBatch[] = [];
  /** Batches made durable; the simulator reports it. */
  syncs = 0;

  constructor(initial: PersistedState | null = null) {
    this._durable = initial ? cloneState(initial) : null;
  }

  load(): PersistedState | null {
    return this._durable ? cloneState(this._durable) : null;
  }

  stage(b: PersistBatch): void {
    this._staged.push({
      hardState: b.hardState ? { ...b.hardState } : null,
      entries: b.entries.map(cloneEntry),
      snapshot: b.snapshot ? cloneSnap(b.snapshot) : null,
      compacted: b.compacted ? cloneSnap(b.compacted) : null,
    });
  }

  sync(): void {
    if (this._staged.length === 0) return;
    if (!this._durable) this._durable = emptyState();
    for (let i = 0; i < this._staged.length; i++) applyBatch(this._durable, this._staged[i]);
    this._staged = [];
    this.syncs++;
  }

  /** Power loss: unsynced writes are gone. */
  crash(): void {
    this._staged = [];
  }

  persist(b: PersistBatch): void {
    this.stage(b);
    this.sync();
  }

  close(): void {
    this._staged = [];
  }
}

interface EntryRow {
  idx: number;
  term: number;
  kind: string;
  data: string;
  voters: string | null;
  change: string | null;
}

interface SnapRow {
  idx: number;
  term: number;
  voters: string;
  data: string;
}

const SCHEMA_VERSION = 1;

/**
 * SQLite storage. One database file per node; the hard state and snapshot are single rows, the
 * log is one row per entry keyed by index.
 */
export class SqliteStorage implements RaftStorage {
  _db: Database.Database;
  _closed = false;
  _stmts: {
    delFrom: Database.Statement;
    delUpTo: Database.Statement;
    delAll: Database.Statement;
    ins: Database.Statement;
    setSnap: Database.Statement;
    setHard: Database.Statement;
    snapIdx: Database.Statement;
  };
  _tx: (b: PersistBatch) => void;

  constructor(path: string) {
    this._db = new Database(path);
    // WAL: a commit appends to the log file; synchronous=FULL fsyncs it at every commit, so a
    // transaction that returned survives power loss (https://sqlite.org/pragma.html#pragma_synchronous).
    this._db.pragma('journal_mode = WAL');
    this._db.pragma('synchronous = FULL');
    const v = this._db.pragma('user_version', { simple: true }) as number;
    if (v === 0) {
      this._db.exec(`
        CREATE TABLE IF NOT EXISTS raft_hard (id INTEGER PRIMARY KEY CHECK (id = 1),
          term INTEGER NOT NULL, vote TEXT NOT NULL, cmt INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS raft_snapshot (id INTEGER PRIMARY KEY CHECK (id = 1),
          idx INTEGER NOT NULL, term INTEGER NOT NULL, voters TEXT NOT NULL, data TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS raft_entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
          kind TEXT NOT NULL, data TEXT NOT NULL, voters TEXT, change TEXT);
      `);
      this._db.pragma('user_version = ' + SCHEMA_VERSION);
    } else if (v !== SCHEMA_VERSION) {
      throw new Error('raft storage: unknown schema version ' + v);
    }
    this._stmts = {
      delFrom: this._db.prepare('DELETE FROM raft_entries WHERE idx >= ?'),
      delUpTo: this._db.prepare('DELETE FROM raft_entries WHERE idx <= ?'),
      delAll: this._db.prepare('DELETE FROM raft_entries'),
      ins: this._db.prepare(
        'INSERT INTO raft_entries (idx, term, kind, data, voters, change) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      setSnap: this._db.prepare(
        'INSERT OR REPLACE INTO raft_snapshot (id, idx, term, voters, data) VALUES (1, ?, ?, ?, ?)',
      ),
      setHard: this._db.prepare('INSERT OR REPLACE INTO raft_hard (id, term, vote, cmt) VALUES (1, ?, ?, ?)'),
      snapIdx: this._db.prepare('SELECT idx FROM raft_snapshot WHERE id = 1'),
    };
    // One transaction per batch: atomic, and durable when it commits.
    this._tx = this._db.transaction((b: PersistBatch) => {
      const st = this._stmts;
      if (b.snapshot) {
        const s = b.snapshot;
        st.setSnap.run(s.index, s.term, JSON.stringify(s.voters), s.data);
        st.delAll.run();
      }
      if (b.compacted) {
        const s = b.compacted;
        const cur = st.snapIdx.get() as
          | { idx: number }
          | undefined;
        if (!cur || cur.idx <= s.index) {
          st.setSnap.run(s.index, s.term, JSON.stringify(s.voters), s.data);
          st.delUpTo.run(s.index);
        }
      }
      if (b.entries.length > 0) {
        st.delFrom.run(b.entries[0].index);
        for (let i = 0; i < b.entries.length; i++) {
          const e = b.entries[i];
          st.ins.run(
            e.index,
            e.term,
            e.kind,
            e.data,
            e.voters ? JSON.stringify(e.voters) : null,
            e.change ? JSON.stringify(e.change) : null,
          );
        }
      }
      if (b.hardState) st.setHard.run(b.hardState.term, b.hardState.vote, b.hardState.commit);
    });
  }

  persist(b: PersistBatch): void {
    if (this._closed) throw new Error('raft storage: closed');
    if (!b.hardState && !b.snapshot && !b.compacted && b.entries.length === 0) return;
    this._tx(b);
  }

  load(): PersistedState | null {
    const hard = this._db.prepare('SELECT term, vote, cmt FROM raft_hard WHERE id = 1').get() as
      | { term: number; vote: string; cmt: number }
      | undefined;
    const snap = this._db.prepare('SELECT idx, term, voters, data FROM raft_snapshot WHERE id = 1').get() as
      | SnapRow
      | undefined;
    const rows = this._db
      .prepare('SELECT idx, term, kind, data, voters, change FROM raft_entries ORDER BY idx')
      .all() as EntryRow[];
    if (!hard && !snap && rows.length === 0) return null;
    const p = emptyState();
    if (hard) p.hardState = { term: hard.term, vote: hard.vote, commit: hard.cmt };
    if (snap) {
      p.snapshot = {
        index: snap.idx,
        term: snap.term,
        voters: JSON.parse(snap.voters) as NodeId[],
        data: snap.data,
      };
    }
    // Entries must continue the snapshot without a gap; anything after a gap is unusable (it
    // cannot be matched against a leader), so the log ends there.
    let next = p.snapshot.index + 1;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      if (r.idx < next) continue;
      if (r.idx !== next) break;
      const e: Entry = { index: r.idx, term: r.term, kind: r.kind as Entry['kind'], data: r.data };
      if (r.voters !== null) e.voters = JSON.parse(r.voters) as NodeId[];
      if (r.change !== null) e.change = JSON.parse(r.change) as Entry['change'];
      p.entries.push(e);
      next++;
    }
    return p;
  }

  close(): void {
    if (this._closed) return;
    this._closed = true;
    this._db.close();
  }
}
