/* test_spawn.c -- pc_spawn: stdout/stderr separation, exit codes, missing
 * executables, raw pty, process-group kill, rlimits, cwd, env, stdin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/spawn.h"
#include "proc_alive.h"

/* ------------------------------------------------------------ helpers */

struct result {
    char out[65536];
    size_t out_len;
    char err[65536];
    size_t err_len;
    int status;
};

static void drain(int *fd, char *buf, size_t *len, size_t cap)
{
    char tmp[4096];
    ssize_t r = read(*fd, tmp, sizeof(tmp));
    if (r > 0) {
        size_t n = (size_t)r;
        if (*len + n > cap - 1)
            n = cap - 1 - *len;
        memcpy(buf + *len, tmp, n);
        *len += n;
        buf[*len] = '\0';
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* EOF, or EIO on a pty master once the slave side is closed */
    close(*fd);
    *fd = -1;
}

/* Read both outputs to EOF, then reap. */
static void collect(struct pc_proc *p, struct result *r)
{
    memset(r, 0, sizeof(*r));
    while (p->out_fd >= 0 || p->err_fd >= 0) {
        struct pollfd pf[2] = {{p->out_fd, POLLIN, 0}, {p->err_fd, POLLIN, 0}};
        int n = poll(pf, 2, 10000);
        assert_true(n > 0);
        if (p->out_fd >= 0 && pf[0].revents)
            drain(&p->out_fd, r->out, &r->out_len, sizeof(r->out));
        if (p->err_fd >= 0 && pf[1].revents)
            drain(&p->err_fd, r->err, &r->err_len, sizeof(r->err));
    }
    assert_int_equal(waitpid(p->pid, &r->status, 0), p->pid);
    pc_proc_close(p);
}

static void run_argv(char *const *argv, char *const *envp, const char *cwd, int pty,
                     struct pc_limits lim, struct result *r)
{
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.envp = envp;
    o.cwd = cwd;
    o.use_pty = pty;
    o.limits = lim;
    assert_int_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_true(p.pid > 0);
    assert_int_equal(p.in_fd, -1);
    collect(&p, r);
}

static struct result *new_result(void)
{
    struct result *r = malloc(sizeof(*r));
    assert_non_null(r);
    return r;
}

static const struct pc_limits no_limits = {0, 0, 0, 0};

/* ------------------------------------------------------------ tests */

static void test_stdout_stderr_separated(void **state)
{
    (void)state;
    char *argv[] = {"sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3", NULL};
    struct result *r = new_result();
    run_argv(argv, NULL, NULL, 0, no_limits, r);
    assert_string_equal(r->out, "out1\nout2\n");
    assert_string_equal(r->err, "err1\n");
    assert_true(WIFEXITED(r->status));
    assert_int_equal(WEXITSTATUS(r->status), 3);
    free(r);
}

static void test_exit_codes_and_signals(void **state)
{
    (void)state;
    char *ok[] = {"true", NULL};
    char *bad[] = {"false", NULL};
    char *sig[] = {"sh", "-c", "kill -9 $$", NULL};
    struct result *r = new_result();
    run_argv(ok, NULL, NULL, 0, no_limits, r);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    run_argv(bad, NULL, NULL, 0, no_limits, r);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 1);
    run_argv(sig, NULL, NULL, 0, no_limits, r);
    assert_true(WIFSIGNALED(r->status) && WTERMSIG(r->status) == 9);
    free(r);
}

static void test_missing_executable(void **state)
{
    (void)state;
    char *argv[] = {"pipecast-no-such-command", "x", NULL};
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    assert_int_not_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_string_equal(err, "exec \"pipecast-no-such-command\": No such file or directory");
    assert_int_equal(p.pid, -1);
    assert_int_equal(p.out_fd, -1);
    /* no zombie left behind */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);

    char *abs[] = {"/nonexistent/dir/cmd", NULL};
    o.argv = abs;
    assert_int_not_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "No such file or directory"));

    char *notexec[] = {"/etc/passwd", NULL};
    o.argv = notexec;
    assert_int_not_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_string_equal(err, "exec \"/etc/passwd\": Permission denied");

    char *empty[] = {NULL};
    o.argv = empty;
    assert_int_equal(pc_spawn(&o, &p, err, sizeof(err)), PC_EINVAL);
}

static void test_bad_cwd(void **state)
{
    (void)state;
    char *argv[] = {"true", NULL};
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.cwd = "/nonexistent-pipecast-dir";
    assert_int_equal(pc_spawn(&o, &p, err, sizeof(err)), PC_EIO);
    assert_string_equal(err, "chdir \"/nonexistent-pipecast-dir\": No such file or directory");
}

static void test_path_from_envp(void **state)
{
    (void)state;
    /* "sh" must be found through the PATH of the job's environment, not ours */
    char *argv[] = {"sh", "-c", "echo \"$PATH|$FOO|$HOME\"", NULL};
    char *env[] = {"PATH=/nonexistent:/bin:/usr/bin", "FOO=bar baz", NULL};
    struct result *r = new_result();
    run_argv(argv, env, NULL, 0, no_limits, r);
    assert_string_equal(r->out, "/nonexistent:/bin:/usr/bin|bar baz|\n");

    char *env2[] = {"PATH=/nonexistent", NULL};
    char *argv2[] = {"sh", NULL};
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv2;
    o.envp = env2;
    assert_int_not_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_string_equal(err, "exec \"sh\": No such file or directory");
    free(r);
}

static void test_cwd(void **state)
{
    (void)state;
    char *argv[] = {"pwd", NULL};
    struct result *r = new_result();
    run_argv(argv, NULL, "/tmp", 0, no_limits, r);
    assert_string_equal(r->out, "/tmp\n");
    free(r);
}

static void test_pty_raw(void **state)
{
    (void)state;
    char *argv[] = {"sh", "-c", "printf 'a\\nb\\n'; echo err >&2; test -t 1 && echo tty", NULL};
    struct result *r = new_result();
    run_argv(argv, NULL, NULL, 1, no_limits, r);
    assert_null(strstr(r->out, "\r"));
    assert_string_equal(r->out, "a\nb\nerr\ntty\n");
    assert_int_equal(r->err_len, 0);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    free(r);
}

static void test_pty_stdin(void **state)
{
    (void)state;
    char *argv[] = {"head", "-n", "2", NULL};
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.use_pty = 1;
    o.want_stdin = 1;
    assert_int_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_true(p.in_fd >= 0);
    assert_int_equal(write(p.in_fd, "x\ny\nz\n", 6), 6);
    struct result *r = new_result();
    close(p.in_fd);
    p.in_fd = -1;
    collect(&p, r);
    /* raw mode: no echo of the input, no CR */
    assert_string_equal(r->out, "x\ny\n");
    free(r);
}

static void test_stdin_pipe(void **state)
{
    (void)state;
    char *argv[] = {"sort", NULL};
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.want_stdin = 1;
    assert_int_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_true(p.in_fd >= 0);
    assert_true(fcntl(p.in_fd, F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(p.out_fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(p.err_fd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(write(p.in_fd, "c\na\nb\n", 6), 6);
    close(p.in_fd);
    p.in_fd = -1;
    struct result *r = new_result();
    collect(&p, r);
    assert_string_equal(r->out, "a\nb\nc\n");
    free(r);
}

static void test_stdin_devnull(void **state)
{
    (void)state;
    char *argv[] = {"cat", NULL};
    struct result *r = new_result();
    run_argv(argv, NULL, NULL, 0, no_limits, r);
    assert_int_equal(r->out_len, 0);
    assert_true(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
    free(r);
}

static void test_group_kill_takes_grandchildren(void **state)
{
    (void)state;
    /* the grandchildren report their pids, then everything is killed */
    char *argv[] = {"sh", "-c", "sleep 100 & echo $!; sleep 100 & echo $!; wait", NULL};
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    assert_int_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    assert_int_equal(getpgid(p.pid), p.pid);

    char buf[256];
    size_t len = 0;
    int lines = 0;
    while (lines < 2) {
        struct pollfd pf = {p.out_fd, POLLIN, 0};
        assert_true(poll(&pf, 1, 5000) > 0);
        ssize_t r = read(p.out_fd, buf + len, sizeof(buf) - 1 - len);
        assert_true(r > 0);
        len += (size_t)r;
        buf[len] = '\0';
        lines = 0;
        for (size_t i = 0; i < len; i++)
            lines += buf[i] == '\n';
    }
    pid_t g1 = (pid_t)atol(buf), g2 = (pid_t)atol(strchr(buf, '\n') + 1);
    assert_true(g1 > 0 && g2 > 0);
    assert_true(proc_alive(g1));

    assert_int_equal(pc_proc_kill(&p, SIGKILL), 0);
    struct result *r = new_result();
    collect(&p, r); /* EOF only when every holder of the pipe is dead */
    assert_true(WIFSIGNALED(r->status));
    /* the grandchildren were reparented; give init a moment to reap them */
    for (int i = 0; i < 200 && (proc_alive(g1) || proc_alive(g2)); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_false(proc_alive(g1));
    assert_false(proc_alive(g2));
    free(r);
}

static void test_rlimits(void **state)
{
    (void)state;
    char *argv[] = {"sh", "-c", "ulimit -n; ulimit -t; ulimit -v", NULL};
    struct pc_limits lim = {7, 256, 64, 0};
    struct result *r = new_result();
    run_argv(argv, NULL, NULL, 0, lim, r);
    assert_string_equal(r->out, "64\n7\n262144\n");
    free(r);
}

static void test_fds_closed_in_child(void **state)
{
    (void)state;
    int leak = open("/dev/null", O_RDONLY); /* not close-on-exec on purpose */
    assert_true(leak >= 0);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "test -e /proc/self/fd/%d && echo open || echo closed", leak);
    char *argv[] = {"sh", "-c", cmd, NULL};
    struct result *r = new_result();
    run_argv(argv, NULL, NULL, 0, no_limits, r);
    assert_string_equal(r->out, "closed\n");
    close(leak);
    free(r);
}

static void test_signals_reset(void **state)
{
    (void)state;
    /* an ignored SIGTERM and a blocked SIGINT in the parent do not reach the job */
    signal(SIGTERM, SIG_IGN);
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigprocmask(SIG_BLOCK, &s, &old);
    char *argv[] = {"sleep", "10", NULL};
    struct pc_spawn_opts o;
    struct pc_proc p;
    char err[256];
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    assert_int_equal(pc_spawn(&o, &p, err, sizeof(err)), 0);
    signal(SIGTERM, SIG_DFL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    assert_int_equal(pc_proc_kill(&p, SIGTERM), 0);
    struct result *r = new_result();
    collect(&p, r);
    assert_true(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGTERM);
    free(r);
}

static void test_die_with_parent(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t mid = fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        /* the intermediate parent: spawn, report the pid, exit */
        char *argv[] = {"sleep", "100", NULL};
        struct pc_spawn_opts o;
        struct pc_proc p;
        memset(&o, 0, sizeof(o));
        o.argv = argv;
        o.die_with_parent = 1;
        if (pc_spawn(&o, &p, NULL, 0) != 0)
            _exit(1);
        ssize_t w = write(fds[1], &p.pid, sizeof(p.pid));
        _exit(w == sizeof(p.pid) ? 0 : 1);
    }
    close(fds[1]);
    pid_t child = 0;
    assert_int_equal(read(fds[0], &child, sizeof(child)), sizeof(child));
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(mid, &st, 0), mid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 200 && proc_alive(child); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_false(proc_alive(child));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdout_stderr_separated),
        cmocka_unit_test(test_exit_codes_and_signals),
        cmocka_unit_test(test_missing_executable),
        cmocka_unit_test(test_bad_cwd),
        cmocka_unit_test(test_path_from_envp),
        cmocka_unit_test(test_cwd),
        cmocka_unit_test(test_pty_raw),
        cmocka_unit_test(test_pty_stdin),
        cmocka_unit_test(test_stdin_pipe),
        cmocka_unit_test(test_stdin_devnull),
        cmocka_unit_test(test_group_kill_takes_grandchildren),
        cmocka_unit_test(test_rlimits),
        cmocka_unit_test(test_fds_closed_in_child),
        cmocka_unit_test(test_signals_reset),
        cmocka_unit_test(test_die_with_parent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
