/* lbm_write.c: building .lbm files in memory (docs/FORMAT.md), plus the two helpers an
 * exporter needs: packing a row of low-bit weights and the fixed-point form of a real
 * multiplier.
 *
 * The writer lays out bytes; it does not validate the model (tests use it to make broken
 * files, and lbm_load is the one place that decides what is valid). Host-side code: it
 * allocates with malloc/realloc and reads floats, but needs no libm.
 */
#include "runtime/lbm_write.h"

#include <stdlib.h>
#include <string.h>

/* ---- little-endian writers -------------------------------------------------------------- */

static void wr_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8 & 0xFFu);
}

static void wr_u32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k) & 0xFFu);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);   /* the format's f32 is IEEE-754 binary32, as C's float here */
    return u;
}

/* Makes room for `more` bytes after `used` in *buf (capacity *cap); 0 and w->failed on
 * failure (allocation or a size past 4 GiB). */
static int reserve(lbm_writer *w, void **buf, uint32_t *cap, uint32_t used, uint64_t more)
{
    const uint64_t need = (uint64_t)used + more;
    if (w->failed) return 0;
    if (need > 0xFFFFFFFFu) {
        w->failed = 1;
        return 0;
    }
    if (need <= *cap) return 1;
    uint64_t ncap = *cap ? *cap : 256u;
    while (ncap < need) ncap *= 2;
    if (ncap > 0xFFFFFFFFu) ncap = 0xFFFFFFFFu;
    void *p = realloc(*buf, (size_t)ncap);
    if (!p) {
        w->failed = 1;
        return 0;
    }
    *buf = p;
    *cap = (uint32_t)ncap;
    return 1;
}

void lbm_writer_init(lbm_writer *w)
{
    memset(w, 0, sizeof *w);
}

void lbm_writer_free(lbm_writer *w)
{
    if (!w) return;
    free(w->tensors);
    free(w->ops);
    free(w->data);
    free(w->meta);
    memset(w, 0, sizeof *w);
}

uint32_t lbm_writer_tensor(lbm_writer *w, int dtype, int n_dims, const uint32_t *dims,
                           float scale, int32_t zero_point)
{
    const uint32_t t = w->n_tensors;
    void          *buf = w->tensors;
    const int      ok = reserve(w, &buf, &w->cap_tensors, 32u * w->n_tensors, 32u);
    w->tensors = buf;
    if (!ok) return t;
    uint8_t *r = w->tensors + 32u * t;
    memset(r, 0, 32);
    r[0] = (uint8_t)dtype;
    r[1] = (uint8_t)n_dims;
    for (int k = 0; k < n_dims && k < 3 && dims; k++) wr_u32(r + 4 + 4 * k, dims[k]);
    wr_u32(r + 16, f32_bits(scale));
    wr_u32(r + 20, (uint32_t)zero_point);
    w->n_tensors++;
    return t;
}

uint32_t lbm_writer_data(lbm_writer *w, const void *p, uint32_t n)
{
    const uint32_t off = (w->data_size + 3u) & ~3u;
    void          *buf = w->data;
    const uint64_t more = (uint64_t)off - w->data_size + n;
    const int      ok = reserve(w, &buf, &w->cap_data, w->data_size, more);
    w->data = buf;
    if (!ok) return off;
    memset(w->data + w->data_size, 0, off - w->data_size);   /* alignment padding is zero */
    if (p) memcpy(w->data + off, p, n);
    else memset(w->data + off, 0, n);
    w->data_size = off + n;
    return off;
}

void lbm_writer_op(lbm_writer *w, int kind, int n_in, const uint32_t *in, uint32_t out,
                   uint32_t data_offset, uint32_t data_size, const int32_t *attr)
{
    void     *buf = w->ops;
    const int ok = reserve(w, &buf, &w->cap_ops, 64u * w->n_ops, 64u);
    w->ops = buf;
    if (!ok) return;
    uint8_t *r = w->ops + 64u * w->n_ops;
    memset(r, 0, 64);
    wr_u16(r, (uint32_t)kind);
    wr_u16(r + 2, (uint32_t)n_in);
    if (in) wr_u32(r + 4, in[0]);
    if (in && n_in >= 2) wr_u32(r + 8, in[1]);   /* in[1] = 0 when unused */
    wr_u32(r + 12, out);
    wr_u32(r + 16, data_offset);
    wr_u32(r + 20, data_size);
    for (int a = 0; a < 10 && attr; a++) wr_u32(r + 24 + 4 * a, (uint32_t)attr[a]);
    w->n_ops++;
}

void lbm_writer_meta(lbm_writer *w, const char *key, const char *value)
{
    const size_t kl = strlen(key), vl = strlen(value);
    void        *buf = w->meta;
    const int    ok = reserve(w, &buf, &w->cap_meta, w->meta_size, (uint64_t)kl + vl + 2u);
    w->meta = buf;
    if (!ok) return;
    char *p = w->meta + w->meta_size;
    memcpy(p, key, kl);
    p[kl] = '=';
    memcpy(p + kl + 1, value, vl);
    p[kl + 1 + vl] = '\n';
    w->meta_size += (uint32_t)(kl + vl + 2u);
}

/* Layout: header (64) | section table (3 x 16) | pad | META | pad | GRAPH | pad | DATA, each
 * section 16-aligned, padding zero, the file ending with DATA. */
lbm_status lbm_writer_finish(lbm_writer *w, uint32_t input, uint32_t output, uint8_t **file,
                             size_t *size)
{
    if (!file || !size) return LBM_ERR_ARG;
    *file = NULL;
    *size = 0;
    if (!w || w->failed) return LBM_ERR_ARG;
    const uint64_t graph_size = 16u + 32u * (uint64_t)w->n_tensors + 64u * (uint64_t)w->n_ops;
    const uint64_t sec_size[3] = { w->meta_size, graph_size, w->data_size };
    uint64_t       sec_off[3], end = 64u + 16u * 3u;
    for (int s = 0; s < 3; s++) {
        sec_off[s] = (end + 15u) & ~(uint64_t)15u;
        end        = sec_off[s] + sec_size[s];
    }
    if (end > 0xFFFFFFFFu || end > (uint64_t)SIZE_MAX) return LBM_ERR_ARG;
    uint8_t *f = calloc(1, (size_t)end);
    if (!f) return LBM_ERR_ARG;

    /* sections */
    if (w->meta_size) memcpy(f + sec_off[0], w->meta, w->meta_size);
    uint8_t *g = f + sec_off[1];
    wr_u32(g, w->n_tensors);
    wr_u32(g + 4, w->n_ops);
    wr_u32(g + 8, input);
    wr_u32(g + 12, output);
    if (w->n_tensors) memcpy(g + 16, w->tensors, 32u * (size_t)w->n_tensors);
    if (w->n_ops) memcpy(g + 16 + 32u * (size_t)w->n_tensors, w->ops, 64u * (size_t)w->n_ops);
    if (w->data_size) memcpy(f + sec_off[2], w->data, w->data_size);

    /* section table, then the header and its CRC */
    for (uint32_t s = 0; s < 3; s++) {
        uint8_t *r = f + 64 + 16 * s;
        wr_u32(r, s + 1);   /* 1 META, 2 GRAPH, 3 DATA */
        wr_u32(r + 4, (uint32_t)sec_off[s]);
        wr_u32(r + 8, (uint32_t)sec_size[s]);
        wr_u32(r + 12, lbm_crc32(0, f + sec_off[s], (size_t)sec_size[s]));
    }
    memcpy(f, "LBMF", 4);
    wr_u16(f + 4, LBM_VERSION_MAJOR);
    wr_u16(f + 6, LBM_VERSION_MINOR);
    wr_u32(f + 8, 64);
    wr_u32(f + 12, 3);
    wr_u32(f + 16, (uint32_t)end);
    wr_u32(f + 60, lbm_crc32(0, f, 60));
    *file = f;
    *size = (size_t)end;
    return LBM_OK;
}

void lbm_pack_row(const int8_t *q, uint32_t K, int bits, uint8_t *out)
{
    if (bits != 1 && bits != 2 && bits != 4 && bits != 8) return;
    const uint32_t per = 8u / (uint32_t)bits, mask = (1u << bits) - 1u;
    memset(out, 0, ((size_t)K * (uint32_t)bits + 7u) / 8u);   /* padding bits stay zero */
    for (uint32_t k = 0; k < K; k++) {
        /* bits 1: q > 0 -> 1 (+1), else 0 (-1); others: the low bits of two's complement */
        const uint32_t v = bits == 1 ? (q[k] > 0) : ((uint32_t)(int32_t)q[k] & mask);
        out[k / per] = (uint8_t)(out[k / per] | v << (k % per * (uint32_t)bits));
    }
}

/* TFLite's QuantizeMultiplier without libm: real = f * 2^e with f in [0.5, 1) (frexp,
 * done by exact doublings/halvings), m = round(f * 2^31) (half away from zero), and when
 * rounding gives 2^31, m = 2^30 and e + 1. Then real ~= m * 2^(e - 31), so shift = -e.
 * Representable: shift in -31..62, i.e. e in -62..31. A real below 2^-63 becomes m = 0
 * (exact: |a * real| < 2^-32 rounds to 0 for every int32 a); real >= 2^31, NaN or <= 0
 * are refused. */
int lbm_quantize_multiplier(double real, int32_t *m, int32_t *shift)
{
    *m     = 0;
    *shift = 0;
    if (!(real > 0.0) || !(real < 2147483648.0)) return 0;   /* also NaN */
    if (real < 0x1p-64) return 1;                             /* underflow: m = 0 is exact */
    double f = real;
    int    e = 0;
    while (f >= 1.0) f *= 0.5, e++;
    while (f < 0.5) f *= 2.0, e--;
    int64_t q = (int64_t)(f * 2147483648.0 + 0.5);
    if (q == (int64_t)1 << 31) q >>= 1, e++;
    if (e < -62) return 1;                                    /* below 2^-63: m = 0 */
    if (e > 31) return 0;
    *m     = (int32_t)q;
    *shift = -e;
    return 1;
}
