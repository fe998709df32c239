/* sse.c -- Server-Sent Events encoding (WHATWG HTML, "server-sent events").
 *
 * Every function appends to a caller's pc_buf and, on any error, truncates
 * it back to its length on entry: a half-written event would corrupt the
 * stream for the browser, so an event is written whole or not at all.
 */
#include "pipecast/sse.h"

#include <string.h>

#include "pipecast/error.h"

#include "utf8_private.h"

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

static int rollback(struct pc_buf *out, size_t len, int rc)
{
    out->len = len;
    if (out->data != NULL)
        out->data[len] = '\0';
    return rc;
}

static int has_crlf(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* Append without rollback (the callers roll back the whole event). */
static int sanitize(struct pc_buf *out, const unsigned char *s, size_t len)
{
    size_t i = 0, run = 0; /* s[run..i) is valid and not yet copied */
    int rc;

    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t need;
        size_t n = pc_utf8_prefix(s + i, len - i, &need);
        if (n == need) {
            i += n;
            continue;
        }
        if ((rc = pc_buf_append(out, s + run, i - run)) != 0 ||
            (rc = pc_buf_append(out, replacement, 3)) != 0)
            return rc;
        i += n > 0 ? n : 1; /* one U+FFFD per maximal subpart */
        run = i;
    }
    return pc_buf_append(out, s + run, i - run);
}

int pc_utf8_sanitize_append(struct pc_buf *out, const char *s, size_t len)
{
    size_t old = out->len;
    int rc = sanitize(out, (const unsigned char *)s, len);
    return rc != 0 ? rollback(out, old, rc) : 0;
}

/* "data:" lines for each line of the payload; \r\n, \n and \r all end a line. */
static int sse_data(struct pc_buf *out, const char *data, size_t len)
{
    size_t i = 0;
    int rc;

    for (;;) {
        size_t start = i;
        while (i < len && data[i] != '\n' && data[i] != '\r')
            i++;
        if (i == start) {
            rc = pc_buf_append(out, "data:\n", 6);
        } else if ((rc = pc_buf_append(out, "data: ", 6)) == 0 &&
                   (rc = sanitize(out, (const unsigned char *)data + start, i - start)) == 0) {
            rc = pc_buf_append(out, "\n", 1);
        }
        if (rc != 0)
            return rc;
        if (i == len)
            return 0;
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        i++; /* a line end as the last byte still yields a last, empty line */
    }
}

static int sse_field(struct pc_buf *out, const char *name, const char *value)
{
    int rc;

    if ((rc = pc_buf_append_str(out, name)) != 0 ||
        (rc = sanitize(out, (const unsigned char *)value, strlen(value))) != 0)
        return rc;
    return pc_buf_append(out, "\n", 1);
}

int pc_sse_event(struct pc_buf *out, const char *id, const char *event, const char *data,
                 size_t len)
{
    size_t old = out->len;
    int rc = 0;

    if (has_crlf(id) || has_crlf(event) || (data == NULL && len > 0))
        return PC_EINVAL;
    if (id != NULL)
        rc = sse_field(out, "id: ", id);
    if (rc == 0 && event != NULL)
        rc = sse_field(out, "event: ", event);
    if (rc == 0)
        rc = sse_data(out, data, len);
    if (rc == 0)
        rc = pc_buf_append(out, "\n", 1);
    return rc != 0 ? rollback(out, old, rc) : 0;
}

int pc_sse_retry(struct pc_buf *out, unsigned ms)
{
    size_t old = out->len;
    int rc = pc_buf_printf(out, "retry: %u\n\n", ms);
    return rc != 0 ? rollback(out, old, rc) : 0;
}

int pc_sse_comment(struct pc_buf *out, const char *text)
{
    size_t old = out->len;
    int rc;

    if (has_crlf(text))
        return PC_EINVAL;
    if (text == NULL || *text == '\0')
        rc = pc_buf_append(out, ":\n\n", 3);
    else if ((rc = pc_buf_append(out, ": ", 2)) == 0 &&
             (rc = sanitize(out, (const unsigned char *)text, strlen(text))) == 0)
        rc = pc_buf_append(out, "\n\n", 2);
    return rc != 0 ? rollback(out, old, rc) : 0;
}
