/* step.c: the training step of one zoo model alone, in CPU time (issue 6's profiling tool).
 *
 * Builds MODEL (mlp and lenet5 on 1x28x28, vgg-small and resnet20 on 3x32x32, 10 classes),
 * optionally under a --quant SPEC, and runs WARMUP + STEPS training steps (forward, softmax
 * cross-entropy, backward, SGD with momentum) on one fixed batch of random normal images and
 * labels, so nothing but the step is timed: no data loading, no evaluation. With one thread it
 * reports process CPU time per step, which on a shared machine leaves out the time other jobs
 * had the core; with more, wall-clock time. Made for A/B comparisons of engine changes and for
 * `perf record`:
 *
 *     build/bench_step resnet20 w4a4,first=8,last=8 128 20
 *     perf record -g build/bench_step resnet20 fp32 128 30
 *
 * Usage: bench_step MODEL [QUANT|fp32 [BATCH [STEPS [THREADS]]]]. It may exit(): it is an
 * experiment program, not part of the library.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/graph.h"
#include "autograd/ops.h"
#include "autograd/parallel.h"
#include "autograd/rng.h"
#include "layers/model.h"
#include "quant/qconfig.h"
#include "train/loop.h"
#include "train/optim.h"

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void die(const char *what, const lb_error *err)
{
    fprintf(stderr, "bench_step: %s: %s\n", what, err->msg);
    exit(1);
}

/* MB of the graph's two arenas: in use now, or their high-water marks */
static double arena_mb(const lb_graph *g, bool high)
{
    const lb_arena *a = lb_graph_arena(g), *d = lb_graph_data_arena(g);
    return (double)(high ? a->high_water + d->high_water : a->used + d->used) / 1048576.0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_step MODEL [QUANT|fp32 [BATCH [STEPS [THREADS]]]]\n");
        return 2;
    }
    const char *name = argv[1], *quant = argc > 2 ? argv[2] : "fp32";
    const int B = argc > 3 ? atoi(argv[3]) : 128, steps = argc > 4 ? atoi(argv[4]) : 20;
    const int threads = argc > 5 ? atoi(argv[5]) : 1, warmup = 3;
    if (B < 1 || B > 4096 || steps < 1 || steps > 100000 || threads < 1 || threads > 256) {
        fprintf(stderr, "bench_step: BATCH 1..4096, STEPS 1..100000, THREADS 1..256\n");
        return 2;
    }
    lb_error err = { 0 };
    if (lb_parallel_set_threads(threads, &err)) die("threads", &err);
    const bool digits = !strcmp(name, "mlp") || !strcmp(name, "lenet5");
    const int c = digits ? 1 : 3, hw = digits ? 28 : 32;
    lb_qconfig *qc = calloc(1, sizeof *qc);
    if (!qc) return 1;
    if (strcmp(quant, "fp32") && lb_qconfig_parse_spec(quant, qc, &err)) die(quant, &err);
    lb_model *m = NULL;
    if (lb_model_build_zoo(name, c, hw, hw, 10, strcmp(quant, "fp32") ? qc : NULL, &m, &err))
        die(name, &err);
    lb_model_init_weights(m, 1);
    lb_optim opt;
    lb_optim_cfg oc = { .kind = LB_OPTIM_SGD, .momentum = 0.9f, .weight_decay = 5e-4f };
    if (lb_optim_init(&opt, oc, m->params, &err)) die("optimizer", &err);

    const int64_t n_in = (int64_t)B * c * hw * hw;
    float *images = malloc((size_t)n_in * sizeof(float));
    int32_t *labels = malloc((size_t)B * sizeof(int32_t));
    if (!images || !labels) return 1;
    lb_rng rng = lb_rng_make(7);
    for (int64_t i = 0; i < n_in; i++) images[i] = lb_rng_normal(&rng);
    for (int i = 0; i < B; i++) labels[i] = (int32_t)(lb_rng_uniform(&rng) * 10.0f) % 10;

    lb_graph *g = lb_graph_new(0);
    if (!g) return 1;
    lb_graph_set_training(g, true);
    lb_graph_set_release_activations(g, true); /* as the training loop */
    const clockid_t id = threads == 1 ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC;
    double t0 = 0.0, loss = 0.0, fwd_mb = 0.0;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) t0 = clock_s(id);
        lb_graph_reset(g);
        lb_tensor *x = lb_leaf(g, (int64_t[]){ B, c, hw, hw }, 4, false);
        if (!x) die("graph", &err);
        memcpy(x->data, images, (size_t)n_in * sizeof(float));
        lb_tensor *out = lb_softmax_ce(g, lb_model_forward(m, g, x, &rng), labels);
        if (!out) {
            lb_graph_status(g, &err);
            die("forward", &err);
        }
        loss = out->data[0];
        if (s == 0) fwd_mb = arena_mb(g, false);
        lb_params_zero_grad(m->params);
        if (lb_backward(g, out, &err)) die("backward", &err);
        lb_optim_step(&opt, m->params, 0.01f);
    }
    const double per = (clock_s(id) - t0) / steps;
    printf("%s %s batch %d, %d thread%s: %.2f ms per step (%s), %.0f images/s, last loss %.7g\n",
           name, quant, B, threads, threads == 1 ? "" : "s", 1e3 * per,
           threads == 1 ? "process CPU time" : "wall clock", B / per, loss);
    const lb_arena *a = lb_graph_arena(g), *d = lb_graph_data_arena(g);
    printf("  step arena: %.1f MB after the forward pass, high-water %.1f MB, held %.1f MB in "
           "%llu blocks; peak RSS %.1f MB\n",
           fwd_mb, arena_mb(g, true), (double)(a->total + d->total) / 1048576.0,
           (unsigned long long)(a->n_mallocs + d->n_mallocs), lb_peak_rss_mb());
    lb_graph_free(g);
    lb_model_free(m);
    free(qc);
    free(images);
    free(labels);
    return 0;
}
