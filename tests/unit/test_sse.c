/* test_sse.c -- SSE framing and UTF-8 sanitising. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pipecast/buf.h"
#include "pipecast/error.h"
#include "pipecast/sse.h"
#include "pipecast/utf8.h"

#define FFFD "\xef\xbf\xbd"

static void expect_event(const char *id, const char *event, const char *data, size_t len,
                         const char *want)
{
    struct pc_buf b;
    pc_buf_init(&b, 1 << 20);
    assert_int_equal(pc_sse_event(&b, id, event, data, len), 0);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    pc_buf_free(&b);
}

static void test_basic(void **state)
{
    (void)state;
    expect_event("1-0", NULL, "hello", 5, "id: 1-0\ndata: hello\n\n");
    expect_event("1700000000000-3", "stderr", "oops", 4,
                 "id: 1700000000000-3\nevent: stderr\ndata: oops\n\n");
    expect_event(NULL, NULL, "x", 1, "data: x\n\n");
    expect_event(NULL, "progress", "{\"pct\":40}", 10, "event: progress\ndata: {\"pct\":40}\n\n");
}

static void test_empty_payload(void **state)
{
    (void)state;
    expect_event("1-0", NULL, "", 0, "id: 1-0\ndata:\n\n");
    expect_event("1-0", NULL, NULL, 0, "id: 1-0\ndata:\n\n");
}

static void test_multiline(void **state)
{
    (void)state;
    expect_event("1-0", NULL, "a\nb\nc", 5, "id: 1-0\ndata: a\ndata: b\ndata: c\n\n");
    /* CRLF and lone CR are line ends too; CRLF counts once */
    expect_event(NULL, NULL, "a\r\nb\rc", 6, "data: a\ndata: b\ndata: c\n\n");
    /* an empty line inside, and a trailing line end, survive */
    expect_event(NULL, NULL, "a\n\nb", 4, "data: a\ndata:\ndata: b\n\n");
    expect_event(NULL, NULL, "a\n", 2, "data: a\ndata:\n\n");
    expect_event(NULL, NULL, "\n", 1, "data:\ndata:\n\n");
    expect_event(NULL, NULL, "\r\r\n", 3, "data:\ndata:\ndata:\n\n");
    expect_event(NULL, NULL, "\n\r", 2, "data:\ndata:\ndata:\n\n");
    /* leading space kept: the parser strips only the one after "data:" */
    expect_event(NULL, NULL, " x", 2, "data:  x\n\n");
    /* NUL is valid UTF-8 and passes through */
    struct pc_buf b;
    pc_buf_init(&b, 100);
    assert_int_equal(pc_sse_event(&b, NULL, NULL, "a\0b", 3), 0);
    assert_int_equal(b.len, 11);
    assert_memory_equal(b.data, "data: a\0b\n\n", 12);
    pc_buf_free(&b);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    expect_event(NULL, NULL,
                 "a\xff"
                 "b",
                 3, "data: a" FFFD "b\n\n");
    /* one U+FFFD per maximal subpart (WHATWG) */
    expect_event(NULL, NULL, "\xe2\x82", 2, "data: " FFFD "\n\n");      /* truncated: one */
    expect_event(NULL, NULL, "\xe0\x80", 2, "data: " FFFD FFFD "\n\n"); /* E0 80: two */
    expect_event(NULL, NULL, "\xed\xa0\x80", 3, "data: " FFFD FFFD FFFD "\n\n");
    expect_event(NULL, NULL,
                 "\xf0\x9f\x98"
                 "x",
                 4, "data: " FFFD "x\n\n");
    expect_event(NULL, NULL, "\xc0\xaf", 2, "data: " FFFD FFFD "\n\n");
    expect_event(NULL, NULL, "\xf4\x90\x80\x80", 4, "data: " FFFD FFFD FFFD FFFD "\n\n");
    /* a broken sequence before a line end: the line end is still a line end */
    expect_event(NULL, NULL, "\xe2\x82\nz", 4, "data: " FFFD "\ndata: z\n\n");
    /* valid text passes unchanged */
    expect_event(NULL, NULL, "caf\xc3\xa9 \xf0\x9f\x98\x80", 10,
                 "data: caf\xc3\xa9 \xf0\x9f\x98\x80\n\n");
}

static void test_sanitize_append(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 100);
    assert_int_equal(pc_utf8_sanitize_append(&b, "ok\xff\n\xc3", 5), 0);
    assert_string_equal(b.data, "ok" FFFD "\n" FFFD);
    pc_buf_free(&b);
    /* U+FFFD grows the output: the cap counts it */
    pc_buf_init(&b, 5);
    assert_int_equal(pc_utf8_sanitize_append(&b, "ab", 2), 0);
    assert_int_equal(pc_utf8_sanitize_append(&b, "\xff\xff", 2), PC_ETOOBIG);
    assert_string_equal(b.data, "ab");
    assert_int_equal(b.len, 2);
    pc_buf_free(&b);
}

static void test_id_event_validation(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 100);
    assert_int_equal(pc_buf_append_str(&b, "keep"), 0);
    assert_int_equal(pc_sse_event(&b, "1-0\n", NULL, "x", 1), PC_EINVAL);
    assert_int_equal(pc_sse_event(&b, "1-0\r", NULL, "x", 1), PC_EINVAL);
    assert_int_equal(pc_sse_event(&b, "1-0", "a\nb", "x", 1), PC_EINVAL);
    assert_int_equal(pc_sse_event(&b, "1-0", "a\rb", "x", 1), PC_EINVAL);
    assert_int_equal(pc_sse_event(&b, NULL, NULL, NULL, 3), PC_EINVAL);
    assert_string_equal(b.data, "keep");
    assert_int_equal(pc_sse_comment(&b, "x\ny"), PC_EINVAL);
    assert_int_equal(pc_sse_comment(&b, "x\r"), PC_EINVAL);
    assert_string_equal(b.data, "keep");
    pc_buf_free(&b);
}

static void test_toobig_unchanged(void **state)
{
    (void)state;
    struct pc_buf b;
    const char *ev = "id: 1-0\ndata: hello\n\n"; /* 21 bytes */
    /* for every cap from 0 to the exact size: either it fits or nothing changes */
    for (size_t max = 0; max <= 30; max++) {
        pc_buf_init(&b, max);
        int rc = pc_sse_event(&b, "1-0", NULL, "hello", 5);
        if (max < 21) {
            assert_int_equal(rc, PC_ETOOBIG);
            assert_int_equal(b.len, 0);
            if (b.data != NULL)
                assert_int_equal(b.data[0], '\0');
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(b.data, ev);
        }
        pc_buf_free(&b);
    }
    /* with previous content, which must survive intact */
    pc_buf_init(&b, 30);
    assert_int_equal(pc_buf_append_str(&b, "prev\n"), 0);
    assert_int_equal(pc_sse_event(&b, "1-0", "e", "a\nb\nc\nd\ne\nf", 11), PC_ETOOBIG);
    assert_string_equal(b.data, "prev\n");
    assert_int_equal(b.len, 5);
    assert_int_equal(pc_sse_retry(&b, 4294967295u), 0); /* 19 bytes: fits */
    pc_buf_consume(&b, 19 + 5);
    assert_int_equal(pc_buf_append_str(&b, "prev\n0123456789"), 0);
    assert_int_equal(pc_sse_retry(&b, 4294967295u), PC_ETOOBIG);
    assert_int_equal(b.len, 15);
    pc_buf_consume(&b, 15);
    assert_int_equal(pc_buf_append_str(&b, "prev\n"), 0);
    assert_string_equal(b.data, "prev\n");
    assert_int_equal(pc_sse_comment(&b, "a very long comment that does not fit"), PC_ETOOBIG);
    assert_string_equal(b.data, "prev\n");
    pc_buf_free(&b);
}

static void test_retry_comment(void **state)
{
    (void)state;
    struct pc_buf b;
    pc_buf_init(&b, 100);
    assert_int_equal(pc_sse_retry(&b, 2000), 0);
    assert_string_equal(b.data, "retry: 2000\n\n");
    assert_int_equal(pc_sse_comment(&b, "ping"), 0);
    assert_string_equal(b.data, "retry: 2000\n\n: ping\n\n");
    pc_buf_reset(&b);
    assert_int_equal(pc_sse_comment(&b, ""), 0);
    assert_string_equal(b.data, ":\n\n");
    pc_buf_reset(&b);
    assert_int_equal(pc_sse_comment(&b, "bad\xff"), 0);
    assert_string_equal(b.data, ": bad" FFFD "\n\n");
    pc_buf_free(&b);
}

/* Whatever the payload, the output is valid UTF-8 with no CR, and every line
 * of the event starts with a field name. */
static void test_random_payloads(void **state)
{
    (void)state;
    uint32_t x = 99;
    unsigned char data[256];
    struct pc_buf b;
    pc_buf_init(&b, 1 << 16);
    for (int iter = 0; iter < 5000; iter++) {
        size_t n = 0, want = 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        n = x % sizeof(data);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            data[i] = x % 7 == 0 ? (unsigned char)"\r\n\xe2\x82\xac\xff"[x % 6] : (unsigned char)x;
        }
        pc_buf_reset(&b);
        assert_int_equal(pc_sse_event(&b, "5-5", "ev", (const char *)data, n), 0);
        assert_true(pc_utf8_valid((unsigned char *)b.data, b.len));
        assert_null(memchr(b.data, '\r', b.len));
        assert_true(b.len >= 2 && memcmp(b.data + b.len - 2, "\n\n", 2) == 0);
        /* one data line per payload line */
        for (size_t i = 0; i < n; i++) {
            if (data[i] == '\n' || (data[i] == '\r' && !(i + 1 < n && data[i + 1] == '\n')))
                want++;
        }
        size_t lines = 0;
        /* payload NULs pass through: no strstr */
        for (size_t i = 0; i + 6 <= b.len; i++) {
            if (memcmp(b.data + i, "\ndata:", 6) == 0)
                lines++;
        }
        /* every data line follows a '\n' (the first one the event line's) */
        assert_int_equal(lines, want);
    }
    pc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_empty_payload),
        cmocka_unit_test(test_multiline),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_sanitize_append),
        cmocka_unit_test(test_id_event_validation),
        cmocka_unit_test(test_toobig_unchanged),
        cmocka_unit_test(test_retry_comment),
        cmocka_unit_test(test_random_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
