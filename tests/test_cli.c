/* test_cli.c: the pieces of the `lowbit` command that are not the library: PNG charts through
 * gnuplot (cli/plot.c). main() of the test_cli binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/plot.h"
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

Suite *cli_plot_suite(void)
{
    Suite *s = suite_create("cli_plot");
    TCase *tc = tcase_create("plot");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_plot_png);
    tcase_add_test(tc, test_plot_no_gnuplot);
    tcase_add_test(tc, test_plot_bad_name);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    Suite *suites[] = { cli_plot_suite(), cli_mixed_suite(), cli_ablate_suite() };
    return lb_run_suites(suites, 3);
}
