/* fileio.c: lb_read_file and lb_read_text_file. */
#include "autograd/fileio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

lb_status lb_read_file(const char *path, size_t max_bytes, const char *what, char **buf,
                       size_t *n, lb_error *err)
{
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    lb_status st = LB_OK;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = lb_errorf(err, LB_ERR_IO, "%s: not a regular file", path);
    } else if (sb.st_size < 0 || (unsigned long long)sb.st_size > max_bytes) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: %lld bytes; %s is at most %zu", path,
                       (long long)sb.st_size, what, max_bytes);
    } else if (!(*buf = malloc((size_t)sb.st_size + 1))) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory for %lld bytes", path,
                       (long long)sb.st_size);
    } else if (fread(*buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        st = lb_errorf(err, LB_ERR_IO, "%s: short read", path);
        free(*buf);
        *buf = NULL;
    } else {
        (*buf)[sb.st_size] = 0;
        *n = (size_t)sb.st_size;
    }
    fclose(f);
    return st;
}

lb_status lb_read_text_file(const char *path, size_t max_bytes, const char *what, char **buf,
                            lb_error *err)
{
    size_t n;
    lb_status st = lb_read_file(path, max_bytes, what, buf, &n, err);
    if (st) return st;
    if (strlen(*buf) != n) {
        free(*buf);
        *buf = NULL;
        return lb_errorf(err, LB_ERR_FORMAT, "%s: contains a NUL byte; not a text file", path);
    }
    return LB_OK;
}
