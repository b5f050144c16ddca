/* test_cli_ablate.c: `lowbit ablate` without training anything: grid files (and their errors
 * with line numbers), grid expansion and the skipped combinations, command lines, mean/std,
 * the Pareto front, and the runner (with a stand-in shell script for lowbit): failures are
 * reported and the sweep goes on, runs of a failed base are not started, finished runs are
 * not run again, and the collected tables and plots appear; and lowbit hist's PNGs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/ablate.h"
#include "layers/model.h"
#include "train/checkpoint.h"
#include "tests/suites.h"

static lb_abl_config *parse_ok(const char *text)
{
    lb_abl_config *c = NULL;
    lb_error err = { 0 };
    ck_assert_msg(lb_abl_parse_text(text, "t.abl", &c, &err) == LB_OK, "%s", err.msg);
    return c;
}

START_TEST(test_parse)
{
    lb_abl_config *c = parse_ok("# a grid\n"
                                "model lenet5 nets/my.txt   # two models\n"
                                "data  mnist\n"
                                "wbits fp32 8 4 2 1\n"
                                "abits 8 fp32\n"
                                "quantizer minmax dorefa/pact\n"
                                "gran channel group:32\n"
                                "mode ptq\n"
                                "seeds 1 2 3\n"
                                "extra first=8,last=8\n"
                                "qat --epochs 3 --lr 0.01\n"
                                "\n");
    ck_assert_int_eq(c->n_models, 2);
    ck_assert_str_eq(c->models[1], "nets/my.txt");
    ck_assert_int_eq(c->n_wbits, 5);
    ck_assert_int_eq(c->wbits[0], 0);
    ck_assert_int_eq(c->wbits[4], 1);
    ck_assert(!c->abits_same);
    ck_assert_int_eq(c->n_abits, 2);
    ck_assert_int_eq(c->abits[1], 0);
    ck_assert_str_eq(c->quant[1].wq, "dorefa");
    ck_assert_str_eq(c->quant[1].aq, "pact");
    ck_assert_int_eq(c->n_ptq_quant, 2); /* default: the quantizer list */
    ck_assert_str_eq(c->gran[1], "group:32");
    ck_assert(c->ptq && !c->qat);
    ck_assert_int_eq(c->seeds[2], 3);
    ck_assert_str_eq(c->extra, "first=8,last=8");
    ck_assert_str_eq(c->qat_args, "--epochs 3 --lr 0.01");
    ck_assert_str_eq(c->out, "runs/ablate-t"); /* from the file name */
    lb_abl_free(c);
    /* defaults: abits same, lsq, channel, qat, seed 42 */
    c = parse_ok("model mlp\ndata mnist\nwbits 4\nout here\n");
    ck_assert(c->abits_same && c->qat && !c->ptq);
    ck_assert_str_eq(c->quant[0].name, "lsq");
    ck_assert_str_eq(c->gran[0], "channel");
    ck_assert_int_eq(c->n_seeds, 1);
    ck_assert_int_eq(c->seeds[0], 42);
    ck_assert_str_eq(c->out, "here");
    lb_abl_free(c);
}
END_TEST

static const struct { const char *text, *want; } bad_files[] = {
    { "model lenet5\nfoo 1\n", "t.abl:2: unknown key 'foo'" },
    { "model a\ndata mnist\nwbits 8 9\n", "t.abl:3: wbits: '9' is not a bit width" },
    { "model a\n\nquantizer lsq nope\n", "t.abl:3: quantizer 'nope': unknown quantizer" },
    { "model a\nqat --epochs 1 --out x\n", "t.abl:2: qat: --out is set by lowbit ablate" },
    { "model a\nfp32 --epochs 1 --seed 3\n", "t.abl:2: fp32: --seed is set by lowbit ablate" },
    { "model a\nqat epochs 3\n", "t.abl:2: qat: expected lowbit options" },
    { "model a\nmodel b\n", "t.abl:2: 'model' given twice" },
    { "data mnist\nwbits 4\n", "t.abl: no 'model' line" },
    { "model a\ndata mnist\n", "t.abl: no 'wbits' line" },
    { "model a\n gran group:0\n", "t.abl:2: gran: 'group:0'" },
    { "model a\nseeds 1 -1\n", "t.abl:2: seeds: '-1'" },
    { "model a\nmode train\n", "t.abl:2: mode: 'train'" },
    { "model a\nextra first=9\n", "t.abl:2: extra 'first=9'" },
    { "model a\nwbits\n", "t.abl:2: 'wbits' needs at least one value" },
    { "model a\nwbits 1 2 3 4 5 6 7 8 1 2 3 4 5 6 7 8 1\n", "t.abl:2: 'wbits': more than 16" },
    { "model a\nfp32_finetune maybe\n", "t.abl:2: fp32_finetune: yes or no" },
};

START_TEST(test_parse_errors)
{
    lb_abl_config *c = (lb_abl_config *)1;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_abl_parse_text(bad_files[_i].text, "t.abl", &c, &err), LB_ERR_FORMAT);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.msg, bad_files[_i].want), "got '%s', want '%s'", err.msg,
                  bad_files[_i].want);
}
END_TEST

START_TEST(test_parse_missing_file)
{
    lb_abl_config *c = NULL;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_abl_parse_file("/nonexistent/x.abl", &c, &err), LB_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/x.abl"));
}
END_TEST

static bool has_note(const lb_abl_grid *g, const char *s)
{
    for (int i = 0; i < g->n_notes; i++)
        if (strstr(g->notes[i], s)) return true;
    return false;
}

START_TEST(test_expand_counts)
{
    lb_abl_config *c = parse_ok("model lenet5\ndata mnist fashion-mnist\n"
                                "wbits fp32 8 4 2 1\nabits same\n"
                                "quantizer minmax lsq pact dorefa dorefa/pact\n"
                                "ptq_quantizer minmax\ngran channel tensor\nmode qat ptq\n"
                                "seeds 1 2\nout o\n");
    lb_abl_grid g;
    lb_error err = { 0 };
    ck_assert_msg(lb_abl_expand(c, &g, &err) == LB_OK, "%s", err.msg);
    /* bases: 2 datasets x 2 seeds. Per dataset, QAT: w1a1 has 1-bit activations and pact
     * (weights) and dorefa (activations) are skipped, leaving minmax, lsq, dorefa/pact x
     * bits 8, 4, 2 x 2 grans x 2 seeds = 36; PTQ: minmax x 3 bits x 2 grans x 2 seeds = 12 */
    ck_assert_int_eq(g.n_base, 4);
    ck_assert_int_eq(g.n, 4 + 2 * (36 + 12));
    ck_assert(has_note(&g, "PACT quantizes activations only"));
    ck_assert(has_note(&g, "dorefa quantizes weights only"));
    ck_assert(has_note(&g, "not 1"));
    for (int i = 0; i < g.n; i++) {
        const lb_abl_run *r = &g.runs[i];
        if (i < g.n_base) {
            ck_assert_int_eq(r->mode, LB_ABL_FP32);
            ck_assert_int_eq(r->dep, -1);
            continue;
        }
        /* every run starts from the base of its own dataset and seed */
        ck_assert_int_ge(r->dep, 0);
        ck_assert_int_lt(r->dep, g.n_base);
        ck_assert_int_eq(g.runs[r->dep].seed, r->seed);
        ck_assert_int_eq(g.runs[r->dep].data, r->data);
        for (int j = 0; j < i; j++) ck_assert_str_ne(g.runs[j].dir, r->dir);
    }
    lb_abl_grid_free(&g);
    lb_abl_free(c);

    /* crossed activation bits; gran counts only with quantized weights; 1-bit weights binary */
    c = parse_ok("model m\ndata d\nwbits fp32 4 1\nabits fp32 4 1\nquantizer lsq\n"
                 "gran channel tensor\nseeds 5\n");
    ck_assert_msg(lb_abl_expand(c, &g, &err) == LB_OK, "%s", err.msg);
    /* (w0: a4) x 1 gran + (w4: a0, a4) x 2 grans + (w1: a0, a4) x 2 grans */
    ck_assert_int_eq(g.n, 1 + 1 + 4 + 4);
    bool binary = false;
    for (int i = 0; i < g.n; i++)
        if (g.runs[i].wbits == 1) {
            ck_assert_ptr_nonnull(strstr(g.runs[i].spec, "wq=binary"));
            binary = true;
        }
    ck_assert(binary);
    ck_assert(has_note(&g, "1-bit weights are binary"));
    lb_abl_grid_free(&g);
    lb_abl_free(c);

    /* the FP32 fine-tune control: one per base, a QAT run at fp32 from it */
    c = parse_ok("model m\ndata d\nwbits 4\nseeds 1 2\nfp32_finetune yes\nout o\n");
    ck_assert_msg(lb_abl_expand(c, &g, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(g.n, 2 + 2 + 2);
    for (int i = 2; i < 4; i++) {
        ck_assert_int_eq(g.runs[i].mode, LB_ABL_QAT);
        ck_assert_int_eq(g.runs[i].quant, -1);
        ck_assert_str_eq(g.runs[i].spec, "fp32");
        ck_assert_int_eq(g.runs[g.runs[i].dep].seed, g.runs[i].seed);
    }
    ck_assert_str_eq(g.runs[3].dir, "o/m-d/s2/qat-fp32");
    char label[128];
    lb_abl_run_label(c, &g.runs[2], label, sizeof label);
    ck_assert_str_eq(label, "m d qat fp32 fine-tune s1");
    lb_abl_grid_free(&g);
    lb_abl_free(c);

    /* nothing but the base: an error */
    c = parse_ok("model m\ndata d\nwbits fp32\n");
    ck_assert_int_eq(lb_abl_expand(c, &g, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "no quantized run"));
    lb_abl_free(c);
}
END_TEST

START_TEST(test_list)
{
    lb_abl_config *c = parse_ok("model nets/x&y.txt\ndata mnist\nwbits 4\nmode qat ptq\n"
                                "qat --epochs 2\nptq --calib 5\nargs --threads 1\nout o\n");
    lb_abl_grid g;
    lb_error err = { 0 };
    ck_assert_msg(lb_abl_expand(c, &g, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(g.n, 3);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    lb_abl_list(c, &g, "lowbit", LB_ABL_STAGE_ALL, f);
    fclose(f);
    const char *want =
        "lowbit train --model 'nets/x&y.txt' --data mnist --seed 42 --threads 1 "
        "--out o/x-y-mnist/s42/fp32 --result o/x-y-mnist/s42/fp32/result.json\n"
        "lowbit train --init o/x-y-mnist/s42/fp32/last.ckpt --data mnist "
        "--quant w4a4,wq=lsq,gran=channel,aq=lsq --seed 42 --epochs 2 --threads 1 "
        "--out o/x-y-mnist/s42/qat-lsq-w4a4-channel "
        "--result o/x-y-mnist/s42/qat-lsq-w4a4-channel/result.json\n"
        "lowbit ptq o/x-y-mnist/s42/fp32/last.ckpt --data mnist "
        "--quant w4a4,wq=lsq,gran=channel,aq=lsq --seed 42 --calib 5 --threads 1 "
        "--out o/x-y-mnist/s42/ptq-lsq-w4a4-channel/ptq.ckpt "
        "--result o/x-y-mnist/s42/ptq-lsq-w4a4-channel/result.json\n";
    ck_assert_str_eq(buf, want);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    lb_abl_list(c, &g, "lowbit", LB_ABL_STAGE_QUANT, f);
    fclose(f);
    ck_assert_str_eq(buf, strchr(want, '\n') + 1);
    free(buf);
    lb_abl_grid_free(&g);
    lb_abl_free(c);
}
END_TEST

START_TEST(test_mean_std)
{
    double m, s;
    lb_abl_mean_std((double[]){ 1, 2, 3, 4 }, 4, &m, &s);
    ck_assert_double_eq_tol(m, 2.5, 1e-12);
    ck_assert_double_eq_tol(s, sqrt(5.0 / 3.0), 1e-12); /* sample std (n - 1) */
    lb_abl_mean_std((double[]){ 98.5 }, 1, &m, &s);
    ck_assert_double_eq_tol(m, 98.5, 1e-12);
    ck_assert_double_eq(s, 0.0);
}
END_TEST

START_TEST(test_pareto)
{
    const double size[] = { 10, 20, 30, 40, 20, 5 };
    const double acc[] = { 50, 60, 55, 70, 60, 40 };
    bool on[6];
    ck_assert_int_eq(lb_abl_pareto(size, acc, 6, on), 5);
    ck_assert(on[0] && on[1] && on[3] && on[4] && on[5]);
    ck_assert(!on[2]); /* larger and less accurate than the point at 20 */
}
END_TEST

static char dir[64];

static void rm_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF) n += ch == '\n';
    fclose(f);
    return n;
}

/* A stand-in for lowbit in a fresh temporary dir: a shell script that runs `before` (shell
 * lines, may be empty), then writes a result.json with accuracy 0.9 at the run's --result. */
static void fake_lowbit(char *exe, size_t cap, const char *before)
{
    strcpy(dir, "/tmp/lb_test_ablate_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(exe, cap, "%s/fake-lowbit", dir);
    FILE *f = fopen(exe, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "#!/bin/sh\nres=; prev=\n"
               "for a in \"$@\"; do [ \"$prev\" = --result ] && res=$a; prev=$a; done\n%s"
               "echo '{\"test_acc\":0.9,\"weight_bytes\":2048,\"fp32_weight_bytes\":8192,"
               "\"seconds\":1.5}' > \"$res\"\n", before);
    fclose(f);
    ck_assert_int_eq(chmod(exe, 0755), 0);
}

/* The runner with a stand-in for lowbit: it logs each call, fails the FP32 base of seed 2 and
 * every W2A2 run, and writes result.json for the rest. */
START_TEST(test_execute_resume)
{
    char exe[128], calls[128], text[512];
    fake_lowbit(exe, sizeof exe, "echo \"$*\" >> \"$(dirname \"$0\")/calls\"\n"
                                 "case \"$*\" in *w2a2*) echo 'diverged' >&2; exit 3;; esac\n"
                                 "case \"$*\" in *--model*--seed\\ 2*) exit 1;; esac\n");
    snprintf(calls, sizeof calls, "%s/calls", dir);
    snprintf(text, sizeof text, "model lenet5\ndata mnist\nwbits fp32 8 4 2\n"
                                "quantizer minmax lsq\nmode qat ptq\nptq_quantizer minmax\n"
                                "seeds 1 2\nfp32_finetune yes\nout %s/out\n", dir);
    lb_abl_config *c = parse_ok(text);
    lb_abl_grid g;
    lb_error err = { 0 };
    ck_assert_msg(lb_abl_expand(c, &g, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(g.n, 2 + 2 + 2 * (2 * 3 + 3));
    int expect_calls = 0, expect_failed = 0, again = 0;
    for (int i = 0; i < g.n; i++) {
        const lb_abl_run *r = &g.runs[i];
        const bool s2 = r->seed == 2;
        expect_calls += !(s2 && r->dep >= 0);          /* runs of the failed base never start */
        expect_failed += s2 || r->wbits == 2;
        again += (s2 && r->dep < 0) || (!s2 && r->wbits == 2);
    }
    FILE *log = fopen("/dev/null", "w");
    int n_failed = -1;
    ck_assert_msg(lb_abl_execute(c, &g, exe, 2, NULL, log, &n_failed, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(n_failed, expect_failed);
    ck_assert_int_eq(count_lines(calls), expect_calls);
    ck_assert(lb_abl_run_finished(g.runs[0].dir));  /* seed 1 base */
    ck_assert(!lb_abl_run_finished(g.runs[1].dir)); /* seed 2 base failed */
    char logp[2200];
    int w2 = 0;
    while (!(g.runs[w2].wbits == 2 && g.runs[w2].seed == 1)) w2++;
    snprintf(logp, sizeof logp, "%s/log.txt", g.runs[w2].dir); /* its stderr */
    ck_assert_int_eq(count_lines(logp), 1);
    /* again: only the failed runs that can start are run */
    ck_assert_msg(lb_abl_execute(c, &g, exe, 1, NULL, log, &n_failed, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(count_lines(calls), expect_calls + again);
    ck_assert_int_eq(n_failed, expect_failed);
    /* a stop request (a signal) before anything starts: nothing runs, the status says so */
    volatile sig_atomic_t stop = SIGINT;
    ck_assert_int_eq(lb_abl_execute(c, &g, exe, 2, &stop, log, &n_failed, &err),
                     LB_ERR_INTERRUPTED);
    ck_assert_int_eq(count_lines(calls), expect_calls + again);
    fclose(log);
    /* a result.json without an accuracy does not count as finished */
    char bad[2200];
    snprintf(bad, sizeof bad, "%s/result.json", g.runs[1].dir);
    ck_assert_int_eq(lb_abl_write_atomic(bad, "{\"seconds\":3}\n", 14, &err), LB_OK);
    ck_assert(!lb_abl_run_finished(g.runs[1].dir));

    /* collect: one CSV row per run, mean over the seeds that finished, the plots */
    FILE *out = fopen("/dev/null", "w");
    ck_assert_msg(lb_abl_collect(c, &g, out, &err) == LB_OK, "%s", err.msg);
    fclose(out);
    char path[256];
    snprintf(path, sizeof path, "%s/out/results.csv", dir);
    ck_assert_int_eq(count_lines(path), g.n + 1);
    snprintf(path, sizeof path, "%s/out/results.md", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char md[8192];
    size_t n = fread(md, 1, sizeof md - 1, f);
    md[n] = 0;
    fclose(f);
    ck_assert_ptr_nonnull(strstr(md, "| qat | lsq | channel | 90.00 | 90.00 | – |"));
    ck_assert_ptr_nonnull(strstr(md, "| W8A8 | 90.00 | +0.00 | 1/2 | 2.0 |"));
    ck_assert_ptr_nonnull(strstr(md, "unquantized (the control for the QAT rows): **90.00 ± 0.00 %**"));
    ck_assert_ptr_nonnull(strstr(md, "| qat | fp32 fine-tune | - | FP32 | 90.00 | +0.00 | 1/2 |"));
    const char *pngs[] = { "acc_bits_lenet5-mnist.png", "pareto_lenet5-mnist.png",
                           "ptq_qat_lenet5-mnist.png" };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/out/%s", dir, pngs[i]);
        ck_assert_msg(access(path, R_OK) == 0, "%s missing", path);
    }
    lb_abl_grid_free(&g);
    lb_abl_free(c);
    rm_tmp();
}
END_TEST

/* Crossed granularities: each gets its own marker in the accuracy-against-bits plot (all
 * lines of one quantizer share a colour, so without it the legend could not tell them apart). */
START_TEST(test_plot_granularity_markers)
{
    char exe[128], text[512], path[256];
    fake_lowbit(exe, sizeof exe, "");
    snprintf(text, sizeof text, "model lenet5\ndata mnist\nwbits 4 2\nabits 8\n"
                                "quantizer lsq\ngran tensor channel group:16\nout %s/out\n", dir);
    lb_abl_config *c = parse_ok(text);
    lb_abl_grid g;
    lb_error err = { 0 };
    ck_assert_msg(lb_abl_expand(c, &g, &err) == LB_OK, "%s", err.msg);
    FILE *log = fopen("/dev/null", "w");
    int n_failed = -1;
    ck_assert_msg(lb_abl_execute(c, &g, exe, 2, NULL, log, &n_failed, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(n_failed, 0);
    ck_assert_msg(lb_abl_collect(c, &g, log, &err) == LB_OK, "%s", err.msg);
    fclose(log);
    snprintf(path, sizeof path, "%s/out/acc_bits_lenet5-mnist.gp", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s missing", path);
    char gp[16384];
    size_t n = fread(gp, 1, sizeof gp - 1, f);
    gp[n] = 0;
    fclose(f);
    /* three lines, three different point types */
    int pts[3], k = 0;
    for (const char *q = strstr(gp, "yerrorlines"); q && k < 4; q = strstr(q + 1, "yerrorlines")) {
        const char *pt = strstr(q, " pt ");
        ck_assert_ptr_nonnull(pt);
        ck_assert_int_lt(k, 3);
        pts[k++] = atoi(pt + 4);
    }
    ck_assert_int_eq(k, 3);
    ck_assert(pts[0] != pts[1] && pts[1] != pts[2] && pts[0] != pts[2]);
    lb_abl_grid_free(&g);
    lb_abl_free(c);
    rm_tmp();
}
END_TEST

/* lowbit hist: a PNG for a float checkpoint quantized on the fly (LSQ, min/max per group,
 * DoReFa), and a clear error when there is nothing quantized to show. */
START_TEST(test_hist)
{
    strcpy(dir, "/tmp/lb_test_hist_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    lb_model *m = NULL;
    lb_error err = { 0 };
    ck_assert_msg(lb_model_build("input 1 8 8\nflatten\nlinear name=fc1 out=16\nrelu\n"
                                 "linear name=fc2 out=4\n", "test", NULL, &m, &err) == LB_OK,
                  "%s", err.msg);
    lb_model_init_weights(m, 7);
    char ckpt[128], png[128];
    snprintf(ckpt, sizeof ckpt, "%s/float.ckpt", dir);
    lb_ckpt_meta meta = { .test_acc = -1 };
    ck_assert_msg(lb_checkpoint_save(ckpt, m, &meta, false, &err) == LB_OK, "%s", err.msg);
    lb_model_free(m);
    const char *specs[] = { "w4a4", "w3a8,wq=minmax,gran=group:16", "w2,wq=dorefa" };
    for (int i = 0; i < 3; i++) {
        snprintf(png, sizeof png, "%s/h%d.png", dir, i);
        ck_assert_msg(lb_hist_write(ckpt, specs[i], png, &err) == LB_OK, "%s: %s", specs[i],
                      err.msg);
        FILE *f = fopen(png, "rb");
        ck_assert_ptr_nonnull(f);
        fseek(f, 0, SEEK_END);
        ck_assert_int_gt(ftell(f), 5000);
        fclose(f);
    }
    ck_assert_int_eq(lb_hist_write(ckpt, NULL, png, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "no layer has quantized weights"));
    ck_assert_int_eq(lb_hist_write(ckpt, "w9", png, &err), LB_ERR_ARG);
    rm_tmp();
}
END_TEST

Suite *cli_ablate_suite(void)
{
    Suite *s = suite_create("cli_ablate");
    TCase *tc = tcase_create("grid");
    tcase_add_test(tc, test_parse);
    tcase_add_loop_test(tc, test_parse_errors, 0, (int)(sizeof bad_files / sizeof bad_files[0]));
    tcase_add_test(tc, test_parse_missing_file);
    tcase_add_test(tc, test_expand_counts);
    tcase_add_test(tc, test_list);
    tcase_add_test(tc, test_mean_std);
    tcase_add_test(tc, test_pareto);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("runner");
    tcase_set_timeout(tr, 120);
    tcase_add_test(tr, test_execute_resume);
    tcase_add_test(tr, test_plot_granularity_markers);
    tcase_add_test(tr, test_hist);
    suite_add_tcase(s, tr);
    return s;
}
