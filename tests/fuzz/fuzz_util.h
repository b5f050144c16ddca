/* fuzz_util.h: what the fuzz targets share: turning fuzz bytes into a file that a path-based
 * loader can open, and the checks every target makes on a failed load.
 *
 * The loaders under test read files by path (lb_idx_load, lb_checkpoint_load), so a target
 * writes its input into an in-memory file (memfd_create, no disk traffic) and passes
 * "/proc/self/fd/N". Each slot is one reusable file, rewritten on every call.
 *
 *     const char *path = fuzz_file(0, data, size);
 *     lb_status st = lb_checkpoint_load(path, &m, &meta, &err);
 *     if (st) fuzz_check_error(st, &err, path);
 *
 * A failed oracle is __builtin_trap(): libFuzzer reports it as a crash and saves the input,
 * and the replay programs (replay.c) die with SIGILL, which fails their CTest.
 */
#ifndef LB_FUZZ_UTIL_H
#define LB_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/status.h"

#define FUZZ_SLOTS 4

/* Writes data into in-memory file `slot` (0..FUZZ_SLOTS-1) and returns its path, valid until
 * the next call for the same slot. Traps when the file cannot be made (not an input's fault). */
const char *fuzz_file(int slot, const uint8_t *data, size_t size);

/* The contract of every loader on bad input: a status that is an error of the documented kind
 * (not LB_OK), and a message that is non-empty and, when must_name is non-NULL, contains it
 * (the file's path). Traps otherwise. */
void fuzz_check_error(lb_status st, const lb_error *err, const char *must_name);

/* Little-endian u32 read/write, for targets that repair checksums. */
uint32_t fuzz_get32(const uint8_t *p);
void     fuzz_put32(uint8_t *p, uint32_t v);

#endif
