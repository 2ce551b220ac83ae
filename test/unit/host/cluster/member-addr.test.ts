import { describe, expect, it } from 'vitest';
import { formatMemberAddr, isOut, parseHostPort, parseMemberAddr, ringBase, withRingFlag } from '../../../../host/cluster/member-addr.js';

describe('member addresses', () => {
  const text = formatMemberAddr({ broker: { host: '10.0.0.5', port: 1883 }, repl: { host: '10.0.0.5', port: 7101 }, raft: { host: '10.0.0.5', port: 7100 } });

  it('round-trips broker, replication and raft addresses and the ring flag', () => {
    expect(text).toBe('10.0.0.5:1883|10.0.0.5:7101|10.0.0.5:7100');
    expect(parseMemberAddr(text)).toEqual({ broker: { host: '10.0.0.5', port: 1883 }, repl: { host: '10.0.0.5', port: 7101 }, raft: { host: '10.0.0.5', port: 7100 }, out: false });
    const out = withRingFlag(text, true);
    expect(out).toBe(text + '|out');
    expect(isOut(out)).toBe(true);
    expect(parseMemberAddr(out).out).toBe(true);
    expect(ringBase(out)).toBe(text);
    expect(withRingFlag(out, false)).toBe(text);
    expect(withRingFlag(out, true)).toBe(out);
  });

  it('IPv6 hosts are bracketed and parsed back', () => {
    const t = formatMemberAddr({ broker: { host: '::1', port: 1 }, repl: { host: '::1', port: 2 }, raft: { host: '::1', port: 3 } });
    expect(t).toBe('[::1]:1|[::1]:2|[::1]:3');
    expect(parseMemberAddr(t).raft).toEqual({ host: '::1', port: 3 });
  });

  it('a plain host:port (an older record) is a broker address only', () => {
    expect(parseMemberAddr('n1:7000')).toEqual({ broker: { host: 'n1', port: 7000 }, repl: null, raft: null, out: false });
  });

  it('peer input never throws: bad fields parse as null', () => {
    for (const bad of ['', 'x', ':1', 'h:0', 'h:65536', 'h:12ab', 'a:1|b|c:99999', '|||', 'out']) {
      const p = parseMemberAddr(bad);
      expect(p.broker === null || typeof p.broker.port === 'number').toBe(true);
    }
    expect(parseMemberAddr('a:1|b|c:99999').repl).toBeNull();
    expect(parseMemberAddr('a:1|b|c:99999').raft).toBeNull();
    expect(parseHostPort('h:0')).toBeNull();
    expect(parseHostPort('h :1')).toBeNull();
  });

  it('refuses to build an advertisement longer than the state machine keeps', () => {
    const h = 'h'.repeat(100);
    expect(() => formatMemberAddr({ broker: { host: h, port: 1 }, repl: { host: h, port: 2 }, raft: { host: h, port: 3 } })).toThrow(RangeError);
  });
});
