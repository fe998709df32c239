/* test_redis.c -- connection handshake against a scripted fake server,
 * error messages, backoff, clocks. No real Redis needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/redis.h"

/* ---------------------------------------------------------- fake server */

/* One connection: for each RESP command received, send the next reply. */
struct fake {
    int lfd;
    int port;
    const char *replies[4]; /* NULL: stop answering (to provoke a timeout) */
    int nreplies;
    char got[4][256]; /* the commands received, args joined by ' ' */
    int ngot;
    pthread_t thread;
};

/* Read one "*N\r\n$len\r\narg\r\n..." command; @return 0 or -1 on EOF/garbage. */
static int read_command(int fd, char *out, size_t outlen)
{
    char buf[2048];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            return -1;
        n += (size_t)r;
        buf[n] = '\0';
        /* complete when it parses */
        const char *p = buf;
        if (*p != '*')
            return -1;
        int argc = atoi(p + 1);
        p = strstr(p, "\r\n");
        size_t o = 0;
        int i;
        for (i = 0; p != NULL && i < argc; i++) {
            p += 2;
            if ((size_t)(p - buf) >= n || *p != '$')
                break;
            int len = atoi(p + 1);
            const char *arg = strstr(p, "\r\n");
            if (arg == NULL || (size_t)(arg + 2 + len + 2 - buf) > n)
                break;
            arg += 2;
            if (o + (size_t)len + 2 < outlen) {
                if (o > 0)
                    out[o++] = ' ';
                memcpy(out + o, arg, (size_t)len);
                o += (size_t)len;
            }
            p = arg + len;
        }
        out[o] = '\0';
        if (i == argc)
            return 0;
    }
}

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    for (int i = 0; i < f->nreplies && f->ngot < 4; i++) {
        if (read_command(fd, f->got[f->ngot], sizeof(f->got[0])) != 0)
            break;
        f->ngot++;
        if (f->replies[i] == NULL) {
            usleep(500 * 1000); /* longer than the client's timeout */
            break;
        }
        if (strcmp(f->replies[i], "CLOSE") == 0) {
            close(fd);
            return NULL;
        }
        if (write(fd, f->replies[i], strlen(f->replies[i])) < 0)
            break;
    }
    /* wait for the client to hang up */
    char c;
    while (read(fd, &c, 1) > 0)
        ;
    close(fd);
    return NULL;
}

static void fake_start(struct fake *f)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 1), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &alen), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

static struct pc_redis_url url_for(const char *fmt, int port)
{
    char s[256], err[256];
    struct pc_redis_url u;
    snprintf(s, sizeof(s), fmt, port);
    assert_int_equal(pc_redis_url_parse(s, &u, err, sizeof(err)), 0);
    return u;
}

/* A port with nothing listening: bind, read the port, close. */
static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---------------------------------------------------------------- tests */

static void test_connect_refused(void **state)
{
    (void)state;
    int port = closed_port();
    struct pc_redis_url u = url_for("redis://127.0.0.1:%d/0", port);
    char err[256], want[128];
    int code = 1;
    redisContext *c = pc_redis_connect_ex(&u, 1000, 1000, &code, err, sizeof(err));
    assert_null(c);
    assert_int_equal(code, PC_EREDIS);
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d/0: Connection refused", port);
    assert_string_equal(err, want);
    /* the plain variant says the same */
    assert_null(pc_redis_connect(&u, 0, 0, err, sizeof(err)));
    assert_string_equal(err, want);
}

static void test_connect_unix_missing(void **state)
{
    (void)state;
    struct pc_redis_url u = url_for("unix:///nonexistent/pipecast-%d.sock?db=2", 1);
    char err[256];
    assert_null(pc_redis_connect(&u, 500, 0, err, sizeof(err)));
    assert_string_equal(err,
                        "redis unix:/nonexistent/pipecast-1.sock?db=2: No such file or directory");
}

static void test_connect_plain(void **state)
{
    (void)state;
    struct fake f = {.replies = {"+PONG\r\n"}, .nreplies = 1};
    fake_start(&f);
    struct pc_redis_url u = url_for("redis://127.0.0.1:%d", f.port);
    char err[256] = "x";
    int code = 1;
    redisContext *c = pc_redis_connect_ex(&u, 1000, 1000, &code, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(code, 0);
    assert_string_equal(err, "");
    /* no handshake without password or db: the first command is ours */
    redisReply *r = redisCommand(c, "PING");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    redisFree(c);
    fake_stop(&f);
    assert_int_equal(f.ngot, 1);
    assert_string_equal(f.got[0], "PING");
}

static void test_connect_auth_select(void **state)
{
    (void)state;
    struct fake f = {.replies = {"+OK\r\n", "+OK\r\n"}, .nreplies = 2};
    fake_start(&f);
    struct pc_redis_url u = url_for("redis://alice:p%%40ss@127.0.0.1:%d/3", f.port);
    char err[256];
    redisContext *c = pc_redis_connect(&u, 1000, 0, err, sizeof(err));
    assert_non_null(c);
    redisFree(c);
    fake_stop(&f);
    assert_int_equal(f.ngot, 2);
    assert_string_equal(f.got[0], "AUTH alice p@ss");
    assert_string_equal(f.got[1], "SELECT 3");

    /* password without user: the one-argument AUTH (works before Redis 6) */
    struct fake g = {.replies = {"+OK\r\n"}, .nreplies = 1};
    fake_start(&g);
    u = url_for("redis://:pw@127.0.0.1:%d", g.port);
    c = pc_redis_connect(&u, 1000, 0, err, sizeof(err));
    assert_non_null(c);
    redisFree(c);
    fake_stop(&g);
    assert_int_equal(g.ngot, 1);
    assert_string_equal(g.got[0], "AUTH pw");
}

static void test_auth_refused(void **state)
{
    (void)state;
    struct fake f = {.replies = {"-WRONGPASS invalid username-password pair\r\n"}, .nreplies = 1};
    fake_start(&f);
    struct pc_redis_url u = url_for("redis://bob:hunter2@127.0.0.1:%d/1", f.port);
    char err[256], want[256];
    int code = 0;
    redisContext *c = pc_redis_connect_ex(&u, 1000, 1000, &code, err, sizeof(err));
    assert_null(c);
    fake_stop(&f);
    assert_int_equal(code, PC_EAUTH);
    snprintf(want, sizeof(want),
             "redis 127.0.0.1:%d/1: AUTH refused: WRONGPASS invalid username-password pair",
             f.port);
    assert_string_equal(err, want);
    assert_null(strstr(err, "hunter2"));
}

static void test_select_refused(void **state)
{
    (void)state;
    struct fake f = {.replies = {"-ERR DB index is out of range\r\n"}, .nreplies = 1};
    fake_start(&f);
    struct pc_redis_url u = url_for("redis://127.0.0.1:%d/99", f.port);
    char err[256], want[256];
    int code = 0;
    assert_null(pc_redis_connect_ex(&u, 1000, 1000, &code, err, sizeof(err)));
    fake_stop(&f);
    assert_int_equal(code, PC_EAUTH);
    snprintf(want, sizeof(want),
             "redis 127.0.0.1:%d/99: SELECT 99 refused: ERR DB index is out of range", f.port);
    assert_string_equal(err, want);
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    /* the server accepts but never answers AUTH: the connect timeout applies
     * even though the command timeout is 0 (none) */
    struct fake f = {.replies = {NULL}, .nreplies = 1};
    fake_start(&f);
    struct pc_redis_url u = url_for("redis://:pw@127.0.0.1:%d", f.port);
    char err[256];
    int code = 0;
    long long t0 = pc_now_ms();
    assert_null(pc_redis_connect_ex(&u, 200, 0, &code, err, sizeof(err)));
    long long dt = pc_now_ms() - t0;
    fake_stop(&f);
    assert_int_equal(code, PC_ETIMEOUT);
    assert_non_null(strstr(err, ": AUTH: timed out"));
    assert_true(dt >= 150 && dt < 2000);
}

static void test_server_closes(void **state)
{
    (void)state;
    /* the fake reads AUTH and hangs up at once */
    struct fake f = {.replies = {"CLOSE"}, .nreplies = 1};
    fake_start(&f);
    struct pc_redis_url u = url_for("redis://:pw@127.0.0.1:%d", f.port);
    char err[256];
    int code = 0;
    assert_null(pc_redis_connect_ex(&u, 1000, 0, &code, err, sizeof(err)));
    fake_stop(&f);
    assert_int_equal(code, PC_EREDIS);
    assert_non_null(strstr(err, ": AUTH: connection closed by server"));
}

static void test_backoff(void **state)
{
    (void)state;
    struct pc_backoff b;
    pc_backoff_init(&b, 100, 5000);
    assert_int_equal(b.cur_ms, 0);
    int prev_cur = 0;
    for (int i = 0; i < 20; i++) {
        int d = pc_backoff_next(&b);
        assert_true(d >= 100 && d <= 5000);
        assert_true(d <= b.cur_ms);
        assert_true(d >= b.cur_ms / 2);
        assert_true(b.cur_ms >= prev_cur); /* grows, never shrinks */
        prev_cur = b.cur_ms;
    }
    assert_int_equal(b.cur_ms, 5000); /* capped */
    pc_backoff_reset(&b);
    assert_int_equal(b.cur_ms, 0);
    assert_int_equal(pc_backoff_next(&b), 100); /* first delay is the minimum */

    /* the sequence doubles: 100, 200, 400, 800, ... */
    pc_backoff_init(&b, 100, 100000);
    int want = 100;
    for (int i = 0; i < 8; i++) {
        pc_backoff_next(&b);
        assert_int_equal(b.cur_ms, want);
        want *= 2;
    }

    /* jitter: the delays are not all the same */
    pc_backoff_init(&b, 1000, 1000000);
    for (int i = 0; i < 10; i++)
        pc_backoff_next(&b);
    int seen_lo = 0, seen_hi = 0;
    for (int i = 0; i < 200; i++) {
        int d = pc_backoff_next(&b);
        if (d < 750000)
            seen_lo = 1;
        else
            seen_hi = 1;
    }
    assert_true(seen_lo && seen_hi);

    /* nonsense bounds are repaired, and large max does not overflow */
    pc_backoff_init(&b, 0, -5);
    assert_int_equal(b.min_ms, 1);
    assert_int_equal(b.max_ms, 1);
    assert_int_equal(pc_backoff_next(&b), 1);
    pc_backoff_init(&b, 1, 2147483647);
    for (int i = 0; i < 64; i++) {
        int d = pc_backoff_next(&b);
        assert_true(d >= 1);
    }
    assert_int_equal(b.cur_ms, 2147483647);
}

static void test_clocks(void **state)
{
    (void)state;
    long long m0 = pc_now_ms(), u0 = pc_now_us(), w0 = pc_wall_ms();
    usleep(20 * 1000);
    long long m1 = pc_now_ms(), u1 = pc_now_us(), w1 = pc_wall_ms();
    assert_true(m1 - m0 >= 19 && m1 - m0 < 5000);
    assert_true(u1 - u0 >= 19000 && u1 - u0 < 5000000);
    assert_true(w1 >= w0);
    assert_true(w0 > 1600000000000LL); /* after 2020: it is the epoch clock */
    assert_true(u0 / 1000 - m0 <= 1 && u0 / 1000 - m0 >= -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_refused),   cmocka_unit_test(test_connect_unix_missing),
        cmocka_unit_test(test_connect_plain),     cmocka_unit_test(test_connect_auth_select),
        cmocka_unit_test(test_auth_refused),      cmocka_unit_test(test_select_refused),
        cmocka_unit_test(test_handshake_timeout), cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_backoff),           cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
