/* buf.c -- a growable byte buffer with a hard maximum (curl's dynbuf idea).
 *
 * Invariants: len <= max, len <= cap, and when data != NULL, data[len] == '\0'
 * (the allocation is cap + 1 bytes).
 */
#include "pipecast/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/error.h"

#define BUF_MIN_ALLOC 64

void pc_buf_init(struct pc_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void pc_buf_free(struct pc_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void pc_buf_reset(struct pc_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/*
 * Make room for @p n more bytes. Growth doubles (amortised O(1) appends) but
 * never past max, so a buffer near its cap does not allocate twice its cap.
 * @return 0, PC_ETOOBIG or PC_ENOMEM; the contents are unchanged either way.
 */
static int buf_reserve(struct pc_buf *b, size_t n)
{
    if (n > b->max - b->len)
        return PC_ETOOBIG;
    size_t need = b->len + n;
    if (b->data != NULL && need <= b->cap)
        return 0;
    if (need == SIZE_MAX)
        return PC_ENOMEM; /* no room for the NUL */

    size_t newcap = b->cap < BUF_MIN_ALLOC ? BUF_MIN_ALLOC : b->cap;
    while (newcap < need) {
        if (newcap > SIZE_MAX / 2) {
            newcap = need;
            break;
        }
        newcap *= 2;
    }
    if (newcap > b->max)
        newcap = b->max > need ? b->max : need;
    if (newcap == SIZE_MAX)
        newcap = need;

    char *p = realloc(b->data, newcap + 1);
    if (p == NULL)
        return PC_ENOMEM;
    if (b->data == NULL)
        p[0] = '\0';
    b->data = p;
    b->cap = newcap;
    return 0;
}

int pc_buf_append(struct pc_buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int pc_buf_append_str(struct pc_buf *b, const char *s)
{
    return pc_buf_append(b, s, strlen(s));
}

int pc_buf_printf(struct pc_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    /* First try into the spare room; most appends fit. */
    size_t room = b->data != NULL ? b->cap - b->len + 1 : 0;
    va_start(ap, fmt);
    n = vsnprintf(room > 0 ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (b->data != NULL)
            b->data[b->len] = '\0';
        return PC_EINVAL;
    }
    if ((size_t)n < room) {
        if ((size_t)n > b->max - b->len) {
            b->data[b->len] = '\0'; /* undo: too big for the cap */
            return PC_ETOOBIG;
        }
        b->len += (size_t)n;
        return 0;
    }
    if (b->data != NULL)
        b->data[b->len] = '\0';

    int rc = buf_reserve(b, (size_t)n);
    if (rc != 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void pc_buf_consume(struct pc_buf *b, size_t n)
{
    if (n >= b->len) {
        pc_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}
