/* status.h: status codes and error messages shared by every lowbit module.
 *
 * Anything that comes from outside (files, flags, data) is reported by returning an
 * lb_status and formatting a message into the caller's lb_error. Bugs in our own code
 * use LB_ASSERT, which is always on. The library never calls exit().
 *
 *     lb_error err = {0};
 *     if (lb_idx_load(path, &img, &err) != LB_OK) fprintf(stderr, "%s\n", err.msg);
 */
#ifndef LB_STATUS_H
#define LB_STATUS_H

#include <stdio.h>
#include <stdlib.h>

typedef enum lb_status {
    LB_OK = 0,
    LB_ERR_ARG,     /* invalid argument value                        */
    LB_ERR_IO,      /* open/read/write failed (message has strerror) */
    LB_ERR_FORMAT,  /* file exists but its content is malformed      */
    LB_ERR_SHAPE,   /* incompatible tensor shapes                    */
    LB_ERR_NOMEM,   /* out of memory, or an arena exhausted          */
    LB_ERR_NUMERIC, /* NaN/Inf where a finite value is required      */
    LB_ERR_INTERRUPTED, /* stopped by a signal; state was saved       */
} lb_status;

typedef struct lb_error {
    lb_status status;
    char      msg[512];
} lb_error;

/* Formats the message into err (if non-NULL), sets err->status and returns s, so that
 * callers can write `return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));`. */
lb_status lb_errorf(lb_error *err, lb_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Short constant name of a status ("ok", "io error", ...). Never NULL. */
const char *lb_status_str(lb_status s);

/* Always-on assertion for internal invariants (never for input validation). */
#define LB_ASSERT(cond)                                                                 \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: LB_ASSERT(%s) failed\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

#endif
