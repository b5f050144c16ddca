/* ablate.h: bit-width ablations (`lowbit ablate FILE`): the grid file, its expansion into runs,
 * running them as child processes, and the tables and plots made from their results.
 *
 * The grid file (docs/ablate.md; examples: the .abl files in experiments/ablate/) is line-based:
 *
 *     model     lenet5                     # zoo name or description file, several allowed
 *     data      mnist
 *     wbits     fp32 8 4 2                 # weight bits: fp32 (float) or 1..8
 *     abits     same                       # activation bits; `same` pairs them with wbits
 *     quantizer minmax lsq dorefa/pact     # NAME (both sides) or WEIGHTS/ACTIVATIONS
 *     gran      channel                    # tensor, channel, group:N
 *     mode      qat ptq
 *     seeds     1 2
 *     extra     first=8,last=8             # appended to every --quant spec
 *     fp32      --epochs 5                 # options of the FP32 base runs (lowbit train)
 *     qat       --epochs 3 --lr 0.01       # options of the QAT runs (lowbit train --init)
 *     ptq       --calib 20                 # options of the PTQ runs (lowbit ptq)
 *     out       runs/ablate-mnist
 *     fp32_finetune yes                    # control: the base fine-tuned at FP32 like QAT
 *
 * Every (model, data, seed) gets one FP32 base run; every QAT and PTQ run starts from the
 * base of its seed. A run is one `lowbit` command line with its own folder under `out`; it
 * is finished when its folder has result.json (written atomically by `--result`), so an
 * interrupted sweep resumes where it stopped.
 *
 *     lb_abl_config *c;  lb_abl_grid grid;
 *     if (lb_abl_parse_file("mnist.abl", &c, &err)) ...      // "<file>:<line>: <what>"
 *     if (lb_abl_expand(c, &grid, &err)) ...                 // bases first, skipped combos noted
 *     lb_abl_list(c, &grid, "lowbit", LB_ABL_STAGE_ALL, stdout);
 *     lb_abl_execute(c, &grid, "/proc/self/exe", 2, NULL, stderr, &n_failed, &err);
 *     lb_abl_collect(c, &grid, stderr, &err);                // results.csv/.md, PNGs
 *     lb_abl_grid_free(&grid);  lb_abl_free(c);
 */
#ifndef LB_ABLATE_H
#define LB_ABLATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/status.h"

#define LB_ABL_MAX_VALUES 16   /* values per key                                      */
#define LB_ABL_MAX_ARGS   32   /* extra options per fp32/qat/ptq/args line, together  */
#define LB_ABL_STR        256

/* One quantizer of the grid: a config token ("lsq", "dorefa/pact") and its two methods. */
typedef struct lb_abl_quant {
    char name[32];    /* as written in the file                                       */
    char wq[32];      /* lowbit method name for the weights ("lsq", "dorefa", ...)    */
    char aq[32];      /* for the activations                                          */
} lb_abl_quant;

typedef struct lb_abl_config {
    char path[1024];                                   /* the grid file (for messages) */
    int  n_models, n_data, n_wbits, n_abits, n_quant, n_ptq_quant, n_gran, n_seeds;
    char models[LB_ABL_MAX_VALUES][LB_ABL_STR];
    char data[LB_ABL_MAX_VALUES][64];
    int  wbits[LB_ABL_MAX_VALUES];                     /* 0 = fp32                      */
    int  abits[LB_ABL_MAX_VALUES];                     /* 0 = fp32                      */
    bool abits_same;                                   /* abits = wbits (paired)        */
    lb_abl_quant quant[LB_ABL_MAX_VALUES];
    lb_abl_quant ptq_quant[LB_ABL_MAX_VALUES];         /* PTQ's list (default: quant)   */
    char gran[LB_ABL_MAX_VALUES][32];
    bool qat, ptq;                                     /* modes                         */
    long seeds[LB_ABL_MAX_VALUES];
    char extra[LB_ABL_STR];                            /* "" or "first=8,last=8"        */
    /* extra options, whitespace-separated, for the FP32 base, QAT, PTQ, and every run */
    char fp32_args[1024], qat_args[1024], ptq_args[1024], all_args[1024];
    char out[1024];                                    /* folder of runs and results    */
    bool fp32_finetune;    /* add a QAT-schedule fine-tune of each base at FP32 (a control) */
} lb_abl_config;

typedef enum lb_abl_mode { LB_ABL_FP32 = 0, LB_ABL_QAT, LB_ABL_PTQ } lb_abl_mode;

typedef struct lb_abl_run {
    lb_abl_mode mode;
    int   model, data;      /* indices into the config's lists                          */
    int   wbits, abits;     /* 0 = fp32                                                 */
    int   quant;            /* index into quant (QAT) or ptq_quant (PTQ); -1 for FP32 and
                               for the FP32 fine-tune control (mode QAT, spec "fp32")  */
    int   gran;             /* index into gran; -1 for FP32                             */
    long  seed;
    int   dep;              /* index of the FP32 base this run starts from, or -1       */
    char  spec[LB_ABL_STR]; /* the --quant spec ("" for FP32)                           */
    char  dir[2048];        /* run folder                                               */
} lb_abl_run;

typedef struct lb_abl_grid {
    lb_abl_run *runs;       /* FP32 bases first, then QAT and PTQ runs in file order    */
    int         n, n_base;
    char      (*notes)[LB_ABL_STR];  /* one line per skipped combination kind           */
    int         n_notes;
} lb_abl_grid;

/* ---- configuration ------------------------------------------------------------------- */

/* Parses a grid file. On success *out is malloc'd (lb_abl_free). Errors: LB_ERR_IO (cannot
 * read), LB_ERR_FORMAT "<path>:<line>: <what>" for a bad line (unknown key, bad value, too
 * many values, an option the runner sets itself such as --out), "<path>: <what>" for a
 * missing key (model, data, wbits are required). */
lb_status lb_abl_parse_file(const char *path, lb_abl_config **out, lb_error *err);
/* Same, from text; origin names it in messages. */
lb_status lb_abl_parse_text(const char *text, const char *origin, lb_abl_config **out,
                            lb_error *err);
void lb_abl_free(lb_abl_config *c);

/* ---- the grid ------------------------------------------------------------------------ */

/* Expands the configuration: one FP32 base per (model, data, seed), then every valid
 * (mode, quantizer, granularity, wbits, abits, seed) per (model, data). The all-float point
 * is the base itself; granularity only matters with quantized weights (only the first is
 * kept for float weights); combinations lowbit rejects (PACT weights, DoReFa activations,
 * 1-bit activations, ...) are skipped with one note each. 1-bit weights use binary weights
 * (XNOR-Net) unless the weight method is DoReFa. LB_ERR_ARG when nothing is left to run
 * besides the bases, LB_ERR_NOMEM. */
lb_status lb_abl_expand(const lb_abl_config *c, lb_abl_grid *g, lb_error *err);
void lb_abl_grid_free(lb_abl_grid *g);

/* The argument vector of run i, argv[0] = exe, NULL-terminated, pointing into buf (cap
 * bytes). Returns argc, or -1 when it does not fit. */
int lb_abl_run_argv(const lb_abl_config *c, const lb_abl_grid *g, int i, const char *exe,
                    char **argv, int max_argv, char *buf, size_t cap);
/* A short label of a run: "fp32 s1", "qat lsq w4a4 channel s1". */
void lb_abl_run_label(const lb_abl_config *c, const lb_abl_run *r, char *buf, size_t cap);

typedef enum lb_abl_stage { LB_ABL_STAGE_ALL = 0, LB_ABL_STAGE_BASE, LB_ABL_STAGE_QUANT }
    lb_abl_stage;
/* Prints one shell-quoted command line per run of the stage, FP32 bases first. */
void lb_abl_list(const lb_abl_config *c, const lb_abl_grid *g, const char *exe,
                 lb_abl_stage stage, FILE *f);

/* True when run folder dir holds a result.json with a test accuracy (the run finished). */
bool lb_abl_run_finished(const char *dir);

/* Runs every unfinished run with at most jobs child processes of exe at once, each with
 * stdout and stderr in <dir>/log.txt, a run only after its base finished; skips finished
 * runs. A failed run (non-zero exit or no result.json) is reported on log and the sweep
 * goes on; runs of a failed base are not started. *n_failed counts both. When *stop becomes
 * non-zero (a signal handler sets it; stop may be NULL), no run is started any more, the
 * running ones get SIGTERM (lowbit train then saves and exits) and are waited for, and the
 * result is LB_ERR_INTERRUPTED. Otherwise LB_OK unless the runner itself failed (cannot
 * create a folder, cannot spawn). */
lb_status lb_abl_execute(const lb_abl_config *c, const lb_abl_grid *g, const char *exe,
                         int jobs, const volatile sig_atomic_t *stop, FILE *log, int *n_failed,
                         lb_error *err);

/* ---- results ------------------------------------------------------------------------- */

/* One run's result.json. */
typedef struct lb_abl_result {
    bool   ok;
    double test_acc;        /* 0..1   */
    double weight_bytes, fp32_weight_bytes, seconds;
} lb_abl_result;

/* Reads <dir>/result.json; false (r->ok false) when missing or without test_acc. */
bool lb_abl_read_result(const char *dir, lb_abl_result *r);

/* Mean and sample standard deviation (n - 1 in the denominator; 0 when n < 2). */
void lb_abl_mean_std(const double *x, int n, double *mean, double *std);

/* Marks on_front[i] for the points not dominated by another: no other point is at most as
 * large (size) and at least as accurate with one of the two strict. Returns the count. */
int lb_abl_pareto(const double *size, const double *acc, int n, bool *on_front);

/* Reads every run's result and writes, into the config's out folder: results.csv (one row
 * per run), results.md (mean ± std over seeds per configuration, and a table by bits), and
 * per (model, data) the plots acc_bits_*.png, pareto_*.png, ptq_qat_*.png; plus hist.png
 * (per-layer weight histograms before and after quantization) in the folder of every
 * quantized run of the first seed that lacks one. Runs without a result are counted on log.
 * Errors: LB_ERR_IO (with the path) for files, plots (gnuplot missing). */
lb_status lb_abl_collect(const lb_abl_config *c, const lb_abl_grid *g, FILE *log,
                         lb_error *err);

/* mkdir -p; LB_ERR_IO naming the folder. */
lb_status lb_abl_mkdir_p(const char *path, lb_error *err);
/* Writes len bytes to path through "<path>.tmp" and rename (creating path's folder), so a
 * reader sees the old file or the whole new one. */
lb_status lb_abl_write_atomic(const char *path, const char *data, size_t len, lb_error *err);

/* `lowbit ablate` and `lowbit hist` (cmd_ablate.c, hist.c). */
int lb_cmd_ablate(const char *argv0, int argc, char **argv);
int lb_cmd_hist(int argc, char **argv);
/* Per-layer weight histograms of checkpoint ckpt, float against quantized values, as one
 * PNG (one panel per conv/linear layer). quant: a spec or file to quantize a float
 * checkpoint with (weights calibrated from their range), or NULL to use the checkpoint's
 * own quantization (an error when it has none). */
lb_status lb_hist_write(const char *ckpt, const char *quant, const char *png, lb_error *err);

#endif
