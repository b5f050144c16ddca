/* cmd_mixed.c: `lowbit sensitivity` (per-layer sensitivity: CSV, Markdown table, PNG chart)
 * and `lowbit mixed` (bit assignment under a weight-memory budget, written as a per-layer
 * configuration file). The measurements and the solver are in train/sensitivity.c. */
#include "cli/cmd_mixed.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "autograd/parallel.h"
#include "cli/opts.h"
#include "cli/plot.h"
#include "datasets/dataset.h"
#include "train/checkpoint.h"
#include "train/loop.h"
#include "train/sensitivity.h"

lb_status lb_budget_parse(const char *s, lb_budget *out, lb_error *err)
{
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || !(v > 0.0))
        return lb_errorf(err, LB_ERR_ARG, "budget '%s': expected KiB of weights (e.g. 24KB, "
                         "24KiB, 24k) or average bits per weight (e.g. 3.0 or 3bits)", s);
    if (!strcasecmp(end, "kb") || !strcasecmp(end, "kib") || !strcasecmp(end, "k")) {
        *out = (lb_budget){ .kib = true, .value = v };
        return LB_OK;
    }
    if (*end && strcasecmp(end, "bits") && strcasecmp(end, "b"))
        return lb_errorf(err, LB_ERR_ARG, "budget '%s': unknown unit '%s' (KB, KiB, k or bits)",
                         s, end);
    if (v < 1.0 || v > 8.0)
        return lb_errorf(err, LB_ERR_ARG, "budget '%s': an average of %g bits per weight is "
                         "outside 1..8 (for KiB write e.g. %gKB)", s, v, v);
    *out = (lb_budget){ .kib = false, .value = v };
    return LB_OK;
}

/* ---- shared: checkpoint -> float model, training split -> calibration split ------------ */

typedef struct {
    lb_model  *m;
    lb_dataset train, calib;
} sens_input;

static void sens_input_free(sens_input *in)
{
    lb_model_free(in->m);
    lb_dataset_free(&in->calib);
    lb_dataset_free(&in->train);
    memset(in, 0, sizeof *in);
}

/* The float model of ckpt (its quantization, if any, dropped) and calib_n training images of
 * its dataset (or of data) as the calibration split (lb_calib_split: the last calib_n, or
 * spread over a set stored class by class). Never the test split. */
static lb_status sens_load(const char *ckpt, const char *data, const char *data_dir,
                           bool in_memory, long calib_n, sens_input *in, lb_error *err)
{
    memset(in, 0, sizeof *in);
    lb_model *src = NULL;
    lb_ckpt_meta meta;
    lb_status st = lb_checkpoint_load(ckpt, &src, &meta, err);
    if (st) return st;
    char origin[4200];
    snprintf(origin, sizeof origin, "%s (model description)", ckpt);
    if ((st = lb_model_build(src->spec, origin, NULL, &in->m, err))) goto done;
    lb_model_copy_params(in->m, src);
    snprintf(in->m->name, sizeof in->m->name, "%s", src->name);
    if (src->bn_folded) lb_model_fold_bn(in->m); /* refused by lb_sensitivity_run */
    if (!data) data = meta.dataset[0] ? meta.dataset : "mnist";
    lb_dataset_opts opts = lb_dataset_opts_default();
    opts.log = stderr;
    opts.stream = !in_memory; /* the split is copied into memory either way */
    if ((st = lb_dataset_load_ex(data, data_dir, LB_SPLIT_TRAIN, &opts, &in->train, err))) goto done;
    st = lb_calib_split(&in->train, calib_n, &in->calib, err);
done:
    lb_model_free(src);
    if (st) sens_input_free(in);
    return st;
}

/* How lb_calib_split picked the calibration images, for messages. */
static const char *calib_which(const lb_dataset *train)
{
    return lb_calib_spread(train) ? "spread evenly over the set, stored class by class" : "the last ones";
}

/* Options both commands share: the calibration split and the Hutchinson estimator. */
#define SENS_OPTS                                                                            \
    { "data", false, NULL }, { "data-dir", false, NULL }, { "calib", false, NULL },          \
    { "samples", false, NULL }, { "eps", false, NULL }, { "batch", false, NULL },            \
    { "seed", false, NULL }, { "threads", false, NULL }, { "hessian", false, NULL },         \
    { "data-in-memory", true, NULL }

#define SENS_HELP                                                                            \
    "  --data NAME       dataset (default: the checkpoint's); only its training split is read\n" \
    "  --data-dir DIR    look for the dataset only in DIR\n"                                  \
    "  --data-in-memory  read the pixels into memory instead of from their file\n"          \
    "  --calib N         calibration split: the last N training images, or N spread\n"      \
    "                    evenly over a set stored class by class (image folders);\n"       \
    "                    never the test set                                       [1000]\n"   \
    "  --samples N       Hutchinson samples (Rademacher vectors) for the Hessian traces [32]\n" \
    "  --eps F           finite-difference step, relative to each layer's rms weight [0.01]\n" \
    "  --hessian M       gn: Hessian-vector products from finite differences of the logits\n" \
    "                    and the exact cross-entropy curvature (Gauss-Newton, never negative);\n" \
    "                    fd: finite differences of gradients (noisy across ReLU kinks) [gn]\n" \
    "  --batch N         evaluation and gradient batch                             [500]\n"   \
    "  --seed N          seed of the Rademacher vectors                            [42]\n"    \
    "  --threads N       threads                                                   [1]\n"

/* Fills cfg and calib_n from the shared options; 0 or a usage error (2). */
static int sens_options(const char *cmd, const lb_cli_opt *o, int n, lb_sens_cfg *cfg, long *calib_n)
{
    const char *s;
    long v;
    double d;
    *calib_n = 1000;
    if ((s = lb_cli_get(o, n, "calib")) && !lb_cli_long(s, 1, 1L << 30, calib_n))
        return lb_cli_usage(cmd, "--calib %s: expected a number of images >= 1", s);
    if ((s = lb_cli_get(o, n, "samples"))) {
        if (!lb_cli_long(s, 0, 100000, &v)) return lb_cli_usage(cmd, "--samples %s: expected 0..100000", s);
        cfg->hutch_samples = (int)v;
    }
    if ((s = lb_cli_get(o, n, "eps"))) {
        if (!lb_cli_double(s, 1e-6, 1.0, &d)) return lb_cli_usage(cmd, "--eps %s: expected 1e-6..1", s);
        cfg->hutch_eps = (float)d;
    }
    if ((s = lb_cli_get(o, n, "batch"))) {
        if (!lb_cli_long(s, 1, 1 << 20, &v)) return lb_cli_usage(cmd, "--batch %s: expected 1..1048576", s);
        cfg->batch = v;
    }
    if ((s = lb_cli_get(o, n, "seed"))) {
        if (!lb_cli_long(s, 0, 2147483647L, &v)) return lb_cli_usage(cmd, "--seed %s: expected 0..2^31-1", s);
        cfg->seed = (uint64_t)v;
    }
    lb_error e = { 0 };
    if ((s = lb_cli_get(o, n, "hessian")) && lb_hess_method_parse(s, &cfg->hess, &e))
        return lb_cli_usage(cmd, "--hessian: %s", e.msg);
    long threads = 1;
    if ((s = lb_cli_get(o, n, "threads")) && !lb_cli_long(s, 1, 256, &threads))
        return lb_cli_usage(cmd, "--threads %s: expected 1..256", s);
    if (lb_parallel_set_threads((int)threads, &e) != LB_OK)
        fprintf(stderr, "lowbit: warning: %s\n", e.msg);
    return 0;
}

/* ---- outputs of `sensitivity` ---------------------------------------------------------- */

static double hawq_of(const lb_sens_layer *l, int k)
{
    return (l->trace > 0.0 ? l->trace : 0.0) / (double)l->n_weights * l->qerr[k];
}

static lb_status write_csv(const char *path, const lb_sens_result *r, lb_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(f, "layer,weights,channels,bits,dloss,dacc,qerr,trace,trace_se,hawq,cost_bits\n");
    for (int l = 0; l < r->n_layers; l++) {
        const lb_sens_layer *x = &r->layers[l];
        for (int k = 0; k < r->n_bits; k++)
            fprintf(f, "%s,%lld,%lld,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%lld\n", x->name,
                    (long long)x->n_weights, (long long)x->rows, r->bits[k], x->dloss[k],
                    x->dacc[k], x->qerr[k], x->trace, x->trace_se, hawq_of(x, k),
                    (long long)lb_sens_layer_cost(x, r->bits[k]));
    }
    const bool bad = ferror(f) != 0;
    if (fclose(f) || bad) return lb_errorf(err, LB_ERR_IO, "%s: write failed", path);
    return LB_OK;
}

static lb_status write_md(const char *path, const char *ckpt, const lb_sens_result *r,
                          const lb_sens_cfg *cfg, const char *which, lb_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(f, "# Per-layer sensitivity of %s\n\n", ckpt);
    fprintf(f, "Calibration split: %lld training images (%s); float model: loss %.4f, "
               "accuracy %.2f%%. Only the named layer's weights are quantized (per-channel "
               "MSE-optimal grid; 1 bit = binary), activations stay float. dL = loss change, "
               "dacc = accuracy change (points); tr(H) = Hutchinson estimate (%d samples, "
               "+- standard error); Omega = max(tr H, 0) / n * ||Q(w) - w||^2 (HAWQ-V2).\n\n",
            (long long)r->calib_n, which, r->base_loss, 100.0 * r->base_acc, cfg->hutch_samples);
    fprintf(f, "| layer | weights | tr(H) |");
    for (int k = 0; k < r->n_bits; k++) fprintf(f, " dL w%d | dacc w%d |", r->bits[k], r->bits[k]);
    for (int k = 0; k < r->n_bits; k++) fprintf(f, " Omega w%d |", r->bits[k]);
    fprintf(f, "\n|---|---:|---:|");
    for (int k = 0; k < 3 * r->n_bits; k++) fprintf(f, "---:|");
    fprintf(f, "\n");
    for (int l = 0; l < r->n_layers; l++) {
        const lb_sens_layer *x = &r->layers[l];
        fprintf(f, "| %s | %lld | %.4g +- %.2g |", x->name, (long long)x->n_weights, x->trace,
                x->trace_se);
        for (int k = 0; k < r->n_bits; k++)
            fprintf(f, " %+.4f | %+.2f |", x->dloss[k], 100.0 * x->dacc[k]);
        for (int k = 0; k < r->n_bits; k++) fprintf(f, " %.3g |", hawq_of(x, k));
        fprintf(f, "\n");
    }
    const bool bad = ferror(f) != 0;
    if (fclose(f) || bad) return lb_errorf(err, LB_ERR_IO, "%s: write failed", path);
    return LB_OK;
}

/* Two panels: the measured loss increase and the HAWQ objective, per layer, one line per
 * bit-width, log scale (values below 1e-6, including negative noise, drawn at 1e-6). */
static lb_status write_png(const char *path, const lb_sens_result *r, lb_error *err)
{
    lb_plot p;
    lb_status st = lb_plot_open(&p, path, NULL, NULL, NULL, err); /* x: the layer names */
    if (st) return st;
    lb_plot_data_begin(&p, "sens");
    for (int l = 0; l < r->n_layers; l++) {
        fprintf(p.f, "%d \"%s\"", l, r->layers[l].name);
        for (int k = 0; k < r->n_bits; k++) fprintf(p.f, " %.6g", fmax(r->layers[l].dloss[k], 1e-6));
        for (int k = 0; k < r->n_bits; k++) fprintf(p.f, " %.6g", fmax(hawq_of(&r->layers[l], k), 1e-9));
        fprintf(p.f, "\n");
    }
    lb_plot_data_end(&p);
    fprintf(p.f, "set logscale y\nset format y '%%.0e'\nset xtics rotate by -30\n"
                 "set key below horizontal\n"
                 "set xrange [-0.5:%d.5]\n"
                 "set multiplot layout 1,2 title 'Per-layer sensitivity (only that layer quantized)'\n"
                 "set title 'measured loss increase on the calibration split'\n"
                 "set ylabel 'loss increase (log; <= 0 drawn at 1e-6)'\nplot ",
            r->n_layers - 1);
    for (int k = 0; k < r->n_bits; k++)
        fprintf(p.f, "%s$sens using 1:%d:xtic(2) title 'w%d'", k ? ", " : "", 3 + k, r->bits[k]);
    fprintf(p.f, "\nset title 'HAWQ-V2: tr(H)/n x ||Q(w)-w||^2'\nset ylabel 'Omega (log)'\nplot ");
    for (int k = 0; k < r->n_bits; k++)
        fprintf(p.f, "%s$sens using 1:%d:xtic(2) title 'w%d'", k ? ", " : "",
                3 + r->n_bits + k, r->bits[k]);
    fprintf(p.f, "\nunset multiplot\n");
    return lb_plot_render(&p, err);
}

static const char sensitivity_help[] =
    "usage: lowbit sensitivity CKPT [options]\n"
    "Measures, for each conv/linear layer of a (float) checkpoint and each bit-width, how much\n"
    "the loss and the accuracy on a held-out calibration split change when only that layer's\n"
    "weights are quantized (per-channel MSE-optimal grid; 1 bit = binary; activations float),\n"
    "and estimates each layer's Hessian trace (Hutchinson, finite differences of gradients, as\n"
    "in HAWQ-V2). Writes OUT.csv, OUT.md (a Markdown table) and OUT.png (+ OUT.gp).\n"
    "\n"
    "  --bits LIST       bit-widths to try, 1..8                                 [2,4,8]\n"
    "  --out PREFIX      output files PREFIX.csv/.md/.png          [CKPT dir/sensitivity]\n"
    "  --no-hessian      skip the Hessian traces (same as --samples 0)\n"
    SENS_HELP;

int lb_cmd_sensitivity(int argc, char **argv)
{
    lb_cli_opt o[] = { SENS_OPTS, { "bits", false, NULL }, { "out", false, NULL },
                 { "no-hessian", true, NULL } };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1] = { NULL };
    int n_pos, rc = lb_cli_parse("sensitivity", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(sensitivity_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return lb_cli_usage("sensitivity", "%s", "needs a checkpoint path");
    lb_error err = { 0 };
    lb_sens_cfg cfg = lb_sens_cfg_default();
    cfg.log = stdout;
    const char *s;
    if ((s = lb_cli_get(o, n, "bits")) && lb_sens_parse_bits(s, &cfg, &err))
        return lb_cli_usage("sensitivity", "--bits: %s", err.msg);
    long calib_n;
    if ((rc = sens_options("sensitivity", o, n, &cfg, &calib_n))) return rc;
    if (lb_cli_get(o, n, "no-hessian")) cfg.hutch_samples = 0;
    char prefix[4000];
    if ((s = lb_cli_get(o, n, "out"))) {
        snprintf(prefix, sizeof prefix, "%s", s);
    } else {
        snprintf(prefix, sizeof prefix, "%s", pos[0]);
        char *slash = strrchr(prefix, '/');
        snprintf(slash ? slash + 1 : prefix, sizeof prefix - (size_t)(slash ? slash + 1 - prefix : 0),
                 "sensitivity");
    }
    sens_input in;
    lb_sens_result r = { 0 };
    int code = 1;
    if (sens_load(pos[0], lb_cli_get(o, n, "data"), lb_cli_get(o, n, "data-dir"),
                  lb_cli_get(o, n, "data-in-memory") != NULL, calib_n, &in, &err)) {
        fprintf(stderr, "lowbit sensitivity: %s\n", err.msg);
        return 1;
    }
    const char *which = calib_which(&in.train);
    printf("lowbit sensitivity: %s (%s), calibration: %ld of %lld %s training images (%s)\n",
           pos[0], in.m->name, calib_n, (long long)in.train.n, in.train.name, which);
    if (lb_sensitivity_run(in.m, &in.calib, &cfg, &r, &err)) goto fail;
    char path[4096 + 8];
    snprintf(path, sizeof path, "%s.csv", prefix);
    if (write_csv(path, &r, &err)) goto fail;
    snprintf(path, sizeof path, "%s.md", prefix);
    if (write_md(path, pos[0], &r, &cfg, which, &err)) goto fail;
    snprintf(path, sizeof path, "%s.png", prefix);
    if (write_png(path, &r, &err)) goto fail;
    printf("wrote %s.csv, %s.md, %s.png (%.1f s)\n", prefix, prefix, prefix, r.seconds);
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit sensitivity: %s\n", err.msg);
done:
    lb_sens_result_free(&r);
    sens_input_free(&in);
    return code;
}

/* ---- mixed ------------------------------------------------------------------------------ */

static const char mixed_help[] =
    "usage: lowbit mixed CKPT --budget SIZE [options]\n"
    "Chooses each conv/linear layer's weight bits from a set so that the summed sensitivity\n"
    "is least under a weight-memory budget (exact: knapsack dynamic programming), and writes\n"
    "the assignment as a per-layer configuration file for lowbit train --quant and lowbit ptq.\n"
    "Sensitivities are measured as by lowbit sensitivity. Every layer is in the search, the\n"
    "first and last included; activations are held at --abits.\n"
    "\n"
    "  --budget SIZE     KiB of weight memory as lowbit inspect counts it (weights at their\n"
    "                    bits, one float scale per channel, float biases and batch-norm),\n"
    "                    e.g. 24KB; or average bits per weight, e.g. 3.0 (= the size of\n"
    "                    uniform 3-bit weights)                                 (required)\n"
    "  --choices LIST    bit-widths to choose from, 1..8 (1 = binary)          [2,3,4,6,8]\n"
    "  --objective O     hawq: max(tr H, 0)/n x ||Q(w)-w||^2 (HAWQ-V2), or loss: the\n"
    "                    measured loss increase with only that layer quantized  [hawq]\n"
    "  --abits N         activation bits of every layer, 0 (float) or 2..8        [8]\n"
    "  --out FILE        the configuration file                     [CKPT dir/mixed.q]\n"
    "  --json            end stdout with one JSON summary line\n"
    SENS_HELP;

int lb_cmd_mixed(int argc, char **argv)
{
    lb_cli_opt o[] = { SENS_OPTS, { "budget", false, NULL }, { "choices", false, NULL },
                 { "objective", false, NULL }, { "abits", false, NULL }, { "out", false, NULL },
                 { "json", true, NULL } };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1] = { NULL };
    int n_pos, rc = lb_cli_parse("mixed", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(mixed_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return lb_cli_usage("mixed", "%s", "needs a checkpoint path");
    lb_error err = { 0 };
    const char *s;
    lb_budget budget;
    if (!(s = lb_cli_get(o, n, "budget"))) return lb_cli_usage("mixed", "%s", "needs --budget SIZE (e.g. 24KB or 3.0)");
    if (lb_budget_parse(s, &budget, &err)) return lb_cli_usage("mixed", "--budget: %s", err.msg);
    lb_sens_cfg cfg = lb_sens_cfg_default();
    if (lb_sens_parse_bits(lb_cli_get(o, n, "choices") ? lb_cli_get(o, n, "choices") : "2,3,4,6,8", &cfg, &err))
        return lb_cli_usage("mixed", "--choices: %s", err.msg);
    lb_mixed_objective obj = LB_MIXED_OBJ_HAWQ;
    if ((s = lb_cli_get(o, n, "objective")) && lb_mixed_objective_parse(s, &obj, &err))
        return lb_cli_usage("mixed", "--objective: %s", err.msg);
    long abits = 8;
    if ((s = lb_cli_get(o, n, "abits")) && (!lb_cli_long(s, 0, 8, &abits) || abits == 1))
        return lb_cli_usage("mixed", "--abits %s: expected 0 (float) or 2..8", s);
    long calib_n;
    if ((rc = sens_options("mixed", o, n, &cfg, &calib_n))) return rc;
    if (obj == LB_MIXED_OBJ_HAWQ && cfg.hutch_samples == 0)
        return lb_cli_usage("mixed", "%s", "--objective hawq needs Hessian traces (--samples >= 1)");
    cfg.measure_loss = obj == LB_MIXED_OBJ_LOSS;
    if (obj == LB_MIXED_OBJ_LOSS && !lb_cli_get(o, n, "samples")) cfg.hutch_samples = 0; /* unused */
    char out[4096];
    if ((s = lb_cli_get(o, n, "out"))) {
        snprintf(out, sizeof out, "%s", s);
    } else {
        snprintf(out, sizeof out, "%s", pos[0]);
        char *slash = strrchr(out, '/');
        snprintf(slash ? slash + 1 : out, sizeof out - (size_t)(slash ? slash + 1 - out : 0), "mixed.q");
    }
    sens_input in;
    lb_sens_result r = { 0 };
    lb_qconfig *qc = malloc(sizeof *qc);
    int *bits = NULL, code = 1;
    if (!qc) {
        fprintf(stderr, "lowbit mixed: out of memory\n");
        return 1;
    }
    if (sens_load(pos[0], lb_cli_get(o, n, "data"), lb_cli_get(o, n, "data-dir"),
                  lb_cli_get(o, n, "data-in-memory") != NULL, calib_n, &in, &err)) {
        fprintf(stderr, "lowbit mixed: %s\n", err.msg);
        free(qc);
        return 1;
    }
    if (lb_sensitivity_run(in.m, &in.calib, &cfg, &r, &err)) goto fail;
    if (!(bits = malloc((size_t)r.n_layers * sizeof *bits))) {
        lb_errorf(&err, LB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int64_t budget_bits;
    if (budget.kib) {
        budget_bits = (int64_t)floor(budget.value * 1024.0) * 8;
    } else { /* the size of every weight at budget.value bits, scales and fixed part included */
        double b = (double)r.fixed_bits;
        for (int l = 0; l < r.n_layers; l++)
            b += budget.value * (double)r.layers[l].n_weights + 32.0 * (double)r.layers[l].rows;
        budget_bits = ((int64_t)floor(b + 1e-6) + 7) / 8 * 8; /* whole bytes, as inspect rounds */
    }
    lb_mixed_plan plan;
    if (lb_mixed_assign(&r, obj, budget_bits, cfg.bits, cfg.n_bits, bits, &plan, &err)) goto fail;
    lb_mixed_qconfig(&r, bits, (int)abits, qc);
    {   /* the file: how it was made, then the configuration */
        static char text[64 * 1024];
        if (lb_qconfig_to_text(qc, text, sizeof text) < 0) {
            lb_errorf(&err, LB_ERR_ARG, "%s: configuration too long", out);
            goto fail;
        }
        FILE *f = fopen(out, "w");
        if (!f) {
            lb_errorf(&err, LB_ERR_IO, "%s: %s", out, strerror(errno));
            goto fail;
        }
        fprintf(f, "# lowbit mixed %s --budget %s, objective %s, choices", pos[0],
                lb_cli_get(o, n, "budget"), lb_mixed_objective_name(obj));
        for (int k = 0; k < cfg.n_bits; k++) fprintf(f, "%s%d", k ? "," : " ", cfg.bits[k]);
        fprintf(f, "\n# weights %.2f KiB (budget %.2f KiB), %.3f bits per weight on average\n",
                (double)plan.weight_bits / 8192.0, (double)budget_bits / 8192.0, plan.avg_bits);
        fputs(text, f);
        const bool bad = ferror(f) != 0;
        if (fclose(f) || bad) {
            lb_errorf(&err, LB_ERR_IO, "%s: write failed", out);
            goto fail;
        }
    }
    printf("lowbit mixed: %s (%s), objective %s, budget %.2f KiB\n", pos[0], in.m->name,
           lb_mixed_objective_name(obj), (double)budget_bits / 8192.0);
    printf("%-14s %9s %5s %12s\n", "layer", "weights", "bits", "objective");
    for (int l = 0; l < r.n_layers; l++) {
        int k = 0;
        while (r.bits[k] != bits[l]) k++;
        const double v = lb_mixed_layer_objective(&r.layers[l], k, obj);
        printf("%-14s %9lld %5d %12.4g\n", r.layers[l].name, (long long)r.layers[l].n_weights,
               bits[l], v);
    }
    printf("weights %.2f KiB, %.3f bits per weight on average, summed objective %.4g; wrote %s\n",
           (double)plan.weight_bits / 8192.0, plan.avg_bits, plan.objective, out);
    if (lb_cli_get(o, n, "json")) {
        printf("{\"config\":\"%s\",\"objective\":\"%s\",\"budget_bytes\":%lld,"
               "\"weight_bytes\":%lld,\"avg_bits\":%.4f,\"sum_objective\":%.6g,\"bits\":{",
               out, lb_mixed_objective_name(obj), (long long)(budget_bits / 8),
               (long long)((plan.weight_bits + 7) / 8), plan.avg_bits, plan.objective);
        for (int l = 0; l < r.n_layers; l++)
            printf("%s\"%s\":%d", l ? "," : "", r.layers[l].name, bits[l]);
        printf("}}\n");
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit mixed: %s\n", err.msg);
done:
    free(bits);
    free(qc);
    lb_sens_result_free(&r);
    sens_input_free(&in);
    return code;
}
