/* datasets_impl.h: internals shared by the files of datasets/ (lb__ names); not a public API.
 *
 * Image decoding (image.c), the decoded cache file (cache.c) and small file helpers.
 */
#ifndef LB_DATASETS_IMPL_H
#define LB_DATASETS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/dataset.h"

#define LB__IMAGE_MAX_SIDE  16384            /* larger images are rejected as corrupt    */
#define LB__IMAGE_MAX_FILE  ((size_t)64 << 20) /* image files above 64 MiB are rejected */

/* Decodes a PNG or JPEG file held in data[0..size) (the format is told by its magic bytes)
 * into *pix: (h, w, c) interleaved 8-bit pixels, malloc'ed, owned by the caller. want_c is 1
 * or 3 to convert, 0 to keep the image's own kind (1 for gray, 3 otherwise). path only names
 * the file in messages. LB_ERR_FORMAT (corrupt, unsupported, too large), LB_ERR_NOMEM; on
 * failure *pix is NULL and nothing leaks. */
lb_status lb__image_decode(const char *path, const uint8_t *data, size_t size, int want_c,
                           uint8_t **pix, int *c, int *h, int *w, lb_error *err);

/* Bilinear resize of (sh, sw, c) interleaved pixels into (dh, dw, c), sampling at half-pixel
 * centres (PyTorch's interpolate(mode="bilinear", align_corners=False), no antialiasing),
 * rounding to nearest. */
void lb__image_resize(const uint8_t *src, int c, int sh, int sw, uint8_t *dst, int dh, int dw);

/* Reads all of path into a malloc'ed buffer (at most max bytes; larger files are
 * LB_ERR_FORMAT). LB_ERR_IO names the file with strerror. */
lb_status lb__read_file(const char *path, size_t max, uint8_t **data, size_t *size,
                        lb_error *err);

/* What a decoded cache depends on: the source folder's state and the decoding options. */
typedef struct lb__cache_key {
    uint64_t n_files, total_bytes;
    int64_t  newest_mtime_ns;
    uint32_t opts;          /* channels | resize | skip_corrupt | height | width, packed */
} lb__cache_key;

/* Writes ds with key to path atomically (path.tmp, fsync, rename). */
lb_status lb__cache_write(const char *path, const lb_dataset *ds, const lb__cache_key *key,
                          lb_error *err);
/* Reads path into ds when it is a valid cache (magic, version, sizes, CRC, labels) whose key
 * and source equal key and source. With stream, the pixels are only run through the CRC (in
 * small chunks) and the file stays open as ds->files[0] instead. LB_ERR_IO when the file
 * does not exist; LB_ERR_FORMAT when it is damaged or stale (the message says which). ds is
 * zeroed on failure. */
lb_status lb__cache_read(const char *path, const char *source, const lb__cache_key *key,
                         bool stream, lb_dataset *ds, lb_error *err);

/* mkdir -p; LB_ERR_IO names the folder that could not be created. */
lb_status lb__make_dirs(const char *path, lb_error *err);
/* rm -rf without following symbolic links; best effort. */
void lb__remove_tree(const char *path);

/* Opens path read-only (O_CLOEXEC) for lb__stream_add; -1 with LB_ERR_IO in err. */
int lb__stream_open(const char *path, lb_error *err);

/* Appends fd (an open descriptor of path, owned from now on: closed on failure too) to
 * ds->files: the samples first .. first+count-1, whose pixels (sample_bytes each) start at
 * byte offset, stride bytes apart. Checks that the file is long enough for all of them
 * before anything trusts it. LB_ERR_FORMAT (too short; the message names the file),
 * LB_ERR_IO, LB_ERR_NOMEM; on failure ds->files is unchanged. Taking the descriptor, not the
 * path, means the file checked is the one read, even if the path is replaced meanwhile. */
lb_status lb__stream_add(lb_dataset *ds, int fd, const char *path, int64_t first, int64_t count,
                         uint64_t offset, uint64_t stride, uint64_t sample_bytes, lb_error *err);

#endif
