/* channel.h -- channel and event names, and the Redis key names built from them.
 *
 * Channel names: 1-200 bytes of [A-Za-z0-9._:@-]. Event names: 1-64 bytes of
 * [A-Za-z0-9_-]. Invalid names are refused, never rewritten.
 */
#ifndef PC_CHANNEL_H
#define PC_CHANNEL_H

#include <stddef.h>

#define PC_CHANNEL_MAX 200
#define PC_EVENT_MAX 64
#define PC_PREFIX_MAX 64
#define PC_PREFIX_DEFAULT "pc"
/* the longest key: prefix ":ch:" channel NUL */
#define PC_KEY_MAX (PC_PREFIX_MAX + 4 + PC_CHANNEL_MAX + 1)

/** @return 1 when @p len bytes at @p name form a valid channel name, else 0. */
int pc_channel_valid(const char *name, size_t len);

/** @return 1 when @p len bytes at @p name form a valid event name, else 0. */
int pc_event_valid(const char *name, size_t len);

/** @return 1 when @p prefix is a valid key prefix (1-64 bytes, same alphabet as channels). */
int pc_prefix_valid(const char *prefix);

/**
 * Write a message explaining why @p name is not a valid channel name, e.g.
 * `channel "a b": invalid name (allowed: 1-200 bytes of A-Z a-z 0-9 . _ : @ -)`.
 * Non-printable bytes are shown as \xHH and long names are shortened.
 */
void pc_channel_explain(const char *name, size_t len, char *buf, size_t buflen);

/**
 * Write the stream key of @p channel ("<prefix>:ch:<channel>") into @p buf.
 * @return the length, or PC_ENAME if the channel or prefix is invalid, or
 * PC_ETOOBIG if @p buflen is too small.
 */
int pc_key_channel(char *buf, size_t buflen, const char *prefix, const char *channel);

/**
 * Recover the channel name from a stream key: @return a pointer into @p key
 * after "<prefix>:ch:", or NULL if @p key does not have that form.
 */
const char *pc_key_channel_name(const char *key, const char *prefix);

#endif
