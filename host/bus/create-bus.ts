/**
 * Picks the bus from the companion's settings: the embedded broker unless `--broker` names an
 * external one (INTERFACES.md "Command line").
 */
import type { Bus } from './bus.js';
import { EmbeddedBus, type EmbeddedBrokerOptions } from './embedded-broker.js';
import { ExternalBus, type ExternalBrokerOptions } from './external-broker.js';

export interface BusSettings {
  /** `--broker <mqtt://url>`: use this external broker instead of the embedded one. */
  brokerUrl?: string;
  /** Embedded broker options (fleet key, bind address, port, limits). */
  embedded: EmbeddedBrokerOptions;
  /** External broker: the companion's fixed client id and optional credentials. */
  external?: Omit<ExternalBrokerOptions, 'url'>;
}

export function createBus(s: BusSettings): Bus {
  if (s.brokerUrl === undefined) return new EmbeddedBus(s.embedded);
  return new ExternalBus({ clientId: 'espfleet-companion', log: s.embedded.log, ...s.external, url: s.brokerUrl });
}
