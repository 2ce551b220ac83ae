/**
 * The companion's RPC client over a fake bus: retransmissions reuse the request id, a silent
 * device times out, repeated timeouts open the device's breaker, replies from another device
 * are ignored, device errors come back as device_error.
 */
import { describe, expect, it } from 'vitest';
import type { Bus, MessageHandler } from '../../../../host/bus/bus.js';
import { RpcError } from '../../../../host/companion-api.js';
import { RpcClient } from '../../../../host/rpc/rpc-client.js';

class FakeBus {
  sent: Array<{ topic: string; body: Record<string, unknown> }> = [];
  handler: MessageHandler | null = null;
  /** What the fake device does with a request: reply (topic, payload) or stay silent. */
  device: (topic: string, req: Record<string, unknown>) => [string, string] | null = () => null;
  async subscribe(_f: string, h: MessageHandler) {
    this.handler = h;
    return async () => {};
  }
  async publish(topic: string, payload: string | Buffer) {
    const body = JSON.parse(String(payload));
    this.sent.push({ topic, body });
    const r = this.device(topic, body);
    if (r) setTimeout(() => this.handler!(r[0], Buffer.from(r[1]), { qos: 1, retain: false, dup: false, will: false }), 1);
  }
}

async function client(bus: FakeBus, o: Partial<ConstructorParameters<typeof RpcClient>[0]> = {}): Promise<RpcClient> {
  const c = new RpcClient({ bus: bus as unknown as Bus, breakerFailures: 2, breakerOpenMs: 60_000, ...o });
  await c.start();
  return c;
}

describe('rpc client', () => {
  it('answers with the result, the time and the attempts', async () => {
    const bus = new FakeBus();
    bus.device = (t, req) => ['espfleet/d1/rpc/res', JSON.stringify({ id: req.id, r: 'pong' })];
    const c = await client(bus);
    const r = await c.call('d1', 'ping', {}, 1000, true);
    expect(r).toMatchObject({ result: 'pong', attempts: 1 });
    expect(bus.sent[0].topic).toBe('espfleet/d1/rpc/req');
    expect(bus.sent[0].body).toMatchObject({ m: 'ping', p: {} });
    expect(typeof bus.sent[0].body.dl).toBe('number');
    await c.stop();
  });

  it('retransmits with the same id, then times out; repeated timeouts open the breaker', async () => {
    const bus = new FakeBus();
    const c = await client(bus);
    await expect(c.call('d1', 'ping', {}, 600, true)).rejects.toMatchObject({ code: 'timeout' });
    const ids = new Set(bus.sent.map((s) => s.body.id));
    expect(bus.sent.length).toBeGreaterThanOrEqual(2);
    expect(ids.size).toBe(1);
    await expect(c.call('d1', 'ping', {}, 300, true)).rejects.toMatchObject({ code: 'timeout' });
    expect(c.breakerState('d1')).toBe('open');
    const before = bus.sent.length;
    await expect(c.call('d1', 'ping', {}, 300, true)).rejects.toMatchObject({ code: 'breaker_open' });
    expect(bus.sent.length).toBe(before);
    // Another device is not affected.
    bus.device = (t, req) => ['espfleet/d2/rpc/res', JSON.stringify({ id: req.id, r: 1 })];
    await expect(c.call('d2', 'ping', {}, 1000, true)).resolves.toMatchObject({ result: 1 });
    await c.stop();
  });

  it('ignores a reply from another device, reports device errors, refuses bad calls', async () => {
    const bus = new FakeBus();
    bus.device = (t, req) => ['espfleet/intruder/rpc/res', JSON.stringify({ id: req.id, r: 'forged' })];
    const c = await client(bus);
    await expect(c.call('d1', 'ping', {}, 300, true)).rejects.toMatchObject({ code: 'timeout' });
    expect(c.counters.late).toBeGreaterThan(0);
    bus.device = (t, req) => ['espfleet/d3/rpc/res', JSON.stringify({ id: req.id, e: { code: 'bad_params', msg: 'no' } })];
    const err = await c.call('d3', 'read', { sensor: 'x' }, 1000, true).catch((e) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect(err).toMatchObject({ code: 'device_error', device: { code: 'bad_params', msg: 'no' } });
    expect(c.breakerState('d3')).toBe('closed');
    await expect(c.call('d3', '', {}, 1000, true)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(c.call('d3', 'x', [] as unknown as object, 1000, true)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(c.call('d3', 'x', { pad: 'y'.repeat(1000) }, 1000, true)).rejects.toMatchObject({ code: 'bad_request' });
    await expect(c.call('d3', 'x', {}, 1000, false)).rejects.toMatchObject({ code: 'device_down' });
    await c.stop();
  });
});
