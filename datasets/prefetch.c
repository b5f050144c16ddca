/* prefetch.c: batches prepared on a background thread (pthreads), two buffers deep.
 *
 * One worker thread calls lb_batcher_next into whichever of the two buffers is free while the
 * caller trains on the previous batch; lb_prefetch_next copies the oldest full buffer out.
 * The batcher is touched by the worker only between start_epoch calls, and start_epoch waits
 * for the worker to finish its current batch before reshuffling, so the batches are exactly
 * the synchronous ones. Augmentation draws depend on (seed, epoch, position) only, not on
 * which thread prepares them. Buffers are allocated once in lb_prefetch_new. A read error of a
 * streaming dataset (lb_batcher_next returning -1) ends the epoch like its last batch does,
 * and is handed to the caller as -1 from lb_prefetch_next and the status in the batcher.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"

struct lb_prefetch {
    lb_batcher     *b;
    bool            threaded;
    size_t          x_floats;   /* batch * c * h * w                                  */
    float          *x[2];
    int32_t        *y[2];
    int64_t         n[2];
    bool            full[2];
    int             head, tail; /* next buffer to hand out / to fill                  */
    bool            active;     /* the worker may fill (an epoch is running)          */
    bool            busy;       /* the worker is inside lb_batcher_next               */
    bool            ended;      /* the worker produced the epoch's final (empty or failed)
                                   batch                                               */
    bool            quit;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    pthread_t       thread;
};

static void *worker(void *arg)
{
    lb_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && (!p->active || p->ended || p->full[p->tail]))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit) break;
        const int k = p->tail;
        p->busy     = true;
        pthread_mutex_unlock(&p->mu);
        const int64_t n = lb_batcher_next(p->b, p->x[k], p->y[k]); /* the slow part, unlocked */
        pthread_mutex_lock(&p->mu);
        p->busy    = false;
        p->n[k]    = n;
        p->full[k] = true;
        p->tail    = 1 - k;
        if (n <= 0) p->ended = true;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

lb_prefetch *lb_prefetch_new(lb_batcher *b, bool threaded, lb_error *err)
{
    LB_ASSERT(b && b->ds && b->order);
    lb_prefetch *p = calloc(1, sizeof *p);
    if (!p) {
        lb_errorf(err, LB_ERR_NOMEM, "out of memory for the batch prefetcher");
        return NULL;
    }
    p->b        = b;
    p->threaded = threaded;
    if (!threaded) return p;
    p->x_floats = (size_t)b->batch * (size_t)b->ds->c * (size_t)b->ds->h * (size_t)b->ds->w;
    for (int k = 0; k < 2; k++) {
        p->x[k] = malloc(p->x_floats * sizeof *p->x[k]);
        p->y[k] = malloc((size_t)b->batch * sizeof *p->y[k]);
        if (!p->x[k] || !p->y[k]) {
            lb_errorf(err, LB_ERR_NOMEM, "out of memory for the prefetch buffers (2 x %zu floats)",
                      p->x_floats);
            p->threaded = false; /* nothing started yet */
            lb_prefetch_free(p);
            return NULL;
        }
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    const int rc = pthread_create(&p->thread, NULL, worker, p);
    if (rc != 0) {
        lb_errorf(err, LB_ERR_IO, "cannot start the prefetch thread: %s", strerror(rc));
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        p->threaded = false;
        lb_prefetch_free(p);
        return NULL;
    }
    return p;
}

void lb_prefetch_start_epoch(lb_prefetch *p, int64_t skip)
{
    if (!p->threaded) {
        lb_batcher_start_epoch(p->b);
        p->b->pos = skip < p->b->ds->n ? skip : p->b->ds->n;
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->active = false;
    while (p->busy) pthread_cond_wait(&p->cv, &p->mu); /* let the current batch finish */
    lb_batcher_start_epoch(p->b);
    p->b->pos = skip < p->b->ds->n ? skip : p->b->ds->n;
    p->full[0] = p->full[1] = false;
    p->head = p->tail = 0;
    p->ended  = false;
    p->active = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int64_t lb_prefetch_next(lb_prefetch *p, float *x, int32_t *y)
{
    if (!p->threaded) return lb_batcher_next(p->b, x, y);
    pthread_mutex_lock(&p->mu);
    LB_ASSERT(p->active); /* lb_prefetch_start_epoch first */
    const int k = p->head;
    while (!p->full[k]) pthread_cond_wait(&p->cv, &p->mu);
    const int64_t n = p->n[k];
    if (n > 0) { /* the final empty (or failed) batch stays: later calls return it again */
        memcpy(x, p->x[k], (size_t)n * (p->x_floats / (size_t)p->b->batch) * sizeof *x);
        memcpy(y, p->y[k], (size_t)n * sizeof *y);
        p->full[k] = false;
        p->head    = 1 - k;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

lb_status lb_prefetch_status(lb_prefetch *p, lb_error *err)
{
    if (!p->threaded) return lb_batcher_status(p->b, err);
    pthread_mutex_lock(&p->mu);
    while (p->busy) pthread_cond_wait(&p->cv, &p->mu); /* it may be writing b->err */
    const lb_status st = lb_batcher_status(p->b, err);
    pthread_mutex_unlock(&p->mu);
    return st;
}

void lb_prefetch_free(lb_prefetch *p)
{
    if (!p) return;
    if (p->threaded) {
        pthread_mutex_lock(&p->mu);
        p->quit = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    for (int k = 0; k < 2; k++) {
        free(p->x[k]);
        free(p->y[k]);
    }
    free(p);
}
