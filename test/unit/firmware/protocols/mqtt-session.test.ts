// MQTT session: trace scripts (every command's output packets, handler events, state, deadline
// and close reason), keepalive and watchdog timing as properties, window bound, DUP and
// re-publish on reconnect, packet id wrap, protocol errors, any split of the input; on the
// source module and the minified bundle. Packets are built and read by mqtt-packet.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bundleMissing, decode, describePacket, gen, SessionMod, sessionTargets } from './protocols-fixtures.js';

it('the minified bundle loads with the protocol namespaces (dist/firmware/lib.js, built by npm run build)', () => {
  expect(bundleMissing).toBe('');
});

const ID = 'dev-1';
const OPTS = {
  clientId: ID,
  keepaliveMs: 10000,
  will: { topic: 'espfleet/dev-1/status', payload: 'offline', qos: 1 as const, retain: true },
  username: 'dev-1',
  password: 'secret',
  inflightMax: 3,
};

class Rig {
  s: any;
  ev: string[] = [];
  constructor(
    public S: SessionMod,
    opts: any = OPTS,
  ) {
    const ev = this.ev;
    this.s = new S.MqttSession(opts, {
      onUp: (sp: boolean) => ev.push(`up(${sp ? 1 : 0})`),
      onAck: (id: number, tag: number) => ev.push(`ack(${id},${tag})`),
      onMessage: (t: string, p: string, q: number, r: boolean) => ev.push(`msg(${t} ${p} q${q}${r ? ' retain' : ''})`),
    });
  }
  out(): string[] {
    return decode(this.s.takeOutput()).map(describePacket);
  }
}

/**
 * Runs a script. Lines: `T connect` | `T recv <packet>` | `T tick` | `T closed` | `pub <topic>
 * <qos> <retain> <tag> <payload>` | `sub <topic> <qos>` | `disconnect`. Packets: `connack <sp>
 * <rc>`, `puback <id>`, `publish <topic> <qos> <id> <payload> [dup]`, `suback <id> <codes,>`,
 * `pingresp`, `raw <hex>`. Each line prints:
 *   <line> => [result] out[…] ev[…] <state> dl=<deadline> [close=<reason>]
 */
function trace(S: SessionMod, script: string, opts: any = OPTS): string {
  const rig = new Rig(S, opts);
  const s = rig.s;
  const lines: string[] = [];
  for (const raw of script.trim().split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const w = line.split(/\s+/);
    let res = '';
    rig.ev.length = 0;
    const t = Number(w[0]);
    if (w[1] === 'connect') s.connected(t);
    else if (w[1] === 'tick') s.tick(t);
    else if (w[1] === 'closed') res = s.closed(t);
    else if (w[1] === 'recv') {
      const k = w[2];
      let bytes = '';
      if (k === 'connack') bytes = gen({ cmd: 'connack', sessionPresent: w[3] === '1', returnCode: Number(w[4]) });
      else if (k === 'puback') bytes = gen({ cmd: 'puback', messageId: Number(w[3]) });
      else if (k === 'publish') bytes = gen({ cmd: 'publish', topic: w[3], qos: Number(w[4]), messageId: Number(w[5]), payload: w[6], dup: w[7] === 'dup', retain: false });
      else if (k === 'suback') bytes = gen({ cmd: 'suback', messageId: Number(w[3]), granted: w[4].split(',').map(Number) });
      else if (k === 'pingresp') bytes = gen({ cmd: 'pingresp' });
      else if (k === 'raw') bytes = Buffer.from(w[3], 'hex').toString('latin1');
      else throw new Error('unknown packet ' + k);
      s.data(bytes, t);
    } else if (w[0] === 'pub') res = String(s.publish(w[1], w.slice(5).join(' '), Number(w[2]), w[3] === '1', Number(w[4])));
    else if (w[0] === 'sub') s.subscribe(w[1], Number(w[2]));
    else if (w[0] === 'disconnect') s.disconnect();
    else throw new Error('unknown command ' + line);
    const out = rig.out();
    lines.push(
      `${line} =>${res ? ' ' + res : ''} out[${out.join(' ')}] ev[${rig.ev.join(' ')}] ${S.SESSION_STATE_NAMES[s.state]} dl=${s.deadline()}` +
        (s.closeReason && s.state === S.SESSION_CLOSING ? ` close=${s.closeReason}` : ''),
    );
  }
  return lines.join('\n');
}

const expectTrace = (S: SessionMod, script: string, expected: string, opts?: any) =>
  expect(trace(S, script, opts)).toBe(
    expected
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .join('\n'),
  );

describe.each(sessionTargets)('mqtt session (%s)', (_name, S) => {
  it('CONNECT carries the will (retained, QoS 1), clean session off, keepalive and credentials; bytes as mqtt-packet builds them', () => {
    const rig = new Rig(S);
    rig.s.connected(0);
    const bytes = rig.s.takeOutput();
    expect(decode(bytes).map(describePacket)).toEqual(['CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)']);
    const ref = gen({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: ID,
      clean: false,
      keepalive: 10,
      will: { topic: 'espfleet/dev-1/status', payload: Buffer.from('offline'), qos: 1, retain: true },
      username: 'dev-1',
      password: Buffer.from('secret'),
    });
    expect(bytes).toBe(ref);
  });

  it('session up: subscriptions, publish, ack, keepalive ping, pong, silence', () => {
    expectTrace(
      S,
      `
      sub espfleet/dev-1/rpc/req 1
      pub espfleet/dev-1/telemetry 1 0 7 early
      0 connect
      5 recv connack 0 0
      6 recv suback 2 1
      pub espfleet/dev-1/telemetry 1 0 8 a
      pub espfleet/dev-1/status 1 1 -1 online
      pub espfleet/dev-1/health 0 0 -1 h
      20 recv puback 1
      21 recv puback 3
      22 recv puback 4
      23 recv puback 3
      10021 tick
      10022 tick
      10100 recv pingresp
      20100 tick
      25099 tick
      25100 tick
      25101 closed
    `,
      `
      sub espfleet/dev-1/rpc/req 1 => out[] ev[] down dl=-1
      pub espfleet/dev-1/telemetry 1 0 7 early => 1 out[] ev[] down dl=-1
      0 connect => out[CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)] ev[] connecting dl=10000
      5 recv connack 0 0 => out[SUBSCRIBE(2 espfleet/dev-1/rpc/req:1) PUBLISH(1 q1 espfleet/dev-1/telemetry early)] ev[up(0)] up dl=10005
      6 recv suback 2 1 => out[] ev[] up dl=10005
      pub espfleet/dev-1/telemetry 1 0 8 a => 3 out[PUBLISH(3 q1 espfleet/dev-1/telemetry a)] ev[] up dl=10006
      pub espfleet/dev-1/status 1 1 -1 online => 4 out[PUBLISH(4 q1 retain espfleet/dev-1/status online)] ev[] up dl=10006
      pub espfleet/dev-1/health 0 0 -1 h => 0 out[PUBLISH(- q0 espfleet/dev-1/health h)] ev[] up dl=10006
      20 recv puback 1 => out[] ev[ack(1,7)] up dl=10006
      21 recv puback 3 => out[] ev[ack(3,8)] up dl=10006
      22 recv puback 4 => out[] ev[ack(4,-1)] up dl=10006
      23 recv puback 3 => out[] ev[] up dl=10006
      10021 tick => out[PINGREQ] ev[] up dl=15023
      10022 tick => out[] ev[] up dl=15023
      10100 recv pingresp => out[] ev[] up dl=20021
      20100 tick => out[PINGREQ] ev[] up dl=25100
      25099 tick => out[] ev[] up dl=25100
      25100 tick => out[] ev[] closing dl=-1 close=silent: 15000 ms
      25101 closed => silent: 15000 ms out[] ev[] down dl=-1
    `,
    );
  });

  it('reconnect with the session kept: unacked messages go again with DUP and their ids, in order; new ones without DUP', () => {
    expectTrace(
      S,
      `
      0 connect
      1 recv connack 0 0
      pub t 1 0 10 m1
      pub t 1 0 11 m2
      pub t 1 0 12 m3
      pub t 1 0 13 m4
      2 recv puback 2
      3 closed
      pub t 1 0 13 m4
      4 connect
      5 recv connack 1 0
      6 recv puback 1
      7 recv puback 3
      8 recv puback 4
    `,
      `
      0 connect => out[CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)] ev[] connecting dl=10000
      1 recv connack 0 0 => out[] ev[up(0)] up dl=10000
      pub t 1 0 10 m1 => 1 out[PUBLISH(1 q1 t m1)] ev[] up dl=10001
      pub t 1 0 11 m2 => 2 out[PUBLISH(2 q1 t m2)] ev[] up dl=10001
      pub t 1 0 12 m3 => 3 out[PUBLISH(3 q1 t m3)] ev[] up dl=10001
      pub t 1 0 13 m4 => -1 out[] ev[] up dl=10001
      2 recv puback 2 => out[] ev[ack(2,11)] up dl=10001
      3 closed => closed: connection lost out[] ev[] down dl=-1
      pub t 1 0 13 m4 => 4 out[] ev[] down dl=-1
      4 connect => out[CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)] ev[] connecting dl=10004
      5 recv connack 1 0 => out[PUBLISH(1 q1 dup t m1) PUBLISH(3 q1 dup t m3) PUBLISH(4 q1 t m4)] ev[up(1)] up dl=10005
      6 recv puback 1 => out[] ev[ack(1,10)] up dl=10005
      7 recv puback 3 => out[] ev[ack(3,12)] up dl=10005
      8 recv puback 4 => out[] ev[ack(4,13)] up dl=10005
    `,
    );
  });

  it('reconnect without a session: subscriptions restored, unacked messages re-published as new (no DUP)', () => {
    expectTrace(
      S,
      `
      sub a/b 1
      sub c/d 0
      0 connect
      1 recv connack 0 0
      2 recv suback 1 1,0
      pub t 1 0 5 x
      pub t 1 0 6 y
      3 closed
      4 connect
      5 recv connack 0 0
    `,
      `
      sub a/b 1 => out[] ev[] down dl=-1
      sub c/d 0 => out[] ev[] down dl=-1
      0 connect => out[CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)] ev[] connecting dl=10000
      1 recv connack 0 0 => out[SUBSCRIBE(1 a/b:1,c/d:0)] ev[up(0)] up dl=10001
      2 recv suback 1 1,0 => out[] ev[] up dl=10001
      pub t 1 0 5 x => 2 out[PUBLISH(2 q1 t x)] ev[] up dl=10002
      pub t 1 0 6 y => 3 out[PUBLISH(3 q1 t y)] ev[] up dl=10002
      3 closed => closed: connection lost out[] ev[] down dl=-1
      4 connect => out[CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)] ev[] connecting dl=10004
      5 recv connack 0 0 => out[SUBSCRIBE(4 a/b:1,c/d:0) PUBLISH(2 q1 t x) PUBLISH(3 q1 t y)] ev[up(0)] up dl=10005
    `,
    );
  });

  it('a kept session does not re-subscribe once a SUBACK granted everything in this boot', () => {
    const r = new Rig(S);
    r.s.subscribe('a/b', 1);
    r.s.connected(0);
    r.s.data(gen({ cmd: 'connack', sessionPresent: true, returnCode: 0 }), 1);
    expect(r.out()).toEqual(['CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)', 'SUBSCRIBE(1 a/b:1)']);
    r.s.data(gen({ cmd: 'suback', messageId: 1, granted: [1] }), 2);
    r.s.closed(3);
    r.s.connected(4);
    r.s.data(gen({ cmd: 'connack', sessionPresent: true, returnCode: 0 }), 5);
    expect(r.out()).toEqual(['CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)']);
    // A refused filter makes the next session-present CONNACK subscribe again.
    r.s.subscribe('c', 1);
    expect(r.out()).toEqual(['SUBSCRIBE(2 a/b:1,c:1)']);
    r.s.data(gen({ cmd: 'suback', messageId: 2, granted: [1, 128] }), 6);
    r.s.closed(7);
    r.s.connected(8);
    r.s.data(gen({ cmd: 'connack', sessionPresent: true, returnCode: 0 }), 9);
    expect(r.out()).toEqual(['CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)', 'SUBSCRIBE(3 a/b:1,c:1)']);
    // A SUBACK for another id changes nothing; the right one, all granted, ends the re-subscribing.
    r.s.data(gen({ cmd: 'suback', messageId: 2, granted: [1, 1] }) + gen({ cmd: 'suback', messageId: 3, granted: [1, 0] }), 10);
    r.s.closed(11);
    r.s.connected(12);
    r.s.data(gen({ cmd: 'connack', sessionPresent: true, returnCode: 0 }), 13);
    expect(r.out()).toEqual(['CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)']);
  });

  it('a subscription added while up and dropped before its SUBACK is sent again even with a kept session', () => {
    const r = new Rig(S);
    r.s.subscribe('a', 1);
    r.s.connected(0);
    r.s.data(gen({ cmd: 'connack', returnCode: 0 }) + gen({ cmd: 'suback', messageId: 1, granted: [1] }), 1);
    r.s.takeOutput();
    r.s.subscribe('b', 0);
    expect(r.out()).toEqual(['SUBSCRIBE(2 a:1,b:0)']);
    r.s.closed(2);
    r.s.connected(3);
    r.s.data(gen({ cmd: 'connack', sessionPresent: true, returnCode: 0 }), 4);
    expect(r.out()).toEqual(['CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)', 'SUBSCRIBE(3 a:1,b:0)']);
  });

  it('CONNACK timeout, and every refusal code', () => {
    expectTrace(
      S,
      `
      0 connect
      9999 tick
      10000 tick
      10001 closed
    `,
      `
      0 connect => out[CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)] ev[] connecting dl=10000
      9999 tick => out[] ev[] connecting dl=10000
      10000 tick => out[] ev[] closing dl=-1 close=timeout: 10000 ms
      10001 closed => timeout: 10000 ms out[] ev[] down dl=-1
    `,
    );
    // §3.2.2.3 codes 1-5, a reserved one, and one with session present set [MQTT-3.2.2-4].
    for (const [sp, rc] of [[0, 1], [0, 2], [0, 3], [0, 4], [0, 5], [0, 6], [0, 255], [1, 5]]) {
      const r = new Rig(S);
      r.s.connected(0);
      r.s.takeOutput();
      r.s.data(String.fromCharCode(0x20, 2, sp, rc), 1);
      expect([r.s.state, r.s.closeReason, r.ev.length, r.s.takeOutput()]).toEqual([S.SESSION_CLOSING, `refused: rc ${rc}`, 0, '']);
      expect(r.s.closed(2)).toBe(`refused: rc ${rc}`);
      expect([r.s.state, r.s.closeReason]).toEqual([S.SESSION_DOWN, '']);
    }
  });

  it('inbound PUBLISH: QoS 1 acknowledged and delivered, QoS 0 delivered, QoS 2 is a protocol error', () => {
    expectTrace(
      S,
      `
      0 connect
      1 recv connack 1 0
      2 recv publish espfleet/dev-1/rpc/req 1 77 {"id":"a"}
      3 recv publish espfleet/dev-1/rpc/req 1 77 {"id":"a"} dup
      4 recv publish x 0 0 zero
      5 recv publish x 2 9 two
    `,
      `
      0 connect => out[CONNECT(dev-1 ka=10 clean=0 will=espfleet/dev-1/status:offline:q1r user=dev-1 pass)] ev[] connecting dl=10000
      1 recv connack 1 0 => out[] ev[up(1)] up dl=10000
      2 recv publish espfleet/dev-1/rpc/req 1 77 {"id":"a"} => out[PUBACK(77)] ev[msg(espfleet/dev-1/rpc/req {"id":"a"} q1)] up dl=10002
      3 recv publish espfleet/dev-1/rpc/req 1 77 {"id":"a"} dup => out[PUBACK(77)] ev[msg(espfleet/dev-1/rpc/req {"id":"a"} q1)] up dl=10003
      4 recv publish x 0 0 zero => out[] ev[msg(x zero q0)] up dl=10003
      5 recv publish x 2 9 two => out[] ev[] closing dl=-1 close=protocol: type 3 QoS 2
    `,
    );
  });

  it('protocol errors close with a reason, never throw: before CONNACK, a second CONNACK, QoS 2 flows, a broken stream', () => {
    const cases: Array<[string, string]> = [
      [gen({ cmd: 'puback', messageId: 1 }), 'protocol: type 4'],
      [gen({ cmd: 'publish', topic: 'a', qos: 0, payload: 'x' }), 'protocol: type 3'],
      [gen({ cmd: 'pingresp' }), 'protocol: type 13'],
      [gen({ cmd: 'connack', returnCode: 0 }) + gen({ cmd: 'connack', returnCode: 0 }), 'protocol: type 2'],
      [gen({ cmd: 'connack', returnCode: 0 }) + gen({ cmd: 'pubrec', messageId: 1 }), 'protocol: type 5'],
      [gen({ cmd: 'connack', returnCode: 0 }) + gen({ cmd: 'pubrel', messageId: 1 }), 'protocol: type 6'],
      [gen({ cmd: 'connack', returnCode: 0 }) + gen({ cmd: 'pubcomp', messageId: 1 }), 'protocol: type 7'],
      [gen({ cmd: 'connack', returnCode: 0 }) + String.fromCharCode(0x10, 0), 'protocol: type 1'],
      [gen({ cmd: 'connack', returnCode: 0 }) + String.fromCharCode(0x90, 0xff, 0xff, 0xff, 0x7f), 'protocol: size 268435455/9'],
      [gen({ cmd: 'connack', returnCode: 0 }) + String.fromCharCode(0x30, 5, 0, 3, 0x61, 0x2f, 0x23), 'protocol: topic'],
    ];
    for (const [bytes, why] of cases) {
      const r = new Rig(S);
      r.s.publish('t', 'p', 1, false, 1);
      r.s.connected(0);
      expect(() => r.s.data(bytes, 1)).not.toThrow();
      expect([r.s.state, r.s.closeReason, r.s.takeOutput()]).toEqual([S.SESSION_CLOSING, why, '']);
      // Nothing more is taken from the broken connection: the message stays in flight.
      r.ev.length = 0;
      r.s.data(gen({ cmd: 'puback', messageId: 1 }), 2);
      expect(r.ev).toEqual([]);
      expect(r.s.closed(3)).toBe(why);
      r.s.connected(4);
      r.s.data(gen({ cmd: 'connack', sessionPresent: true, returnCode: 0 }), 5);
      // (With DUP when it had gone out, i.e. when the error came after CONNACK.)
      expect(r.out().slice(1).map((x) => x.replace(' dup', ''))).toEqual(['PUBLISH(1 q1 t p)']);
    }
  });

  it('the in-flight window is bounded by inflightMax and frees on PUBACK; stray acks are ignored', () => {
    const r = new Rig(S, { ...OPTS, inflightMax: 2 });
    expect(r.s.canPublish()).toBe(false); // down
    r.s.connected(0);
    r.s.data(gen({ cmd: 'connack', returnCode: 0 }), 1);
    expect(r.s.canPublish()).toBe(true);
    expect([r.s.publish('t', 'a', 1, false, 1), r.s.publish('t', 'b', 1, false, 2), r.s.publish('t', 'c', 1, false, 3)]).toEqual([1, 2, S.PUBLISH_FULL]);
    expect(r.s.canPublish()).toBe(false);
    r.ev.length = 0;
    r.s.data(gen({ cmd: 'puback', messageId: 9 }), 2);
    expect([r.ev, r.s.canPublish(), r.s.state]).toEqual([[], false, S.SESSION_UP]);
    r.s.data(gen({ cmd: 'puback', messageId: 2 }) + gen({ cmd: 'puback', messageId: 2 }), 3);
    expect([r.ev, r.s.canPublish(), r.s.publish('t', 'c', 1, false, 3)]).toEqual([['ack(2,2)'], true, 3]);
    // QoS 0 while down is dropped, not queued.
    r.s.closed(4);
    expect(r.s.publish('t', 'z', 0, false, -1)).toBe(S.PUBLISH_DOWN);
  });

  it('packet ids run 1..65535 and wrap, never 0, never one in flight or awaiting its SUBACK', () => {
    const r = new Rig(S, { ...OPTS, inflightMax: 4 });
    r.s.connected(0);
    r.s.data(gen({ cmd: 'connack', returnCode: 0 }), 1);
    r.s.takeOutput();
    const held = r.s.publish('t', 'held', 1, false, -1); // id 1, never acked
    expect(held).toBe(1);
    const seen: number[] = [];
    let prev = 1;
    for (let i = 0; i < 65534 * 2 + 10; i++) {
      const id = r.s.publish('t', 'p', 1, false, i);
      expect(id).not.toBe(1);
      expect(id).toBe(prev === 65535 ? 2 : prev + 1);
      prev = id;
      if (i < 3 || id > 65533 || id < 4) seen.push(id);
      r.s.data(String.fromCharCode(0x40, 2, id >> 8, id & 255), 2);
    }
    expect(seen.slice(0, 7)).toEqual([2, 3, 4, 65534, 65535, 2, 3]);
    expect(seen).toContain(65535);
    expect(seen).not.toContain(0);
    // A SUBSCRIBE awaiting its SUBACK holds its id too.
    r.s.subscribe('x', 1);
    const sub = decode(r.s.takeOutput())[0].messageId;
    const next = r.s.publish('t', 'p', 1, false, 0);
    expect(next).not.toBe(sub);
    expect(next).not.toBe(1);
    // The held message was in the window all along.
    r.ev.length = 0;
    r.s.data(String.fromCharCode(0x40, 2, 0, 1), 3);
    expect(r.ev).toEqual(['ack(1,-1)']);
  });

  it('a handler may publish from inside onAck and onUp (state is updated before it is called)', () => {
    const S2 = S;
    const events: string[] = [];
    let s: any;
    s = new S2.MqttSession({ clientId: 'x', keepaliveMs: 0, inflightMax: 1 }, {
      onUp: () => events.push('up:' + s.publish('st', 'online', 1, true, -1)),
      onAck: (id: number) => events.push('ack' + id + ':' + s.publish('t', 'n', 1, false, 1)),
      onMessage: () => {},
    });
    s.connected(0);
    s.data(gen({ cmd: 'connack', returnCode: 0 }) + gen({ cmd: 'puback', messageId: 1 }), 1);
    expect(events).toEqual(['up:1', 'ack1:2']);
    expect(decode(s.takeOutput()).map(describePacket)).toEqual(['CONNECT(x ka=0 clean=0)', 'PUBLISH(1 q1 retain st online)', 'PUBLISH(2 q1 t n)']);
    expect(s.deadline()).toBe(-1); // keepalive 0: no ping, no watchdog
  });

  it('any split of the input gives the same events and output', () => {
    const stream =
      gen({ cmd: 'connack', sessionPresent: false, returnCode: 0 }) +
      gen({ cmd: 'suback', messageId: 2, granted: [1] }) +
      gen({ cmd: 'puback', messageId: 1 }) +
      gen({ cmd: 'publish', topic: 'espfleet/dev-1/rpc/req', qos: 1, messageId: 300, payload: '{"id":"1","m":"info"}' }) +
      gen({ cmd: 'pingresp' }) +
      gen({ cmd: 'publish', topic: 'a', qos: 0, payload: 'z' });
    const run = (cuts: number[]) => {
      const r = new Rig(S);
      r.s.subscribe('espfleet/dev-1/rpc/req', 1);
      r.s.publish('t', 'p', 1, false, 42);
      r.s.connected(0);
      r.s.takeOutput();
      let at = 0;
      let out = '';
      for (const c of [...cuts, stream.length]) {
        r.s.data(stream.slice(at, c), 1);
        out += r.s.takeOutput();
        at = c;
      }
      return [r.ev.join(' '), decode(out).map(describePacket).join(' '), r.s.state];
    };
    const whole = run([]);
    expect(whole).toEqual(['up(0) ack(1,42) msg(espfleet/dev-1/rpc/req {"id":"1","m":"info"} q1) msg(a z q0)', 'SUBSCRIBE(2 espfleet/dev-1/rpc/req:1) PUBLISH(1 q1 t p) PUBACK(300)', S.SESSION_UP]);
    for (let i = 0; i <= stream.length; i++) expect(run([i])).toEqual(whole);
    for (let i = 1; i < stream.length; i += 3) expect(run([i, Math.min(stream.length, i + 2)])).toEqual(whole);
  });

  it('disconnect() sends DISCONNECT and asks for the close; data after a close is ignored', () => {
    const r = new Rig(S);
    r.s.connected(0);
    r.s.data(gen({ cmd: 'connack', returnCode: 0 }), 1);
    r.s.takeOutput();
    r.s.disconnect();
    expect([r.out(), r.s.state, r.s.closeReason]).toEqual([['DISCONNECT'], S.SESSION_CLOSING, 'disconnect']);
    r.s.data(gen({ cmd: 'publish', topic: 'a', qos: 1, messageId: 5, payload: 'x' }), 2);
    expect([r.ev, r.s.takeOutput()]).toEqual([['up(0)'], '']);
    expect(r.s.closed(3)).toBe('disconnect');
    // The next connection starts clean: no reason left over.
    r.s.connected(4);
    expect(r.s.closeReason).toBe('');
  });

  it('property: a broker that answers within K/2 is never called silent; a silent one is caught within 1.5 x keepalive', () => {
    const K = 10000;
    fc.assert(
      fc.property(
        fc.array(fc.record({ gap: fc.integer({ min: 1, max: 3 * K }), kind: fc.constantFrom('pub1', 'pub0', 'idle') }), { maxLength: 30 }),
        fc.integer({ min: 0, max: K / 2 - 1 }),
        fc.integer({ min: 0, max: 3 * K }),
        (steps, rtt, quietAfter) => {
          const r = new Rig(S, { clientId: 'p', keepaliveMs: K, inflightMax: 50 });
          const s = r.s;
          let now = 0;
          s.connected(now);
          s.takeOutput();
          s.data(gen({ cmd: 'connack', returnCode: 0 }), now);
          // Replies the broker owes, as [due time, bytes].
          let due: Array<[number, string]> = [];
          let lastRx = now;
          let silent = false;
          const serve = (until: number) => {
            // Advance time to `until`, running ticks at every deadline and delivering replies.
            for (let guard = 0; guard < 10000; guard++) {
              const dl = s.deadline();
              const next = Math.min(dl < 0 ? Infinity : dl, due.length ? due[0][0] : Infinity);
              if (next > until) break;
              now = next;
              if (due.length && due[0][0] === now) {
                const [, b] = due.shift()!;
                s.data(b, now);
                lastRx = now;
              } else s.tick(now);
              const out = s.takeOutput();
              if (s.state === S.SESSION_CLOSING) return;
              if (!silent) {
                for (const p of decode(out)) {
                  if (p.cmd === 'pingreq') due.push([now + rtt, gen({ cmd: 'pingresp' })]);
                  if (p.cmd === 'publish' && p.qos === 1) due.push([now + rtt, gen({ cmd: 'puback', messageId: p.messageId })]);
                }
                due.sort((a, b) => a[0] - b[0]);
              }
            }
            now = until;
          };
          for (const st of steps) {
            serve(now + st.gap);
            if (s.state !== S.SESSION_UP) break;
            if (st.kind === 'pub1' && s.canPublish()) s.publish('t', 'x', 1, false, 0);
            if (st.kind === 'pub0') s.publish('t', 'x', 0, false, 0);
            for (const p of decode(s.takeOutput())) if (p.qos === 1) due.push([now + rtt, gen({ cmd: 'puback', messageId: p.messageId })]);
            due.sort((a, b) => a[0] - b[0]);
          }
          // Healthy so far.
          expect(s.state).toBe(S.SESSION_UP);
          serve(now + quietAfter);
          expect(s.state).toBe(S.SESSION_UP);
          // Now the broker goes silent: replies already in flight are lost too.
          silent = true;
          due = [];
          const quietFrom = lastRx;
          serve(now + 3 * K);
          expect(s.state).toBe(S.SESSION_CLOSING);
          expect(s.closeReason).toMatch(/^silent: /);
          expect(now - quietFrom).toBeLessThanOrEqual(1.5 * K);
        },
      ),
      { numRuns: 150 },
    );
  });
});
