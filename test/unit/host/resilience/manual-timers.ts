// Test support for the host resilience wrappers: a manual clock and timer queue injected through
// their `now` / `timers` options (no global fake timers), and a promise watcher.

/** A manual clock and timer queue; advance() runs due timers in time order and lets promises settle. */
export class ManualTimers {
  now = 0;
  private seq = 0;
  private q: Array<{ at: number; id: number; fn: () => void }> = [];
  readonly clock = () => this.now;
  set = (fn: () => void, ms: number) => {
    const id = ++this.seq;
    this.q.push({ at: this.now + ms, id, fn });
    return id;
  };
  clear = (h: unknown) => {
    this.q = this.q.filter((t) => t.id !== h);
  };
  get pending() {
    return this.q.length;
  }
  async settle() {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }
  async advance(ms: number) {
    const target = this.now + ms;
    await this.settle();
    for (;;) {
      this.q.sort((a, b) => a.at - b.at || a.id - b.id);
      const t = this.q[0];
      if (!t || t.at > target) break;
      this.q.shift();
      this.now = t.at;
      t.fn();
      await this.settle();
    }
    this.now = target;
    await this.settle();
  }
}

/** Records how a promise settles without awaiting it. */
export function watch<T>(p: Promise<T>) {
  const w: { done: boolean; value?: T; error?: any } = { done: false };
  p.then(
    (v) => Object.assign(w, { done: true, value: v }),
    (e) => Object.assign(w, { done: true, error: e }),
  );
  return w;
}
