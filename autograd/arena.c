/* arena.c: chained bump blocks, merged into one on reset. */
#include "autograd/arena.h"

#include <stdlib.h>

#define HDR (((sizeof(lb_arena_block) + LB_ARENA_ALIGN - 1) / LB_ARENA_ALIGN) * LB_ARENA_ALIGN)

void lb_arena_init(lb_arena *a, size_t cap)
{
    *a = (lb_arena){ 0 };
    a->cap = cap ? cap : ((size_t)8 << 30);
}

static lb_arena_block *block_new(lb_arena *a, size_t size)
{
    if (size > a->cap || a->total > a->cap - size) return NULL;
    lb_arena_block *b = aligned_alloc(LB_ARENA_ALIGN, HDR + size);
    if (!b) return NULL;
    b->next = a->head;
    b->size = size;
    b->used = 0;
    a->head = b;
    a->total += size;
    a->n_mallocs++;
    return b;
}

void *lb_arena_alloc(lb_arena *a, size_t bytes)
{
    size_t need = (bytes + LB_ARENA_ALIGN - 1) / LB_ARENA_ALIGN * LB_ARENA_ALIGN;
    if (need < bytes) return NULL; /* overflow */
    lb_arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t size = need > ((size_t)1 << 20) ? need : ((size_t)1 << 20);
        if (b && size < b->size * 2) size = b->size * 2; /* geometric growth on the first step */
        if (size > a->cap - a->total && need <= a->cap - a->total) size = a->cap - a->total;
        b = block_new(a, size);
        if (!b) return NULL;
    }
    void *p = (char *)b + HDR + b->used;
    b->used += need;
    a->used += need;
    if (a->used > a->high_water) a->high_water = a->used;
    return p;
}

void *lb_arena_top(const lb_arena *a)
{
    return a->head ? (char *)a->head + HDR + a->head->used : NULL;
}

bool lb_arena_trim(lb_arena *a, void *p)
{
    lb_arena_block *b = a->head;
    if (!b) return false;
    char *start = (char *)b + HDR, *c = p;
    if (c < start || c > start + b->used) return false;
    const size_t back = (size_t)(start + b->used - c);
    b->used -= back;
    a->used -= back;
    return true;
}

static void free_blocks(lb_arena *a)
{
    while (a->head) {
        lb_arena_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->total = 0;
}

void lb_arena_reset(lb_arena *a)
{
    if (a->head && a->head->next) { /* several blocks: merge into one of the high-water size */
        free_blocks(a);
        block_new(a, a->high_water); /* on failure the next alloc simply starts a block */
    }
    if (a->head) a->head->used = 0;
    a->used = 0;
}

void lb_arena_free(lb_arena *a)
{
    free_blocks(a);
    a->used = 0;
}
