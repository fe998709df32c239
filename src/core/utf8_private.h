/* utf8_private.h -- the UTF-8 decoding step shared by utf8.c and sse.c. */
#ifndef PC_UTF8_PRIVATE_H
#define PC_UTF8_PRIVATE_H

#include <stddef.h>

/*
 * Look at the sequence starting at @p s (@p len > 0 bytes available).
 * @return how many bytes at s are a prefix of some valid sequence (0-4:
 * 0 when s[0] cannot start one), and set *need to the length the lead byte
 * announces (1-4; 1 for bytes that cannot start a sequence). The sequence is
 * complete and valid exactly when the result equals *need. When it is not,
 * the result (or 1 when it is 0) is the "maximal subpart" that one U+FFFD
 * replaces (Unicode 15, section 3.9, and the WHATWG decoder).
 */
size_t pc_utf8_prefix(const unsigned char *s, size_t len, size_t *need);

#endif
