/**
 * A device for cluster tests that needs no firmware: it beacons over UDP exactly as the wire
 * format says (firmware/wire/beacon.ts), follows the first authentic offer that echoes one of
 * its nonces, and publishes QoS 1 telemetry with an MQTT client using the derived credentials.
 */
import { randomInt } from 'node:crypto';
import * as dgram from 'node:dgram';
import mqtt, { type MqttClient } from 'mqtt';
import { buildBeacon, verifyOffer, type Offer } from '../../../../firmware/wire/beacon.js';
import { deriveDevicePassword } from '../../../../host/bus/credentials.js';
import { nodeMac } from '../../../../host/discovery/node-mac.js';

export interface FakeDeviceOptions {
  id: string;
  fleetKey: string;
  discoveryPort: number;
  /** Where beacons go (loopback broadcast reaches every companion on this machine). */
  discoveryAddr?: string;
}

export class FakeDevice {
  readonly id: string;
  o: FakeDeviceOptions;
  sock: dgram.Socket | null = null;
  client: MqttClient | null = null;
  offer: Offer | null = null;
  nonces: number[] = [];
  seq = 0;
  boot = randomInt(1, 1 << 30);
  offers: Offer[] = [];
  closed = false;
  _waiter: ((o: Offer) => void) | null = null;
  _mac;

  constructor(o: FakeDeviceOptions) {
    this.id = o.id;
    this.o = o;
    this._mac = nodeMac(o.fleetKey);
  }

  async open(): Promise<void> {
    const s = dgram.createSocket('udp4');
    this.sock = s;
    s.on('message', (msg) => {
      const v = verifyOffer(msg.toString('latin1'), this._mac);
      if (!v.ok || v.msg.id !== this.id || this.nonces.indexOf(v.msg.re) < 0) return;
      this.offers.push(v.msg);
      const w = this._waiter;
      if (w) {
        this._waiter = null;
        w(v.msg);
      }
    });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    s.setBroadcast(true);
  }

  beacon(): void {
    const s = this.sock as dgram.Socket;
    const nonce = randomInt(1, 1 << 30);
    this.nonces.push(nonce);
    if (this.nonces.length > 4) this.nonces.shift();
    const b = buildBeacon({ id: this.id, kind: 'fake', fw: 'test-1', caps: [], port: s.address().port, seq: ++this.seq, up: this.seq * 100, mem: 0, ts: 0, boot: this.boot, nonce }, this._mac);
    if (!b.ok) throw new Error('beacon: ' + b.reason);
    s.send(Buffer.from(b.text, 'latin1'), this.o.discoveryPort, this.o.discoveryAddr ?? '127.255.255.255');
  }

  /** Beacon every `everyMs` until an offer arrives (or `timeoutMs`). */
  findOwner(timeoutMs: number, everyMs = 150): Promise<Offer> {
    return new Promise<Offer>((resolve, reject) => {
      const t0 = Date.now();
      const timer = setInterval(() => {
        if (Date.now() - t0 > timeoutMs) {
          clearInterval(timer);
          this._waiter = null;
          reject(new Error(this.id + ': no offer within ' + timeoutMs + ' ms'));
          return;
        }
        this.beacon();
      }, everyMs);
      this._waiter = (o) => {
        clearInterval(timer);
        this.offer = o;
        resolve(o);
      };
      this.beacon();
    });
  }

  async connect(offer: Offer): Promise<void> {
    this.disconnect();
    const c = await mqtt.connectAsync(`mqtt://${offer.broker.host}:${offer.broker.port}`, {
      clientId: this.id,
      username: this.id,
      password: deriveDevicePassword(this.o.fleetKey, this.id),
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 3000,
      keepalive: 5,
    });
    c.on('error', () => undefined);
    this.client = c;
  }

  connected(): boolean {
    return this.client !== null && this.client.connected;
  }

  /** QoS 1: resolves on PUBACK; rejects if the session closes first (no PUBACK: not stored). */
  publish(seq: number, value: number): Promise<void> {
    const c = this.client;
    if (!c || !c.connected) return Promise.reject(new Error('not connected'));
    const payload = JSON.stringify({ seq, ts: 1_700_000_000_000 + seq, r: { t: value } });
    return new Promise<void>((resolve, reject) => {
      const onClose = () => reject(new Error('session closed before PUBACK'));
      c.once('close', onClose);
      c.publishAsync(`espfleet/${this.id}/telemetry`, payload, { qos: 1 }).then(
        () => {
          c.off('close', onClose);
          resolve();
        },
        (e: Error) => {
          c.off('close', onClose);
          reject(e);
        },
      );
    });
  }

  disconnect(): void {
    const c = this.client;
    this.client = null;
    if (c) c.end(true);
  }

  close(): void {
    this.closed = true;
    this.disconnect();
    if (this.sock) this.sock.close();
    this.sock = null;
  }
}
