/* find.c: finds a dataset by name on disk and loads it (lb_dataset_load, lb_dataset_load_ex).
 *
 * A dataset name maps to its files and normalisation constants: IDX files for MNIST and
 * Fashion-MNIST; for CIFAR-10 the official binary folder or else the JPEG archive; for
 * mnist-png the PNG archive. The files are looked for under a list of roots (an explicit
 * directory alone, or else $LOWBIT_DATA, the shared dataset folder next to the working
 * directory, the source tree and the executable, and Debian's /usr/share/datasets). Archives
 * are unpacked once into the cache folder (unpack.c), then read as image folders (folder.c).
 * When nothing is found the error lists every place tried. It does not download anything, and
 * it never falls back from an explicit data_dir.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <math.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets_impl.h"

#define FIND_MAX_ROOTS 8
#define FIND_PATH_MAX  4096

typedef struct {
    const char *name;   /* canonical name, also the sub-folder looked in */
    const char *alias;  /* accepted alternative spelling, or NULL         */
    float       mean, std;
} known_dataset;

/* Standard constants: mean/std of pixel/255 over each training set. */
static const known_dataset known[] = {
    { "mnist", NULL, 0.1307f, 0.3081f },
    { "fashion-mnist", "fashion", 0.2860f, 0.3530f },
};

static const char *const image_files[2] = { "train-images-idx3-ubyte", "t10k-images-idx3-ubyte" };
static const char *const label_files[2] = { "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte" };

typedef struct {
    char roots[FIND_MAX_ROOTS][FIND_PATH_MAX];
    int  n;
} root_list;

/* Appends a formatted root unless it is too long or already listed. */
static void add_root(root_list *r, const char *a, const char *b)
{
    if (r->n >= FIND_MAX_ROOTS || !a || !*a) return;
    int len = snprintf(r->roots[r->n], FIND_PATH_MAX, "%s%s", a, b);
    if (len < 0 || len >= FIND_PATH_MAX) return;
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->roots[i], r->roots[r->n]) == 0) return;
    r->n++;
}

static void default_roots(root_list *r)
{
    add_root(r, getenv("LOWBIT_DATA"), "");
    add_root(r, "../shared/datasets", "");
#ifdef LB_SOURCE_DIR
    add_root(r, LB_SOURCE_DIR, "/../shared/datasets");
#endif
    char    exe[FIND_PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len]    = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            add_root(r, exe, "/../../shared/datasets");
            add_root(r, exe, "/../shared/datasets");
        }
    }
    add_root(r, "/usr/share/datasets", "");
}

/* Writes dir/file or dir/file.gz into out if either exists (plain first: faster to read). */
static bool find_file(const char *dir, const char *file, char *out, size_t out_size)
{
    static const char *const suffixes[2] = { "", ".gz" };
    for (int s = 0; s < 2; s++) {
        int len = snprintf(out, out_size, "%s/%s%s", dir, file, suffixes[s]);
        if (len < 0 || (size_t)len >= out_size) return false;
        if (access(out, F_OK) == 0) return true;
    }
    return false;
}

static lb_status load_idx(const char *name, const char *data_dir, lb_split split, lb_dataset *ds,
                          lb_error *err);

/* Puts the roots to search in r: data_dir alone, or the default list. */
static lb_status roots_for(const char *data_dir, root_list *r, lb_error *err)
{
    if (data_dir) {
        if (strlen(data_dir) >= FIND_PATH_MAX)
            return lb_errorf(err, LB_ERR_ARG, "%.64s...: data directory path too long", data_dir);
        snprintf(r->roots[0], FIND_PATH_MAX, "%s", data_dir);
        r->n = 1;
    } else {
        default_roots(r);
    }
    return LB_OK;
}

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Appends the roots to msg (cut to fit), for "not found" messages. */
static void list_roots(const root_list *r, char *msg, size_t size, int reserve)
{
    int       used   = (int)strlen(msg);
    const int budget = (int)size - reserve - 16; /* 16: room for " ... (+N more)" */
    for (int i = 0; i < r->n; i++) {
        const char *root = r->roots[i];
        int         len  = (int)strlen(root);
        int         room = budget - used - (i ? 2 : 0);
        if (room < 8 || (len > room && i > 0)) { /* whole roots only after the first */
            used += snprintf(msg + used, size - (size_t)used, " ... (+%d more)", r->n - i);
            break;
        }
        used += snprintf(msg + used, size - (size_t)used, "%s%.*s%s", i ? ", " : "",
                         len > room ? room - 3 : len, root, len > room ? "..." : "");
    }
}

/* Image folders: an archive NAME.tar.gz unpacked into the cache, or a folder. */
typedef struct {
    const char *name;      /* dataset name (cache file prefix)                   */
    const char *alias;
    const char *archive;   /* <root>/<archive>, unpacked into <cache>/<unpacked>   */
    const char *unpacked;
    const char *bin_dir;   /* CIFAR-10 binary folder name, or NULL                */
    float       mean[3], std[3];
} folder_dataset;

static const folder_dataset folder_known[] = {
    { "cifar10", "cifar-10", "cifar10-jpeg.tar.gz", "cifar10-jpeg", "cifar-10-batches-bin",
      { 0.4914f, 0.4822f, 0.4465f }, { 0.2470f, 0.2435f, 0.2616f } },
    { "mnist-png", NULL, "mnist-png.tar.gz", "mnist-png", NULL,
      { 0.1307f, 0.1307f, 0.1307f }, { 0.3081f, 0.3081f, 0.3081f } },
};

static const char *const split_dirs[2] = { "train", "test" };

/* FNV-1a, to give each user folder its own cache file name. */
static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Per-channel mean and std of pixel/255 over all of ds (for folders of unknown origin). A
 * streaming dataset is read through once, sample by sample (in sample order, so the sums and
 * the result are those of the in-memory path). LB_ERR_IO on a read error, LB_ERR_NOMEM. */
static lb_status set_own_stats(lb_dataset *ds, lb_error *err)
{
    const int64_t hw = (int64_t)ds->h * ds->w;
    double        s[3] = { 0 }, s2[3] = { 0 };
    uint8_t      *scratch = NULL;
    if (lb_dataset_streams(ds) && !(scratch = malloc((size_t)(ds->c * hw))))
        return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", ds->source);
    for (int64_t i = 0; i < ds->n; i++) {
        const uint8_t *pix = lb_dataset_pixels(ds, i, scratch, err);
        if (!pix) {
            free(scratch);
            return err ? err->status : LB_ERR_IO;
        }
        for (int ch = 0; ch < ds->c; ch++) {
            const uint8_t *p = pix + ch * hw;
            uint64_t       a = 0, a2 = 0;
            for (int64_t k = 0; k < hw; k++) a += p[k], a2 += (uint64_t)p[k] * p[k];
            s[ch] += (double)a, s2[ch] += (double)a2;
        }
    }
    free(scratch);
    for (int ch = 0; ch < ds->c; ch++) {
        const double cnt = (double)ds->n * (double)hw, m = s[ch] / cnt / 255.0;
        double       var = s2[ch] / cnt / (255.0 * 255.0) - m * m;
        ds->mean[ch] = (float)m;
        ds->std[ch]  = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
    return LB_OK;
}

/* Loads <folder>/<train|test> as dataset `name` with cache file <cache_name>-<split>. */
static lb_status load_folder_split(const char *folder, const char *name, const char *cache_name,
                                   lb_split split, const lb_dataset_opts *opts, lb_dataset *ds,
                                   lb_error *err)
{
    char root[FIND_PATH_MAX], cname[256];
    if (snprintf(root, sizeof root, "%s/%s", folder, split_dirs[split]) >= (int)sizeof root)
        return lb_errorf(err, LB_ERR_ARG, "%.64s...: path too long", folder);
    if (!is_dir(root))
        return lb_errorf(err, LB_ERR_IO, "%s: no such folder (an image folder needs train/ and "
                         "test/ sub-folders, each with one folder per class)", root);
    snprintf(cname, sizeof cname, "%s-%s", cache_name, split_dirs[split]);
    return lb_folder_load(root, name, cname, opts, ds, err);
}

static lb_status load_known_folder(const folder_dataset *kd, const char *data_dir, lb_split split,
                                   const lb_dataset_opts *opts, lb_dataset *ds, lb_error *err)
{
    struct {
        root_list roots;
        char      p[FIND_PATH_MAX], q[FIND_PATH_MAX], cache[FIND_PATH_MAX];
    } *w = calloc(1, sizeof *w);
    root_list *roots = w ? &w->roots : NULL;
    char      *p = w ? w->p : NULL, *q = w ? w->q : NULL, *cache = w ? w->cache : NULL;
    lb_status  st = LB_OK;
    if (!w) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", kd->name);
        goto done;
    }
    if ((st = roots_for(data_dir, roots, err))) goto done;
    for (int r = 0; r < roots->n; r++) {
        const char *root = roots->roots[r];
        /* 1. the official CIFAR-10 binary batches */
        if (kd->bin_dir) {
            const char *cands[3] = { "%s/%s", "%s/cifar10/%s", "%s" };
            for (int c = 0; c < 3; c++) {
                snprintf(p, FIND_PATH_MAX, cands[c], root, kd->bin_dir);
                if (snprintf(q, FIND_PATH_MAX, "%s/data_batch_1.bin", p) >= FIND_PATH_MAX ||
                    !is_file(q))
                    continue;
                st = lb_cifar10_bin_load(p, split, opts->stream, ds, err);
                goto done;
            }
        }
        /* 2. the archive, unpacked once into the cache folder */
        snprintf(p, FIND_PATH_MAX, "%s/%s", root, kd->archive);
        if (is_file(p)) {
            if ((st = lb_cache_dir(opts, cache, FIND_PATH_MAX, err))) goto done;
            if (snprintf(q, FIND_PATH_MAX, "%s/%s", cache, kd->unpacked) >= FIND_PATH_MAX) {
                st = lb_errorf(err, LB_ERR_ARG, "%.64s...: cache path too long", cache);
                goto done;
            }
            if ((st = lb_archive_unpack(p, q, opts->log, err))) goto done;
            st = load_folder_split(q, kd->name, kd->name, split, opts, ds, err);
            goto done;
        }
        /* 3. an already unpacked folder next to the archive's place */
        snprintf(p, FIND_PATH_MAX, "%s/%s", root, kd->unpacked);
        const int qlen = snprintf(q, FIND_PATH_MAX, "%s/%s", p, split_dirs[split]);
        if (qlen < FIND_PATH_MAX && is_dir(q)) {
            st = load_folder_split(p, kd->name, kd->name, split, opts, ds, err);
            goto done;
        }
    }
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s not found: no %s%s%s or %s/ in roots: ", kd->name,
             kd->bin_dir ? kd->bin_dir : "", kd->bin_dir ? "/, " : "", kd->archive,
             kd->unpacked);
    static const char hint[] = "; hint: pass --data-dir or set LOWBIT_DATA";
    list_roots(roots, msg, sizeof msg, (int)sizeof hint);
    st = lb_errorf(err, LB_ERR_IO, "%s%s", msg, hint);
done:
    if (st == LB_OK && ds->name[0] == '\0') snprintf(ds->name, sizeof ds->name, "%s", kd->name);
    if (st == LB_OK) {
        memcpy(ds->mean, kd->mean, sizeof ds->mean);
        memcpy(ds->std, kd->std, sizeof ds->std);
    }
    free(w);
    return st;
}

lb_status lb_dataset_load_ex(const char *name, const char *data_dir, lb_split split,
                             const lb_dataset_opts *opts, lb_dataset *ds, lb_error *err)
{
    memset(ds, 0, sizeof *ds);
    const lb_dataset_opts o = opts ? *opts : lb_dataset_opts_default();
    if (split != LB_SPLIT_TRAIN && split != LB_SPLIT_TEST)
        return lb_errorf(err, LB_ERR_ARG, "%s: bad split %d (expected LB_SPLIT_TRAIN or "
                         "LB_SPLIT_TEST)", name ? name : "NULL", (int)split);
    if (!name) return lb_errorf(err, LB_ERR_ARG, "no dataset name");
    for (size_t i = 0; i < sizeof folder_known / sizeof folder_known[0]; i++)
        if (!strcmp(name, folder_known[i].name) ||
            (folder_known[i].alias && !strcmp(name, folder_known[i].alias)))
            return load_known_folder(&folder_known[i], data_dir, split, &o, ds, err);
    const char *folder = NULL;
    if (!strcmp(name, "folder")) {
        if (!data_dir)
            return lb_errorf(err, LB_ERR_ARG, "--data folder needs --data-dir PATH (an image "
                             "folder with train/ and test/)");
        folder = data_dir;
    } else if (strchr(name, '/') || is_dir(name)) {
        folder = name;
    }
    if (!folder) return load_idx(name, data_dir, split, ds, err);
    /* A user's image folder: its own cache file, its own normalisation. */
    char  real[FIND_PATH_MAX], cname[128];
    const char *id = realpath(folder, real) ? real : folder;
    const char *base = strrchr(id, '/') && strrchr(id, '/')[1] ? strrchr(id, '/') + 1 : id;
    snprintf(cname, sizeof cname, "folder-%.40s-%08x", base, fnv1a(id));
    lb_status st = load_folder_split(id, base, cname, split, &o, ds, err);
    if (st) return st;
    if ((st = set_own_stats(ds, err))) {
        lb_dataset_free(ds);
        return st;
    }
    if (split == LB_SPLIT_TEST) { /* normalise as the model was trained: with train/'s stats */
        lb_dataset tr;
        lb_error   terr = { 0 };
        lb_status  tst  = load_folder_split(id, base, cname, LB_SPLIT_TRAIN, &o, &tr, &terr);
        if (tst == LB_OK) {
            if ((tst = set_own_stats(&tr, &terr)) == LB_OK) {
                memcpy(ds->mean, tr.mean, sizeof ds->mean);
                memcpy(ds->std, tr.std, sizeof ds->std);
            }
            lb_dataset_free(&tr);
        }
        if (tst != LB_OK && o.log) {
            fprintf(o.log, "lowbit: %s normalised by its own statistics (%s)\n", ds->source,
                    terr.msg);
        }
    }
    return LB_OK;
}

lb_status lb_dataset_load(const char *name, const char *data_dir, lb_split split, lb_dataset *ds,
                          lb_error *err)
{
    return lb_dataset_load_ex(name, data_dir, split, NULL, ds, err);
}

/* MNIST and Fashion-MNIST from IDX files. */
static lb_status load_idx(const char *name, const char *data_dir, lb_split split, lb_dataset *ds,
                          lb_error *err)
{
    memset(ds, 0, sizeof *ds);
    const known_dataset *kd = NULL;
    for (size_t i = 0; name && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0 || (known[i].alias && !strcmp(name, known[i].alias)))
            kd = &known[i];
    if (!kd)
        return lb_errorf(err, LB_ERR_ARG, "unknown dataset '%s' (expected mnist, fashion-mnist, "
                         "fashion, cifar10, mnist-png, folder, or the path of an image folder)",
                         name ? name : "NULL");
    if (split != LB_SPLIT_TRAIN && split != LB_SPLIT_TEST)
        return lb_errorf(err, LB_ERR_ARG, "%s: bad split %d (expected LB_SPLIT_TRAIN or "
                         "LB_SPLIT_TEST)", kd->name, (int)split);

    /* An explicit directory is the user's choice: look there and nowhere else. */
    root_list *roots = calloc(1, sizeof *roots);
    char      *img = malloc(2 * FIND_PATH_MAX), *lab = img ? img + FIND_PATH_MAX : NULL;
    char       dir[FIND_PATH_MAX];
    lb_status  st  = LB_OK;
    if (!roots || !img) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", kd->name);
        goto done;
    }
    if (data_dir) {
        if (strlen(data_dir) >= FIND_PATH_MAX) {
            st = lb_errorf(err, LB_ERR_ARG, "%.64s...: data directory path too long", data_dir);
            goto done;
        }
        snprintf(roots->roots[0], FIND_PATH_MAX, "%s", data_dir);
        roots->n = 1;
    } else {
        default_roots(roots);
    }

    for (int r = 0; r < roots->n; r++) {
        for (int sub = 0; sub < 2; sub++) {
            int len = sub == 0 ? snprintf(dir, sizeof dir, "%s/%s", roots->roots[r], kd->name)
                               : snprintf(dir, sizeof dir, "%s", roots->roots[r]);
            if (len < 0 || (size_t)len >= sizeof dir) continue;
            if (!find_file(dir, image_files[split], img, FIND_PATH_MAX) ||
                !find_file(dir, label_files[split], lab, FIND_PATH_MAX))
                continue;
            st = lb_idx_load(img, lab, ds, err);
            if (st != LB_OK) goto done;
            snprintf(ds->name, sizeof ds->name, "%s", kd->name);
            for (int ch = 0; ch < 3; ch++) {
                ds->mean[ch] = kd->mean;
                ds->std[ch]  = kd->std;
            }
            goto done;
        }
    }

    /* Nothing found: list the roots, cutting long ones and the tail of the list so that the
     * hint always fits in err->msg. */
    static const char hint[] = "; hint: pass --data-dir or set LOWBIT_DATA; Fashion-MNIST: "
                               "apt-get install dataset-fashion-mnist";
    char msg[sizeof err->msg];
    int  used = snprintf(msg, sizeof msg, "%s %s split not found: no %s[.gz] with %s[.gz] in "
                         "<root>/%s or <root>, for roots: ", kd->name,
                         split == LB_SPLIT_TRAIN ? "train" : "test", image_files[split],
                         label_files[split], kd->name);
    const int budget = (int)(sizeof msg - sizeof hint) - 16; /* 16: room for " ... (+N more)" */
    for (int r = 0; r < roots->n; r++) {
        const char *root = roots->roots[r];
        int         len  = (int)strlen(root);
        int         room = budget - used - (r ? 2 : 0);
        if (len > room && r > 0) { /* whole roots only after the first */
            used += snprintf(msg + used, sizeof msg - (size_t)used, " ... (+%d more)",
                             roots->n - r);
            break;
        }
        used += snprintf(msg + used, sizeof msg - (size_t)used, "%s%.*s%s", r ? ", " : "",
                         len > room ? room - 3 : len, root, len > room ? "..." : "");
    }
    st = lb_errorf(err, LB_ERR_IO, "%s%s", msg, hint);
done:
    free(roots);
    free(img);
    return st;
}
