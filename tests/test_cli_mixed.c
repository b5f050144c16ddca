/* test_cli_mixed.c: `lowbit sensitivity` and `lowbit mixed` (cli/cmd_mixed.c): the budget
 * forms, and bad command lines and files rejected with exit status 2 or 1 and a message,
 * never a crash (each test runs in its own fork). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd_mixed.h"
#include "tests/suites.h"

START_TEST(test_budget_parse)
{
    lb_budget b;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_budget_parse("24KB", &b, &err), LB_OK);
    ck_assert(b.kib && b.value == 24.0);
    ck_assert_int_eq(lb_budget_parse("12.5kib", &b, &err), LB_OK);
    ck_assert(b.kib && b.value == 12.5);
    ck_assert_int_eq(lb_budget_parse("30k", &b, &err), LB_OK);
    ck_assert(b.kib);
    ck_assert_int_eq(lb_budget_parse("3.0", &b, &err), LB_OK);
    ck_assert(!b.kib && b.value == 3.0);
    ck_assert_int_eq(lb_budget_parse("2bits", &b, &err), LB_OK);
    ck_assert(!b.kib && b.value == 2.0);
    const char *bad[] = { "", "abc", "-3", "0", "3MB", "24", "0.5", "nan", "inf", "3.0x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(lb_budget_parse(bad[i], &b, &err) == LB_ERR_ARG, "'%s' accepted", bad[i]);
        ck_assert(strlen(err.msg) > 10);
    }
    /* a plain 24 is 24 bits per weight: the message points at the KiB form */
    lb_budget_parse("24", &b, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "24KB"));
}
END_TEST

/* Runs a command with stderr captured into buf; returns its exit status. */
static int run(int (*cmd)(int, char **), int argc, char **argv, char *buf, size_t cap)
{
    char path[] = "/tmp/lb_cli_mixed_XXXXXX";
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    const int saved = dup(2);
    dup2(fd, 2);
    const int rc = cmd(argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    const ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    return rc;
}

START_TEST(test_bad_command_lines)
{
    static char *cases[][6] = {
        { "ckpt", NULL },                                   /* mixed without --budget       */
        { "ckpt", "--budget", "lots", NULL },
        { "ckpt", "--budget", "3.0", "--choices", "2,9", NULL },
        { "ckpt", "--budget", "3.0", "--objective", "magic", NULL },
        { "ckpt", "--budget", "3.0", "--abits", "1", NULL },
        { "ckpt", "--budget", "3.0", "--calib", "0", NULL },
        { "ckpt", "--budget", "3.0", "--hessian", "exact", NULL },
        { "ckpt", "--budget", "3.0", "--samples", "0", NULL }, /* hawq needs traces      */
        { "--budget", "3.0", NULL },                        /* no checkpoint                */
        { "a", "b", "--budget", "3.0", NULL },              /* two checkpoints              */
        { "ckpt", "--budget", NULL },                       /* option without its value     */
        { "ckpt", "--frobnicate", NULL },
    };
    char buf[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int argc = 0;
        while (cases[i][argc]) argc++;
        ck_assert_msg(run(lb_cmd_mixed, argc, cases[i], buf, sizeof buf) == 2, "case %zu", i);
        ck_assert_msg(strstr(buf, "lowbit mixed: ") && strstr(buf, "--help"), "case %zu: %s", i, buf);
    }
    static char *scases[][4] = {
        { "ckpt", "--bits", "2,,4", NULL },
        { "ckpt", "--eps", "0", NULL },
        { NULL },
    };
    for (size_t i = 0; i < sizeof scases / sizeof scases[0]; i++) {
        int argc = 0;
        while (scases[i][argc]) argc++;
        ck_assert_int_eq(run(lb_cmd_sensitivity, argc, scases[i], buf, sizeof buf), 2);
        ck_assert_ptr_nonnull(strstr(buf, "lowbit sensitivity: "));
    }
}
END_TEST

/* Files that are not checkpoints: exit status 1 and the path in the message. */
START_TEST(test_bad_checkpoint)
{
    char path[] = "/tmp/lb_cli_mixed_ckpt_XXXXXX";
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "LBCK garbage", 12), 12);
    close(fd);
    char *a1[] = { path, "--budget", "3.0" };
    char *a2[] = { path };
    char *a3[] = { "/nonexistent/x.ckpt", "--budget", "24KB" };
    char buf[4096];
    ck_assert_int_eq(run(lb_cmd_mixed, 3, a1, buf, sizeof buf), 1);
    ck_assert_ptr_nonnull(strstr(buf, path));
    ck_assert_int_eq(run(lb_cmd_sensitivity, 1, a2, buf, sizeof buf), 1);
    ck_assert_ptr_nonnull(strstr(buf, path));
    ck_assert_int_eq(run(lb_cmd_mixed, 3, a3, buf, sizeof buf), 1);
    ck_assert_ptr_nonnull(strstr(buf, "/nonexistent/x.ckpt"));
    unlink(path);
}
END_TEST

Suite *cli_mixed_suite(void)
{
    Suite *s = suite_create("cli_mixed");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_budget_parse);
    tcase_add_test(tc, test_bad_command_lines);
    tcase_add_test(tc, test_bad_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}
