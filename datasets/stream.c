/* stream.c: reading one sample of a dataset, from memory or from its file (streaming mode),
 * and freeing a dataset.
 *
 * A streaming dataset keeps its labels in memory and one open descriptor per pixel file
 * (ds->files); the pixels of a sample are read with pread at an explicit offset, so any
 * number of threads may read at once through the same descriptors, each into its own buffer,
 * and nothing is allocated per sample. The pixels then live in the kernel's page cache, which
 * the kernel can drop, not in the process. A short read (the file was cut after it was
 * opened) or an I/O error is an LB_ERR_IO naming the file, never a crash. The loaders that
 * set up ds->files are cache.c (the decoded cache) and cifar.c (the binary batches).
 */
#define _XOPEN_SOURCE 700 /* pread */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets_impl.h"

void lb_dataset_free(lb_dataset *ds)
{
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    free(ds->class_names);
    for (int k = 0; k < ds->n_files; k++)
        if (ds->files[k].fd >= 0) close(ds->files[k].fd);
    free(ds->files);
    ds->images      = NULL;
    ds->labels      = NULL;
    ds->class_names = NULL;
    ds->files       = NULL;
    ds->n_files     = 0;
    ds->n           = 0;
}

bool lb_dataset_streams(const lb_dataset *ds)
{
    return ds && !ds->images && ds->n_files > 0;
}

int lb__stream_open(const char *path, lb_error *err)
{
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) lb_errorf(err, LB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return fd;
}

lb_status lb__stream_add(lb_dataset *ds, int fd, const char *path, int64_t first, int64_t count,
                         uint64_t offset, uint64_t stride, uint64_t sample_bytes, lb_error *err)
{
    if (first < 0 || count < 1 || sample_bytes < 1 || stride < sample_bytes ||
        strlen(path) >= sizeof ds->files[0].path) {
        close(fd);
        return lb_errorf(err, LB_ERR_ARG, "%.200s: bad streaming layout (samples %" PRId64 "+%"
                         PRId64 ", stride %" PRIu64 ", %" PRIu64 " bytes each) or path too long",
                         path, first, count, stride, sample_bytes);
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        const int e = errno;
        close(fd);
        return lb_errorf(err, LB_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    /* the end of the last sample, overflow-checked, against the file's size */
    const uint64_t last = (uint64_t)(count - 1);
    if (last > (UINT64_MAX - offset - sample_bytes) / stride ||
        (uint64_t)sb.st_size < offset + last * stride + sample_bytes) {
        close(fd);
        return lb_errorf(err, LB_ERR_FORMAT, "%s: %lld bytes is too short for %" PRId64
                         " samples of %" PRIu64 " bytes (truncated?)", path,
                         (long long)sb.st_size, count, sample_bytes);
    }
    lb_dataset_file *files = realloc(ds->files, (size_t)(ds->n_files + 1) * sizeof *files);
    if (!files) {
        close(fd);
        return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path);
    }
    ds->files = files;
    lb_dataset_file *f = &files[ds->n_files++];
    f->fd = fd, f->first = first, f->count = count, f->offset = offset, f->stride = stride;
    snprintf(f->path, sizeof f->path, "%s", path);
    return LB_OK;
}

const uint8_t *lb_dataset_pixels(const lb_dataset *ds, int64_t i, uint8_t *scratch,
                                 lb_error *err)
{
    LB_ASSERT(ds && i >= 0 && i < ds->n && ds->c >= 1 && ds->c <= 3);
    const size_t chw = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    if (ds->images) return ds->images + (size_t)i * chw;
    LB_ASSERT(ds->n_files > 0 && scratch);
    const int64_t          j = ds->file_base + i;
    const lb_dataset_file *f = NULL;
    for (int k = 0; k < ds->n_files && !f; k++)
        if (j >= ds->files[k].first && j < ds->files[k].first + ds->files[k].count)
            f = &ds->files[k];
    LB_ASSERT(f); /* the loaders cover samples 0 .. n-1 */
    const uint64_t off = f->offset + (uint64_t)(j - f->first) * f->stride;
    size_t         got = 0;
    while (got < chw) {
        const ssize_t r = pread(f->fd, scratch + got, chw - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            lb_errorf(err, LB_ERR_IO, "%s: cannot read sample %" PRId64 " (offset %" PRIu64
                      "): %s", f->path, j, off, strerror(errno));
            return NULL;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got < chw) {
        lb_errorf(err, LB_ERR_IO, "%s: short read of sample %" PRId64 " (%zu of %zu bytes at "
                  "offset %" PRIu64 "): the file was truncated or replaced after it was opened; "
                  "hint: load the dataset again (or use --data-in-memory)", f->path, j, got, chw,
                  off);
        return NULL;
    }
    return scratch;
}

lb_status lb_dataset_get(const lb_dataset *ds, int64_t i, float *out, lb_error *err)
{
    LB_ASSERT(ds && i >= 0 && i < ds->n && ds->c >= 1 && ds->c <= 3);
    const int64_t hw = (int64_t)ds->h * ds->w, chw = ds->c * hw;
    /* Streaming: out doubles as the read buffer. The bytes go to its last quarter, bytes
     * 3*chw .. 4*chw-1; converting k = 0, 1, ... writes bytes 4k .. 4k+3, which stay below
     * 3*chw + k + 1 (the next byte to convert) for every k < chw. */
    const uint8_t *pix = lb_dataset_pixels(ds, i, (uint8_t *)out + 3 * chw, err);
    if (!pix) return err ? err->status : LB_ERR_IO;
    for (int ch = 0; ch < ds->c; ch++) {
        const float mean = ds->mean[ch], std = ds->std[ch];
        for (int64_t k = 0; k < hw; k++)
            out[ch * hw + k] = ((float)pix[ch * hw + k] / 255.0f - mean) / std;
    }
    return LB_OK;
}
