/* cache.c: the decoded dataset cache file (.lbds), and small file helpers.
 *
 * Layout (little-endian), version 1:
 *     "LBDS" u32 version | i64 n | i32 c, h, w, n_classes | u64 n_files, total_bytes
 *     i64 newest_mtime_ns | u32 opts | i64 n_skipped | u32 source_len, source
 *     n_classes x (u16 len, name) | u8 pixels[n*c*h*w] | i32 labels[n]
 *     u32 crc32 of every byte before it (zlib's crc32)
 * Written to <path>.tmp.<pid>, fsynced and renamed, so a reader never sees half a file. The
 * reader checks the header against the file size before allocating, then the CRC and every
 * label, like any other input file; a cache that fails is simply rebuilt by the caller.
 * Streaming (lb__cache_read with stream) makes the same checks, running the pixels through
 * the CRC in 1 MiB chunks instead of keeping them, and then keeps the file open for
 * stream.c to pread samples from (at a fixed offset, c*h*w bytes apart).
 * It does not decide when to use a cache (folder.c does).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "datasets/datasets_impl.h"

#define LBDS_MAGIC   "LBDS"
#define LBDS_VERSION 1u
#define LBDS_FIXED   (4 + 4 + 8 + 16 + 8 + 8 + 8 + 4 + 8 + 4) /* bytes before the source */

/* ---------------------------------------------------------------- helpers */

lb_status lb__read_file(const char *path, size_t max, uint8_t **data, size_t *size,
                        lb_error *err)
{
    *data = NULL, *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return lb_errorf(err, LB_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > max) {
        fclose(f);
        return lb_errorf(err, LB_ERR_FORMAT, "%s: %lld bytes is too large (limit %zu)", path,
                         (long long)sb.st_size, max);
    }
    const size_t n   = (size_t)sb.st_size;
    uint8_t     *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    const size_t got = fread(buf, 1, n, f);
    const int    bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return lb_errorf(err, LB_ERR_IO, "%s: read %zu of %zu bytes%s%s", path, got, n,
                         bad ? ": " : "", bad ? strerror(errno) : "");
    }
    *data = buf, *size = n;
    return LB_OK;
}

lb_status lb__make_dirs(const char *path, lb_error *err)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return lb_errorf(err, LB_ERR_ARG, "%.64s...: path too long", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", p, strerror(errno));
    return LB_OK;
}

void lb__remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (!S_ISDIR(sb.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            size_t len = strlen(path) + strlen(e->d_name) + 2;
            char  *sub = malloc(len);
            if (!sub) continue;
            snprintf(sub, len, "%s/%s", path, e->d_name);
            lb__remove_tree(sub);
            free(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    FILE    *f;
    uLong    crc;
    int      bad;
} wr;

static void put(wr *w, const void *p, size_t n)
{
    if (w->bad || n == 0) return;
    /* crc32 takes a uInt length: feed it in chunks */
    for (size_t off = 0; off < n;) {
        size_t k = n - off > (1u << 30) ? (1u << 30) : n - off;
        w->crc   = crc32(w->crc, (const Bytef *)p + off, (uInt)k);
        off += k;
    }
    if (fwrite(p, 1, n, w->f) != n) w->bad = 1;
}

static void put_u16(wr *w, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    put(w, b, 2);
}

static void put_u32(wr *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 4);
}

static void put_u64(wr *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}

lb_status lb__cache_write(const char *path, const lb_dataset *ds, const lb__cache_key *key,
                          lb_error *err)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lb_errorf(err, LB_ERR_ARG, "%.64s...: cache path too long", path);
    wr w = { .f = fopen(tmp, "wb"), .crc = crc32(0, Z_NULL, 0) };
    if (!w.f) return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const size_t npix = (size_t)ds->n * (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    const size_t slen = strlen(ds->source);
    put(&w, LBDS_MAGIC, 4);
    put_u32(&w, LBDS_VERSION);
    put_u64(&w, (uint64_t)ds->n);
    put_u32(&w, (uint32_t)ds->c), put_u32(&w, (uint32_t)ds->h), put_u32(&w, (uint32_t)ds->w);
    put_u32(&w, (uint32_t)ds->n_classes);
    put_u64(&w, key->n_files), put_u64(&w, key->total_bytes);
    put_u64(&w, (uint64_t)key->newest_mtime_ns);
    put_u32(&w, key->opts);
    put_u64(&w, (uint64_t)ds->n_skipped);
    put_u32(&w, (uint32_t)slen);
    put(&w, ds->source, slen);
    for (int k = 0; k < ds->n_classes; k++) {
        const char *name = ds->class_names ? ds->class_names + (size_t)k * LB_CLASS_NAME_MAX : "";
        const size_t len = strlen(name);
        put_u16(&w, (uint16_t)len);
        put(&w, name, len);
    }
    put(&w, ds->images, npix);
    for (int64_t i = 0; i < ds->n; i++) put_u32(&w, (uint32_t)ds->labels[i]);
    const uint32_t crc = (uint32_t)w.crc;
    put_u32(&w, crc);
    int bad = w.bad || fflush(w.f) != 0 || fsync(fileno(w.f)) != 0;
    bad |= fclose(w.f) != 0;
    if (bad || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return lb_errorf(err, LB_ERR_IO, "%s: cannot write the cache: %s", path, strerror(e));
    }
    return LB_OK;
}

/* ---------------------------------------------------------------- reading */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

/* Reads exactly n bytes into p, adding them to *crc. */
static bool get(FILE *f, void *p, size_t n, uLong *crc)
{
    if (n && fread(p, 1, n, f) != n) return false;
    for (size_t off = 0; off < n;) {
        size_t k = n - off > (1u << 30) ? (1u << 30) : n - off;
        *crc     = crc32(*crc, (const Bytef *)p + off, (uInt)k);
        off += k;
    }
    return true;
}

/* Adds the n bytes at the current position of f to *crc, through buf (cap bytes). */
static bool skip_crc(FILE *f, uint64_t n, uint8_t *buf, size_t cap, uLong *crc)
{
    while (n > 0) {
        const size_t k = n > cap ? cap : (size_t)n;
        if (!get(f, buf, k, crc)) return false;
        n -= k;
    }
    return true;
}

lb_status lb__cache_read(const char *path, const char *source, const lb__cache_key *key,
                         bool stream, lb_dataset *ds, lb_error *err)
{
    memset(ds, 0, sizeof *ds);
    FILE *f = fopen(path, "rb");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: no cache: %s", path, strerror(errno));
    lb_status   st = LB_OK;
    uint8_t     h[LBDS_FIXED];
    char       *src = NULL;
    uLong       crc = crc32(0, Z_NULL, 0);
    struct stat sb;
#define BAD(...) do { st = lb_errorf(err, LB_ERR_FORMAT, __VA_ARGS__); goto fail; } while (0)
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0)
        BAD("%s: cannot stat the cache: %s", path, strerror(errno));
    const uint64_t size = (uint64_t)sb.st_size;
    if (size < LBDS_FIXED + 4 || !get(f, h, LBDS_FIXED, &crc))
        BAD("%s: cache file too short (%" PRIu64 " bytes)", path, size);
    if (memcmp(h, LBDS_MAGIC, 4)) BAD("%s: not a lowbit dataset cache (bad magic)", path);
    if (get_u32(h + 4) != LBDS_VERSION)
        BAD("%s: cache version %u, expected %u", path, get_u32(h + 4), LBDS_VERSION);
    const uint64_t n = get_u64(h + 8);
    const uint32_t C = get_u32(h + 16), H = get_u32(h + 20), W = get_u32(h + 24);
    const uint32_t K = get_u32(h + 28);
    lb__cache_key  k = { get_u64(h + 32), get_u64(h + 40), (int64_t)get_u64(h + 48),
                         get_u32(h + 56) };
    const uint64_t skipped = get_u64(h + 60);
    const uint32_t slen    = get_u32(h + 68);
    if (n < 1 || n > ((uint64_t)1 << 34) || (C != 1 && C != 3) || H < 1 || W < 1 ||
        H > LB__IMAGE_MAX_SIDE || W > LB__IMAGE_MAX_SIDE || K < 1 || K > LB_DATASET_MAX_CLASSES)
        BAD("%s: cache header out of range (n %" PRIu64 ", %ux%ux%u, %u classes)", path, n, C,
            H, W, K);
    /* the key first: a stale cache is told without reading its pixels */
    if (k.n_files != key->n_files || k.total_bytes != key->total_bytes ||
        k.newest_mtime_ns != key->newest_mtime_ns || k.opts != key->opts)
        BAD("%s: stale cache (the source folder or the decoding options changed)", path);
    if (slen != strlen(source)) BAD("%s: cache of another source folder", path);
    if (!(src = malloc(slen + 1))) BAD("%s: out of memory", path);
    if (!get(f, src, slen, &crc) || memcmp(src, source, slen))
        BAD("%s: cache of another source folder", path);
    char *names = calloc(K, LB_CLASS_NAME_MAX);
    if (!names) BAD("%s: out of memory", path);
    ds->class_names = names;
    uint64_t pos = LBDS_FIXED + slen;
    for (uint32_t i = 0; i < K; i++) {
        uint8_t l2[2];
        if (!get(f, l2, 2, &crc)) BAD("%s: cache truncated in the class names", path);
        const size_t len = (size_t)l2[0] | (size_t)l2[1] << 8;
        if (len >= LB_CLASS_NAME_MAX || !get(f, names + (size_t)i * LB_CLASS_NAME_MAX, len, &crc))
            BAD("%s: cache class name %u too long or truncated", path, i);
        pos += 2 + len;
    }
    /* sizes agree with the file before the big allocations */
    const uint64_t npix = n * C * H * W;
    if (npix / n != (uint64_t)C * H * W || npix > SIZE_MAX / 2 || n * 4 > SIZE_MAX / 2 ||
        size < pos + 4 || size - pos - 4 != npix + n * 4)
        BAD("%s: cache size %" PRIu64 " does not match its header", path, size);
    if (stream) { /* the pixels only through the CRC; they stay in the file */
        const size_t cap = (size_t)1 << 20;
        uint8_t     *buf = malloc(cap);
        if (!buf) BAD("%s: out of memory", path);
        const bool ok = skip_crc(f, npix, buf, cap, &crc);
        free(buf);
        if (!ok) BAD("%s: cache truncated while reading", path);
    } else {
        ds->images = malloc((size_t)npix);
        if (!ds->images) BAD("%s: out of memory for %" PRIu64 " images", path, n);
        if (!get(f, ds->images, (size_t)npix, &crc)) BAD("%s: cache truncated while reading", path);
    }
    ds->labels = malloc((size_t)n * sizeof *ds->labels);
    if (!ds->labels) BAD("%s: out of memory for %" PRIu64 " labels", path, n);
    if (!get(f, ds->labels, (size_t)n * 4, &crc)) BAD("%s: cache truncated while reading", path);
    uint8_t c4[4];
    if (fread(c4, 1, 4, f) != 4 || get_u32(c4) != (uint32_t)crc)
        BAD("%s: cache CRC mismatch (damaged file)", path);
    for (uint64_t i = 0; i < n; i++) { /* little-endian on disk, in place */
        const uint32_t y = get_u32((const uint8_t *)&ds->labels[i]);
        if (y >= K) BAD("%s: cache label %u of sample %" PRIu64 " out of range", path, y, i);
        ds->labels[i] = (int32_t)y;
    }
    if (stream) { /* the descriptor of the file just checked, not the path again */
        const int fd = fcntl(fileno(f), F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            st = lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if ((st = lb__stream_add(ds, fd, path, 0, (int64_t)n, pos, (uint64_t)C * H * W,
                                 (uint64_t)C * H * W, err)))
            goto fail;
    }
#undef BAD
    fclose(f);
    free(src);
    ds->n = (int64_t)n, ds->c = (int)C, ds->h = (int)H, ds->w = (int)W;
    ds->n_classes = (int)K;
    ds->n_skipped = (int64_t)skipped;
    ds->from_cache = true;
    /* the identity normalisation lb_folder_load promises (callers set theirs) */
    for (int ch = 0; ch < 3; ch++) ds->mean[ch] = 0.0f, ds->std[ch] = 1.0f;
    snprintf(ds->source, sizeof ds->source, "%s", source);
    return LB_OK;
fail:
    fclose(f);
    free(src);
    lb_dataset_free(ds);
    memset(ds, 0, sizeof *ds);
    return st;
}
