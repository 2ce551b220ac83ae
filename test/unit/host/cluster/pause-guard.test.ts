import { describe, expect, it } from 'vitest';
import { PauseGuard } from '../../../../host/cluster/pause-guard.js';
import { LinkTracker } from '../../../../host/cluster/link-tracker.js';

const voters = ['a', 'b', 'c'];

describe('PauseGuard', () => {
  it('stays clear while the process keeps running', () => {
    const g = new PauseGuard('a', 400, 0);
    for (let t = 50; t <= 5000; t += 50) expect(g.blocked(t, { term: 3, leader: 'b', applied: 9, voters })).toBe('');
    expect(g.trips).toBe(0);
  });

  it('trips on a gap and clears only after a quorum confirmed our term with pings sent after waking', () => {
    const g = new PauseGuard('a', 400, 0);
    const raft = { term: 3, leader: 'b', applied: 9, voters };
    expect(g.observe(100)).toBe(false);
    expect(g.observe(3100)).toBe(true);
    expect(g.longestMs).toBe(3000);
    expect(g.blocked(3110, raft)).toBe('paused:confirming');
    // A pong to a ping sent BEFORE the pause proves nothing.
    g.confirm('b', 90, 3, 9);
    expect(g.blocked(3120, raft)).toBe('paused:confirming');
    g.confirm('b', 3100, 3, 9);
    expect(g.blocked(3130, raft)).toBe('');
    expect(g.tripped()).toBe(false);
  });

  it('waits while a peer reports a newer term, and until we applied what peers committed', () => {
    const g = new PauseGuard('a', 400, 0);
    g.observe(2000);
    g.confirm('b', 2000, 4, 12);
    g.confirm('c', 2000, 3, 12);
    expect(g.blocked(2010, { term: 3, leader: '', applied: 9, voters })).toBe('paused:newer-term');
    // Raft learned term 4 and the new leader; the log is still being applied.
    expect(g.blocked(2020, { term: 4, leader: 'b', applied: 9, voters })).toBe('paused:applying');
    expect(g.blocked(2030, { term: 4, leader: 'b', applied: 12, voters })).toBe('');
  });

  it('needs a known leader', () => {
    const g = new PauseGuard('a', 400, 0);
    g.observe(2000);
    g.confirm('b', 2001, 3, 0);
    expect(g.blocked(2010, { term: 3, leader: '', applied: 0, voters })).toBe('paused:no-leader');
  });

  it('ignores confirmations from non-voters', () => {
    const g = new PauseGuard('a', 400, 0);
    g.observe(2000);
    g.confirm('zz', 2001, 3, 0);
    expect(g.blocked(2010, { term: 3, leader: 'b', applied: 0, voters })).toBe('paused:confirming');
  });
});

describe('LinkTracker', () => {
  it('up while heard within the timeout; down since the last word plus the timeout', () => {
    const l = new LinkTracker(1000, 0);
    expect(l.view('b', 10)).toEqual({ up: false, sinceMs: Infinity, lastHeardMs: -1 });
    l.heard('b', 100);
    l.heard('b', 500);
    expect(l.view('b', 900)).toEqual({ up: true, sinceMs: 100, lastHeardMs: 500 });
    expect(l.view('b', 1600)).toEqual({ up: false, sinceMs: 1500, lastHeardMs: 500 });
    l.heard('b', 4000);
    expect(l.view('b', 4100)).toEqual({ up: true, sinceMs: 4000, lastHeardMs: 4000 });
  });

  it('a peer never heard counts as down from its first ping plus the timeout', () => {
    const l = new LinkTracker(1000, 0);
    l.pinged('c', 300);
    l.pinged('c', 500);
    expect(l.view('c', 900)).toEqual({ up: false, sinceMs: 1300, lastHeardMs: -1 });
  });

  it('reset gives every peer a fresh period (after our own pause)', () => {
    const l = new LinkTracker(1000, 0);
    l.heard('b', 100);
    l.pinged('c', 100);
    l.reset(9000);
    expect(l.view('b', 9500).up).toBe(true);
    expect(l.view('c', 9500)).toEqual({ up: true, sinceMs: 9000, lastHeardMs: 9000 });
    expect(l.view('c', 10500)).toEqual({ up: false, sinceMs: 10000, lastHeardMs: 9000 });
  });
});
