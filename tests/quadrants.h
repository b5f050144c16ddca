/* quadrants.h: the toy classification data of the train tests (test_train.c,
 * test_train_sensitivity.c): 4 classes of 8x8 gray images, class k has a bright 4x4 quadrant
 * k over uniform noise in [0, noise); the quadrant adds `bright`. */
#ifndef LB_TESTS_QUADRANTS_H
#define LB_TESTS_QUADRANTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "datasets/dataset.h"

static inline void quadrants_dataset(lb_dataset *ds, const char *name, int64_t n, uint64_t seed,
                                     int noise, int bright)
{
    memset(ds, 0, sizeof *ds);
    snprintf(ds->name, sizeof ds->name, "%s", name);
    snprintf(ds->source, sizeof ds->source, "memory");
    ds->n = n, ds->c = 1, ds->h = 8, ds->w = 8, ds->n_classes = 4;
    ds->images = malloc((size_t)n * 64);
    ds->labels = malloc((size_t)n * sizeof(int32_t));
    ds->mean[0] = 0.3f, ds->std[0] = 0.3f;
    lb_rng r = lb_rng_make(seed);
    for (int64_t i = 0; i < n; i++) {
        const int k = (int)lb_rng_below(&r, 4);
        ds->labels[i] = k;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                const bool on = (y / 4) * 2 + (x / 4) == k;
                ds->images[i * 64 + y * 8 + x] =
                    (uint8_t)(lb_rng_below(&r, (uint64_t)noise) + (on ? bright : 0));
            }
    }
}

#endif
