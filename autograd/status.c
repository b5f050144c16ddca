/* status.c: lb_errorf and status names. */
#include "autograd/status.h"

#include <stdarg.h>

lb_status lb_errorf(lb_error *err, lb_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = s;
    }
    return s;
}

const char *lb_status_str(lb_status s)
{
    switch (s) {
    case LB_OK: return "ok";
    case LB_ERR_ARG: return "invalid argument";
    case LB_ERR_IO: return "i/o error";
    case LB_ERR_FORMAT: return "bad format";
    case LB_ERR_SHAPE: return "shape mismatch";
    case LB_ERR_NOMEM: return "out of memory";
    case LB_ERR_NUMERIC: return "non-finite value";
    case LB_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}
