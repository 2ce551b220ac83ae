import { describe, expect, it } from 'vitest';
import { BusRejection } from '../../../../host/bus/bus.js';
import { createBus } from '../../../../host/bus/create-bus.js';
import { EmbeddedBus, classifyBrokerError, isLoopbackAddress } from '../../../../host/bus/embedded-broker.js';
import { ExternalBus } from '../../../../host/bus/external-broker.js';

describe('classifyBrokerError', () => {
  const errno = (code: string) => Object.assign(new Error(code), { code });
  it.each<[Error, string | null]>([
    [new BusRejection('acl-publish', 'espfleet/x/telemetry'), 'acl-publish'],
    [errno('ECONNRESET'), null],
    [errno('EPIPE'), null],
    [new Error('connection closed'), null],
    [new Error('keep alive timeout'), 'keepalive-timeout'],
    [new Error('connect did not arrive in time'), 'connect-timeout'],
    [new Error('unacceptable protocol version'), 'unsupported-protocol-version'],
    [new Error('Invalid protocol version'), 'unsupported-protocol-version'],
    [new Error('Client queue limit reached'), 'queue-limit'],
    [new Error('drain timeout'), 'slow-consumer'],
    [new Error('maxInflightInbound exceeded: 1000 inbound QoS 2 messages already awaiting PUBREL'), 'inflight-max'],
    [new Error('Connect flag bit 0 must be 0, but got 1'), 'reserved-flags'],
    [new Error('Will QoS must be set to zero when Will Flag is set to 0'), 'reserved-flags'],
    [new Error('Invalid variable byte integer'), 'bad-remaining-length'],
    [new Error('# is not allowed in PUBLISH'), 'invalid-topic'],
    [new Error('+ is only allowed in SUBSCRIBE between /'), 'invalid-topic'],
    [new Error('empty topic not allowed in PUBLISH'), 'invalid-topic'],
    [new Error('topic has too many levels'), 'invalid-topic'],
    [new Error('Cannot parse topic'), 'malformed'],
    [new Error('Invalid protocolId'), 'malformed'],
  ])('%s -> %s', (err, reason) => expect(classifyBrokerError(err)).toBe(reason));
});

describe('isLoopbackAddress', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.5', false],
    ['::ffff:192.168.1.2', false],
    ['fe80::1', false],
    ['', false],
  ])('%s -> %s', (a, ok) => expect(isLoopbackAddress(a)).toBe(ok));
});

describe('createBus', () => {
  const embedded = { fleetKeyHex: 'abcd', log: () => {} };
  it('is the embedded broker unless a broker URL is given', () => {
    const bus = createBus({ embedded });
    expect(bus).toBeInstanceOf(EmbeddedBus);
    expect(bus.kind).toBe('embedded');
    expect(bus.address()).toBeNull();
  });

  it('is the external bus for --broker, reporting the URL host and port for offers', () => {
    const bus = createBus({ brokerUrl: 'mqtt://user:pw@broker.lan:1884', embedded, external: { clientId: 'companion-a' } });
    expect(bus).toBeInstanceOf(ExternalBus);
    expect(bus.kind).toBe('external');
    expect(bus.address()).toEqual({ host: 'broker.lan', port: 1884 });
    expect(createBus({ brokerUrl: 'mqtt://broker.lan', embedded }).address()).toEqual({ host: 'broker.lan', port: 1883 });
  });

  it('refuses a bad fleet key or broker URL at construction', () => {
    expect(() => createBus({ embedded: { fleetKeyHex: 'xyz' } })).toThrow(/hex/);
    expect(() => createBus({ brokerUrl: 'http://x', embedded })).toThrow(/mqtt/);
  });
});
