/* sgemm_peak.c: the machine's single-precision GEMM rate through OpenBLAS, the yardstick of
 * experiments/bench/models.sh (lowbit's training GFLOP/s as a share of it).
 *
 * Times C = A * B for N x N row-major matrices (default N = 2048) with cblas_sgemm, REPS
 * times after one untimed call, and prints one JSON line with the best rate:
 * GFLOP/s = 2 N^3 / seconds / 1e9. The thread count is OpenBLAS's: set OPENBLAS_NUM_THREADS.
 * Usage: sgemm_peak [N [REPS]]. Built by models.sh (cc -O2 sgemm_peak.c $(pkg-config --cflags
 * --libs openblas)); not part of the lowbit build. It may exit(): it is an experiment program.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2048;
    const int reps = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 5;
    if (n < 1 || n > 16384 || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: sgemm_peak [N (1..16384) [REPS (1..1000)]]\n");
        return 2;
    }
    float *a = malloc((size_t)(n * n) * sizeof *a), *b = malloc((size_t)(n * n) * sizeof *b);
    float *c = malloc((size_t)(n * n) * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_peak: out of memory for N = %ld\n", n);
        return 1;
    }
    unsigned s = 12345u; /* fixed LCG values in [-1, 1): no denormals, no NaN */
    for (long i = 0; i < n * n; i++) {
        s = s * 1664525u + 1013904223u;
        a[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
        s = s * 1664525u + 1013904223u;
        b[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
    }
    double best = 1e30, sum = 0.0;
    for (int r = 0; r <= reps; r++) {
        const double t0 = now();
        /* C = A * B */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a,
                    (int)n, b, (int)n, 0.0f, c, (int)n);
        const double t = now() - t0;
        if (r == 0) continue; /* warm-up: thread start, page faults */
        sum += t;
        if (t < best) best = t;
    }
    const double flop = 2.0 * (double)n * (double)n * (double)n;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    printf("{\"n\":%ld,\"reps\":%d,\"openblas_num_threads\":\"%s\",\"openblas_config\":\"%s\","
           "\"best_s\":%.4f,\"gflops\":%.1f,\"mean_gflops\":%.1f,\"check\":%g}\n",
           n, reps, env ? env : "", openblas_get_config(), best, flop / best * 1e-9,
           flop / (sum / reps) * 1e-9, (double)c[n * n / 2]);
    free(a);
    free(b);
    free(c);
    return 0;
}
