/* sessions.h -- idle expiry of job sessions (docs/jobs.md, "Sessions").
 *
 * A session may be given an idle expiry (PUT /api/sessions/<s> {"idle_s": N},
 * or "session_idle_s" in a job request). Activity refreshes it; when a session
 * has been idle for idle_s seconds, a housekeeping thread of some gateway
 * kills its queued/running jobs (as DELETE /api/sessions/<s> does) and gives
 * its jobs' channel streams, its job set and its meta hash a TTL.
 *
 * Redis keys (prefix "pc" shown):
 *
 *   pc:sessions:meta:<s>   hash   idle_s, last_active_ms, [expired_ms]
 *   pc:sessions:expiry     zset   score = deadline ms (or a claim's lease end), member = <s>
 *   pc:sessions:watched    zset   score = when a gateway last saw an SSE stream open on the
 *                                 channel, member = channel name
 *
 * (Not pc:session:<s>:meta: session names may hold ':', so that key could be
 * the job set of session "<s>:meta".)
 *
 * Open streams: a channel with an open SSE stream on this gateway is a channel
 * its hub follows; every pass the thread writes those (gw_hub_channel_names)
 * to pc:sessions:watched, so a session whose deadline comes while one of its
 * jobs' channels is watched on any gateway is refreshed instead of expired.
 * Nothing in the hub or the SSE handler knows about sessions.
 *
 * Several gateways: a due session is claimed by a script that moves its score
 * to a lease end; only the gateway that moved it acts. A gateway that dies in
 * the middle leaves the lease to run out, then another one finishes the work.
 */
#ifndef PC_GW_SESSIONS_H
#define PC_GW_SESSIONS_H

#include <stddef.h>

#include "pipecast/channel.h"

struct gw_ctx;
struct gw_sessions;

#define GW_SESSION_MAX 64          /* bytes of a session name (the channel alphabet) */
#define GW_SESSION_IDLE_MAX 604800 /* idle_s: 1 s .. 7 days */
/* A stream seen open within this long counts as open now (the thread writes every second). */
#define GW_SESSION_WATCH_FRESH_MS 5000
/* Room for any key of this module: prefix, ":sessions:meta:", session, NUL. */
#define GW_SESSION_KEY_MAX (PC_PREFIX_MAX + 16 + GW_SESSION_MAX + 1)

/* "<prefix>:sessions:meta:<session>". */
void gw_session_meta_key(char *dst, size_t len, const char *prefix, const char *session);
/* "<prefix>:session:<session>": the set of the session's job ids. */
void gw_session_set_key(char *dst, size_t len, const char *prefix, const char *session);
/* "<prefix>:sessions:expiry". */
void gw_session_expiry_key(char *dst, size_t len, const char *prefix);
/* "<prefix>:sessions:watched". */
void gw_session_watched_key(char *dst, size_t len, const char *prefix);

/*
 * When the session was last active, as far as expiry is concerned: the later
 * of @p last_active_ms (meta) and @p watched_ms (the newest watched score of
 * its channels, 0 for none), where a stream seen within
 * GW_SESSION_WATCH_FRESH_MS of @p now_ms is still open: it counts as now.
 */
long long gw_session_active_ms(long long last_active_ms, long long watched_ms, long long now_ms);

/* ---- activity (request handlers, jobs_api.c) ------------------------------------------- */

/* The EVAL command of an activity "touch"; every string lives inside the struct. */
#define GW_SESSION_TOUCH_ARGC 10
struct gw_session_touch {
    int argc;
    const char *argv[GW_SESSION_TOUCH_ARGC];
    size_t len[GW_SESSION_TOUCH_ARGC];
    char meta[GW_SESSION_KEY_MAX], expiry[GW_SESSION_KEY_MAX], set[GW_SESSION_KEY_MAX];
    char session[GW_SESSION_MAX + 1], now[24], idle[24];
};

/* The reply of a touch (an integer). */
enum {
    GW_TOUCH_EXPIRED = -1, /* the session has expired: nothing refreshed (revive 0) */
    GW_TOUCH_NONE = 0,     /* the session has no idle expiry: nothing to refresh */
    GW_TOUCH_OK = 1,       /* last_active_ms = now, deadline = now + idle_s */
};

/*
 * Build the touch of @p session (a valid name) at @p now_ms: with @p idle_s
 * > 0 it also sets the idle expiry; with @p revive an expired session becomes
 * live again (its set and meta lose their TTL; used by job submits and PUT).
 * Send it with redisCommandArgv / redisAppendCommandArgv (MULTI is fine).
 */
void gw_session_touch_prepare(struct gw_session_touch *t, const char *prefix, const char *session,
                              long long idle_s, int revive, long long now_ms);

/* ---- the housekeeping thread (main.c) ------------------------------------------------------ */

/**
 * @return the session state of gateway @p gw (its cfg, pool, hub and metrics
 * are used, never freed), or NULL when out of memory. No thread runs yet.
 */
struct gw_sessions *gw_sessions_new(struct gw_ctx *gw);

/** Start the housekeeping thread. @return 0 or -1. */
int gw_sessions_start(struct gw_sessions *s);

/** Stop and join the thread (if started) and free @p s. NULL is a no-op. */
void gw_sessions_free(struct gw_sessions *s);

#endif
