/* cli_util.c -- option handling shared by the pipecast subcommands. */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/log.h"
#include "pipecast/splitter.h"
#include "pipecast/url.h"

#include "cli.h"

void pc_cli_err(const char *fmt, ...)
{
    va_list ap;

    fputs("pipecast: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int pc_cli_usage_error(const struct pc_cli_common *c, const char *fmt, ...)
{
    va_list ap;

    fputs("pipecast: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'pipecast %s --help')\n", c->cmd);
    return PC_EXIT_USAGE;
}

int pc_cli_print_version(void)
{
    printf("pipecast %s\n", PC_VERSION);
    return PC_EXIT_OK;
}

int pc_cli_common_init(struct pc_cli_common *c, const char *cmd)
{
    const char *env;

    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->log_level = PC_LOG_INFO;
    c->prefix = PC_PREFIX_DEFAULT;
    env = getenv("PIPECAST_PREFIX");
    if (env && *env)
        c->prefix = env;
    env = getenv("PIPECAST_LOG_LEVEL");
    if (env && *env) {
        int lv = pc_log_level_parse(env);
        if (lv < 0) {
            pc_cli_err("PIPECAST_LOG_LEVEL \"%s\": unknown level (debug|info|warn|error)", env);
            return PC_EXIT_USAGE;
        }
        c->log_level = lv;
    }
    return 0;
}

int pc_cli_common_option(struct pc_cli_common *c, int opt, const char *arg)
{
    switch (opt) {
    case PC_OPT_REDIS:
        c->redis_arg = arg;
        return 1;
    case PC_OPT_PREFIX:
        c->prefix = arg;
        return 1;
    case PC_OPT_LOG_LEVEL: {
        int lv = pc_log_level_parse(arg);
        if (lv < 0)
            return pc_cli_usage_error(
                c, "--log-level \"%s\": unknown level (debug|info|warn|error)", arg);
        c->log_level = lv;
        return 1;
    }
    case PC_OPT_HELP:
        c->help = 1;
        return 1;
    case PC_OPT_VERSION:
        c->version = 1;
        return 1;
    default:
        return 0;
    }
}

int pc_cli_getopt_error(const struct pc_cli_common *c, int opt, int argc, char **argv)
{
    const char *what = (optind >= 1 && optind - 1 < argc) ? argv[optind - 1] : "?";
    int is_long = what[0] == '-' && what[1] == '-';

    if (opt == ':') {
        if (!is_long && optopt > 0 && optopt < 0x100)
            return pc_cli_usage_error(c, "option '-%c' needs a value", optopt);
        return pc_cli_usage_error(c, "option '%s' needs a value", what);
    }
    if (!is_long && optopt > 0 && optopt < 0x100)
        return pc_cli_usage_error(c, "unknown option '-%c'", optopt);
    if (is_long && strchr(what, '=') != NULL)
        return pc_cli_usage_error(c, "unknown option '%.*s' (or it takes no value)",
                                  (int)(strchr(what, '=') - what), what);
    return pc_cli_usage_error(c, "unknown option '%s'", what);
}

int pc_cli_parse_ll(const char *opt, const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    if (*s == '\0' || *s == ' ' || *s == '\t' || *s == '+') {
        pc_cli_err("%s \"%s\": not a number (expected %lld-%lld)", opt, s, min, max);
        return PC_EXIT_USAGE;
    }
    v = strtoll(s, &end, 10);
    if (end == s || *end != '\0') {
        pc_cli_err("%s \"%s\": not a number (expected %lld-%lld)", opt, s, min, max);
        return PC_EXIT_USAGE;
    }
    if (errno == ERANGE || v < min || v > max) {
        pc_cli_err("%s \"%s\": out of range (expected %lld-%lld)", opt, s, min, max);
        return PC_EXIT_USAGE;
    }
    *out = v;
    return 0;
}

int pc_cli_common_finish(struct pc_cli_common *c, int argc, char **argv, int first_arg)
{
    char msg[512];
    const char *url;
    int rc;

    pc_log_init("pipecast", (enum pc_log_level)c->log_level);
    if (first_arg >= argc)
        return pc_cli_usage_error(c, "%s: missing channel name", c->cmd);
    if (argc - first_arg > 1)
        return pc_cli_usage_error(c, "%s: unexpected argument \"%s\" (one channel expected)",
                                  c->cmd, argv[first_arg + 1]);
    c->channel = argv[first_arg];
    if (!pc_channel_valid(c->channel, strlen(c->channel))) {
        pc_channel_explain(c->channel, strlen(c->channel), msg, sizeof(msg));
        pc_cli_err("%s", msg);
        return PC_EXIT_USAGE;
    }
    if (!pc_prefix_valid(c->prefix)) {
        pc_cli_err("prefix \"%.80s\": invalid (allowed: 1-%d bytes of A-Z a-z 0-9 . _ : @ -)",
                   c->prefix, PC_PREFIX_MAX);
        return PC_EXIT_USAGE;
    }
    url = pc_redis_url_choose(c->redis_arg);
    if (pc_redis_url_parse(url, &c->url, msg, sizeof(msg)) != 0) {
        pc_cli_err("%s", msg);
        return PC_EXIT_USAGE;
    }
    pc_redis_url_describe(&c->url, c->where, sizeof(c->where));
    rc = pc_key_channel(c->key, sizeof(c->key), c->prefix, c->channel);
    if (rc < 0) {
        pc_cli_err("channel \"%s\": cannot build the key (%s)", c->channel, pc_strerror(rc));
        return PC_EXIT_USAGE;
    }
    return 0;
}

void pc_cli_pubopts_init(struct pc_cli_pubopts *o)
{
    o->maxlen = 100000;
    o->ttl = 0;
    o->max_line = PC_LINE_MAX_DEFAULT;
    o->flush_ms = 50;
    o->buffer_lines = 100000;
    o->retry_timeout = 30;
}

int pc_cli_pubopts_option(struct pc_cli_pubopts *o, int opt, const char *arg)
{
    int rc;

    switch (opt) {
    case PC_OPT_MAXLEN:
        rc = pc_cli_parse_ll("--maxlen", arg, 0, LLONG_MAX, &o->maxlen);
        break;
    case PC_OPT_TTL:
        rc = pc_cli_parse_ll("--ttl", arg, 1, INT_MAX, &o->ttl);
        break;
    case PC_OPT_MAX_LINE:
        rc = pc_cli_parse_ll("--max-line", arg, PC_LINE_MAX_MIN, 16LL << 20, &o->max_line);
        break;
    case PC_OPT_FLUSH_MS:
        rc = pc_cli_parse_ll("--flush-ms", arg, 0, 3600000, &o->flush_ms);
        break;
    case PC_OPT_BUFFER_LINES:
        rc = pc_cli_parse_ll("--buffer-lines", arg, 1, 10000000, &o->buffer_lines);
        break;
    case PC_OPT_RETRY_TIMEOUT:
        rc = pc_cli_parse_ll("--retry-timeout", arg, 0, 86400, &o->retry_timeout);
        break;
    default:
        return 0;
    }
    return rc != 0 ? rc : 1;
}
