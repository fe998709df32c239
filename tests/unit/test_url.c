/* test_url.c -- Redis URL parsing: every form and every error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/error.h"
#include "pipecast/url.h"

static struct pc_redis_url ok(const char *s)
{
    struct pc_redis_url u;
    char err[256] = "untouched";
    memset(&u, 0x5a, sizeof(u));
    if (pc_redis_url_parse(s, &u, err, sizeof(err)) != 0)
        fail_msg("\"%s\" refused: %s", s, err);
    assert_string_equal(err, "");
    return u;
}

/* Parse must fail with a message containing @p why (and the redacted URL). */
static void bad(const char *s, const char *why)
{
    struct pc_redis_url u;
    char err[512];
    memset(&u, 0, sizeof(u));
    u.port = 1234;
    if (pc_redis_url_parse(s, &u, err, sizeof(err)) != PC_EURL)
        fail_msg("\"%s\" accepted", s);
    if (strstr(err, why) == NULL)
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", s, err, why);
    assert_int_equal(strncmp(err, "redis URL \"", 11), 0);
    assert_int_equal(u.port, 1234); /* out untouched */
}

static void test_tcp_forms(void **state)
{
    (void)state;
    struct pc_redis_url u = ok("redis://127.0.0.1:6379/0");
    assert_int_equal(u.is_unix, 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.pass, "");
    assert_int_equal(u.has_pass, 0);

    u = ok("redis://localhost");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);

    u = ok("redis://redis.example.com:7000");
    assert_string_equal(u.host, "redis.example.com");
    assert_int_equal(u.port, 7000);

    u = ok("redis://h/5");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 5);

    u = ok("redis://h:1/");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 0);

    u = ok("redis://h:65535/2147483647");
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, INT_MAX);

    u = ok("REDIS://my_host-1:06379/007");
    assert_string_equal(u.host, "my_host-1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 7);
}

static void test_ipv6(void **state)
{
    (void)state;
    struct pc_redis_url u = ok("redis://[::1]:6380/1");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 1);
    u = ok("redis://[2001:db8::42]");
    assert_string_equal(u.host, "2001:db8::42");
    assert_int_equal(u.port, 6379);
    u = ok("redis://u:p@[::ffff:127.0.0.1]:1/");
    assert_string_equal(u.host, "::ffff:127.0.0.1");

    char d[128];
    pc_redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "[::ffff:127.0.0.1]:1/0");
}

static void test_credentials(void **state)
{
    (void)state;
    struct pc_redis_url u = ok("redis://:secret@h");
    assert_string_equal(u.user, "");
    assert_string_equal(u.pass, "secret");
    assert_int_equal(u.has_pass, 1);

    u = ok("redis://alice:s3cr%40t%2F%3a@h:1/2");
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.pass, "s3cr@t/:");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 2);

    /* unescaped '@', ':' and '/' in the password: the user info ends at the last '@' */
    u = ok("redis://bob:p@ss:w/rd@h:2");
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.pass, "p@ss:w/rd");
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 2);

    /* like redis-cli: no ':' means a password */
    u = ok("redis://justapass@h");
    assert_string_equal(u.user, "");
    assert_string_equal(u.pass, "justapass");
    assert_int_equal(u.has_pass, 1);

    /* an empty password is still a password */
    u = ok("redis://user:@h");
    assert_string_equal(u.user, "user");
    assert_string_equal(u.pass, "");
    assert_int_equal(u.has_pass, 1);
    u = ok("redis://:@h");
    assert_int_equal(u.has_pass, 1);

    /* empty user info: no credentials */
    u = ok("redis://@h");
    assert_int_equal(u.has_pass, 0);

    u = ok("redis://%61%62:%7e@h");
    assert_string_equal(u.user, "ab");
    assert_string_equal(u.pass, "~");

    /* the longest password that fits */
    char s[600], pw[256];
    memset(pw, 'p', 255);
    pw[255] = '\0';
    strcpy(s, "redis://:");
    strcat(s, pw);
    strcat(s, "@h");
    u = ok(s);
    assert_string_equal(u.pass, pw);
}

static void test_unix_forms(void **state)
{
    (void)state;
    struct pc_redis_url u = ok("unix:///var/run/redis.sock");
    assert_int_equal(u.is_unix, 1);
    assert_string_equal(u.path, "/var/run/redis.sock");
    assert_int_equal(u.db, 0);
    u = ok("unix:///tmp/r.sock?db=3");
    assert_string_equal(u.path, "/tmp/r.sock");
    assert_int_equal(u.db, 3);
    u = ok("unix://:pw@/tmp/r.sock?db=2147483647");
    assert_string_equal(u.pass, "pw");
    assert_int_equal(u.db, INT_MAX);
    u = ok("unix:///tmp/r.sock?");
    assert_int_equal(u.db, 0);

    char d[200];
    pc_redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "unix:/tmp/r.sock");
    u = ok("unix:///tmp/r.sock?db=4");
    pc_redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "unix:/tmp/r.sock?db=4");

    /* sun_path: 107 bytes fit, 108 do not */
    char s[300] = "unix://";
    size_t o = strlen(s);
    s[o++] = '/';
    memset(s + o, 'a', 106);
    s[o + 106] = '\0';
    u = ok(s);
    assert_int_equal(strlen(u.path), 107);
    strcat(s, "a");
    bad(s, "socket path too long");
}

static void test_bad_scheme(void **state)
{
    (void)state;
    bad("http://h:6379", "unknown scheme");
    bad("redis:/h", "missing scheme");
    bad("127.0.0.1:6379", "missing scheme");
    bad("", "missing scheme");
    bad("rediss://h", "TLS (rediss://) is not supported");
    bad("unix:/tmp/x.sock", "missing scheme");
    bad(" redis://h", "unknown scheme");
}

static void test_bad_host(void **state)
{
    (void)state;
    bad("redis://", "empty host");
    bad("redis://:6379", "empty host");
    bad("redis:///0", "empty host");
    bad("redis://u:p@", "empty host");
    bad("redis://[]:1", "empty host");
    bad("redis://[::1", "unterminated '['");
    bad("redis://[::1:6379/0", "unterminated '['");
    bad("redis://[nothex]", "invalid IPv6");
    bad("redis://[::1]x", "unexpected text after host");
    bad("redis://::1", "empty host");
    bad("redis://a b", "invalid character in host");
    bad("redis://h%20", "invalid character in host");
    char s[400] = "redis://";
    memset(s + 8, 'h', 300);
    s[308] = '\0';
    bad(s, "host too long");
}

static void test_bad_port(void **state)
{
    (void)state;
    bad("redis://h:0", "port out of range (1-65535)");
    bad("redis://h:65536", "port out of range (1-65535)");
    bad("redis://h:99999", "port out of range (1-65535)");
    bad("redis://h:99999999999999999999999", "port out of range");
    bad("redis://h:", "port must be a number");
    bad("redis://h:-1", "port must be a number");
    bad("redis://h:+1", "port must be a number");
    bad("redis://h:12a", "port must be a number");
    bad("redis://h: 1", "port must be a number");
    bad("redis://h:1:2", "port must be a number");
    /* the exact message of the header's example */
    char err[256];
    struct pc_redis_url u;
    assert_int_equal(pc_redis_url_parse("redis://h:99999", &u, err, sizeof(err)), PC_EURL);
    assert_string_equal(err, "redis URL \"redis://h:99999\": port out of range (1-65535)");
}

static void test_bad_db(void **state)
{
    (void)state;
    bad("redis://h/x", "db must be a number");
    bad("redis://h/-1", "db must be a number");
    bad("redis://h/+1", "db must be a number");
    bad("redis://h/1/2", "db must be a number");
    bad("redis://h//1", "db must be a number");
    bad("redis://h/1 ", "db must be a number");
    bad("redis://h/2147483648", "db out of range");
    bad("redis://h/99999999999999999999", "db out of range");
    bad("redis://h?db=1", "unexpected '?'");
    bad("redis://h#x", "unexpected '#'");
    bad("unix:///tmp/x?db=", "db must be a number");
    bad("unix:///tmp/x?db", "db must be a number");
    bad("unix:///tmp/x?db=a", "db must be a number");
    bad("unix:///tmp/x?db=2147483648", "db out of range");
    bad("unix:///tmp/x?foo=1", "unknown parameter \"foo\"");
}

static void test_bad_unix(void **state)
{
    (void)state;
    bad("unix://", "empty socket path");
    bad("unix://?db=1", "empty socket path");
    bad("unix://tmp/x.sock", "socket path must be absolute");
    bad("unix://:pw@", "empty socket path");
    bad("unix:///tmp/x#y", "unexpected '#'");
}

static void test_bad_percent(void **state)
{
    (void)state;
    bad("redis://:%@h", "password: bad percent-escape");
    bad("redis://:%4@h", "password: bad percent-escape");
    bad("redis://:%zz@h", "password: bad percent-escape");
    bad("redis://:abc%4g@h", "password: bad percent-escape");
    bad("redis://:%00@h", "password: %00 is not allowed");
    bad("redis://%x:p@h", "user: bad percent-escape");
    bad("redis://a%00:p@h", "user: %00 is not allowed");
    char s[700], pw[300];
    memset(pw, 'p', 256);
    pw[256] = '\0';
    strcpy(s, "redis://:");
    strcat(s, pw);
    strcat(s, "@h");
    bad(s, "password: too long");
}

/* The password never appears in an error, whatever went wrong. */
static void test_password_never_in_error(void **state)
{
    (void)state;
    static const char *const urls[] = {
        "redis://u:Sup3rS3cret@h:99999",
        "redis://u:Sup3rS3cret@",
        "redis://:Sup3rS3cret@h/x",
        "redis://Sup3rS3cret@h:0",
        "redis://u:Sup3rS3cret@[::1",
        "redis://u:Sup3rS3cret%zz@h",
        "redis://u:Sup3rS3cret%00@h",
        "redis://u:Sup3r@S3cret@h:0",
        "redis://u:Sup3rS3cret@h?password=Sup3rS3cret",
        "unix://:Sup3rS3cret@relative",
        "unix:///tmp/x?password=Sup3rS3cret",
        "unix:///tmp/x?db=1&auth=Sup3rS3cret",
        "http://u:Sup3rS3cret@h",
        "rediss://u:Sup3rS3cret@h",
        "u:Sup3rS3cret@h:6379",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct pc_redis_url u;
        char err[512];
        assert_int_equal(pc_redis_url_parse(urls[i], &u, err, sizeof(err)), PC_EURL);
        if (strstr(err, "S3cret") != NULL || strstr(err, "Sup3r") != NULL)
            fail_msg("password leaked: %s", err);
        assert_true(strlen(err) > 20);
    }
    /* the user info is shown as *** so the user can still tell which URL */
    struct pc_redis_url u;
    char err[512];
    pc_redis_url_parse("redis://u:pw@h:0", &u, err, sizeof(err));
    assert_string_equal(err, "redis URL \"redis://***@h:0\": port out of range (1-65535)");
}

static void test_error_buffer_edges(void **state)
{
    (void)state;
    struct pc_redis_url u;
    char err[16];
    memset(err, '#', sizeof(err));
    assert_int_equal(pc_redis_url_parse("redis://h:0", &u, err, sizeof(err)), PC_EURL);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_int_equal(pc_redis_url_parse("redis://h:0", &u, NULL, 0), PC_EURL);
    assert_int_equal(pc_redis_url_parse(NULL, &u, err, sizeof(err)), PC_EURL);
    /* control bytes in a quoted URL are escaped */
    char big[256];
    assert_int_equal(pc_redis_url_parse("redis://h\n:1", &u, big, sizeof(big)), PC_EURL);
    assert_null(strchr(big, '\n'));
    assert_non_null(strstr(big, "h\\x0a"));
}

static void test_choose(void **state)
{
    (void)state;
    unsetenv(PC_URL_ENV);
    assert_string_equal(pc_redis_url_choose(NULL), PC_URL_DEFAULT);
    assert_string_equal(pc_redis_url_choose("redis://x"), "redis://x");
    setenv(PC_URL_ENV, "", 1);
    assert_string_equal(pc_redis_url_choose(NULL), PC_URL_DEFAULT);
    setenv(PC_URL_ENV, "redis://env:1", 1);
    assert_string_equal(pc_redis_url_choose(NULL), "redis://env:1");
    assert_string_equal(pc_redis_url_choose("redis://x"), "redis://x");
    unsetenv(PC_URL_ENV);
    /* the default parses */
    struct pc_redis_url u = ok(PC_URL_DEFAULT);
    char d[64];
    pc_redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "127.0.0.1:6379/0");
}

static void test_describe_no_password(void **state)
{
    (void)state;
    struct pc_redis_url u = ok("redis://alice:topsecret@db.local:7001/3");
    char d[300];
    pc_redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "db.local:7001/3");
    u = ok("unix://:topsecret@/s.sock");
    pc_redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "unix:/s.sock");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_forms),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_unix_forms),
        cmocka_unit_test(test_bad_scheme),
        cmocka_unit_test(test_bad_host),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_bad_db),
        cmocka_unit_test(test_bad_unix),
        cmocka_unit_test(test_bad_percent),
        cmocka_unit_test(test_password_never_in_error),
        cmocka_unit_test(test_error_buffer_edges),
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_describe_no_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
