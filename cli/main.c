/* main.c: the `lowbit` command line: train, eval, ptq, inspect, export, run, models (ablate and
 * hist are in cmd_ablate.c).
 * Parses options, finds datasets, and prints results; all the work is in the libraries.
 * Exit status: 0 success, 1 failure (message on stderr), 2 usage error. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "cli/cmd_mixed.h"
#include "cli/ablate.h"
#include "runtime/export/export.h"
#include "runtime/export/onnx.h"
#include "runtime/lbm.h"
#include "datasets/dataset.h"
#include "layers/model.h"
#include "train/checkpoint.h"
#include "train/loop.h"
#include "cli/inspect.h"
#include "cli/opts.h"

/* ---- option parsing: cli/opts.h ------------------------------------------------------ */

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

/* Starts lowbit's thread pool (OpenBLAS stays single-threaded inside it). A pool that could
 * not start every thread still works with fewer, so this only warns. */
static void set_threads(int n)
{
    lb_error e = { 0 };
    if (lb_parallel_set_threads(n, &e) != LB_OK)
        fprintf(stderr, "lowbit: warning: %s; running on %d thread(s)\n", e.msg,
                lb_parallel_threads());
}

/* How image folders are read: set by train's --skip-corrupt, --resize, --no-cache, and by
 * --data-in-memory (every command that loads data). Unpacking and decoding progress goes to
 * stderr. */
static lb_dataset_opts data_opts = { .use_cache = true, .stream = true };

/* --data-in-memory: read the pixels into memory instead of streaming them from their file. */
static void set_in_memory(bool in_memory) { data_opts.stream = !in_memory; }

/* How the pixels of ds were obtained, for the "loaded" line: where they are streamed from
 * (the file, and how many more), or whether they came from the decoded cache. */
static void describe_source(const lb_dataset *ds, char *out, size_t size)
{
    if (!lb_dataset_streams(ds)) {
        snprintf(out, size, "%s", ds->from_cache ? "read from the decoded cache" : "loaded");
        return;
    }
    const char *path = ds->files[0].path;
    const size_t len = strlen(path);
    const bool   lbds = len > 5 && !strcmp(path + len - 5, ".lbds");
    snprintf(out, size, "%s%s", lbds ? (ds->from_cache ? "streamed from the decoded cache "
                                                       : "decoded, then streamed from the "
                                                         "decoded cache ")
                                     : "streamed from ", path);
    if (ds->n_files > 1)
        snprintf(out + strlen(out), size - strlen(out), " and %d more files", ds->n_files - 1);
}

/* Loads one split, reporting on stderr where it came from and how long it took. */
static lb_status load_split(const char *name, const char *dir, lb_split split, lb_dataset *ds,
                            lb_error *err)
{
    data_opts.log = stderr;
    const double t0 = lb_now();
    lb_status st = lb_dataset_load_ex(name, dir, split, &data_opts, ds, err);
    if (st == LB_OK && ds->class_names) { /* image folders and CIFAR-10 */
        char how[4200];
        describe_source(ds, how, sizeof how);
        fprintf(stderr, "lowbit: %s %s: %lld images %dx%dx%d, %s in %.2f s, %lld corrupt images "
                "skipped\n", ds->name, split == LB_SPLIT_TRAIN ? "train" : "test",
                (long long)ds->n, ds->c, ds->h, ds->w, how, lb_now() - t0,
                (long long)ds->n_skipped);
    }
    return st;
}

/* Loads both splits of a dataset by name. When allow_fallback and MNIST is missing, falls back
 * to Fashion-MNIST (Debian's dataset-fashion-mnist) and says so. The test split is normalised
 * like the training split (the loaders already do so; this keeps it true for any loader). */
static lb_status load_data(const char *name, const char *dir, bool allow_fallback,
                           lb_dataset *train, lb_dataset *test, lb_error *err)
{
    lb_status st = load_split(name, dir, LB_SPLIT_TRAIN, train, err);
    if (st == LB_ERR_IO && allow_fallback && !strcmp(name, "mnist")) {
        fprintf(stderr, "lowbit: MNIST not found (%s)\nlowbit: using Fashion-MNIST instead\n",
                err->msg);
        name = "fashion-mnist";
        st = load_split(name, dir, LB_SPLIT_TRAIN, train, err);
    }
    if (st) return st;
    if ((st = load_split(name, dir, LB_SPLIT_TEST, test, err))) {
        lb_dataset_free(train);
        return st;
    }
    memcpy(test->mean, train->mean, sizeof test->mean);
    memcpy(test->std, train->std, sizeof test->std);
    return LB_OK;
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static lb_status build_model(const char *name, const lb_dataset *ds, const lb_qconfig *qc,
                             lb_model **m, lb_error *err)
{
    if (is_file(name)) return lb_model_build_file(name, qc, m, err);
    int n_classes = ds->n_classes < 10 ? 10 : ds->n_classes;
    return lb_model_build_zoo(name, ds->c, ds->h, ds->w, n_classes, qc, m, err);
}

/* --quant: a configuration file when such a file exists, else a short spec ("w4a4"). */
static lb_status load_qconfig(const char *arg, lb_qconfig *qc, lb_error *err)
{
    if (!arg) {
        *qc = lb_qconfig_float();
        return LB_OK;
    }
    return is_file(arg) ? lb_qconfig_parse_file(arg, qc, err) : lb_qconfig_parse_spec(arg, qc, err);
}

/* One-line summary of a configuration, e.g. "w4a4 lsq/lsq channel, first=w8a8 ...". */
static void quant_desc(const lb_qconfig *qc, char *buf, size_t cap)
{
    char part[96];
    lb_qlayer_cfg_str(&qc->deflt, buf, cap);
    if (qc->first.set) {
        lb_qlayer_cfg c = lb_qconfig_for(qc, "", true, false);
        lb_qlayer_cfg_str(&c, part, sizeof part);
        snprintf(buf + strlen(buf), cap - strlen(buf), "; first %s", part);
    }
    if (qc->last.set) {
        lb_qlayer_cfg c = lb_qconfig_for(qc, "", false, true);
        lb_qlayer_cfg_str(&c, part, sizeof part);
        snprintf(buf + strlen(buf), cap - strlen(buf), "; last %s", part);
    }
    if (qc->n_layers)
        snprintf(buf + strlen(buf), cap - strlen(buf), "; %d per-layer settings", qc->n_layers);
}

/* Rebuilds the architecture of a checkpoint with configuration qc and copies its tensors
 * (QAT fine-tuning and PTQ start from a float checkpoint this way). */
static lb_status model_from_checkpoint(const char *path, const lb_qconfig *qc, lb_model **out,
                                       lb_ckpt_meta *meta, lb_error *err)
{
    lb_model *src = NULL;
    *out = NULL;
    lb_status st = lb_checkpoint_load(path, &src, meta, err);
    if (st) return st;
    char origin[4200];
    snprintf(origin, sizeof origin, "%s (model description)", path);
    st = lb_model_build(src->spec, origin, qc, out, err);
    if (!st) {
        lb_model_copy_params(*out, src);
        snprintf((*out)->name, sizeof (*out)->name, "%s", src->name);
        if (src->bn_folded) lb_model_fold_bn(*out);
    }
    lb_model_free(src);
    return st;
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

/* The --json summary line, built in memory: printed last on stdout with --json, and written
 * atomically to the --result file (what lowbit ablate reads) when one is given. */
static FILE *json_begin(char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = open_memstream(buf, len);
    if (f) fputc('{', f);
    return f;
}

static lb_status json_end(FILE *f, char **buf, size_t *len, bool print, const char *result,
                          lb_error *err)
{
    if (!f) return lb_errorf(err, LB_ERR_NOMEM, "out of memory (JSON summary)");
    if (fclose(f) || !*buf) return lb_errorf(err, LB_ERR_NOMEM, "out of memory (JSON summary)");
    if (print) fputs(*buf, stdout);
    lb_status st = result ? lb_abl_write_atomic(result, *buf, *len, err) : LB_OK;
    free(*buf);
    *buf = NULL;
    return st;
}

/* ---- train ----------------------------------------------------------------------------- */

/* SIGINT/SIGTERM during training: the loop saves a checkpoint after the current step and
 * stops; lowbit then exits with 128 + the signal number. */
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) { stop_signal = sig; }

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static const char train_help[] =
    "usage: lowbit train [options]\n"
    "Trains a model and evaluates it on the test set after every epoch. With no options it\n"
    "trains LeNet-5 on MNIST for 5 epochs (Fashion-MNIST when MNIST is not found).\n"
    "\n"
    "  --model NAME|FILE   zoo model (mlp, lenet5, vgg-small, resnet20) or a description\n"
    "                      file (see docs/models.md)                       [lenet5]\n"
    "  --quant SPEC|FILE   quantization-aware training: a short spec such as w4a4,\n"
    "                      w2a2,first=8,last=8 or w1a8, or a per-layer configuration\n"
    "                      file (see docs/quantization.md)                  [float]\n"
    "  --init CKPT         start from a checkpoint's weights and architecture (QAT\n"
    "                      fine-tuning of a float model); --model is then ignored\n"
    "  --resume DIR        continue the run whose folder is DIR from its last.ckpt (the\n"
    "                      epochs completed, optimizer state, shuffling and dropout state):\n"
    "                      with the same options and thread count, it ends with the same\n"
    "                      weights as a run that was never interrupted\n"
    "  --freeze-observers N  activation range observers (minmax, ema) stop after N steps\n"
    "  --fold-bn E         from epoch E on, fold batch-norm into the preceding conv with\n"
    "                      frozen statistics, so the folded weights are quantized  [never]\n"
    ;
/* split in three: ISO C only promises string literals of 4095 characters */
static const char train_help_data[] =
    "  --data NAME|PATH    mnist, fashion-mnist, cifar10, mnist-png, folder (the image\n"
    "                      folder --data-dir), or the PATH of an image folder with\n"
    "                      train/<class>/<image> and test/<class>/<image>     [mnist]\n"
    "  --data-dir DIR      look for the dataset only in DIR (default: $LOWBIT_DATA,\n"
    "                      ../shared/datasets, /usr/share/datasets); archives are\n"
    "                      unpacked once into $LOWBIT_CACHE (else ~/.cache/lowbit)\n"
    "  --augment NAME      crop-flip (4-pixel padded random crop, horizontal flip) or\n"
    "                      none                     [crop-flip for cifar10, else none]\n"
    "  --cutout N          after augmenting, zero one random N x N square of each training\n"
    "                      image (Cutout; 0 is the mean after normalisation)     [off]\n"
    "  --skip-corrupt      skip images that fail to decode (counted) instead of stopping\n"
    "  --resize            resize images whose size differs from the first image's\n"
    "                      (bilinear) instead of stopping\n"
    "  --channels N        image folders: 1 (gray) or 3 (RGB), converting images of the\n"
    "                      other kind                          [as the first image]\n"
    "  --no-cache          decode image folders again instead of using the decoded cache\n"
    "                      (the pixels are then held in memory)\n"
    "  --data-in-memory    read all pixels into memory; by default they stay in the\n"
    "                      decoded cache file (or CIFAR-10's binary batches) and each\n"
    "                      sample is read when a batch needs it, so the dataset does not\n"
    "                      count in the process's memory (MNIST IDX files: always memory)\n"
    "  --no-prefetch       prepare batches on the training thread (same batches)\n"
    ;
static const char train_help_run[] =
    "  --epochs N          training epochs                                   [5]\n"
    "  --batch N           mini-batch size                                   [64]\n"
    "  --optim NAME        sgd, adam or adamw                                [sgd]\n"
    "  --lr F              peak learning rate                  [0.05 sgd, 0.001 adam]\n"
    "  --lr-min F          final learning rate of cosine/onecycle            [0]\n"
    "  --momentum F        SGD momentum                                      [0.9]\n"
    "  --no-nesterov       plain instead of Nesterov momentum\n"
    "  --wd F              weight decay (L2 for sgd/adam, decoupled for adamw) [5e-4]\n"
    "  --label-smoothing F training loss with label smoothing F in [0, 1), as PyTorch's\n"
    "                      CrossEntropyLoss(label_smoothing=F); test loss is plain    [0]\n"
    "  --swa-start E       stochastic weight averaging: average the weights at the end of\n"
    "                      epochs E..last, recompute batch-norm statistics, and report and\n"
    "                      save (DIR/swa.ckpt) that average; last.ckpt keeps the last\n"
    "                      iterate (torch.optim.swa_utils)                     [off]\n"
    "  --wd-all            decay biases, BN scales and shifts and quantizer steps too, as\n"
    "                      torch.optim.SGD(model.parameters(), weight_decay=F) does\n"
    "                      (default: conv and linear weights only)\n"
    "  --schedule NAME     constant, cosine, step or onecycle                [cosine]\n"
    "  --warmup E          linear warm-up length in epochs (may be fractional) [0.5]\n"
    "  --step-epochs E     step schedule: epochs between decays              [1]\n"
    "  --gamma F           step schedule: decay factor                       [0.1]\n"
    "  --seed N            seed of initialisation, shuffling and dropout     [42]\n"
    "  --threads N         threads (lowbit runs BLAS and its own kernels on them) [all cores]\n"
    "  --out DIR           run folder: metrics.jsonl, last.ckpt  [runs/MODEL-DATA]\n"
    "  --max-steps N       stop each epoch after N steps (quick checks)\n"
    "  --nonfinite stop|skip  a NaN or Inf loss or gradient stops training (stop), or\n"
    "                      drops that step's update and goes on (skip; 100 skipped steps\n"
    "                      in a row stop it anyway); last.ckpt is never written with a\n"
    "                      NaN or Inf in it                                  [stop]\n"
    "  --json              end stdout with one JSON summary line\n"
    "  --result FILE       also write that JSON line to FILE, atomically (lowbit ablate)\n";

static int cmd_train(int argc, char **argv)
{
    lb_cli_opt o[] = { LB_OPT("model"), LB_OPT("data"), LB_OPT("data-dir"), LB_OPT("epochs"), LB_OPT("batch"), LB_OPT("optim"),
                LB_OPT("lr"), LB_OPT("lr-min"), LB_OPT("momentum"), LB_FLAG("no-nesterov"), LB_OPT("wd"), LB_FLAG("wd-all"), LB_OPT("label-smoothing"), LB_OPT("cutout"), LB_OPT("swa-start"),
                LB_OPT("schedule"), LB_OPT("warmup"), LB_OPT("step-epochs"), LB_OPT("gamma"), LB_OPT("seed"),
                LB_OPT("threads"), LB_OPT("out"), LB_OPT("max-steps"), LB_FLAG("json"), LB_OPT("quant"), LB_OPT("init"),
                LB_OPT("fold-bn"), LB_OPT("freeze-observers"), LB_OPT("resume"), LB_OPT("augment"),
                LB_FLAG("skip-corrupt"), LB_FLAG("resize"), LB_FLAG("no-cache"), LB_FLAG("no-prefetch"), LB_OPT("channels"),
                LB_OPT("nonfinite"), LB_OPT("result"), LB_FLAG("data-in-memory") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = lb_cli_parse("train", argc, argv, o, n, pos, 0, &n_pos);
    if (rc == -1) return fputs(train_help, stdout), fputs(train_help_data, stdout),
                          fputs(train_help_run, stdout), 0;
    if (rc) return rc;

    lb_train_cfg cfg = lb_train_cfg_default();
    lb_error err = { 0 };
    long v;
    float f;
    const char *s;
    const char *model_name = lb_cli_get(o, n, "model") ? lb_cli_get(o, n, "model") : "lenet5";
    const char *data = lb_cli_get(o, n, "data") ? lb_cli_get(o, n, "data") : "mnist";
    int threads = default_threads();
    if ((s = lb_cli_get(o, n, "epochs"))) {
        if (!lb_cli_long(s, 1, 100000, &v)) return lb_cli_usage("train", "--epochs %s: expected 1..100000", s);
        cfg.epochs = (int)v;
    }
    if ((s = lb_cli_get(o, n, "batch"))) {
        if (!lb_cli_long(s, 1, 1 << 20, &v)) return lb_cli_usage("train", "--batch %s: expected 1..1048576", s);
        cfg.batch = v;
    }
    if ((s = lb_cli_get(o, n, "optim")) && lb_optim_parse_kind(s, &cfg.optim.kind, &err))
        return lb_cli_usage("train", "%s", err.msg);
    if (cfg.optim.kind != LB_OPTIM_SGD) {
        cfg.sched.lr_max = 1e-3f;
        cfg.optim.momentum = 0.0f;
        cfg.optim.nesterov = false;
    }
    if ((s = lb_cli_get(o, n, "lr")) && !lb_cli_float(s, 0.0f, 100.0f, &cfg.sched.lr_max))
        return lb_cli_usage("train", "--lr %s: expected a number in [0, 100]", s);
    if ((s = lb_cli_get(o, n, "lr-min")) && !lb_cli_float(s, 0.0f, 100.0f, &cfg.sched.lr_min))
        return lb_cli_usage("train", "--lr-min %s: expected a number in [0, 100]", s);
    if ((s = lb_cli_get(o, n, "momentum")) && !lb_cli_float(s, 0.0f, 0.9999f, &cfg.optim.momentum))
        return lb_cli_usage("train", "--momentum %s: expected a number in [0, 1)", s);
    if (lb_cli_get(o, n, "no-nesterov") || cfg.optim.momentum == 0.0f) cfg.optim.nesterov = false;
    if ((s = lb_cli_get(o, n, "wd")) && !lb_cli_float(s, 0.0f, 1.0f, &cfg.optim.weight_decay))
        return lb_cli_usage("train", "--wd %s: expected a number in [0, 1]", s);
    if (lb_cli_get(o, n, "wd-all")) cfg.optim.decay_all = true;
    if ((s = lb_cli_get(o, n, "swa-start"))) {
        if (!lb_cli_long(s, 1, 100000, &v)) return lb_cli_usage("train", "--swa-start %s: expected an epoch >= 1", s);
        cfg.swa_start = (int)v;
    }
    if ((s = lb_cli_get(o, n, "cutout"))) {
        if (!lb_cli_long(s, 0, 4096, &v)) return lb_cli_usage("train", "--cutout %s: expected 0..4096 pixels", s);
        cfg.cutout = (int)v;
    }
    if ((s = lb_cli_get(o, n, "label-smoothing")) &&
        !lb_cli_float(s, 0.0f, 0.999f, &cfg.label_smoothing))
        return lb_cli_usage("train", "--label-smoothing %s: expected a number in [0, 1)", s);
    if ((s = lb_cli_get(o, n, "schedule")) && lb_schedule_parse_kind(s, &cfg.sched.kind, &err))
        return lb_cli_usage("train", "%s", err.msg);
    if ((s = lb_cli_get(o, n, "warmup")) && !lb_cli_float(s, 0.0f, 1e5f, &cfg.warmup_epochs))
        return lb_cli_usage("train", "--warmup %s: expected epochs >= 0", s);
    float step_epochs = 1.0f;
    if ((s = lb_cli_get(o, n, "step-epochs")) && !lb_cli_float(s, 1e-3f, 1e5f, &step_epochs))
        return lb_cli_usage("train", "--step-epochs %s: expected epochs > 0", s);
    cfg.sched.gamma = 0.1f;
    if ((s = lb_cli_get(o, n, "gamma")) && !lb_cli_float(s, 0.0f, 1.0f, &cfg.sched.gamma))
        return lb_cli_usage("train", "--gamma %s: expected a number in [0, 1]", s);
    if ((s = lb_cli_get(o, n, "seed"))) {
        if (!lb_cli_long(s, 0, 2147483647L, &v)) return lb_cli_usage("train", "--seed %s: expected 0..2^31-1", s);
        cfg.seed = (uint64_t)v;
    }
    if ((s = lb_cli_get(o, n, "threads"))) {
        if (!lb_cli_long(s, 1, 256, &v)) return lb_cli_usage("train", "--threads %s: expected 1..256", s);
        threads = (int)v;
    }
    if ((s = lb_cli_get(o, n, "fold-bn"))) {
        if (!lb_cli_long(s, 1, 100000, &v)) return lb_cli_usage("train", "--fold-bn %s: expected an epoch >= 1", s);
        cfg.fold_bn_epoch = (int)v;
    }
    if ((s = lb_cli_get(o, n, "max-steps"))) {
        if (!lb_cli_long(s, 1, 1L << 40, &v)) return lb_cli_usage("train", "--max-steps %s: expected >= 1", s);
        cfg.max_steps = v;
    }
    if ((s = lb_cli_get(o, n, "nonfinite"))) {
        if (strcmp(s, "stop") && strcmp(s, "skip"))
            return lb_cli_usage("train", "--nonfinite %s: expected stop or skip", s);
        cfg.nonfinite = s[1] == 'k' ? LB_NONFINITE_SKIP : LB_NONFINITE_STOP;
    }
    (void)f;
    bool augment_given = false;
    if ((s = lb_cli_get(o, n, "augment"))) {
        if (lb_augment_parse(s, &cfg.augment, &err)) return lb_cli_usage("train", "%s", err.msg);
        augment_given = true;
    }
    data_opts.skip_corrupt = lb_cli_get(o, n, "skip-corrupt") != NULL;
    data_opts.resize = lb_cli_get(o, n, "resize") != NULL;
    data_opts.use_cache = lb_cli_get(o, n, "no-cache") == NULL;
    set_in_memory(lb_cli_get(o, n, "data-in-memory") != NULL);
    if ((s = lb_cli_get(o, n, "channels"))) {
        if (!lb_cli_long(s, 1, 3, &v) || v == 2) return lb_cli_usage("train", "--channels %s: expected 1 or 3", s);
        data_opts.channels = (int)v;
    }
    cfg.prefetch = lb_cli_get(o, n, "no-prefetch") == NULL;
    const bool json = lb_cli_get(o, n, "json") != NULL;
    set_threads(threads);

    lb_dataset train = { 0 }, test = { 0 };
    lb_model *m = NULL;
    int code = 1;
    lb_qconfig *qc = malloc(sizeof *qc);
    lb_ckpt_meta init_meta = { 0 };
    const char *init = lb_cli_get(o, n, "init");
    if (!qc) {
        lb_errorf(&err, LB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (load_qconfig(lb_cli_get(o, n, "quant"), qc, &err)) goto fail;
    const char *resume = lb_cli_get(o, n, "resume");
    char resume_path[4096];
    if (resume) { /* the model, its quantization and its training state from DIR/last.ckpt */
        snprintf(resume_path, sizeof resume_path, "%s/last.ckpt", resume);
        if (lb_checkpoint_load(resume_path, &m, &init_meta, &err)) goto fail;
        if (!lb_cli_get(o, n, "data") && init_meta.dataset[0]) data = init_meta.dataset;
        cfg.resume = &init_meta;
        init = resume_path;
    } else if (init) { /* architecture and weights from a checkpoint, dataset too unless given */
        if (model_from_checkpoint(init, qc, &m, &init_meta, &err)) goto fail;
        if (!lb_cli_get(o, n, "data") && init_meta.dataset[0]) data = init_meta.dataset;
    }
    if (load_data(data, lb_cli_get(o, n, "data-dir"), lb_cli_get(o, n, "data") == NULL && !init, &train, &test,
                  &err))
        goto fail;
    if (!init) {
        if (build_model(model_name, &train, qc, &m, &err)) goto fail;
        lb_model_init_weights(m, cfg.seed);
    }
    if ((s = lb_cli_get(o, n, "freeze-observers"))) {
        if (!lb_cli_long(s, 0, 1L << 40, &v)) {
            code = lb_cli_usage("train", "--freeze-observers %s: expected steps >= 0", s);
            goto done;
        }
        lb_model_set_observer_freeze(m, v);
    }
    if (!augment_given) /* CIFAR-10's standard augmentation; none for MNIST-like digits */
        cfg.augment = !strcmp(train.name, "cifar10") ? LB_AUGMENT_CROP_FLIP : LB_AUGMENT_NONE;
    char qdesc[256];
    quant_desc(&m->qcfg, qdesc, sizeof qdesc);
    int64_t wbytes, fbytes;
    lb_model_weight_bytes(m, &wbytes, &fbytes);
    char out_default[256];
    snprintf(out_default, sizeof out_default, "runs/%s-%s", m->name, train.name);
    cfg.out_dir = resume ? resume : lb_cli_get(o, n, "out") ? lb_cli_get(o, n, "out") : out_default;
    cfg.dataset = train.name;
    cfg.log = stdout;
    cfg.log_tty = isatty(STDOUT_FILENO);
    {
        int64_t per_epoch = train.n / cfg.batch;
        if (cfg.max_steps > 0 && cfg.max_steps < per_epoch) per_epoch = cfg.max_steps;
        cfg.sched.step_size = (int64_t)(step_epochs * (float)per_epoch);
        if (cfg.sched.step_size < 1) cfg.sched.step_size = 1;
    }
    char cutout_desc[48] = "";
    if (cfg.cutout > 0) snprintf(cutout_desc, sizeof cutout_desc, ", cutout %d", cfg.cutout);
    printf("lowbit train: %s (%lld parameters%s%s) on %s (%lld train / %lld test images from %s)\n"
           "  quantization: %s (weights %.1f KiB, %.1f KiB at fp32)\n"
           "  %d epochs, batch %lld, %s lr %g %s, weight decay %g%s, seed %llu, %d threads\n"
           "  augmentation %s%s, label smoothing %g, batches prepared %s\n",
           m->name, (long long)lb_model_param_count(m), init ? ", from " : "", init ? init : "",
           train.name, (long long)train.n,
           (long long)test.n, train.source, qdesc, (double)wbytes / 1024.0,
           (double)fbytes / 1024.0, cfg.epochs, (long long)cfg.batch,
           lb_optim_kind_name(cfg.optim.kind), (double)cfg.sched.lr_max,
           lb_schedule_kind_name(cfg.sched.kind), (double)cfg.optim.weight_decay,
           cfg.optim.decay_all ? " on every parameter" : "",
           (unsigned long long)cfg.seed, threads, lb_augment_name(cfg.augment), cutout_desc,
           (double)cfg.label_smoothing, cfg.prefetch ? "on a background thread" : "on the training thread");
    fflush(stdout);
    lb_train_result res;
    catch_stop_signals();
    cfg.stop = &stop_signal;
    lb_status tst = lb_train(m, &train, &test, &cfg, &res, &err);
    if (tst == LB_ERR_INTERRUPTED) {
        fprintf(stderr, "\nlowbit train: %s\n", err.msg);
        code = 128 + (int)stop_signal;
        goto done;
    }
    if (tst) goto fail;
    printf("done: test accuracy %.2f%% after %d epochs%s, %.1f s (%.0f train images/s), "
           "checkpoint %s/%s",
           100.0 * res.test_acc, res.epochs, cfg.swa_start ? " (the weight average)" : "",
           res.seconds, res.train_images_per_s, cfg.out_dir,
           cfg.swa_start ? "swa.ckpt (the last iterate: last.ckpt)" : "last.ckpt");
    if (res.skipped_steps)
        printf("; %lld steps skipped (NaN/Inf)", (long long)res.skipped_steps);
    printf("\n");
    if (json || lb_cli_get(o, n, "result")) {
        char *jb;
        size_t jl;
        FILE *js = json_begin(&jb, &jl);
        if (js) {
            json_str(js, "model", m->name, true);
            json_str(js, "dataset", train.name, true);
            json_str(js, "out", cfg.out_dir, true);
            json_str(js, "quant", lb_cli_get(o, n, "quant") ? lb_cli_get(o, n, "quant") : "fp32", true);
            json_str(js, "quant_desc", qdesc, true);
            fprintf(js, "\"weight_bytes\":%lld,\"fp32_weight_bytes\":%lld,", (long long)wbytes,
                    (long long)fbytes);
            fprintf(js, "\"test_acc\":%.6f,\"test_loss\":%.6f,\"train_loss\":%.6f,\"train_acc\":%.6f,"
                    "\"epochs\":%d,\"steps\":%lld,\"batch\":%lld,\"threads\":%d,\"seconds\":%.3f,"
                    "\"train_seconds\":%.3f,\"train_images_per_s\":%.1f,\"peak_rss_mb\":%.1f,"
                    "\"data_wait_s\":%.3f,\"data_wait_frac\":%.4f,\"params\":%lld,"
                    "\"skipped_steps\":%lld}\n",
                    res.test_acc, res.test_loss, res.train_loss, res.train_acc, res.epochs,
                    (long long)res.steps, (long long)cfg.batch, threads, res.seconds,
                    res.train_seconds, res.train_images_per_s, res.peak_rss_mb, res.data_wait_s,
                    res.train_seconds > 0 ? res.data_wait_s / res.train_seconds : 0.0,
                    (long long)lb_model_param_count(m), (long long)res.skipped_steps);
        }
        if (json_end(js, &jb, &jl, json, lb_cli_get(o, n, "result"), &err)) goto fail;
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit train: %s\n", err.msg);
done:
    free(qc);
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
    "  --data-in-memory  read the pixels into memory instead of from their file\n"
    "  --batch N         evaluation batch size                             [500]\n"
    "  --threads N       threads                                           [all cores]\n"
    "  --predictions F   also write the predicted class of every test image to F, one per\n"
    "                    line in the dataset's order (to compare other runtimes with)\n"
    "  --json            end stdout with one JSON summary line\n";

static int cmd_eval(int argc, char **argv)
{
    lb_cli_opt o[] = { LB_OPT("data"), LB_OPT("data-dir"), LB_OPT("batch"), LB_OPT("threads"), LB_OPT("predictions"), LB_FLAG("json"),
                       LB_FLAG("data-in-memory") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = lb_cli_parse("eval", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(eval_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return lb_cli_usage("eval", "%s", "needs a checkpoint path");
    long batch = 500, threads = default_threads();
    const char *s;
    if ((s = lb_cli_get(o, n, "batch")) && !lb_cli_long(s, 1, 1 << 20, &batch))
        return lb_cli_usage("eval", "--batch %s: expected 1..1048576", s);
    if ((s = lb_cli_get(o, n, "threads")) && !lb_cli_long(s, 1, 256, &threads))
        return lb_cli_usage("eval", "--threads %s: expected 1..256", s);
    set_threads((int)threads);
    lb_error err = { 0 };
    lb_model *m = NULL;
    lb_ckpt_meta meta;
    lb_dataset test = { 0 };
    int32_t *pred = NULL;
    int code = 1;
    double acc, loss;
    if (lb_checkpoint_load(pos[0], &m, &meta, &err)) goto fail;
    const char *data = lb_cli_get(o, n, "data") ? lb_cli_get(o, n, "data") : meta.dataset[0] ? meta.dataset : "mnist";
    set_in_memory(lb_cli_get(o, n, "data-in-memory") != NULL);
    if (load_split(data, lb_cli_get(o, n, "data-dir"), LB_SPLIT_TEST, &test, &err)) goto fail;
    const char *pred_path = lb_cli_get(o, n, "predictions");
    if (pred_path && !(pred = malloc((size_t)test.n * sizeof *pred))) {
        lb_errorf(&err, LB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const double t0 = lb_now();
    if (lb_predict(m, &test, batch, pred, &acc, &loss, &err)) goto fail;
    const double secs = lb_now() - t0;
    if (pred_path) { /* argmax of the eval-mode logits, first on ties, one per line */
        FILE *f = fopen(pred_path, "w");
        bool ok = f != NULL;
        for (int64_t i = 0; ok && i < test.n; i++) ok = fprintf(f, "%d\n", (int)pred[i]) > 0;
        if (f) ok = fclose(f) == 0 && ok;
        if (!ok) {
            lb_errorf(&err, LB_ERR_IO, "%s: write failed: %s", pred_path, strerror(errno));
            goto fail;
        }
    }
    char qdesc[256];
    quant_desc(&m->qcfg, qdesc, sizeof qdesc);
    int64_t wbytes, fbytes;
    lb_model_weight_bytes(m, &wbytes, &fbytes);
    printf("%s: %s (%s) on %s test set: accuracy %.2f%%, loss %.4f (%lld images, %.2f s)\n",
           pos[0], m->name, qdesc, test.name, 100.0 * acc, loss, (long long)test.n, secs);
    if (lb_cli_get(o, n, "json")) {
        printf("{");
        json_str(stdout, "checkpoint", pos[0], true);
        json_str(stdout, "model", m->name, true);
        json_str(stdout, "dataset", test.name, true);
        json_str(stdout, "quant", qdesc, true);
        printf("\"weight_bytes\":%lld,\"fp32_weight_bytes\":%lld,", (long long)wbytes,
               (long long)fbytes);
        printf("\"test_acc\":%.6f,\"test_loss\":%.6f,\"images\":%lld,\"seconds\":%.3f,"
               "\"images_per_s\":%.1f}\n",
               acc, loss, (long long)test.n, secs, secs > 0 ? (double)test.n / secs : 0.0);
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit eval: %s\n", err.msg);
done:
    free(pred);
    lb_model_free(m);
    lb_dataset_free(&test);
    return code;
}

/* ---- inspect and models ----------------------------------------------------------------- */

/* lowbit inspect MODEL.lbm: the graph, bits and bytes per op, and the file size against the
 * theoretical size (weights at their bits, one float scale and one 32-bit bias per output
 * channel, the input table, and the graph records). */
static lb_status slurp(const char *path, uint8_t **buf, size_t *n, lb_error *err);

static int inspect_lbm(const char *path)
{
    lb_error err = { 0 };
    uint8_t *buf = NULL;
    size_t size = 0;
    if (slurp(path, &buf, &size, &err)) {
        fprintf(stderr, "lowbit inspect: %s\n", err.msg);
        return 1;
    }
    lbm_model m;
    char msg[256];
    lbm_status ls = lbm_load(&m, buf, size, msg, sizeof msg);
    if (ls != LBM_OK) {
        fprintf(stderr, "lowbit inspect: %s: %s (%s)\n", path, msg, lbm_status_str(ls));
        free(buf);
        return 1;
    }
    printf("%s: .lbm version %d, %zu bytes, %u ops, %u tensors, arena %zu bytes\n", path,
           LBM_VERSION_MAJOR, size, m.n_ops, m.n_tensors, lbm_arena_size(&m));
    printf("meta: %.*s", (int)m.meta_size, (const char *)m.meta);
    static const char *const dt[] = { "int8", "uint8", "int32" };
    printf("%-4s %-8s %-14s %-6s %6s %10s %10s\n", "op", "kind", "output", "dtype", "wbits",
           "params", "bytes");
    uint64_t weight_bits = 0, channels = 0, lut = 0;
    for (uint32_t i = 0; i < m.n_ops; i++) {
        lbm_op op;
        lbm_tensor t;
        lbm_get_op(&m, i, &op);
        lbm_get_tensor(&m, op.out, &t);
        char shp[40];
        if (t.n_dims == 3) snprintf(shp, sizeof shp, "%ux%ux%u", t.dims[0], t.dims[1], t.dims[2]);
        else snprintf(shp, sizeof shp, "%u", t.dims[0]);
        uint64_t params = 0;
        char wb[8] = "";
        if (op.kind == LBM_OP_CONV2D || op.kind == LBM_OP_LINEAR) {
            lbm_tensor ti;
            lbm_get_tensor(&m, op.in[0], &ti);
            uint64_t K = (uint64_t)ti.dims[0] * (ti.n_dims == 3 ? (uint64_t)ti.dims[1] * ti.dims[2] : 1);
            if (op.kind == LBM_OP_CONV2D) K = (uint64_t)ti.dims[0] * (uint64_t)op.attr[1] * (uint64_t)op.attr[2];
            params = (uint64_t)op.attr[0] * K;
            weight_bits += params * (uint64_t)op.attr[5];
            channels += (uint64_t)op.attr[0];
            snprintf(wb, sizeof wb, "%d", op.attr[5]);
        }
        if (op.kind == LBM_OP_INPUT) lut += op.data_size;
        printf("%-4u %-8s %-14s %-6s %6s %10llu %10u\n", i, lbm_op_name(op.kind), shp,
               t.dtype <= 2 ? dt[t.dtype] : "?", wb, (unsigned long long)params, op.data_size);
    }
    const uint64_t graph = 64 + 16 * 3 + 16 + 32ull * m.n_tensors + 64ull * m.n_ops + m.meta_size;
    const uint64_t theory = (weight_bits + 7) / 8 + 8 * channels + lut + graph;
    printf("theoretical size (weights at their bits %llu B, float scale and int32 bias per channel "
           "%llu B, input table %llu B, graph and metadata %llu B): %llu bytes; the file is %.1f%% "
           "larger (fixed-point multipliers, shifts, alignment)\n",
           (unsigned long long)((weight_bits + 7) / 8), (unsigned long long)(8 * channels),
           (unsigned long long)lut, (unsigned long long)graph, (unsigned long long)theory,
           100.0 * ((double)size / (double)theory - 1.0));
    free(buf);
    return 0;
}

static const char inspect_help[] =
    "usage: lowbit inspect CKPT|MODEL|FILE.lbm [options]\n"
    "Lists the layers of a checkpoint, a zoo model or a description file: name, kind, output\n"
    "shape, parameters, weight and activation bits, quantizers, and the weight memory at\n"
    "those bits next to FP32 (parameters x bits / 8, scales included).\n"
    "  --quant SPEC|FILE  show the model under this quantization (default: the checkpoint's)\n"
    "  --input C,H,W      input geometry for a zoo model                      [1,28,28]\n"
    "  --classes N        output classes for a zoo model                      [10]\n"
    "  --spec             print the model description text instead\n"
    "  --ranges           print each quantizer's state instead: weight scales (min, median\n"
    "                     and max over channels, and max|w|), activation ranges or\n"
    "                     learned steps, and how many batches the observers have seen\n";

static int cmd_inspect(int argc, char **argv)
{
    lb_cli_opt o[] = { LB_OPT("input"), LB_OPT("classes"), LB_FLAG("spec"), LB_OPT("quant"),
                       LB_FLAG("ranges") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = lb_cli_parse("inspect", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(inspect_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return lb_cli_usage("inspect", "%s", "needs a checkpoint, model name or file");
    lb_error err = { 0 };
    lb_model *m = NULL;
    lb_ckpt_meta meta = { .test_acc = -1 };
    int c = 1, h = 28, w = 28;
    long classes = 10;
    const char *s;
    if ((s = lb_cli_get(o, n, "input")) && sscanf(s, "%d,%d,%d", &c, &h, &w) != 3)
        return lb_cli_usage("inspect", "--input %s: expected C,H,W", s);
    if ((s = lb_cli_get(o, n, "classes")) && !lb_cli_long(s, 1, 100000, &classes))
        return lb_cli_usage("inspect", "--classes %s: expected 1..100000", s);
    lb_qconfig *qc = malloc(sizeof *qc);
    lb_status st = qc ? load_qconfig(lb_cli_get(o, n, "quant"), qc, &err)
                      : lb_errorf(&err, LB_ERR_NOMEM, "out of memory");
    bool is_ckpt = false;
    if (!st && is_file(pos[0])) {
        FILE *f = fopen(pos[0], "rb");
        char magic[4] = { 0 };
        if (f) {
            is_ckpt = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "LBCK", 4);
            fclose(f);
        }
        if (!memcmp(magic, "LBMF", 4)) {
            free(qc);
            return inspect_lbm(pos[0]);
        }
        if (is_ckpt && lb_cli_get(o, n, "quant")) st = model_from_checkpoint(pos[0], qc, &m, &meta, &err);
        else if (is_ckpt) st = lb_checkpoint_load(pos[0], &m, &meta, &err);
        else st = lb_model_build_file(pos[0], qc, &m, &err);
    } else if (!st) {
        st = lb_model_build_zoo(pos[0], c, h, w, (int)classes, qc, &m, &err);
    }
    free(qc);
    if (st) {
        fprintf(stderr, "lowbit inspect: %s\n", err.msg);
        return 1;
    }
    if (lb_cli_get(o, n, "spec")) {
        fputs(m->spec, stdout);
        lb_model_free(m);
        return 0;
    }
    if (lb_cli_get(o, n, "ranges")) {
        lb_cli_inspect_ranges(m, stdout);
        lb_model_free(m);
        return 0;
    }
    char qdesc[256];
    quant_desc(&m->qcfg, qdesc, sizeof qdesc);
    printf("model %s: input %dx%dx%d, %d classes; quantization: %s\n", m->name, m->in_c, m->in_h,
           m->in_w, m->n_classes, qdesc);
    if (is_ckpt)
        printf("checkpoint of %s, epoch %lld, test accuracy %.2f%%\n", meta.dataset,
               (long long)meta.epoch, 100.0 * meta.test_acc);
    printf("%-14s %-8s %-12s %9s %5s %5s %-16s %10s %10s\n", "layer", "kind", "output", "params",
           "wbits", "abits", "quantizers", "fp32 B", "quant B");
    for (int i = 0; i < m->n_nodes; i++) {
        const lb_node *nd = &m->nodes[i];
        char shp[48];
        if (nd->n_dims == 3)
            snprintf(shp, sizeof shp, "%lldx%lldx%lld", (long long)nd->shape[0],
                     (long long)nd->shape[1], (long long)nd->shape[2]);
        else
            snprintf(shp, sizeof shp, "%lld", (long long)nd->shape[0]);
        const int64_t pc = lb_node_param_count(nd);
        if (!pc) {
            printf("%-14s %-8s %-12s\n", nd->name, lb_node_kind_name(nd->kind), shp);
            continue;
        }
        const bool ql = nd->kind == LB_NODE_CONV || nd->kind == LB_NODE_LINEAR;
        char wb[8] = "32", ab[8] = "32", qs[40] = "-";
        int64_t qb = pc * 4;
        if (ql) {
            const lb_tensor *wt = nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
            const int64_t nw = lb_numel(wt);
            if (nd->wq.bits) snprintf(wb, sizeof wb, "%d", nd->wq.bits);
            if (nd->aq.bits) snprintf(ab, sizeof ab, "%d", nd->aq.bits);
            if (nd->wq.bits || nd->aq.bits)
                snprintf(qs, sizeof qs, "%s/%s", nd->wq.bits ? lb_qmethod_name(nd->wq.method) : "-",
                         nd->aq.bits ? lb_qmethod_name(nd->aq.method) : "-");
            qb = (nw * (nd->wq.bits ? nd->wq.bits : 32) + 7) / 8 + (pc - nw) * 4 +
                 lb_quantizer_scale_bytes(&nd->wq);
        }
        printf("%-14s %-8s %-12s %9lld %5s %5s %-16s %10lld %10lld\n", nd->name,
               lb_node_kind_name(nd->kind), shp, (long long)pc, wb, ql ? ab : "", qs,
               (long long)pc * 4, (long long)qb);
    }
    int64_t wbytes, fbytes;
    lb_model_weight_bytes(m, &wbytes, &fbytes);
    const int64_t n_params = lb_model_param_count(m);
    printf("total: %lld parameters (%lld with quantizer steps); weights %.1f KiB at fp32, %.1f KiB "
           "as configured (%.1fx smaller)\n",
           (long long)n_params, (long long)lb_params_count(m->params), (double)fbytes / 1024.0,
           (double)wbytes / 1024.0,
           wbytes ? (double)fbytes / (double)wbytes : 0.0);
    lb_model_free(m);
    return 0;
}

/* ---- ptq --------------------------------------------------------------------------------- */

static const char ptq_help[] =
    "usage: lowbit ptq CKPT --quant SPEC|FILE [options]\n"
    "Post-training quantization: rebuilds the checkpoint's model with the given quantization,\n"
    "calibrates the ranges on training batches without training (weights: their min/max;\n"
    "activations: the observed min/max), evaluates on the test set and writes a quantized\n"
    "checkpoint that lowbit eval and lowbit inspect read.\n"
    "\n"
    "  --quant SPEC|FILE  quantization, as for lowbit train (required)\n"
    "  --calib N          calibration batches from the training set            [20]\n"
    "  --calib-method M   activation ranges: minmax, percentile[:P] (mean over batches of\n"
    "                     the P-th percentile of |x|, P default 99.99) or mse (mean of\n"
    "                     the MSE-optimal clip)                                [minmax]\n"
    "  --batch N          calibration batch size                               [64]\n"
    "  --data NAME        dataset (default: the checkpoint's)\n"
    "  --data-dir DIR     look for the dataset only in DIR\n"
    "  --data-in-memory   read the pixels into memory instead of from their file\n"
    "  --seed N           which training batches calibrate                     [42]\n"
    "  --threads N        threads                                              [all cores]\n"
    "  --out PATH         quantized checkpoint                 [CKPT dir/ptq.ckpt]\n"
    "  --fold-bn          fold batch-norm into the preceding conv before quantizing\n"
    "  --json             end stdout with one JSON summary line\n"
    "  --result FILE      also write that JSON line to FILE, atomically (lowbit ablate)\n";

static int cmd_ptq(int argc, char **argv)
{
    lb_cli_opt o[] = { LB_OPT("quant"), LB_OPT("calib"), LB_OPT("batch"), LB_OPT("data"), LB_OPT("data-dir"), LB_OPT("seed"),
                LB_OPT("threads"), LB_OPT("out"), LB_FLAG("json"), LB_FLAG("fold-bn"), LB_OPT("calib-method"), LB_OPT("result"),
                LB_FLAG("data-in-memory") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = lb_cli_parse("ptq", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(ptq_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return lb_cli_usage("ptq", "%s", "needs a checkpoint path");
    if (!lb_cli_get(o, n, "quant")) return lb_cli_usage("ptq", "%s", "needs --quant");
    long calib = 20, batch = 64, seed = 42, threads = default_threads();
    const char *s;
    if ((s = lb_cli_get(o, n, "calib")) && !lb_cli_long(s, 1, 1 << 20, &calib))
        return lb_cli_usage("ptq", "--calib %s: expected >= 1", s);
    if ((s = lb_cli_get(o, n, "batch")) && !lb_cli_long(s, 1, 1 << 20, &batch))
        return lb_cli_usage("ptq", "--batch %s: expected 1..1048576", s);
    if ((s = lb_cli_get(o, n, "seed")) && !lb_cli_long(s, 0, 2147483647L, &seed))
        return lb_cli_usage("ptq", "--seed %s: expected 0..2^31-1", s);
    if ((s = lb_cli_get(o, n, "threads")) && !lb_cli_long(s, 1, 256, &threads))
        return lb_cli_usage("ptq", "--threads %s: expected 1..256", s);
    set_threads((int)threads);
    lb_error err = { 0 };
    lb_model *m = NULL;
    lb_ckpt_meta meta = { 0 };
    lb_dataset train = { 0 }, test = { 0 };
    lb_qconfig *qc = malloc(sizeof *qc);
    lb_graph *g = lb_graph_new(0);
    float *x = NULL;
    int32_t *y = NULL;
    lb_batcher b = { 0 };
    int code = 1;
    if (!qc || !g) {
        lb_errorf(&err, LB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const double t_start = lb_now();
    if (load_qconfig(lb_cli_get(o, n, "quant"), qc, &err)) goto fail;
    if (model_from_checkpoint(pos[0], qc, &m, &meta, &err)) goto fail;
    const char *data = lb_cli_get(o, n, "data") ? lb_cli_get(o, n, "data") : meta.dataset[0] ? meta.dataset : "mnist";
    set_in_memory(lb_cli_get(o, n, "data-in-memory") != NULL);
    if (load_data(data, lb_cli_get(o, n, "data-dir"), false, &train, &test, &err)) goto fail;
    double fp_acc, fp_loss, acc, loss;
    {   /* the float model's accuracy, for comparison: quantizers bypassed by a float copy */
        lb_model *fm = NULL;
        if (model_from_checkpoint(pos[0], NULL, &fm, NULL, &err)) goto fail;
        lb_status st = lb_evaluate(fm, &test, 500, &fp_acc, &fp_loss, &err);
        lb_model_free(fm);
        if (st) goto fail;
    }
    /* calibrate: eval mode (batch-norm uses running statistics), observers update */
    const double t0 = lb_now();
    if (lb_batcher_init(&b, &train, batch, true, (uint64_t)seed, &err)) goto fail;
    x = malloc((size_t)(batch * train.c * train.h * train.w) * sizeof *x);
    y = malloc((size_t)batch * sizeof *y);
    if (!x || !y) {
        lb_errorf(&err, LB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (lb_cli_get(o, n, "fold-bn")) lb_model_fold_bn(m);
    if ((s = lb_cli_get(o, n, "calib-method"))) {
        float pct = 99.99f;
        if (!strcmp(s, "minmax")) lb_model_set_calibration(m, LB_CALIB_MINMAX, 0);
        else if (!strcmp(s, "mse")) lb_model_set_calibration(m, LB_CALIB_MSE, 0);
        else if (!strncmp(s, "percentile", 10) &&
                 (s[10] == 0 || (s[10] == ':' && lb_cli_float(s + 11, 0.0f, 100.0f, &pct))))
            lb_model_set_calibration(m, LB_CALIB_PERCENTILE, pct);
        else {
            code = lb_cli_usage("ptq", "--calib-method %s: expected minmax, percentile[:P] or mse", s);
            goto done;
        }
    }
    m->calibrating = true;
    lb_graph_set_training(g, false);
    lb_graph_set_grad_enabled(g, false);
    lb_batcher_start_epoch(&b);
    for (long i = 0; i < calib; i++) {
        int64_t got = lb_batcher_next(&b, x, y);
        if (got < 0 && lb_batcher_status(&b, &err)) goto fail; /* a streamed file failed */
        if (got <= 0) break;
        lb_graph_reset(g);
        lb_tensor *xt = lb_leaf_from(g, x, (int64_t[]){ got, train.c, train.h, train.w }, 4, false);
        lb_model_forward(m, g, xt, NULL);
        if (lb_graph_status(g, &err)) goto fail;
    }
    m->calibrating = false;
    const double calib_s = lb_now() - t0;
    if (lb_evaluate(m, &test, 500, &acc, &loss, &err)) goto fail;
    char out[4096];
    if (lb_cli_get(o, n, "out")) {
        snprintf(out, sizeof out, "%s", lb_cli_get(o, n, "out"));
    } else {
        snprintf(out, sizeof out, "%s", pos[0]);
        char *slash = strrchr(out, '/');
        snprintf(slash ? slash + 1 : out, sizeof out - (size_t)(slash ? slash + 1 - out : 0), "ptq.ckpt");
    }
    meta.test_acc = acc;
    if (lb_checkpoint_save(out, m, &meta, false, &err)) goto fail;
    char qdesc[256];
    quant_desc(&m->qcfg, qdesc, sizeof qdesc);
    int64_t wbytes, fbytes;
    lb_model_weight_bytes(m, &wbytes, &fbytes);
    printf("lowbit ptq: %s, %s, calibrated on %ld batches of %ld (%.2f s)\n"
           "test accuracy %.2f%% (float %.2f%%), weights %.1f KiB (float %.1f KiB); wrote %s\n",
           m->name, qdesc, calib, batch, calib_s, 100.0 * acc, 100.0 * fp_acc,
           (double)wbytes / 1024.0, (double)fbytes / 1024.0, out);
    if (lb_cli_get(o, n, "json") || lb_cli_get(o, n, "result")) {
        char *jb;
        size_t jl;
        FILE *js = json_begin(&jb, &jl);
        if (js) {
            json_str(js, "checkpoint", out, true);
            json_str(js, "model", m->name, true);
            json_str(js, "dataset", test.name, true);
            json_str(js, "quant", lb_cli_get(o, n, "quant"), true);
            json_str(js, "quant_desc", qdesc, true);
            fprintf(js, "\"test_acc\":%.6f,\"test_loss\":%.6f,\"float_test_acc\":%.6f,"
                    "\"calib_batches\":%ld,\"weight_bytes\":%lld,\"fp32_weight_bytes\":%lld,"
                    "\"seconds\":%.3f}\n",
                    acc, loss, fp_acc, calib, (long long)wbytes, (long long)fbytes,
                    lb_now() - t_start);
        }
        if (json_end(js, &jb, &jl, lb_cli_get(o, n, "json") != NULL, lb_cli_get(o, n, "result"), &err))
            goto fail;
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit ptq: %s\n", err.msg);
done:
    lb_batcher_free(&b);
    free(x);
    free(y);
    free(qc);
    lb_graph_free(g);
    lb_model_free(m);
    lb_dataset_free(&train);
    lb_dataset_free(&test);
    return code;
}

/* ---- export, run ------------------------------------------------------------------------ */

static const char export_help[] =
    "usage: lowbit export CKPT --out FILE [options]\n"
    "Writes a quantized checkpoint for the integer-only runtime (docs/FORMAT.md), or as ONNX\n"
    "for ONNX Runtime and other tools. Every conv/linear layer must be quantized (train with\n"
    "--quant or run lowbit ptq first).\n"
    "\n"
    "  --out FILE        the model file                                       (required)\n"
    "  --format F        lbm (the .lbm file), c (FILE.h and FILE.c holding the .lbm bytes\n"
    "                    as a const array, for microcontrollers) or onnx (opset 21 with\n"
    "                    QuantizeLinear/DequantizeLinear; int4 weights and activations up\n"
    "                    to 4 bits, int8 above; uint8 pixels in, logits out)   [lbm]\n"
    "  --data NAME       dataset whose normalisation the model expects  [the checkpoint's]\n";

/* Reads a whole file into a malloc'd (16-byte aligned) buffer; at most 256 MiB. */
static lb_status slurp(const char *path, uint8_t **buf, size_t *n, lb_error *err)
{
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    lb_status st = LB_OK;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0 || sb.st_size > (256 << 20)) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: not a regular file of at most 256 MiB", path);
    } else if (!(*buf = malloc((size_t)sb.st_size + 1))) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path);
    } else if (fread(*buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        st = lb_errorf(err, LB_ERR_IO, "%s: short read", path);
        free(*buf);
        *buf = NULL;
    }
    *n = (size_t)sb.st_size;
    fclose(f);
    return st;
}

static lb_status write_c_array(const char *base, const uint8_t *file, size_t size, lb_error *err)
{
    char path[4096], name[256];
    const char *slash = strrchr(base, '/'), *file_base = slash ? slash + 1 : base;
    /* the .c includes the .h by its file name; C identifiers use the name sanitized */
    if (strpbrk(file_base, "\"\\\n") || !*file_base)
        return lb_errorf(err, LB_ERR_ARG, "%s: the output name must be non-empty, without "
                         "quotes, backslashes or newlines", base);
    snprintf(name, sizeof name, "%s", file_base);
    for (char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) *p = '_';
    snprintf(path, sizeof path, "%s.h", base);
    FILE *h = fopen(path, "w");
    if (!h) return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(h, "/* %s.h: a lowbit model (.lbm, docs/FORMAT.md) as a const array; generated by "
               "lowbit export --format c. Load it with lbm_load(&m, %s_lbm, %s_lbm_size, ...). */\n"
               "#ifndef %s_LBM_H\n#define %s_LBM_H\n#include <stddef.h>\n#include <stdint.h>\n"
               "extern const uint8_t %s_lbm[];\nextern const size_t %s_lbm_size;\n#endif\n",
            name, name, name, name, name, name, name);
    bool ok = fclose(h) == 0;
    snprintf(path, sizeof path, "%s.c", base);
    FILE *c = fopen(path, "w");
    if (!c) return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(c, "/* %s.c: generated by lowbit export --format c; %zu bytes. */\n#include \"%s.h\"\n\n"
               "_Alignas(16) const uint8_t %s_lbm[%zu] = {\n", file_base, size, file_base, name, size);
    for (size_t i = 0; i < size; i++) fprintf(c, "%s0x%02x,%s", i % 16 ? "" : "    ", file[i], i % 16 == 15 ? "\n" : "");
    fprintf(c, "\n};\nconst size_t %s_lbm_size = %zu;\n", name, size);
    ok = fclose(c) == 0 && ok;
    return ok ? LB_OK : lb_errorf(err, LB_ERR_IO, "%s: write failed", path);
}

static int cmd_export(int argc, char **argv)
{
    lb_cli_opt o[] = { LB_OPT("out"), LB_OPT("format"), LB_OPT("data") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = lb_cli_parse("export", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(export_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return lb_cli_usage("export", "%s", "needs a checkpoint path");
    const char *out = lb_cli_get(o, n, "out"), *format = lb_cli_get(o, n, "format") ? lb_cli_get(o, n, "format") : "lbm";
    if (!out) return lb_cli_usage("export", "%s", "needs --out FILE");
    if (strcmp(format, "lbm") && strcmp(format, "c") && strcmp(format, "onnx"))
        return lb_cli_usage("export", "--format %s: expected lbm, c or onnx", format);
    lb_error err = { 0 };
    lb_model *m = NULL;
    lb_ckpt_meta meta;
    uint8_t *file = NULL;
    size_t size = 0;
    int code = 1;
    if (lb_checkpoint_load(pos[0], &m, &meta, &err)) goto fail;
    const char *data = lb_cli_get(o, n, "data") ? lb_cli_get(o, n, "data") : meta.dataset;
    lb_export_opts eo = lb_export_opts_for(data);
    eo.test_acc = meta.test_acc;
    if (!strcmp(format, "onnx") ? lb_export_onnx(m, &eo, &file, &size, &err)
                                : lb_export_lbm(m, &eo, &file, &size, &err))
        goto fail;
    if (!strcmp(format, "c")) {
        if (write_c_array(out, file, size, &err)) goto fail;
    } else {
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(file, 1, size, f) != size || fclose(f) != 0) {
            lb_errorf(&err, LB_ERR_IO, "%s: write failed: %s", out, strerror(errno));
            goto fail;
        }
    }
    int64_t wbytes, fbytes;
    lb_model_weight_bytes(m, &wbytes, &fbytes);
    printf("lowbit export: %s -> %s%s (%zu bytes; weights at their bits with scales and biases: "
           "%lld bytes; fp32 weights: %lld bytes)\n",
           pos[0], out, strcmp(format, "c") ? "" : ".c/.h", size, (long long)wbytes,
           (long long)fbytes);
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit export: %s\n", err.msg);
done:
    free(file);
    lb_model_free(m);
    return code;
}

static const char run_help[] =
    "usage: lowbit run MODEL.lbm [options]\n"
    "Runs the integer-only runtime over a test set, one image at a time on one thread, and\n"
    "reports accuracy and images/s; with --compare, also the agreement of its predictions\n"
    "with the training framework's quantized evaluation of a checkpoint.\n"
    "\n"
    "  --data NAME       dataset                                    [the model's META]\n"
    "  --data-dir DIR    look for the dataset only in DIR\n"
    "  --data-in-memory  read the pixels into memory instead of from their file\n"
    "  --compare CKPT    the checkpoint the model was exported from\n"
    "  --limit N         only the first N test images\n"
    "  --json            end stdout with one JSON summary line\n";

static int cmd_run(int argc, char **argv)
{
    lb_cli_opt o[] = { LB_OPT("data"), LB_OPT("data-dir"), LB_OPT("compare"), LB_OPT("limit"), LB_FLAG("json"),
                       LB_FLAG("data-in-memory") };
    const int n = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    int n_pos, rc = lb_cli_parse("run", argc, argv, o, n, pos, 1, &n_pos);
    if (rc == -1) return fputs(run_help, stdout), 0;
    if (rc) return rc;
    if (n_pos != 1) return lb_cli_usage("run", "%s", "needs a .lbm model");
    long limit = 0;
    const char *s;
    if ((s = lb_cli_get(o, n, "limit")) && !lb_cli_long(s, 1, 1L << 30, &limit))
        return lb_cli_usage("run", "--limit %s: expected >= 1", s);
    lb_error err = { 0 };
    uint8_t *buf = NULL, *arena = NULL, *pix = NULL;
    size_t size = 0;
    lbm_model lm;
    lb_dataset test = { 0 };
    lb_model *ref = NULL;
    int32_t *rpred = NULL;
    int code = 1;
    char msg[256], data[64] = "mnist";
    if (slurp(pos[0], &buf, &size, &err)) goto fail;
    lbm_status ls = lbm_load(&lm, buf, size, msg, sizeof msg);
    if (ls != LBM_OK) {
        lb_errorf(&err, LB_ERR_FORMAT, "%s: %s (%s)", pos[0], msg, lbm_status_str(ls));
        goto fail;
    }
    size_t len;
    const char *v = lbm_meta(&lm, "dataset", &len);
    if (v && len < sizeof data) memcpy(data, v, len), data[len] = 0;
    if (lb_cli_get(o, n, "data")) snprintf(data, sizeof data, "%s", lb_cli_get(o, n, "data"));
    set_in_memory(lb_cli_get(o, n, "data-in-memory") != NULL);
    if (load_split(data, lb_cli_get(o, n, "data-dir"), LB_SPLIT_TEST, &test, &err)) goto fail;
    if ((uint64_t)test.c * test.h * test.w != lm.input_bytes) {
        lb_errorf(&err, LB_ERR_SHAPE, "%s: model input is %u bytes, %s images are %dx%dx%d", pos[0],
                  lm.input_bytes, test.name, test.c, test.h, test.w);
        goto fail;
    }
    const int64_t N = limit && limit < test.n ? limit : test.n;
    if (lb_cli_get(o, n, "compare")) {
        if (lb_checkpoint_load(lb_cli_get(o, n, "compare"), &ref, NULL, &err)) goto fail;
        rpred = malloc((size_t)test.n * sizeof *rpred);
        if (!rpred) {
            lb_errorf(&err, LB_ERR_NOMEM, "out of memory");
            goto fail;
        }
        double ref_acc, ref_loss;
        if (lb_predict(ref, &test, 500, rpred, &ref_acc, &ref_loss, &err)) goto fail;
    }
    const size_t arena_bytes = lbm_arena_size(&lm);
    arena = aligned_alloc(16, (arena_bytes + 15) / 16 * 16 + 16);
    pix = malloc(lm.input_bytes); /* a streamed image is read into it */
    if (!arena || !pix) {
        lb_errorf(&err, LB_ERR_NOMEM, "out of memory for the %zu-byte arena", arena_bytes);
        goto fail;
    }
    int64_t correct = 0, agree = 0, ref_correct = 0;
    const double t0 = lb_now();
    for (int64_t i = 0; i < N; i++) {
        int pred;
        const uint8_t *img = lb_dataset_pixels(&test, i, pix, &err);
        if (!img) goto fail;
        ls = lbm_run(&lm, img, arena, arena_bytes, NULL, &pred);
        if (ls != LBM_OK) {
            lb_errorf(&err, LB_ERR_ARG, "%s: run failed on image %lld: %s", pos[0], (long long)i,
                      lbm_status_str(ls));
            goto fail;
        }
        correct += pred == test.labels[i];
        if (rpred) {
            agree += pred == rpred[i];
            ref_correct += rpred[i] == test.labels[i];
        }
    }
    const double secs = lb_now() - t0;
    printf("%s: %lld %s test images, accuracy %.2f%%, %.0f images/s (one thread), arena %zu bytes, "
           "file %zu bytes\n",
           pos[0], (long long)N, test.name, 100.0 * (double)correct / (double)N, (double)N / secs,
           arena_bytes, size);
    if (rpred)
        printf("agreement with %s: %.2f%% of predictions (framework accuracy %.2f%%)\n",
               lb_cli_get(o, n, "compare"), 100.0 * (double)agree / (double)N,
               100.0 * (double)ref_correct / (double)N);
    if (lb_cli_get(o, n, "json")) {
        printf("{");
        json_str(stdout, "model", pos[0], true);
        json_str(stdout, "dataset", test.name, true);
        printf("\"images\":%lld,\"test_acc\":%.6f,\"images_per_s\":%.1f,\"arena_bytes\":%zu,"
               "\"file_bytes\":%zu",
               (long long)N, (double)correct / (double)N, (double)N / secs, arena_bytes, size);
        if (rpred)
            printf(",\"agreement\":%.6f,\"framework_test_acc\":%.6f", (double)agree / (double)N,
                   (double)ref_correct / (double)N);
        printf("}\n");
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit run: %s\n", err.msg);
done:
    free(buf);
    free(arena);
    free(pix);
    free(rpred);
    lb_model_free(ref);
    lb_dataset_free(&test);
    return code;
}

static int cmd_models(void)
{
    for (const char *const *z = lb_zoo_names(); *z; z++) {
        lb_model *m;
        lb_error err;
        const bool rgb = !strcmp(*z, "vgg-small") || !strcmp(*z, "resnet20");
        if (lb_model_build_zoo(*z, rgb ? 3 : 1, rgb ? 32 : 28, rgb ? 32 : 28, 10, NULL, &m, &err)) {
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
    "  eval       evaluate a checkpoint on a test set (quantized as it was trained)\n"
    "  ptq        post-training quantization of a checkpoint\n"
    "  export     write a quantized checkpoint for deployment (.lbm, C array, ONNX)\n"
    "  run        run an exported .lbm model over a test set\n"
    "  inspect    list the layers of a checkpoint, zoo model, description file or .lbm\n"
    "  sensitivity  per-layer quantization sensitivity and Hessian traces of a checkpoint\n"
    "  mixed      per-layer bits under a weight-memory budget (writes a --quant file)\n"
    "  ablate     run a bit-width ablation grid; tables and plots (docs/ablate.md)\n"
    "  hist       per-layer weight histograms before and after quantization (PNG)\n"
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
    if (!strcmp(cmd, "ptq")) return cmd_ptq(argc - 2, argv + 2);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 2, argv + 2);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "models")) return cmd_models();
    if (!strcmp(cmd, "sensitivity")) return lb_cmd_sensitivity(argc - 2, argv + 2);
    if (!strcmp(cmd, "mixed")) return lb_cmd_mixed(argc - 2, argv + 2);
    if (!strcmp(cmd, "ablate")) return lb_cmd_ablate(argv[0], argc - 2, argv + 2);
    if (!strcmp(cmd, "hist")) return lb_cmd_hist(argc - 2, argv + 2);
    fprintf(stderr, "lowbit: unknown command '%s'\n%s", cmd, main_help);
    return 2;
}
