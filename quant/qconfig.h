/* qconfig.h: per-layer bit configuration, from a short spec or a file.
 *
 * A configuration has defaults plus optional settings for the first and last quantizable
 * layers (conv/linear in execution order) and for layers named explicitly (names as
 * `lowbit inspect` prints them). Bits 0 mean "keep float".
 *
 * Short spec (command line):  w4a4 | w2a2,first=8,last=8 | w4a8,wq=lsq,aq=pact,gran=group:32
 *   Comma-separated items (spaces around an item are ignored), each setting at most once.
 *   wN / aN / wNaN   weight bits 0..8 and activation bits 0 or 2..8; w1 = binary weights
 *                    (wq=binary), "wt" = ternary (w=2 wq=ternary); w0 keeps weights float
 *   fp32             everything float (w0a0)
 *   first=N last=N   both bits of the first/last layer, N = 0 (float) or 2..8
 *   wq=M  aq=M       quantizer: minmax, ema, lsq, pact (activations), dorefa, binary,
 *                    ternary (weights)
 *   gran=G           weight scales: tensor, channel, group:N (N >= 1)
 *   ste=S            plain or clipped (for minmax/ema)
 * Unnamed fields: LSQ for weights and activations, per-channel scales, clipped STE, bits 0.
 *
 * File (one directive per line, '#' comments; later lines override earlier ones):
 *   default w=4 a=4 wq=lsq aq=lsq gran=channel ste=clipped
 *   first   w=8 a=8
 *   last    w=8 a=8
 *   layer conv2 w=2 a=4 wq=minmax
 * Keys are w a wq aq gran ste with the values above; every directive needs at least one, and
 * each key appears at most once per line. Lines for the same target (default, first, last,
 * or one layer name) merge field by field. Layer names have at most 47 characters, there are
 * at most LB_QCONFIG_MAX_LAYERS of them, and lines are at most 1023 characters.
 *
 * Methods and weight bits must fit (in specs and files alike): binary means 1 bit, ternary
 * 2, dorefa 1..8, minmax/ema/lsq 2..8; pact is for activations only, dorefa/binary/ternary
 * for weights only. Within one spec or line, wq=binary/ternary without w implies w=1/2, and
 * w=1 without wq implies wq=binary. Because a parser does not know which layer will be first
 * or last, every combination default -> first -> last -> layer must fit too (e.g. default w=1
 * with "layer fc wq=lsq" and no w= is an error).
 * Any error in a spec is LB_ERR_ARG "quant spec '<spec>': <what>"; in a file LB_ERR_FORMAT
 * "<path>:<line>: <what>". Unknown layer names are caught by lb_qconfig_check_names once the
 * model is known. On any error *out is left unchanged.
 *
 *     lb_qconfig qc;
 *     if (lb_qconfig_parse_spec("w4a4,first=8,last=8", &qc, &err)) ...
 *     lb_qlayer_cfg c = lb_qconfig_for(&qc, "conv1", true, false);
 */
#ifndef LB_QCONFIG_H
#define LB_QCONFIG_H

#include <stdbool.h>

#include "autograd/status.h"
#include "quant/fake_quant.h"

typedef enum lb_qmethod {
    LB_QM_MINMAX = 0, /* running min/max observer, fixed-scale fake quant with STE        */
    LB_QM_EMA,        /* EMA observer, frozen after a number of steps                     */
    LB_QM_LSQ,        /* learned step size                                                */
    LB_QM_PACT,       /* learned clipping level (activations only)                        */
    LB_QM_DOREFA,     /* tanh-normalised weights (weights only)                           */
    LB_QM_BINARY,     /* sign * mean|w| (weights only; implies 1 bit)                     */
    LB_QM_TERNARY,    /* {-a, 0, +a} (weights only; implies 2 levels)                     */
    LB_QM_COUNT
} lb_qmethod;

typedef struct lb_qlayer_cfg {
    int        w_bits, a_bits; /* 0 = float                                                */
    lb_qmethod w_method, a_method;
    lb_qgran   w_gran;
    int64_t    w_group;        /* G for LB_QG_GROUP                                         */
    lb_ste     ste;
} lb_qlayer_cfg;

/* Which fields of an override were given (so "layer conv2 w=2" keeps the default a bits). */
enum {
    LB_QSET_W_BITS = 1u << 0, LB_QSET_A_BITS = 1u << 1, LB_QSET_W_METHOD = 1u << 2,
    LB_QSET_A_METHOD = 1u << 3, LB_QSET_GRAN = 1u << 4, LB_QSET_STE = 1u << 5,
};

typedef struct lb_qoverride {
    char          name[48];   /* layer name, or "" for first/last                          */
    unsigned      set;        /* LB_QSET_* bits                                            */
    lb_qlayer_cfg cfg;
} lb_qoverride;

#define LB_QCONFIG_MAX_LAYERS 256

typedef struct lb_qconfig {
    lb_qlayer_cfg deflt;
    lb_qoverride  first, last;                       /* .set == 0: not given          */
    int           n_layers;
    lb_qoverride  layers[LB_QCONFIG_MAX_LAYERS];
} lb_qconfig;

/* All float (the default of an unquantized run). */
lb_qconfig lb_qconfig_float(void);
/* Parses a short spec; LB_ERR_ARG naming the bad part. Defaults for unnamed fields: LSQ for
 * weights and activations, per-channel weight scales, clipped STE. */
lb_status lb_qconfig_parse_spec(const char *spec, lb_qconfig *out, lb_error *err);
/* Parses a configuration file; LB_ERR_FORMAT "<path>:<line>: ..." or LB_ERR_IO. */
lb_status lb_qconfig_parse_file(const char *path, lb_qconfig *out, lb_error *err);
/* Same, from text already in memory; origin names it in messages. */
lb_status lb_qconfig_parse_text(const char *text, const char *origin, lb_qconfig *out,
                                lb_error *err);
/* The settings of one layer: the defaults, then first (if is_first), then last (if is_last),
 * then the override named layer (layer may be NULL), each replacing only the fields it sets.
 * Bits given without a method on top of binary/ternary weights (fixed widths) switch the
 * method to LSQ (binary for 1 bit): "w1a4,first=8" gives an 8-bit LSQ first layer. For a
 * configuration from the parsers the result always satisfies the method/bits rules above. */
lb_qlayer_cfg lb_qconfig_for(const lb_qconfig *qc, const char *layer, bool is_first,
                             bool is_last);
/* LB_ERR_ARG when an override names a layer not in names[0..n); the message names the
 * layer and lists the model's names. */
lb_status lb_qconfig_check_names(const lb_qconfig *qc, const char *const *names, int n,
                                 lb_error *err);
/* Writes the configuration as file text: a comment, a default line with every field, then
 * one line per override with the fields it sets (overrides that set nothing are left out).
 * parse_text reads it back to an equal configuration. Returns the length (without the NUL),
 * or -1 when it does not fit in cap bytes (buf then holds a truncated, terminated prefix). */
int lb_qconfig_to_text(const lb_qconfig *qc, char *buf, size_t cap);
/* Short description of one layer's settings, truncated to cap: "fp32" when both bits are 0,
 * else bits, method(s) and weight scales, e.g. "w4a4 lsq/lsq channel", "w8 lsq tensor",
 * "a8 pact", "w4a4 minmax/ema group:32 ste=plain" (ste shown only when plain and used). */
void lb_qlayer_cfg_str(const lb_qlayer_cfg *c, char *buf, size_t cap);
/* True when every layer stays float: default and every override have (or inherit) bits 0. */
bool lb_qconfig_is_float(const lb_qconfig *qc);

/* "minmax", "ema", "lsq", "pact", "dorefa", "binary", "ternary"; "?" out of range. */
const char *lb_qmethod_name(lb_qmethod m);
/* Inverse of lb_qmethod_name; LB_ERR_ARG "unknown quantizer '<s>' (known: ...)". */
lb_status lb_qmethod_parse(const char *s, lb_qmethod *out, lb_error *err);

#endif
