/**
 * SHA-256 (FIPS 180-4 §6.2) over a byte String (chars 0-255), digest returned as a 32-byte String.
 *
 * Used where the board has no native hash (the ESP32_IDF4 build lacks `crypto`) and by tests as
 * the reference the native path is compared with. Written for an interpreter that re-parses a
 * function body on every call (and a loop body on every iteration, skipped branches included):
 * ONE compression function runs all blocks of a message, and the word loads, the message
 * schedule and the 64 rounds are three loops with short, branch-free bodies; the words live in
 * Int32Arrays (flat, O(1) indexed on Espruino, unlike plain arrays, which are linked lists
 * there). Integers stay exact because every sum is folded back with `| 0` (ES5 bit
 * ops are 32-bit on the device too); no Math.imul, no Math.pow.
 *
 * Resumable form (`sha256Mid`/`sha256Fin`): HMAC hashes a fixed 64-byte key pad in front of every
 * message; saving the state after that block once per key removes one compression per hash
 * (two per HMAC). See hmac.ts.
 */

/** FIPS 180-4 §4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64 primes (as signed int32). */
export var K = new Int32Array([
  1116352408, 1899447441, -1245643825, -373957723, 961987163, 1508970993, -1841331548, -1424204075,
  -670586216, 310598401, 607225278, 1426881987, 1925078388, -2132889090, -1680079193, -1046744716,
  -459576895, -272742522, 264347078, 604807628, 770255983, 1249150122, 1555081692, 1996064986,
  -1740746414, -1473132947, -1341970488, -1084653625, -958395405, -710438585, 113926993, 338241895,
  666307205, 773529912, 1294757372, 1396182291, 1695183700, 1986661051, -2117940946, -1838011259,
  -1564481375, -1474664885, -1035236496, -949202525, -778901479, -694614492, -200395387, 275423344,
  430227734, 506948616, 659060556, 883997877, 958139571, 1322822218, 1537002063, 1747873779,
  1955562222, 2024104815, -2067236844, -1933114872, -1866530822, -1538233109, -1090935817, -965641998,
]);

/** FIPS 180-4 §5.3.3: initial hash value H(0) (as signed int32). */
export var IV = [1779033703, -1150833019, 1013904242, -1521486534, 1359893119, -1694144372, 528734635, 1541459225];

/** Message schedule scratch, shared by every call (no allocation per block; the code is not re-entrant and need not be). */
var W = new Int32Array(64);

/**
 * 64 zero bytes, enough for the longest zero run padding needs (FIPS 180-4 §5.1.1: at most 63).
 * Built with String.fromCharCode at load rather than written as escapes: a minifier may print
 * control or high bytes raw, and a raw 0x80 in a UTF-8 bundle becomes two chars on the device.
 */
var Z8 = String.fromCharCode(0, 0, 0, 0, 0, 0, 0, 0);
var ZEROS = Z8 + Z8 + Z8 + Z8 + Z8 + Z8 + Z8 + Z8;

/** The padding's first byte (FIPS 180-4 §5.1.1: a single 1 bit), built at load for the same reason. */
var PAD1 = String.fromCharCode(128);

/**
 * Compresses the string m, whose length is a multiple of 64, into the state h (8 words), in
 * place. All blocks in one call so the interpreter parses this body once per message.
 */
function compress(h: Int32Array, m: string): void {
  var w = W;
  var k = K;
  var n = m.length;
  var i, j, p, x, y, t1, t2, a, b, c, d, e, f, g, hh;
  for (i = 0; i < n; i += 64) {
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (j = 0; j < 16; j++) {
      p = i + (j << 2);
      w[j] = (m.charCodeAt(p) << 24) | (m.charCodeAt(p + 1) << 16) | (m.charCodeAt(p + 2) << 8) | m.charCodeAt(p + 3);
    }
    for (j = 16; j < 64; j++) {
      // §6.2.2 step 1: W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]
      x = w[j - 15];
      y = w[j - 2];
      w[j] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) + w[j - 7] +
        (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + w[j - 16] | 0;
    }
    for (j = 0; j < 64; j++) {
      // §6.2.2 step 3: T1 = h + S1(e) + Ch(e,f,g) + K[t] + W[t]; T2 = S0(a) + Maj(a,b,c)
      t1 = hh + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        (g ^ (e & (f ^ g))) + k[j] + w[j] | 0;
      t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & b) | (c & (a | b))) | 0;
      hh = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
    }
    h[0] = h[0] + a | 0; h[1] = h[1] + b | 0; h[2] = h[2] + c | 0; h[3] = h[3] + d | 0;
    h[4] = h[4] + e | 0; h[5] = h[5] + f | 0; h[6] = h[6] + g | 0; h[7] = h[7] + hh | 0;
  }
}

/**
 * Pads `s` (FIPS 180-4 §5.1.1) as the tail of a message of which `before` bytes (a multiple of
 * 64) were already compressed into h, compresses it, and returns the digest.
 */
function finish(h: Int32Array, s: string, before: number): string {
  var len = before + s.length;
  // Bit length as two 32-bit words: the high word is len >>> 29 (len < 2^53 bytes always holds).
  var hi = (len / 536870912) | 0;
  var lo = (len << 3) | 0;
  compress(h, s + PAD1 + ZEROS.substr(0, (119 - (len & 63)) & 63) +
    String.fromCharCode((hi >>> 24) & 255, (hi >>> 16) & 255, (hi >>> 8) & 255, hi & 255,
      (lo >>> 24) & 255, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255));
  var r = '';
  var i, x;
  for (i = 0; i < 8; i++) {
    x = h[i];
    r += String.fromCharCode((x >>> 24) & 255, (x >>> 16) & 255, (x >>> 8) & 255, x & 255);
  }
  return r;
}

/** SHA-256 of a byte String; returns the 32-byte digest as a byte String. */
export function sha256(s: string): string {
  return finish(new Int32Array(IV), s, 0);
}

/**
 * The state after compressing `prefix`, whose length must be a non-zero multiple of 64 (an HMAC
 * key pad). Treat the result as opaque; it is not modified by sha256Fin.
 */
export function sha256Mid(prefix: string): Int32Array {
  var h = new Int32Array(IV);
  compress(h, prefix);
  return h;
}

/** SHA-256 of prefix + s, where mid = sha256Mid(prefix) and prefix is `before` bytes long. */
export function sha256Fin(mid: Int32Array, s: string, before: number): string {
  return finish(new Int32Array(mid), s, before);
}

/** The resumable pair as one value, the shape hmac.ts's `Sha256Resume` takes. */
export var sha256Resume = { mid: sha256Mid, fin: sha256Fin };
