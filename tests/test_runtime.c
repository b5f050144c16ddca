/* test_runtime.c: tests of the integer-only runtime (runtime/lbm.c) and the .lbm writer
 * (runtime/lbm_write.c), and main() of the test_runtime binary.
 *
 * Kernels are checked against naive references written here (int64 arithmetic on the
 * unpacked int8 weights, division-based rounding), through whole models: every test builds
 * a small .lbm with the writer, loads it from an exact-size heap copy (so ASan catches any
 * read past the end) and runs it in an arena of exactly lbm_arena_size bytes (so it catches
 * a wrong memory plan). Malformed files: every truncation, every single-bit flip, and a
 * table of hand-made defects, each with its specific status.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lbm.h"
#include "runtime/lbm_write.h"
#include "tests/suites.h"

/* ---- helpers: rng, little-endian patching, loading ------------------------------------- */

static uint32_t rng_next(uint32_t *s)   /* xorshift32 */
{
    uint32_t x = *s;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return *s = x;
}

static int32_t rng_range(uint32_t *s, int32_t lo, int32_t hi)
{
    return lo + (int32_t)(rng_next(s) % (uint32_t)(hi - lo + 1));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* Section of a type (first table entry), or NULL. */
static uint8_t *section(uint8_t *f, uint32_t type, uint32_t *size)
{
    for (uint32_t s = 0; s < get32(f + 12); s++) {
        uint8_t *r = f + 64 + 16 * s;
        if (get32(r) == type) {
            if (size) *size = get32(r + 8);
            return f + get32(r + 4);
        }
    }
    return NULL;
}

static uint8_t *tensor_at(uint8_t *f, uint32_t t) { return section(f, 2, NULL) + 16 + 32 * t; }

static uint8_t *op_at(uint8_t *f, uint32_t i)
{
    uint8_t *g = section(f, 2, NULL);
    return g + 16 + 32 * get32(g) + 64 * i;
}

/* Recomputes every section CRC and the header CRC after a test patched the bytes. */
static void refresh_crcs(uint8_t *f, size_t size)
{
    for (uint32_t s = 0; s < get32(f + 12) && 64 + 16 * (s + 1) <= size; s++) {
        uint8_t *r = f + 64 + 16 * s;
        if ((uint64_t)get32(r + 4) + get32(r + 8) <= size)
            put32(r + 12, lbm_crc32(0, f + get32(r + 4), get32(r + 8)));
    }
    put32(f + 60, lbm_crc32(0, f, 60));
}

/* A loaded model with its own exact-size copy of the file (the model points into it). */
typedef struct loaded {
    lbm_model  m;
    uint8_t   *buf;
    lbm_status st;
    char       msg[256];
} loaded;

static lbm_status load_copy(loaded *l, const uint8_t *file, size_t size)
{
    l->buf = malloc(size ? size : 1);   /* malloc memory is suitably aligned for uint32_t */
    ck_assert_ptr_nonnull(l->buf);
    if (size) memcpy(l->buf, file, size);
    l->st = lbm_load(&l->m, l->buf, size, l->msg, sizeof l->msg);
    return l->st;
}

static void loaded_free(loaded *l)
{
    free(l->buf);
    l->buf = NULL;
}

/* Runs a loaded model once in an arena of exactly its reported size. */
static lbm_status run_exact(const lbm_model *m, const uint8_t *px, int32_t *scores, int *pred)
{
    const size_t n = lbm_arena_size(m);
    void        *arena = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(arena);
    const lbm_status st = lbm_run(m, px, arena, n, scores, pred);
    free(arena);
    return st;
}

/* Loads and runs file; scores must hold n_classes values. */
static void load_run(const uint8_t *file, size_t size, const uint8_t *px, int32_t *scores,
                     int *pred)
{
    loaded l;
    ck_assert_msg(load_copy(&l, file, size) == LBM_OK, "load: %s", l.msg);
    ck_assert_int_eq(run_exact(&l.m, px, scores, pred), LBM_OK);
    loaded_free(&l);
}

/* ---- helpers: building models ---------------------------------------------------------- */

static uint32_t tensor3(lbm_writer *w, int dtype, uint32_t C, uint32_t H, uint32_t W)
{
    return lbm_writer_tensor(w, dtype, 3, (uint32_t[]){ C, H, W }, 1.0f, 0);
}

static uint32_t tensor1(lbm_writer *w, int dtype, uint32_t F)
{
    return lbm_writer_tensor(w, dtype, 1, (uint32_t[]){ F }, 1.0f, 0);
}

static uint32_t data_i32(lbm_writer *w, const int32_t *v, uint32_t n)
{
    uint8_t *b = malloc(4 * (size_t)n + 1);
    for (uint32_t k = 0; k < n; k++) put32(b + 4 * k, (uint32_t)v[k]);
    const uint32_t off = lbm_writer_data(w, b, 4 * n);
    free(b);
    return off;
}

/* INPUT op. With lut NULL, pixel p becomes the INT8 value p - 128 (or the UINT8 value p), so
 * tests choose arbitrary activations through the pixels. */
static uint32_t add_input(lbm_writer *w, uint32_t in, int dtype, uint32_t C, uint32_t H,
                          uint32_t W, const uint8_t *lut)
{
    uint8_t *tab = malloc(256 * (size_t)C);
    for (uint32_t k = 0; k < 256 * C; k++)
        tab[k] = lut ? lut[k] : (uint8_t)(dtype == LBM_INT8 ? (k & 255) ^ 0x80 : k & 255);
    const uint32_t x   = tensor3(w, dtype, C, H, W);
    const uint32_t off = lbm_writer_data(w, tab, 256 * C);
    lbm_writer_op(w, LBM_OP_INPUT, 1, (uint32_t[]){ in, 0 }, x, off, 256 * C, NULL);
    free(tab);
    return x;
}

/* Parameters of a CONV2D/LINEAR as tests write them: q holds O x K unpacked weights. */
typedef struct wop {
    uint32_t       O, K;
    int            bits;
    const int8_t  *q;
    const int32_t *bias, *mult, *shift;
} wop;

static void add_wop(lbm_writer *w, int kind, uint32_t x, uint32_t y, const wop *p,
                    const int32_t attr[10])
{
    const uint32_t row = (p->K * (uint32_t)p->bits + 7) / 8;
    uint8_t       *packed = calloc((size_t)p->O * row + 1, 1);
    for (uint32_t o = 0; o < p->O; o++)
        lbm_pack_row(p->q + o * p->K, p->K, p->bits, packed + o * row);
    const uint32_t off = lbm_writer_data(w, packed, p->O * row);
    data_i32(w, p->bias, p->O);
    data_i32(w, p->mult, p->O);
    const uint32_t end = data_i32(w, p->shift, p->O) + 4 * p->O;
    lbm_writer_op(w, kind, 1, (uint32_t[]){ x, 0 }, y, off, end - off, attr);
    free(packed);
}

/* Identity CONV2D 1x1 (C -> C) from x to a new INT32 (C,H,W) tensor, times 2^scale_log2
 * (multiplier 2^30, shift -1 - scale_log2), plus bias[c] (NULL: 0). Exact for small values. */
static uint32_t add_identity_conv(lbm_writer *w, uint32_t x, uint32_t C, uint32_t H, uint32_t W,
                                  const int32_t *bias, int scale_log2)
{
    int8_t  *q = calloc((size_t)C * C, 1);
    int32_t *b = calloc(C, 4), *mu = calloc(C, 4), *sh = calloc(C, 4);
    for (uint32_t c = 0; c < C; c++) {
        q[c * C + c] = 1;
        b[c]  = bias ? bias[c] : 0;
        mu[c] = 1 << 30;
        sh[c] = -1 - scale_log2;
    }
    const uint32_t y = tensor3(w, LBM_INT32, C, H, W);
    const wop      p = { C, C, 8, q, b, mu, sh };
    add_wop(w, LBM_OP_CONV2D, x, y, &p, (const int32_t[10]){ (int32_t)C, 1, 1, 1, 0, 8 });
    free(q), free(b), free(mu), free(sh);
    return y;
}

/* Appends ops copying tensor t exactly into an INT32 (n) tensor, the graph output to use:
 * FLATTEN for INT32 (C,H,W); identity 1x1 CONV2D then FLATTEN for INT8/UINT8 (C,H,W);
 * identity LINEAR for INT8/UINT8 (F); nothing for INT32 (F). */
static uint32_t add_probe(lbm_writer *w, uint32_t t, int dtype, int n_dims, uint32_t C,
                          uint32_t H, uint32_t W)
{
    if (n_dims == 1 && dtype == LBM_INT32) return t;
    if (n_dims == 1) {
        int8_t  *q = calloc((size_t)C * C, 1);
        int32_t *b = calloc(C, 4), *mu = calloc(C, 4), *sh = calloc(C, 4);
        for (uint32_t c = 0; c < C; c++) q[c * C + c] = 1, mu[c] = 1 << 30, sh[c] = -1;
        const uint32_t y = tensor1(w, LBM_INT32, C);
        const wop      p = { C, C, 8, q, b, mu, sh };
        add_wop(w, LBM_OP_LINEAR, t, y, &p, (const int32_t[10]){ (int32_t)C, 0, 0, 0, 0, 8 });
        free(q), free(b), free(mu), free(sh);
        return y;
    }
    if (dtype != LBM_INT32) t = add_identity_conv(w, t, C, H, W, NULL, 0);
    const uint32_t f = tensor1(w, LBM_INT32, C * H * W);
    lbm_writer_op(w, LBM_OP_FLATTEN, 1, (uint32_t[]){ t, 0 }, f, 0, 0, NULL);
    return f;
}

static void finish(lbm_writer *w, uint32_t in, uint32_t out, uint8_t **file, size_t *size)
{
    ck_assert_int_eq(lbm_writer_finish(w, in, out, file, size), LBM_OK);
    lbm_writer_free(w);
}

/* ---- references ------------------------------------------------------------------------ */

/* round_half_up(a * m / 2^(31 + sh)) by floor division (the runtime uses shifts). */
static int64_t requant_ref(int32_t a, int32_t m, int sh)
{
    const int64_t p = (int64_t)a * m;
    const int     t = 31 + sh;
    if (t > 62) return (int64_t)floor(ldexp((double)p, -t) + 0.5);   /* |value| < 1/2 */
    const int64_t d = (int64_t)1 << t;
    int64_t       q = p / d, r = p % d;
    if (r < 0) q -= 1, r += d;                                        /* 0 <= r < d */
    return q + (2 * r >= d ? 1 : 0);
}

static int64_t finish_ref(int64_t v, int dtype, int32_t lo, int32_t hi)
{
    if (dtype == LBM_INT32) return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : v;
    return v < lo ? lo : v > hi ? hi : v;
}

/* floor(sum / count + 1/2) by remainder arithmetic. */
static int64_t avg_ref(int64_t sum, int64_t count)
{
    int64_t q = sum / count, r = sum % count;
    if (r < 0) q -= 1, r += count;
    return q + (2 * r >= count ? 1 : 0);
}

/* Weights in a width's range: 8 [-128,127], 4 [-8,7], 2 [-2,1], 1 {-1,+1}. */
static int8_t rand_weight(uint32_t *s, int bits)
{
    if (bits == 1) return (int8_t)(rng_next(s) & 1 ? 1 : -1);
    return (int8_t)rng_range(s, -(1 << (bits - 1)), (1 << (bits - 1)) - 1);
}

static int argmax_ref(const int64_t *v, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

/* ---- writer, CRC, packing, multipliers -------------------------------------------------- */

START_TEST(test_crc32_known_values)
{
    ck_assert_uint_eq(lbm_crc32(0, "123456789", 9), 0xCBF43926u);   /* the CRC-32 check value */
    ck_assert_uint_eq(lbm_crc32(0, "", 0), 0u);
    /* continuing a CRC equals one pass; compare against a bitwise reference */
    uint8_t  b[300];
    uint32_t s = 5;
    for (int k = 0; k < 300; k++) b[k] = (uint8_t)rng_next(&s);
    uint32_t ref = 0xFFFFFFFFu;
    for (int k = 0; k < 300; k++) {
        ref ^= b[k];
        for (int j = 0; j < 8; j++) ref = ref & 1 ? (ref >> 1) ^ 0xEDB88320u : ref >> 1;
    }
    ref = ~ref;
    ck_assert_uint_eq(lbm_crc32(0, b, 300), ref);
    ck_assert_uint_eq(lbm_crc32(lbm_crc32(0, b, 123), b + 123, 177), ref);
}
END_TEST

START_TEST(test_pack_row_layout)
{
    uint8_t out[8];
    memset(out, 0xAA, sizeof out);   /* sentinel: bytes past the row stay untouched */
    lbm_pack_row((const int8_t[]){ 1, -1, 127, -128 }, 4, 8, out);
    ck_assert_mem_eq(out, ((const uint8_t[]){ 0x01, 0xFF, 0x7F, 0x80, 0xAA }), 5);

    memset(out, 0xAA, sizeof out);   /* 4 bits: element 2t low nibble, partial byte zero-padded */
    lbm_pack_row((const int8_t[]){ 1, -1, 7, -8, 3 }, 5, 4, out);
    ck_assert_mem_eq(out, ((const uint8_t[]){ 0xF1, 0x87, 0x03, 0xAA }), 4);

    memset(out, 0xAA, sizeof out);   /* 2 bits: 01 11 10 00 | 01 */
    lbm_pack_row((const int8_t[]){ 1, -1, -2, 0, 1 }, 5, 2, out);
    ck_assert_mem_eq(out, ((const uint8_t[]){ 0x2D, 0x01, 0xAA }), 3);

    memset(out, 0xAA, sizeof out);   /* 1 bit: q > 0 -> 1; 0 and negatives -> 0 (-1) */
    lbm_pack_row((const int8_t[]){ 1, -1, 1, 1, -1, -1, 0, 1, 1, -1, 1 }, 11, 1, out);
    ck_assert_mem_eq(out, ((const uint8_t[]){ 0x8D, 0x05, 0xAA }), 3);

    memset(out, 0xAA, sizeof out);   /* unsupported width: writes nothing */
    lbm_pack_row((const int8_t[]){ 1, 2, 3 }, 3, 3, out);
    ck_assert_uint_eq(out[0], 0xAA);
}
END_TEST

START_TEST(test_quantize_multiplier)
{
    static const struct { double real; int32_t m, shift; } cases[] = {
        { 0.5, 1 << 30, 0 },
        { 1.0, 1 << 30, -1 },
        { 0.75, 1610612736, 0 },
        { 3.0, 1610612736, -2 },
        { 1e-6, 1125899907, 19 },              /* 1e-6 = 0.524288 * 2^-19 */
        { 1.0 - 0x1p-40, 1 << 30, -1 },        /* rounds to 2^31: halved, shift adjusted */
        { 0x1p-63, 1 << 30, 62 },               /* smallest representable */
        { 2147483647.0, 2147483647, -31 },      /* largest */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int32_t m = -1, sh = -1;
        ck_assert_int_eq(lbm_quantize_multiplier(cases[k].real, &m, &sh), 1);
        ck_assert_int_eq(m, cases[k].m);
        ck_assert_int_eq(sh, cases[k].shift);
        ck_assert_int_ge(m, 1 << 30);
        ck_assert(sh >= -31 && sh <= 62);
        const double back = ldexp((double)m, -(31 + sh));
        ck_assert_double_le(fabs(back - cases[k].real), ldexp(cases[k].real, -30));
    }
    int32_t m = 7, sh = 7;
    ck_assert_int_eq(lbm_quantize_multiplier(0.0, &m, &sh), 0);
    ck_assert(m == 0 && sh == 0);
    ck_assert_int_eq(lbm_quantize_multiplier(-1.0, &m, &sh), 0);
    ck_assert_int_eq(lbm_quantize_multiplier(NAN, &m, &sh), 0);
    ck_assert_int_eq(lbm_quantize_multiplier(4294967296.0, &m, &sh), 0);   /* too large */
    ck_assert_int_eq(lbm_quantize_multiplier(0x1p-70, &m, &sh), 1);        /* underflow */
    ck_assert(m == 0 && sh == 0);
    /* random reals: always in range and within 2^-30 relative */
    uint32_t s = 99;
    for (int k = 0; k < 2000; k++) {
        const double real = ldexp(1.0 + rng_next(&s) / 4294967296.0, rng_range(&s, -60, 29));
        ck_assert_int_eq(lbm_quantize_multiplier(real, &m, &sh), 1);
        ck_assert(m >= (1 << 30) && sh >= -31 && sh <= 62);
        ck_assert_double_le(fabs(ldexp((double)m, -(31 + sh)) - real), ldexp(real, -30));
    }
}
END_TEST

/* The tiny model of the round-trip test: INPUT (1,2,2) -> FLATTEN -> LINEAR (3) INT32. */
static void make_tiny(uint8_t **file, size_t *size)
{
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, 1, 2, 2);
    const uint32_t x  = add_input(&w, in, LBM_UINT8, 1, 2, 2, NULL);
    const uint32_t f  = tensor1(&w, LBM_UINT8, 4);
    lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ x, 0 }, f, 0, 0, NULL);
    const int8_t  q[12]  = { 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1 };
    const int32_t b[3]   = { 0, 10, -1000 };
    const int32_t mu[3]  = { 1 << 30, 1 << 30, 1 << 30 }, sh[3] = { -1, -1, -1 };
    const wop     p      = { 3, 4, 8, q, b, mu, sh };
    const uint32_t y = tensor1(&w, LBM_INT32, 3);
    add_wop(&w, LBM_OP_LINEAR, f, y, &p, (const int32_t[10]){ 3, 0, 0, 0, 0, 8 });
    lbm_writer_meta(&w, "model", "tiny");
    lbm_writer_meta(&w, "modelx", "other");
    lbm_writer_meta(&w, "input", "1,2,2");
    lbm_writer_meta(&w, "note", "a=b");
    finish(&w, in, y, file, size);
}

START_TEST(test_round_trip_and_meta)
{
    uint8_t *file;
    size_t   size;
    make_tiny(&file, &size);
    /* layout: header fields, 16-aligned sections, CRCs */
    ck_assert_mem_eq(file, "LBMF", 4);
    ck_assert_uint_eq(get32(file + 4), 1u);   /* major 1, minor 0 */
    ck_assert_uint_eq(get32(file + 8), 64u);
    ck_assert_uint_eq(get32(file + 12), 3u);
    ck_assert_uint_eq(get32(file + 16), size);
    ck_assert_uint_eq(get32(file + 60), lbm_crc32(0, file, 60));
    for (uint32_t s = 0; s < 3; s++) {
        const uint8_t *r = file + 64 + 16 * s;
        ck_assert_uint_eq(get32(r), s + 1);
        ck_assert_uint_eq(get32(r + 4) % 16, 0);
        ck_assert_uint_eq(get32(r + 12), lbm_crc32(0, file + get32(r + 4), get32(r + 8)));
    }
    loaded l;
    ck_assert_msg(load_copy(&l, file, size) == LBM_OK, "%s", l.msg);
    ck_assert_str_eq(l.msg, "");
    ck_assert_uint_eq(l.m.n_tensors, 4);
    ck_assert_uint_eq(l.m.n_ops, 3);
    ck_assert_uint_eq(l.m.input, 0);
    ck_assert_uint_eq(l.m.output, 3);
    ck_assert_uint_eq(l.m.input_bytes, 4);
    ck_assert_uint_eq(l.m.n_classes, 3);
    ck_assert_uint_eq(lbm_arena_size(&l.m), l.m.arena_bytes);
    ck_assert_uint_gt(l.m.arena_bytes, 0);
    size_t      len = 0;
    const char *v = lbm_meta(&l.m, "model", &len);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(len, 4);
    ck_assert_mem_eq(v, "tiny", 4);
    v = lbm_meta(&l.m, "modelx", &len);
    ck_assert(v && len == 5 && memcmp(v, "other", 5) == 0);
    v = lbm_meta(&l.m, "note", &len);
    ck_assert(v && len == 3 && memcmp(v, "a=b", 3) == 0);   /* value may hold '=' */
    ck_assert_ptr_null(lbm_meta(&l.m, "mode", &len));      /* a prefix is not a key */
    ck_assert_ptr_null(lbm_meta(&l.m, "classes", NULL));
    ck_assert_ptr_nonnull(lbm_meta(&l.m, "input", NULL));
    /* and it runs: scores = (p0, p1 + 10, sum - 1000) */
    int32_t scores[3];
    int     pred = -1;
    ck_assert_int_eq(run_exact(&l.m, (const uint8_t[]){ 200, 7, 1, 2 }, scores, &pred), LBM_OK);
    ck_assert_int_eq(scores[0], 200);
    ck_assert_int_eq(scores[1], 17);
    ck_assert_int_eq(scores[2], 210 - 1000);
    ck_assert_int_eq(pred, 0);
    loaded_free(&l);
    free(file);
}
END_TEST

START_TEST(test_status_strings)
{
    const lbm_status all[] = { LBM_OK, LBM_ERR_ARG, LBM_ERR_FORMAT, LBM_ERR_VERSION, LBM_ERR_CRC };
    for (int k = 0; k < 5; k++) {
        ck_assert_ptr_nonnull(lbm_status_str(all[k]));
        ck_assert_uint_gt(strlen(lbm_status_str(all[k])), 0);
        for (int j = 0; j < k; j++)
            ck_assert_str_ne(lbm_status_str(all[k]), lbm_status_str(all[j]));
    }
}
END_TEST

/* ---- kernels against references --------------------------------------------------------- */

/* CONV2D: C=3, 7x9 input, O=4, kernel 3x2, stride 2, pad 1 -> 4x5. _i picks the weight width
 * (8, 4, 2, 1), the output dtype (INT8 with a narrowed clamp, UINT8 with out_min 0, INT32),
 * the input dtype (INT8 via INPUT, UINT8 straight from the graph input) and acc_shift. */
START_TEST(test_conv2d_vs_reference)
{
    enum { C = 3, H = 7, W = 9, O = 4, KH = 3, KW = 2, S = 2, P = 1, HO = 4, WO = 5 };
    static const int widths[4] = { 8, 4, 2, 1 };
    static const int dtypes[3] = { LBM_INT8, LBM_UINT8, LBM_INT32 };
    const int      bits = widths[_i % 4], ydt = dtypes[_i / 4 % 3];
    const int      xdt  = _i < 12 ? LBM_INT8 : LBM_UINT8, ash = _i % 3 * 3;
    const int32_t  lo = ydt == LBM_INT8 ? -100 : 0;
    const int32_t  hi = ydt == LBM_INT8 ? 90 : ydt == LBM_UINT8 ? 255 : 0;
    uint32_t       s = 1000u + (uint32_t)_i;
    int8_t         q[O * C * KH * KW];
    int32_t        bias[O], mult[O], shift[O], x[C * H * W];
    uint8_t        px[C * H * W];
    for (int k = 0; k < O * C * KH * KW; k++) q[k] = rand_weight(&s, bits);
    const int base = bits == 8 ? 8 : bits == 4 ? 4 : 1;   /* spreads INT8/UINT8 outputs */
    for (int o = 0; o < O; o++) {
        bias[o] = rng_range(&s, -3000, 3000) / (1 << (8 - bits)) * (1 << ash) + rng_range(&s, 0, 7);
        mult[o]  = rng_range(&s, 1 << 30, INT32_MAX);
        shift[o] =
            ash + (ydt == LBM_INT32 ? rng_range(&s, -3, 4) : rng_range(&s, base - 1, base + 1));
    }
    if (_i % 3 == 0) mult[O - 1] = 0;                    /* an all-zero channel */
    for (int k = 0; k < C * H * W; k++) {
        x[k]  = xdt == LBM_INT8 ? rng_range(&s, -128, 127) : rng_range(&s, 0, 255);
        px[k] = (uint8_t)(xdt == LBM_INT8 ? x[k] + 128 : x[k]);
    }
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, C, H, W);
    const uint32_t xt = xdt == LBM_INT8 ? add_input(&w, in, LBM_INT8, C, H, W, NULL) : in;
    const uint32_t yt = tensor3(&w, ydt, O, HO, WO);
    const wop      p  = { O, C * KH * KW, bits, q, bias, mult, shift };
    add_wop(&w, LBM_OP_CONV2D, xt, yt, &p,
            (const int32_t[10]){ O, KH, KW, S, P, bits, lo, hi, ash });
    const uint32_t out = add_probe(&w, yt, ydt, 3, O, HO, WO);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);

    int64_t want[O * HO * WO];
    for (int o = 0; o < O; o++)
        for (int oy = 0; oy < HO; oy++)
            for (int ox = 0; ox < WO; ox++) {
                int64_t acc = 0;
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < KH; i++)
                        for (int j = 0; j < KW; j++) {
                            const int iy = oy * S - P + i, ix = ox * S - P + j;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            acc += (int64_t)q[((o * C + c) * KH + i) * KW + j] *
                                   x[(c * H + iy) * W + ix];
                        }
                const int64_t t = acc * (1 << ash) + bias[o];
                ck_assert(t >= INT32_MIN && t <= INT32_MAX);
                want[(o * HO + oy) * WO + ox] =
                    finish_ref(requant_ref((int32_t)t, mult[o], shift[o]), ydt, lo, hi);
            }
    int32_t got[O * HO * WO];
    int     pred;
    load_run(file, size, px, got, &pred);
    int clamped = 0;
    for (int k = 0; k < O * HO * WO; k++) {
        ck_assert_msg(got[k] == want[k], "bits %d out %d: [%d] got %d want %lld", bits, ydt, k,
                      got[k], (long long)want[k]);
        clamped += ydt != LBM_INT32 && (want[k] == lo || want[k] == hi);
    }
    if (ydt != LBM_INT32) ck_assert_int_lt(clamped, O * HO * WO);   /* not all saturated */
    ck_assert_int_eq(pred, argmax_ref(want, O * HO * WO));
    free(file);
}
END_TEST

/* LINEAR on a (2,3,3) input flattened (K = 18: partial last bytes at 1, 2 and 4 bits, and
 * weight blocks that need alignment padding), O = 5, every width and output dtype, acc_shift
 * 0, 4 or 8. */
START_TEST(test_linear_vs_reference)
{
    enum { C = 2, H = 3, W = 3, K = C * H * W, O = 5 };
    static const int widths[4] = { 8, 4, 2, 1 };
    static const int dtypes[3] = { LBM_INT8, LBM_UINT8, LBM_INT32 };
    const int     bits = widths[_i % 4], ydt = dtypes[_i / 4 % 3];
    const int     xdt  = _i < 12 ? LBM_UINT8 : LBM_INT8, ash = _i % 3 * 4;
    const int32_t lo = ydt == LBM_INT8 ? -128 : 0;
    const int32_t hi = ydt == LBM_INT8 ? 127 : ydt == LBM_UINT8 ? 255 : 0;
    uint32_t      s = 2000u + (uint32_t)_i;
    int8_t        q[O * K];
    int32_t       bias[O], mult[O], shift[O], x[K];
    uint8_t       px[K];
    for (int k = 0; k < O * K; k++) q[k] = rand_weight(&s, bits);
    for (int o = 0; o < O; o++) {
        bias[o]  = rng_range(&s, -2000, 2000) * (1 << ash) + rng_range(&s, -15, 15);
        mult[o]  = rng_range(&s, 1 << 30, INT32_MAX);
        shift[o] = ash + (ydt == LBM_INT32 ? rng_range(&s, -2, 2) : (bits == 8 ? 9 : 3));
    }
    for (int k = 0; k < K; k++) {
        x[k]  = xdt == LBM_INT8 ? rng_range(&s, -128, 127) : rng_range(&s, 0, 255);
        px[k] = (uint8_t)(xdt == LBM_INT8 ? x[k] + 128 : x[k]);
    }
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, C, H, W);
    const uint32_t xt = xdt == LBM_INT8 ? add_input(&w, in, LBM_INT8, C, H, W, NULL) : in;
    const uint32_t yt = tensor1(&w, ydt, O);
    const wop      p  = { O, K, bits, q, bias, mult, shift };
    add_wop(&w, LBM_OP_LINEAR, xt, yt, &p, (const int32_t[10]){ O, 0, 0, 0, 0, bits, lo, hi, ash });
    const uint32_t out = add_probe(&w, yt, ydt, 1, O, 1, 1);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);
    int64_t want[O];
    for (int o = 0; o < O; o++) {
        int64_t acc = 0;
        for (int k = 0; k < K; k++) acc += (int64_t)q[o * K + k] * x[k];
        const int64_t t = acc * (1 << ash) + bias[o];
        ck_assert(t >= INT32_MIN && t <= INT32_MAX);
        want[o] = finish_ref(requant_ref((int32_t)t, mult[o], shift[o]), ydt, lo, hi);
    }
    int32_t got[O];
    int     pred;
    load_run(file, size, px, got, &pred);
    for (int o = 0; o < O; o++) ck_assert_int_eq(got[o], want[o]);
    ck_assert_int_eq(pred, argmax_ref(want, O));
    free(file);
}
END_TEST

/* MAXPOOL k=3 stride 2 pad 1 on (2,7,7): INT8 (channel 1 all negative, so a padding zero
 * must never win), UINT8 straight from the input, and INT32 (all far below zero). */
START_TEST(test_maxpool_vs_reference)
{
    enum { C = 2, H = 7, W = 7, K = 3, S = 2, P = 1, HO = 4, WO = 4 };
    const int dt = (int[]){ LBM_INT8, LBM_UINT8, LBM_INT32 }[_i];
    uint32_t  s = 3000u + (uint32_t)_i;
    int32_t   x[C * H * W];
    uint8_t   px[C * H * W];
    for (int k = 0; k < C * H * W; k++) {
        int32_t v = dt == LBM_UINT8 ? rng_range(&s, 0, 255) : rng_range(&s, -128, 127);
        if (dt == LBM_INT8 && k >= H * W) v = rng_range(&s, -128, -1);
        px[k] = (uint8_t)(dt == LBM_UINT8 ? v : v + 128);
        x[k]  = dt == LBM_INT32 ? v - 100000 : v;
    }
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, C, H, W);
    uint32_t       xt = in;
    if (dt != LBM_UINT8) xt = add_input(&w, in, LBM_INT8, C, H, W, NULL);
    if (dt == LBM_INT32)
        xt = add_identity_conv(&w, xt, C, H, W, (const int32_t[]){ -100000, -100000 }, 0);
    const uint32_t yt = tensor3(&w, dt, C, HO, WO);
    lbm_writer_op(&w, LBM_OP_MAXPOOL, 1, (uint32_t[]){ xt, 0 }, yt, 0, 0,
                  (const int32_t[10]){ K, S, P });
    const uint32_t out = add_probe(&w, yt, dt, 3, C, HO, WO);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);
    int32_t got[C * HO * WO];
    int     pred;
    load_run(file, size, px, got, &pred);
    for (int c = 0; c < C; c++)
        for (int oy = 0; oy < HO; oy++)
            for (int ox = 0; ox < WO; ox++) {
                int64_t best = INT64_MIN;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        const int iy = oy * S - P + i, ix = ox * S - P + j;
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W &&
                            x[(c * H + iy) * W + ix] > best)
                            best = x[(c * H + iy) * W + ix];
                    }
                ck_assert_int_eq(got[(c * HO + oy) * WO + ox], best);
            }
    free(file);
}
END_TEST

/* AVGPOOL rounding at exact halves, negative sums included: 2x2 windows of a (1,4,4) INT32
 * tensor with sums -6, -2, 2, -10 -> -1.5, -0.5, 0.5, -2.5 -> -1, 0, 1, -2. */
START_TEST(test_avgpool_halves)
{
    const int32_t x[16] = { -1, -2, -1, 0,  -3, 0, 0, -1,  1, 0, -3, -3,  0, 1, -2, -2 };
    uint8_t       px[16];
    for (int k = 0; k < 16; k++) px[k] = (uint8_t)(x[k] + 128);
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, 1, 4, 4);
    const uint32_t xt = add_input(&w, in, LBM_INT8, 1, 4, 4, NULL);
    const uint32_t it = add_identity_conv(&w, xt, 1, 4, 4, NULL, 0);
    const uint32_t yt = tensor3(&w, LBM_INT32, 1, 2, 2);
    lbm_writer_op(&w, LBM_OP_AVGPOOL, 1, (uint32_t[]){ it, 0 }, yt, 0, 0,
                  (const int32_t[10]){ 2, 2, 0 });
    const uint32_t out = add_probe(&w, yt, LBM_INT32, 3, 1, 2, 2);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);
    int32_t got[4];
    load_run(file, size, px, got, NULL);
    ck_assert_int_eq(got[0], -1);
    ck_assert_int_eq(got[1], 0);
    ck_assert_int_eq(got[2], 1);
    ck_assert_int_eq(got[3], -2);
    free(file);
}
END_TEST

/* AVGPOOL k=3 stride 2 pad 1 (count 9, padding counted as zero) and GAP, at scale 1 (the
 * 32-bit division path) and 2^20 (sums past 2^31: the 64-bit path). _i: 0/1 scale, 2/3 GAP. */
START_TEST(test_avgpool_gap_vs_reference)
{
    enum { C = 3, H = 7, W = 5, K = 3, S = 2, P = 1, HO = 4, WO = 3 };
    const int gap = _i >= 2, scale = _i % 2 ? 20 : 0;
    uint32_t  s = 4000u + (uint32_t)_i;
    int64_t   x[C * H * W];
    uint8_t   px[C * H * W];
    const int32_t bias[C] = { 0, -300, 200 };
    for (int k = 0; k < C * H * W; k++) {
        const int32_t v = rng_range(&s, -128, 127);
        px[k] = (uint8_t)(v + 128);
        x[k]  = ((int64_t)v + bias[k / (H * W)]) * ((int64_t)1 << scale);
    }
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, C, H, W);
    const uint32_t xt = add_input(&w, in, LBM_INT8, C, H, W, NULL);
    const uint32_t it = add_identity_conv(&w, xt, C, H, W, bias, scale);
    uint32_t       out;
    if (gap) {
        out = tensor1(&w, LBM_INT32, C);
        lbm_writer_op(&w, LBM_OP_GAP, 1, (uint32_t[]){ it, 0 }, out, 0, 0, NULL);
    } else {
        const uint32_t yt = tensor3(&w, LBM_INT32, C, HO, WO);
        lbm_writer_op(&w, LBM_OP_AVGPOOL, 1, (uint32_t[]){ it, 0 }, yt, 0, 0,
                      (const int32_t[10]){ K, S, P });
        out = add_probe(&w, yt, LBM_INT32, 3, C, HO, WO);
    }
    uint8_t *file;
    size_t   size;
    finish(&w, in, out, &file, &size);
    int32_t got[C * HO * WO];
    load_run(file, size, px, got, NULL);
    for (int c = 0; c < C; c++) {
        if (gap) {
            int64_t sum = 0;
            for (int k = 0; k < H * W; k++) sum += x[c * H * W + k];
            ck_assert_int_eq(got[c], avg_ref(sum, H * W));
            continue;
        }
        for (int oy = 0; oy < HO; oy++)
            for (int ox = 0; ox < WO; ox++) {
                int64_t sum = 0;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        const int iy = oy * S - P + i, ix = ox * S - P + j;
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W) sum += x[(c * H + iy) * W + ix];
                    }
                ck_assert_int_eq(got[(c * HO + oy) * WO + ox], avg_ref(sum, K * K));
            }
    }
    free(file);
}
END_TEST

/* ADD and RELU, with a diamond: a = conv(x) (INT32), b = relu(a), c = a + b, d = c + c. The
 * planner must keep a alive until the ADD (a wrong plan overwrites it). Also RELU on INT8. */
START_TEST(test_add_relu_diamond)
{
    enum { C = 2, H = 3, W = 4, N = C * H * W };
    uint32_t s = 5000;
    int32_t  x[N];
    uint8_t  px[N];
    for (int k = 0; k < N; k++) {
        x[k]  = rng_range(&s, -128, 127);
        px[k] = (uint8_t)(x[k] + 128);
    }
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, C, H, W);
    const uint32_t xt = add_input(&w, in, LBM_INT8, C, H, W, NULL);
    const uint32_t a  = add_identity_conv(&w, xt, C, H, W, (const int32_t[]){ -20, 30 }, 0);
    const uint32_t b  = tensor3(&w, LBM_INT32, C, H, W);
    lbm_writer_op(&w, LBM_OP_RELU, 1, (uint32_t[]){ a, 0 }, b, 0, 0, NULL);
    const uint32_t c = tensor3(&w, LBM_INT32, C, H, W);
    lbm_writer_op(&w, LBM_OP_ADD, 2, (uint32_t[]){ a, b }, c, 0, 0, NULL);
    const uint32_t d = tensor3(&w, LBM_INT32, C, H, W);
    lbm_writer_op(&w, LBM_OP_ADD, 2, (uint32_t[]){ c, c }, d, 0, 0, NULL);
    const uint32_t r8 = tensor3(&w, LBM_INT8, C, H, W);       /* RELU on INT8 */
    lbm_writer_op(&w, LBM_OP_RELU, 1, (uint32_t[]){ xt, 0 }, r8, 0, 0, NULL);
    const uint32_t ri = add_identity_conv(&w, r8, C, H, W, NULL, 0);
    const uint32_t e  = tensor3(&w, LBM_INT32, C, H, W);
    lbm_writer_op(&w, LBM_OP_ADD, 2, (uint32_t[]){ d, ri }, e, 0, 0, NULL);
    const uint32_t out = add_probe(&w, e, LBM_INT32, 3, C, H, W);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);
    int32_t got[N];
    load_run(file, size, px, got, NULL);
    for (int k = 0; k < N; k++) {
        const int32_t av = x[k] + (k < H * W ? -20 : 30);
        const int32_t cv = av + (av > 0 ? av : 0);
        ck_assert_int_eq(got[k], 2 * cv + (x[k] > 0 ? x[k] : 0));
    }
    free(file);
}
END_TEST

/* REQUANT INT32 -> INT8/UINT8 with several multipliers and shifts (negative ones included);
 * the INT32 input is (x + bias) * 2^pre. */
static const struct {
    int32_t m, sh;
    int     dtype;
    int32_t lo, hi, pre;
} requant_cases[] = {
    { 1 << 30, -1, LBM_INT8, -128, 127, 0 },        /* identity */
    { 1610612736, 0, LBM_INT8, -128, 127, 0 },      /* x 0.75 */
    { INT32_MAX, 5, LBM_INT8, -128, 127, 3 },
    { 1234567890, -3, LBM_INT8, -100, 100, 0 },     /* x ~4.6, clamps */
    { 1 << 30, 7, LBM_INT8, -128, 127, 7 },         /* exact halves, negative too */
    { 1518500250, 12, LBM_UINT8, 0, 255, 12 },
    { 1 << 30, 62, LBM_UINT8, 0, 255, 20 },         /* total shift 93: 0 */
    { 1 << 30, -31, LBM_INT8, -128, 127, 0 },       /* total shift 0: the product, clamped */
    { 0, 0, LBM_UINT8, 3, 200, 0 },                 /* multiplier 0 -> 0 -> out_min */
};

START_TEST(test_requant_op)
{
    enum { C = 2, H = 4, W = 5, N = C * H * W };
    const int     dt = requant_cases[_i].dtype;
    const int32_t m = requant_cases[_i].m, sh = requant_cases[_i].sh;
    const int32_t lo = requant_cases[_i].lo, hi = requant_cases[_i].hi, pre = requant_cases[_i].pre;
    const int32_t bias[C] = { -37, 51 };
    uint32_t      s = 6000u + (uint32_t)_i;
    int32_t       v[N];
    uint8_t       px[N];
    for (int k = 0; k < N; k++) {
        const int32_t x = rng_range(&s, -128, 127);
        px[k] = (uint8_t)(x + 128);
        v[k]  = (x + bias[k / (H * W)]) * (1 << pre);
    }
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, C, H, W);
    const uint32_t xt = add_input(&w, in, LBM_INT8, C, H, W, NULL);
    const uint32_t it = add_identity_conv(&w, xt, C, H, W, bias, pre);
    const uint32_t yt = tensor3(&w, dt, C, H, W);
    lbm_writer_op(&w, LBM_OP_REQUANT, 1, (uint32_t[]){ it, 0 }, yt, 0, 0,
                  (const int32_t[10]){ m, sh, 0, 0, 0, 0, lo, hi });
    const uint32_t out = add_probe(&w, yt, dt, 3, C, H, W);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);
    int32_t got[N];
    load_run(file, size, px, got, NULL);
    for (int k = 0; k < N; k++)
        ck_assert_msg(got[k] == finish_ref(requant_ref(v[k], m, sh), dt, lo, hi),
                      "case %d: requant(%d) got %d", _i, v[k], got[k]);
    free(file);
}
END_TEST

/* requant through a CONV2D with INT32 output over the whole int32 range: per channel a bias
 * near the extremes and a (multiplier, shift) from the ends of their ranges; INT32 outputs
 * saturate. */
START_TEST(test_requant_int32_extremes)
{
    enum { C = 12, H = 2, W = 3, N = C * H * W };
    const int32_t bias[C]  = { INT32_MAX - 200, INT32_MIN + 200, -1000000007, 999999937, 5,
                               -5, INT32_MAX - 200, INT32_MIN + 200, 123456789, -123456789,
                               1, -1 };
    const int32_t mult[C]  = { INT32_MAX, INT32_MAX, 1 << 30, 1518500250, 1 << 30,
                               1 << 30, 1 << 30, 1 << 30, 0, INT32_MAX, 1518500250, INT32_MAX };
    const int32_t shift[C] = { -31, -30, -1, 0, 30, 61, 62, 62, 3, 31, -31, -31 };
    int8_t        q[C * C];
    memset(q, 0, sizeof q);
    for (int c = 0; c < C - 2; c++) q[c * C + c] = 1;   /* the last two: acc = bias = +-1 */
    uint32_t s = 7000;
    int32_t  x[N];
    uint8_t  px[N];
    for (int k = 0; k < N; k++) {
        x[k]  = rng_range(&s, -128, 127);
        px[k] = (uint8_t)(x[k] + 128);
    }
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, C, H, W);
    const uint32_t xt = add_input(&w, in, LBM_INT8, C, H, W, NULL);
    const uint32_t yt = tensor3(&w, LBM_INT32, C, H, W);
    const wop      p  = { C, C, 8, q, bias, mult, shift };
    add_wop(&w, LBM_OP_CONV2D, xt, yt, &p, (const int32_t[10]){ C, 1, 1, 1, 0, 8 });
    const uint32_t out = add_probe(&w, yt, LBM_INT32, 3, C, H, W);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);
    int32_t got[N];
    load_run(file, size, px, got, NULL);
    for (int k = 0; k < N; k++) {
        const int     c   = k / (H * W);
        const int32_t acc = bias[c] + (c < C - 2 ? x[k] : 0);
        ck_assert_int_eq(got[k], finish_ref(requant_ref(acc, mult[c], shift[c]), LBM_INT32, 0, 0));
    }
    ck_assert_int_eq(got[0], x[0] + bias[0] > 0 ? INT32_MAX : INT32_MIN);   /* saturated */
    ck_assert_int_eq(got[(C - 2) * H * W], 1518500250);      /* total shift 0: the product */
    ck_assert_int_eq(got[(C - 1) * H * W], -INT32_MAX);
    free(file);
}
END_TEST

/* INPUT: an arbitrary per-channel table, to INT8 and to UINT8. */
START_TEST(test_input_lut)
{
    enum { C = 2, H = 3, W = 4, N = C * H * W };
    const int dt = _i ? LBM_UINT8 : LBM_INT8;
    uint32_t  s  = 8000u + (uint32_t)_i;
    uint8_t   lut[256 * C], px[N];
    for (int k = 0; k < 256 * C; k++) lut[k] = (uint8_t)rng_next(&s);
    for (int k = 0; k < N; k++) px[k] = (uint8_t)rng_next(&s);
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in  = tensor3(&w, LBM_UINT8, C, H, W);
    const uint32_t xt  = add_input(&w, in, dt, C, H, W, lut);
    const uint32_t out = add_probe(&w, xt, dt, 3, C, H, W);
    uint8_t       *file;
    size_t         size;
    finish(&w, in, out, &file, &size);
    int32_t got[N];
    load_run(file, size, px, got, NULL);
    for (int k = 0; k < N; k++) {
        const uint8_t b = lut[256 * (k / (H * W)) + px[k]];
        ck_assert_int_eq(got[k], dt == LBM_INT8 ? (int32_t)(int8_t)b : (int32_t)b);
    }
    free(file);
}
END_TEST

/* ---- end to end ------------------------------------------------------------------------- */

/* INPUT (3,8,8) -> CONV2D 4x3x3 s1 p1, 4-bit, acc_shift 2, UINT8 out [0,255] -> MAXPOOL 2/2
 * -> FLATTEN (64) -> LINEAR 10, 2-bit, INT32 scores. The reference follows the same steps in
 * int64. */
enum { E_C = 3, E_H = 8, E_W = 8, E_O = 4, E_P = 4, E_F = E_O * E_P * E_P, E_N = 10 };

typedef struct chain {
    uint8_t lut[256 * E_C];
    int8_t  cq[E_O * E_C * 9], lq[E_N * E_F];
    int32_t cb[E_O], cm[E_O], cs[E_O], lb[E_N], lm[E_N], ls[E_N];
} chain;

static void chain_init(chain *ch, uint32_t seed)
{
    uint32_t s = seed;
    for (int k = 0; k < 256 * E_C; k++) ch->lut[k] = (uint8_t)((k & 255) / 2 - 64 + k / 256);
    for (int k = 0; k < E_O * E_C * 9; k++) ch->cq[k] = rand_weight(&s, 4);
    for (int k = 0; k < E_N * E_F; k++) ch->lq[k] = rand_weight(&s, 2);
    for (int o = 0; o < E_O; o++) {
        ch->cb[o] = rng_range(&s, -2000, 2000);
        ch->cm[o] = rng_range(&s, 1 << 30, INT32_MAX);
        ch->cs[o] = 5;
    }
    for (int o = 0; o < E_N; o++) {
        ch->lb[o] = rng_range(&s, -500, 500);
        ch->lm[o] = rng_range(&s, 1 << 30, INT32_MAX);
        ch->ls[o] = -1;
    }
}

static void chain_file(const chain *ch, uint8_t **file, size_t *size)
{
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, E_C, E_H, E_W);
    const uint32_t x  = add_input(&w, in, LBM_INT8, E_C, E_H, E_W, ch->lut);
    const uint32_t y  = tensor3(&w, LBM_UINT8, E_O, E_H, E_W);
    const wop      cp = { E_O, E_C * 9, 4, ch->cq, ch->cb, ch->cm, ch->cs };
    add_wop(&w, LBM_OP_CONV2D, x, y, &cp, (const int32_t[10]){ E_O, 3, 3, 1, 1, 4, 0, 255, 2 });
    const uint32_t mp = tensor3(&w, LBM_UINT8, E_O, E_P, E_P);
    lbm_writer_op(&w, LBM_OP_MAXPOOL, 1, (uint32_t[]){ y, 0 }, mp, 0, 0,
                  (const int32_t[10]){ 2, 2 });
    const uint32_t f = tensor1(&w, LBM_UINT8, E_F);
    lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ mp, 0 }, f, 0, 0, NULL);
    const uint32_t z  = tensor1(&w, LBM_INT32, E_N);
    const wop      lp = { E_N, E_F, 2, ch->lq, ch->lb, ch->lm, ch->ls };
    add_wop(&w, LBM_OP_LINEAR, f, z, &lp, (const int32_t[10]){ E_N, 0, 0, 0, 0, 2 });
    lbm_writer_meta(&w, "model", "chain");
    lbm_writer_meta(&w, "classes", "10");
    finish(&w, in, z, file, size);
}

static void chain_ref(const chain *ch, const uint8_t *px, int64_t *scores)
{
    int32_t x[E_C * E_H * E_W], y[E_O * E_H * E_W], f[E_F];
    for (int k = 0; k < E_C * E_H * E_W; k++)
        x[k] = (int8_t)ch->lut[256 * (k / (E_H * E_W)) + px[k]];
    for (int o = 0; o < E_O; o++)
        for (int oy = 0; oy < E_H; oy++)
            for (int ox = 0; ox < E_W; ox++) {
                int64_t acc = 0;   /* then t = acc * 2^2 + bias (acc_shift 2) */
                for (int c = 0; c < E_C; c++)
                    for (int i = 0; i < 3; i++)
                        for (int j = 0; j < 3; j++) {
                            const int iy = oy - 1 + i, ix = ox - 1 + j;
                            if (iy < 0 || iy >= E_H || ix < 0 || ix >= E_W) continue;
                            acc += ch->cq[(o * E_C + c) * 9 + i * 3 + j] *
                                   x[(c * E_H + iy) * E_W + ix];
                        }
                const int32_t t = (int32_t)(acc * 4 + ch->cb[o]);
                y[(o * E_H + oy) * E_W + ox] =
                    (int32_t)finish_ref(requant_ref(t, ch->cm[o], ch->cs[o]), LBM_UINT8, 0, 255);
            }
    for (int o = 0; o < E_O; o++)
        for (int py = 0; py < E_P; py++)
            for (int pxx = 0; pxx < E_P; pxx++) {
                int32_t best = 0;
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) {
                        const int32_t v = y[(o * E_H + 2 * py + i) * E_W + 2 * pxx + j];
                        best = v > best ? v : best;
                    }
                f[(o * E_P + py) * E_P + pxx] = best;
            }
    for (int o = 0; o < E_N; o++) {
        int64_t acc = ch->lb[o];
        for (int k = 0; k < E_F; k++) acc += ch->lq[o * E_F + k] * f[k];
        scores[o] = requant_ref((int32_t)acc, ch->lm[o], ch->ls[o]);
    }
}

START_TEST(test_end_to_end_chain)
{
    chain ch;
    chain_init(&ch, 9000);
    uint8_t *file;
    size_t   size;
    chain_file(&ch, &file, &size);
    loaded l;
    ck_assert_msg(load_copy(&l, file, size) == LBM_OK, "%s", l.msg);
    ck_assert_uint_eq(l.m.input_bytes, E_C * E_H * E_W);
    ck_assert_uint_eq(l.m.n_classes, E_N);
    /* the plan reuses memory: less than every tensor side by side (planner tables aside) */
    const size_t all = E_C * E_H * E_W + E_O * E_H * E_W + 2 * E_F + 4 * E_N;
    ck_assert_uint_lt(l.m.arena_bytes - 6 * l.m.n_tensors, all);
    /* exactly: tables 6 x 6 bytes; x at 0 (192), y after it (256) while x is alive; then
     * pool, flatten and scores fit below 192: peak 448 */
    ck_assert_uint_eq(l.m.arena_bytes, 36 + 448);
    uint32_t s = 9001;
    int      distinct_preds = 0, seen[E_N] = { 0 };
    for (int trial = 0; trial < 20; trial++) {
        uint8_t px[E_C * E_H * E_W];
        for (int k = 0; k < E_C * E_H * E_W; k++) px[k] = (uint8_t)rng_next(&s);
        int64_t want[E_N];
        chain_ref(&ch, px, want);
        int32_t got[E_N];
        int     pred = -1;
        ck_assert_int_eq(run_exact(&l.m, px, got, &pred), LBM_OK);
        for (int o = 0; o < E_N; o++) ck_assert_int_eq(got[o], want[o]);
        ck_assert_int_eq(pred, argmax_ref(want, E_N));
        distinct_preds += !seen[pred];
        seen[pred] = 1;
    }
    ck_assert_int_gt(distinct_preds, 1);   /* the test data is not degenerate */
    /* arena: too small, misaligned, NULLs -> LBM_ERR_ARG; scores/pred may be NULL */
    uint8_t px[E_C * E_H * E_W] = { 0 };
    uint8_t *arena = malloc(l.m.arena_bytes + 8);
    ck_assert_int_eq(lbm_run(&l.m, px, arena, l.m.arena_bytes - 1, NULL, NULL), LBM_ERR_ARG);
    ck_assert_int_eq(lbm_run(&l.m, px, arena + 2, l.m.arena_bytes + 4, NULL, NULL), LBM_ERR_ARG);
    ck_assert_int_eq(lbm_run(&l.m, NULL, arena, l.m.arena_bytes, NULL, NULL), LBM_ERR_ARG);
    ck_assert_int_eq(lbm_run(&l.m, px, NULL, l.m.arena_bytes, NULL, NULL), LBM_ERR_ARG);
    ck_assert_int_eq(lbm_run(NULL, px, arena, l.m.arena_bytes, NULL, NULL), LBM_ERR_ARG);
    ck_assert_int_eq(lbm_run(&l.m, px, arena, l.m.arena_bytes, NULL, NULL), LBM_OK);
    lbm_model unloaded;
    memset(&unloaded, 0, sizeof unloaded);
    ck_assert_int_eq(lbm_run(&unloaded, px, arena, l.m.arena_bytes, NULL, NULL), LBM_ERR_ARG);
    free(arena);
    loaded_free(&l);
    free(file);
}
END_TEST

/* ---- malformed files -------------------------------------------------------------------- */

/* The base file of the malformed tests: tensors 0 in (1,6,6) UINT8, 1 x INT8, 2 conv UINT8
 * (2,6,6), 3 pool (2,3,3), 4 flat (18), 5 scores INT32 (3); ops 0 INPUT, 1 CONV2D 3x3 p1
 * 4-bit, 2 MAXPOOL 2/2, 3 FLATTEN, 4 LINEAR 2-bit. */
static void make_base(uint8_t **file, size_t *size)
{
    uint32_t s = 11;
    int8_t   cq[2 * 9], lq[3 * 18];
    for (int k = 0; k < 18; k++) cq[k] = rand_weight(&s, 4);
    for (int k = 0; k < 54; k++) lq[k] = rand_weight(&s, 2);
    const int32_t cb[2] = { 10, -10 }, cm[2] = { 1 << 30, 1 << 30 }, cs[2] = { 2, 2 };
    const int32_t lb[3] = { 1, 2, 3 }, lm[3] = { 1 << 30, 1 << 30, 1 << 30 };
    const int32_t ls[3] = { -1, -1, -1 };
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, 1, 6, 6);
    const uint32_t x  = add_input(&w, in, LBM_INT8, 1, 6, 6, NULL);
    const uint32_t y  = tensor3(&w, LBM_UINT8, 2, 6, 6);
    const wop      cp = { 2, 9, 4, cq, cb, cm, cs };
    add_wop(&w, LBM_OP_CONV2D, x, y, &cp, (const int32_t[10]){ 2, 3, 3, 1, 1, 4, 0, 255 });
    const uint32_t mp = tensor3(&w, LBM_UINT8, 2, 3, 3);
    lbm_writer_op(&w, LBM_OP_MAXPOOL, 1, (uint32_t[]){ y, 0 }, mp, 0, 0,
                  (const int32_t[10]){ 2, 2 });
    const uint32_t f = tensor1(&w, LBM_UINT8, 18);
    lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ mp, 0 }, f, 0, 0, NULL);
    const uint32_t z  = tensor1(&w, LBM_INT32, 3);
    const wop      lp = { 3, 18, 2, lq, lb, lm, ls };
    add_wop(&w, LBM_OP_LINEAR, f, z, &lp, (const int32_t[10]){ 3, 0, 0, 0, 0, 2 });
    lbm_writer_meta(&w, "model", "base");
    finish(&w, in, z, file, size);
}

START_TEST(test_base_is_valid)
{
    uint8_t *file;
    size_t   size;
    make_base(&file, &size);
    loaded l;
    ck_assert_msg(load_copy(&l, file, size) == LBM_OK, "%s", l.msg);
    uint8_t px[36];
    for (int k = 0; k < 36; k++) px[k] = (uint8_t)(k * 7);
    ck_assert_int_eq(run_exact(&l.m, px, NULL, NULL), LBM_OK);
    loaded_free(&l);
    free(file);
}
END_TEST

START_TEST(test_every_truncation_fails)
{
    uint8_t *file;
    size_t   size;
    make_base(&file, &size);
    for (size_t n = 0; n < size; n++) {
        loaded l;
        const lbm_status st = load_copy(&l, file, n);
        ck_assert_msg(st == LBM_ERR_FORMAT, "length %zu: status %d (%s)", n, st, l.msg);
        ck_assert_uint_gt(strlen(l.msg), 0);
        loaded_free(&l);
    }
    free(file);
}
END_TEST

/* Every single-bit flip: rejected when the bit is in the header or a section (CRCs) or in the
 * zero padding; in the section table (not CRC'd) it must not crash, and a file that still
 * loads must run. */
START_TEST(test_every_bit_flip)
{
    uint8_t *file;
    size_t   size;
    make_base(&file, &size);
    const size_t table_end = 64 + 16 * 3;
    uint8_t      px[36];
    for (int k = 0; k < 36; k++) px[k] = (uint8_t)(255 - k);
    int accepted = 0;
    for (size_t bit = 0; bit < 8 * size; bit++) {
        file[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        loaded l;
        const lbm_status st = load_copy(&l, file, size);
        if (bit / 8 < 64 || bit / 8 >= table_end) {
            ck_assert_msg(st != LBM_OK, "bit %zu (byte %zu) accepted", bit, bit / 8);
            ck_assert_uint_gt(strlen(l.msg), 0);
        } else if (st == LBM_OK) {
            accepted++;
            ck_assert_int_eq(run_exact(&l.m, px, NULL, NULL), LBM_OK);
        }
        loaded_free(&l);
        file[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    ck_assert_int_eq(accepted, 0);   /* as it happens, every table flip is caught too */
    free(file);
}
END_TEST

/* A defect, made by patching the base file in place (the buffer has 16 spare bytes, so a
 * patch may append); CRCs are refreshed afterwards unless the row says not. */
typedef struct defect {
    const char *name;
    void (*patch)(uint8_t *f, size_t *n);
    lbm_status  want;
    int         keep_crcs;   /* 1: do not refresh the CRCs after patching */
} defect;

static uint8_t *entry(uint8_t *f, uint32_t s) { return f + 64 + 16 * s; }   /* section table */
static uint8_t *graph(uint8_t *f) { return section(f, 2, NULL); }
/* conv params: rows of 5 bytes, weights block 12, then bias (8), mult (8), shift (8) */
static uint8_t *conv_params(uint8_t *f) { return section(f, 3, NULL) + get32(op_at(f, 1) + 16); }
static uint8_t *meta_end(uint8_t *f)
{
    uint32_t sz;
    return section(f, 1, &sz) + sz;
}

#define PATCH(name, ...) \
    static void name(uint8_t *f, size_t *n) { (void)f, (void)n; __VA_ARGS__; }
PATCH(d_magic, f[0] = 'X')
PATCH(d_major2, f[4] = 2)
PATCH(d_major0, f[4] = 0)
PATCH(d_minor7, f[6] = 7)                                      /* any minor is fine */
PATCH(d_header_size, put32(f + 8, 65))
PATCH(d_sections0, put32(f + 12, 0))
PATCH(d_sections17, put32(f + 12, 17))
PATCH(d_file_size, put32(f + 16, (uint32_t)*n - 1))
PATCH(d_flags, put32(f + 20, 1))
PATCH(d_reserved, f[40] = 1)
PATCH(d_header_crc, f[60] ^= 1)
PATCH(d_section_crc, entry(f, 1)[12] ^= 1)
PATCH(d_data_byte, section(f, 3, NULL)[5] ^= 0x10)
PATCH(d_offset_outside, put32(entry(f, 2) + 4, (uint32_t)(*n + 15) & ~15u))
PATCH(d_size_outside, put32(entry(f, 2) + 8, (uint32_t)*n))
PATCH(d_misaligned, put32(entry(f, 1) + 4, get32(entry(f, 1) + 4) + 4))
PATCH(d_overlap, put32(entry(f, 1) + 4, get32(entry(f, 0) + 4)))
PATCH(d_in_table, put32(entry(f, 0) + 4, 64))
PATCH(d_dup_type, put32(entry(f, 2), 1))
PATCH(d_no_data, put32(entry(f, 2), 9))
PATCH(d_gap_byte, meta_end(f)[0] = 1)                          /* the padding after META */
PATCH(d_trailing_zero, f[(*n)++] = 0; put32(f + 16, (uint32_t)*n))   /* allowed */
PATCH(d_trailing_one, f[(*n)++] = 1; put32(f + 16, (uint32_t)*n))
PATCH(d_meta_nul, section(f, 1, NULL)[2] = 0)
PATCH(d_meta_no_eq, section(f, 1, NULL)[5] = 'x')
PATCH(d_meta_no_nl, meta_end(f)[-1] = 'x')
PATCH(d_n_tensors_huge, put32(graph(f), 1000000000u))
PATCH(d_n_ops_zero, put32(graph(f) + 4, 0))
PATCH(d_n_ops_big, put32(graph(f) + 4, 5000))
PATCH(d_n_tensors_less, put32(graph(f), 5))
PATCH(d_input_range, put32(graph(f) + 8, 6))
PATCH(d_output_1d, put32(graph(f) + 12, 4))
PATCH(d_input_dtype, tensor_at(f, 0)[0] = LBM_INT8)
PATCH(d_output_dtype, tensor_at(f, 5)[0] = LBM_INT8)
PATCH(d_dtype3, tensor_at(f, 3)[0] = 3)
PATCH(d_n_dims2, tensor_at(f, 3)[1] = 2)
PATCH(d_dim_zero, put32(tensor_at(f, 3) + 8, 0))
PATCH(d_dim_unused, put32(tensor_at(f, 4) + 8, 1))
PATCH(d_numel, put32(tensor_at(f, 3) + 4, 65535); put32(tensor_at(f, 3) + 8, 65535))
PATCH(d_tensor_reserved, tensor_at(f, 2)[30] = 1)
PATCH(d_conv_dims, put32(tensor_at(f, 2) + 8, 7))
PATCH(d_kind, op_at(f, 3)[0] = 11)
PATCH(d_n_in, op_at(f, 1)[2] = 2)
PATCH(d_in1_unused, put32(op_at(f, 3) + 8, 1))
PATCH(d_not_yet, put32(op_at(f, 1) + 4, 3))
PATCH(d_in_range, put32(op_at(f, 2) + 4, 999))
PATCH(d_twice, put32(op_at(f, 2) + 12, 2))
PATCH(d_writes_input, put32(op_at(f, 0) + 12, 0))
PATCH(d_w_bits3, put32(op_at(f, 1) + 24 + 4 * 5, 3))
PATCH(d_acc_shift, put32(op_at(f, 4) + 24 + 4 * 8, 25))
PATCH(d_acc_shift24, put32(op_at(f, 4) + 24 + 4 * 8, 24))
PATCH(d_data_size, put32(op_at(f, 1) + 20, get32(op_at(f, 1) + 20) - 4))
PATCH(d_data_off, put32(op_at(f, 4) + 16, get32(op_at(f, 4) + 16) + 2))
PATCH(d_data_outside, put32(op_at(f, 4) + 16, 0xFFFFFFF0u))
PATCH(d_flatten_data, put32(op_at(f, 3) + 20, 4))
PATCH(d_attr_unused, put32(op_at(f, 3) + 24, 1))
PATCH(d_stride0, put32(op_at(f, 1) + 24 + 12, 0))
PATCH(d_pool_pad, put32(op_at(f, 2) + 24 + 8, 2))
PATCH(d_clamp, put32(op_at(f, 1) + 24 + 24, 300))
PATCH(d_out_int32_clamp, put32(op_at(f, 4) + 24 + 28, 1))
PATCH(d_linear_out, put32(op_at(f, 4) + 24, 4))
PATCH(d_mult_low, put32(conv_params(f) + 12 + 8, 1u << 29))
PATCH(d_mult_neg, put32(conv_params(f) + 12 + 12, 0x80000000u))
PATCH(d_shift63, put32(conv_params(f) + 12 + 16, 63))
PATCH(d_shift_m32, put32(conv_params(f) + 12 + 20, (uint32_t)-32))
PATCH(d_row_pad, conv_params(f)[4] |= 0x10)
PATCH(d_block_pad, conv_params(f)[11] = 1)

static const defect defects[] = {
    { "magic", d_magic, LBM_ERR_FORMAT, 0 },
    { "major 2", d_major2, LBM_ERR_VERSION, 0 },
    { "major 0", d_major0, LBM_ERR_VERSION, 0 },
    { "header_size", d_header_size, LBM_ERR_FORMAT, 0 },
    { "n_sections 0", d_sections0, LBM_ERR_FORMAT, 0 },
    { "n_sections 17", d_sections17, LBM_ERR_FORMAT, 0 },
    { "file_size", d_file_size, LBM_ERR_FORMAT, 0 },
    { "flags", d_flags, LBM_ERR_FORMAT, 0 },
    { "reserved", d_reserved, LBM_ERR_FORMAT, 0 },
    { "header crc", d_header_crc, LBM_ERR_CRC, 1 },
    { "section crc", d_section_crc, LBM_ERR_CRC, 1 },
    { "data byte", d_data_byte, LBM_ERR_CRC, 1 },
    { "offset outside", d_offset_outside, LBM_ERR_FORMAT, 0 },
    { "size outside", d_size_outside, LBM_ERR_FORMAT, 0 },
    { "misaligned", d_misaligned, LBM_ERR_FORMAT, 0 },
    { "overlap", d_overlap, LBM_ERR_FORMAT, 0 },
    { "inside table", d_in_table, LBM_ERR_FORMAT, 0 },
    { "duplicate type", d_dup_type, LBM_ERR_FORMAT, 0 },
    { "no DATA", d_no_data, LBM_ERR_FORMAT, 0 },
    { "gap byte", d_gap_byte, LBM_ERR_FORMAT, 0 },
    { "trailing zero", d_trailing_zero, LBM_OK, 0 },
    { "trailing one", d_trailing_one, LBM_ERR_FORMAT, 0 },
    { "minor 7", d_minor7, LBM_OK, 0 },
    { "meta NUL", d_meta_nul, LBM_ERR_FORMAT, 0 },
    { "meta no =", d_meta_no_eq, LBM_ERR_FORMAT, 0 },
    { "meta no newline", d_meta_no_nl, LBM_ERR_FORMAT, 0 },
    { "n_tensors 1e9", d_n_tensors_huge, LBM_ERR_FORMAT, 0 },
    { "n_ops 0", d_n_ops_zero, LBM_ERR_FORMAT, 0 },
    { "n_ops 5000", d_n_ops_big, LBM_ERR_FORMAT, 0 },
    { "graph size", d_n_tensors_less, LBM_ERR_FORMAT, 0 },
    { "input index", d_input_range, LBM_ERR_FORMAT, 0 },
    { "input dtype", d_input_dtype, LBM_ERR_FORMAT, 0 },
    { "output dtype", d_output_dtype, LBM_ERR_FORMAT, 0 },
    { "output UINT8 (18)", d_output_1d, LBM_ERR_FORMAT, 0 },
    { "dtype 3", d_dtype3, LBM_ERR_FORMAT, 0 },
    { "n_dims 2", d_n_dims2, LBM_ERR_FORMAT, 0 },
    { "dim 0", d_dim_zero, LBM_ERR_FORMAT, 0 },
    { "unused dim", d_dim_unused, LBM_ERR_FORMAT, 0 },
    { "numel > 2^24", d_numel, LBM_ERR_FORMAT, 0 },
    { "tensor reserved", d_tensor_reserved, LBM_ERR_FORMAT, 0 },
    { "conv output dims", d_conv_dims, LBM_ERR_FORMAT, 0 },
    { "kind 11", d_kind, LBM_ERR_FORMAT, 0 },
    { "n_in", d_n_in, LBM_ERR_FORMAT, 0 },
    { "unused in[1]", d_in1_unused, LBM_ERR_FORMAT, 0 },
    { "reads unproduced tensor", d_not_yet, LBM_ERR_FORMAT, 0 },
    { "input index range", d_in_range, LBM_ERR_FORMAT, 0 },
    { "produced twice", d_twice, LBM_ERR_FORMAT, 0 },
    { "writes graph input", d_writes_input, LBM_ERR_FORMAT, 0 },
    { "w_bits 3", d_w_bits3, LBM_ERR_FORMAT, 0 },
    { "acc_shift 25", d_acc_shift, LBM_ERR_FORMAT, 0 },
    { "acc_shift 24", d_acc_shift24, LBM_OK, 0 },
    { "data_size", d_data_size, LBM_ERR_FORMAT, 0 },
    { "data_offset unaligned", d_data_off, LBM_ERR_FORMAT, 0 },
    { "data outside DATA", d_data_outside, LBM_ERR_FORMAT, 0 },
    { "data for FLATTEN", d_flatten_data, LBM_ERR_FORMAT, 0 },
    { "unused attr", d_attr_unused, LBM_ERR_FORMAT, 0 },
    { "stride 0", d_stride0, LBM_ERR_FORMAT, 0 },
    { "pool pad >= k", d_pool_pad, LBM_ERR_FORMAT, 0 },
    { "clamp range", d_clamp, LBM_ERR_FORMAT, 0 },
    { "INT32 clamp", d_out_int32_clamp, LBM_ERR_FORMAT, 0 },
    { "linear O", d_linear_out, LBM_ERR_FORMAT, 0 },
    { "multiplier 2^29", d_mult_low, LBM_ERR_FORMAT, 0 },
    { "multiplier negative", d_mult_neg, LBM_ERR_FORMAT, 0 },
    { "shift 63", d_shift63, LBM_ERR_FORMAT, 0 },
    { "shift -32", d_shift_m32, LBM_ERR_FORMAT, 0 },
    { "row padding bits", d_row_pad, LBM_ERR_FORMAT, 0 },
    { "weight block padding", d_block_pad, LBM_ERR_FORMAT, 0 },
};

START_TEST(test_defect)
{
    const defect *d = &defects[_i];
    uint8_t      *file;
    size_t        size;
    make_base(&file, &size);
    file = realloc(file, size + 16);
    d->patch(file, &size);
    if (!d->keep_crcs) refresh_crcs(file, size);
    loaded l;
    const lbm_status st = load_copy(&l, file, size);
    ck_assert_msg(st == d->want, "%s: status %d, want %d (%s)", d->name, st, d->want, l.msg);
    if (st != LBM_OK) {
        ck_assert_msg(strlen(l.msg) > 0, "%s: empty message", d->name);
        lbm_model zero;
        memset(&zero, 0, sizeof zero);
        ck_assert_mem_eq(&l.m, &zero, sizeof zero);   /* a failed load leaves nothing usable */
    } else {
        uint8_t px[36] = { 0 };
        ck_assert_int_eq(run_exact(&l.m, px, NULL, NULL), LBM_OK);
    }
    loaded_free(&l);
    free(file);
}
END_TEST

/* Sections in any order, an extra section of an unknown type (checked and ignored), and
 * n_sections up to 16, assembled by hand from the base file's sections. */
static void assemble(uint8_t *base, const uint32_t *types, uint32_t n, uint8_t **file, size_t *size)
{
    size_t end = (64 + 16 * n + 15) & ~(size_t)15, total = end;
    for (uint32_t s = 0; s < n; s++) {
        uint32_t sz = 5;
        if (types[s] >= 1 && types[s] <= 3) section(base, types[s], &sz);
        total = ((total + sz + 15) & ~(size_t)15);
    }
    uint8_t *f = calloc(total, 1);
    for (uint32_t s = 0; s < n; s++) {
        uint32_t       sz  = 5;
        const int      known = types[s] >= 1 && types[s] <= 3;
        const uint8_t *src = known ? section(base, types[s], &sz) : (const uint8_t *)"extra";
        memcpy(f + end, src, sz);
        put32(f + 64 + 16 * s, types[s]);
        put32(f + 64 + 16 * s + 4, (uint32_t)end);
        put32(f + 64 + 16 * s + 8, sz);
        end = (end + sz + 15) & ~(size_t)15;
    }
    memcpy(f, base, 64);
    put32(f + 12, n);
    put32(f + 16, (uint32_t)total);
    refresh_crcs(f, total);
    *file = f;
    *size = total;
}

START_TEST(test_section_table_variants)
{
    uint8_t *base, *file;
    size_t   bsize, size;
    make_base(&base, &bsize);
    static const struct { uint32_t n, types[16]; lbm_status want; } rows[] = {
        { 3, { 3, 1, 2 }, LBM_OK },                          /* any order */
        { 4, { 1, 9, 2, 3 }, LBM_OK },                       /* unknown type ignored */
        { 16, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0 }, LBM_OK },
        { 2, { 1, 2 }, LBM_ERR_FORMAT },                     /* no DATA */
        { 4, { 1, 2, 3, 2 }, LBM_ERR_FORMAT },               /* GRAPH twice */
        { 1, { 2 }, LBM_ERR_FORMAT },
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        assemble(base, rows[r].types, rows[r].n, &file, &size);
        loaded l;
        const lbm_status st = load_copy(&l, file, size);
        ck_assert_msg(st == rows[r].want, "row %zu: %d (%s)", r, st, l.msg);
        if (st == LBM_OK) ck_assert_int_eq(run_exact(&l.m, base, NULL, NULL), LBM_OK);
        else ck_assert_uint_gt(strlen(l.msg), 0);
        loaded_free(&l);
        free(file);
    }
    free(base);
}
END_TEST

/* Graph defects easier to write than to patch: x (1,2,2) INT8 -> a = conv(x) INT32, then
 * one bad op per _i, and an INT32 (4) output. */
START_TEST(test_graph_defects)
{
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in  = tensor3(&w, LBM_UINT8, 1, 2, 2);
    const uint32_t x   = add_input(&w, in, LBM_INT8, 1, 2, 2, NULL);
    const uint32_t a   = add_identity_conv(&w, x, 1, 2, 2, NULL, 0);
    const uint32_t out = tensor1(&w, LBM_INT32, 4);
    const char    *what = "";
    switch (_i) {
    case 0: {   /* the output tensor is never produced */
        const uint32_t f = tensor1(&w, LBM_INT32, 4);
        lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ a, 0 }, f, 0, 0, NULL);
        what = "produces the output";
        break;
    }
    case 1: {   /* ADD of (1,2,2) and (4) */
        const uint32_t f = tensor1(&w, LBM_INT32, 4), c = tensor3(&w, LBM_INT32, 1, 2, 2);
        lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ a, 0 }, f, 0, 0, NULL);
        lbm_writer_op(&w, LBM_OP_ADD, 2, (uint32_t[]){ a, f }, c, 0, 0, NULL);
        lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ c, 0 }, out, 0, 0, NULL);
        what = "ADD";
        break;
    }
    case 2: {   /* RELU on UINT8 */
        const uint32_t r = tensor3(&w, LBM_UINT8, 1, 2, 2);
        lbm_writer_op(&w, LBM_OP_RELU, 1, (uint32_t[]){ in, 0 }, r, 0, 0, NULL);
        lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ a, 0 }, out, 0, 0, NULL);
        what = "RELU";
        break;
    }
    case 3: {   /* GAP on INT8 */
        const uint32_t g = tensor1(&w, LBM_INT32, 1);
        lbm_writer_op(&w, LBM_OP_GAP, 1, (uint32_t[]){ x, 0 }, g, 0, 0, NULL);
        lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ a, 0 }, out, 0, 0, NULL);
        what = "GAP";
        break;
    }
    case 4: {   /* REQUANT with a multiplier below 2^30 */
        const uint32_t r = tensor3(&w, LBM_INT8, 1, 2, 2);
        lbm_writer_op(&w, LBM_OP_REQUANT, 1, (uint32_t[]){ a, 0 }, r, 0, 0,
                      (const int32_t[10]){ 12345, 0, 0, 0, 0, 0, -128, 127 });
        lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ a, 0 }, out, 0, 0, NULL);
        what = "REQUANT";
        break;
    }
    default: {  /* INPUT reading an INT8 tensor */
        const uint32_t y = tensor3(&w, LBM_INT8, 1, 2, 2);
        const uint32_t off = lbm_writer_data(&w, NULL, 256);
        lbm_writer_op(&w, LBM_OP_INPUT, 1, (uint32_t[]){ x, 0 }, y, off, 256, NULL);
        lbm_writer_op(&w, LBM_OP_FLATTEN, 1, (uint32_t[]){ a, 0 }, out, 0, 0, NULL);
        what = "INPUT";
        break;
    }
    }
    uint8_t *file;
    size_t   size;
    finish(&w, in, out, &file, &size);
    loaded l;
    ck_assert_int_eq(load_copy(&l, file, size), LBM_ERR_FORMAT);
    ck_assert_msg(strstr(l.msg, what) != NULL, "case %d: message \"%s\"", _i, l.msg);
    loaded_free(&l);
    free(file);
}
END_TEST

START_TEST(test_bad_arguments)
{
    uint8_t *file;
    size_t   size;
    make_base(&file, &size);
    lbm_model m;
    char      msg[128];
    ck_assert_int_eq(lbm_load(NULL, file, size, msg, sizeof msg), LBM_ERR_ARG);
    ck_assert_uint_gt(strlen(msg), 0);
    ck_assert_int_eq(lbm_load(&m, NULL, size, msg, sizeof msg), LBM_ERR_ARG);
    ck_assert_uint_gt(strlen(msg), 0);
    /* misaligned buffer */
    uint8_t *copy = malloc(size + 4);
    memcpy(copy + 1, file, size);
    ck_assert_int_eq(lbm_load(&m, copy + 1, size, msg, sizeof msg), LBM_ERR_ARG);
    ck_assert_uint_gt(strlen(msg), 0);
    /* no message buffer, or a tiny one: still an error, NUL-terminated, truncated */
    memcpy(copy, file, size);
    copy[0] = 'X';
    ck_assert_int_eq(lbm_load(&m, copy, size, NULL, 0), LBM_ERR_FORMAT);
    char tiny[6];
    memset(tiny, '#', sizeof tiny);
    ck_assert_int_eq(lbm_load(&m, copy, size, tiny, sizeof tiny), LBM_ERR_FORMAT);
    ck_assert_uint_eq(strlen(tiny), sizeof tiny - 1);
    ck_assert_int_eq(lbm_arena_size(NULL), 0);
    ck_assert_ptr_null(lbm_meta(NULL, "model", NULL));
    free(copy);
    free(file);
}
END_TEST

/* Messages name the offending values (the loader formats numbers without stdio). */
START_TEST(test_messages_name_values)
{
    static const struct { void (*patch)(uint8_t *f, size_t *n); const char *text; } rows[] = {
        { d_n_tensors_huge, "1000000000 tensors" },
        { d_shift_m32, "shift -32" },
        { d_w_bits3, "op 1 (CONV2D): w_bits 3" },
        { d_twice, "tensor 2 is already produced" },
        { d_major2, "version 2.0" },
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        uint8_t *file;
        size_t   size;
        make_base(&file, &size);
        rows[r].patch(file, &size);
        refresh_crcs(file, size);
        loaded l;
        ck_assert_int_ne(load_copy(&l, file, size), LBM_OK);
        ck_assert_msg(strstr(l.msg, rows[r].text) != NULL, "\"%s\" lacks \"%s\"", l.msg,
                      rows[r].text);
        loaded_free(&l);
        free(file);
    }
}
END_TEST

/* 64 INT32 tensors of 2^24 elements alive at once need 4 GiB: refused at load. */
START_TEST(test_arena_over_4gib)
{
    lbm_writer w;
    lbm_writer_init(&w);
    const uint32_t in = tensor3(&w, LBM_UINT8, 1, 4096, 4096);
    const int8_t   q[1] = { 1 };
    const int32_t  b[1] = { 0 }, mu[1] = { 1 << 30 }, sh[1] = { -1 };
    const wop      p = { 1, 1, 8, q, b, mu, sh };
    uint32_t       c[64];
    for (int k = 0; k < 64; k++) {
        c[k] = tensor3(&w, LBM_INT32, 1, 4096, 4096);
        add_wop(&w, LBM_OP_CONV2D, in, c[k], &p, (const int32_t[10]){ 1, 1, 1, 1, 0, 8 });
    }
    uint32_t sum = c[0];
    for (int k = 1; k < 64; k++) {
        const uint32_t t = tensor3(&w, LBM_INT32, 1, 4096, 4096);
        lbm_writer_op(&w, LBM_OP_ADD, 2, (uint32_t[]){ sum, c[k] }, t, 0, 0, NULL);
        sum = t;
    }
    const uint32_t out = tensor1(&w, LBM_INT32, 1);
    lbm_writer_op(&w, LBM_OP_GAP, 1, (uint32_t[]){ sum, 0 }, out, 0, 0, NULL);
    uint8_t *file;
    size_t   size;
    finish(&w, in, out, &file, &size);
    loaded l;
    ck_assert_int_eq(load_copy(&l, file, size), LBM_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(l.msg, "4 GiB"));
    loaded_free(&l);
    free(file);
}
END_TEST

Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *fmt = tcase_create("format");
    tcase_add_test(fmt, test_crc32_known_values);
    tcase_add_test(fmt, test_pack_row_layout);
    tcase_add_test(fmt, test_quantize_multiplier);
    tcase_add_test(fmt, test_round_trip_and_meta);
    tcase_add_test(fmt, test_status_strings);
    suite_add_tcase(s, fmt);
    TCase *k = tcase_create("kernels");
    tcase_add_loop_test(k, test_conv2d_vs_reference, 0, 24);
    tcase_add_loop_test(k, test_linear_vs_reference, 0, 24);
    tcase_add_loop_test(k, test_maxpool_vs_reference, 0, 3);
    tcase_add_test(k, test_avgpool_halves);
    tcase_add_loop_test(k, test_avgpool_gap_vs_reference, 0, 4);
    tcase_add_test(k, test_add_relu_diamond);
    const int n_requant = (int)(sizeof requant_cases / sizeof requant_cases[0]);
    tcase_add_loop_test(k, test_requant_op, 0, n_requant);
    tcase_add_test(k, test_requant_int32_extremes);
    tcase_add_loop_test(k, test_input_lut, 0, 2);
    tcase_add_test(k, test_end_to_end_chain);
    suite_add_tcase(s, k);
    TCase *bad = tcase_create("malformed");
    tcase_set_timeout(bad, 120);
    tcase_add_test(bad, test_base_is_valid);
    tcase_add_test(bad, test_every_truncation_fails);
    tcase_add_test(bad, test_every_bit_flip);
    tcase_add_loop_test(bad, test_defect, 0, (int)(sizeof defects / sizeof defects[0]));
    tcase_add_test(bad, test_section_table_variants);
    tcase_add_loop_test(bad, test_graph_defects, 0, 6);
    tcase_add_test(bad, test_bad_arguments);
    tcase_add_test(bad, test_messages_name_values);
    tcase_add_test(bad, test_arena_over_4gib);
    suite_add_tcase(s, bad);
    return s;
}

int main(void)
{
    Suite *suites[] = { runtime_suite() };
    return lb_run_suites(suites, 1);
}
