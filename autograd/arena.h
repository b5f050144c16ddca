/* arena.h: a bump allocator that is reset, not freed piece by piece.
 *
 * The graph keeps activations, tape nodes and op-private data here for one training step.
 * When a step needs more than the current block, a new block is chained (one malloc);
 * the next reset merges all blocks into one of the high-water size, so from the second
 * step on a training step does no malloc at all. A cap bounds the total: exceeding it is
 * an LB_ERR_NOMEM from the caller, never a crash.
 *
 *     lb_arena a; lb_arena_init(&a, 0);
 *     float *x = lb_arena_alloc(&a, 1024 * sizeof(float));   // NULL when over the cap
 *     lb_arena_reset(&a); lb_arena_free(&a);
 */
#ifndef LB_ARENA_H
#define LB_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LB_ARENA_ALIGN 64

typedef struct lb_arena_block {
    struct lb_arena_block *next;
    size_t size, used;
    /* data follows, LB_ARENA_ALIGN-aligned */
} lb_arena_block;

typedef struct lb_arena {
    lb_arena_block *head;   /* current block (most recent)              */
    size_t cap;             /* max bytes over all blocks                */
    size_t total;           /* bytes held in blocks                     */
    size_t used;            /* bytes handed out since the last reset    */
    size_t high_water;      /* max of used over the arena's lifetime    */
    uint64_t n_mallocs;     /* block allocations so far (tests use it)  */
} lb_arena;

/* cap = 0 means 8 GiB. Allocates nothing until the first lb_arena_alloc. */
void lb_arena_init(lb_arena *a, size_t cap);
/* Returns 64-byte-aligned, uninitialised memory, or NULL when the cap or malloc fails. */
void *lb_arena_alloc(lb_arena *a, size_t bytes);
/* Gives back the most recent allocations from p on, when p is in the current block: the
 * next lb_arena_alloc starts at p. Returns whether it did. (A caller that frees buffers in
 * any order keeps the freed ones itself and gives back those that reach the top.) */
bool lb_arena_trim(lb_arena *a, void *p);
/* Where the next allocation would start in the current block (NULL before the first). */
void *lb_arena_top(const lb_arena *a);
/* Forgets every allocation; keeps (merged) memory for reuse. */
void lb_arena_reset(lb_arena *a);
void lb_arena_free(lb_arena *a);

#endif
