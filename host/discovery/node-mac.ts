/**
 * The host's side of the fleet HMAC: the same `Mac` shape the firmware's wire code takes, over
 * node:crypto (the device uses its crypto module or the JS SHA-256). Byte Strings in and out.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Mac } from '../../firmware/wire/beacon.js';

export function nodeMac(keyHex: string): Mac {
  if (!/^([0-9a-fA-F]{2})+$/.test(keyHex)) throw new Error('fleet key must be hex');
  const key = Buffer.from(keyHex, 'hex');
  return {
    digest(msg: string): string {
      return createHmac('sha256', key).update(msg, 'latin1').digest().toString('latin1');
    },
    // The listener's hot path: native HMAC, native hex decode, constant-time compare.
    verifyHex(msg: string, hexMac: string): boolean {
      const want = Buffer.from(hexMac, 'hex');
      return want.length === 32 && timingSafeEqual(createHmac('sha256', key).update(msg, 'latin1').digest(), want);
    },
  };
}

/** The MQTT password a device derives from the fleet key (INTERFACES.md): hex HMAC of "mqtt:" + id. */
export function devicePassword(keyHex: string, id: string): string {
  return createHmac('sha256', Buffer.from(keyHex, 'hex')).update('mqtt:' + id, 'latin1').digest('hex');
}
