/**
 * When may the owner acknowledge (PUBACK) a reading? After it is durable on W members, the
 * owner's own disk included, where W depends on the policy:
 *
 *   'quorum' (default): W = floor(R/2) + 1 of the configured replication factor R;
 *   'all':              W = every member of the device's replica set (min(R, ring size)),
 *                       and never fewer than the quorum above (a shrunken ring does not lower
 *                       the durability promised by 'all' below that of 'quorum').
 *
 * And in both, the HEIR (replica #2, the member that becomes the owner if this one leaves the
 * ring, see placement.ts) must be among the W. So when an owner dies, its successor already holds
 * every reading that was acknowledged, with no catch-up on the failover path.
 *
 * A write fails (no PUBACK; the device retransmits, and the store deduplicates by (device, seq))
 * when so many targets refused that W can no longer be reached, when the heir refused, or when
 * the shell's timeout fires first. Readings are immutable and versioned by (device, seq), so a
 * retransmitted reading replicates idempotently.
 */
export type AckPolicy = 'quorum' | 'all';

export function quorumOf(r: number): number {
  return (r >> 1) + 1;
}

/**
 * Copies needed (owner included) for a device whose replica set has `setSize` members (the
 * owner plus min(R, ring) - 1 others), under `policy` with replication factor `r`.
 */
export function copiesNeeded(policy: AckPolicy, r: number, setSize: number): number {
  const q = quorumOf(r);
  if (policy === 'all') return Math.max(q, Math.min(r, setSize));
  return q;
}

export type WriteState = 'pending' | 'ok' | 'failed';

/**
 * Acknowledgements of one write from its targets (the replica set without the owner). Pure.
 */
export class WriteQuorum {
  readonly targets: readonly string[];
  readonly heir: string | null;
  /** Acks needed from targets (copies needed minus the owner's own). */
  readonly need: number;
  okFrom: string[] = [];
  refusedFrom: string[] = [];
  reason = '';

  constructor(targets: readonly string[], need: number) {
    this.targets = targets;
    this.heir = targets.length > 0 && need > 0 ? targets[0] : null;
    this.need = need;
  }

  /** A target answered; returns the new state. Answers from non-targets or repeats count once. */
  answer(from: string, ok: boolean, reason = ''): WriteState {
    if (this.targets.indexOf(from) < 0) return this.state();
    if (this.okFrom.indexOf(from) >= 0 || this.refusedFrom.indexOf(from) >= 0) return this.state();
    if (ok) this.okFrom.push(from);
    else {
      this.refusedFrom.push(from);
      if (!this.reason) this.reason = from + ':' + (reason || 'refused');
    }
    return this.state();
  }

  state(): WriteState {
    if (this.need > this.targets.length) return 'failed';
    if (this.heir !== null && this.refusedFrom.indexOf(this.heir) >= 0) return 'failed';
    if (this.targets.length - this.refusedFrom.length < this.need) return 'failed';
    if (this.okFrom.length >= this.need && (this.heir === null || this.okFrom.indexOf(this.heir) >= 0)) return 'ok';
    return 'pending';
  }
}
