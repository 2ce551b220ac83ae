/**
 * The replicated state machine of the companion cluster: who the members are (id, address,
 * weight on the hash ring), the ring epoch, and which member owns each device.
 *
 * Every replica applies the same committed commands in the same order, so `apply` must be a
 * pure function of (state, command): no clock, no randomness, no iteration order that depends
 * on history (everything observable is sorted). A command that is invalid or does not hold
 * against the current state is a no-op with a reason, identically on every replica; it never
 * throws, because a command is peer input once it is in the log.
 *
 * Epoch rule: every membership change (add, remove, weight or address change) bumps the ring
 * epoch by one, because the ring changed. `ring.epoch` moves it forward explicitly (never back).
 * `device.assign` may name the epoch its assignments were computed for (`ifEpoch`): it applies
 * only if the ring is still at that epoch, so a leader that computed placements from an old ring
 * cannot overwrite newer ones.
 */
import { NODE_ID_RE } from './raft-types.js';

export interface Member {
  id: string;
  /** host:port where the member's companion serves devices (not its Raft port). */
  addr: string;
  /** Share of the hash ring, 1..WEIGHT_MAX. */
  weight: number;
}

export type ClusterCommand =
  | { t: 'member.add'; id: string; addr: string; weight: number }
  | { t: 'member.remove'; id: string }
  | { t: 'member.update'; id: string; addr?: string; weight?: number }
  | { t: 'ring.epoch'; epoch: number }
  | { t: 'device.assign'; ifEpoch?: number; set: Record<string, string | null> }
  | { t: 'noop' };

export interface ApplyResult {
  ok: boolean;
  /** Why the command changed nothing. */
  reason?: string;
}

/** Ring weight range: integer shares; 1000 gives fine ratios without huge virtual-node counts. */
export const WEIGHT_MAX = 1000;
/**
 * Devices tracked. The whole state is one snapshot and must fit one transport frame and one
 * Raft snapshot (4 MiB) at roughly 70 bytes per assignment in JSON.
 */
export const DEVICES_MAX = 50000;
/** Assignments in one command: keeps one entry well under the 64 KiB entry limit. */
export const ASSIGNMENTS_PER_CMD_MAX = 500;
/** Members: matches the Raft voter bound; more companions would not be voters anyway. */
export const MEMBERS_MAX = 15;
/** host:port text. */
export const ADDR_BYTES_MAX = 255;

const DEVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const EPOCH_MAX = Number.MAX_SAFE_INTEGER - 1;

export interface ClusterSnapshot {
  v: 1;
  index: number;
  epoch: number;
  members: Member[];
  /** [device, owner] sorted by device. */
  owners: [string, string][];
}

function isAddr(x: unknown): x is string {
  return typeof x === 'string' && x.length > 0 && x.length <= ADDR_BYTES_MAX && !/\s/.test(x);
}

function isWeight(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= WEIGHT_MAX;
}

function isEpoch(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= EPOCH_MAX;
}

export class ClusterState {
  _members = new Map<string, Member>();
  _owners = new Map<string, string>();
  epoch = 0;
  /** Raft index of the last command applied (valid or not). */
  appliedIndex = 0;

  /**
   * Apply the command committed at `index`. Indices at or below appliedIndex are ignored (a
   * replay after restart); everything else is validated and applied, or refused with a reason.
   */
  apply(index: number, cmd: unknown): ApplyResult {
    if (index <= this.appliedIndex) return { ok: false, reason: 'already-applied' };
    this.appliedIndex = index;
    return this._apply(cmd);
  }

  _apply(cmd: unknown): ApplyResult {
    if (typeof cmd !== 'object' || cmd === null || Array.isArray(cmd)) {
      return { ok: false, reason: 'not-object' };
    }
    const c = cmd as Record<string, unknown>;
    switch (c.t) {
      case 'noop':
        return { ok: true };
      case 'member.add': {
        if (typeof c.id !== 'string' || !NODE_ID_RE.test(c.id)) return { ok: false, reason: 'bad-id' };
        if (!isAddr(c.addr)) return { ok: false, reason: 'bad-addr' };
        if (!isWeight(c.weight)) return { ok: false, reason: 'bad-weight' };
        if (this._members.has(c.id)) return { ok: false, reason: 'member-exists' };
        if (this._members.size >= MEMBERS_MAX) return { ok: false, reason: 'too-many-members' };
        this._members.set(c.id, { id: c.id, addr: c.addr, weight: c.weight });
        this._bump();
        return { ok: true };
      }
      case 'member.remove': {
        if (typeof c.id !== 'string' || !this._members.has(c.id)) {
          return { ok: false, reason: 'unknown-member' };
        }
        this._members.delete(c.id);
        // Its devices become unassigned: the leader re-places them on the new ring.
        const gone: string[] = [];
        this._owners.forEach((owner, dev) => {
          if (owner === c.id) gone.push(dev);
        });
        for (let i = 0; i < gone.length; i++) this._owners.delete(gone[i]);
        this._bump();
        return { ok: true };
      }
      case 'member.update': {
        if (typeof c.id !== 'string') return { ok: false, reason: 'unknown-member' };
        const m = this._members.get(c.id);
        if (!m) return { ok: false, reason: 'unknown-member' };
        if (c.addr !== undefined && !isAddr(c.addr)) return { ok: false, reason: 'bad-addr' };
        if (c.weight !== undefined && !isWeight(c.weight)) return { ok: false, reason: 'bad-weight' };
        const addr = c.addr === undefined ? m.addr : (c.addr as string);
        const weight = c.weight === undefined ? m.weight : (c.weight as number);
        if (addr === m.addr && weight === m.weight) return { ok: false, reason: 'unchanged' };
        this._members.set(c.id, { id: c.id, addr, weight });
        this._bump();
        return { ok: true };
      }
      case 'ring.epoch': {
        if (!isEpoch(c.epoch)) return { ok: false, reason: 'bad-epoch' };
        if (c.epoch <= this.epoch) return { ok: false, reason: 'stale-epoch' };
        this.epoch = c.epoch;
        return { ok: true };
      }
      case 'device.assign': {
        if (c.ifEpoch !== undefined) {
          if (!isEpoch(c.ifEpoch)) return { ok: false, reason: 'bad-epoch' };
          if (c.ifEpoch !== this.epoch) return { ok: false, reason: 'epoch-mismatch' };
        }
        const set = c.set;
        if (typeof set !== 'object' || set === null || Array.isArray(set)) {
          return { ok: false, reason: 'bad-set' };
        }
        const keys = Object.keys(set).sort();
        if (keys.length === 0 || keys.length > ASSIGNMENTS_PER_CMD_MAX) {
          return { ok: false, reason: 'bad-set' };
        }
        // Validate everything first: a command applies whole or not at all.
        let added = 0;
        const s = set as Record<string, unknown>;
        for (let i = 0; i < keys.length; i++) {
          const dev = keys[i];
          const owner = s[dev];
          if (!DEVICE_ID_RE.test(dev)) return { ok: false, reason: 'bad-device' };
          if (owner === null) continue;
          if (typeof owner !== 'string' || !this._members.has(owner)) {
            return { ok: false, reason: 'unknown-owner' };
          }
          if (!this._owners.has(dev)) added++;
        }
        if (this._owners.size + added > DEVICES_MAX) return { ok: false, reason: 'too-many-devices' };
        for (let i = 0; i < keys.length; i++) {
          const owner = s[keys[i]];
          if (owner === null) this._owners.delete(keys[i]);
          else this._owners.set(keys[i], owner as string);
        }
        return { ok: true };
      }
      default:
        return { ok: false, reason: 'unknown-command' };
    }
  }

  _bump(): void {
    if (this.epoch < EPOCH_MAX) this.epoch++;
  }

  members(): Member[] {
    const out: Member[] = [];
    this._members.forEach((m) => out.push({ id: m.id, addr: m.addr, weight: m.weight }));
    out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return out;
  }

  member(id: string): Member | undefined {
    const m = this._members.get(id);
    return m ? { id: m.id, addr: m.addr, weight: m.weight } : undefined;
  }

  owner(device: string): string | undefined {
    return this._owners.get(device);
  }

  deviceCount(): number {
    return this._owners.size;
  }

  /** Devices owned by `member`, sorted. */
  devicesOf(member: string): string[] {
    const out: string[] = [];
    this._owners.forEach((o, d) => {
      if (o === member) out.push(d);
    });
    return out.sort();
  }

  toJSON(): ClusterSnapshot {
    const owners: [string, string][] = [];
    this._owners.forEach((o, d) => owners.push([d, o]));
    owners.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return { v: 1, index: this.appliedIndex, epoch: this.epoch, members: this.members(), owners };
  }

  /** Canonical JSON: equal states give equal text (used as the replicas' digest too). */
  snapshot(): string {
    return JSON.stringify(this.toJSON());
  }

  /**
   * Replace this state with a snapshot's. Returns '' or the reason it was refused (then nothing
   * changed). The text may come from a peer (Raft snapshot install), so it is checked.
   */
  restore(text: string): string {
    let x: unknown;
    try {
      x = JSON.parse(text);
    } catch {
      return 'bad-json';
    }
    if (typeof x !== 'object' || x === null) return 'bad-snapshot';
    const s = x as Record<string, unknown>;
    if (s.v !== 1 || !isEpoch(s.index) || !isEpoch(s.epoch)) return 'bad-snapshot';
    if (!Array.isArray(s.members) || s.members.length > MEMBERS_MAX) return 'bad-snapshot';
    if (!Array.isArray(s.owners) || s.owners.length > DEVICES_MAX) return 'bad-snapshot';
    const members = new Map<string, Member>();
    for (let i = 0; i < s.members.length; i++) {
      const m = s.members[i] as Record<string, unknown>;
      if (typeof m !== 'object' || m === null) return 'bad-snapshot';
      if (typeof m.id !== 'string' || !NODE_ID_RE.test(m.id) || members.has(m.id)) return 'bad-snapshot';
      if (!isAddr(m.addr) || !isWeight(m.weight)) return 'bad-snapshot';
      members.set(m.id, { id: m.id, addr: m.addr, weight: m.weight });
    }
    const owners = new Map<string, string>();
    for (let i = 0; i < s.owners.length; i++) {
      const p = s.owners[i] as unknown[];
      if (!Array.isArray(p) || p.length !== 2) return 'bad-snapshot';
      const d = p[0];
      const o = p[1];
      if (typeof d !== 'string' || !DEVICE_ID_RE.test(d) || owners.has(d)) return 'bad-snapshot';
      if (typeof o !== 'string' || !members.has(o)) return 'bad-snapshot';
      owners.set(d, o);
    }
    this._members = members;
    this._owners = owners;
    this.epoch = s.epoch as number;
    this.appliedIndex = s.index as number;
    return '';
  }

  static fromSnapshot(text: string): ClusterState | string {
    const c = new ClusterState();
    const r = c.restore(text);
    return r ? r : c;
  }
}

/**
 * '' when `cmd` is a well-formed command, else why not. Only the shape: whether it applies
 * depends on the state when it commits. Shells check this BEFORE proposing, so the log never
 * carries a command every replica would refuse anyway.
 */
export function commandShapeError(cmd: unknown): string {
  if (typeof cmd !== 'object' || cmd === null || Array.isArray(cmd)) return 'not-object';
  const c = cmd as Record<string, unknown>;
  const idOk = typeof c.id === 'string' && NODE_ID_RE.test(c.id);
  switch (c.t) {
    case 'noop':
      return '';
    case 'member.add':
      if (!idOk) return 'bad-id';
      if (!isAddr(c.addr)) return 'bad-addr';
      return isWeight(c.weight) ? '' : 'bad-weight';
    case 'member.remove':
      return idOk ? '' : 'bad-id';
    case 'member.update':
      if (!idOk) return 'bad-id';
      if (c.addr !== undefined && !isAddr(c.addr)) return 'bad-addr';
      if (c.weight !== undefined && !isWeight(c.weight)) return 'bad-weight';
      return '';
    case 'ring.epoch':
      return isEpoch(c.epoch) ? '' : 'bad-epoch';
    case 'device.assign': {
      if (c.ifEpoch !== undefined && !isEpoch(c.ifEpoch)) return 'bad-epoch';
      const set = c.set;
      if (typeof set !== 'object' || set === null || Array.isArray(set)) return 'bad-set';
      const keys = Object.keys(set);
      if (keys.length === 0 || keys.length > ASSIGNMENTS_PER_CMD_MAX) return 'bad-set';
      for (let i = 0; i < keys.length; i++) {
        if (!DEVICE_ID_RE.test(keys[i])) return 'bad-device';
        const o = (set as Record<string, unknown>)[keys[i]];
        if (o !== null && (typeof o !== 'string' || !NODE_ID_RE.test(o))) return 'unknown-owner';
      }
      return '';
    }
    default:
      return 'unknown-command';
  }
}

/** Parse a command's JSON text; undefined when it is not JSON (apply then refuses it). */
export function decodeCommand(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
