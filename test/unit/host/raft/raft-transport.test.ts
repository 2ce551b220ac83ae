import { connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SeededRng } from '../../../../firmware/core/rng.js';
import { RaftNode } from '../../../../host/raft/raft-core.js';
import { encodeFrame, FrameDecoder, macOf, RaftTransport } from '../../../../host/raft/raft-transport.js';
import { blankMessage, type Message } from '../../../../host/raft/raft-types.js';

const SECRET = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const OTHER = Buffer.from('ffeeddccbbaa99887766554433221100', 'hex');

function msg(from: string, to: string, term = 1): Message {
  const m = blankMessage('hb', from, to, term);
  m.commit = 7;
  return m;
}

function decoder(secret = SECRET, max = 1024 * 1024): { d: FrameDecoder; got: unknown[]; drops: string[] } {
  const got: unknown[] = [];
  const drops: string[] = [];
  const d = new FrameDecoder(secret, max, (m) => got.push(m), (r) => drops.push(r));
  return { d, got, drops };
}

describe('raft frames', () => {
  it('decode the same messages whatever the split of the byte stream', () => {
    const frames = Buffer.concat([encodeFrame(SECRET, msg('a', 'b', 1)), encodeFrame(SECRET, msg('a', 'b', 2)), encodeFrame(SECRET, { x: 'é€' })]);
    const want = [msg('a', 'b', 1), msg('a', 'b', 2), { x: 'é€' }];
    for (let cut = 0; cut <= frames.length; cut++) {
      const { d, got, drops } = decoder();
      d.push(frames.subarray(0, cut));
      d.push(frames.subarray(cut));
      expect(got).toEqual(want);
      expect(drops).toEqual([]);
    }
    const { d, got } = decoder();
    for (let i = 0; i < frames.length; i++) d.push(frames.subarray(i, i + 1));
    expect(got).toEqual(want);
  });

  it('drop bad tags, bad JSON, tiny and oversized frames with a reason, and keep decoding after them', () => {
    const good = encodeFrame(SECRET, msg('a', 'b'));
    const forged = encodeFrame(OTHER, msg('a', 'b', 99));
    const flipped = Buffer.from(good);
    flipped[flipped.length - 2] ^= 1;
    const payload = Buffer.from('{not json', 'utf8');
    const badJson = Buffer.concat([Buffer.from([0, 0, 0, 32 + payload.length]), macOf(SECRET, payload), payload]);
    const tiny = Buffer.from([0, 0, 0, 3, 1, 2, 3]);
    const big = Buffer.alloc(4 + 5000, 0x41);
    big.writeUInt32BE(5000, 0);
    const { d, got, drops } = decoder(SECRET, 4096);
    d.push(Buffer.concat([forged, good, flipped, badJson, tiny, big, good]));
    expect(drops).toEqual(['bad-mac', 'bad-mac', 'bad-json', 'frame-too-small', 'frame-too-big']);
    expect(got).toEqual([msg('a', 'b'), msg('a', 'b')]);
    expect(d.bad).toBe(0); // reset by the good frame at the end
  });

  it('until one frame authenticates, a connection may only send small frames', () => {
    const got: unknown[] = [];
    const drops: string[] = [];
    const d = new FrameDecoder(SECRET, 1 << 20, (m) => got.push(m), (r) => drops.push(r), 200);
    const big = encodeFrame(SECRET, { pad: 'x'.repeat(1000) });
    const small = encodeFrame(SECRET, msg('a', 'b'));
    d.push(Buffer.concat([big, small, big]));
    expect(drops).toEqual(['frame-too-big']);
    expect(got).toEqual([msg('a', 'b'), { pad: 'x'.repeat(1000) }]);
    expect(d.authenticated).toBe(true);
  });

  it('an oversized frame is skipped without buffering it', () => {
    const { d, got, drops } = decoder(SECRET, 1024);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(100 * 1024 * 1024, 0);
    d.push(head);
    for (let i = 0; i < 100; i++) d.push(Buffer.alloc(1024 * 1024));
    expect(d._have).toBe(0);
    d.push(encodeFrame(SECRET, msg('a', 'b')));
    expect(drops).toEqual(['frame-too-big']);
    expect(got.length).toBe(1);
  });
});

describe('raft transport over loopback TCP', () => {
  const open: RaftTransport[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets.length = 0;
    await Promise.all(open.map((t) => t.close()));
    open.length = 0;
  });

  async function freePort(): Promise<number> {
    return new Promise((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const a = s.address();
        const p = typeof a === 'object' && a ? a.port : 0;
        s.close(() => resolve(p));
      });
    });
  }

  async function node(id: string, port: number, peers: Record<string, string>, secret = SECRET) {
    const got: unknown[] = [];
    const drops: string[] = [];
    const t = new RaftTransport({
      id,
      secret,
      port,
      peers,
      onMessage: (m) => got.push(m),
      onDrop: (r) => drops.push(r),
      reconnectMinMs: 10,
      reconnectMaxMs: 50,
      badFramesMax: 3,
    });
    open.push(t);
    const bound = await t.start();
    return { t, got, drops, port: bound };
  }

  async function until(cond: () => boolean, ms = 3000): Promise<void> {
    const t0 = Date.now();
    while (!cond()) {
      if (Date.now() - t0 > ms) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  it('delivers authenticated messages both ways', async () => {
    const pa = await freePort();
    const pb = await freePort();
    const a = await node('a', pa, { b: '127.0.0.1:' + pb });
    const b = await node('b', pb, { a: '127.0.0.1:' + pa });
    for (let i = 1; i <= 5; i++) a.t.send(msg('a', 'b', i));
    b.t.send(msg('b', 'a', 9));
    await until(() => b.got.length === 5 && a.got.length === 1);
    expect(b.got).toEqual([1, 2, 3, 4, 5].map((i) => msg('a', 'b', i)));
    expect(a.got).toEqual([msg('b', 'a', 9)]);
    expect(a.t.stats.sent).toBe(5);
  });

  it('drops frames under another secret and closes a connection that keeps sending them', async () => {
    const pb = await freePort();
    const b = await node('b', pb, {});
    const evil = await node('evil', 0, { b: '127.0.0.1:' + pb }, OTHER);
    for (let i = 0; i < 5; i++) evil.t.send(msg('a', 'b', 1000 + i));
    await until(() => b.drops.filter((r) => r === 'bad-mac').length >= 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(b.got).toEqual([]);
    // Closed after badFramesMax (3): the rest never got decoded.
    expect(b.drops.filter((r) => r === 'bad-mac').length).toBe(3);
    expect(b.t.stats.drops['bad-mac']).toBe(3);
  });

  it('raw junk, bad JSON and absurd lengths from a plain socket reach nothing', async () => {
    const pb = await freePort();
    const b = await node('b', pb, {});
    const s = connect({ host: '127.0.0.1', port: pb });
    sockets.push(s);
    await new Promise((r) => s.once('connect', r));
    const payload = Buffer.from('[[[[', 'utf8');
    s.write(Buffer.concat([Buffer.from([0, 0, 0, 32 + payload.length]), macOf(SECRET, payload), payload]));
    s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    await until(() => b.drops.length >= 2);
    expect(b.drops.slice(0, 2)).toEqual(['bad-json', 'frame-too-big']);
    expect(b.got).toEqual([]);
  });

  it('what arrives is still validated by the core: an authenticated absurd message changes nothing', async () => {
    const pa = await freePort();
    const pb = await freePort();
    const core = new RaftNode({ id: 'b', electionTicks: 10, heartbeatTicks: 1, rng: new SeededRng(3), voters: ['a', 'b'] }, null);
    const reasons: string[] = [];
    const b = new RaftTransport({ id: 'b', secret: SECRET, port: pb, peers: {}, onMessage: (m) => reasons.push(core.step(m)) });
    open.push(b);
    await b.start();
    const a = await node('a', pa, { b: '127.0.0.1:' + pb });
    a.t.send({ ...msg('a', 'b'), term: 2 ** 53 });
    a.t.send({ ...msg('a', 'b'), from: 'nobody' });
    await until(() => reasons.length === 2);
    expect(reasons).toEqual(['absurd-number', 'unknown-sender']);
    expect(core.term).toBe(0);
  });

  it('queues while a peer is down and delivers after it comes back (reconnect)', async () => {
    const pa = await freePort();
    const pb = await freePort();
    const a = await node('a', pa, { b: '127.0.0.1:' + pb });
    a.t.send(msg('a', 'b', 1));
    await new Promise((r) => setTimeout(r, 80)); // a few failed dials
    expect(a.drops).toContain('connect-error');
    const b = await node('b', pb, {});
    a.t.send(msg('a', 'b', 2));
    await until(() => b.got.length === 2, 5000);
    expect(b.got).toEqual([msg('a', 'b', 1), msg('a', 'b', 2)]);
    // b restarts: a's socket breaks, it redials and carries on.
    await b.t.close();
    const b2 = await node('b', pb, {});
    const t0 = Date.now();
    while (b2.got.length === 0 && Date.now() - t0 < 5000) {
      a.t.send(msg('a', 'b', 3));
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(b2.got.length).toBeGreaterThan(0);
  });

  it('counts messages to unknown peers and bounds the queue of an unreachable one', async () => {
    const a = await node('a', 0, { b: '127.0.0.1:1' });
    a.t.send(msg('a', 'zz'));
    expect(a.t.stats.drops['unknown-peer']).toBe(1);
    for (let i = 0; i < 300; i++) a.t.send(msg('a', 'b', i + 1));
    expect(a.t.stats.drops['queue-full']).toBe(300 - 256);
    expect(() => new RaftTransport({ id: 'x', secret: Buffer.alloc(8), port: 0, peers: {}, onMessage: () => undefined })).toThrow(/16 bytes/);
  });
});
