import { describe, expect, it } from 'vitest';
import {
  PAYLOAD_BYTES_MAX,
  READINGS_MAX,
  checkDeviceId,
  checkRecord,
  parseTelemetryPayload,
} from '../../../../host/store/telemetry-record.js';

describe('parseTelemetryPayload', () => {
  it('parses the wire payload', () => {
    const r = parseTelemetryPayload('shed-1', '{"seq":7,"ts":1700000000123,"r":{"t":21.5,"h":40},"hist":1}');
    expect(r).toEqual({ ok: true, value: { device: 'shed-1', seq: 7, ts: 1700000000123, hist: 1, r: { t: 21.5, h: 40 } } });
  });

  it('accepts the bytes a broker delivers, and a missing hist as live', () => {
    const bytes = new TextEncoder().encode('{"seq":0,"ts":5,"r":{}}');
    const r = parseTelemetryPayload('d', bytes);
    expect(r).toEqual({ ok: true, value: { device: 'd', seq: 0, ts: 5, hist: 0, r: {} } });
  });

  it('keeps millisecond resolution (Espruino clocks give fractions)', () => {
    const r = parseTelemetryPayload('d', '{"seq":1,"ts":1000.75,"r":{"t":1}}');
    expect(r.ok && r.value.ts).toBe(1000);
  });

  const bad: [string, string | Uint8Array, RegExp][] = [
    ['not JSON', '{"seq":1', /not JSON/],
    ['an array', '[1,2]', /not a JSON object/],
    ['null', 'null', /not a JSON object/],
    ['no seq', '{"ts":1,"r":{}}', /seq/],
    ['negative seq', '{"seq":-1,"ts":1,"r":{}}', /seq/],
    ['fractional seq', '{"seq":1.5,"ts":1,"r":{}}', /seq/],
    ['huge seq', '{"seq":9007199254740993,"ts":1,"r":{}}', /seq/],
    ['string ts', '{"seq":1,"ts":"1","r":{}}', /ts/],
    ['negative ts', '{"seq":1,"ts":-5,"r":{}}', /ts/],
    ['hist 2', '{"seq":1,"ts":1,"r":{},"hist":2}', /hist/],
    ['r missing', '{"seq":1,"ts":1}', /r is not/],
    ['r array', '{"seq":1,"ts":1,"r":[1]}', /r is not/],
    ['string value', '{"seq":1,"ts":1,"r":{"t":"21"}}', /'t' is not a finite number/],
    ['null value', '{"seq":1,"ts":1,"r":{"t":null}}', /not a finite number/],
    ['empty name', '{"seq":1,"ts":1,"r":{"":1}}', /name/],
    ['__proto__ name', '{"seq":1,"ts":1,"r":{"__proto__":1}}', /reserved/],
    ['too large', '{"seq":1,"ts":1,"r":{"t":1},"pad":"' + 'x'.repeat(PAYLOAD_BYTES_MAX) + '"}', /larger than/],
  ];
  it.each(bad)('refuses %s with a reason, never throws', (_name, payload, reason) => {
    const r = parseTelemetryPayload('d', payload);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('refuses more than READINGS_MAX readings', () => {
    const r: Record<string, number> = {};
    for (let i = 0; i <= READINGS_MAX; i++) r['s' + i] = i;
    const out = parseTelemetryPayload('d', JSON.stringify({ seq: 1, ts: 1, r }));
    expect(out).toEqual({ ok: false, reason: `more than ${READINGS_MAX} readings` });
  });

  it('refuses a bad device id', () => {
    expect(parseTelemetryPayload('a/b', '{"seq":1,"ts":1,"r":{}}').ok).toBe(false);
  });
});

describe('checkDeviceId', () => {
  it.each([
    ['shed-1', null],
    ['', /empty/],
    ['x'.repeat(65), /longer/],
    ['a b', /forbidden/],
    ['a+', /forbidden/],
    ['a#', /forbidden/],
    ['é', /forbidden/],
  ] as const)('%j', (id, expected) => {
    const r = checkDeviceId(id);
    if (expected === null) expect(r).toBeNull();
    else expect(r).toMatch(expected);
  });
  it('refuses a non-string', () => {
    expect(checkDeviceId(5)).toMatch(/not a string/);
  });
});

describe('checkRecord', () => {
  it('normalises hist booleans and copies r', () => {
    const r = { t: 1 };
    const out = checkRecord({ device: 'd', seq: 1, ts: 2, hist: true, r });
    expect(out).toEqual({ ok: true, value: { device: 'd', seq: 1, ts: 2, hist: 1, r: { t: 1 } } });
    if (out.ok) expect(out.value.r).not.toBe(r);
  });
  it('refuses non-finite values a caller could pass', () => {
    expect(checkRecord({ device: 'd', seq: 1, ts: 2, hist: 0, r: { t: NaN } }).ok).toBe(false);
    expect(checkRecord({ device: 'd', seq: 1, ts: Infinity, hist: 0, r: {} }).ok).toBe(false);
    expect(checkRecord(null).ok).toBe(false);
  });
});
