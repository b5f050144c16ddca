/* folder.c: image-folder datasets root/<class>/<file> (lb_folder_load) and the cache folder.
 *
 * Listing: class folders and files are sorted with strcmp, so the order (and the labels) do
 * not depend on the file system. The listing also gives the cache key (file count, total
 * size, newest mtime). Decoding happens once per folder state: the result goes to a .lbds
 * cache (cache.c) that later loads read instead. Pixels are stored planar (c, h, w) like the
 * IDX and CIFAR-10 loaders. With opts.stream the pixels are then read from the cache file
 * (even right after decoding: the freshly written cache is opened and the decoded copy
 * freed). It does not normalise (find.c sets mean/std) or unpack archives.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/datasets_impl.h"

lb_dataset_opts lb_dataset_opts_default(void)
{
    return (lb_dataset_opts){ .use_cache = true, .stream = true };
}

lb_status lb_cache_dir(const lb_dataset_opts *opts, char *out, size_t out_size, lb_error *err)
{
    const char *env = getenv("LOWBIT_CACHE"), *home = getenv("HOME");
    int         len;
    if (opts && opts->cache_dir && *opts->cache_dir)
        len = snprintf(out, out_size, "%s", opts->cache_dir);
    else if (env && *env)
        len = snprintf(out, out_size, "%s", env);
    else if (home && *home)
        len = snprintf(out, out_size, "%s/.cache/lowbit", home);
    else
        return lb_errorf(err, LB_ERR_IO, "no cache folder: set LOWBIT_CACHE (HOME is not set)");
    if (len < 0 || (size_t)len >= out_size)
        return lb_errorf(err, LB_ERR_ARG, "cache folder path too long");
    return lb__make_dirs(out, err);
}

/* ---------------------------------------------------------------- listing */

typedef struct {
    char   *path;  /* root/class/file */
    int32_t label;
} entry;

typedef struct {
    entry        *e;
    int64_t       n, cap;
    char         *names;     /* n_classes x LB_CLASS_NAME_MAX */
    int           n_classes;
    lb__cache_key key;
} listing;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_image_name(const char *s)
{
    const char *dot = strrchr(s, '.');
    if (!dot || s[0] == '.') return false;
    char ext[8] = { 0 };
    for (int i = 0; i < 7 && dot[1 + i]; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    return !strcmp(ext, "png") || !strcmp(ext, "jpg") || !strcmp(ext, "jpeg");
}

/* Sorted names in dir (not starting with '.'); *out is a malloc'ed array of strdup'ed names. */
static lb_status list_dir(const char *dir, char ***out, int64_t *n_out, lb_error *err)
{
    *out = NULL, *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return lb_errorf(err, LB_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    char  **v = NULL;
    int64_t n = 0, cap = 0;
    struct dirent *e;
    lb_status st = LB_OK;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap       = cap ? 2 * cap : 64;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) { st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory listing", dir); break; }
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name))) {
            st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory listing", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (st) {
        for (int64_t i = 0; i < n; i++) free(v[i]);
        free(v);
        return st;
    }
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v, *n_out = n;
    return LB_OK;
}

static void free_names(char **v, int64_t n)
{
    for (int64_t i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

static void listing_free(listing *l)
{
    for (int64_t i = 0; i < l->n; i++) free(l->e[i].path);
    free(l->e);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t len = strlen(a) + strlen(b) + (c ? strlen(c) + 1 : 0) + 2;
    char  *p   = malloc(len);
    if (p) snprintf(p, len, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "");
    return p;
}

static lb_status list_folder(const char *root, listing *l, lb_error *err)
{
    memset(l, 0, sizeof *l);
    char  **classes = NULL, **files = NULL;
    int64_t n_classes = 0, n_files = 0;
    lb_status st = list_dir(root, &classes, &n_classes, err);
    if (st) return st;
    /* keep only folders */
    int64_t k = 0;
    for (int64_t i = 0; i < n_classes; i++) {
        char       *p = join3(root, classes[i], NULL);
        struct stat sb;
        bool        dir = p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
        free(p);
        if (dir) classes[k++] = classes[i];
        else free(classes[i]);
    }
    n_classes = k;
    if (n_classes == 0) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: no class folders (expected root/<class>/<image>)",
                       root);
        goto done;
    }
    if (n_classes > LB_DATASET_MAX_CLASSES) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: %" PRId64 " class folders (at most %d)", root,
                       n_classes, LB_DATASET_MAX_CLASSES);
        goto done;
    }
    l->names = calloc((size_t)n_classes, LB_CLASS_NAME_MAX);
    if (!l->names) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", root);
        goto done;
    }
    l->n_classes = (int)n_classes;
    for (int64_t c = 0; c < n_classes; c++) {
        if (strlen(classes[c]) >= LB_CLASS_NAME_MAX) {
            st = lb_errorf(err, LB_ERR_FORMAT, "%s/%s: class name longer than %d bytes", root,
                           classes[c], LB_CLASS_NAME_MAX - 1);
            goto done;
        }
        snprintf(l->names + c * LB_CLASS_NAME_MAX, LB_CLASS_NAME_MAX, "%s", classes[c]);
        char *cdir = join3(root, classes[c], NULL);
        if (!cdir) { st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", root); goto done; }
        st = list_dir(cdir, &files, &n_files, err);
        free(cdir);
        if (st) goto done;
        for (int64_t f = 0; f < n_files; f++) {
            if (!is_image_name(files[f])) continue;
            char       *p = join3(root, classes[c], files[f]);
            struct stat sb;
            if (!p) { st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", root); goto done; }
            if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) {
                free(p);
                continue;
            }
            if (l->n == l->cap) {
                int64_t cap = l->cap ? 2 * l->cap : 1024;
                entry  *ne  = realloc(l->e, (size_t)cap * sizeof *ne);
                if (!ne) {
                    free(p);
                    st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", root);
                    goto done;
                }
                l->e = ne, l->cap = cap;
            }
            l->e[l->n++] = (entry){ p, (int32_t)c };
            l->key.n_files++;
            l->key.total_bytes += (uint64_t)sb.st_size;
            const int64_t mt = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
            if (mt > l->key.newest_mtime_ns) l->key.newest_mtime_ns = mt;
        }
        free_names(files, n_files);
        files = NULL, n_files = 0;
    }
    if (l->n == 0)
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: no .png/.jpg/.jpeg images in its %" PRId64
                       " class folders", root, n_classes);
done:
    free_names(files, n_files);
    free_names(classes, n_classes);
    if (st) listing_free(l);
    return st;
}

/* ---------------------------------------------------------------- decoding */

/* Decodes one file to (want_c, H, W) planar pixels in dst; resize when asked. */
static lb_status decode_one(const char *path, int want_c, int H, int W, bool resize,
                            uint8_t *dst, int *c_out, int *h_out, int *w_out, lb_error *err)
{
    uint8_t  *data = NULL, *pix = NULL, *tmp = NULL;
    size_t    size = 0;
    int       c, h, w;
    lb_status st = lb__read_file(path, LB__IMAGE_MAX_FILE, &data, &size, err);
    if (st) return st;
    st = lb__image_decode(path, data, size, want_c, &pix, &c, &h, &w, err);
    free(data);
    if (st) return st;
    if (c_out) *c_out = c, *h_out = h, *w_out = w;
    if (!dst) goto done; /* probing the first image only */
    const uint8_t *src = pix;
    if (h != H || w != W) {
        if (!resize) {
            st = lb_errorf(err, LB_ERR_FORMAT, "%s: image is %dx%d (WxH), expected %dx%d like "
                           "the others (resizing is an option: --resize)", path, w, h, W, H);
            goto done;
        }
        tmp = malloc((size_t)H * W * c);
        if (!tmp) {
            st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory resizing", path);
            goto done;
        }
        lb__image_resize(pix, c, h, w, tmp, H, W);
        src = tmp;
    }
    const size_t hw = (size_t)H * W;
    for (size_t k = 0; k < hw; k++)
        for (int ch = 0; ch < c; ch++) dst[ch * hw + k] = src[k * c + ch];
done:
    free(tmp);
    free(pix);
    return st;
}

lb_status lb_folder_load(const char *root, const char *name, const char *cache_name,
                         const lb_dataset_opts *opts, lb_dataset *ds, lb_error *err)
{
    memset(ds, 0, sizeof *ds);
    const lb_dataset_opts o = opts ? *opts : (lb_dataset_opts){ 0 };
    if (o.channels != 0 && o.channels != 1 && o.channels != 3)
        return lb_errorf(err, LB_ERR_ARG, "%s: channels %d (expected 0, 1 or 3)", root,
                         o.channels);
    if (o.height < 0 || o.width < 0 || o.height > LB__IMAGE_MAX_SIDE ||
        o.width > LB__IMAGE_MAX_SIDE || (o.height == 0) != (o.width == 0))
        return lb_errorf(err, LB_ERR_ARG, "%s: image size %dx%d (expected both 0 or 1..%d)",
                         root, o.width, o.height, LB__IMAGE_MAX_SIDE);
    listing   l;
    lb_status st = list_folder(root, &l, err);
    if (st) return st;
    l.key.opts = (uint32_t)o.channels | (uint32_t)o.resize << 2 | (uint32_t)o.skip_corrupt << 3 |
                 (uint32_t)o.height << 4 | (uint32_t)o.width << 18;
    char cache_path[4600] = "";
    if (o.use_cache && cache_name) {
        char dir[4096];
        lb_error cerr = { 0 };
        if (lb_cache_dir(&o, dir, sizeof dir, &cerr) == LB_OK) {
            snprintf(cache_path, sizeof cache_path, "%s/%s.lbds", dir, cache_name);
            if (lb__cache_read(cache_path, root, &l.key, o.stream, ds, &cerr) == LB_OK) {
                snprintf(ds->name, sizeof ds->name, "%s", name ? name : "");
                listing_free(&l);
                return LB_OK;
            }
            if (cerr.status == LB_ERR_FORMAT && o.log) /* stale or damaged: say why */
                fprintf(o.log, "%s; decoding again\n", cerr.msg);
        } else if (o.log) {
            fprintf(o.log, "lowbit: no decoded cache (%s)\n", cerr.msg);
        }
    }

    /* The first image fixes channels and size unless the options do. */
    int     C = o.channels, H = o.height, W = o.width;
    int64_t first = 0;
    if (!C || !H) {
        for (; first < l.n; first++) {
            int c, h, w;
            lb_error e1 = { 0 };
            st = decode_one(l.e[first].path, C, 0, 0, false, NULL, &c, &h, &w, &e1);
            if (st == LB_OK) {
                if (!C) C = c;
                if (!H) H = h, W = w;
                break;
            }
            if (!(st == LB_ERR_FORMAT && o.skip_corrupt)) {
                *err = e1;
                goto fail;
            }
        }
        if (first == l.n) {
            st = lb_errorf(err, LB_ERR_FORMAT, "%s: none of the %" PRId64 " images could be "
                           "decoded", root, l.n);
            goto fail;
        }
    }
    const size_t chw = (size_t)C * H * W;
    if ((uint64_t)l.n > SIZE_MAX / chw / 2) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: %" PRId64 " images of %zu bytes: too large",
                       root, l.n, chw);
        goto fail;
    }
    ds->images = malloc((size_t)l.n * chw);
    ds->labels = malloc((size_t)l.n * sizeof *ds->labels);
    if (!ds->images || !ds->labels) {
        st = lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory for %" PRId64 " images", root, l.n);
        goto fail;
    }
    int64_t n = 0, step = l.n / 10 > 1000 ? l.n / 10 : 1000;
    for (int64_t i = 0; i < l.n; i++) {
        if (i < first) { ds->n_skipped++; continue; } /* failed while probing */
        lb_error e1 = { 0 };
        st = decode_one(l.e[i].path, C, H, W, o.resize, ds->images + (size_t)n * chw, NULL,
                        NULL, NULL, &e1);
        if (st == LB_ERR_FORMAT && o.skip_corrupt) {
            if (o.log) fprintf(o.log, "skipped: %s\n", e1.msg);
            ds->n_skipped++;
            continue;
        }
        if (st) {
            *err = e1;
            goto fail;
        }
        ds->labels[n++] = l.e[i].label;
        if (o.log && ((i + 1) % step == 0 || i + 1 == l.n))
            fprintf(o.log, "decoding %s: %" PRId64 "/%" PRId64 " images\n", root, i + 1, l.n),
                fflush(o.log);
    }
    if (n == 0) {
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: all %" PRId64 " images are corrupt", root, l.n);
        goto fail;
    }
    ds->n = n, ds->c = C, ds->h = H, ds->w = W;
    ds->n_classes   = l.n_classes;
    ds->class_names = l.names;
    l.names         = NULL;
    for (int ch = 0; ch < 3; ch++) ds->mean[ch] = 0.0f, ds->std[ch] = 1.0f;
    snprintf(ds->name, sizeof ds->name, "%s", name ? name : "");
    snprintf(ds->source, sizeof ds->source, "%s", root);
    if (ds->n_skipped && o.log)
        fprintf(o.log, "%s: %" PRId64 " corrupt images skipped\n", root, ds->n_skipped);
    if (cache_path[0]) {
        lb_error cerr = { 0 };
        lb_dataset sds;
        if (lb__cache_write(cache_path, ds, &l.key, &cerr)) {
            if (o.log) fprintf(o.log, "lowbit: decoded cache not written (%s)\n", cerr.msg);
        } else if (o.stream) { /* from now on like a later load: pixels from the cache file */
            if (lb__cache_read(cache_path, root, &l.key, true, &sds, &cerr) == LB_OK) {
                snprintf(sds.name, sizeof sds.name, "%s", ds->name);
                memcpy(sds.mean, ds->mean, sizeof sds.mean);
                memcpy(sds.std, ds->std, sizeof sds.std);
                sds.from_cache = false; /* decoded by this load */
                lb_dataset_free(ds);
                *ds = sds;
            } else if (o.log) {
                fprintf(o.log, "lowbit: %s; keeping the decoded images in memory\n", cerr.msg);
            }
        }
    }
    listing_free(&l);
    return LB_OK;
fail:
    listing_free(&l);
    lb_dataset_free(ds);
    memset(ds, 0, sizeof *ds);
    return st;
}
