import { describe, expect, it } from 'vitest';
import { copiesNeeded, quorumOf, WriteQuorum } from '../../../../host/cluster/write-quorum.js';

describe('copiesNeeded', () => {
  it.each([
    // policy, R, replica set size, copies
    ['quorum', 1, 1, 1],
    ['quorum', 2, 2, 2],
    ['quorum', 3, 3, 2],
    ['quorum', 3, 2, 2],
    ['quorum', 3, 1, 2],
    ['quorum', 5, 5, 3],
    ['all', 3, 3, 3],
    ['all', 3, 2, 2],
    ['all', 5, 3, 3],
    ['all', 5, 5, 5],
    ['all', 3, 1, 2],
  ] as const)('%s R=%i set=%i -> %i', (policy, r, set, copies) => {
    expect(copiesNeeded(policy, r, set)).toBe(copies);
    expect(copiesNeeded(policy, r, set)).toBeGreaterThanOrEqual(quorumOf(r));
  });
});

describe('WriteQuorum', () => {
  it('needs the heir: other acks alone do not make it', () => {
    const q = new WriteQuorum(['heir', 'x', 'y'], 2);
    expect(q.heir).toBe('heir');
    expect(q.answer('x', true)).toBe('pending');
    expect(q.answer('y', true)).toBe('pending');
    expect(q.answer('heir', true)).toBe('ok');
  });

  it('is ok once the heir and enough others acknowledged', () => {
    const q = new WriteQuorum(['heir', 'x'], 1);
    expect(q.answer('heir', true)).toBe('ok');
  });

  it('fails as soon as the heir refuses, or too many refuse', () => {
    const a = new WriteQuorum(['heir', 'x'], 1);
    expect(a.answer('heir', false, 'not-owner')).toBe('failed');
    expect(a.reason).toBe('heir:not-owner');
    const b = new WriteQuorum(['heir', 'x', 'y'], 2);
    expect(b.answer('x', false)).toBe('pending');
    expect(b.answer('y', false)).toBe('failed');
  });

  it('counts each target once and ignores strangers', () => {
    const q = new WriteQuorum(['heir', 'x'], 2);
    q.answer('heir', true);
    q.answer('heir', true);
    q.answer('zzz', true);
    expect(q.state()).toBe('pending');
    expect(q.answer('x', false)).toBe('failed');
    expect(q.answer('x', true)).toBe('failed');
  });

  it('fails at once when the set cannot hold enough copies; needs nothing when alone', () => {
    expect(new WriteQuorum(['a'], 2).state()).toBe('failed');
    expect(new WriteQuorum([], 0).state()).toBe('ok');
  });
});
