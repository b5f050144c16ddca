/* unpack.c: unpacking a dataset archive (tar, gzip'ed or not) once into a cache folder.
 *
 * libarchive reads the archive (formats and compression filters), but every file is written
 * by this code with open(O_CREAT|O_EXCL|O_NOFOLLOW) under a fresh temporary folder, after its
 * path was checked: no absolute paths, no ".." components, only regular files and folders.
 * A stamp with the archive's size and mtime is written last and the folder is renamed into
 * place, so a half-done unpack is never used; the temporary folders of unpacks whose process is
 * gone are removed. It does not decode images (folder.c does).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "datasets/datasets_impl.h"

#define STAMP_NAME ".lowbit-unpacked"

static bool stamp_matches(const char *dest, const char *want)
{
    char path[4200], have[256] = "";
    snprintf(path, sizeof path, "%s/" STAMP_NAME, dest);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(have, 1, sizeof have - 1, f);
    fclose(f);
    have[n] = 0;
    return strcmp(have, want) == 0;
}

/* Removes dest.tmp-<pid> folders left by interrupted unpacks of processes that are gone. */
static void remove_stale_temps(const char *dest)
{
    char        parent[4200], prefix[512];
    const char *slash = strrchr(dest, '/');
    const char *base  = slash ? slash + 1 : dest;
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - dest) : 1, slash ? dest : ".");
    if (slash == dest) snprintf(parent, sizeof parent, "/");
    if (snprintf(prefix, sizeof prefix, "%s.tmp-", base) >= (int)sizeof prefix) return;
    DIR *d = opendir(parent);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char *end;
        long  pid = strtol(e->d_name + strlen(prefix), &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* still running (or unknown) */
        char path[8400];
        snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        lb__remove_tree(path);
    }
    closedir(d);
}

static struct archive *open_archive(const char *path, lb_error *err)
{
    struct archive *a = archive_read_new();
    if (!a) {
        lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory in libarchive", path);
        return NULL;
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        lb_errorf(err, errno == ENOENT ? LB_ERR_IO : LB_ERR_FORMAT, "%s: cannot open as a tar "
                  "archive: %s", path, archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* Checks an entry's path; writes the cleaned relative path (no "./", no empty components) to
 * out. false for absolute paths and ".." components. */
static bool clean_path(const char *p, char *out, size_t out_size)
{
    if (!p || !*p || p[0] == '/') return false;
    size_t o = 0;
    while (*p) {
        const char *s   = strchr(p, '/');
        size_t      len = s ? (size_t)(s - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return false;
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (o + len + 2 > out_size) return false;
            if (o) out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
        }
        p += len;
        if (*p == '/') p++;
    }
    out[o] = 0;
    return o > 0;
}

/* mkdir -p of rel's folders (all of rel when whole) under base, which exists. */
static lb_status make_parents(const char *base, const char *rel, bool whole, lb_error *err)
{
    char path[4200];
    int  blen = snprintf(path, sizeof path, "%s/%s", base, rel);
    if (blen < 0 || (size_t)blen >= sizeof path)
        return lb_errorf(err, LB_ERR_FORMAT, "%s: path too long", rel);
    for (char *s = path + strlen(base) + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        *s = '/';
    }
    if (whole && mkdir(path, 0755) != 0 && errno != EEXIST)
        return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return LB_OK;
}

/* Counts regular files, for the progress line. */
static lb_status count_files(const char *archive, int64_t *n, lb_error *err)
{
    *n = 0;
    struct archive *a = open_archive(archive, err);
    if (!a) return err ? err->status : LB_ERR_FORMAT;
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)
        if (archive_entry_filetype(e) == AE_IFREG) (*n)++;
    lb_status st = LB_OK;
    if (r != ARCHIVE_EOF)
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: damaged archive: %s", archive,
                       archive_error_string(a));
    archive_read_free(a);
    return st;
}

static lb_status extract(const char *archive, const char *tmp, const char *name, int64_t total,
                         FILE *log, lb_error *err)
{
    struct archive *a = open_archive(archive, err);
    if (!a) return err ? err->status : LB_ERR_FORMAT;
    struct archive_entry *e;
    lb_status st = LB_OK;
    int64_t   done = 0, step = total / 10 > 1000 ? total / 10 : 1000;
    char      rel[4096], path[8200];
    uint8_t  *buf = malloc(1 << 16);
    int r = ARCHIVE_FATAL;
    if (!buf) {
        archive_read_free(a);
        return lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", archive);
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        const char  *p    = archive_entry_pathname(e);
        const mode_t type = archive_entry_filetype(e);
        if (!clean_path(p, rel, sizeof rel)) {
            st = lb_errorf(err, LB_ERR_FORMAT, "%s: unsafe entry '%s' (absolute path or '..'); "
                           "archive rejected", archive, p ? p : "(no name)");
            break;
        }
        if (archive_entry_hardlink(e) || archive_entry_symlink(e) ||
            (type != AE_IFREG && type != AE_IFDIR)) {
            st = lb_errorf(err, LB_ERR_FORMAT, "%s: entry '%s' is a link or special file; "
                           "archive rejected (only files and folders are accepted)", archive, p);
            break;
        }
        if ((st = make_parents(tmp, rel, type == AE_IFDIR, err))) break;
        if (type == AE_IFDIR) continue;
        snprintf(path, sizeof path, "%s/%s", tmp, rel);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
        if (fd < 0) {
            st = lb_errorf(err, errno == EEXIST ? LB_ERR_FORMAT : LB_ERR_IO, "%s: cannot create "
                           "%s: %s", archive, path, strerror(errno));
            break;
        }
        la_ssize_t got;
        while ((got = archive_read_data(a, buf, 1 << 16)) > 0) {
            if (write(fd, buf, (size_t)got) != got) {
                st = lb_errorf(err, LB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
                break;
            }
        }
        if (close(fd) != 0 && !st)
            st = lb_errorf(err, LB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        if (!st && got < 0)
            st = lb_errorf(err, LB_ERR_FORMAT, "%s: damaged archive at '%s': %s", archive, p,
                           archive_error_string(a));
        if (st) break;
        done++;
        if (log && (done % step == 0 || done == total)) {
            fprintf(log, "unpacking %s: %" PRId64 "/%" PRId64 " files\n", name, done, total);
            fflush(log);
        }
    }
    if (!st && r != ARCHIVE_EOF)
        st = lb_errorf(err, LB_ERR_FORMAT, "%s: damaged archive: %s", archive,
                       archive_error_string(a));
    archive_read_free(a);
    free(buf);
    return st;
}

lb_status lb_archive_unpack(const char *archive, const char *dest, FILE *log, lb_error *err)
{
    struct stat sb;
    if (stat(archive, &sb) != 0)
        return lb_errorf(err, LB_ERR_IO, "%s: cannot open: %s", archive, strerror(errno));
    char want[256];
    snprintf(want, sizeof want, "size=%lld mtime=%lld.%09ld\n", (long long)sb.st_size,
             (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    if (stamp_matches(dest, want)) return LB_OK;

    const char *name = strrchr(archive, '/') ? strrchr(archive, '/') + 1 : archive;
    char        tmp[4200], old[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dest, (long)getpid()) >= (int)sizeof tmp)
        return lb_errorf(err, LB_ERR_ARG, "%.64s...: path too long", dest);
    snprintf(old, sizeof old, "%s.old-%ld", dest, (long)getpid());
    lb__remove_tree(tmp); /* a leftover of an interrupted run with our pid */
    remove_stale_temps(dest);
    const char *slash = strrchr(dest, '/');
    if (slash && slash != dest) { /* the parent of dest */
        char parent[4200];
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - dest), dest);
        lb_status pst = lb__make_dirs(parent, err);
        if (pst) return pst;
    }
    if (mkdir(tmp, 0755) != 0)
        return lb_errorf(err, LB_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int64_t   total = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lb_status st = count_files(archive, &total, err);
    if (!st && log) fprintf(log, "unpacking %s into %s (%" PRId64 " files, once)\n", name, dest,
                            total);
    if (!st) st = extract(archive, tmp, name, total, log, err);
    if (!st) { /* the stamp last: only a complete folder has it */
        char  sp[4300];
        snprintf(sp, sizeof sp, "%s/" STAMP_NAME, tmp);
        FILE *f  = fopen(sp, "w");
        int   ok = f && fputs(want, f) >= 0;
        if (f) ok &= fclose(f) == 0;
        if (!ok) st = lb_errorf(err, LB_ERR_IO, "%s: cannot write: %s", sp, strerror(errno));
    }
    if (!st) {
        struct stat db;
        if (lstat(dest, &db) == 0) { /* outdated (or another process just finished) */
            if (stamp_matches(dest, want)) {
                lb__remove_tree(tmp);
                return LB_OK;
            }
            if (rename(dest, old) == 0) lb__remove_tree(old);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (log)
            fprintf(log, "unpacked %s in %.2f s\n", name,
                    (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        if (rename(tmp, dest) != 0) {
            if (stamp_matches(dest, want)) { /* lost a race to an identical unpack */
                lb__remove_tree(tmp);
                return LB_OK;
            }
            st = lb_errorf(err, LB_ERR_IO, "%s: cannot rename %s into place: %s", dest, tmp,
                           strerror(errno));
        }
    }
    if (st) lb__remove_tree(tmp);
    return st;
}
