/* buf.h -- a growable byte buffer with a hard maximum size.
 *
 *   struct pc_buf b;
 *   pc_buf_init(&b, 1 << 20);        // never grows past 1 MiB
 *   if (pc_buf_append(&b, p, n) != 0) // PC_ETOOBIG or PC_ENOMEM, b unchanged
 *   ...
 *   pc_buf_free(&b);
 *
 * The buffer owns its memory; data is always NUL-terminated (the NUL is not
 * counted in len and not counted against max).
 */
#ifndef PC_BUF_H
#define PC_BUF_H

#include <stddef.h>

struct pc_buf {
    char *data; /* NULL until the first append */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated (excluding the NUL) */
    size_t max; /* hard maximum for len */
};

/** Initialise an empty buffer that will never hold more than @p max bytes. */
void pc_buf_init(struct pc_buf *b, size_t max);

/** Release the memory; the buffer is left empty and can be reused. */
void pc_buf_free(struct pc_buf *b);

/** Forget the contents but keep the allocation. */
void pc_buf_reset(struct pc_buf *b);

/**
 * Append @p n bytes. @return 0, PC_ETOOBIG if len would exceed max, or
 * PC_ENOMEM. On error the buffer is unchanged.
 */
int pc_buf_append(struct pc_buf *b, const void *p, size_t n);

/** Append a NUL-terminated string (see pc_buf_append). */
int pc_buf_append_str(struct pc_buf *b, const char *s);

/** printf-style append (see pc_buf_append). */
int pc_buf_printf(struct pc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Remove the first @p n bytes (n > len removes everything). */
void pc_buf_consume(struct pc_buf *b, size_t n);

#endif
