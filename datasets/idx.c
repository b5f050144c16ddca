/* idx.c: the IDX file format of MNIST and Fashion-MNIST (LeCun's "idx3-ubyte"/"idx1-ubyte").
 *
 * Reads one image file and one label file through zlib's gzopen/gzread, which decompress gzip
 * and pass plain files through, so "x.gz" and "x" are read by the same code. Nothing in a
 * header is trusted: dims and counts are range-checked, size products overflow-checked, and
 * the pixel buffer grows with what was actually read (at most twice that), so a header that
 * claims 90 million images on a 1 KB file fails as "truncated" without a 70 GB malloc.
 * It does not find files (find.c does), normalise pixels, or read IDX types other than
 * ubyte images and ubyte/int32 labels.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "datasets/dataset.h"

#define IDX_MAGIC_IMAGES      0x00000803u /* ubyte, 3 dims: n, rows, cols              */
#define IDX_MAGIC_LABELS      0x00000801u /* ubyte, 1 dim: n                           */
#define IDX_MAGIC_LABELS_I32  0x00000C01u /* big-endian int32, 1 dim: n (> 256 classes) */
#define IDX_MAX_DIM           4096
#define IDX_MAX_N             100000000
#define IDX_FIRST_CHUNK       ((size_t)1 << 20) /* first buffer size; doubles as data arrives */
#define IDX_MAX_READ          ((size_t)1 << 30) /* gzread takes an unsigned length         */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Turns the error state of gz into a status and message; errno is only meaningful for Z_ERRNO. */
static lb_status gz_fail(gzFile gz, const char *path, lb_error *err)
{
    int         zerr = Z_OK;
    const char *zmsg = gzerror(gz, &zerr);
    if (zerr == Z_ERRNO) return lb_errorf(err, LB_ERR_IO, "%s: read failed: %s", path,
                                          strerror(errno));
    if (zerr == Z_MEM_ERROR) return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory in zlib",
                                              path);
    return lb_errorf(err, LB_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, zmsg);
}

/* Reads up to want bytes into buf, stopping early only at end of file; *got says how many. */
static lb_status read_up_to(gzFile gz, const char *path, uint8_t *buf, size_t want, size_t *got,
                            lb_error *err)
{
    *got = 0;
    while (*got < want) {
        size_t   ask = want - *got < IDX_MAX_READ ? want - *got : IDX_MAX_READ;
        int      r   = gzread(gz, buf + *got, (unsigned)ask);
        if (r < 0) return gz_fail(gz, path, err);
        if (r == 0) break;
        *got += (size_t)r;
    }
    return LB_OK;
}

/* " (gzip stream cut short)" when zlib hit the end of a compressed file mid-stream. */
static const char *cut_note(gzFile gz)
{
    int zerr = Z_OK;
    gzerror(gz, &zerr);
    return zerr == Z_BUF_ERROR ? " (gzip stream cut short)" : "";
}

static lb_status open_idx(const char *path, gzFile *gz, lb_error *err)
{
    errno = 0;
    *gz   = gzopen(path, "rb");
    if (!*gz) {
        if (errno == 0) return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory opening", path);
        return lb_errorf(err, LB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    gzbuffer(*gz, 128 * 1024);
    return LB_OK;
}

/* Reads the header of size hdr_bytes into hdr after checking the magic against the one
 * expected (or alt, if non-zero). kind names the file in messages ("image", "label"). */
static lb_status read_header(gzFile gz, const char *path, uint8_t *hdr, size_t hdr_bytes,
                             uint32_t magic, uint32_t alt, const char *kind, lb_error *err)
{
    size_t    got = 0;
    lb_status st  = read_up_to(gz, path, hdr, hdr_bytes, &got, err);
    if (st != LB_OK) return st;
    if (got == 0)
        return lb_errorf(err, LB_ERR_FORMAT, "%s: empty file (expected an IDX %s header of "
                         "%zu bytes)", path, kind, hdr_bytes);
    if (got >= 4 && be32(hdr) != magic && (alt == 0 || be32(hdr) != alt))
        return lb_errorf(err, LB_ERR_FORMAT, "%s: bad magic 0x%08" PRIX32 " (expected 0x%08"
                         PRIX32 " for IDX %ss)", path, be32(hdr), magic, kind);
    if (got < hdr_bytes)
        return lb_errorf(err, LB_ERR_FORMAT, "%s: truncated header (%zu bytes, an IDX %s "
                         "header has %zu)%s", path, got, kind, hdr_bytes, cut_note(gz));
    return LB_OK;
}

/* Reads exactly want bytes of body into a new buffer, growing it geometrically so that it is
 * never more than twice what the file actually delivered, then checks that the file ends
 * there. On success *out owns want bytes; on failure *out is NULL. n and what word the
 * truncation message ("header says 10 images (7840 bytes)"). */
static lb_status read_body(gzFile gz, const char *path, size_t want, int64_t n, const char *what,
                           size_t hdr_bytes, uint8_t **out, lb_error *err)
{
    lb_status st  = LB_OK;
    size_t    cap = want < IDX_FIRST_CHUNK ? want : IDX_FIRST_CHUNK;
    size_t    len = 0;
    uint8_t  *buf = malloc(cap);
    *out = NULL;
    if (!buf) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, cap);
        goto done;
    }
    for (;;) {
        size_t got = 0;
        st = read_up_to(gz, path, buf + len, cap - len, &got, err);
        if (st != LB_OK) goto done;
        len += got;
        if (len < cap || len == want) break; /* end of file, or everything read */
        size_t   ncap = cap > want / 2 ? want : cap * 2;
        uint8_t *nbuf = realloc(buf, ncap);
        if (!nbuf) {
            st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, ncap);
            goto done;
        }
        buf = nbuf;
        cap = ncap;
    }
    if (len < want) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: truncated: header says %" PRId64 " %s (%zu "
                       "bytes), file holds only %zu after the %zu-byte header%s", path, n, what,
                       want, len, hdr_bytes, cut_note(gz));
        goto done;
    }
    /* The file must end here: extra bytes mean a wrong header or a concatenated file. */
    uint8_t scratch[4096];
    size_t  extra = 0;
    for (;;) {
        size_t got = 0;
        st = read_up_to(gz, path, scratch, sizeof scratch, &got, err);
        if (st != LB_OK) goto done;
        if (got == 0) break;
        extra += got;
    }
    if (extra > 0) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: %zu byte%s after the last of %" PRId64 " %s "
                       "(expected the file to end there)", path, extra, extra == 1 ? "" : "s", n,
                       what);
        goto done;
    }
    *out = buf;
    buf  = NULL;
done:
    free(buf);
    return st;
}

lb_status lb_idx_load(const char *images_path, const char *labels_path, lb_dataset *ds,
                      lb_error *err)
{
    lb_status st  = LB_OK;
    gzFile    gzi = NULL, gzl = NULL;
    uint8_t  *pix = NULL, *raw = NULL;
    int32_t  *lab = NULL;
    uint8_t   ih[16], lh[8];

    memset(ds, 0, sizeof *ds);
    if (!images_path || !labels_path)
        return lb_errorf(err, LB_ERR_ARG, "lb_idx_load: NULL path (images %s, labels %s)",
                         images_path ? images_path : "NULL", labels_path ? labels_path : "NULL");

    /* 1. Both headers, validated before any large read. */
    if ((st = open_idx(images_path, &gzi, err)) != LB_OK) goto done;
    if ((st = read_header(gzi, images_path, ih, sizeof ih, IDX_MAGIC_IMAGES, 0, "image", err)))
        goto done;
    const uint32_t n = be32(ih + 4), rows = be32(ih + 8), cols = be32(ih + 12);
    if (rows < 1 || rows > IDX_MAX_DIM || cols < 1 || cols > IDX_MAX_DIM) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: image size %" PRIu32 "x%" PRIu32 " out of range"
                       " (expected rows and cols in 1..%d)", images_path, rows, cols,
                       IDX_MAX_DIM);
        goto done;
    }
    if (n < 1 || n > IDX_MAX_N) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: header says %" PRIu32 " images (expected "
                       "1..%d)", images_path, n, IDX_MAX_N);
        goto done;
    }
    if ((st = open_idx(labels_path, &gzl, err)) != LB_OK) goto done;
    if ((st = read_header(gzl, labels_path, lh, sizeof lh, IDX_MAGIC_LABELS, IDX_MAGIC_LABELS_I32,
                          "label", err)))
        goto done;
    const uint32_t n_lab = be32(lh + 4);
    const size_t   lunit = be32(lh) == IDX_MAGIC_LABELS_I32 ? 4 : 1;
    if (n_lab != n) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: header says %" PRIu32 " labels, but %s has %"
                       PRIu32 " images (expected the counts to agree)", labels_path, n_lab,
                       images_path, n);
        goto done;
    }

    /* 2. Bodies. n <= 1e8 and rows*cols <= 2^24, so the product fits 64 bits; it is checked
     *    against size_t for 32-bit hosts. */
    const size_t per = (size_t)rows * cols;
    if ((size_t)n > SIZE_MAX / per) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: %" PRIu32 " images of %zu bytes do not fit in "
                       "memory on this machine", images_path, n, per);
        goto done;
    }
    if ((st = read_body(gzi, images_path, (size_t)n * per, n, "images", sizeof ih, &pix, err)))
        goto done;
    if ((st = read_body(gzl, labels_path, (size_t)n * lunit, n, "labels", sizeof lh, &raw, err)))
        goto done;

    /* 3. Labels: decode, range-check, count classes. */
    lab = malloc((size_t)n * sizeof *lab);
    if (!lab) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory (%" PRIu32 " labels)", labels_path,
                       n);
        goto done;
    }
    int32_t max_label = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = lunit == 4 ? be32(raw + 4 * (size_t)i) : raw[i];
        if (v >= LB_DATASET_MAX_CLASSES) {
            st = lb_errorf(err, LB_ERR_FORMAT, "%s: label %" PRIu32 " is %" PRId32 " (expected "
                           "0..%d)", labels_path, i, (int32_t)v, LB_DATASET_MAX_CLASSES - 1);
            goto done;
        }
        lab[i] = (int32_t)v;
        if (lab[i] > max_label) max_label = lab[i];
    }

    snprintf(ds->source, sizeof ds->source, "%s", images_path);
    ds->n         = n;
    ds->c         = 1;
    ds->h         = (int)rows;
    ds->w         = (int)cols;
    ds->n_classes = max_label + 1;
    ds->images    = pix;
    ds->labels    = lab;
    for (int ch = 0; ch < 3; ch++) {
        ds->mean[ch] = 0.0f; /* identity normalisation: lb_dataset_load sets the real ones */
        ds->std[ch]  = 1.0f;
    }
    pix = NULL;
    lab = NULL;
done:
    if (gzi) gzclose(gzi);
    if (gzl) gzclose(gzl);
    free(pix);
    free(raw);
    free(lab);
    return st;
}
