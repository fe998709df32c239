/* guard.h -- a watchdog process that kills the process groups of a program's
 * jobs when the program dies, however it dies (SIGKILL, a crash, the OOM
 * killer).
 *
 * PR_SET_PDEATHSIG reaches only a job's direct child; whatever that child
 * started lives on. The guard is one small process per program (the
 * "owner"), forked by pc_guard_start(). They share a socket: the owner sends
 * fixed-size records "add <pgid>" / "del <pgid>" (a job's child sends its own
 * "add" between fork and exec, see pc_spawn_opts.guard), and the guard keeps
 * the set in a table of fixed size. When every copy of the owner's end is
 * closed -- the owner exited, for whatever reason -- the guard reads EOF,
 * sends SIGKILL to every process group still in its table and exits.
 *
 *   owner                                    guard (own process group; ignores
 *   -----                                    -----  SIGINT, SIGTERM, SIGHUP, ...)
 *   pc_guard_start ------- fork --------->   table of `cap` process groups
 *   pc_spawn: the child sends "add" ----->   add
 *   job ends: group killed, "del" ------->   del
 *   exit or crash: the socket closes -EOF->  SIGKILL to each group, _exit
 *
 * The guard ignores the signals a terminal or a service manager sends to stop
 * a program, and lives in a process group of its own, so that Ctrl-C or
 * SIGTERM leave the owner time for its graceful shutdown. The owner learns of
 * the guard's own death through SIGCHLD (pc_guard_check) and may start a new
 * one, registering its groups again.
 *
 * Limits: only process groups are guarded. A process that left its job's group
 * (setsid, setpgid: a daemon's double fork) cannot be found this way; that
 * takes a cgroup.
 */
#ifndef PC_GUARD_H
#define PC_GUARD_H

#include <stddef.h>
#include <sys/types.h>

/* ------------------------------------------------------------ the table */

/* A set of at most `cap` process-group ids (the guard's state; pure logic). */
struct pc_guard_tab {
    pid_t *pgid;
    size_t n, cap;
};

/** Allocate room for @p cap groups. @return 0, PC_EINVAL (cap 0) or PC_ENOMEM. */
int pc_guard_tab_init(struct pc_guard_tab *t, size_t cap);

/** Free the table (a no-op on a zeroed or already freed one). */
void pc_guard_tab_free(struct pc_guard_tab *t);

/**
 * Add @p pgid. Adding one that is already there changes nothing.
 * @return 0, PC_EINVAL (@p pgid <= 1) or PC_ETOOBIG (the table is full: not added).
 */
int pc_guard_tab_add(struct pc_guard_tab *t, pid_t pgid);

/** Remove @p pgid. @return 0, or PC_EINVAL when it is not in the table. */
int pc_guard_tab_del(struct pc_guard_tab *t, pid_t pgid);

/** @return 1 when @p pgid is in the table, else 0. */
int pc_guard_tab_has(const struct pc_guard_tab *t, pid_t pgid);

/* ------------------------------------------------------------ the process */

struct pc_guard {
    pid_t pid; /* the guard process, -1: none */
    int fd;    /* the owner's end of the socket (close-on-exec), -1: none */
    size_t cap;
};

/** Set @p g to "no guard" (pid and fd -1); do this before any other call. */
void pc_guard_init(struct pc_guard *g);

/**
 * Fork the guard process with a table of @p cap groups. The owner must have
 * room for no more than @p cap groups at a time, since an "add" to a full
 * table is refused (and logged by the guard). Call it from a single-threaded
 * program. @return 0, or PC_EINVAL / PC_ENOMEM / PC_EIO with a message in
 * @p err; @p g is then left without a guard.
 */
int pc_guard_start(struct pc_guard *g, size_t cap, char *err, size_t errlen);

/**
 * Register / unregister process group @p pgid. Async-signal-safe (one send(),
 * no allocation): a child may call pc_guard_add between fork and exec. Never
 * blocks (MSG_DONTWAIT).
 * @return 0; PC_EINVAL without a guard; PC_ETIMEOUT when the guard is not
 * reading (its socket is full: SIGSTOPped, traced, stuck; errno EAGAIN) --
 * the record is lost, so its owner should pc_guard_kill() it and start a new
 * one; PC_EIO when the guard is gone (errno tells why).
 */
int pc_guard_add(const struct pc_guard *g, pid_t pgid);
int pc_guard_del(const struct pc_guard *g, pid_t pgid);

/**
 * Give up on a stuck guard: SIGKILL it (it kills no group then) and close the
 * owner's end (@p g->fd becomes -1, so no more records are sent to it). Its
 * pid stays, for pc_guard_check() to reap it. @return 0, PC_EINVAL without a
 * guard process, PC_EIO when kill() failed.
 */
int pc_guard_kill(struct pc_guard *g);

/**
 * Has the guard process ended? Reaps it without blocking.
 * @return 1 when it has (its wait status in @p status, @p g is then without a
 * guard), 0 while it runs, PC_EINVAL when there is none.
 */
int pc_guard_check(struct pc_guard *g, int *status);

/**
 * Close the owner's end -- the guard then kills whatever groups are still
 * registered and exits -- and reap it, waiting at most @p wait_ms.
 * @return 0, or PC_ETIMEOUT when it has not exited by then.
 */
int pc_guard_stop(struct pc_guard *g, int wait_ms);

#endif
