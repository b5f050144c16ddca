/* cmd_mixed.h: the `lowbit sensitivity` and `lowbit mixed` commands (cli/cmd_mixed.c), kept
 * out of main.c so the dispatcher only calls them. The work is in train/sensitivity.h and
 * quant/mixed.h; these parse options, load the checkpoint and the training split, and write
 * the CSV, Markdown, PNG and .q files.
 *
 *     if (!strcmp(cmd, "sensitivity")) return lb_cmd_sensitivity(argc - 2, argv + 2);
 *     if (!strcmp(cmd, "mixed")) return lb_cmd_mixed(argc - 2, argv + 2);
 */
#ifndef LB_CMD_MIXED_H
#define LB_CMD_MIXED_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/status.h"

/* Each returns the process exit status: 0 success, 1 failure (message on stderr), 2 usage
 * error (message on stderr). argv holds the command's arguments (after "lowbit CMD"). */
int lb_cmd_sensitivity(int argc, char **argv);
int lb_cmd_mixed(int argc, char **argv);

/* A weight-memory budget as `lowbit mixed --budget` takes it. */
typedef struct lb_budget {
    bool   kib;    /* true: value is KiB of weight memory (as lowbit inspect counts it);
                      false: value is the average bits per conv/linear weight            */
    double value;
} lb_budget;

/* "30KB", "30KiB", "30k" (KiB, 1024 bytes) or "3", "3.0", "3bits" (average bits, 1..8).
 * LB_ERR_ARG with a message naming the forms otherwise. */
lb_status lb_budget_parse(const char *s, lb_budget *out, lb_error *err);

#endif
