/* test_channel.c -- channel/event/prefix names and key names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"

static const char channel_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-";
static const char event_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

static int cvalid(const char *s)
{
    return pc_channel_valid(s, strlen(s));
}

static void test_channel_length_bounds(void **state)
{
    (void)state;
    char name[PC_CHANNEL_MAX + 2];
    memset(name, 'a', sizeof(name));
    assert_false(pc_channel_valid(name, 0));
    assert_true(pc_channel_valid(name, 1));
    assert_true(pc_channel_valid(name, 199));
    assert_true(pc_channel_valid(name, 200));
    assert_false(pc_channel_valid(name, 201));
    assert_false(pc_channel_valid(NULL, 0));
    assert_false(pc_channel_valid(NULL, 5));
}

static void test_channel_every_byte(void **state)
{
    (void)state;
    /* each of the 256 byte values, alone and in the middle of a name */
    for (int c = 0; c < 256; c++) {
        char one[1] = {(char)c};
        char mid[3] = {'a', (char)c, 'b'};
        int allowed = c != 0 && strchr(channel_alphabet, c) != NULL;
        if (pc_channel_valid(one, 1) != allowed)
            fail_msg("byte 0x%02x alone: expected %d", c, allowed);
        if (pc_channel_valid(mid, 3) != allowed)
            fail_msg("byte 0x%02x inside: expected %d", c, allowed);
    }
}

static void test_channel_examples(void **state)
{
    (void)state;
    assert_true(cvalid("build-42"));
    assert_true(cvalid("sess:1234:stdout")); /* the seed convention */
    assert_true(cvalid("user@host.example"));
    assert_true(cvalid("a.b_c:d@e-f"));
    assert_true(cvalid("..."));
    assert_false(cvalid("a/b"));
    assert_false(cvalid("a b"));
    assert_false(cvalid(" a"));
    assert_false(cvalid("a\n"));
    assert_false(cvalid("caf\xc3\xa9")); /* UTF-8 is refused, not folded */
    assert_false(cvalid("a*"));
    assert_false(cvalid("a?b"));
    assert_false(cvalid("a%20b"));
    assert_false(pc_channel_valid("ab\0cd", 5)); /* NUL inside */
}

static void test_event_names(void **state)
{
    (void)state;
    char name[PC_EVENT_MAX + 2];
    memset(name, 'e', sizeof(name));
    assert_false(pc_event_valid(name, 0));
    assert_true(pc_event_valid(name, 1));
    assert_true(pc_event_valid(name, 64));
    assert_false(pc_event_valid(name, 65));
    assert_false(pc_event_valid(NULL, 1));
    for (int c = 0; c < 256; c++) {
        char one[1] = {(char)c};
        int allowed = c != 0 && strchr(event_alphabet, c) != NULL;
        if (pc_event_valid(one, 1) != allowed)
            fail_msg("event byte 0x%02x: expected %d", c, allowed);
    }
    /* '.', ':' and '@' are channel characters but not event characters */
    assert_false(pc_event_valid("a.b", 3));
    assert_false(pc_event_valid("a:b", 3));
    assert_false(pc_event_valid("a@b", 3));
    assert_true(pc_event_valid("stderr", 6));
}

static void test_prefix(void **state)
{
    (void)state;
    char p[PC_PREFIX_MAX + 2];
    memset(p, 'p', sizeof(p));
    p[PC_PREFIX_MAX] = '\0';
    assert_true(pc_prefix_valid(p));
    p[PC_PREFIX_MAX] = 'p';
    p[PC_PREFIX_MAX + 1] = '\0';
    assert_false(pc_prefix_valid(p));
    assert_true(pc_prefix_valid("pc"));
    assert_true(pc_prefix_valid("app:v2"));
    assert_false(pc_prefix_valid(""));
    assert_false(pc_prefix_valid(NULL));
    assert_false(pc_prefix_valid("a b"));
    assert_false(pc_prefix_valid("a/b"));
}

static void test_explain(void **state)
{
    (void)state;
    char buf[512];
    pc_channel_explain("a b", 3, buf, sizeof(buf));
    assert_string_equal(
        buf, "channel \"a b\": invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)");

    pc_channel_explain("", 0, buf, sizeof(buf));
    assert_non_null(strstr(buf, "channel \"\": invalid name"));

    /* non-printables as \xHH, NUL included; quotes escaped */
    pc_channel_explain("a\x01\n\0\xff\"z", 7, buf, sizeof(buf));
    assert_non_null(strstr(buf, "channel \"a\\x01\\x0a\\x00\\xff\\\"z\": invalid name"));

    /* long names shortened, with the real length */
    char longname[1000];
    memset(longname, 'x', sizeof(longname));
    pc_channel_explain(longname, sizeof(longname), buf, sizeof(buf));
    assert_non_null(strstr(buf, "...\" (1000 bytes): invalid name"));
    assert_true(strlen(buf) < 200);

    /* 201 bytes of allowed characters: the length is what is wrong */
    pc_channel_explain(longname, 201, buf, sizeof(buf));
    assert_non_null(strstr(buf, "(201 bytes)"));

    /* small buffers are truncated and terminated */
    char tiny[8];
    memset(tiny, '#', sizeof(tiny));
    pc_channel_explain("a b", 3, tiny, sizeof(tiny));
    assert_int_equal(strlen(tiny), 7);
    assert_memory_equal(tiny, "channel", 7);
}

static void test_key_channel(void **state)
{
    (void)state;
    char key[PC_KEY_MAX];
    assert_int_equal(pc_key_channel(key, sizeof(key), "pc", "build-42"), 14);
    assert_string_equal(key, "pc:ch:build-42");
    assert_int_equal(pc_key_channel(key, sizeof(key), "pc", "a b"), PC_ENAME);
    assert_int_equal(pc_key_channel(key, sizeof(key), "p c", "ab"), PC_ENAME);
    assert_int_equal(pc_key_channel(key, sizeof(key), "", "ab"), PC_ENAME);
    assert_int_equal(pc_key_channel(key, sizeof(key), "pc", ""), PC_ENAME);
    assert_int_equal(pc_key_channel(key, sizeof(key), NULL, "ab"), PC_ENAME);
    assert_int_equal(pc_key_channel(key, sizeof(key), "pc", NULL), PC_ENAME);
    /* exact fit: "pc:ch:ab" is 8 bytes + NUL */
    assert_int_equal(pc_key_channel(key, 9, "pc", "ab"), 8);
    assert_int_equal(pc_key_channel(key, 8, "pc", "ab"), PC_ETOOBIG);

    /* the longest key fits in PC_KEY_MAX */
    char prefix[PC_PREFIX_MAX + 1], chan[PC_CHANNEL_MAX + 2];
    memset(prefix, 'p', PC_PREFIX_MAX);
    prefix[PC_PREFIX_MAX] = '\0';
    memset(chan, 'c', PC_CHANNEL_MAX);
    chan[PC_CHANNEL_MAX] = '\0';
    assert_int_equal(pc_key_channel(key, sizeof(key), prefix, chan), PC_KEY_MAX - 1);
    chan[PC_CHANNEL_MAX] = 'c';
    chan[PC_CHANNEL_MAX + 1] = '\0';
    assert_int_equal(pc_key_channel(key, sizeof(key), prefix, chan), PC_ENAME);
}

static void test_key_channel_name(void **state)
{
    (void)state;
    const char *k = "pc:ch:build-42";
    assert_ptr_equal(pc_key_channel_name(k, "pc"), k + 6);
    assert_string_equal(pc_key_channel_name("app:v2:ch:x", "app:v2"), "x");
    assert_null(pc_key_channel_name("pc:ch:", "pc"));
    assert_null(pc_key_channel_name("pc:jobs", "pc"));
    assert_null(pc_key_channel_name("pcx:ch:a", "pc"));
    assert_null(pc_key_channel_name("other:ch:a", "pc"));
    assert_null(pc_key_channel_name("pc:ch:a b", "pc"));
    assert_null(pc_key_channel_name(NULL, "pc"));
    /* round trip */
    char key[PC_KEY_MAX];
    assert_true(pc_key_channel(key, sizeof(key), "pc", "s:1:stderr") > 0);
    assert_string_equal(pc_key_channel_name(key, "pc"), "s:1:stderr");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_length_bounds),
        cmocka_unit_test(test_channel_every_byte),
        cmocka_unit_test(test_channel_examples),
        cmocka_unit_test(test_event_names),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_key_channel),
        cmocka_unit_test(test_key_channel_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
