/**
 * What a cluster member advertises, packed into the one `addr` text the replicated state keeps
 * per member (cluster-state.ts: any printable text without white space, at most 255 bytes).
 *
 *   <broker host:port>|<replication host:port>|<raft host:port>[|out]
 *
 * - broker: where devices owned by this member connect (the offer's `broker`);
 * - replication: where peers push readings and ask for anti-entropy ranges;
 * - raft: the member's Raft address, so every node can learn a peer's address from the log;
 * - `out`: the coordinator took the member off the hash ring because its links were down
 *   (it stays a Raft voter and keeps its data; it goes back on the ring when its links are up).
 *
 * Why one text: the state machine treats `addr` as opaque, and a change of it is a membership
 * change that bumps the ring epoch, which is exactly what taking a member off the ring is.
 * A plain `host:port` (an older or hand-made record) parses as a broker address only.
 */
export interface HostPort {
  host: string;
  port: number;
}

export interface MemberAddr {
  broker: HostPort | null;
  repl: HostPort | null;
  raft: HostPort | null;
  /** Off the ring (links down past the coordinator's timeout). */
  out: boolean;
}

/** cluster-state.ts ADDR_BYTES_MAX: the whole packed text must fit. */
export const MEMBER_ADDR_BYTES_MAX = 255;

const OUT = 'out';

export function parseHostPort(text: string): HostPort | null {
  const i = text.lastIndexOf(':');
  if (i <= 0) return null;
  let host = text.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const portText = text.slice(i + 1);
  if (!/^[0-9]{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535 || host.length === 0 || /[\s|]/.test(host)) return null;
  return { host, port };
}

export function formatHostPort(a: HostPort): string {
  return (a.host.indexOf(':') >= 0 ? '[' + a.host + ']' : a.host) + ':' + a.port;
}

/** Never throws: a field that does not parse is null (peer input, through the log). */
export function parseMemberAddr(addr: string): MemberAddr {
  const parts = typeof addr === 'string' ? addr.split('|') : [];
  const out = parts.length > 1 && parts[parts.length - 1] === OUT;
  if (out) parts.pop();
  return {
    broker: parts.length > 0 ? parseHostPort(parts[0]) : null,
    repl: parts.length > 1 ? parseHostPort(parts[1]) : null,
    raft: parts.length > 2 ? parseHostPort(parts[2]) : null,
    out,
  };
}

export function formatMemberAddr(a: { broker: HostPort; repl: HostPort; raft: HostPort; out?: boolean }): string {
  const text = formatHostPort(a.broker) + '|' + formatHostPort(a.repl) + '|' + formatHostPort(a.raft) + (a.out ? '|' + OUT : '');
  if (text.length > MEMBER_ADDR_BYTES_MAX) throw new RangeError('member address longer than ' + MEMBER_ADDR_BYTES_MAX + ' bytes: ' + text);
  return text;
}

/** The same advertisement with the ring flag set or cleared (the coordinator's edit). */
export function withRingFlag(addr: string, out: boolean): string {
  const base = ringBase(addr);
  return out ? base + '|' + OUT : base;
}

/** The advertisement without the ring flag: what the member itself registers. */
export function ringBase(addr: string): string {
  return addr.endsWith('|' + OUT) ? addr.slice(0, addr.length - OUT.length - 1) : addr;
}

export function isOut(addr: string): boolean {
  return addr.endsWith('|' + OUT);
}
