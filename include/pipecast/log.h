/* log.h -- leveled logging to stderr.
 *
 * Lines look like: "2026-11-26T07:12:00.123Z pipecast-gateway[123] WARN redis: connection lost".
 * The level and program name are process-wide settings made once from main().
 */
#ifndef PC_LOG_H
#define PC_LOG_H

enum pc_log_level {
    PC_LOG_DEBUG = 0,
    PC_LOG_INFO = 1,
    PC_LOG_WARN = 2,
    PC_LOG_ERROR = 3,
    PC_LOG_OFF = 4,
};

/** Set the minimum level printed and the program name shown on each line. */
void pc_log_init(const char *progname, enum pc_log_level level);

/** Parse "debug|info|warn|error|off"; @return the level, or -1 if unknown. */
int pc_log_level_parse(const char *s);

/** Return nonzero when messages of @p level would be printed. */
int pc_log_enabled(enum pc_log_level level);

/** Print one line (a newline is added) tagged with @p tag (e.g. "redis"). */
void pc_log(enum pc_log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define pc_debug(tag, ...)                                                                         \
    do {                                                                                           \
        if (pc_log_enabled(PC_LOG_DEBUG))                                                          \
            pc_log(PC_LOG_DEBUG, tag, __VA_ARGS__);                                                \
    } while (0)
#define pc_info(tag, ...) pc_log(PC_LOG_INFO, tag, __VA_ARGS__)
#define pc_warn(tag, ...) pc_log(PC_LOG_WARN, tag, __VA_ARGS__)
#define pc_error(tag, ...) pc_log(PC_LOG_ERROR, tag, __VA_ARGS__)

#endif
