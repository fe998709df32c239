/* test_splitter.c -- line splitting: max-line chunks, UTF-8-safe cuts, CRLF,
 * NUL bytes, idle flush, EOF, callback errors, and a reassembly property. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/error.h"
#include "pipecast/splitter.h"
#include "pipecast/utf8.h"

/* ------------------------------------------------------------ collector */

struct entry {
    char *data;
    size_t len;
    int partial;
};

struct collector {
    struct entry *e;
    size_t n, cap;
    size_t max_line;
    int fail_at; /* return an error from this call (1-based), 0: never */
    int calls;
};

static int collect(void *privdata, const char *data, size_t len, int partial)
{
    struct collector *c = privdata;
    c->calls++;
    if (c->fail_at != 0 && c->calls == c->fail_at)
        return PC_EIO;
    /* every entry respects the maximum; a partial one is never empty */
    assert_true(len <= c->max_line);
    if (partial)
        assert_true(len > 0);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->e = realloc(c->e, c->cap * sizeof(*c->e));
        assert_non_null(c->e);
    }
    c->e[c->n].data = malloc(len + 1);
    assert_non_null(c->e[c->n].data);
    memcpy(c->e[c->n].data, data, len);
    c->e[c->n].data[len] = '\0';
    c->e[c->n].len = len;
    c->e[c->n].partial = partial;
    c->n++;
    return 0;
}

static void collector_clear(struct collector *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->e[i].data);
    free(c->e);
    memset(c, 0, sizeof(*c));
}

static struct pc_splitter *mk(struct collector *c, size_t max)
{
    memset(c, 0, sizeof(*c));
    c->max_line = max;
    struct pc_splitter *sp = pc_splitter_new(max, collect, c);
    assert_non_null(sp);
    return sp;
}

static void feed(struct pc_splitter *sp, const char *s, size_t n)
{
    assert_int_equal(pc_splitter_feed(sp, s, n), 0);
}

static void feeds(struct pc_splitter *sp, const char *s)
{
    feed(sp, s, strlen(s));
}

static void expect(const struct collector *c, size_t i, const char *data, size_t len, int partial)
{
    if (i >= c->n)
        fail_msg("entry %zu missing (have %zu)", i, c->n);
    assert_int_equal(c->e[i].len, len);
    assert_memory_equal(c->e[i].data, data, len);
    assert_int_equal(c->e[i].partial, partial);
}

static void expects(const struct collector *c, size_t i, const char *data, int partial)
{
    expect(c, i, data, strlen(data), partial);
}

/* ---------------------------------------------------------------- basics */

static void test_new_args(void **state)
{
    (void)state;
    struct collector c = {0};
    assert_null(pc_splitter_new(PC_LINE_MAX_MIN - 1, collect, &c));
    assert_null(pc_splitter_new(64, NULL, &c));
    struct pc_splitter *sp = pc_splitter_new(PC_LINE_MAX_MIN, collect, &c);
    assert_non_null(sp);
    pc_splitter_free(sp);
    pc_splitter_free(NULL);
}

static void test_simple_lines(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    feeds(sp, "one\ntwo\n\nthree");
    assert_int_equal(c.n, 3);
    expects(&c, 0, "one", 0);
    expects(&c, 1, "two", 0);
    expects(&c, 2, "", 0);
    assert_int_equal(pc_splitter_pending(sp), 5);
    assert_int_equal(pc_splitter_finish(sp), 0);
    assert_int_equal(c.n, 4);
    expects(&c, 3, "three", 0); /* no final newline: still a complete entry */
    assert_int_equal(pc_splitter_pending(sp), 0);
    assert_int_equal(pc_splitter_finish(sp), 0); /* nothing pending: nothing emitted */
    assert_int_equal(c.n, 4);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    const char *in = "ab\r\ncd\n";
    for (size_t i = 0; in[i]; i++)
        feed(sp, in + i, 1);
    assert_int_equal(c.n, 2);
    expects(&c, 0, "ab", 0);
    expects(&c, 1, "cd", 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_crlf(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    feeds(sp, "a\r\nb\r\r\n\r\nc\rd\n\re\n");
    assert_int_equal(c.n, 5);
    expects(&c, 0, "a", 0);
    expects(&c, 1, "b\r", 0); /* only one '\r' is removed */
    expects(&c, 2, "", 0);
    expects(&c, 3, "c\rd", 0); /* a lone CR is kept */
    expects(&c, 4, "\re", 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_cr_across_feeds(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    feeds(sp, "a\r");
    assert_int_equal(c.n, 0);
    assert_int_equal(pc_splitter_pending(sp), 2);
    feeds(sp, "\nb\r");
    feeds(sp, "x\n");
    feeds(sp, "\r");
    feeds(sp, "\r");
    feeds(sp, "\n");
    assert_int_equal(c.n, 3);
    expects(&c, 0, "a", 0);
    expects(&c, 1, "b\rx", 0);
    expects(&c, 2, "\r", 0);
    /* a trailing '\r' at EOF is data, not a line end */
    feeds(sp, "z\r");
    assert_int_equal(pc_splitter_finish(sp), 0);
    expects(&c, 3, "z\r", 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_nul_bytes(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    feed(sp, "a\0b\n\0\n\0", 7);
    assert_int_equal(c.n, 2);
    expect(&c, 0, "a\0b", 3, 0);
    expect(&c, 1, "\0", 1, 0);
    assert_int_equal(pc_splitter_finish(sp), 0);
    expect(&c, 2, "\0", 1, 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

/* ------------------------------------------------------------ long lines */

static void test_exactly_max(void **state)
{
    (void)state;
    struct collector c;
    char line[40];
    memset(line, 'x', sizeof(line));
    struct pc_splitter *sp = mk(&c, 16);

    /* exactly max: one complete entry, not a chunk plus an empty entry */
    feed(sp, line, 16);
    assert_int_equal(c.n, 0);
    assert_int_equal(pc_splitter_pending(sp), 16);
    feeds(sp, "\n");
    assert_int_equal(c.n, 1);
    expect(&c, 0, line, 16, 0);

    /* exactly max followed by CRLF, the CR in its own feed */
    feed(sp, line, 16);
    feeds(sp, "\r");
    assert_int_equal(pc_splitter_pending(sp), 17);
    feeds(sp, "\n");
    assert_int_equal(c.n, 2);
    expect(&c, 1, line, 16, 0);

    /* max - 1 and max + 1 */
    feed(sp, line, 15);
    feeds(sp, "\n");
    expect(&c, 2, line, 15, 0);
    feed(sp, line, 17);
    feeds(sp, "\n");
    assert_int_equal(c.n, 5);
    expect(&c, 3, line, 16, 1);
    expect(&c, 4, line, 1, 0);

    /* 2 * max + 3 in one feed */
    feed(sp, line, 35);
    feeds(sp, "\n");
    assert_int_equal(c.n, 8);
    expect(&c, 5, line, 16, 1);
    expect(&c, 6, line, 16, 1);
    expect(&c, 7, line, 3, 0);

    /* exactly 2 * max: the last chunk is the complete entry */
    feed(sp, line, 32);
    feeds(sp, "\n");
    assert_int_equal(c.n, 10);
    expect(&c, 8, line, 16, 1);
    expect(&c, 9, line, 16, 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_full_then_cr_then_data(void **state)
{
    (void)state;
    struct collector c;
    char line[16];
    memset(line, 'y', sizeof(line));
    struct pc_splitter *sp = mk(&c, 16);
    feed(sp, line, 16);
    feeds(sp, "\r");
    feeds(sp, "z\n"); /* the CR was data after all */
    assert_int_equal(c.n, 2);
    expect(&c, 0, line, 16, 1);
    expects(&c, 1, "\rz", 0);

    /* full + CR at EOF: both come out, the CR in the final entry */
    feed(sp, line, 16);
    feeds(sp, "\r");
    assert_int_equal(pc_splitter_finish(sp), 0);
    assert_int_equal(c.n, 4);
    expect(&c, 2, line, 16, 1);
    expects(&c, 3, "\r", 0);

    /* full + CR, then an idle flush: nothing is held back */
    feed(sp, line, 16);
    feeds(sp, "\r");
    assert_int_equal(pc_splitter_flush(sp), 0);
    assert_int_equal(pc_splitter_pending(sp), 0);
    assert_int_equal(c.n, 6);
    expect(&c, 4, line, 16, 1);
    expects(&c, 5, "\r", 1);
    pc_splitter_free(sp);
    collector_clear(&c);
}

/*
 * A multi-byte character straddling the max boundary: for each sequence
 * length and each offset, the chunk ends before the character and the next
 * entry starts with it; no chunk ever contains a broken sequence.
 */
static void test_utf8_straddle(void **state)
{
    (void)state;
    static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    const size_t max = 16;
    for (int k = 0; k < 3; k++) {
        size_t cl = strlen(chars[k]);
        for (size_t pre = max - cl; pre <= max; pre++) {
            char in[64];
            memset(in, 'a', pre);
            memcpy(in + pre, chars[k], cl);
            memcpy(in + pre + cl, "bc\n", 3);
            size_t n = pre + cl + 3;
            for (int onefeed = 0; onefeed < 2; onefeed++) {
                struct collector c;
                struct pc_splitter *sp = mk(&c, max);
                if (onefeed) {
                    feed(sp, in, n);
                } else {
                    for (size_t i = 0; i < n; i++)
                        feed(sp, in + i, 1);
                }
                size_t total = 0;
                for (size_t i = 0; i < c.n; i++) {
                    assert_true(pc_utf8_valid((unsigned char *)c.e[i].data, c.e[i].len));
                    assert_true(c.e[i].len <= max);
                    total += c.e[i].len;
                }
                assert_int_equal(total, n - 1);
                if (pre + cl + 2 <= max) {
                    assert_int_equal(c.n, 1);
                } else {
                    assert_int_equal(c.n, 2);
                    /* the cut falls before the character when it straddles max */
                    size_t first = (pre < max && pre + cl > max) ? pre : max;
                    assert_int_equal(c.e[0].len, first);
                    assert_int_equal(c.e[0].partial, 1);
                    assert_int_equal(c.e[1].partial, 0);
                }
                pc_splitter_free(sp);
                collector_clear(&c);
            }
        }
    }
}

static void test_invalid_near_cut(void **state)
{
    (void)state;
    struct collector c;
    char in[32];

    /* 15 bytes + a lone lead byte at the boundary, then ASCII: the lead byte
     * is invalid, so it does not hold the cut back */
    struct pc_splitter *sp = mk(&c, 16);
    memset(in, 'a', 15);
    in[15] = '\xe2';
    memcpy(in + 16, "xyz\n", 4);
    feed(sp, in, 20);
    assert_int_equal(c.n, 2);
    expect(&c, 0, in, 16, 1);
    expects(&c, 1, "xyz", 0);
    pc_splitter_free(sp);
    collector_clear(&c);

    /* continuation bytes at the boundary never hold the cut back */
    sp = mk(&c, 16);
    memset(in, 'a', 13);
    memcpy(in + 13, "\x80\x80\x80", 3);
    memcpy(in + 16, "\x80z\n", 3);
    feed(sp, in, 19);
    assert_int_equal(c.n, 2);
    expect(&c, 0, in, 16, 1);
    expect(&c, 1, "\x80z", 2, 0);
    pc_splitter_free(sp);
    collector_clear(&c);

    /* an overlong lead (E0 80) at the end is already invalid */
    sp = mk(&c, 16);
    memset(in, 'a', 14);
    memcpy(in + 14, "\xe0\x80", 2);
    memcpy(in + 16, "q\n", 2);
    feed(sp, in, 18);
    expect(&c, 0, in, 16, 1);
    expects(&c, 1, "q", 0);
    pc_splitter_free(sp);
    collector_clear(&c);

    /* a so-far-valid tail: held back, and a NUL byte after the boundary */
    sp = mk(&c, 16);
    memset(in, 'a', 14);
    memcpy(in + 14, "\xf0\x9f", 2);
    memcpy(in + 16, "\x98\x80\0\n", 4);
    feed(sp, in, 20);
    assert_int_equal(c.n, 2);
    expect(&c, 0, in, 14, 1);
    expect(&c, 1, "\xf0\x9f\x98\x80\0", 5, 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

/* ------------------------------------------------------- flush and EOF */

static void test_flush_then_complete(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    assert_int_equal(pc_splitter_flush(sp), 0); /* nothing pending: no-op */
    assert_int_equal(c.n, 0);
    feeds(sp, "Password: ");
    assert_int_equal(pc_splitter_flush(sp), 0);
    assert_int_equal(c.n, 1);
    expects(&c, 0, "Password: ", 1);
    assert_int_equal(pc_splitter_pending(sp), 0);
    assert_int_equal(pc_splitter_flush(sp), 0);
    assert_int_equal(c.n, 1);
    feeds(sp, "\n"); /* the line is completed: an empty final entry */
    assert_int_equal(c.n, 2);
    expects(&c, 1, "", 0);
    /* progress output: several flushes, then the rest of the line */
    feeds(sp, "10%");
    pc_splitter_flush(sp);
    feeds(sp, " 20%");
    pc_splitter_flush(sp);
    feeds(sp, " done\n");
    assert_int_equal(c.n, 5);
    expects(&c, 2, "10%", 1);
    expects(&c, 3, " 20%", 1);
    expects(&c, 4, " done", 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_flush_utf8_tail(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    feeds(sp, "ab\xf0\x9f\x98");
    assert_int_equal(pc_splitter_flush(sp), 0);
    assert_int_equal(c.n, 1);
    expects(&c, 0, "ab", 1);
    assert_int_equal(pc_splitter_pending(sp), 3);
    /* only the tail pending: flush emits nothing (never an empty chunk) */
    assert_int_equal(pc_splitter_flush(sp), 0);
    assert_int_equal(c.n, 1);
    feeds(sp, "\x80!\n");
    assert_int_equal(c.n, 2);
    expects(&c, 1, "\xf0\x9f\x98\x80!", 0);

    /* an invalid tail is not held back */
    feeds(sp, "cd\xe2\x41");
    pc_splitter_flush(sp);
    expects(&c, 2, "cd\xe2\x41", 1);
    feeds(sp, "x\xff");
    pc_splitter_flush(sp);
    expects(&c, 3, "x\xff", 1);

    /* an unfinished tail at EOF comes out anyway */
    feeds(sp, "\xe2\x82");
    pc_splitter_flush(sp);
    assert_int_equal(c.n, 4);
    assert_int_equal(pc_splitter_finish(sp), 0);
    assert_int_equal(c.n, 5);
    expects(&c, 4, "\xe2\x82", 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_flush_crlf_split(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    /* a CR held at the end of a feed is emitted by a flush (nothing but an
     * unfinished UTF-8 sequence is kept back), so it is then data */
    feeds(sp, "abc\r");
    pc_splitter_flush(sp);
    feeds(sp, "\n");
    assert_int_equal(c.n, 2);
    expects(&c, 0, "abc\r", 1);
    expects(&c, 1, "", 0);
    pc_splitter_free(sp);
    collector_clear(&c);
}

static void test_finish_after_flush(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 64);
    feeds(sp, "prompt> ");
    pc_splitter_flush(sp);
    assert_int_equal(pc_splitter_finish(sp), 0);
    /* nothing pending at EOF: no extra empty entry */
    assert_int_equal(c.n, 1);
    expects(&c, 0, "prompt> ", 1);
    pc_splitter_free(sp);
    collector_clear(&c);
}

/* ---------------------------------------------------------- callback errors */

static void test_callback_error(void **state)
{
    (void)state;
    struct collector c;
    struct pc_splitter *sp = mk(&c, 16);
    c.fail_at = 2;
    assert_int_equal(pc_splitter_feed(sp, "a\nb\nc\n", 6), PC_EIO);
    assert_int_equal(c.calls, 2); /* stopped at the failing call */
    assert_int_equal(c.n, 1);
    expects(&c, 0, "a", 0);
    pc_splitter_free(sp);
    collector_clear(&c);

    /* from a max-line chunk */
    char line[40];
    memset(line, 'x', sizeof(line));
    sp = mk(&c, 16);
    c.fail_at = 1;
    assert_int_equal(pc_splitter_feed(sp, line, 40), PC_EIO);
    assert_int_equal(c.calls, 1);
    pc_splitter_free(sp);
    collector_clear(&c);

    /* from flush and finish */
    sp = mk(&c, 16);
    c.fail_at = 1;
    feeds(sp, "abc");
    assert_int_equal(pc_splitter_flush(sp), PC_EIO);
    feeds(sp, "def");
    c.fail_at = 2;
    assert_int_equal(pc_splitter_finish(sp), PC_EIO);
    assert_int_equal(c.calls, 2);
    pc_splitter_free(sp);
    collector_clear(&c);
}

/* --------------------------------------------------- reassembly property */

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Bytes with many newlines, CRs, NULs, UTF-8 pieces and invalid bytes. */
static void random_input(unsigned char *b, size_t n, int with_cr)
{
    static const char *const pieces[] = {"\xc3\xa9",     "\xe2\x82\xac",     "\xf0\x9f\x98\x80",
                                         "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf"};
    size_t i = 0;
    while (i < n) {
        uint32_t r = rnd() % 100;
        if (r < 8) {
            b[i++] = '\n';
        } else if (r < 12 && with_cr) {
            b[i++] = '\r';
        } else if (r < 14) {
            b[i++] = '\0';
        } else if (r < 30) {
            const char *p = pieces[rnd() % 6];
            for (size_t k = 0; p[k] && i < n; k++)
                b[i++] = (unsigned char)p[k];
        } else if (r < 33) {
            b[i++] = (unsigned char)(0x80 + rnd() % 0x80);
        } else {
            b[i++] = (unsigned char)('a' + rnd() % 26);
        }
    }
}

/* @p in with every "\r\n" turned into "\n" (what the splitter gives back). */
static size_t strip_crlf(const unsigned char *in, size_t n, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n')
            continue;
        out[o++] = in[i];
    }
    return o;
}

/*
 * Random inputs fed in random piece sizes, with and without idle flushes:
 * the chunks, each followed by "\n" when it is complete, reproduce the input
 * byte for byte (with CRLF -> LF, plus a final "\n" when EOF had to complete
 * the last line). No flushes: every CRLF is stripped. With flushes: inputs
 * without CR, since a flush may separate a CR from its LF.
 */
static void test_reassembly_property(void **state)
{
    (void)state;
    enum { N = 3000 };
    unsigned char *in = malloc(N), *want = malloc(N + 1), *got = malloc(2 * N + 2);
    assert_true(in && want && got);
    for (int iter = 0; iter < 600; iter++) {
        int with_flush = iter % 2;
        size_t n = rnd() % N;
        size_t max = PC_LINE_MAX_MIN + rnd() % (iter % 3 == 0 ? 8 : 200);
        random_input(in, n, !with_flush);

        struct collector c;
        struct pc_splitter *sp = mk(&c, max);
        size_t off = 0;
        while (off < n) {
            size_t piece = 1 + rnd() % (rnd() % 2 ? 5 : 300);
            if (piece > n - off)
                piece = n - off;
            feed(sp, (const char *)in + off, piece);
            off += piece;
            assert_true(pc_splitter_pending(sp) <= max + 1);
            if (with_flush && rnd() % 4 == 0) {
                assert_int_equal(pc_splitter_flush(sp), 0);
                assert_true(pc_splitter_pending(sp) <= 3);
            }
        }
        size_t pend = pc_splitter_pending(sp);
        assert_int_equal(pc_splitter_finish(sp), 0);
        assert_int_equal(pc_splitter_pending(sp), 0);

        size_t g = 0;
        for (size_t i = 0; i < c.n; i++) {
            memcpy(got + g, c.e[i].data, c.e[i].len);
            g += c.e[i].len;
            if (!c.e[i].partial)
                got[g++] = '\n';
            /* a chunk cut for length never splits a valid sequence: it ends
             * where the UTF-8 checker would cut it */
            if (c.e[i].partial && !with_flush)
                assert_true(c.e[i].len + 3 >= max);
        }
        size_t w = strip_crlf(in, n, want);
        if (pend > 0)
            want[w++] = '\n';
        if (g != w || memcmp(got, want, w) != 0)
            fail_msg("iteration %d (max %zu, n %zu): reassembly differs (%zu vs %zu bytes)", iter,
                     max, n, g, w);
        pc_splitter_free(sp);
        collector_clear(&c);
    }
    free(in);
    free(want);
    free(got);
}

/* Chunks of valid UTF-8 input are valid UTF-8 themselves: no cut inside a character. */
static void test_valid_input_valid_chunks(void **state)
{
    (void)state;
    static const char *const chars[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    unsigned char in[4096];
    for (int iter = 0; iter < 200; iter++) {
        size_t n = 0;
        while (n < sizeof(in) - 8) {
            const char *ch = rnd() % 30 == 0 ? "\n" : chars[rnd() % 4];
            memcpy(in + n, ch, strlen(ch));
            n += strlen(ch);
        }
        struct collector c;
        struct pc_splitter *sp = mk(&c, PC_LINE_MAX_MIN + rnd() % 100);
        size_t off = 0;
        while (off < n) {
            size_t piece = 1 + rnd() % 64;
            if (piece > n - off)
                piece = n - off;
            feed(sp, (const char *)in + off, piece);
            off += piece;
            if (rnd() % 8 == 0)
                assert_int_equal(pc_splitter_flush(sp), 0);
        }
        assert_int_equal(pc_splitter_finish(sp), 0);
        for (size_t i = 0; i < c.n; i++)
            assert_true(pc_utf8_valid((unsigned char *)c.e[i].data, c.e[i].len));
        pc_splitter_free(sp);
        collector_clear(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_args),
        cmocka_unit_test(test_simple_lines),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_cr_across_feeds),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_exactly_max),
        cmocka_unit_test(test_full_then_cr_then_data),
        cmocka_unit_test(test_utf8_straddle),
        cmocka_unit_test(test_invalid_near_cut),
        cmocka_unit_test(test_flush_then_complete),
        cmocka_unit_test(test_flush_utf8_tail),
        cmocka_unit_test(test_flush_crlf_split),
        cmocka_unit_test(test_finish_after_flush),
        cmocka_unit_test(test_callback_error),
        cmocka_unit_test(test_reassembly_property),
        cmocka_unit_test(test_valid_input_valid_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
