/* test_datasets.c: tests of the IDX loader, dataset lookup and the batcher, and main() of the
 * test_datasets binary.
 *
 * Every fixture is written by the test itself (plain and gzip) into a mkdtemp folder under
 * /tmp that the unchecked fixture removes again, so a failing test leaves nothing behind.
 * Malformed files assert the specific status and that the message names the file. The last
 * tests read the real MNIST and Fashion-MNIST test splits, which CI provides.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "datasets/dataset.h"
#include "tests/suites.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define FX_PATH 512

static char tmpdir[64];

/* ---------------------------------------------------------------- fixture files */

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char sub[FX_PATH];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Unchecked: runs in the parent once per TCase, so teardown runs even when a test fails. */
static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lb_test_datasets.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    rm_rf(tmpdir);
}

static void fx_path(char *out, const char *name)
{
    int len = snprintf(out, FX_PATH, "%s/%s", tmpdir, name);
    ck_assert_int_lt(len, FX_PATH);
}

static void fx_mkdir(const char *name)
{
    char p[FX_PATH];
    fx_path(p, name);
    ck_assert_int_eq(mkdir(p, 0700), 0);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void write_file(const char *name, const uint8_t *buf, size_t len, bool gz)
{
    char p[FX_PATH];
    fx_path(p, name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, buf, (unsigned)len), (int)len);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
    }
}

/* Pixel k of fixture image i: every value differs from its neighbours. */
static uint8_t fx_pix(uint32_t i, uint32_t k)
{
    return (uint8_t)(i * 37u + k * 11u + 5u);
}

static const int32_t fx_labels[] = { 0, 4, 2, 7, 1 };

/* How to build one IDX file: header fields, what the body really holds, and damage. */
typedef struct {
    uint32_t magic, n_hdr, rows, cols; /* header (rows, cols only for images)          */
    uint32_t n_body;                   /* records actually written                     */
    size_t   extra;                    /* garbage bytes appended                       */
    long     cut;                      /* >= 0: file cut to this many bytes            */
    bool     set_label0;               /* labels: replace label 0 by label0            */
    int32_t  label0;
} idx_spec;

#define GOOD_IMG { 0x00000803u, 3, 2, 3, 3, 0, -1, false, 0 }
#define GOOD_LAB { 0x00000801u, 3, 0, 0, 3, 0, -1, false, 0 }

/* Builds the file's bytes into a malloc'd buffer; returns its length. */
static size_t build_idx(const idx_spec *s, bool images, uint8_t **out)
{
    const size_t hdr  = images ? 16 : 8;
    const size_t unit = images ? (size_t)s->rows * s->cols : s->magic == 0x00000C01u ? 4 : 1;
    size_t       len  = hdr + (size_t)s->n_body * unit + s->extra;
    uint8_t     *b    = calloc(len, 1);
    ck_assert_ptr_nonnull(b);
    put32(b, s->magic);
    put32(b + 4, s->n_hdr);
    if (images) {
        put32(b + 8, s->rows);
        put32(b + 12, s->cols);
    }
    for (uint32_t i = 0; i < s->n_body; i++) {
        uint8_t *rec = b + hdr + i * unit;
        if (images) {
            for (size_t k = 0; k < unit; k++) rec[k] = fx_pix(i, (uint32_t)k);
        } else {
            int32_t v = (i == 0 && s->set_label0) ? s->label0 : fx_labels[i % 5];
            if (unit == 4) put32(rec, (uint32_t)v);
            else rec[0] = (uint8_t)v;
        }
    }
    for (size_t k = 0; k < s->extra; k++) b[len - s->extra + k] = 0xAB;
    if (s->cut >= 0 && (size_t)s->cut < len) len = (size_t)s->cut;
    *out = b;
    return len;
}

static void write_idx(const char *name, const idx_spec *s, bool images, bool gz)
{
    uint8_t *b   = NULL;
    size_t   len = build_idx(s, images, &b);
    write_file(name, b, len, gz);
    free(b);
}

/* Asserts status want, a message naming path (and needle, if given), and a zeroed ds. */
static void expect_fail(lb_status st, const lb_error *err, const lb_dataset *ds, lb_status want,
                        const char *path, const char *needle)
{
    ck_assert_msg(st == want, "status %s (expected %s): %s", lb_status_str(st),
                  lb_status_str(want), err->msg);
    ck_assert_int_eq(err->status, want);
    ck_assert_msg(strstr(err->msg, path) != NULL, "message lacks path %s: %s", path, err->msg);
    if (needle)
        ck_assert_msg(strstr(err->msg, needle) != NULL, "message lacks '%s': %s", needle,
                      err->msg);
    ck_assert_ptr_null(ds->images);
    ck_assert_ptr_null(ds->labels);
    ck_assert_int_eq(ds->n, 0);
}

/* ---------------------------------------------------------------- good files */

static void check_roundtrip(bool gz_images, bool gz_labels)
{
    const idx_spec img = GOOD_IMG, lab = GOOD_LAB;
    write_idx("img", &img, true, gz_images);
    write_idx("lab", &lab, false, gz_labels);
    char ip[FX_PATH], lp[FX_PATH];
    fx_path(ip, "img");
    fx_path(lp, "lab");

    lb_dataset ds;
    lb_error   err = { 0 };
    ck_assert_msg(lb_idx_load(ip, lp, &ds, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 3);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_int_eq(ds.h, 2);
    ck_assert_int_eq(ds.w, 3);
    ck_assert_int_eq(ds.n_classes, 5); /* labels 0, 4, 2 */
    ck_assert_str_eq(ds.source, ip);
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_int_eq(ds.labels[i], fx_labels[i]);
        for (uint32_t k = 0; k < 6; k++) ck_assert_uint_eq(ds.images[i * 6 + k], fx_pix(i, k));
    }
    ck_assert_float_eq(ds.mean[0], 0.0f);
    ck_assert_float_eq(ds.std[0], 1.0f);
    lb_dataset_free(&ds);
    ck_assert_ptr_null(ds.images);
    lb_dataset_free(&ds); /* twice is fine */
}

START_TEST(test_idx_plain_roundtrip)
{
    check_roundtrip(false, false);
}
END_TEST

START_TEST(test_idx_gz_roundtrip)
{
    check_roundtrip(true, true);
    check_roundtrip(true, false); /* mixed is fine too */
}
END_TEST

/* Labels stored as int32 allow up to LB_DATASET_MAX_CLASSES classes. */
START_TEST(test_idx_int32_labels)
{
    const idx_spec img = GOOD_IMG;
    idx_spec       lab = GOOD_LAB;
    lab.magic          = 0x00000C01u;
    lab.set_label0     = true;
    lab.label0         = LB_DATASET_MAX_CLASSES - 1;
    write_idx("img", &img, true, false);
    write_idx("lab", &lab, false, true);
    char ip[FX_PATH], lp[FX_PATH];
    fx_path(ip, "img");
    fx_path(lp, "lab");
    lb_dataset ds;
    lb_error   err = { 0 };
    ck_assert_msg(lb_idx_load(ip, lp, &ds, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.labels[0], LB_DATASET_MAX_CLASSES - 1);
    ck_assert_int_eq(ds.labels[1], 4);
    ck_assert_int_eq(ds.n_classes, LB_DATASET_MAX_CLASSES);
    lb_dataset_free(&ds);
}
END_TEST

/* A larger file than the loader's first 1 MiB chunk, to exercise buffer growth. */
START_TEST(test_idx_grows_buffer)
{
    idx_spec img = GOOD_IMG, lab = GOOD_LAB;
    img.n_hdr = img.n_body = lab.n_hdr = lab.n_body = 3000;
    img.rows = img.cols = 28; /* 3000 * 784 = 2.35 MB: two doublings */
    write_idx("img", &img, true, true);
    write_idx("lab", &lab, false, false);
    char ip[FX_PATH], lp[FX_PATH];
    fx_path(ip, "img");
    fx_path(lp, "lab");
    lb_dataset ds;
    lb_error   err = { 0 };
    ck_assert_msg(lb_idx_load(ip, lp, &ds, &err) == LB_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 3000);
    for (uint32_t i = 0; i < 3000; i += 499) {
        ck_assert_int_eq(ds.labels[i], fx_labels[i % 5]);
        for (uint32_t k = 0; k < 784; k += 97)
            ck_assert_uint_eq(ds.images[(size_t)i * 784 + k], fx_pix(i, k));
    }
    lb_dataset_free(&ds);
}
END_TEST

/* ---------------------------------------------------------------- malformed files */

typedef struct {
    const char *name;
    idx_spec    img, lab;
    lb_status   want;
    bool        in_labels; /* the message must name the labels file (else the images file) */
    const char *needle;
} bad_case;

/* Row i of the malformed-file table: one defect on top of the good fixture. */
static bool bad_case_at(int i, bad_case *c)
{
    *c = (bad_case){ .img = GOOD_IMG, .lab = GOOD_LAB, .want = LB_ERR_FORMAT };
    switch (i) {
    case 0:
        c->name      = "bad image magic";
        c->img.magic = 0x00000804u;
        c->needle    = "bad magic 0x00000804 (expected 0x00000803";
        break;
    case 1:
        c->name      = "bad label magic";
        c->lab.magic = 0x00000803u;
        c->in_labels = true;
        c->needle    = "bad magic 0x00000803 (expected 0x00000801";
        break;
    case 2:
        c->name      = "label/image count mismatch";
        c->lab.n_hdr = c->lab.n_body = 2;
        c->in_labels = true;
        c->needle    = "header says 2 labels";
        break;
    case 3:
        c->name       = "truncated images";
        c->img.n_body = 2;
        c->needle     = "truncated: header says 3 images";
        break;
    case 4:
        c->name       = "truncated labels";
        c->lab.n_body = 2;
        c->in_labels  = true;
        c->needle     = "truncated: header says 3 labels";
        break;
    case 5:
        c->name    = "truncated image header";
        c->img.cut = 10;
        c->needle  = "truncated header";
        break;
    case 6:
        c->name      = "truncated label header";
        c->lab.cut   = 5;
        c->in_labels = true;
        c->needle    = "truncated header";
        break;
    case 7:
        c->name       = "absurd rows";
        c->img.rows   = 100000;
        c->img.n_body = 0;
        c->needle     = "image size 100000x3 out of range";
        break;
    case 8:
        c->name     = "zero cols";
        c->img.cols = 0;
        c->needle   = "out of range";
        break;
    case 9:
        c->name      = "zero images";
        c->img.n_hdr = c->lab.n_hdr = 0;
        c->needle    = "header says 0 images";
        break;
    case 10:
        c->name      = "90 million images on a tiny file";
        c->img.n_hdr = c->lab.n_hdr = 90000000;
        c->needle    = "truncated: header says 90000000 images (540000000 bytes)";
        break;
    case 11:
        c->name      = "count above the limit";
        c->img.n_hdr = c->lab.n_hdr = 200000000;
        c->needle    = "expected 1..100000000";
        break;
    case 12:
        c->name      = "trailing bytes after images";
        c->img.extra = 5;
        c->needle    = "5 bytes after the last";
        break;
    case 13:
        c->name      = "trailing byte after labels";
        c->lab.extra = 1;
        c->in_labels = true;
        c->needle    = "1 byte after the last";
        break;
    case 14:
        c->name    = "empty image file";
        c->img.cut = 0;
        c->needle  = "empty file";
        break;
    case 15:
        c->name      = "empty label file";
        c->lab.cut   = 0;
        c->in_labels = true;
        c->needle    = "empty file";
        break;
    case 16:
        c->name           = "label 1000";
        c->lab.magic      = 0x00000C01u;
        c->lab.set_label0 = true;
        c->lab.label0     = LB_DATASET_MAX_CLASSES;
        c->in_labels      = true;
        c->needle         = "label 0 is 1000";
        break;
    case 17:
        c->name           = "negative label";
        c->lab.magic      = 0x00000C01u;
        c->lab.set_label0 = true;
        c->lab.label0     = -1;
        c->in_labels      = true;
        c->needle         = "label 0 is -1";
        break;
    default:
        return false;
    }
    return true;
}

#define N_BAD_CASES 18

/* Row _i/2 of the table, written plain (even _i) or gzip-compressed (odd _i). */
START_TEST(test_idx_malformed)
{
    bad_case   c;
    const bool gz = _i % 2;
    ck_assert(!bad_case_at(N_BAD_CASES, &c)); /* the loop covers the whole table */
    ck_assert(bad_case_at(_i / 2, &c));
    write_idx("img", &c.img, true, gz);
    write_idx("lab", &c.lab, false, gz);
    char ip[FX_PATH], lp[FX_PATH];
    fx_path(ip, "img");
    fx_path(lp, "lab");
    lb_dataset ds;
    lb_error   err = { 0 };
    lb_status  st  = lb_idx_load(ip, lp, &ds, &err);
    ck_assert_msg(st == c.want, "case %s (gz %d): status %s: %s", c.name, gz, lb_status_str(st),
                  err.msg);
    expect_fail(st, &err, &ds, c.want, c.in_labels ? lp : ip, c.needle);
}
END_TEST

/* A header claiming 90 million 28x28 images (70 GB) on a 1 KB file must fail as truncated
 * without trying to allocate the claim: run under an address-space limit far below it. */
START_TEST(test_idx_huge_count_fails_fast)
{
#ifndef UNDER_ASAN /* ASan reserves terabytes of shadow memory: no RLIMIT_AS under it */
    struct rlimit lim = { (rlim_t)2 << 30, (rlim_t)2 << 30 };
    if (getenv("CK_FORK") == NULL || strcmp(getenv("CK_FORK"), "no") != 0)
        ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0); /* only this forked child */
#endif
    idx_spec img = GOOD_IMG, lab = GOOD_LAB;
    img.rows = img.cols = 28;
    img.n_hdr = lab.n_hdr = 90000000;
    img.n_body = lab.n_body = 1;
    write_idx("img", &img, true, false);
    write_idx("lab", &lab, false, false);
    char ip[FX_PATH], lp[FX_PATH];
    fx_path(ip, "img");
    fx_path(lp, "lab");
    lb_dataset ds;
    lb_error   err = { 0 };
    lb_status  st  = lb_idx_load(ip, lp, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_FORMAT, ip,
                "truncated: header says 90000000 images (70560000000 bytes), file holds only 784");
}
END_TEST

START_TEST(test_idx_missing_file)
{
    const idx_spec lab = GOOD_LAB;
    write_idx("lab", &lab, false, false);
    char ip[FX_PATH], lp[FX_PATH];
    fx_path(ip, "no-such-images");
    fx_path(lp, "lab");
    lb_dataset ds;
    lb_error   err = { 0 };
    lb_status  st  = lb_idx_load(ip, lp, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_IO, ip, strerror(ENOENT));

    const idx_spec img = GOOD_IMG; /* images fine, labels missing */
    write_idx("img", &img, true, false);
    fx_path(ip, "img");
    fx_path(lp, "no-such-labels");
    st = lb_idx_load(ip, lp, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_IO, lp, strerror(ENOENT));

    fx_path(ip, ""); /* a directory: opens, then fails to read */
    st = lb_idx_load(ip, lp, &ds, &err);
    ck_assert_msg(st == LB_ERR_IO, "%s", err.msg);
}
END_TEST

/* Damaged compressed data: a cut .gz reads as truncated, flipped bytes as corrupt. */
START_TEST(test_idx_damaged_gzip)
{
    idx_spec img = GOOD_IMG, lab = GOOD_LAB;
    img.n_hdr = img.n_body = lab.n_hdr = lab.n_body = 500;
    img.rows = img.cols = 28;
    write_idx("img.gz", &img, true, true);
    write_idx("lab", &lab, false, false);
    char ip[FX_PATH], lp[FX_PATH];
    fx_path(ip, "img.gz");
    fx_path(lp, "lab");

    FILE *f = fopen(ip, "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t gzbytes[1 << 20];
    size_t         len = fread(gzbytes, 1, sizeof gzbytes, f);
    fclose(f);
    ck_assert_uint_gt(len, 200);
    ck_assert_uint_lt(len, sizeof gzbytes);

    lb_dataset ds;
    lb_error   err = { 0 };
    write_file("img.gz", gzbytes, len / 2, false);
    lb_status st = lb_idx_load(ip, lp, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_FORMAT, ip, "truncated");

    for (size_t k = len / 3; k < len / 3 + 64; k++) gzbytes[k] ^= 0x5A;
    write_file("img.gz", gzbytes, len, false);
    st = lb_idx_load(ip, lp, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_FORMAT, ip, NULL);
}
END_TEST

/* ---------------------------------------------------------------- lookup by name */

START_TEST(test_load_explicit_dir)
{
    const idx_spec img = GOOD_IMG, lab = GOOD_LAB;
    char           root[FX_PATH];
    fx_mkdir("explicit");
    fx_mkdir("explicit/mnist");
    fx_path(root, "explicit");
    write_idx("explicit/mnist/t10k-images-idx3-ubyte.gz", &img, true, true);
    write_idx("explicit/mnist/t10k-labels-idx1-ubyte", &lab, false, false); /* mixed gz */
    lb_dataset ds;
    lb_error   err = { 0 };
    ck_assert_msg(lb_dataset_load("mnist", root, LB_SPLIT_TEST, &ds, &err) == LB_OK, "%s",
                  err.msg);
    char want[FX_PATH];
    fx_path(want, "explicit/mnist/t10k-images-idx3-ubyte.gz");
    ck_assert_str_eq(ds.source, want);
    ck_assert_str_eq(ds.name, "mnist");
    ck_assert_int_eq(ds.n, 3);
    ck_assert_float_eq_tol(ds.mean[0], 0.1307f, 1e-6f);
    ck_assert_float_eq_tol(ds.std[0], 0.3081f, 1e-6f);
    lb_dataset_free(&ds);

    /* Only the test split is there: the train split must not be found elsewhere. */
    lb_status st = lb_dataset_load("mnist", root, LB_SPLIT_TRAIN, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_IO, root, "train-images-idx3-ubyte");

    /* "fashion" is an alias; files straight in the root are found too. */
    write_idx("explicit/t10k-images-idx3-ubyte", &img, true, false);
    write_idx("explicit/t10k-labels-idx1-ubyte.gz", &lab, false, true);
    ck_assert_msg(lb_dataset_load("fashion", root, LB_SPLIT_TEST, &ds, &err) == LB_OK, "%s",
                  err.msg);
    ck_assert_str_eq(ds.name, "fashion-mnist");
    ck_assert_float_eq_tol(ds.mean[0], 0.2860f, 1e-6f);
    ck_assert_float_eq_tol(ds.std[0], 0.3530f, 1e-6f);
    lb_dataset_free(&ds);

    /* A malformed file that is found is reported as such, not skipped. */
    idx_spec bad = GOOD_IMG;
    bad.magic    = 0x12345678u;
    write_idx("explicit/mnist/t10k-images-idx3-ubyte.gz", &bad, true, true);
    st = lb_dataset_load("mnist", root, LB_SPLIT_TEST, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_FORMAT, want, "bad magic 0x12345678");
}
END_TEST

/* An explicit empty data_dir must not fall back to the real MNIST found elsewhere. */
START_TEST(test_load_empty_dir)
{
    char root[FX_PATH];
    fx_mkdir("empty");
    fx_path(root, "empty");
    lb_dataset ds;
    lb_error   err = { 0 };
    lb_status  st  = lb_dataset_load("mnist", root, LB_SPLIT_TEST, &ds, &err);
    expect_fail(st, &err, &ds, LB_ERR_IO, root, "set LOWBIT_DATA");
    ck_assert_ptr_nonnull(strstr(err.msg, "apt-get install dataset-fashion-mnist"));

    st = lb_dataset_load("cifar", NULL, LB_SPLIT_TEST, &ds, &err);
    ck_assert_int_eq(st, LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "cifar"));
    st = lb_dataset_load(NULL, NULL, LB_SPLIT_TEST, &ds, &err);
    ck_assert_int_eq(st, LB_ERR_ARG);
}
END_TEST

/* A root too long for the message is cut, and the hint still fits. */
START_TEST(test_load_long_dir_message)
{
    char dir[1200];
    int  len = snprintf(dir, sizeof dir, "%s/", tmpdir);
    while (len < 1000) dir[len++] = 'd';
    dir[len] = '\0';
    lb_dataset ds;
    lb_error   err = { 0 };
    lb_status  st  = lb_dataset_load("fashion-mnist", dir, LB_SPLIT_TRAIN, &ds, &err);
    ck_assert_int_eq(st, LB_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, tmpdir));
    const char *tail = "apt-get install dataset-fashion-mnist";
    size_t      n = strlen(err.msg), t = strlen(tail);
    ck_assert_uint_lt(n, sizeof err.msg);
    ck_assert_uint_ge(n, t);
    ck_assert_str_eq(err.msg + n - t, tail);
}
END_TEST

/* ---------------------------------------------------------------- batcher */

#define BN 10 /* samples */
#define BC 1
#define BH 2
#define BW 2

/* An in-memory dataset whose label is the sample index, so y shows the order. */
static void make_seq_dataset(lb_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    ds->n = BN;
    ds->c = BC;
    ds->h = BH;
    ds->w = BW;
    ds->n_classes = BN;
    ds->images = malloc(BN * BC * BH * BW);
    ds->labels = malloc(BN * sizeof *ds->labels);
    ck_assert_ptr_nonnull(ds->images);
    ck_assert_ptr_nonnull(ds->labels);
    for (int i = 0; i < BN; i++) {
        ds->labels[i] = i;
        for (int k = 0; k < BC * BH * BW; k++)
            ds->images[i * BC * BH * BW + k] = (uint8_t)(i * 20 + k);
    }
    ds->mean[0] = 0.5f;
    ds->std[0]  = 0.25f;
}

/* Runs one epoch; writes the sample order into order[] and returns how many were served. */
static int run_epoch(lb_batcher *b, int32_t *order)
{
    float   x[3 * BC * BH * BW];
    int32_t y[3];
    int     seen = 0;
    int64_t k;
    lb_batcher_start_epoch(b);
    while ((k = lb_batcher_next(b, x, y)) > 0) {
        ck_assert_int_le(k, b->batch);
        for (int64_t j = 0; j < k; j++) {
            /* each x row is the normalised image of sample y[j] */
            for (int p = 0; p < BC * BH * BW; p++) {
                float want = ((float)(y[j] * 20 + p) / 255.0f - 0.5f) / 0.25f;
                ck_assert_float_eq_tol(x[j * BC * BH * BW + p], want, 1e-6f);
            }
            order[seen++] = y[j];
        }
    }
    ck_assert_int_eq(lb_batcher_next(b, x, y), 0); /* stays at the end */
    return seen;
}

START_TEST(test_batcher_epochs)
{
    lb_dataset ds;
    make_seq_dataset(&ds);
    lb_batcher a, b;
    lb_error   err = { 0 };
    ck_assert_int_eq(lb_batcher_init(&a, &ds, 3, true, 1234, &err), LB_OK);
    ck_assert_int_eq(lb_batcher_init(&b, &ds, 3, true, 1234, &err), LB_OK);
    ck_assert(!a.drop_last);
    ck_assert_int_eq(lb_batcher_count(&a), 4);

    int32_t oa[3][BN], ob[BN];
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(run_epoch(&a, oa[e]), BN);
        ck_assert_int_eq(run_epoch(&b, ob), BN);
        ck_assert_mem_eq(oa[e], ob, sizeof ob); /* same seed, same order */
        int hits[BN] = { 0 };
        for (int i = 0; i < BN; i++) hits[oa[e][i]]++;
        for (int i = 0; i < BN; i++) ck_assert_int_eq(hits[i], 1); /* each sample once */
    }
    ck_assert_int_eq(a.epoch, 3);
    ck_assert(memcmp(oa[0], oa[1], sizeof oa[0]) != 0); /* epochs differ (10! orders) */
    ck_assert(memcmp(oa[1], oa[2], sizeof oa[0]) != 0);
    lb_batcher_free(&b);

    ck_assert_int_eq(lb_batcher_init(&b, &ds, 3, true, 99, &err), LB_OK); /* other seed */
    ck_assert_int_eq(run_epoch(&b, ob), BN);
    ck_assert(memcmp(oa[0], ob, sizeof ob) != 0);

    lb_batcher_free(&a);
    lb_batcher_free(&b);
    lb_batcher_free(&b); /* twice is fine */
    lb_dataset_free(&ds);
}
END_TEST

START_TEST(test_batcher_drop_last_and_order)
{
    lb_dataset ds;
    make_seq_dataset(&ds);
    lb_batcher b;
    lb_error   err = { 0 };
    int32_t    order[BN];

    ck_assert_int_eq(lb_batcher_init(&b, &ds, 3, false, 7, &err), LB_OK);
    b.drop_last = true;
    ck_assert_int_eq(lb_batcher_count(&b), 3);
    ck_assert_int_eq(run_epoch(&b, order), 9); /* 3 full batches, the last sample dropped */
    for (int i = 0; i < 9; i++) ck_assert_int_eq(order[i], i); /* no shuffle: stored order */
    b.drop_last = false;
    ck_assert_int_eq(lb_batcher_count(&b), 4);
    ck_assert_int_eq(run_epoch(&b, order), BN);
    lb_batcher_free(&b);

    /* next() without start_epoch starts the first epoch itself; sizes are 3, 3, 3, 1. */
    ck_assert_int_eq(lb_batcher_init(&b, &ds, 3, true, 7, &err), LB_OK);
    float   x[3 * BC * BH * BW];
    int32_t y[3];
    int64_t sizes[5];
    for (int i = 0; i < 5; i++) sizes[i] = lb_batcher_next(&b, x, y);
    ck_assert_int_eq(sizes[0], 3);
    ck_assert_int_eq(sizes[2], 3);
    ck_assert_int_eq(sizes[3], 1);
    ck_assert_int_eq(sizes[4], 0);
    ck_assert_int_eq(b.epoch, 1);
    lb_batcher_free(&b);

    /* A batch larger than the dataset is one partial batch, or none with drop_last. */
    ck_assert_int_eq(lb_batcher_init(&b, &ds, 64, true, 7, &err), LB_OK);
    ck_assert_int_eq(lb_batcher_count(&b), 1);
    b.drop_last = true;
    ck_assert_int_eq(lb_batcher_count(&b), 0);
    lb_batcher_free(&b);

    ck_assert_int_eq(lb_batcher_init(&b, &ds, 0, true, 7, &err), LB_ERR_ARG);
    ck_assert_ptr_null(b.order);
    lb_batcher_free(&b);
    lb_dataset_free(&ds);
}
END_TEST

START_TEST(test_dataset_get_normalisation)
{
    lb_dataset ds;
    make_seq_dataset(&ds);
    ds.mean[0] = 0.1307f;
    ds.std[0]  = 0.3081f;
    ds.images[4 * 4 + 0] = 0;
    ds.images[4 * 4 + 1] = 255;
    ds.images[4 * 4 + 2] = 51;
    float out[4];
    ck_assert_int_eq(lb_dataset_get(&ds, 4, out, NULL), LB_OK);
    ck_assert_float_eq_tol(out[0], -0.1307f / 0.3081f, 1e-6f);
    ck_assert_float_eq_tol(out[1], (1.0f - 0.1307f) / 0.3081f, 1e-6f);
    ck_assert_float_eq_tol(out[2], (0.2f - 0.1307f) / 0.3081f, 1e-6f);
    lb_dataset_free(&ds);
}
END_TEST

/* ---------------------------------------------------------------- real data */

START_TEST(test_real_mnist_test_split)
{
    lb_dataset ds;
    lb_error   err = { 0 };
    ck_assert_msg(lb_dataset_load("mnist", NULL, LB_SPLIT_TEST, &ds, &err) == LB_OK, "%s",
                  err.msg);
    ck_assert_str_eq(ds.name, "mnist");
    ck_assert_int_eq(ds.n, 10000);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_int_eq(ds.h, 28);
    ck_assert_int_eq(ds.w, 28);
    ck_assert_int_eq(ds.n_classes, 10);
    ck_assert_int_eq(ds.labels[0], 7);              /* the first MNIST test digit is a 7 */
    ck_assert_uint_eq(ds.images[7 * 28 + 6], 84);   /* its first stroke, row 7 col 6 */
    ck_assert_ptr_nonnull(strstr(ds.source, "t10k-images-idx3-ubyte"));
    lb_dataset_free(&ds);
}
END_TEST

START_TEST(test_real_fashion_test_split)
{
    lb_dataset ds;
    lb_error   err = { 0 };
    ck_assert_msg(lb_dataset_load("fashion-mnist", NULL, LB_SPLIT_TEST, &ds, &err) == LB_OK,
                  "%s", err.msg);
    ck_assert_str_eq(ds.name, "fashion-mnist");
    ck_assert_int_eq(ds.n, 10000);
    ck_assert_int_eq(ds.h, 28);
    ck_assert_int_eq(ds.w, 28);
    ck_assert_int_eq(ds.n_classes, 10);
    ck_assert_int_eq(ds.labels[0], 9); /* ankle boot */
    lb_dataset_free(&ds);
}
END_TEST

Suite *datasets_suite(void)
{
    Suite *s  = suite_create("datasets");
    TCase *tc = tcase_create("idx");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_idx_plain_roundtrip);
    tcase_add_test(tc, test_idx_gz_roundtrip);
    tcase_add_test(tc, test_idx_int32_labels);
    tcase_add_test(tc, test_idx_grows_buffer);
    tcase_add_loop_test(tc, test_idx_malformed, 0, 2 * N_BAD_CASES);
    tcase_add_test(tc, test_idx_huge_count_fails_fast);
    tcase_add_test(tc, test_idx_missing_file);
    tcase_add_test(tc, test_idx_damaged_gzip);
    suite_add_tcase(s, tc);

    tc = tcase_create("find");
    tcase_add_unchecked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_load_explicit_dir);
    tcase_add_test(tc, test_load_empty_dir);
    tcase_add_test(tc, test_load_long_dir_message);
    suite_add_tcase(s, tc);

    tc = tcase_create("batcher");
    tcase_add_test(tc, test_batcher_epochs);
    tcase_add_test(tc, test_batcher_drop_last_and_order);
    tcase_add_test(tc, test_dataset_get_normalisation);
    suite_add_tcase(s, tc);

    tc = tcase_create("real");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_real_mnist_test_split);
    tcase_add_test(tc, test_real_fashion_test_split);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    Suite *suites[] = { datasets_suite(), datasets_image_suite() };
    return lb_run_suites(suites, 2);
}
