/* batcher.c: mini-batches over an lb_dataset (in memory or streamed from its file), in a seeded
 * shuffled or stored order, with optional augmentation (random crop with zero padding,
 * horizontal flip, cutout).
 *
 * The order array is allocated once by lb_batcher_init; each epoch reshuffles it in place
 * from the batcher's own lb_rng, so a seed fixes every epoch's order. The augmentation of the
 * sample at position p of epoch e is drawn from a generator seeded by (aug_seed, e, p) alone:
 * a resumed run that replays the shuffles and skips to p gets the same crops and flips, and
 * a prefetching thread gets the same ones too. lb_batcher_next only converts pixels into the
 * caller's buffers and allocates nothing: a streamed sample is read (lb_dataset_pixels) into
 * the one-sample buffer allocated by lb_batcher_init, then goes through the same conversion
 * as an in-memory one, so both give the same floats. A read error is kept in the batcher
 * (sticky) and lb_batcher_next returns -1 from then on. Prefetching is in prefetch.c.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"

#define AUG_PAD 4 /* pixels of zero padding on each side before the random crop */

/* splitmix64's finaliser: a bijective mix of 64 bits. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

lb_status lb_augment_parse(const char *s, lb_augment *out, lb_error *err)
{
    if (s && !strcmp(s, "none")) return *out = LB_AUGMENT_NONE, LB_OK;
    if (s && !strcmp(s, "crop-flip")) return *out = LB_AUGMENT_CROP_FLIP, LB_OK;
    return lb_errorf(err, LB_ERR_ARG, "augmentation '%s': expected crop-flip or none",
                     s ? s : "NULL");
}

const char *lb_augment_name(lb_augment a)
{
    return a == LB_AUGMENT_CROP_FLIP ? "crop-flip" : "none";
}

void lb_augment_pixels(const lb_dataset *ds, const uint8_t *pix, lb_augment a, lb_rng *r,
                       float *out)
{
    LB_ASSERT(ds && pix && ds->c >= 1 && ds->c <= 3);
    const int     H = ds->h, W = ds->w;
    const int64_t hw = (int64_t)H * W;
    if (a == LB_AUGMENT_NONE) { /* the expression of lb_dataset_get, bit for bit */
        for (int ch = 0; ch < ds->c; ch++) {
            const float mean = ds->mean[ch], std = ds->std[ch];
            for (int64_t k = 0; k < hw; k++)
                out[ch * hw + k] = ((float)pix[ch * hw + k] / 255.0f - mean) / std;
        }
        return;
    }
    /* out[y][x] = padded[y + dy][x' + dx] with x' = W-1-x when flipped, where padded is the
     * raw image with AUG_PAD pixels of value 0 around it, normalised afterwards (PyTorch:
     * RandomCrop(padding=4) and RandomHorizontalFlip on the image, then Normalize). */
    const int  dy = (int)lb_rng_below(r, 2 * AUG_PAD + 1) - AUG_PAD;
    const int  dx = (int)lb_rng_below(r, 2 * AUG_PAD + 1) - AUG_PAD;
    const bool flip = lb_rng_below(r, 2) == 1;
    for (int ch = 0; ch < ds->c; ch++) {
        const float    mean = ds->mean[ch], std = ds->std[ch];
        const float    zero = (0.0f / 255.0f - mean) / std; /* a padding pixel */
        const uint8_t *src = pix + ch * hw;
        float         *dst = out + ch * hw;
        for (int y = 0; y < H; y++) {
            const int sy = y + dy;
            for (int x = 0; x < W; x++) {
                const int sx = (flip ? W - 1 - x : x) + dx;
                dst[(int64_t)y * W + x] =
                    sy < 0 || sy >= H || sx < 0 || sx >= W
                        ? zero
                        : ((float)src[(int64_t)sy * W + sx] / 255.0f - mean) / std;
            }
        }
    }
}

void lb_cutout_pixels(const lb_dataset *ds, int size, lb_rng *r, float *out)
{
    LB_ASSERT(ds && r && size > 0);
    const int     H = ds->h, W = ds->w;
    const int64_t hw = (int64_t)H * W;
    const int     cy = (int)lb_rng_below(r, (uint64_t)H), cx = (int)lb_rng_below(r, (uint64_t)W);
    const int     y0 = cy - size / 2, x0 = cx - size / 2;
    const int     ya = y0 < 0 ? 0 : y0, yb = y0 + size > H ? H : y0 + size;
    const int     xa = x0 < 0 ? 0 : x0, xb = x0 + size > W ? W : x0 + size;
    for (int ch = 0; ch < ds->c; ch++)
        for (int y = ya; y < yb; y++)
            for (int x = xa; x < xb; x++) out[ch * hw + (int64_t)y * W + x] = 0.0f;
}

lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int64_t batch, bool shuffle,
                          uint64_t seed, lb_error *err)
{
    memset(b, 0, sizeof *b);
    if (!ds || ds->n < 1 || (!ds->images && !lb_dataset_streams(ds)) || !ds->labels)
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
    if (lb_dataset_streams(ds)) {
        const size_t chw = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
        if (!(b->pix = malloc(chw))) {
            free(b->order);
            memset(b, 0, sizeof *b);
            return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory for a %zu-byte sample",
                             ds->source, chw);
        }
    }
    for (int64_t i = 0; i < ds->n; i++) b->order[i] = i;
    b->ds      = ds;
    b->batch   = batch;
    b->shuffle = shuffle;
    b->rng      = lb_rng_make(seed);
    b->aug_seed = mix64(seed ^ 0xA076F1D3C2B5E497ull);
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
    if (b->err.status != LB_OK) return -1; /* sticky */
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
        const int64_t  i   = b->order[b->pos + j];
        const uint8_t *pix = lb_dataset_pixels(ds, i, b->pix, &b->err);
        if (!pix) {
            if (b->err.status == LB_OK) b->err.status = LB_ERR_IO;
            return -1; /* pos unchanged: the batch was not served */
        }
        lb_rng r, *rp = NULL; /* LB_AUGMENT_NONE without cutout draws nothing */
        if (b->augment != LB_AUGMENT_NONE || b->cutout > 0)
            r = lb_rng_make(mix64(mix64(b->aug_seed + (uint64_t)b->epoch) +
                                  (uint64_t)(b->pos + j))), rp = &r;
        lb_augment_pixels(ds, pix, b->augment, rp, x + j * chw);
        if (b->cutout > 0) lb_cutout_pixels(ds, b->cutout, rp, x + j * chw);
        y[j] = ds->labels[i];
    }
    b->pos += k;
    return k;
}

lb_status lb_batcher_status(const lb_batcher *b, lb_error *err)
{
    if (!b || b->err.status == LB_OK) return LB_OK;
    if (err) *err = b->err;
    return b->err.status;
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
    free(b->pix);
    memset(b, 0, sizeof *b);
}
