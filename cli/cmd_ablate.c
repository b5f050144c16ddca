/* cmd_ablate.c: the `lowbit ablate` and `lowbit hist` commands (option parsing and messages;
 * the work is in ablate.c, ablate_report.c and hist.c).
 * Exit status: 0 success, 1 failure (a run failed, or an error; message on stderr), 2 usage. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ablate.h"

static const char ablate_help[] =
    "usage: lowbit ablate FILE [options]\n"
    "Runs the bit-width ablation grid described in FILE (docs/ablate.md): an FP32 base per\n"
    "model, dataset and seed, then every QAT and PTQ run from it, each as a child `lowbit`\n"
    "process with its own folder under the grid's `out` (log.txt, checkpoint, result.json).\n"
    "Runs that already have result.json are skipped, so an interrupted sweep resumes. Then\n"
    "writes results.csv, results.md (mean ± std over seeds) and the PNG plots into `out`.\n"
    "\n"
    "  -j N            runs at once                                          [1]\n"
    "  --threads N     threads of each run                                   [1]\n"
    "  --data-dir DIR  passed to every run\n"
    "  --list          print one command line per run (FP32 bases first) and stop, for GNU\n"
    "                  parallel or a Slurm array; then `lowbit ablate FILE --collect`\n"
    "  --stage S       with --list: base (the FP32 runs) or quant (the rest)  [all]\n"
    "  --collect       only read the finished runs' results: tables and plots\n";

/* SIGINT/SIGTERM: the runner stops starting runs, passes SIGTERM on and waits (ablate.h). */
static volatile sig_atomic_t stop_signal = 0;

static void on_stop(int sig) { stop_signal = sig; }

static int usage(const char *fmt, const char *a)
{
    fprintf(stderr, "lowbit ablate: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n(lowbit ablate --help lists the options)\n");
    return 2;
}

static bool to_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static void add_arg(lb_abl_config *c, const char *opt, const char *val)
{
    if (strstr(c->all_args, opt)) return; /* the grid file's own setting wins */
    size_t n = strlen(c->all_args);
    snprintf(c->all_args + n, sizeof c->all_args - n, "%s%s %s", n ? " " : "", opt, val);
}

int lb_cmd_ablate(const char *argv0, int argc, char **argv)
{
    const char *file = NULL, *threads = "1", *data_dir = NULL, *stage_s = NULL;
    int jobs = 1;
    bool list = false, collect = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const bool has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(ablate_help, stdout), 0;
        if (!strcmp(a, "--list")) list = true;
        else if (!strcmp(a, "--collect")) collect = true;
        else if (!strcmp(a, "-j") || !strcmp(a, "--jobs")) {
            if (!has_val || !to_int(argv[++i], 1, 256, &jobs)) return usage("%s: expected 1..256", a);
        } else if (!strncmp(a, "-j", 2) && a[2]) {
            if (!to_int(a + 2, 1, 256, &jobs)) return usage("%s: expected -jN, N in 1..256", a);
        } else if (!strcmp(a, "--threads")) {
            int t;
            if (!has_val || !to_int(argv[++i], 1, 256, &t)) return usage("%s: expected 1..256", a);
            threads = argv[i];
        } else if (!strcmp(a, "--data-dir")) {
            if (!has_val) return usage("%s: needs a folder", a);
            data_dir = argv[++i];
        } else if (!strcmp(a, "--stage")) {
            if (!has_val) return usage("%s: needs base or quant", a);
            stage_s = argv[++i];
        } else if (a[0] == '-') {
            return usage("unknown option %s", a);
        } else if (file) {
            return usage("one grid file only (got %s as well)", a);
        } else {
            file = a;
        }
    }
    if (!file) return usage("%s", "needs a grid file (see docs/ablate.md)");
    lb_abl_stage stage = LB_ABL_STAGE_ALL;
    if (stage_s) {
        if (!list) return usage("%s", "--stage goes with --list");
        if (!strcmp(stage_s, "base")) stage = LB_ABL_STAGE_BASE;
        else if (!strcmp(stage_s, "quant")) stage = LB_ABL_STAGE_QUANT;
        else return usage("--stage %s: expected base or quant", stage_s);
    }
    if (list && collect) return usage("%s", "--list and --collect exclude each other");

    lb_error err = { 0 };
    lb_abl_config *c = NULL;
    lb_abl_grid g = { 0 };
    int code = 1;
    if (lb_abl_parse_file(file, &c, &err)) goto fail;
    add_arg(c, "--threads", threads);
    if (data_dir) add_arg(c, "--data-dir", data_dir);
    if (lb_abl_expand(c, &g, &err)) goto fail;
    if (list) {
        lb_abl_list(c, &g, argv0, stage, stdout);
        code = 0;
        goto done;
    }
    for (int i = 0; i < g.n_notes; i++) fprintf(stderr, "ablate: note: %s\n", g.notes[i]);
    int n_failed = 0;
    if (!collect) {
        /* the children are this very binary, whatever the current folder */
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) exe[n] = 0;
        else snprintf(exe, sizeof exe, "%s", argv0);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop; /* no SA_RESTART: waitpid returns to look at the flag */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        lb_status st = lb_abl_execute(c, &g, exe, jobs, &stop_signal, stdout, &n_failed, &err);
        if (st == LB_ERR_INTERRUPTED) {
            fprintf(stderr, "lowbit ablate: %s\n", err.msg);
            code = 128 + (int)stop_signal;
            goto done;
        }
        if (st) goto fail;
    }
    if (lb_abl_collect(c, &g, stdout, &err)) goto fail;
    if (n_failed) {
        fprintf(stderr, "lowbit ablate: %d run%s failed or could not start (see their log.txt)\n",
                n_failed, n_failed == 1 ? "" : "s");
        goto done;
    }
    code = 0;
    goto done;
fail:
    fprintf(stderr, "lowbit ablate: %s\n", err.msg);
done:
    lb_abl_grid_free(&g);
    lb_abl_free(c);
    return code;
}

static const char hist_help[] =
    "usage: lowbit hist CKPT [--quant SPEC|FILE] [--out PNG]\n"
    "Per-layer weight histograms, before and after quantization, as one PNG (a panel per\n"
    "conv/linear layer with quantized weights). A quantized checkpoint (QAT or PTQ) uses its\n"
    "own quantizers; a float one needs --quant (scales then come from the weights' range).\n"
    "\n"
    "  --quant SPEC|FILE  quantize a float checkpoint's weights this way\n"
    "  --out PNG          output                              [CKPT's folder/hist.png]\n";

int lb_cmd_hist(int argc, char **argv)
{
    const char *ckpt = NULL, *quant = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return fputs(hist_help, stdout), 0;
        if (!strcmp(argv[i], "--quant") && i + 1 < argc) quant = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] == '-' || ckpt) {
            fprintf(stderr, "lowbit hist: unexpected '%s'\n%s", argv[i], hist_help);
            return 2;
        } else ckpt = argv[i];
    }
    if (!ckpt) {
        fprintf(stderr, "lowbit hist: needs a checkpoint\n%s", hist_help);
        return 2;
    }
    char png[4200];
    if (out) {
        snprintf(png, sizeof png, "%s", out);
    } else {
        const char *slash = strrchr(ckpt, '/');
        snprintf(png, sizeof png, "%.*shist.png", slash ? (int)(slash - ckpt + 1) : 0, ckpt);
    }
    lb_error err = { 0 };
    if (lb_hist_write(ckpt, quant, png, &err)) {
        fprintf(stderr, "lowbit hist: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s\n", png);
    return 0;
}
