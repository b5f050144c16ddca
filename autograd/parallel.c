/* parallel.c: the thread pool of parallel.h.
 *
 * Work is published by bumping a generation counter; workers spin briefly on it (a step
 * issues hundreds of short regions back to back, and a futex wake costs more than most of
 * them) and then sleep on a condition variable. The caller runs range 0 itself and waits for
 * a pending counter to reach zero the same way. lb_parallel_for_dyn's chunks are handed out
 * by an atomic counter instead of the fixed ranges.
 */
#define _GNU_SOURCE
#include "autograd/parallel.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/blas.h"

#define DYN_CHUNKS 32 /* lb_parallel_for_dyn: chunks per thread, for items of similar cost */
#define SPIN_ITERS 4000 /* about 50-200 us of pause: covers the gap between back-to-back regions
                          * of a step, then yields the core (which matters when threads
                          * outnumber free cores) */

static struct {
    int             n;        /* threads including the caller */
    pthread_t       th[LB_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t  cv_work, cv_done;
    atomic_uint     gen;      /* bumped for every region      */
    atomic_int      pending;  /* workers still running        */
    atomic_bool     stop;
    bool            in_region;
    unsigned        start_gen; /* gen when the workers were started */
    /* the current region */
    lb_parallel_fn  fn;
    void           *ctx;
    int64_t         items;
    int             used;     /* threads taking part          */
    int64_t         chunk;    /* lb_parallel_for_dyn: items per chunk; 0: fixed ranges */
    atomic_llong    next;     /* its next chunk's first item  */
    /* per-thread scratch */
    void           *scratch[LB_MAX_THREADS];
    size_t          scratch_bytes;
    void           *shared;         /* lb_parallel_reserve_shared */
    size_t          shared_bytes;
} P = { .n = 1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv_work = PTHREAD_COND_INITIALIZER,
        .cv_done = PTHREAD_COND_INITIALIZER };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_part(int tid)
{
    if (tid >= P.used) return;
    if (P.chunk > 0) { /* chunks in increasing order, to whichever thread asks first */
        for (;;) {
            const int64_t lo = atomic_fetch_add_explicit(&P.next, P.chunk, memory_order_relaxed);
            if (lo >= P.items) return;
            P.fn(P.ctx, lo, P.items - lo > P.chunk ? lo + P.chunk : P.items, tid);
        }
    }
    int64_t lo, hi;
    lb_parallel_range(P.items, tid, P.used, &lo, &hi);
    if (hi > lo) P.fn(P.ctx, lo, hi, tid);
}

static void *worker(void *arg)
{
    const int tid = (int)(intptr_t)arg;
    /* the generation when the pool was (re)started, not now: a region may already have been
     * published by the time this thread runs */
    unsigned seen = P.start_gen;
    for (;;) {
        unsigned g = 0;
        for (int i = 0; i < SPIN_ITERS; i++) {
            g = atomic_load_explicit(&P.gen, memory_order_acquire);
            if (g != seen || atomic_load(&P.stop)) break;
            cpu_relax();
        }
        if (g == seen && !atomic_load(&P.stop)) {
            pthread_mutex_lock(&P.mu);
            while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen
                   && !atomic_load(&P.stop))
                pthread_cond_wait(&P.cv_work, &P.mu);
            pthread_mutex_unlock(&P.mu);
        }
        if (atomic_load(&P.stop)) break;
        seen = g;
        run_part(tid);
        if (atomic_fetch_sub_explicit(&P.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&P.mu);
            pthread_cond_signal(&P.cv_done);
            pthread_mutex_unlock(&P.mu);
        }
    }
    return NULL;
}

static void stop_workers(void)
{
    if (P.n <= 1) return;
    pthread_mutex_lock(&P.mu);
    atomic_store(&P.stop, true);
    pthread_cond_broadcast(&P.cv_work);
    pthread_mutex_unlock(&P.mu);
    for (int t = 1; t < P.n; t++) pthread_join(P.th[t], NULL);
    atomic_store(&P.stop, false);
    P.n = 1;
}

static void free_scratch(void)
{
    for (int t = 0; t < LB_MAX_THREADS; t++) {
        free(P.scratch[t]);
        P.scratch[t] = NULL;
    }
    P.scratch_bytes = 0;
}

lb_status lb_parallel_set_threads(int n, lb_error *err)
{
    LB_ASSERT(!P.in_region);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c < 1 ? 1 : c > LB_MAX_THREADS ? LB_MAX_THREADS : (int)c;
    }
    if (n < 1 || n > LB_MAX_THREADS)
        return lb_errorf(err, LB_ERR_ARG, "%d threads (expected 1..%d, or 0 for one per CPU)", n,
                         LB_MAX_THREADS);
    lb_blas_set_threads(1);
    if (n == P.n) return LB_OK;
    stop_workers();
    const size_t keep = P.scratch_bytes;
    free_scratch(); /* re-reserved below for the new thread count */
    P.start_gen = atomic_load(&P.gen);
    for (int t = 1; t < n; t++) {
        int e = pthread_create(&P.th[t], NULL, worker, (void *)(intptr_t)t);
        if (e) {
            lb_errorf(err, LB_ERR_NOMEM, "cannot start thread %d of %d: %s", t + 1, n,
                      strerror(e));
            break;
        }
        P.n = t + 1;
    }
    lb_status st = lb_parallel_reserve(keep, err);
    return P.n == n ? st : LB_ERR_NOMEM;
}

int lb_parallel_threads(void) { return P.n; }

int lb_parallel_count(int64_t n, int64_t min_items)
{
    if (n <= 0) return 0;
    if (min_items < 1) min_items = 1;
    const int64_t most = n / min_items;
    return most < 1 ? 1 : most < P.n ? (int)most : P.n;
}

/* One region: fixed ranges (chunk 0) or chunks handed out as threads ask for them. */
static void region(int64_t n, int used, int64_t chunk, lb_parallel_fn fn, void *ctx)
{
    if (n <= 0) return;
    LB_ASSERT(!P.in_region); /* regions do not nest */
    if (used == 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    P.in_region = true;
    P.fn = fn;
    P.ctx = ctx;
    P.items = n;
    P.used = used;
    P.chunk = chunk;
    atomic_store_explicit(&P.next, 0, memory_order_relaxed); /* published with gen below */
    atomic_store_explicit(&P.pending, P.n - 1, memory_order_relaxed);
    pthread_mutex_lock(&P.mu);
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
    pthread_cond_broadcast(&P.cv_work);
    pthread_mutex_unlock(&P.mu);
    run_part(0);
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&P.pending, memory_order_acquire) == 0) break;
        cpu_relax();
    }
    if (atomic_load_explicit(&P.pending, memory_order_acquire) != 0) {
        pthread_mutex_lock(&P.mu);
        while (atomic_load_explicit(&P.pending, memory_order_acquire) != 0)
            pthread_cond_wait(&P.cv_done, &P.mu);
        pthread_mutex_unlock(&P.mu);
    }
    P.in_region = false;
}

void lb_parallel_for(int64_t n, int64_t min_items, lb_parallel_fn fn, void *ctx)
{
    region(n, lb_parallel_count(n, min_items), 0, fn, ctx);
}

void lb_parallel_for_dyn(int64_t n, int64_t min_items, lb_parallel_fn fn, void *ctx)
{
    if (min_items < 1) min_items = 1;
    int64_t chunk = (n + DYN_CHUNKS * P.n - 1) / (DYN_CHUNKS * P.n);
    if (chunk < min_items) chunk = min_items;
    region(n, lb_parallel_count(n, min_items), chunk, fn, ctx);
}

lb_status lb_parallel_reserve(size_t bytes, lb_error *err)
{
    LB_ASSERT(!P.in_region);
    if (bytes <= P.scratch_bytes && P.scratch[0]) return LB_OK;
    if (bytes < P.scratch_bytes) bytes = P.scratch_bytes;
    if (bytes == 0) return LB_OK;
    bytes = (bytes + 63) & ~(size_t)63;
    for (int t = 0; t < P.n; t++) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0)
            return lb_errorf(err, LB_ERR_NOMEM, "out of memory for %zu bytes of thread scratch",
                             bytes);
        free(P.scratch[t]);
        P.scratch[t] = p;
    }
    P.scratch_bytes = bytes;
    return LB_OK;
}

void *lb_parallel_scratch(int tid)
{
    LB_ASSERT(tid >= 0 && tid < P.n);
    return P.scratch[tid];
}

lb_status lb_parallel_reserve_shared(size_t bytes, lb_error *err)
{
    LB_ASSERT(!P.in_region);
    if (bytes <= P.shared_bytes && P.shared) return LB_OK;
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return lb_errorf(err, LB_ERR_NOMEM, "out of memory for %zu bytes of shared scratch",
                         bytes);
    free(P.shared);
    P.shared = p;
    P.shared_bytes = bytes;
    return LB_OK;
}

void *lb_parallel_shared(void) { return P.shared; }

void lb_parallel_shutdown(void)
{
    stop_workers();
    free_scratch();
    free(P.shared);
    P.shared = NULL;
    P.shared_bytes = 0;
}
