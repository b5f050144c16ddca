/* opts.h: the command line parsing shared by the `lowbit` commands (main.c, cmd_mixed.c):
 * --name value, --name=value and flags, positional arguments, typed value checks. */
#ifndef LB_CLI_OPTS_H
#define LB_CLI_OPTS_H

#include <stdbool.h>

typedef struct {
    const char *name;  /* without the leading "--"                            */
    bool        flag;  /* takes no value                                       */
    const char *value; /* set by lb_cli_parse: the value, or "1" for a flag    */
} lb_cli_opt;

#define LB_OPT(name)  { name, false, NULL }
#define LB_FLAG(name) { name, true, NULL }

/* Prints "lowbit CMD: <fmt with arg>" and a pointer to --help on stderr; returns 2. */
int lb_cli_usage(const char *cmd, const char *fmt, const char *arg);
/* Fills opts[] from argv; positional arguments go to pos[] (at most max_pos).
 * Returns 0, 2 on a usage error (reported), or -1 when --help was given. */
int lb_cli_parse(const char *cmd, int argc, char **argv, lb_cli_opt *opts, int n_opts,
                 const char **pos, int max_pos, int *n_pos);
/* The value of option name, or NULL when it was not given. */
const char *lb_cli_get(const lb_cli_opt *opts, int n, const char *name);
/* Whole-string conversions within [lo, hi]; false (out untouched) otherwise. */
bool lb_cli_long(const char *s, long lo, long hi, long *out);
bool lb_cli_float(const char *s, float lo, float hi, float *out);
bool lb_cli_double(const char *s, double lo, double hi, double *out);

#endif
