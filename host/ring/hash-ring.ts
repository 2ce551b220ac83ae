/**
 * The companion cluster's consistent hash ring: which companion owns a device (`owner`), and
 * which ones hold its replicas (`replicas`: the next R distinct owners clockwise).
 *
 * A ring is a value: built from members `{id, weight}` and an epoch, never changed afterwards;
 * `with` / `without` return a new ring with the next epoch. The coordinator commits `toJSON()`
 * through Raft and every process rebuilds the identical ring with `fromJSON`, which checks the
 * rebuilt tables against the committed fingerprint.
 *
 * Two modes, one interface:
 * - 'slots' (default): 2^slotBits equal arcs, each owned by a weighted rendezvous winner
 *   (slot-table.ts). Keys hash with murmur3_32 over UTF-8, seed 0 (murmur3.ts); the top
 *   slotBits bits pick the slot, so a lookup is one hash and one table read. At the default
 *   2^17 slots the busiest of 10 equal owners carries about 1.01-1.02 x the mean.
 * - 'ketama': the libketama continuum of the `hashring` package, point for point (ketama.ts);
 *   md5 keys, 160 random points per owner, binary search narrowed by a bucket index.
 * In both, arc i covers the hashes (end[i-1], end[i]] and the circle wraps after 2^32 - 1.
 */
import { buildContinuum, ketamaPoint, KETAMA_VNODES } from './ketama.js';
import { murmur3, murmur3Words } from './murmur3.js';
import { addToSlotTable, buildSlotTable, placementSeed, removeFromSlotTable, type SlotMembers } from './slot-table.js';

export type RingMode = 'slots' | 'ketama';

export interface RingMember {
  readonly id: string;
  /** Relative capacity; a member's expected share is weight / total weight. Finite, > 0. */
  readonly weight: number;
}

export interface RingOptions {
  mode?: RingMode;
  /** Non-negative safe integer; the coordinator's ring version. Default 0. */
  epoch?: number;
  /** 'slots' mode: the table has 2^slotBits slots. Default DEFAULT_SLOT_BITS. */
  slotBits?: number;
  /** 'ketama' mode: hashring's 'vnode count' (digests per member at equal weights). Default 40. */
  vnodes?: number;
}

/** The committed form of a ring. */
export interface RingJSON {
  v: 1;
  mode: RingMode;
  epoch: number;
  /** slotBits in 'slots' mode, vnodes in 'ketama' mode. */
  param: number;
  members: RingMember[];
  /** murmur3 over the member list and the built tables; fromJSON rejects a mismatch. */
  fingerprint: number;
}

export interface KeyMove {
  key: string;
  from: string;
  to: string;
}

/**
 * 2^17 slots. An owner's share is its slot count, binomial: relative spread sqrt((1 - p) / (S p)),
 * 0.8 % at S = 2^17 and 10 equal owners, so the busiest of 10 sits about 1.3 % over the mean; a
 * 100,000-key sample adds its own ~1 % per owner. Measured over 40 random sets of 10 ids with
 * 100,000 keys, the busiest owner was at most 1.038 x the mean (2^16 slots: up to 1.066, over
 * the 1.05 goal; 2^18 slots: 1.034, for twice the cost). Costs 256 KiB of Uint16 table per ring,
 * 2^17 * n placement hashes to build (about 9 ms at 10 members, 70 ms at 100) and about 2^18
 * for with/without (1-2 ms at any n).
 */
export const DEFAULT_SLOT_BITS = 17;
/** Smallest table: below 256 slots even 2 owners are visibly unbalanced. */
export const SLOT_BITS_MIN = 8;
/** Largest table: 2^22 slots are 8 MiB per ring and seconds to build at 100 members. */
export const SLOT_BITS_MAX = 22;
/**
 * Owner indices are stored as Uint16; at the default 2^17 slots 4096 members still get 32 slots
 * each. A companion cluster is tens of nodes.
 */
export const MEMBERS_MAX = 4096;
/** Ids travel in every committed ring and offer; a companion id is a short name. */
export const ID_LENGTH_MAX = 256;
/** 'ketama' vnodes bound: 1000 digests (4000 points) per member is far past any use. */
export const VNODES_MAX = 1000;

const HASH_SPACE = 4294967296;

export class HashRing {
  readonly mode: RingMode;
  readonly epoch: number;
  /** Members in ring order (the order given, `with` appends). Frozen. */
  readonly members: readonly RingMember[];
  /** See RingJSON.fingerprint. */
  readonly fingerprint: number;

  private readonly _ids: readonly string[];
  private readonly _param: number;
  // 'slots'
  private readonly _table: Uint16Array | null;
  private readonly _shift: number;
  // 'ketama'
  private readonly _points: Uint32Array | null;
  private readonly _owners: Uint16Array | null;
  private readonly _bucket: Uint32Array | null;
  private readonly _bshift: number;
  // replicas(): per-member "seen in walk number g" stamps, so a walk allocates only its result.
  private readonly _seen: Uint32Array;
  private _walk = 0;
  private _arcsMemo: Arcs | null = null;

  private constructor(
    mode: RingMode,
    epoch: number,
    param: number,
    members: readonly RingMember[],
    table: Uint16Array | null,
    points: Uint32Array | null,
    owners: Uint16Array | null,
  ) {
    this.mode = mode;
    this.epoch = epoch;
    this._param = param;
    this.members = members;
    const ids: string[] = [];
    for (let i = 0; i < members.length; i++) ids.push(members[i].id);
    this._ids = ids;
    this._table = table;
    this._shift = 32 - param;
    this._points = points;
    this._owners = owners;
    this._seen = new Uint32Array(members.length);
    if (points !== null) {
      const len = points.length;
      // About one point per bucket: the narrowed search reads one or two points.
      let bits = 1;
      while (bits < 16 && 1 << bits < len) bits++;
      const bshift = 32 - bits;
      const nb = 1 << bits;
      const bucket = new Uint32Array(nb + 1);
      let p = 0;
      for (let b = 0; b < nb; b++) {
        const start = (b << bshift) >>> 0;
        while (p < len && points[p] < start) p++;
        bucket[b] = p;
      }
      bucket[nb] = len;
      this._bucket = bucket;
      this._bshift = bshift;
    } else {
      this._bucket = null;
      this._bshift = 0;
    }
    this.fingerprint = fingerprintOf(mode, param, members, table, points, owners);
  }

  /** Builds a ring. Throws RangeError/TypeError on an empty list, duplicate ids, bad weights or options. */
  static create(members: readonly RingMember[], options: RingOptions = {}): HashRing {
    const mode = options.mode ?? 'slots';
    if (mode !== 'slots' && mode !== 'ketama') throw new RangeError(`hash ring: unknown mode ${JSON.stringify(mode)}`);
    const epoch = checkEpoch(options.epoch ?? 0);
    const list = checkMembers(members);
    if (mode === 'slots') {
      const bits = options.slotBits ?? DEFAULT_SLOT_BITS;
      if (!Number.isInteger(bits) || bits < SLOT_BITS_MIN || bits > SLOT_BITS_MAX) {
        throw new RangeError(`hash ring: slotBits must be an integer in [${SLOT_BITS_MIN}, ${SLOT_BITS_MAX}], got ${bits}`);
      }
      const sm = slotMembers(list);
      return new HashRing('slots', epoch, bits, list, buildSlotTable(sm, bits), null, null);
    }
    const vnodes = options.vnodes ?? KETAMA_VNODES;
    if (!Number.isInteger(vnodes) || vnodes < 1 || vnodes > VNODES_MAX) {
      throw new RangeError(`hash ring: vnodes must be an integer in [1, ${VNODES_MAX}], got ${vnodes}`);
    }
    return HashRing._ketama(epoch, vnodes, list);
  }

  private static _ketama(epoch: number, vnodes: number, list: readonly RingMember[]): HashRing {
    const ids = list.map((m) => m.id);
    const weights = list.map((m) => m.weight);
    const c = buildContinuum(ids, weights, vnodes);
    return new HashRing('ketama', epoch, vnodes, list, null, c.points, c.owners);
  }

  /** Rebuilds a committed ring; throws if the JSON is malformed or the rebuilt ring differs. */
  static fromJSON(json: RingJSON | string): HashRing {
    const j = (typeof json === 'string' ? JSON.parse(json) : json) as RingJSON;
    if (j === null || typeof j !== 'object' || j.v !== 1) throw new TypeError('hash ring: not a ring JSON (v must be 1)');
    if (!Array.isArray(j.members)) throw new TypeError('hash ring: ring JSON has no members array');
    if (typeof j.param !== 'number' || typeof j.fingerprint !== 'number') {
      throw new TypeError('hash ring: ring JSON needs numeric param and fingerprint');
    }
    const options: RingOptions = { mode: j.mode, epoch: j.epoch };
    if (j.mode === 'slots') options.slotBits = j.param;
    else options.vnodes = j.param;
    const ring = HashRing.create(j.members, options);
    if (ring.fingerprint !== j.fingerprint) {
      throw new Error(
        `hash ring: fingerprint mismatch at epoch ${j.epoch} (committed ${j.fingerprint}, rebuilt ${ring.fingerprint}): ` +
          'this process builds a different ring from the same members',
      );
    }
    return ring;
  }

  toJSON(): RingJSON {
    return {
      v: 1,
      mode: this.mode,
      epoch: this.epoch,
      param: this._param,
      members: this.members.map((m) => ({ id: m.id, weight: m.weight })),
      fingerprint: this.fingerprint,
    };
  }

  get size(): number {
    return this._ids.length;
  }

  /** 'slots': log2 of the slot count; 'ketama': vnodes. */
  get param(): number {
    return this._param;
  }

  has(id: string): boolean {
    return this._ids.indexOf(id) >= 0;
  }

  /** The member that owns `key`. */
  owner(key: string): string {
    if (typeof key !== 'string') throw new TypeError('hash ring: keys are strings');
    const table = this._table;
    if (table !== null) return this._ids[table[murmur3(key, 0) >>> this._shift]];
    return this._ids[this._owners![this._pointIndex(ketamaPoint(key))]];
  }

  /**
   * The first min(r, reachable members) distinct owners met walking clockwise from `key`;
   * the first is owner(key). A member that owns no arc (possible only with extreme weights) is
   * never returned.
   */
  replicas(key: string, r: number): string[] {
    if (typeof key !== 'string') throw new TypeError('hash ring: keys are strings');
    if (!Number.isInteger(r) || r < 1) throw new RangeError(`hash ring: replica count must be an integer >= 1, got ${r}`);
    const want = Math.min(r, this._ids.length);
    const out: string[] = [];
    const seen = this._seen;
    let g = ++this._walk;
    if (g === 0xffffffff) {
      seen.fill(0);
      this._walk = g = 1;
    }
    const table = this._table;
    if (table !== null) {
      const size = table.length;
      const mask = size - 1;
      const s0 = murmur3(key, 0) >>> this._shift;
      // Bounded by one turn of the table.
      for (let i = 0; i < size && out.length < want; i++) {
        const o = table[(s0 + i) & mask];
        if (seen[o] !== g) {
          seen[o] = g;
          out.push(this._ids[o]);
        }
      }
      return out;
    }
    const owners = this._owners!;
    const len = owners.length;
    const p0 = this._pointIndex(ketamaPoint(key));
    for (let i = 0; i < len && out.length < want; i++) {
      let p = p0 + i;
      if (p >= len) p -= len;
      const o = owners[p];
      if (seen[o] !== g) {
        seen[o] = g;
        out.push(this._ids[o]);
      }
    }
    return out;
  }

  /** A new ring with `member` added and the epoch advanced (or set). Throws if the id is present. */
  with(member: RingMember, epoch: number = this.epoch + 1): HashRing {
    const e = checkEpoch(epoch);
    const list = checkMembers([...this.members, member]);
    if (this._table === null) return HashRing._ketama(e, this._param, list);
    const sm = slotMembers(list);
    const table = addToSlotTable(this._table, sm, list.length - 1);
    return new HashRing('slots', e, this._param, list, table, null, null);
  }

  /** A new ring without member `id` and the epoch advanced (or set). Throws if absent or last. */
  without(id: string, epoch: number = this.epoch + 1): HashRing {
    const e = checkEpoch(epoch);
    const at = this._ids.indexOf(id);
    if (at < 0) throw new RangeError(`hash ring: no member ${JSON.stringify(id)}`);
    if (this._ids.length === 1) throw new RangeError('hash ring: cannot remove the last member (a ring needs at least one)');
    const list = this.members.filter((_, i) => i !== at);
    Object.freeze(list);
    if (this._table === null) return HashRing._ketama(e, this._param, list);
    const sm = slotMembers(list);
    const table = removeFromSlotTable(this._table, sm, at);
    return new HashRing('slots', e, this._param, list, table, null, null);
  }

  /** Keys among `keys` whose owner differs between this ring and `other`. */
  diff(other: HashRing, keys: readonly string[]): KeyMove[] {
    const out: KeyMove[] = [];
    for (let i = 0; i < keys.length; i++) {
      const from = this.owner(keys[i]);
      const to = other.owner(keys[i]);
      if (from !== to) out.push({ key: keys[i], from, to });
    }
    return out;
  }

  /**
   * The exact fraction of the hash space whose owner differs between this ring and `other`
   * (any modes): the expected share of keys that move.
   */
  movedShare(other: HashRing): number {
    const a = this._arcs();
    const b = other._arcs();
    let i = 0;
    let j = 0;
    let prev = -1;
    let moved = 0;
    // Both arc lists end at 2^32 - 1; each step closes the segment (prev, min(endA, endB)].
    while (i < a.ends.length && j < b.ends.length) {
      const ea = a.ends[i];
      const eb = b.ends[j];
      const end = ea < eb ? ea : eb;
      if (a.ids[i] !== b.ids[j]) moved += end - prev;
      prev = end;
      if (ea === end) i++;
      if (eb === end) j++;
    }
    return moved / HASH_SPACE;
  }

  /** The exact fraction of the hash space each member owns (0 for a member that owns no arc). */
  shares(): Map<string, number> {
    const out = new Map<string, number>();
    for (const id of this._ids) out.set(id, 0);
    const a = this._arcs();
    let prev = -1;
    for (let i = 0; i < a.ends.length; i++) {
      out.set(a.ids[i], out.get(a.ids[i])! + (a.ends[i] - prev) / HASH_SPACE);
      prev = a.ends[i];
    }
    return out;
  }

  /** Number of arcs (runs of equal owner): the ring's effective point count. */
  get arcCount(): number {
    return this._arcs().ends.length;
  }

  /** First point >= h, wrapping to 0 (hashring `find`). */
  private _pointIndex(h: number): number {
    const points = this._points!;
    const b = h >>> this._bshift;
    const bucket = this._bucket!;
    let lo = bucket[b];
    const hi = bucket[b + 1];
    while (lo < hi && points[lo] < h) lo++;
    return lo === points.length ? 0 : lo;
  }

  /** The ring as arcs: ascending inclusive ends, the last one 2^32 - 1, and each arc's owner id. */
  private _arcs(): Arcs {
    if (this._arcsMemo !== null) return this._arcsMemo;
    const ends: number[] = [];
    const ids: string[] = [];
    const table = this._table;
    if (table !== null) {
      const size = table.length;
      const span = HASH_SPACE / size;
      for (let s = 0; s < size; s++) {
        if (s + 1 < size && table[s + 1] === table[s]) continue;
        ends.push((s + 1) * span - 1);
        ids.push(this._ids[table[s]]);
      }
    } else {
      const points = this._points!;
      const owners = this._owners!;
      for (let k = 0; k < points.length; k++) {
        ends.push(points[k]);
        ids.push(this._ids[owners[k]]);
      }
      if (ends[ends.length - 1] !== HASH_SPACE - 1) {
        ends.push(HASH_SPACE - 1);
        ids.push(this._ids[owners[0]]);
      }
    }
    this._arcsMemo = { ends, ids };
    return this._arcsMemo;
  }
}

interface Arcs {
  ends: number[];
  ids: string[];
}

function checkEpoch(epoch: number): number {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`hash ring: epoch must be a non-negative integer, got ${epoch}`);
  return epoch;
}

/** Validates and copies the member list (frozen copies, order kept). */
function checkMembers(members: readonly RingMember[]): readonly RingMember[] {
  if (!Array.isArray(members)) throw new TypeError('hash ring: members must be an array of {id, weight}');
  if (members.length === 0) throw new RangeError('hash ring: a ring needs at least one member');
  if (members.length > MEMBERS_MAX) throw new RangeError(`hash ring: ${members.length} members exceed ${MEMBERS_MAX}`);
  const seen = new Set<string>();
  const out: RingMember[] = [];
  for (const m of members) {
    if (m === null || typeof m !== 'object') throw new TypeError('hash ring: a member must be an object {id, weight}');
    const { id, weight } = m;
    if (typeof id !== 'string' || id.length === 0 || id.length > ID_LENGTH_MAX) {
      throw new TypeError(`hash ring: member id must be a non-empty string of at most ${ID_LENGTH_MAX} characters, got ${JSON.stringify(id)}`);
    }
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
      throw new RangeError(`hash ring: member ${JSON.stringify(id)} has weight ${weight}; weights must be finite and > 0`);
    }
    if (seen.has(id)) throw new RangeError(`hash ring: duplicate member id ${JSON.stringify(id)}`);
    seen.add(id);
    out.push(Object.freeze({ id, weight }));
  }
  return Object.freeze(out);
}

function slotMembers(list: readonly RingMember[]): SlotMembers {
  const ids = list.map((m) => m.id);
  const weights = list.map((m) => m.weight);
  const seeds = new Int32Array(list.length);
  const bySeed = new Map<number, string>();
  for (let i = 0; i < list.length; i++) {
    seeds[i] = placementSeed(ids[i]);
    const clash = bySeed.get(seeds[i]);
    // Two ids with one placement seed would draw identical scores everywhere and one would own nothing.
    if (clash !== undefined) throw new RangeError(`hash ring: ids ${JSON.stringify(clash)} and ${JSON.stringify(ids[i])} collide in the placement hash; rename one`);
    bySeed.set(seeds[i], ids[i]);
  }
  return { ids, weights, seeds };
}

function fingerprintOf(
  mode: RingMode,
  param: number,
  members: readonly RingMember[],
  table: Uint16Array | null,
  points: Uint32Array | null,
  owners: Uint16Array | null,
): number {
  const head = murmur3(JSON.stringify([mode, param, members.map((m) => [m.id, m.weight])]), 0);
  if (table !== null) return murmur3Words(table, table.length, head);
  return murmur3Words(owners!, owners!.length, murmur3Words(points!, points!.length, head));
}
