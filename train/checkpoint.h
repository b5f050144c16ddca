/* checkpoint.h: saving and loading a model with its training state.
 *
 * A checkpoint holds the model description text and its quantization configuration (so the
 * architecture is rebuilt exactly),
 * every parameter and buffer by name and shape, optionally the optimizer moments, and a few
 * key=value metadata lines. It is written to "<path>.tmp", flushed, fsynced and renamed over
 * <path>, so a crash or a full disk never leaves a half-written checkpoint in place.
 *
 * Layout (little-endian), version 1:
 *     "LBCK" u32 version | u32 spec_len, spec | u32 meta_len, meta ("key=value\n"...)
 *     u32 qcfg_len, qcfg (the quantization configuration as lb_qconfig_to_text writes it)
 *     u32 n_tensors | per tensor: u16 name_len, name, u32 flags, u32 n_dims, i64 shape[n_dims]
 *     u8 has_moments | f32 values[total] | (f32 m[total], f32 v[total] if has_moments)
 *     u32 crc32 of every byte before it (zlib's crc32)
 *
 *     lb_ckpt_meta meta = { .epoch = 5 };  snprintf(meta.dataset, ..., "mnist");
 *     lb_checkpoint_save("runs/x/last.ckpt", model, &meta, true, &err);
 *     lb_model *m;  lb_checkpoint_load("runs/x/last.ckpt", &m, &meta, &err);
 */
#ifndef LB_CHECKPOINT_H
#define LB_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "layers/model.h"

#define LB_CKPT_VERSION 1

typedef struct lb_ckpt_meta {
    char     dataset[32];    /* dataset the model was trained on ("mnist")             */
    int64_t  epoch;          /* epochs completed                                       */
    int64_t  step;           /* optimizer steps completed                              */
    int64_t  optim_t;        /* optimizer step counter (Adam bias correction)          */
    uint64_t seed;
    double   test_acc;       /* last evaluation (0..1), or -1                          */
    double   train_loss;
    int      bn_folded;      /* the model had BN folded (restored into lb_model)       */
    uint64_t rng_dropout;    /* the training loop's dropout generator, for resuming    */
    int64_t  epoch_step;     /* steps done in epoch `epoch + 1` when the run was stopped
                                in the middle of it (0: stopped at an epoch's end)     */
    int64_t  skipped;        /* training steps dropped for a NaN/Inf (--nonfinite skip) */
} lb_ckpt_meta;

/* Writes m's parameters (and moments when with_moments and present) atomically to path. */
lb_status lb_checkpoint_save(const char *path, const lb_model *m, const lb_ckpt_meta *meta,
                             bool with_moments, lb_error *err);
/* Reads and validates path (size, magic, version, CRC, every length and shape), rebuilds the
 * model from its description and fills its parameters (and moments, if stored). On error *out
 * is NULL and err names the file and the problem. meta may be NULL. */
lb_status lb_checkpoint_load(const char *path, lb_model **out, lb_ckpt_meta *meta, lb_error *err);

#endif
