/* test_log.c -- log line format, levels, and pc_strerror. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/log.h"

/* Run @p fn with stderr redirected to a temp file; @return what it printed. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/pc_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(pread(fd, out, (size_t)n, 0), n);
    close(fd);
    return out;
}

static void emit_levels(void)
{
    pc_debug("t", "dbg %d", 1);
    pc_info("t", "info %d", 2);
    pc_warn("redis", "connection lost");
    pc_error(NULL, "no tag");
}

static void test_format_and_levels(void **state)
{
    (void)state;
    pc_log_init("/usr/bin/pipecast-gateway", PC_LOG_INFO);
    char *out = capture_stderr(emit_levels);
    assert_null(strstr(out, "dbg 1"));
    regex_t re;
    char pat[200];
    snprintf(pat, sizeof(pat),
             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
             "pipecast-gateway\\[%ld\\] WARN redis: connection lost$",
             (long)getpid());
    assert_int_equal(regcomp(&re, pat, REG_EXTENDED | REG_NEWLINE), 0);
    assert_int_equal(regexec(&re, out, 0, NULL, 0), 0);
    regfree(&re);
    assert_non_null(strstr(out, "] INFO t: info 2\n"));
    assert_non_null(strstr(out, "] ERROR no tag\n"));
    free(out);

    pc_log_init(NULL, PC_LOG_DEBUG);
    out = capture_stderr(emit_levels);
    assert_non_null(strstr(out, "pipecast-gateway[")); /* name kept */
    assert_non_null(strstr(out, "] DEBUG t: dbg 1\n"));
    free(out);

    pc_log_init("x", PC_LOG_OFF);
    out = capture_stderr(emit_levels);
    assert_string_equal(out, "");
    free(out);
    assert_false(pc_log_enabled(PC_LOG_ERROR));

    pc_log_init("x", PC_LOG_ERROR);
    assert_true(pc_log_enabled(PC_LOG_ERROR));
    assert_false(pc_log_enabled(PC_LOG_WARN));
    assert_false(pc_log_enabled(PC_LOG_OFF));
}

static void emit_long(void)
{
    char *big = malloc(10000);
    memset(big, 'L', 9999);
    big[9999] = '\0';
    pc_info("long", "<%s>", big);
    free(big);
}

static void test_long_line(void **state)
{
    (void)state;
    pc_log_init("p", PC_LOG_INFO);
    char *out = capture_stderr(emit_long);
    char *lt = strchr(out, '<');
    assert_non_null(lt);
    assert_int_equal(strspn(lt + 1, "L"), 9999);
    assert_string_equal(lt + 1 + 9999, ">\n");
    free(out);
}

static void *log_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        pc_info("thr", "%s", "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop");
    return NULL;
}

static void emit_threads(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, log_thread, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
}

static void test_threads_whole_lines(void **state)
{
    (void)state;
    pc_log_init("p", PC_LOG_INFO);
    char *out = capture_stderr(emit_threads);
    int lines = 0;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        lines++;
        const char *tail = "thr: 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop";
        assert_int_equal(strlen(line), 24 + strlen(" p[] INFO ") +
                                           (size_t)snprintf(NULL, 0, "%ld", (long)getpid()) +
                                           strlen(tail));
        assert_non_null(strstr(line, tail));
    }
    assert_int_equal(lines, 800);
    free(out);
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(pc_log_level_parse("debug"), PC_LOG_DEBUG);
    assert_int_equal(pc_log_level_parse("info"), PC_LOG_INFO);
    assert_int_equal(pc_log_level_parse("warn"), PC_LOG_WARN);
    assert_int_equal(pc_log_level_parse("WARNING"), PC_LOG_WARN);
    assert_int_equal(pc_log_level_parse("error"), PC_LOG_ERROR);
    assert_int_equal(pc_log_level_parse("off"), PC_LOG_OFF);
    assert_int_equal(pc_log_level_parse("Info"), PC_LOG_INFO);
    assert_int_equal(pc_log_level_parse(""), -1);
    assert_int_equal(pc_log_level_parse("verbose"), -1);
    assert_int_equal(pc_log_level_parse("info "), -1);
    assert_int_equal(pc_log_level_parse(NULL), -1);
}

static void test_strerror(void **state)
{
    (void)state;
    for (int code = 0; code >= PC_EPROTO; code--) {
        const char *s = pc_strerror(code);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        /* each text is distinct */
        for (int other = 0; other > code; other--)
            assert_string_not_equal(s, pc_strerror(other));
    }
    assert_string_equal(pc_strerror(PC_ETIMEOUT), "timed out");
    assert_string_equal(pc_strerror(1), "unknown error");
    assert_string_equal(pc_strerror(-999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_levels),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_threads_whole_lines),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
