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
 * and source equal key and source. LB_ERR_IO when the file does not exist; LB_ERR_FORMAT when
 * it is damaged or stale (the message says which). ds is zeroed on failure. */
lb_status lb__cache_read(const char *path, const char *source, const lb__cache_key *key,
                         lb_dataset *ds, lb_error *err);

/* mkdir -p; LB_ERR_IO names the folder that could not be created. */
lb_status lb__make_dirs(const char *path, lb_error *err);
/* rm -rf without following symbolic links; best effort. */
void lb__remove_tree(const char *path);

#endif
