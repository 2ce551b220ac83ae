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
 * RFC 3629 §4 in two native passes, with only what Espruino's regex engine has (ESPRUINO.md:
 * top-level alternation, character sets with `\xHH` ranges; every range here lies inside
 * 0x80..0xFF, so the answer is the same whether the engine's chars are signed or not):
 * - UTF8_SHAPE: a lead byte C2..F4 (C0, C1 and F5..FF never appear) with its 1, 2 or 3
 *   continuation bytes 80..BF;
 * - UTF8_BAD: the second-byte limits of the grammar, as the pairs they forbid: E0 80..9F and
 *   F0 80..8F (overlong forms), ED A0..BF (surrogates), F4 90..BF (past U+10FFFF). E0, ED, F0
 *   and F4 are never continuation bytes, so such a pair is wrong wherever it stands.
 */
var UTF8_SHAPE = /[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf][\x80-\xbf]|[\xf0-\xf4][\x80-\xbf][\x80-\xbf][\x80-\xbf]/g;
var UTF8_BAD = /\xe0[\x80-\x9f]|\xed[\xa0-\xbf]|\xf0[\x80-\x8f]|\xf4[\x90-\xbf]/;

/**
 * True when every char of s is a byte and the bytes are well-formed UTF-8 (RFC 3629 §4: no
 * overlong forms, no surrogates, nothing past U+10FFFF). No forbidden pair, and once every
 * well-formed sequence is cut out, left to right (a valid string parses one way only), only ASCII
 * is left: a stray continuation byte, a truncated sequence, a bad lead byte or a char above
 * 0xFF stays behind. Native work only, but it copies s: call it on the rare non-ASCII path.
 */
export function isUtf8Bytes(s: string): boolean {
  return !UTF8_BAD.test(s) && !NON_ASCII.test(s.replace(UTF8_SHAPE, ''));
}

/**
 * UTF-8 encoding of a UTF-16 string: surrogate pairs joined into one code point, lone surrogates
 * as U+FFFD. A code point takes k continuation bytes (10xxxxxx, low bits last) after a lead byte
 * whose top k + 1 bits are set: C0 for k = 1, E0 for 2, F0 for 3 ((0xFF00 >> (k + 1)) & 0xFF).
 */
export function encodeUtf8(s: string): string {
  var out = '';
  var n = s.length;
  var i = 0;
  var c: number;
  var d: number;
  var k: number;
  var tail: string;
  for (; i < n; i++) {
    c = s.charCodeAt(i);
    // 0xD800..0xDFFF (c >> 11 == 27): a high surrogate followed by a low one (d >> 10 == 55) is
    // one code point; anything else is a lone surrogate.
    if (c >> 11 == 27) {
      d = s.charCodeAt(i + 1);
      if (c < 0xdc00 && d >> 10 == 55) {
        // 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00), folded: 0x35FDC00 = (0xD800 << 10) + 0xDC00 - 0x10000.
        c = (c << 10) + d - 0x35fdc00;
        i++;
      } else c = 0xfffd;
    }
    k = c < 0x80 ? 0 : c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
    tail = '';
    for (d = k; d; d--) {
      tail = String.fromCharCode(0x80 | (c & 63)) + tail;
      c >>= 6;
    }
    out += String.fromCharCode(k ? ((0xff00 >> (k + 1)) & 0xff) | c : c) + tail;
  }
  return out;
}
