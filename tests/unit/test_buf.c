/* test_buf.c -- the capped buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pipecast/buf.h"
#include "pipecast/error.h"

static void test_init_empty(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 100);
    pc_buf_free(&b);
    assert_null(b.data);
}

static void test_append_and_nul(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 100);
    assert_int_equal(pc_buf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    assert_int_equal(pc_buf_append_str(&b, "def"), 0);
    assert_string_equal(b.data, "abcdef");
    assert_int_equal(pc_buf_append(&b, "\0x", 2), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "abcdef\0x", 9); /* includes the terminating NUL */
    pc_buf_free(&b);
}

static void test_append_zero_allocates(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 10);
    assert_int_equal(pc_buf_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    pc_buf_free(&b);
}

static void test_cap_exact(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 5);
    assert_int_equal(pc_buf_append(&b, "12345", 5), 0);
    assert_int_equal(b.len, 5);
    assert_int_equal(pc_buf_append(&b, "6", 1), PC_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "12345");
    assert_int_equal(pc_buf_append(&b, "", 0), 0);
    pc_buf_free(&b);
}

static void test_toobig_leaves_unchanged(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 8);
    assert_int_equal(pc_buf_append(&b, "abc", 3), 0);
    assert_int_equal(pc_buf_append(&b, "123456", 6), PC_ETOOBIG);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    assert_true(b.cap <= 8);
    pc_buf_free(&b);
}

static void test_zero_max(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 0);
    assert_int_equal(pc_buf_append(&b, "a", 1), PC_ETOOBIG);
    assert_int_equal(pc_buf_printf(&b, "%d", 1), PC_ETOOBIG);
    assert_int_equal(b.len, 0);
    pc_buf_free(&b);
}

static void test_huge_append_refused(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 16);
    assert_int_equal(pc_buf_append(&b, "a", 1), 0);
    /* n near SIZE_MAX must not wrap around the len + n check */
    assert_int_equal(pc_buf_append(&b, "x", SIZE_MAX), PC_ETOOBIG);
    assert_int_equal(b.len, 1);
    pc_buf_free(&b);
}

static void test_growth_many(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 100000);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(pc_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 100000);
    assert_true(b.cap <= 100000);
    assert_memory_equal(b.data + 99990, "0123456789", 10);
    assert_int_equal(b.data[100000], '\0');
    assert_int_equal(pc_buf_append(&b, "x", 1), PC_ETOOBIG);
    pc_buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 1000);
    assert_int_equal(pc_buf_printf(&b, "%s-%d", "ab", 42), 0);
    assert_string_equal(b.data, "ab-42");
    /* longer than the first allocation: takes the second formatting path */
    char big[300];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(pc_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 5 + 301);
    assert_int_equal(b.data[5], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    pc_buf_free(&b);
}

static void test_printf_toobig_unchanged(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 10);
    assert_int_equal(pc_buf_printf(&b, "%s", "hello"), 0);
    /* fits in the allocation (64 bytes) but not under max */
    assert_int_equal(pc_buf_printf(&b, "%s", "world!"), PC_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "hello");
    assert_int_equal(pc_buf_printf(&b, "%s", "world"), 0);
    assert_string_equal(b.data, "helloworld");
    pc_buf_free(&b);
}

static void test_consume_reset(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 100);
    assert_int_equal(pc_buf_append_str(&b, "abcdef"), 0);
    pc_buf_consume(&b, 2);
    assert_string_equal(b.data, "cdef");
    assert_int_equal(b.len, 4);
    pc_buf_consume(&b, 0);
    assert_string_equal(b.data, "cdef");
    pc_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(pc_buf_append_str(&b, "xy"), 0);
    char *before = b.data;
    pc_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, before); /* allocation kept */
    assert_string_equal(b.data, "");
    pc_buf_free(&b);
    /* reusable after free, same max */
    assert_int_equal(pc_buf_append_str(&b, "again"), 0);
    assert_string_equal(b.data, "again");
    pc_buf_free(&b);
    pc_buf_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_empty),
        cmocka_unit_test(test_append_and_nul),
        cmocka_unit_test(test_append_zero_allocates),
        cmocka_unit_test(test_cap_exact),
        cmocka_unit_test(test_toobig_leaves_unchanged),
        cmocka_unit_test(test_zero_max),
        cmocka_unit_test(test_huge_append_refused),
        cmocka_unit_test(test_growth_many),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_printf_toobig_unchanged),
        cmocka_unit_test(test_consume_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
