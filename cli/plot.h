/* plot.h: PNG charts drawn by gnuplot's pngcairo terminal (antialiased lines, real fonts,
 * axes, ticks, labels and legends), for the sensitivity, mixed-precision and ablation
 * reports of the `lowbit` command.
 *
 * The caller writes gnuplot commands into a script; lb_plot_render runs `gnuplot` on it.
 * The script is kept next to the PNG (same name, `.gp`), self-contained (data in inline
 * blocks), so a user can restyle a figure and re-run `gnuplot fig.gp` by hand.
 *
 *     lb_plot p;
 *     if (lb_plot_open(&p, "acc.png", "Accuracy against bits", "weight bits", "top-1 (%)", err))
 *         return err->status;
 *     lb_plot_data_begin(&p, "lsq");
 *     fprintf(p.f, "%d %.4f\n", 4, 98.7);
 *     lb_plot_data_end(&p);
 *     fprintf(p.f, "plot $lsq using 1:2 with linespoints title 'LSQ'\n");
 *     return lb_plot_render(&p, err);
 *
 * gnuplot is a program, not a library: when it is missing, render fails with a message
 * saying so (Debian: gnuplot-nox), after the script and every CSV are already written. */
#ifndef LB_PLOT_H
#define LB_PLOT_H

#include <stdio.h>
#include "autograd/status.h"

typedef struct lb_plot {
    FILE *f;             /* the open script; write gnuplot commands here */
    char png[4096];      /* output path */
    char script[4096];   /* png with its extension replaced by .gp */
} lb_plot;

/* Opens PNG_PATH's script and writes the common style: pngcairo 960x600, DejaVu Sans 11,
 * light grid, legend box, the title and axis labels (each may be NULL). */
lb_status lb_plot_open(lb_plot *p, const char *png_path, const char *title, const char *xlabel,
                       const char *ylabel, lb_error *err);
/* An inline data block `$NAME << EOD` ... `EOD` (NAME: letters, digits, underscore). */
void lb_plot_data_begin(lb_plot *p, const char *name);
void lb_plot_data_end(lb_plot *p);
/* Escapes S for a single-quoted gnuplot string (titles, labels: ' doubled, _ and ^ kept
 * literal by the noenhanced setting). */
void lb_plot_quote(FILE *f, const char *s);
/* Closes the script and runs gnuplot on it; fails when gnuplot is missing or reports an
 * error (its stderr is passed through). Closes the script on every path. */
lb_status lb_plot_render(lb_plot *p, lb_error *err);
/* Closes the script without rendering (for error paths). */
void lb_plot_abort(lb_plot *p);

#endif
