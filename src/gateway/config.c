/* config.c -- options and environment variables of pipecast-gateway. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipecast/log.h"

#include "auth.h"

#ifndef PC_VERSION
#define PC_VERSION "0.0.0"
#endif

/* The options, in the order of docs/interfaces.md. */
enum {
    OPT_LISTEN,
    OPT_REDIS,
    OPT_PREFIX,
    OPT_WEB_ROOT,
    OPT_CORS,
    OPT_MAX_CLIENTS,
    OPT_PING,
    OPT_RETRY,
    OPT_RING,
    OPT_MAX_BODY,
    OPT_LOG_LEVEL,
    OPT_TOKENS,
    OPT_SESSION_GRACE,
    OPT_HTTP_THREADS,
    OPT_SSE_WRITERS,
    OPT_HUB_READERS,
    OPT_COUNT
};

static const struct {
    const char *name;
    const char *env;
} options[OPT_COUNT] = {
    [OPT_LISTEN] = {"--listen", "PIPECAST_LISTEN"},
    [OPT_REDIS] = {"--redis", "PIPECAST_REDIS_URL"},
    [OPT_PREFIX] = {"--prefix", "PIPECAST_PREFIX"},
    [OPT_WEB_ROOT] = {"--web-root", "PIPECAST_WEB_ROOT"},
    [OPT_CORS] = {"--cors-origin", "PIPECAST_CORS_ORIGIN"},
    [OPT_MAX_CLIENTS] = {"--max-clients", "PIPECAST_MAX_CLIENTS"},
    [OPT_PING] = {"--ping-interval", "PIPECAST_PING_INTERVAL"},
    [OPT_RETRY] = {"--retry-ms", "PIPECAST_RETRY_MS"},
    [OPT_RING] = {"--ring", "PIPECAST_RING"},
    [OPT_MAX_BODY] = {"--max-body", "PIPECAST_MAX_BODY"},
    [OPT_LOG_LEVEL] = {"--log-level", "PIPECAST_LOG_LEVEL"},
    [OPT_TOKENS] = {"--tokens", "PIPECAST_TOKENS_FILE"},
    [OPT_SESSION_GRACE] = {"--session-channel-grace", "PIPECAST_SESSION_CHANNEL_GRACE"},
    [OPT_HTTP_THREADS] = {"--http-threads", "PIPECAST_HTTP_THREADS"},
    [OPT_SSE_WRITERS] = {"--sse-writers", "PIPECAST_SSE_WRITERS"},
    [OPT_HUB_READERS] = {"--hub-readers", "PIPECAST_HUB_READERS"},
};

void gw_config_usage(FILE *f)
{
    fputs("usage: pipecast-gateway [options]\n"
          "\n"
          "Serves channels (Redis Streams) to browsers over Server-Sent Events, with replay,\n"
          "a REST API, health and metrics.\n"
          "\n"
          "  --listen ADDR:PORT     listen address (PIPECAST_LISTEN, default 127.0.0.1:8080)\n"
          "  --redis URL            Redis location (PIPECAST_REDIS_URL,\n"
          "                         default redis://127.0.0.1:6379/0)\n"
          "  --prefix P             key prefix (PIPECAST_PREFIX, default pc)\n"
          "  --web-root DIR         static files (PIPECAST_WEB_ROOT, default\n"
          "                         <install>/share/pipecast/web, or ./web)\n"
          "  --cors-origin ORIGIN   send Access-Control-Allow-Origin (PIPECAST_CORS_ORIGIN)\n"
          "  --max-clients N        concurrent SSE streams (PIPECAST_MAX_CLIENTS, default 1000)\n"
          "  --http-threads N       civetweb worker threads, all started up front; live SSE\n"
          "                         streams do not hold one (PIPECAST_HTTP_THREADS, default 128)\n"
          "  --sse-writers N        threads that write to live SSE streams (PIPECAST_SSE_WRITERS,\n"
          "                         default: the number of CPUs, at most 4)\n"
          "  --hub-readers N        Redis connections reading channels, the channels shared\n"
          "                         among them (PIPECAST_HUB_READERS, default 64)\n"
          "  --ping-interval S      SSE keep-alive comment period (PIPECAST_PING_INTERVAL, 15)\n"
          "  --retry-ms MS          SSE retry: hint (PIPECAST_RETRY_MS, default 2000)\n"
          "  --ring N               entries kept in memory per channel (PIPECAST_RING, 1024)\n"
          "  --max-body BYTES       largest POST body (PIPECAST_MAX_BODY, default 1048576)\n"
          "  --log-level L          debug|info|warn|error (PIPECAST_LOG_LEVEL, default info)\n"
          "  --tokens FILE          bearer tokens, lines \"<token> <scope>[,<scope>]\" (scopes\n"
          "                         subscribe, publish, run, admin) (PIPECAST_TOKENS_FILE)\n"
          "  --insecure-no-auth     allow a non-loopback --listen without --tokens\n"
          "                         (PIPECAST_INSECURE_NO_AUTH=1)\n"
          "  --session-channel-grace S  TTL given to the channel streams of an idle session's\n"
          "                         jobs when it expires (PIPECAST_SESSION_CHANNEL_GRACE, 300)\n"
          "  --help                 this text\n"
          "  --version              print the version\n",
          f);
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Strict unsigned decimal in [min, max]: digits only, no sign, no spaces. */
static int parse_num(const char *s, unsigned long long min, unsigned long long max,
                     unsigned long long *out)
{
    unsigned long long v = 0;

    if (*s == '\0' || strlen(s) > 19)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long long)(*p - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The default web root: next to the installed binary, else ./web, else the source tree. */
static void find_web_root(char *out, size_t outlen)
{
    char exe[GW_PATH_MAX];
    char cand[GW_PATH_MAX + 64];
    ssize_t n;

    out[0] = '\0';
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;

        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(cand, sizeof(cand), "%s/../share/pipecast/web", exe);
            if (is_dir(cand) && realpath(cand, exe) && strlen(exe) < outlen) {
                memcpy(out, exe, strlen(exe) + 1);
                return;
            }
        }
    }
    if (is_dir("web") && realpath("web", exe) && strlen(exe) < outlen) {
        memcpy(out, exe, strlen(exe) + 1);
        return;
    }
#ifdef PC_GW_SOURCE_WEB
    if (is_dir(PC_GW_SOURCE_WEB) && realpath(PC_GW_SOURCE_WEB, exe) && strlen(exe) < outlen)
        memcpy(out, exe, strlen(exe) + 1);
#endif
}

/* "ADDR:PORT" with an IPv4 address (or "localhost"), port 0-65535 (0: any free port). */
static int check_listen(const char *v, char *out, size_t outlen, char *why, size_t whylen)
{
    const char *colon = strrchr(v, ':');
    char host[64];
    struct in_addr a;
    unsigned long long port;
    size_t hl;

    if (!colon) {
        seterr(why, whylen, "expected ADDR:PORT");
        return -1;
    }
    hl = (size_t)(colon - v);
    if (hl == 0 || hl >= sizeof(host)) {
        seterr(why, whylen, "expected ADDR:PORT");
        return -1;
    }
    memcpy(host, v, hl);
    host[hl] = '\0';
    if (host[0] == '[') {
        seterr(why, whylen, "IPv6 addresses are not supported by this build of civetweb");
        return -1;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &a) != 1) {
        seterr(why, whylen, "\"%s\" is not an IPv4 address", host);
        return -1;
    }
    if (parse_num(colon + 1, 0, 65535, &port) != 0) {
        seterr(why, whylen, "port must be 0-65535");
        return -1;
    }
    snprintf(out, outlen, "%s:%llu", host, port);
    return 0;
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

int gw_config_parse(struct gw_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const char *val[OPT_COUNT] = {0};
    const char *src[OPT_COUNT] = {0}; /* where each value came from, for messages */
    char why[256];
    unsigned long long n;

    memset(cfg, 0, sizeof(*cfg));
    {
        const char *e = getenv("PIPECAST_INSECURE_NO_AUTH");

        if (e && *e) {
            if (strcmp(e, "1") == 0 || strcmp(e, "true") == 0 || strcmp(e, "yes") == 0) {
                cfg->insecure_no_auth = 1;
            } else if (strcmp(e, "0") != 0 && strcmp(e, "false") != 0 && strcmp(e, "no") != 0) {
                seterr(err, errlen, "PIPECAST_INSECURE_NO_AUTH: \"%.50s\": expected 1 or 0", e);
                return GW_CONFIG_USAGE;
            }
        }
    }
    for (int i = 0; i < OPT_COUNT; i++) {
        const char *e = getenv(options[i].env);

        if (e && *e) {
            val[i] = e;
            src[i] = options[i].env;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            gw_config_usage(stdout);
            return GW_CONFIG_EXIT;
        }
        if (strcmp(a, "--version") == 0) {
            printf("pipecast %s\n", PC_VERSION);
            return GW_CONFIG_EXIT;
        }
        if (strcmp(a, "--insecure-no-auth") == 0) {
            cfg->insecure_no_auth = 1;
            continue;
        }
        for (k = 0; k < OPT_COUNT; k++) {
            size_t nl = strlen(options[k].name);

            if (strncmp(a, options[k].name, nl) != 0)
                continue;
            if (a[nl] == '=') {
                val[k] = a + nl + 1;
                break;
            }
            if (a[nl] == '\0') {
                if (i + 1 >= argc) {
                    seterr(err, errlen, "option %s needs a value", options[k].name);
                    return GW_CONFIG_USAGE;
                }
                val[k] = argv[++i];
                break;
            }
        }
        if (k == OPT_COUNT) {
            seterr(err, errlen, "unknown option \"%.100s\" (see --help)", a);
            return GW_CONFIG_USAGE;
        }
        src[k] = options[k].name;
    }

#define BAD(k, ...)                                                                                \
    do {                                                                                           \
        char msg_[512];                                                                            \
        snprintf(msg_, sizeof(msg_), __VA_ARGS__);                                                 \
        seterr(err, errlen, "%s: %s", src[k], msg_);                                               \
        return GW_CONFIG_USAGE;                                                                    \
    } while (0)

    /* --listen */
    if (!val[OPT_LISTEN]) {
        snprintf(cfg->listen, sizeof(cfg->listen), "127.0.0.1:8080");
    } else if (check_listen(val[OPT_LISTEN], cfg->listen, sizeof(cfg->listen), why, sizeof(why)) !=
               0) {
        BAD(OPT_LISTEN, "\"%.100s\": %s", val[OPT_LISTEN], why);
    }

    /* --redis: the URL may carry a password, so it is never repeated in messages */
    {
        const char *u = val[OPT_REDIS] ? val[OPT_REDIS] : PC_URL_DEFAULT;

        if (strlen(u) >= sizeof(cfg->redis_url)) {
            seterr(err, errlen, "%s: too long", src[OPT_REDIS]);
            return GW_CONFIG_USAGE;
        }
        memcpy(cfg->redis_url, u, strlen(u) + 1);
        if (pc_redis_url_parse(cfg->redis_url, &cfg->redis, why, sizeof(why)) != 0) {
            seterr(err, errlen, "%s", why);
            return GW_CONFIG_USAGE;
        }
    }

    /* --prefix */
    if (val[OPT_PREFIX]) {
        if (!pc_prefix_valid(val[OPT_PREFIX]))
            BAD(OPT_PREFIX, "invalid prefix (allowed: 1-64 bytes of A-Z a-z 0-9 . _ : @ -)");
        snprintf(cfg->prefix, sizeof(cfg->prefix), "%s", val[OPT_PREFIX]);
    } else {
        snprintf(cfg->prefix, sizeof(cfg->prefix), "%s", PC_PREFIX_DEFAULT);
    }

    /* --web-root */
    if (val[OPT_WEB_ROOT]) {
        if (!is_dir(val[OPT_WEB_ROOT]))
            BAD(OPT_WEB_ROOT, "\"%.200s\" is not a directory", val[OPT_WEB_ROOT]);
        if (!realpath(val[OPT_WEB_ROOT], cfg->web_root))
            BAD(OPT_WEB_ROOT, "\"%.200s\": %s", val[OPT_WEB_ROOT], strerror(errno));
    } else {
        find_web_root(cfg->web_root, sizeof(cfg->web_root));
    }

    /* --cors-origin */
    if (val[OPT_CORS]) {
        if (strlen(val[OPT_CORS]) >= sizeof(cfg->cors_origin) || !printable(val[OPT_CORS]))
            BAD(OPT_CORS, "invalid origin (printable ASCII without spaces, e.g. "
                          "https://example.org or *)");
        snprintf(cfg->cors_origin, sizeof(cfg->cors_origin), "%s", val[OPT_CORS]);
    }

    cfg->max_clients = 1000;
    if (val[OPT_MAX_CLIENTS]) {
        if (parse_num(val[OPT_MAX_CLIENTS], 1, GW_MAX_CLIENTS_LIMIT, &n) != 0)
            BAD(OPT_MAX_CLIENTS, "\"%.50s\": expected a number 1-%d", val[OPT_MAX_CLIENTS],
                GW_MAX_CLIENTS_LIMIT);
        cfg->max_clients = (int)n;
    }
    cfg->http_threads = 128; /* ~15 KB each; an idle connection holds one up to 10 s */
    if (val[OPT_HTTP_THREADS]) {
        if (parse_num(val[OPT_HTTP_THREADS], 4, GW_HTTP_THREADS_LIMIT, &n) != 0)
            BAD(OPT_HTTP_THREADS, "\"%.50s\": expected a number 4-%d", val[OPT_HTTP_THREADS],
                GW_HTTP_THREADS_LIMIT);
        cfg->http_threads = (int)n;
    }
    cfg->sse_writers = 0; /* main.c: the number of CPUs, at most 4 */
    if (val[OPT_SSE_WRITERS]) {
        if (parse_num(val[OPT_SSE_WRITERS], 1, GW_SSE_WRITERS_LIMIT, &n) != 0)
            BAD(OPT_SSE_WRITERS, "\"%.50s\": expected a number 1-%d", val[OPT_SSE_WRITERS],
                GW_SSE_WRITERS_LIMIT);
        cfg->sse_writers = (int)n;
    }
    /* 1,000 channels: ~16 keys per XREAD (16 readers: 63 keys, Redis CPU 19 % vs 10 % at
     * 1,000 events/s); a reader connects once it has a channel, with a 256 KiB stack */
    cfg->hub_readers = 64;
    if (val[OPT_HUB_READERS]) {
        if (parse_num(val[OPT_HUB_READERS], 1, GW_HUB_READERS_LIMIT, &n) != 0)
            BAD(OPT_HUB_READERS, "\"%.50s\": expected a number 1-%d", val[OPT_HUB_READERS],
                GW_HUB_READERS_LIMIT);
        cfg->hub_readers = (int)n;
    }
    cfg->ping_interval_s = 15;
    if (val[OPT_PING]) {
        if (parse_num(val[OPT_PING], 1, 3600, &n) != 0)
            BAD(OPT_PING, "\"%.50s\": expected seconds 1-3600", val[OPT_PING]);
        cfg->ping_interval_s = (int)n;
    }
    cfg->retry_ms = 2000;
    if (val[OPT_RETRY]) {
        if (parse_num(val[OPT_RETRY], 0, 86400000, &n) != 0)
            BAD(OPT_RETRY, "\"%.50s\": expected milliseconds 0-86400000", val[OPT_RETRY]);
        cfg->retry_ms = (unsigned)n;
    }
    cfg->ring = 1024;
    if (val[OPT_RING]) {
        if (parse_num(val[OPT_RING], 1, 1000000, &n) != 0)
            BAD(OPT_RING, "\"%.50s\": expected entries 1-1000000", val[OPT_RING]);
        cfg->ring = (int)n;
    }
    cfg->max_body = 1048576;
    if (val[OPT_MAX_BODY]) {
        if (parse_num(val[OPT_MAX_BODY], 1, 1073741824ULL, &n) != 0)
            BAD(OPT_MAX_BODY, "\"%.50s\": expected bytes 1-1073741824", val[OPT_MAX_BODY]);
        cfg->max_body = (size_t)n;
    }
    cfg->log_level = PC_LOG_INFO;
    if (val[OPT_LOG_LEVEL]) {
        int l = pc_log_level_parse(val[OPT_LOG_LEVEL]);

        if (l < 0)
            BAD(OPT_LOG_LEVEL, "\"%.50s\": expected debug, info, warn or error",
                val[OPT_LOG_LEVEL]);
        cfg->log_level = l;
    }

    cfg->session_channel_grace_s = 300;
    if (val[OPT_SESSION_GRACE]) {
        if (parse_num(val[OPT_SESSION_GRACE], 1, 604800, &n) != 0)
            BAD(OPT_SESSION_GRACE, "\"%.50s\": expected seconds 1-604800", val[OPT_SESSION_GRACE]);
        cfg->session_channel_grace_s = (int)n;
    }

    /* --tokens (read by auth.c), and no open API beyond loopback */
    if (val[OPT_TOKENS]) {
        if (strlen(val[OPT_TOKENS]) >= sizeof(cfg->tokens_file))
            BAD(OPT_TOKENS, "path too long");
        snprintf(cfg->tokens_file, sizeof(cfg->tokens_file), "%s", val[OPT_TOKENS]);
    }
    if (!cfg->tokens_file[0] && !cfg->insecure_no_auth &&
        !gw_auth_listen_is_loopback(cfg->listen)) {
        char host[sizeof(cfg->listen)];
        char *colon;

        snprintf(host, sizeof(host), "%s", cfg->listen);
        colon = strrchr(host, ':');
        if (colon)
            *colon = '\0';
        seterr(err, errlen,
               "listening on %s exposes the API: give --tokens FILE, or --insecure-no-auth to "
               "accept the risk",
               host);
        return GW_CONFIG_USAGE;
    }
#undef BAD
    return GW_CONFIG_OK;
}
