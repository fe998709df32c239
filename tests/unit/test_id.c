/* test_id.c -- stream ids: strict parsing, compare, format, next. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "pipecast/error.h"
#include "pipecast/id.h"

static int parse(const char *s, int ms_only, struct pc_id *out)
{
    return pc_id_parse(s, strlen(s), ms_only, out);
}

static void test_parse_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms, seq;
    } cases[] = {
        {"0-0", 0, 0},
        {"0-1", 0, 1},
        {"1700000000000-0", 1700000000000ULL, 0},
        {"1700000000000-42", 1700000000000ULL, 42},
        {"007-008", 7, 8},
        {"18446744073709551615-18446744073709551615", UINT64_MAX, UINT64_MAX},
        {"18446744073709551615-0", UINT64_MAX, 0},
        {"00000000000000000001-00000000000000000002", 1, 2}, /* exactly 20 digits each */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pc_id id = {99, 99};
        assert_int_equal(parse(cases[i].s, 0, &id), 0);
        assert_true(id.ms == cases[i].ms);
        assert_true(id.seq == cases[i].seq);
    }
}

static void test_parse_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "-",
        "1-",
        "-1",
        "+1-0",
        "1-+0",
        "-1-0",
        "1--0",
        "1-0-0",
        " 1-0",
        "1-0 ",
        "1 -0",
        "1- 0",
        "1-0\n",
        "a-0",
        "1-b",
        "0x1-0",
        "1.5-0",
        "18446744073709551616-0",  /* ms overflow by one */
        "0-18446744073709551616",  /* seq overflow by one */
        "99999999999999999999-0",  /* 20 digits, overflows */
        "000000000000000000001-0", /* 21 digits, even though small */
        "0-000000000000000000001", /* 21 digits */
        "184467440737095516150-0", /* 21 digits */
        "1-*",
        "*",
        "$",
        ">",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pc_id id = {7, 7};
        if (parse(bad[i], 0, &id) != PC_EID)
            fail_msg("accepted invalid id \"%s\"", bad[i]);
        /* out untouched on failure */
        assert_true(id.ms == 7 && id.seq == 7);
        if (parse(bad[i], 1, &id) != PC_EID)
            fail_msg("accepted invalid id \"%s\" with ms-only", bad[i]);
    }
}

static void test_parse_ms_only(void **state)
{
    (void)state;
    struct pc_id id = {1, 1};
    assert_int_equal(parse("12345", 0, &id), PC_EID);
    assert_int_equal(parse("12345", 1, &id), 0);
    assert_true(id.ms == 12345 && id.seq == 0);
    assert_int_equal(parse("18446744073709551615", 1, &id), 0);
    assert_true(id.ms == UINT64_MAX && id.seq == 0);
    assert_int_equal(parse("18446744073709551616", 1, &id), PC_EID);
    assert_int_equal(parse("", 1, &id), PC_EID);
    assert_int_equal(parse("+5", 1, &id), PC_EID);
    assert_int_equal(parse(" 5", 1, &id), PC_EID);
    /* the full form still works with ms-only allowed */
    assert_int_equal(parse("5-6", 1, &id), 0);
    assert_true(id.ms == 5 && id.seq == 6);
}

static void test_parse_length_not_nul(void **state)
{
    (void)state;
    struct pc_id id;
    /* only len bytes are looked at */
    assert_int_equal(pc_id_parse("12-34xyz", 5, 0, &id), 0);
    assert_true(id.ms == 12 && id.seq == 34);
    /* an embedded NUL is not a digit */
    assert_int_equal(pc_id_parse("1-2\0"
                                 "3",
                                 5, 0, &id),
                     PC_EID);
    assert_int_equal(pc_id_parse(NULL, 0, 1, &id), PC_EID);
}

static void test_cmp(void **state)
{
    (void)state;
    struct pc_id a = {1, 5}, b = {2, 0}, c = {1, 6}, d = {1, 5};
    struct pc_id max = {UINT64_MAX, UINT64_MAX}, zero = {0, 0};
    assert_true(pc_id_cmp(&a, &b) < 0);
    assert_true(pc_id_cmp(&b, &a) > 0);
    assert_true(pc_id_cmp(&a, &c) < 0);
    assert_true(pc_id_cmp(&c, &a) > 0);
    assert_int_equal(pc_id_cmp(&a, &d), 0);
    assert_true(pc_id_cmp(&zero, &max) < 0);
    assert_true(pc_id_cmp(&max, &zero) > 0);
    /* ms dominates seq, even when seq is huge: no subtraction overflow */
    struct pc_id e = {1, UINT64_MAX}, f = {2, 0};
    assert_true(pc_id_cmp(&e, &f) < 0);
}

static void test_format_roundtrip(void **state)
{
    (void)state;
    char buf[PC_ID_STRLEN];
    struct pc_id ids[] = {{0, 0}, {1, 2}, {1700000000000ULL, 7}, {UINT64_MAX, UINT64_MAX}};
    const char *want[] = {"0-0", "1-2", "1700000000000-7",
                          "18446744073709551615-18446744073709551615"};
    for (size_t i = 0; i < 4; i++) {
        int n = pc_id_format(&ids[i], buf);
        assert_string_equal(buf, want[i]);
        assert_int_equal(n, (int)strlen(want[i]));
        struct pc_id back;
        assert_int_equal(pc_id_parse(buf, (size_t)n, 0, &back), 0);
        assert_int_equal(pc_id_cmp(&back, &ids[i]), 0);
    }
    assert_int_equal(strlen(want[3]) + 1, PC_ID_STRLEN);
}

static void test_next(void **state)
{
    (void)state;
    struct pc_id a = {5, 9}, out;
    assert_int_equal(pc_id_next(&a, &out), 0);
    assert_true(out.ms == 5 && out.seq == 10);
    assert_true(pc_id_cmp(&a, &out) < 0);

    struct pc_id b = {5, UINT64_MAX};
    assert_int_equal(pc_id_next(&b, &out), 0);
    assert_true(out.ms == 6 && out.seq == 0);

    struct pc_id max = {UINT64_MAX, UINT64_MAX};
    out.ms = out.seq = 3;
    assert_int_equal(pc_id_next(&max, &out), PC_EID);
    assert_true(out.ms == 3 && out.seq == 3);

    struct pc_id c = {UINT64_MAX, 1};
    assert_int_equal(pc_id_next(&c, &c), 0); /* in place */
    assert_true(c.ms == UINT64_MAX && c.seq == 2);
}

static void test_is_zero(void **state)
{
    (void)state;
    struct pc_id z = {0, 0}, a = {0, 1}, b = {1, 0};
    assert_true(pc_id_is_zero(&z));
    assert_false(pc_id_is_zero(&a));
    assert_false(pc_id_is_zero(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),   cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_ms_only), cmocka_unit_test(test_parse_length_not_nul),
        cmocka_unit_test(test_cmp),           cmocka_unit_test(test_format_roundtrip),
        cmocka_unit_test(test_next),          cmocka_unit_test(test_is_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
