/* simd.h: LB_CLONES, for the hot elementwise and data-movement kernels.
 *
 * The library is built for the baseline x86-64 (SSE2) so that one binary runs anywhere. A
 * kernel marked LB_CLONES is compiled twice, for AVX2 and for the baseline, and the loader
 * picks the one the CPU supports (GCC/Clang function multi-versioning, through glibc's
 * ifunc). AVX2 alone does not enable FMA, so no multiply-add is contracted: both versions
 * round every operation the same way and give bit-identical results.
 * Elsewhere (other architectures, other compilers) LB_CLONES is empty.
 */
#ifndef LB_SIMD_H
#define LB_SIMD_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__) \
    && !defined(LB_NO_CLONES)
#define LB_CLONES __attribute__((target_clones("avx2", "default")))
/* Hand-written AVX2 (intrinsics from <immintrin.h>), for loops the compiler vectorizes badly:
 * a function marked LB_AVX2 may only be called when lb_cpu_avx2() is true. Like the clones
 * it uses no FMA, so it rounds as the portable code does. */
#define LB_HAVE_AVX2 1
#define LB_AVX2 __attribute__((target("avx2")))
#include <immintrin.h>
static inline int lb_cpu_avx2(void) { return __builtin_cpu_supports("avx2"); }
#else
#define LB_CLONES
#define LB_HAVE_AVX2 0
#endif

#endif
