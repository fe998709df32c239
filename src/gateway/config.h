/* config.h -- the gateway's settings: command-line options, then environment, then defaults.
 *
 * Every option has an environment variable (docs/interfaces.md); an option
 * given on the command line wins over the environment. Values are validated
 * here, so the rest of the gateway can trust them.
 */
#ifndef PC_GW_CONFIG_H
#define PC_GW_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "pipecast/channel.h"
#include "pipecast/url.h"

#define GW_MAX_CLIENTS_LIMIT 100000
#define GW_HTTP_THREADS_LIMIT 10000
#define GW_SSE_WRITERS_LIMIT 16 /* GW_LISTEN_GROUPS_MAX */
#define GW_HUB_READERS_LIMIT 64 /* GW_HUB_READERS_MAX */
#define GW_PATH_MAX 4096

struct gw_config {
    char listen[128];          /* "ADDR:PORT", as civetweb's listening_ports wants it */
    char redis_url[1024];      /* as given (may hold a password: never log it) */
    struct pc_redis_url redis; /* parsed redis_url */
    char prefix[PC_PREFIX_MAX + 1];
    char web_root[GW_PATH_MAX]; /* absolute; "" when no web root was found */
    char cors_origin[1024];     /* "" = no CORS headers */
    int max_clients;            /* concurrent SSE streams */
    int http_threads;           /* civetweb num_threads */
    int sse_writers;            /* fanout writer threads; 0 = by CPU count */
    int hub_readers;            /* hub reader threads, each with a Redis connection */
    int ping_interval_s;
    unsigned retry_ms;             /* the SSE retry: hint */
    int ring;                      /* entries per channel ring */
    size_t max_body;               /* POST bodies above -> 413 */
    int log_level;                 /* enum pc_log_level */
    char tokens_file[GW_PATH_MAX]; /* "" = no tokens (auth.c) */
    int insecure_no_auth;          /* --insecure-no-auth: non-loopback listen without tokens */
    int session_channel_grace_s;   /* TTL of an expired session's job channels (sessions.c) */
};

enum {
    GW_CONFIG_OK = 0,     /* run */
    GW_CONFIG_EXIT = 1,   /* --help or --version was printed: exit 0 */
    GW_CONFIG_USAGE = -1, /* invalid option or value: message in err, exit 2 */
};

/**
 * Fill @p cfg from @p argv, the environment and the defaults.
 * @return GW_CONFIG_OK, GW_CONFIG_EXIT or GW_CONFIG_USAGE (with a one-line
 * reason in @p err).
 */
int gw_config_parse(struct gw_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Print the usage text to @p f. */
void gw_config_usage(FILE *f);

#endif
