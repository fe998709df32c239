/* error.c -- texts for the PC_E* codes. */
#include "pipecast/error.h"

const char *pc_strerror(int code)
{
    switch (code) {
    case PC_OK:
        return "success";
    case PC_ENOMEM:
        return "out of memory";
    case PC_EINVAL:
        return "invalid argument";
    case PC_ENAME:
        return "invalid name";
    case PC_EURL:
        return "malformed Redis URL";
    case PC_EID:
        return "malformed stream id";
    case PC_ETOOBIG:
        return "too big";
    case PC_EREDIS:
        return "Redis error";
    case PC_EAUTH:
        return "Redis AUTH or SELECT refused";
    case PC_ETIMEOUT:
        return "timed out";
    case PC_EIO:
        return "I/O error";
    case PC_ECLOSED:
        return "connection closed by peer";
    case PC_EPROTO:
        return "protocol error";
    }
    return "unknown error";
}
