/* loop.h: the training loop and evaluation.
 *
 * lb_train runs epochs of shuffled mini-batches (forward, softmax cross-entropy, backward,
 * optimizer step), evaluates on the test set after each epoch, appends one JSON line per
 * epoch to <out_dir>/metrics.jsonl and saves <out_dir>/last.ckpt atomically. The graph arena
 * is sized by the first step and reused, so later steps do no malloc. Progress goes to
 * cfg->log (a bar redrawn in place when log_tty, one line per epoch otherwise); NULL is
 * silent.
 *
 *     lb_train_cfg cfg = lb_train_cfg_default();
 *     cfg.epochs = 5; cfg.out_dir = "runs/lenet5"; cfg.log = stdout;
 *     lb_train_result res;
 *     if (lb_train(model, &train, &test, &cfg, &res, &err) != LB_OK) ...
 */
#ifndef LB_LOOP_H
#define LB_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "datasets/dataset.h"
#include "layers/model.h"
#include "train/optim.h"
#include "train/schedule.h"

/* What a NaN or Inf in the loss or in a gradient does to a training run. */
typedef enum lb_nonfinite {
    LB_NONFINITE_STOP = 0, /* return LB_ERR_NUMERIC; last.ckpt keeps the last good state     */
    LB_NONFINITE_SKIP,     /* drop the step (no update, no optimizer state change, the forward
                              pass's buffer updates undone), count it, go on                  */
} lb_nonfinite;

#define LB_MAX_SKIPS_IN_ROW 100 /* default of lb_train_cfg.max_skips_in_row */

typedef struct lb_train_cfg {
    int          epochs;
    int64_t      batch;
    int64_t      eval_batch;  /* test-set batch; 0: the training batch            */
    lb_optim_cfg optim;
    lb_schedule  sched;       /* total is filled in from epochs x batches            */
    float        warmup_epochs; /* warm-up length in epochs (sched.warmup overrides) */
    uint64_t     seed;        /* shuffling and dropout                              */
    const char  *out_dir;     /* NULL: no files written                             */
    const char  *dataset;     /* name recorded in checkpoints                       */
    FILE        *log;         /* progress output or NULL                            */
    bool         log_tty;     /* redraw a progress bar with \r                      */
    int64_t      max_steps;   /* > 0: stop each epoch after this many steps (tests)  */
    int          fold_bn_epoch; /* > 0: fold BN into conv/linear from this epoch on, with
                                 its statistics frozen (quant/bn_fold.h); 0: never    */
    const struct lb_ckpt_meta *resume; /* non-NULL: continue the run this checkpoint of
                                 m ended (epochs, steps, optimizer and random state);
                                 the other settings must be the original run's      */
    int          stop_after_epoch; /* > 0: stop after this epoch as if interrupted  */
    const volatile sig_atomic_t *stop; /* non-NULL: when *stop becomes non-zero (a signal
                                 handler sets it), the loop saves a checkpoint after the
                                 current step and returns LB_ERR_INTERRUPTED           */
    int64_t      stop_after_step; /* > 0: behave as if *stop were set after this step */
    lb_augment   augment;     /* training-batch augmentation (LB_AUGMENT_NONE)         */
    int          cutout;      /* > 0: cutout square side in pixels (lb_cutout_pixels)   */
    float        label_smoothing; /* training loss's label smoothing eps, in [0, 1); the
                                 evaluation loss is always plain cross-entropy        */
    int          swa_start;   /* > 0: stochastic weight averaging (Izmailov et al., 2018;
                                 torch.optim.swa_utils): the parameters are averaged at
                                 the end of every epoch from this one (1-based) to the
                                 last; after the last, the average, with batch-norm
                                 statistics recomputed as lb_update_bn does but on
                                 batches augmented as in training (as torch's
                                 update_bn(train_loader) sees them: statistics of
                                 unaugmented images cost a CIFAR-10 ResNet-20 trained
                                 with crop, flip and Cutout 1.8 points), is evaluated and
                                 written to <out_dir>/swa.ckpt, and its accuracy is the
                                 run's result (last.ckpt keeps the last iterate). 0: off */
    bool         prefetch;    /* prepare batches on a background thread (true); the
                                 batches are the same either way                     */
    lb_nonfinite nonfinite;   /* NaN/Inf loss or gradient: stop (default) or skip the step */
    int          max_skips_in_row; /* skip mode: this many consecutive skipped steps stop the
                                 run anyway with LB_ERR_NUMERIC (0: LB_MAX_SKIPS_IN_ROW)  */
    int64_t      nonfinite_at_step; /* > 0: tests: the gradients of this step of the run
                                 (1-based, as res.steps counts) are made NaN           */
} lb_train_cfg;

typedef struct lb_train_result {
    int     epochs;
    int64_t steps;
    double  train_loss;         /* mean over the last epoch                          */
    double  train_acc;
    double  test_loss, test_acc;/* after the last epoch                             */
    double  seconds;            /* wall time of the whole run, evaluation included   */
    double  train_seconds;      /* time in training steps only                       */
    double  train_images_per_s; /* training images / train_seconds                   */
    double  peak_rss_mb;
    double  data_wait_s;        /* time the training steps waited for their batch      */
    int64_t skipped_steps;      /* steps dropped for a NaN/Inf (skip mode), resumes included */
} lb_train_result;

lb_train_cfg lb_train_cfg_default(void);

/* Trains m in place. A NaN or Inf loss or gradient returns LB_ERR_NUMERIC with a message
 * naming the epoch, the step and (for a gradient) the parameter, or, with cfg->nonfinite ==
 * LB_NONFINITE_SKIP, drops that step and goes on until max_skips_in_row steps in a row were
 * dropped. A checkpoint is never written with a NaN or Inf in it (LB_ERR_NUMERIC instead), so
 * <out_dir>/last.ckpt always holds the last good state. LB_ERR_IO when the run folder
 * cannot be written; LB_ERR_INTERRUPTED when *cfg->stop was set (state saved). */
lb_status lb_train(lb_model *m, const lb_dataset *train, const lb_dataset *test,
                   const lb_train_cfg *cfg, lb_train_result *res, lb_error *err);

/* Recomputes every batch-norm layer's running statistics from ds as PyTorch's
 * torch.optim.swa_utils.update_bn does with a training loader: running mean 0 and variance 1,
 * then one pass over ds in a shuffled order (a fixed seed, so the same result every time; in
 * order, a data set stored class by class would give batches of one class, whose variances
 * leave out the variance between classes), without augmentation, in training mode without
 * gradients, batch k moving the statistics with momentum 1/k, which leaves the plain mean
 * over the batches of the batch means and of the (unbiased) batch variances. Other
 * training-mode state (activation range observers) updates as in any training forward.
 * Nothing to do without batch-norm, or with it folded (frozen statistics). */
lb_status lb_update_bn(lb_model *m, const lb_dataset *ds, int64_t batch, lb_error *err);

/* Accuracy (0..1) and mean loss of m on all of ds, in eval mode (running BN statistics, no
 * dropout, no gradients). */
lb_status lb_evaluate(lb_model *m, const lb_dataset *ds, int64_t batch, double *acc, double *loss,
                      lb_error *err);

/* lb_evaluate, also storing every sample's predicted class (argmax of the logits, the first
 * on ties) in pred[0 .. ds->n) when pred is non-NULL. */
lb_status lb_predict(lb_model *m, const lb_dataset *ds, int64_t batch, int32_t *pred, double *acc,
                     double *loss, lb_error *err);

/* Peak resident set size of this process in MiB. */
double lb_peak_rss_mb(void);
/* Monotonic wall clock in seconds. */
double lb_now(void);

#endif
