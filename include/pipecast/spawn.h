/* spawn.h -- start a job's process: own process group, pipes or a pty, cwd,
 * environment, rlimits, optional unprivileged user.
 *
 * Used by `pipecast run` and by pipecast-runner. The child is exec'd
 * directly (no shell). A failure between fork and exec (chdir, setuid, exec
 * itself) is reported back to the parent through a close-on-exec pipe, so
 * pc_spawn() either returns a running process or a clear error such as
 * `exec "nosuchcmd": No such file or directory`.
 */
#ifndef PC_SPAWN_H
#define PC_SPAWN_H

#include <sys/types.h>

struct pc_guard;

/* Resource limits; 0 = leave unset. */
struct pc_limits {
    long cpu_s;  /* RLIMIT_CPU, seconds */
    long as_mb;  /* RLIMIT_AS, MiB */
    long nofile; /* RLIMIT_NOFILE */
    long nproc;  /* RLIMIT_NPROC */
};

struct pc_spawn_opts {
    char *const *argv; /* NULL-terminated, argv[0] looked up in PATH of envp (or the parent's) */
    char *const *envp; /* NULL-terminated full environment; NULL = inherit the parent's */
    const char *cwd;   /* NULL = inherit */
    int use_pty;       /* run on a pseudo-terminal in raw mode (stdout+stderr merged) */
    int want_stdin;    /* 1: a pipe (or the pty) for stdin; 0: /dev/null */
    struct pc_limits limits;
    int drop_user; /* 1: setgid(gid), setgroups, setuid(uid) before exec */
    uid_t uid;
    gid_t gid;
    int die_with_parent; /* 1: SIGKILL the child (not its children) when the calling thread
                            exits (PR_SET_PDEATHSIG) */
    /* Not NULL: the child registers its new process group with this guard before exec
     * (pc_guard_add), so no process of the group can exist unguarded; on failure pc_spawn
     * unregisters it. After a success the caller owns the registration: at the end, kill what
     * is left of the group, pc_guard_del, and only then reap the leader (its zombie keeps the
     * group id from being reused until then). */
    const struct pc_guard *guard;
};

struct pc_proc {
    pid_t pid;  /* also the process group id */
    int in_fd;  /* write end of stdin, -1 when none (with a pty: a dup of the master) */
    int out_fd; /* read end of stdout (with a pty: the master, carrying stdout and stderr) */
    int err_fd; /* read end of stderr, -1 with a pty */
};

/**
 * Start @p o->argv. On success fill @p out (the caller owns the fds and must
 * reap the pid) and @return 0. On failure @return PC_EINVAL / PC_EIO (with
 * a message in @p err) and leave nothing running. All fds are O_CLOEXEC in
 * the parent and non-blocking.
 */
int pc_spawn(const struct pc_spawn_opts *o, struct pc_proc *out, char *err, size_t errlen);

/** Send @p sig to the whole process group of @p p. @return 0 or PC_EIO. */
int pc_proc_kill(const struct pc_proc *p, int sig);

/**
 * Has the leader of @p p exited? Looks without reaping it (waitid WNOWAIT).
 * @return 1 exited (a zombie until reaped), 0 still running, -1 no such child.
 */
int pc_proc_exited(const struct pc_proc *p);

/** Close whichever fds of @p p are still open (sets them to -1). */
void pc_proc_close(struct pc_proc *p);

/*
 * Close every descriptor >= @p lowfd (close_range(2), else a loop up to the
 * open-files limit). Async-signal-safe: for a child between fork and exec.
 */
void pc_close_from(int lowfd);

#endif
