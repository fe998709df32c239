/* test_guard.c -- the guard's table (bounded set of process groups) and the
 * guard process: groups registered by pc_spawn's child are SIGKILLed when the
 * owner's end closes, unregistered ones are not, a full table refuses the
 * group it cannot hold, termination signals are ignored, its death is seen
 * by pc_guard_check, a stopped guard blocks no sender (pc_guard_kill gives up
 * on it), and it holds no copy of the owner's other fds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/guard.h"
#include "pipecast/spawn.h"
#include "proc_alive.h"

/* ------------------------------------------------------------ helpers */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int wait_gone(pid_t pid, long ms)
{
    for (long t = 0; t < ms && proc_alive(pid); t += 10)
        sleep_ms(10);
    return !proc_alive(pid);
}

/* One line of a non-blocking fd, as a number. */
static long read_number(int fd)
{
    char buf[64];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        struct pollfd pf = {fd, POLLIN, 0};
        assert_true(poll(&pf, 1, 5000) > 0);
        ssize_t r = read(fd, buf + len, 1);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        assert_int_equal(r, 1);
        if (buf[len] == '\n')
            break;
        len++;
    }
    buf[len] = '\0';
    return strtol(buf, NULL, 10);
}

/* A leader (sh) with a background grandchild (sleep) whose pid it prints. */
static pid_t spawn_tree(const struct pc_guard *g, struct pc_proc *p)
{
    char *argv[] = {"sh", "-c", "sleep 100 & echo $!; wait", NULL};
    struct pc_spawn_opts o;
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.guard = g;
    assert_int_equal(pc_spawn(&o, p, NULL, 0), 0);
    pid_t child = (pid_t)read_number(p->out_fd);
    assert_true(child > 1);
    assert_int_equal(getpgid(child), p->pid);
    return child;
}

static void reap(struct pc_proc *p)
{
    int st;
    pc_proc_kill(p, SIGKILL);
    assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
    pc_proc_close(p);
}

/* ------------------------------------------------------------ the table */

static void test_tab(void **state)
{
    (void)state;
    struct pc_guard_tab t;
    assert_int_equal(pc_guard_tab_init(&t, 0), PC_EINVAL);
    assert_int_equal(pc_guard_tab_init(&t, 3), 0);
    assert_int_equal(pc_guard_tab_add(&t, 1), PC_EINVAL); /* kill(-1) would be everything */
    assert_int_equal(pc_guard_tab_add(&t, 0), PC_EINVAL);
    assert_int_equal(pc_guard_tab_add(&t, -7), PC_EINVAL);
    assert_int_equal(pc_guard_tab_add(&t, 100), 0);
    assert_int_equal(pc_guard_tab_add(&t, 200), 0);
    assert_int_equal(pc_guard_tab_add(&t, 100), 0); /* already there: no second slot */
    assert_int_equal(t.n, 2);
    assert_int_equal(pc_guard_tab_add(&t, 300), 0);
    assert_int_equal(pc_guard_tab_add(&t, 400), PC_ETOOBIG); /* full: refused, not added */
    assert_false(pc_guard_tab_has(&t, 400));
    assert_int_equal(t.n, 3);
    assert_int_equal(pc_guard_tab_add(&t, 300), 0); /* full, but already there */
    assert_int_equal(pc_guard_tab_del(&t, 200), 0);
    assert_false(pc_guard_tab_has(&t, 200));
    assert_int_equal(pc_guard_tab_del(&t, 200), PC_EINVAL);
    assert_int_equal(pc_guard_tab_del(&t, 1), PC_EINVAL);
    assert_int_equal(pc_guard_tab_add(&t, 400), 0); /* the freed slot is reused */
    assert_true(pc_guard_tab_has(&t, 100) && pc_guard_tab_has(&t, 300) &&
                pc_guard_tab_has(&t, 400));
    assert_false(pc_guard_tab_has(&t, 1));
    for (pid_t p = 100; p <= 400; p += 100)
        pc_guard_tab_del(&t, p);
    assert_int_equal(t.n, 0);
    pc_guard_tab_free(&t);
    pc_guard_tab_free(&t); /* twice: a no-op */
    pc_guard_tab_free(NULL);
}

/* Adding and removing many times never leaks a slot. */
static void test_tab_churn(void **state)
{
    (void)state;
    struct pc_guard_tab t;
    assert_int_equal(pc_guard_tab_init(&t, 4), 0);
    for (pid_t p = 2; p < 10000; p++) {
        assert_int_equal(pc_guard_tab_add(&t, p), 0);
        if (p % 4 == 1) {
            for (pid_t q = p - 3; q <= p; q++)
                assert_int_equal(pc_guard_tab_del(&t, q), 0);
            assert_int_equal(t.n, 0);
        }
    }
    pc_guard_tab_free(&t);
}

/* ------------------------------------------------------------ the process */

/* The owner's end closes (as when it dies): every registered group is SIGKILLed. */
static void test_kills_registered_groups(void **state)
{
    (void)state;
    struct pc_guard g;
    struct pc_proc a, b;
    assert_int_equal(pc_guard_start(&g, 2, NULL, 0), 0);
    assert_true(g.pid > 0 && g.fd >= 0);
    pid_t ca = spawn_tree(&g, &a); /* registered by the child itself, before exec */
    pid_t cb = spawn_tree(&g, &b);
    assert_int_equal(pc_guard_stop(&g, 2000), 0);
    assert_int_equal(g.pid, -1);
    assert_true(wait_gone(ca, 2000));
    assert_true(wait_gone(cb, 2000));
    int st;
    assert_int_equal(waitpid(a.pid, &st, 0), a.pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(waitpid(b.pid, &st, 0), b.pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    pc_proc_close(&a);
    pc_proc_close(&b);
}

/* An unregistered group is left alone; a full table refuses the group it cannot hold. */
static void test_del_and_full_table(void **state)
{
    (void)state;
    struct pc_guard g;
    struct pc_proc a, b, c;
    assert_int_equal(pc_guard_start(&g, 1, NULL, 0), 0);
    pid_t ca = spawn_tree(&g, &a);
    assert_int_equal(pc_guard_del(&g, a.pid), 0);
    pid_t cb = spawn_tree(&g, &b); /* takes the only slot again */
    pid_t cc = spawn_tree(&g, &c); /* table full: not guarded (the guard logs an error) */
    assert_int_equal(pc_guard_stop(&g, 2000), 0);
    assert_true(wait_gone(cb, 2000));
    sleep_ms(200);
    assert_true(proc_alive(ca));
    assert_true(proc_alive(cc));
    kill(-a.pid, SIGKILL);
    kill(-c.pid, SIGKILL);
    reap(&a);
    reap(&b);
    reap(&c);
}

/* A spawn that fails after its child registered unregisters it: the slot is free again. */
static void test_failed_spawn_unregisters(void **state)
{
    (void)state;
    struct pc_guard g;
    struct pc_proc p, a;
    char err[256];
    char *argv[] = {"/nonexistent/pc-no-such-cmd", NULL};
    struct pc_spawn_opts o;
    assert_int_equal(pc_guard_start(&g, 1, NULL, 0), 0);
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.guard = &g;
    assert_int_not_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    pid_t ca = spawn_tree(&g, &a);
    assert_int_equal(pc_guard_stop(&g, 2000), 0);
    assert_true(wait_gone(ca, 2000));
    reap(&a);
}

/* Termination signals do not stop it; it runs in a process group of its own. */
static void test_ignores_signals(void **state)
{
    (void)state;
    struct pc_guard g;
    int st;
    assert_int_equal(pc_guard_start(&g, 1, NULL, 0), 0);
    for (int i = 0; i < 100 && getpgid(g.pid) != g.pid; i++)
        sleep_ms(10);
    assert_int_equal(getpgid(g.pid), g.pid);
    assert_int_not_equal(getpgid(g.pid), getpgid(0));
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGPIPE};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        assert_int_equal(kill(g.pid, sigs[i]), 0);
    sleep_ms(200);
    assert_int_equal(pc_guard_check(&g, &st), 0);
    assert_true(proc_alive(g.pid));
    assert_int_equal(pc_guard_stop(&g, 2000), 0);
    assert_int_equal(pc_guard_check(&g, &st), PC_EINVAL);
}

/* Its death is seen; sending to a dead guard fails with an error, not SIGPIPE. */
static void test_death_seen(void **state)
{
    (void)state;
    struct pc_guard g;
    int st = 0, rc = 0;
    assert_int_equal(pc_guard_start(&g, 1, NULL, 0), 0);
    assert_int_equal(kill(g.pid, SIGKILL), 0);
    for (int i = 0; i < 200 && proc_alive(g.pid); i++)
        sleep_ms(10);
    assert_int_equal(pc_guard_add(&g, 12345), PC_EIO); /* fd still open, peer gone */
    for (int i = 0; i < 200 && (rc = pc_guard_check(&g, &st)) == 0; i++)
        sleep_ms(10);
    assert_int_equal(rc, 1);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(g.pid, -1);
    assert_int_equal(g.fd, -1);
    assert_int_equal(pc_guard_add(&g, 12345), PC_EINVAL);
    assert_int_equal(pc_guard_stop(&g, 0), 0);
}

/*
 * A guard that reads no more (SIGSTOPped) never blocks a sender: once its socket is full a send
 * fails at once with PC_ETIMEOUT (errno EAGAIN), and a job's child registering with it still
 * gets to exec (pc_spawn returns). A blocking send would hang here: alarm() ends the test then
 * (SIGALRM's default action), as a failure.
 */
static void test_stopped_guard_does_not_block(void **state)
{
    (void)state;
    struct pc_guard g;
    struct pc_proc p;
    char *argv[] = {"true", NULL};
    struct pc_spawn_opts o;
    int rc = 0, st = 0, n;
    assert_int_equal(pc_guard_start(&g, 4, NULL, 0), 0);
    assert_int_equal(kill(g.pid, SIGSTOP), 0);
    alarm(10);
    for (n = 0; n < 100000 && (rc = pc_guard_del(&g, 12345)) == 0; n++)
        ;
    assert_int_equal(rc, PC_ETIMEOUT);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    assert_true(n > 0);
    assert_int_equal(pc_guard_add(&g, 12346), PC_ETIMEOUT); /* still full: fails again at once */
    /* the child's "add" fails too, without waiting: the spawn completes */
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.guard = &g;
    assert_int_equal(pc_spawn(&o, &p, NULL, 0), 0);
    assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pc_proc_close(&p);
    alarm(0);
    /* a stopped process dies of SIGKILL all the same */
    assert_int_equal(kill(g.pid, SIGKILL), 0);
    for (int i = 0; i < 200 && (rc = pc_guard_check(&g, &st)) == 0; i++)
        sleep_ms(10);
    assert_int_equal(rc, 1);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* pc_guard_kill: the guard dies of SIGKILL without killing its groups; the owner's end is
 * closed at once (no more records), the process is left for pc_guard_check to reap. */
static void test_guard_kill(void **state)
{
    (void)state;
    struct pc_guard g;
    struct pc_proc a;
    int rc = 0, st = 0;
    assert_int_equal(pc_guard_kill(NULL), PC_EINVAL);
    assert_int_equal(pc_guard_start(&g, 1, NULL, 0), 0);
    pid_t ca = spawn_tree(&g, &a);
    assert_int_equal(kill(g.pid, SIGSTOP), 0); /* stuck, as when the owner gives up on it */
    assert_int_equal(pc_guard_kill(&g), 0);
    assert_int_equal(g.fd, -1);
    assert_true(g.pid > 0);
    assert_int_equal(pc_guard_add(&g, 12345), PC_EINVAL);
    for (int i = 0; i < 200 && (rc = pc_guard_check(&g, &st)) == 0; i++)
        sleep_ms(10);
    assert_int_equal(rc, 1);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(g.pid, -1);
    assert_int_equal(pc_guard_kill(&g), PC_EINVAL);
    sleep_ms(100);
    assert_true(proc_alive(ca)); /* a killed guard kills nothing */
    kill(-a.pid, SIGKILL);
    reap(&a);
}

/* The guard keeps no copy of the owner's fds: a pipe's write end closed here gives EOF. */
static void test_no_fd_copies(void **state)
{
    (void)state;
    struct pc_guard g;
    int fds[2];
    char c;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(pc_guard_start(&g, 1, NULL, 0), 0);
    sleep_ms(50);
    close(fds[1]);
    struct pollfd pf = {fds[0], POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_int_equal(read(fds[0], &c, 1), 0);
    close(fds[0]);
    assert_int_equal(pc_guard_stop(&g, 2000), 0);
}

static void test_bad_args(void **state)
{
    (void)state;
    struct pc_guard g;
    char err[128];
    assert_int_equal(pc_guard_start(&g, 0, err, sizeof(err)), PC_EINVAL);
    assert_true(err[0] != '\0');
    assert_int_equal(g.pid, -1);
    assert_int_equal(g.fd, -1);
    assert_int_equal(pc_guard_add(NULL, 100), PC_EINVAL);
    assert_int_equal(pc_guard_stop(NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tab),
        cmocka_unit_test(test_tab_churn),
        cmocka_unit_test(test_kills_registered_groups),
        cmocka_unit_test(test_del_and_full_table),
        cmocka_unit_test(test_failed_spawn_unregisters),
        cmocka_unit_test(test_ignores_signals),
        cmocka_unit_test(test_death_seen),
        cmocka_unit_test(test_stopped_guard_does_not_block),
        cmocka_unit_test(test_guard_kill),
        cmocka_unit_test(test_no_fd_copies),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
