/* id.c -- Redis stream ids: strict parsing, comparison, formatting. */
#include "pipecast/id.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pipecast/error.h"

#define ID_PART_DIGITS_MAX 20

/*
 * Parse 1-20 ASCII digits at @p s into @p out. Anything else (empty, a sign,
 * a space, a 21st digit, a value above UINT64_MAX) is refused: ids come from
 * clients (Last-Event-ID) and must never be "repaired" into another id.
 */
static int id_parse_part(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > ID_PART_DIGITS_MAX)
        return PC_EID;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return PC_EID;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return PC_EID;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int pc_id_parse(const char *s, size_t len, int allow_ms_only, struct pc_id *out)
{
    struct pc_id id;

    if (s == NULL || out == NULL)
        return PC_EID;
    const char *dash = memchr(s, '-', len);
    if (dash == NULL) {
        if (!allow_ms_only || id_parse_part(s, len, &id.ms) != 0)
            return PC_EID;
        id.seq = 0;
    } else {
        size_t mslen = (size_t)(dash - s);
        if (id_parse_part(s, mslen, &id.ms) != 0 ||
            id_parse_part(dash + 1, len - mslen - 1, &id.seq) != 0)
            return PC_EID;
    }
    *out = id;
    return 0;
}

int pc_id_cmp(const struct pc_id *a, const struct pc_id *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

int pc_id_format(const struct pc_id *id, char *buf)
{
    return snprintf(buf, PC_ID_STRLEN, "%" PRIu64 "-%" PRIu64, id->ms, id->seq);
}

int pc_id_next(const struct pc_id *id, struct pc_id *out)
{
    struct pc_id n = *id; /* out may alias id */

    if (n.seq < UINT64_MAX) {
        n.seq++;
    } else if (n.ms < UINT64_MAX) {
        n.ms++;
        n.seq = 0;
    } else {
        return PC_EID;
    }
    *out = n;
    return 0;
}

int pc_id_is_zero(const struct pc_id *id)
{
    return id->ms == 0 && id->seq == 0;
}
