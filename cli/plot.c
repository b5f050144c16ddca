/* plot.c: see plot.h. */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <errno.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

void lb_plot_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; s && *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s == '\n') { fputc(' ', f); continue; }
        fputc(*s, f);
    }
    fputc('\'', f);
}

lb_status lb_plot_open(lb_plot *p, const char *png_path, const char *title, const char *xlabel,
                       const char *ylabel, lb_error *err) {
    memset(p, 0, sizeof *p);
    size_t n = strlen(png_path);
    if (n < 5 || n + 1 > sizeof p->png || strcmp(png_path + n - 4, ".png"))
        return lb_errorf(err, LB_ERR_ARG, "%s: a plot's file name must end in .png", png_path);
    memcpy(p->png, png_path, n + 1);
    memcpy(p->script, png_path, n - 4);
    memcpy(p->script + n - 4, ".gp", 4);
    p->f = fopen(p->script, "w");
    if (!p->f) return lb_errorf(err, LB_ERR_IO, "%s: %s", p->script, strerror(errno));
    FILE *f = p->f;
    fprintf(f, "# written by lowbit; re-render with: gnuplot %s\n", p->script);
    fprintf(f, "set terminal pngcairo size 960,600 font 'DejaVu Sans,11' linewidth 1.5\n");
    fprintf(f, "set output ");
    lb_plot_quote(f, p->png);
    fprintf(f, "\nset encoding utf8\nset termoption noenhanced\n"
               "set grid lc rgb '#d8d8d8' lw 0.7\nset border 3 lw 1\nset tics nomirror out\n"
               "set key box opaque samplen 2 spacing 1.1\n"
               "set style data linespoints\nset pointsize 1.2\n");
    if (title) { fprintf(f, "set title "); lb_plot_quote(f, title); fputc('\n', f); }
    if (xlabel) { fprintf(f, "set xlabel "); lb_plot_quote(f, xlabel); fputc('\n', f); }
    if (ylabel) { fprintf(f, "set ylabel "); lb_plot_quote(f, ylabel); fputc('\n', f); }
    return LB_OK;
}

void lb_plot_data_begin(lb_plot *p, const char *name) {
    fprintf(p->f, "$%s << EOD\n", name);
}

void lb_plot_data_end(lb_plot *p) {
    fprintf(p->f, "EOD\n");
}

void lb_plot_abort(lb_plot *p) {
    if (p->f) fclose(p->f);
    p->f = NULL;
}

lb_status lb_plot_render(lb_plot *p, lb_error *err) {
    int bad = ferror(p->f);
    if (fclose(p->f) || bad) {
        p->f = NULL;
        return lb_errorf(err, LB_ERR_IO, "%s: write failed", p->script);
    }
    p->f = NULL;
    char *argv[] = { "gnuplot", p->script, NULL };
    pid_t pid;
    int rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (rc)
        return lb_errorf(err, LB_ERR_IO,
                         "%s: cannot run gnuplot (%s); install it (Debian: gnuplot-nox) and run "
                         "`gnuplot %s`", p->png, strerror(rc), p->script);
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return lb_errorf(err, LB_ERR_IO, "gnuplot: %s", strerror(errno));
    if (!WIFEXITED(ws) || WEXITSTATUS(ws))
        return lb_errorf(err, LB_ERR_IO, "%s: gnuplot failed on %s (%s %d)", p->png, p->script,
                         WIFEXITED(ws) ? "exit status" : "signal",
                         WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
    return LB_OK;
}
