/* test_mcu.c: the integer runtime on an emulated Arm Cortex-M4 gives the host's answers.
 * For the tiny calibrated model at 4, 2 (8-bit first and last layers) and 1 bits: checkpoint
 * -> `lowbit export --format c` -> runtime/mcu/run.sh, which builds the firmware with random
 * test images, runs it under qemu-system-arm (mps2-an386, -icount shift=0) and compares every
 * prediction and score with the same program built for the host. Registered only when
 * arm-none-eabi-gcc and qemu-system-arm are installed (tools/setup.sh installs them).
 * main() of test_mcu. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/rng.h"
#include "tests/suites.h"
#include "tests/tiny_model.h"
#include "train/checkpoint.h"

#define N_IMAGES 24

/* An idx3-ubyte file of n random 12x12 images (what run.sh reads). */
static void write_idx(const char *path, int n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    const uint8_t hdr[16] = { 0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 12, 0, 0, 0, 12 };
    ck_assert_uint_eq(fwrite(hdr, 1, 16, f), 16);
    lb_rng r = lb_rng_make(17);
    for (int i = 0; i < n * 144; i++) ck_assert_int_ne(fputc((int)lb_rng_below(&r, 256), f), EOF);
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs cmd; returns its exit status and the last line it printed in last. */
static int run(const char *cmd, char *last, size_t cap)
{
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char line[1024];
    last[0] = '\0';
    while (fgets(line, sizeof line, p)) snprintf(last, cap, "%s", line);
    return pclose(p);
}

static void check_mcu(const char *qspec, bool fold, const char *name)
{
    char dir[] = "/tmp/lb_mcu_XXXXXX", ckpt[128], images[128], cmd[1024], last[1024];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(ckpt, sizeof ckpt, "%s/tiny.ckpt", dir);
    snprintf(images, sizeof images, "%s/images.idx", dir);
    lb_model *m = tiny_model_calibrated(tiny_net, qspec, fold);
    lb_ckpt_meta meta = { .test_acc = -1 };
    snprintf(meta.dataset, sizeof meta.dataset, "mnist");
    lb_error err = { 0 };
    ck_assert_msg(lb_checkpoint_save(ckpt, m, &meta, false, &err) == LB_OK, "%s", err.msg);
    lb_model_free(m);
    write_idx(images, N_IMAGES);
    snprintf(cmd, sizeof cmd, "%s export %s --format c --out %s/%s 2>&1", LB_LOWBIT, ckpt, dir,
             name);
    ck_assert_msg(run(cmd, last, sizeof last) == 0, "%s: %s", cmd, last);
    snprintf(cmd, sizeof cmd, "bash %s %s/%s.c --images %s -n %d --out %s/build 2>&1", LB_MCU_RUN,
             dir, name, images, N_IMAGES, dir);
    ck_assert_msg(run(cmd, last, sizeof last) == 0, "%s: %s", qspec, last);
    ck_assert_msg(strstr(last, "identical=yes") != NULL, "%s: %s", qspec, last);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* The firmware traps unaligned accesses while it measures: a backend that makes one must
 * stop QEMU with a UsageFault whose CFSR says UNALIGNED. */
START_TEST(test_mcu_traps_unaligned)
{
    char dir[] = "/tmp/lb_mcu_XXXXXX", images[128], cmd[1024], last[1024];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(images, sizeof images, "%s/images.idx", dir);
    write_idx(images, 2);
    snprintf(cmd, sizeof cmd, "bash %s --backend %s --images %s -n 2 --out %s/build 2>&1",
             LB_MCU_RUN, LB_MCU_UNALIGNED, images, dir);
    ck_assert_int_ne(run(cmd, last, sizeof last), 0);
    ck_assert_msg(strstr(last, "UsageFault") && strstr(last, "cfsr=0x01000000"), "%s", last);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_mcu_w4a4) { check_mcu("w4a4", false, "tiny_w4a4"); }
END_TEST
START_TEST(test_mcu_w2a2_folded) { check_mcu("w2a2,first=8,last=8", true, "tiny_w2a2"); }
END_TEST
START_TEST(test_mcu_binary) { check_mcu("w1a8", false, "tiny_w1a8"); }
END_TEST

static Suite *mcu_suite(void)
{
    Suite *s = suite_create("mcu");
    TCase *tc = tcase_create("qemu");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_mcu_w4a4);
    tcase_add_test(tc, test_mcu_w2a2_folded);
    tcase_add_test(tc, test_mcu_binary);
    tcase_add_test(tc, test_mcu_traps_unaligned);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    Suite *suites[] = { mcu_suite() };
    return lb_run_suites(suites, 1);
}
