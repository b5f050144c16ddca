/* pool22.h: the rows of 2x2 stride-2 max pooling (no padding), shared by the max pooling op
 * (ops_pool.c) and the convolution that pools its own output (ops_conv.c).
 *
 * A window's winner is stored as its place, 0 r0[2ow], 1 r0[2ow+1], 2 r1[2ow], 3 r1[2ow+1],
 * in one byte; the first max wins and a NaN wins (as the general pooling path). Internal to
 * autograd/: every function here is static inline.
 */
#ifndef LB_POOL22_H
#define LB_POOL22_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "autograd/simd.h"

#if LB_HAVE_AVX2
/* 2x2 stride-2 windows of input rows r0, r1, four outputs at a time: y[ow] and the winner's
 * place (0 r0[2ow], 1 r0[2ow+1], 2 r1[2ow], 3 r1[2ow+1]), with the scalar rule (first max
 * wins, a NaN wins). A row of Wo >= 4 is done whole, its last group overlapping the one before
 * (no scalar tail, whose data-dependent branches cost more than the vector work); returns
 * where the scalar tail starts (0 or Wo). */
LB_AVX2 static inline int64_t maxpool22_row_avx2(const float *r0, const float *r1, int64_t Wo,
                                          float *y, uint8_t *place)
{
    const __m128i pick = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                       -1);
    if (Wo < 4) return 0;
    for (int64_t ow = 0; ow < Wo; ow += 4) {
        if (ow + 4 > Wo) ow = Wo - 4; /* the last four windows, overlapping: the same values */
        const __m128 a0 = _mm_loadu_ps(r0 + 2 * ow), a1 = _mm_loadu_ps(r0 + 2 * ow + 4);
        const __m128 b0 = _mm_loadu_ps(r1 + 2 * ow), b1 = _mm_loadu_ps(r1 + 2 * ow + 4);
        const __m128 v[4] = { _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)),
                              _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)) };
        __m128 best = v[0], r = _mm_setzero_ps();
        for (int t = 1; t < 4; t++) {
            const __m128 take = _mm_or_ps(_mm_cmpgt_ps(v[t], best), _mm_cmpunord_ps(v[t], v[t]));
            best = _mm_blendv_ps(best, v[t], take);
            r = _mm_blendv_ps(r, _mm_castsi128_ps(_mm_set1_epi32(t)), take);
        }
        _mm_storeu_ps(y + ow, best);
        const int32_t bytes = _mm_cvtsi128_si32(_mm_shuffle_epi8(_mm_castps_si128(r), pick));
        memcpy(place + ow, &bytes, 4);
    }
    return Wo;
}

/* The backward of four such windows at a time, dx fresh: rows r0, r1 of dx get dy[ow] at
 * the winner's cell and 0 at the other three (no branch on the place: a mispredicted one per
 * window cost more than the writes). Rows as maxpool22_row_avx2. */
LB_AVX2 static inline int64_t maxpool22_back_row_avx2(const float *dy, const uint8_t *place,
                                               int64_t Wo, float *r0, float *r1)
{
    const __m128i p0 = _mm_setr_epi32(0, 1, 0, 1), p1 = _mm_setr_epi32(2, 3, 2, 3);
    if (Wo < 4) return 0;
    for (int64_t ow = 0; ow < Wo; ow += 4) {
        if (ow + 4 > Wo) ow = Wo - 4; /* the last four windows again: the same writes */
        int32_t bytes;
        memcpy(&bytes, place + ow, 4);
        const __m128i a = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(bytes));
        const __m128 v = _mm_loadu_ps(dy + ow);
        const __m128 vl = _mm_unpacklo_ps(v, v), vh = _mm_unpackhi_ps(v, v);
        const __m128i al = _mm_unpacklo_epi32(a, a), ah = _mm_unpackhi_epi32(a, a);
        _mm_storeu_ps(r0 + 2 * ow, _mm_and_ps(vl, _mm_castsi128_ps(_mm_cmpeq_epi32(al, p0))));
        _mm_storeu_ps(r0 + 2 * ow + 4, _mm_and_ps(vh, _mm_castsi128_ps(_mm_cmpeq_epi32(ah, p0))));
        _mm_storeu_ps(r1 + 2 * ow, _mm_and_ps(vl, _mm_castsi128_ps(_mm_cmpeq_epi32(al, p1))));
        _mm_storeu_ps(r1 + 2 * ow + 4, _mm_and_ps(vh, _mm_castsi128_ps(_mm_cmpeq_epi32(ah, p1))));
    }
    return Wo;
}
#endif


/* The max of a window's four values v (in place order) and, in *place, its winner: the first
 * max wins, a NaN wins. Selects, not branches (the winner is random). */
static inline float lb_pool22_pick(const float v[4], uint8_t *place)
{
    float best = v[0];
    int best_r = 0;
    for (int t = 1; t < 4; t++) {
        const bool take = v[t] > best || v[t] != v[t];
        best = take ? v[t] : best;
        best_r = take ? t : best_r;
    }
    *place = (uint8_t)best_r;
    return best;
}

/* y[ow] (ow < Wo) = the max of input rows r0, r1 at columns 2ow, 2ow+1; place[ow] its winner. */
static inline void lb_pool22_row(const float *r0, const float *r1, int64_t Wo, float *y,
                                 uint8_t *place)
{
    int64_t ow = 0;
#if LB_HAVE_AVX2
    if (lb_cpu_avx2()) ow = maxpool22_row_avx2(r0, r1, Wo, y, place);
#endif
    for (; ow < Wo; ow++) {
        const float v[4] = { r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1] };
        y[ow] = lb_pool22_pick(v, place + ow);
    }
}

/* The backward of one plane, dx written (not added to): dx (H, W) gets dy[oh][ow] (Ho, Wo)
 * at each window's winner and 0 everywhere else, the odd last row or column that no window
 * covers included. */
static inline void lb_pool22_back_plane(const float *dy, const uint8_t *place, int64_t Ho,
                                        int64_t Wo, int64_t H, int64_t W, float *dx)
{
    for (int64_t oh = 0; oh < Ho; oh++) {
        float *r0 = dx + 2 * oh * W, *r1 = r0 + W;
        const float *dr = dy + oh * Wo;
        const uint8_t *ar = place + oh * Wo;
        int64_t ow = 0;
#if LB_HAVE_AVX2
        if (lb_cpu_avx2()) ow = maxpool22_back_row_avx2(dr, ar, Wo, r0, r1);
#endif
        for (; ow < Wo; ow++) {
            r0[2 * ow] = r0[2 * ow + 1] = r1[2 * ow] = r1[2 * ow + 1] = 0.0f;
            (ar[ow] < 2 ? r0 : r1)[2 * ow + (ar[ow] & 1)] = dr[ow];
        }
        if (W & 1) r0[W - 1] = r1[W - 1] = 0.0f;
    }
    if (H & 1) memset(dx + (H - 1) * W, 0, (size_t)W * sizeof(float));
}

#endif
