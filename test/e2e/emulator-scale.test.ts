/**
 * The emulator at scale: 200 boards in one process, each running the shipped esp32 bundle. Each
 * beacons over UDP to a Node socket on loopback, follows the signed offer to a Node TCP server
 * (where its MQTT CONNECT arrives), writes Storage, reboots, and reads its state back. Prints the
 * memory and time per board.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterAll, expect, it } from 'vitest';
import { Emulator } from '../../boards/emulator/emulator.js';
import { buildOffer, verifyBeacon } from '../../firmware/wire/beacon.js';
import { newFleetKey } from '../../host/companion.js';
import { nodeMac } from '../../host/discovery/node-mac.js';
import { emulatedConfig } from '../../host/cli/emulate-command.js';
import { waitFor } from '../helpers/fleet.js';

const BOARDS = 200;
const cleanup: Array<() => void> = [];
afterAll(() => {
  for (const c of cleanup.reverse()) c();
});

it(`boots ${BOARDS} boards in one process: UDP, TCP, Storage and reboot each`, async () => {
  const key = newFleetKey();
  const mac = nodeMac(key);
  const connects = new Map<string, number>();
  const tcp = net.createServer((s) => {
    const parser = mqttPacket.parser();
    parser.on('packet', (p) => {
      if (p.cmd === 'connect') connects.set(p.clientId, (connects.get(p.clientId) ?? 0) + 1);
    });
    s.on('data', (d) => parser.parse(d));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  cleanup.push(() => tcp.close());
  const tcpPort = (tcp.address() as net.AddressInfo).port;
  const beacons = new Map<string, number>();
  let bad = 0;
  const udp = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  udp.on('message', (m, rinfo) => {
    const v = verifyBeacon(m.toString('latin1'), mac);
    if (!v.ok) {
      bad++;
      return;
    }
    beacons.set(v.msg.id, (beacons.get(v.msg.id) ?? 0) + 1);
    const offer = buildOffer({ id: v.msg.id, host: 'test', broker: { host: '127.0.0.1', port: tcpPort }, epoch: 1, ts: Date.now(), re: v.msg.nonce }, mac);
    if (offer.ok) udp.send(Buffer.from(offer.text, 'latin1'), v.msg.port, rinfo.address);
  });
  await new Promise<void>((r) => udp.bind(0, '0.0.0.0', r));
  cleanup.push(() => udp.close());
  const udpPort = udp.address().port;

  const emu = new Emulator({ speed: 1 });
  cleanup.push(() => emu.close());
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  for (let i = 1; i <= BOARDS; i++) {
    const cfg = emulatedConfig({ count: BOARDS, board: 'esp32', fleetKey: key, prefix: 'scale-', discoveryPort: udpPort, discoveryAddr: '127.255.255.255', beaconMs: 10000, sampleMs: 5000 }, i);
    emu.add({ id: String(cfg.id), board: 'esp32', config: cfg });
  }
  const bootMs = performance.now() - t0;
  const ids = [...emu.boards.keys()];
  await waitFor('a beacon from every board', () => ids.every((id) => beacons.has(id)), 30_000);
  await waitFor('an MQTT CONNECT from every board over TCP', () => ids.every((id) => connects.has(id)), 30_000).catch((e) => {
    throw new Error(`${e.message}: ${describe(emu, ids.find((id) => !connects.has(id))!)}`);
  });
  const heapAfter = process.memoryUsage().heapUsed;
  expect(bad).toBe(0);

  // Storage: the runtime counted this boot in espfleet.state; the test writes a file of its own too.
  for (const b of emu.boards.values()) {
    expect(b.bootError, b.id).toBeNull();
    b.evaluate(`require("Storage").write("mark", "${b.id}")`);
    expect(JSON.parse(b.storage.read('espfleet.state')!).boots).toBe(1);
  }
  const t1 = performance.now();
  for (const b of emu.boards.values()) b.reboot();
  const rebootMs = performance.now() - t1;
  for (const b of emu.boards.values()) {
    expect(b.evaluate('require("Storage").read("mark")'), b.id).toBe(b.id);
    expect(b.evaluate('espfleet.state.boots'), b.id).toBe(2);
    expect(b.evaluate('typeof global.lost'), b.id).toBe('undefined');
  }
  const vars = [...emu.boards.values()].map((b) => b.varsUsed());
  console.log(
    `emulator scale: ${BOARDS} boards booted in ${bootMs.toFixed(0)} ms (${(bootMs / BOARDS).toFixed(2)} ms/board), ` +
      `rebooted in ${rebootMs.toFixed(0)} ms (${(rebootMs / BOARDS).toFixed(2)} ms/board); ` +
      `host heap ${((heapAfter - heapBefore) / BOARDS / 1024).toFixed(0)} KiB/board; ` +
      `emulated JsVars ${Math.min(...vars)}-${Math.max(...vars)} of 16383 per board`,
  );
  await waitFor('every rebooted board connects again', () => ids.every((id) => (connects.get(id) ?? 0) >= 2), 30_000).catch((e) => {
    throw new Error(`${e.message}: ${describe(emu, ids.find((id) => (connects.get(id) ?? 0) < 2)!)}`);
  });
}, 120_000);

/** What a board that missed a step says about itself (its console and its `info`). */
function describe(emu: Emulator, id: string): string {
  const b = emu.get(id);
  return `${id}: console ${JSON.stringify(b.logs)}, info ${JSON.stringify(b.evaluate('JSON.stringify(espfleet.device.info())'))}`;
}
