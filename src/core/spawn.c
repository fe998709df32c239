/* spawn.c -- fork + exec of a job: own process group (or session with a pty),
 * pipes or a raw pty, rlimits, unprivileged user, cwd, PATH lookup in the
 * job's own environment.
 *
 * Everything that allocates happens in the parent before fork(): the child
 * only calls async-signal-safe functions, so pc_spawn() is safe to call
 * from a multi-threaded program too.
 *
 * A failure in the child between fork and exec is written to a close-on-exec
 * pipe as { stage, errno } and the child _exit()s; the parent reads that
 * pipe until EOF. EOF without a record means the exec succeeded.
 *
 *   parent                          child
 *   ------                          -----
 *   pipes, pty, /dev/null, paths
 *   fork ------------------------>  signals reset, setsid/setpgid,
 *   close child ends                "add <pgid>" to the guard (if any),
 *                                   stdio dup2, close fds >= 4,
 *   read(errpipe) <- EOF or rec --  rlimits, setgid/setgroups/setuid, chdir,
 *                                   execve each PATH candidate
 */
#define _GNU_SOURCE

#include "pipecast/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/guard.h"

extern char **environ;

#define PATH_DEFAULT "/usr/local/bin:/usr/bin:/bin"
/* In the child the fds it needs are first moved above the stdio range. */
#define CHILD_FD_BASE 10

enum stage {
    ST_SIGNALS = 1,
    ST_SETSID,
    ST_SETPGID,
    ST_CTTY,
    ST_DUP,
    ST_RLIMIT_CPU,
    ST_RLIMIT_AS,
    ST_RLIMIT_NOFILE,
    ST_RLIMIT_NPROC,
    ST_SETGROUPS,
    ST_SETGID,
    ST_SETUID,
    ST_VERIFY_USER,
    ST_CHDIR,
    ST_PDEATHSIG,
    ST_EXEC,
};

struct child_err {
    int stage;
    int err;
};

/* ------------------------------------------------------------ helpers */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static const char *env_path(char *const *envp)
{
    if (envp == NULL) {
        const char *p = getenv("PATH");
        return p != NULL ? p : PATH_DEFAULT;
    }
    for (char *const *e = envp; *e != NULL; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            return *e + 5;
    return PATH_DEFAULT;
}

/*
 * Build the list of paths execve() will try, like execvp(): argv0 itself when
 * it holds a '/', else "<dir>/<argv0>" for each PATH element (an empty
 * element is the current directory). @return a NULL-terminated array in one
 * allocation (free with free()), or NULL when out of memory.
 */
static char **exec_candidates(const char *argv0, const char *path)
{
    size_t n = 1, total = 0, alen = strlen(argv0);
    if (strchr(argv0, '/') != NULL) {
        total = alen + 1;
    } else {
        for (const char *p = path;; p++) {
            if (*p == ':' || *p == '\0') {
                n++;
                total += alen + 3; /* '/' NUL and a possible "." */
            }
            if (*p == '\0')
                break;
        }
        total += strlen(path);
    }
    char **v = malloc((n + 1) * sizeof(char *) + total);
    if (v == NULL)
        return NULL;
    char *s = (char *)(v + n + 1);
    size_t k = 0;
    if (strchr(argv0, '/') != NULL) {
        memcpy(s, argv0, alen + 1);
        v[k++] = s;
    } else {
        const char *p = path;
        for (;;) {
            const char *e = strchr(p, ':');
            size_t dl = e != NULL ? (size_t)(e - p) : strlen(p);
            v[k++] = s;
            if (dl == 0) {
                *s++ = '.';
            } else {
                memcpy(s, p, dl);
                s += dl;
            }
            *s++ = '/';
            memcpy(s, argv0, alen + 1);
            s += alen + 1;
            if (e == NULL)
                break;
            p = e + 1;
        }
    }
    v[k] = NULL;
    return v;
}

/* ------------------------------------------------------------ child side */

static void child_fail(int errfd, int stage, int err) __attribute__((noreturn));
static void child_fail(int errfd, int stage, int err)
{
    struct child_err ce = {stage, err};
    ssize_t w;
    do {
        w = write(errfd, &ce, sizeof(ce));
    } while (w < 0 && errno == EINTR);
    _exit(127);
}

static int move_up(int fd)
{
    if (fd < 0)
        return -1;
    return fcntl(fd, F_DUPFD_CLOEXEC, CHILD_FD_BASE);
}

void pc_close_from(int lowfd)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = lowfd; fd < max; fd++)
        close(fd);
}

static int limit_one(int res, long value)
{
    struct rlimit cur, rl;
    if (value <= 0)
        return 0;
    if (getrlimit(res, &cur) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max = (rlim_t)value;
    if (setrlimit(res, &rl) == 0)
        return 0;
    /* Not allowed to raise the hard limit: the current one is already tighter. */
    if (errno == EPERM && cur.rlim_max != RLIM_INFINITY && rl.rlim_max > cur.rlim_max) {
        rl.rlim_cur = rl.rlim_max = cur.rlim_max;
        return setrlimit(res, &rl);
    }
    return -1;
}

struct child_plan {
    const struct pc_spawn_opts *o;
    char *const *envp;
    char **cands;
    int in_r;  /* child's stdin */
    int out_w; /* child's stdout */
    int err_w; /* child's stderr */
    int pty;   /* the slave (also in in_r/out_w/err_w as needed), -1 without a pty */
    int errpipe;
    pid_t parent;
};

static void child_run(struct child_plan *p) __attribute__((noreturn));

static void child_run(struct child_plan *p)
{
    const struct pc_spawn_opts *o = p->o;
    int ef = p->errpipe;

    /* Signal dispositions and mask as a fresh process would have them. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL); /* fails harmlessly for reserved signals */
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        child_fail(ef, ST_SIGNALS, errno);

    if (p->pty >= 0) {
        if (setsid() < 0)
            child_fail(ef, ST_SETSID, errno);
        if (ioctl(p->pty, TIOCSCTTY, 0) < 0)
            child_fail(ef, ST_CTTY, errno);
    } else if (setpgid(0, 0) < 0) {
        child_fail(ef, ST_SETPGID, errno);
    }
    /* Before anything of the group can run: the guard kills it if our parent dies from here on.
     * A guard that is gone is not our failure; its owner notices and registers us again. Nor is
     * one that reads no more (the send does not wait: PC_ETIMEOUT): its owner kills it and
     * registers us with the next one. */
    if (o->guard != NULL)
        (void)pc_guard_add(o->guard, getpid());

    /* Move everything above 0..2 first so that no dup2 overwrites a source. */
    ef = move_up(ef);
    if (ef < 0)
        child_fail(p->errpipe, ST_DUP, errno);
    int in = move_up(p->in_r), out = move_up(p->out_w), err = move_up(p->err_w);
    if (in < 0 || out < 0 || err < 0)
        child_fail(ef, ST_DUP, errno);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        child_fail(ef, ST_DUP, errno);
    /* The error pipe goes to fd 3 (close-on-exec); everything else is closed. */
    if (dup3(ef, 3, O_CLOEXEC) < 0)
        child_fail(ef, ST_DUP, errno);
    ef = 3;
    pc_close_from(4);

    if (limit_one(RLIMIT_CPU, o->limits.cpu_s) != 0)
        child_fail(ef, ST_RLIMIT_CPU, errno);
    if (o->limits.as_mb > 0 && limit_one(RLIMIT_AS, o->limits.as_mb * 1024 * 1024) != 0)
        child_fail(ef, ST_RLIMIT_AS, errno);
    if (limit_one(RLIMIT_NOFILE, o->limits.nofile) != 0)
        child_fail(ef, ST_RLIMIT_NOFILE, errno);
    if (limit_one(RLIMIT_NPROC, o->limits.nproc) != 0)
        child_fail(ef, ST_RLIMIT_NPROC, errno);

    if (o->drop_user) {
        gid_t g = o->gid;
        if (setgroups(1, &g) != 0)
            child_fail(ef, ST_SETGROUPS, errno);
        if (setgid(o->gid) != 0)
            child_fail(ef, ST_SETGID, errno);
        if (setuid(o->uid) != 0)
            child_fail(ef, ST_SETUID, errno);
        /* Make sure the drop cannot be undone. */
        if (getuid() != o->uid || geteuid() != o->uid || getgid() != o->gid || getegid() != o->gid)
            child_fail(ef, ST_VERIFY_USER, EPERM);
        if (o->uid != 0 && setuid(0) == 0)
            child_fail(ef, ST_VERIFY_USER, EPERM);
    }

    if (o->cwd != NULL && chdir(o->cwd) != 0)
        child_fail(ef, ST_CHDIR, errno);

    /* Set last: a setuid() above clears it. The parent may already be gone. */
    if (o->die_with_parent) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
            child_fail(ef, ST_PDEATHSIG, errno);
        if (getppid() != p->parent)
            _exit(127);
    }

    int seen_eacces = 0, last = ENOENT;
    for (char **c = p->cands; *c != NULL; c++) {
        execve(*c, o->argv, p->envp);
        last = errno;
        if (last == EACCES)
            seen_eacces = 1;
        else if (last != ENOENT && last != ENOTDIR && last != ESTALE && last != ENODEV &&
                 last != ETIMEDOUT)
            break;
    }
    child_fail(ef, ST_EXEC, seen_eacces && (last == ENOENT || last == ENOTDIR) ? EACCES : last);
}

/* ------------------------------------------------------------ parent side */

static void describe(const struct pc_spawn_opts *o, const struct child_err *ce, char *err,
                     size_t errlen)
{
    const char *why = strerror(ce->err);
    switch (ce->stage) {
    case ST_EXEC:
        snprintf(err, errlen, "exec \"%s\": %s", o->argv[0], why);
        break;
    case ST_CHDIR:
        snprintf(err, errlen, "chdir \"%s\": %s", o->cwd, why);
        break;
    case ST_RLIMIT_CPU:
        snprintf(err, errlen, "setrlimit RLIMIT_CPU %ld: %s", o->limits.cpu_s, why);
        break;
    case ST_RLIMIT_AS:
        snprintf(err, errlen, "setrlimit RLIMIT_AS %ld MiB: %s", o->limits.as_mb, why);
        break;
    case ST_RLIMIT_NOFILE:
        snprintf(err, errlen, "setrlimit RLIMIT_NOFILE %ld: %s", o->limits.nofile, why);
        break;
    case ST_RLIMIT_NPROC:
        snprintf(err, errlen, "setrlimit RLIMIT_NPROC %ld: %s", o->limits.nproc, why);
        break;
    case ST_SETGROUPS:
    case ST_SETGID:
        snprintf(err, errlen, "set group %ld: %s", (long)o->gid, why);
        break;
    case ST_SETUID:
        snprintf(err, errlen, "set user %ld: %s", (long)o->uid, why);
        break;
    case ST_VERIFY_USER:
        snprintf(err, errlen, "user %ld: privileges could not be dropped", (long)o->uid);
        break;
    case ST_SETSID:
    case ST_SETPGID:
    case ST_CTTY:
        snprintf(err, errlen, "new process group: %s", why);
        break;
    default:
        snprintf(err, errlen, "child setup: %s", why);
        break;
    }
}

/* Open a pty master/slave pair; the slave is in raw mode, 80x24. */
static int open_pty(int *master, int *slave, char *err, size_t errlen)
{
    char name[128];
    *master = *slave = -1;
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) {
        snprintf(err, errlen, "pty: posix_openpt: %s", strerror(errno));
        return -1;
    }
    if (grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, name, sizeof(name)) != 0) {
        snprintf(err, errlen, "pty: %s", strerror(errno));
        close(m);
        return -1;
    }
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        snprintf(err, errlen, "pty: open %s: %s", name, strerror(errno));
        close(m);
        return -1;
    }
    struct termios t;
    if (tcgetattr(s, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(s, TCSANOW, &t);
    }
    struct winsize ws;
    memset(&ws, 0, sizeof(ws));
    ws.ws_row = 24;
    ws.ws_col = 80;
    ioctl(s, TIOCSWINSZ, &ws);
    *master = m;
    *slave = s;
    return 0;
}

/* Close the child's ends of its stdio in the parent; with a pty they all alias the slave. */
static void drop_child_ends(int *in_r, int *out_w, int *err_w, int *slave, int *devnull)
{
    if (*in_r == *slave || *in_r == *devnull)
        *in_r = -1;
    if (*out_w == *slave)
        *out_w = -1;
    if (*err_w == *slave)
        *err_w = -1;
    close_fd(in_r);
    close_fd(out_w);
    close_fd(err_w);
    close_fd(slave);
    close_fd(devnull);
}

int pc_spawn(const struct pc_spawn_opts *o, struct pc_proc *out, char *err, size_t errlen)
{
    char errbuf[1];
    if (err == NULL || errlen == 0) {
        err = errbuf;
        errlen = sizeof(errbuf);
    }
    err[0] = '\0';
    if (out != NULL) {
        out->pid = -1;
        out->in_fd = out->out_fd = out->err_fd = -1;
    }
    if (o == NULL || out == NULL || o->argv == NULL || o->argv[0] == NULL ||
        o->argv[0][0] == '\0') {
        snprintf(err, errlen, "spawn: empty command");
        return PC_EINVAL;
    }

    int in_r = -1, in_w = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1;
    int master = -1, slave = -1, devnull = -1, ep[2] = {-1, -1};
    int rc = PC_EIO;
    char **cands = NULL;
    int fds[2];

    char *const *envp = o->envp != NULL ? o->envp : environ;
    cands = exec_candidates(o->argv[0], env_path(o->envp));
    if (cands == NULL) {
        snprintf(err, errlen, "spawn: out of memory");
        return PC_ENOMEM;
    }

    if (o->use_pty) {
        if (open_pty(&master, &slave, err, errlen) != 0)
            goto fail;
        out_w = err_w = slave;
        out_r = master; /* owned through out_r from here on */
        master = -1;
        if (o->want_stdin) {
            in_r = slave;
            in_w = fcntl(out_r, F_DUPFD_CLOEXEC, 0);
            if (in_w < 0) {
                snprintf(err, errlen, "pty: dup: %s", strerror(errno));
                goto fail;
            }
        }
    } else {
        if (pipe2(fds, O_CLOEXEC) != 0)
            goto fail_pipe;
        out_r = fds[0];
        out_w = fds[1];
        if (pipe2(fds, O_CLOEXEC) != 0)
            goto fail_pipe;
        err_r = fds[0];
        err_w = fds[1];
        if (o->want_stdin) {
            if (pipe2(fds, O_CLOEXEC) != 0)
                goto fail_pipe;
            in_r = fds[0];
            in_w = fds[1];
        }
    }
    if (in_r < 0) {
        devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0) {
            snprintf(err, errlen, "open /dev/null: %s", strerror(errno));
            goto fail;
        }
        in_r = devnull;
    }
    if (pipe2(ep, O_CLOEXEC) != 0)
        goto fail_pipe;

    struct child_plan plan = {o, envp, cands, in_r, out_w, err_w, slave, ep[1], getpid()};
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0)
        child_run(&plan);

    /* Parent. Also set the group from here so that a kill right after return works. */
    if (slave < 0)
        setpgid(pid, pid);
    close_fd(&ep[1]);
    drop_child_ends(&in_r, &out_w, &err_w, &slave, &devnull);

    struct child_err ce;
    size_t got = 0;
    while (got < sizeof(ce)) {
        ssize_t r = read(ep[0], (char *)&ce + got, sizeof(ce) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close_fd(&ep[0]);
    if (got > 0) {
        int st;
        if (got == sizeof(ce))
            describe(o, &ce, err, errlen);
        else
            snprintf(err, errlen, "child setup: short error report");
        /* unregistered while its zombie still holds the group id; a guard too stuck to take
         * the record would keep a stale group id: SIGKILLed, its owner starts a new one */
        if (o->guard != NULL && pc_guard_del(o->guard, pid) == PC_ETIMEOUT && o->guard->pid > 0)
            (void)kill(o->guard->pid, SIGKILL);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        rc = got == sizeof(ce) && ce.stage == ST_EXEC && ce.err == ENOENT ? PC_EINVAL : PC_EIO;
        goto fail;
    }

    if (set_nonblock(out_r) != 0 || (in_w >= 0 && set_nonblock(in_w) != 0) ||
        (err_r >= 0 && set_nonblock(err_r) != 0)) {
        /* Practically impossible; the caller still gets a usable process. */
        snprintf(err, errlen, "fcntl O_NONBLOCK: %s", strerror(errno));
    }
    free(cands);
    out->pid = pid;
    out->in_fd = in_w;
    out->out_fd = out_r;
    out->err_fd = err_r;
    return 0;

fail_pipe:
    snprintf(err, errlen, "pipe: %s", strerror(errno));
fail:
    free(cands);
    drop_child_ends(&in_r, &out_w, &err_w, &slave, &devnull);
    close_fd(&in_w);
    close_fd(&out_r);
    close_fd(&err_r);
    close_fd(&master);
    close_fd(&ep[0]);
    close_fd(&ep[1]);
    return rc;
}

int pc_proc_kill(const struct pc_proc *p, int sig)
{
    if (p == NULL || p->pid <= 0)
        return PC_EINVAL;
    if (kill(-p->pid, sig) == 0)
        return 0;
    /* The group may be gone while the leader is a zombie; that is not an error. */
    if (errno == ESRCH)
        return kill(p->pid, sig) == 0 || errno == ESRCH ? 0 : PC_EIO;
    return PC_EIO;
}

int pc_proc_exited(const struct pc_proc *p)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return -1;
    return si.si_pid == p->pid;
}

void pc_proc_close(struct pc_proc *p)
{
    if (p == NULL)
        return;
    close_fd(&p->in_fd);
    close_fd(&p->out_fd);
    close_fd(&p->err_fd);
}
