/* utf8.c -- strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing
 * above U+10FFFF.
 *
 * Well-formed sequences (Unicode table 3-7); the second byte's range depends
 * on the first, which is what rules out overlongs, surrogates and > U+10FFFF:
 *
 *   00..7F
 *   C2..DF  80..BF
 *   E0      A0..BF  80..BF
 *   E1..EC  80..BF  80..BF
 *   ED      80..9F  80..BF
 *   EE..EF  80..BF  80..BF
 *   F0      90..BF  80..BF  80..BF
 *   F1..F3  80..BF  80..BF  80..BF
 *   F4      80..8F  80..BF  80..BF
 */
#include "pipecast/utf8.h"

#include "utf8_private.h"

size_t pc_utf8_prefix(const unsigned char *s, size_t len, size_t *need)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */

    if (c < 0x80) {
        *need = 1;
        return 1;
    }
    if (c < 0xC2 || c > 0xF4) {
        *need = 1;
        return 0;
    }
    if (c < 0xE0) {
        *need = 2;
    } else if (c < 0xF0) {
        *need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else {
        *need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    }

    size_t n = 1;
    size_t avail = len < *need ? len : *need;
    if (n < avail) {
        if (s[1] < lo || s[1] > hi)
            return n;
        n++;
    }
    while (n < avail && s[n] >= 0x80 && s[n] <= 0xBF)
        n++;
    return n;
}

size_t pc_utf8_seq_len(const unsigned char *s, size_t len)
{
    size_t need;

    if (len == 0)
        return 0;
    size_t n = pc_utf8_prefix(s, len, &need);
    return n == need ? n : 0;
}

size_t pc_utf8_safe_cut(const unsigned char *s, size_t len)
{
    /*
     * Only the last byte that is not a continuation byte, within the last
     * three, can start an unfinished sequence. If that sequence is invalid
     * or complete, nothing needs to be held back.
     */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        size_t i = len - back;
        if (s[i] >= 0x80 && s[i] <= 0xBF)
            continue;
        size_t need;
        size_t n = pc_utf8_prefix(s + i, back, &need);
        return (n == back && need > back) ? i : len;
    }
    return len;
}

int pc_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = pc_utf8_seq_len(s + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}
