/* mixed.c: see mixed.h. The MSE-optimal weight quantizer, Hutchinson's trace estimator and
 * the exact knapsack solver. No model, no dataset: train/sensitivity.c brings those. */
#include "quant/mixed.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"

/* ---- weight quantizer -------------------------------------------------------------------- */

#define CLIP_STEPS 100 /* candidate scales per row: (max|w| / qmax) * k / CLIP_STEPS */

/* Squared error of one row at scale s on the grid [qmin, qmax]; writes out when non-NULL. */
static double row_error(const float *w, int64_t K, float s, int qmin, int qmax, float *out)
{
    double e = 0.0;
    for (int64_t k = 0; k < K; k++) {
        float q = nearbyintf(w[k] / s); /* ties to even, like the fake-quant ops */
        q = fminf(fmaxf(q, (float)qmin), (float)qmax);
        const float y = q * s;
        const double d = (double)y - (double)w[k];
        e += d * d;
        if (out) out[k] = y;
    }
    return e;
}

void lb_weight_quantize_mse(const float *w, int64_t rows, int64_t K, int bits, float *out,
                            double *sq_err)
{
    LB_ASSERT(bits >= 1 && bits <= 8 && rows >= 0 && K >= 0);
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = w + r * K;
        float *y = out + r * K;
        if (bits == 1) { /* binary: a * sign(w), a = mean|w|, sign(0) = +1 (wq=binary) */
            double a = 0.0;
            for (int64_t k = 0; k < K; k++) a += fabsf(x[k]);
            const float af = K ? (float)(a / (double)K) : 0.0f;
            for (int64_t k = 0; k < K; k++) {
                const float v = x[k] < 0.0f ? -af : af;
                const double d = (double)v - (double)x[k];
                total += d * d;
                y[k] = v;
            }
            continue;
        }
        const int qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(x[k]));
        if (amax == 0.0f) { /* an all-zero row quantizes to itself */
            if (y != x) memcpy(y, x, (size_t)K * sizeof *y);
            continue;
        }
        float best_s = amax / (float)qmax;
        double best = INFINITY;
        for (int k = 1; k <= CLIP_STEPS; k++) {
            const float s = amax / (float)qmax * (float)k / (float)CLIP_STEPS;
            const double e = row_error(x, K, s, qmin, qmax, NULL);
            if (e < best) best = e, best_s = s;
        }
        total += row_error(x, K, best_s, qmin, qmax, y);
    }
    if (sq_err) *sq_err = total;
}

/* ---- Hutchinson -------------------------------------------------------------------------- */

lb_status lb_hutchinson_trace(lb_grad_fn grad_fn, void *ctx, float *w, int64_t n,
                              const int64_t *off, const int64_t *len, int n_blocks, bool together,
                              int samples, float rel_eps, uint64_t seed, double *trace,
                              double *se, lb_error *err)
{
    if (samples < 1) return lb_errorf(err, LB_ERR_ARG, "hutchinson: %d samples (expected >= 1)", samples);
    if (!(rel_eps > 0.0f))
        return lb_errorf(err, LB_ERR_ARG, "hutchinson: relative step %g (expected > 0)", (double)rel_eps);
    if (n_blocks < 1) return lb_errorf(err, LB_ERR_ARG, "hutchinson: no blocks");
    int64_t total = 0;
    for (int b = 0; b < n_blocks; b++) {
        if (len[b] < 1 || off[b] < 0 || off[b] + len[b] > n)
            return lb_errorf(err, LB_ERR_ARG, "hutchinson: block %d [%lld, +%lld) is empty or "
                             "outside the %lld parameters", b, (long long)off[b],
                             (long long)len[b], (long long)n);
        total += len[b];
    }
    lb_status st = LB_OK;
    float *w0 = malloc((size_t)total * sizeof *w0);      /* original block values        */
    int8_t *v = malloc((size_t)total);                  /* the Rademacher vector          */
    float *gp = malloc((size_t)n * sizeof *gp), *gm = malloc((size_t)n * sizeof *gm);
    float *eps = malloc((size_t)n_blocks * sizeof *eps);
    double *sum = calloc((size_t)n_blocks, sizeof *sum), *sum2 = calloc((size_t)n_blocks, sizeof *sum2);
    if (!w0 || !v || !gp || !gm || !eps || !sum || !sum2) {
        st = lb_errorf(err, LB_ERR_NOMEM, "hutchinson: out of memory for %lld parameters",
                       (long long)n);
        goto done;
    }
    for (int b = 0, j = 0; b < n_blocks; b++) {
        double ss = 0.0;
        for (int64_t i = 0; i < len[b]; i++, j++) {
            w0[j] = w[off[b] + i];
            ss += (double)w0[j] * w0[j];
        }
        const double rms = sqrt(ss / (double)len[b]);
        eps[b] = rms > 0.0 ? rel_eps * (float)rms : rel_eps;
    }
    lb_rng rng = lb_rng_make(seed);
    /* together: every block perturbed at once, one gradient pair per sample for all blocks;
     * otherwise block p alone in pass p (the others exactly at w0) */
    const int passes = together ? 1 : n_blocks;
    for (int s = 0; s < samples && !st; s++) {
        for (int64_t j = 0; j < total; j++) v[j] = (lb_rng_u64(&rng) >> 63) ? 1 : -1;
        for (int pass = 0; pass < passes && !st; pass++) {
            for (int sign = 1; sign >= -1 && !st; sign -= 2) { /* w + eps v, then w - eps v */
                for (int b = 0, j = 0; b < n_blocks; b++) {
                    const bool on = together || b == pass;
                    for (int64_t i = 0; i < len[b]; i++, j++)
                        w[off[b] + i] = on ? w0[j] + (float)sign * eps[b] * (float)v[j] : w0[j];
                }
                st = grad_fn(ctx, w, sign > 0 ? gp : gm, err);
            }
            for (int b = 0, j = 0; b < n_blocks; b++) { /* v_b^T (g+ - g-)_b / (2 eps_b) */
                if (!together && b != pass) {
                    j += (int)len[b];
                    continue;
                }
                double d = 0.0;
                for (int64_t i = 0; i < len[b]; i++, j++)
                    d += (double)v[j] * ((double)gp[off[b] + i] - (double)gm[off[b] + i]);
                d /= 2.0 * (double)eps[b];
                sum[b] += d;
                sum2[b] += d * d;
            }
        }
    }
    for (int b = 0, j = 0; b < n_blocks; b++) /* restore exactly */
        for (int64_t i = 0; i < len[b]; i++, j++) w[off[b] + i] = w0[j];
    if (st) goto done;
    for (int b = 0; b < n_blocks; b++) {
        const double mean = sum[b] / samples;
        trace[b] = mean;
        if (se) {
            const double var = samples > 1 ? (sum2[b] - samples * mean * mean) / (samples - 1) : 0.0;
            se[b] = var > 0.0 ? sqrt(var / samples) : 0.0;
        }
    }
done:
    free(w0);
    free(v);
    free(gp);
    free(gm);
    free(eps);
    free(sum);
    free(sum2);
    return st;
}

lb_status lb_hutchinson_gn_trace(lb_logits_fn logits_fn, void *ctx, float *w, int64_t n,
                                 int64_t N, int C, const int64_t *off, const int64_t *len,
                                 int n_blocks, int samples, float rel_eps, uint64_t seed,
                                 double *trace, double *se, lb_error *err)
{
    if (samples < 1) return lb_errorf(err, LB_ERR_ARG, "hutchinson: %d samples (expected >= 1)", samples);
    if (!(rel_eps > 0.0f))
        return lb_errorf(err, LB_ERR_ARG, "hutchinson: relative step %g (expected > 0)", (double)rel_eps);
    if (n_blocks < 1 || N < 1 || C < 1)
        return lb_errorf(err, LB_ERR_ARG, "hutchinson: %d blocks, %lld samples, %d classes",
                         n_blocks, (long long)N, C);
    int64_t max_len = 0;
    for (int b = 0; b < n_blocks; b++) {
        if (len[b] < 1 || off[b] < 0 || off[b] + len[b] > n)
            return lb_errorf(err, LB_ERR_ARG, "hutchinson: block %d [%lld, +%lld) is empty or "
                             "outside the %lld parameters", b, (long long)off[b],
                             (long long)len[b], (long long)n);
        if (len[b] > max_len) max_len = len[b];
    }
    lb_status st = LB_OK;
    const size_t NC = (size_t)N * (size_t)C;
    float *w0 = malloc((size_t)max_len * sizeof *w0), *zp = malloc(NC * sizeof *zp);
    float *zm = malloc(NC * sizeof *zm), *p = malloc(NC * sizeof *p);
    int8_t *v = malloc((size_t)max_len);
    if (!w0 || !zp || !zm || !p || !v) {
        st = lb_errorf(err, LB_ERR_NOMEM, "hutchinson: out of memory for %lld x %d logits",
                       (long long)N, C);
        goto done;
    }
    if ((st = logits_fn(ctx, w, p, err))) goto done;
    for (int64_t i = 0; i < N; i++) { /* p = softmax(z), in place */
        float *z = p + i * C, zmax = z[0];
        double sum = 0.0;
        for (int c = 1; c < C; c++) zmax = fmaxf(zmax, z[c]);
        for (int c = 0; c < C; c++) sum += exp((double)z[c] - zmax);
        for (int c = 0; c < C; c++) z[c] = (float)(exp((double)z[c] - zmax) / sum);
    }
    lb_rng rng = lb_rng_make(seed);
    for (int b = 0; b < n_blocks && !st; b++) {
        float *wb = w + off[b];
        double ss = 0.0;
        for (int64_t i = 0; i < len[b]; i++) {
            w0[i] = wb[i];
            ss += (double)w0[i] * w0[i];
        }
        const double rms = sqrt(ss / (double)len[b]);
        const float eps = rms > 0.0 ? rel_eps * (float)rms : rel_eps;
        double sum = 0.0, sum2 = 0.0;
        for (int s = 0; s < samples && !st; s++) {
            for (int64_t i = 0; i < len[b]; i++) v[i] = (lb_rng_u64(&rng) >> 63) ? 1 : -1;
            for (int64_t i = 0; i < len[b]; i++) wb[i] = w0[i] + eps * (float)v[i];
            if ((st = logits_fn(ctx, w, zp, err))) break;
            for (int64_t i = 0; i < len[b]; i++) wb[i] = w0[i] - eps * (float)v[i];
            if ((st = logits_fn(ctx, w, zm, err))) break;
            double d = 0.0; /* mean_n  sum_c p_c u_c^2 - (sum_c p_c u_c)^2,  u = J_n v */
            for (int64_t i = 0; i < N; i++) {
                double a = 0.0, m = 0.0;
                for (int c = 0; c < C; c++) {
                    const size_t k = (size_t)i * C + (size_t)c;
                    const double u = ((double)zp[k] - (double)zm[k]) / (2.0 * (double)eps);
                    a += p[k] * u * u;
                    m += p[k] * u;
                }
                d += a - m * m;
            }
            d /= (double)N;
            sum += d;
            sum2 += d * d;
        }
        for (int64_t i = 0; i < len[b]; i++) wb[i] = w0[i]; /* restore exactly */
        const double mean = sum / samples;
        trace[b] = mean;
        if (se) {
            const double var = samples > 1 ? (sum2 - samples * mean * mean) / (samples - 1) : 0.0;
            se[b] = var > 0.0 ? sqrt(var / samples) : 0.0;
        }
    }
done:
    free(w0);
    free(zp);
    free(zm);
    free(p);
    free(v);
    return st;
}

/* ---- knapsack ---------------------------------------------------------------------------- */

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        const int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

#define MAX_TABLE ((int64_t)1 << 30) /* bytes of the choice table */

lb_status lb_mixed_solve(int L, int C, const int64_t *cost, const double *objective,
                         int64_t budget, int *choice, double *best, int64_t *used,
                         lb_error *err)
{
    if (L < 1 || C < 1 || C > 255)
        return lb_errorf(err, LB_ERR_ARG, "mixed: %d layers and %d choices (expected >= 1 and "
                         "1..255)", L, C);
    int64_t min_total = 0, g = 0;
    for (int l = 0; l < L; l++) {
        int64_t lo = INT64_MAX;
        for (int c = 0; c < C; c++) {
            const int64_t k = cost[l * C + c];
            if (k < 0) return lb_errorf(err, LB_ERR_ARG, "mixed: layer %d choice %d has cost %lld "
                                        "(expected >= 0)", l, c, (long long)k);
            if (!isfinite(objective[l * C + c]))
                return lb_errorf(err, LB_ERR_ARG, "mixed: layer %d choice %d has objective %g "
                                 "(expected a finite number)", l, c, objective[l * C + c]);
            if (k < lo) lo = k;
        }
        for (int c = 0; c < C; c++) g = gcd64(g, cost[l * C + c] - lo);
        if (min_total > INT64_MAX - lo) return lb_errorf(err, LB_ERR_ARG, "mixed: costs overflow");
        min_total += lo;
    }
    if (budget < min_total)
        return lb_errorf(err, LB_ERR_ARG, "mixed: budget %lld is below the smallest possible "
                         "total %lld (every layer at its cheapest choice)", (long long)budget,
                         (long long)min_total);
    if (g == 0) g = 1; /* every choice costs the same within each layer */
    /* capacity in units of g after the cheapest options are paid for */
    int64_t cap = (budget - min_total) / g;
    int64_t max_extra = 0;
    for (int l = 0; l < L; l++) {
        int64_t lo = INT64_MAX, hi = 0;
        for (int c = 0; c < C; c++) {
            lo = cost[l * C + c] < lo ? cost[l * C + c] : lo;
            hi = cost[l * C + c] > hi ? cost[l * C + c] : hi;
        }
        max_extra += (hi - lo) / g;
    }
    if (cap > max_extra) cap = max_extra; /* more budget than the dearest assignment needs */
    if ((cap + 1) > MAX_TABLE / L)
        return lb_errorf(err, LB_ERR_NOMEM, "mixed: the dynamic-programming table would need "
                         "%lld x %lld cells; hint: costs in coarser units (e.g. bytes, not bits)",
                         (long long)L, (long long)(cap + 1));
    lb_status st = LB_OK;
    const size_t W = (size_t)cap + 1;
    double *dp = malloc(W * sizeof *dp), *nx = malloc(W * sizeof *nx);
    uint8_t *pick = malloc((size_t)L * W);
    if (!dp || !nx || !pick) {
        st = lb_errorf(err, LB_ERR_NOMEM, "mixed: out of memory for a %lld x %zu table",
                       (long long)L, W);
        goto done;
    }
    /* dp[c]: least objective of the layers so far with extra cost <= c */
    for (size_t c = 0; c < W; c++) dp[c] = 0.0;
    for (int l = 0; l < L; l++) {
        int64_t lo = INT64_MAX;
        for (int k = 0; k < C; k++) lo = cost[l * C + k] < lo ? cost[l * C + k] : lo;
        for (size_t c = 0; c < W; c++) {
            double b = INFINITY;
            int bk = -1;
            int64_t bcost = 0;
            for (int k = 0; k < C; k++) {
                const int64_t e = (cost[l * C + k] - lo) / g;
                if (e > (int64_t)c || isinf(dp[c - (size_t)e])) continue;
                const double v = dp[c - (size_t)e] + objective[l * C + k];
                if (v < b || (v == b && e < bcost)) b = v, bk = k, bcost = e;
            }
            nx[c] = b;
            pick[(size_t)l * W + c] = (uint8_t)(bk < 0 ? 255 : bk);
        }
        double *t = dp;
        dp = nx;
        nx = t;
    }
    /* backtrack from the full capacity */
    int64_t c = cap, total = 0;
    for (int l = L - 1; l >= 0; l--) {
        const int k = pick[(size_t)l * W + (size_t)c];
        LB_ASSERT(k != 255); /* capacity >= 0 always admits the cheapest choices */
        int64_t lo = INT64_MAX;
        for (int j = 0; j < C; j++) lo = cost[l * C + j] < lo ? cost[l * C + j] : lo;
        choice[l] = k;
        c -= (cost[l * C + k] - lo) / g;
        total += cost[l * C + k];
    }
    if (best) *best = dp[cap];
    if (used) *used = total;
done:
    free(dp);
    free(nx);
    free(pick);
    return st;
}
