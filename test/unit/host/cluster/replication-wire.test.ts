import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder } from '../../../../host/raft/raft-transport.js';
import { parseReplMessage, RECS_PER_MSG_MAX, replicationKey, SYNC_DEVICES_MAX } from '../../../../host/cluster/replication-wire.js';

const rec = { device: 'dev-1', seq: 4, ts: 1700000000000, hist: 0, r: { t: 21.5 } };

describe('replication messages', () => {
  it.each([
    { t: 'ping', from: 'a', to: 'b', at: 12.5, term: 3, commit: 9 },
    { t: 'pong', from: 'a', to: 'b', at: 12.5, term: 3, commit: 9 },
    { t: 'push', from: 'a', to: 'b', id: 1, ix: 40, recs: [rec] },
    { t: 'ack', from: 'a', to: 'b', id: 1, ix: 41, refused: ['dev-2'], err: '' },
    { t: 'sync', from: 'a', to: 'b', id: 2, devs: [{ d: 'dev-1', r: [[0, 3], [5, 9]], upTo: 9 }] },
    { t: 'rows', from: 'a', to: 'b', id: 2, recs: [rec], more: true },
  ])('accepts a valid $t', (m) => {
    const p = parseReplMessage(JSON.parse(JSON.stringify(m)), 'b');
    expect(p).toEqual({ ok: true, msg: m });
  });

  it.each([
    [null, 'not-object'],
    [[], 'not-object'],
    [{ t: 'ping', from: 'a', to: 'c', at: 1, term: 1, commit: 1 }, 'not-for-us'],
    [{ t: 'ping', from: '', to: 'b', at: 1, term: 1, commit: 1 }, 'bad-from'],
    [{ t: 'ping', from: 'a', to: 'b', at: 'x', term: 1, commit: 1 }, 'bad-ping'],
    [{ t: 'push', from: 'a', to: 'b', id: -1, ix: 1, recs: [] }, 'bad-push'],
    [{ t: 'push', from: 'a', to: 'b', id: 1, ix: 1, recs: [{ ...rec, seq: -1 }] }, 'bad-recs'],
    [{ t: 'push', from: 'a', to: 'b', id: 1, ix: 1, recs: new Array(RECS_PER_MSG_MAX + 1).fill(rec) }, 'bad-recs'],
    [{ t: 'ack', from: 'a', to: 'b', id: 1, ix: 1, refused: [3], err: '' }, 'bad-ack'],
    [{ t: 'sync', from: 'a', to: 'b', id: 1, devs: [{ d: 'x', r: [[3, 1]], upTo: 5 }] }, 'bad-sync'],
    [{ t: 'sync', from: 'a', to: 'b', id: 1, devs: new Array(SYNC_DEVICES_MAX + 1).fill({ d: 'x', r: [], upTo: 1 }) }, 'bad-sync'],
    [{ t: 'rows', from: 'a', to: 'b', id: 1, recs: [], more: 'yes' }, 'bad-rows'],
    [{ t: 'vote', from: 'a', to: 'b' }, 'unknown-type'],
  ])('refuses %j with %s, never throwing', (m, reason) => {
    expect(parseReplMessage(m, 'b')).toEqual({ ok: false, reason });
  });

  it('frames are keyed with a key derived from the cluster secret: Raft frames do not authenticate here', () => {
    const secret = Buffer.alloc(32, 7);
    const got: unknown[] = [];
    const drops: string[] = [];
    const dec = new FrameDecoder(replicationKey(secret), 1 << 20, (m) => got.push(m), (r) => drops.push(r));
    const msg = { t: 'ping', from: 'a', to: 'b', at: 1, term: 1, commit: 1 };
    dec.push(encodeFrame(secret, msg));
    expect(got).toEqual([]);
    expect(drops).toEqual(['bad-mac']);
    const frame = encodeFrame(replicationKey(secret), msg);
    // Any split of the bytes.
    for (let i = 0; i < frame.length; i++) dec.push(frame.subarray(i, i + 1));
    expect(got).toEqual([msg]);
  });
});
