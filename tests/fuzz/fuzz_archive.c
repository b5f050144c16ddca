/* fuzz_archive.c: libFuzzer target for dataset archive unpacking (datasets/unpack.c,
 * lb_archive_unpack): a tar archive, plain or compressed (libarchive's filters).
 *
 * The input is the archive (an in-memory file). It is unpacked into <base>/out, where <base>
 * is a temporary folder made once per process; <base>/out is removed after every run. A
 * decompression bomb must not fill the disk: the process's file size limit is 16 MiB
 * (RLIMIT_FSIZE, SIGXFSZ ignored), so a larger entry is a write error.
 * Oracles: a failure has an error status and a message, and leaves <base> empty (no dest, no
 * temporary folder); a success leaves exactly <base>/out, holding the stamp file and only
 * regular files and folders (no link, nothing else); in both cases nothing else appears in
 * <base> (entries cannot escape dest).
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/datasets_impl.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[64], dest[96];

static void cleanup(void)
{
    lb__remove_tree(base);
}

/* Entries of dir other than . and ..; only_name, when non-NULL, is the one allowed. */
static int entries(const char *dir, const char *only_name)
{
    DIR *d = opendir(dir);
    if (!d) __builtin_trap();
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (only_name && strcmp(e->d_name, only_name)) __builtin_trap();
        n++;
    }
    closedir(d);
    return n;
}

/* Every entry under path is a folder or a regular file (lstat: links are not followed). */
static void check_tree(const char *path, int depth)
{
    struct stat sb;
    if (lstat(path, &sb) != 0 || depth > 4096) __builtin_trap();
    if (S_ISREG(sb.st_mode)) return;
    if (!S_ISDIR(sb.st_mode)) __builtin_trap();
    DIR *d = opendir(path);
    if (!d) __builtin_trap();
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        const size_t len = strlen(path) + strlen(e->d_name) + 2;
        char        *sub = malloc(len);
        if (!sub) __builtin_trap();
        snprintf(sub, len, "%s/%s", path, e->d_name);
        check_tree(sub, depth + 1);
        free(sub);
    }
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base[0]) {
        snprintf(base, sizeof base, "/tmp/lowbit-fuzz-archive-XXXXXX");
        if (!mkdtemp(base)) __builtin_trap();
        snprintf(dest, sizeof dest, "%s/out", base);
        struct rlimit rl = { 16 << 20, 16 << 20 };
        getrlimit(RLIMIT_FSIZE, &rl);
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (16 << 20)) rl.rlim_cur = 16 << 20;
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) __builtin_trap();
        signal(SIGXFSZ, SIG_IGN);
        atexit(cleanup);
    }
    const char *path = fuzz_file(0, data, size);
    lb_error    err  = { 0 };
    const lb_status st = lb_archive_unpack(path, dest, NULL, &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, NULL);
        if (!strstr(err.msg, path) && !strstr(err.msg, base)) __builtin_trap();
        if (entries(base, NULL) != 0) __builtin_trap();
        return 0;
    }
    if (entries(base, "out") != 1) __builtin_trap();
    char        stamp[160];
    struct stat sb;
    snprintf(stamp, sizeof stamp, "%s/.lowbit-unpacked", dest);
    if (lstat(stamp, &sb) != 0 || !S_ISREG(sb.st_mode)) __builtin_trap();
    check_tree(dest, 0);
    lb__remove_tree(dest);
    if (entries(base, NULL) != 0) __builtin_trap();
    return 0;
}
