/**
 * Where a device lives, derived from the committed cluster state alone, so every companion that
 * applied the same log index computes the same answer: the hash ring (host/ring, 'slots' mode)
 * over the members that are on the ring, its owner for a device, and the device's replica set.
 *
 * Replica set = the owner, then the other ring members in the RENDEZVOUS ORDER of the device's
 * slot (the order slot-table.ts uses to pick the slot's winner). Not `HashRing.replicas`, which
 * walks to the next distinct owners clockwise: with a rendezvous slot table, removing the owner
 * hands each of its slots to that slot's runner-up, which a clockwise walk does not name. With
 * the rendezvous order, replica #2 (the "heir") is exactly the member that owns the device once
 * the owner leaves the ring, so an heir that acknowledged every reading makes the new owner hold
 * everything that was acknowledged (see write-quorum.ts).
 *
 * Weights: with equal weights the draw compares the integer scores (higher wins); otherwise
 * -ln(u)/weight (lower wins), exactly as slot-table.ts; ties go to the smaller id in both.
 */
import { HashRing, type RingJSON } from '../ring/hash-ring.js';
import { murmur3, murmur3Word } from '../ring/murmur3.js';
import { placementSeed } from '../ring/slot-table.js';
import { parseMemberAddr, type MemberAddr } from './member-addr.js';

export interface PlacementMember {
  id: string;
  weight: number;
  addr: string;
  parsed: MemberAddr;
}

/** What placement reads from the state machine (ClusterState satisfies it). */
export interface MembershipSource {
  epoch: number;
  members(): Array<{ id: string; addr: string; weight: number }>;
}

const TWO_POW_M32 = 1 / 4294967296;

export class Placement {
  readonly epoch: number;
  /** Every member, sorted by id. */
  readonly members: readonly PlacementMember[];
  /** Members on the ring (not `out`), sorted by id. */
  readonly inRing: readonly string[];
  /** null when no member is on the ring: nothing can be placed. */
  readonly ring: HashRing | null;
  readonly slotBits: number;
  _seeds: Int32Array;
  _weights: number[];
  _equal: boolean;
  _byId = new Map<string, PlacementMember>();
  /** Scratch for ranking (one allocation per placement, not per call). */
  _scores: Float64Array;
  _order: number[];

  constructor(src: MembershipSource, slotBits: number) {
    this.epoch = src.epoch;
    this.slotBits = slotBits;
    const all: PlacementMember[] = src.members().map((m) => ({ id: m.id, weight: m.weight, addr: m.addr, parsed: parseMemberAddr(m.addr) }));
    all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.members = all;
    for (const m of all) this._byId.set(m.id, m);
    const ring = all.filter((m) => !m.parsed.out);
    this.inRing = ring.map((m) => m.id);
    this.ring = ring.length > 0 ? HashRing.create(ring.map((m) => ({ id: m.id, weight: m.weight })), { epoch: src.epoch, slotBits }) : null;
    this._seeds = new Int32Array(ring.length);
    this._weights = ring.map((m) => m.weight);
    for (let i = 0; i < ring.length; i++) this._seeds[i] = placementSeed(ring[i].id);
    this._equal = this._weights.every((w) => w === this._weights[0]);
    this._scores = new Float64Array(ring.length);
    this._order = ring.map((_, i) => i);
  }

  member(id: string): PlacementMember | undefined {
    return this._byId.get(id);
  }

  onRing(id: string): boolean {
    return this.inRing.indexOf(id) >= 0;
  }

  /** The ring's owner of `device`, or null with an empty ring. */
  owner(device: string): string | null {
    return this.ring ? this.ring.owner(device) : null;
  }

  /** Every ring member in the rendezvous order of the device's slot; [0] is owner(device). */
  ranking(device: string): string[] {
    const n = this.inRing.length;
    if (n === 0) return [];
    const slot = murmur3(device, 0) >>> (32 - this.slotBits);
    const sc = this._scores;
    const order = this._order;
    for (let i = 0; i < n; i++) {
      order[i] = i;
      const s = murmur3Word(slot, this._seeds[i]);
      // Equal weights: higher score wins, so store the negation and sort ascending.
      sc[i] = this._equal ? -s : -Math.log((s + 0.5) * TWO_POW_M32) / this._weights[i];
    }
    const ids = this.inRing;
    order.sort((a, b) => sc[a] - sc[b] || (ids[a] < ids[b] ? -1 : ids[a] > ids[b] ? 1 : 0));
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(ids[order[i]]);
    return out;
  }

  /**
   * The members that hold `device`: its committed `owner` first (even if the ring would now
   * pick another: the coordinator is about to move it), then ring members in rendezvous order,
   * at most `r` in all.
   */
  replicaSet(owner: string, device: string, r: number): string[] {
    const out = [owner];
    const rank = this.ranking(device);
    for (let i = 0; i < rank.length && out.length < r; i++) if (rank[i] !== owner) out.push(rank[i]);
    return out;
  }

  ringJSON(): RingJSON | null {
    return this.ring ? this.ring.toJSON() : null;
  }
}

/**
 * One Placement per committed membership: rebuilt only when the epoch or the member list
 * changes (a ring build hashes 2^slotBits x members).
 */
export class PlacementCache {
  _slotBits: number;
  _key = '';
  _p: Placement | null = null;

  constructor(slotBits: number) {
    this._slotBits = slotBits;
  }

  of(src: MembershipSource): Placement {
    const members = src.members();
    let key = String(src.epoch);
    for (const m of members) key += '\n' + m.id + ' ' + m.weight + ' ' + m.addr;
    if (this._p === null || key !== this._key) {
      this._p = new Placement({ epoch: src.epoch, members: () => members }, this._slotBits);
      this._key = key;
    }
    return this._p;
  }
}
