/* channel.c -- channel, event and prefix names, and the keys built from them.
 *
 * Names are refused, never rewritten: a rewritten name would silently merge
 * two channels ("a b" and "a_b") or split one.
 */
#include "pipecast/channel.h"

#include <stdio.h>
#include <string.h>

#include "pipecast/error.h"

/* how much of an invalid name pc_channel_explain shows before "..." */
#define EXPLAIN_SHOW_MAX 40

static int is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_channel_char(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
}

static int is_event_char(unsigned char c)
{
    return is_alnum(c) || c == '_' || c == '-';
}

int pc_channel_valid(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > PC_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_channel_char((unsigned char)name[i]))
            return 0;
    }
    return 1;
}

int pc_event_valid(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > PC_EVENT_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_event_char((unsigned char)name[i]))
            return 0;
    }
    return 1;
}

int pc_prefix_valid(const char *prefix)
{
    if (prefix == NULL)
        return 0;
    size_t len = strnlen(prefix, PC_PREFIX_MAX + 1);
    if (len == 0 || len > PC_PREFIX_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_channel_char((unsigned char)prefix[i]))
            return 0;
    }
    return 1;
}

void pc_channel_explain(const char *name, size_t len, char *buf, size_t buflen)
{
    /* worst case: every shown byte as \xHH, plus "..." */
    char shown[EXPLAIN_SHOW_MAX * 4 + 4];
    size_t o = 0;
    size_t show = len > EXPLAIN_SHOW_MAX ? EXPLAIN_SHOW_MAX : len;

    if (buf == NULL || buflen == 0)
        return;
    if (name == NULL)
        show = 0;
    for (size_t i = 0; i < show; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '"' || c == '\\') {
            shown[o++] = '\\';
            shown[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            static const char hex[] = "0123456789abcdef";
            shown[o++] = '\\';
            shown[o++] = 'x';
            shown[o++] = hex[c >> 4];
            shown[o++] = hex[c & 15];
        } else {
            shown[o++] = (char)c;
        }
    }
    if (show < len) {
        memcpy(shown + o, "...", 3);
        o += 3;
    }
    shown[o] = '\0';

    if (show < len)
        snprintf(buf, buflen,
                 "channel \"%s\" (%zu bytes): invalid name (allowed: 1-%d bytes of A-Z a-z 0-9 . _ "
                 ": @ -)",
                 shown, len, PC_CHANNEL_MAX);
    else
        snprintf(buf, buflen,
                 "channel \"%s\": invalid name (allowed: 1-%d bytes of A-Z a-z 0-9 . _ : @ -)",
                 shown, PC_CHANNEL_MAX);
}

int pc_key_channel(char *buf, size_t buflen, const char *prefix, const char *channel)
{
    if (!pc_prefix_valid(prefix) || channel == NULL)
        return PC_ENAME;
    size_t clen = strnlen(channel, PC_CHANNEL_MAX + 1);
    if (!pc_channel_valid(channel, clen))
        return PC_ENAME;
    size_t plen = strlen(prefix);
    size_t total = plen + 4 + clen;
    if (buf == NULL || total + 1 > buflen)
        return PC_ETOOBIG;
    memcpy(buf, prefix, plen);
    memcpy(buf + plen, ":ch:", 4);
    memcpy(buf + plen + 4, channel, clen);
    buf[total] = '\0';
    return (int)total;
}

const char *pc_key_channel_name(const char *key, const char *prefix)
{
    if (key == NULL || prefix == NULL)
        return NULL;
    size_t plen = strlen(prefix);
    if (strncmp(key, prefix, plen) != 0 || strncmp(key + plen, ":ch:", 4) != 0)
        return NULL;
    const char *name = key + plen + 4;
    if (!pc_channel_valid(name, strnlen(name, PC_CHANNEL_MAX + 1)))
        return NULL;
    return name;
}
