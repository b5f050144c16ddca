/* fuzz_qconfig.c: libFuzzer target for quantization configurations (quant/qconfig.c): the
 * file parser (lb_qconfig_parse_text) on the whole input, and the short-spec parser
 * (lb_qconfig_parse_spec) on its first line.
 *
 * Oracles: a failure has the documented status (LB_ERR_FORMAT naming the origin for files,
 * LB_ERR_ARG "quant spec ..." for specs). A parsed configuration keeps the documented
 * promises: every layer it can give (default, first and/or last, each named layer) has a
 * method that fits its bits (binary 1, ternary 2, dorefa 1..8, others 2..8; pact never for
 * weights; activations 0 or 2..8 with minmax/ema/lsq/pact); lb_qconfig_is_float agrees with
 * those layers; and lb_qconfig_to_text writes text that parses back to the same text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant/qconfig.h"
#include "tests/fuzz/fuzz_util.h"

#define ORIGIN "fuzz.q"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_layer(const lb_qlayer_cfg *c)
{
    const int w = c->w_bits, a = c->a_bits;
    bool      ok;
    switch (c->w_method) {
    case LB_QM_BINARY: ok = w == 0 || w == 1; break;
    case LB_QM_TERNARY: ok = w == 0 || w == 2; break;
    case LB_QM_DOREFA: ok = w >= 0 && w <= 8; break;
    case LB_QM_PACT: ok = w == 0; break;
    case LB_QM_MINMAX: case LB_QM_EMA: case LB_QM_LSQ: ok = w == 0 || (w >= 2 && w <= 8); break;
    default: ok = false; break;
    }
    if (!ok) __builtin_trap();
    if (!(a == 0 || (a >= 2 && a <= 8))) __builtin_trap();
    if (c->a_method != LB_QM_MINMAX && c->a_method != LB_QM_EMA && c->a_method != LB_QM_LSQ &&
        c->a_method != LB_QM_PACT)
        __builtin_trap();
    if (c->w_gran == LB_QG_GROUP ? c->w_group < 1 : c->w_group != 0) __builtin_trap();
    char desc[80];
    lb_qlayer_cfg_str(c, desc, sizeof desc);
    if (!desc[0]) __builtin_trap();
}

static void check_config(const lb_qconfig *q)
{
    if (q->n_layers < 0 || q->n_layers > LB_QCONFIG_MAX_LAYERS) __builtin_trap();
    bool any_quant = false;
    for (int li = -1; li < q->n_layers; li++)
        for (int fl = 0; fl < 4; fl++) {
            const lb_qlayer_cfg c =
                lb_qconfig_for(q, li >= 0 ? q->layers[li].name : NULL, fl & 1, fl & 2);
            check_layer(&c);
            any_quant |= c.w_bits || c.a_bits;
        }
    if (lb_qconfig_is_float(q) == any_quant) __builtin_trap();

    /* to_text -> parse_text -> to_text gives the same text */
    static char t1[1 << 16], t2[1 << 16];
    static lb_qconfig back;
    lb_error err = { 0 };
    if (lb_qconfig_to_text(q, t1, sizeof t1) < 0) __builtin_trap();
    if (lb_qconfig_parse_text(t1, "to_text", &back, &err) != LB_OK) __builtin_trap();
    if (lb_qconfig_to_text(&back, t2, sizeof t2) < 0 || strcmp(t1, t2)) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lb_qconfig q;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;

    lb_error  err = { 0 };
    lb_status st  = lb_qconfig_parse_text(text, ORIGIN, &q, &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, ORIGIN);
        if (st != LB_ERR_FORMAT) __builtin_trap();
    } else {
        check_config(&q);
    }

    char *nl = strchr(text, '\n');
    if (nl) *nl = 0;
    st = lb_qconfig_parse_spec(text, &q, &err);
    if (st != LB_OK) {
        fuzz_check_error(st, &err, "quant spec");
        if (st != LB_ERR_ARG) __builtin_trap();
    } else {
        check_config(&q);
    }
    free(text);
    return 0;
}
