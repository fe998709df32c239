/* utf8.h -- UTF-8 checks used by the splitter and the SSE encoder. */
#ifndef PC_UTF8_H
#define PC_UTF8_H

#include <stddef.h>

/**
 * Length of the longest valid UTF-8 sequence starting at @p s (1-4), or 0 if
 * the bytes there are not a valid sequence (overlongs, surrogates, > U+10FFFF
 * and truncated sequences are invalid). @p len is the bytes available.
 */
size_t pc_utf8_seq_len(const unsigned char *s, size_t len);

/**
 * Where it is safe to cut @p len bytes without splitting a UTF-8 sequence:
 * returns a position <= len such that the bytes after it are the beginning of
 * one incomplete-but-so-far-valid sequence (at most 3 bytes), or len when the
 * end is not inside a sequence. Invalid bytes never hold a cut back.
 */
size_t pc_utf8_safe_cut(const unsigned char *s, size_t len);

/** @return 1 when all @p len bytes are valid UTF-8. */
int pc_utf8_valid(const unsigned char *s, size_t len);

#endif
