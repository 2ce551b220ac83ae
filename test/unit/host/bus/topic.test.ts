import { describe, expect, it } from 'vitest';
import { deviceTopic, filtersIntersect, isTopicName, parseDeviceTopic, stringProblem, topicMatches } from '../../../../host/bus/topic.js';

describe('topicMatches', () => {
  it.each([
    ['a/b', 'a/b', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['#', 'a/b', true],
    ['+/+', '/x', true],
    ['+', '/x', false],
    ['a/b', 'a/b/', false],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['espfleet/+/telemetry', 'espfleet/shed-1/telemetry', true],
    ['espfleet/+/telemetry', 'espfleet/shed-1/status', false],
  ])('%s ~ %s = %s', (f, t, ok) => expect(topicMatches(f, t)).toBe(ok));
});

describe('filtersIntersect', () => {
  it.each([
    ['#', 'a/b', true],
    ['a/+', 'a/b', true],
    ['a/+', 'b/+', false],
    ['a/#', 'a', true],
    ['a', 'a/#', true],
    ['a/+/c', 'a/b/+', true],
    ['a/+/c', 'a/b/d', false],
    ['a/b', 'a/b/c', false],
    ['espfleet/+/rpc/#', 'espfleet/+/status', false],
    ['espfleet/#', 'espfleet/+/status', true],
  ])('%s with %s = %s', (a, b, ok) => {
    expect(filtersIntersect(a, b)).toBe(ok);
    expect(filtersIntersect(b, a)).toBe(ok);
  });
});

describe('string checks', () => {
  it.each([
    ['plain', null],
    ['a\u0000b', 'nul-in-string'],
    [Buffer.from([0x61, 0xc0, 0x80]).toString('utf8'), 'invalid-utf8'], // overlong NUL
    [Buffer.from([0xed, 0xa0, 0x80]).toString('utf8'), 'invalid-utf8'], // UTF-16 surrogate
    [Buffer.from([0xe2, 0x82]).toString('utf8'), 'invalid-utf8'], // truncated
    [Buffer.from([0xff]).toString('utf8'), 'invalid-utf8'],
    ['°C 😀', null],
  ])('stringProblem(%j) = %s', (s, p) => expect(stringProblem(s)).toBe(p));

  it.each([
    ['a/b', true],
    ['', false],
    ['a/+', false],
    ['#', false],
  ])('isTopicName(%j) = %s', (t, ok) => expect(isTopicName(t)).toBe(ok));
});

describe('device topics', () => {
  it('round-trips every leaf', () => {
    for (const leaf of ['status', 'telemetry', 'meta', 'health', 'rpc/req', 'rpc/res'] as const) {
      expect(parseDeviceTopic(deviceTopic('shed-1', leaf))).toEqual({ id: 'shed-1', leaf });
    }
  });
  it.each(['espfleet/shed-1', 'espfleet//status', 'espfleet/a/other', 'other/a/status', 'espfleet/a/rpc/x'])('%s is not a device topic', (t) => {
    expect(parseDeviceTopic(t)).toBeNull();
  });
});
