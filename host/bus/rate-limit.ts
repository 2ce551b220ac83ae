/**
 * Token bucket for per-client publish rates. Pure: the caller passes the time.
 * A take() that finds no token reserves the next one and says how long to wait for it, so a
 * caller that delays by that much keeps the long-run rate at ratePerSec while absorbing a burst.
 */
export class TokenBucket {
  private _tokens: number;
  private _atMs: number;

  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
    nowMs: number,
  ) {
    if (!(ratePerSec > 0) || !(burst >= 1)) throw new Error('TokenBucket needs ratePerSec > 0 and burst >= 1');
    this._tokens = burst;
    this._atMs = nowMs;
  }

  /**
   * Takes one token. Returns 0 when one was available, the wait in ms until the reserved token
   * is due, or -1 (nothing reserved) when that wait would exceed waitMaxMs.
   */
  take(nowMs: number, waitMaxMs: number): number {
    if (nowMs > this._atMs) {
      this._tokens = Math.min(this.burst, this._tokens + ((nowMs - this._atMs) * this.ratePerSec) / 1000);
      this._atMs = nowMs;
    }
    if (this._tokens >= 1) {
      this._tokens -= 1;
      return 0;
    }
    const waitMs = Math.ceil(((1 - this._tokens) * 1000) / this.ratePerSec);
    if (waitMs > waitMaxMs) return -1;
    this._tokens -= 1;
    return waitMs;
  }
}
