/* id.h -- Redis stream ids ("<ms>-<seq>"), parsed, compared and printed.
 *
 * Both parts are unsigned 64-bit decimals. Parsing is strict: no sign, no
 * spaces, no leading '+', at most 20 digits per part and no overflow.
 */
#ifndef PC_ID_H
#define PC_ID_H

#include <stddef.h>
#include <stdint.h>

struct pc_id {
    uint64_t ms;
    uint64_t seq;
};

/* "18446744073709551615-18446744073709551615" plus NUL */
#define PC_ID_STRLEN 42

/**
 * Parse @p len bytes at @p s as "<ms>-<seq>", or as "<ms>" alone when
 * @p allow_ms_only is nonzero (seq is then 0).
 * @return 0, or PC_EID when the text is not a valid id.
 */
int pc_id_parse(const char *s, size_t len, int allow_ms_only, struct pc_id *out);

/** @return <0, 0, >0 as a is before, equal to, after b. */
int pc_id_cmp(const struct pc_id *a, const struct pc_id *b);

/** Write "<ms>-<seq>" into @p buf (at least PC_ID_STRLEN bytes); @return length. */
int pc_id_format(const struct pc_id *id, char *buf);

/** Set @p out to the id right after @p id; @return PC_EID if id is the maximum. */
int pc_id_next(const struct pc_id *id, struct pc_id *out);

/** @return nonzero when @p id is 0-0 (before every entry). */
int pc_id_is_zero(const struct pc_id *id);

#endif
