/* main.c: the `lowbit` command line: train, eval, inspect, models.
 * Parses options, finds datasets, and prints results; all the work is in the libraries.
 * Exit status: 0 success, 1 failure (message on stderr), 2 usage error. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/blas.h"
#include "datasets/dataset.h"
#include "layers/model.h"
#include "train/checkpoint.h"
#include "train/loop.h"

/* ---- option parsing ------------------------------------------------------------------- */

typedef struct {
    const char *name;  /* without the leading "--"                         */
    bool        flag;  /* takes no value                                    */
    const char *value; /* set by parse_opts: the value, or "1" for a flag   */
} opt;

#define O(name) { name, false, NULL }
#define F(name) { name, true, NULL }

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "lowbit %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see lowbit %s --help)\n", cmd);
    return 2;
}

/* Fills opts[] from argv; positional arguments go to pos[] (at most max_pos).
 * Returns 0, 2 on a usage error, or -1 when --help was given. */
static int parse_opts(const char *cmd, int argc, char **argv, opt *opts, int n_opts,
                      const char **pos, int max_pos, int *n_pos)
{
    *n_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        if (strncmp(a, "--", 2) != 0) {
            if (*n_pos == max_pos) return usage_error(cmd, "unexpected argument '%s'", a);
            pos[(*n_pos)++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        opt *o = NULL;
        for (int k = 0; k < n_opts; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len)) o = &opts[k];
        if (!o) return usage_error(cmd, "unknown option '%s'", a);
        if (o->flag) {
            if (eq) return usage_error(cmd, "option '%s' takes no value", a);
            o->value = "1";
        } else if (eq) {
            o->value = eq + 1;
        } else {
            if (i + 1 >= argc) return usage_error(cmd, "option '%s' needs a value", a);
            o->value = argv[++i];
        }
    }
    return 0;
}

static const char *get(const opt *opts, int n, const char *name)
{
    for (int k = 0; k < n; k++)
        if (!strcmp(opts[k].name, name)) return opts[k].value;
    return NULL;
}

static bool to_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool to_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

/* Loads both splits of a dataset by name. When allow_fallback and MNIST is missing, falls back
 * to Fashion-MNIST (Debian's dataset-fashion-mnist) and says so. */
static lb_status load_data(const char *name, const char *dir, bool allow_fallback,
                           lb_dataset *train, lb_dataset *test, lb_error *err)
{
    lb_status st = lb_dataset_load(name, dir, LB_SPLIT_TRAIN, train, err);
    if (st == LB_ERR_IO && allow_fallback && !strcmp(name, "mnist")) {
        fprintf(stderr, "lowbit: MNIST not found (%s)\nlowbit: using Fashion-MNIST instead\n",
                err->msg);
        name = "fashion-mnist";
        st = lb_dataset_load(name, dir, LB_SPLIT_TRAIN, train, err);
    }
    if (st) return st;
    if ((st = lb_dataset_load(name, dir, LB_SPLIT_TEST, test, err))) lb_dataset_free(train);
    return st;
}

static lb_status build_model(const char *name, const lb_dataset *ds, lb_model **m, lb_error *err)
{
    struct stat sb;
    if (stat(name, &sb) == 0 && S_ISREG(sb.st_mode)) return lb_model_build_file(name, m, err);
    int n_classes = ds->n_classes < 10 ? 10 : ds->n_classes;
    return lb_model_build_zoo(name, ds->c, ds->h, ds->w, n_classes, m, err);
}

static void json_str(FILE *f, const char *key, const char *v, bool comma)
{
    fprintf(f, "\"%s\":\"", key);
    for (const char *s = v; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fprintf(f, "\"%s", comma ? "," : "");
}

/* ---- train ----------------------------------------------------------------------------- */

static const char train_help[] =
    "usage: lowbit train [options]\n"
    "Trains a model and evaluates it on the test set after every epoch. With no options it\n"
    "trains LeNet-5 on MNIST for 5 epochs (Fashion-MNIST when MNIST is not found).\n"
    "\n"
    "  --model NAME|FILE   zoo model (mlp, lenet5, vgg-small, resnet20) or a description\n"
    "                      file (see docs/models.md)                       [lenet5]\n"
    "  --data NAME         mnist or fashion-mnist                            [mnist]\n"
    "  --data-dir DIR      look for the dataset only in DIR (default: $LOWBIT_DATA,\n"
    "                      ../shared/datasets, /usr/share/datasets)\n"
    "  --epochs N          training epochs                                   [5]\n"
    "  --batch N           mini-batch size                                   [64]\n"
    "  --optim NAME        sgd, adam or adamw                                [sgd]\n"
    "  --lr F              peak learning rate                  [0.05 sgd, 0.001 adam]\n"
    "  --lr-min F          final learning rate of cosine/onecycle            [0]\n"
    "  --momentum F        SGD momentum                                      [0.9]\n"
    "  --no-nesterov       plain instead of Nesterov momentum\n"
    "  --wd F              weight decay (L2 for sgd/adam, decoupled for adamw) [5e-4]\n"
    "  --schedule NAME     constant, cosine, step or onecycle                [cosine]\n"
    "  --warmup E          linear warm-up length in epochs (may be fractional) [0.5]\n"
    "  --step-epochs E     step schedule: epochs between decays              [1]\n"
    "  --gamma F           step schedule: decay factor                       [0.1]\n"
    "  --seed N            seed of initialisation, shuffling and dropout     [42]\n"
    "  --threads N         BLAS threads                                      [all cores]\n"
    "  --out DIR           run folder: metrics.jsonl, last.ckpt  [runs/MODEL-DATA]\n"
    "  --max-steps N       stop each epoch after N steps (quick checks)\n"
    "  --json              end stdout with one JSON summary line\n";

static int cmd_train(int argc, char **argv)
{
    opt o[] = { O("model"), O("data"), O("data-dir"), O("epochs"), O("batch"), O("optim"),
                O("lr"), O("lr-min"), O("momentum"), F("no-nesterov"), O("wd"),
                O("schedule"), O("warmup"), O("step-epochs"), O("gamma"), O("seed"),
                O("threads"), O("out"), O("max-steps"), F("json") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = parse_opts("train", argc, argv, o, n, pos, 0, &n_pos);
    if (rc == -1) return fputs(train_help, stdout), 0;
    if (rc) return rc;

    lb_train_cfg cfg = lb_train_cfg_default();
    lb_error err = { 0 };
    long v;
    float f;
    const char *s;
    const char *model_name = get(o, n, "model") ? get(o, n, "model") : "lenet5";
    const char *data = get(o, n, "data") ? get(o, n, "data") : "mnist";
    int threads = default_threads();
    if ((s = get(o, n, "epochs"))) {
        if (!to_long(s, 1, 100000, &v)) return usage_error("train", "--epochs %s: expected 1..100000", s);
        cfg.epochs = (int)v;
    }
    if ((s = get(o, n, "batch"))) {
        if (!to_long(s, 1, 1 << 20, &v)) return usage_error("train", "--batch %s: expected 1..1048576", s);
        cfg.batch = v;
    }
    if ((s = get(o, n, "optim")) && lb_optim_parse_kind(s, &cfg.optim.kind, &err))
        return usage_error("train", "%s", err.msg);
    if (cfg.optim.kind != LB_OPTIM_SGD) {
        cfg.sched.lr_max = 1e-3f;
        cfg.optim.momentum = 0.0f;
        cfg.optim.nesterov = false;
    }
    if ((s = get(o, n, "lr")) && !to_float(s, 0.0f, 100.0f, &cfg.sched.lr_max))
        return usage_error("train", "--lr %s: expected a number in [0, 100]", s);
    if ((s = get(o, n, "lr-min")) && !to_float(s, 0.0f, 100.0f, &cfg.sched.lr_min))
        return usage_error("train", "--lr-min %s: expected a number in [0, 100]", s);
    if ((s = get(o, n, "momentum")) && !to_float(s, 0.0f, 0.9999f, &cfg.optim.momentum))
        return usage_error("train", "--momentum %s: expected a number in [0, 1)", s);
    if (get(o, n, "no-nesterov") || cfg.optim.momentum == 0.0f) cfg.optim.nesterov = false;
    if ((s = get(o, n, "wd")) && !to_float(s, 0.0f, 1.0f, &cfg.optim.weight_decay))
        return usage_error("train", "--wd %s: expected a number in [0, 1]", s);
    if ((s = get(o, n, "schedule")) && lb_schedule_parse_kind(s, &cfg.sched.kind, &err))
        return usage_error("train", "%s", err.msg);
    if ((s = get(o, n, "warmup")) && !to_float(s, 0.0f, 1e5f, &cfg.warmup_epochs))
        return usage_error("train", "--warmup %s: expected epochs >= 0", s);
    float step_epochs = 1.0f;
    if ((s = get(o, n, "step-epochs")) && !to_float(s, 1e-3f, 1e5f, &step_epochs))
        return usage_error("train", "--step-epochs %s: expected epochs > 0", s);
    cfg.sched.gamma = 0.1f;
    if ((s = get(o, n, "gamma")) && !to_float(s, 0.0f, 1.0f, &cfg.sched.gamma))
        return usage_error("train", "--gamma %s: expected a number in [0, 1]", s);
    if ((s = get(o, n, "seed"))) {
        if (!to_long(s, 0, 2147483647L, &v)) return usage_error("train", "--seed %s: expected 0..2^31-1", s);
        cfg.seed = (uint64_t)v;
    }
    if ((s = get(o, n, "threads"))) {
        if (!to_long(s, 1, 256, &v)) return usage_error("train", "--threads %s: expected 1..256", s);
        threads = (int)v;
    }
    if ((s = get(o, n, "max-steps"))) {
        if (!to_long(s, 1, 1L << 40, &v)) return usage_error("train", "--max-steps %s: expected >= 1", s);
        cfg.max_steps = v;
    }
    (void)f;
    const bool json = get(o, n, "json") != NULL;
    lb_blas_set_threads(threads);

    lb_dataset train = { 0 }, test = { 0 };
    lb_model *m = NULL;
    int code = 1;
    if (load_data(data, get(o, n, "data-dir"), get(o, n, "data") == NULL, &train, &test, &err))
        goto fail;
    if (build_model(model_name, &train, &m, &err)) goto fail;
    lb_model_init_weights(m, cfg.seed);
    char out_default[256];
    snprintf(out_default, sizeof out_default, "runs/%s-%s", m->name, train.name);
    cfg.out_dir = get(o, n, "out") ? get(o, n, "out") : out_default;
    cfg.dataset = train.name;
    cfg.log = stdout;
    cfg.log_tty = isatty(STDOUT_FILENO);
    {
        int64_t per_epoch = train.n / cfg.batch;
        if (cfg.max_steps > 0 && cfg.max_steps < per_epoch) per_epoch = cfg.max_steps;
        cfg.sched.step_size = (int64_t)(step_epochs * (float)per_epoch);
        if (cfg.sched.step_size < 1) cfg.sched.step_size = 1;
    }
    printf("lowbit train: %s (%lld parameters) on %s (%lld train / %lld test images from %s)\n"
           "  %d epochs, batch %lld, %s lr %g %s, weight decay %g, seed %llu, %d threads\n",
           m->name, (long long)lb_params_count(m->params), train.name, (long long)train.n,
           (long long)test.n, train.source, cfg.epochs, (long long)cfg.batch,
           lb_optim_kind_name(cfg.optim.kind), (double)cfg.sched.lr_max,
           lb_schedule_kind_name(cfg.sched.kind), (double)cfg.optim.weight_decay,
           (unsigned long long)cfg.seed, threads);
    fflush(stdout);
    lb_train_result res;
    if (lb_train(m, &train, &test, &cfg, &res, &err)) goto fail;
    printf("done: test accuracy %.2f%% after %d epochs, %.1f s (%.0f train images/s), "
           "checkpoint %s/last.ckpt\n",
           100.0 * res.test_acc, res.epochs, res.seconds, res.train_images_per_s, cfg.out_dir);
    if (json) {
        printf("{");
        json_str(stdout, "model", m->name, true);
        json_str(stdout, "dataset", train.name, true);
        json_str(stdout, "out", cfg.out_dir, true);
        printf("\"test_acc\":%.6f,\"test_loss\":%.6f,\"train_loss\":%.6f,\"train_acc\":%.6f,"
               "\"epochs\":%d,\"steps\":%lld,\"batch\":%lld,\"threads\":%d,\"seconds\":%.3f,"
               "\"train_seconds\":%.3f,\"train_images_per_s\":%.1f,\"peak_rss_mb\":%.1f,"
               "\"params\":%lld}\n",
               res.test_acc, res.test_loss, res.train_loss, res.train_acc, res.epochs,
               (long long)res.steps, (long long)cfg.batch, threads, res.seconds, res.train_seconds,
               res.train_images_per_s, res.peak_rss_mb, (long long)lb_params_count(m->params));
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit train: %s\n", err.msg);
done:
    lb_model_free(m);
    lb_dataset_free(&train);
    lb_dataset_free(&test);
    return code;
}

/* ---- eval ------------------------------------------------------------------------------ */

static const char eval_help[] =
    "usage: lowbit eval CKPT [options]\n"
    "Evaluates a checkpoint on a test set and prints its accuracy.\n"
    "\n"
    "  --data NAME       dataset (default: the one the checkpoint was trained on)\n"
    "  --data-dir DIR    look for the dataset only in DIR\n"
    "  --batch N         evaluation batch size                             [500]\n"
    "  --threads N       BLAS threads                                      [all cores]\n"
    "  --json            end stdout with one JSON summary line\n";

static int cmd_eval(int argc, char **argv)
{
    opt o[] = { O("data"), O("data-dir"), O("batch"), O("threads"), F("json") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = parse_opts("eval", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(eval_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return usage_error("eval", "%s", "needs a checkpoint path");
    long batch = 500, threads = default_threads();
    const char *s;
    if ((s = get(o, n, "batch")) && !to_long(s, 1, 1 << 20, &batch))
        return usage_error("eval", "--batch %s: expected 1..1048576", s);
    if ((s = get(o, n, "threads")) && !to_long(s, 1, 256, &threads))
        return usage_error("eval", "--threads %s: expected 1..256", s);
    lb_blas_set_threads((int)threads);
    lb_error err = { 0 };
    lb_model *m = NULL;
    lb_ckpt_meta meta;
    lb_dataset test = { 0 };
    int code = 1;
    double acc, loss;
    if (lb_checkpoint_load(pos[0], &m, &meta, &err)) goto fail;
    const char *data = get(o, n, "data") ? get(o, n, "data") : meta.dataset[0] ? meta.dataset : "mnist";
    if (lb_dataset_load(data, get(o, n, "data-dir"), LB_SPLIT_TEST, &test, &err)) goto fail;
    const double t0 = lb_now();
    if (lb_evaluate(m, &test, batch, &acc, &loss, &err)) goto fail;
    const double secs = lb_now() - t0;
    printf("%s: %s on %s test set: accuracy %.2f%%, loss %.4f (%lld images, %.2f s)\n", pos[0],
           m->name, test.name, 100.0 * acc, loss, (long long)test.n, secs);
    if (get(o, n, "json")) {
        printf("{");
        json_str(stdout, "checkpoint", pos[0], true);
        json_str(stdout, "model", m->name, true);
        json_str(stdout, "dataset", test.name, true);
        printf("\"test_acc\":%.6f,\"test_loss\":%.6f,\"images\":%lld,\"seconds\":%.3f,"
               "\"images_per_s\":%.1f}\n",
               acc, loss, (long long)test.n, secs, secs > 0 ? (double)test.n / secs : 0.0);
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit eval: %s\n", err.msg);
done:
    lb_model_free(m);
    lb_dataset_free(&test);
    return code;
}

/* ---- inspect and models ----------------------------------------------------------------- */

static const char inspect_help[] =
    "usage: lowbit inspect CKPT|MODEL [--input C,H,W] [--spec]\n"
    "Lists the layers of a checkpoint, a zoo model or a description file: name, kind, output\n"
    "shape and parameter count, and the weight memory at FP32.\n"
    "  --input C,H,W   input geometry for a zoo model                        [1,28,28]\n"
    "  --classes N     output classes for a zoo model                        [10]\n"
    "  --spec          print the model description text instead\n";

static int cmd_inspect(int argc, char **argv)
{
    opt o[] = { O("input"), O("classes"), F("spec") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = parse_opts("inspect", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(inspect_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return usage_error("inspect", "%s", "needs a checkpoint, model name or file");
    lb_error err = { 0 };
    lb_model *m = NULL;
    lb_ckpt_meta meta = { .test_acc = -1 };
    int c = 1, h = 28, w = 28;
    long classes = 10;
    const char *s;
    if ((s = get(o, n, "input")) && sscanf(s, "%d,%d,%d", &c, &h, &w) != 3)
        return usage_error("inspect", "--input %s: expected C,H,W", s);
    if ((s = get(o, n, "classes")) && !to_long(s, 1, 100000, &classes))
        return usage_error("inspect", "--classes %s: expected 1..100000", s);
    struct stat sb;
    lb_status st;
    bool is_ckpt = false;
    if (stat(pos[0], &sb) == 0) {
        FILE *f = fopen(pos[0], "rb");
        char magic[4] = { 0 };
        if (f) {
            is_ckpt = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "LBCK", 4);
            fclose(f);
        }
        st = is_ckpt ? lb_checkpoint_load(pos[0], &m, &meta, &err) : lb_model_build_file(pos[0], &m, &err);
    } else {
        st = lb_model_build_zoo(pos[0], c, h, w, (int)classes, &m, &err);
    }
    if (st) {
        fprintf(stderr, "lowbit inspect: %s\n", err.msg);
        return 1;
    }
    if (get(o, n, "spec")) {
        fputs(m->spec, stdout);
        lb_model_free(m);
        return 0;
    }
    printf("model %s: input %dx%dx%d, %d classes", m->name, m->in_c, m->in_h, m->in_w, m->n_classes);
    if (is_ckpt)
        printf("; checkpoint of %s, epoch %lld, test acc %.2f%%", meta.dataset, (long long)meta.epoch,
               100.0 * meta.test_acc);
    printf("\n%-16s %-8s %-16s %10s %12s\n", "layer", "kind", "output", "params", "fp32 bytes");
    int64_t total = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const lb_node *nd = &m->nodes[i];
        char shp[48];
        if (nd->n_dims == 3)
            snprintf(shp, sizeof shp, "%lldx%lldx%lld", (long long)nd->shape[0],
                     (long long)nd->shape[1], (long long)nd->shape[2]);
        else
            snprintf(shp, sizeof shp, "%lld", (long long)nd->shape[0]);
        const int64_t pc = lb_node_param_count(nd);
        total += pc;
        if (pc) printf("%-16s %-8s %-16s %10lld %12lld\n", nd->name, lb_node_kind_name(nd->kind), shp,
                       (long long)pc, (long long)pc * 4);
        else printf("%-16s %-8s %-16s %10s %12s\n", nd->name, lb_node_kind_name(nd->kind), shp, "", "");
    }
    printf("total: %lld trainable parameters, %.1f KiB at FP32\n", (long long)total,
           (double)total * 4.0 / 1024.0);
    lb_model_free(m);
    return 0;
}

static int cmd_models(void)
{
    for (const char *const *z = lb_zoo_names(); *z; z++) {
        lb_model *m;
        lb_error err;
        const bool rgb = !strcmp(*z, "vgg-small") || !strcmp(*z, "resnet20");
        if (lb_model_build_zoo(*z, rgb ? 3 : 1, rgb ? 32 : 28, rgb ? 32 : 28, 10, &m, &err)) {
            fprintf(stderr, "lowbit models: %s\n", err.msg);
            return 1;
        }
        printf("%-10s %9lld parameters (%s input)\n", *z, (long long)lb_params_count(m->params),
               rgb ? "3x32x32" : "1x28x28");
        lb_model_free(m);
    }
    return 0;
}

static const char main_help[] =
    "usage: lowbit COMMAND [options]\n"
    "Quantization-aware training of small networks in C.\n"
    "\n"
    "commands:\n"
    "  train      train a model (no options: LeNet-5 on MNIST, 5 epochs)\n"
    "  eval       evaluate a checkpoint on a test set\n"
    "  inspect    list the layers of a checkpoint, zoo model or description file\n"
    "  models     list the zoo\n"
    "\n"
    "lowbit COMMAND --help documents each command's options.\n";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(main_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(cmd, "models")) return cmd_models();
    fprintf(stderr, "lowbit: unknown command '%s'\n%s", cmd, main_help);
    return 2;
}
