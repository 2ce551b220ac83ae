/**
 * Arithmetic on sets of sequence numbers kept as sorted, disjoint, inclusive runs [from, to]
 * (TelemetryStore.seqRanges): what anti-entropy compares. A replica sends the runs it holds for
 * a device; the peer answers with the rows in (its runs minus those), so a device with no gaps
 * costs one run on each side whatever its size.
 */
import type { SeqRange } from '../store/telemetry-store.js';

export type { SeqRange };

/** The seqs in `a` that are not in `b`, as runs. Both inputs sorted, disjoint, inclusive. */
export function subtractRanges(a: readonly SeqRange[], b: readonly SeqRange[]): SeqRange[] {
  const out: SeqRange[] = [];
  let j = 0;
  for (let i = 0; i < a.length; i++) {
    let from = a[i][0];
    const to = a[i][1];
    while (j < b.length && b[j][1] < from) j++;
    let k = j;
    while (from <= to) {
      if (k >= b.length || b[k][0] > to) {
        out.push([from, to]);
        break;
      }
      if (b[k][0] > from) out.push([from, b[k][0] - 1]);
      from = b[k][1] + 1;
      k++;
    }
  }
  return out;
}

/** The runs clipped to seq <= upTo. */
export function clipRanges(a: readonly SeqRange[], upTo: number): SeqRange[] {
  const out: SeqRange[] = [];
  for (let i = 0; i < a.length; i++) {
    if (a[i][0] > upTo) break;
    out.push([a[i][0], Math.min(a[i][1], upTo)]);
  }
  return out;
}

/** How many seqs the runs hold. */
export function rangesCount(a: readonly SeqRange[]): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += a[i][1] - a[i][0] + 1;
  return n;
}

/** Runs from a peer are peer input: sorted, disjoint, integer, non-negative, at most `max`. */
export function validRanges(x: unknown, max: number): x is SeqRange[] {
  if (!Array.isArray(x) || x.length > max) return false;
  let prev = -2;
  for (let i = 0; i < x.length; i++) {
    const r = x[i];
    if (!Array.isArray(r) || r.length !== 2) return false;
    const a = r[0];
    const b = r[1];
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b < a || a <= prev + 1) return false;
    prev = b;
  }
  return true;
}

/** Runs of a sorted list of distinct seqs. */
export function rangesOf(seqs: readonly number[]): SeqRange[] {
  const out: SeqRange[] = [];
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i];
    if (out.length > 0 && out[out.length - 1][1] === s - 1) out[out.length - 1][1] = s;
    else out.push([s, s]);
  }
  return out;
}
