import { describe, expect, it } from 'vitest';
import { RejectionLog, type BusLogEntry } from '../../../../host/bus/rejection-log.js';

describe('RejectionLog', () => {
  it('counts every rejection, logs a burst per window and summarises the rest', () => {
    const lines: BusLogEntry[] = [];
    const log = new RejectionLog((e) => lines.push(e), 2, 1000);
    for (let i = 0; i < 10; i++) log.record('malformed', { address: '10.0.0.' + i }, 100 + i);
    log.record('bad-credentials', { clientId: 'x' }, 200);
    expect(log.counts()).toEqual({ malformed: 10, 'bad-credentials': 1 });
    expect(lines.filter((l) => l.ev === 'bus.reject' && l.reason === 'malformed')).toHaveLength(2);
    expect(lines.filter((l) => l.reason === 'bad-credentials')).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', ev: 'bus.reject', reason: 'malformed', address: '10.0.0.0' });

    // The next window opens: the summary of the last one comes first.
    log.record('malformed', {}, 1200);
    const summary = lines.find((l) => l.ev === 'bus.reject.suppressed');
    expect(summary).toMatchObject({ reason: 'malformed', count: 8 });
    expect(lines[lines.length - 1]).toMatchObject({ ev: 'bus.reject', reason: 'malformed' });
  });

  it('flush() writes pending summaries once', () => {
    const lines: BusLogEntry[] = [];
    const log = new RejectionLog((e) => lines.push(e), 1, 1000);
    for (let i = 0; i < 4; i++) log.record('publish-rate', {}, 0);
    log.flush();
    log.flush();
    expect(lines.filter((l) => l.ev === 'bus.reject.suppressed')).toEqual([
      expect.objectContaining({ reason: 'publish-rate', count: 3 }),
    ]);
  });
});
