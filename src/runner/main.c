/* main.c -- pipecast-runner: parse options, build the context, run. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipecast/channel.h"
#include "pipecast/log.h"
#include "pipecast/splitter.h"
#include "pipecast/url.h"

#include "runner.h"

#if defined(__SANITIZE_ADDRESS__)
/*
 * ASan keeps freed memory in a 256 MiB quarantine; hiredis allocates a reply
 * per published line, so under ASan the runner's RSS would show the
 * quarantine, not its own (bounded) buffering. 16 MiB still catches
 * use-after-free of recent objects. ASAN_OPTIONS overrides this.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=16";
}
#endif

enum {
    OPT_REDIS = 256,
    OPT_PREFIX,
    OPT_ID,
    OPT_SLOTS,
    OPT_CONFIG,
    OPT_ANY,
    OPT_KILL_GRACE,
    OPT_SHUTDOWN_GRACE,
    OPT_USER,
    OPT_JOB_TTL,
    OPT_MAX_LINE,
    OPT_FLUSH_MS,
    OPT_MAXLEN,
    OPT_LOG_LEVEL,
    OPT_HELP,
    OPT_VERSION,
};

static void usage(FILE *f)
{
    fputs(
        "usage: pipecast-runner [options]\n"
        "\n"
        "Takes jobs from the Redis queue <prefix>:jobs (consumer group \"runners\"), runs them,\n"
        "publishes their output and lifecycle events to their channels, obeys kill / stdin\n"
        "control messages on <prefix>:ctl:<id>. See docs/jobs.md.\n"
        "\n"
        "options:\n"
        "  --redis URL           Redis (env PIPECAST_REDIS_URL; default redis://127.0.0.1:6379/0)\n"
        "  --prefix P            key prefix (env PIPECAST_PREFIX; default pc)\n"
        "  --id ID               runner id / consumer name (default <host>:<pid>)\n"
        "  --slots N             jobs at once (default 4 x CPU cores)\n"
        "  --config FILE         templates and limits_max (JSON, see docs/runner.example.json)\n"
        "  --allow-any-command   accept {\"argv\": [...]} requests, not only templates\n"
        "  --kill-grace S        SIGTERM -> SIGKILL delay when killing a job (default 5)\n"
        "  --shutdown-grace S    on SIGTERM, let jobs finish this long (default 10)\n"
        "  --user NAME           run jobs as this user (the runner must be root)\n"
        "  --job-ttl S           expiry of ended jobs' hashes (default 604800 = 7 days)\n"
        "  --max-line BYTES      longer output lines become partial chunks (default 65536)\n"
        "  --flush-ms MS         output without a newline is published after this idle time "
        "(default 50)\n"
        "  --maxlen N            MAXLEN ~ of job channels (default 100000; 0 = no trimming)\n"
        "  --log-level L         debug|info|warn|error (env PIPECAST_LOG_LEVEL; default info)\n"
        "  --help, --version\n",
        f);
}

static int bad(const char *fmt, const char *arg)
{
    fputs("pipecast-runner: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see 'pipecast-runner --help')\n", stderr);
    return 2;
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Keep fds 0-2 taken so that no socket or pipe lands there. */
static void sanitize_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1) {
            int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (n >= 0 && n != fd) {
                dup2(n, fd);
                close(n);
            }
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"redis", required_argument, NULL, OPT_REDIS},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"id", required_argument, NULL, OPT_ID},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"allow-any-command", no_argument, NULL, OPT_ANY},
        {"kill-grace", required_argument, NULL, OPT_KILL_GRACE},
        {"shutdown-grace", required_argument, NULL, OPT_SHUTDOWN_GRACE},
        {"user", required_argument, NULL, OPT_USER},
        {"job-ttl", required_argument, NULL, OPT_JOB_TTL},
        {"max-line", required_argument, NULL, OPT_MAX_LINE},
        {"flush-ms", required_argument, NULL, OPT_FLUSH_MS},
        {"maxlen", required_argument, NULL, OPT_MAXLEN},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    static struct rn_opts o; /* a few KiB: not on the stack */
    const char *prefix = getenv("PIPECAST_PREFIX"), *id = NULL, *user = NULL;
    const char *env_level = getenv("PIPECAST_LOG_LEVEL");
    int level = PC_LOG_INFO, opt;
    long long v;
    char err[400];

    sanitize_std_fds();
    memset(&o, 0, sizeof(o));
    o.slots = 0;
    o.kill_grace_s = 5;
    o.shutdown_grace_s = 10;
    o.job_ttl_s = 7L * 86400;
    o.max_line = PC_LINE_MAX_DEFAULT;
    o.flush_ms = 50;
    o.maxlen = 100000;
    if (prefix == NULL || *prefix == '\0')
        prefix = PC_PREFIX_DEFAULT;
    if (env_level != NULL && *env_level != '\0') {
        level = pc_log_level_parse(env_level);
        if (level < 0)
            return bad("PIPECAST_LOG_LEVEL \"%s\": unknown level (debug|info|warn|error)",
                       env_level);
    }

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_REDIS:
            o.redis_url = optarg;
            break;
        case OPT_PREFIX:
            prefix = optarg;
            break;
        case OPT_ID:
            id = optarg;
            break;
        case OPT_SLOTS:
            if (parse_ll(optarg, 1, 10000, &v) != 0)
                return bad("--slots \"%s\": expected 1..10000", optarg);
            o.slots = (int)v;
            break;
        case OPT_CONFIG:
            o.config = optarg;
            break;
        case OPT_ANY:
            o.allow_any = 1;
            break;
        case OPT_KILL_GRACE:
            if (parse_ll(optarg, 0, 3600, &v) != 0)
                return bad("--kill-grace \"%s\": expected 0..3600 seconds", optarg);
            o.kill_grace_s = (int)v;
            break;
        case OPT_SHUTDOWN_GRACE:
            if (parse_ll(optarg, 0, 86400, &v) != 0)
                return bad("--shutdown-grace \"%s\": expected 0..86400 seconds", optarg);
            o.shutdown_grace_s = (int)v;
            break;
        case OPT_USER:
            user = optarg;
            break;
        case OPT_JOB_TTL:
            if (parse_ll(optarg, 1, 10LL * 365 * 86400, &v) != 0)
                return bad("--job-ttl \"%s\": expected a positive number of seconds", optarg);
            o.job_ttl_s = (long)v;
            break;
        case OPT_MAX_LINE:
            if (parse_ll(optarg, PC_LINE_MAX_MIN, 16LL << 20, &v) != 0)
                return bad("--max-line \"%s\": expected 16..16777216 bytes", optarg);
            o.max_line = (size_t)v;
            break;
        case OPT_FLUSH_MS:
            if (parse_ll(optarg, 1, 60000, &v) != 0)
                return bad("--flush-ms \"%s\": expected 1..60000", optarg);
            o.flush_ms = (int)v;
            break;
        case OPT_MAXLEN:
            if (parse_ll(optarg, 0, LLONG_MAX, &v) != 0)
                return bad("--maxlen \"%s\": expected a number >= 0", optarg);
            o.maxlen = v;
            break;
        case OPT_LOG_LEVEL:
            level = pc_log_level_parse(optarg);
            if (level < 0)
                return bad("--log-level \"%s\": unknown level (debug|info|warn|error)", optarg);
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("pipecast %s\n", PC_VERSION);
            return 0;
        case ':':
            return bad("%s: missing value", argv[optind - 1]);
        default:
            return bad("%s: unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad("\"%s\": unexpected argument", argv[optind]);
    pc_log_init("pipecast-runner", (enum pc_log_level)level);

    if (!pc_prefix_valid(prefix))
        return bad("prefix \"%s\": invalid (1-64 bytes of A-Z a-z 0-9 . _ : @ -)", prefix);
    snprintf(o.prefix, sizeof(o.prefix), "%s", prefix);
    o.redis_url = pc_redis_url_choose(o.redis_url);
    if (pc_redis_url_parse(o.redis_url, &o.url, err, sizeof(err)) != 0) {
        fprintf(stderr, "pipecast-runner: %s\n", err);
        return 2;
    }
    pc_redis_url_describe(&o.url, o.where, sizeof(o.where));
    if (gethostname(o.host, sizeof(o.host) - 1) != 0)
        snprintf(o.host, sizeof(o.host), "localhost");
    if (id == NULL) {
        snprintf(o.id, sizeof(o.id), "%.100s:%ld", o.host, (long)getpid());
    } else {
        if (strlen(id) > RN_ID_MAX || !pc_channel_valid(id, strlen(id)))
            return bad("--id \"%s\": invalid (1-128 bytes of A-Z a-z 0-9 . _ : @ -)", id);
        snprintf(o.id, sizeof(o.id), "%s", id);
    }
    if (!pc_channel_valid(o.id, strlen(o.id)))
        return bad("runner id \"%s\": invalid; give one with --id", o.id);
    if (o.slots == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.slots = (int)(n > 0 ? (n > 2500 ? 10000 : 4 * n) : 4);
    }

    if (user != NULL) {
        struct passwd *pw = getpwnam(user);
        if (pw == NULL)
            return bad("--user \"%s\": no such user", user);
        if (geteuid() != 0 && pw->pw_uid != geteuid())
            return bad("--user \"%s\": the runner must run as root to switch users", user);
        o.drop_user = pw->pw_uid != geteuid() || geteuid() == 0;
        o.uid = pw->pw_uid;
        o.gid = pw->pw_gid;
        snprintf(o.home, sizeof(o.home), "%s", pw->pw_dir != NULL ? pw->pw_dir : "/");
    } else {
        const char *h = getenv("HOME");
        struct passwd *pw = getpwuid(geteuid());
        if (pw != NULL && pw->pw_dir != NULL)
            h = pw->pw_dir;
        snprintf(o.home, sizeof(o.home), "%s", h != NULL && *h != '\0' ? h : "/");
    }
    return rn_run(&o);
}
