/* log.c -- leveled logging to stderr, one write per line.
 *
 * The level and program name are the only mutable globals of the library:
 * they are process-wide by nature (set once from main()). The level is atomic
 * so that a signal-driven or threaded "set level" stays race-free; the name is
 * written once, before any thread starts.
 */
#include "pipecast/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = PC_LOG_INFO;
static char log_progname[64] = "pipecast";

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void pc_log_init(const char *progname, enum pc_log_level level)
{
    if (progname != NULL && *progname != '\0') {
        /* keep only the basename: argv[0] may be a long path */
        const char *slash = strrchr(progname, '/');
        if (slash != NULL && slash[1] != '\0')
            progname = slash + 1;
        snprintf(log_progname, sizeof(log_progname), "%s", progname);
    }
    if ((int)level < PC_LOG_DEBUG || level > PC_LOG_OFF)
        level = PC_LOG_INFO;
    atomic_store(&log_level, (int)level);
}

int pc_log_level_parse(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};

    if (s == NULL)
        return -1;
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
        if (strcasecmp(s, names[i]) == 0)
            return i;
    }
    if (strcasecmp(s, "warning") == 0)
        return PC_LOG_WARN;
    return -1;
}

int pc_log_enabled(enum pc_log_level level)
{
    return (int)level >= atomic_load(&log_level) && level < PC_LOG_OFF;
}

/* "2026-11-26T07:12:00.123Z"; always 24 bytes + NUL. */
static void log_timestamp(char *buf, size_t buflen)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, buflen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, buflen - n, ".%03uZ", (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

/*
 * The whole line is formatted first and written with one fwrite, so lines
 * from concurrent threads never interleave (stderr is unbuffered, and stdio
 * locks the stream for the duration of one call).
 */
void pc_log(enum pc_log_level level, const char *tag, const char *fmt, ...)
{
    char stackbuf[1024];
    char *line = stackbuf;
    char ts[32];
    int head, body;
    size_t size = sizeof(stackbuf);
    va_list ap;

    if (!pc_log_enabled(level))
        return;
    log_timestamp(ts, sizeof(ts));

    for (;;) {
        head = snprintf(line, size, "%s %s[%ld] %s %s%s", ts, log_progname, (long)getpid(),
                        level_names[level], tag != NULL ? tag : "", tag != NULL ? ": " : "");
        if (head < 0 || (size_t)head >= size)
            break; /* cannot happen with a 1 KiB buffer; print what we have */
        va_start(ap, fmt);
        body = vsnprintf(line + head, size - (size_t)head, fmt, ap);
        va_end(ap);
        if (body < 0) {
            body = 0;
            line[head] = '\0';
        }
        /* +2: the newline and the NUL */
        if ((size_t)head + (size_t)body + 2 <= size || line != stackbuf)
            break;
        char *big = malloc((size_t)head + (size_t)body + 2);
        if (big == NULL)
            break; /* out of memory: print the truncated line rather than nothing */
        line = big;
        size = (size_t)head + (size_t)body + 2;
    }

    size_t n = strlen(line);
    if (n + 1 >= size)
        n = size - 2;
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
    if (line != stackbuf)
        free(line);
}
