/* loop.c: training and evaluation over lb_model. One lb_graph is reused for every step;
 * inputs are written straight into a leaf in its arena, so the steady-state step allocates
 * nothing. */
#include "train/loop.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "train/checkpoint.h"

double lb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double lb_peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

lb_train_cfg lb_train_cfg_default(void)
{
    return (lb_train_cfg){
        .epochs = 5,
        .batch = 64,
        .eval_batch = 0, /* the training batch: evaluation needs no more memory */
        .optim = { .kind = LB_OPTIM_SGD, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-4f },
        .sched = { .kind = LB_SCHED_COSINE, .lr_max = 0.05f, .lr_min = 0.0f },
        .warmup_epochs = 0.5f,
        .seed = 42,
        .dataset = "",
        .prefetch = true,
    };
}

/* Counts argmax(logits[b]) == y[b] (first maximum on ties) and, when pred is non-NULL, stores
 * each argmax in pred[b]. logits (B, C). */
static int64_t count_correct(const lb_tensor *logits, const int32_t *y, int32_t *pred)
{
    const int64_t B = logits->shape[0], C = logits->shape[1];
    int64_t ok = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits->data + b * C;
        int64_t best = 0;
        for (int64_t c = 1; c < C; c++)
            if (z[c] > z[best]) best = c;
        ok += best == y[b];
        if (pred) pred[b] = (int32_t)best;
    }
    return ok;
}

static lb_status check_geometry(const lb_model *m, const lb_dataset *ds, lb_error *err)
{
    if (ds->c != m->in_c || ds->h != m->in_h || ds->w != m->in_w)
        return lb_errorf(err, LB_ERR_SHAPE, "%s: images are %dx%dx%d, model %s expects %dx%dx%d",
                         ds->source, ds->c, ds->h, ds->w, m->name, m->in_c, m->in_h, m->in_w);
    if (ds->n_classes > m->n_classes)
        return lb_errorf(err, LB_ERR_SHAPE, "%s: %d classes, model %s outputs %d", ds->source,
                         ds->n_classes, m->name, m->n_classes);
    return LB_OK;
}

/* Runs eval over ds with an existing graph (reused arena). */
static lb_status evaluate_with(lb_model *m, lb_graph *g, const lb_dataset *ds, int64_t batch,
                               int32_t *ybuf, int32_t *pred, double *acc, double *loss,
                               lb_error *err)
{
    lb_batcher b;
    lb_status st = lb_batcher_init(&b, ds, batch, false, 0, err);
    if (st) return st;
    lb_graph_set_training(g, false);
    lb_graph_set_grad_enabled(g, false);
    int64_t correct = 0, seen = 0;
    double loss_sum = 0.0;
    lb_batcher_start_epoch(&b);
    for (;;) {
        lb_graph_reset(g);
        lb_tensor *x = lb_leaf(g, (int64_t[]){ batch, ds->c, ds->h, ds->w }, 4, false);
        if (!x) break;
        const int64_t n = lb_batcher_next(&b, x->data, ybuf);
        if (n <= 0) break; /* the end, or a read error (lb_batcher_status) */
        x->shape[0] = n; /* last batch may be partial; the leaf is simply used shorter */
        lb_tensor *logits = lb_model_forward(m, g, x, NULL);
        lb_tensor *l = lb_softmax_ce(g, logits, ybuf);
        if (!l) break;
        correct += count_correct(logits, ybuf, pred ? pred + seen : NULL);
        loss_sum += (double)l->data[0] * (double)n;
        seen += n;
    }
    lb_graph_set_training(g, true);
    lb_graph_set_grad_enabled(g, true);
    st = lb_batcher_status(&b, err);
    lb_batcher_free(&b);
    if (st || (st = lb_graph_status(g, err))) return st;
    *acc = seen ? (double)correct / (double)seen : 0.0;
    *loss = seen ? loss_sum / (double)seen : 0.0;
    return LB_OK;
}

/* The order of lb_update_bn's pass: fixed, so that a recomputation is reproducible. */
#define UPDATE_BN_SEED 0x5eed5eedu

/* lb_update_bn with an existing graph and label buffer (batch labels), the batches augmented
 * by aug and cutout (the training run's, for weight averaging). */
static lb_status update_bn_with(lb_model *m, lb_graph *g, const lb_dataset *ds, int64_t batch,
                                lb_augment aug, int cutout, int32_t *ybuf, lb_error *err)
{
    int n_bn = 0;
    for (int i = 0; i < m->n_nodes; i++) n_bn += m->nodes[i].kind == LB_NODE_BN;
    if (n_bn == 0 || m->bn_folded) return LB_OK;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == LB_NODE_BN) {
            lb_batchnorm_layer *bn = &m->nodes[i].u.bn;
            for (int c = 0; c < bn->c; c++)
                bn->running_mean->data[c] = 0.0f, bn->running_var->data[c] = 1.0f;
        }
    /* Shuffled, as torch's training loader would give them: data sets stored by class (image
     * folders, CIFAR-10's JPEG copy) would otherwise give batches of one class, whose mean
     * variance leaves out the variance between classes. (ResNet-20 on CIFAR-10, weights of
     * 88.05% with training's running statistics: 85.73% in order, 86.23% shuffled, 88.01%
     * shuffled and augmented as in training.) */
    lb_batcher b;
    lb_status st = lb_batcher_init(&b, ds, batch, true, UPDATE_BN_SEED, err);
    if (st) return st;
    b.augment = aug;
    b.cutout = cutout;
    float *mom = malloc((size_t)m->n_nodes * sizeof *mom); /* each layer's own momentum */
    if (!mom) {
        lb_batcher_free(&b);
        return lb_errorf(err, LB_ERR_NOMEM, "out of memory updating batch-norm statistics");
    }
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == LB_NODE_BN) mom[i] = m->nodes[i].u.bn.momentum;
    lb_rng rng = lb_rng_make(0); /* dropout, if any: the statistics see a training forward */
    lb_graph_set_training(g, true);
    lb_graph_set_grad_enabled(g, false);
    lb_batcher_start_epoch(&b);
    for (int64_t k = 1;; k++) {
        lb_graph_reset(g);
        lb_tensor *x = lb_leaf(g, (int64_t[]){ batch, ds->c, ds->h, ds->w }, 4, false);
        if (!x) break;
        const int64_t n = lb_batcher_next(&b, x->data, ybuf);
        if (n <= 0) break; /* the end, or a read error (lb_batcher_status) */
        x->shape[0] = n;
        for (int i = 0; i < m->n_nodes; i++)
            if (m->nodes[i].kind == LB_NODE_BN) m->nodes[i].u.bn.momentum = 1.0f / (float)k;
        if (!lb_model_forward(m, g, x, &rng)) break;
    }
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == LB_NODE_BN) m->nodes[i].u.bn.momentum = mom[i];
    free(mom);
    lb_graph_set_grad_enabled(g, true);
    st = lb_batcher_status(&b, err);
    lb_batcher_free(&b);
    if (st || (st = lb_graph_status(g, err))) return st;
    return LB_OK;
}

lb_status lb_update_bn(lb_model *m, const lb_dataset *ds, int64_t batch, lb_error *err)
{
    lb_status st = check_geometry(m, ds, err);
    if (st) return st;
    if (batch < 1) return lb_errorf(err, LB_ERR_ARG, "update_bn: batch %lld", (long long)batch);
    lb_graph *g = lb_graph_new(0);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    if (!g || !y) st = lb_errorf(err, LB_ERR_NOMEM, "out of memory updating batch-norm statistics");
    else st = update_bn_with(m, g, ds, batch, LB_AUGMENT_NONE, 0, y, err);
    free(y);
    lb_graph_free(g);
    return st;
}

lb_status lb_predict(lb_model *m, const lb_dataset *ds, int64_t batch, int32_t *pred, double *acc,
                     double *loss, lb_error *err)
{
    lb_status st = check_geometry(m, ds, err);
    if (st) return st;
    lb_graph *g = lb_graph_new(0);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    if (!g || !y) st = lb_errorf(err, LB_ERR_NOMEM, "out of memory for evaluation");
    else st = evaluate_with(m, g, ds, batch, y, pred, acc, loss, err);
    free(y);
    lb_graph_free(g);
    return st;
}

lb_status lb_evaluate(lb_model *m, const lb_dataset *ds, int64_t batch, double *acc, double *loss,
                      lb_error *err)
{
    return lb_predict(m, ds, batch, NULL, acc, loss, err);
}

static void progress(const lb_train_cfg *cfg, int epoch, int64_t step, int64_t n_steps,
                     double loss, double acc, double ips, double wait_frac, int64_t skipped)
{
    if (!cfg->log || !cfg->log_tty) return;
    const int width = 30;
    int fill = n_steps ? (int)(width * step / n_steps) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(cfg->log, "\r\033[Kepoch %d/%d [%s] %lld/%lld loss %.4f acc %.2f%% %.0f img/s "
            "data wait %.0f%%", epoch, cfg->epochs, bar, (long long)step, (long long)n_steps, loss,
            100.0 * acc, ips, 100.0 * wait_frac);
    if (skipped) fprintf(cfg->log, " (%lld skipped)", (long long)skipped);
    fflush(cfg->log);
}

static lb_status append_metrics(const char *dir, const char *line, lb_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "a");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
    int bad = fputs(line, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? lb_errorf(err, LB_ERR_IO, "%s: write failed", path) : LB_OK;
}

static lb_status make_dir(const char *dir, lb_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return LB_OK;
}

/* Writes <out_dir>/last.ckpt with everything a resumed run needs, unless a parameter or
 * moment is NaN or Inf (an update that overflowed): then LB_ERR_NUMERIC, and the checkpoint
 * on disk keeps the last good state. */
static lb_status save_state(const lb_train_cfg *cfg, const lb_model *m, int epochs_done,
                            int64_t epoch_step, int64_t step, const lb_optim *opt,
                            const lb_rng *rng, const lb_train_result *res, lb_error *err)
{
    const lb_params *ps = m->params;
    const float *blocks[3] = { ps->values, ps->m, ps->v };
    for (int k = 0; k < 3; k++) {
        const int64_t bad = blocks[k] ? lb_find_nonfinite(blocks[k], ps->total) : -1;
        if (bad >= 0)
            return lb_errorf(err, LB_ERR_NUMERIC, "%s of %s is %g after step %lld of the run; "
                             "stopped without saving (%s/last.ckpt keeps the last good state; "
                             "hint: lower the learning rate)",
                             k == 0 ? "the value" : "the optimizer moment",
                             lb_params_tensor_at(ps, bad)->name, (double)blocks[k][bad],
                             (long long)step, cfg->out_dir);
    }
    char path[4096];
    lb_ckpt_meta meta = { .epoch = epochs_done, .step = step, .optim_t = opt->t, .seed = cfg->seed,
                          .test_acc = res->test_acc, .train_loss = res->train_loss,
                          .rng_dropout = rng->state, .epoch_step = epoch_step,
                          .skipped = res->skipped_steps };
    snprintf(meta.dataset, sizeof meta.dataset, "%s", cfg->dataset ? cfg->dataset : "");
    snprintf(path, sizeof path, "%s/last.ckpt", cfg->out_dir);
    return lb_checkpoint_save(path, m, &meta, true, err);
}

/* A batch could not be read (a streamed dataset file failed; err holds the batcher's error):
 * the work done so far is saved, when there is a run folder, as after an interruption
 * (epochs_done complete epochs, then epoch_step steps), so --resume continues from there.
 * Returns the read error, with where it happened and what was saved. */
static lb_status data_failed(const lb_train_cfg *cfg, const lb_model *m, int epochs_done,
                             int64_t epoch_step, int64_t step, const lb_optim *opt,
                             const lb_rng *rng, lb_train_result *res, const char *where,
                             lb_status st, lb_error *err)
{
    lb_error local = { 0 };
    if (!err) err = &local;
    if (st == LB_OK) st = LB_ERR_IO;
    char msg[sizeof err->msg], saved[sizeof err->msg] = "";
    snprintf(msg, sizeof msg, "%s", err->msg);
    res->steps  = step;
    res->epochs = epochs_done;
    if (cfg->out_dir) {
        lb_error serr = { 0 };
        if (save_state(cfg, m, epochs_done, epoch_step, step, opt, rng, res, &serr) == LB_OK)
            snprintf(saved, sizeof saved, "; saved %s/last.ckpt (continue with --resume once "
                     "the data can be read)", cfg->out_dir);
        else
            snprintf(saved, sizeof saved, "; nothing saved: %.400s", serr.msg);
    }
    return lb_errorf(err, st, "%s; stopped %s%s", msg, where, saved);
}

/* A step whose loss (bad_grad < 0) or gradient element bad_grad is NaN or Inf. Stop mode:
 * LB_ERR_NUMERIC. Skip mode: undo what the forward pass wrote into the parameters (batch-norm
 * statistics, observer ranges, from the snapshot taken before it), count the step, and
 * LB_ERR_NUMERIC only when too many steps in a row were skipped. */
static lb_status nonfinite_step(const lb_train_cfg *cfg, lb_model *m, float loss,
                                int64_t bad_grad, int epoch, int64_t i, int64_t per_epoch,
                                int64_t step, int64_t saved_step, const float *snapshot,
                                int *in_row, lb_train_result *res, lb_error *err)
{
    char what[160], kept[4200] = "";
    if (bad_grad < 0)
        snprintf(what, sizeof what, "loss is %g", (double)loss);
    else
        snprintf(what, sizeof what, "gradient of %s is %g",
                 lb_params_tensor_at(m->params, bad_grad)->name,
                 (double)m->params->grads[bad_grad]);
    if (cfg->out_dir && saved_step >= 0)
        snprintf(kept, sizeof kept, "; %s/last.ckpt (saved after step %lld) is kept",
                 cfg->out_dir, (long long)saved_step);
    if (cfg->nonfinite != LB_NONFINITE_SKIP)
        return lb_errorf(err, LB_ERR_NUMERIC, "%s at epoch %d, step %lld of %lld (step %lld of "
                         "the run); stopped%s (hint: lower the learning rate, or --nonfinite "
                         "skip)", what, epoch, (long long)(i + 1), (long long)per_epoch,
                         (long long)(step + 1), kept);
    memcpy(m->params->values, snapshot, (size_t)m->params->total * sizeof(float));
    res->skipped_steps++;
    const int limit = cfg->max_skips_in_row > 0 ? cfg->max_skips_in_row : LB_MAX_SKIPS_IN_ROW;
    if (++*in_row >= limit)
        return lb_errorf(err, LB_ERR_NUMERIC, "%d steps in a row skipped (the last: %s at epoch "
                         "%d, step %lld of %lld); stopped%s (hint: lower the learning rate)",
                         *in_row, what, epoch, (long long)(i + 1), (long long)per_epoch, kept);
    if (cfg->log && res->skipped_steps <= 20) {
        if (cfg->log_tty) fprintf(cfg->log, "\r\033[K");
        fprintf(cfg->log, "epoch %d, step %lld: %s; step skipped (%lld so far)%s\n", epoch,
                (long long)(i + 1), what, (long long)res->skipped_steps,
                res->skipped_steps == 20 ? "; further skips are only counted" : "");
    }
    return LB_OK;
}

/* Writes the weight average avg as <out_dir>/swa.ckpt, a checkpoint of m with avg's values
 * (no optimizer moments): meta.epoch is the last epoch averaged in, meta.test_acc -1 until
 * the final one (batch-norm statistics recomputed, evaluated). keep: scratch of total floats. */
static lb_status save_swa(const lb_train_cfg *cfg, lb_model *m, const float *avg, float *keep,
                          int epoch, double test_acc, lb_error *err)
{
    const size_t bytes = (size_t)m->params->total * sizeof(float);
    char path[4096];
    snprintf(path, sizeof path, "%s/swa.ckpt", cfg->out_dir);
    lb_ckpt_meta meta = { .epoch = epoch, .seed = cfg->seed, .test_acc = test_acc,
                          .train_loss = -1.0 };
    snprintf(meta.dataset, sizeof meta.dataset, "%s", cfg->dataset ? cfg->dataset : "");
    memcpy(keep, m->params->values, bytes);
    memcpy(m->params->values, avg, bytes);
    lb_status st = lb_checkpoint_save(path, m, &meta, false, err);
    memcpy(m->params->values, keep, bytes);
    return st;
}

/* Reads the running average of a resumed SWA run from <out_dir>/swa.ckpt into avg: it must be
 * this model's and end at epoch `epoch`, the epoch last.ckpt ends with. */
static lb_status load_swa(const lb_train_cfg *cfg, const lb_model *m, int epoch, float *avg,
                          lb_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/swa.ckpt", cfg->out_dir);
    lb_model *sm = NULL;
    lb_ckpt_meta meta;
    lb_error lerr = { 0 };
    lb_status st = lb_checkpoint_load(path, &sm, &meta, &lerr);
    if (st) return lb_errorf(err, st, "resuming weight averaging: %s", lerr.msg);
    if (sm->params->total != m->params->total)
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: %lld parameters, the run's model has %lld", path,
                       (long long)sm->params->total, (long long)m->params->total);
    else if (meta.epoch != epoch)
        st = lb_errorf(err, LB_ERR_FORMAT, "%s averages up to epoch %lld but last.ckpt ends "
                       "with epoch %d (interrupted between the two saves; the average cannot "
                       "be resumed)", path, (long long)meta.epoch, epoch);
    else
        memcpy(avg, sm->params->values, (size_t)m->params->total * sizeof(float));
    lb_model_free(sm);
    return st;
}

lb_status lb_train(lb_model *m, const lb_dataset *train, const lb_dataset *test,
                   const lb_train_cfg *cfg, lb_train_result *res, lb_error *err)
{
    *res = (lb_train_result){ 0 };
    lb_status st;
    if ((st = check_geometry(m, train, err)) || (test && (st = check_geometry(m, test, err))))
        return st;
    if (cfg->epochs < 1 || cfg->batch < 1 || cfg->eval_batch < 0)
        return lb_errorf(err, LB_ERR_ARG, "epochs, batch and eval batch must be >= 1");
    if (cfg->swa_start < 0 || cfg->swa_start > cfg->epochs)
        return lb_errorf(err, LB_ERR_ARG, "weight averaging from epoch %d of %d (expected 1..%d)",
                         cfg->swa_start, cfg->epochs, cfg->epochs);
    if (cfg->swa_start > 0 && cfg->fold_bn_epoch > 0)
        return lb_errorf(err, LB_ERR_ARG, "weight averaging and batch-norm folding together: "
                         "the average's batch-norm statistics are recomputed, folding freezes them");
    if (cfg->out_dir && (st = make_dir(cfg->out_dir, err))) return st;
    const double t0 = lb_now();
    float *avg = NULL, *keep = NULL; /* weight averaging: the average, and save_swa's scratch */
    lb_batcher b = { 0 };
    lb_prefetch *pf = NULL; /* owns b while it exists: batches come from lb_prefetch_next */
    lb_optim opt;
    lb_graph *g = lb_graph_new(0);
    const int64_t eval_batch = cfg->eval_batch > 0 ? cfg->eval_batch : cfg->batch;
    const int64_t eb = eval_batch > cfg->batch ? eval_batch : cfg->batch;
    int32_t *y = malloc((size_t)eb * sizeof *y);
    const bool skip = cfg->nonfinite == LB_NONFINITE_SKIP;
    float *snapshot = skip ? malloc((size_t)(m->params->total + 1) * sizeof(float)) : NULL;
    if (cfg->swa_start > 0) {
        avg = malloc((size_t)m->params->total * sizeof(float));
        keep = malloc((size_t)m->params->total * sizeof(float));
    }
    if (!g || !y || (skip && !snapshot) || (cfg->swa_start > 0 && (!avg || !keep))) {
        /* snapshot: the parameters before a forward pass */
        st = lb_errorf(err, LB_ERR_NOMEM, "out of memory starting training");
        goto done;
    }
    lb_graph_set_release_activations(g, true); /* gradients reuse dead activations' memory */
    if ((st = lb_optim_init(&opt, cfg->optim, m->params, err))) goto done;
    if ((st = lb_batcher_init(&b, train, cfg->batch, true, cfg->seed, err))) goto done;
    b.drop_last = true;
    b.augment = cfg->augment;
    b.cutout = cfg->cutout;
    lb_rng rng = lb_rng_make(cfg->seed ^ 0xD1B54A32D192ED03ull); /* dropout */
    int first_epoch = 1, in_row = 0;
    int64_t step = 0, saved_step = -1; /* saved_step: the step last.ckpt was written after */
    if (cfg->resume) { /* continue a run: replay the shuffles, restore counters and state */
        for (int64_t e = 0; e < cfg->resume->epoch; e++) lb_batcher_start_epoch(&b);
        first_epoch = (int)cfg->resume->epoch + 1;
        step = cfg->resume->step;
        opt.t = cfg->resume->optim_t;
        rng.state = cfg->resume->rng_dropout;
        res->epochs = (int)cfg->resume->epoch;
        res->steps = step;
        res->test_acc = cfg->resume->test_acc;
        res->train_loss = cfg->resume->train_loss;
        res->skipped_steps = cfg->resume->skipped;
        saved_step = step;
        if (avg && cfg->resume->epoch >= cfg->swa_start) {
            if (!cfg->out_dir) {
                st = lb_errorf(err, LB_ERR_ARG, "resuming weight averaging needs the run folder");
                goto done;
            }
            if ((st = load_swa(cfg, m, (int)cfg->resume->epoch, avg, err))) goto done;
        }
    }
    if (!(pf = lb_prefetch_new(&b, cfg->prefetch, err))) {
        st = err ? err->status : LB_ERR_NOMEM;
        goto done;
    }
    int64_t per_epoch = lb_batcher_count(&b);
    if (cfg->max_steps > 0 && cfg->max_steps < per_epoch) per_epoch = cfg->max_steps;
    lb_schedule sched = cfg->sched;
    sched.total = per_epoch * cfg->epochs;
    if (sched.warmup == 0 && cfg->warmup_epochs > 0)
        sched.warmup = (int64_t)(cfg->warmup_epochs * (float)per_epoch);
    if ((st = lb_schedule_validate(&sched, err))) goto done;
    for (int epoch = first_epoch; epoch <= cfg->epochs; epoch++) {
        if (cfg->stop_after_epoch > 0 && epoch > cfg->stop_after_epoch) break;
        if (cfg->fold_bn_epoch > 0 && epoch >= cfg->fold_bn_epoch && !m->bn_folded) {
            const int pairs = lb_model_fold_bn(m);
            if (cfg->log)
                fprintf(cfg->log, "epoch %d: batch-norm folded into %d layers, statistics frozen\n",
                        epoch, pairs);
        }
        double loss_sum = 0.0, t_ep = lb_now(), t_train = 0.0, t_wait = 0.0;
        int64_t correct = 0, seen = 0, i_first = 0;
        if (cfg->resume && epoch == first_epoch && cfg->resume->epoch_step > 0) {
            /* stopped in the middle of this epoch: skip the batches it had already used */
            i_first = cfg->resume->epoch_step < per_epoch ? cfg->resume->epoch_step : per_epoch;
        }
        lb_prefetch_start_epoch(pf, i_first * cfg->batch); /* reshuffles, then skips */
        for (int64_t i = i_first; i < per_epoch; i++) {
            const double ts = lb_now();
            lb_graph_reset(g);
            lb_tensor *x = lb_leaf(g, (int64_t[]){ cfg->batch, train->c, train->h, train->w }, 4, false);
            if (!x) break;
            const double tw = lb_now();
            const int64_t n = lb_prefetch_next(pf, x->data, y);
            t_wait += lb_now() - tw;
            if (n < 0) { /* a streamed sample could not be read */
                char where[96];
                snprintf(where, sizeof where, "at epoch %d, step %lld of %lld", epoch,
                         (long long)(i + 1), (long long)per_epoch);
                st = lb_prefetch_status(pf, err);
                st = data_failed(cfg, m, epoch - 1, i, step, &opt, &rng, res, where, st, err);
                goto done;
            }
            if (n == 0) break;
            if (snapshot)
                memcpy(snapshot, m->params->values, (size_t)m->params->total * sizeof(float));
            lb_tensor *logits = lb_model_forward(m, g, x, &rng);
            lb_tensor *loss = lb_softmax_ce_smooth(g, logits, y, cfg->label_smoothing);
            if (!loss) break;
            /* NaN/Inf guard: the loss, then every gradient (one pass over the block) */
            int64_t bad_grad = -1;
            const bool loss_ok = isfinite(loss->data[0]);
            /* before backward, which reuses the logits' buffer for gradients */
            const int64_t correct_step = count_correct(logits, y, NULL);
            if (loss_ok) {
                lb_params_zero_grad(m->params);
                if ((st = lb_backward(g, loss, err))) goto done;
                if (cfg->nonfinite_at_step == step + 1) m->params->grads[0] = NAN;
                bad_grad = lb_find_nonfinite(m->params->grads, m->params->total);
            }
            if (loss_ok && bad_grad < 0) {
                lb_optim_step(&opt, m->params, lb_schedule_lr(&sched, step));
                in_row = 0;
                loss_sum += (double)loss->data[0] * (double)n;
                correct += correct_step;
                seen += n;
            } else if ((st = nonfinite_step(cfg, m, loss->data[0], bad_grad, epoch, i, per_epoch,
                                            step, saved_step, snapshot, &in_row, res, err))) {
                goto done;
            }
            step++;
            t_train += lb_now() - ts;
            if (seen > 0 && ((i & 15) == 0 || i + 1 == per_epoch))
                progress(cfg, epoch, i + 1, per_epoch, loss_sum / (double)seen,
                         (double)correct / (double)seen, (double)seen / t_train, t_wait / t_train,
                         res->skipped_steps);
            if ((cfg->stop && *cfg->stop) || (cfg->stop_after_step > 0 && step >= cfg->stop_after_step)) {
                res->steps = step;
                res->epochs = epoch - 1;
                if (cfg->out_dir && (st = save_state(cfg, m, epoch - 1, i + 1, step, &opt, &rng,
                                                     res, err)))
                    goto done;
                st = lb_errorf(err, LB_ERR_INTERRUPTED,
                               "stopped at epoch %d, step %lld of %lld%s%s%s", epoch,
                               (long long)(i + 1), (long long)per_epoch,
                               cfg->out_dir ? "; saved " : "", cfg->out_dir ? cfg->out_dir : "",
                               cfg->out_dir ? "/last.ckpt (continue with --resume)" : "");
                goto done;
            }
        }
        if ((st = lb_graph_status(g, err))) goto done;
        res->train_loss = seen ? loss_sum / (double)seen : 0.0;
        res->train_acc = seen ? (double)correct / (double)seen : 0.0;
        res->train_seconds += t_train;
        res->data_wait_s += t_wait;
        res->steps = step;
        res->epochs = epoch;
        res->train_images_per_s = res->train_seconds > 0 ? (double)(step * cfg->batch) / res->train_seconds : 0;
        if (avg && epoch >= cfg->swa_start) { /* torch's AveragedModel: a + (w - a) / (n + 1) */
            const float k = (float)(epoch - cfg->swa_start + 1);
            const float *w = m->params->values;
            for (int64_t j = 0; j < m->params->total; j++)
                avg[j] = epoch == cfg->swa_start ? w[j] : avg[j] + (w[j] - avg[j]) / k;
        }
        res->test_acc = res->test_loss = -1.0;
        if (test && (st = evaluate_with(m, g, test, eval_batch, y, NULL, &res->test_acc,
                                        &res->test_loss, err))) {
            if (st == LB_ERR_IO) { /* the test set could not be read: keep the epoch */
                char where[96];
                snprintf(where, sizeof where, "evaluating after epoch %d", epoch);
                st = data_failed(cfg, m, epoch, 0, step, &opt, &rng, res, where, st, err);
            }
            goto done;
        }
        const double ep_s = lb_now() - t_ep;
        if (cfg->log) {
            if (cfg->log_tty) fprintf(cfg->log, "\r\033[K");
            fprintf(cfg->log,
                    "epoch %d/%d  loss %.4f  train acc %.2f%%  test loss %.4f  test acc %.2f%%  "
                    "%.0f img/s  %.1f s  data wait %.2f s (%.1f%%)",
                    epoch, cfg->epochs, res->train_loss, 100.0 * res->train_acc, res->test_loss,
                    100.0 * res->test_acc, (double)seen / (t_train > 0 ? t_train : 1), ep_s,
                    t_wait, 100.0 * t_wait / (t_train > 0 ? t_train : 1));
            if (res->skipped_steps)
                fprintf(cfg->log, "  %lld steps skipped (NaN/Inf)", (long long)res->skipped_steps);
            fputc('\n', cfg->log);
            fflush(cfg->log);
        }
        if (cfg->out_dir) {
            char line[512];
            snprintf(line, sizeof line,
                     "{\"epoch\":%d,\"step\":%lld,\"lr\":%.6g,\"train_loss\":%.6f,\"train_acc\":%.6f,"
                     "\"test_loss\":%.6f,\"test_acc\":%.6f,\"images_per_s\":%.1f,\"seconds\":%.3f,"
                     "\"data_wait_s\":%.3f,\"data_wait_frac\":%.4f,\"skipped\":%lld}\n",
                     epoch, (long long)step, (double)lb_schedule_lr(&sched, step > 0 ? step - 1 : 0),
                     res->train_loss, res->train_acc, res->test_loss, res->test_acc,
                     (double)seen / (t_train > 0 ? t_train : 1), ep_s, t_wait,
                     t_wait / (t_train > 0 ? t_train : 1), (long long)res->skipped_steps);
            if ((st = append_metrics(cfg->out_dir, line, err))) goto done;
            if ((st = save_state(cfg, m, epoch, 0, step, &opt, &rng, res, err))) goto done;
            saved_step = step;
            if (avg && epoch >= cfg->swa_start
                && (st = save_swa(cfg, m, avg, keep, epoch, -1.0, err)))
                goto done;
        }
    }
    if (avg && res->epochs == cfg->epochs) { /* the average becomes the model */
        const double ts = lb_now();
        memcpy(m->params->values, avg, (size_t)m->params->total * sizeof(float));
        if ((st = update_bn_with(m, g, train, cfg->batch, cfg->augment, cfg->cutout, y, err)))
            goto done;
        double acc = -1.0, loss = -1.0;
        if (test && (st = evaluate_with(m, g, test, eval_batch, y, NULL, &acc, &loss, err)))
            goto done;
        res->test_acc = acc, res->test_loss = loss;
        const int n = cfg->epochs - cfg->swa_start + 1;
        if (cfg->log) {
            fprintf(cfg->log, "weight average of %d epoch%s (%d-%d), batch-norm statistics "
                    "recomputed: test loss %.4f  test acc %.2f%%  %.1f s\n", n, n == 1 ? "" : "s",
                    cfg->swa_start, cfg->epochs, loss, 100.0 * acc, lb_now() - ts);
            fflush(cfg->log);
        }
        if (cfg->out_dir && first_epoch <= cfg->epochs) { /* not again for a finished run */
            char line[256];
            snprintf(line, sizeof line,
                     "{\"epoch\":%d,\"swa_models\":%d,\"swa_start\":%d,\"test_loss\":%.6f,"
                     "\"test_acc\":%.6f,\"seconds\":%.3f}\n", cfg->epochs, n, cfg->swa_start,
                     loss, acc, lb_now() - ts);
            if ((st = append_metrics(cfg->out_dir, line, err))) goto done;
            memcpy(avg, m->params->values, (size_t)m->params->total * sizeof(float));
            if ((st = save_swa(cfg, m, avg, keep, cfg->epochs, acc, err))) goto done;
        }
    }
done:
    res->seconds = lb_now() - t0;
    res->peak_rss_mb = lb_peak_rss_mb();
    lb_prefetch_free(pf);
    lb_batcher_free(&b);
    free(y);
    free(snapshot);
    free(avg);
    free(keep);
    lb_graph_free(g);
    return st;
}
