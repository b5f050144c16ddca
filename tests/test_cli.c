/* test_cli.c: the pieces of the `lowbit` command that are not the library: PNG charts through
 * gnuplot (cli/plot.c) and the quantizer report of inspect --ranges (cli/inspect.c). main() of
 * the test_cli binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/plot.h"
#include "cli/inspect.h"
#include "tests/suites.h"

static char dir[64];

static void mkdir_tmp(void)
{
    strcpy(dir, "/tmp/lb_test_cli_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static lb_status draw(const char *png, const char *title, lb_error *err)
{
    lb_plot p;
    lb_status st = lb_plot_open(&p, png, title, "weight bits", "top-1 accuracy (%)", err);
    if (st) return st;
    lb_plot_data_begin(&p, "lsq");
    fprintf(p.f, "2 97.1\n4 98.9\n8 99.1\n");
    lb_plot_data_end(&p);
    fprintf(p.f, "plot $lsq using 1:2 title 'LSQ'\n");
    return lb_plot_render(&p, err);
}

/* A chart is a real PNG, and its script is kept beside it. */
START_TEST(test_plot_png)
{
    mkdir_tmp();
    char png[128], gp[128];
    snprintf(png, sizeof png, "%s/acc.png", dir);
    snprintf(gp, sizeof gp, "%s/acc.gp", dir);
    lb_error err = {0};
    ck_assert_msg(draw(png, "it's a title with 'quotes' and under_scores", &err) == LB_OK,
                  "%s", err.msg);
    FILE *f = fopen(png, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char sig[8];
    ck_assert_uint_eq(fread(sig, 1, 8, f), 8);
    ck_assert(!memcmp(sig, "\x89PNG\r\n\x1a\n", 8));
    fseek(f, 0, SEEK_END);
    ck_assert_int_gt(ftell(f), 5000); /* axes, ticks, text: not an empty canvas */
    fclose(f);
    ck_assert_int_eq(access(gp, R_OK), 0);
    rm_tmp();
}
END_TEST

/* Without gnuplot: a message that names it and the package, not a crash. */
START_TEST(test_plot_no_gnuplot)
{
    mkdir_tmp();
    char png[128];
    snprintf(png, sizeof png, "%s/acc.png", dir);
    setenv("PATH", dir, 1);
    lb_error err = {0};
    ck_assert_int_eq(draw(png, "t", &err), LB_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "gnuplot-nox"));
    setenv("PATH", "/usr/bin:/bin", 1);
    rm_tmp();
}
END_TEST

START_TEST(test_plot_bad_name)
{
    lb_plot p;
    lb_error err = {0};
    ck_assert_int_eq(lb_plot_open(&p, "/tmp/x.svg", NULL, NULL, NULL, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, ".png"));
}
END_TEST

/* lowbit inspect --ranges: a min/max W2A2 model after one training step reports its weight
 * scales (per channel, max|w|) and observed input ranges; an LSQ model its steps; a float
 * layer says so. */
START_TEST(test_inspect_ranges)
{
    const char *spec = "input 1 6 6\nflatten\nlinear name=fc1 out=8\nrelu\nlinear name=fc2 out=3\n";
    const char *quant[2] = { "w2a2,wq=minmax,aq=minmax,last=0", "w4a4" };
    for (int v = 0; v < 2; v++) {
        lb_qconfig qc;
        lb_error err = { 0 };
        ck_assert_msg(lb_qconfig_parse_spec(quant[v], &qc, &err) == LB_OK, "%s", err.msg);
        lb_model *m = NULL;
        ck_assert_msg(lb_model_build(spec, "test", &qc, &m, &err) == LB_OK, "%s", err.msg);
        lb_model_init_weights(m, 3);
        lb_graph *g = lb_graph_new(0);
        lb_graph_set_training(g, true);
        float xs[2 * 36];
        for (int i = 0; i < 72; i++) xs[i] = (float)(i % 7) * 0.5f; /* max 3 */
        lb_tensor *x = lb_leaf_from(g, xs, (int64_t[]){ 2, 1, 6, 6 }, 4, false);
        ck_assert_ptr_nonnull(lb_model_forward(m, g, x, NULL));
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        ck_assert_ptr_nonnull(f);
        lb_cli_inspect_ranges(m, f);
        fclose(f);
        if (v == 0) {
            /* fc1 quantized (its input is the image: range [0, 3] after one batch) */
            ck_assert_msg(strstr(buf, "fc1            weight minmax  max|w|"), "%s", buf);
            ck_assert_msg(strstr(buf, "2 bits scale "), "%s", buf);
            ck_assert_msg(strstr(buf, "range [0, 3]"), "%s", buf);
            ck_assert_msg(strstr(buf, "fc2            weight -       max|w|"), "%s", buf);
            ck_assert_msg(strstr(buf, "(float)"), "%s", buf);
        } else {
            ck_assert_msg(strstr(buf, "lsq     max|w|"), "%s", buf);
            ck_assert_msg(strstr(buf, "4 bits step "), "%s", buf);
            ck_assert_msg(!strstr(buf, "range ["), "%s", buf);
        }
        free(buf);
        lb_graph_free(g);
        lb_model_free(m);
    }
}
END_TEST

Suite *cli_plot_suite(void)
{
    Suite *s = suite_create("cli_plot");
    TCase *tc = tcase_create("plot");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_plot_png);
    tcase_add_test(tc, test_plot_no_gnuplot);
    tcase_add_test(tc, test_plot_bad_name);
    tcase_add_test(tc, test_inspect_ranges);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    Suite *suites[] = { cli_plot_suite(), cli_mixed_suite(), cli_ablate_suite() };
    return lb_run_suites(suites, 3);
}
