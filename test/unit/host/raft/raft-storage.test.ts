import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import { RaftNode } from '../../../../host/raft/raft-core.js';
import { MemoryStorage, SqliteStorage, type RaftStorage } from '../../../../host/raft/raft-storage.js';
import type { Entry } from '../../../../host/raft/raft-types.js';

const dir = mkdtempSync(join(tmpdir(), 'raft-storage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const e = (index: number, term: number, data = 'd' + index): Entry => ({ index, term, kind: 'cmd', data });

const kinds: [string, () => { open: () => RaftStorage }][] = [
  [
    'memory',
    () => {
      const m = new MemoryStorage();
      return { open: () => m };
    },
  ],
  [
    'sqlite',
    () => {
      const path = join(dir, 'db' + n++ + '.sqlite');
      return { open: () => new SqliteStorage(path) };
    },
  ],
];

describe.each(kinds)('raft storage (%s)', (_name, make) => {
  it('starts empty, then round-trips hard state, entries and snapshot across a reopen', () => {
    const h = make();
    let s = h.open();
    expect(s.load()).toBe(null);
    const conf: Entry = { index: 3, term: 2, kind: 'conf', data: 'c', voters: ['a', 'b'], change: { op: 'remove', id: 'c' } };
    s.persist({
      hardState: { term: 2, vote: 'a', commit: 2 },
      entries: [e(1, 1), e(2, 1), conf],
      snapshot: null,
      compacted: { index: 0, term: 0, voters: ['a', 'b', 'c'], data: '' },
    });
    s.close();
    s = h.open();
    expect(s.load()).toEqual({
      hardState: { term: 2, vote: 'a', commit: 2 },
      snapshot: { index: 0, term: 0, voters: ['a', 'b', 'c'], data: '' },
      entries: [e(1, 1), e(2, 1), conf],
    });
    s.close();
  });

  it('entries replace the stored suffix from their first index', () => {
    const s = make().open();
    s.persist({ hardState: null, entries: [e(1, 1), e(2, 1), e(3, 1), e(4, 1)], snapshot: null, compacted: null });
    s.persist({ hardState: { term: 3, vote: '', commit: 1 }, entries: [e(3, 3, 'new')], snapshot: null, compacted: null });
    expect(s.load()!.entries).toEqual([e(1, 1), e(2, 1), e(3, 3, 'new')]);
    s.close();
  });

  it('compaction drops the prefix; an installed snapshot drops everything', () => {
    const s = make().open();
    s.persist({ hardState: null, entries: [e(1, 1), e(2, 1), e(3, 1), e(4, 1)], snapshot: null, compacted: null });
    s.persist({ hardState: null, entries: [], snapshot: null, compacted: { index: 2, term: 1, voters: ['a'], data: 'S2' } });
    let p = s.load()!;
    expect(p.snapshot).toEqual({ index: 2, term: 1, voters: ['a'], data: 'S2' });
    expect(p.entries.map((x) => x.index)).toEqual([3, 4]);
    s.persist({ hardState: { term: 5, vote: '', commit: 9 }, entries: [], snapshot: { index: 9, term: 4, voters: ['a', 'b'], data: 'S9' }, compacted: null });
    p = s.load()!;
    expect(p.snapshot.index).toBe(9);
    expect(p.entries).toEqual([]);
    // Entries after an installed snapshot, in the same batch, are kept.
    s.persist({ hardState: null, entries: [e(10, 5)], snapshot: { index: 9, term: 4, voters: ['a', 'b'], data: 'S9' }, compacted: null });
    expect(s.load()!.entries).toEqual([e(10, 5)]);
    s.close();
  });

  it('a node restarted from storage has the same term, vote, log and commit, and carries on', () => {
    const h = make();
    let s = h.open();
    const cfg = { id: 'solo', electionTicks: 10, heartbeatTicks: 1, rng: new SeededRng(1), voters: ['solo'] };
    let node = new RaftNode(cfg, s.load());
    const drain = (): void => {
      while (node.hasReady()) {
        const rd = node.ready();
        s.persist(rd);
        node.advance(rd);
      }
    };
    node.campaign();
    drain();
    for (let i = 0; i < 10; i++) node.propose({ data: 'p' + i });
    drain();
    expect(node.compact(6, 'STATE@6')).toBe('');
    drain();
    const before = node.status();
    s.close();
    s = h.open();
    node = new RaftNode({ ...cfg, rng: new SeededRng(2) }, s.load());
    const after = node.status();
    expect([after.term, after.vote, after.commit, after.lastIndex, after.snapshotIndex]).toEqual([
      before.term,
      before.vote,
      before.commit,
      before.lastIndex,
      before.snapshotIndex,
    ]);
    expect(node.log.snapshot().data).toBe('STATE@6');
    expect(node.voters()).toEqual(['solo']);
    node.campaign();
    drain();
    expect(node.role).toBe('leader');
    expect(node.term).toBe(before.term + 1);
    const r = node.propose({ data: 'after' });
    drain();
    expect(r.ok).toBe(true);
    expect(node.log.committed).toBe(before.lastIndex + 2);
    s.close();
  });
});

describe('memory storage: crash semantics', () => {
  it('staged writes survive only a sync; a crash loses them', () => {
    const m = new MemoryStorage();
    m.persist({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: [e(1, 1)], snapshot: null, compacted: null });
    m.stage({ hardState: { term: 2, vote: 'b', commit: 1 }, entries: [e(2, 2)], snapshot: null, compacted: null });
    m.crash();
    expect(m.load()!.hardState).toEqual({ term: 1, vote: 'a', commit: 0 });
    expect(m.load()!.entries).toEqual([e(1, 1)]);
    m.stage({ hardState: { term: 2, vote: 'b', commit: 1 }, entries: [e(2, 2)], snapshot: null, compacted: null });
    m.sync();
    m.crash();
    expect(m.load()!.hardState.vote).toBe('b');
    expect(m.syncs).toBe(2);
  });

  it('load returns a copy: the caller cannot corrupt what is stored', () => {
    const m = new MemoryStorage();
    m.persist({ hardState: { term: 1, vote: '', commit: 0 }, entries: [e(1, 1)], snapshot: null, compacted: null });
    const p = m.load()!;
    p.entries[0].data = 'mutated';
    p.hardState.term = 99;
    expect(m.load()!.entries[0].data).toBe('d1');
    expect(m.load()!.hardState.term).toBe(1);
  });
});

describe('sqlite storage: durability settings and damaged files', () => {
  it('uses WAL with synchronous=FULL', () => {
    const path = join(dir, 'pragmas.sqlite');
    const s = new SqliteStorage(path);
    expect(s._db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s._db.pragma('synchronous', { simple: true })).toBe(2);
    s.close();
    s.close(); // idempotent
  });

  it('a gap in the stored log ends the log there (nothing after it can be matched)', () => {
    const path = join(dir, 'gap.sqlite');
    const s = new SqliteStorage(path);
    s.persist({ hardState: { term: 1, vote: '', commit: 2 }, entries: [e(1, 1), e(2, 1), e(3, 1), e(4, 1)], snapshot: null, compacted: null });
    s.close();
    const db = new Database(path);
    db.prepare('DELETE FROM raft_entries WHERE idx = 3').run();
    db.close();
    const t = new SqliteStorage(path);
    expect(t.load()!.entries.map((x) => x.index)).toEqual([1, 2]);
    t.close();
  });

  it('refuses a file from an unknown schema version', () => {
    const path = join(dir, 'future.sqlite');
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    expect(() => new SqliteStorage(path)).toThrow(/schema version 99/);
  });
});
