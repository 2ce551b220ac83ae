/**
 * JsVars at rest per board: each bundle boots on an emulated board with a typical config (two
 * sensors and a pipeline), reaches its steady state, and must hold no more than the board's
 * at-rest budget (code run from Storage plus state). A board whose RAM cannot hold the full
 * runtime says so loudly and is skipped, never passed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Emulator } from '../../boards/emulator/emulator.js';
import { listBoards, loadBoard } from '../../boards/profiles.js';
import { emulatedConfig } from '../../host/cli/emulate-command.js';

const emu = new Emulator({ speed: 50 });
afterAll(() => emu.close());

describe('JsVars at rest', () => {
  for (const name of listBoards()) {
    const profile = loadBoard(name);
    if (profile.ramNote) {
      it.skip(`${name}: ${profile.ramNote}`, () => {});
      console.warn(`FULL RUNTIME DOES NOT FIT ${name.toUpperCase()}: ${profile.ramNote}`);
      continue;
    }
    it(`${name} stays within ${profile.budget.varsAtRestMax} of its ${profile.vars} vars`, async () => {
      const cfg = emulatedConfig({ count: 1, board: name, fleetKey: '00112233445566778899aabbccddeeff', prefix: 'mem-', discoveryPort: 9, discoveryAddr: '127.255.255.255', beaconMs: 10000, sampleMs: 5000 }, 1);
      const b = emu.add({ id: `mem-${name}`, board: name, config: cfg });
      // A minute of board time: sampling, pipeline windows, beacons, an outbox filling (no broker).
      await emu.clock.sleep(60_000);
      expect(b.bootError).toBeNull();
      expect(b.counters.errors).toBe(0);
      const used = b.varsUsed();
      console.log(`${name}: ${used} JsVars at rest of ${profile.vars} (budget ${profile.budget.varsAtRestMax}), peak ${b.peakVars}`);
      expect(used).toBeLessThanOrEqual(profile.budget.varsAtRestMax);
      expect(b.evaluate('process.memory().usage')).toBe(b.varsUsed());
    });
  }
});
