/* blas.c: lb_sgemm over OpenBLAS's cblas_sgemm, and the naive reference. */
#include "autograd/blas.h"

#include <cblas.h>
#include <dlfcn.h>

#include "autograd/parallel.h"

void lb_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc)
{
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K, alpha, A,
                (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void lb_sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += (double)a * b;
            }
            C[i * ldc + j] = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * C[i * ldc + j]));
        }
}

/* With one thread, OpenBLAS's own worker threads are also stopped. A pthreads OpenBLAS starts
 * them when it loads (one per core but one) and they spin on sched_yield for about 0.1 s of
 * CPU before they sleep: measured here, an idle process that had only loaded OpenBLAS used
 * 0.11 s of system time in its first second, 0.003 s with them stopped. That is a core taken
 * from lowbit's own threads at the start of every run (3% of a 3-second benchmark on two
 * threads). lowbit never uses them: it calls sgemm single-threaded from its own pool.
 * blas_thread_shutdown_ is OpenBLAS's own (its fork handler calls it; a later multi-threaded
 * call would start the threads again), looked up at run time because serial and OpenMP
 * builds need not have it. */
void lb_blas_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
    if (n > 1) return;
    void (*stop)(void);
    *(void **)&stop = dlsym(RTLD_DEFAULT, "blas_thread_shutdown_");
    if (stop) stop();
}
int lb_blas_get_threads(void) { return openblas_get_num_threads(); }
const char *lb_blas_config(void) { return openblas_get_config(); }

/* lb_sgemm_par: C split into row blocks (or column blocks when C is wide and short) over the
 * thread pool; each block is one single-threaded sgemm. */
typedef struct {
    bool         ta, tb, by_rows;
    int64_t      M, N, K, lda, ldb, ldc;
    float        alpha, beta;
    const float *A, *B;
    float       *C;
} gemm_job;

static void gemm_part(void *ctx, int64_t lo, int64_t hi, int tid)
{
    (void)tid;
    const gemm_job *j = ctx;
    if (j->by_rows) /* rows [lo, hi) of op(A) and C */
        lb_sgemm(j->ta, j->tb, hi - lo, j->N, j->K, j->alpha, j->A + (j->ta ? lo : lo * j->lda),
                 j->lda, j->B, j->ldb, j->beta, j->C + lo * j->ldc, j->ldc);
    else /* columns [lo, hi) of op(B) and C */
        lb_sgemm(j->ta, j->tb, j->M, hi - lo, j->K, j->alpha, j->A, j->lda,
                 j->B + (j->tb ? lo * j->ldb : lo), j->ldb, j->beta, j->C + lo, j->ldc);
}

void lb_sgemm_par(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc)
{
    if (M == 0 || N == 0) return;
    /* blocks of at least 32 rows (or columns) and about 2 MFLOP each */
    const int64_t flops_per_line = 2 * K * (M >= N ? N : M) + 1;
    int64_t min_lines = (int64_t)(2e6 / (double)flops_per_line);
    if (min_lines < 32) min_lines = 32;
    gemm_job j = { trans_a, trans_b, M >= N, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C };
    lb_parallel_for(j.by_rows ? M : N, min_lines, gemm_part, &j);
}
