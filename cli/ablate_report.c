/* ablate_report.c: what `lowbit ablate` makes of finished runs: results.csv, results.md (mean
 * ± standard deviation over seeds), and the plots (accuracy against bits per quantizer, the
 * size/accuracy Pareto front, PTQ against QAT) through cli/plot.h. It reads only the runs'
 * result.json files, so runs made on other machines merge by copying their folders in. */
#define _POSIX_C_SOURCE 200809L
#include "ablate.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/plot.h"

void lb_abl_mean_std(const double *x, int n, double *mean, double *std)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = n > 0 ? s / n : 0.0;
    double v = 0.0;
    for (int i = 0; i < n; i++) v += (x[i] - *mean) * (x[i] - *mean);
    *std = n > 1 ? sqrt(v / (n - 1)) : 0.0;
}

int lb_abl_pareto(const double *size, const double *acc, int n, bool *on_front)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        bool dominated = false;
        for (int j = 0; j < n && !dominated; j++)
            dominated = j != i && size[j] <= size[i] && acc[j] >= acc[i] &&
                        (size[j] < size[i] || acc[j] > acc[i]);
        on_front[i] = !dominated;
        count += !dominated;
    }
    return count;
}

/* ---- groups: one configuration, its runs over seeds ---------------------------------- */

typedef struct {
    const lb_abl_run *r;   /* the first run of the group (seed aside, all are equal) */
    int    n_runs, n_ok;
    double mean, std;      /* top-1 in percent                                       */
    double kib, fp32_kib, secs;
} group;

static bool same_config(const lb_abl_run *a, const lb_abl_run *b)
{
    return a->mode == b->mode && a->model == b->model && a->data == b->data &&
           a->quant == b->quant && a->gran == b->gran && a->wbits == b->wbits &&
           a->abits == b->abits;
}

static const char *qname(const lb_abl_config *c, const lb_abl_run *r)
{
    if (r->mode == LB_ABL_FP32) return "-";
    if (r->quant < 0) return "fp32 fine-tune"; /* the control: no quantizer */
    return r->mode == LB_ABL_QAT ? c->quant[r->quant].name : c->ptq_quant[r->quant].name;
}

static const char *mode_name(lb_abl_mode m)
{
    return m == LB_ABL_FP32 ? "fp32" : m == LB_ABL_QAT ? "qat" : "ptq";
}

static void bits_str(int b, char *buf, size_t cap)
{
    if (b) snprintf(buf, cap, "%d", b);
    else snprintf(buf, cap, "fp32");
}

static int make_groups(const lb_abl_config *c, const lb_abl_grid *g, const lb_abl_result *res,
                       group *gr)
{
    int n = 0;
    double *acc = malloc((size_t)(g->n ? g->n : 1) * sizeof *acc);
    if (!acc) return -1;
    for (int i = 0; i < g->n; i++) {
        int k = 0;
        while (k < n && !same_config(gr[k].r, &g->runs[i])) k++;
        if (k < n) continue;
        group *G = &gr[n++];
        memset(G, 0, sizeof *G);
        G->r = &g->runs[i];
        int m = 0;
        double secs = 0.0;
        for (int j = i; j < g->n; j++) {
            if (!same_config(&g->runs[j], G->r)) continue;
            G->n_runs++;
            if (!res[j].ok) continue;
            acc[m++] = 100.0 * res[j].test_acc;
            G->kib = res[j].weight_bytes / 1024.0;
            G->fp32_kib = res[j].fp32_weight_bytes / 1024.0;
            secs += res[j].seconds;
        }
        G->n_ok = m;
        lb_abl_mean_std(acc, m, &G->mean, &G->std);
        G->secs = m ? secs / m : 0.0;
    }
    (void)c;
    free(acc);
    return n;
}

/* The FP32 base group of a (model, data). */
static const group *base_of(const group *gr, int n, int model, int data)
{
    for (int k = 0; k < n; k++)
        if (gr[k].r->mode == LB_ABL_FP32 && gr[k].r->model == model && gr[k].r->data == data)
            return &gr[k];
    return NULL;
}

/* The FP32 fine-tune control group of a (model, data), or NULL. */
static const group *finetune_of(const group *gr, int n, int model, int data)
{
    for (int k = 0; k < n; k++)
        if (gr[k].r->mode == LB_ABL_QAT && gr[k].r->quant < 0 && gr[k].r->model == model &&
            gr[k].r->data == data)
            return &gr[k];
    return NULL;
}

/* ---- files --------------------------------------------------------------------------- */

/* Closes the text built in memory by f and writes it to path atomically. */
static lb_status finish_memstream(FILE *f, char **buf, size_t *len, const char *path,
                                  lb_error *err)
{
    const int bad = ferror(f);
    lb_status st = fclose(f) || bad
                       ? lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path)
                       : lb_abl_write_atomic(path, *buf, *len, err);
    free(*buf);
    return st;
}

static lb_status write_csv(const lb_abl_config *c, const lb_abl_grid *g, const lb_abl_result *res,
                           lb_error *err)
{
    char path[1200], *buf = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/results.csv", c->out);
    FILE *f = open_memstream(&buf, &len); /* written out at once, atomically */
    if (!f) return lb_errorf(err, LB_ERR_NOMEM, "%s: %s", path, strerror(errno));
    fprintf(f, "model,data,mode,quantizer,gran,wbits,abits,seed,spec,status,test_acc,"
               "weight_bytes,fp32_weight_bytes,seconds,dir\n");
    for (int i = 0; i < g->n; i++) {
        const lb_abl_run *r = &g->runs[i];
        char wb[8], ab[8];
        bits_str(r->wbits, wb, sizeof wb);
        bits_str(r->abits, ab, sizeof ab);
        fprintf(f, "%s,%s,%s,%s,%s,%s,%s,%ld,\"%s\",%s,", c->models[r->model], c->data[r->data],
                mode_name(r->mode), qname(c, r), r->gran >= 0 ? c->gran[r->gran] : "-", wb, ab,
                r->seed, r->spec, res[i].ok ? "ok" : "missing");
        if (res[i].ok)
            fprintf(f, "%.6f,%.0f,%.0f,%.3f,", res[i].test_acc, res[i].weight_bytes,
                    res[i].fp32_weight_bytes, res[i].seconds);
        else
            fprintf(f, ",,,,");
        fprintf(f, "%s\n", r->dir);
    }
    return finish_memstream(f, &buf, &len, path, err);
}

static void cell(FILE *f, const group *G)
{
    if (!G || G->n_ok == 0) fprintf(f, " – |");
    else if (G->n_ok > 1) fprintf(f, " %.2f ± %.2f |", G->mean, G->std);
    else fprintf(f, " %.2f |", G->mean);
}

static void wa_label(const lb_abl_run *r, char *buf, size_t cap)
{
    char wb[8], ab[8];
    if (r->wbits == 0 && r->abits == 0) { snprintf(buf, cap, "FP32"); return; }
    snprintf(wb, sizeof wb, r->wbits ? "%d" : "32", r->wbits);
    snprintf(ab, sizeof ab, r->abits ? "%d" : "32", r->abits);
    snprintf(buf, cap, "W%sA%s", wb, ab);
}

static int wa_cmp(int w1, int a1, int w2, int a2)
{
    const int x1 = w1 ? w1 : 32, x2 = w2 ? w2 : 32, y1 = a1 ? a1 : 32, y2 = a2 ? a2 : 32;
    return x1 != x2 ? x2 - x1 : y2 - y1; /* wide first */
}

static void write_md_block(FILE *f, const lb_abl_config *c, const group *gr, int n, int m, int d)
{
    const group *B = base_of(gr, n, m, d);
    fprintf(f, "## %s on %s\n\n", c->models[m], c->data[d]);
    if (B && B->n_ok)
        fprintf(f, "FP32 base: **%.2f ± %.2f %%** top-1 over %d seed%s, weights %.1f KiB.\n\n",
                B->mean, B->std, B->n_ok, B->n_ok == 1 ? "" : "s", B->kib);
    const group *T = finetune_of(gr, n, m, d);
    if (T && T->n_ok)
        fprintf(f, "FP32 base fine-tuned with the QAT schedule, unquantized (the control for "
                   "the QAT rows): **%.2f ± %.2f %%**.\n\n", T->mean, T->std);
    /* the distinct (w, a) columns, wide first */
    int cw[64], ca[64], nc = 0;
    for (int k = 0; k < n; k++) {
        const lb_abl_run *r = gr[k].r;
        if (r->model != m || r->data != d || r->mode == LB_ABL_FP32 || r->gran < 0) continue;
        int j = 0;
        while (j < nc && !(cw[j] == r->wbits && ca[j] == r->abits)) j++;
        if (j < nc || nc == 64) continue;
        int pos = nc++;
        while (pos > 0 && wa_cmp(r->wbits, r->abits, cw[pos - 1], ca[pos - 1]) < 0) {
            cw[pos] = cw[pos - 1];
            ca[pos] = ca[pos - 1];
            pos--;
        }
        cw[pos] = r->wbits;
        ca[pos] = r->abits;
    }
    fprintf(f, "Top-1 test accuracy (%%), mean ± std over seeds:\n\n| mode | quantizer | gran |");
    for (int j = 0; j < nc; j++) {
        lb_abl_run t = { .wbits = cw[j], .abits = ca[j] };
        char lab[24];
        wa_label(&t, lab, sizeof lab);
        fprintf(f, " %s |", lab);
    }
    fprintf(f, "\n|---|---|---|");
    for (int j = 0; j < nc; j++) fprintf(f, "---|");
    fprintf(f, "\n");
    /* one row per (mode, quantizer, gran), in grid order */
    for (int k = 0; k < n; k++) {
        const lb_abl_run *r = gr[k].r;
        if (r->model != m || r->data != d || r->mode == LB_ABL_FP32 || r->gran < 0) continue;
        bool first = true;
        for (int k2 = 0; k2 < k && first; k2++) {
            const lb_abl_run *q = gr[k2].r;
            first = !(q->model == m && q->data == d && q->mode == r->mode &&
                      q->quant == r->quant && q->gran == r->gran);
        }
        if (!first) continue;
        fprintf(f, "| %s | %s | %s |", mode_name(r->mode), qname(c, r), c->gran[r->gran]);
        for (int j = 0; j < nc; j++) {
            const group *G = NULL;
            for (int k2 = 0; k2 < n && !G; k2++) {
                const lb_abl_run *q = gr[k2].r;
                if (q->model == m && q->data == d && q->mode == r->mode && q->quant == r->quant &&
                    q->wbits == cw[j] && q->abits == ca[j] && (q->gran == r->gran || q->wbits == 0))
                    G = &gr[k2];
            }
            cell(f, G);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nEvery configuration (Δ: difference to the FP32 base's mean, in points):\n\n"
               "| mode | quantizer | gran | bits | top-1 %% | Δ | seeds | weights KiB | "
               "run s |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < n; k++) {
        const group *G = &gr[k];
        const lb_abl_run *r = G->r;
        if (r->model != m || r->data != d) continue;
        char lab[24];
        wa_label(r, lab, sizeof lab);
        fprintf(f, "| %s | %s | %s | %s |", mode_name(r->mode), qname(c, r),
                r->gran >= 0 && r->wbits ? c->gran[r->gran] : "-", lab);
        cell(f, G);
        if (G->n_ok && B && B->n_ok && r->mode != LB_ABL_FP32)
            fprintf(f, " %+.2f |", G->mean - B->mean);
        else
            fprintf(f, " |");
        if (G->n_ok) fprintf(f, " %d/%d | %.1f | %.0f |\n", G->n_ok, G->n_runs, G->kib, G->secs);
        else fprintf(f, " 0/%d | – | – |\n", G->n_runs);
    }
    fprintf(f, "\n");
}

/* The last non-empty line of a run's log.txt (why it failed), or "" when there is none. */
static void last_log_line(const char *dir, char *buf, size_t cap)
{
    char path[2200], line[1024];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] && snprintf(buf, cap, "%s", line) < 0) buf[0] = 0;
    }
    fclose(f);
}

static lb_status write_md(const lb_abl_config *c, const lb_abl_grid *g, const group *gr, int n,
                          const lb_abl_result *res, int n_ok, double secs, lb_error *err)
{
    char path[1200], *buf = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/results.md", c->out);
    FILE *f = open_memstream(&buf, &len); /* written out at once, atomically */
    if (!f) return lb_errorf(err, LB_ERR_NOMEM, "%s: %s", path, strerror(errno));
    fprintf(f, "# Ablation: %s\n\n%d runs, %d with a result; the runs took %.1f min together "
               "(sum of each run's own time).\n\n", c->path, g->n, n_ok, secs / 60.0);
    for (int m = 0; m < c->n_models; m++)
        for (int d = 0; d < c->n_data; d++) write_md_block(f, c, gr, n, m, d);
    if (n_ok < g->n) {
        fprintf(f, "Runs without a result (left out of the means; the last line of their "
                   "log.txt):\n\n");
        for (int i = 0; i < g->n; i++) {
            if (res[i].ok) continue;
            char why[300];
            last_log_line(g->runs[i].dir, why, sizeof why);
            fprintf(f, "- `%s`: %s\n", g->runs[i].dir, why[0] ? why : "not run yet");
        }
        fprintf(f, "\n");
    }
    if (g->n_notes) {
        fprintf(f, "Grid notes:\n\n");
        for (int i = 0; i < g->n_notes; i++) fprintf(f, "- %s\n", g->notes[i]);
        fprintf(f, "\n");
    }
    return finish_memstream(f, &buf, &len, path, err);
}

/* ---- plots --------------------------------------------------------------------------- */

static const char *const palette[] = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                       "#9467bd", "#8c564b", "#e377c2", "#17becf" };

/* Index of a quantizer name among both lists, so QAT and PTQ lines of one quantizer share a
 * colour. */
static int color_of(const lb_abl_config *c, const char *name)
{
    for (int i = 0; i < c->n_quant; i++)
        if (!strcmp(c->quant[i].name, name)) return i % 8;
    for (int i = 0; i < c->n_ptq_quant; i++)
        if (!strcmp(c->ptq_quant[i].name, name)) return (c->n_quant + i) % 8;
    return 0;
}

/* Same line of an acc-vs-bits plot: mode, quantizer, gran, and abits when crossed. */
static bool same_line(const lb_abl_config *c, const lb_abl_run *a, const lb_abl_run *b)
{
    return a->mode == b->mode && a->quant == b->quant && a->gran == b->gran &&
           (c->abits_same || a->abits == b->abits);
}

static void line_title(const lb_abl_config *c, const lb_abl_run *r, bool with_mode, char *buf,
                       size_t cap)
{
    int len = snprintf(buf, cap, "%s%s", with_mode ? (r->mode == LB_ABL_QAT ? "QAT " : "PTQ ") : "",
                       qname(c, r));
    if (c->n_gran > 1) len += snprintf(buf + len, cap - (size_t)len, " %s", c->gran[r->gran]);
    if (!c->abits_same) {
        if (r->abits) snprintf(buf + len, cap - (size_t)len, ", A%d", r->abits);
        else snprintf(buf + len, cap - (size_t)len, ", A fp32");
    }
}

/* The y axis of an accuracy plot: from a little below the lowest point within CLIP_POINTS of
 * the FP32 base (or its error bar) up to 100. Points further down (a collapsed run) would
 * squash the interesting range into a few pixels: they are drawn on the bottom edge with a
 * down-pointing marker and their value printed. Without a base, gnuplot autoscales. */
#define CLIP_POINTS 12.0

typedef struct {
    bool   on;          /* a clamp applies */
    double lo, cutoff;  /* axis minimum; means below cutoff are off-scale */
    double hi;          /* axis maximum: a little above the highest point, at most 100 */
} yaxis;

static yaxis y_axis(const group *B, const double *mean, const double *std, int n)
{
    yaxis y = { false, 0.0, 0.0, 100.0 };
    if (!B || B->n_ok == 0) return y;
    y.on = true;
    y.cutoff = B->mean - CLIP_POINTS;
    double lo = B->mean - B->std, hi = B->mean + B->std;
    for (int i = 0; i < n; i++) {
        if (mean[i] >= y.cutoff && mean[i] - std[i] < lo) lo = mean[i] - std[i];
        if (mean[i] + std[i] > hi) hi = mean[i] + std[i];
    }
    y.lo = floor(lo - 0.08 * (hi - lo) - 0.2);
    if (y.lo < 0) y.lo = 0;
    y.hi = ceil(hi + 0.08 * (hi - lo) + 0.2);
    if (y.hi > 100) y.hi = 100;
    return y;
}

static double y_clamped(const yaxis *y, double v)
{
    return y->on && v < y->cutoff ? y->lo + 0.025 * (y->hi - y->lo) : v;
}

static void y_range(FILE *f, const yaxis *y)
{
    if (y->on) fprintf(f, "set yrange [%g:%g]\n", y->lo, y->hi);
    else fprintf(f, "set yrange [*:*<100]\nset offsets 0, 0, graph 0.06, 0\n");
}

/* The off-scale points of a plot: a marker on the bottom edge, and beside it the point's
 * name and value, stacked upwards where several share an x. */
static void clip_block(lb_plot *p, const yaxis *y, const double *x, const double *mean,
                       char (*name)[96], int n, bool log_x, int *n_clipped)
{
    lb_plot_data_begin(p, "clip");
    *n_clipped = 0;
    for (int i = 0; i < n; i++) {
        if (!y->on || mean[i] >= y->cutoff) continue;
        int below = 0;
        for (int j = 0; j < i; j++)
            below += mean[j] < y->cutoff && (log_x ? fabs(log2(x[j] / x[i])) < 1.0
                                                   : fabs(x[j] - x[i]) < 0.5);
        fprintf(p->f, "%.4f %.4f %.4f \"%s: %.1f%%\"\n", x[i], y_clamped(y, mean[i]),
                y_clamped(y, mean[i]) + below * 0.05 * (y->hi - y->lo), name[i], mean[i]);
        (*n_clipped)++;
    }
    lb_plot_data_end(p);
}

static void clip_plot(FILE *f, int n_clipped)
{
    if (!n_clipped) return;
    fprintf(f, ", $clip using 1:2 with points pt 11 ps 1.6 lc rgb '#000000' "
               "title 'off the axis (value shown)', $clip using 1:3:4 with labels left "
               "offset char 1.2,0 font ',9' notitle");
}

/* Accuracy against weight bits: one line per (mode, quantizer, gran[, abits]) of the modes
 * in want (bit mask of 1 << mode), error bars = std over seeds, the FP32 base dashed. */
static lb_status plot_bits(const lb_abl_config *c, const group *gr, int n, int m, int d,
                           unsigned want, const char *png, const char *title, lb_error *err)
{
    const group *B = base_of(gr, n, m, d);
    int bits_seen[9] = { 0 };
    int n_lines = 0, line_of[1024], n_pts = 0;
    double px[1024], pm[1024], ps[1024];
    static char pname[1024][96];
    const int lim = n < 1024 ? n : 1024;
    for (int k = 0; k < lim; k++) {
        const lb_abl_run *r = gr[k].r;
        line_of[k] = -1;
        if (r->model != m || r->data != d || !(want & (1u << r->mode)) || r->wbits == 0 ||
            gr[k].n_ok == 0)
            continue;
        bits_seen[r->wbits] = 1;
        for (int j = 0; j < k && line_of[k] < 0; j++)
            if (line_of[j] >= 0 && same_line(c, gr[j].r, r)) line_of[k] = line_of[j];
        if (line_of[k] < 0) line_of[k] = n_lines++;
        px[n_pts] = r->wbits;
        line_title(c, r, want == ((1u << LB_ABL_QAT) | (1u << LB_ABL_PTQ)), pname[n_pts], 96);
        pm[n_pts] = gr[k].mean;
        ps[n_pts++] = gr[k].std;
    }
    if (n_lines == 0) return LB_OK;
    const yaxis ya = y_axis(B, pm, ps, n_pts);
    lb_plot p;
    lb_status st = lb_plot_open(&p, png, title,
                                c->abits_same ? "bits (weights and activations)" : "weight bits",
                                "top-1 test accuracy (%)", err);
    if (st) return st;
    FILE *f = p.f;
    for (int L = 0; L < n_lines; L++) {
        char name[16];
        snprintf(name, sizeof name, "l%d", L);
        lb_plot_data_begin(&p, name);
        for (int b = 1; b <= 8; b++)
            for (int k = 0; k < lim; k++)
                if (line_of[k] == L && gr[k].r->wbits == b)
                    fprintf(f, "%d %.4f %.4f\n", b, y_clamped(&ya, gr[k].mean),
                            gr[k].mean < ya.cutoff && ya.on ? 0.0 : gr[k].std);
        lb_plot_data_end(&p);
    }
    int n_clipped;
    clip_block(&p, &ya, px, pm, pname, n_pts, false, &n_clipped);
    int max_bits = 1;
    for (int b = 1; b <= 8; b++)
        if (bits_seen[b]) max_bits = b;
    fprintf(f, "set xrange [0.5:%d.5]\nset xtics (", max_bits);
    bool first = true;
    for (int b = 1; b <= 8; b++)
        if (bits_seen[b]) {
            fprintf(f, "%s%d", first ? "" : ", ", b);
            first = false;
        }
    fprintf(f, ")\nset key outside right top\nset errorbars small\n");
    y_range(f, &ya);
    fprintf(f, "plot ");
    if (B && B->n_ok)
        fprintf(f, "%.4f with lines dt 2 lw 1.2 lc rgb '#444444' title 'FP32 (%.2f%%)', ",
                B->mean, B->mean);
    const group *T = finetune_of(gr, n, m, d);
    if (T && T->n_ok && (want & (1u << LB_ABL_QAT)))
        fprintf(f, "%.4f with lines dt 3 lw 1.5 lc rgb '#888888' title 'FP32 + QAT schedule "
                   "(%.2f%%)', ", T->mean, T->mean);
    for (int L = 0; L < n_lines; L++) {
        int k = 0;
        while (line_of[k] != L) k++;
        const lb_abl_run *r = gr[k].r;
        char t[128];
        line_title(c, r, want == ((1u << LB_ABL_QAT) | (1u << LB_ABL_PTQ)), t, sizeof t);
        const bool ptq = r->mode == LB_ABL_PTQ;
        /* colour: quantizer; dashes: PTQ; crossed activation bits: marker and dash pattern;
         * several granularities: marker by granularity (then abits keep the dashes only) */
        int ai = 0;
        while (!c->abits_same && ai < c->n_abits - 1 && c->abits[ai] != r->abits) ai++;
        static const int pts[] = { 7, 5, 13, 11, 15 }, dts[] = { 1, 3, 4, 5, 1 };
        const bool by_gran = c->n_gran > 1 && r->gran >= 0;
        const int pt = by_gran ? pts[r->gran % 5] : c->abits_same ? (ptq ? 9 : 7) : pts[ai % 5];
        const int dt = ptq ? 2 : c->abits_same ? 1 : dts[ai % 5];
        fprintf(f, "%s$l%d using 1:2:3 with yerrorlines lw 2 pt %d ps 1.3 dt %d lc rgb '%s' "
                   "title ", L ? ", " : "", L, pt, dt, palette[color_of(c, qname(c, r))]);
        lb_plot_quote(f, t);
    }
    clip_plot(f, n_clipped);
    fprintf(f, "\n");
    return lb_plot_render(&p, err);
}

/* Accuracy against weight memory (log scale) for every configuration, the Pareto front drawn
 * as a staircase through its points, which are labelled. */
static lb_status plot_pareto(const lb_abl_config *c, const group *gr, int n, int m, int d,
                             const char *png, const char *title, lb_error *err)
{
    int idx[1024], k_n = 0;
    double size[1024], acc[1024], sd[1024];
    static char pname[1024][96];
    bool front[1024];
    for (int k = 0; k < n && k_n < 1024; k++) {
        const lb_abl_run *r = gr[k].r;
        if (r->model != m || r->data != d || gr[k].n_ok == 0 || gr[k].kib <= 0) continue;
        idx[k_n] = k;
        size[k_n] = gr[k].kib;
        acc[k_n] = gr[k].mean;
        sd[k_n] = gr[k].std;
        char wa[24];
        wa_label(r, wa, sizeof wa);
        if (r->mode == LB_ABL_FP32) snprintf(pname[k_n], 96, "FP32");
        else if (r->quant < 0) snprintf(pname[k_n], 96, "FP32 + QAT schedule");
        else snprintf(pname[k_n], 96, "%s %s %s", r->mode == LB_ABL_QAT ? "QAT" : "PTQ",
                      qname(c, r), wa);
        k_n++;
    }
    if (k_n == 0) return LB_OK;
    lb_abl_pareto(size, acc, k_n, front);
    const yaxis ya = y_axis(base_of(gr, n, m, d), acc, sd, k_n);
    lb_plot p;
    lb_status st = lb_plot_open(&p, png, title, "weight memory (KiB, log scale)",
                                "top-1 test accuracy (%)", err);
    if (st) return st;
    FILE *f = p.f;
    static const char *const names[] = { "fp32", "qat", "ptq" };
    int n_mode[3] = { 0, 0, 0 };
    for (int mode = 0; mode < 3; mode++) {
        lb_plot_data_begin(&p, names[mode]);
        for (int j = 0; j < k_n; j++)
            if (gr[idx[j]].r->mode == (lb_abl_mode)mode && !(ya.on && acc[j] < ya.cutoff)) {
                fprintf(f, "%.4f %.4f\n", size[j], acc[j]);
                n_mode[mode]++;
            }
        lb_plot_data_end(&p);
    }
    int n_clipped;
    clip_block(&p, &ya, size, acc, pname, k_n, true, &n_clipped);
    /* the front, by size; its labels */
    int order[1024], n_f = 0;
    for (int j = 0; j < k_n; j++)
        if (front[j]) {
            int pos = n_f++;
            while (pos > 0 && size[order[pos - 1]] > size[j]) {
                order[pos] = order[pos - 1];
                pos--;
            }
            order[pos] = j;
        }
    lb_plot_data_begin(&p, "front");
    for (int t = 0; t < n_f; t++) /* off-scale front points are labelled by the clip block */
        fprintf(f, "%.4f %.4f \"%s\"\n", size[order[t]], y_clamped(&ya, acc[order[t]]),
                ya.on && acc[order[t]] < ya.cutoff ? "" : pname[order[t]]);
    lb_plot_data_end(&p);
    fprintf(f, "set logscale x 2\nset format x '%%g'\nset offsets graph 0.03, graph 0.12, 0, 0\n"
               "set key outside right top\n");
    y_range(f, &ya);
    if (ya.on) /* headroom for the slanted labels of the front */
        fprintf(f, "set yrange [%g:%g]\n", ya.lo, ya.hi + 0.1 * (ya.hi - ya.lo));
    fprintf(f, "plot $front using 1:2 with steps lw 2 lc rgb '#2ca02c' title 'Pareto front', "
               "$front using 1:2:3 with labels left rotate by 35 offset char 0.4,0.6 font ',9' "
               "notitle");
    static const char *const style[] = { "pt 5 ps 1.3 lc rgb '#000000' title 'FP32'",
                                         "pt 7 ps 1.2 lc rgb '#1f77b4' title 'QAT'",
                                         "pt 9 ps 1.3 lc rgb '#d62728' title 'PTQ'" };
    for (int mode = 1; mode < 4; mode++) /* QAT, PTQ, FP32: those with points */
        if (n_mode[mode % 3])
            fprintf(f, ", $%s using 1:2 with points %s", names[mode % 3], style[mode % 3]);
    clip_plot(f, n_clipped);
    fprintf(f, "\n");
    return lb_plot_render(&p, err);
}

static bool file_exists(const char *path) { return access(path, F_OK) == 0; }

lb_status lb_abl_collect(const lb_abl_config *c, const lb_abl_grid *g, FILE *log, lb_error *err)
{
    lb_status st = lb_abl_mkdir_p(c->out, err);
    if (st) return st;
    lb_abl_result *res = calloc((size_t)g->n, sizeof *res);
    group *gr = calloc((size_t)g->n, sizeof *gr);
    if (!res || !gr) {
        free(res);
        free(gr);
        return lb_errorf(err, LB_ERR_NOMEM, "out of memory");
    }
    int n_ok = 0;
    double secs = 0.0;
    for (int i = 0; i < g->n; i++) {
        if (lb_abl_read_result(g->runs[i].dir, &res[i])) {
            n_ok++;
            secs += res[i].seconds;
        }
    }
    if (n_ok < g->n)
        fprintf(log, "ablate: %d of %d runs have no result yet (left out of the means)\n",
                g->n - n_ok, g->n);
    const int n = make_groups(c, g, res, gr);
    if (n < 0) {
        st = lb_errorf(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = write_csv(c, g, res, err))) goto done;
    if ((st = write_md(c, g, gr, n, res, n_ok, secs, err))) goto done;
    char png[2048], title[1024], tag[400];
    for (int m = 0; m < c->n_models && !st; m++)
        for (int d = 0; d < c->n_data && !st; d++) {
            const char *mb = strrchr(c->models[m], '/');
            mb = mb ? mb + 1 : c->models[m];
            snprintf(tag, sizeof tag, "%.*s-%s", (int)strcspn(mb, "."), mb, c->data[d]);
            snprintf(png, sizeof png, "%s/acc_bits_%s.png", c->out, tag);
            const int mlen = (int)strcspn(mb, ".");
            snprintf(title, sizeof title, "%.*s on %s: QAT accuracy against bits", mlen, mb,
                     c->data[d]);
            st = plot_bits(c, gr, n, m, d, 1u << LB_ABL_QAT, png, title, err);
            if (st) break;
            if (c->ptq) {
                snprintf(png, sizeof png, "%s/ptq_qat_%s.png", c->out, tag);
                snprintf(title, sizeof title, "%.*s on %s: PTQ (dashed) against QAT (solid)",
                         mlen, mb, c->data[d]);
                st = plot_bits(c, gr, n, m, d, (1u << LB_ABL_QAT) | (1u << LB_ABL_PTQ), png,
                               title, err);
                if (st) break;
            }
            snprintf(png, sizeof png, "%s/pareto_%s.png", c->out, tag);
            snprintf(title, sizeof title, "%.*s on %s: accuracy against weight memory", mlen, mb,
                     c->data[d]);
            st = plot_pareto(c, gr, n, m, d, png, title, err);
        }
    if (st) goto done;
    /* weight histograms of the quantized runs of the first seed */
    for (int i = g->n_base; i < g->n; i++) {
        const lb_abl_run *r = &g->runs[i];
        if (!res[i].ok || r->wbits == 0 || r->seed != c->seeds[0]) continue;
        char ckpt[2200], hpng[2200];
        snprintf(ckpt, sizeof ckpt, "%s/%s", r->dir, r->mode == LB_ABL_PTQ ? "ptq.ckpt" : "last.ckpt");
        snprintf(hpng, sizeof hpng, "%s/hist.png", r->dir);
        if (file_exists(hpng) || !file_exists(ckpt)) continue;
        lb_error e = { 0 };
        if (lb_hist_write(ckpt, NULL, hpng, &e))
            fprintf(log, "ablate: no histogram for %s: %s\n", r->dir, e.msg);
    }
    fprintf(log, "ablate: wrote %s/results.csv, results.md and the plots\n", c->out);
done:
    free(res);
    free(gr);
    return st;
}
