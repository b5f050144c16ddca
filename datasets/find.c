/* find.c: finds a dataset by name on disk and loads it (lb_dataset_load).
 *
 * A dataset name maps to its IDX file names and normalisation constants; the files are looked
 * for under a list of roots (an explicit directory alone, or else $LOWBIT_DATA, the shared
 * dataset folder next to the working directory, the source tree and the executable, and
 * Debian's /usr/share/datasets). When nothing is found the error lists every place tried.
 * It does not download anything, and it never falls back from an explicit data_dir.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/dataset.h"

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

lb_status lb_dataset_load(const char *name, const char *data_dir, lb_split split, lb_dataset *ds,
                          lb_error *err)
{
    memset(ds, 0, sizeof *ds);
    const known_dataset *kd = NULL;
    for (size_t i = 0; name && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0 || (known[i].alias && !strcmp(name, known[i].alias)))
            kd = &known[i];
    if (!kd)
        return lb_errorf(err, LB_ERR_ARG, "unknown dataset '%s' (expected mnist, fashion-mnist "
                         "or fashion)", name ? name : "NULL");
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
