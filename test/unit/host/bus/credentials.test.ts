import { describe, expect, it } from 'vitest';
import {
  checkDeviceCredentials,
  deriveDevicePassword,
  isValidDeviceId,
  mayPublish,
  mayReceive,
  maySubscribe,
  mosquittoAcl,
  type Principal,
} from '../../../../host/bus/credentials.js';

const KEY = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';

describe('deriveDevicePassword', () => {
  // Vectors computed independently with: echo -n "mqtt:<id>" | openssl dgst -sha256 -mac HMAC -macopt hexkey:<key>
  it.each([
    [KEY, 'shed-1', 'e5b272760ec371c9ee128757bc4871f44ae688e6635f228e380f9bdec2de817e'],
    ['ff', 'a', '4bd5c1cf74234ad38a2ae0c8b91b941f455a543f2428a1fe7b65514e8065042a'],
  ])('key %s id %s', (key, id, hex) => {
    expect(deriveDevicePassword(key, id)).toBe(hex);
    expect(deriveDevicePassword(Buffer.from(key, 'hex'), id)).toBe(hex);
  });

  it.each(['', 'abc', 'zz', '0g'])('refuses the fleet key %j', (key) => {
    expect(() => deriveDevicePassword(key, 'x')).toThrow(/hex/);
  });
});

describe('checkDeviceCredentials', () => {
  const good = deriveDevicePassword(KEY, 'shed-1');
  it.each<[string, string | undefined, Buffer | string | undefined, boolean]>([
    ['right password as Buffer', 'shed-1', Buffer.from(good), true],
    ['right password as string', 'shed-1', good, true],
    ['upper-case hex is another password', 'shed-1', good.toUpperCase(), false],
    ["another device's password", 'shed-2', good, false],
    ['one digit changed', 'shed-1', good.slice(0, 63) + (good[63] === '0' ? '1' : '0'), false],
    ['truncated', 'shed-1', good.slice(0, 32), false],
    ['too long', 'shed-1', good + '00', false],
    ['no password', 'shed-1', undefined, false],
    ['no user', undefined, good, false],
    ['empty password', 'shed-1', Buffer.alloc(0), false],
    ['id with a slash', 'shed/1', deriveDevicePassword(KEY, 'shed/1'), false],
    ['id with a wildcard', '+', deriveDevicePassword(KEY, '+'), false],
  ])('%s', (_name, id, pw, ok) => {
    expect(checkDeviceCredentials(KEY, id, pw)).toBe(ok);
  });
});

describe('isValidDeviceId', () => {
  // The device config's rule (firmware/config.ts isId): 1-32 of A-Z a-z 0-9 _ -.
  it.each([
    ['shed-1', true],
    ['A_b-9', true],
    ['-lead', true],
    ['x'.repeat(32), true],
    ['x'.repeat(33), false],
    ['', false],
    ['a.b', false],
    ['a/b', false],
    ['a+b', false],
    ['a#', false],
    ['$SYS', false],
    ['a b', false],
    ['a\u0000', false],
    ['é', false],
  ])('%j -> %s', (id, ok) => expect(isValidDeviceId(id)).toBe(ok));
});

describe('ACL', () => {
  const dev: Principal = { kind: 'device', id: 'shed-1' };
  const local: Principal = { kind: 'local' };

  it.each<[Principal, string, boolean]>([
    [dev, 'espfleet/shed-1/telemetry', true],
    [dev, 'espfleet/shed-1/status', true],
    [dev, 'espfleet/shed-1/rpc/res', true],
    [dev, 'espfleet/shed-1/meta', true],
    [dev, 'espfleet/shed-1/health', true],
    [dev, 'espfleet/shed-1/rpc/req', false],
    [dev, 'espfleet/shed-1/other', false],
    [dev, 'espfleet/shed-2/telemetry', false],
    [dev, 'espfleet/shed-1/telemetry/x', false],
    [dev, 'homeassistant/device/shed-1/config', false],
    [dev, '$SYS/x', false],
    [local, 'espfleet/shed-1/telemetry', false],
    [local, 'espfleet/shed-1/rpc/req', false],
    [local, 'espfleet', false],
    [local, 'espfleetx/a', true],
    [local, 'homeassistant/device/x/config', true],
    [local, 'bench/x', true],
    [local, '$SYS/broker/x', false],
  ])('mayPublish(%o, %s) = %s', (p, t, ok) => expect(mayPublish(p, t)).toBe(ok));

  it.each<[Principal, string, boolean]>([
    [dev, 'espfleet/shed-1/rpc/req', true],
    [dev, 'espfleet/shed-1/#', false],
    [dev, 'espfleet/+/rpc/req', false],
    [dev, '#', false],
    [local, '#', true],
    [local, '+/+/telemetry', true],
    [local, 'espfleet/#', true],
    [local, 'espfleet/+/telemetry', true],
    [local, 'espfleet/shed-1/status', true],
    [local, 'espfleet/shed-1/rpc/req', false],
    [local, 'espfleet/+/rpc/#', false],
    [local, 'espfleet/shed-1/rpc/+', false],
    [local, 'espfleet/+/+/req', false],
    [local, 'homeassistant/#', true],
  ])('maySubscribe(%o, %s) = %s', (p, f, ok) => expect(maySubscribe(p, f)).toBe(ok));

  it.each<[Principal, string, boolean]>([
    [dev, 'espfleet/shed-1/rpc/req', true],
    [dev, 'espfleet/shed-2/rpc/req', false],
    [dev, 'espfleet/shed-1/telemetry', false],
    [local, 'espfleet/shed-1/telemetry', true],
    [local, 'espfleet/shed-1/status', true],
    [local, 'espfleet/shed-1/meta', true],
    [local, 'espfleet/shed-1/health', true],
    [local, 'espfleet/shed-1/rpc/req', false],
    [local, 'espfleet/shed-1/rpc/res', false],
    [local, 'espfleet/x', false],
    [local, 'other/topic', true],
  ])('mayReceive(%o, %s) = %s', (p, t, ok) => expect(mayReceive(p, t)).toBe(ok));

  it('mosquittoAcl gives anonymous clients read-only device reports before any user line, devices their own topics', () => {
    const lines = mosquittoAcl('companion').split('\n');
    const firstUser = lines.findIndex((l) => l.startsWith('user '));
    const anon = lines.slice(0, firstUser).filter((l) => l.startsWith('topic'));
    expect(anon).toEqual(['status', 'telemetry', 'meta', 'health'].map((l) => `topic read espfleet/+/${l}`));
    expect(lines[firstUser]).toBe('user companion');
    expect(lines.filter((l) => l.startsWith('pattern'))).toEqual([
      ...['status', 'telemetry', 'meta', 'health', 'rpc/res'].map((l) => `pattern write espfleet/%u/${l}`),
      'pattern read espfleet/%u/rpc/req',
    ]);
  });
});
