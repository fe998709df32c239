/* splitter.c -- bytes in, line entries out, with a hard maximum length.
 *
 * State: the pending part of the current line (at most max_line bytes, in
 * buf) and one flag, cr, for a '\r' that ended the last feed: whether it is
 * the '\r' of a "\r\n" (dropped) or a byte of the line (kept) depends on the
 * next byte, which has not arrived yet. Keeping it as a flag rather than in
 * buf lets a line of exactly max_line bytes followed by "\r\n" come out as
 * one entry, and keeps memory at max_line.
 *
 * Chunks are cut lazily: a full buffer is emitted (as partial) only when one
 * more byte of the same line arrives. A line of exactly max_line bytes is
 * therefore one complete entry, never a full chunk plus an empty entry.
 */
#include "pipecast/splitter.h"

#include <stdlib.h>
#include <string.h>

#include "pipecast/error.h"
#include "pipecast/utf8.h"

#include "utf8_private.h"

struct pc_splitter {
    pc_split_cb cb;
    void *privdata;
    size_t max;
    size_t len;
    int cr; /* a '\r' follows buf[0..len) and is not in buf */
    char *buf;
};

struct pc_splitter *pc_splitter_new(size_t max_line, pc_split_cb cb, void *privdata)
{
    if (cb == NULL || max_line < PC_LINE_MAX_MIN)
        return NULL;
    struct pc_splitter *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return NULL;
    sp->buf = malloc(max_line);
    if (sp->buf == NULL) {
        free(sp);
        return NULL;
    }
    sp->cb = cb;
    sp->privdata = privdata;
    sp->max = max_line;
    return sp;
}

void pc_splitter_free(struct pc_splitter *sp)
{
    if (sp == NULL)
        return;
    free(sp->buf);
    free(sp);
}

size_t pc_splitter_pending(const struct pc_splitter *sp)
{
    return sp->len + (size_t)sp->cr;
}

/*
 * Emit the first @p n pending bytes and keep the rest (at most an unfinished
 * UTF-8 sequence). The bytes count as emitted even when the callback fails:
 * the callback has seen them, and sending them again would duplicate them.
 */
static int emit(struct pc_splitter *sp, size_t n, int partial)
{
    int rc = sp->cb(sp->privdata, sp->buf, n, partial);
    memmove(sp->buf, sp->buf + n, sp->len - n);
    sp->len -= n;
    return rc;
}

/*
 * The buffer is full and the line goes on with byte @p next: emit a chunk cut
 * at a safe place. An unfinished UTF-8 sequence at the end is kept for the
 * next chunk, unless @p next shows it to be invalid (invalid bytes never hold
 * a cut back). The chunk is at least max - 3 >= 13 bytes: never empty.
 */
static int cut_full(struct pc_splitter *sp, unsigned char next)
{
    size_t cut = pc_utf8_safe_cut((const unsigned char *)sp->buf, sp->len);
    if (cut < sp->len) {
        unsigned char seq[4];
        size_t tail = sp->len - cut, need;
        memcpy(seq, sp->buf + cut, tail);
        seq[tail] = next;
        if (pc_utf8_prefix(seq, tail + 1, &need) != tail + 1)
            cut = sp->len;
    }
    return emit(sp, cut, 1);
}

/* Append @p n bytes of line content (no '\n' among them). */
static int add_content(struct pc_splitter *sp, const char *p, size_t n)
{
    while (n > 0) {
        if (sp->len == sp->max) {
            int rc = cut_full(sp, (unsigned char)*p);
            if (rc != 0)
                return rc;
        }
        size_t k = sp->max - sp->len;
        if (k > n)
            k = n;
        memcpy(sp->buf + sp->len, p, k);
        sp->len += k;
        p += k;
        n -= k;
    }
    return 0;
}

/* The held '\r' turned out not to end the line: it is line content. */
static int take_cr(struct pc_splitter *sp)
{
    if (!sp->cr)
        return 0;
    sp->cr = 0;
    return add_content(sp, "\r", 1);
}

int pc_splitter_feed(struct pc_splitter *sp, const char *data, size_t len)
{
    int rc;

    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t seg = nl != NULL ? (size_t)(nl - data) : len;

        if (seg > 0 || nl == NULL) {
            rc = take_cr(sp);
            if (rc != 0)
                return rc;
        }
        /* A '\r' right before the '\n' (or at the end of this feed) is held back. */
        int ends_cr = seg > 0 && data[seg - 1] == '\r';
        rc = add_content(sp, data, seg - (size_t)ends_cr);
        if (rc != 0)
            return rc;
        if (nl == NULL) {
            sp->cr = ends_cr;
            return 0;
        }
        /* End of line: a held '\r' (ends_cr, or sp->cr from the last feed) is dropped. */
        sp->cr = 0;
        rc = emit(sp, sp->len, 0);
        if (rc != 0)
            return rc;
        data += seg + 1;
        len -= seg + 1;
    }
    return 0;
}

int pc_splitter_flush(struct pc_splitter *sp)
{
    int rc = take_cr(sp);
    if (rc != 0)
        return rc;
    size_t cut = pc_utf8_safe_cut((const unsigned char *)sp->buf, sp->len);
    if (cut == 0)
        return 0;
    return emit(sp, cut, 1);
}

int pc_splitter_finish(struct pc_splitter *sp)
{
    int rc = take_cr(sp);
    if (rc != 0)
        return rc;
    if (sp->len == 0)
        return 0;
    return emit(sp, sp->len, 0);
}
