/* parallel.h: lowbit's own thread pool, used by every op that is worth splitting.
 *
 * One pool for the whole process: the calling thread plus n-1 workers that wait for work. An
 * op splits its items (images, channels, rows) with lb_parallel_for; each thread gets one
 * contiguous range, always the same one for the same item count and thread count, so results
 * are deterministic at a given thread count (partial sums are combined in thread order).
 * Items that are independent of each other go through lb_parallel_for_dyn instead, in chunks
 * that the threads take as they become free: on a shared machine one core is often slower
 * than the other for a while, and fixed halves then wait for the slower one.
 * OpenBLAS is kept single-threaded: lowbit decides where threads go, so BLAS calls made from
 * inside a parallel region never oversubscribe the cores, and the non-BLAS work (im2col,
 * batch-norm, fake-quant...) runs on all threads too.
 *
 * Each thread also owns a scratch buffer (im2col columns, partial gradients) that ops reserve
 * when they are recorded; it only grows, so steps after the first allocate nothing.
 *
 *     static void relu_part(void *ctx, int64_t lo, int64_t hi, int tid) { ... }
 *     lb_parallel_for(n, 4096, relu_part, &args);   // at least 4096 items a thread
 *
 * Parallel regions do not nest: fn must not call lb_parallel_for (it is an assertion).
 */
#ifndef LB_PARALLEL_H
#define LB_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/status.h"

#define LB_MAX_THREADS 64

/* Work on items [lo, hi) as thread tid (0 is the caller). */
typedef void (*lb_parallel_fn)(void *ctx, int64_t lo, int64_t hi, int tid);

/* Sets the number of threads (1..LB_MAX_THREADS; 0 means one per online CPU), starting or
 * stopping workers, and sets OpenBLAS to one thread. Not callable from a parallel region.
 * LB_ERR_ARG for a bad count, LB_ERR_NOMEM when a thread cannot be started (the pool then
 * keeps the threads it has). */
lb_status lb_parallel_set_threads(int n, lb_error *err);
/* Current number of threads (1 until lb_parallel_set_threads is called). */
int lb_parallel_threads(void);

/* Calls fn on a partition of [0, n) into contiguous ranges, one per thread, using at most
 * n / min_items threads (at least one), and returns when all are done. n <= 0 does nothing. */
void lb_parallel_for(int64_t n, int64_t min_items, lb_parallel_fn fn, void *ctx);
/* Calls fn on [0, n) in chunks of about n / (32 x threads) items, at least min_items (the
 * last may be shorter), handed out in increasing order to whichever thread is free: a thread
 * that runs slower (another job on its core, a busier cache) takes fewer chunks instead of
 * holding up the region. fn may run several times per thread. Only for items whose results
 * do not depend on which thread computes them or in which order (no per-thread partial
 * sums): then the result is the same as lb_parallel_for's. Uses at most n / min_items
 * threads (at least one). */
void lb_parallel_for_dyn(int64_t n, int64_t min_items, lb_parallel_fn fn, void *ctx);
/* The range thread t of T gets out of n items: [n*t/T, n*(t+1)/T). */
static inline void lb_parallel_range(int64_t n, int t, int T, int64_t *lo, int64_t *hi)
{
    *lo = n * t / T;
    *hi = n * (t + 1) / T;
}
/* Number of threads lb_parallel_for(n, min_items, ...) would use. */
int lb_parallel_count(int64_t n, int64_t min_items);

/* Makes every thread's scratch at least `bytes` (64-byte aligned). LB_ERR_NOMEM on failure. */
lb_status lb_parallel_reserve(size_t bytes, lb_error *err);
/* Thread tid's scratch (valid until the next lb_parallel_reserve or set_threads). */
void *lb_parallel_scratch(int tid);

/* One more buffer, shared by all threads, for data an op prepares before its parallel region
 * and only reads inside it (packed weights): at least `bytes`, only grows. Ops run one at a
 * time, so each op may use all of it during its forward or backward call. LB_ERR_NOMEM on
 * failure. */
lb_status lb_parallel_reserve_shared(size_t bytes, lb_error *err);
/* The shared buffer (valid until the next lb_parallel_reserve_shared). */
void *lb_parallel_shared(void);

/* Stops the workers and frees the scratch (at exit; the pool restarts on demand). */
void lb_parallel_shutdown(void);

#endif
