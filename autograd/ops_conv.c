/* ops_conv.c: 2-d convolution (cross-correlation, as PyTorch).
 *
 * Images are split over the threads of the pool (parallel.h); each thread works on one image
 * at a time in its own scratch. Forward hands out images as threads become free. Backward
 * gives each thread a fixed range for dW, accumulated into its partial sum (the partials are
 * added in thread order), while dx, which does not depend on the thread, is taken over by
 * threads that finish early (steal_dx). The paths:
 *  - stride 1 (the bulk of every model here): a direct convolution from a zero-padded copy of
 *    the image, register-blocked (see "direct" below), for y, dW, and dx as the correlation of
 *    dy with the flipped, transposed kernel. Nothing is unrolled.
 *  - stride 1 with exactly 16 output channels on a narrow image whose padded-width layout
 *    would waste a fifth of its columns (LeNet's conv2): y, dW and dx over the output
 *    channels in the vector lanes, on a channels-last copy of the image (see "channels
 *    last" below).
 *  - stride 2 with more than 2 output channels: y and dW by the same direct kernels on a
 *    phase layout of the padded image (see "Stride 2" below); dx by its four phases.
 *  - 1x1, stride 1, no padding: one sgemm per image, Y_n = W · X_n.
 *  - other strides: im2col + sgemm. The image is unrolled, band by band of output rows, into
 *    the scratch matrix col (K, rows*Wo) whose row (c, i, j) holds the pixels that tap (c, i, j)
 *    sees; Y_n[:, band] = W · col; dx through dcol = Wᵀ · dY_n and col2im.
 * Not here: dilation, groups, asymmetric stride or padding, NHWC tensors (channels last is a
 * per-image scratch layout only).
 *
 * Legend: B batch, C input channels, H W input size, O output channels, kh kw kernel size,
 * Ho Wo output size, S = Ho*Wo output positions, K = C*kh*kw unrolled patch length.
 */
#include <stdatomic.h>
#include <string.h>

#include "autograd/simd.h"
#include "autograd/blas.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"
#include "autograd/pool22.h"

/* ---- direct stride-1 convolution ----------------------------------------------------------
 * The image is copied once into a zero-padded plane per channel, xp (C, Hp, Wp), and the
 * output is computed in padded-width coordinates: position t = oh*Wp + ow reads
 * xp[c][t + i*Wp + j] for tap (i, j), so DT consecutive positions are DV vector loads per tap
 * whatever the row boundaries. The last Wp - Wo positions of each row are garbage, computed
 * and dropped when the rows are copied out. Where the right padding is no wider than the
 * left, rows share it (Wp = W + pw: one garbage column in 33 at 32 wide, 1 in 9 at 8). A micro-tile
 * is DO output channels x DT positions, 12 AVX2 accumulators; per tap it loads DV vectors and
 * broadcasts DO weights for DO*DV multiply-adds. Weights are packed (O/DO, C, kh, kw, DO) so
 * one tap's DO weights are adjacent.
 * dW[o][c][i][j] = sum_t dy[o][t] xp[c][t + i*Wp + j], with dy laid out the same way (garbage
 * columns zero): per (channel block, c, i), DO x 3 taps in 12 accumulators, reduced at the end.
 * dx is this same forward kernel run on dy padded by k - 1 - pad with the flipped kernel.
 * With only 1 or 2 output channels (dx of an image input, 1 or 2 channels) most of a DO-channel
 * tile would be zero weights: there a "wide" tile computes one channel x DTW positions, in
 * 12 accumulators as well (12 loads and one broadcast for 12 multiply-adds).
 * Stride 2 works the same way on a phase layout: each channel is split into four planes
 * P[a][b][u][v] = xpad[2u + a][2v + b] of ceil(Hp/2) x ceil(Wp/2), and output position
 * t = oh*Wq + ow reads tap (i, j) at P[i mod 2][j mod 2][t + (i/2)*Wq + j/2]: contiguous again,
 * with one garbage column per row. Forward and dW use it; dx goes through col2im. */
#define DO 4                      /* output channels per micro-tile */
#define DV 3                      /* vectors of 8 positions per micro-tile (at most) */
#define DT (8 * DV)               /* positions per micro-tile (at most) */
#define DVW 12                    /* vectors of 8 positions per wide tile */
#define MAX_TAPS2 49              /* stride-2 direct convolutions: kernels up to 7x7 */
#define DTW (8 * DVW)             /* positions per wide tile */

typedef struct {
    int64_t C, H, W, ph, pw, kh, kw, O; /* input, padding, kernel, output channels */
    int64_t Hp, Wp, Ho, Wo, plane;      /* padded input; output; Hp*Wp (stride 2: see below) */
    int     s;                          /* stride: 1, or 2 (phase layout) */
    int64_t T, Tt, Tw;  /* Ho*Wp positions; T rounded up to 8*dv (forward), to 8 (dW) */
    int64_t nob;        /* output channel blocks of DO */
    int     dv;         /* vectors per tile: 3, or 2 where that wastes less (8x8 images), or
                           DVW (wide tiles, one channel each) when O <= 2 */
} dgeom;

static dgeom dgeom_make(int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t kh,
                        int64_t kw, int64_t O, int stride)
{
    dgeom g = { .C = C, .H = H, .W = W, .ph = ph, .pw = pw, .kh = kh, .kw = kw, .O = O,
                .s = stride };
    g.Hp = H + 2 * ph, g.Wp = W + 2 * pw;
    g.Ho = (g.Hp - kh) / stride + 1, g.Wo = (g.Wp - kw) / stride + 1;
    /* Stride 1 with a right padding no wider than the left one (3x3 pad 1, 5x5 pad 2): the
     * rows share their padding columns, Wp = W + pw. A window past a row's end reads the next
     * row's left padding (zeros), and past the last row the next plane's top padding (zeros
     * when ph >= 1) or the zeroed tail. Fewer garbage columns: 1 in 9 at 8x8 instead of 2 in
     * 10, and T = 72 there fills three 24-position tiles exactly. */
    if (stride == 1 && pw > 0 && ph >= 1 && kw - 1 - pw <= pw) g.Wp = W + pw;
    if (stride == 2) { /* four phase planes of ceil(Hp/2) x ceil(Wp/2) per channel */
        g.Hp = (g.Hp + 1) / 2, g.Wp = (g.Wp + 1) / 2;
        g.plane = 4 * g.Hp * g.Wp;
    } else {
        g.plane = g.Hp * g.Wp;
    }
    g.T = g.Ho * g.Wp;
    /* tiles of 2 vectors do ~10% fewer multiply-adds per load; worth it only when 3-vector
     * tiles would compute far past the end (T = 80 for 8x8: 96 against 80) */
    const int64_t t3 = (g.T + 23) / 24 * 24, t2 = (g.T + 15) / 16 * 16;
    g.dv = (double)t2 * 1.1 < (double)t3 ? 2 : 3;
    g.Tt = g.dv == 3 ? t3 : t2;
    if (O <= 2 && stride == 1) { /* wide tiles */
        g.dv = DVW;
        g.Tt = (g.T + DTW - 1) / DTW * DTW;
    } else if (stride == 2) { /* the tap-table tile has 3 vectors */
        g.dv = 3;
        g.Tt = t3;
    }
    g.Tw = (g.T + 7) / 8 * 8;
    g.nob = (O + DO - 1) / DO;
    return g;
}

/* Floats of the padded image: the kernels read up to one tile (8*dv) + kw + 8 past the last
 * plane. */
static int64_t dg_xp_floats(const dgeom *g)
{
    return g->C * g->plane + 8 * (g->dv > DV ? g->dv : DV) + g->kw + 8;
}
/* Floats of the padded-width output (nob*DO, Tt); dW's dy uses (nob*DO, Tw), no more. */
static int64_t dg_y_floats(const dgeom *g) { return g->nob * DO * g->Tt; }
static int64_t dg_wpk_floats(const dgeom *g) { return g->nob * DO * g->C * g->kh * g->kw; }
/* Offset of tap (i, j) from a channel's start in the padded image: i*Wp + j, or with stride 2
 * the phase plane ((i mod 2), (j mod 2)) at row i/2, column j/2. */
static int64_t dg_tap(const dgeom *g, int64_t i, int64_t j)
{
    if (g->s == 1) return i * g->Wp + j;
    return ((i & 1) * 2 + (j & 1)) * (g->plane / 4) + (i >> 1) * g->Wp + (j >> 1);
}

/* dx of a stride-2 convolution by its four phases. dx[c][2a + py][2b + px] takes only the
 * taps (i, j) with i = py + pad (mod 2) and j = px + pad (mod 2), each reading
 * dy[o][a + ri][b + rj], ri = (py + pad - i)/2, rj = (px + pad - j)/2: per phase a stride-1
 * correlation of dy with a quarter of the kernel (3x3: 1, 2, 2 and 4 taps), with no
 * multiply-add on the zeros a stride-1 form of the transposed convolution would insert.
 * dy is padded once (Pt rows on top, Pl columns on the left, zeros past its end: rows of Wd
 * floats, planes of Hd*Wd) and shared by the four phases; a phase's output position a*Wd + b
 * (b < Wph valid) is computed by the tap-table tile (tilet) with the taps at
 * (ri + Pt)*Wd + rj + Pl. */
typedef struct {
    int64_t Pt, Pl, Hd, Wd, plane, tail; /* padded dy: plane floats a channel, then tail   */
    int64_t Hph[2], Wph[2];              /* rows and columns of dx of each parity          */
    int64_t Tt[4];                       /* positions of phase q = 2*py + px, to 24        */
    int     nt[4];                       /* its taps (0: that phase of dx gets no term)    */
    int64_t toff[4][MAX_TAPS2];          /* their offsets in the padded dy                 */
    int8_t  ti[4][MAX_TAPS2], tj[4][MAX_TAPS2]; /* their kernel rows and columns           */
    int64_t nob;                         /* blocks of DO dx channels                        */
} phgeom;

typedef struct {
    int64_t C, H, W, kh, kw, Ho, Wo;
    int     stride, pad;
    bool    col;    /* unroll with im2col (strided convs); false on the 1x1 sgemm path  */
    bool    direct; /* stride 1: the direct kernels for y and dW                        */
    bool    flip;   /* dx by the direct kernel on dy with the flipped kernel            */
    dgeom   gf, gt; /* the geometry of y = conv(x) and of dx = conv(dy, flipped w)      */
    float  *wpk;    /* packed w (gf.nob, C, kh, kw, DO), filled by each forward         */
    float  *wpk_t;  /* packed flipped, transposed w (gt.nob, O, kh, kw, DO), by backward */
                    /* (both in lb_parallel_shared: needed only during that one call)     */
    /* lb_conv2d_maxpool2: y is the 2x2 stride-2 max pooling (Hq, Wq) = (Ho/2, Wo/2) of the
     * convolution, whose output is never stored; am8 (B, O, Hq, Wq) holds the winners. NULL
     * for a plain convolution. */
    uint8_t *am8;
    int64_t  Hq, Wq;
    float   *lanes; /* pooled with a bias: (B, O, 8) lane sums of each image's dy (below) */
    /* dW's image groups (direct): a slot of `slot` floats per image, its padded image, then
     * at dy_off its dy with rows dy_ld floats apart (dw_layout) */
    int64_t  slot, dy_off, dy_ld;
    bool     share_dy; /* the dy in the slot is dx's padded dy (gt) too */
    bool     cl;       /* y, dW and dx channels last (cl_applies): wpk holds wc, wpk_t wz */
    bool     dw_tiled; /* the threads' partial dW in the dW kernel's order (d_dw_group) */
    bool     phase;    /* stride 2: dx by its four phases (phgeom) */
    phgeom   ph;
    /* backward on several threads, when x needs a gradient: claim[n] is set by the thread
     * that computes image n's dx (its owner, or a thread done with its own images), raided[t]
     * once another thread takes dx from thread t's images (steal_dx) */
    atomic_uchar *claim, *raided;
} conv_saved;

/* Packs w (O, C, kh, kw) for the tile kernel: wpk[((ob*Ci + c)*kh + i)*kw + j][k] is the
 * weight from input channel c to output channel ob*DO + k (zero past the last one). With
 * flip, the convolution is dy -> dx: input channels O, output channels C, and the weight is
 * w[k'][c'][kh-1-i][kw-1-j] with k' the input (dy) channel and c' the output (dx) channel. */
static void d_pack(const float *w, int64_t O, int64_t C, int64_t kh, int64_t kw, bool flip,
                   float *restrict wpk)
{
    const int64_t Oo = flip ? C : O, Ci = flip ? O : C, nob = (Oo + DO - 1) / DO;
    for (int64_t ob = 0; ob < nob; ob++)
        for (int64_t c = 0; c < Ci; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    for (int64_t k = 0; k < DO; k++) {
                        const int64_t o = ob * DO + k;
                        *wpk++ = o >= Oo ? 0.0f
                                 : flip  ? w[((c * C + o) * kh + kh - 1 - i) * kw + kw - 1 - j]
                                         : w[((o * C + c) * kh + i) * kw + j];
                    }
}

/* d[0, n) = s[0, n) for the short rows of these layouts (10 to 32 floats in the zoo, where a
 * memcpy call costs more than the copy): 8 floats at a time, the last 8 overlapping. */
static inline void copy_row(float *restrict d, const float *restrict s, int64_t n)
{
    if (n < 8) {
        for (int64_t t = 0; t < n; t++) d[t] = s[t];
        return;
    }
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) memcpy(d + t, s + t, 8 * sizeof(float));
    if (t < n) memcpy(d + n - 8, s + n - 8, 8 * sizeof(float));
}

/* d[0, n) = 0 for the padding rows (one or two rows of 9 to 36 floats per channel here, where
 * the memset calls cost more than the zeroing did): 8 floats at a time, the last 8
 * overlapping. */
static inline void zero_row(float *restrict d, int64_t n)
{
    static const float z[8];
    if (n < 8) {
        for (int64_t t = 0; t < n; t++) d[t] = 0.0f;
        return;
    }
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) memcpy(d + t, z, sizeof z);
    if (t < n) memcpy(d + n - 8, z, sizeof z);
}

/* xp = x (C, H, W) zero-padded by (ph, pw), plus the zeroed tail the kernels read. Only
 * the padding is zeroed, not the whole plane first. */
/* Stride 2: xp (C, 4, Hq, Wq) = the four phase planes of x zero-padded by (ph, pw), then the
 * zeroed tail. Padded pixel (r, q) = (h + ph, w + pw) goes to plane (r mod 2, q mod 2), row
 * r/2, column q/2: a row of x splits into its even and its odd pixels, two contiguous runs. */
LB_CLONES
static void d_pad2(const dgeom *g, const float *restrict x, float *restrict xp)
{
    const int64_t Wq = g->Wp, H = g->H, W = g->W, q = g->plane / 4, pw = g->pw;
    const int64_t be = pw & 1, ce = pw >> 1, co = (pw + 1) >> 1; /* evens: plane be, col ce+m */
    const int64_t ne = (W + 1) / 2, no = W / 2;
    for (int64_t c = 0; c < g->C; c++) {
        float *restrict pc = xp + c * g->plane;
        memset(pc, 0, (size_t)g->plane * sizeof(float));
        for (int64_t h = 0; h < H; h++) {
            const int64_t r = h + g->ph;
            if ((r & 1) && g->kh == 1) continue; /* odd rows: no tap reads them (zeros stay) */
            float *restrict de = pc + ((r & 1) * 2 + be) * q + (r >> 1) * Wq + ce;
            float *restrict dd = pc + ((r & 1) * 2 + (1 - be)) * q + (r >> 1) * Wq + co;
            const float *restrict xr = x + (c * H + h) * W;
            if (be == 0 || g->kw > 1)
                for (int64_t m = 0; m < ne; m++) de[m] = xr[2 * m];
            if (be == 1 || g->kw > 1)
                for (int64_t m = 0; m < no; m++) dd[m] = xr[2 * m + 1];
        }
    }
    const int64_t n = dg_xp_floats(g);
    memset(xp + g->C * g->plane, 0, (size_t)(n - g->C * g->plane) * sizeof(float));
}

LB_CLONES
static void d_pad1(const dgeom *g, const float *restrict x, float *restrict xp)
{
    const int64_t n = dg_xp_floats(g), Wp = g->Wp, W = g->W, pw = g->pw;
    if (g->ph == 0 && pw == 0) {
        memcpy(xp, x, (size_t)(g->C * g->plane) * sizeof(float));
        memset(xp + g->C * g->plane, 0, (size_t)(n - g->C * g->plane) * sizeof(float));
        return;
    }
    for (int64_t c = 0; c < g->C; c++) {
        float *restrict pc = xp + c * g->plane;
        const float *restrict xc = x + c * g->H * W;
        zero_row(pc, g->ph * Wp);
        for (int64_t h = 0; h < g->H; h++) {
            float *restrict r = pc + (h + g->ph) * Wp;
            for (int64_t t = 0; t < pw; t++) r[t] = 0.0f;
            copy_row(r + pw, xc + h * W, W);
            for (int64_t t = pw + W; t < Wp; t++) r[t] = 0.0f;
        }
        zero_row(pc + (g->H + g->ph) * Wp, g->ph * Wp);
    }
    memset(xp + g->C * g->plane, 0, (size_t)(n - g->C * g->plane) * sizeof(float));
}

static void d_pad(const dgeom *g, const float *restrict x, float *restrict xp)
{
    if (g->s == 2) d_pad2(g, x, xp);
    else d_pad1(g, x, xp);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(LB_NO_CLONES)
#include <immintrin.h>
#define LB_DIRECT_AVX2 1

/* The 12 accumulators of a DO x DT tile, one tap's multiply-adds (3 vectors of input at
 * src, DO weights at wt), and the stores of the tile. */
#define TILE_ACCS                                                                              \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;              \
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0
#define TILE_TAP(src, wt)                                                                      \
    do {                                                                                       \
        const __m256 x0 = _mm256_loadu_ps(src), x1 = _mm256_loadu_ps((src) + 8),                \
                     x2 = _mm256_loadu_ps((src) + 16);                                         \
        __m256 b = _mm256_broadcast_ss(wt);                                                    \
        a0 = _mm256_fmadd_ps(b, x0, a0), a1 = _mm256_fmadd_ps(b, x1, a1);                      \
        a2 = _mm256_fmadd_ps(b, x2, a2);                                                       \
        b = _mm256_broadcast_ss((wt) + 1);                                                     \
        a3 = _mm256_fmadd_ps(b, x0, a3), a4 = _mm256_fmadd_ps(b, x1, a4);                      \
        a5 = _mm256_fmadd_ps(b, x2, a5);                                                       \
        b = _mm256_broadcast_ss((wt) + 2);                                                     \
        a6 = _mm256_fmadd_ps(b, x0, a6), a7 = _mm256_fmadd_ps(b, x1, a7);                      \
        a8 = _mm256_fmadd_ps(b, x2, a8);                                                       \
        b = _mm256_broadcast_ss((wt) + 3);                                                     \
        a9 = _mm256_fmadd_ps(b, x0, a9), a10 = _mm256_fmadd_ps(b, x1, a10);                    \
        a11 = _mm256_fmadd_ps(b, x2, a11);                                                     \
    } while (0)
#define TILE_STORE(out, ld)                                                                    \
    do {                                                                                       \
        float *o_ = (out);                                                                     \
        _mm256_storeu_ps(o_, a0), _mm256_storeu_ps(o_ + 8, a1), _mm256_storeu_ps(o_ + 16, a2); \
        o_ += (ld);                                                                            \
        _mm256_storeu_ps(o_, a3), _mm256_storeu_ps(o_ + 8, a4), _mm256_storeu_ps(o_ + 16, a5); \
        o_ += (ld);                                                                            \
        _mm256_storeu_ps(o_, a6), _mm256_storeu_ps(o_ + 8, a7), _mm256_storeu_ps(o_ + 16, a8); \
        o_ += (ld);                                                                            \
        _mm256_storeu_ps(o_, a9), _mm256_storeu_ps(o_ + 8, a10),                               \
            _mm256_storeu_ps(o_ + 16, a11);                                                    \
    } while (0)

/* out (DO rows of ld) [0, DT) = the DO x DT tile at xp: see "direct" above. Only the kernel
 * rows [ia, ib) are summed: the others read nothing but zero padding rows for this tile. */
__attribute__((target("avx2,fma")))
static void tile_avx2(const float *restrict xp, int64_t plane, int64_t C, int64_t kh, int64_t kw,
                      int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                      float *restrict out, int64_t ld)
{
    TILE_ACCS;
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t i = ia; i < ib; i++) {
            const float *restrict wr = w + ((c * kh + i) * kw) * DO;
            for (int64_t j = 0; j < kw; j++) TILE_TAP(xp + i * Wp + j, wr + j * DO);
        }
    TILE_STORE(out, ld);
}

/* tile_avx2 for 3x3 kernels, the 9 taps of a channel unrolled (no inner loop overhead). */
__attribute__((target("avx2,fma")))
static void tile33_avx2(const float *restrict xp, int64_t plane, int64_t C, int64_t kh,
                        int64_t kw, int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                        float *restrict out, int64_t ld)
{
    (void)kh, (void)kw, (void)ia, (void)ib; /* all 9 taps */
    TILE_ACCS;
    const int64_t W2 = 2 * Wp;
    for (int64_t c = 0; c < C; c++, xp += plane, w += 9 * DO) {
        TILE_TAP(xp, w);
        TILE_TAP(xp + 1, w + 4);
        TILE_TAP(xp + 2, w + 8);
        TILE_TAP(xp + Wp, w + 12);
        TILE_TAP(xp + Wp + 1, w + 16);
        TILE_TAP(xp + Wp + 2, w + 20);
        TILE_TAP(xp + W2, w + 24);
        TILE_TAP(xp + W2 + 1, w + 28);
        TILE_TAP(xp + W2 + 2, w + 32);
    }
    TILE_STORE(out, ld);
}
/* tile_avx2 with the taps' offsets from a table (stride 2's phase layout): taps of a channel
 * at xp + toff[k], channels plane floats apart. */
__attribute__((target("avx2,fma")))
static void tilet_avx2(const float *restrict xp, int64_t plane, int64_t C, int64_t ntaps,
                       const int64_t *restrict toff, const float *restrict w,
                       float *restrict out, int64_t ld)
{
    TILE_ACCS;
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t k = 0; k < ntaps; k++, w += DO) TILE_TAP(xp + toff[k], w);
    TILE_STORE(out, ld);
}
#undef TILE_ACCS
#undef TILE_TAP
#undef TILE_STORE

/* The same with 2 vectors: a DO x 16 tile in 8 accumulators. */
__attribute__((target("avx2,fma")))
static void tile2_avx2(const float *restrict xp, int64_t plane, int64_t C, int64_t kh, int64_t kw,
                       int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                       float *restrict out, int64_t ld)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a3 = a0, a4 = a0, a6 = a0, a7 = a0, a9 = a0;
    __m256 a10 = a0;
    const float *restrict w0 = w;
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t i = ia; i < ib; i++) {
            const float *restrict xr = xp + i * Wp;
            w = w0 + ((c * kh + i) * kw) * DO;
            for (int64_t j = 0; j < kw; j++, w += DO) {
                const __m256 x0 = _mm256_loadu_ps(xr + j), x1 = _mm256_loadu_ps(xr + j + 8);
                __m256 b = _mm256_broadcast_ss(w);
                a0 = _mm256_fmadd_ps(b, x0, a0), a1 = _mm256_fmadd_ps(b, x1, a1);
                b = _mm256_broadcast_ss(w + 1);
                a3 = _mm256_fmadd_ps(b, x0, a3), a4 = _mm256_fmadd_ps(b, x1, a4);
                b = _mm256_broadcast_ss(w + 2);
                a6 = _mm256_fmadd_ps(b, x0, a6), a7 = _mm256_fmadd_ps(b, x1, a7);
                b = _mm256_broadcast_ss(w + 3);
                a9 = _mm256_fmadd_ps(b, x0, a9), a10 = _mm256_fmadd_ps(b, x1, a10);
            }
        }
    _mm256_storeu_ps(out, a0), _mm256_storeu_ps(out + 8, a1);
    out += ld;
    _mm256_storeu_ps(out, a3), _mm256_storeu_ps(out + 8, a4);
    out += ld;
    _mm256_storeu_ps(out, a6), _mm256_storeu_ps(out + 8, a7);
    out += ld;
    _mm256_storeu_ps(out, a9), _mm256_storeu_ps(out + 8, a10);
}

/* Two output channels x 48 positions in 12 accumulators: the last channel block when only
 * its first 2 channels are real (6 output channels: LeNet's conv1, and the dx of its conv2),
 * where the DO x DT tile would spend half its multiply-adds on zero weights. Reads the first
 * 2 of each tap's DO weights; kernel rows [ia, ib) as tile_avx2. */
__attribute__((target("avx2,fma")))
static void tile2c_avx2(const float *restrict xp, int64_t plane, int64_t C, int64_t kh,
                        int64_t kw, int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                        float *restrict out, int64_t ld)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t i = ia; i < ib; i++) {
            const float *restrict wr = w + ((c * kh + i) * kw) * DO;
            for (int64_t j = 0; j < kw; j++, wr += DO) {
                const float *restrict r = xp + i * Wp + j;
                const __m256 u = _mm256_broadcast_ss(wr), v = _mm256_broadcast_ss(wr + 1);
                __m256 x = _mm256_loadu_ps(r);
                a0 = _mm256_fmadd_ps(u, x, a0), b0 = _mm256_fmadd_ps(v, x, b0);
                x = _mm256_loadu_ps(r + 8);
                a1 = _mm256_fmadd_ps(u, x, a1), b1 = _mm256_fmadd_ps(v, x, b1);
                x = _mm256_loadu_ps(r + 16);
                a2 = _mm256_fmadd_ps(u, x, a2), b2 = _mm256_fmadd_ps(v, x, b2);
                x = _mm256_loadu_ps(r + 24);
                a3 = _mm256_fmadd_ps(u, x, a3), b3 = _mm256_fmadd_ps(v, x, b3);
                x = _mm256_loadu_ps(r + 32);
                a4 = _mm256_fmadd_ps(u, x, a4), b4 = _mm256_fmadd_ps(v, x, b4);
                x = _mm256_loadu_ps(r + 40);
                a5 = _mm256_fmadd_ps(u, x, a5), b5 = _mm256_fmadd_ps(v, x, b5);
            }
        }
    _mm256_storeu_ps(out, a0), _mm256_storeu_ps(out + 8, a1), _mm256_storeu_ps(out + 16, a2);
    _mm256_storeu_ps(out + 24, a3), _mm256_storeu_ps(out + 32, a4), _mm256_storeu_ps(out + 40, a5);
    out += ld;
    _mm256_storeu_ps(out, b0), _mm256_storeu_ps(out + 8, b1), _mm256_storeu_ps(out + 16, b2);
    _mm256_storeu_ps(out + 24, b3), _mm256_storeu_ps(out + 32, b4), _mm256_storeu_ps(out + 40, b5);
}

/* The wide tile: one output channel x DTW positions in 12 accumulators; w advances by DO per
 * tap (the packed layout), of which the kernel reads the first. All kernel rows. */
__attribute__((target("avx2,fma")))
static void tile1_avx2(const float *restrict xp, int64_t plane, int64_t C, int64_t kh, int64_t kw,
                       int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                       float *restrict out, int64_t ld)
{
    (void)ld, (void)ia, (void)ib;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++, w += DO) {
                const float *restrict r = xp + i * Wp + j;
                const __m256 b = _mm256_broadcast_ss(w);
                a0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r), a0);
                a1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 8), a1);
                a2 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 16), a2);
                a3 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 24), a3);
                a4 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 32), a4);
                a5 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 40), a5);
                a6 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 48), a6);
                a7 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 56), a7);
                a8 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 64), a8);
                a9 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 72), a9);
                a10 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 80), a10);
                a11 = _mm256_fmadd_ps(b, _mm256_loadu_ps(r + 88), a11);
            }
    _mm256_storeu_ps(out, a0), _mm256_storeu_ps(out + 8, a1), _mm256_storeu_ps(out + 16, a2);
    _mm256_storeu_ps(out + 24, a3), _mm256_storeu_ps(out + 32, a4), _mm256_storeu_ps(out + 40, a5);
    _mm256_storeu_ps(out + 48, a6), _mm256_storeu_ps(out + 56, a7), _mm256_storeu_ps(out + 64, a8);
    _mm256_storeu_ps(out + 72, a9), _mm256_storeu_ps(out + 80, a10), _mm256_storeu_ps(out + 88, a11);
}

/* The 8 lane sums of a..h, in one vector: (sum a, sum b, ..., sum h). */
__attribute__((target("avx2,fma")))
static inline __m256 hsum8x8(__m256 a, __m256 b, __m256 c, __m256 d, __m256 e, __m256 f,
                             __m256 g, __m256 h)
{
    const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(e, f), _mm256_hadd_ps(g, h));
    return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20),
                         _mm256_permute2f128_ps(q0, q1, 0x31));
}

/* acc[k*3 + jj] = sum over images g < G and t in [0, Tw) of dy[g*gs + k*ldy + t] *
 * xr[g*gs + t + off[jj]], k < DO, jj < 3 (off = 0, 1, 2 for three taps of a row at stride 1):
 * the images of a group lie gs floats apart. */
__attribute__((target("avx2,fma")))
static void dw_tile_avx2(const float *restrict dy, int64_t ldy, const float *restrict xr,
                         const int64_t *off, int64_t Tw, int G, int64_t gs, float *restrict acc)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const int64_t o0 = off[0], o1 = off[1], o2 = off[2];
    for (int g = 0; g < G; g++, dy += gs, xr += gs)
        for (int64_t t = 0; t < Tw; t += 8) {
            const __m256 x0 = _mm256_loadu_ps(xr + o0 + t), x1 = _mm256_loadu_ps(xr + o1 + t),
                         x2 = _mm256_loadu_ps(xr + o2 + t);
            __m256 d = _mm256_loadu_ps(dy + t);
            a0 = _mm256_fmadd_ps(d, x0, a0), a1 = _mm256_fmadd_ps(d, x1, a1);
            a2 = _mm256_fmadd_ps(d, x2, a2);
            d = _mm256_loadu_ps(dy + ldy + t);
            a3 = _mm256_fmadd_ps(d, x0, a3), a4 = _mm256_fmadd_ps(d, x1, a4);
            a5 = _mm256_fmadd_ps(d, x2, a5);
            d = _mm256_loadu_ps(dy + 2 * ldy + t);
            a6 = _mm256_fmadd_ps(d, x0, a6), a7 = _mm256_fmadd_ps(d, x1, a7);
            a8 = _mm256_fmadd_ps(d, x2, a8);
            d = _mm256_loadu_ps(dy + 3 * ldy + t);
            a9 = _mm256_fmadd_ps(d, x0, a9), a10 = _mm256_fmadd_ps(d, x1, a10);
            a11 = _mm256_fmadd_ps(d, x2, a11);
        }
    const __m256 z = _mm256_setzero_ps();
    _mm256_storeu_ps(acc, hsum8x8(a0, a1, a2, a3, a4, a5, a6, a7));
    _mm_storeu_ps(acc + 8, _mm256_castps256_ps128(hsum8x8(a8, a9, a10, a11, z, z, z, z)));
}

/* dw_tile_avx2 for a channel block with only 2 real channels (LeNet's conv1: 6 outputs):
 * acc[k*6 + jj], k < 2, jj < 6, over six taps at off[0..5] instead of four rows (two of them
 * zero) by three taps. */
__attribute__((target("avx2,fma")))
static void dw_tile2c_avx2(const float *restrict dy, int64_t ldy, const float *restrict xr,
                           const int64_t *off, int64_t Tw, int G, int64_t gs, float *restrict acc)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const int64_t o0 = off[0], o1 = off[1], o2 = off[2], o3 = off[3], o4 = off[4], o5 = off[5];
    for (int g = 0; g < G; g++, dy += gs, xr += gs)
        for (int64_t t = 0; t < Tw; t += 8) {
            const __m256 d = _mm256_loadu_ps(dy + t), e = _mm256_loadu_ps(dy + ldy + t);
            __m256 x = _mm256_loadu_ps(xr + o0 + t);
            a0 = _mm256_fmadd_ps(d, x, a0), a6 = _mm256_fmadd_ps(e, x, a6);
            x = _mm256_loadu_ps(xr + o1 + t);
            a1 = _mm256_fmadd_ps(d, x, a1), a7 = _mm256_fmadd_ps(e, x, a7);
            x = _mm256_loadu_ps(xr + o2 + t);
            a2 = _mm256_fmadd_ps(d, x, a2), a8 = _mm256_fmadd_ps(e, x, a8);
            x = _mm256_loadu_ps(xr + o3 + t);
            a3 = _mm256_fmadd_ps(d, x, a3), a9 = _mm256_fmadd_ps(e, x, a9);
            x = _mm256_loadu_ps(xr + o4 + t);
            a4 = _mm256_fmadd_ps(d, x, a4), a10 = _mm256_fmadd_ps(e, x, a10);
            x = _mm256_loadu_ps(xr + o5 + t);
            a5 = _mm256_fmadd_ps(d, x, a5), a11 = _mm256_fmadd_ps(e, x, a11);
        }
    const __m256 z = _mm256_setzero_ps();
    _mm256_storeu_ps(acc, hsum8x8(a0, a1, a2, a3, a4, a5, a6, a7));
    _mm_storeu_ps(acc + 8, _mm256_castps256_ps128(hsum8x8(a8, a9, a10, a11, z, z, z, z)));
}
#endif

/* The same kernels in plain C, for CPUs without AVX2 and FMA (n: positions, 8*dv). */
static void tile_n_c(const float *restrict xp, int64_t plane, int64_t C, int64_t kh, int64_t kw,
                     int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                     float *restrict out, int64_t ld, int n)
{
    float a[DO][DT] = { { 0 } };
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t i = ia; i < ib; i++)
            for (int64_t j = 0; j < kw; j++) {
                const float *restrict xr = xp + i * Wp + j, *restrict wt = w + ((c * kh + i) * kw + j) * DO;
                for (int k = 0; k < DO; k++)
                    for (int t = 0; t < n; t++) a[k][t] += wt[k] * xr[t];
            }
    for (int k = 0; k < DO; k++) memcpy(out + k * ld, a[k], (size_t)n * sizeof(float));
}

static void tile_c(const float *restrict xp, int64_t plane, int64_t C, int64_t kh, int64_t kw,
                   int64_t ia, int64_t ib, int64_t Wp, const float *restrict w, float *restrict out,
                   int64_t ld)
{
    tile_n_c(xp, plane, C, kh, kw, ia, ib, Wp, w, out, ld, 24);
}

static void tile2_c(const float *restrict xp, int64_t plane, int64_t C, int64_t kh, int64_t kw,
                    int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                    float *restrict out, int64_t ld)
{
    tile_n_c(xp, plane, C, kh, kw, ia, ib, Wp, w, out, ld, 16);
}

static void tile1_c(const float *restrict xp, int64_t plane, int64_t C, int64_t kh, int64_t kw,
                    int64_t ia, int64_t ib, int64_t Wp, const float *restrict w,
                    float *restrict out, int64_t ld)
{
    (void)ld, (void)ia, (void)ib;
    float a[DTW] = { 0 };
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++, w += DO) {
                const float *restrict xr = xp + i * Wp + j;
                for (int t = 0; t < DTW; t++) a[t] += w[0] * xr[t];
            }
    memcpy(out, a, sizeof a);
}

static void tilet_c(const float *restrict xp, int64_t plane, int64_t C, int64_t ntaps,
                    const int64_t *restrict toff, const float *restrict w, float *restrict out,
                    int64_t ld)
{
    float a[DO][DT] = { { 0 } };
    for (int64_t c = 0; c < C; c++, xp += plane)
        for (int64_t k = 0; k < ntaps; k++, w += DO) {
            const float *restrict xr = xp + toff[k];
            for (int o = 0; o < DO; o++)
                for (int t = 0; t < DT; t++) a[o][t] += w[o] * xr[t];
        }
    for (int o = 0; o < DO; o++) memcpy(out + o * ld, a[o], sizeof a[o]);
}

static void dw_tile_c(const float *restrict dy, int64_t ldy, const float *restrict xr,
                      const int64_t *off, int64_t Tw, int G, int64_t gs, float *restrict acc)
{
    for (int k = 0; k < DO; k++)
        for (int jj = 0; jj < 3; jj++) {
            float l[8] = { 0 };
            for (int g = 0; g < G; g++)
                for (int64_t t = 0; t < Tw; t += 8)
                    for (int u = 0; u < 8; u++)
                        l[u] += dy[g * gs + k * ldy + t + u] * xr[g * gs + off[jj] + t + u];
            acc[k * 3 + jj] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        }
}

typedef void (*tile_fn)(const float *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                        int64_t, const float *, float *, int64_t);
typedef void (*dw_tile_fn)(const float *, int64_t, const float *, const int64_t *, int64_t, int,
                           int64_t, float *);
typedef void (*tilet_fn)(const float *, int64_t, int64_t, int64_t, const int64_t *, const float *,
                         float *, int64_t);

static bool force_portable;

void lb_conv2d_force_portable(bool on) { force_portable = on; }

static int force_steal; /* lb_conv2d_force_steal */

void lb_conv2d_force_steal(int mode) { force_steal = mode; }

#ifdef LB_DIRECT_AVX2 /* only called where the AVX2 kernels exist */
static bool have_avx2_fma(void)
{
    static int has = -1;
    if (has < 0) has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has && !force_portable;
}
#endif

/* The kernel rows [*ia, *ib) that a stride-1 tile of n positions from t needs. Output row r
 * reads padded row r + i through kernel row i (a window past the row's end reads the next
 * row's left padding: zeros), and padded rows outside [ph, ph + H) are zero, so a kernel row
 * that meets only those for every valid row of the tile adds nothing. Rows past Ho are
 * garbage positions, dropped: they do not count. The dx of an unpadded convolution (LeNet's
 * conv2: dy 10x10 padded by 4) skips a quarter of its taps this way. */
static void tap_rows(const dgeom *g, int64_t t, int64_t n, int64_t *ia, int64_t *ib)
{
    const int64_t r0 = t / g->Wp;
    int64_t r1 = (t + n - 1) / g->Wp;
    if (r1 > g->Ho - 1) r1 = g->Ho - 1;
    *ia = g->ph - r1 > 0 ? g->ph - r1 : 0;
    *ib = g->ph + g->H - r0 < g->kh ? g->ph + g->H - r0 : g->kh;
    if (*ib < *ia) *ib = *ia; /* cannot happen for t < T; keeps the loop empty if it did */
}

/* yt (nob*DO, Tt) = the padded-width output of the padded image xp. */
static void d_forward_image(const dgeom *g, const float *wpk, const float *xp, float *yt)
{
    const int64_t wblock = g->C * g->kh * g->kw * DO, step = 8 * g->dv;
    if (g->s == 2) { /* the tap-table tile on the phase layout, positions outside */
        int64_t toff[MAX_TAPS2];
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) toff[i * g->kw + j] = dg_tap(g, i, j);
        tilet_fn tt = tilet_c;
#ifdef LB_DIRECT_AVX2
        if (have_avx2_fma()) tt = tilet_avx2;
#endif
        for (int64_t t = 0; t < g->Tt; t += step)
            for (int64_t ob = 0; ob < g->nob; ob++)
                tt(xp + t, g->plane, g->C, g->kh * g->kw, toff, wpk + ob * wblock,
                   yt + ob * DO * g->Tt + t, g->Tt);
        return;
    }
    if (g->dv == DVW) { /* wide tiles: each of the (at most 2) channels on its own */
        tile_fn wide = tile1_c;
#ifdef LB_DIRECT_AVX2
        if (have_avx2_fma()) wide = tile1_avx2;
#endif
        for (int64_t t = 0; t < g->Tt; t += step)
            for (int64_t k = 0; k < g->O; k++)
                wide(xp + t, g->plane, g->C, g->kh, g->kw, 0, g->kh, g->Wp, wpk + k,
                     yt + k * g->Tt + t, g->Tt);
        return;
    }
    tile_fn tile = g->dv == 3 ? tile_c : tile2_c;
    int64_t nb = g->nob; /* channel blocks for tile; the last one may go to tile2c_avx2 */
#ifdef LB_DIRECT_AVX2
    if (have_avx2_fma()) {
        const bool k33 = g->kh == 3 && g->kw == 3;
        tile = g->dv == 3 ? (k33 ? tile33_avx2 : tile_avx2) : tile2_avx2;
        /* tile_avx2's shape only (3x3 has its own kernel; dv 2 blocks are not split) */
        const bool two_ch_tail = g->dv == 3 && !k33 && g->O - (g->nob - 1) * DO <= 2;
        if (two_ch_tail) nb--;
    }
#endif
    /* The operand that is swept again for every step of the outer loop should be the one
     * that stays in cache: with positions outside, all the weights are read per tile (fine
     * while they are smaller than the image: ResNet's 16 channels at 32x32); with channel
     * blocks outside, the whole image per block (64 and 128 channels at 8x8: the weights,
     * up to 590 KB, would come from L3 for every tile) */
    int64_t ia, ib;
    if (dg_wpk_floats(g) <= g->C * g->plane) {
        for (int64_t t = 0; t < g->Tt; t += step) {
            tap_rows(g, t, step, &ia, &ib);
            for (int64_t ob = 0; ob < nb; ob++)
                tile(xp + t, g->plane, g->C, g->kh, g->kw, ia, ib, g->Wp, wpk + ob * wblock,
                     yt + ob * DO * g->Tt + t, g->Tt);
        }
    } else {
        for (int64_t ob = 0; ob < nb; ob++)
            for (int64_t t = 0; t < g->Tt; t += step) {
                tap_rows(g, t, step, &ia, &ib);
                tile(xp + t, g->plane, g->C, g->kh, g->kw, ia, ib, g->Wp, wpk + ob * wblock,
                     yt + ob * DO * g->Tt + t, g->Tt);
            }
    }
#ifdef LB_DIRECT_AVX2
    if (nb == g->nob) return;
    /* the last block's 2 channels, 48 positions at a time, then a DO x DT tile for the rest */
    const float *wl = wpk + nb * wblock;
    float *yl = yt + nb * DO * g->Tt;
    int64_t t = 0;
    for (; t + 2 * DT <= g->Tt; t += 2 * DT) {
        tap_rows(g, t, 2 * DT, &ia, &ib);
        tile2c_avx2(xp + t, g->plane, g->C, g->kh, g->kw, ia, ib, g->Wp, wl, yl + t, g->Tt);
    }
    if (t < g->Tt) {
        tap_rows(g, t, step, &ia, &ib);
        tile(xp + t, g->plane, g->C, g->kh, g->kw, ia, ib, g->Wp, wl, yl + t, g->Tt);
    }
#endif
}

/* y (O, Ho, Wo) = (or +=, with add) the valid columns of yt, plus bias[o] when given (in
 * the same pass: y = yt + b, the sum the separate bias pass made). */
LB_CLONES
static void d_store(const dgeom *g, const float *restrict yt, float *restrict y, bool add,
                    const float *restrict bias)
{
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const float *restrict s = yt + o * g->Tt + oh * g->Wp;
            float *restrict d = y + (o * g->Ho + oh) * g->Wo;
            if (add) {
                for (int64_t t = 0; t < g->Wo; t++) d[t] += s[t];
            } else if (bias) {
                const float b = bias[o];
                for (int64_t t = 0; t < g->Wo; t++) d[t] = s[t] + b;
            } else {
                copy_row(d, s, g->Wo);
            }
        }
}


/* The pooled output of one image: yq (O, Hq, Wq) = the 2x2 stride-2 max pooling of the valid
 * columns of yt plus bias[o] (added to each cell before pooling, as d_store then the pooling
 * op would: the same values and the same winners), places (O, Hq, Wq) the winners. yt's rows
 * get the bias in place (a scratch the backward does not read). */
static void d_pool_store(const dgeom *g, float *restrict yt, const float *restrict bias,
                         int64_t Hq, int64_t Wq, float *restrict yq, uint8_t *restrict place)
{
    for (int64_t o = 0; o < g->O; o++)
        for (int64_t oh = 0; oh < Hq; oh++) {
            float *r0 = yt + o * g->Tt + 2 * oh * g->Wp, *r1 = r0 + g->Wp;
            if (bias) {
                const float b = bias[o];
                for (int64_t t = 0; t < 2 * Wq; t++) r0[t] += b, r1[t] += b;
            }
            lb_pool22_row(r0, r1, Wq, yq + (o * Hq + oh) * Wq, place + (o * Hq + oh) * Wq);
        }
}
/* dyp (nob*DO, Tw) = dy (O, Ho, Wo) in padded-width layout, zero elsewhere. */
LB_CLONES
static void d_dy_layout(const dgeom *g, const float *restrict dy, float *restrict dyp)
{
    const int64_t Wo = g->Wo, Wp = g->Wp;
    for (int64_t o = 0; o < g->O; o++) {
        float *restrict r = dyp + o * g->Tw;
        for (int64_t oh = 0; oh < g->Ho; oh++, r += Wp) {
            copy_row(r, dy + (o * g->Ho + oh) * Wo, Wo);
            for (int64_t t = Wo; t < Wp; t++) r[t] = 0.0f;
        }
        for (int64_t t = g->T; t < g->Tw; t++) dyp[o * g->Tw + t] = 0.0f;
    }
    memset(dyp + g->O * g->Tw, 0, (size_t)((g->nob * DO - g->O) * g->Tw) * sizeof(float));
}

/* dW of small images is accumulated over a group of images per pass, so that the lane sums
 * and the adds into dw happen once per group: each image of the group has a slot of
 * dw_slot floats, its padded image then its padded-width dy (nob*DO, Tw). */
static int64_t dw_slot(const dgeom *g) { return dg_xp_floats(g) + g->nob * DO * g->Tw; }

/* Images per group, 1 to 8: as many slots as fit in 256 KiB (half of this machine's L2), and
 * at least enough for about 640 positions per tile call, whatever the memory: with 8x8 images
 * (80 padded-width positions) a call on one image spent as long in its lane sums and adds as
 * in its multiply-adds (vgg-small's 256-channel layer has 48K-float slots, so a 256 KiB group
 * held a single image). */
static int dw_group(const dgeom *g)
{
    int64_t n = ((int64_t)64 << 10) / dw_slot(g);
    const int64_t want = (640 + g->Tw - 1) / g->Tw;
    if (n < want) n = want;
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

/* dw (O, C, kh, kw) += the dW of the G images in the slots at grp. A kernel call sums
 * `taps` consecutive taps of one kernel row for a block's channels into acc[k*taps + jj];
 * taps past the row's end repeat its last (their sums are dropped). A channel block with at
 * most 2 real channels (LeNet's conv1: 6 outputs) goes to dw_tile2c_avx2, 2 x 6 taps, instead
 * of 4 x 3 of which two rows would be zero. */
static void d_dw_group(const dgeom *g, const float *grp, int G, int64_t gs, int64_t dy_off,
                       int64_t ldy, bool tiled, float *restrict dw)
{
    typedef struct { dw_tile_fn fn; int taps; } dw_kernel;
    dw_kernel full = { dw_tile_c, 3 }, pair = full;
#ifdef LB_DIRECT_AVX2
    if (have_avx2_fma()) full = (dw_kernel){ dw_tile_avx2, 3 }, pair = (dw_kernel){ dw_tile2c_avx2, 6 };
#endif
    const int64_t C = g->C, kh = g->kh, kw = g->kw;
    const float *dyp = grp + dy_off;
    for (int64_t ob = 0; ob < g->nob; ob++) {
        const int64_t nk = g->O - ob * DO < DO ? g->O - ob * DO : DO;
        const dw_kernel kn = nk <= 2 ? pair : full;
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j0 = 0; j0 < kw; j0 += kn.taps) {
                    float acc[DO * 3];
                    _Static_assert(DO * 3 >= 2 * 6, "acc holds both kernel shapes");
                    const int64_t nj = kw - j0 < kn.taps ? kw - j0 : kn.taps, t0 = dg_tap(g, i, j0);
                    int64_t off[6];
                    for (int64_t jj = 0; jj < kn.taps; jj++)
                        off[jj] = dg_tap(g, i, j0 + (jj < nj ? jj : nj - 1)) - t0;
                    kn.fn(dyp + ob * DO * ldy, ldy, grp + c * g->plane + t0, off, g->Tw, G, gs,
                          acc);
                    if (tiled) { /* whole blocks of 3 taps: acc's 12 sums are contiguous */
                        float *restrict d = dw + (((ob * C + c) * kh + i) * kw + j0) * DO;
                        for (int q = 0; q < DO * 3; q++) d[q] += acc[q];
                        continue;
                    }
                    for (int64_t k = 0; k < nk; k++)
                        for (int64_t jj = 0; jj < nj; jj++)
                            dw[(((ob * DO + k) * C + c) * kh + i) * kw + j0 + jj] +=
                                acc[k * kn.taps + jj];
                }
    }
}

/* Where dW's dy goes in a group slot. By default after the padded image, in the
 * padded-width layout (nob*DO, Tw) of d_dy_layout. When dx is computed by the flipped kernel
 * and its padded dy (gt) has the same row width with the padding columns shared, that padded
 * dy holds the same layout: row h of dy starts at (h + gt.ph)*Wp + gt.pw, followed by the next
 * row's left padding (zeros where d_dy_layout writes zeros), the channels gt.plane apart, and
 * the bottom padding rows are the zeros past T. Then the slot keeps the padded dy and serves
 * both dW (from dy_off) and dx, and d_dy_layout's pass is saved. That needs the reads up to
 * Tw to stay within a plane. When the last channel block is not whole (LeNet's conv1: 6
 * outputs), the slot also has the missing channels' planes, zeroed once per backward call
 * (d_pad writes only zeros there): dW's kernels may read those rows, whose sums are dropped.
 * The group size stays dw_group's either way (it sets dW's summation order). */
static void dw_layout(conv_saved *p)
{
    const dgeom *f = &p->gf, *t = &p->gt;
    p->slot = dw_slot(f);
    p->dy_off = dg_xp_floats(f);
    p->dy_ld = f->Tw;
    p->share_dy = p->flip && f->s == 1 && t->Wp == f->Wp && t->pw + t->W == t->Wp &&
                  t->ph >= 1 && t->pw + (f->Tw - f->T) <= t->ph * t->Wp;
    if (!p->share_dy) return;
    const int64_t dyn = f->nob * DO * f->Tw;
    int64_t tn = dg_xp_floats(t);
    if (tn < f->nob * DO * t->plane) tn = f->nob * DO * t->plane; /* the missing channels */
    p->slot = dg_xp_floats(f) + (tn > dyn ? tn : dyn);
    p->dy_off = dg_xp_floats(f) + t->ph * t->Wp + t->pw;
    p->dy_ld = t->plane;
}

/* The partial dW of d_dw_group's tiled order, (nob, C, kh, kw/3, DO, 3): the 12 sums of one
 * kernel call side by side, added as one contiguous run (the scattered adds into (O, C, kh,
 * kw) cost about a tenth of the dW kernel's time on 8x8 images). Used when every block has
 * DO channels and the rows split into whole groups of 3 taps (3x3 kernels), so the size is
 * O*C*kh*kw as before. dw (O, C, kh, kw) += part, or = part with write; the same sums in the
 * same order as adding into dw directly. */
static bool dw_tiles(const dgeom *g) { return g->O % DO == 0 && g->kw % 3 == 0; }
static void dw_untile(const dgeom *g, const float *restrict part, float *restrict dw, bool write)
{
    const int64_t C = g->C, kh = g->kh, kw = g->kw;
    for (int64_t ob = 0; ob < g->nob; ob++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j0 = 0; j0 < kw; j0 += 3, part += DO * 3)
                    for (int64_t k = 0; k < DO; k++) {
                        float *d = dw + (((ob * DO + k) * C + c) * kh + i) * kw + j0;
                        for (int jj = 0; jj < 3; jj++)
                            d[jj] = write ? part[k * 3 + jj] : d[jj] + part[k * 3 + jj];
                    }
}

/* ---- channels last: 16 output channels on narrow images ---------------------------------
 * The padded-width layout computes Wp - Wo garbage columns per row: 4 in 14 for LeNet's
 * conv2 (5x5, no padding, 14x14 -> 10x10), dW also rounds its 5-tap rows up to 6, and dx (by
 * the flipped kernel on dy padded by 4) multiplies padding zeros. With exactly 16 output
 * channels (two vectors) y, dW and dx go instead over the output channels in the vector
 * lanes, on the image copied channels last, xc (Hp, Wc, C) zero-padded (Wc = W + 2*pw), and
 * on dy (S, 16): every multiply-add is a valid one.
 *  - y: a tile is np <= 6 consecutive output positions of one row x 16 channels, 2*np
 *    accumulators. Kernel row i, index q = j*C + c < kw*C: position p reads
 *    xc[((oh + i)*Wc + ow + p)*C + q] (one broadcast), times wc[i][q][0..16) (weights packed
 *    (kh, kw, C, 16): two loads, shared by the np positions). The tile (S, 16) is then
 *    stored, or pooled (the fused 2x2 max pooling, the plain path's rule), over 16 channels
 *    at once.
 *  - dW[i][q][0..16) = sum over the images of a group and the output positions of
 *    xc[((oh + i)*Wc + ow)*C + q] times dy (S, 16)[oh*Wo + ow]: nr <= 6 consecutive q per
 *    call in 2*nr accumulators, no lane sums at the end; the threads' partial sums are
 *    (kh, kw, C, 16), turned into (O, C, kh, kw) when they are added up. Pooled, the dy
 *    (S, 16) is unpooled straight into its slot.
 *  - dx: see cl_dx_image. */
#define CL_O 16 /* output channels of the channels-last path */
#define CL_N 6  /* positions (y) or kernel indices (dW) per call, at most */

static bool cl_applies(int64_t C, int64_t kh, int64_t kw, int64_t O, int64_t Wo, int64_t Wp,
                       int stride)
{
    /* a fifth or more of the padded-width columns wasted; the packed weights in L1 */
    return stride == 1 && O == CL_O && 5 * (Wp - Wo) >= Wp && C * kh * kw <= 256;
}

/* The n-th of k near-equal chunks of [0, len), k = ceil(len / most): its start and size. */
static int cl_chunk(int64_t len, int64_t most, int64_t n, int64_t *start)
{
    const int64_t k = (len + most - 1) / most, base = len / k, extra = len % k;
    *start = n * base + (n < extra ? n : extra);
    return (int)(base + (n < extra));
}

/* The channels-last image has the true padding on both sides (Wc = W + 2*pw columns): its
 * rows do not share their padding as the padded-width layout's may. */
static int64_t cl_wc(const dgeom *g) { return g->W + 2 * g->pw; }
static int64_t cl_x_floats(const dgeom *g) { return (g->H + 2 * g->ph) * cl_wc(g) * g->C; }

#ifdef LB_DIRECT_AVX2
/* r[0..8) = its own 8x8 transpose: r[j][i] = r[i][j] before */
__attribute__((target("avx2"), always_inline))
static inline void tr8x8(__m256 r[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* d[(w0 + k)*C + c] = the C <= 8 rows s + c*ld at w0 + k, k < 8, for one block of 8
 * positions: each position's store writes 8 floats, its C and then 8 - C of the next
 * position's, which the next store (or the caller) overwrites. */
__attribute__((target("avx2"), always_inline))
static inline void cl_interleave8(const float *restrict s, int64_t ld, int64_t C, int64_t w0,
                                  float *restrict d)
{
    __m256 r[8];
    for (int c = 0; c < 8; c++) r[c] = c < C ? _mm256_loadu_ps(s + c * ld + w0) : _mm256_setzero_ps();
    tr8x8(r);
    for (int k = 0; k < 8; k++) _mm256_storeu_ps(d + (w0 + k) * C, r[k]);
}

/* cl_pad's rows by 8x8 transposes (C <= 8): blocks of 8 positions whose spill stays within
 * the row, the last one overlapping, then the row's last position in scalar */
__attribute__((target("avx2")))
static void cl_pad_rows_avx2(const dgeom *g, const float *restrict x, float *restrict xc)
{
    const int64_t C = g->C, H = g->H, W = g->W, Wc = cl_wc(g);
    for (int64_t h = 0; h < H; h++) {
        const float *restrict s = x + h * W;
        float *restrict d = xc + ((h + g->ph) * Wc + g->pw) * C;
        for (int64_t w0 = 0; w0 + 9 <= W; w0 += 8) cl_interleave8(s, H * W, C, w0, d);
        if ((W - 1) % 8) cl_interleave8(s, H * W, C, W - 9, d);
        for (int64_t c = 0; c < C; c++) d[(W - 1) * C + c] = s[c * H * W + W - 1];
    }
}

/* cl_dx_image's copy out by 8x8 transposes (C <= 8): dx rows (C of them, ld apart) at [w0,
 * w0 + 8) from the 8 positions of s at w0, written or added to; reads 8 - C floats past
 * position w0 + 7 */
__attribute__((target("avx2"), always_inline))
static inline void cl_deinterleave8(const float *restrict s, int64_t C, int64_t w0,
                                    float *restrict d, int64_t ld, bool add)
{
    __m256 r[8];
    for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(s + (w0 + k) * C);
    tr8x8(r);
    for (int c = 0; c < C; c++) {
        float *dc = d + c * ld + w0;
        _mm256_storeu_ps(dc, add ? _mm256_add_ps(_mm256_loadu_ps(dc), r[c]) : r[c]);
    }
}
#endif

/* xc (H + 2*ph, Wc, C) = x (C, H, W) channels last, zero-padded */
static void cl_pad(const dgeom *g, const float *restrict x, float *restrict xc)
{
    const int64_t C = g->C, H = g->H, W = g->W, Wc = cl_wc(g), ph = g->ph, pw = g->pw;
    if (ph || pw) memset(xc, 0, (size_t)cl_x_floats(g) * sizeof(float));
#ifdef LB_DIRECT_AVX2
    if (C <= 8 && W >= 9 && have_avx2_fma()) {
        cl_pad_rows_avx2(g, x, xc);
        return;
    }
#endif
    for (int64_t c = 0; c < C; c++)
        for (int64_t h = 0; h < H; h++) {
            const float *restrict s = x + (c * H + h) * W;
            float *restrict d = xc + ((h + ph) * Wc + pw) * C + c;
            for (int64_t w = 0; w < W; w++) d[w * C] = s[w];
        }
}

/* wc (kh, kw, C, 16) = w (16, C, kh, kw) */
static void cl_pack(const float *restrict w, int64_t C, int64_t kh, int64_t kw,
                    float *restrict wc)
{
    const int64_t K = C * kh * kw;
    for (int64_t o = 0; o < CL_O; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    wc[((i * kw + j) * C + c) * CL_O + o] = w[o * K + (c * kh + i) * kw + j];
}

/* One tile of y, and one call of dW, in plain C (np, nr <= CL_N). */
static void cl_fwd_c(const float *restrict x, int64_t C, int64_t ldx, int64_t kh, int64_t n,
                     const float *restrict w, float *restrict y, int np)
{
    float a[CL_N][CL_O] = { { 0 } };
    for (int64_t i = 0; i < kh; i++, x += ldx, w += n * CL_O)
        for (int64_t q = 0; q < n; q++)
            for (int p = 0; p < np; p++)
                for (int o = 0; o < CL_O; o++) a[p][o] += x[p * C + q] * w[q * CL_O + o];
    memcpy(y, a, (size_t)np * sizeof a[0]);
}

static void cl_dw_c(const float *restrict x, int64_t C, int64_t ldx, int64_t Ho, int64_t Wo,
                    const float *restrict dy, int G, int64_t gs, float *restrict part, int nr)
{
    float a[CL_N][CL_O] = { { 0 } };
    for (int g = 0; g < G; g++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                const float *restrict xr = x + g * gs + oh * ldx + ow * C;
                const float *restrict d = dy + g * gs + (oh * Wo + ow) * CL_O;
                for (int r = 0; r < nr; r++)
                    for (int o = 0; o < CL_O; o++) a[r][o] += xr[r] * d[o];
            }
    for (int r = 0; r < nr; r++)
        for (int o = 0; o < CL_O; o++) part[r * CL_O + o] += a[r][o];
}

typedef void (*cl_fwd_fn)(const float *, int64_t, int64_t, int64_t, int64_t, const float *,
                          float *, int);
typedef void (*cl_dw_fn)(const float *, int64_t, int64_t, int64_t, int64_t, const float *, int,
                         int64_t, float *, int);
typedef void (*cl_dz_fn)(const float *, const float *, int64_t, float *, int64_t, int);
typedef void (*cl_gather_fn)(float *, const float *, int64_t, int64_t, int64_t, int64_t, int64_t);

/* The channels-last kernels, picked once per op call (cl_pick): y, dW and dx's products by
 * tile size (the AVX2 instances have it built in, the plain C ones take it as an argument),
 * and dx's row sums. */
typedef struct {
    cl_fwd_fn    fwd[CL_N + 1];
    cl_dw_fn     dw[CL_N + 1];
    cl_dz_fn     dz[CL_N + 1];
    cl_gather_fn gather;
} cl_kernels;

#ifdef LB_DIRECT_AVX2
/* The bodies with np (nr) a constant, for the instances below: the accumulators are named
 * variables (an array of them stayed in memory), the unused ones folded away. */
#define CL_ACC2(p) __m256 a##p##0 = _mm256_setzero_ps(), a##p##1 = a##p##0
#define CL_FMA2(p, src, v0, v1)                                                                \
    if ((p) < np) {                                                                            \
        const __m256 b_ = _mm256_broadcast_ss(src);                                            \
        a##p##0 = _mm256_fmadd_ps(b_, v0, a##p##0), a##p##1 = _mm256_fmadd_ps(b_, v1, a##p##1); \
    }
__attribute__((target("avx2,fma"), always_inline))
static inline void cl_fwd_body(const float *restrict x, int64_t C, int64_t ldx, int64_t kh,
                               int64_t n, const float *restrict w, float *restrict y, const int np)
{
    CL_ACC2(0); CL_ACC2(1); CL_ACC2(2); CL_ACC2(3); CL_ACC2(4); CL_ACC2(5);
    for (int64_t i = 0; i < kh; i++, x += ldx, w += n * CL_O)
        for (int64_t q = 0; q < n; q++) {
            const __m256 w0 = _mm256_loadu_ps(w + q * CL_O), w1 = _mm256_loadu_ps(w + q * CL_O + 8);
            const float *restrict xq = x + q;
            CL_FMA2(0, xq, w0, w1);
            CL_FMA2(1, xq + C, w0, w1);
            CL_FMA2(2, xq + 2 * C, w0, w1);
            CL_FMA2(3, xq + 3 * C, w0, w1);
            CL_FMA2(4, xq + 4 * C, w0, w1);
            CL_FMA2(5, xq + 5 * C, w0, w1);
        }
#define CL_STORE(p)                                                                            \
    if ((p) < np)                                                                              \
        _mm256_storeu_ps(y + (p) * CL_O, a##p##0), _mm256_storeu_ps(y + (p) * CL_O + 8, a##p##1)
    CL_STORE(0); CL_STORE(1); CL_STORE(2); CL_STORE(3); CL_STORE(4); CL_STORE(5);
#undef CL_STORE
}

__attribute__((target("avx2,fma"), always_inline))
static inline void cl_dw_body(const float *restrict x, int64_t C, int64_t ldx, int64_t Ho,
                              int64_t Wo, const float *restrict dy, int G, int64_t gs,
                              float *restrict part, const int np)
{
    CL_ACC2(0); CL_ACC2(1); CL_ACC2(2); CL_ACC2(3); CL_ACC2(4); CL_ACC2(5);
    for (int g = 0; g < G; g++)
        for (int64_t oh = 0; oh < Ho; oh++) {
            const float *restrict xr = x + g * gs + oh * ldx;
            const float *restrict d = dy + g * gs + oh * Wo * CL_O;
            for (int64_t ow = 0; ow < Wo; ow++, xr += C, d += CL_O) {
                const __m256 d0 = _mm256_loadu_ps(d), d1 = _mm256_loadu_ps(d + 8);
                CL_FMA2(0, xr, d0, d1);
                CL_FMA2(1, xr + 1, d0, d1);
                CL_FMA2(2, xr + 2, d0, d1);
                CL_FMA2(3, xr + 3, d0, d1);
                CL_FMA2(4, xr + 4, d0, d1);
                CL_FMA2(5, xr + 5, d0, d1);
            }
        }
#define CL_ADD(p)                                                                              \
    if ((p) < np) {                                                                            \
        float *o_ = part + (p) * CL_O;                                                         \
        _mm256_storeu_ps(o_, _mm256_add_ps(_mm256_loadu_ps(o_), a##p##0));                     \
        _mm256_storeu_ps(o_ + 8, _mm256_add_ps(_mm256_loadu_ps(o_ + 8), a##p##1));             \
    }
    CL_ADD(0); CL_ADD(1); CL_ADD(2); CL_ADD(3); CL_ADD(4); CL_ADD(5);
#undef CL_ADD
}
/* dx's products (cl_dx_image): z + p*zs + [0, 16) = sum_o dy[p*16 + o] wz[o*nz + [0, 16)] */
__attribute__((target("avx2,fma"), always_inline))
static inline void cl_dz_body(const float *restrict dy, const float *restrict wz, int64_t nz,
                              float *restrict z, int64_t zs, const int np)
{
    CL_ACC2(0); CL_ACC2(1); CL_ACC2(2); CL_ACC2(3); CL_ACC2(4); CL_ACC2(5);
    for (int o = 0; o < CL_O; o++, wz += nz) {
        const __m256 w0 = _mm256_loadu_ps(wz), w1 = _mm256_loadu_ps(wz + 8);
        CL_FMA2(0, dy + o, w0, w1);
        CL_FMA2(1, dy + CL_O + o, w0, w1);
        CL_FMA2(2, dy + 2 * CL_O + o, w0, w1);
        CL_FMA2(3, dy + 3 * CL_O + o, w0, w1);
        CL_FMA2(4, dy + 4 * CL_O + o, w0, w1);
        CL_FMA2(5, dy + 5 * CL_O + o, w0, w1);
    }
#define CL_ST2(p)                                                                              \
    if ((p) < np)                                                                              \
        _mm256_storeu_ps(z + (p) * zs, a##p##0), _mm256_storeu_ps(z + (p) * zs + 8, a##p##1)
    CL_ST2(0); CL_ST2(1); CL_ST2(2); CL_ST2(3); CL_ST2(4); CL_ST2(5);
#undef CL_ST2
}
#undef CL_ACC2
#undef CL_FMA2

#define CL_INSTANCES(N)                                                                        \
    __attribute__((target("avx2,fma"))) static void cl_fwd##N(                                 \
        const float *x, int64_t C, int64_t ldx, int64_t kh, int64_t n, const float *w,         \
        float *y, int np)                                                                      \
    {                                                                                          \
        (void)np;                                                                              \
        cl_fwd_body(x, C, ldx, kh, n, w, y, N);                                                \
    }                                                                                          \
    __attribute__((target("avx2,fma"))) static void cl_dw##N(                                  \
        const float *x, int64_t C, int64_t ldx, int64_t Ho, int64_t Wo, const float *dy,       \
        int G, int64_t gs, float *part, int nr)                                                \
    {                                                                                          \
        (void)nr;                                                                              \
        cl_dw_body(x, C, ldx, Ho, Wo, dy, G, gs, part, N);                                     \
    }                                                                                          \
    __attribute__((target("avx2,fma"))) static void cl_dz##N(                                  \
        const float *dy, const float *wz, int64_t nz, float *z, int64_t zs, int np)            \
    {                                                                                          \
        (void)np;                                                                              \
        cl_dz_body(dy, wz, nz, z, zs, N);                                                      \
    }
CL_INSTANCES(1)
CL_INSTANCES(2)
CL_INSTANCES(3)
CL_INSTANCES(4)
CL_INSTANCES(5)
CL_INSTANCES(6)
#undef CL_INSTANCES
#endif

/* yc (S, 16) = the convolution of the image xc */
static void cl_forward_image(const dgeom *g, const cl_kernels *kn, const float *wc,
                             const float *xc, float *yc)
{
    const int64_t C = g->C, Wo = g->Wo, ldx = cl_wc(g) * C, n = g->kw * C;
    const int64_t nch = (Wo + CL_N - 1) / CL_N;
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t k = 0; k < nch; k++) {
            int64_t ow;
            const int np = cl_chunk(Wo, CL_N, k, &ow);
            kn->fwd[np](xc + oh * ldx + ow * C, C, ldx, g->kh, n, wc, yc + (oh * Wo + ow) * CL_O,
                        np);
        }
}

/* y (16, S) = yc (S, 16) + bias[o] when given (d_store's sums) */
static void cl_store(int64_t S, const float *restrict yc, const float *restrict bias,
                     float *restrict y)
{
    for (int o = 0; o < CL_O; o++) {
        const float b = bias ? bias[o] : 0.0f;
        for (int64_t s = 0; s < S; s++)
            y[o * S + s] = bias ? yc[s * CL_O + o] + b : yc[s * CL_O + o];
    }
}

/* The pooled output from yc (S, 16): yq (16, Hq, Wq) and the winners' places, as
 * d_pool_store from the padded-width layout: the same sums (bias added to each cell first)
 * and the same rule (window cells in the order r0[2ow], r0[2ow+1], r1[2ow], r1[2ow+1]; the
 * first max wins, a NaN wins), over the 16 channels at once. */
static void cl_pool_store_c(const dgeom *g, const float *restrict yc, const float *restrict bias,
                            int64_t Hq, int64_t Wq, float *restrict yq, uint8_t *restrict place)
{
    const int64_t Wo = g->Wo, Q = Hq * Wq;
    for (int64_t oh = 0; oh < Hq; oh++)
        for (int64_t ow = 0; ow < Wq; ow++) {
            const int64_t s0 = 2 * oh * Wo + 2 * ow, sp[4] = { s0, s0 + 1, s0 + Wo, s0 + Wo + 1 };
            for (int o = 0; o < CL_O; o++) {
                float v[4];
                for (int t = 0; t < 4; t++)
                    v[t] = bias ? yc[sp[t] * CL_O + o] + bias[o] : yc[sp[t] * CL_O + o];
                yq[o * Q + oh * Wq + ow] = lb_pool22_pick(v, place + o * Q + oh * Wq + ow);
            }
        }
}

#ifdef LB_DIRECT_AVX2
__attribute__((target("avx2,fma")))
static void cl_pool_store_avx2(const dgeom *g, const float *restrict yc,
                               const float *restrict bias, int64_t Hq, int64_t Wq,
                               float *restrict yq, uint8_t *restrict place)
{
    const int64_t Wo = g->Wo, Q = Hq * Wq;
    const __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
    for (int64_t oh = 0; oh < Hq; oh++)
        for (int64_t ow = 0; ow < Wq; ow++) {
            const int64_t s0 = 2 * oh * Wo + 2 * ow, sp[4] = { s0, s0 + 1, s0 + Wo, s0 + Wo + 1 };
            for (int h = 0; h < 2; h++) {
                __m256 v[4];
                for (int t = 0; t < 4; t++) {
                    v[t] = _mm256_loadu_ps(yc + sp[t] * CL_O + 8 * h);
                    if (bias) v[t] = _mm256_add_ps(v[t], h ? b1 : b0);
                }
                __m256 best = v[0], r = _mm256_setzero_ps();
                for (int t = 1; t < 4; t++) {
                    const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v[t], best, _CMP_GT_OQ),
                                                     _mm256_cmp_ps(v[t], v[t], _CMP_UNORD_Q));
                    best = _mm256_blendv_ps(best, v[t], take);
                    r = _mm256_blendv_ps(r, _mm256_castsi256_ps(_mm256_set1_epi32(t)), take);
                }
                float bv[8];
                int32_t rv[8];
                _mm256_storeu_ps(bv, best);
                _mm256_storeu_si256((__m256i *)rv, _mm256_castps_si256(r));
                const int64_t q = (8 * h) * Q + oh * Wq + ow;
                for (int k = 0; k < 8; k++)
                    yq[q + k * Q] = bv[k], place[q + k * Q] = (uint8_t)rv[k];
            }
        }
}
#endif

static void cl_pool_store(const dgeom *g, const float *yc, const float *bias, int64_t Hq,
                          int64_t Wq, float *yq, uint8_t *place)
{
#ifdef LB_DIRECT_AVX2
    if (have_avx2_fma()) {
        cl_pool_store_avx2(g, yc, bias, Hq, Wq, yq, place);
        return;
    }
#endif
    cl_pool_store_c(g, yc, bias, Hq, Wq, yq, place);
}

/* The backward of cl_pool_store: dyc (S, 16) = the pooled dy (16, Hq, Wq) at each window's
 * winner, 0 elsewhere (the odd last row or column no window covers included); with lanes,
 * also the 8 lane sums of each channel's dy as bias_lanes makes them from dy (16, S): lane k
 * sums s = k mod 8 below the last multiple of 8, lane 0 then the tail, each in increasing
 * s (the same sums in the same order). */
static void cl_unpool(const dgeom *g, int64_t Hq, int64_t Wq, const float *restrict dq,
                      const uint8_t *restrict place, float *restrict dyc, float *restrict lanes)
{
    const int64_t Wo = g->Wo, S = g->Ho * Wo, Q = Hq * Wq;
    memset(dyc, 0, (size_t)(S * CL_O) * sizeof(float));
    for (int o = 0; o < CL_O; o++)
        for (int64_t oh = 0; oh < Hq; oh++)
            for (int64_t ow = 0; ow < Wq; ow++) {
                const int64_t q = o * Q + oh * Wq + ow, a = place[q];
                const int64_t s = (2 * oh + (a >> 1)) * Wo + 2 * ow + (a & 1);
                dyc[s * CL_O + o] = dq[q];
            }
    if (!lanes) return;
    float l[8][CL_O] = { { 0 } };
    const int64_t S8 = S / 8 * 8;
    for (int64_t s = 0; s < S; s++) {
        float *restrict d = l[s < S8 ? s & 7 : 0];
        const float *restrict v = dyc + s * CL_O;
        for (int o = 0; o < CL_O; o++) d[o] += v[o];
    }
    for (int o = 0; o < CL_O; o++)
        for (int k = 0; k < 8; k++) lanes[o * 8 + k] = l[k][o];
}

/* dyc (S, 16) = dy (16, S) */
static void cl_dy_layout(int64_t S, const float *restrict dy, float *restrict dyc)
{
    for (int64_t s = 0; s < S; s++)
        for (int o = 0; o < CL_O; o++) dyc[s * CL_O + o] = dy[o * S + s];
}

/* part (kh, kw, C, 16) += the dW of the G images in the slots at grp (xc then dyc at
 * dy_off, slots gs floats apart). */
static void cl_dw_group(const dgeom *g, const cl_kernels *kn, const float *grp, int G,
                        int64_t gs, int64_t dy_off, float *restrict part)
{
    const int64_t C = g->C, ldx = cl_wc(g) * C, n = g->kw * C;
    const int64_t nch = (n + CL_N - 1) / CL_N;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t k = 0; k < nch; k++) {
            int64_t q;
            const int nr = cl_chunk(n, CL_N, k, &q);
            kn->dw[nr](grp + i * ldx + q, C, ldx, g->Ho, g->Wo, grp + dy_off, G, gs,
                       part + (i * n + q) * CL_O, nr);
        }
}

/* dw (16, C, kh, kw) += part (kh, kw, C, 16), or = with write */
static void cl_untile(const dgeom *g, const float *restrict part, float *restrict dw, bool write)
{
    const int64_t C = g->C, kh = g->kh, kw = g->kw, K = C * kh * kw;
    for (int64_t o = 0; o < CL_O; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++) {
                    const float v = part[((i * kw + j) * C + c) * CL_O + o];
                    float *d = dw + o * K + (c * kh + i) * kw + j;
                    *d = write ? v : *d + v;
                }
}

/* dx channels last, as the transposed convolution: per output position (oh, ow) and kernel
 * row i, z[v] = sum_o dy[oh][ow][o] wz[i][o][v], v = j*C + c < kw*C (a small product, np <= 6
 * positions x 2 vectors of v in 12 accumulators, 16 multiply-adds deep), which adds into the
 * padded dx row oh + i at (ow*C + v): dxc (Hp, Wc, C). The rows of z for one (oh, i) overlap
 * there by (kw - 1)*C, so they are summed per vector of that row (loads of z at shifted
 * offsets, 8 zeros on each side of a z row) and each vector of dxc is added to once per
 * (oh, i): no multiply-add on a padding zero, none of the flipped kernel's zero rows. */
static int64_t cl_nz(const dgeom *g) { return (g->kw * g->C + 15) / 16 * 16; } /* z row */
static int64_t cl_zs(const dgeom *g) { return cl_nz(g) + 16; } /* with its zeros */
static int64_t cl_wz_floats(const dgeom *g) { return g->kh * CL_O * cl_nz(g); }
/* dx's scratch: z rows (kh, Wo) of one output row, then dxc with 8 floats of slack */
static int64_t cl_dx_floats(const dgeom *g)
{
    return g->kh * g->Wo * cl_zs(g) + cl_x_floats(g) + 8;
}

/* wz (kh, 16, nz) = w (16, C, kh, kw) at v = j*C + c, zero for v >= kw*C */
static void cl_pack_t(const dgeom *g, const float *restrict w, float *restrict wz)
{
    const int64_t C = g->C, kh = g->kh, kw = g->kw, nz = cl_nz(g);
    memset(wz, 0, (size_t)cl_wz_floats(g) * sizeof(float));
    for (int64_t o = 0; o < CL_O; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    wz[(i * CL_O + o) * nz + j * C + c] = w[((o * C + c) * kh + i) * kw + j];
}

/* z + p*zs + [0, 16) = sum_o dy[p*16 + o] wz[o*nz + [0, 16)], p < np: plain C */
static void cl_dz_c(const float *restrict dy, const float *restrict wz, int64_t nz,
                    float *restrict z, int64_t zs, int np)
{
    float a[CL_N][16] = { { 0 } };
    for (int o = 0; o < CL_O; o++)
        for (int p = 0; p < np; p++)
            for (int v = 0; v < 16; v++) a[p][v] += dy[p * CL_O + o] * wz[o * nz + v];
    for (int p = 0; p < np; p++) memcpy(z + p * zs, a[p], sizeof a[p]);
}

/* the z rows' shares of the vectors m < nm of a dx row d (see cl_dx_image): plain C */
static void cl_gather_c(float *restrict d, const float *restrict zi, int64_t zs, int64_t C,
                        int64_t kwc, int64_t Wo, int64_t nm)
{
    for (int64_t m = 0; m < nm; m++) {
        /* z rows with a value in lanes [8m, 8m + 8): ow*C < 8m + 8, ow*C + kw*C > 8m */
        const int64_t lo = 8 * m < kwc ? 0 : (8 * m - kwc) / C + 1;
        const int64_t hi = (8 * m + 8 + C - 1) / C < Wo ? (8 * m + 8 + C - 1) / C : Wo;
        float a[8] = { 0 };
        for (int64_t ow = lo; ow < hi; ow++)
            for (int u = 0; u < 8; u++) a[u] += zi[ow * zs + 8 * m - ow * C + u];
        for (int u = 0; u < 8; u++) d[8 * m + u] += a[u];
    }
}

#ifdef LB_DIRECT_AVX2

/* cl_gather_c with the same sums in the same order, 8 lanes at a time */
__attribute__((target("avx2,fma")))
static void cl_gather_avx2(float *restrict d, const float *restrict zi, int64_t zs, int64_t C,
                           int64_t kwc, int64_t Wo, int64_t nm)
{
    for (int64_t m = 0; m < nm; m++) {
        const int64_t lo = 8 * m < kwc ? 0 : (8 * m - kwc) / C + 1;
        const int64_t hi = (8 * m + 8 + C - 1) / C < Wo ? (8 * m + 8 + C - 1) / C : Wo;
        __m256 a = _mm256_setzero_ps();
        for (int64_t ow = lo; ow < hi; ow++)
            a = _mm256_add_ps(a, _mm256_loadu_ps(zi + ow * zs + 8 * m - ow * C));
        _mm256_storeu_ps(d + 8 * m, _mm256_add_ps(_mm256_loadu_ps(d + 8 * m), a));
    }
}
#endif

static const cl_kernels *cl_pick(void)
{
    static const cl_kernels portable = {
        { NULL, cl_fwd_c, cl_fwd_c, cl_fwd_c, cl_fwd_c, cl_fwd_c, cl_fwd_c },
        { NULL, cl_dw_c, cl_dw_c, cl_dw_c, cl_dw_c, cl_dw_c, cl_dw_c },
        { NULL, cl_dz_c, cl_dz_c, cl_dz_c, cl_dz_c, cl_dz_c, cl_dz_c },
        cl_gather_c,
    };
#ifdef LB_DIRECT_AVX2
    static const cl_kernels avx2 = {
        { NULL, cl_fwd1, cl_fwd2, cl_fwd3, cl_fwd4, cl_fwd5, cl_fwd6 },
        { NULL, cl_dw1, cl_dw2, cl_dw3, cl_dw4, cl_dw5, cl_dw6 },
        { NULL, cl_dz1, cl_dz2, cl_dz3, cl_dz4, cl_dz5, cl_dz6 },
        cl_gather_avx2,
    };
    if (have_avx2_fma()) return &avx2;
#endif
    return &portable;
}

#ifdef LB_DIRECT_AVX2
/* cl_dx_image's copy out, rows of 8 positions at a time: written, the last block overlaps
 * the one before (the same values again); added to, blocks do not overlap and the rest of
 * the row is scalar */
__attribute__((target("avx2")))
static void cl_dx_out_avx2(const dgeom *g, const float *restrict dxc, float *restrict dx,
                           bool fresh)
{
    const int64_t C = g->C, H = g->H, W = g->W, Wc = cl_wc(g);
    for (int64_t h = 0; h < H; h++) {
        const float *restrict s = dxc + ((h + g->ph) * Wc + g->pw) * C;
        float *restrict d = dx + h * W;
        int64_t w0 = 0;
        for (; w0 + 8 <= W; w0 += 8) cl_deinterleave8(s, C, w0, d, H * W, !fresh);
        if (w0 == W) continue;
        if (fresh) {
            cl_deinterleave8(s, C, W - 8, d, H * W, false);
            continue;
        }
        for (int64_t c = 0; c < C; c++)
            for (int64_t w = w0; w < W; w++) d[c * H * W + w] += s[w * C + c];
    }
}
#endif

/* dx (C, H, W) = (or += unless fresh) the dx of one image from dyc (S, 16), in the scratch
 * s (cl_dx_floats) */
static void cl_dx_image(const dgeom *g, const cl_kernels *kn, const float *wz,
                        const float *dyc, float *s, float *restrict dx, bool fresh)
{
    const int64_t C = g->C, kh = g->kh, kw = g->kw, Wo = g->Wo, Wc = cl_wc(g);
    const int64_t nz = cl_nz(g), zs = cl_zs(g), row = Wc * C, nm = (row + 7) / 8;
    float *z = s, *dxc = s + kh * Wo * zs;
    memset(dxc, 0, (size_t)(cl_x_floats(g) + 8) * sizeof(float));
    for (int64_t r = 0; r < kh * Wo; r++) { /* the zeros on each side of the z rows */
        memset(z + r * zs, 0, 8 * sizeof(float));
        memset(z + r * zs + 8 + nz, 0, 8 * sizeof(float));
    }
    const int64_t nch = (Wo + CL_N - 1) / CL_N;
    for (int64_t oh = 0; oh < g->Ho; oh++) {
        const float *dyr = dyc + oh * Wo * CL_O;
        for (int64_t i = 0; i < kh; i++)
            for (int64_t k = 0; k < nch; k++) {
                int64_t ow;
                const int np = cl_chunk(Wo, CL_N, k, &ow);
                for (int64_t v = 0; v < nz; v += 16)
                    kn->dz[np](dyr + ow * CL_O, wz + i * CL_O * nz + v, nz,
                               z + (i * Wo + ow) * zs + 8 + v, zs, np);
            }
        for (int64_t i = 0; i < kh; i++)
            kn->gather(dxc + (oh + i) * row, z + i * Wo * zs + 8, zs, C, kw * C, Wo, nm);
    }
    const int64_t H = g->H, W = g->W;
#ifdef LB_DIRECT_AVX2
    if (C <= 8 && W >= 8 && have_avx2_fma()) { /* dxc's 8 floats of slack cover the reads */
        cl_dx_out_avx2(g, dxc, dx, fresh);
        return;
    }
#endif
    for (int64_t c = 0; c < C; c++)
        for (int64_t h = 0; h < H; h++) {
            const float *restrict sr = dxc + ((h + g->ph) * Wc + g->pw) * C + c;
            float *restrict dr = dx + (c * H + h) * W;
            if (fresh)
                for (int64_t w = 0; w < W; w++) dr[w] = sr[w * C];
            else
                for (int64_t w = 0; w < W; w++) dr[w] += sr[w * C];
        }
}

/* Along one axis (kernel k, padding pad, n[p] outputs of parity p): the lowest dy index a
 * phase reads relative to its output index (*lo <= 0) and the highest it reads (*hi >= 0). */
static void ph_reach(int64_t k, int64_t pad, const int64_t n[2], int64_t *lo, int64_t *hi)
{
    *lo = 0, *hi = 0;
    for (int p = 0; p < 2; p++)
        for (int64_t i = 0; i < k; i++) {
            if ((p + pad - i) & 1) continue;
            const int64_t r = (p + pad - i) / 2;
            *lo = r < *lo ? r : *lo;
            *hi = r + n[p] - 1 > *hi ? r + n[p] - 1 : *hi;
        }
}

/* The phases' geometry of dx (C, H, W) from dy (O, Ho, Wo), stride 2, kernel kh x kw, pad. */
static phgeom ph_make(int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t pad,
                      int64_t Ho, int64_t Wo)
{
    phgeom g = { .nob = (C + DO - 1) / DO };
    g.Hph[0] = (H + 1) / 2, g.Hph[1] = H / 2, g.Wph[0] = (W + 1) / 2, g.Wph[1] = W / 2;
    int64_t rlo, rhi, clo, chi; /* the extreme dy rows and columns the phases read */
    ph_reach(kh, pad, g.Hph, &rlo, &rhi);
    ph_reach(kw, pad, g.Wph, &clo, &chi);
    g.Pt = -rlo, g.Pl = -clo;
    g.Hd = g.Pt + (rhi + 1 > Ho ? rhi + 1 : Ho);
    g.Wd = g.Pl + (chi + 1 > Wo ? chi + 1 : Wo);
    g.plane = g.Hd * g.Wd;
    g.tail = 2 * g.Wd + DT + 8; /* the garbage positions of the last tile, past the last row */
    for (int q = 0; q < 4; q++) {
        const int py = q >> 1, px = q & 1;
        g.Tt[q] = (g.Hph[py] * g.Wd + DT - 1) / DT * DT;
        int n = 0;
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) {
                if (((py + pad - i) & 1) || ((px + pad - j) & 1)) continue;
                g.toff[q][n] = ((py + pad - i) / 2 + g.Pt) * g.Wd + (px + pad - j) / 2 + g.Pl;
                g.ti[q][n] = (int8_t)i, g.tj[q][n] = (int8_t)j;
                n++;
            }
        g.nt[q] = n;
        if (g.Hph[py] == 0 || g.Wph[px] == 0) g.nt[q] = 0, g.Tt[q] = 0; /* no such rows */
    }
    return g;
}

static int64_t ph_dyp_floats(const phgeom *g, int64_t O) { return O * g->plane + g->tail; }
static int64_t ph_out_floats(const phgeom *g)
{
    return g->nob * DO * (g->Tt[0] + g->Tt[1] + g->Tt[2] + g->Tt[3]);
}
static int64_t ph_wpk_floats(const phgeom *g, int64_t O)
{
    int64_t n = 0;
    for (int q = 0; q < 4; q++) n += g->nob * O * g->nt[q] * DO;
    return n;
}

/* wph: for each phase q in turn, (nob, O, nt[q], DO) = w[o][c][ti][tj] with c = block*DO + k
 * (0 past C). */
static void ph_pack(const phgeom *g, const float *w, int64_t O, int64_t C, int64_t kh,
                    int64_t kw, float *restrict wph)
{
    for (int q = 0; q < 4; q++)
        for (int64_t cb = 0; cb < g->nob; cb++)
            for (int64_t o = 0; o < O; o++)
                for (int t = 0; t < g->nt[q]; t++)
                    for (int64_t k = 0; k < DO; k++) {
                        const int64_t c = cb * DO + k;
                        *wph++ = c < C ? w[((o * C + c) * kh + g->ti[q][t]) * kw + g->tj[q][t]]
                                       : 0.0f;
                    }
}

/* dyp = dy (O, Ho, Wo) at (Pt, Pl) in planes of Hd x Wd, zeros elsewhere and in the tail. */
static void ph_pad(const phgeom *g, int64_t O, int64_t Ho, int64_t Wo, const float *restrict dy,
                   float *restrict dyp)
{
    memset(dyp, 0, (size_t)ph_dyp_floats(g, O) * sizeof(float));
    for (int64_t o = 0; o < O; o++)
        for (int64_t h = 0; h < Ho; h++)
            memcpy(dyp + o * g->plane + (h + g->Pt) * g->Wd + g->Pl, dy + (o * Ho + h) * Wo,
                   (size_t)Wo * sizeof(float));
}

/* Row a of dx's rows of parity py (C, H, W): d[2b] (=, or += with add) r0[b] for b < n0 and
 * d[2b + 1] r1[b] for b < n1 (n0 - n1 is 0 or 1); r0 or r1 NULL for a phase without taps
 * (zeros). Both phases in one pass of contiguous stores, which the compiler vectorizes. */
LB_CLONES
static void ph_store_row(float *restrict d, const float *restrict r0, const float *restrict r1,
                         int64_t n0, int64_t n1, bool add)
{
    int64_t b = 0;
    if (r0 && r1) {
        if (add)
            for (; b < n1; b++) d[2 * b] += r0[b], d[2 * b + 1] += r1[b];
        else
            for (; b < n1; b++) d[2 * b] = r0[b], d[2 * b + 1] = r1[b];
        if (b < n0) d[2 * b] = add ? d[2 * b] + r0[b] : r0[b];
        return;
    }
    for (b = 0; b < n0; b++)
        if (r0) d[2 * b] = add ? d[2 * b] + r0[b] : r0[b];
        else if (!add) d[2 * b] = 0.0f;
    for (b = 0; b < n1; b++)
        if (r1) d[2 * b + 1] = add ? d[2 * b + 1] + r1[b] : r1[b];
        else if (!add) d[2 * b + 1] = 0.0f;
}

/* dx (C, H, W) = (fresh) or += the four phases of one image, from its padded dy; out is
 * scratch of ph_out_floats (the four phases' outputs, then stored together). */
static void ph_dx_image(const phgeom *g, int64_t O, int64_t C, int64_t H, int64_t W,
                        const float *wph, const float *dyp, float *restrict out,
                        float *restrict dx, bool fresh)
{
    tilet_fn tt = tilet_c;
#ifdef LB_DIRECT_AVX2
    if (have_avx2_fma()) tt = tilet_avx2;
#endif
    const float *res[4];
    for (int q = 0; q < 4; q++) {
        const int64_t wblock = O * g->nt[q] * DO;
        res[q] = g->nt[q] > 0 ? out : NULL;
        for (int64_t t = 0; g->nt[q] > 0 && t < g->Tt[q]; t += DT)
            for (int64_t cb = 0; cb < g->nob; cb++)
                tt(dyp + t, g->plane, O, g->nt[q], g->toff[q], wph + cb * wblock,
                   out + cb * DO * g->Tt[q] + t, g->Tt[q]);
        out += g->nob * DO * g->Tt[q];
        wph += g->nob * wblock;
    }
    for (int64_t c = 0; c < C; c++)
        for (int py = 0; py < 2; py++) {
            const float *r0 = res[2 * py], *r1 = res[2 * py + 1];
            if (r0) r0 += c * g->Tt[2 * py];
            if (r1) r1 += c * g->Tt[2 * py + 1];
            if (!r0 && !r1 && !fresh) continue;
            for (int64_t a = 0; a < g->Hph[py]; a++)
                ph_store_row(dx + (c * H + 2 * a + py) * W, r0 ? r0 + a * g->Wd : NULL,
                             r1 ? r1 + a * g->Wd : NULL, g->Wph[0], g->Wph[1], !fresh);
        }
}

/* Output positions o in [*lo, *hi) whose input index o*stride - pad + k lies in [0, n_in):
 * the rest of the row reads zero padding. Lets the inner loops run without bounds checks. */
static void valid_range(int64_t n_in, int64_t n_out, int stride, int pad, int64_t k,
                        int64_t *lo, int64_t *hi)
{
    const int64_t first = pad - k;            /* o*stride >= first */
    const int64_t last = n_in - 1 + pad - k;  /* o*stride <= last  */
    int64_t l = first <= 0 ? 0 : (first + stride - 1) / stride;
    int64_t h = last < 0 ? 0 : last / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Output rows [oa, ob) of the unrolled image: col[(c*kh + i)*kw + j][(oh - oa)*Wo + ow] =
 * x[c][oh*stride - pad + i][ow*stride - pad + j], or 0 where that falls in the padding.
 * Rows are short (8 to 32 values here), so inline loops beat memcpy/memset calls; GCC would
 * turn the plain loops into those calls, hence the attribute. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
LB_CLONES
static void im2col_g(int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t Ho,
                     int64_t Wo, int stride, int pad, const float *restrict x /* (C, H, W) */,
                     int64_t oa, int64_t ob, float *restrict col /* (C*kh*kw, (ob-oa)*Wo) */)
{
    (void)Ho;
    const int64_t S = (ob - oa) * Wo;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < kh; i++) {
            int64_t oh0, oh1;
            valid_range(H, Ho, stride, pad, i, &oh0, &oh1);
            if (oh0 < oa) oh0 = oa;
            if (oh1 > ob) oh1 = ob;
            for (int64_t j = 0; j < kw; j++) {
                int64_t ow0, ow1;
                valid_range(W, Wo, stride, pad, j, &ow0, &ow1);
                float *restrict row = col + ((c * kh + i) * kw + j) * S - oa * Wo;
                /* rows [r0, r1) read the image; no row does when no column is valid */
                const int64_t n = ow1 - ow0, iw0 = ow0 * stride - pad + j;
                const int64_t r0 = n > 0 && oh0 < oh1 ? oh0 : oa, r1 = n > 0 && oh0 < oh1 ? oh1 : oa;
                for (int64_t t = oa * Wo; t < r0 * Wo; t++) row[t] = 0.0f;
                for (int64_t oh = r0; oh < r1; oh++) {
                    float *restrict r = row + oh * Wo;
                    const float *restrict xr = x + (c * H + oh * stride - pad + i) * W + iw0;
                    for (int64_t ow = 0; ow < ow0; ow++) r[ow] = 0.0f;
                    if (stride == 1) {
                        for (int64_t t = 0; t < n; t++) r[ow0 + t] = xr[t];
                    } else {
                        for (int64_t t = 0; t < n; t++) r[ow0 + t] = xr[t * stride];
                    }
                    for (int64_t ow = ow1; ow < Wo; ow++) r[ow] = 0.0f;
                }
                for (int64_t t = r1 * Wo; t < ob * Wo; t++) row[t] = 0.0f;
            }
        }
}

/* Rows [oa, ob) of x's unrolled image, for the convolution itself. */
static void im2col(const conv_saved *p, const float *restrict x, int64_t oa, int64_t ob,
                   float *restrict col)
{
    im2col_g(p->C, p->H, p->W, p->kh, p->kw, p->Ho, p->Wo, p->stride, p->pad, x, oa, ob, col);
}

/* Output rows per band: the unrolled band (K x rows*Wo floats) stays near BAND_FLOATS, about
 * a third of this machine's 512 KiB L2, so im2col writes it and sgemm reads it from cache. */
#ifndef BAND_FLOATS
#define BAND_FLOATS ((int64_t)40 << 10)
#endif
static int64_t band_rows(int64_t K, int64_t Wo, int64_t Ho)
{
    int64_t r = BAND_FLOATS / (K * Wo);
    return r < 1 ? 1 : r > Ho ? Ho : r;
}

/* The adjoint of im2col: dx[c][ih][iw] += every dcol entry that was read from (c, ih, iw).
 * Padding entries are dropped. */
LB_CLONES
static void col2im_add(const conv_saved *p, const float *restrict dcol /* (K, ld) */,
                       int64_t ld, float *restrict dx /* (C, H, W) */)
{
    const int64_t H = p->H, W = p->W, Ho = p->Ho, Wo = p->Wo;
    const int stride = p->stride, pad = p->pad;
    for (int64_t c = 0; c < p->C; c++)
        for (int64_t i = 0; i < p->kh; i++) {
            int64_t oh0, oh1;
            valid_range(H, Ho, stride, pad, i, &oh0, &oh1);
            for (int64_t j = 0; j < p->kw; j++) {
                int64_t ow0, ow1;
                valid_range(W, Wo, stride, pad, j, &ow0, &ow1);
                const float *row = dcol + ((c * p->kh + i) * p->kw + j) * ld;
                const int64_t n = ow1 - ow0, iw0 = ow0 * stride - pad + j;
                if (n <= 0) continue; /* this tap only ever reads padding */
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    const float *r = row + oh * Wo + ow0;
                    float *xr = dx + (c * H + oh * stride - pad + i) * W + iw0;
                    if (stride == 1) { /* contiguous: lets the compiler vectorize */
                        for (int64_t t = 0; t < n; t++) xr[t] += r[t];
                    } else {
                        for (int64_t t = 0; t < n; t++) xr[t * stride] += r[t];
                    }
                }
            }
        }
}

/* The per-image work of forward and backward, split over images (lb_parallel_for_dyn and
 * lb_parallel_for). Each thread works on one image at a time in its own scratch, which stays
 * in cache; BLAS itself runs single-threaded inside the region. */
typedef struct {
    const conv_saved *p;
    lb_tensor        *y, *x, *w, *b;
    int64_t           O, K, S, CHW;
    int64_t           Sy;   /* positions per channel of y: S, or Hq*Wq when pooled */
    int               used; /* backward: threads in the region; dx is shared out when > 1 */
} conv_job;

static conv_job conv_job_make(lb_tensor *y)
{
    const conv_saved *p = y->saved;
    const int64_t S = p->Ho * p->Wo;
    return (conv_job){ p, y, y->src[0], y->src[1], y->src[2], y->src[1]->shape[0],
                       p->C * p->kh * p->kw, S, p->C * p->H * p->W,
                       p->am8 ? p->Hq * p->Wq : S, 1 };
}

/* Images per dW group: dw_group's, or for channels last as many slots as fit in 256 KiB,
 * 1 to 8. */
static int slot_group(const conv_saved *p)
{
    if (!p->cl) return dw_group(&p->gf);
    const int64_t n = ((int64_t)64 << 10) / p->slot;
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

/* Scratch floats per thread before the partial dW (O, K): the direct path's padded image and
 * padded-width output (forward), padded image and dy (dW) and padded dy and dx (dx); the
 * im2col path's band of the unrolled image or, for col2im, the whole unrolled image. */
static int64_t col_floats(const conv_saved *p, bool x_grad)
{
    if (p->direct) { /* forward or dx, then the dW group's slots */
        int64_t n = dg_xp_floats(&p->gf) + dg_y_floats(&p->gf);
        if (p->cl) { /* xc and yc (S, 16); dx's scratch, then dy (S, 16) when no dW slot
                      * holds it (backward with db alone reads it too) */
            n = cl_x_floats(&p->gf) + p->Ho * p->Wo * CL_O;
            const int64_t t = cl_dx_floats(&p->gf) + p->Ho * p->Wo * CL_O;
            if (t > n) n = t;
        }
        if (p->flip && x_grad) {
            const int64_t t = dg_xp_floats(&p->gt) + dg_y_floats(&p->gt);
            n = t > n ? t : n;
        } else if (p->phase && x_grad) { /* the padded dy and a phase's output */
            const int64_t t = ph_dyp_floats(&p->ph, p->gf.O) + ph_out_floats(&p->ph);
            n = t > n ? t : n;
        } else if (x_grad && !p->cl) { /* dx through col2im: the whole unrolled image */
            const int64_t t = p->C * p->kh * p->kw * p->Ho * p->Wo;
            n = t > n ? t : n;
        }
        return n + slot_group(p) * p->slot;
    }
    const int64_t K = p->C * p->kh * p->kw;
    int64_t n = p->col ? K * band_rows(K, p->Wo, p->Ho) * p->Wo : 0;
    if (p->col && x_grad) n = K * p->Ho * p->Wo;
    return n;
}

static void forward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    const conv_job *j = ctx;
    const conv_saved *p = j->p;
    float *col = lb_parallel_scratch(tid);
    const cl_kernels *kn = cl_pick();
    const int64_t R = band_rows(j->K, p->Wo, p->Ho);
    for (int64_t n = lo; n < hi; n++) {
        const float *xn = j->x->data + n * j->CHW;
        float *yn = j->y->data + n * j->O * j->Sy;
        if (p->direct) {
            float *yt = col + dg_xp_floats(&p->gf);
            if (p->cl) {
                float *yc = col + cl_x_floats(&p->gf);
                const float *bias = j->b ? j->b->data : NULL;
                cl_pad(&p->gf, xn, col);
                cl_forward_image(&p->gf, kn, p->wpk, col, yc);
                if (p->am8)
                    cl_pool_store(&p->gf, yc, bias, p->Hq, p->Wq, yn, p->am8 + n * j->O * j->Sy);
                else
                    cl_store(j->S, yc, bias, yn);
                continue;
            } else {
                d_pad(&p->gf, xn, col);
                d_forward_image(&p->gf, p->wpk, col, yt);
            }
            if (p->am8)
                d_pool_store(&p->gf, yt, j->b ? j->b->data : NULL, p->Hq, p->Wq, yn,
                             p->am8 + n * j->O * j->Sy);
            else
                d_store(&p->gf, yt, yn, false, j->b ? j->b->data : NULL);
            continue; /* bias added */
        } else if (!p->col) { /* Y_n (O, S) = W (O, C) · X_n (C, S) */
            lb_sgemm(false, false, j->O, j->S, j->K, 1.0f, j->w->data, j->K, xn, j->S, 0.0f, yn,
                     j->S);
        } else {
            for (int64_t oa = 0; oa < p->Ho; oa += R) { /* Y_n[:, band] = W (O, K) · col */
                const int64_t ob = oa + R < p->Ho ? oa + R : p->Ho, BS = (ob - oa) * p->Wo;
                im2col(p, xn, oa, ob, col);
                lb_sgemm(false, false, j->O, BS, j->K, 1.0f, j->w->data, j->K, col, BS, 0.0f,
                         yn + oa * p->Wo, j->S);
            }
        }
        if (j->b)
            for (int64_t o = 0; o < j->O; o++) {
                const float bo = j->b->data[o];
                float *r = yn + o * j->S;
                for (int64_t s = 0; s < j->S; s++) r[s] += bo;
            }
    }
}

/* y (B, O, Ho, Wo) = conv(x (B, C, H, W), w (O, C, kh, kw)) + b (O) */
static void conv2d_forward(lb_tensor *y)
{
    conv_saved *p = y->saved;
    conv_job j = conv_job_make(y);
    if (p->cl) cl_pack(j.w->data, p->C, p->kh, p->kw, p->wpk = lb_parallel_shared());
    else if (p->direct) d_pack(j.w->data, j.O, p->C, p->kh, p->kw, false,
                               p->wpk = lb_parallel_shared());
    lb_parallel_for_dyn(j.x->shape[0], 1, forward_part, &j); /* images are independent */
}

/* The eight lane sums of db[o]'s terms from one image: lane k sums dy[s] for s = k mod 8, the
 * tail past the last multiple of 8 in lane 0, each in increasing s. */
static void bias_lanes(const float *restrict dy, int64_t S, float *restrict out)
{
    float s4[8] = { 0 }; /* local: the compiler keeps it in a register */
    int64_t s = 0;
    for (; s + 8 <= S; s += 8)
        for (int k = 0; k < 8; k++) s4[k] += dy[s + k];
    for (; s < S; s++) s4[0] += dy[s];
    memcpy(out, s4, sizeof s4);
}

/* db[o] = sum over images and positions of dY[n][o], split over channels: in double, over
 * the images in order, of their lane sums (bias_lanes). */
static void bias_grad_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const conv_job *j = ctx;
    const int64_t B = j->x->shape[0];
    for (int64_t o = lo; o < hi; o++) {
        double acc = 0.0;
        for (int64_t n = 0; n < B; n++) {
            float s4[8];
            bias_lanes(j->y->grad + (n * j->O + o) * j->S, j->S, s4);
            for (int k = 0; k < 8; k++) acc += s4[k];
        }
        j->b->grad[o] += (float)acc;
    }
}

/* dX_n from image n's dy (O, S), unpooled, for the path: by the direct kernel on dy padded
 * for gt with the flipped kernel (dyp, or padded here in col), channels last from dyc (dy
 * (S, 16)), by phases, or through dcol = Wᵀ · dY_n (into the scratch col) and col2im, or by
 * one sgemm for 1x1. Written when x's gradient is fresh, else added. */
static void dx_image(const conv_job *j, const cl_kernels *kn, int64_t n, const float *dy,
                     const float *dyp, const float *dyc, float *col)
{
    const conv_saved *p = j->p;
    float *dx = j->x->grad + n * j->CHW;
    const bool fresh = j->x->grad_fresh; /* dX_n is written, not added to */
    if (p->cl) {
        cl_dx_image(&p->gf, kn, p->wpk_t, dyc, col, dx, fresh);
    } else if (p->flip) { /* dX_n += conv(dY_n padded by k - 1 - pad, flipped w) */
        float *yt = col + dg_xp_floats(&p->gt);
        if (!dyp) d_pad(&p->gt, dy, col), dyp = col;
        d_forward_image(&p->gt, p->wpk_t, dyp, yt);
        d_store(&p->gt, yt, dx, !fresh, NULL);
    } else if (p->phase) { /* stride 2: dX_n by phases (phgeom) */
        ph_pad(&p->ph, j->O, p->Ho, p->Wo, dy, col);
        ph_dx_image(&p->ph, j->O, p->C, p->H, p->W, p->wpk_t, col,
                    col + ph_dyp_floats(&p->ph, j->O), dx, fresh);
    } else if (p->col) {
        /* dcol (K, S) = Wᵀ (K, O) · dY_n (O, S); overwrites the unrolled image */
        lb_sgemm(true, false, j->K, j->S, j->O, 1.0f, j->w->data, j->K, dy, j->S, 0.0f, col,
                 j->S);
        if (fresh) memset(dx, 0, (size_t)j->CHW * sizeof(float));
        col2im_add(p, col, j->S, dx);
    } else {
        /* 1x1 path: dX_n (C, S) += Wᵀ (C, O) · dY_n (O, S) */
        lb_sgemm(true, false, j->K, j->S, j->O, 1.0f, j->w->data, j->K, dy, j->S,
                 fresh ? 0.0f : 1.0f, dx, j->S);
    }
}

/* The convolution's dy of image n, for dx_image: y's gradient, or unpooled into du (pooled,
 * padded-width path), or laid out channels last in dyc (unpooled straight into it when
 * pooled; the pooled bias's lane sums into lanes when given). */
static const float *dy_image(const conv_job *j, int64_t n, float *du, float *dyc, float *lanes)
{
    const conv_saved *p = j->p;
    const float *dy = j->y->grad + n * j->O * j->S;
    if (p->am8 && p->cl) {
        cl_unpool(&p->gf, p->Hq, p->Wq, j->y->grad + n * j->O * j->Sy,
                  p->am8 + n * j->O * j->Sy, dyc, lanes);
        return dy; /* (not read) */
    }
    if (p->am8) {
        const float *dq = j->y->grad + n * j->O * j->Sy;
        const uint8_t *am = p->am8 + n * j->O * j->Sy;
        for (int64_t o = 0; o < j->O; o++) {
            lb_pool22_back_plane(dq + o * j->Sy, am + o * j->Sy, p->Hq, p->Wq, p->Ho, p->Wo,
                                 du + o * j->S);
            /* db's lane sums now, from the same dy as the two ops' and in cache */
            if (lanes) bias_lanes(du + o * j->S, j->S, lanes + o * 8);
        }
        dy = du;
    }
    if (p->cl) cl_dy_layout(j->S, dy, dyc);
    return dy;
}

/* dx of images [lo, hi) that nobody has claimed yet, in increasing order (up), or from hi - 1
 * down, until one is found claimed: the thread that owns them goes up from the start, so
 * that one ends the range. dx of an image does not depend on which thread computes it. */
static void claim_dx(const conv_job *j, const cl_kernels *kn, int64_t lo, int64_t hi, bool up,
                     float *col, float *du)
{
    const conv_saved *p = j->p;
    float *dyc = p->cl ? col + cl_dx_floats(&p->gf) : NULL;
    for (int64_t i = 0; i < hi - lo; i++) {
        const int64_t m = up ? lo + i : hi - 1 - i;
        if (atomic_exchange_explicit(&p->claim[m], 1, memory_order_relaxed)) break;
        dx_image(j, kn, m, dy_image(j, m, du, dyc, NULL), NULL, dyc, col);
    }
}

/* A thread done with its own images takes over the dx of other threads' images from the end
 * of their ranges; the owner, told by raided, leaves the dx of the rest of its images for
 * after its dW, and then takes them up from where it left them. So both finish within about
 * one image's dx of each other however much slower one runs, while the threads' partial dW
 * keep their fixed images (deterministic sums). */
static void steal_dx(const conv_job *j, const cl_kernels *kn, int tid, float *col, float *du)
{
    const conv_saved *p = j->p;
    for (int k = 1; k < j->used; k++) {
        const int t = (tid + k) % j->used;
        int64_t lo, hi;
        lb_parallel_range(j->x->shape[0], t, j->used, &lo, &hi);
        atomic_store_explicit(&p->raided[t], 1, memory_order_relaxed);
        claim_dx(j, kn, lo, hi, false, col, du);
    }
}

/* Per image: dW_t (O, K) += dY_n (O, S) · col_nᵀ (S, K) into this thread's partial sum (or its
 * direct equivalent), then dx_n (dx_image) unless another thread has claimed it. */
static void backward_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    const conv_job *j = ctx;
    const conv_saved *p = j->p;
    float *col = lb_parallel_scratch(tid);
    float *dw = col + col_floats(p, j->x->grad != NULL);
    float *du = dw + j->O * j->K; /* pooled, padded width: the unpooled dy */
    float *xs = j->x->data ? NULL : du + (p->am8 ? j->O * j->S : 0); /* see xn below */
    const cl_kernels *kn = cl_pick();
    const int G = p->direct ? slot_group(p) : 0;
    float *grp = dw - G * (p->direct ? p->slot : 0);
    int filled = 0;
    const int64_t R = band_rows(j->K, p->Wo, p->Ho);
    const bool steal = j->used > 1 && j->x->grad && p->claim;
    int64_t later = hi; /* dx from this image on left for after the dW (steal_dx) */
    if (j->w->grad && (p->direct || p->col)) memset(dw, 0, (size_t)(j->O * j->K) * sizeof(float));
    if (j->w->grad && p->share_dy && j->O % DO) /* the missing channels' planes (dw_layout) */
        for (int g = 0; g < G; g++)
            memset(grp + g * p->slot + dg_xp_floats(&p->gf) + j->O * p->gt.plane, 0,
                   (size_t)((p->gf.nob * DO - j->O) * p->gt.plane) * sizeof(float));
    for (int64_t n = lo; n < hi; n++) {
        /* x dropped after the forward pass: its image from its op (lb_op_def.rows), for dW */
        const float *xn = xs ? xs : j->x->data + n * j->CHW;
        if (xs && j->w->grad) j->x->op->rows(j->x, n, xs);
        /* channels last: dy (S, 16) in the dW slot, or after dx's scratch without dW */
        float *dyc = !p->cl ? NULL
                     : j->w->grad ? grp + filled * p->slot + p->dy_off
                                  : col + cl_dx_floats(&p->gf);
        if (steal && later == hi
            && (force_steal == 2 || atomic_load_explicit(&p->raided[tid], memory_order_relaxed)))
            later = n;
        const bool dx = j->x->grad && !(steal && (force_steal == 1 || later <= n
                                                  || atomic_exchange_explicit(
                                                      &p->claim[n], 1, memory_order_relaxed)));
        float *lanes = p->am8 && j->b && j->b->grad ? p->lanes + n * j->O * 8 : NULL;
        if (!j->w->grad && !dx && !lanes) continue; /* another thread does its dx */
        const float *dy = dy_image(j, n, du, dyc, lanes);
        const float *dyp = NULL; /* dy padded for dx (gt), when the dW slot holds it */
        if (j->w->grad) {
            if (p->direct) { /* dW += sum_t dy[o][t] xp[c][t + tap], a group at a time */
                float *slot = grp + filled * p->slot, *sd = slot + p->dy_off;
                if (p->cl) {
                    cl_pad(&p->gf, xn, slot); /* dyc is at sd already */
                } else {
                    sd = slot + dg_xp_floats(&p->gf);
                    d_pad(&p->gf, xn, slot);
                    if (p->share_dy) d_pad(&p->gt, dy, sd), dyp = sd;
                    else d_dy_layout(&p->gf, dy, sd);
                }
                if (++filled == G || n + 1 == hi) { /* the slots stay until the next image */
                    if (p->cl)
                        cl_dw_group(&p->gf, kn, grp, filled, p->slot, p->dy_off, dw);
                    else
                        d_dw_group(&p->gf, grp, filled, p->slot, p->dy_off, p->dy_ld,
                                   p->dw_tiled, dw);
                    filled = 0;
                }
            } else if (!p->col) { /* dW (O, C) += dY_n (O, S) · X_nᵀ (S, C) */
                lb_sgemm(false, true, j->O, j->K, j->S, 1.0f, dy, j->S, xn, j->S,
                         n == lo ? 0.0f : 1.0f, dw, j->K);
            } else {
                for (int64_t oa = 0; oa < p->Ho; oa += R) { /* dW += dY_n[:, band] · colᵀ */
                    const int64_t ob = oa + R < p->Ho ? oa + R : p->Ho, BS = (ob - oa) * p->Wo;
                    im2col(p, xn, oa, ob, col);
                    lb_sgemm(false, true, j->O, j->K, BS, 1.0f, dy + oa * p->Wo, j->S, col, BS,
                             1.0f, dw, j->K);
                }
            }
        }
        if (dx) dx_image(j, kn, n, dy, dyp, dyc, col);
    }
    if (steal) {
        claim_dx(j, kn, later, hi, true, col, du);
        steal_dx(j, kn, tid, col, du);
    }
}

static void conv2d_backward(lb_tensor *y)
{
    conv_saved *p = y->saved;
    conv_job j = conv_job_make(y);
    const int64_t B = j.x->shape[0];
    const bool db = j.b && j.b->grad;
    if (db && !p->am8) lb_parallel_for_dyn(j.O, 1, bias_grad_part, &j);
    if (!j.w->grad && !j.x->grad && !(db && p->am8)) return;
    if (p->cl && j.x->grad) cl_pack_t(&p->gf, j.w->data, p->wpk_t = lb_parallel_shared());
    if (p->flip && j.x->grad)
        d_pack(j.w->data, j.O, p->C, p->kh, p->kw, true, p->wpk_t = lb_parallel_shared());
    if (p->phase && j.x->grad)
        ph_pack(&p->ph, j.w->data, j.O, p->C, p->kh, p->kw, p->wpk_t = lb_parallel_shared());
    const int used = j.used = lb_parallel_count(B, 1);
    if (used > 1 && j.x->grad && p->claim) {
        for (int64_t n = 0; n < B; n++) atomic_store_explicit(&p->claim[n], 0, memory_order_relaxed);
        for (int t = 0; t < used; t++) atomic_store_explicit(&p->raided[t], 0, memory_order_relaxed);
    }
    lb_parallel_for(B, 1, backward_part, &j);
    if (db && p->am8) /* pooled: backward_part left each image's lane sums */
        for (int64_t o = 0; o < j.O; o++) {
            double acc = 0.0;
            for (int64_t n = 0; n < B; n++)
                for (int k = 0; k < 8; k++) acc += p->lanes[(n * j.O + o) * 8 + k];
            j.b->grad[o] += (float)acc;
        }
    if (!j.w->grad) return;
    /* dW += the threads' partial sums, in thread order */
    const int64_t off = col_floats(p, j.x->grad != NULL), OK = j.O * j.K;
    for (int t = 0; t < used; t++) {
        const float *part = (const float *)lb_parallel_scratch(t) + off;
        if (p->cl)
            cl_untile(&p->gf, part, j.w->grad, t == 0 && j.w->grad_fresh);
        else if (p->dw_tiled) /* w is an op's output (a fake-quantized weight) when fresh */
            dw_untile(&p->gf, part, j.w->grad, t == 0 && j.w->grad_fresh);
        else if (t == 0 && j.w->grad_fresh) /* w is an op's output (a fake-quantized weight) */
            memcpy(j.w->grad, part, (size_t)OK * sizeof(float));
        else
            for (int64_t i = 0; i < OK; i++) j.w->grad[i] += part[i];
    }
}

static const lb_op_def conv2d_def = { "conv2d", conv2d_forward, conv2d_backward,
                                      .overwrite = 3u, .out_unused = true, .rows_src = 1u };
static const lb_op_def conv2d_maxpool2_def = { "conv2d_maxpool2", conv2d_forward, conv2d_backward,
                                               .overwrite = 3u, .out_unused = true,
                                               .rows_src = 1u };

/* lb_conv2d, and with pool lb_conv2d_maxpool2's fused op (the caller has checked that it
 * applies: the direct stride-1 path, an output of at least 2x2). */
static lb_tensor *conv_record(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, int stride,
                              int pad, bool pool);

/* Whether conv_record can pool the convolution's output itself; LB_ERR_* checks are left
 * to it (false then, and the plain ops report them). */
static bool conv_poolable(const lb_tensor *x, const lb_tensor *w, int stride, int pad)
{
    if (x->n_dims != 4 || w->n_dims != 4 || stride != 1 || pad < 0) return false;
    const int64_t kh = w->shape[2], kw = w->shape[3];
    if (kh < 1 || kw < 1 || (kh == 1 && kw == 1 && pad == 0)) return false; /* 1x1: sgemm */
    return x->shape[2] + 2 * (int64_t)pad - kh + 1 >= 2 && x->shape[3] + 2 * (int64_t)pad - kw + 1 >= 2;
}

lb_tensor *lb_conv2d(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, int stride, int pad)
{
    return conv_record(g, x, w, b, stride, pad, false);
}

lb_tensor *lb_conv2d_maxpool2(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, int stride,
                              int pad)
{
    if (!x || !w || !lb_graph_ok(g)) return NULL;
    if (conv_poolable(x, w, stride, pad)) return conv_record(g, x, w, b, stride, pad, true);
    return lb_maxpool2d(g, lb_conv2d(g, x, w, b, stride, pad), 2, 2, 0);
}

static lb_tensor *conv_record(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, int stride,
                              int pad, bool pool)
{
    if (!x || !w || !lb_graph_ok(g)) return NULL;
    char sx[64], sw[64], sb[64];
    lb_shape_str(x, sx, sizeof sx);
    lb_shape_str(w, sw, sizeof sw);
    if (x->n_dims != 4 || w->n_dims != 4 || x->shape[1] != w->shape[1] || x->shape[1] < 1
        || x->shape[2] < 1 || x->shape[3] < 1 || w->shape[0] < 1 || w->shape[2] < 1
        || w->shape[3] < 1)
        return lb_graph_fail(g, LB_ERR_SHAPE,
                             "conv2d: x %s and w %s (expected x (B, C, H, W), w (O, C, kh, kw) "
                             "with the same C and non-empty dims)", sx, sw);
    if (b && (b->n_dims != 1 || b->shape[0] != w->shape[0]))
        return lb_graph_fail(g, LB_ERR_SHAPE, "conv2d: bias %s for w %s (expected (%lld))",
                             lb_shape_str(b, sb, sizeof sb), sw, (long long)w->shape[0]);
    if (stride < 1 || pad < 0)
        return lb_graph_fail(g, LB_ERR_ARG, "conv2d: stride %d, pad %d (expected stride >= 1, "
                             "pad >= 0)", stride, pad);
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t O = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    /* checked before dividing: C division truncates toward zero, so a kernel larger than
     * the padded input would otherwise give Ho = 1 */
    if (H + 2 * (int64_t)pad < kh || W + 2 * (int64_t)pad < kw)
        return lb_graph_fail(g, LB_ERR_SHAPE,
                             "conv2d: kernel %lldx%lld larger than input %s padded by %d "
                             "(the output would be empty)",
                             (long long)kh, (long long)kw, sx, pad);
    const int64_t P = pad;
    const int64_t Ho = (H + 2 * P - kh) / stride + 1, Wo = (W + 2 * P - kw) / stride + 1;

    conv_saved *p = lb_graph_alloc(g, sizeof *p);
    if (!p) return NULL;
    const bool one = kh == 1 && kw == 1 && stride == 1 && pad == 0;
    /* stride 2 direct (y and dW; dx by col2im) unless only 1 or 2 output channels */
    const bool s2 = stride == 2 && kh * kw <= MAX_TAPS2 && O > 2;
    *p = (conv_saved){ .C = C, .H = H, .W = W, .kh = kh, .kw = kw, .Ho = Ho, .Wo = Wo,
                       .stride = stride, .pad = pad, .col = !one && stride != 1 && !s2,
                       .direct = !one && (stride == 1 || s2) };
    if (p->direct) {
        p->gf = dgeom_make(C, H, W, P, P, kh, kw, O, stride);
        p->cl = cl_applies(C, kh, kw, O, Wo, p->gf.Wp, stride);
        /* dx as a stride-1 correlation of dy needs the padding k - 1 - pad >= 0 */
        p->flip = !p->cl && x->requires_grad && stride == 1 && pad <= kh - 1 && pad <= kw - 1;
        if (p->flip) p->gt = dgeom_make(O, Ho, Wo, kh - 1 - P, kw - 1 - P, kh, kw, C, 1);
        else if (stride == 2 && x->requires_grad) p->phase = true, p->ph = ph_make(C, H, W, kh, kw, P, Ho, Wo);
        else if (!p->cl) p->col = true; /* dx through col2im (channels last: its own) */
        if (p->cl) { /* a slot: xc, then dy (S, 16) */
            p->slot = cl_x_floats(&p->gf) + Ho * Wo * CL_O;
            p->dy_off = cl_x_floats(&p->gf);
        } else {
            dw_layout(p);
            p->dw_tiled = dw_tiles(&p->gf);
        }
        int64_t n_pk = dg_wpk_floats(&p->gf);
        if (p->flip && dg_wpk_floats(&p->gt) > n_pk) n_pk = dg_wpk_floats(&p->gt);
        if (p->phase && ph_wpk_floats(&p->ph, O) > n_pk) n_pk = ph_wpk_floats(&p->ph, O);
        if (p->cl && cl_wz_floats(&p->gf) > n_pk) n_pk = cl_wz_floats(&p->gf);
        lb_error e = { 0 };
        if (lb_parallel_reserve_shared((size_t)n_pk * sizeof(float), &e))
            return lb_graph_fail(g, e.status, "conv2d: %s", e.msg);
    }
    /* after the partial dW: pooled, the convolution's dy of one image; then x's image when
     * x may be dropped and read through its op's rows (lb_op_def.rows) */
    const bool rows = x->op && x->op->rows;
    const int64_t n_scratch = lb_shape_numel((int64_t[]){ col_floats(p, x->requires_grad) + O * C * kh * kw
                                                          + (pool ? O * Ho * Wo : 0)
                                                          + (rows ? C * H * W : 0), 1 },
                                             2);
    if (n_scratch < 0 || (uint64_t)n_scratch > SIZE_MAX / sizeof(float))
        return lb_graph_fail(g, LB_ERR_SHAPE, "conv2d: im2col buffer for x %s, w %s overflows",
                             sx, sw);
    lb_error e = { 0 };
    if (lb_parallel_reserve((size_t)n_scratch * sizeof(float), &e))
        return lb_graph_fail(g, e.status, "conv2d: %s", e.msg);
    lb_tensor *src[3] = { x, w, b };
    if (x->requires_grad
        && (!(p->claim = lb_graph_alloc(g, (size_t)B * sizeof *p->claim))
            || !(p->raided = lb_graph_alloc(g, LB_MAX_THREADS * sizeof *p->raided))))
        return NULL;
    if (!pool)
        return lb_graph_record(g, &conv2d_def, (int64_t[]){ B, O, Ho, Wo }, 4, src, b ? 3 : 2, p);
    p->Hq = Ho / 2, p->Wq = Wo / 2;
    if (!(p->am8 = lb_graph_alloc(g, (size_t)(B * O * p->Hq * p->Wq)))) return NULL;
    if (b && !(p->lanes = lb_graph_alloc(g, (size_t)(B * O * 8) * sizeof(float)))) return NULL;
    return lb_graph_record(g, &conv2d_maxpool2_def, (int64_t[]){ B, O, p->Hq, p->Wq }, 4, src,
                           b ? 3 : 2, p);
}
