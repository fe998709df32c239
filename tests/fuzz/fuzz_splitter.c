/* fuzz_splitter.c -- the splitter against a model.
 *
 * Input: byte 0 picks max_line (16..79), bytes 1-4 seed the piece sizes and
 * the idle flushes, the rest is the stream. Invariants:
 *   - every entry <= max_line; a partial entry is never empty; a chunk cut
 *     for length (not by a flush) is at least max_line - 3 bytes;
 *   - pending() <= max_line + 1, and <= 3 right after a flush;
 *   - the entries, each followed by "\n" when complete, equal the input with
 *     every "\r\n" turned into "\n" -- except a CRLF that a flush fell
 *     between -- plus one "\n" when EOF completed the last line;
 *   - no valid UTF-8 sequence straddles the end of a partial entry;
 *   - valid UTF-8 in, valid UTF-8 entries out.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/splitter.h"
#include "pipecast/utf8.h"

#include "fuzz_check.h"

struct out {
    unsigned char *data; /* the reassembled stream */
    size_t len;
    size_t *bounds; /* positions in data where a partial entry ended */
    size_t nbounds;
    size_t max;
    int in_flush;
    int all_valid;
};

static int on_entry(void *privdata, const char *data, size_t len, int partial)
{
    struct out *o = privdata;
    CHECK(len <= o->max);
    if (partial) {
        CHECK(len > 0);
        if (!o->in_flush)
            CHECK(len + 3 >= o->max);
    }
    if (o->all_valid)
        CHECK(pc_utf8_valid((const unsigned char *)data, len));
    memcpy(o->data + o->len, data, len);
    o->len += len;
    if (partial)
        o->bounds[o->nbounds++] = o->len;
    else
        o->data[o->len++] = '\n';
    return 0;
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    if (size < 5)
        return 0;
    size_t max = PC_LINE_MAX_MIN + buf[0] % 64;
    uint32_t seed =
        (uint32_t)buf[1] | (uint32_t)buf[2] << 8 | (uint32_t)buf[3] << 16 | (uint32_t)buf[4] << 24;
    seed |= 1;
    const unsigned char *in = buf + 5;
    size_t n = size - 5;

    struct out o = {0};
    o.data = malloc(2 * n + 2);
    o.bounds = malloc((n + 1) * sizeof(size_t));
    /* flushed_at[i]: a flush happened after i input bytes */
    unsigned char *flushed_at = calloc(n + 1, 1);
    CHECK(o.data && o.bounds && flushed_at);
    o.max = max;
    o.all_valid = pc_utf8_valid(in, n);

    struct pc_splitter *sp = pc_splitter_new(max, on_entry, &o);
    CHECK(sp != NULL);
    size_t off = 0;
    while (off < n) {
        size_t piece = 1 + rnd(&seed) % (rnd(&seed) % 2 ? 4 : 200);
        if (piece > n - off)
            piece = n - off;
        CHECK(pc_splitter_feed(sp, (const char *)in + off, piece) == 0);
        off += piece;
        CHECK(pc_splitter_pending(sp) <= max + 1);
        if (rnd(&seed) % 5 == 0) {
            o.in_flush = 1;
            CHECK(pc_splitter_flush(sp) == 0);
            o.in_flush = 0;
            CHECK(pc_splitter_pending(sp) <= 3);
            flushed_at[off] = 1;
        }
    }
    size_t pend = pc_splitter_pending(sp);
    if (n > 0 && in[n - 1] == '\n')
        CHECK(pend == 0);
    if (n > 0 && in[n - 1] != '\n' && !flushed_at[n])
        CHECK(pend > 0);
    CHECK(pc_splitter_finish(sp) == 0);
    CHECK(pc_splitter_pending(sp) == 0);
    pc_splitter_free(sp);

    /* the model */
    unsigned char *want = malloc(n + 1);
    CHECK(want != NULL);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n' && !flushed_at[i + 1])
            continue;
        want[w++] = in[i];
    }
    if (pend > 0)
        want[w++] = '\n';
    CHECK(o.len == w);
    CHECK(memcmp(o.data, want, w) == 0);

    /* never a cut inside a valid sequence */
    for (size_t b = 0; b < o.nbounds; b++) {
        size_t p = o.bounds[b];
        for (size_t k = 1; k <= 3 && k <= p; k++)
            CHECK(pc_utf8_seq_len(o.data + p - k, o.len - (p - k)) <= k);
    }

    free(want);
    free(flushed_at);
    free(o.bounds);
    free(o.data);
    return 0;
}
