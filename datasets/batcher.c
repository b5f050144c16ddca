/* batcher.c: mini-batches over an in-memory lb_dataset, in a seeded shuffled or stored order.
 *
 * The order array is allocated once by lb_batcher_init; each epoch reshuffles it in place
 * from the batcher's own lb_rng, so a seed fixes every epoch's order. lb_batcher_next only
 * converts pixels into the caller's buffers and allocates nothing.
 * It does no augmentation and no prefetching on another thread.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"

lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int64_t batch, bool shuffle,
                          uint64_t seed, lb_error *err)
{
    memset(b, 0, sizeof *b);
    if (!ds || ds->n < 1 || !ds->images || !ds->labels)
        return lb_errorf(err, LB_ERR_ARG, "lb_batcher_init: dataset is empty or not loaded");
    if (batch < 1)
        return lb_errorf(err, LB_ERR_ARG, "%s: batch size %" PRId64 " (expected >= 1)",
                         ds->source, batch);
    if ((uint64_t)ds->n > SIZE_MAX / sizeof *b->order)
        return lb_errorf(err, LB_ERR_NOMEM, "%s: %" PRId64 " samples: order array too large",
                         ds->source, ds->n);
    b->order = malloc((size_t)ds->n * sizeof *b->order);
    if (!b->order)
        return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory for the order of %" PRId64
                         " samples", ds->source, ds->n);
    for (int64_t i = 0; i < ds->n; i++) b->order[i] = i;
    b->ds      = ds;
    b->batch   = batch;
    b->shuffle = shuffle;
    b->rng     = lb_rng_make(seed);
    return LB_OK;
}

void lb_batcher_start_epoch(lb_batcher *b)
{
    LB_ASSERT(b && b->order);
    /* Shuffling the previous permutation (not the identity) is equally uniform and keeps the
     * whole sequence of epochs a function of the seed alone. */
    if (b->shuffle) lb_rng_shuffle(&b->rng, b->order, b->ds->n);
    b->pos = 0;
    b->epoch++;
}

int64_t lb_batcher_next(lb_batcher *b, float *x, int32_t *y)
{
    LB_ASSERT(b && b->order);
    if (b->epoch == 0) lb_batcher_start_epoch(b); /* first call without start_epoch */
    const lb_dataset *ds   = b->ds;
    const int64_t     left = ds->n - b->pos;
    if (left <= 0) return 0;
    const int64_t k = left < b->batch ? left : b->batch;
    if (k < b->batch && b->drop_last) {
        b->pos = ds->n;
        return 0;
    }
    const int64_t chw = (int64_t)ds->c * ds->h * ds->w;
    for (int64_t j = 0; j < k; j++) {
        const int64_t i = b->order[b->pos + j];
        lb_dataset_get(ds, i, x + j * chw);
        y[j] = ds->labels[i];
    }
    b->pos += k;
    return k;
}

int64_t lb_batcher_count(const lb_batcher *b)
{
    if (!b || !b->ds || b->batch < 1) return 0;
    return b->drop_last ? b->ds->n / b->batch : (b->ds->n + b->batch - 1) / b->batch;
}

void lb_batcher_free(lb_batcher *b)
{
    if (!b) return;
    free(b->order);
    memset(b, 0, sizeof *b);
}
