/* opts.c: see opts.h. */
#include "cli/opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lb_cli_usage(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "lowbit %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see lowbit %s --help)\n", cmd);
    return 2;
}

int lb_cli_parse(const char *cmd, int argc, char **argv, lb_cli_opt *opts, int n_opts,
                 const char **pos, int max_pos, int *n_pos)
{
    *n_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        if (strncmp(a, "--", 2) != 0) {
            if (*n_pos == max_pos) return lb_cli_usage(cmd, "unexpected argument '%s'", a);
            pos[(*n_pos)++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        const size_t len = eq ? (size_t)(eq - name) : strlen(name);
        lb_cli_opt *o = NULL;
        for (int k = 0; k < n_opts; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len)) o = &opts[k];
        if (!o) return lb_cli_usage(cmd, "unknown option '%s'", a);
        if (o->flag) {
            if (eq) return lb_cli_usage(cmd, "option '%s' takes no value", a);
            o->value = "1";
        } else if (eq) {
            o->value = eq + 1;
        } else {
            if (i + 1 >= argc) return lb_cli_usage(cmd, "option '%s' needs a value", a);
            o->value = argv[++i];
        }
    }
    return 0;
}

const char *lb_cli_get(const lb_cli_opt *opts, int n, const char *name)
{
    for (int k = 0; k < n; k++)
        if (!strcmp(opts[k].name, name)) return opts[k].value;
    return NULL;
}

bool lb_cli_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool lb_cli_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    const float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

bool lb_cli_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}
