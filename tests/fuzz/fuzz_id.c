/* fuzz_id.c -- stream id parsing against an independent definition.
 *
 * Input: byte 0 bit 0 allows "<ms>" alone; the rest is split at the first
 * '|' into two candidate ids. Invariants:
 *   - parse succeeds exactly when the text is 1-20 digits [ "-" 1-20 digits ]
 *     (the second part optional only with allow_ms_only) and each part,
 *     compared as a decimal string, is <= 18446744073709551615;
 *   - format(parse(x)) is x without leading zeros; parse(format(id)) == id;
 *   - cmp is antisymmetric and agrees with the string comparison of the
 *     canonical forms by (length, text); next(id) > id unless id is the maximum.
 */
#include <stdint.h>
#include <string.h>

#include "pipecast/error.h"
#include "pipecast/id.h"

#include "fuzz_check.h"

static const char u64max[] = "18446744073709551615";

/* Is s[0..n) a valid part? Set canon to it without leading zeros. */
static int spec_part(const char *s, size_t n, char *canon)
{
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    while (n > 1 && *s == '0') {
        s++;
        n--;
    }
    if (n == 20 && memcmp(s, u64max, 20) > 0)
        return 0;
    memcpy(canon, s, n);
    canon[n] = '\0';
    return 1;
}

/* Numeric compare of canonical decimal strings. */
static int numcmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    int c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

struct spec {
    int valid;
    char ms[21], seq[21];
};

static struct spec spec_parse(const char *s, size_t n, int ms_only)
{
    struct spec r;
    memset(&r, 0, sizeof(r));
    const char *dash = memchr(s, '-', n);
    if (dash == NULL) {
        r.valid = ms_only && spec_part(s, n, r.ms);
        strcpy(r.seq, "0");
    } else {
        size_t a = (size_t)(dash - s);
        r.valid = spec_part(s, a, r.ms) && spec_part(dash + 1, n - a - 1, r.seq);
    }
    return r;
}

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

static void check_one(const char *s, size_t n, int ms_only, struct pc_id *id, int *ok)
{
    struct spec sp = spec_parse(s, n, ms_only);
    struct pc_id tmp = {12345, 678};
    int rc = pc_id_parse(s, n, ms_only, &tmp);
    CHECK((rc == 0) == sp.valid);
    CHECK(rc == 0 || rc == PC_EID);
    *ok = rc == 0;
    if (rc != 0) {
        CHECK(tmp.ms == 12345 && tmp.seq == 678);
        return;
    }
    char buf[PC_ID_STRLEN], want[PC_ID_STRLEN];
    int len = pc_id_format(&tmp, buf);
    strcpy(want, sp.ms);
    strcat(want, "-");
    strcat(want, sp.seq);
    CHECK(len == (int)strlen(want) && strcmp(buf, want) == 0);
    struct pc_id back;
    CHECK(pc_id_parse(buf, (size_t)len, 0, &back) == 0);
    CHECK(pc_id_cmp(&back, &tmp) == 0);

    struct pc_id nx;
    int max = tmp.ms == UINT64_MAX && tmp.seq == UINT64_MAX;
    CHECK((pc_id_next(&tmp, &nx) == 0) == !max);
    if (!max)
        CHECK(pc_id_cmp(&tmp, &nx) < 0 && pc_id_cmp(&nx, &tmp) > 0);
    CHECK(pc_id_is_zero(&tmp) == (strcmp(want, "0-0") == 0));
    *id = tmp;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    if (size < 1)
        return 0;
    int ms_only = buf[0] & 1;
    const char *s = (const char *)buf + 1;
    size_t n = size - 1;
    const char *bar = memchr(s, '|', n);
    size_t n1 = bar != NULL ? (size_t)(bar - s) : n;

    struct pc_id a = {0, 0}, b = {0, 0};
    int oka, okb = 0;
    check_one(s, n1, ms_only, &a, &oka);
    if (bar != NULL)
        check_one(bar + 1, n - n1 - 1, ms_only, &b, &okb);
    if (oka && okb) {
        int c = pc_id_cmp(&a, &b);
        CHECK(sign(c) == -sign(pc_id_cmp(&b, &a)));
        char fa[PC_ID_STRLEN], fb[PC_ID_STRLEN];
        pc_id_format(&a, fa);
        pc_id_format(&b, fb);
        char *da = strchr(fa, '-'), *db = strchr(fb, '-');
        *da = *db = '\0';
        int want = numcmp(fa, fb);
        if (want == 0)
            want = numcmp(da + 1, db + 1);
        CHECK(sign(c) == want);
    }
    return 0;
}
