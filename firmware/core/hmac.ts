/**
 * HMAC-SHA256 (RFC 2104, test vectors RFC 4231) over byte Strings, on any SHA-256 function.
 *
 * The board passes its native hash (`crypto.SHA256` returns an ArrayBuffer; wrap it as
 * `function (s) { return E.toString(crypto.SHA256(s)); }`) or the JS one from sha256.ts; the
 * host passes either. The key pads (K ^ ipad, K ^ opad, RFC 2104 §2) are built ONCE per key in
 * the constructor: rebuilding them per call is what held a naive version to ~470 MACs/s on the
 * interpreter. With a resumable hash (sha256.ts's `sha256Resume`) the hash state after each
 * 64-byte pad is saved too, so a MAC costs two fewer compressions.
 */

/** A SHA-256 function over byte Strings returning the 32-byte digest as a byte String. */
export type Sha256Fn = (bytes: string) => string;

/** A SHA-256 that can save its state after whole 64-byte blocks and resume from it. */
export interface Sha256Resume {
  /** State after hashing `prefix` (length a multiple of 64). Opaque; never modified by fin. */
  mid(prefix: string): unknown;
  /** SHA-256 of prefix + s, given mid(prefix) and prefix's length `before`. */
  fin(mid: any, s: string, before: number): string;
}

/** SHA-256 block size in bytes (FIPS 180-4 §1): the HMAC key pad length B of RFC 2104. */
export var HMAC_BLOCK_BYTES = 64;

export class Hmac {
  _h: Sha256Fn;
  /** K ^ ipad and K ^ opad, 64 bytes each (RFC 2104 §2 steps 1-2 and 5). */
  _i: string;
  _o: string;
  _r: Sha256Resume | undefined;
  _mi: unknown;
  _mo: unknown;

  /**
   * key: the key bytes (a byte String; hex-decode a configured key with fromHex first).
   * sha: the hash used for keys longer than a block and, without `resume`, for every MAC.
   */
  constructor(key: string, sha: Sha256Fn, resume?: Sha256Resume) {
    // RFC 2104 §3: keys longer than B are hashed first; shorter ones are zero-padded to B.
    if (key.length > HMAC_BLOCK_BYTES) key = sha(key);
    var i = '';
    var o = '';
    var j, c;
    for (j = 0; j < HMAC_BLOCK_BYTES; j++) {
      c = j < key.length ? key.charCodeAt(j) : 0;
      i += String.fromCharCode(c ^ 0x36);
      o += String.fromCharCode(c ^ 0x5c);
    }
    this._h = sha;
    this._i = i;
    this._o = o;
    this._r = resume;
    if (resume) {
      this._mi = resume.mid(i);
      this._mo = resume.mid(o);
    }
  }

  /** HMAC(K, msg) = H(K ^ opad || H(K ^ ipad || msg)): the 32-byte MAC as a byte String. */
  digest(msg: string): string {
    var r = this._r;
    if (r) return r.fin(this._mo, r.fin(this._mi, msg, HMAC_BLOCK_BYTES), HMAC_BLOCK_BYTES);
    var h = this._h;
    return h(this._o + h(this._i + msg));
  }
}

var HEX = '0123456789abcdef';

/** Lower-case hex of a byte String. */
export function hex(bytes: string): string {
  var r = '';
  var i, c;
  for (i = 0; i < bytes.length; i++) {
    c = bytes.charCodeAt(i);
    r += HEX.charAt((c >> 4) & 15) + HEX.charAt(c & 15);
  }
  return r;
}

/**
 * Bytes of a hex String (either case), or null when it has odd length or a non-hex char. The
 * class is a plain range list: Espruino's regex engine handles ranges and `+`, not `{n,m}`.
 */
export function fromHex(h: string): string | null {
  if (typeof h !== 'string' || h.length & 1 || (h.length && !/^[0-9a-fA-F]+$/.test(h))) return null;
  var r = '';
  var i;
  for (i = 0; i < h.length; i += 2) r += String.fromCharCode(parseInt(h.substr(i, 2), 16));
  return r;
}

/**
 * Equal byte Strings, in time that depends only on the length (a MAC check must not leak how
 * many leading bytes matched). Lengths are public: a MAC has a fixed size.
 */
export function sameBytes(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  var d = 0;
  var i;
  for (i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}
