/* cifar.c: the official CIFAR-10 binary batches (cifar-10-batches-bin).
 *
 * Each file is a sequence of 3073-byte records: one label byte (0..9), then the 32x32 image
 * as 1024 red, 1024 green and 1024 blue bytes, rows top to bottom, which is already the
 * planar (c, h, w) layout of lb_dataset. Every file's size is checked first, so the buffer
 * is allocated once at its final size. Streaming keeps one descriptor per file (five for the
 * training split) rather than copying the records into one file: the files are read where
 * they are, and lb_dataset_pixels picks the file by sample index (offset 1, stride 3073).
 * Either way every file is read once at load, in 256-record chunks, to check its labels.
 * It does not find the folder (find.c does).
 */
#define _XOPEN_SOURCE 700 /* pread */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets_impl.h"

#define CIFAR_RECORD 3073
#define CIFAR_PIXELS 3072
#define CIFAR_CHUNK  256 /* records read at a time (768 KiB) */

static const char *const cifar_classes[10] = { "airplane", "automobile", "bird", "cat", "deer",
                                               "dog", "frog", "horse", "ship", "truck" };

/* Reads exactly len bytes at offset off of fd; false on an error or end of file. */
static bool read_at(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        const ssize_t r = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

lb_status lb_cifar10_bin_load(const char *dir, lb_split split, bool stream, lb_dataset *ds,
                              lb_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (split != LB_SPLIT_TRAIN && split != LB_SPLIT_TEST)
        return lb_errorf(err, LB_ERR_ARG, "%s: bad split %d", dir, (int)split);
    const int n_files = split == LB_SPLIT_TRAIN ? 5 : 1;
    char      paths[5][4200];
    int64_t   counts[5], n = 0;
    for (int f = 0; f < n_files; f++) {
        if (split == LB_SPLIT_TRAIN)
            snprintf(paths[f], sizeof paths[f], "%s/data_batch_%d.bin", dir, f + 1);
        else
            snprintf(paths[f], sizeof paths[f], "%s/test_batch.bin", dir);
        struct stat sb;
        if (stat(paths[f], &sb) != 0)
            return lb_errorf(err, LB_ERR_IO, "%s: cannot open: %s", paths[f], strerror(errno));
        if (sb.st_size <= 0)
            return lb_errorf(err, LB_ERR_FORMAT, "%s: empty file (expected 3073-byte records)",
                             paths[f]);
        if (sb.st_size % CIFAR_RECORD)
            return lb_errorf(err, LB_ERR_FORMAT, "%s: %lld bytes is not a whole number of "
                             "3073-byte records (truncated?)", paths[f], (long long)sb.st_size);
        counts[f] = (int64_t)(sb.st_size / CIFAR_RECORD);
        n += counts[f];
    }
    if ((uint64_t)n > SIZE_MAX / CIFAR_PIXELS / 2)
        return lb_errorf(err, LB_ERR_NOMEM, "%s: %" PRId64 " records: too many", dir, n);
    ds->images      = stream ? NULL : malloc((size_t)n * CIFAR_PIXELS);
    ds->labels      = malloc((size_t)n * sizeof *ds->labels);
    ds->class_names = calloc(10, LB_CLASS_NAME_MAX);
    uint8_t  *buf   = malloc((size_t)CIFAR_CHUNK * CIFAR_RECORD);
    lb_status st    = LB_OK;
    if ((!stream && !ds->images) || !ds->labels || !ds->class_names || !buf) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory for %" PRId64 " images", dir, n);
        goto fail;
    }
    int64_t i = 0;
    for (int f = 0; f < n_files; f++) {
        const int fd = lb__stream_open(paths[f], err);
        if (fd < 0) {
            st = err ? err->status : LB_ERR_IO;
            goto fail;
        }
        const int64_t first = i;
        for (int64_t r0 = 0; r0 < counts[f]; r0 += CIFAR_CHUNK) {
            const int64_t k = counts[f] - r0 < CIFAR_CHUNK ? counts[f] - r0 : CIFAR_CHUNK;
            errno = 0; /* stays 0 when the file ends early */
            if (!read_at(fd, buf, (size_t)k * CIFAR_RECORD, (uint64_t)r0 * CIFAR_RECORD)) {
                st = lb_errorf(err, LB_ERR_IO, "%s: read failed at record %" PRId64 "%s%s",
                               paths[f], r0, errno ? ": " : " (file shrank?)",
                               errno ? strerror(errno) : "");
                close(fd);
                goto fail;
            }
            for (int64_t r = 0; r < k; r++, i++) {
                const uint8_t *rec = buf + (size_t)r * CIFAR_RECORD;
                if (rec[0] > 9) {
                    st = lb_errorf(err, LB_ERR_FORMAT, "%s: record %" PRId64 " has label %d "
                                   "(expected 0..9)", paths[f], r0 + r, rec[0]);
                    close(fd);
                    goto fail;
                }
                ds->labels[i] = rec[0];
                if (!stream) memcpy(ds->images + (size_t)i * CIFAR_PIXELS, rec + 1, CIFAR_PIXELS);
            }
        }
        if (!stream) close(fd);
        else if ((st = lb__stream_add(ds, fd, paths[f], first, counts[f], 1, CIFAR_RECORD,
                                      CIFAR_PIXELS, err)))
            goto fail;
    }
    free(buf);
    buf = NULL;
    ds->n = n, ds->c = 3, ds->h = 32, ds->w = 32, ds->n_classes = 10;
    for (int k = 0; k < 10; k++)
        snprintf(ds->class_names + k * LB_CLASS_NAME_MAX, LB_CLASS_NAME_MAX, "%s",
                 cifar_classes[k]);
    snprintf(ds->name, sizeof ds->name, "cifar10");
    snprintf(ds->source, sizeof ds->source, "%s", dir);
    static const float mean[3] = { 0.4914f, 0.4822f, 0.4465f };
    static const float sd[3]   = { 0.2470f, 0.2435f, 0.2616f };
    memcpy(ds->mean, mean, sizeof mean);
    memcpy(ds->std, sd, sizeof sd);
    return LB_OK;
fail:
    free(buf);
    lb_dataset_free(ds);
    memset(ds, 0, sizeof *ds);
    return st;
}
