/* inspect.c: `lowbit inspect --ranges`, the state of every quantizer of a model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/inspect.h"

/* "min/median/max" of n values (sorted in a copy). */
static void print_spread(FILE *out, const char *what, const float *v, int64_t n)
{
    float *t = malloc((size_t)n * sizeof *t);
    if (!t || n < 1) {
        free(t);
        return;
    }
    memcpy(t, v, (size_t)n * sizeof *t);
    for (int64_t i = 1; i < n; i++) /* insertion sort: n is a layer's channel count */
        for (int64_t j = i; j > 0 && t[j - 1] > t[j]; j--) {
            const float x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    if (n == 1) fprintf(out, " %s %.4g", what, (double)t[0]);
    else
        fprintf(out, " %s %.4g/%.4g/%.4g", what, (double)t[0], (double)t[n / 2],
                (double)t[n - 1]);
    free(t);
}

void lb_cli_inspect_ranges(const lb_model *m, FILE *out)
{
    fprintf(out, "%-14s %-6s %-7s %s\n", "layer", "which", "method",
            "state (per-channel values as min/median/max)");
    for (int i = 0; i < m->n_nodes; i++) {
        const lb_node *nd = &m->nodes[i];
        if (nd->kind != LB_NODE_CONV && nd->kind != LB_NODE_LINEAR) continue;
        const lb_tensor *wt = nd->kind == LB_NODE_CONV ? nd->u.conv.weight : nd->u.linear.weight;
        const lb_quantizer *qs[2] = { &nd->wq, &nd->aq };
        for (int k = 0; k < 2; k++) {
            const lb_quantizer *q = qs[k];
            fprintf(out, "%-14s %-6s %-7s", nd->name, k ? "input" : "weight",
                    q->bits ? lb_qmethod_name(q->method) : "-");
            if (!k) {
                float mx = 0.0f;
                for (int64_t j = 0; j < lb_numel(wt); j++) mx = fmaxf(mx, fabsf(wt->data[j]));
                fprintf(out, " max|w| %.4g", (double)mx);
            }
            if (!q->bits) {
                fputs(" (float)\n", out);
                continue;
            }
            fprintf(out, " %d bits", q->bits);
            if (q->step)
                print_spread(out, q->method == LB_QM_PACT ? "alpha" : "step", q->step->data,
                             lb_numel(q->step));
            if (!k && !q->step) { /* weights: the scales of the current float weights */
                float *sc = malloc(2 * (size_t)q->n * sizeof *sc);
                if (sc && lb_quantizer_scales(q, wt, sc, sc + q->n)) print_spread(out, "scale", sc, q->n);
                free(sc);
            }
            if (k && q->range && !q->step) {
                fprintf(out, " range [%.4g, %.4g]", (double)q->range->data[0],
                        (double)q->range->data[1]);
                float sz[2];
                if (lb_quantizer_scales(q, NULL, sz, sz + 1)) fprintf(out, " scale %.4g", (double)sz[0]);
            }
            if (q->range) fprintf(out, " seen %.0f", (double)q->range->data[k ? 2 : 2 * q->n]);
            fputc('\n', out);
        }
    }
}

