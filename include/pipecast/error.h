/* error.h -- error codes shared by every pipecast module.
 *
 * Functions return 0 on success or a negative PC_E* code; pc_strerror()
 * turns a code into a short human-readable text. Long-lived contexts also
 * keep an errstr with the details (which name, which host, why).
 */
#ifndef PC_ERROR_H
#define PC_ERROR_H

enum pc_error {
    PC_OK = 0,
    PC_ENOMEM = -1,   /* allocation failed */
    PC_EINVAL = -2,   /* invalid argument */
    PC_ENAME = -3,    /* invalid channel or event name */
    PC_EURL = -4,     /* malformed Redis URL */
    PC_EID = -5,      /* malformed stream id */
    PC_ETOOBIG = -6,  /* a bounded buffer would exceed its maximum */
    PC_EREDIS = -7,   /* Redis connection or protocol error */
    PC_EAUTH = -8,    /* Redis AUTH or SELECT refused */
    PC_ETIMEOUT = -9, /* an operation timed out */
    PC_EIO = -10,     /* read/write error on a file descriptor */
    PC_ECLOSED = -11, /* peer closed the connection */
    PC_EPROTO = -12,  /* unexpected reply or data shape */
};

/**
 * Return a static, human-readable description of @p code (never NULL).
 * Unknown codes give "unknown error".
 */
const char *pc_strerror(int code);

#endif
