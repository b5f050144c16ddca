/* blas.h: the one door to BLAS. Only blas.c includes cblas.h.
 *
 * lb_sgemm computes C = alpha * op(A) * op(B) + beta * C on row-major matrices, where op(X)
 * is X or its transpose; op(A) is (M, K), op(B) is (K, N), C is (M, N). lb_sgemm_ref is the
 * naive triple loop that tests cross-check against.
 *
 *     lb_sgemm(false, true, B, N, K, 1.0f, x, K, w, K, 0.0f, y, N);   // y = x · wᵀ
 */
#ifndef LB_BLAS_H
#define LB_BLAS_H

#include <stdbool.h>
#include <stdint.h>

void lb_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);
/* lb_sgemm split over lowbit's thread pool (parallel.h) by blocks of rows of C (or of columns
 * when C is wider than tall); for products large enough to share. Not from inside a parallel
 * region. */
void lb_sgemm_par(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc);
void lb_sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc);
/* Threads used by BLAS (n >= 1). */
void lb_blas_set_threads(int n);
int lb_blas_get_threads(void);
/* OpenBLAS's build description (core, threading), for logs and benchmark tables. */
const char *lb_blas_config(void);

#endif
