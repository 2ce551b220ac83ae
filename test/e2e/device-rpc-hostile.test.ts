/**
 * Hostile and malformed RPC requests end to end (issue #5): a real companion (embedded broker)
 * and emulated boards running the shipped bundle. Requests are published straight on the bus to
 * `espfleet/<id>/rpc/req` through the companion's own client (the broker's ACL keeps anonymous
 * local clients out of `espfleet/`), QoS 1 as the companion's RPC client sends them; replies are
 * read on `espfleet/<id>/rpc/res`.
 *
 * Every request in the table gets an error reply with the expected code and the request's id
 * where it had a usable one, or no reply where the protocol says so (a deadline already past).
 * Afterwards the device is as it was: same config, same session (no reconnect), no reboot, its
 * Storage config and boot code byte for byte, its outbox intact, no new global, no prototype
 * touched, nothing printed on the console, no eval / Function call, JsVars within a small
 * tolerance; the counters moved by exactly the requests that reached a handler (rpc.served) or
 * were refused before one (rpc.refused). A retried request (same id) is answered twice and
 * executed once. (The protocol's other no-reply case, a duplicate still in flight, cannot arise
 * on the device: handlers run synchronously, so a second copy always finds the first answered.)
 * A request over the device's MQTT packet bound (2 KB) is an expected failure: see the test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmulatedBoard } from '../../boards/emulator/board.js';
import { startFleetWithCompanion, waitFor, type Fleet } from '../helpers/fleet.js';

const BOARDS = 4;
/**
 * JsVars a board may differ by between two moments with its answer cache full: telemetry in
 * flight (up to 8 QoS 1 messages of ~60 bytes, ~6 vars each) comes and goes. Measured: within 10.
 */
const VARS_TOLERANCE = 48;

let fleet: Fleet;
/** Boards the table runs on; the last board is kept for the 2 KB request (see below). */
let table3: string[];
let victim: string;
const replies = new Map<string, string[]>();

interface Row {
  name: string;
  payload: string | Buffer;
  /** Expected error code, or null for "no reply at all". */
  code: string | null;
  /** The id the reply must carry (default: none checked). */
  id?: string;
  /** Whether the request reached a handler (counted in rpc.served) or was refused before (rpc.refused). */
  ran?: boolean;
}

const j = (o: unknown) => JSON.stringify(o);
const CODE_ERASE = "require('Storage').erase('espfleet.json')";
const CODE_REBOOT = 'process.reboot()';

function nested(levels: number, open: string, close: string, inner: string): string {
  return open.repeat(levels) + inner + close.repeat(levels);
}

/** The hostile table: the same for every board (ids are per board so retries do not collide). */
function table(): Row[] {
  const far = () => Date.now() + 60_000;
  const rows: Row[] = [
    // unknown methods, including names that would be code or reach prototypes
    { name: 'unknown method', payload: j({ id: 'u1', m: 'nosuch', p: {} }), code: 'unknown_method', id: 'u1', ran: true },
    { name: 'method that is code (erase)', payload: j({ id: 'u2', m: CODE_ERASE, p: {} }), code: 'unknown_method', id: 'u2', ran: true },
    { name: 'method that is code (reboot)', payload: j({ id: 'u3', m: CODE_REBOOT, p: {} }), code: 'unknown_method', id: 'u3', ran: true },
    { name: 'method eval', payload: j({ id: 'u4', m: 'eval', p: { code: CODE_REBOOT } }), code: 'unknown_method', id: 'u4', ran: true },
    { name: 'method Function', payload: j({ id: 'u5', m: 'Function', p: {} }), code: 'unknown_method', id: 'u5', ran: true },
    { name: 'method constructor', payload: j({ id: 'u6', m: 'constructor', p: {} }), code: 'unknown_method', id: 'u6', ran: true },
    { name: 'method __proto__', payload: j({ id: 'u7', m: '__proto__', p: {} }), code: 'unknown_method', id: 'u7', ran: true },
    { name: 'method toString', payload: j({ id: 'u8', m: 'toString', p: {} }), code: 'unknown_method', id: 'u8', ran: true },
    { name: 'method hasOwnProperty', payload: j({ id: 'u9', m: 'hasOwnProperty', p: {} }), code: 'unknown_method', id: 'u9', ran: true },
    { name: 'method a number', payload: j({ id: 'u10', m: 5, p: {} }), code: 'unknown_method', id: 'u10', ran: true },
    { name: 'method an array', payload: j({ id: 'u11', m: ['ping'], p: {} }), code: 'unknown_method', id: 'u11', ran: true },
    { name: 'method missing', payload: j({ id: 'u12', p: {} }), code: 'unknown_method', id: 'u12', ran: true },
    { name: 'method very long', payload: j({ id: 'u13', m: 'x'.repeat(900) }), code: 'unknown_method', id: 'u13', ran: true },
    // bad params
    { name: 'params that are code', payload: j({ id: 'p1', m: 'info', p: CODE_REBOOT }), code: 'bad_params', id: 'p1', ran: true },
    { name: 'params null', payload: j({ id: 'p2', m: 'ping', p: null }), code: 'bad_params', id: 'p2', ran: true },
    { name: 'params an array', payload: j({ id: 'p3', m: 'ping', p: [1, 2] }), code: 'bad_params', id: 'p3', ran: true },
    { name: 'params a number', payload: j({ id: 'p4', m: 'config.get', p: 7 }), code: 'bad_params', id: 'p4', ran: true },
    { name: 'read: sensor a number', payload: j({ id: 'p5', m: 'read', p: { sensor: 5 } }), code: 'bad_params', id: 'p5', ran: true },
    { name: 'read: sensor that is code', payload: j({ id: 'p6', m: 'read', p: { sensor: CODE_ERASE } }), code: 'bad_params', id: 'p6', ran: true },
    { name: 'read: sensor __proto__ (as a value)', payload: j({ id: 'p7', m: 'read', p: { sensor: '__proto__' } }), code: 'bad_params', id: 'p7', ran: true },
    { name: 'gpio.write: pin that is code', payload: j({ id: 'p8', m: 'gpio.write', p: { pin: CODE_REBOOT, value: true } }), code: 'bad_params', id: 'p8', ran: true },
    { name: 'gpio.write: value a string', payload: j({ id: 'p9', m: 'gpio.write', p: { pin: 'D2', value: 'true' } }), code: 'bad_params', id: 'p9', ran: true },
    { name: 'gpio.write: pin out of range', payload: j({ id: 'p10', m: 'gpio.write', p: { pin: 'D123', value: true } }), code: 'bad_params', id: 'p10', ran: true },
    { name: 'gpio.write: no params', payload: j({ id: 'p11', m: 'gpio.write' }), code: 'bad_params', id: 'p11', ran: true },
    { name: 'config.set: config that is code', payload: j({ id: 'p12', m: 'config.set', p: { config: CODE_ERASE } }), code: 'bad_params', id: 'p12', ran: true },
    { name: 'config.set: change the id', payload: j({ id: 'p13', m: 'config.set', p: { config: { id: 'evil' } } }), code: 'bad_params', id: 'p13', ran: true },
    { name: 'config.set: change the fleet key', payload: j({ id: 'p14', m: 'config.set', p: { config: { fleetKey: '00'.repeat(32) } } }), code: 'bad_params', id: 'p14', ran: true },
    { name: 'config.set: field that is code', payload: j({ id: 'p15', m: 'config.set', p: { config: { beaconMs: CODE_REBOOT } } }), code: 'bad_params', id: 'p15', ran: true },
    { name: 'config.set: sensor of an unknown kind', payload: j({ id: 'p16', m: 'config.set', p: { config: { sensors: [{ name: 'x', kind: 'eval', pin: CODE_ERASE }] } } }), code: 'bad_params', id: 'p16', ran: true },
    { name: 'config.set: mqtt not an object', payload: j({ id: 'p17', m: 'config.set', p: { config: { mqtt: 'mqtt://evil' } } }), code: 'bad_params', id: 'p17', ran: true },
    { name: 'pipeline.set: stages that are code', payload: j({ id: 'p18', m: 'pipeline.set', p: { sensor: 't', stages: "eval('1')" } }), code: 'bad_params', id: 'p18', ran: true },
    { name: 'pipeline.set: unknown stage', payload: j({ id: 'p19', m: 'pipeline.set', p: { sensor: 't', stages: [{ eval: CODE_REBOOT }] } }), code: 'bad_params', id: 'p19', ran: true },
    { name: 'pipeline.set: unknown sensor', payload: j({ id: 'p20', m: 'pipeline.set', p: { sensor: 'nope', stages: [] } }), code: 'bad_params', id: 'p20', ran: true },
    // envelope: id, deadline, size, syntax, nesting
    { name: 'id missing', payload: j({ m: 'ping', p: {} }), code: 'bad_request', id: '' },
    { name: 'id a number', payload: j({ id: 5, m: 'ping' }), code: 'bad_request', id: '' },
    { name: 'id empty', payload: j({ id: '', m: 'ping' }), code: 'bad_request', id: '' },
    { name: 'id of 65 chars', payload: j({ id: 'i'.repeat(65), m: 'ping' }), code: 'bad_request', id: 'i'.repeat(65) },
    { name: 'id of 900 chars', payload: j({ id: 'k'.repeat(900), m: 'ping' }), code: 'bad_request' },
    { name: 'dl a string', payload: j({ id: 'd1', m: 'ping', dl: 'tomorrow' }), code: 'bad_request', id: 'd1' },
    { name: 'payload of 1.5 KB', payload: j({ id: 's1', m: 'ping', p: { pad: 'x'.repeat(1500) } }), code: 'bad_request', id: '' },
    { name: 'not JSON: code (erase)', payload: CODE_ERASE, code: 'bad_request', id: '' },
    { name: 'not JSON: code (reboot)', payload: CODE_REBOOT, code: 'bad_request', id: '' },
    { name: 'not JSON: empty', payload: '', code: 'bad_request', id: '' },
    { name: 'not JSON: binary', payload: Buffer.from([0, 0xff, 0xfe, 0x7b, 0x22, 0x80, 0x0a, 0x5c]), code: 'bad_request', id: '' },
    { name: 'not JSON: truncated', payload: '{"id":"t1","m":"ping"', code: 'bad_request', id: '' },
    { name: 'JSON array', payload: '[{"id":"a1","m":"ping"}]', code: 'bad_request', id: '' },
    { name: 'JSON string', payload: '"ping"', code: 'bad_request', id: '' },
    { name: 'JSON null', payload: 'null', code: 'bad_request', id: '' },
    { name: 'nested 100 levels of objects', payload: `{"id":"n1","m":"ping","p":${nested(100, '{"a":', '}', '1')}}`, code: 'bad_request', id: '' },
    { name: 'nested 100 levels of arrays', payload: `{"id":"n2","m":"ping","p":{"a":${nested(100, '[', ']', '1')}}}`, code: 'bad_request', id: '' },
    { name: 'nested 100 levels, unbalanced', payload: nested(100, '{"a":', '', '1'), code: 'bad_request', id: '' },
    { name: 'nested 12 levels', payload: `{"id":"n3","m":"ping","p":${nested(12, '{"a":', '}', '1')}}`, code: 'bad_request', id: 'n3' },
    // prototype keys, top level and nested
    { name: '__proto__ at top level', payload: '{"id":"h1","m":"ping","__proto__":{"polluted":1}}', code: 'bad_request', id: 'h1' },
    { name: 'constructor at top level', payload: '{"id":"h2","m":"ping","constructor":{"prototype":{"polluted":1}}}', code: 'bad_request', id: 'h2' },
    { name: 'prototype at top level', payload: '{"id":"h3","m":"ping","prototype":{"polluted":1}}', code: 'bad_request', id: 'h3' },
    { name: '__proto__ in params', payload: '{"id":"h4","m":"ping","p":{"__proto__":{"polluted":1}}}', code: 'bad_request', id: 'h4' },
    { name: '__proto__ nested in params', payload: '{"id":"h5","m":"read","p":{"sensor":"t","x":{"y":{"__proto__":{"polluted":1}}}}}', code: 'bad_request', id: 'h5' },
    { name: 'constructor.prototype nested', payload: '{"id":"h6","m":"ping","p":{"a":{"constructor":{"prototype":{"polluted":1}}}}}', code: 'bad_request', id: 'h6' },
    { name: '__proto__ inside config.set', payload: '{"id":"h7","m":"config.set","p":{"config":{"__proto__":{"mqtt":{"host":"evil"}}}}}', code: 'bad_request', id: 'h7' },
    { name: 'constructor in an array of stages', payload: '{"id":"h8","m":"pipeline.set","p":{"sensor":"t","stages":[{"constructor":{"name":"x"}}]}}', code: 'bad_request', id: 'h8' },
    { name: 'prototype key in nested array', payload: '{"id":"h9","m":"ping","p":{"l":[[{"prototype":1}]]}}', code: 'bad_request', id: 'h9' },
    // the deadline: nobody waits for the answer, so none is sent and nothing runs
    { name: 'deadline in the past', payload: j({ id: 'e1', m: 'gpio.write', p: { pin: 'D5', value: true }, dl: Date.now() - 60_000 }), code: null },
    { name: 'deadline 0', payload: j({ id: 'e2', m: 'reboot', p: {}, dl: 0 }), code: null },
    { name: 'deadline in the past, hostile method', payload: j({ id: 'e3', m: CODE_ERASE, dl: 1 }), code: null },
  ];
  // A far deadline changes nothing for the others; give some of them one, as the client does.
  for (const r of rows) {
    if (typeof r.payload === 'string' && r.payload.startsWith('{"id":"u')) r.payload = r.payload.slice(0, -1) + `,"dl":${far()}}`;
  }
  return rows;
}

function topicOf(id: string, kind: 'req' | 'res'): string {
  return `espfleet/${id}/rpc/${kind}`;
}

let sentinel = 0;

/**
 * Publishes payload to the device, then a ping with a fresh id; resolves with every reply that
 * came before the ping's answer (replies keep the order of the requests: one publisher, one
 * subscriber, QoS 1, answered in order on the device).
 */
async function ask(dev: string, payload: string | Buffer, waitMs = 10_000): Promise<string[]> {
  const list = replies.get(dev)!;
  const start = list.length;
  const sid = `sentinel-${++sentinel}`;
  await fleet.companion.bus.publish(topicOf(dev, 'req'), payload, { qos: 1 });
  await fleet.companion.bus.publish(topicOf(dev, 'req'), j({ id: sid, m: 'ping', p: {} }), { qos: 1 });
  await waitFor(`${dev} answers ${sid}`, () => list.slice(start).some((r) => r.includes(`"${sid}"`)), waitMs);
  const got = list.slice(start);
  const at = got.findIndex((r) => r.includes(`"${sid}"`));
  expect(JSON.parse(got[at])).toEqual({ id: sid, r: 'pong' });
  expect(got.length, `nothing after the sentinel's reply`).toBe(at + 1);
  return got.slice(0, at);
}

function info(b: EmulatedBoard): Record<string, any> {
  return JSON.parse(b.evaluate('JSON.stringify(espfleet.device.info())') as string);
}

/** Counts eval and Function calls made in the board's interpreter from now on. */
function spyCodeGeneration(b: EmulatedBoard): void {
  b.evaluate(`(function (g) {
    var E0 = g.eval, F0 = g.Function;
    var spy = { eval: 0, fn: 0 };
    Object.defineProperty(g, '__codeSpy', { value: spy, enumerable: false });
    g.eval = function (s) { spy.eval++; return E0(s); };
    var F = function () { spy.fn++; return F0.apply(this, arguments); };
    F.prototype = F0.prototype;
    g.Function = F;
    F0.prototype.constructor = F;
  })(this)`);
}

interface Snapshot {
  info: Record<string, any>;
  config: string;
  globals: string[];
  protos: string;
  spy: { eval: number; fn: number };
  logs: string[];
  storage: Record<string, string>;
  digital: Array<[string, boolean]>;
  boots: number;
  vars: number;
}

function snapshot(b: EmulatedBoard): Snapshot {
  return {
    info: info(b),
    config: b.evaluate('JSON.stringify(espfleet.device.config())') as string,
    globals: JSON.parse(b.evaluate('JSON.stringify(Object.getOwnPropertyNames(global).sort())') as string),
    protos: b.evaluate(
      'JSON.stringify([Object.prototype, Array.prototype, Function.prototype, String.prototype].map(function (p) { return Object.getOwnPropertyNames(p).sort(); }).concat([({}).polluted, ({}).isAdmin, [].polluted]))',
    ) as string,
    spy: JSON.parse(b.evaluate('JSON.stringify(global.__codeSpy)') as string),
    logs: [...b.logs],
    storage: b.storage.snapshot(),
    digital: [...b.digital.entries()].sort(),
    boots: b.counters.boots,
    vars: b.varsUsed(),
  };
}

/** Storage files that change by normal operation: outbox segments and marks, the state file. */
const MOVING = (name: string) => name.startsWith('ob.') || name === 'espfleet.state';

function expectUnchanged(id: string, before: Snapshot, after: Snapshot): void {
  const bi = before.info;
  const ai = after.info;
  for (const k of ['id', 'fw', 'board', 'boots', 'breaker'] as const) expect(ai[k], `${id} info.${k}`).toEqual(bi[k]);
  expect(ai.up, `${id} did not reboot`).toBeGreaterThan(bi.up);
  expect(after.boots, `${id} emulator boots`).toBe(before.boots);
  expect(ai.session.state, `${id} session`).toBe('up');
  expect(ai.session.connects, `${id} no new session`).toBe(bi.session.connects);
  expect(ai.session.owner).toBe(bi.session.owner);
  expect(ai.reconnect, `${id} reconnect counters`).toEqual(bi.reconnect);
  expect(ai.outbox.dropped, `${id} outbox dropped`).toBe(bi.outbox.dropped);
  expect(ai.outbox.torn).toBe(bi.outbox.torn);
  expect(ai.outbox.errors).toBe(bi.outbox.errors);
  expect(ai.outbox.last, `${id} outbox keeps counting`).toBeGreaterThanOrEqual(bi.outbox.last);
  expect(ai.discovery.offers).toBe(bi.discovery.offers);
  expect(ai.discovery.rejected).toBe(bi.discovery.rejected);
  expect(after.config, `${id} config`).toBe(before.config);
  expect(after.globals, `${id} globals`).toEqual(before.globals);
  expect(after.protos, `${id} prototypes`).toBe(before.protos);
  expect(after.spy, `${id} eval / Function calls`).toEqual({ eval: 0, fn: 0 });
  expect(after.logs, `${id} console`).toEqual(before.logs);
  expect(after.digital, `${id} pins`).toEqual(before.digital);
  for (const f of ['espfleet.json', '.bootcde']) expect(after.storage[f] === before.storage[f], `${id} Storage ${f} unchanged`).toBe(true);
  const names = (s: Record<string, string>) => Object.keys(s).filter((n) => !MOVING(n)).sort();
  expect(names(after.storage), `${id} Storage files`).toEqual(names(before.storage));
  for (const n of names(before.storage)) expect(after.storage[n] === before.storage[n], `${id} Storage ${n}`).toBe(true);
  expect(JSON.parse(after.storage['espfleet.state']).boots).toBe(JSON.parse(before.storage['espfleet.state']).boots);
  expect(Math.abs(after.vars - before.vars), `${id} JsVars ${before.vars} -> ${after.vars}`).toBeLessThanOrEqual(VARS_TOLERANCE);
}

beforeAll(async () => {
  fleet = await startFleetWithCompanion({ boards: BOARDS, sampleMs: 2000, speed: 1 });
  table3 = fleet.ids.slice(0, BOARDS - 1);
  victim = fleet.ids[BOARDS - 1];
  await waitFor(`${BOARDS} devices up`, () => fleet.companion.devices().filter((d) => d.online).length === BOARDS, 20_000);
  for (const id of fleet.ids) {
    replies.set(id, []);
    await waitFor(`${id} session up`, () => info(fleet.emulator.get(id)).session.state === 'up', 10_000);
  }
  await fleet.companion.bus.subscribe('espfleet/+/rpc/res', (topic, payload) => {
    const id = topic.split('/')[1];
    replies.get(id)?.push(payload.toString('latin1'));
  });
  for (const id of fleet.ids) spyCodeGeneration(fleet.emulator.get(id));
}, 30_000);

afterAll(async () => {
  await fleet?.stop();
});

describe('hostile RPC requests on emulated boards behind a real companion', () => {
  it('each gets the expected error reply (or none), and the device is left as it was', async () => {
    const rows = table();
    // Fill the answer cache (4 entries) first: its size is bounded, and full before and after.
    // Two pings and their two sentinels.
    await Promise.all(
      table3.map(async (id) => {
        for (let k = 0; k < 2; k++) await ask(id, j({ id: `warm-${k}`, m: 'ping', p: {} }));
      }),
    );
    const before = new Map(table3.map((id) => [id, snapshot(fleet.emulator.get(id))]));
    const failures: string[] = [];
    await Promise.all(
      table3.map(async (id) => {
        for (const row of rows) {
          const got = await ask(id, row.payload);
          if (row.code === null) {
            if (got.length !== 0) failures.push(`${id} ${row.name}: expected no reply, got ${got.join(' | ').slice(0, 200)}`);
            continue;
          }
          if (got.length !== 1) {
            failures.push(`${id} ${row.name}: expected one reply, got ${got.length}`);
            continue;
          }
          const r = JSON.parse(got[0]);
          if (r.r !== undefined || !r.e || r.e.code !== row.code || typeof r.e.msg !== 'string' || r.e.msg.length === 0) {
            failures.push(`${id} ${row.name}: expected error ${row.code}, got ${got[0].slice(0, 200)}`);
          }
          if (row.id !== undefined && r.id !== row.id) failures.push(`${id} ${row.name}: reply id ${String(r.id).slice(0, 40)}, expected ${row.id.slice(0, 40)}`);
        }
      }),
    );
    expect(failures).toEqual([]);
    const ran = rows.filter((r) => r.code !== null && r.ran).length;
    const refused = rows.filter((r) => r.code !== null && !r.ran).length;
    for (const id of table3) {
      const b = fleet.emulator.get(id);
      const a = snapshot(b);
      const bf = before.get(id)!;
      expectUnchanged(id, bf, a);
      // +1 per sentinel ping: those ran too.
      expect(a.info.rpc.served - bf.info.rpc.served, `${id} rpc.served`).toBe(ran + rows.length);
      expect(a.info.rpc.refused - bf.info.rpc.refused, `${id} rpc.refused`).toBe(refused);
      expect(b.counters.errors, `${id} uncaught errors`).toBe(0);
      console.log(`rpc-hostile: ${id} JsVars ${bf.vars} -> ${a.vars}, ${rows.length} hostile requests`);
    }
    // The spy does see code generation: eval and new Function run from the console are counted.
    const b0 = fleet.emulator.get(table3[0]);
    expect(JSON.parse(b0.evaluate('eval("1 + 1"); new Function("return 1")(); JSON.stringify(__codeSpy)') as string)).toEqual({ eval: 1, fn: 1 });
  }, 30_000);

  /**
   * PRODUCT BUG (device, firmware/protocols/mqtt-session.ts + firmware/wire/mqtt-codec.ts): a
   * request whose PUBLISH is larger than the session's packetBytesMax (2048) is not answered:
   * the parser fails ('protocol: packet of 2072 bytes over packetBytesMax') and the session
   * drops. The session is persistent (clean session off) and the request is QoS 1, as the
   * companion's RPC client sends it, so the broker redelivers it on every reconnect: the device
   * reconnects, receives it, drops again, forever (seen: connects 2 -> 5 and retransmits 0 -> 21
   * within 12 s, state 'down' throughout). One message on the device's own rpc/req topic keeps
   * it offline. Expected instead: an error reply (bad_request, as for 1.5 KB) and the session kept.
   * Runs on its own board so the loop does not disturb the other tests.
   */
  it('a 2 KB request is refused with an error and the session survives', async () => {
    const b = fleet.emulator.get(victim);
    const bf = snapshot(b);
    const got = await ask(victim, j({ id: 'big', m: 'ping', p: { pad: 'x'.repeat(2048 - 40) } }), 6000);
    expect(got.map((r) => JSON.parse(r).e?.code)).toEqual(['bad_request']);
    expectUnchanged(victim, bf, snapshot(b));
  }, 20_000);

  it('a retried request (same id) is answered again and executed once', async () => {
    const id = table3[1];
    const b = fleet.emulator.get(id);
    const served = info(b).rpc.served;
    const req = j({ id: 'retry-1', m: 'gpio.write', p: { pin: 'D4', value: true }, dl: Date.now() + 60_000 });
    const first = await ask(id, req);
    expect(first.map((r) => JSON.parse(r))).toEqual([{ id: 'retry-1', r: true }]);
    expect(b.digital.get('D4')).toBe(true);
    // Someone else drives the pin low; a retry of the old request must not drive it high again.
    b.digital.set('D4', false);
    const again = await ask(id, req);
    expect(again).toEqual(first);
    expect(b.digital.get('D4'), 'the retry did not execute').toBe(false);
    // The write and two sentinels ran; the retry was answered from the cache.
    expect(info(b).rpc.served - served).toBe(3);
    // The same id with a past deadline is not answered at all.
    const late = await ask(id, j({ id: 'retry-1', m: 'gpio.write', p: { pin: 'D4', value: true }, dl: 1 }));
    expect(late).toEqual([]);
    expect(b.digital.get('D4')).toBe(false);
  });

  it('the companion keeps serving the boards: RPCs through its client work and telemetry flows', async () => {
    for (const id of table3) {
      const r = await fleet.companion.rpc(id, 'ping', {}, 5000);
      expect(r.result).toBe('pong');
      const n = fleet.companion.telemetryStore.count(id);
      await waitFor(`${id} keeps streaming`, () => fleet.companion.telemetryStore.count(id) > n, 10_000);
    }
    for (const id of table3) expect(fleet.emulator.get(id).counters.errors, id).toBe(0);
  }, 40_000);
});
