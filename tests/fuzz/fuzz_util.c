/* fuzz_util.c: in-memory files for the fuzz targets (Linux memfd) and the shared error check. */
#define _GNU_SOURCE /* memfd_create */
#include "tests/fuzz/fuzz_util.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int  fds[FUZZ_SLOTS] = { -1, -1, -1, -1 };
static char paths[FUZZ_SLOTS][32];

const char *fuzz_file(int slot, const uint8_t *data, size_t size)
{
    if (slot < 0 || slot >= FUZZ_SLOTS) __builtin_trap();
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("lowbit-fuzz", 0);
        if (fds[slot] < 0) __builtin_trap();
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) != 0) __builtin_trap();
    for (size_t done = 0; done < size;) {
        const ssize_t k = pwrite(fds[slot], data + done, size - done, (off_t)done);
        if (k <= 0) __builtin_trap();
        done += (size_t)k;
    }
    return paths[slot];
}

void fuzz_check_error(lb_status st, const lb_error *err, const char *must_name)
{
    if (st == LB_OK || st == LB_ERR_NUMERIC || st == LB_ERR_INTERRUPTED) __builtin_trap();
    if (err->status != st || err->msg[0] == '\0') __builtin_trap();
    if (must_name && !strstr(err->msg, must_name)) __builtin_trap();
}

uint32_t fuzz_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void fuzz_put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}
