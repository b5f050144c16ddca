/* fileio.h: reading a whole (bounded) file, the one way every lowbit loader of small files
 * does it: regular files only, the size checked against a limit before anything is
 * allocated, short reads reported, and a terminating NUL added so text can be parsed.
 *
 *     char *text; size_t n;
 *     if (lb_read_file(path, 1 << 20, "a model description", &text, &n, &err)) return err.status;
 *     ... free(text);
 */
#ifndef LB_FILEIO_H
#define LB_FILEIO_H

#include <stddef.h>

#include "autograd/status.h"

/* Reads path into a malloc'd buffer of *n + 1 bytes (the last one 0). what names the kind of
 * file in the message when it is larger than max_bytes ("<path>: 3000000 bytes; a model
 * description is at most 1048576"). LB_ERR_IO for a missing or unreadable file,
 * LB_ERR_FORMAT for a size outside [0, max_bytes], LB_ERR_NOMEM. On error *buf is NULL. */
lb_status lb_read_file(const char *path, size_t max_bytes, const char *what, char **buf,
                       size_t *n, lb_error *err);
/* lb_read_file for text: also rejects a NUL byte inside the file (LB_ERR_FORMAT). */
lb_status lb_read_text_file(const char *path, size_t max_bytes, const char *what, char **buf,
                            lb_error *err);

#endif
