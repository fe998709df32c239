/* guard.c -- the guard process: kills the registered process groups of its
 * owner once the owner is gone (see guard.h), and its table.
 *
 * Why EOF and not PR_SET_PDEATHSIG: the socket's EOF comes for any death of
 * the owner, and only once no copy of its end is left (a job's child holds
 * one between fork and exec, after it registered itself). The kernel closes
 * a dying process's files before it sends the parent-death signals, so a
 * PDEATHSIG of SIGKILL on the guard could kill it while it is still sending
 * its SIGKILLs; the guard sets none.
 *
 * Records are two int32 { op, pgid } on an AF_UNIX SOCK_SEQPACKET socket:
 * each recv() returns one whole record, and send(MSG_NOSIGNAL) to a dead
 * guard fails with EPIPE instead of raising SIGPIPE (a job's child has
 * default signal dispositions when it registers).
 *
 * Every send() is MSG_DONTWAIT: a guard that stops reading (SIGSTOPped,
 * traced, blocked writing its log to a full stderr pipe) fills the socket
 * after a few hundred records, and a blocking send would then freeze the
 * owner's event loop -- or a job's child between fork and exec, while the
 * owner waits for that child's exec. Such a send fails at once with
 * PC_ETIMEOUT instead; the owner SIGKILLs the stuck guard (pc_guard_kill)
 * and starts a new one that it registers its groups with again.
 */
#define _GNU_SOURCE

#include "pipecast/guard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/log.h"
#include "pipecast/spawn.h"

struct guard_rec {
    int32_t op;
    int32_t pgid;
};

enum { GUARD_ADD = 1, GUARD_DEL = 2 };

/* What a terminal, a shell or a service manager sends to stop a program: the
 * guard outlives them so that its owner can shut down gracefully. */
static const int guard_ignored[] = {SIGHUP,  SIGINT,    SIGQUIT, SIGTERM, SIGPIPE,
                                    SIGUSR1, SIGUSR2,   SIGALRM, SIGTSTP, SIGTTIN,
                                    SIGTTOU, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ};

/* ------------------------------------------------------------ the table */

int pc_guard_tab_init(struct pc_guard_tab *t, size_t cap)
{
    t->pgid = NULL;
    t->n = t->cap = 0;
    if (cap == 0 || cap > SIZE_MAX / sizeof(pid_t))
        return PC_EINVAL;
    t->pgid = malloc(cap * sizeof(pid_t));
    if (t->pgid == NULL)
        return PC_ENOMEM;
    t->cap = cap;
    return 0;
}

void pc_guard_tab_free(struct pc_guard_tab *t)
{
    if (t == NULL)
        return;
    free(t->pgid);
    t->pgid = NULL;
    t->n = t->cap = 0;
}

static size_t tab_find(const struct pc_guard_tab *t, pid_t pgid)
{
    size_t i;
    for (i = 0; i < t->n; i++)
        if (t->pgid[i] == pgid)
            break;
    return i;
}

int pc_guard_tab_add(struct pc_guard_tab *t, pid_t pgid)
{
    if (pgid <= 1)
        return PC_EINVAL;
    if (tab_find(t, pgid) < t->n)
        return 0;
    if (t->n >= t->cap)
        return PC_ETOOBIG;
    t->pgid[t->n++] = pgid;
    return 0;
}

int pc_guard_tab_del(struct pc_guard_tab *t, pid_t pgid)
{
    size_t i = tab_find(t, pgid);
    if (pgid <= 1 || i >= t->n)
        return PC_EINVAL;
    t->pgid[i] = t->pgid[--t->n];
    return 0;
}

int pc_guard_tab_has(const struct pc_guard_tab *t, pid_t pgid)
{
    return pgid > 1 && tab_find(t, pgid) < t->n;
}

/* ------------------------------------------------------------ the guard process */

static int is_ignored(int sig)
{
    for (size_t i = 0; i < sizeof(guard_ignored) / sizeof(guard_ignored[0]); i++)
        if (guard_ignored[i] == sig)
            return 1;
    return 0;
}

/* Read records until EOF, then SIGKILL every registered group. */
static void guard_loop(int sock, struct pc_guard_tab *t, long owner) __attribute__((noreturn));
static void guard_loop(int sock, struct pc_guard_tab *t, long owner)
{
    struct guard_rec rec;
    ssize_t n;
    int err = 0;

    for (;;) {
        n = recv(sock, &rec, sizeof(rec), 0);
        if (n == (ssize_t)sizeof(rec)) {
            int rc = rec.op == GUARD_ADD   ? pc_guard_tab_add(t, (pid_t)rec.pgid)
                     : rec.op == GUARD_DEL ? pc_guard_tab_del(t, (pid_t)rec.pgid)
                                           : PC_EPROTO;
            if (rc == PC_ETOOBIG)
                pc_error("guard", "table full (room for %zu): process group %ld is not guarded",
                         t->cap, (long)rec.pgid);
            else if (rc == PC_EPROTO)
                pc_warn("guard", "unknown record %ld ignored", (long)rec.op);
            else if (rc != 0)
                pc_debug("guard", "%s %ld: %s", rec.op == GUARD_ADD ? "add" : "del", (long)rec.pgid,
                         rec.op == GUARD_ADD ? "invalid" : "not registered");
            else
                pc_debug("guard", "%s process group %ld (%zu guarded)",
                         rec.op == GUARD_ADD ? "add" : "del", (long)rec.pgid, t->n);
            continue;
        }
        if (n > 0) {
            pc_warn("guard", "short record (%zd bytes) ignored", n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == ENOMEM || errno == ENOBUFS)) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (n < 0)
            err = errno;
        break; /* EOF: the owner is gone (a read error is taken the same way: fail safe) */
    }

    size_t alive = 0;
    for (size_t i = 0; i < t->n; i++)
        if (kill(-t->pgid[i], SIGKILL) == 0)
            alive++;
    if (err != 0)
        pc_error("guard", "reading from pid %ld: %s; taken as its end", owner, strerror(err));
    if (t->n > 0)
        pc_warn("guard",
                "pid %ld exited or died: SIGKILL to the %zu process group(s) it left (%zu still "
                "had processes)",
                owner, t->n, alive);
    else
        pc_debug("guard", "pid %ld exited or died; it left no process group", owner);
    _exit(err != 0 ? 1 : 0);
}

/* In the forked child. Every signal is blocked on entry (see pc_guard_start). */
static void guard_child(int sock, int owner_end, struct pc_guard_tab *t) __attribute__((noreturn));
static void guard_child(int sock, int owner_end, struct pc_guard_tab *t)
{
    long owner = (long)getppid();
    struct sigaction sa;
    sigset_t none;

    close(owner_end);
    /* Its own process group: a signal to the owner's group (Ctrl-C, kill -- -pgid) misses it. */
    setpgid(0, 0);
    prctl(PR_SET_NAME, "pipecast-guard", 0, 0, 0);
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP)
            continue;
        sa.sa_handler = is_ignored(s) ? SIG_IGN : SIG_DFL;
        sigaction(s, &sa, NULL); /* fails harmlessly for reserved signals */
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Keep only the socket (at 3) and stderr (for the log); 0 and 1 on /dev/null. A copy of a
     * job's pipe kept here would keep that job from seeing EOF. */
    int keep_err = sock != 2 && fcntl(2, F_GETFD) != -1;
    int s = fcntl(sock, F_DUPFD, 10);
    int nul = open("/dev/null", O_RDWR);
    if (s < 0 || nul < 0)
        _exit(1);
    dup2(nul, 0);
    dup2(nul, 1);
    if (!keep_err)
        dup2(nul, 2);
    if (dup2(s, 3) != 3)
        _exit(1);
    pc_close_from(4);
    pc_debug("guard", "guarding the process groups of pid %ld (up to %zu)", owner, t->cap);
    guard_loop(3, t, owner);
}

void pc_guard_init(struct pc_guard *g)
{
    g->pid = -1;
    g->fd = -1;
    g->cap = 0;
}

int pc_guard_start(struct pc_guard *g, size_t cap, char *err, size_t errlen)
{
    char errbuf[1];
    struct pc_guard_tab t;
    sigset_t all, old;
    int sv[2];

    if (err == NULL || errlen == 0) {
        err = errbuf;
        errlen = sizeof(errbuf);
    }
    err[0] = '\0';
    pc_guard_init(g);
    int rc = pc_guard_tab_init(&t, cap);
    if (rc != 0) {
        snprintf(err, errlen, "guard: %s", rc == PC_ENOMEM ? "out of memory" : "no room");
        return rc;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "guard: socketpair: %s", strerror(errno));
        pc_guard_tab_free(&t);
        return PC_EIO;
    }
    /* No signal may reach the child before it has chosen what it ignores. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        guard_child(sv[1], sv[0], &t);
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(sv[1]);
    pc_guard_tab_free(&t);
    if (pid < 0) {
        close(sv[0]);
        snprintf(err, errlen, "guard: fork: %s", strerror(fork_errno));
        return PC_EIO;
    }
    g->pid = pid;
    g->fd = sv[0];
    g->cap = cap;
    return 0;
}

static int guard_send(const struct pc_guard *g, int op, pid_t pgid)
{
    struct guard_rec rec;
    if (g == NULL || g->fd < 0 || pgid <= 1)
        return PC_EINVAL;
    rec.op = op;
    rec.pgid = (int32_t)pgid;
    for (;;) {
        /* never blocks: a guard that does not read must not stop its owner (see above) */
        ssize_t n = send(g->fd, &rec, sizeof(rec), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)sizeof(rec))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return PC_ETIMEOUT;
        return PC_EIO;
    }
}

int pc_guard_add(const struct pc_guard *g, pid_t pgid)
{
    return guard_send(g, GUARD_ADD, pgid);
}

int pc_guard_del(const struct pc_guard *g, pid_t pgid)
{
    return guard_send(g, GUARD_DEL, pgid);
}

int pc_guard_kill(struct pc_guard *g)
{
    if (g == NULL || g->pid <= 0)
        return PC_EINVAL;
    int rc = kill(g->pid, SIGKILL) == 0 || errno == ESRCH ? 0 : PC_EIO;
    if (g->fd >= 0) {
        close(g->fd);
        g->fd = -1;
    }
    return rc;
}

int pc_guard_check(struct pc_guard *g, int *status)
{
    int st = 0;
    if (g == NULL || g->pid <= 0)
        return PC_EINVAL;
    pid_t w = waitpid(g->pid, &st, WNOHANG);
    if (w == 0 || (w < 0 && errno == EINTR))
        return 0;
    if (w < 0)
        st = 0; /* not our child any more (ECHILD): gone all the same */
    if (status != NULL)
        *status = st;
    if (g->fd >= 0)
        close(g->fd);
    g->fd = -1;
    g->pid = -1;
    return 1;
}

int pc_guard_stop(struct pc_guard *g, int wait_ms)
{
    if (g == NULL)
        return 0;
    if (g->fd >= 0) {
        close(g->fd);
        g->fd = -1;
    }
    for (int waited = 0; g->pid > 0; waited += 5) {
        int st;
        pid_t w = waitpid(g->pid, &st, WNOHANG);
        if (w == g->pid || (w < 0 && errno != EINTR)) {
            g->pid = -1;
            break;
        }
        if (waited >= wait_ms)
            return PC_ETIMEOUT;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
