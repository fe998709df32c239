/* test_utf8.c -- strict UTF-8: sequence lengths, safe cuts, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pipecast/utf8.h"

#define U(s) ((const unsigned char *)(s))

static size_t seq(const char *s)
{
    return pc_utf8_seq_len(U(s), strlen(s));
}

static int valid(const char *s)
{
    return pc_utf8_valid(U(s), strlen(s));
}

/* Encode a code point without any checks (to build invalid encodings too). */
static size_t enc(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static void test_seq_len_valid(void **state)
{
    (void)state;
    assert_int_equal(seq("a"), 1);
    assert_int_equal(pc_utf8_seq_len(U("\0"), 1), 1); /* U+0000 is valid */
    assert_int_equal(seq("\x7f"), 1);
    assert_int_equal(seq("\xc2\x80"), 2);         /* U+0080, smallest 2-byte */
    assert_int_equal(seq("\xdf\xbf"), 2);         /* U+07FF */
    assert_int_equal(seq("\xe0\xa0\x80"), 3);     /* U+0800 */
    assert_int_equal(seq("\xed\x9f\xbf"), 3);     /* U+D7FF, just below surrogates */
    assert_int_equal(seq("\xee\x80\x80"), 3);     /* U+E000, just above */
    assert_int_equal(seq("\xef\xbf\xbf"), 3);     /* U+FFFF */
    assert_int_equal(seq("\xf0\x90\x80\x80"), 4); /* U+10000 */
    assert_int_equal(seq("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
    assert_int_equal(seq("\xe2\x82\xac"
                         "x"),
                     3); /* only the first sequence */
}

static void test_seq_len_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\x80", /* lone continuation */
        "\xbf",
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong 3-byte */
        "\xe0\x9f\xbf",     /* overlong U+07FF */
        "\xed\xa0\x80",     /* U+D800 surrogate */
        "\xed\xbf\xbf",     /* U+DFFF surrogate */
        "\xf0\x80\x80\x80", /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* lead byte above F4 */
        "\xf8\x88\x80\x80\x80",
        "\xfe",
        "\xff",
        "\xc2", /* truncated */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc2\x41", /* continuation missing */
        "\xe2\x41\x82",
        "\xf0\x9f\x41\x80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (seq(bad[i]) != 0)
            fail_msg("case %zu accepted", i);
        if (valid(bad[i]))
            fail_msg("case %zu valid", i);
    }
    assert_int_equal(pc_utf8_seq_len(U(""), 0), 0);
    /* a valid sequence cut short by len */
    assert_int_equal(pc_utf8_seq_len(U("\xe2\x82\xac"), 2), 0);
}

/* Every code point encodes to a sequence the checker accepts exactly when it
 * is a Unicode scalar value; the overlong encodings of the same value fail. */
static void test_all_code_points(void **state)
{
    (void)state;
    unsigned char b[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = enc(cp, b);
        int scalar = !(cp >= 0xD800 && cp <= 0xDFFF);
        if ((pc_utf8_seq_len(b, n) == n) != scalar)
            fail_msg("U+%04X", (unsigned)cp);
        if (n < 4 && cp >= 0x80) {
            /* the same value forced into one more byte is an overlong */
            unsigned char o[4];
            size_t m;
            if (n == 2) {
                o[0] = 0xE0;
                o[1] = (unsigned char)(0x80 | (cp >> 6));
                o[2] = b[1];
                m = 3;
            } else {
                o[0] = 0xF0;
                o[1] = (unsigned char)(0x80 | (cp >> 12));
                o[2] = b[1];
                o[3] = b[2];
                m = 4;
            }
            if (pc_utf8_seq_len(o, m) != 0)
                fail_msg("overlong U+%04X accepted", (unsigned)cp);
        }
    }
    /* above U+10FFFF */
    for (uint32_t cp = 0x110000; cp < 0x200000; cp += 0x1001) {
        size_t n = enc(cp, b);
        assert_int_equal(pc_utf8_seq_len(b, n), 0);
    }
}

static void test_valid_strings(void **state)
{
    (void)state;
    assert_true(valid(""));
    assert_true(valid("plain ascii"));
    assert_true(valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    assert_true(pc_utf8_valid(U("a\0b"), 3));
    assert_false(valid("caf\xc3"));
    assert_false(valid("\xf0\x9f\x98\x80\x80"));
    assert_false(valid("ok\xed\xa0\x80"));
}

static void test_safe_cut(void **state)
{
    (void)state;
    const unsigned char *euro = U("ab\xe2\x82\xac");      /* 2 + 3 bytes */
    const unsigned char *smile = U("ab\xf0\x9f\x98\x80"); /* 2 + 4 bytes */
    /* complete input: cut at the end */
    assert_int_equal(pc_utf8_safe_cut(euro, 5), 5);
    assert_int_equal(pc_utf8_safe_cut(smile, 6), 6);
    /* ending inside a sequence: cut before it */
    assert_int_equal(pc_utf8_safe_cut(euro, 3), 2);
    assert_int_equal(pc_utf8_safe_cut(euro, 4), 2);
    assert_int_equal(pc_utf8_safe_cut(smile, 3), 2);
    assert_int_equal(pc_utf8_safe_cut(smile, 4), 2);
    assert_int_equal(pc_utf8_safe_cut(smile, 5), 2);
    assert_int_equal(pc_utf8_safe_cut(U("\xc3"), 1), 0);
    assert_int_equal(pc_utf8_safe_cut(U("x\xc3"), 2), 1);
    assert_int_equal(pc_utf8_safe_cut(U(""), 0), 0);
    assert_int_equal(pc_utf8_safe_cut(U("abc"), 3), 3);
    /* invalid bytes never hold a cut back */
    assert_int_equal(pc_utf8_safe_cut(U("ab\x80"), 3), 3);
    assert_int_equal(pc_utf8_safe_cut(U("ab\x80\x80\x80"), 5), 5);
    assert_int_equal(pc_utf8_safe_cut(U("ab\xff"), 3), 3);
    assert_int_equal(pc_utf8_safe_cut(U("ab\xc0"), 3), 3);     /* never valid lead */
    assert_int_equal(pc_utf8_safe_cut(U("ab\xe0\x80"), 4), 4); /* overlong start */
    assert_int_equal(pc_utf8_safe_cut(U("ab\xed\xa0"), 4), 4); /* surrogate start */
    assert_int_equal(pc_utf8_safe_cut(U("ab\xf4\x90"), 4), 4); /* > U+10FFFF start */
    assert_int_equal(pc_utf8_safe_cut(U("ab\xc3\x41"), 4), 4);
    /* the hold-back is at most 3 bytes, even after a 4th continuation byte */
    assert_int_equal(pc_utf8_safe_cut(U("ab\xf0\x9f\x98\x80\x80"), 7), 7);
    /* a valid-but-unfinished tail after invalid bytes is still held back */
    assert_int_equal(pc_utf8_safe_cut(U("\xff\xe2\x82"), 3), 1);
    assert_int_equal(pc_utf8_safe_cut(U("\xe2\x82\xe2"), 3), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_len_valid),   cmocka_unit_test(test_seq_len_invalid),
        cmocka_unit_test(test_all_code_points), cmocka_unit_test(test_valid_strings),
        cmocka_unit_test(test_safe_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
