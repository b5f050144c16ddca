/* fake_quant.c: fake-quantization ops (fixed-scale STE, LSQ, PACT, DoReFa, binary, ternary).
 *
 * Contracts are in fake_quant.h. Each op is a static forward/backward pair, a static const
 * lb_op_def and a public constructor that validates everything coming from configuration or
 * data (sticky LB_ERR_ARG/LB_ERR_SHAPE naming the op). Scales and zero points are copied into
 * the graph arena by the constructor, so backward never allocates; learned parameters (LSQ
 * step, PACT alpha) are src tensors so autograd routes their gradients. Rounding is nearbyintf
 * (ties to even, like torch.round) everywhere, never roundf.
 * Not here: observers and calibration (observer.c), integer packing for export, zero points
 * for LSQ (offset-free, as in the paper).
 *
 * Legend: N = shape[0] (rows, output channels), K = numel / N elements per row, G group size,
 * n number of scales. A "run" is a maximal stretch of consecutive elements sharing one scale;
 * runs are in scale order, so kernels loop over scales and then over one contiguous run.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/fake_quant.h"

#include "autograd/simd.h"
#include "autograd/parallel.h"

/* Bounds that keep every integer of the grid (and q - z) exact in float. */
#define QRANGE_LIMIT (1 << 24)
#define BITS_MAX     16

static inline float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v); /* NaN stays NaN (fminf/fmaxf would hide it) */
}

/* Round half to even, the same as nearbyintf in the default rounding mode, for |v| < 2^23:
 * adding and subtracting 1.5 * 2^23 leaves no fraction bits, so the FPU rounds. Unlike a
 * call to nearbyintf it vectorizes. Larger |v| keep their sign and stay >= 2^22 in magnitude,
 * so clamp(round_even(v), lo, hi) == clamp(nearbyintf(v), lo, hi) whenever |lo|, |hi| <=
 * 2^22 (every grid of up to 16 bits). Needs float arithmetic in float precision. */
#if FLT_EVAL_METHOD == 0
static inline float round_even(float v)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    return (v + magic) - magic;
}
#else
static inline float round_even(float v) { return nearbyintf(v); }
#endif

/* ---- scale layouts ------------------------------------------------------------------- */

typedef struct {
    int64_t n;       /* scales (= runs)                                           */
    int64_t per_row; /* runs per row: 1, or ceil(K / G) for groups                */
    int64_t K;       /* elements per row (numel for TENSOR: one row)             */
    int64_t G;       /* elements per run; the last run of a row may be shorter   */
} qlayout;

/* Describes x under gran; false for an unknown gran or G < 1 with groups. */
static bool layout_make(const lb_tensor *x, lb_qgran gran, int64_t group, qlayout *L)
{
    const int64_t numel = lb_numel(x);
    const int64_t N = x->n_dims > 0 ? x->shape[0] : 1;
    const int64_t K = N > 0 ? numel / N : 0;
    switch (gran) {
    case LB_QG_TENSOR: *L = (qlayout){ .n = 1, .per_row = 1, .K = numel, .G = numel }; return true;
    case LB_QG_CHANNEL: *L = (qlayout){ .n = N, .per_row = 1, .K = K, .G = K }; return true;
    case LB_QG_GROUP: {
        if (group < 1) return false;
        const int64_t per_row = K / group + (K % group != 0); /* ceil(K / G) */
        *L = (qlayout){ .n = N * per_row, .per_row = per_row, .K = K, .G = group };
        return true;
    }
    }
    return false;
}

/* The elements [*i0, *i1) that use scale s. Per element this is the index
 *   TENSOR 0;  CHANNEL i / K;  GROUP (i / K) * ceil(K / G) + (i % K) / G,
 * but computed once per run, so hot loops do no division per element. */
static void layout_run(const qlayout *L, int64_t s, int64_t *i0, int64_t *i1)
{
    const int64_t r = s / L->per_row, c = s - r * L->per_row;
    const int64_t j0 = c * L->G, j1 = L->K - j0 < L->G ? L->K : j0 + L->G;
    *i0 = r * L->K + j0;
    *i1 = r * L->K + j1;
}

static const char *gran_name(lb_qgran gran)
{
    switch (gran) {
    case LB_QG_TENSOR: return "per-tensor";
    case LB_QG_CHANNEL: return "per-channel";
    case LB_QG_GROUP: return "per-group";
    }
    return "unknown";
}

/* "name (2, 3)" or "(2, 3)" for messages. */
static const char *desc(const lb_tensor *x, char *buf, size_t n)
{
    char shape[64];
    lb_shape_str(x, shape, sizeof shape);
    snprintf(buf, n, "%s%s%s", x->name, x->name[0] ? " " : "", shape);
    return buf;
}

int64_t lb_qgran_count(const lb_tensor *x, lb_qgran gran, int64_t group)
{
    qlayout L;
    if (!x || !layout_make(x, gran, group, &L)) return -1;
    return L.n;
}

/* Shared validation: layout (sticky LB_ERR_ARG on failure). */
static bool check_layout(lb_graph *g, const char *op, const lb_tensor *x, lb_qgran gran,
                         int64_t group, qlayout *L)
{
    if (layout_make(x, gran, group, L)) return true;
    char dx[128];
    if (gran == LB_QG_GROUP)
        lb_graph_fail(g, LB_ERR_ARG, "%s(%s): group size %lld (expected >= 1)", op,
                      desc(x, dx, sizeof dx), (long long)group);
    else
        lb_graph_fail(g, LB_ERR_ARG, "%s(%s): unknown scale layout %d", op,
                      desc(x, dx, sizeof dx), (int)gran);
    return false;
}

/* Shared validation: integer range (sticky LB_ERR_ARG on failure). */
static bool check_range(lb_graph *g, const char *op, const lb_tensor *x, int32_t qmin,
                        int32_t qmax)
{
    if (qmin < qmax && qmin >= -QRANGE_LIMIT && qmax <= QRANGE_LIMIT) return true;
    char dx[128];
    lb_graph_fail(g, LB_ERR_ARG, "%s(%s): integer range [%d, %d] (expected qmin < qmax, "
                  "both within +-2^24)", op, desc(x, dx, sizeof dx), (int)qmin, (int)qmax);
    return false;
}

/* Shared validation: L = 2^bits - 1 levels (sticky LB_ERR_ARG on failure). */
static bool check_bits(lb_graph *g, const char *op, const lb_tensor *x, int bits)
{
    if (bits >= 1 && bits <= BITS_MAX) return true;
    char dx[128];
    lb_graph_fail(g, LB_ERR_ARG, "%s(%s): bits = %d (expected 1..%d)", op,
                  desc(x, dx, sizeof dx), bits, BITS_MAX);
    return false;
}

/* ---- fake_quant: fixed scales and zero points ------------------------------------------
 *   forward:  y = s * (clamp(round(x / s) + z, qmin, qmax) - z)
 *   backward: PLAIN   dx += dy
 *             CLIPPED dx += dy where s*(qmin - z) <= x <= s*(qmax - z), 0 elsewhere
 * The clipped mask is the x-range form of fake_quant.h (the same rule as LSQ's dx). PyTorch's
 * fake_quantize masks on the rounded value instead, so it also passes dy in the half steps
 * just outside the range, (s*(qmax - z), s*(qmax - z + 1/2)] and its mirror at qmin.
 * x / s is a true division; PyTorch multiplies by a float 1/s, which can round differently
 * exactly at ties when s is not a power of two. */

typedef struct {
    qlayout L;
    int32_t qmin, qmax;
    lb_ste  ste;
    float  *scale; /* (n), arena copy                      */
    float  *zero;  /* (n), arena copy, or NULL for all zero */
} fq_saved;

static void fake_quant_forward(lb_tensor *y)
{
    const fq_saved *p = y->saved;
    const float *x = y->src[0]->data;                 /* (N, ...) */
    const float lo = (float)p->qmin, hi = (float)p->qmax;
    for (int64_t s = 0; s < p->L.n; s++) {
        const float sc = p->scale[s], z = p->zero ? p->zero[s] : 0.0f;
        int64_t i0, i1;
        layout_run(&p->L, s, &i0, &i1);
        for (int64_t i = i0; i < i1; i++) {
            const float q = clampf(round_even(x[i] / sc) + z, lo, hi); /* ties to even */
            y->data[i] = (q - z) * sc;                                  /* q - z is exact */
        }
    }
}

static void fake_quant_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0];
    if (!x->grad) return;
    const fq_saved *p = y->saved;
    if (p->ste == LB_STE_PLAIN) {
        for (int64_t i = 0, n = lb_numel(x); i < n; i++) x->grad[i] += y->grad[i];
        return;
    }
    for (int64_t s = 0; s < p->L.n; s++) {
        const float sc = p->scale[s], z = p->zero ? p->zero[s] : 0.0f;
        const float lo = sc * ((float)p->qmin - z), hi = sc * ((float)p->qmax - z);
        int64_t i0, i1;
        layout_run(&p->L, s, &i0, &i1);
        for (int64_t i = i0; i < i1; i++)
            if (x->data[i] >= lo && x->data[i] <= hi) x->grad[i] += y->grad[i];
    }
}

static const lb_op_def fake_quant_def = { "fake_quant", fake_quant_forward, fake_quant_backward,
                                          .overwrite = 0 };

lb_tensor *lb_fake_quant(lb_graph *g, lb_tensor *x, const lb_qparams *qp, lb_ste ste)
{
    if (!x || !lb_graph_ok(g)) return NULL;
    char dx[128];
    desc(x, dx, sizeof dx);
    if (!qp) return lb_graph_fail(g, LB_ERR_ARG, "fake_quant(%s): no lb_qparams", dx);
    qlayout L;
    if (!check_layout(g, "fake_quant", x, qp->gran, qp->group, &L)) return NULL;
    if (!check_range(g, "fake_quant", x, qp->qmin, qp->qmax)) return NULL;
    if (ste != LB_STE_PLAIN && ste != LB_STE_CLIPPED)
        return lb_graph_fail(g, LB_ERR_ARG, "fake_quant(%s): unknown STE %d", dx, (int)ste);
    if (qp->n != L.n)
        return lb_graph_fail(g, LB_ERR_ARG, "fake_quant(%s): %lld scales (expected %lld for %s "
                             "scales)", dx, (long long)qp->n, (long long)L.n, gran_name(qp->gran));
    if (L.n > 0 && !qp->scale)
        return lb_graph_fail(g, LB_ERR_ARG, "fake_quant(%s): scale array is NULL", dx);
    for (int64_t s = 0; s < L.n; s++) {
        const float sc = qp->scale[s];
        if (!(sc > 0.0f) || !isfinite(sc))
            return lb_graph_fail(g, LB_ERR_ARG, "fake_quant(%s): scale[%lld] = %g (expected "
                                 "finite and > 0)", dx, (long long)s, (double)sc);
        const float z = qp->zero_point ? qp->zero_point[s] : 0.0f;
        if (!isfinite(z) || z != nearbyintf(z) || fabsf(z) > (float)QRANGE_LIMIT)
            return lb_graph_fail(g, LB_ERR_ARG, "fake_quant(%s): zero_point[%lld] = %g "
                                 "(expected an integer within +-2^24)", dx, (long long)s,
                                 (double)z);
    }
    fq_saved *p = lb_graph_alloc(g, sizeof *p);
    float *scale = lb_graph_alloc(g, (size_t)L.n * sizeof(float));
    float *zero = qp->zero_point ? lb_graph_alloc(g, (size_t)L.n * sizeof(float)) : NULL;
    if (!p || !scale || (qp->zero_point && !zero)) return NULL; /* arena full: g has failed */
    memcpy(scale, qp->scale, (size_t)L.n * sizeof(float));
    if (zero) memcpy(zero, qp->zero_point, (size_t)L.n * sizeof(float));
    *p = (fq_saved){ .L = L, .qmin = qp->qmin, .qmax = qp->qmax, .ste = ste, .scale = scale,
                     .zero = zero };
    return lb_graph_record(g, &fake_quant_def, x->shape, x->n_dims, (lb_tensor *[]){ x }, 1, p);
}

/* ---- LSQ: learned step size (Esser et al. 2020) ----------------------------------------
 *   forward:  y = s * clamp(round(x / s), qmin, qmax),  s = step[scale index]
 *   backward: v = x / s
 *             dx += dy                      where qmin <= v <= qmax
 *             ds += gs * sum of dy * { round(v) - v   inside
 *                                    { qmin           v < qmin
 *                                    { qmax           v > qmax
 * The same float arithmetic as fake_quant with z = 0, so both give equal outputs (only the
 * sign of a zero may differ: fake_quant's + z turns round(x/s) = -0 into +0, as PyTorch does). */

typedef struct {
    qlayout L;
    int32_t qmin, qmax;
    float   grad_scale;
    float  *part;   /* per-tensor step: one step-gradient sum per block of elements */
} lsq_saved;

/* Per-tensor steps (activations: one step for the whole batch) are split over the thread
 * pool in blocks of LSQ_BLOCK elements; the step gradient is summed per block in float, the
 * block sums are stored (lsq_saved.part) and added in double in block order, so the result
 * does not depend on the thread count. Several steps (per channel or group: weights, small)
 * run on one thread. */
#define LSQ_BLOCK 1024

LB_CLONES
static void lsq_forward_part(void *ctx, int64_t lo_b, int64_t hi_b, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lsq_saved *p = y->saved;
    const float *x = y->src[0]->data, sc = y->src[1]->data[0];
    const float lo = (float)p->qmin, hi = (float)p->qmax;
    const int64_t n = lb_numel(y), i1 = hi_b * LSQ_BLOCK < n ? hi_b * LSQ_BLOCK : n;
    for (int64_t i = lo_b * LSQ_BLOCK; i < i1; i++)
        y->data[i] = clampf(round_even(x[i] / sc), lo, hi) * sc;
}

/* Scales [lo_s, hi_s) of a per-channel or per-group step. */
LB_CLONES
static void lsq_forward_scales(void *ctx, int64_t lo_s, int64_t hi_s, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lsq_saved *p = y->saved;
    const float *x = y->src[0]->data, *step = y->src[1]->data;
    const float lo = (float)p->qmin, hi = (float)p->qmax;
    for (int64_t s = lo_s; s < hi_s; s++) {
        const float sc = step[s];
        int64_t i0, i1;
        layout_run(&p->L, s, &i0, &i1);
        for (int64_t i = i0; i < i1; i++) y->data[i] = clampf(round_even(x[i] / sc), lo, hi) * sc;
    }
}

static void lsq_forward(lb_tensor *y)
{
    const lsq_saved *p = y->saved;
    if (p->L.n == 1) {
        const int64_t n = lb_numel(y);
        lb_parallel_for_dyn((n + LSQ_BLOCK - 1) / LSQ_BLOCK, 16, lsq_forward_part, y);
        return;
    }
    /* per channel or group: the scales are split over the pool (min. 8192 elements a part) */
    const int64_t per = p->L.G < 1 ? 1 : p->L.G;
    lb_parallel_for_dyn(p->L.n, (8192 + per - 1) / per, lsq_forward_scales, y);
}

#if LB_HAVE_AVX2
/* lsq_block's whole groups of 8 in AVX2, the same operations in the same order per lane (the
 * compiler leaves the portable loop scalar). Returns the index where the scalar tail starts;
 * acc holds the lanes. */
LB_AVX2 static int64_t lsq_block_avx2(float lo, float hi, const float *restrict x,
                                      const float *restrict dyv, float *restrict dx, bool fresh,
                                      float sc, int64_t i0, int64_t i1, float *acc)
{
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vsc = _mm256_set1_ps(sc);
    const __m256 magic = _mm256_set1_ps(12582912.0f), one = _mm256_set1_ps(1.0f);
    __m256 a = _mm256_loadu_ps(acc);
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), vsc), dy = _mm256_loadu_ps(dyv + i);
        const __m256 in = _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(v, vlo, _CMP_GE_OQ),
                                                      _mm256_cmp_ps(v, vhi, _CMP_LE_OQ)), one);
        const __m256 r = _mm256_sub_ps(_mm256_add_ps(v, magic), magic); /* round_even */
        /* clampf: r < lo ? lo : (r > hi ? hi : r), NaN kept */
        __m256 c = _mm256_blendv_ps(r, vhi, _mm256_cmp_ps(r, vhi, _CMP_GT_OQ));
        c = _mm256_blendv_ps(c, vlo, _mm256_cmp_ps(r, vlo, _CMP_LT_OQ));
        a = _mm256_add_ps(a, _mm256_mul_ps(dy, _mm256_sub_ps(c, _mm256_mul_ps(in, v))));
        if (dx) {
            const __m256 g = _mm256_mul_ps(dy, in);
            _mm256_storeu_ps(dx + i, fresh ? _mm256_add_ps(_mm256_setzero_ps(), g)
                                           : _mm256_add_ps(_mm256_loadu_ps(dx + i), g));
        }
    }
    _mm256_storeu_ps(acc, a);
    return i;
}
#endif

/* Elements [i0, i1) under step sc: dx += dy inside the grid (dx = that, or 0, when fresh),
 * and returns the float sum of the step-gradient terms. Per element, with v = x/s, r = round(v),
 *   inside [qmin, qmax]: ds term r - v, dx += dy;  below: qmin;  above: qmax
 * (clamp(r) is qmin below and qmax above, and r inside). */
static float lsq_block(const lsq_saved *p, const float *restrict x, const float *restrict dyv,
                       float *restrict dx, bool fresh, float sc, int64_t i0, int64_t i1)
{
    const float lo = (float)p->qmin, hi = (float)p->qmax;
    /* eight partial sums, one per lane: a single float accumulator would be a reduction the
     * compiler may not reorder, and the loop would not vectorize */
    float acc[8] = { 0 };
    int64_t i = i0;
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) i = lsq_block_avx2(lo, hi, x, dyv, dx, fresh, sc, i0, i1, acc);
#endif
    for (; i + 8 <= i1; i += 8)
        for (int k = 0; k < 8; k++) {
            const float v = x[i + k] / sc, dy = dyv[i + k];
            const float inside = (v >= lo && v <= hi) ? 1.0f : 0.0f;
            acc[k] += dy * (clampf(round_even(v), lo, hi) - inside * v);
            if (dx) dx[i + k] = (fresh ? 0.0f : dx[i + k]) + dy * inside;
        }
    for (; i < i1; i++) {
        const float v = x[i] / sc, dy = dyv[i];
        const float inside = (v >= lo && v <= hi) ? 1.0f : 0.0f;
        acc[i & 7] += dy * (clampf(round_even(v), lo, hi) - inside * v);
        if (dx) dx[i] = (fresh ? 0.0f : dx[i]) + dy * inside;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void lsq_backward_part(void *ctx, int64_t lo_b, int64_t hi_b, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lsq_saved *p = y->saved;
    const lb_tensor *x = y->src[0];
    const int64_t n = lb_numel(y);
    for (int64_t b = lo_b; b < hi_b; b++) {
        const int64_t i0 = b * LSQ_BLOCK, i1 = i0 + LSQ_BLOCK < n ? i0 + LSQ_BLOCK : n;
        p->part[b] = lsq_block(p, x->data, y->grad, x->grad, x->grad_fresh, y->src[1]->data[0], i0, i1);
    }
}

/* Scales [lo_s, hi_s) of a per-channel or per-group step: each scale's gradient is summed by
 * one thread in a fixed order, so it does not depend on the thread count. */
static void lsq_backward_scales(void *ctx, int64_t lo_s, int64_t hi_s, int tid)
{
    (void)tid;
    lb_tensor *y = ctx;
    const lsq_saved *p = y->saved;
    lb_tensor *x = y->src[0], *step = y->src[1];
    for (int64_t s = lo_s; s < hi_s; s++) {
        double ds = 0.0; /* one scale may cover a whole row: blocks of float, then double */
        int64_t i0, i1;
        layout_run(&p->L, s, &i0, &i1);
        for (int64_t b0 = i0; b0 < i1; b0 += LSQ_BLOCK) {
            const int64_t b1 = i1 - b0 < LSQ_BLOCK ? i1 : b0 + LSQ_BLOCK;
            ds += (double)lsq_block(p, x->data, y->grad, x->grad, x->grad_fresh, step->data[s], b0, b1);
        }
        if (step->grad) step->grad[s] += (float)(p->grad_scale * ds);
    }
}

static void lsq_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0], *step = y->src[1];
    if (!x->grad && !step->grad) return;
    const lsq_saved *p = y->saved;
    if (p->L.n == 1) {
        const int64_t n_blocks = (lb_numel(y) + LSQ_BLOCK - 1) / LSQ_BLOCK;
        lb_parallel_for_dyn(n_blocks, 16, lsq_backward_part, y);
        double ds = 0.0;
        for (int64_t b = 0; b < n_blocks; b++) ds += (double)p->part[b];
        if (step->grad) step->grad[0] += (float)(p->grad_scale * ds);
        return;
    }
    const int64_t per = p->L.G < 1 ? 1 : p->L.G;
    lb_parallel_for_dyn(p->L.n, (8192 + per - 1) / per, lsq_backward_scales, y);
}

static const lb_op_def lsq_def = { "fake_quant_lsq", lsq_forward, lsq_backward, .overwrite = 1u };

lb_tensor *lb_fake_quant_lsq(lb_graph *g, lb_tensor *x, lb_tensor *step, lb_qgran gran,
                             int64_t group, int32_t qmin, int32_t qmax, float grad_scale)
{
    if (!x || !step || !lb_graph_ok(g)) return NULL;
    char dx[128], ds[128];
    desc(x, dx, sizeof dx);
    qlayout L;
    if (!check_layout(g, "fake_quant_lsq", x, gran, group, &L)) return NULL;
    if (!check_range(g, "fake_quant_lsq", x, qmin, qmax)) return NULL;
    if (lb_numel(step) != L.n)
        return lb_graph_fail(g, LB_ERR_SHAPE, "fake_quant_lsq(%s): step %s has %lld elements "
                             "(expected %lld for %s scales)", dx, desc(step, ds, sizeof ds),
                             (long long)lb_numel(step), (long long)L.n, gran_name(gran));
    if (!(grad_scale > 0.0f) || !isfinite(grad_scale))
        return lb_graph_fail(g, LB_ERR_ARG, "fake_quant_lsq(%s): grad_scale = %g (expected "
                             "finite and > 0)", dx, (double)grad_scale);
    for (int64_t s = 0; s < L.n; s++)
        if (!(step->data[s] > 0.0f) || !isfinite(step->data[s]))
            return lb_graph_fail(g, LB_ERR_ARG, "fake_quant_lsq(%s): step[%lld] = %g (expected "
                                 "finite and > 0; hint: lower the learning rate of the steps)",
                                 dx, (long long)s, (double)step->data[s]);
    lsq_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    *p = (lsq_saved){ .L = L, .qmin = qmin, .qmax = qmax, .grad_scale = grad_scale };
    if (L.n == 1) {
        const int64_t n_blocks = (lb_numel(x) + LSQ_BLOCK - 1) / LSQ_BLOCK;
        p->part = lb_graph_alloc(g, (size_t)(n_blocks > 0 ? n_blocks : 1) * sizeof(float));
        if (!p->part) return NULL;
    }
    return lb_graph_record(g, &lsq_def, x->shape, x->n_dims, (lb_tensor *[]){ x, step }, 2, p);
}

/* step = 2 * mean(|x|) / sqrt(qmax) per scale, the mean in double. */
void lb_lsq_init_step(const lb_tensor *x, lb_qgran gran, int64_t group, int32_t qmax,
                      float *step_out)
{
    LB_ASSERT(x != NULL && step_out != NULL && qmax > 0);
    qlayout L;
    const bool ok = layout_make(x, gran, group, &L);
    LB_ASSERT(ok); /* gran and group come from a validated configuration */
    const double k = 2.0 / sqrt((double)qmax);
    for (int64_t s = 0; s < L.n; s++) {
        int64_t i0, i1;
        layout_run(&L, s, &i0, &i1);
        double sum = 0.0;
        for (int64_t i = i0; i < i1; i++) sum += fabs((double)x->data[i]);
        step_out[s] = i1 > i0 ? (float)(k * sum / (double)(i1 - i0)) : 0.0f;
    }
}

/* ---- PACT (Choi et al. 2018) -----------------------------------------------------------
 *   forward:  c = clamp(x, 0, alpha);  y = round(c / s) * s,  s = alpha / L,  L = 2^bits - 1
 *             (fake_quant with scale alpha/L on [0, L], so both agree bit for bit)
 *   backward: dx     += dy          where 0 <= x <= alpha
 *             dalpha += sum of dy   where x > alpha (STE through the rounding, paper eq. 3) */

typedef struct {
    float levels; /* L = 2^bits - 1 */
} pact_saved;

static void pact_forward(lb_tensor *y)
{
    const pact_saved *p = y->saved;
    const float *x = y->src[0]->data, a = y->src[1]->data[0];
    const float s = a / p->levels;
    for (int64_t i = 0, n = lb_numel(y); i < n; i++)
        y->data[i] = nearbyintf(clampf(x[i], 0.0f, a) / s) * s;
}

static void pact_backward(lb_tensor *y)
{
    lb_tensor *x = y->src[0], *alpha = y->src[1];
    const float a = alpha->data[0];
    const int64_t n = lb_numel(y);
    if (x->grad)
        for (int64_t i = 0; i < n; i++)
            if (x->data[i] >= 0.0f && x->data[i] <= a) x->grad[i] += y->grad[i];
    if (alpha->grad) {
        double da = 0.0;
        for (int64_t i = 0; i < n; i++)
            if (x->data[i] > a) da += y->grad[i];
        alpha->grad[0] += (float)da;
    }
}

static const lb_op_def pact_def = { "pact", pact_forward, pact_backward, .overwrite = 0 };

lb_tensor *lb_pact(lb_graph *g, lb_tensor *x, lb_tensor *alpha, int bits)
{
    if (!x || !alpha || !lb_graph_ok(g)) return NULL;
    char dx[128], da[128];
    desc(x, dx, sizeof dx);
    if (!check_bits(g, "pact", x, bits)) return NULL;
    if (lb_numel(alpha) != 1)
        return lb_graph_fail(g, LB_ERR_SHAPE, "pact(%s): alpha %s (expected one element)", dx,
                             desc(alpha, da, sizeof da));
    if (!(alpha->data[0] > 0.0f) || !isfinite(alpha->data[0]))
        return lb_graph_fail(g, LB_ERR_ARG, "pact(%s): alpha = %g (expected finite and > 0)",
                             dx, (double)alpha->data[0]);
    pact_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    p->levels = (float)((1 << bits) - 1);
    return lb_graph_record(g, &pact_def, x->shape, x->n_dims, (lb_tensor *[]){ x, alpha }, 2, p);
}

/* ---- DoReFa weights (Zhou et al. 2016), per tensor --------------------------------------
 *   forward:  t = tanh(w);  m = max |t|;  u = t / (2m) + 1/2;  y = 2 * round(u * L) / L - 1
 *   backward: dw += dy * 2 * du/dw = dy * (1 - t^2) / m   (STE through the rounding, m constant)
 * All-zero w has m = 0: m is taken as 1 there, so u = 1/2 and the gradient is 1 - t^2 (never
 * NaN or Inf). */

typedef struct {
    float levels; /* L = 2^bits - 1                      */
    float m;      /* max |tanh(w)|, set by forward      */
} dorefa_saved;

static void dorefa_forward(lb_tensor *y)
{
    dorefa_saved *p = y->saved;
    const float *w = y->src[0]->data;
    const int64_t n = lb_numel(y);
    /* 1. t = tanh(w) into y, and its largest magnitude */
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        y->data[i] = tanhf(w[i]);
        m = fmaxf(m, fabsf(y->data[i]));
    }
    p->m = m > 0.0f ? m : 1.0f;
    /* 2. y = 2 * round(u * L) / L - 1 in place */
    const float two_m = 2.0f * p->m, L = p->levels;
    for (int64_t i = 0; i < n; i++) {
        const float u = y->data[i] / two_m + 0.5f;
        y->data[i] = 2.0f * nearbyintf(u * L) / L - 1.0f;
    }
}

static void dorefa_backward(lb_tensor *y)
{
    lb_tensor *w = y->src[0];
    if (!w->grad) return;
    const float m = ((const dorefa_saved *)y->saved)->m;
    for (int64_t i = 0, n = lb_numel(y); i < n; i++) {
        const float t = tanhf(w->data[i]);
        w->grad[i] += y->grad[i] * (1.0f - t * t) / m;
    }
}

static const lb_op_def dorefa_def = { "dorefa_weight", dorefa_forward, dorefa_backward,
                                      .overwrite = 0 };

lb_tensor *lb_dorefa_weight(lb_graph *g, lb_tensor *w, int bits)
{
    if (!w || !lb_graph_ok(g)) return NULL;
    if (!check_bits(g, "dorefa_weight", w, bits)) return NULL;
    dorefa_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    *p = (dorefa_saved){ .levels = (float)((1 << bits) - 1), .m = 1.0f };
    return lb_graph_record(g, &dorefa_def, w->shape, w->n_dims, (lb_tensor *[]){ w }, 1, p);
}

/* ---- binary weights (XNOR-Net, Rastegari et al. 2016) ----------------------------------
 *   forward:  a = mean |w| over the run;  y = a * sign(w),  sign(0) = +1
 *   backward: dw += dy where |w| <= 1 (clipped STE, a constant) */

typedef struct {
    qlayout L;
} bin_saved;

/* mean |w| over [i0, i1), in double; 0 for an empty run. */
static float mean_abs(const float *w, int64_t i0, int64_t i1)
{
    double sum = 0.0;
    for (int64_t i = i0; i < i1; i++) sum += fabs((double)w[i]);
    return i1 > i0 ? (float)(sum / (double)(i1 - i0)) : 0.0f;
}

static void binary_forward(lb_tensor *y)
{
    const bin_saved *p = y->saved;
    const float *w = y->src[0]->data;                 /* (O, ...) */
    for (int64_t s = 0; s < p->L.n; s++) {
        int64_t i0, i1;
        layout_run(&p->L, s, &i0, &i1);
        const float a = mean_abs(w, i0, i1);
        for (int64_t i = i0; i < i1; i++) y->data[i] = w[i] < 0.0f ? -a : a;
    }
}

static void binary_backward(lb_tensor *y)
{
    lb_tensor *w = y->src[0];
    if (!w->grad) return;
    for (int64_t i = 0, n = lb_numel(y); i < n; i++)
        if (fabsf(w->data[i]) <= 1.0f) w->grad[i] += y->grad[i];
}

static const lb_op_def binary_def = { "binary_weight", binary_forward, binary_backward,
                                      .overwrite = 0 };

/* TENSOR or CHANNEL layout for the binary and ternary ops (sticky LB_ERR_ARG otherwise). */
static bool check_weight_gran(lb_graph *g, const char *op, const lb_tensor *w, lb_qgran gran,
                              qlayout *L)
{
    if (gran == LB_QG_TENSOR || gran == LB_QG_CHANNEL) return layout_make(w, gran, 0, L);
    char dw[128];
    lb_graph_fail(g, LB_ERR_ARG, "%s(%s): %s scales not supported (expected per-tensor or "
                  "per-channel)", op, desc(w, dw, sizeof dw), gran_name(gran));
    return false;
}

lb_tensor *lb_binary_weight(lb_graph *g, lb_tensor *w, lb_qgran gran)
{
    if (!w || !lb_graph_ok(g)) return NULL;
    qlayout L;
    if (!check_weight_gran(g, "binary_weight", w, gran, &L)) return NULL;
    bin_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    p->L = L;
    return lb_graph_record(g, &binary_def, w->shape, w->n_dims, (lb_tensor *[]){ w }, 1, p);
}

/* ---- ternary weights (TWN, Li et al. 2016) ---------------------------------------------
 *   forward:  d = thresh * mean |w|;  a = mean of |w| over |w| > d (0 if none)
 *             y = a * sign(w) where |w| > d, 0 elsewhere          (per run: channel or tensor)
 *   backward: dw += dy (plain STE) */

typedef struct {
    qlayout L;
    float   thresh;
} ter_saved;

static void ternary_forward(lb_tensor *y)
{
    const ter_saved *p = y->saved;
    const float *w = y->src[0]->data;                 /* (O, ...) */
    for (int64_t s = 0; s < p->L.n; s++) {
        int64_t i0, i1;
        layout_run(&p->L, s, &i0, &i1);
        const float d = p->thresh * mean_abs(w, i0, i1);
        double sum = 0.0;
        int64_t cnt = 0;
        for (int64_t i = i0; i < i1; i++)
            if (fabsf(w[i]) > d) {
                sum += fabsf(w[i]);
                cnt++;
            }
        const float a = cnt ? (float)(sum / (double)cnt) : 0.0f;
        for (int64_t i = i0; i < i1; i++)
            y->data[i] = fabsf(w[i]) > d ? (w[i] < 0.0f ? -a : a) : 0.0f;
    }
}

static void ternary_backward(lb_tensor *y)
{
    lb_tensor *w = y->src[0];
    if (!w->grad) return;
    for (int64_t i = 0, n = lb_numel(y); i < n; i++) w->grad[i] += y->grad[i];
}

static const lb_op_def ternary_def = { "ternary_weight", ternary_forward, ternary_backward,
                                       .overwrite = 0 };

lb_tensor *lb_ternary_weight(lb_graph *g, lb_tensor *w, lb_qgran gran, float thresh)
{
    if (!w || !lb_graph_ok(g)) return NULL;
    if (!(thresh >= 0.0f) || !isfinite(thresh)) {
        char dw[128];
        return lb_graph_fail(g, LB_ERR_ARG, "ternary_weight(%s): thresh = %g (expected finite "
                             "and >= 0, usually 0.7)", desc(w, dw, sizeof dw), (double)thresh);
    }
    qlayout L;
    if (!check_weight_gran(g, "ternary_weight", w, gran, &L)) return NULL;
    ter_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    *p = (ter_saved){ .L = L, .thresh = thresh };
    return lb_graph_record(g, &ternary_def, w->shape, w->n_dims, (lb_tensor *[]){ w }, 1, p);
}
