/* qconfig.c: per-layer bit configuration: the short-spec and file parsers, precedence
 * (default -> first -> last -> named layer), validation, and text output.
 *
 * Both parsers read the settings of one spec or file line into an lb_qoverride with its .set
 * bits, so spec items, file lines and stored overrides share one validator and one merge rule.
 * Nothing is allocated except the file's read buffer. The parsers do not know the model:
 * layer names are checked by lb_qconfig_check_names once the model is built.
 */
#include "quant/qconfig.h"

#include "autograd/fileio.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BITS   8
#define MAX_GROUP  (1 << 20)
#define MAX_LINE   1024          /* bytes per file line, NUL included                  */
#define MAX_TOKENS 16            /* fields per file line                               */
#define MAX_ITEM   64            /* bytes per spec item, NUL included                  */
#define MAX_FILE   (1 << 20)     /* a configuration file is at most 1 MiB              */
#define NAME_CAP   ((int)sizeof(((lb_qoverride *)0)->name))  /* 48: 47 chars + NUL   */

#define SET_ALL (LB_QSET_W_BITS | LB_QSET_A_BITS | LB_QSET_W_METHOD | LB_QSET_A_METHOD | \
                 LB_QSET_GRAN | LB_QSET_STE)

static const char *const method_names[LB_QM_COUNT] = {
    [LB_QM_MINMAX] = "minmax", [LB_QM_EMA] = "ema",       [LB_QM_LSQ] = "lsq",
    [LB_QM_PACT] = "pact",     [LB_QM_DOREFA] = "dorefa", [LB_QM_BINARY] = "binary",
    [LB_QM_TERNARY] = "ternary",
};
_Static_assert(LB_QM_COUNT == 7, "update method_names and the checks below");

#define KNOWN_METHODS "minmax ema lsq pact dorefa binary ternary"

/* ---- methods, defaults and the merge rule ---------------------------------------------- */

const char *lb_qmethod_name(lb_qmethod m)
{
    return (m >= 0 && m < LB_QM_COUNT) ? method_names[m] : "?";
}

static int find_method(const char *s)
{
    for (int m = 0; m < LB_QM_COUNT; m++)
        if (!strcmp(s, method_names[m])) return m;
    return -1;
}

lb_status lb_qmethod_parse(const char *s, lb_qmethod *out, lb_error *err)
{
    const int m = find_method(s);
    if (m < 0)
        return lb_errorf(err, LB_ERR_ARG, "unknown quantizer '%s' (known: %s)", s, KNOWN_METHODS);
    *out = (lb_qmethod)m;
    return LB_OK;
}

static bool act_method(lb_qmethod m)
{
    return m == LB_QM_MINMAX || m == LB_QM_EMA || m == LB_QM_LSQ || m == LB_QM_PACT;
}

/* Whether method m can quantize weights to b bits (0, float, always can). */
static bool wbits_ok(lb_qmethod m, int b)
{
    if (b == 0) return true;
    switch (m) {
    case LB_QM_BINARY: return b == 1;
    case LB_QM_TERNARY: return b == 2;
    case LB_QM_DOREFA: return b >= 1 && b <= MAX_BITS; /* 1-bit DoReFa is sign(w) */
    case LB_QM_PACT: return false;
    default: return b >= 2 && b <= MAX_BITS;
    }
}

static bool abits_ok(int b)
{
    return b == 0 || (b >= 2 && b <= MAX_BITS);
}

static lb_qlayer_cfg default_cfg(void)
{
    return (lb_qlayer_cfg){ .w_bits = 0, .a_bits = 0, .w_method = LB_QM_LSQ, .a_method = LB_QM_LSQ,
                            .w_gran = LB_QG_CHANNEL, .w_group = 0, .ste = LB_STE_CLIPPED };
}

lb_qconfig lb_qconfig_float(void)
{
    lb_qconfig q;
    memset(&q, 0, sizeof q);
    q.deflt     = default_cfg();
    q.first.cfg = q.deflt; /* unset fields hold the defaults, so configs compare field-wise */
    q.last.cfg  = q.deflt;
    return q;
}

/* Copies the fields o sets into c. */
static void apply_fields(lb_qlayer_cfg *c, const lb_qoverride *o)
{
    const unsigned s = o->set;
    if (s & LB_QSET_W_BITS) c->w_bits = o->cfg.w_bits;
    if (s & LB_QSET_A_BITS) c->a_bits = o->cfg.a_bits;
    if (s & LB_QSET_W_METHOD) c->w_method = o->cfg.w_method;
    if (s & LB_QSET_A_METHOD) c->a_method = o->cfg.a_method;
    if (s & LB_QSET_GRAN) {
        c->w_gran  = o->cfg.w_gran;
        c->w_group = o->cfg.w_group;
    }
    if (s & LB_QSET_STE) c->ste = o->cfg.ste;
}

/* The merge rule: o's fields replace c's. When o gives weight bits but no method and the
 * inherited method cannot do them (binary and ternary have fixed widths), the method becomes
 * binary for 1 bit and LSQ otherwise: "w1,first=8" gives an 8-bit LSQ first layer. */
static void apply(lb_qlayer_cfg *c, const lb_qoverride *o)
{
    apply_fields(c, o);
    if ((o->set & LB_QSET_W_BITS) && !(o->set & LB_QSET_W_METHOD) &&
        !wbits_ok(c->w_method, c->w_bits))
        c->w_method = c->w_bits == 1 ? LB_QM_BINARY : LB_QM_LSQ;
}

/* Folds a later line's settings o into a stored override (file lines for the same target). */
static void merge(lb_qoverride *dst, const lb_qoverride *o)
{
    const bool had_method = dst->set & LB_QSET_W_METHOD;
    apply_fields(&dst->cfg, o);
    if (had_method && (o->set & LB_QSET_W_BITS) && !(o->set & LB_QSET_W_METHOD) &&
        !wbits_ok(dst->cfg.w_method, dst->cfg.w_bits))
        dst->cfg.w_method = dst->cfg.w_bits == 1 ? LB_QM_BINARY : LB_QM_LSQ;
    dst->set |= o->set;
}

lb_qlayer_cfg lb_qconfig_for(const lb_qconfig *qc, const char *layer, bool is_first, bool is_last)
{
    lb_qlayer_cfg c = qc->deflt;
    if (is_first && qc->first.set) apply(&c, &qc->first);
    if (is_last && qc->last.set) apply(&c, &qc->last);
    if (layer)
        for (int i = 0; i < qc->n_layers; i++)
            if (!strcmp(qc->layers[i].name, layer)) {
                apply(&c, &qc->layers[i]);
                break;
            }
    return c;
}

/* ---- parsing: messages and single settings --------------------------------------------- */

typedef struct {
    const char *spec;   /* the short spec, or NULL when parsing file text */
    const char *origin; /* file name (or caller's origin) for file messages */
    int         line;
    lb_error   *err;
} qctx;

/* Specs: LB_ERR_ARG "quant spec '<spec>': <what>";
 * files: LB_ERR_FORMAT "<origin>:<line>: <what>". */
static lb_status qerr(const qctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static lb_status qerr(const qctx *p, const char *fmt, ...)
{
    char    msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->spec) return lb_errorf(p->err, LB_ERR_ARG, "quant spec '%.200s': %s", p->spec, msg);
    return lb_errorf(p->err, LB_ERR_FORMAT, "%s:%d: %s", p->origin, p->line, msg);
}

/* A plain decimal 0..MAX_GROUP (digits only: no sign, no spaces). */
static bool parse_uint(const char *s, long *out)
{
    if (!isdigit((unsigned char)s[0])) return false;
    char *end;
    errno    = 0;
    long v   = strtol(s, &end, 10);
    if (errno || *end || v > MAX_GROUP) return false;
    *out = v;
    return true;
}

static const char *key_name(unsigned bit)
{
    switch (bit) {
    case LB_QSET_W_BITS: return "w";
    case LB_QSET_A_BITS: return "a";
    case LB_QSET_W_METHOD: return "wq";
    case LB_QSET_A_METHOD: return "aq";
    case LB_QSET_GRAN: return "gran";
    default: return "ste";
    }
}

/* The LB_QSET_ bit of a settings key, or 0. */
static unsigned key_bit(const char *key)
{
    static const unsigned bits[] = { LB_QSET_W_BITS,   LB_QSET_A_BITS, LB_QSET_W_METHOD,
                                     LB_QSET_A_METHOD, LB_QSET_GRAN,   LB_QSET_STE };
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        if (!strcmp(key, key_name(bits[i]))) return bits[i];
    return 0;
}

static void gran_str(lb_qgran g, int64_t group, char *buf, size_t cap)
{
    if (g == LB_QG_GROUP) snprintf(buf, cap, "group:%lld", (long long)group);
    else snprintf(buf, cap, "%s", g == LB_QG_TENSOR ? "tensor" : "channel");
}

/* Sets one field of o from val; item is the text quoted in messages ("w=9" or "w9a4"). */
static lb_status set_key(const qctx *p, const char *item, unsigned bit, const char *val,
                         lb_qoverride *o)
{
    long v;
    int  m;
    if (o->set & bit) return qerr(p, "%s: key '%s' given twice", item, key_name(bit));
    switch (bit) {
    case LB_QSET_W_BITS:
        if (!parse_uint(val, &v) || v > MAX_BITS)
            return qerr(p, "%s: weight bits must be 0..8 (0 = float, 1 = binary)", item);
        o->cfg.w_bits = (int)v;
        break;
    case LB_QSET_A_BITS:
        if (!parse_uint(val, &v) || !abits_ok((int)v))
            return qerr(p, "%s: activation bits must be 0 or 2..8 (0 = float)", item);
        o->cfg.a_bits = (int)v;
        break;
    case LB_QSET_W_METHOD:
        if ((m = find_method(val)) < 0)
            return qerr(p, "%s: unknown quantizer '%s' (known: %s)", item, val, KNOWN_METHODS);
        if (m == LB_QM_PACT)
            return qerr(p, "%s: pact quantizes activations only (use aq=pact)", item);
        o->cfg.w_method = (lb_qmethod)m;
        break;
    case LB_QSET_A_METHOD:
        if ((m = find_method(val)) < 0)
            return qerr(p, "%s: unknown quantizer '%s' (known: %s)", item, val, KNOWN_METHODS);
        if (!act_method((lb_qmethod)m))
            return qerr(p, "%s: %s quantizes weights only (activations: minmax ema lsq pact)", item,
                        val);
        o->cfg.a_method = (lb_qmethod)m;
        break;
    case LB_QSET_GRAN:
        if (!strcmp(val, "tensor") || !strcmp(val, "channel")) {
            o->cfg.w_gran  = val[0] == 't' ? LB_QG_TENSOR : LB_QG_CHANNEL;
            o->cfg.w_group = 0;
        } else if (!strncmp(val, "group", 5) && (val[5] == 0 || val[5] == ':')) {
            if (val[5] == 0 || !parse_uint(val + 6, &v) || v < 1)
                return qerr(p, "%s: gran=group needs a group size >= 1, e.g. group:32", item);
            o->cfg.w_gran  = LB_QG_GROUP;
            o->cfg.w_group = v;
        } else {
            return qerr(p, "%s: expected tensor, channel or group:N", item);
        }
        break;
    default: /* LB_QSET_STE */
        if (strcmp(val, "plain") && strcmp(val, "clipped"))
            return qerr(p, "%s: expected plain or clipped", item);
        o->cfg.ste = val[0] == 'p' ? LB_STE_PLAIN : LB_STE_CLIPPED;
        break;
    }
    o->set |= bit;
    return LB_OK;
}

/* Completes the settings of one spec or line: wq=binary/ternary alone imply w=1/2, w=1 alone
 * implies wq=binary; a method given with bits it cannot do is an error. */
static lb_status finish(const qctx *p, lb_qoverride *o)
{
    lb_qlayer_cfg *c = &o->cfg;
    if ((o->set & LB_QSET_W_METHOD) && !(o->set & LB_QSET_W_BITS) &&
        (c->w_method == LB_QM_BINARY || c->w_method == LB_QM_TERNARY)) {
        c->w_bits = c->w_method == LB_QM_BINARY ? 1 : 2;
        o->set |= LB_QSET_W_BITS;
    }
    if ((o->set & LB_QSET_W_BITS) && !(o->set & LB_QSET_W_METHOD) && c->w_bits == 1) {
        c->w_method = LB_QM_BINARY;
        o->set |= LB_QSET_W_METHOD;
    }
    if ((o->set & LB_QSET_W_BITS) && (o->set & LB_QSET_W_METHOD) &&
        !wbits_ok(c->w_method, c->w_bits))
        return qerr(p, "wq=%s cannot quantize %d-bit weights (%s)", method_names[c->w_method],
                    c->w_bits,
                    c->w_method == LB_QM_BINARY    ? "binary weights have 1 bit"
                    : c->w_method == LB_QM_TERNARY ? "ternary weights count as 2 bits"
                                                   : "1 bit needs wq=binary or wq=dorefa");
    return LB_OK;
}

/* Every way the overrides can combine (a layer may also be first and/or last) must give a
 * valid layer: a method given without bits may land on inherited 1-bit weights. mline[i] is
 * the line that last set wq for first (0), last (1) and layers[i - 2]. */
static lb_status check_combos(const qctx *p0, const lb_qconfig *q, const int *mline)
{
    for (int li = -1; li < q->n_layers; li++) {
        for (int fl = 0; fl < 4; fl++) {
            const lb_qoverride *seq[3];
            int                 idx[3], k = 0;
            if ((fl & 1) && q->first.set) seq[k] = &q->first, idx[k++] = 0;
            if ((fl & 2) && q->last.set) seq[k] = &q->last, idx[k++] = 1;
            if (li >= 0) seq[k] = &q->layers[li], idx[k++] = 2 + li;
            lb_qlayer_cfg c = q->deflt;
            for (int i = 0; i < k; i++) apply(&c, seq[i]);
            if (wbits_ok(c.w_method, c.w_bits)) continue;
            LB_ASSERT(k > 0); /* default lines are validated as they are read */
            int culprit = k - 1;
            while (culprit > 0 && !(seq[culprit]->set & LB_QSET_W_METHOD)) culprit--;
            qctx        p   = *p0;
            const int   i   = idx[culprit];
            const char *who = i == 0 ? "first" : i == 1 ? "last" : q->layers[i - 2].name;
            if (mline && mline[i]) p.line = mline[i];
            return qerr(&p, "%s: wq=%s cannot quantize the %d-bit weights it inherits %s; "
                            "give w= too", who, method_names[c.w_method], c.w_bits,
                        k > 1 ? "when combined with the first/last settings" : "from the default");
        }
    }
    return LB_OK;
}

/* ---- short spec ------------------------------------------------------------------------- */

#define SPEC_HINT "expected e.g. w4a4, fp32, first=8, wq=lsq"

static bool all_digits(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return false;
    return true;
}

/* wN, wt, aN, wNaN, wtaN into the default's settings d. */
static lb_status spec_bits(const qctx *p, const char *item, lb_qoverride *d)
{
    char        wv[8] = "", av[8] = "";
    bool        has_w = false, has_a = false;
    const char *s     = item;
    size_t      n     = 0;
    if (*s == 'w') {
        has_w = true;
        for (s++; *s && *s != 'a'; s++) {
            if (n + 1 >= sizeof wv) return qerr(p, "unknown item '%s' (%s)", item, SPEC_HINT);
            wv[n++] = *s;
        }
    }
    if (*s == 'a') {
        has_a = true;
        if (strlen(s + 1) >= sizeof av) return qerr(p, "unknown item '%s' (%s)", item, SPEC_HINT);
        strcpy(av, s + 1);
    }
    if ((has_w && !wv[0]) || (has_a && !av[0]))
        return qerr(p, "%s: expected a bit count after w or a, e.g. w4a4", item);
    if ((has_w && strcmp(wv, "t") && !all_digits(wv)) || (has_a && !all_digits(av)))
        return qerr(p, "unknown item '%s' (%s)", item, SPEC_HINT);
    lb_status st;
    if (has_w && !strcmp(wv, "t")) { /* ternary: 2-bit weights, TWN quantizer */
        if ((st = set_key(p, item, LB_QSET_W_BITS, "2", d)) ||
            (st = set_key(p, item, LB_QSET_W_METHOD, "ternary", d)))
            return st;
    } else if (has_w && (st = set_key(p, item, LB_QSET_W_BITS, wv, d))) {
        return st;
    }
    return has_a ? set_key(p, item, LB_QSET_A_BITS, av, d) : LB_OK;
}

static lb_status spec_item(const qctx *p, char *item, lb_qoverride *d, lb_qconfig *q)
{
    char *eq = strchr(item, '=');
    if (!eq) {
        if (!strcmp(item, "fp32")) {
            lb_status st;
            if ((st = set_key(p, item, LB_QSET_W_BITS, "0", d))) return st;
            return set_key(p, item, LB_QSET_A_BITS, "0", d);
        }
        if (item[0] == 'w' || item[0] == 'a') return spec_bits(p, item, d);
        return qerr(p, "unknown item '%s' (%s)", item, SPEC_HINT);
    }
    char key[MAX_ITEM];
    snprintf(key, sizeof key, "%.*s", (int)(eq - item), item);
    const char *val = eq + 1;
    if (!strcmp(key, "first") || !strcmp(key, "last")) {
        lb_qoverride *o = key[0] == 'f' ? &q->first : &q->last;
        long          v;
        if (o->set) return qerr(p, "%s: key '%s' given twice", item, key);
        if (!parse_uint(val, &v) || !abits_ok((int)v))
            return qerr(p, "%s: bits must be 0 or 2..8 (0 = float)", item);
        o->set        = LB_QSET_W_BITS | LB_QSET_A_BITS;
        o->cfg.w_bits = o->cfg.a_bits = (int)v;
        return LB_OK;
    }
    const unsigned bit = key_bit(key);
    if (!bit || bit == LB_QSET_W_BITS || bit == LB_QSET_A_BITS)
        return qerr(p, "%s: unknown key '%s' (known: first last wq aq gran ste)", item, key);
    return set_key(p, item, bit, val, d);
}

lb_status lb_qconfig_parse_spec(const char *spec, lb_qconfig *out, lb_error *err)
{
    LB_ASSERT(spec && out);
    const qctx   p = { .spec = spec, .err = err };
    lb_qconfig   q = lb_qconfig_float();
    lb_qoverride d = { .cfg = q.deflt }; /* the settings for the default */
    lb_status    st;
    const char  *s = spec;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return qerr(&p, "empty (try w4a4, w2a2,first=8,last=8 or fp32)");
    for (;;) {
        const char *e   = strchr(s, ',');
        size_t      len = e ? (size_t)(e - s) : strlen(s);
        while (len && isspace((unsigned char)*s)) s++, len--;
        while (len && isspace((unsigned char)s[len - 1])) len--;
        if (!len) return qerr(&p, "empty item (stray comma?)");
        if (len >= MAX_ITEM) return qerr(&p, "item '%.20s...' too long", s);
        char item[MAX_ITEM];
        memcpy(item, s, len);
        item[len] = 0;
        if ((st = spec_item(&p, item, &d, &q))) return st;
        if (!e) break;
        s = e + 1;
    }
    if ((st = finish(&p, &d))) return st;
    apply(&q.deflt, &d);
    if ((st = check_combos(&p, &q, NULL))) return st;
    *out = q;
    return LB_OK;
}

/* ---- file ------------------------------------------------------------------------------ */

/* Splits a line into whitespace-separated tokens (in place); returns the count, or max + 1
 * when there are more than max. */
static int tokenize(char *line, char **tok, int max)
{
    int n = 0;
    for (char *s = line;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (!*s) return n;
        if (n == max) return max + 1;
        tok[n++] = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\r') s++;
        if (*s) *s++ = 0;
    }
}

static lb_status parse_line(const qctx *p, char *line, lb_qconfig *q, int *mline)
{
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *tok[MAX_TOKENS + 1];
    const int nt = tokenize(line, tok, MAX_TOKENS);
    if (nt == 0) return LB_OK;
    if (nt > MAX_TOKENS) return qerr(p, "too many fields (max %d)", MAX_TOKENS);
    int         k0;       /* first settings token */
    const char *name = NULL;
    if (!strcmp(tok[0], "default") || !strcmp(tok[0], "first") || !strcmp(tok[0], "last")) {
        k0 = 1;
    } else if (!strcmp(tok[0], "layer")) {
        if (nt < 2 || strchr(tok[1], '='))
            return qerr(p, "layer needs a name: layer NAME key=value ...");
        name = tok[1];
        if ((int)strlen(name) >= NAME_CAP)
            return qerr(p, "layer name '%.60s' too long (max %d characters)", name, NAME_CAP - 1);
        k0 = 2;
    } else {
        return qerr(p, "unknown directive '%s' (known: default first last layer)", tok[0]);
    }
    if (k0 == nt) return qerr(p, "%s: no settings (expected key=value, e.g. w=4)", tok[0]);
    lb_qoverride o = { .cfg = default_cfg() };
    lb_status    st;
    for (int i = k0; i < nt; i++) {
        const char *eq = strchr(tok[i], '=');
        if (!eq || eq == tok[i] || !eq[1]) return qerr(p, "'%s': expected key=value", tok[i]);
        char key[8] = "";
        if (eq - tok[i] < (long)sizeof key) memcpy(key, tok[i], (size_t)(eq - tok[i]));
        const unsigned bit = key_bit(key);
        if (!bit)
            return qerr(p, "%s: unknown key '%.*s' (known: w a wq aq gran ste)", tok[0],
                        (int)(eq - tok[i]), tok[i]);
        if ((st = set_key(p, tok[i], bit, eq + 1, &o))) return st;
    }
    if ((st = finish(p, &o))) return st;

    if (tok[0][0] == 'd') { /* default: later lines override earlier ones, field by field */
        apply(&q->deflt, &o);
        if (!wbits_ok(q->deflt.w_method, q->deflt.w_bits))
            return qerr(p, "wq=%s cannot quantize the %d-bit weights of an earlier line; "
                           "give w= too", method_names[q->deflt.w_method], q->deflt.w_bits);
        return LB_OK;
    }
    lb_qoverride *dst;
    int           slot;
    if (name) {
        int i = 0;
        while (i < q->n_layers && strcmp(q->layers[i].name, name)) i++;
        if (i == q->n_layers) {
            if (i == LB_QCONFIG_MAX_LAYERS)
                return qerr(p, "too many layer overrides (max %d)", LB_QCONFIG_MAX_LAYERS);
            q->layers[i] = (lb_qoverride){ .cfg = default_cfg() };
            snprintf(q->layers[i].name, sizeof q->layers[i].name, "%s", name);
            q->n_layers++;
        }
        dst  = &q->layers[i];
        slot = 2 + i;
    } else {
        dst  = tok[0][0] == 'f' ? &q->first : &q->last;
        slot = tok[0][0] == 'f' ? 0 : 1;
    }
    merge(dst, &o);
    if ((dst->set & LB_QSET_W_BITS) && (dst->set & LB_QSET_W_METHOD) &&
        !wbits_ok(dst->cfg.w_method, dst->cfg.w_bits))
        return qerr(p, "wq=%s cannot quantize the %d-bit weights of an earlier line; give w= too",
                    method_names[dst->cfg.w_method], dst->cfg.w_bits);
    if (o.set & LB_QSET_W_METHOD) mline[slot] = p->line;
    return LB_OK;
}

lb_status lb_qconfig_parse_text(const char *text, const char *origin, lb_qconfig *out,
                                lb_error *err)
{
    LB_ASSERT(text && out);
    qctx       p = { .origin = origin ? origin : "(text)", .err = err };
    lb_qconfig q = lb_qconfig_float();
    int        mline[2 + LB_QCONFIG_MAX_LAYERS] = { 0 };
    lb_status  st;
    for (const char *s = text; *s;) {
        const char  *e   = strchr(s, '\n');
        const size_t len = e ? (size_t)(e - s) : strlen(s);
        char         line[MAX_LINE];
        p.line++;
        if (len >= sizeof line) return qerr(&p, "line too long (max %d characters)", MAX_LINE - 1);
        memcpy(line, s, len);
        line[len] = 0;
        if ((st = parse_line(&p, line, &q, mline))) return st;
        if (!e) break;
        s = e + 1;
    }
    if ((st = check_combos(&p, &q, mline))) return st;
    *out = q;
    return LB_OK;
}

lb_status lb_qconfig_parse_file(const char *path, lb_qconfig *out, lb_error *err)
{
    char *buf;
    lb_status st = lb_read_text_file(path, MAX_FILE, "a quantization config", &buf, err);
    if (st) return st;
    st = lb_qconfig_parse_text(buf, path, out, err);
    free(buf);
    return st;
}

/* ---- checks and output ----------------------------------------------------------------- */

lb_status lb_qconfig_check_names(const lb_qconfig *qc, const char *const *names, int n,
                                 lb_error *err)
{
    for (int i = 0; i < qc->n_layers; i++) {
        const char *want  = qc->layers[i].name;
        bool        found = false;
        for (int j = 0; j < n && !found; j++) found = !strcmp(names[j], want);
        if (found) continue;
        char   list[300] = "";
        size_t len       = 0;
        for (int j = 0; j < n; j++) {
            const size_t k = strlen(names[j]);
            if (len + k + 5 >= sizeof list) {
                memcpy(list + len, " ...", 5);
                break;
            }
            if (j) list[len++] = ' ';
            memcpy(list + len, names[j], k + 1);
            len += k;
        }
        return lb_errorf(err, LB_ERR_ARG,
                         "quant config: layer '%s' is not in the model (quantizable layers: %s)",
                         want, n ? list : "none");
    }
    return LB_OK;
}

/* Appends to buf[*len..cap); false when it does not fit. */
static bool put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *len) return false;
    *len += (size_t)k;
    return true;
}

/* One file line: "<head> key=value ...\n" for the fields o sets. */
static bool put_line(char *buf, size_t cap, size_t *len, const char *head, const lb_qoverride *o)
{
    const lb_qlayer_cfg *c = &o->cfg;
    const char          *wq = lb_qmethod_name(c->w_method), *aq = lb_qmethod_name(c->a_method);
    char                 g[32];
    gran_str(c->w_gran, c->w_group, g, sizeof g);
    return put(buf, cap, len, "%s", head) &&
           (!(o->set & LB_QSET_W_BITS) || put(buf, cap, len, " w=%d", c->w_bits)) &&
           (!(o->set & LB_QSET_A_BITS) || put(buf, cap, len, " a=%d", c->a_bits)) &&
           (!(o->set & LB_QSET_W_METHOD) || put(buf, cap, len, " wq=%s", wq)) &&
           (!(o->set & LB_QSET_A_METHOD) || put(buf, cap, len, " aq=%s", aq)) &&
           (!(o->set & LB_QSET_GRAN) || put(buf, cap, len, " gran=%s", g)) &&
           (!(o->set & LB_QSET_STE) ||
            put(buf, cap, len, " ste=%s", c->ste == LB_STE_PLAIN ? "plain" : "clipped")) &&
           put(buf, cap, len, "\n");
}

int lb_qconfig_to_text(const lb_qconfig *qc, char *buf, size_t cap)
{
    if (!buf || cap == 0) return -1;
    buf[0]     = 0;
    size_t len = 0;
    const lb_qoverride d = { .set = SET_ALL, .cfg = qc->deflt };
    if (!put(buf, cap, &len, "# lowbit quantization config\n") ||
        !put_line(buf, cap, &len, "default", &d))
        return -1;
    if (qc->first.set && !put_line(buf, cap, &len, "first", &qc->first)) return -1;
    if (qc->last.set && !put_line(buf, cap, &len, "last", &qc->last)) return -1;
    for (int i = 0; i < qc->n_layers; i++) {
        char head[8 + sizeof qc->layers[i].name];
        if (!qc->layers[i].set) continue; /* nothing to say; the parser rejects empty lines */
        snprintf(head, sizeof head, "layer %s", qc->layers[i].name);
        if (!put_line(buf, cap, &len, head, &qc->layers[i])) return -1;
    }
    return len > INT_MAX ? -1 : (int)len;
}

static bool uses_ste(lb_qmethod m)
{
    return m == LB_QM_MINMAX || m == LB_QM_EMA;
}

void lb_qlayer_cfg_str(const lb_qlayer_cfg *c, char *buf, size_t cap)
{
    if (!buf || cap == 0) return;
    const bool w = c->w_bits > 0, a = c->a_bits > 0;
    if (!w && !a) {
        snprintf(buf, cap, "fp32");
        return;
    }
    char bits[24], meth[24], gran[40] = "";
    if (w && a) {
        snprintf(bits, sizeof bits, "w%da%d", c->w_bits, c->a_bits);
        snprintf(meth, sizeof meth, "%s/%s", lb_qmethod_name(c->w_method),
                 lb_qmethod_name(c->a_method));
    } else {
        snprintf(bits, sizeof bits, "%c%d", w ? 'w' : 'a', w ? c->w_bits : c->a_bits);
        snprintf(meth, sizeof meth, "%s", lb_qmethod_name(w ? c->w_method : c->a_method));
    }
    if (w) {
        gran[0] = ' ';
        gran_str(c->w_gran, c->w_group, gran + 1, sizeof gran - 1);
    }
    const bool ste = c->ste == LB_STE_PLAIN &&
                     ((w && uses_ste(c->w_method)) || (a && uses_ste(c->a_method)));
    snprintf(buf, cap, "%s %s%s%s", bits, meth, gran, ste ? " ste=plain" : "");
}

bool lb_qconfig_is_float(const lb_qconfig *qc)
{
    if (qc->deflt.w_bits || qc->deflt.a_bits) return false;
    for (int i = -2; i < qc->n_layers; i++) {
        const lb_qoverride *o = i == -2 ? &qc->first : i == -1 ? &qc->last : &qc->layers[i];
        if (((o->set & LB_QSET_W_BITS) && o->cfg.w_bits) ||
            ((o->set & LB_QSET_A_BITS) && o->cfg.a_bits))
            return false;
    }
    return true;
}
