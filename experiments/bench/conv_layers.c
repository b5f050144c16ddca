/* conv_layers.c: lowbit's convolution alone, layer by layer (issue 6's engine benchmark).
 *
 * For the distinct conv shapes of ResNet-20 and vgg-small on CIFAR-10 and of LeNet-5 on
 * MNIST, at batch B: times the forward (lb_conv2d) and the backward (dW and dx, through
 * lb_backward of sum(y)), best of REPS after one warm-up, and prints GFLOP/s (2 multiply-adds
 * per MAC of the layer; the backward does two layers' worth). Layers with a stride of 2 take
 * the phase or im2col paths; the others the direct kernels of autograd/ops_conv.c.
 * One thread is timed in process CPU time, more in wall-clock time.
 * Usage: bench_conv [B [THREADS [REPS [NAME_PART]]]] (NAME_PART: only the layers whose name
 * contains it, e.g. "s1"); built with lowbit (build/bench_conv). It may exit():
 * it is an experiment program.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/graph.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"
#include "autograd/rng.h"

typedef struct {
    const char *name;
    int C, H, O, k, stride, pad;
} layer;

static const layer layers[] = {
    { "resnet20 conv0   3->16 32x32", 3, 32, 16, 3, 1, 1 },
    { "resnet20 s1     16->16 32x32", 16, 32, 16, 3, 1, 1 },
    { "resnet20 s2 in  16->32 /2   ", 16, 32, 32, 3, 2, 1 },
    { "resnet20 down 16->32 1x1/2  ", 16, 32, 32, 1, 2, 0 },
    { "resnet20 s2     32->32 16x16", 32, 16, 32, 3, 1, 1 },
    { "resnet20 s3     64->64 8x8  ", 64, 8, 64, 3, 1, 1 },
    { "vgg-small      64->64 32x32", 64, 32, 64, 3, 1, 1 },
    { "vgg-small   128->128 16x16  ", 128, 16, 128, 3, 1, 1 },
    { "vgg-small   256->256 8x8    ", 256, 8, 256, 3, 1, 1 },
    { "lenet5 conv1     1->6 28x28 ", 1, 28, 6, 5, 1, 2 },
    { "lenet5 conv2    6->16 14x14 ", 6, 14, 16, 5, 1, 0 },
};

/* With one thread, process CPU time: on a shared machine it leaves out the time other jobs
 * had the core (cache interference stays). With more, wall-clock time. */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const int B = argc > 1 ? atoi(argv[1]) : 128;
    const int threads = argc > 2 ? atoi(argv[2]) : 1;
    const int reps = argc > 3 ? atoi(argv[3]) : 5;
    const char *only = argc > 4 ? argv[4] : NULL; /* layers whose name contains it */
    if (B < 1 || B > 4096 || threads < 1 || threads > 256 || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: bench_conv [B (1..4096) [THREADS [REPS [NAME_PART]]]]\n");
        return 2;
    }
    lb_error err = { 0 };
    if (lb_parallel_set_threads(threads, &err)) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        return 1;
    }
    if (threads == 1) clock_id = CLOCK_PROCESS_CPUTIME_ID;
    lb_graph *g = lb_graph_new(0);
    lb_rng rng = lb_rng_make(1);
    printf("batch %d, %d thread(s), best of %d, %s time\n", B, threads, reps,
           threads == 1 ? "CPU" : "wall-clock");
    printf("%-30s %10s %10s %10s %10s\n", "layer", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s");
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        const layer *L = &layers[l];
        if (only && !strstr(L->name, only)) continue;
        const int Ho = (L->H + 2 * L->pad - L->k) / L->stride + 1;
        const double macs = (double)B * L->O * Ho * Ho * L->C * L->k * L->k;
        double best_f = 1e30, best_b = 1e30;
        for (int r = 0; r <= reps; r++) {
            lb_graph_reset(g);
            lb_tensor *x = lb_leaf(g, (int64_t[]){ B, L->C, L->H, L->H }, 4, L->C > 3);
            lb_tensor *w = lb_leaf(g, (int64_t[]){ L->O, L->C, L->k, L->k }, 4, true);
            if (!x || !w) break;
            for (int64_t i = 0; i < lb_numel(x); i++) x->data[i] = lb_rng_normal(&rng);
            for (int64_t i = 0; i < lb_numel(w); i++) w->data[i] = 0.1f * lb_rng_normal(&rng);
            const double t0 = now();
            lb_tensor *y = lb_conv2d(g, x, w, NULL, L->stride, L->pad);
            const double t1 = now();
            lb_tensor *loss = lb_sum(g, y);
            if (lb_graph_status(g, &err)) break;
            const double t2 = now();
            if (lb_backward(g, loss, &err)) break;
            const double t3 = now();
            if (r > 0) {
                if (t1 - t0 < best_f) best_f = t1 - t0;
                if (t3 - t2 < best_b) best_b = t3 - t2;
            }
        }
        if (err.status) {
            fprintf(stderr, "bench_conv: %s: %s\n", L->name, err.msg);
            return 1;
        }
        const double bw = L->C > 3 ? 2.0 : 1.0; /* no dx for the image input */
        printf("%-30s %10.2f %10.1f %10.2f %10.1f\n", L->name, best_f * 1e3,
               2 * macs / best_f / 1e9, best_b * 1e3, bw * 2 * macs / best_b / 1e9);
    }
    lb_graph_free(g);
    lb_parallel_shutdown();
    return 0;
}
