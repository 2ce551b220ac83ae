// Discovery datagrams byte for byte: texts written out by hand from INTERFACES.md's member order,
// MACs computed here with node:crypto over the text without its `,"mac":"…"` member; the source
// and the minified bundle must build exactly these bytes and accept them.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as beaconSrc from '../../../../firmware/wire/beacon.js';
import * as hmacSrc from '../../../../firmware/core/hmac.js';
import * as shaSrc from '../../../../firmware/core/sha256.js';

const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);
const impls: Array<[string, any, any, any]> = [['source', beaconSrc, hmacSrc, shaSrc]];
if (fw) impls.push(['bundle', fw.beacon, fw.hmac, fw.sha256]);

const FLEET_KEY_HEX = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';

/** The reference sealing rule, written independently of the firmware: HMAC over the text, then the member appended. */
function seal(body: string): string {
  const mac = createHmac('sha256', Buffer.from(FLEET_KEY_HEX, 'hex')).update(body, 'latin1').digest('hex');
  return body.slice(0, -1) + ',"mac":"' + mac + '"}';
}

const BEACONS: Array<[string, any, string]> = [
  [
    'first beacon after boot, time unknown',
    { id: 'shed-1', kind: 'esp32', fw: '0.1.0', caps: ['mqtt', 'rpc', 'pipeline'], port: 41901, seq: 0, up: 812, mem: 12034, ts: 0, boot: 7, nonce: 1234567 },
    '{"t":"beacon","v":1,"id":"shed-1","kind":"esp32","fw":"0.1.0","caps":["mqtt","rpc","pipeline"],"port":41901,"seq":0,"up":812,"mem":12034,"ts":0,"boot":7,"nonce":1234567}',
  ],
  [
    'later beacon, wall clock known, no caps',
    { id: 'A_z-09', kind: 'linux', fw: '1.2.3-rc.1+abc', caps: [], port: 1, seq: 2147483647, up: 3000000000, mem: 0, ts: 1735689600123, boot: 0, nonce: 0 },
    '{"t":"beacon","v":1,"id":"A_z-09","kind":"linux","fw":"1.2.3-rc.1+abc","caps":[],"port":1,"seq":2147483647,"up":3000000000,"mem":0,"ts":1735689600123,"boot":0,"nonce":0}',
  ],
];

const OFFERS: Array<[string, any, string]> = [
  [
    'offer naming an IPv4 broker',
    { id: 'shed-1', host: 'node-a', broker: { host: '192.168.1.20', port: 1883 }, epoch: 3, ts: 1735689600500, re: 1234567 },
    '{"t":"offer","v":1,"id":"shed-1","host":"node-a","broker":{"host":"192.168.1.20","port":1883},"epoch":3,"ts":1735689600500,"re":1234567}',
  ],
  [
    'offer naming a host name and a bare IPv6 address',
    { id: 'x', host: 'n2', broker: { host: 'fe80::1', port: 65535 }, epoch: 0, ts: 0, re: 2147483647 },
    '{"t":"offer","v":1,"id":"x","host":"n2","broker":{"host":"fe80::1","port":65535},"epoch":0,"ts":0,"re":2147483647}',
  ],
];

describe.each(impls)('discovery datagram vectors (%s)', (_name, b, hm, sh) => {
  const key = hm.fromHex(FLEET_KEY_HEX);
  const mac = new hm.Hmac(key, sh.sha256, sh.sha256Resume);

  it.each(BEACONS)('beacon: %s', (_c, fields, body) => {
    const want = seal(body);
    const built = b.buildBeacon(fields, mac);
    expect(built).toEqual({ ok: true, text: want });
    expect(b.verifyBeacon(want, mac)).toEqual({ ok: true, msg: fields });
  });

  it.each(OFFERS)('offer: %s', (_c, fields, body) => {
    const want = seal(body);
    expect(b.buildOffer(fields, mac)).toEqual({ ok: true, text: want });
    expect(b.verifyOffer(want, mac)).toEqual({ ok: true, msg: fields });
  });

  it('a number printed the way Espruino prints epoch milliseconds (12 significant digits) verifies', () => {
    const text = seal(BEACONS[1][2].replace('"ts":1735689600123', '"ts":1.73568960012e12'));
    const r = b.verifyBeacon(text, mac);
    expect(r.ok).toBe(true);
    expect(r.msg.ts).toBe(1735689600120);
  });

  it('the mac is the 64 lower-case hex chars of HMAC-SHA256 under the hex-decoded fleet key', () => {
    const text = b.buildBeacon(BEACONS[0][1], mac).text as string;
    const m = /,"mac":"([0-9a-f]{64})"\}$/.exec(text);
    expect(m).not.toBe(null);
    const body = text.slice(0, m!.index) + '}';
    expect(body).toBe(BEACONS[0][2]);
    expect(m![1]).toBe(createHmac('sha256', Buffer.from(FLEET_KEY_HEX, 'hex')).update(body, 'latin1').digest('hex'));
  });
});

if (!fw) it.todo('discovery datagram vectors on the minified bundle (needs test/helpers/firmware-lib.ts)');
