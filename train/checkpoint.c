/* checkpoint.c: atomic checkpoint writer and a validating reader.
 * The reader loads the whole file (bounded size), checks the CRC first, then parses with a
 * bounds-checked cursor, so a truncated or hostile file cannot cause an out-of-bounds read. */
#include "train/checkpoint.h"

#include "autograd/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CKPT_MAGIC "LBCK"
#define CKPT_MAX_BYTES ((int64_t)4 << 30)
#define CKPT_MAX_EPOCH 1000000 /* --resume counts epochs in an int */

/* ---- writing -------------------------------------------------------------------------- */

typedef struct {
    FILE    *f;
    uLong    crc;
    bool     failed;
} wctx;

static void put(wctx *w, const void *p, size_t n)
{
    if (w->failed || n == 0) return;
    if (fwrite(p, 1, n, w->f) != n) w->failed = true;
    w->crc = crc32(w->crc, p, (uInt)n);
}
static void put_u32(wctx *w, uint32_t v) { put(w, &v, 4); } /* little-endian hosts only */

static void format_meta(const lb_ckpt_meta *m, char *buf, size_t n)
{
    snprintf(buf, n,
             "dataset=%s\nepoch=%" PRId64 "\nstep=%" PRId64 "\noptim_t=%" PRId64
             "\nseed=%" PRIu64 "\ntest_acc=%.17g\ntrain_loss=%.17g\nbn_folded=%d"
             "\nrng_dropout=%" PRIu64 "\nepoch_step=%" PRId64 "\nskipped=%" PRId64 "\n",
             m->dataset, m->epoch, m->step, m->optim_t, m->seed, m->test_acc, m->train_loss,
             m->bn_folded, m->rng_dropout, m->epoch_step, m->skipped);
}

lb_status lb_checkpoint_save(const char *path, const lb_model *m, const lb_ckpt_meta *meta,
                             bool with_moments, lb_error *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return lb_errorf(err, LB_ERR_ARG, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const lb_params *ps = m->params;
    wctx w = { f, crc32(0, NULL, 0), false };
    char metabuf[1024];
    lb_ckpt_meta mt = *meta;
    mt.bn_folded = m->bn_folded;
    format_meta(&mt, metabuf, sizeof metabuf);
    const uint32_t spec_len = (uint32_t)strlen(m->spec), meta_len = (uint32_t)strlen(metabuf);
    put(&w, CKPT_MAGIC, 4);
    put_u32(&w, LB_CKPT_VERSION);
    put_u32(&w, spec_len);
    put(&w, m->spec, spec_len);
    put_u32(&w, meta_len);
    put(&w, metabuf, meta_len);
    char qbuf[32768];
    const int qlen = lb_qconfig_to_text(&m->qcfg, qbuf, sizeof qbuf);
    if (qlen < 0) {
        fclose(f);
        unlink(tmp);
        return lb_errorf(err, LB_ERR_ARG, "%s: quantization configuration too long to save", path);
    }
    put_u32(&w, (uint32_t)qlen);
    put(&w, qbuf, (size_t)qlen);
    put_u32(&w, (uint32_t)ps->n);
    for (int i = 0; i < ps->n; i++) {
        const lb_tensor *t = ps->t[i];
        const uint16_t nl = (uint16_t)strlen(t->name);
        put(&w, &nl, 2);
        put(&w, t->name, nl);
        put_u32(&w, ps->flags[i]);
        put_u32(&w, (uint32_t)t->n_dims);
        put(&w, t->shape, (size_t)t->n_dims * sizeof(int64_t));
    }
    const uint8_t has_m = with_moments && ps->m && ps->v;
    put(&w, &has_m, 1);
    put(&w, ps->values, (size_t)ps->total * sizeof(float));
    if (has_m) {
        put(&w, ps->m, (size_t)ps->total * sizeof(float));
        put(&w, ps->v, (size_t)ps->total * sizeof(float));
    }
    uint32_t crc = (uint32_t)w.crc;
    if (!w.failed && fwrite(&crc, 4, 1, f) != 1) w.failed = true;
    if (!w.failed && fflush(f) != 0) w.failed = true;
    int saved_errno = errno;
    if (!w.failed && fsync(fileno(f)) != 0) w.failed = true, saved_errno = errno;
    if (fclose(f) != 0 && !w.failed) w.failed = true, saved_errno = errno;
    if (w.failed) {
        unlink(tmp); /* the previous checkpoint at path stays intact */
        return lb_errorf(err, LB_ERR_IO, "%s: write failed: %s (previous checkpoint kept)", tmp,
                         strerror(saved_errno));
    }
    if (rename(tmp, path) != 0) {
        saved_errno = errno;
        unlink(tmp);
        return lb_errorf(err, LB_ERR_IO, "%s: rename failed: %s", path, strerror(saved_errno));
    }
    /* make the rename durable: fsync the directory */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return LB_OK;
}

/* ---- reading -------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t         n, pos;
} rctx;

static bool get(rctx *r, void *out, size_t n)
{
    if (n > r->n - r->pos) return false;
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return true;
}

/* A whole-string integer in [lo, hi]. */
static bool meta_int(const char *val, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    const long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool meta_u64(const char *val, uint64_t *out)
{
    char *end;
    errno = 0;
    if (val[0] == '-') return false;
    const unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end) return false;
    *out = v;
    return true;
}

/* Reads the "key=value" lines; unknown keys are skipped (later versions may add some), and a
 * missing key keeps its default. A known key with a value out of its range is an error, since
 * --resume trusts these counters. */
static lb_status parse_meta(const char *path, const char *text, lb_ckpt_meta *m, lb_error *err)
{
    char key[64];
    for (const char *s = text; *s;) {
        const char *eq = strchr(s, '='), *nl = strchr(s, '\n');
        if (!nl) nl = s + strlen(s);
        if (eq && eq < nl && (size_t)(eq - s) < sizeof key) {
            memcpy(key, s, (size_t)(eq - s));
            key[eq - s] = 0;
            char val[256];
            size_t vl = (size_t)(nl - eq - 1) < sizeof val - 1 ? (size_t)(nl - eq - 1) : sizeof val - 1;
            memcpy(val, eq + 1, vl);
            val[vl] = 0;
            int64_t i = 0;
            bool ok = true;
            if (!strcmp(key, "dataset")) {
                size_t k = strlen(val) < sizeof m->dataset - 1 ? strlen(val) : sizeof m->dataset - 1;
                memcpy(m->dataset, val, k);
                m->dataset[k] = 0;
            }
            else if (!strcmp(key, "epoch")) ok = meta_int(val, 0, CKPT_MAX_EPOCH, &m->epoch);
            else if (!strcmp(key, "step")) ok = meta_int(val, 0, INT64_MAX, &m->step);
            else if (!strcmp(key, "optim_t")) ok = meta_int(val, 0, INT64_MAX, &m->optim_t);
            else if (!strcmp(key, "seed")) ok = meta_u64(val, &m->seed);
            else if (!strcmp(key, "test_acc")) m->test_acc = strtod(val, NULL);
            else if (!strcmp(key, "train_loss")) m->train_loss = strtod(val, NULL);
            else if (!strcmp(key, "bn_folded")) {
                ok = meta_int(val, 0, 1, &i);
                m->bn_folded = (int)i;
            }
            else if (!strcmp(key, "rng_dropout")) ok = meta_u64(val, &m->rng_dropout);
            else if (!strcmp(key, "epoch_step")) ok = meta_int(val, 0, INT64_MAX, &m->epoch_step);
            else if (!strcmp(key, "skipped")) ok = meta_int(val, 0, INT64_MAX, &m->skipped);
            if (!ok)
                return lb_errorf(err, LB_ERR_FORMAT, "%s: metadata %s=%.40s is not a valid value",
                                 path, key, val);
        }
        s = *nl ? nl + 1 : nl;
    }
    return LB_OK;
}

static lb_status read_file(const char *path, uint8_t **buf, size_t *n, lb_error *err)
{
    char *p;
    lb_status st = lb_read_file(path, (size_t)CKPT_MAX_BYTES, "a checkpoint", &p, n, err);
    *buf = (uint8_t *)p;
    if (!st && *n < 16) {
        free(p);
        *buf = NULL;
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: %zu bytes is too short for a checkpoint", path, *n);
    }
    return st;
}

/* Walks the tensor table at r (a copy: the caller's cursor does not move) and checks that the
 * bytes after it are exactly the values (and moments) of the shapes it lists. */
static lb_status scan_tensors(const char *path, rctx r, lb_error *err)
{
    uint32_t n_t;
    int64_t  total = 0;
    if (!get(&r, &n_t, 4)) return lb_errorf(err, LB_ERR_FORMAT, "%s: truncated tensor table", path);
    for (uint32_t i = 0; i < n_t; i++) {
        uint16_t nl;
        uint32_t flags, nd;
        int64_t  shape[LB_MAX_DIMS];
        if (!get(&r, &nl, 2) || nl >= LB_NAME_LEN || nl > r.n - r.pos)
            return lb_errorf(err, LB_ERR_FORMAT, "%s: tensor %u: bad name", path, i);
        r.pos += nl;
        if (!get(&r, &flags, 4) || !get(&r, &nd, 4) || nd < 1 || nd > LB_MAX_DIMS ||
            !get(&r, shape, nd * sizeof(int64_t)))
            return lb_errorf(err, LB_ERR_FORMAT, "%s: tensor %u: bad header", path, i);
        const int64_t n = lb_shape_numel(shape, (int)nd);
        if (n <= 0 || n > CKPT_MAX_BYTES / 4 || total > CKPT_MAX_BYTES / 4 - n)
            return lb_errorf(err, LB_ERR_FORMAT, "%s: tensor %u: shape out of range (%" PRId64
                             " values; a checkpoint holds at most %" PRId64 ")", path, i, n,
                             CKPT_MAX_BYTES / 4);
        total += n;
    }
    uint8_t has_m;
    if (!get(&r, &has_m, 1) || has_m > 1)
        return lb_errorf(err, LB_ERR_FORMAT, "%s: bad moments flag", path);
    const uint64_t want = (uint64_t)total * 4u * (has_m ? 3u : 1u);
    if ((uint64_t)(r.n - r.pos) != want)
        return lb_errorf(err, LB_ERR_FORMAT, "%s: %zu bytes of tensor data, the tensor table "
                         "needs %" PRIu64 " (truncated or damaged file)", path, r.n - r.pos, want);
    return LB_OK;
}

#define BAD(...) do { st = lb_errorf(err, LB_ERR_FORMAT, __VA_ARGS__); goto fail; } while (0)

lb_status lb_checkpoint_load(const char *path, lb_model **out, lb_ckpt_meta *meta, lb_error *err)
{
    *out = NULL;
    uint8_t *buf = NULL;
    size_t size = 0;
    lb_status st = read_file(path, &buf, &size, err);
    if (st) return st;
    lb_model *m = NULL;
    char *spec = NULL, *metatext = NULL, *qtext = NULL;
    rctx r = { buf, size - 4, 0 };
    char magic[4] = { 0 };
    uint32_t version = 0, spec_len = 0, meta_len = 0, n_t = 0, crc;
    memcpy(&crc, buf + size - 4, 4);
    get(&r, magic, 4);
    if (memcmp(magic, CKPT_MAGIC, 4)) BAD("%s: not a lowbit checkpoint (bad magic)", path);
    if (!get(&r, &version, 4) || version != LB_CKPT_VERSION)
        BAD("%s: checkpoint version %u, this lowbit reads version %d", path, version, LB_CKPT_VERSION);
    if ((uint32_t)crc32(crc32(0, NULL, 0), buf, (uInt)(size - 4)) != crc)
        BAD("%s: CRC mismatch: the file is corrupt or truncated", path);
    if (!get(&r, &spec_len, 4) || spec_len > r.n - r.pos) BAD("%s: bad model description length", path);
    if (!(spec = malloc(spec_len + 1))) { st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    get(&r, spec, spec_len);
    spec[spec_len] = 0;
    if (!get(&r, &meta_len, 4) || meta_len > r.n - r.pos) BAD("%s: bad metadata length", path);
    if (!(metatext = malloc(meta_len + 1))) { st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    get(&r, metatext, meta_len);
    metatext[meta_len] = 0;
    uint32_t q_len = 0;
    if (!get(&r, &q_len, 4) || q_len > r.n - r.pos) BAD("%s: bad quantization config length", path);
    if (!(qtext = malloc(q_len + 1))) { st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    get(&r, qtext, q_len);
    qtext[q_len] = 0;
    lb_ckpt_meta mt = { .test_acc = -1 };
    if ((st = parse_meta(path, metatext, &mt, err))) goto fail;
    /* The tensor table against the data that follows it, before the model (and its
     * parameter blocks) is built: a description claiming a huge model in a small file fails
     * here instead of allocating that model. */
    if ((st = scan_tensors(path, r, err))) goto fail;
    char origin[4200];
    snprintf(origin, sizeof origin, "%s (quantization config)", path);
    lb_qconfig *qc = malloc(sizeof *qc);
    if (!qc) { st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    st = lb_qconfig_parse_text(qtext, origin, qc, err);
    snprintf(origin, sizeof origin, "%s (model description)", path);
    if (!st) st = lb_model_build(spec, origin, qc, &m, err);
    free(qc);
    if (st) goto fail;
    lb_params *ps = m->params;
    if (!get(&r, &n_t, 4) || n_t != (uint32_t)ps->n)
        BAD("%s: holds %u tensors, its model description declares %d", path, n_t, ps->n);
    for (int i = 0; i < ps->n; i++) {
        uint16_t nl;
        uint32_t flags, nd;
        char name[LB_NAME_LEN];
        int64_t shape[LB_MAX_DIMS];
        if (!get(&r, &nl, 2) || nl >= LB_NAME_LEN || !get(&r, name, nl))
            BAD("%s: tensor %d: bad name", path, i);
        name[nl] = 0;
        if (!get(&r, &flags, 4) || !get(&r, &nd, 4) || nd < 1 || nd > LB_MAX_DIMS ||
            !get(&r, shape, nd * sizeof(int64_t)))
            BAD("%s: tensor %s: bad header", path, name);
        const lb_tensor *t = ps->t[i];
        if (strcmp(name, t->name) || (int)nd != t->n_dims ||
            memcmp(shape, t->shape, nd * sizeof(int64_t)))
            BAD("%s: tensor %d is %s, the model expects %s with another shape or order", path, i,
                name, t->name);
    }
    uint8_t has_m;
    const size_t bytes = (size_t)ps->total * sizeof(float);
    if (!get(&r, &has_m, 1) || has_m > 1) BAD("%s: bad moments flag", path);
    if (r.n - r.pos != bytes * (has_m ? 3 : 1))
        BAD("%s: %zu bytes of tensor data, expected %zu", path, r.n - r.pos, bytes * (has_m ? 3 : 1));
    get(&r, ps->values, bytes);
    if (has_m) {
        if ((st = lb_params_alloc_moments(ps, err))) goto fail;
        get(&r, ps->m, bytes);
        get(&r, ps->v, bytes);
    }
    m->bn_folded = mt.bn_folded != 0;
    if (meta) *meta = mt;
    free(buf);
    free(spec);
    free(metatext);
    free(qtext);
    *out = m;
    return LB_OK;
fail:
    free(buf);
    free(spec);
    free(metatext);
    free(qtext);
    lb_model_free(m);
    return st;
}
