/* splitter.h -- turns a byte stream into lines, with a hard maximum length.
 *
 * Bytes fed in come out through a callback, one call per entry:
 *   - a complete line: the bytes before '\n' (one trailing '\r' removed), partial = 0;
 *   - a chunk of a line longer than max_line: partial = 1; the next entry continues it;
 *     the cut never falls inside a UTF-8 sequence, so a chunk may be up to 3 bytes short;
 *   - on pc_splitter_flush() (the caller's idle timer): the pending fragment with partial = 1,
 *     keeping back at most 3 bytes of an unfinished UTF-8 sequence;
 *   - on pc_splitter_finish() (EOF): the pending fragment, if any, with partial = 0.
 * No byte is ever dropped: NUL bytes and invalid UTF-8 pass through unchanged.
 * Memory: the splitter holds at most max_line bytes.
 *
 * A line that was flushed partially and then completed ends with an entry
 * whose partial = 0 (possibly empty: a lone "\n" after a flushed prompt).
 */
#ifndef PC_SPLITTER_H
#define PC_SPLITTER_H

#include <stddef.h>

#define PC_LINE_MAX_DEFAULT (64 * 1024)
#define PC_LINE_MAX_MIN 16

/**
 * Called for each entry. @p data is valid only during the call. Return 0 to
 * continue or a negative PC_E* code to stop: feed/flush/finish then return it.
 */
typedef int (*pc_split_cb)(void *privdata, const char *data, size_t len, int partial);

struct pc_splitter;

/**
 * @return a new splitter (owned by the caller; free with pc_splitter_free), or
 * NULL when out of memory, @p cb is NULL or @p max_line < PC_LINE_MAX_MIN.
 */
struct pc_splitter *pc_splitter_new(size_t max_line, pc_split_cb cb, void *privdata);

void pc_splitter_free(struct pc_splitter *sp);

/**
 * Feed @p len bytes. @return 0 or the first error a callback returned. After
 * an error the rest of @p data is not processed (the entry whose callback
 * failed counts as emitted); the caller should stop and free the splitter.
 */
int pc_splitter_feed(struct pc_splitter *sp, const char *data, size_t len);

/** Emit the pending fragment as partial (idle flush). No-op when nothing is pending. */
int pc_splitter_flush(struct pc_splitter *sp);

/**
 * End of input: emit what is pending as a final, non-partial entry. (A full
 * line followed by a held '\r' comes out as a partial chunk, then "\r".)
 */
int pc_splitter_finish(struct pc_splitter *sp);

/**
 * Bytes currently held (not yet emitted): at most max_line, or max_line + 1
 * when a full line is followed by a '\r' whose next byte is not known yet
 * (that '\r' is kept as a flag, not in the buffer).
 */
size_t pc_splitter_pending(const struct pc_splitter *sp);

#endif
