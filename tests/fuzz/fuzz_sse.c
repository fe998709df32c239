/* fuzz_sse.c -- SSE encoding, checked by decoding it the way a browser does.
 *
 * Input: byte 0 holds flags (id present, event present, buffer cap test),
 * then up to 15 bytes of id and 15 of event text (lengths from byte 1), the
 * rest is the payload. Invariants:
 *   - id/event with CR or LF: PC_EINVAL, buffer unchanged;
 *   - otherwise: output is valid UTF-8, has no CR, ends with "\n\n", and an
 *     EventSource-style parse of it gives back the id, the event name and
 *     the payload with line ends turned into "\n" and invalid UTF-8 replaced
 *     exactly as an independent WHATWG decoder replaces it;
 *   - a cap one byte too small: PC_ETOOBIG and the buffer unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/buf.h"
#include "pipecast/error.h"
#include "pipecast/sse.h"
#include "pipecast/utf8.h"

#include "fuzz_check.h"

/* The WHATWG Encoding Standard's UTF-8 decoder, written from the spec text;
 * deliberately not sharing code with utf8.c. Output re-encoded as UTF-8. */
static size_t whatwg_decode(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    uint32_t cp = 0;
    int needed = 0, seen = 0;
    unsigned lower = 0x80, upper = 0xBF;

    for (size_t i = 0; i < n; i++) {
        unsigned b = s[i];
        if (needed == 0) {
            if (b <= 0x7F) {
                out[o++] = (unsigned char)b;
            } else if (b >= 0xC2 && b <= 0xDF) {
                needed = 1;
                cp = b & 0x1F;
            } else if (b >= 0xE0 && b <= 0xEF) {
                if (b == 0xE0)
                    lower = 0xA0;
                if (b == 0xED)
                    upper = 0x9F;
                needed = 2;
                cp = b & 0xF;
            } else if (b >= 0xF0 && b <= 0xF4) {
                if (b == 0xF0)
                    lower = 0x90;
                if (b == 0xF4)
                    upper = 0x8F;
                needed = 3;
                cp = b & 0x7;
            } else {
                memcpy(out + o, "\xEF\xBF\xBD", 3);
                o += 3;
            }
            continue;
        }
        if (b < lower || b > upper) {
            cp = 0;
            needed = seen = 0;
            lower = 0x80;
            upper = 0xBF;
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i--; /* the byte is processed again */
            continue;
        }
        lower = 0x80;
        upper = 0xBF;
        cp = (cp << 6) | (b & 0x3F);
        if (++seen != needed)
            continue;
        if (cp < 0x800) {
            out[o++] = (unsigned char)(0xC0 | (cp >> 6));
            out[o++] = (unsigned char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[o++] = (unsigned char)(0xE0 | (cp >> 12));
            out[o++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (unsigned char)(0x80 | (cp & 0x3F));
        } else {
            out[o++] = (unsigned char)(0xF0 | (cp >> 18));
            out[o++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            out[o++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (unsigned char)(0x80 | (cp & 0x3F));
        }
        cp = 0;
        needed = seen = 0;
    }
    if (needed != 0) {
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
    }
    return o;
}

/* The payload as EventSource will deliver it: line ends -> "\n", then decoded. */
static size_t expected_data(const unsigned char *s, size_t n, unsigned char *out)
{
    unsigned char *tmp = malloc(n + 1);
    size_t t = 0;
    CHECK(tmp != NULL);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            tmp[t++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n')
                i++;
        } else {
            tmp[t++] = s[i];
        }
    }
    size_t o = whatwg_decode(tmp, t, out);
    free(tmp);
    return o;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* An EventSource parser (WHATWG "interpret an event stream") for one event. */
static void parse_event(const char *s, size_t n, const char *want_id, const char *want_event,
                        const unsigned char *want_data, size_t want_len)
{
    unsigned char *data = malloc(n + 1);
    size_t d = 0;
    int got_id = 0, got_event = 0, ndata = 0, dispatched = 0;
    size_t i = 0;
    CHECK(data != NULL);
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        CHECK(nl != NULL); /* every line is terminated */
        size_t len = (size_t)(nl - (s + i));
        const char *line = s + i;
        i += len + 1;
        if (len == 0) {
            CHECK(i == n); /* the blank line is the last one */
            dispatched = 1;
            break;
        }
        const char *colon = memchr(line, ':', len);
        CHECK(colon != NULL && colon != line); /* no comments, no bare names */
        size_t flen = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vlen = len - flen - 1;
        if (vlen > 0 && *v == ' ') {
            v++;
            vlen--;
        }
        if (flen == 2 && memcmp(line, "id", 2) == 0) {
            CHECK(want_id != NULL && !got_id && ndata == 0);
            CHECK(vlen == strlen(want_id) && memcmp(v, want_id, vlen) == 0);
            got_id = 1;
        } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
            CHECK(want_event != NULL && !got_event && ndata == 0);
            CHECK(vlen == strlen(want_event) && memcmp(v, want_event, vlen) == 0);
            got_event = 1;
        } else {
            CHECK(flen == 4 && memcmp(line, "data", 4) == 0);
            if (ndata++ > 0)
                data[d++] = '\n';
            memcpy(data + d, v, vlen);
            d += vlen;
        }
    }
    CHECK(dispatched);
    CHECK(got_id == (want_id != NULL));
    CHECK(got_event == (want_event != NULL));
    CHECK(ndata >= 1);
    CHECK(d == want_len && memcmp(data, want_data, d) == 0);
    free(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    if (size < 2)
        return 0;
    unsigned flags = buf[0];
    size_t idlen = buf[1] & 15, evlen = buf[1] >> 4;
    buf += 2;
    size = size - 2;
    if (idlen + evlen > size)
        return 0;
    char id[16], event[16];
    memcpy(id, buf, idlen);
    id[idlen] = '\0';
    memcpy(event, buf + idlen, evlen);
    event[evlen] = '\0';
    const unsigned char *payload = buf + idlen + evlen;
    size_t n = size - idlen - evlen;
    /* the strings end at their first NUL, as C strings do */
    const char *pid = (flags & 1) ? id : NULL;
    const char *pev = (flags & 2) ? event : NULL;

    struct pc_buf out;
    pc_buf_init(&out, 16 * n + 256);
    CHECK(pc_buf_append_str(&out, "prefix") == 0);
    int rc = pc_sse_event(&out, pid, pev, (const char *)payload, n);
    if ((pid && has_crlf(pid)) || (pev && has_crlf(pev))) {
        CHECK(rc == PC_EINVAL);
        CHECK(out.len == 6 && memcmp(out.data, "prefix", 7) == 0);
        pc_buf_free(&out);
        return 0;
    }
    CHECK(rc == 0);
    const char *ev = out.data + 6;
    size_t evn = out.len - 6;
    CHECK(pc_utf8_valid((const unsigned char *)ev, evn));
    CHECK(memchr(ev, '\r', evn) == NULL);
    CHECK(evn >= 2 && memcmp(ev + evn - 2, "\n\n", 2) == 0);

    /* the id and event as they should come out (sanitised) */
    unsigned char want_id[64], want_ev[64];
    char sid[64], sev[64];
    if (pid) {
        size_t k = whatwg_decode((const unsigned char *)pid, strlen(pid), want_id);
        memcpy(sid, want_id, k);
        sid[k] = '\0';
    }
    if (pev) {
        size_t k = whatwg_decode((const unsigned char *)pev, strlen(pev), want_ev);
        memcpy(sev, want_ev, k);
        sev[k] = '\0';
    }
    unsigned char *want = malloc(3 * n + 1);
    CHECK(want != NULL);
    size_t wn = expected_data(payload, n, want);
    /* "id: " + value: the parser strips exactly that one space, so a value
     * that starts with a space comes back whole */
    parse_event(ev, evn, pid ? sid : NULL, pev ? sev : NULL, want, wn);
    free(want);

    /* too small by one byte: refused whole */
    if (flags & 4) {
        struct pc_buf small;
        pc_buf_init(&small, out.len - 1);
        CHECK(pc_buf_append_str(&small, "prefix") == 0);
        CHECK(pc_sse_event(&small, pid, pev, (const char *)payload, n) == PC_ETOOBIG);
        CHECK(small.len == 6 && memcmp(small.data, "prefix", 7) == 0);
        pc_buf_free(&small);
    }

    /* sanitize on its own agrees with the reference decoder */
    struct pc_buf s;
    pc_buf_init(&s, 3 * n + 16);
    CHECK(pc_utf8_sanitize_append(&s, (const char *)payload, n) == 0);
    unsigned char *ref = malloc(3 * n + 1);
    CHECK(ref != NULL);
    size_t rn = whatwg_decode(payload, n, ref);
    CHECK(s.len == rn && (rn == 0 || memcmp(s.data, ref, rn) == 0));
    if (pc_utf8_valid(payload, n))
        CHECK(rn == n && (n == 0 || memcmp(ref, payload, n) == 0));
    free(ref);
    pc_buf_free(&s);
    pc_buf_free(&out);
    return 0;
}
