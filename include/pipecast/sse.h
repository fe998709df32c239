/* sse.h -- Server-Sent Events encoding.
 *
 * One stream entry becomes:
 *
 *   id: 1700000000000-0\n
 *   event: stderr\n          (only when an event name is given)
 *   data: first line\n       (one data: line per line of the payload)
 *   data: second line\n
 *   \n
 *
 * The payload is split at "\r\n", "\n" and "\r" (the three SSE line ends), so
 * a browser's EventSource rebuilds it with "\n" between lines. Invalid UTF-8
 * is replaced by U+FFFD (one per maximal invalid subpart); output is always
 * valid UTF-8. An empty payload gives a single "data:" line.
 */
#ifndef PC_SSE_H
#define PC_SSE_H

#include <stddef.h>

#include "buf.h"

/**
 * Append one event to @p out. @p id and @p event may be NULL. @p id and
 * @p event must not contain CR or LF (PC_EINVAL otherwise).
 * @return 0, PC_EINVAL, PC_ETOOBIG or PC_ENOMEM (out is unchanged on error).
 */
int pc_sse_event(struct pc_buf *out, const char *id, const char *event, const char *data,
                 size_t len);

/** Append a "retry: <ms>" field followed by a blank line. */
int pc_sse_retry(struct pc_buf *out, unsigned ms);

/** Append a comment line ": <text>\n\n" (text must not contain CR or LF). */
int pc_sse_comment(struct pc_buf *out, const char *text);

/**
 * Append @p len bytes as valid UTF-8 (invalid sequences become U+FFFD),
 * without any SSE framing. Used for JSON and for the data lines.
 */
int pc_utf8_sanitize_append(struct pc_buf *out, const char *s, size_t len);

#endif
