/* rng.c: splitmix64 (Steele, Lea, Flood 2014), passes BigCrush, 8 bytes of state. */
#include "autograd/rng.h"

#include <math.h>

lb_rng lb_rng_make(uint64_t seed)
{
    lb_rng r = { seed ^ 0x9E3779B97F4A7C15ull };
    lb_rng_u64(&r);
    return r;
}

uint64_t lb_rng_u64(lb_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t lb_rng_below(lb_rng *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do x = lb_rng_u64(r);
    while (x >= lim);
    return x % n;
}

float lb_rng_uniform(lb_rng *r)
{
    return (float)(lb_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

float lb_rng_normal(lb_rng *r)
{
    double u1 = ((double)(lb_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(lb_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void lb_rng_shuffle(lb_rng *r, int64_t *idx, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)lb_rng_below(r, (uint64_t)i + 1);
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
