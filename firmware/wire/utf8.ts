/**
 * Text to wire bytes: the one rule every wire encoder applies to a JS string that MQTT calls a
 * "UTF-8 encoded string" (MQTT 3.1.1 §1.5.3: topics, client id, user name).
 *
 * Two kinds of runtime hand us text:
 * - the device (Espruino on ESP32) has byte strings only: the source text and the config are
 *   UTF-8 already, so "é" arrives as the two chars 0xC3 0xA9;
 * - the host and the emulator (V8) have UTF-16 strings: "é" is the one char U+00E9.
 *
 * RULE (utf8Bytes):
 * 1. No char above 0x7F (the common case): the string is sent as it is. One native regex test.
 * 2. Every char is a byte (<= 0xFF) AND the bytes are well-formed UTF-8 (RFC 3629 §4): the string
 *    is taken as UTF-8 bytes already (the device case; also a host string that came off the wire)
 *    and sent as it is.
 * 3. Otherwise the string is text: each code point is encoded as UTF-8; a lone surrogate
 *    becomes U+FFFD, because MQTT forbids surrogate code points [MQTT-1.5.3-1].
 * The one ambiguity: a host string of Latin-1 chars that happens to spell well-formed UTF-8
 * ("Ã©") is taken as bytes (rule 2). Natural text essentially never does this.
 *
 * Decoding is not offered: the codec hands topics back as bytes. Compare a received topic with
 * utf8Bytes(expected), never with the raw text, so the comparison holds on both runtimes.
 */

/** Matches a string holding any char above 7-bit ASCII. Espruino's regex supports `[^...]`
 * sets with `\xHH` escapes; it returns the same answer on byte strings and UTF-16 strings. */
export var NON_ASCII = /[^\x00-\x7f]/;

/** The UTF-8 bytes of s, as a byte String, by the RULE above. */
export function utf8Bytes(s: string): string {
  return !NON_ASCII.test(s) || isUtf8Bytes(s) ? s : encodeUtf8(s);
}

/**
 * True when every char of s is a byte and the bytes are well-formed UTF-8 (RFC 3629 §4: no
 * overlong forms, no surrogates, nothing past U+10FFFF). Walks the string: call it only on the
 * rare non-ASCII path.
 */
export function isUtf8Bytes(s: string): boolean {
  var n = s.length;
  var i = 0;
  var c: number;
  var k: number;
  var lo: number;
  var hi: number;
  while (i < n) {
    c = s.charCodeAt(i++);
    if (c < 0x80) continue;
    // Lead bytes C2..F4 only (C0, C1 and F5..FF never appear; this also rejects chars > 0xFF).
    if (c < 0xc2 || c > 0xf4) return false;
    k = c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
    // The second byte's range narrows for E0 (overlong), ED (surrogates), F0 (overlong), F4 (> U+10FFFF).
    lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    c = s.charCodeAt(i++);
    // charCodeAt past the end is NaN, which fails both comparisons.
    if (!(c >= lo && c <= hi)) return false;
    while (--k) {
      c = s.charCodeAt(i++);
      if (!(c >= 0x80 && c <= 0xbf)) return false;
    }
  }
  return true;
}

/** UTF-8 encoding of a UTF-16 string (pairs joined, lone surrogates as U+FFFD). */
export function encodeUtf8(s: string): string {
  var out = '';
  var n = s.length;
  var i = 0;
  var c: number;
  var d: number;
  for (; i < n; i++) {
    c = s.charCodeAt(i);
    if (c < 0x80) {
      out += s.charAt(i);
    } else if (c < 0x800) {
      out += String.fromCharCode(0xc0 | (c >> 6), 0x80 | (c & 63));
    } else {
      if (c >= 0xd800 && c < 0xe000) {
        d = s.charCodeAt(i + 1);
        if (c < 0xdc00 && d >= 0xdc00 && d < 0xe000) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          out += String.fromCharCode(
            0xf0 | (c >> 18),
            0x80 | ((c >> 12) & 63),
            0x80 | ((c >> 6) & 63),
            0x80 | (c & 63)
          );
          continue;
        }
        c = 0xfffd;
      }
      out += String.fromCharCode(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
  }
  return out;
}
