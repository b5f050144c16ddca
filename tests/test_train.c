/* test_train.c: checkpoints and the training loop; main() of test_train (the optimizer and
 * schedule tests are in test_train_optim.c). Uses small synthetic datasets built in memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "datasets/datasets_impl.h"
#include "train/checkpoint.h"
#include "train/loop.h"
#include "tests/quadrants.h"
#include "tests/suites.h"

/* The quadrants toy problem (tests/quadrants.h), noise 100, quadrant +150. */
static void toy_dataset(lb_dataset *ds, int64_t n, uint64_t seed)
{
    quadrants_dataset(ds, "toy", n, seed, 100, 150);
}

static const char *toy_spec = "model toy\ninput 1 8 8\nconv name=c1 out=4 k=3 pad=1\nbn name=bn1\n"
                              "relu\nmaxpool k=2\nflatten\ndropout p=0.1\nlinear name=fc out=4\n";

static char *tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/lb_train_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static lb_model *toy_model(uint64_t seed)
{
    lb_model *m;
    lb_error err = { 0 };
    ck_assert_msg(lb_model_build(toy_spec, "toy", NULL, &m, &err) == LB_OK, "%s", err.msg);
    lb_model_init_weights(m, seed);
    return m;
}

/* Loads <dir>/<file> (a run's checkpoint), failing the test on an error. */
static lb_model *load_run_ckpt(const char *dir, const char *file, lb_ckpt_meta *meta)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    lb_model *m = NULL;
    lb_error err = { 0 };
    ck_assert_msg(lb_checkpoint_load(path, &m, meta, &err) == LB_OK, "%s", err.msg);
    return m;
}

static lb_train_cfg toy_cfg(const char *out)
{
    lb_train_cfg c = lb_train_cfg_default();
    c.epochs = 3, c.batch = 16, c.eval_batch = 50, c.out_dir = out, c.dataset = "toy";
    c.sched.lr_max = 0.05f;
    return c;
}

START_TEST(test_train_learns_and_checkpoints)
{
    lb_dataset tr, te;
    toy_dataset(&tr, 400, 1);
    toy_dataset(&te, 200, 2);
    lb_model *m = toy_model(5);
    const char *dir = tmpdir();
    lb_train_cfg cfg = toy_cfg(dir);
    lb_train_result res;
    lb_error err = { 0 };
    ck_assert_msg(lb_train(m, &tr, &te, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(res.epochs, 3);
    ck_assert_int_eq(res.steps, 3 * (400 / 16));
    ck_assert_msg(res.test_acc > 0.95, "toy test acc %g", res.test_acc);
    ck_assert(res.train_images_per_s > 0 && res.peak_rss_mb > 0);
    /* evaluation of the saved checkpoint reproduces the run's final accuracy */
    char path[128];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    lb_model *back;
    lb_ckpt_meta meta;
    ck_assert_msg(lb_checkpoint_load(path, &back, &meta, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(meta.epoch, 3);
    ck_assert_int_eq(meta.step, res.steps);
    ck_assert_str_eq(meta.dataset, "toy");
    ck_assert_double_eq_tol(meta.test_acc, res.test_acc, 1e-12);
    ck_assert_ptr_nonnull(back->params->m); /* moments saved for resuming */
    ck_assert_int_eq(memcmp(back->params->values, m->params->values,
                            (size_t)m->params->total * sizeof(float)), 0);
    double acc, loss;
    ck_assert_int_eq(lb_evaluate(back, &te, 64, &acc, &loss, &err), LB_OK);
    ck_assert_double_eq_tol(acc, res.test_acc, 1e-12);
    /* metrics: one JSON line per epoch */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int lines = 0;
    char line[1024];
    while (fgets(line, sizeof line, f))
        lines += strstr(line, "\"test_acc\"") != NULL && strstr(line, "\"data_wait_s\"") != NULL;
    fclose(f);
    ck_assert_int_eq(lines, 3);
    ck_assert(res.data_wait_s >= 0 && res.data_wait_s <= res.train_seconds);
    lb_model_free(back);
    lb_model_free(m);
    lb_dataset_free(&tr);
    lb_dataset_free(&te);
}
END_TEST

/* Same seed (and thread count) -> bit-identical weights. */
START_TEST(test_train_deterministic)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    float *w[2];
    for (int k = 0; k < 2; k++) {
        lb_model *m = toy_model(9);
        lb_train_cfg cfg = toy_cfg(NULL);
        cfg.epochs = 2;
        lb_train_result res;
        lb_error err = { 0 };
        ck_assert_int_eq(lb_train(m, &tr, NULL, &cfg, &res, &err), LB_OK);
        w[k] = malloc((size_t)m->params->total * sizeof(float));
        memcpy(w[k], m->params->values, (size_t)m->params->total * sizeof(float));
        if (k == 1) ck_assert_int_eq(memcmp(w[0], w[1], (size_t)m->params->total * sizeof(float)), 0);
        lb_model_free(m);
    }
    free(w[0]);
    free(w[1]);
    lb_dataset_free(&tr);
}
END_TEST

/* An interrupted run resumed from its checkpoint ends with the same weights, bit for bit, as
 * the run that was never interrupted (same seed and thread count; dropout included). */
START_TEST(test_train_resume_exact)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    lb_error err = { 0 };
    lb_train_result res;
    /* 1. uninterrupted, 3 epochs */
    lb_model *full = toy_model(9);
    lb_train_cfg cfg = toy_cfg(NULL);
    ck_assert_int_eq(lb_train(full, &tr, NULL, &cfg, &res, &err), LB_OK);
    /* 2. stopped after epoch 2 ... */
    const char *dir = tmpdir();
    lb_model *part = toy_model(9);
    cfg = toy_cfg(dir);
    cfg.stop_after_epoch = 2;
    ck_assert_int_eq(lb_train(part, &tr, NULL, &cfg, &res, &err), LB_OK);
    ck_assert_int_eq(res.epochs, 2);
    lb_model_free(part);
    /* ... and resumed from its checkpoint */
    lb_ckpt_meta meta;
    lb_model *resumed = load_run_ckpt(dir, "last.ckpt", &meta);
    ck_assert_int_eq(meta.epoch, 2);
    cfg = toy_cfg(dir);
    cfg.resume = &meta;
    ck_assert_msg(lb_train(resumed, &tr, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(res.epochs, 3);
    ck_assert_int_eq(res.steps, 3 * (200 / 16));
    ck_assert_int_eq(memcmp(full->params->values, resumed->params->values,
                            (size_t)full->params->total * sizeof(float)), 0);
    lb_model_free(full);
    lb_model_free(resumed);
    lb_dataset_free(&tr);
}
END_TEST

/* bn1's running variance (4 channels) after lb_update_bn at the given batch size. */
static void update_bn_var(lb_model *m, const lb_dataset *ds, int64_t batch, float var[4])
{
    lb_error err = { 0 };
    ck_assert_msg(lb_update_bn(m, ds, batch, &err) == LB_OK, "%s", err.msg);
    for (int i = 0; i < m->params->n; i++)
        if (!strcmp(m->params->t[i]->name, "bn1.running_var")) {
            memcpy(var, m->params->t[i]->data, 4 * sizeof(float));
            return;
        }
    ck_abort_msg("no bn1.running_var");
}

/* lb_update_bn on a data set stored class by class (as image folders and CIFAR-10's JPEG copy
 * are): 4 classes of flat images 50 grey levels apart, plus a little noise, so that a batch of
 * one class has almost no variance and nearly all of it is between classes. Its batches are
 * shuffled, so the running variance at batch 10 comes near the whole set's (one batch of 200);
 * in order it would be under 1% of it. The pass is the same every time. */
START_TEST(test_update_bn_class_sorted)
{
    lb_dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.name, sizeof ds.name, "sorted");
    snprintf(ds.source, sizeof ds.source, "memory");
    ds.n = 200, ds.c = 1, ds.h = 8, ds.w = 8, ds.n_classes = 4;
    ds.images = malloc((size_t)ds.n * 64);
    ds.labels = malloc((size_t)ds.n * sizeof(int32_t));
    ck_assert(ds.images && ds.labels);
    ds.mean[0] = 0.5f, ds.std[0] = 0.25f;
    lb_rng r = lb_rng_make(3);
    for (int64_t i = 0; i < ds.n; i++) {
        const int k = (int)(i * 4 / ds.n);
        ds.labels[i] = k;
        for (int p = 0; p < 64; p++)
            ds.images[i * 64 + p] = (uint8_t)(40 + 50 * k + (int)lb_rng_below(&r, 10));
    }
    lb_model *m;
    lb_error err = { 0 };
    ck_assert_msg(lb_model_build("model flat\ninput 1 8 8\nconv name=c1 out=4 k=3\nbn name=bn1\n"
                                 "relu\nflatten\nlinear name=fc out=4\n", "flat", NULL, &m, &err)
                      == LB_OK, "%s", err.msg);
    lb_model_init_weights(m, 5);
    float whole[4], b10[4], again[4];
    update_bn_var(m, &ds, 200, whole);
    update_bn_var(m, &ds, 10, b10);
    update_bn_var(m, &ds, 10, again);
    for (int c = 0; c < 4; c++) {
        ck_assert_msg(whole[c] > 1e-3f, "channel %d: variance %g", c, (double)whole[c]);
        ck_assert_msg(b10[c] > 0.7f * whole[c] && b10[c] < 1.3f * whole[c],
                      "channel %d: %g at batch 10, %g over the whole set", c, (double)b10[c],
                      (double)whole[c]);
    }
    ck_assert_mem_eq(b10, again, sizeof b10);
    lb_model_free(m);
    lb_dataset_free(&ds);
}
END_TEST

/* true for a batch-norm running statistic (recomputed, not averaged, by weight averaging) */
static bool is_bn_stat(const lb_tensor *t)
{
    const char *d = strrchr(t->name, '.');
    return d && (!strcmp(d, ".running_mean") || !strcmp(d, ".running_var"));
}

/* Weight averaging from epoch 2 of 3: every parameter is w2 + (w3 - w2) / 2 of the plain run's
 * iterates after epochs 2 and 3, bit for bit; the batch-norm statistics are recomputed over
 * the training set (lb_update_bn: with one batch, exactly that batch's mean); swa.ckpt holds
 * the result and its accuracy; a run stopped after epoch 2 and resumed ends the same, bit for
 * bit; a resumed run whose swa.ckpt is missing, an averaging start past the last epoch and
 * averaging with BN folding are refused. */
START_TEST(test_train_swa)
{
    lb_dataset tr, te;
    toy_dataset(&tr, 200, 1);
    toy_dataset(&te, 100, 2);
    lb_error err = { 0 };
    lb_train_result res;
    const size_t bytes_of = sizeof(float);
    /* the plain run's iterates after epochs 2 and 3 */
    lb_model *plain = toy_model(9);
    lb_train_cfg cfg = toy_cfg(NULL);
    cfg.stop_after_epoch = 2;
    ck_assert_int_eq(lb_train(plain, &tr, NULL, &cfg, &res, &err), LB_OK);
    const int64_t total = plain->params->total;
    float *w2 = malloc((size_t)total * bytes_of), *w3 = malloc((size_t)total * bytes_of);
    memcpy(w2, plain->params->values, (size_t)total * bytes_of);
    lb_model_free(plain);
    plain = toy_model(9);
    cfg = toy_cfg(NULL);
    ck_assert_int_eq(lb_train(plain, &tr, NULL, &cfg, &res, &err), LB_OK);
    memcpy(w3, plain->params->values, (size_t)total * bytes_of);
    lb_model_free(plain);
    ck_assert(memcmp(w2, w3, (size_t)total * bytes_of) != 0);
    /* the averaged run */
    const char *dir = tmpdir();
    lb_model *swa = toy_model(9);
    cfg = toy_cfg(dir);
    cfg.swa_start = 2;
    ck_assert_msg(lb_train(swa, &tr, &te, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(res.epochs, 3);
    int n_stats = 0;
    for (int i = 0; i < swa->params->n; i++) {
        const lb_tensor *t = swa->params->t[i];
        const int64_t off = t->data - swa->params->values;
        if (is_bn_stat(t)) {
            n_stats++;
            continue;
        }
        for (int64_t j = 0; j < lb_numel(t); j++) {
            const float a = w2[off + j], want = a + (w3[off + j] - a) / 2.0f;
            ck_assert_msg(memcmp(&t->data[j], &want, sizeof want) == 0, "%s[%lld]", t->name,
                          (long long)j);
        }
    }
    ck_assert_int_eq(n_stats, 2);
    /* res is the average's accuracy, and swa.ckpt holds it */
    double acc, loss;
    ck_assert_int_eq(lb_evaluate(swa, &te, 50, &acc, &loss, &err), LB_OK);
    ck_assert_double_eq(acc, res.test_acc);
    lb_ckpt_meta meta;
    lb_model *saved = load_run_ckpt(dir, "swa.ckpt", &meta);
    ck_assert_int_eq(meta.epoch, 3);
    ck_assert_double_eq(meta.test_acc, acc);
    ck_assert_mem_eq(saved->params->values, swa->params->values, (size_t)total * bytes_of);
    /* lb_update_bn with the whole set as one batch: the running mean is that batch's mean,
     * which the average over 4 batches of 50 matches to rounding */
    ck_assert_int_eq(lb_update_bn(saved, &tr, 200, &err), LB_OK);
    const lb_tensor *rm_one = NULL;
    for (int i = 0; i < saved->params->n; i++)
        if (!strcmp(saved->params->t[i]->name, "bn1.running_mean")) rm_one = saved->params->t[i];
    ck_assert_ptr_nonnull(rm_one);
    float rm1[4];
    memcpy(rm1, rm_one->data, sizeof rm1);
    ck_assert_int_eq(lb_update_bn(saved, &tr, 50, &err), LB_OK);
    for (int c = 0; c < 4; c++) {
        ck_assert(rm1[c] != 0.0f);
        ck_assert_float_eq_tol(rm_one->data[c], rm1[c], 1e-5f * (1.0f + fabsf(rm1[c])));
    }
    lb_model_free(saved);
    /* stopped after epoch 2 and resumed: the same average, statistics and all */
    const char *dir2 = tmpdir();
    lb_model *part = toy_model(9);
    cfg = toy_cfg(dir2);
    cfg.swa_start = 2;
    cfg.stop_after_epoch = 2;
    ck_assert_int_eq(lb_train(part, &tr, &te, &cfg, &res, &err), LB_OK);
    lb_model_free(part);
    lb_model *resumed = load_run_ckpt(dir2, "last.ckpt", &meta);
    cfg = toy_cfg(dir2);
    cfg.swa_start = 2;
    cfg.resume = &meta;
    ck_assert_msg(lb_train(resumed, &tr, &te, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_mem_eq(resumed->params->values, swa->params->values, (size_t)total * bytes_of);
    lb_model_free(resumed);
    /* resuming without the average it needs */
    char path[160];
    snprintf(path, sizeof path, "%s/swa.ckpt", dir2);
    ck_assert_int_eq(unlink(path), 0);
    resumed = load_run_ckpt(dir2, "last.ckpt", &meta);
    cfg = toy_cfg(dir2);
    cfg.swa_start = 2;
    cfg.resume = &meta;
    ck_assert_int_ne(lb_train(resumed, &tr, &te, &cfg, &res, &err), LB_OK);
    ck_assert_msg(strstr(err.msg, "swa.ckpt") != NULL, "%s", err.msg);
    lb_model_free(resumed);
    /* refused settings */
    cfg = toy_cfg(NULL);
    cfg.swa_start = 4;
    ck_assert_int_eq(lb_train(swa, &tr, NULL, &cfg, &res, &err), LB_ERR_ARG);
    cfg.swa_start = 2;
    cfg.fold_bn_epoch = 2;
    ck_assert_int_eq(lb_train(swa, &tr, NULL, &cfg, &res, &err), LB_ERR_ARG);
    lb_model_free(swa);
    free(w2);
    free(w3);
    lb_dataset_free(&tr);
    lb_dataset_free(&te);
}
END_TEST

/* Stopped in the middle of an epoch (as by SIGINT) and resumed: still bit-identical.
 * _i = 0: as by default (batches prefetched, no augmentation); 1: with crop-flip
 * augmentation; 2: augmentation, and the uninterrupted run prepares its batches on the
 * training thread while the interrupted and resumed ones prefetch them. */
static lb_train_cfg variant_cfg(const char *out, int variant, bool full)
{
    lb_train_cfg c = toy_cfg(out);
    c.augment = variant >= 1 ? LB_AUGMENT_CROP_FLIP : LB_AUGMENT_NONE;
    c.prefetch = !(variant == 2 && full);
    return c;
}

START_TEST(test_train_interrupt_mid_epoch)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    lb_error err = { 0 };
    lb_train_result res;
    lb_model *full = toy_model(4);
    lb_train_cfg cfg = variant_cfg(NULL, _i, true);
    ck_assert_int_eq(lb_train(full, &tr, NULL, &cfg, &res, &err), LB_OK);
    const char *dir = tmpdir();
    lb_model *part = toy_model(4);
    cfg = variant_cfg(dir, _i, false);
    cfg.stop_after_step = 17; /* epoch 2 has steps 13..24 */
    ck_assert_int_eq(lb_train(part, &tr, NULL, &cfg, &res, &err), LB_ERR_INTERRUPTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "--resume"));
    lb_model_free(part);
    char path[128];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    lb_ckpt_meta meta;
    lb_model *resumed;
    ck_assert_int_eq(lb_checkpoint_load(path, &resumed, &meta, &err), LB_OK);
    ck_assert_int_eq(meta.epoch, 1);
    ck_assert_int_eq(meta.epoch_step, 5);
    ck_assert_int_eq(meta.step, 17);
    cfg = variant_cfg(dir, _i, false);
    cfg.resume = &meta;
    ck_assert_msg(lb_train(resumed, &tr, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(memcmp(full->params->values, resumed->params->values,
                            (size_t)full->params->total * sizeof(float)), 0);
    /* a stop flag raised before the run stops it after its first step */
    static volatile sig_atomic_t flag = 1;
    lb_model *again = toy_model(4);
    cfg = toy_cfg(dir);
    cfg.stop = &flag;
    ck_assert_int_eq(lb_train(again, &tr, NULL, &cfg, &res, &err), LB_ERR_INTERRUPTED);
    ck_assert_int_eq(res.steps, 1);
    lb_model_free(again);
    lb_model_free(full);
    lb_model_free(resumed);
    lb_dataset_free(&tr);
}
END_TEST

/* mem written as a decoded cache file at path, then opened streaming from it. */
static void stream_copy(const lb_dataset *mem, const char *path, lb_dataset *out)
{
    lb_error            err = { 0 };
    const lb__cache_key key = { 1, 2, 3, 4 };
    ck_assert_msg(lb__cache_write(path, mem, &key, &err) == LB_OK, "%s", err.msg);
    ck_assert_msg(lb__cache_read(path, mem->source, &key, true, out, &err) == LB_OK, "%s",
                  err.msg);
    ck_assert(lb_dataset_streams(out));
    memcpy(out->mean, mem->mean, sizeof out->mean);
    memcpy(out->std, mem->std, sizeof out->std);
}

/* A streamed training file cut short while training (through the prefetch thread): lb_train
 * stops with LB_ERR_IO naming the file, after saving last.ckpt at the step it reached; with
 * the file back, --resume ends with the weights of a run that was never interrupted (and of
 * the in-memory run: the batches are the same). */
START_TEST(test_train_stream_read_error_resumes)
{
    lb_dataset mem, st;
    toy_dataset(&mem, 200, 1);
    const char *dir = tmpdir();
    char cache[128], out[128], ckpt[160];
    snprintf(cache, sizeof cache, "%s/toy.lbds", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", out);
    stream_copy(&mem, cache, &st);
    lb_error err = { 0 };
    lb_train_result res;
    lb_model *full = toy_model(4);
    lb_train_cfg cfg = toy_cfg(NULL);
    ck_assert_msg(lb_train(full, &mem, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    const int64_t total = res.steps;
    /* only the last sample is cut: the run fails whenever a batch first needs it */
    ck_assert_int_eq(truncate(cache, (off_t)(st.files[0].offset + 199 * 64 + 10)), 0);
    lb_model *part = toy_model(4);
    cfg = toy_cfg(out);
    ck_assert_int_eq(lb_train(part, &st, NULL, &cfg, &res, &err), LB_ERR_IO);
    ck_assert_msg(strstr(err.msg, cache) && strstr(err.msg, "short read") &&
                  strstr(err.msg, "stopped at epoch") && strstr(err.msg, "--resume"), "%s",
                  err.msg);
    ck_assert(res.steps < total);
    lb_model_free(part);
    lb_dataset_free(&st);
    lb_ckpt_meta meta;
    lb_model *resumed;
    ck_assert_int_eq(lb_checkpoint_load(ckpt, &resumed, &meta, &err), LB_OK);
    ck_assert_int_eq(meta.step, res.steps);
    stream_copy(&mem, cache, &st); /* the file back */
    cfg = toy_cfg(out);
    cfg.resume = &meta;
    ck_assert_msg(lb_train(resumed, &st, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(res.steps, total);
    ck_assert_int_eq(memcmp(full->params->values, resumed->params->values,
                            (size_t)full->params->total * sizeof(float)), 0);
    /* the test split cut instead: the epoch's training is kept before the error */
    lb_dataset te_mem, te;
    toy_dataset(&te_mem, 50, 2);
    snprintf(cache, sizeof cache, "%s/toy-test.lbds", dir);
    stream_copy(&te_mem, cache, &te);
    ck_assert_int_eq(truncate(cache, (off_t)te.files[0].offset), 0);
    lb_model *m2 = toy_model(4);
    cfg = toy_cfg(out);
    ck_assert_int_eq(lb_train(m2, &st, &te, &cfg, &res, &err), LB_ERR_IO);
    ck_assert_msg(strstr(err.msg, cache) && strstr(err.msg, "evaluating after epoch 1") &&
                  strstr(err.msg, "saved"), "%s", err.msg);
    lb_model *saved;
    ck_assert_int_eq(lb_checkpoint_load(ckpt, &saved, &meta, &err), LB_OK);
    ck_assert_int_eq(meta.epoch, 1);
    ck_assert_int_eq(meta.epoch_step, 0);
    lb_model_free(saved);
    lb_model_free(m2);
    lb_model_free(full);
    lb_model_free(resumed);
    lb_dataset_free(&te);
    lb_dataset_free(&te_mem);
    lb_dataset_free(&st);
    lb_dataset_free(&mem);
}
END_TEST

/* SIGKILL in the middle of a run (no chance to save) loses at most the unfinished epoch: the
 * last epoch's checkpoint is intact, and resuming from it ends bit-identical. */
START_TEST(test_train_sigkill_resume)
{
    lb_dataset tr;
    toy_dataset(&tr, 3000, 1);
    lb_error err = { 0 };
    lb_train_result res;
    lb_model *full = toy_model(6);
    lb_train_cfg cfg = toy_cfg(NULL);
    cfg.epochs = 6;
    ck_assert_int_eq(lb_train(full, &tr, NULL, &cfg, &res, &err), LB_OK);
    const char *dir = tmpdir();
    char path[128], metrics[128];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* the victim: trains (slowly enough) until killed */
        lb_model *m = toy_model(6);
        lb_train_cfg c = toy_cfg(dir);
        c.epochs = 6;
        lb_train(m, &tr, NULL, &c, &res, &err);
        _exit(0);
    }
    /* wait for the second epoch's checkpoint, then kill without warning */
    for (int tries = 0; tries < 20000; tries++) {
        FILE *f = fopen(metrics, "r");
        int lines = 0;
        char line[512];
        while (f && fgets(line, sizeof line, f)) lines++;
        if (f) fclose(f);
        if (lines >= 2) break;
        nanosleep(&(struct timespec){ 0, 200000 }, NULL);
    }
    kill(pid, SIGKILL);
    int ws;
    ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
    lb_ckpt_meta meta;
    lb_model *resumed;
    ck_assert_msg(lb_checkpoint_load(path, &resumed, &meta, &err) == LB_OK, "%s", err.msg);
    /* killed mid-run (the metrics line of an epoch is written just before its checkpoint) */
    ck_assert_int_ge(meta.epoch, 1);
    ck_assert_int_lt(meta.epoch, 6);
    cfg = toy_cfg(dir);
    cfg.epochs = 6;
    cfg.resume = &meta;
    ck_assert_msg(lb_train(resumed, &tr, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(memcmp(full->params->values, resumed->params->values,
                            (size_t)full->params->total * sizeof(float)), 0);
    lb_model_free(full);
    lb_model_free(resumed);
    lb_dataset_free(&tr);
}
END_TEST

START_TEST(test_train_diverges_cleanly)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    lb_model *m = toy_model(9);
    lb_train_cfg cfg = toy_cfg(NULL);
    cfg.sched.lr_max = 1e30f;
    lb_train_result res;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_train(m, &tr, NULL, &cfg, &res, &err), LB_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.msg, "loss is"));
    lb_model_free(m);
    lb_dataset_free(&tr);
}
END_TEST

/* ---- NaN/Inf guard ------------------------------------------------------------------------ */

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *buf = malloc(*n ? *n : 1);
    ck_assert_uint_eq(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

static lb_train_cfg constant_cfg(const char *out)
{
    lb_train_cfg c = toy_cfg(out);
    c.sched.kind = LB_SCHED_CONSTANT;
    c.warmup_epochs = 0;
    return c;
}

/* Stop mode: a NaN gradient in epoch 2 stops the run with a message naming the parameter, the
 * epoch and the step, and last.ckpt stays byte for byte the one written after epoch 1. */
START_TEST(test_train_nonfinite_stop_keeps_checkpoint)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    lb_model *m = toy_model(9);
    const char *dir = tmpdir();
    lb_train_cfg cfg = toy_cfg(dir);
    cfg.epochs = 2;
    cfg.nonfinite_at_step = 12 + 5; /* 12 steps per epoch: step 5 of epoch 2 */
    lb_train_result res;
    lb_error err = { 0 };
    cfg.stop_after_epoch = 1;
    ck_assert_msg(lb_train(m, &tr, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    size_t n0, n1;
    unsigned char *before = read_all(path, &n0);
    lb_ckpt_meta meta;
    lb_model *resumed;
    ck_assert_msg(lb_checkpoint_load(path, &resumed, &meta, &err) == LB_OK, "%s", err.msg);
    cfg.stop_after_epoch = 0;
    cfg.resume = &meta;
    ck_assert_int_eq(lb_train(resumed, &tr, NULL, &cfg, &res, &err), LB_ERR_NUMERIC);
    ck_assert_msg(strstr(err.msg, "gradient of c1.weight is nan at epoch 2, step 5 of 12") &&
                  strstr(err.msg, "last.ckpt (saved after step 12) is kept"), "%s", err.msg);
    unsigned char *after = read_all(path, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert_int_eq(memcmp(before, after, n0), 0);
    free(before);
    free(after);
    lb_model_free(resumed);
    lb_model_free(m);
    lb_dataset_free(&tr);
}
END_TEST

/* An update that overflows on the last step of an epoch leaves Inf weights behind a finite
 * loss: the epoch's checkpoint is refused and the previous one stays. After a good epoch the
 * labels all become 0, so the last layer's bias gradient for class 0 is close to -1 and a
 * learning rate of FLT_MAX overflows it. */
START_TEST(test_train_nonfinite_never_saved)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    lb_model *m = toy_model(9);
    const char *dir = tmpdir();
    lb_train_cfg cfg = constant_cfg(dir);
    cfg.epochs = 1;
    lb_train_result res;
    lb_error err = { 0 };
    ck_assert_msg(lb_train(m, &tr, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    size_t n0, n1;
    unsigned char *before = read_all(path, &n0);
    for (int64_t i = 0; i < tr.n; i++) tr.labels[i] = 0;
    cfg.sched.lr_max = 3.4028235e38f;
    cfg.max_steps = 1;
    ck_assert_int_eq(lb_train(m, &tr, NULL, &cfg, &res, &err), LB_ERR_NUMERIC);
    ck_assert_msg(strstr(err.msg, "inf after step 1 of the run") &&
                  strstr(err.msg, "keeps the last good state"), "%s", err.msg);
    unsigned char *after = read_all(path, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert_int_eq(memcmp(before, after, n0), 0);
    free(before);
    free(after);
    lb_model_free(m);
    lb_dataset_free(&tr);
}
END_TEST

/* Skip mode drops the bad step entirely: a 6-step run whose last step has a NaN gradient ends
 * with the parameters (batch-norm statistics included) and optimizer moments, bit for bit, of
 * a 5-step run, and the skip is counted in the result and the checkpoint. */
START_TEST(test_train_nonfinite_skip_exact)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    lb_error err = { 0 };
    lb_train_result res;
    lb_model *five = toy_model(9), *six = toy_model(9);
    lb_train_cfg cfg = constant_cfg(NULL);
    cfg.epochs = 1;
    cfg.max_steps = 5;
    ck_assert_msg(lb_train(five, &tr, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(res.skipped_steps, 0);
    const char *dir = tmpdir();
    cfg = constant_cfg(dir);
    cfg.epochs = 1;
    cfg.max_steps = 6;
    cfg.nonfinite = LB_NONFINITE_SKIP;
    cfg.nonfinite_at_step = 6;
    ck_assert_msg(lb_train(six, &tr, NULL, &cfg, &res, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(res.steps, 6);
    ck_assert_int_eq(res.skipped_steps, 1);
    const size_t bytes = (size_t)five->params->total * sizeof(float);
    ck_assert_int_eq(memcmp(five->params->values, six->params->values, bytes), 0);
    ck_assert_ptr_nonnull(five->params->m);
    ck_assert_int_eq(memcmp(five->params->m, six->params->m, bytes), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    lb_ckpt_meta meta;
    lb_model *back;
    ck_assert_msg(lb_checkpoint_load(path, &back, &meta, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(meta.skipped, 1);
    ck_assert_int_eq(meta.optim_t, 5); /* the optimizer never saw the skipped step */
    ck_assert_int_eq(meta.step, 6);
    lb_model_free(back);
    /* metrics.jsonl reports the count */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    size_t n;
    unsigned char *text = read_all(path, &n);
    text[n - 1] = 0;
    ck_assert_ptr_nonnull(strstr((char *)text, "\"skipped\":1}"));
    free(text);
    lb_model_free(five);
    lb_model_free(six);
    lb_dataset_free(&tr);
}
END_TEST

/* Skip mode still stops when the run cannot recover: a learning rate that blows the weights up
 * makes every later step non-finite, and max_skips_in_row of them stop it. */
START_TEST(test_train_nonfinite_skip_limit)
{
    lb_dataset tr;
    toy_dataset(&tr, 200, 1);
    lb_model *m = toy_model(9);
    lb_train_cfg cfg = toy_cfg(NULL);
    cfg.sched.lr_max = 1e30f;
    cfg.nonfinite = LB_NONFINITE_SKIP;
    cfg.max_skips_in_row = 5;
    lb_train_result res;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_train(m, &tr, NULL, &cfg, &res, &err), LB_ERR_NUMERIC);
    ck_assert_msg(strstr(err.msg, "5 steps in a row skipped"), "%s", err.msg);
    ck_assert_int_eq(res.skipped_steps, 5);
    lb_model_free(m);
    lb_dataset_free(&tr);
}
END_TEST

START_TEST(test_train_geometry_mismatch)
{
    lb_dataset tr;
    toy_dataset(&tr, 20, 1);
    tr.h = tr.w = 4; /* model expects 8x8 */
    lb_model *m = toy_model(1);
    lb_train_cfg cfg = toy_cfg(NULL);
    lb_train_result res;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_train(m, &tr, NULL, &cfg, &res, &err), LB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "expects 1x8x8"));
    tr.h = tr.w = 8;
    lb_model_free(m);
    lb_dataset_free(&tr);
}
END_TEST

/* ---- checkpoint damage ---------------------------------------------------------------------- */

static size_t save_toy(const char *path)
{
    lb_model *m = toy_model(2);
    lb_ckpt_meta meta = { .epoch = 1, .test_acc = 0.5 };
    lb_error err = { 0 };
    ck_assert_msg(lb_checkpoint_save(path, m, &meta, false, &err) == LB_OK, "%s", err.msg);
    lb_model_free(m);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (size_t)st.st_size;
}

static lb_status load_status(const char *path, lb_error *err)
{
    lb_model *m = (lb_model *)1;
    lb_status st = lb_checkpoint_load(path, &m, NULL, err);
    if (st) ck_assert_ptr_null(m);
    lb_model_free(st ? NULL : m);
    return st;
}

START_TEST(test_checkpoint_damage)
{
    const char *dir = tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/a.ckpt", dir);
    const size_t size = save_toy(path);
    lb_error err = { 0 };
    ck_assert_int_eq(load_status(path, &err), LB_OK);
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(size);
    ck_assert_uint_eq(fread(buf, 1, size, f), size);
    fclose(f);
    /* 1. a flipped bit anywhere -> CRC mismatch */
    for (size_t off = 4; off < size; off += size / 7) {
        buf[off] ^= 0x10;
        f = fopen(path, "wb");
        fwrite(buf, 1, size, f);
        fclose(f);
        buf[off] ^= 0x10;
        ck_assert_int_eq(load_status(path, &err), LB_ERR_FORMAT);
        ck_assert_ptr_nonnull(strstr(err.msg, path));
    }
    /* 2. truncated */
    f = fopen(path, "wb");
    fwrite(buf, 1, size / 2, f);
    fclose(f);
    ck_assert_int_eq(load_status(path, &err), LB_ERR_FORMAT);
    /* 3. bad magic */
    buf[0] = 'X';
    f = fopen(path, "wb");
    fwrite(buf, 1, size, f);
    fclose(f);
    ck_assert_int_eq(load_status(path, &err), LB_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "magic"));
    /* 4. empty and missing */
    f = fopen(path, "wb");
    fclose(f);
    ck_assert_int_eq(load_status(path, &err), LB_ERR_FORMAT);
    unlink(path);
    ck_assert_int_eq(load_status(path, &err), LB_ERR_IO);
    free(buf);
}
END_TEST

/* Writes a checkpoint by hand: spec, metadata and a tensor table of (name, shape) rows with no
 * tensor data after it; the CRC is right, so only the contents can be wrong. */
static void write_raw_ckpt(const char *path, const char *spec, const char *meta,
                           const char *const *names, const int64_t (*shapes)[2], int n)
{
    unsigned char buf[4096];
    size_t len = 0;
#define PUT(p, k) (memcpy(buf + len, (p), (k)), len += (k))
    const uint32_t version = 1, spec_len = (uint32_t)strlen(spec), meta_len = (uint32_t)strlen(meta),
                   q_len = 0, n_t = (uint32_t)n, flags = 0, nd = 2;
    PUT("LBCK", 4);
    PUT(&version, 4);
    PUT(&spec_len, 4);
    PUT(spec, spec_len);
    PUT(&meta_len, 4);
    PUT(meta, meta_len);
    PUT(&q_len, 4);
    PUT(&n_t, 4);
    for (int i = 0; i < n; i++) {
        const uint16_t nl = (uint16_t)strlen(names[i]);
        PUT(&nl, 2);
        PUT(names[i], nl);
        PUT(&flags, 4);
        PUT(&nd, 4);
        PUT(shapes[i], 2 * sizeof(int64_t));
    }
    const uint8_t has_m = 0;
    PUT(&has_m, 1);
    const uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), buf, (uInt)len);
    PUT(&crc, 4);
#undef PUT
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* A small file whose description and tensor table claim a model of 2^30 parameters (8 GiB of
 * values and gradients) is rejected from the table, before the model is built and allocated. */
START_TEST(test_checkpoint_huge_model_small_file)
{
    const char *dir = tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/huge.ckpt", dir);
    static const char *const names[] = { "fc.weight" };
    static const int64_t shapes[][2] = { { 1 << 24, 64 } };
    write_raw_ckpt(path, "input 1 8 8\nflatten\nlinear name=fc out=16777216 bias=0\n",
                   "epoch=1\n", names, shapes, 1);
    lb_error err = { 0 };
    const double t0 = lb_now();
    ck_assert_int_eq(load_status(path, &err), LB_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "the tensor table needs 4294967296") && strstr(err.msg, path),
                  "%s", err.msg);
    ck_assert(lb_now() - t0 < 1.0);
}
END_TEST

/* The counters --resume trusts are range-checked: a negative epoch or a non-number is a
 * format error naming the key. */
START_TEST(test_checkpoint_bad_meta)
{
    const char *dir = tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/meta.ckpt", dir);
    static const char *const names[] = { "fc.weight", "fc.bias" };
    static const int64_t shapes[][2] = { { 2, 64 }, { 2, 1 } };
    static const char *const metas[] = { "epoch=-5\n", "step=12x\n", "bn_folded=2\n",
                                         "skipped=-1\n", "epoch=99999999999\n" };
    lb_error err = { 0 };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        write_raw_ckpt(path, "input 1 8 8\nflatten\nlinear name=fc out=2\n", metas[i], names,
                       shapes, 2);
        ck_assert_int_eq(load_status(path, &err), LB_ERR_FORMAT);
        ck_assert_msg(strstr(err.msg, "metadata") && strstr(err.msg, "is not a valid value"),
                      "%s: %s", metas[i], err.msg);
    }
}
END_TEST

/* A failed save (unwritable place) reports LB_ERR_IO and leaves the old checkpoint intact. */
START_TEST(test_checkpoint_failed_save_keeps_old)
{
    const char *dir = tmpdir();
    char path[128], blocker[160];
    snprintf(path, sizeof path, "%s/b.ckpt", dir);
    save_toy(path);
    /* make "<path>.tmp" a directory so the temporary file cannot be created */
    snprintf(blocker, sizeof blocker, "%s.tmp", path);
    ck_assert_int_eq(mkdir(blocker, 0700), 0);
    lb_model *m = toy_model(77);
    lb_ckpt_meta meta = { 0 };
    lb_error err = { 0 };
    ck_assert_int_eq(lb_checkpoint_save(path, m, &meta, false, &err), LB_ERR_IO);
    lb_model_free(m);
    rmdir(blocker);
    lb_model *old;
    ck_assert_int_eq(lb_checkpoint_load(path, &old, &meta, &err), LB_OK);
    ck_assert_int_eq(meta.epoch, 1);
    lb_model_free(old);
    /* a full disk, simulated by a file-size limit in a child process: the write fails with
     * EFBIG, the temporary file is removed and path keeps the old model */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = { 512, 512 };
        lb_model *m2 = toy_model(78);
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(10);
        lb_status st = lb_checkpoint_save(path, m2, &meta, false, &err);
        _exit(st == LB_ERR_IO && strstr(err.msg, "previous checkpoint kept") ? 0 : 11);
    }
    int wstatus = 0;
    ck_assert_int_eq(waitpid(pid, &wstatus, 0), pid);
    ck_assert(WIFEXITED(wstatus));
    ck_assert_int_eq(WEXITSTATUS(wstatus), 0);
    ck_assert_int_eq(access(blocker, F_OK), -1);
    ck_assert_int_eq(lb_checkpoint_load(path, &old, &meta, &err), LB_OK);
    ck_assert_int_eq(meta.epoch, 1);
    lb_model_free(old);
}
END_TEST

Suite *train_loop_suite(void)
{
    Suite *s = suite_create("train_loop");
    TCase *tc = tcase_create("loop");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_train_learns_and_checkpoints);
    tcase_add_test(tc, test_train_deterministic);
    tcase_add_test(tc, test_train_resume_exact);
    tcase_add_test(tc, test_train_swa);
    tcase_add_test(tc, test_update_bn_class_sorted);
    tcase_add_loop_test(tc, test_train_interrupt_mid_epoch, 0, 3);
    tcase_add_test(tc, test_train_sigkill_resume);
    tcase_add_test(tc, test_train_stream_read_error_resumes);
    tcase_add_test(tc, test_train_diverges_cleanly);
    tcase_add_test(tc, test_train_nonfinite_stop_keeps_checkpoint);
    tcase_add_test(tc, test_train_nonfinite_never_saved);
    tcase_add_test(tc, test_train_nonfinite_skip_exact);
    tcase_add_test(tc, test_train_nonfinite_skip_limit);
    tcase_add_test(tc, test_train_geometry_mismatch);
    tcase_add_test(tc, test_checkpoint_damage);
    tcase_add_test(tc, test_checkpoint_failed_save_keeps_old);
    tcase_add_test(tc, test_checkpoint_huge_model_small_file);
    tcase_add_test(tc, test_checkpoint_bad_meta);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    Suite *suites[] = { train_optim_suite(), train_loop_suite(), train_sensitivity_suite() };
    return lb_run_suites(suites, 3);
}
