/* rng.h: the one random number generator of lowbit (splitmix64).
 *
 * Every random draw (initialisation, shuffling, dropout, augmentation) takes an explicit
 * lb_rng *, so a seed fully determines a run. There is no global state and no rand().
 *
 *     lb_rng r = lb_rng_make(42);
 *     float u = lb_rng_uniform(&r);      // [0, 1)
 */
#ifndef LB_RNG_H
#define LB_RNG_H

#include <stdint.h>

typedef struct lb_rng {
    uint64_t state;
} lb_rng;

/* A generator seeded with seed; different seeds give independent-looking streams. */
lb_rng lb_rng_make(uint64_t seed);
uint64_t lb_rng_u64(lb_rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t lb_rng_below(lb_rng *r, uint64_t n);
/* Uniform float in [0, 1) with 24 random bits. */
float lb_rng_uniform(lb_rng *r);
/* Standard normal (Box-Muller, one value per call). */
float lb_rng_normal(lb_rng *r);
/* Fisher-Yates shuffle of idx[0..n). */
void lb_rng_shuffle(lb_rng *r, int64_t *idx, int64_t n);

#endif
