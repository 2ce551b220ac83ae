// Discovery datagrams: round trips, every field rule, hostile and damaged input (never a throw),
// size limits, the device's offer freshness (OfferGate) as a trace, and the regexes under
// Espruino's own matching rules. Source and minified bundle.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as beaconSrc from '../../../../firmware/wire/beacon.js';
import * as hmacSrc from '../../../../firmware/core/hmac.js';
import * as shaSrc from '../../../../firmware/core/sha256.js';
import { SeededRng } from '../../../../firmware/core/rng.js';

const fw: Record<string, any> | null = await import('../../../helpers/firmware-lib.js' as string).then(
  (m) => m.loadFirmwareLib(),
  () => null,
);
const impls: Array<[string, any, any, any]> = [['source', beaconSrc, hmacSrc, shaSrc]];
if (fw) impls.push(['bundle', fw.beacon, fw.hmac, fw.sha256]);

const KEY = Buffer.from('8f3a'.repeat(16), 'hex').toString('latin1');

/** A node:crypto Mac, as the host would pass. */
const nodeMac = (key: string) => ({
  digest: (m: string) => createHmac('sha256', Buffer.from(key, 'latin1')).update(m, 'latin1').digest().toString('latin1'),
});

/** Seals any JSON-ish text with the key, bypassing the builders' field checks (a key holder's bad message). */
function sealRaw(body: string, key = KEY): string {
  const mac = createHmac('sha256', Buffer.from(key, 'latin1')).update(body, 'latin1').digest('hex');
  return body.slice(0, -1) + ',"mac":"' + mac + '"}';
}

const BEACON = { id: 'shed-1', kind: 'esp32', fw: '0.1.0', caps: ['mqtt', 'rpc'], port: 41901, seq: 5, up: 60000, mem: 9000, ts: 0, boot: 3, nonce: 42 };
const OFFER = { id: 'shed-1', host: 'node-a', broker: { host: '10.0.0.2', port: 1883 }, epoch: 1, ts: 1735689600000, re: 42 };
const beaconBody = (over: Record<string, unknown>) => JSON.stringify({ t: 'beacon', v: 1, ...BEACON, ...over });
const offerBody = (over: Record<string, unknown>) => JSON.stringify({ t: 'offer', v: 1, ...OFFER, ...over });

describe.each(impls)('beacon wire (%s)', (_name, b, hm, sh) => {
  const mac = new hm.Hmac(KEY, sh.sha256, sh.sha256Resume);

  it('round-trips beacons and offers, and interoperates with a node:crypto Mac both ways', () => {
    const host = nodeMac(KEY);
    const bt = b.buildBeacon(BEACON, mac);
    expect(bt.ok).toBe(true);
    expect(b.verifyBeacon(bt.text, host)).toEqual({ ok: true, msg: BEACON });
    const ot = b.buildOffer(OFFER, host);
    expect(b.verifyOffer(ot.text, mac)).toEqual({ ok: true, msg: OFFER });
  });

  it('refuses a datagram under another key, and one kind verified as the other', () => {
    const other = new hm.Hmac(KEY.replace('\u008f', 'x'), sh.sha256);
    const bt = b.buildBeacon(BEACON, mac).text;
    const ot = b.buildOffer(OFFER, mac).text;
    expect(b.verifyBeacon(bt, other)).toEqual({ ok: false, reason: 'mac' });
    expect(b.verifyBeacon(ot, mac)).toEqual({ ok: false, reason: 'type' });
    expect(b.verifyOffer(bt, mac)).toEqual({ ok: false, reason: 'type' });
    expect(b.verifyBeacon(sealRaw(beaconBody({ v: 2 })), mac)).toEqual({ ok: false, reason: 'version' });
  });

  it('refuses every single-byte change and every truncation of a valid datagram, without throwing', () => {
    const text: string = b.buildBeacon(BEACON, mac).text;
    const reasons = new Set<string>();
    for (let i = 0; i < text.length; i++) {
      for (const c of [0, 0x20, 0x22, 0x30, 0x61, 0x7d, 0xff]) {
        const ch = String.fromCharCode(c);
        if (text[i] === ch) continue;
        const r = b.verifyBeacon(text.slice(0, i) + ch + text.slice(i + 1), mac);
        expect(r.ok, `byte ${i} -> ${c}`).toBe(false);
        reasons.add(r.reason);
      }
      const t = b.verifyBeacon(text.slice(0, i), mac);
      expect(t.ok).toBe(false);
      reasons.add(t.reason);
    }
    expect([...reasons].sort()).toEqual(['mac', 'shape']);
  });

  it('refuses non-strings, oversize datagrams and a bad mac suffix by shape, before any MAC work', () => {
    let calls = 0;
    const counting = { digest: (m: string) => (calls++, mac.digest(m)) };
    const good: string = b.buildBeacon(BEACON, mac).text;
    const cases: Array<[unknown, string]> = [
      [undefined, 'size'],
      [12, 'size'],
      [null, 'size'],
      ['', 'shape'],
      ['{}', 'shape'],
      [good + ' ', 'shape'],
      [good.replace(',"mac":"', ',"MAC":"'), 'shape'],
      [good.replace(/"mac":"([0-9a-f])/, '"mac":"G'), 'shape'],
      [good.replace(/"mac":"([0-9a-f]+)"/, (_m, h) => '"mac":"' + h.toUpperCase() + '"'), 'shape'],
      ['x'.repeat(513), 'size'],
    ];
    for (const [input, reason] of cases) expect(b.verifyBeacon(input, counting), String(input)).toEqual({ ok: false, reason });
    expect(calls).toBe(0);
  });

  it('accepts exactly 512 bytes and refuses 513, MAC valid either way', () => {
    // Pad with a member the verifier ignores (forward compatibility) to reach an exact length.
    const base = beaconBody({});
    const pad = (n: number) => sealRaw(base.slice(0, -1) + ',"x":"' + 'p'.repeat(n) + '"}');
    const n512 = 512 - pad(0).length;
    expect(pad(n512).length).toBe(512);
    expect(b.verifyBeacon(pad(n512), mac).ok).toBe(true);
    expect(b.verifyBeacon(pad(n512 + 1), mac)).toEqual({ ok: false, reason: 'size' });
  });

  it('refuses MAC-valid bodies that are not JSON objects', () => {
    for (const body of ['{"t":"beacon",}', '{"t":"beacon"', 'null}', '{"t":"beacon","v":1,"id":"a\u0000"}'])
      expect(b.verifyBeacon(sealRaw(body.endsWith('}') ? body : body + '}'), mac).ok).toBe(false);
    expect(b.verifyBeacon(sealRaw('{"t":"beacon",}'), mac)).toEqual({ ok: false, reason: 'json' });
  });

  const beaconFieldCases: Array<[string, Record<string, unknown>]> = [
    ['id', { id: '' }], ['id', { id: 'a'.repeat(33) }], ['id', { id: 'a b' }], ['id', { id: 'a.b' }], ['id', { id: 'é' }], ['id', { id: 7 }],
    ['kind', { kind: 'k'.repeat(17) }], ['kind', { kind: null }],
    ['fw', { fw: '' }], ['fw', { fw: '1 0' }], ['fw', { fw: 'v'.repeat(33) }], ['fw', { fw: '1/0' }],
    ['caps', { caps: 'mqtt' }], ['caps', { caps: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] }], ['caps', { caps: ['ok', ''] }], ['caps', { caps: [1] }], ['caps', { caps: { 0: 'a', length: 1 } }],
    ['port', { port: 0 }], ['port', { port: 65536 }], ['port', { port: 1.5 }], ['port', { port: '80' }],
    ['seq', { seq: -1 }], ['seq', { seq: 2147483648 }], ['seq', { seq: null }],
    ['up', { up: -1 }], ['up', { up: 'x' }],
    ['mem', { mem: -1 }], ['mem', { mem: 0.5 }],
    ['ts', { ts: -5 }], ['ts', { ts: '0' }],
    ['boot', { boot: -1 }], ['boot', { boot: 2147483648 }], ['boot', { boot: undefined }],
    ['nonce', { nonce: 2147483648 }], ['nonce', { nonce: 1e-3 }],
  ];

  it.each(beaconFieldCases)('beacon field %s: %j is refused when building and when verifying', (field, over) => {
    const want = { ok: false, reason: 'field ' + field };
    expect(b.buildBeacon({ ...BEACON, ...over }, mac)).toEqual(want);
    expect(b.verifyBeacon(sealRaw(beaconBody(over)), mac)).toEqual(want);
  });

  const offerFieldCases: Array<[string, Record<string, unknown>]> = [
    ['id', { id: '' }], ['host', { host: 'node a' }], ['host', { host: 'h'.repeat(33) }],
    ['broker', { broker: null }], ['broker', { broker: [] }], ['broker', { broker: 'mqtt://x' }],
    ['broker.host', { broker: { host: '', port: 1 } }], ['broker.host', { broker: { host: 'a/b', port: 1 } }],
    ['broker.host', { broker: { host: 'h'.repeat(129), port: 1 } }], ['broker.host', { broker: { host: '[::1]', port: 1 } }],
    ['broker.port', { broker: { host: 'h', port: 0 } }], ['broker.port', { broker: { host: 'h' } }],
    ['epoch', { epoch: -1 }], ['epoch', { epoch: 2.5 }], ['ts', { ts: null }], ['re', { re: -1 }], ['re', { re: '42' }],
  ];

  it.each(offerFieldCases)('offer field %s: %j is refused when building and when verifying', (field, over) => {
    const want = { ok: false, reason: 'field ' + field };
    expect(b.buildOffer({ ...OFFER, ...over }, mac)).toEqual(want);
    expect(b.verifyOffer(sealRaw(offerBody(over)), mac)).toEqual(want);
  });

  it('ignores unknown members and hostile keys: only the known fields come back, Object.prototype untouched', () => {
    const body = beaconBody({}).slice(0, -1) + ',"__proto__":{"polluted":1},"constructor":{"x":1},"extra":[1,2]}';
    const r = b.verifyBeacon(sealRaw(body), mac);
    expect(r).toEqual({ ok: true, msg: BEACON });
    expect(Object.keys(r.msg).sort()).toEqual(Object.keys(BEACON).sort());
    expect(({} as any).polluted).toBe(undefined);
  });

  it('the largest valid beacon and offer fit in 512 bytes, so building never fails on valid fields', () => {
    const big = {
      id: 'i'.repeat(32), kind: 'k'.repeat(16), fw: 'f'.repeat(32), caps: Array.from({ length: 8 }, () => 'c'.repeat(16)),
      // the longest numbers JSON can print: 1.7976931348623157e+308
      port: 65535, seq: 2147483647, up: Number.MAX_VALUE, mem: 2147483647, ts: Number.MAX_VALUE, boot: 2147483647, nonce: 2147483647,
    };
    const bt = b.buildBeacon(big, mac);
    expect(bt.ok).toBe(true);
    expect(bt.text.length).toBeLessThanOrEqual(512);
    const offer = { id: 'i'.repeat(32), host: 'h'.repeat(32), broker: { host: 'b'.repeat(128), port: 65535 }, epoch: 2147483647, ts: Number.MAX_VALUE, re: 2147483647 };
    const ot = b.buildOffer(offer, mac);
    expect(ot.ok).toBe(true);
    expect(ot.text.length).toBeLessThanOrEqual(512);
    expect(b.verifyOffer(ot.text, mac)).toEqual({ ok: true, msg: offer });
  });

  it('OfferGate: accepts an answer to a recent beacon once, refuses others with a reason (trace)', () => {
    const g = new b.OfferGate('shed-1', 5000);
    const rng = new SeededRng(9);
    const trace: string[] = [];
    const offerFor = (re: number, id = 'shed-1') => ({ ...OFFER, id, re });
    const n1 = g.nonce(rng, 1000);
    const n2 = g.nonce(rng, 2000);
    expect(n1).not.toBe(n2);
    for (const n of [n1, n2]) expect(Number.isInteger(n) && n >= 0 && n < 2 ** 31).toBe(true);
    trace.push('other device: ' + g.accept(offerFor(n1, 'shed-2'), 2100));
    trace.push('unknown nonce: ' + g.accept(offerFor((n1 + 1) % 2 ** 31), 2100));
    trace.push('answer to n1: ' + g.accept(offerFor(n1), 2100));
    trace.push('duplicate answer to n1: ' + g.accept(offerFor(n1), 2150));
    trace.push('answer to n2 after one was followed: ' + g.accept(offerFor(n2), 2200));
    const n3 = g.nonce(rng, 10000);
    trace.push('answer to n3 after 5001 ms: ' + g.accept(offerFor(n3), 15001));
    trace.push('answer to n3 at 5000 ms: ' + g.accept(offerFor(n3), 15000));
    expect(trace).toEqual([
      'other device: not-for-us',
      'unknown nonce: unsolicited',
      'answer to n1: null',
      'duplicate answer to n1: unsolicited',
      'answer to n2 after one was followed: unsolicited',
      'answer to n3 after 5001 ms: late',
      'answer to n3 at 5000 ms: null',
    ]);
  });

  it('OfferGate remembers the last 4 nonces only', () => {
    const g = new b.OfferGate('d', 1e9);
    const rng = new SeededRng(1);
    const ns = [0, 1, 2, 3, 4].map((i) => g.nonce(rng, i));
    expect(g.accept({ ...OFFER, id: 'd', re: ns[0] }, 10)).toBe('unsolicited');
    expect(g.accept({ ...OFFER, id: 'd', re: ns[1] }, 10)).toBe(null);
    expect(b.OFFER_NONCES_MAX).toBe(4);
  });
});

if (!fw) it.todo('beacon wire on the minified bundle (needs test/helpers/firmware-lib.ts)');

/**
 * The part of Espruino 2v29's regex matcher (src/jswrap_regexp.c: match, matchhere,
 * matchcharacter) that the firmware's patterns touch: ^ $ [classes] + * and escapes, chars
 * compared as signed bytes. The node:vm emulator runs V8's regexes, so this is what checks
 * the device's reading of a pattern.
 */
function espruinoTest(re: string, s: string): boolean {
  if (re.includes('|') || re.includes('(')) throw new Error('port covers no groups or alternation');
  const code = (ch: string | undefined) => {
    if (ch === undefined) return 0;
    const c = ch.charCodeAt(0);
    return c > 127 ? c - 256 : c;
  };
  const info = { range: false, first: null as number | null };
  const isDigit = (c: number) => c >= 48 && c <= 57;
  const isAlpha = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  const isWs = (c: number) => c === 32 || (c >= 9 && c <= 13);
  function one(ri: number, ch: number): [boolean, number] {
    let len = 1;
    if (re[ri] === '.') return [true, 1];
    if (re[ri] === '[') {
      info.range = true;
      const inverted = re[ri + 1] === '^';
      if (inverted) len++;
      let any = false;
      while (re[ri + len] !== undefined && re[ri + len] !== ']') {
        const [m, l] = one(ri + len, ch);
        any = any || m;
        len += l;
      }
      if (re[ri + len] !== ']') throw new Error('Unfinished character set in RegEx');
      len++;
      info.range = false;
      return [any !== inverted, len];
    }
    let cH = code(re[ri]);
    if (re[ri] === '\\') {
      len = 2;
      const e = re[ri + 1];
      cH = code(e);
      if (e === 'd') return [isDigit(ch), 2];
      if (e === 'D') return [!isDigit(ch), 2];
      if (e === 's') return [isWs(ch), 2];
      if (e === 'S') return [!isWs(ch), 2];
      if (e === 'w') return [isDigit(ch) || isAlpha(ch) || ch === 95, 2];
      if (e === 'W') return [!(isDigit(ch) || isAlpha(ch) || ch === 95), 2];
      const ctl: Record<string, number> = { f: 12, n: 10, r: 13, t: 9, v: 11 };
      if (e in ctl) cH = ctl[e];
      else if (e >= '0' && e <= '9') cH = e.charCodeAt(0) - 48;
      else if (e === 'x' && re[ri + 2] && re[ri + 3]) {
        len = 4;
        cH = code(String.fromCharCode(parseInt(re.substr(ri + 2, 2), 16)));
      }
    }
    if (info.range && re[ri + len] === '-') {
      info.first = cH;
      len++;
      const [m, l] = one(ri + len, ch);
      return [m, len + l];
    }
    if (info.first !== null) {
      const cL = info.first;
      info.first = null;
      return [ch >= cL && ch <= cH && cL < cH, len];
    }
    return [cH === ch, len];
  }
  function here(ri: number, pos: number): boolean {
    if (ri >= re.length) return true;
    if (re[ri] === '^') return pos === 0 && here(ri + 1, pos);
    if (re[ri] === '$') return pos >= s.length && here(ri + 1, pos);
    let [m, l] = one(ri, code(s[pos]));
    if (re[ri + l] === '*' || re[ri + l] === '+') {
      if (!m && re[ri + l] === '+') return false;
      let found = here(ri + l + 1, pos);
      let p = pos;
      while (p < s.length && m) {
        p++;
        [m, l] = one(ri, code(s[p]));
        if (here(ri + l + 1, p)) found = true;
      }
      return found;
    }
    return pos < s.length && m && here(ri + l, pos + 1);
  }
  for (let start = 0; start === 0 || start < s.length; start++) if (here(0, start)) return true;
  return false;
}

describe('regexes read the same by Espruino and by V8', () => {
  const corpus: string[] = [''];
  for (let c = 0; c < 256; c++) corpus.push(String.fromCharCode(c), 'a' + String.fromCharCode(c), String.fromCharCode(c) + '9');
  const rng = new SeededRng(5);
  const alphabet = 'aZ09_-.+:/ ]^[\\x\u0080\u00ff';
  for (let i = 0; i < 3000; i++) {
    let s = '';
    const n = 1 + (rng.nextU32() % 12);
    for (let j = 0; j < n; j++) s += alphabet[rng.nextU32() % alphabet.length];
    corpus.push(s);
  }
  corpus.push('shed-1', 'fe80::1', '192.168.1.20', '1.2.3-rc.1+abc', 'deadBEEF', '0a');

  const patterns: Array<[string, RegExp]> = [
    ['NAME_RE', beaconSrc.NAME_RE],
    ['FW_RE', beaconSrc.FW_RE],
    ['HOST_RE', beaconSrc.HOST_RE],
    ['HEX_RE', beaconSrc.HEX_RE],
    ['fromHex', /^[0-9a-fA-F]+$/],
  ];
  it.each(patterns)('%s', (_n, re) => {
    for (const s of corpus) expect(espruinoTest(re.source, s), JSON.stringify(s)).toBe(re.test(s));
  });

  it('hmac.ts fromHex uses the pattern checked above', () => {
    expect(hmacSrc.fromHex.toString()).toContain('/^[0-9a-fA-F]+$/');
  });

  it('the port does catch the classic mistakes (so agreement above means something)', () => {
    const espruino = (src: string, s: string) => {
      try {
        return espruinoTest(src, s);
      } catch (e) {
        return String(e); // Espruino raises an exception from test()
      }
    };
    const differs = (src: string) => corpus.some((s) => espruino(src, s) !== new RegExp(src).test(s));
    // A trailing '-' is read as a range up to ']': the class never closes and test() throws.
    expect(espruino('^[A-Za-z0-9_-]+$', 'a_b')).toBe('Error: Unfinished character set in RegEx');
    expect(differs('^[a.]+$')).toBe(true); // '.' in a class matches anything on Espruino
    expect(differs('^[-a-z0-9]+$')).toBe(false);
  });
});
