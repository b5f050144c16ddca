/* dataset.h: labelled image datasets in memory, found by name, served in mini-batches.
 *
 * A dataset holds N images of C x H x W uint8 pixels and N labels, loaded once. Batches are
 * drawn through an lb_batcher: a seeded shuffle per epoch (or the stored order) and
 * conversion to normalised float NCHW, written into a buffer the caller owns, so the
 * training step allocates nothing.
 *
 *     lb_dataset train, test;  lb_error err = {0};
 *     if (lb_dataset_load("mnist", NULL, LB_SPLIT_TRAIN, &train, &err) != LB_OK) ...
 *     lb_batcher b;  lb_batcher_init(&b, &train, 64, true, 42, &err);  // seed 42
 *     for (int e = 0; e < epochs; e++) {
 *         lb_batcher_start_epoch(&b);                   // reshuffles
 *         while ((n = lb_batcher_next(&b, x, y)) > 0) { ... }  // x: 64*C*H*W floats, y: 64
 *     }
 *     lb_batcher_free(&b);  lb_dataset_free(&train);
 */
#ifndef LB_DATASET_H
#define LB_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/rng.h"
#include "autograd/status.h"

#define LB_DATASET_MAX_CLASSES 1000

typedef enum { LB_SPLIT_TRAIN = 0, LB_SPLIT_TEST = 1 } lb_split;

typedef struct lb_dataset {
    char     name[32];        /* "mnist", "fashion-mnist"                          */
    char     source[1024];    /* file (or folder) the images were read from        */
    int64_t  n;               /* number of samples                                 */
    int      c, h, w;         /* image geometry                                    */
    int      n_classes;       /* labels are in [0, n_classes)                      */
    uint8_t *images;          /* (n, c, h, w) raw pixels                           */
    int32_t *labels;          /* (n)                                               */
    float    mean[3], std[3]; /* per-channel normalisation of pixel/255            */
} lb_dataset;

/* Reads an IDX image file and an IDX label file (each gzip-compressed or plain; zlib reads
 * both) into ds. Validates magic numbers (0x00000803 images, 0x00000801 labels), dims
 * (1..4096 rows/cols), counts that agree, and that the files hold as many bytes as their
 * headers claim, before allocating more than what was actually read. Errors name the file.
 * Also accepted: labels stored as big-endian int32 (magic 0x00000C01, IDX type 0x0C), for
 * datasets with more than 256 classes. Every label must be in 0..LB_DATASET_MAX_CLASSES-1;
 * n_classes = largest label + 1, c = 1, name is left empty, source = images_path, and the
 * normalisation is the identity (mean 0, std 1). Extra bytes after the data are an error.
 * Status: LB_ERR_IO (cannot open/read; strerror), LB_ERR_FORMAT (malformed), LB_ERR_NOMEM.
 * ds is overwritten (not freed) first and stays zeroed on failure; nothing leaks. On success
 * the caller owns ds's buffers and releases them with lb_dataset_free. */
lb_status lb_idx_load(const char *images_path, const char *labels_path, lb_dataset *ds,
                      lb_error *err);

/* Finds and loads a dataset by name ("mnist", "fashion-mnist", alias "fashion"). A non-NULL
 * data_dir is the only root searched: an explicit choice never silently falls back. Otherwise
 * the roots are, in order: $LOWBIT_DATA, ../shared/datasets relative to the working
 * directory, LB_SOURCE_DIR/../shared/datasets (the source tree), <executable's dir>/../../
 * shared/datasets and <executable's dir>/../shared/datasets, and /usr/share/datasets (Debian's
 * dataset-fashion-mnist). Within a root, files are looked for as <root>/<name>/<file> and
 * <root>/<file>, plain or .gz, with <file> = {train,t10k}-{images-idx3,labels-idx1}-ubyte;
 * images and labels must sit in the same folder. Sets name, source (the images file) and the
 * standard normalisation (MNIST 0.1307/0.3081, Fashion-MNIST 0.2860/0.3530).
 * Status: LB_ERR_ARG (unknown name or split); LB_ERR_IO when nothing was found, with a message
 * listing the roots (cut to fit) and a hint; otherwise as lb_idx_load. */
lb_status lb_dataset_load(const char *name, const char *data_dir, lb_split split, lb_dataset *ds,
                          lb_error *err);

/* Frees the pixel and label buffers; accepts a zeroed or already freed dataset. */
void lb_dataset_free(lb_dataset *ds);

/* Writes sample i as normalised floats (c*h*w values) into out:
 * out[ch*h*w + k] = (pixel / 255 - mean[ch]) / std[ch]. i out of range is a bug (LB_ASSERT). */
void lb_dataset_get(const lb_dataset *ds, int64_t i, float *out);

typedef struct lb_batcher {
    const lb_dataset *ds;
    int64_t  batch;
    bool     shuffle;
    bool     drop_last;    /* skip a final partial batch (training)                  */
    lb_rng   rng;
    int64_t *order;        /* (ds->n) permutation of this epoch                      */
    int64_t  pos;          /* next index into order                                  */
    int64_t  epoch;        /* epochs started so far                                  */
} lb_batcher;

/* Prepares batching of ds; allocates the order array once. drop_last starts false (set the
 * field to skip a final partial batch). ds must outlive b. LB_ERR_ARG for batch < 1 or an
 * empty dataset, LB_ERR_NOMEM. The same seed gives the same order in every epoch. */
lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int64_t batch, bool shuffle,
                          uint64_t seed, lb_error *err);
/* Starts an epoch: reshuffles (when shuffling) from the batcher's rng. */
void lb_batcher_start_epoch(lb_batcher *b);
/* Fills x (batch*c*h*w floats) and y (batch labels) with the next batch of this epoch and
 * returns its size, 0 at the end of the epoch. Allocates nothing. The first call starts
 * epoch 1 itself if lb_batcher_start_epoch was never called; after the end of an epoch it
 * keeps returning 0 until the next lb_batcher_start_epoch. */
int64_t lb_batcher_next(lb_batcher *b, float *x, int32_t *y);
/* Number of batches per epoch (honours drop_last). */
int64_t lb_batcher_count(const lb_batcher *b);
/* Frees the order array; accepts a zeroed or already freed batcher. */
void lb_batcher_free(lb_batcher *b);

#endif
