import { describe, expect, it } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import { RaftNode } from '../../../../host/raft/raft-core.js';
import type { Entry, Message, PersistedState } from '../../../../host/raft/raft-types.js';
import { Net } from './raft-harness.js';

const fmt = (m: Message): string =>
  `${m.from}->${m.to} ${m.type} t${m.term} i${m.index} lt${m.logTerm} c${m.commit}${m.reject ? ' rej' : ''}` +
  (m.entries.length ? ' [' + m.entries.map((e) => e.index + ':' + e.term + ':' + e.kind).join(' ') + ']' : '');

/** A persisted log whose entries have the given terms (index 1..n), current term `term`. */
function logOf(terms: number[], term: number, voters: string[]): PersistedState {
  const entries: Entry[] = terms.map((t, i) => ({ index: i + 1, term: t, kind: 'cmd', data: 'e' + (i + 1) + '@' + t }));
  return {
    hardState: { term, vote: '', commit: 0 },
    snapshot: { index: 0, term: 0, voters, data: '' },
    entries,
  };
}

describe('raft core: election', () => {
  it('trace: pre-vote, vote, the leader noop, a proposal, its commit and the heartbeat', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.deliver();
    net.tick('a');
    net.deliver();
    expect(net.sent.map(fmt)).toEqual([
      'a->b preVote t1 i0 lt0 c0',
      'a->c preVote t1 i0 lt0 c0',
      'b->a preVoteResp t1 i0 lt0 c0',
      'c->a preVoteResp t1 i0 lt0 c0',
      'a->b vote t1 i0 lt0 c0',
      'a->c vote t1 i0 lt0 c0',
      'b->a voteResp t1 i0 lt0 c0',
      'c->a voteResp t1 i0 lt0 c0',
      'a->b app t1 i0 lt0 c0 [1:1:noop]',
      'a->c app t1 i0 lt0 c0 [1:1:noop]',
      'b->a appResp t1 i1 lt0 c0',
      'c->a appResp t1 i1 lt0 c0',
      // the noop is committed: an empty append tells each up-to-date follower
      'a->b app t1 i1 lt1 c1',
      'a->c app t1 i1 lt1 c1',
      'b->a appResp t1 i1 lt0 c0',
      'c->a appResp t1 i1 lt0 c0',
      'a->b app t1 i1 lt1 c1 [2:1:cmd]',
      'a->c app t1 i1 lt1 c1 [2:1:cmd]',
      'b->a appResp t1 i2 lt0 c0',
      'c->a appResp t1 i2 lt0 c0',
      'a->b app t1 i2 lt1 c2',
      'b->a appResp t1 i2 lt0 c0',
      // c, whose ack came second, learns the commit from the heartbeat: min(match, commit)
      'a->b hb t1 i0 lt0 c2',
      'a->c hb t1 i0 lt0 c2',
      'b->a hbResp t1 i0 lt0 c0',
      'c->a hbResp t1 i0 lt0 c0',
    ]);
    for (const id of ['a', 'b', 'c']) {
      expect(net.nodes.get(id)!.applied.map((e) => e.kind + ':' + e.data)).toEqual(['noop:', 'cmd:x']);
    }
    // Votes were on disk before the grants left (persist-before-send in the harness).
    expect(net.nodes.get('b')!.disk.persisted!.hardState).toEqual({ term: 1, vote: 'a', commit: 2 });
  });

  it('a follower campaigns after a randomised timeout in [T, 2T), drawn from the injected Rng', () => {
    const seen = new Set<number>();
    for (let seed = 1; seed <= 60; seed++) {
      const n = new RaftNode({ id: 'a', electionTicks: 10, heartbeatTicks: 1, rng: new SeededRng(seed), voters: ['a', 'b', 'c'] }, null);
      let t = 0;
      while (n.role === 'follower' && t < 100) {
        n.tick();
        t++;
      }
      expect(n.role).toBe('preCandidate');
      expect(t).toBeGreaterThanOrEqual(10);
      expect(t).toBeLessThan(20);
      seen.add(t);
      // Same seed, same timeout: the Rng is the only source of randomness.
      const again = new RaftNode({ id: 'a', electionTicks: 10, heartbeatTicks: 1, rng: new SeededRng(seed), voters: ['a', 'b', 'c'] }, null);
      let u = 0;
      while (again.role === 'follower') {
        again.tick();
        u++;
      }
      expect(u).toBe(t);
    }
    expect(seen.size).toBeGreaterThan(5);
  });

  it('a single voter elects itself at once', () => {
    const net = new Net(['solo']);
    net.elect('solo');
    expect(net.get('solo').role).toBe('leader');
    const r = net.propose('solo', 'x');
    expect(r).toEqual({ ok: true, index: 2, term: 1 });
    expect(net.get('solo').log.committed).toBe(2);
  });

  it('a node with a stale log cannot win (Raft §5.4.1)', () => {
    const v = ['a', 'b', 'c'];
    const net = new Net([]);
    net.add('a', v, logOf([1], 1, v));
    net.add('b', v, logOf([1, 1], 1, v));
    net.add('c', v, logOf([1, 1], 1, v));
    net.elect('a');
    expect(net.get('a').role).not.toBe('leader');
    // Pre-vote failed: nobody's term moved.
    expect([net.get('a').term, net.get('b').term, net.get('c').term]).toEqual([1, 1, 1]);
    net.elect('b');
    expect(net.get('b').role).toBe('leader');
  });
});

describe('raft core: pre-vote, lease and check-quorum', () => {
  it('pre-vote keeps an isolated node from inflating its term; it rejoins without disruption', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 200; i++) {
      net.tick('c');
      net.deliver();
    }
    expect(net.get('c').term).toBe(1);
    net.heal();
    net.tickAll(3);
    expect(net.leaders()).toEqual(['a']);
    expect(net.get('a').term).toBe(1);
    expect(net.get('c').leader).toBe('a');
  });

  it('without pre-vote the same isolation inflates the term and deposes the leader (the contrast)', () => {
    const net = new Net(['a', 'b', 'c'], { preVote: false, checkQuorum: false });
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 200; i++) {
      net.tick('c');
      net.deliver();
    }
    expect(net.get('c').term).toBeGreaterThan(5);
    net.heal();
    net.tickAll(3);
    expect(net.get('a').term).toBe(net.get('c').term);
  });

  it('followers that heard from their leader within the election timeout ignore candidates (lease)', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.tickAll(2);
    net.elect('c');
    expect(net.leaders()).toEqual(['a']);
    expect(net.get('a').term).toBe(1);
    expect(net.get('b').drops['in-lease']).toBeGreaterThan(0);
  });

  it('check-quorum: a leader cut off from a quorum steps down after exactly one election timeout', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    for (let i = 0; i < 9; i++) net.tick('a');
    expect(net.get('a').role).toBe('leader');
    expect(net.get('a').hasLease()).toBe(true);
    net.tick('a');
    expect(net.get('a').role).toBe('follower');
    expect(net.get('a').leader).toBe('');
    expect(net.get('a').term).toBe(1);
  });

  it('a leader paused past the election timeout steps down on its missed ticks, before any message', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.tickAll(2);
    net.pause('a');
    net.tickAll(40); // b and c elect a new leader meanwhile
    const newLeader = net.leaders().find((x) => x !== 'a')!;
    expect(['b', 'c']).toContain(newLeader);
    const sentBefore = net.sent.length;
    const termBefore = net.get('a').term;
    net.resume('a', 30);
    // Before anything it queued was delivered, its own ticks deposed it...
    expect(net.get('a').role).toBe('follower');
    expect(net.get('a').term).toBe(termBefore);
    // ...and it sent nothing as leader after waking.
    expect(net.sent.slice(sentBefore).filter((m) => m.from === 'a' && (m.type === 'app' || m.type === 'hb'))).toEqual([]);
    net.deliver();
    net.tickAll(3);
    expect(net.get('a').leader).toBe(newLeader);
  });

  it('a stale leader that never noticed cannot commit: its proposal is lost, nobody applies it', () => {
    // Without catch-up ticks (the worst case): the old leader still believes it leads.
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.tickAll(2);
    net.pause('a');
    net.tickAll(40);
    const newLeader = net.leaders().find((x) => x !== 'a')!;
    const a = net.nodes.get('a')!;
    a.paused = false;
    a.pausedInbox = [];
    expect(a.node.role).toBe('leader');
    const commitBefore = a.node.log.committed;
    const r = net.propose('a', 'stale');
    expect(r.ok).toBe(true);
    net.deliver();
    // Followers answered with their newer term: it stepped down without committing.
    expect(a.node.role).toBe('follower');
    expect(a.node.log.committed).toBe(commitBefore);
    net.tickAll(5);
    for (const id of ['a', 'b', 'c']) {
      expect(net.nodes.get(id)!.applied.some((e) => e.data === 'stale')).toBe(false);
      expect(net.get(id).leader).toBe(newLeader);
    }
  });
});

describe('raft core: log replication', () => {
  it('repairs every follower of Raft Figure 7 to the leader log, truncating conflicts', () => {
    const ids = ['L', 'fa', 'fb', 'fc', 'fd', 'fe', 'ff'];
    const logs: Record<string, number[]> = {
      L: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
      fa: [1, 1, 1, 4, 4, 5, 5, 6, 6],
      fb: [1, 1, 1, 4],
      fc: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
      fd: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
      fe: [1, 1, 1, 4, 4, 4, 4],
      ff: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    };
    const net = new Net([]);
    for (const id of ids) net.add(id, ids, logOf(logs[id], 7, ids));
    net.elect('L');
    expect(net.get('L').role).toBe('leader');
    expect(net.get('L').term).toBe(8);
    net.tickAll(10);
    const want = [...logs.L, 8];
    for (const id of ids) expect(net.terms(id)).toEqual(want);
    for (const id of ids) expect(net.get(id).log.committed).toBe(11);
    // The term hint skips whole terms: far fewer rejections than entries to walk back.
    const rejects = net.sent.filter((m) => m.type === 'appResp' && m.reject).length;
    expect(rejects).toBeLessThan(12);
  });

  it('Figure 8: an old-term entry on a majority is not committed by counting; a newer leader overwrites it', () => {
    const v = ['s1', 's2', 's3', 's4', 's5'];
    // The paper's setting: no pre-vote, no lease (they do not change the commitment rule).
    const net = new Net([], { entriesPerMsgMax: 1, preVote: false, checkQuorum: false });
    net.add('s1', v, logOf([1, 2], 3, v));
    net.add('s2', v, logOf([1, 2], 3, v));
    net.add('s3', v, logOf([1], 3, v));
    net.add('s4', v, logOf([1], 3, v));
    net.add('s5', v, logOf([1, 3], 3, v));
    net.isolate('s5');
    // The network strips s1's own term-4 entries (its noop) from every append: followers see
    // only the old-term entry at index 2, and acknowledge it.
    const strip = (m: Message): Message => ({ ...m, entries: m.entries.filter((e) => e.term !== 4) });
    net.get('s1').campaign();
    net.flush('s1');
    net.deliver(100000, strip);
    expect(net.get('s1').role).toBe('leader');
    expect(net.get('s1').term).toBe(4);
    for (let i = 0; i < 10; i++) {
      net.tick('s1');
      net.deliver(100000, strip);
    }
    // Index 2 (term 2) is on s1, s2, s3: a majority, yet not committed.
    expect(net.terms('s3').slice(0, 2)).toEqual([1, 2]);
    expect(net.get('s1').log.committed).toBeLessThan(2);
    // s1 dies; s5 (last term 3) wins with s2, s3, s4 and overwrites index 2.
    net.isolate('s1');
    net.cut.delete('s5->s2');
    net.cut.delete('s2->s5');
    net.cut.delete('s5->s3');
    net.cut.delete('s3->s5');
    net.cut.delete('s5->s4');
    net.cut.delete('s4->s5');
    for (let i = 0; i < 3 && net.get('s5').role !== 'leader'; i++) net.elect('s5');
    expect(net.get('s5').role).toBe('leader');
    net.tickAll(5);
    for (const id of ['s2', 's3', 's4', 's5']) {
      expect(net.get(id).log.term(2)).toBe(3);
      expect(net.nodes.get(id)!.applied.some((e) => e.index === 2 && e.term === 2)).toBe(false);
    }
  });

  it('a follower commits no further than the last entry the append matched (Figure 2, rule 5)', () => {
    // f holds a stale entry at index 3 (term 2). A late append from the term-3 leader
    // covering only index 2 says commit=3: f must not commit its own, different, index 3.
    const v = ['L', 'f', 'g'];
    const net = new Net([]);
    net.add('f', v, logOf([1, 1, 2], 3, v));
    const f = net.get('f');
    const m: Message = {
      type: 'app', from: 'L', to: 'f', term: 3, index: 1, logTerm: 1, commit: 3, reject: false, hint: 0,
      entries: [{ index: 2, term: 1, kind: 'cmd', data: 'e2@1' }], snapshot: null,
    };
    expect(f.step(m)).toBe('');
    expect(f.log.committed).toBe(2);
    expect(f.log.term(3)).toBe(2); // not truncated either: a matching prefix changes nothing after it
    net.flush('f');
    expect(net.sent.map(fmt)).toEqual(['f->L appResp t3 i2 lt0 c0']);
  });

  it('a follower forwards proposals to the leader; a non-leader drops forwarded ones', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    const r = net.propose('b', 'from-b');
    expect(r).toEqual({ ok: true, forwardedTo: 'a' });
    net.deliver();
    net.tickAll(2);
    expect(net.nodes.get('c')!.applied.map((e) => e.data)).toContain('from-b');
    const m = { type: 'prop', from: 'a', to: 'c', term: 0, index: 0, logTerm: 0, commit: 0, reject: false, hint: 0, entries: [{ index: 0, term: 0, kind: 'cmd', data: 'x' }], snapshot: null };
    expect(net.get('c').step(m)).toBe('not-leader');
  });

  it('a leader without a quorum stops taking proposals at uncommittedMax (backpressure)', () => {
    const net = new Net(['a', 'b', 'c'], { uncommittedMax: 5 });
    net.elect('a');
    net.tickAll(1);
    net.isolate('a');
    const results = [];
    for (let i = 0; i < 8; i++) results.push(net.propose('a', 'p' + i).ok);
    expect(results.filter((x) => x).length).toBe(5);
    expect(net.get('a').drops['too-many-uncommitted'] ?? 0).toBe(0); // refused, not a peer drop
  });
});

describe('raft core: snapshots', () => {
  it('a lagging follower is sent the snapshot once the leader compacted the entries it needs', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 30; i++) {
      net.propose('a', 'p' + i);
      net.deliver();
    }
    net.tickAll(2);
    const a = net.get('a');
    expect(a.log.applied).toBe(31);
    expect(a.compact(25, 'STATE@25')).toBe('');
    expect(a.compact(20, 'x')).toBe('already-compacted');
    expect(a.compact(99, 'x')).toBe('not-applied');
    net.flush('a');
    expect(net.nodes.get('a')!.disk.persisted!.snapshot.index).toBe(25);
    expect(net.nodes.get('a')!.disk.persisted!.entries[0].index).toBe(26);
    net.heal();
    net.tickAll(5);
    const c = net.nodes.get('c')!;
    expect(c.snapshotsApplied.map((s) => [s.index, s.data])).toEqual([[25, 'STATE@25']]);
    // Before the cut it applied the noop; after the snapshot, the rest came as entries.
    expect(c.applied.map((e) => e.index)).toEqual([1, 26, 27, 28, 29, 30, 31]);
    expect(c.node.log.firstIndex()).toBe(26);
    expect(c.disk.persisted!.snapshot.index).toBe(25);
    // A restart from disk starts from the snapshot.
    const r = net.restart('c');
    expect(r.node.log.snapshot().data).toBe('STATE@25');
    // It re-applies what it had committed past the snapshot (its state machine restarts from
    // the snapshot data), no more and no less.
    expect(r.applied.map((e) => e.index)).toEqual([26, 27, 28, 29, 30, 31]);
  });

  it('a snapshot the follower already covers only fast-forwards its commit', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 5; i++) net.propose('a', 'p' + i);
    net.deliver();
    const b = net.get('b');
    const s = { type: 'snap', from: 'a', to: 'b', term: 1, index: 0, logTerm: 0, commit: 0, reject: false, hint: 0, entries: [], snapshot: { index: 4, term: 1, voters: ['a', 'b', 'c'], data: 'S' } };
    const before = b.log.lastIndex();
    expect(b.step(s)).toBe('');
    expect(b.log.lastIndex()).toBe(before);
    expect(b.log.snapshot().index).toBe(0);
  });
});

describe('raft core: membership', () => {
  it('adds a voter (config on append), refuses a second change while one is pending', () => {
    const net = new Net(['a', 'b', 'c']);
    net.add('d', [], null, { peers: ['a', 'b', 'c'] });
    net.elect('a');
    const a = net.get('a');
    const r = a.propose({ data: 'add d', change: { op: 'add', id: 'd' } });
    expect(r.ok).toBe(true);
    // In force on append, before commit.
    expect(a.voters()).toEqual(['a', 'b', 'c', 'd']);
    expect(a.propose({ data: 'add e', change: { op: 'add', id: 'e' } })).toEqual({ ok: false, reason: 'conf-pending' });
    expect(a.propose({ data: 'bad', change: { op: 'add', id: '../x' } })).toEqual({ ok: false, reason: 'bad-change' });
    expect(a.propose({ data: 'bad', change: { op: 'swap' as 'add', id: 'e' } })).toEqual({ ok: false, reason: 'bad-change' });
    net.flush('a');
    net.deliver();
    net.tickAll(3);
    expect(net.get('d').voters()).toEqual(['a', 'b', 'c', 'd']);
    expect(net.get('d').log.committed).toBe(a.log.committed);
    expect(a.propose({ data: 'add d', change: { op: 'add', id: 'd' } })).toEqual({ ok: false, reason: 'conf-noop' });
    // d is promotable now and counts in the quorum: with a and b cut, nothing commits.
    net.isolate('a');
    net.isolate('b');
    net.heal();
    expect(net.get('d').role).toBe('follower');
  });

  it('no membership change before the new leader has committed an entry of its term', () => {
    const net = new Net(['a', 'b', 'c']);
    net.get('a').campaign();
    net.flush('a');
    net.deliver(100000, (m) => m.type !== 'app'); // elected, noop not replicated
    expect(net.get('a').role).toBe('leader');
    expect(net.get('a').propose({ data: 'rm c', change: { op: 'remove', id: 'c' } })).toEqual({ ok: false, reason: 'conf-pending' });
  });

  it('a removed leader steps down once its removal commits and never campaigns again', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.tickAll(1);
    const r = net.get('a').propose({ data: 'rm a', change: { op: 'remove', id: 'a' } });
    expect(r.ok).toBe(true);
    net.flush('a');
    net.deliver();
    expect(net.get('a').role).toBe('follower');
    for (let i = 0; i < 60; i++) net.tickAll(1);
    const leaders = net.leaders();
    expect(leaders.length).toBe(1);
    expect(leaders[0]).not.toBe('a');
    expect(net.get('b').voters()).toEqual(['b', 'c']);
    const aTerm = net.get('a').term;
    net.isolate('a');
    for (let i = 0; i < 100; i++) net.tick('a');
    expect(net.get('a').term).toBe(aTerm);
    expect(net.get('a').role).toBe('follower');
  });

  it('an uncommitted configuration reverts when its entry is overwritten', () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const net = new Net(ids);
    net.elect('a');
    net.tickAll(1);
    net.get('a').propose({ data: 'rm e', change: { op: 'remove', id: 'e' } });
    net.flush('a');
    net.deliver(100000, (m) => m.to === 'c' || m.from === 'c');
    expect(net.get('c').voters()).toEqual(['a', 'b', 'c', 'd']);
    net.isolate('a');
    net.queue = [];
    for (let i = 0; i < 40 && !['b', 'd', 'e'].some((x) => net.get(x).role === 'leader'); i++) {
      for (const id of ['b', 'd', 'e']) net.tick(id);
      net.deliver();
    }
    expect(['b', 'd', 'e'].some((x) => net.get(x).role === 'leader')).toBe(true);
    net.tickAll(3);
    expect(net.get('c').voters()).toEqual(ids);
  });
});

describe('raft core: peer input never throws and absurd input changes nothing', () => {
  const base = (): Message => ({ type: 'app', from: 'a', to: 'b', term: 1, index: 0, logTerm: 0, commit: 0, reject: false, hint: 0, entries: [], snapshot: null });
  const cases: [string, unknown, string][] = [
    ['null', null, 'not-object'],
    ['array', [], 'bad-type'],
    ['string', 'app', 'not-object'],
    ['unknown type', { ...base(), type: 'boom' }, 'bad-type'],
    ['term 2^53', { ...base(), term: 2 ** 53 }, 'absurd-number'],
    ['term 2^52', { ...base(), term: 2 ** 52 }, 'absurd-number'],
    ['negative term', { ...base(), term: -1 }, 'absurd-number'],
    ['fractional term', { ...base(), term: 1.5 }, 'absurd-number'],
    ['term as text', { ...base(), term: '1' }, 'absurd-number'],
    ['index 2^60', { ...base(), index: 2 ** 60 }, 'absurd-number'],
    ['commit NaN', { ...base(), commit: NaN }, 'absurd-number'],
    ['unknown sender', { ...base(), from: 'mallory' }, 'unknown-sender'],
    ['bad id', { ...base(), from: '../../etc' }, 'bad-id'],
    ['not for us', { ...base(), to: 'c' }, 'not-for-us'],
    ['from ourselves', { ...base(), from: 'b' }, 'from-self'],
    ['term 0', { ...base(), term: 0 }, 'zero-term'],
    ['reject not boolean', { ...base(), reject: 1 }, 'bad-field'],
    ['entries not array', { ...base(), entries: {} }, 'bad-field'],
    ['too many entries', { ...base(), entries: Array.from({ length: 65 }, (_, i) => ({ index: i + 1, term: 1, kind: 'cmd', data: '' })) }, 'too-many-entries'],
    ['gap in entries', { ...base(), entries: [{ index: 2, term: 1, kind: 'cmd', data: '' }] }, 'bad-entries'],
    ['entry newer than message', { ...base(), entries: [{ index: 1, term: 2, kind: 'cmd', data: '' }] }, 'bad-entries'],
    ['entry kind', { ...base(), entries: [{ index: 1, term: 1, kind: 'exec', data: '' }] }, 'bad-entry'],
    ['entry data too big', { ...base(), entries: [{ index: 1, term: 1, kind: 'cmd', data: 'x'.repeat(64 * 1024 + 1) }] }, 'entry-too-big'],
    ['conf without voters', { ...base(), entries: [{ index: 1, term: 1, kind: 'conf', data: '', change: { op: 'add', id: 'z' } }] }, 'bad-entries'],
    ['conf with 16 voters', { ...base(), entries: [{ index: 1, term: 1, kind: 'conf', data: '', change: { op: 'add', id: 'z' }, voters: Array.from({ length: 16 }, (_, i) => 'v' + i) }] }, 'bad-voters'],
    ['entries on a vote', { ...base(), type: 'vote', entries: [{ index: 1, term: 1, kind: 'cmd', data: '' }] }, 'bad-field'],
    ['snapshot index 0', { ...base(), type: 'snap', snapshot: { index: 0, term: 1, voters: ['a'], data: '' } }, 'bad-snapshot'],
    ['snapshot newer term', { ...base(), type: 'snap', snapshot: { index: 5, term: 2, voters: ['a'], data: '' } }, 'bad-snapshot'],
    ['snapshot duplicate voters', { ...base(), type: 'snap', snapshot: { index: 5, term: 1, voters: ['a', 'a'], data: '' } }, 'bad-voters'],
    ['snapshot on an append', { ...base(), snapshot: { index: 5, term: 1, voters: ['a'], data: '' } }, 'bad-field'],
    ['heartbeat commit beyond the log', { ...base(), type: 'hb', commit: 2 ** 51 }, 'commit-beyond-log'],
  ];

  it.each(cases.map(([name, msg, reason]) => ({ name, msg, reason })))('$name -> dropped ($reason)', ({ msg, reason }) => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.tickAll(1);
    const b = net.get('b');
    const before = JSON.stringify(b.status());
    const got = b.step(msg);
    expect(got).toBe(reason);
    expect(b.drops[reason]).toBe(1);
    const after = JSON.parse(JSON.stringify(b.status()));
    delete after.drops;
    const was = JSON.parse(before);
    delete was.drops;
    expect(after).toEqual(was);
  });

  it('an append far beyond our log is a normal rejection with our hint; nothing changes', () => {
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    net.tickAll(1);
    const b = net.get('b');
    const last = b.log.lastIndex();
    expect(b.step({ ...base(), index: 2 ** 51, logTerm: 1 })).toBe('');
    const rd = b.ready();
    b.advance(rd);
    expect(rd.messages.map(fmt)).toEqual([`b->a appResp t1 i${2 ** 51} lt1 c0 rej`]);
    expect(rd.messages[0].hint).toBe(last);
    expect(rd.entries).toEqual([]);
    expect(b.log.lastIndex()).toBe(last);
  });

  it('a random byte soup of messages never throws', () => {
    const rng = new SeededRng(99);
    const net = new Net(['a', 'b', 'c']);
    net.elect('a');
    const b = net.get('b');
    const pick = <T,>(xs: T[]): T => xs[Math.floor(rng.next() * xs.length)];
    const nums = [0, 1, 2, -1, 0.5, 2 ** 52 - 1, 2 ** 52, 2 ** 53, NaN, Infinity, '1', null];
    const types = ['app', 'appResp', 'hb', 'hbResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'snap', 'prop', 'x'];
    for (let i = 0; i < 3000; i++) {
      const m = {
        type: pick(types),
        from: pick(['a', 'c', 'b', 'zz', '']),
        to: pick(['b', 'b', 'a']),
        term: pick(nums),
        index: pick(nums),
        logTerm: pick(nums),
        commit: pick(nums),
        reject: pick([true, false, 0]),
        hint: pick(nums),
        entries: pick([[], [{ index: 1, term: 1, kind: 'cmd', data: 'q' }], [{ index: pick(nums), term: pick(nums), kind: 'conf', data: '', voters: ['a'], change: { op: 'add', id: 'a' } }], null]),
        snapshot: pick([null, { index: pick(nums), term: pick(nums), voters: ['a', 'b'], data: '' }]),
      };
      expect(() => {
        b.step(m);
        net.flush('b');
        net.queue = [];
      }).not.toThrow();
    }
    expect(b.term).toBeLessThan(2 ** 52);
  });
});
