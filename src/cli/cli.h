/* cli.h -- pieces shared by the subcommands of the pipecast program.
 *
 * Each subcommand is a function taking its own argc/argv (argv[0] is the
 * subcommand name) and returning the process exit code. Options common to
 * every subcommand (--redis, --prefix, --log-level, --help, --version) are
 * parsed through pc_cli_common_option() so that they behave the same way.
 */
#ifndef PC_CLI_H
#define PC_CLI_H

#include <stddef.h>

#include "pipecast/channel.h"
#include "pipecast/url.h"

#define PC_EXIT_OK 0
#define PC_EXIT_FAIL 1
#define PC_EXIT_USAGE 2

/* Long-only option codes shared by every subcommand; subcommands number theirs from PC_OPT_LOCAL.
 */
enum pc_cli_opt {
    PC_OPT_REDIS = 0x100,
    PC_OPT_PREFIX,
    PC_OPT_LOG_LEVEL,
    PC_OPT_HELP,
    PC_OPT_VERSION,
    PC_OPT_LOCAL = 0x200,
};

#define PC_CLI_COMMON_LONGOPTS                                                                     \
    {"redis", required_argument, NULL, PC_OPT_REDIS},                                              \
        {"prefix", required_argument, NULL, PC_OPT_PREFIX},                                        \
        {"log-level", required_argument, NULL, PC_OPT_LOG_LEVEL},                                  \
        {"help", no_argument, NULL, PC_OPT_HELP},                                                  \
    {                                                                                              \
        "version", no_argument, NULL, PC_OPT_VERSION                                               \
    }

#define PC_CLI_COMMON_HELP                                                                         \
    "  --redis URL          redis://[user:pass@]host[:port][/db] or unix:///path[?db=N]\n"         \
    "                       (env PIPECAST_REDIS_URL, default " PC_URL_DEFAULT ")\n"                \
    "  --prefix P           key prefix (env PIPECAST_PREFIX, default " PC_PREFIX_DEFAULT ")\n"     \
    "  --log-level L        debug|info|warn|error (env PIPECAST_LOG_LEVEL, default info)\n"        \
    "  --help               show this help\n"                                                      \
    "  --version            show the version\n"

/* Publishing options shared by `pipe` and `run` (see docs/interfaces.md). */
enum pc_cli_pub_opt {
    PC_OPT_MAXLEN = 0x180,
    PC_OPT_TTL,
    PC_OPT_MAX_LINE,
    PC_OPT_FLUSH_MS,
    PC_OPT_BUFFER_LINES,
    PC_OPT_RETRY_TIMEOUT,
};

#define PC_CLI_PUB_LONGOPTS                                                                        \
    {"maxlen", required_argument, NULL, PC_OPT_MAXLEN},                                            \
        {"ttl", required_argument, NULL, PC_OPT_TTL},                                              \
        {"max-line", required_argument, NULL, PC_OPT_MAX_LINE},                                    \
        {"flush-ms", required_argument, NULL, PC_OPT_FLUSH_MS},                                    \
        {"buffer-lines", required_argument, NULL, PC_OPT_BUFFER_LINES},                            \
    {                                                                                              \
        "retry-timeout", required_argument, NULL, PC_OPT_RETRY_TIMEOUT                             \
    }

struct pc_cli_pubopts {
    long long maxlen;        /* MAXLEN ~ N; 0: no trimming */
    long long ttl;           /* EXPIRE after writes; 0: none */
    long long max_line;      /* longer lines become partial chunks */
    long long flush_ms;      /* idle flush of a fragment without newline */
    long long buffer_lines;  /* unacknowledged lines held at most */
    long long retry_timeout; /* seconds of retrying an unreachable Redis */
};

/** The defaults: maxlen 100000, max_line 64 KiB, flush 50 ms, 100000 lines, retry 30 s. */
void pc_cli_pubopts_init(struct pc_cli_pubopts *o);

/**
 * Handle option @p opt if it is a publishing option.
 * @return 1 when handled, 0 when it is not one, or PC_EXIT_USAGE after printing why.
 */
int pc_cli_pubopts_option(struct pc_cli_pubopts *o, int opt, const char *arg);

struct pc_cli_common {
    const char *cmd;         /* subcommand name, for messages */
    const char *redis_arg;   /* --redis, or NULL */
    const char *prefix;      /* --prefix / $PIPECAST_PREFIX / default */
    int log_level;           /* enum pc_log_level */
    int help;                /* --help seen */
    int version;             /* --version seen */
    const char *channel;     /* the positional channel name */
    struct pc_redis_url url; /* parsed Redis location */
    char where[384];         /* url described for messages: "127.0.0.1:6379/0" */
    char key[PC_KEY_MAX];    /* "<prefix>:ch:<channel>" */
};

/** Start from the defaults and the environment (PIPECAST_PREFIX, PIPECAST_LOG_LEVEL). */
int pc_cli_common_init(struct pc_cli_common *c, const char *cmd);

/**
 * Handle option @p opt (a getopt_long result) if it is a common one.
 * @return 1 when handled, 0 when @p opt is not a common option, or
 * PC_EXIT_USAGE after printing why the value is bad.
 */
int pc_cli_common_option(struct pc_cli_common *c, int opt, const char *arg);

/**
 * Report getopt_long's error @p opt ('?': unknown option, ':': missing value;
 * the optstring must start with ':'). @return PC_EXIT_USAGE.
 */
int pc_cli_getopt_error(const struct pc_cli_common *c, int opt, int argc, char **argv);

/**
 * After option parsing: take the one positional channel name, check it,
 * parse the Redis URL, build the key and set the log level.
 * @return 0, or PC_EXIT_USAGE after printing why.
 */
int pc_cli_common_finish(struct pc_cli_common *c, int argc, char **argv, int first_arg);

/**
 * Parse @p s as a decimal integer in [min, max] for option @p opt (strict:
 * no trailing bytes, no empty string). @return 0, or PC_EXIT_USAGE after
 * printing `pipecast: --opt "s": <why>`.
 */
int pc_cli_parse_ll(const char *opt, const char *s, long long min, long long max, long long *out);

/** Print "pipecast: <message>\n" on stderr. */
void pc_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Print a usage error for subcommand @p c plus a hint; @return PC_EXIT_USAGE. */
int pc_cli_usage_error(const struct pc_cli_common *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Print "pipecast <version>" on stdout; @return PC_EXIT_OK. */
int pc_cli_print_version(void);

/* The subcommands. */
int pc_cli_pipe(int argc, char **argv);
int pc_cli_tail(int argc, char **argv);
int pc_cli_run(int argc, char **argv);
int pc_cli_jobs(int argc, char **argv);

#endif
