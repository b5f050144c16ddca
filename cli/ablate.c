/* ablate.c: the grid file parser, its expansion into runs, the command lines, the runner
 * (child processes of the lowbit binary) and the resume check. Tables and plots are in
 * ablate_report.c. See ablate.h and docs/ablate.md. */
#define _POSIX_C_SOURCE 200809L
#include "ablate.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "quant/qconfig.h"

extern char **environ;

/* ---- small helpers ------------------------------------------------------------------- */

lb_status lb_abl_mkdir_p(const char *path, lb_error *err)
{
    char p[4096];
    size_t n = strlen(path);
    if (n == 0) return LB_OK;
    if (n >= sizeof p) return lb_errorf(err, LB_ERR_ARG, "%s: path too long", path);
    memcpy(p, path, n + 1);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return lb_errorf(err, LB_ERR_IO, "%s: cannot create folder (%s)", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return lb_errorf(err, LB_ERR_IO, "%s: cannot create folder (%s)", p, strerror(errno));
    return LB_OK;
}

lb_status lb_abl_write_atomic(const char *path, const char *data, size_t len, lb_error *err)
{
    char dir[4096], tmp[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        lb_status st = lb_abl_mkdir_p(dir, err);
        if (st) return st;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return lb_errorf(err, LB_ERR_IO, "%s: %s", tmp, strerror(errno));
    size_t w = fwrite(data, 1, len, f);
    int bad = fflush(f) != 0 || w != len;
    if (!bad) bad = fsync(fileno(f)) != 0;
    if (fclose(f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return lb_errorf(err, LB_ERR_IO, "%s: write failed (%s)", path, strerror(e));
    }
    return LB_OK;
}

static char *read_text(const char *path, lb_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lb_errorf(err, LB_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        if (cap >= (1u << 20)) { /* a grid file is a few lines */
            free(buf);
            fclose(f);
            lb_errorf(err, LB_ERR_FORMAT, "%s: larger than 1 MiB, not a grid file", path);
            return NULL;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        lb_errorf(err, LB_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    if (bad) {
        free(buf);
        lb_errorf(err, LB_ERR_IO, "%s: read failed", path);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* ---- parsing ------------------------------------------------------------------------- */

static const char *const known_keys =
    "model data wbits abits quantizer ptq_quantizer gran mode seeds extra fp32 qat ptq args out "
    "fp32_finetune";

/* Options the runner sets itself, so a grid line may not. */
static const char *const managed[] = { "--out", "--init", "--quant", "--seed", "--result",
                                       "--json", "--resume", "--model", "--data", NULL };

typedef struct {
    const char *origin;
    int line;
    lb_error *err;
} pctx;

static lb_status bad(pctx *p, const char *fmt, const char *a, const char *b)
{
    char what[200];
    if (snprintf(what, sizeof what, fmt, a, b) < 0) what[0] = 0;
    return lb_errorf(p->err, LB_ERR_FORMAT, "%s:%d: %s", p->origin, p->line, what);
}

static lb_status parse_bits(pctx *p, const char *key, const char *tok, int *out)
{
    if (!strcmp(tok, "fp32") || !strcmp(tok, "32")) { *out = 0; return LB_OK; }
    if (tok[0] >= '1' && tok[0] <= '8' && tok[1] == 0) { *out = tok[0] - '0'; return LB_OK; }
    return bad(p, "%s: '%s' is not a bit width (fp32 or 1..8)", key, tok);
}

static lb_status parse_quant(pctx *p, const char *tok, lb_abl_quant *q)
{
    if (strlen(tok) >= sizeof q->name) return bad(p, "quantizer '%s': too long%s", tok, "");
    snprintf(q->name, sizeof q->name, "%s", tok);
    char w[32], a[32];
    const char *slash = strchr(tok, '/');
    if (slash) {
        snprintf(w, sizeof w, "%.*s", (int)(slash - tok), tok);
        snprintf(a, sizeof a, "%s", slash + 1);
    } else {
        snprintf(w, sizeof w, "%s", tok);
        snprintf(a, sizeof a, "%s", tok);
    }
    lb_qmethod m;
    lb_error e = { 0 };
    if (lb_qmethod_parse(w, &m, &e) || lb_qmethod_parse(a, &m, &e))
        return bad(p, "quantizer '%s': %s", tok, e.msg);
    snprintf(q->wq, sizeof q->wq, "%s", w);
    snprintf(q->aq, sizeof q->aq, "%s", a);
    return LB_OK;
}

static lb_status parse_gran(pctx *p, const char *tok, char *out)
{
    if (!strcmp(tok, "tensor") || !strcmp(tok, "channel")) {
        strcpy(out, tok);
        return LB_OK;
    }
    if (!strncmp(tok, "group:", 6)) {
        char *end;
        errno = 0;
        long g = strtol(tok + 6, &end, 10);
        if (tok[6] && !*end && !errno && g >= 1 && g <= 1 << 20) {
            snprintf(out, 32, "group:%ld", g);
            return LB_OK;
        }
    }
    return bad(p, "gran: '%s' is not tensor, channel or group:N (N >= 1)%s", tok, "");
}

/* key fp32/qat/ptq/args: options for lowbit, checked for the ones the runner sets. */
static lb_status parse_args(pctx *p, const char *key, char **tok, int n, char *out, size_t cap)
{
    if (strncmp(tok[0], "--", 2))
        return bad(p, "%s: expected lowbit options (--epochs 3 ...), got '%s'", key, tok[0]);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        for (const char *const *m = managed; *m; m++)
            if (!strcmp(tok[i], *m))
                return bad(p, "%s: %s is set by lowbit ablate for each run; remove it", key, *m);
        if (strlen(out) + strlen(tok[i]) + 2 > cap) return bad(p, "%s: too long%s", key, "");
        if (i) strcat(out, " ");
        strcat(out, tok[i]);
    }
    return LB_OK;
}

static lb_status parse_line(pctx *p, lb_abl_config *c, char **tok, int n, unsigned *seen)
{
    static const char *const keys[] = { "model", "data", "wbits", "abits", "quantizer",
                                        "ptq_quantizer", "gran", "mode", "seeds", "extra",
                                        "fp32", "qat", "ptq", "args", "out", "fp32_finetune",
                                        NULL };
    const char *key = tok[0];
    int k = 0;
    while (keys[k] && strcmp(keys[k], key)) k++;
    if (!keys[k]) return bad(p, "unknown key '%s' (known: %s)", key, known_keys);
    if (*seen & (1u << k)) return bad(p, "'%s' given twice (one line per key)%s", key, "");
    *seen |= 1u << k;
    tok++;
    n--;
    if (n == 0) return bad(p, "'%s' needs at least one value%s", key, "");
    if (n > LB_ABL_MAX_VALUES && k < 10)
        return bad(p, "'%s': more than 16 values%s", key, "");
    lb_status st = LB_OK;
    switch (k) {
    case 0:
        for (int i = 0; i < n; i++) {
            if (strlen(tok[i]) >= LB_ABL_STR) return bad(p, "model '%s': name too long%s", tok[i], "");
            strcpy(c->models[i], tok[i]);
        }
        c->n_models = n;
        break;
    case 1:
        for (int i = 0; i < n; i++) {
            if (strlen(tok[i]) >= 64) return bad(p, "data '%s': name too long%s", tok[i], "");
            strcpy(c->data[i], tok[i]);
        }
        c->n_data = n;
        break;
    case 2:
        for (int i = 0; i < n && !st; i++) st = parse_bits(p, "wbits", tok[i], &c->wbits[i]);
        c->n_wbits = n;
        break;
    case 3:
        if (n == 1 && !strcmp(tok[0], "same")) {
            c->abits_same = true;
            break;
        }
        c->abits_same = false;
        for (int i = 0; i < n && !st; i++) st = parse_bits(p, "abits", tok[i], &c->abits[i]);
        c->n_abits = n;
        break;
    case 4:
        for (int i = 0; i < n && !st; i++) st = parse_quant(p, tok[i], &c->quant[i]);
        c->n_quant = n;
        break;
    case 5:
        for (int i = 0; i < n && !st; i++) st = parse_quant(p, tok[i], &c->ptq_quant[i]);
        c->n_ptq_quant = n;
        break;
    case 6:
        for (int i = 0; i < n && !st; i++) st = parse_gran(p, tok[i], c->gran[i]);
        c->n_gran = n;
        break;
    case 7:
        c->qat = c->ptq = false;
        for (int i = 0; i < n; i++) {
            if (!strcmp(tok[i], "qat")) c->qat = true;
            else if (!strcmp(tok[i], "ptq")) c->ptq = true;
            else return bad(p, "mode: '%s' is not qat or ptq%s", tok[i], "");
        }
        break;
    case 8:
        for (int i = 0; i < n; i++) {
            char *end;
            errno = 0;
            long s = strtol(tok[i], &end, 10);
            if (!*tok[i] || *end || errno || s < 0 || s > 2147483647L)
                return bad(p, "seeds: '%s' is not a seed (0..2^31-1)%s", tok[i], "");
            c->seeds[i] = s;
        }
        c->n_seeds = n;
        break;
    case 9: {
        if (n != 1) return bad(p, "extra: one comma-separated item list (first=8,last=8)%s", "", "");
        char spec[LB_ABL_STR + 8];
        snprintf(spec, sizeof spec, "w8a8,%s", tok[0]);
        lb_qconfig *qc = malloc(sizeof *qc);
        lb_error e = { 0 };
        if (!qc) return lb_errorf(p->err, LB_ERR_NOMEM, "out of memory");
        st = lb_qconfig_parse_spec(spec, qc, &e);
        free(qc);
        if (st || strlen(tok[0]) >= LB_ABL_STR) return bad(p, "extra '%s': %s", tok[0], e.msg);
        strcpy(c->extra, tok[0]);
        break;
    }
    case 10: return parse_args(p, key, tok, n, c->fp32_args, sizeof c->fp32_args);
    case 11: return parse_args(p, key, tok, n, c->qat_args, sizeof c->qat_args);
    case 12: return parse_args(p, key, tok, n, c->ptq_args, sizeof c->ptq_args);
    case 13: return parse_args(p, key, tok, n, c->all_args, sizeof c->all_args);
    case 14:
        if (n != 1 || strlen(tok[0]) >= 512) return bad(p, "out: one folder name%s", "", "");
        strcpy(c->out, tok[0]);
        break;
    case 15:
        if (n != 1 || (strcmp(tok[0], "yes") && strcmp(tok[0], "no")))
            return bad(p, "fp32_finetune: yes or no%s%s", "", "");
        c->fp32_finetune = tok[0][0] == 'y';
        break;
    }
    return st;
}

lb_status lb_abl_parse_text(const char *text, const char *origin, lb_abl_config **out,
                            lb_error *err)
{
    *out = NULL;
    lb_abl_config *c = calloc(1, sizeof *c);
    if (!c) return lb_errorf(err, LB_ERR_NOMEM, "out of memory");
    snprintf(c->path, sizeof c->path, "%s", origin);
    c->abits_same = true;
    c->qat = true;
    parse_quant(&(pctx){ origin, 0, err }, "lsq", &c->quant[0]);
    c->n_quant = 1;
    strcpy(c->gran[0], "channel");
    c->n_gran = 1;
    c->seeds[0] = 42;
    c->n_seeds = 1;
    pctx p = { origin, 0, err };
    unsigned seen = 0;
    lb_status st = LB_OK;
    const char *s = text;
    while (*s && !st) {
        p.line++;
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char line[1024];
        if (len >= sizeof line) {
            st = bad(&p, "line longer than 1023 characters%s%s", "", "");
            break;
        }
        memcpy(line, s, len);
        line[len] = 0;
        s += len + (e ? 1 : 0);
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *tok[LB_ABL_MAX_ARGS + 2];
        int n = 0;
        for (char *t = strtok(line, " \t\r"); t; t = strtok(NULL, " \t\r")) {
            if (n == LB_ABL_MAX_ARGS + 1) {
                st = bad(&p, "too many values (at most %s)%s", "32", "");
                break;
            }
            tok[n++] = t;
        }
        if (!st && n) st = parse_line(&p, c, tok, n, &seen);
    }
    if (!st) {
        const char *need[] = { "model", "data", "wbits" };
        const unsigned bit[] = { 1u << 0, 1u << 1, 1u << 2 };
        for (int i = 0; i < 3 && !st; i++)
            if (!(seen & bit[i]))
                st = lb_errorf(err, LB_ERR_FORMAT, "%s: no '%s' line (required: model, data, wbits)",
                               origin, need[i]);
    }
    if (st) {
        free(c);
        return st;
    }
    if (!c->n_ptq_quant) {
        memcpy(c->ptq_quant, c->quant, sizeof c->quant);
        c->n_ptq_quant = c->n_quant;
    }
    if (!c->out[0]) { /* runs/ablate-<file name without folder and extension> */
        const char *base = strrchr(origin, '/');
        base = base ? base + 1 : origin;
        size_t n = strcspn(base, ".");
        snprintf(c->out, sizeof c->out, "runs/ablate-%.*s", (int)(n ? n : strlen(base)), base);
    }
    *out = c;
    return LB_OK;
}

lb_status lb_abl_parse_file(const char *path, lb_abl_config **out, lb_error *err)
{
    *out = NULL;
    char *text = read_text(path, err);
    if (!text) return err ? err->status : LB_ERR_IO;
    lb_status st = lb_abl_parse_text(text, path, out, err);
    free(text);
    return st;
}

void lb_abl_free(lb_abl_config *c) { free(c); }

/* ---- the grid ------------------------------------------------------------------------ */

/* A folder-name tag: the model's file name without folder and extension ("fc3x256" for
 * experiments/ablate/fc3x256.txt), characters other than letters, digits, - and _ as '-'. */
static void tag_of(const char *s, char *out, size_t cap)
{
    const char *base = strrchr(s, '/');
    base = base ? base + 1 : s;
    size_t n = 0;
    for (const char *t = base; *t && n + 1 < cap; t++) {
        if (*t == '.' && t != base) break;
        out[n++] = isalnum((unsigned char)*t) || *t == '-' || *t == '_' ? *t : '-';
    }
    out[n] = 0;
}

/* Same for a quantizer token, keeping both halves: "dorefa/pact" -> "dorefa-pact". */
static void qtag_of(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *t = s; *t && n + 1 < cap; t++)
        out[n++] = isalnum((unsigned char)*t) || *t == '_' ? *t : '-';
    out[n] = 0;
}

static void add_note(lb_abl_grid *g, const char *fmt, const char *a, const char *b)
{
    char note[LB_ABL_STR];
    if (snprintf(note, sizeof note, fmt, a, b) < 0) return;
    for (int i = 0; i < g->n_notes; i++)
        if (!strcmp(g->notes[i], note)) return;
    if (g->n_notes < 64) strcpy(g->notes[g->n_notes++], note);
}

static bool weight_only(const char *m)
{
    return !strcmp(m, "dorefa") || !strcmp(m, "binary") || !strcmp(m, "ternary");
}

/* The --quant spec of one grid point, or false (with a note) when it is not a valid one. */
static bool make_spec(const lb_abl_config *c, lb_abl_grid *g, const lb_abl_quant *q,
                      const char *gran, int w, int a, char *spec, size_t cap)
{
    char wa[16];
    snprintf(wa, sizeof wa, "w%da%d", w, a);
    if (a == 1) {
        add_note(g, "%s skipped: activations take fp32 or 2..8 bits, not 1%s", wa, "");
        return false;
    }
    const char *wm = q->wq;
    if (w > 0 && !strcmp(wm, "pact")) {
        add_note(g, "%s: PACT quantizes activations only, so runs with quantized weights are "
                    "skipped (write dorefa/pact or lsq/pact for a weight quantizer)", q->name, "");
        return false;
    }
    if (a > 0 && weight_only(q->aq)) {
        add_note(g, "%s: %s quantizes weights only, so runs with quantized activations are "
                    "skipped (write e.g. dorefa/pact)", q->name, q->aq);
        return false;
    }
    if (w == 1 && strcmp(wm, "dorefa") && strcmp(wm, "binary")) {
        add_note(g, "%s: 1-bit weights are binary (sign x mean|w|, XNOR-Net)%s", q->name, "");
        wm = "binary";
    }
    if (w > 1 && !strcmp(wm, "binary")) {
        add_note(g, "%s: binary weights are 1 bit only; other weight bits skipped%s", q->name, "");
        return false;
    }
    int len = snprintf(spec, cap, "%s", wa);
    if (w > 0) len += snprintf(spec + len, cap - (size_t)len, ",wq=%s,gran=%s", wm, gran);
    if (a > 0) len += snprintf(spec + len, cap - (size_t)len, ",aq=%s", q->aq);
    if (c->extra[0]) len += snprintf(spec + len, cap - (size_t)len, ",%s", c->extra);
    if (len >= (int)cap) return false;
    lb_qconfig *qc = malloc(sizeof *qc);
    lb_error e = { 0 };
    bool ok = qc && lb_qconfig_parse_spec(spec, qc, &e) == LB_OK;
    free(qc);
    if (!ok) add_note(g, "skipped: %s%s", e.msg, "");
    return ok;
}

static lb_abl_run *push(lb_abl_grid *g, int *cap)
{
    if (g->n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        lb_abl_run *nr = realloc(g->runs, (size_t)nc * sizeof *nr);
        if (!nr) return NULL;
        g->runs = nr;
        *cap = nc;
    }
    lb_abl_run *r = &g->runs[g->n++];
    memset(r, 0, sizeof *r);
    r->dep = -1;
    r->quant = r->gran = -1;
    return r;
}

lb_status lb_abl_expand(const lb_abl_config *c, lb_abl_grid *g, lb_error *err)
{
    memset(g, 0, sizeof *g);
    int cap = 0;
    g->notes = calloc(64, sizeof *g->notes);
    if (!g->notes) return lb_errorf(err, LB_ERR_NOMEM, "out of memory");
    char mtag[64];
    /* 1. the FP32 bases: model x data x seed */
    for (int m = 0; m < c->n_models; m++)
        for (int d = 0; d < c->n_data; d++)
            for (int s = 0; s < c->n_seeds; s++) {
                lb_abl_run *r = push(g, &cap);
                if (!r) goto oom;
                r->mode = LB_ABL_FP32;
                r->model = m;
                r->data = d;
                r->seed = c->seeds[s];
                tag_of(c->models[m], mtag, sizeof mtag);
                snprintf(r->dir, sizeof r->dir, "%s/%s-%s/s%ld/fp32", c->out, mtag, c->data[d],
                         r->seed);
            }
    g->n_base = g->n;
    /* 2. the control: each base fine-tuned with the QAT schedule, still at FP32, so the QAT
     * rows can be told apart from the effect of training longer */
    if (c->qat && c->fp32_finetune)
        for (int b = 0; b < g->n_base; b++) {
            lb_abl_run *r = push(g, &cap);
            if (!r) goto oom;
            const lb_abl_run *base = &g->runs[b];
            r->mode = LB_ABL_QAT;
            r->model = base->model;
            r->data = base->data;
            r->seed = base->seed;
            r->dep = b;
            strcpy(r->spec, "fp32");
            char *slash = strrchr(strcpy(r->dir, base->dir), '/');
            snprintf(slash + 1, sizeof r->dir - (size_t)(slash + 1 - r->dir), "qat-fp32");
        }
    const int n_control = g->n - g->n_base;
    /* 3. QAT and PTQ runs from those bases */
    const int n_a = c->abits_same ? 1 : c->n_abits;
    for (int m = 0; m < c->n_models; m++)
        for (int d = 0; d < c->n_data; d++)
            for (int mode = LB_ABL_QAT; mode <= LB_ABL_PTQ; mode++) {
                if ((mode == LB_ABL_QAT && !c->qat) || (mode == LB_ABL_PTQ && !c->ptq)) continue;
                const lb_abl_quant *ql = mode == LB_ABL_QAT ? c->quant : c->ptq_quant;
                const int nq = mode == LB_ABL_QAT ? c->n_quant : c->n_ptq_quant;
                for (int q = 0; q < nq; q++)
                    for (int gr = 0; gr < c->n_gran; gr++)
                        for (int wi = 0; wi < c->n_wbits; wi++)
                            for (int ai = 0; ai < n_a; ai++) {
                                const int w = c->wbits[wi];
                                const int a = c->abits_same ? w : c->abits[ai];
                                if (w == 0 && a == 0) {
                                    add_note(g, "the fp32 point of each line is the FP32 base "
                                                "run%s%s", "", "");
                                    continue;
                                }
                                if (w == 0 && gr > 0) continue; /* gran: weights only */
                                char spec[LB_ABL_STR];
                                if (!make_spec(c, g, &ql[q], c->gran[gr], w, a, spec, sizeof spec))
                                    continue;
                                for (int s = 0; s < c->n_seeds; s++) {
                                    lb_abl_run *r = push(g, &cap);
                                    if (!r) goto oom;
                                    r->mode = (lb_abl_mode)mode;
                                    r->model = m;
                                    r->data = d;
                                    r->wbits = w;
                                    r->abits = a;
                                    r->quant = q;
                                    r->gran = gr;
                                    r->seed = c->seeds[s];
                                    r->dep = (m * c->n_data + d) * c->n_seeds + s;
                                    strcpy(r->spec, spec);
                                    char qtag[32], gtag[32];
                                    qtag_of(ql[q].name, qtag, sizeof qtag);
                                    snprintf(gtag, sizeof gtag, "%s", c->gran[gr]);
                                    char *colon = strchr(gtag, ':');
                                    if (colon) memmove(colon, colon + 1, strlen(colon));
                                    tag_of(c->models[m], mtag, sizeof mtag);
                                    snprintf(r->dir, sizeof r->dir, "%s/%s-%s/s%ld/%s-%s-w%da%d-%s",
                                             c->out, mtag, c->data[d], r->seed,
                                             mode == LB_ABL_QAT ? "qat" : "ptq", qtag,
                                             w ? w : 32, a ? a : 32, w ? gtag : "float");
                                }
                            }
            }
    if (g->n == g->n_base + n_control) {
        lb_abl_grid_free(g);
        return lb_errorf(err, LB_ERR_ARG, "%s: the grid has no quantized run (every "
                         "combination was skipped or only fp32 bits are listed)", c->path);
    }
    return LB_OK;
oom:
    lb_abl_grid_free(g);
    return lb_errorf(err, LB_ERR_NOMEM, "out of memory");
}

void lb_abl_grid_free(lb_abl_grid *g)
{
    if (!g) return;
    free(g->runs);
    free(g->notes);
    memset(g, 0, sizeof *g);
}

/* ---- command lines ------------------------------------------------------------------- */

typedef struct {
    char **argv;
    int n, max;
    char *buf;
    size_t len, cap;
    bool full;
} argb;

static void arg(argb *b, const char *s)
{
    size_t n = strlen(s) + 1;
    if (b->full || b->n + 1 >= b->max || b->len + n > b->cap) {
        b->full = true;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->argv[b->n++] = b->buf + b->len;
    b->len += n;
}

static void args_of(argb *b, const char *list)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", list);
    for (char *t = strtok(tmp, " "); t; t = strtok(NULL, " ")) arg(b, t);
}

int lb_abl_run_argv(const lb_abl_config *c, const lb_abl_grid *g, int i, const char *exe,
                    char **argv, int max_argv, char *buf, size_t cap)
{
    const lb_abl_run *r = &g->runs[i];
    argb b = { argv, 0, max_argv, buf, 0, cap, false };
    char tmp[2200];
    arg(&b, exe);
    if (r->mode == LB_ABL_PTQ) {
        arg(&b, "ptq");
        snprintf(tmp, sizeof tmp, "%s/last.ckpt", g->runs[r->dep].dir);
        arg(&b, tmp);
    } else {
        arg(&b, "train");
        if (r->mode == LB_ABL_QAT) {
            arg(&b, "--init");
            snprintf(tmp, sizeof tmp, "%s/last.ckpt", g->runs[r->dep].dir);
            arg(&b, tmp);
        } else {
            arg(&b, "--model");
            arg(&b, c->models[r->model]);
        }
    }
    arg(&b, "--data");
    arg(&b, c->data[r->data]);
    if (r->mode != LB_ABL_FP32) {
        arg(&b, "--quant");
        arg(&b, r->spec);
    }
    arg(&b, "--seed");
    snprintf(tmp, sizeof tmp, "%ld", r->seed);
    arg(&b, tmp);
    args_of(&b, r->mode == LB_ABL_FP32 ? c->fp32_args : r->mode == LB_ABL_QAT ? c->qat_args
                                                                                : c->ptq_args);
    args_of(&b, c->all_args);
    arg(&b, "--out");
    snprintf(tmp, sizeof tmp, r->mode == LB_ABL_PTQ ? "%s/ptq.ckpt" : "%s", r->dir);
    arg(&b, tmp);
    arg(&b, "--result");
    snprintf(tmp, sizeof tmp, "%s/result.json", r->dir);
    arg(&b, tmp);
    if (b.full) return -1;
    argv[b.n] = NULL;
    return b.n;
}

void lb_abl_run_label(const lb_abl_config *c, const lb_abl_run *r, char *buf, size_t cap)
{
    char mtag[64];
    tag_of(c->models[r->model], mtag, sizeof mtag);
    if (r->mode == LB_ABL_FP32) {
        snprintf(buf, cap, "%s %s fp32 s%ld", mtag, c->data[r->data], r->seed);
        return;
    }
    if (r->quant < 0) { /* the FP32 fine-tune control */
        snprintf(buf, cap, "%s %s qat fp32 fine-tune s%ld", mtag, c->data[r->data], r->seed);
        return;
    }
    const lb_abl_quant *q = r->mode == LB_ABL_QAT ? &c->quant[r->quant] : &c->ptq_quant[r->quant];
    char wa[24];
    snprintf(wa, sizeof wa, "w%da%d", r->wbits ? r->wbits : 32, r->abits ? r->abits : 32);
    snprintf(buf, cap, "%s %s %s %s %s%s%s s%ld", mtag, c->data[r->data],
             r->mode == LB_ABL_QAT ? "qat" : "ptq", q->name, wa, r->wbits ? " " : "",
             r->wbits ? c->gran[r->gran] : "", r->seed);
}

static void shell_quote(FILE *f, const char *s)
{
    bool plain = *s != 0;
    for (const char *t = s; *t; t++)
        if (!isalnum((unsigned char)*t) && !strchr("_./:=,+-@%", *t)) plain = false;
    if (plain) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

void lb_abl_list(const lb_abl_config *c, const lb_abl_grid *g, const char *exe,
                 lb_abl_stage stage, FILE *f)
{
    char *argv[LB_ABL_MAX_ARGS * 2 + 24];
    char buf[16384];
    for (int i = 0; i < g->n; i++) {
        if (stage == LB_ABL_STAGE_BASE && i >= g->n_base) break;
        if (stage == LB_ABL_STAGE_QUANT && i < g->n_base) continue;
        int n = lb_abl_run_argv(c, g, i, exe, argv, (int)(sizeof argv / sizeof argv[0]), buf,
                                sizeof buf);
        for (int k = 0; k < n; k++) {
            if (k) fputc(' ', f);
            shell_quote(f, argv[k]);
        }
        fputc('\n', f);
    }
}

/* ---- results and the runner ---------------------------------------------------------- */

static bool json_num(const char *text, const char *key, double *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p) return false;
    char *end;
    double v = strtod(p + strlen(pat), &end);
    if (end == p + strlen(pat)) return false;
    *out = v;
    return true;
}

bool lb_abl_read_result(const char *dir, lb_abl_result *r)
{
    memset(r, 0, sizeof *r);
    char path[4200];
    snprintf(path, sizeof path, "%s/result.json", dir);
    lb_error e;
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fclose(f);
    char *text = read_text(path, &e);
    if (!text) return false;
    r->ok = json_num(text, "test_acc", &r->test_acc) && r->test_acc >= 0 && r->test_acc <= 1;
    json_num(text, "weight_bytes", &r->weight_bytes);
    json_num(text, "fp32_weight_bytes", &r->fp32_weight_bytes);
    json_num(text, "seconds", &r->seconds);
    free(text);
    return r->ok;
}

bool lb_abl_run_finished(const char *dir)
{
    lb_abl_result r;
    return lb_abl_read_result(dir, &r);
}

enum { ST_PENDING = 0, ST_RUNNING, ST_DONE, ST_FAILED };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static lb_status spawn_run(const lb_abl_config *c, const lb_abl_grid *g, int i, const char *exe,
                           pid_t *pid, lb_error *err)
{
    const lb_abl_run *r = &g->runs[i];
    lb_status st = lb_abl_mkdir_p(r->dir, err);
    if (st) return st;
    char *argv[LB_ABL_MAX_ARGS * 2 + 24];
    char buf[16384], logp[2200];
    if (lb_abl_run_argv(c, g, i, exe, argv, (int)(sizeof argv / sizeof argv[0]), buf,
                        sizeof buf) < 0)
        return lb_errorf(err, LB_ERR_ARG, "%s: command line too long", r->dir);
    snprintf(logp, sizeof logp, "%s/log.txt", r->dir);
    remove(logp);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) return lb_errorf(err, LB_ERR_IO, "%s: cannot run (%s)", exe, strerror(rc));
    return LB_OK;
}

lb_status lb_abl_execute(const lb_abl_config *c, const lb_abl_grid *g, const char *exe,
                         int jobs, const volatile sig_atomic_t *stop, FILE *log, int *n_failed,
                         lb_error *err)
{
    *n_failed = 0;
    if (jobs < 1) jobs = 1;
    int *state = calloc((size_t)g->n, sizeof *state);
    pid_t *pids = calloc((size_t)g->n, sizeof *pids);
    double *t0 = calloc((size_t)g->n, sizeof *t0);
    lb_status st = LB_OK;
    if (!state || !pids || !t0) {
        st = lb_errorf(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    int n_done = 0, n_todo = 0, running = 0, finished = 0;
    for (int i = 0; i < g->n; i++) {
        if (lb_abl_run_finished(g->runs[i].dir)) {
            state[i] = ST_DONE;
            n_done++;
        } else {
            n_todo++;
        }
    }
    fprintf(log, "ablate: %d runs, %d already finished (skipped), %d to run, %d at once\n", g->n,
            n_done, n_todo, jobs);
    fflush(log);
    char label[256];
    bool stopping = false;
    for (;;) {
        if (stop && *stop && !stopping) { /* pass the signal on, start nothing more */
            stopping = true;
            fprintf(log, "ablate: stopping: %d running run%s asked to save and exit; rerun the "
                         "same command to resume\n", running, running == 1 ? "" : "s");
            fflush(log);
            for (int i = 0; i < g->n; i++)
                if (state[i] == ST_RUNNING) kill(pids[i], SIGTERM);
        }
        for (int i = 0; i < g->n && running < jobs && !stopping; i++) {
            if (state[i] != ST_PENDING) continue;
            const int dep = g->runs[i].dep;
            if (dep >= 0 && state[dep] == ST_FAILED) {
                state[i] = ST_FAILED;
                (*n_failed)++;
                finished++;
                lb_abl_run_label(c, &g->runs[i], label, sizeof label);
                fprintf(log, "[%d/%d] not run  %s: its FP32 base failed\n", finished, n_todo, label);
                continue;
            }
            if (dep >= 0 && state[dep] != ST_DONE) continue;
            st = spawn_run(c, g, i, exe, &pids[i], err);
            if (st) goto wait_all;
            state[i] = ST_RUNNING;
            t0[i] = now_s();
            running++;
        }
        if (running == 0) break;
        int ws;
        pid_t pid = waitpid(-1, &ws, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            st = lb_errorf(err, LB_ERR_IO, "waitpid: %s", strerror(errno));
            goto done;
        }
        int i = 0;
        while (i < g->n && !(state[i] == ST_RUNNING && pids[i] == pid)) i++;
        if (i == g->n) continue; /* not ours */
        running--;
        finished++;
        lb_abl_run_label(c, &g->runs[i], label, sizeof label);
        lb_abl_result r;
        const bool exited_ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
        if (exited_ok && lb_abl_read_result(g->runs[i].dir, &r)) {
            state[i] = ST_DONE;
            fprintf(log, "[%d/%d] ok       %s: %.2f%% (%.0f s)\n", finished, n_todo, label,
                    100.0 * r.test_acc, now_s() - t0[i]);
        } else {
            state[i] = ST_FAILED;
            (*n_failed)++;
            char why[64];
            if (WIFEXITED(ws) && WEXITSTATUS(ws)) snprintf(why, sizeof why, "exit status %d", WEXITSTATUS(ws));
            else if (WIFSIGNALED(ws)) snprintf(why, sizeof why, "signal %d", WTERMSIG(ws));
            else snprintf(why, sizeof why, "no result.json");
            fprintf(log, "[%d/%d] %s %s (%s; see %s/log.txt)\n", finished, n_todo,
                    stopping ? "stopped " : "FAILED  ", label, why, g->runs[i].dir);
        }
        fflush(log);
    }
    if (stopping)
        st = lb_errorf(err, LB_ERR_INTERRUPTED, "interrupted; finished runs are kept, and the "
                       "same command resumes the sweep");
    goto done;
wait_all: /* the runner failed: let the children that are running finish */
    while (running > 0) {
        int ws;
        if (waitpid(-1, &ws, 0) < 0 && errno != EINTR) break;
        running--;
    }
done:
    free(state);
    free(pids);
    free(t0);
    return st;
}
