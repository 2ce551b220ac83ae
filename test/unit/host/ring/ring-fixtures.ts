/** Deterministic keys and member lists for the ring tests. */
import { SeededRng } from '../../../../firmware/core/rng.js';
import type { RingMember } from '../../../../host/ring/hash-ring.js';

/** Device-id-like keys ("esp32-" + 12 hex digits), the same list for the same seed. */
export function deviceKeys(count: number, seed = 1): string[] {
  const rng = new SeededRng(seed);
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const a = rng.nextU32().toString(16).padStart(8, '0');
    const b = rng.nextU32().toString(16).padStart(8, '0').slice(0, 4);
    keys.push('esp32-' + a + b);
  }
  return keys;
}

/** n companions with weight 1, ids "<tag><i>:7000". */
export function companions(n: number, tag = 'companion-'): RingMember[] {
  const out: RingMember[] = [];
  for (let i = 0; i < n; i++) out.push({ id: `${tag}${i}:7000`, weight: 1 });
  return out;
}
