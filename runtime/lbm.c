/* lbm.c: the .lbm loader, the arena planner and the integer kernels of lowbit's deployment
 * runtime (docs/FORMAT.md is the specification; its section 5 is what lbm_load checks).
 *
 * Portable C99, libc's <string.h> only. It does not allocate, does not use floating point
 * (the f32 fields of a file are informative and never read), does not cast the file to
 * structs (every field is read with the little-endian byte readers below) and does not
 * trust a byte of the file before checking it. Kernels are plain loops written for 32-bit
 * microcontrollers (runtime/mcu runs them on a Cortex-M4): no division or 64-bit arithmetic
 * in an inner loop and no 64-bit division anywhere, byte loads only on file data (no
 * unaligned access), packed weights unpacked once per output channel where they are reused,
 * the short convolution rows of the usual 3x3 and 5x5 kernels written out. dot() is the
 * straightforward reference for any width; the faster paths give the same sums (integer
 * sums modulo 2^32 do not depend on the order).
 *
 * Legend: C, H, W input channels, height, width; O output channels (or features); Ho, Wo
 * output height and width; K weights per output channel (C*kh*kw for CONV2D, the input's
 * element count for LINEAR); t a tensor index; i an op index.
 */
#include "runtime/lbm.h"

#include <stdarg.h>
#include <string.h>

#define HEADER_SIZE     64u
#define MAX_SECTIONS    16u
#define MAX_DIM         65535u
#define MAX_NUMEL       (1u << 24)
#define MAX_K           (1u << 24)   /* our limit on CONV2D's C*kh*kw (LINEAR's K <= numel) */
#define NO_OFFSET       0xFFFFFFFFu
#define MULT_MIN        (1 << 30)

/* ---- little-endian readers and small integer helpers ------------------------------------ */

static uint32_t rd_u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Two's-complement reinterpretation without implementation-defined conversions. */
static int32_t u32_to_i32(uint32_t u)
{
    return u <= 0x7FFFFFFFu ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7FFFFFFF - 1;
}

static int32_t rd_i32(const uint8_t *p) { return u32_to_i32(rd_u32(p)); }

/* A byte of an INT8 tensor or weight as its value: (b ^ 0x80) - 0x80 sign-extends. */
static int32_t s8(uint8_t b) { return (int32_t)(b ^ 0x80u) - 0x80; }

static uint64_t align4(uint64_t n) { return (n + 3u) & ~(uint64_t)3u; }

/* Arithmetic right shift (C leaves >> of a negative value implementation-defined). */
static int64_t asr64(int64_t v, int s) { return v >= 0 ? v >> s : ~(~v >> s); }

static int32_t sat32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

/* ---- error messages (no stdio: a tiny formatter for %s and %d = long long) -------------- */

typedef struct msgbuf {
    char  *s;
    size_t cap, len;
} msgbuf;

#define LL(x) ((long long)(x))

static void msg_putc(msgbuf *e, char c)
{
    if (e->s && e->len + 1 < e->cap) {
        e->s[e->len++] = c;
        e->s[e->len] = '\0';
    }
}

/* Decimal digits by subtracting powers of ten: no 64-bit division (a libgcc call on 32-bit
 * targets), even on the error path. */
static void msg_putd(msgbuf *e, long long v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    unsigned long long p[20];
    int                started = 0;
    p[0] = 1;
    for (int i = 1; i < 20; i++) p[i] = p[i - 1] * 10u;
    if (v < 0) msg_putc(e, '-');
    for (int i = 19; i >= 0; i--) {
        int d = 0;
        while (u >= p[i]) u -= p[i], d++;
        if (d || started || i == 0) {
            msg_putc(e, (char)('0' + d));
            started = 1;
        }
    }
}

/* Writes the message (truncated to the caller's capacity) and returns s. */
static lbm_status fail(msgbuf *e, lbm_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    e->len = 0;
    if (e->s && e->cap) e->s[0] = '\0';
    for (const char *f = fmt; *f; f++) {
        if (f[0] == '%' && f[1] == 's') {
            for (const char *a = va_arg(ap, const char *); *a; a++) msg_putc(e, *a);
            f++;
        } else if (f[0] == '%' && f[1] == 'd') {
            msg_putd(e, va_arg(ap, long long));
            f++;
        } else {
            msg_putc(e, *f);
        }
    }
    va_end(ap);
    return s;
}

/* ---- CRC-32 (ISO-HDLC: reflected 0xEDB88320, as zlib), four bits at a time -------------- */

uint32_t lbm_crc32(uint32_t crc, const void *p, size_t n)
{
    static const uint32_t tab[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
        0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
    };
    const uint8_t *b = p;
    crc = ~crc;
    for (size_t k = 0; k < n; k++) {
        crc = (crc >> 4) ^ tab[(crc ^ b[k]) & 15u];
        crc = (crc >> 4) ^ tab[(crc ^ ((uint32_t)b[k] >> 4)) & 15u];
    }
    return ~crc;
}

const char *lbm_status_str(lbm_status s)
{
    switch (s) {
    case LBM_OK:          return "ok";
    case LBM_ERR_ARG:     return "invalid argument";
    case LBM_ERR_FORMAT:  return "malformed file";
    case LBM_ERR_VERSION: return "unsupported version";
    case LBM_ERR_CRC:     return "checksum mismatch";
    }
    return "unknown status";
}

/* ---- records: decoded into locals, never by casting the file ---------------------------- */

typedef struct tinfo {
    uint32_t dtype, n_dims, d[3];
    uint32_t numel;   /* product of the used dims (valid once the record is validated) */
} tinfo;

typedef struct opinfo {
    uint32_t kind, n_in, in[2], out, data_off, data_size;
    int32_t  attr[10];
} opinfo;

static const uint8_t *tensor_rec(const lbm_model *m, uint32_t t)
{
    return m->graph + 16u + 32u * (size_t)t;
}

static const uint8_t *op_rec(const lbm_model *m, uint32_t i)
{
    return m->graph + 16u + 32u * (size_t)m->n_tensors + 64u * (size_t)i;
}

static tinfo tensor_info(const lbm_model *m, uint32_t t)
{
    const uint8_t *r = tensor_rec(m, t);
    tinfo ti;
    ti.dtype  = r[0];
    ti.n_dims = r[1];
    ti.numel  = 1;
    for (uint32_t k = 0; k < 3; k++) {
        ti.d[k] = rd_u32(r + 4 + 4 * k);
        if (k < ti.n_dims && ti.d[k] <= MAX_DIM) ti.numel *= ti.d[k];
    }
    return ti;
}

static uint32_t elem_size(uint32_t dtype) { return dtype == LBM_INT32 ? 4u : 1u; }

/* Bytes a tensor takes in the arena: every tensor starts 4-byte aligned. */
static uint32_t tensor_bytes(const lbm_model *m, uint32_t t)
{
    tinfo ti = tensor_info(m, t);
    return (uint32_t)align4((uint64_t)ti.numel * elem_size(ti.dtype));
}

static void op_read(const lbm_model *m, uint32_t i, opinfo *op)
{
    const uint8_t *r = op_rec(m, i);
    op->kind      = rd_u16(r);
    op->n_in      = rd_u16(r + 2);
    op->in[0]     = rd_u32(r + 4);
    op->in[1]     = rd_u32(r + 8);
    op->out       = rd_u32(r + 12);
    op->data_off  = rd_u32(r + 16);
    op->data_size = rd_u32(r + 20);
    for (int a = 0; a < 10; a++) op->attr[a] = rd_i32(r + 24 + 4 * a);
}

static const char *const kind_names[11] = {
    "?", "INPUT", "CONV2D", "LINEAR", "MAXPOOL", "AVGPOOL", "GAP", "ADD", "RELU", "REQUANT",
    "FLATTEN",
};

/* Which attr[] slots each kind uses (bit a = attr[a]); the others must be 0. */
static const uint16_t attr_used[11] = {
    [LBM_OP_CONV2D] = 0x1FF, [LBM_OP_LINEAR] = 0x1E1, [LBM_OP_MAXPOOL] = 0x07,
    [LBM_OP_AVGPOOL] = 0x07, [LBM_OP_REQUANT] = 0xC3,
};

/* ---- loader: header and section table --------------------------------------------------- */

static lbm_status check_header(const uint8_t *b, size_t size, uint32_t *n_sections, msgbuf *e)
{
    static const uint8_t magic[4] = { 0x4C, 0x42, 0x4D, 0x46 };
    if (size < 8 || memcmp(b, magic, 4) != 0)
        return fail(e, LBM_ERR_FORMAT, "not an .lbm file (%d bytes; expected magic \"LBMF\")",
                    LL(size));
    if (rd_u16(b + 4) != LBM_VERSION_MAJOR)
        return fail(e, LBM_ERR_VERSION, "format version %d.%d (this runtime reads %d.x)",
                    LL(rd_u16(b + 4)), LL(rd_u16(b + 6)), LL(LBM_VERSION_MAJOR));
    if (size < HEADER_SIZE)
        return fail(e, LBM_ERR_FORMAT, "file is %d bytes, shorter than the 64-byte header",
                    LL(size));
    if (lbm_crc32(0, b, 60) != rd_u32(b + 60))
        return fail(e, LBM_ERR_CRC, "header CRC mismatch (file corrupt)");
    if (rd_u32(b + 8) != HEADER_SIZE)
        return fail(e, LBM_ERR_FORMAT, "header_size is %d (expected 64)", LL(rd_u32(b + 8)));
    *n_sections = rd_u32(b + 12);
    if (*n_sections < 1 || *n_sections > MAX_SECTIONS)
        return fail(e, LBM_ERR_FORMAT, "n_sections is %d (expected 1..16)", LL(*n_sections));
    if (rd_u32(b + 16) != size)
        return fail(e, LBM_ERR_FORMAT, "file_size field says %d bytes, got %d (truncated?)",
                    LL(rd_u32(b + 16)), LL(size));
    if (rd_u32(b + 20) != 0)
        return fail(e, LBM_ERR_FORMAT, "flags are %d (expected 0)", LL(rd_u32(b + 20)));
    for (uint32_t k = 24; k < 60; k++)
        if (b[k] != 0) return fail(e, LBM_ERR_FORMAT, "reserved header byte %d is not 0", LL(k));
    return LBM_OK;
}

/* Section table: every section 16-aligned, after the table, inside the file, disjoint from
 * the others and with a matching CRC; META, GRAPH and DATA exactly once (other types, which
 * a later minor version may add, are checked the same way and otherwise ignored); every
 * byte that belongs to no section is zero. */
static lbm_status check_sections(lbm_model *m, const uint8_t *b, uint32_t size, uint32_t n,
                                 msgbuf *e)
{
    static const char *const names[4] = { "", "META", "GRAPH", "DATA" };
    uint32_t off[MAX_SECTIONS], len[MAX_SECTIONS], order[MAX_SECTIONS];
    const uint8_t *found[4] = { NULL, NULL, NULL, NULL };
    uint32_t found_size[4] = { 0, 0, 0, 0 };
    const uint32_t table_end = HEADER_SIZE + 16u * n;
    if (table_end > size)
        return fail(e, LBM_ERR_FORMAT, "section table (%d entries) ends past the file (%d bytes)",
                    LL(n), LL(size));
    for (uint32_t s = 0; s < n; s++) {
        const uint8_t *r = b + HEADER_SIZE + 16u * s;
        const uint32_t type = rd_u32(r);
        off[s] = rd_u32(r + 4);
        len[s] = rd_u32(r + 8);
        if (off[s] % 16u != 0 || off[s] < table_end)
            return fail(e, LBM_ERR_FORMAT,
                        "section %d: offset %d is not a multiple of 16 at or after %d", LL(s),
                        LL(off[s]), LL(table_end));
        if ((uint64_t)off[s] + len[s] > size)
            return fail(e, LBM_ERR_FORMAT, "section %d: [%d, +%d) lies outside the file (%d bytes)",
                        LL(s), LL(off[s]), LL(len[s]), LL(size));
        for (uint32_t o = 0; o < s; o++)
            if (len[s] && len[o] && off[s] < off[o] + len[o] && off[o] < off[s] + len[s])
                return fail(e, LBM_ERR_FORMAT, "sections %d and %d overlap", LL(o), LL(s));
        if (lbm_crc32(0, b + off[s], len[s]) != rd_u32(r + 12))
            return fail(e, LBM_ERR_CRC, "section %d: CRC mismatch (file corrupt)", LL(s));
        if (type >= 1 && type <= 3) {
            if (found[type])
                return fail(e, LBM_ERR_FORMAT, "section %s appears twice", names[type]);
            found[type]      = b + off[s];
            found_size[type] = len[s];
        }
        /* insertion sort by offset, for the gap check below */
        uint32_t k = s;
        for (; k > 0 && off[order[k - 1]] > off[s]; k--) order[k] = order[k - 1];
        order[k] = s;
    }
    for (uint32_t type = 1; type <= 3; type++)
        if (!found[type]) return fail(e, LBM_ERR_FORMAT, "no %s section", names[type]);
    uint32_t pos = table_end;
    for (uint32_t k = 0; k <= n; k++) {
        const uint32_t end = k < n ? off[order[k]] : size;
        for (; pos < end; pos++)
            if (b[pos] != 0)
                return fail(e, LBM_ERR_FORMAT, "byte %d between sections is not 0", LL(pos));
        if (k < n && off[order[k]] + len[order[k]] > pos) pos = off[order[k]] + len[order[k]];
    }
    m->meta       = found[1];
    m->meta_size  = found_size[1];
    m->graph      = found[2];
    m->graph_size = found_size[2];
    m->data       = found[3];
    m->data_size  = found_size[3];
    return LBM_OK;
}

/* META: lines "key=value\n" with a non-empty key, no NUL. */
static lbm_status check_meta(const lbm_model *m, msgbuf *e)
{
    uint32_t line_start = 0, eq = NO_OFFSET;
    for (uint32_t k = 0; k < m->meta_size; k++) {
        const uint8_t c = m->meta[k];
        if (c == 0) return fail(e, LBM_ERR_FORMAT, "META: NUL byte at %d", LL(k));
        if (c == '=' && eq == NO_OFFSET) eq = k;
        if (c == '\n') {
            if (eq == NO_OFFSET || eq == line_start)
                return fail(e, LBM_ERR_FORMAT, "META: line at %d is not key=value", LL(line_start));
            line_start = k + 1;
            eq         = NO_OFFSET;
        }
    }
    if (line_start != m->meta_size)
        return fail(e, LBM_ERR_FORMAT, "META: last line does not end with a newline");
    return LBM_OK;
}

/* ---- loader: graph ---------------------------------------------------------------------- */

static lbm_status check_tensor(const lbm_model *m, uint32_t t, msgbuf *e)
{
    const uint8_t *r = tensor_rec(m, t);
    const tinfo    ti = tensor_info(m, t);
    uint64_t       numel = 1;
    if (ti.dtype > LBM_INT32)
        return fail(e, LBM_ERR_FORMAT, "tensor %d: dtype %d (expected 0..2)", LL(t), LL(ti.dtype));
    if (ti.n_dims != 1 && ti.n_dims != 3)
        return fail(e, LBM_ERR_FORMAT, "tensor %d: n_dims %d (expected 1 or 3)", LL(t),
                    LL(ti.n_dims));
    for (uint32_t k = 0; k < 3; k++) {
        if (k < ti.n_dims && (ti.d[k] < 1 || ti.d[k] > MAX_DIM))
            return fail(e, LBM_ERR_FORMAT, "tensor %d: dims[%d] = %d (expected 1..65535)", LL(t),
                        LL(k), LL(ti.d[k]));
        if (k >= ti.n_dims && ti.d[k] != 0)
            return fail(e, LBM_ERR_FORMAT, "tensor %d: unused dims[%d] = %d (expected 0)", LL(t),
                        LL(k), LL(ti.d[k]));
        if (k < ti.n_dims) numel *= ti.d[k];
    }
    if (numel > MAX_NUMEL)
        return fail(e, LBM_ERR_FORMAT, "tensor %d: %d elements (at most 2^24)", LL(t), LL(numel));
    int reserved = rd_u16(r + 2) != 0;
    for (uint32_t k = 24; k < 32; k++) reserved |= r[k] != 0;
    if (reserved) return fail(e, LBM_ERR_FORMAT, "tensor %d: reserved bytes are not 0", LL(t));
    return LBM_OK;
}

static int same_shape(const tinfo *a, const tinfo *b)
{
    return a->n_dims == b->n_dims && a->d[0] == b->d[0] && a->d[1] == b->d[1] && a->d[2] == b->d[2];
}

static int clamp_ok(uint32_t dtype, int32_t lo, int32_t hi)
{
    if (dtype == LBM_INT8) return -128 <= lo && lo <= hi && hi <= 127;
    if (dtype == LBM_UINT8) return 0 <= lo && lo <= hi && hi <= 255;
    return lo == 0 && hi == 0;
}

static int requant_ok(int32_t mult, int32_t shift)
{
    return (mult == 0 || mult >= MULT_MIN) && shift >= -31 && shift <= 62;
}

/* Output size of a kh x kw window sliding over H x W with stride and zero padding, where the
 * window must fit the padded input. 0 when the attributes are out of range. */
static int window_ok(uint32_t H, uint32_t W, int32_t kh, int32_t kw, int32_t stride, int32_t pad,
                     uint32_t *Ho, uint32_t *Wo)
{
    if (kh < 1 || kw < 1 || kh > (int32_t)MAX_DIM || kw > (int32_t)MAX_DIM) return 0;
    if (stride < 1 || stride > (int32_t)MAX_DIM || pad < 0 || pad > (int32_t)MAX_DIM) return 0;
    const int32_t ph = (int32_t)H + 2 * pad, pw = (int32_t)W + 2 * pad;   /* < 2^18 */
    if (ph < kh || pw < kw) return 0;
    *Ho = (uint32_t)((ph - kh) / stride + 1);
    *Wo = (uint32_t)((pw - kw) / stride + 1);
    return 1;
}

/* DATA bytes of a CONV2D/LINEAR: O weight rows (4-aligned as a block), then bias, multiplier
 * and shift, O x 4 bytes each. */
static uint64_t weights_need(uint64_t K, uint64_t O, int bits, uint64_t *row_bytes)
{
    *row_bytes = (K * (uint64_t)bits + 7u) / 8u;
    return align4(O * *row_bytes) + 12u * O;
}

/* Multipliers and shifts in range, zero row padding bits and zero alignment padding. */
static lbm_status check_weights(const lbm_model *m, uint32_t i, const opinfo *op, uint32_t K,
                                uint32_t O, msgbuf *e)
{
    const int      bits = op->attr[5];
    uint64_t       row_bytes;
    const uint64_t wbytes = weights_need(K, O, bits, &row_bytes) - 12u * (uint64_t)O;
    const uint8_t *p      = m->data + op->data_off;
    const uint32_t used   = (uint32_t)(((uint64_t)K * (uint32_t)bits) % 8u);
    for (uint32_t o = 0; o < O; o++) {
        const int32_t mult  = rd_i32(p + wbytes + 4u * ((uint64_t)O + o));
        const int32_t shift = rd_i32(p + wbytes + 4u * (2u * (uint64_t)O + o));
        if (!requant_ok(mult, shift))
            return fail(e, LBM_ERR_FORMAT,
                        "op %d (%s): channel %d has multiplier %d, shift %d (expected 0 or "
                        "[2^30, 2^31) and -31..62)", LL(i), kind_names[op->kind], LL(o),
                        LL(mult), LL(shift));
        if (used && (p[(o + 1) * row_bytes - 1] >> used) != 0)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): row %d padding bits are not 0", LL(i),
                        kind_names[op->kind], LL(o));
    }
    for (uint64_t k = (uint64_t)O * row_bytes; k < wbytes; k++)
        if (p[k] != 0)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): padding after the weights is not 0",
                        LL(i), kind_names[op->kind]);
    return LBM_OK;
}

/* The kind-specific part of an op's validation: dtypes, dims and attributes; sets *need to the
 * DATA bytes the op must have and *K, *O for CONV2D/LINEAR. */
static lbm_status check_op_kind(const lbm_model *m, uint32_t i, const opinfo *op, uint64_t *need,
                                uint32_t *K, uint32_t *O, msgbuf *e)
{
    const char   *nm = kind_names[op->kind];
    const int32_t *a = op->attr;
    const tinfo   x = tensor_info(m, op->in[0]), y = tensor_info(m, op->out);
    uint32_t      Ho = 0, Wo = 0;
    uint64_t      row_bytes;
    *need = 0;
    switch (op->kind) {
    case LBM_OP_INPUT:
        if (x.dtype != LBM_UINT8 || x.n_dims != 3)
            return fail(e, LBM_ERR_FORMAT, "op %d (INPUT): input must be UINT8 (C,H,W)", LL(i));
        if (y.dtype == LBM_INT32 || !same_shape(&x, &y))
            return fail(e, LBM_ERR_FORMAT,
                        "op %d (INPUT): output must be INT8/UINT8 with the input's dims", LL(i));
        *need = 256u * (uint64_t)x.d[0];
        return LBM_OK;
    case LBM_OP_CONV2D:
    case LBM_OP_LINEAR: {
        const int conv = op->kind == LBM_OP_CONV2D;
        if (x.dtype == LBM_INT32 || (conv && x.n_dims != 3))
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): input must be INT8/UINT8%s", LL(i), nm,
                        conv ? " (C,H,W)" : "");
        if (a[0] < 1 || a[0] > (int32_t)MAX_DIM)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): O = %d (expected 1..65535)", LL(i), nm,
                        LL(a[0]));
        if (a[5] != 1 && a[5] != 2 && a[5] != 4 && a[5] != 8)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): w_bits %d (expected 1, 2, 4 or 8)", LL(i),
                        nm, LL(a[5]));
        if (a[8] < 0 || a[8] > 24)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): acc_shift %d (expected 0..24)", LL(i),
                        nm, LL(a[8]));
        *O = (uint32_t)a[0];
        if (conv) {
            if (!window_ok(x.d[1], x.d[2], a[1], a[2], a[3], a[4], &Ho, &Wo))
                return fail(e, LBM_ERR_FORMAT,
                            "op %d (CONV2D): kernel %dx%d, stride %d, pad %d invalid for a "
                            "%dx%d input", LL(i), LL(a[1]), LL(a[2]), LL(a[3]), LL(a[4]),
                            LL(x.d[1]), LL(x.d[2]));
            const uint64_t k64 = (uint64_t)x.d[0] * (uint32_t)a[1] * (uint32_t)a[2];
            if (k64 > MAX_K)
                return fail(e, LBM_ERR_FORMAT, "op %d (CONV2D): C*kh*kw = %d (at most 2^24)",
                            LL(i), LL(k64));
            *K = (uint32_t)k64;
            if (y.n_dims != 3 || y.d[0] != *O || y.d[1] != Ho || y.d[2] != Wo)
                return fail(e, LBM_ERR_FORMAT,
                            "op %d (CONV2D): output dims are not (%d,%d,%d)", LL(i), LL(*O),
                            LL(Ho), LL(Wo));
        } else {
            *K = x.numel;
            if (y.n_dims != 1 || y.d[0] != *O)
                return fail(e, LBM_ERR_FORMAT, "op %d (LINEAR): output dims are not (%d)", LL(i),
                            LL(*O));
        }
        if (!clamp_ok(y.dtype, a[6], a[7]))
            return fail(e, LBM_ERR_FORMAT,
                        "op %d (%s): out_min %d, out_max %d invalid for the output dtype", LL(i),
                        nm, LL(a[6]), LL(a[7]));
        *need = weights_need(*K, *O, a[5], &row_bytes);
        return LBM_OK;
    }
    case LBM_OP_MAXPOOL:
    case LBM_OP_AVGPOOL:
        if (x.n_dims != 3 || (op->kind == LBM_OP_AVGPOOL && x.dtype != LBM_INT32))
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): input must be %s (C,H,W)", LL(i), nm,
                        op->kind == LBM_OP_AVGPOOL ? "INT32" : "a");
        /* pad < k: every window then overlaps the image, so a max always exists */
        if (!window_ok(x.d[1], x.d[2], a[0], a[0], a[1], a[2], &Ho, &Wo) || a[2] >= a[0])
            return fail(e, LBM_ERR_FORMAT,
                        "op %d (%s): k %d, stride %d, pad %d invalid for a %dx%d input", LL(i),
                        nm, LL(a[0]), LL(a[1]), LL(a[2]), LL(x.d[1]), LL(x.d[2]));
        if (y.dtype != x.dtype || y.n_dims != 3 || y.d[0] != x.d[0] || y.d[1] != Ho ||
            y.d[2] != Wo)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): output must be (%d,%d,%d) of the input's "
                        "dtype", LL(i), nm, LL(x.d[0]), LL(Ho), LL(Wo));
        return LBM_OK;
    case LBM_OP_GAP:
        if (x.dtype != LBM_INT32 || x.n_dims != 3)
            return fail(e, LBM_ERR_FORMAT, "op %d (GAP): input must be INT32 (C,H,W)", LL(i));
        if (y.dtype != LBM_INT32 || y.n_dims != 1 || y.d[0] != x.d[0])
            return fail(e, LBM_ERR_FORMAT, "op %d (GAP): output must be INT32 (%d)", LL(i),
                        LL(x.d[0]));
        return LBM_OK;
    case LBM_OP_ADD: {
        const tinfo x2 = tensor_info(m, op->in[1]);
        if (x.dtype != LBM_INT32 || x2.dtype != LBM_INT32 || !same_shape(&x, &x2))
            return fail(e, LBM_ERR_FORMAT, "op %d (ADD): inputs must be INT32 of equal dims",
                        LL(i));
        if (y.dtype != LBM_INT32 || !same_shape(&x, &y))
            return fail(e, LBM_ERR_FORMAT, "op %d (ADD): output must be INT32 of the inputs' dims",
                        LL(i));
        return LBM_OK;
    }
    case LBM_OP_RELU:
        if (x.dtype == LBM_UINT8)
            return fail(e, LBM_ERR_FORMAT, "op %d (RELU): input must be INT8 or INT32", LL(i));
        if (y.dtype != x.dtype || !same_shape(&x, &y))
            return fail(e, LBM_ERR_FORMAT, "op %d (RELU): output must match the input", LL(i));
        return LBM_OK;
    case LBM_OP_REQUANT:
        if (x.dtype != LBM_INT32)
            return fail(e, LBM_ERR_FORMAT, "op %d (REQUANT): input must be INT32", LL(i));
        if (y.dtype == LBM_INT32 || !same_shape(&x, &y))
            return fail(e, LBM_ERR_FORMAT,
                        "op %d (REQUANT): output must be INT8/UINT8 with the input's dims", LL(i));
        if (!requant_ok(a[0], a[1]))
            return fail(e, LBM_ERR_FORMAT, "op %d (REQUANT): multiplier %d, shift %d out of range",
                        LL(i), LL(a[0]), LL(a[1]));
        if (!clamp_ok(y.dtype, a[6], a[7]))
            return fail(e, LBM_ERR_FORMAT, "op %d (REQUANT): out_min %d, out_max %d invalid",
                        LL(i), LL(a[6]), LL(a[7]));
        return LBM_OK;
    case LBM_OP_FLATTEN:
        if (x.n_dims != 3)
            return fail(e, LBM_ERR_FORMAT, "op %d (FLATTEN): input must be (C,H,W)", LL(i));
        if (y.dtype != x.dtype || y.n_dims != 1 || y.d[0] != x.numel)
            return fail(e, LBM_ERR_FORMAT, "op %d (FLATTEN): output must be (%d) of the input's "
                        "dtype", LL(i), LL(x.numel));
        return LBM_OK;
    }
    return fail(e, LBM_ERR_FORMAT, "op %d: unknown kind %d", LL(i), LL(op->kind));
}

/* The generic part: kind, inputs produced earlier, output produced once, unused attributes
 * zero, parameters inside DATA and of the size the kind requires. made: bitset of produced
 * tensors, updated. */
static lbm_status check_op(const lbm_model *m, uint32_t i, uint8_t *made, msgbuf *e)
{
    opinfo op;
    op_read(m, i, &op);
    if (op.kind < LBM_OP_INPUT || op.kind > LBM_OP_FLATTEN)
        return fail(e, LBM_ERR_FORMAT, "op %d: unknown kind %d (expected 1..10)", LL(i),
                    LL(op.kind));
    const char    *nm   = kind_names[op.kind];
    const uint32_t n_in = op.kind == LBM_OP_ADD ? 2u : 1u;
    if (op.n_in != n_in)
        return fail(e, LBM_ERR_FORMAT, "op %d (%s): n_in %d (expected %d)", LL(i), nm, LL(op.n_in),
                    LL(n_in));
    if (n_in == 1 && op.in[1] != 0)
        return fail(e, LBM_ERR_FORMAT, "op %d (%s): unused in[1] is %d (expected 0)", LL(i), nm,
                    LL(op.in[1]));
    for (uint32_t k = 0; k < n_in; k++) {
        const uint32_t t = op.in[k];
        if (t >= m->n_tensors)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): input tensor %d out of range (%d tensors)",
                        LL(i), nm, LL(t), LL(m->n_tensors));
        if (!(made[t / 8] >> (t % 8) & 1))
            return fail(e, LBM_ERR_FORMAT,
                        "op %d (%s): reads tensor %d before any op produces it", LL(i), nm, LL(t));
    }
    if (op.out >= m->n_tensors)
        return fail(e, LBM_ERR_FORMAT, "op %d (%s): output tensor %d out of range (%d tensors)",
                    LL(i), nm, LL(op.out), LL(m->n_tensors));
    if (made[op.out / 8] >> (op.out % 8) & 1)
        return fail(e, LBM_ERR_FORMAT,
                    "op %d (%s): tensor %d is already produced (or is the graph input)", LL(i), nm,
                    LL(op.out));
    for (int a = 0; a < 10; a++)
        if (!(attr_used[op.kind] >> a & 1) && op.attr[a] != 0)
            return fail(e, LBM_ERR_FORMAT, "op %d (%s): attr[%d] = %d (unused, expected 0)", LL(i),
                        nm, LL(a), LL(op.attr[a]));
    if (op.data_off % 4 != 0 || (uint64_t)op.data_off + op.data_size > m->data_size)
        return fail(e, LBM_ERR_FORMAT,
                    "op %d (%s): parameters at [%d, +%d) not 4-aligned inside DATA (%d bytes)",
                    LL(i), nm, LL(op.data_off), LL(op.data_size), LL(m->data_size));
    uint64_t   need = 0;
    uint32_t   K = 0, O = 0;
    lbm_status st = check_op_kind(m, i, &op, &need, &K, &O, e);
    if (st != LBM_OK) return st;
    if (op.data_size != need)
        return fail(e, LBM_ERR_FORMAT, "op %d (%s): data_size %d (expected %d)", LL(i), nm,
                    LL(op.data_size), LL(need));
    if (op.kind == LBM_OP_CONV2D || op.kind == LBM_OP_LINEAR) {
        st = check_weights(m, i, &op, K, O, e);
        if (st != LBM_OK) return st;
    }
    made[op.out / 8] = (uint8_t)(made[op.out / 8] | 1u << (op.out % 8));
    return LBM_OK;
}

/* ---- memory plan ------------------------------------------------------------------------ */

/* Does an op after op i read tensor t? */
static int read_after(const lbm_model *m, uint32_t i, uint32_t t)
{
    for (uint32_t j = i + 1; j < m->n_ops; j++) {
        const uint8_t *r = op_rec(m, j);
        if (rd_u32(r + 4) == t || (rd_u16(r + 2) == 2 && rd_u32(r + 8) == t)) return 1;
    }
    return 0;
}

/* Bytes of the planner's tables at the start of the arena: off[n_tensors] (u32) and the
 * live list (u16), padded to 4. */
static uint64_t tables_bytes(uint32_t n_tensors)
{
    return 4u * (uint64_t)n_tensors + align4(2u * (uint64_t)n_tensors);
}

/* Greedy first-fit by liveness. Ops run in order; op i's output gets the lowest 4-aligned
 * offset that does not overlap a live tensor, and then the tensors op i read for the last
 * time (and an output that nobody reads) die. The graph input lives in the caller's buffer
 * and the graph output never dies. Fills off[t] (NO_OFFSET for tensors no op produces);
 * live is scratch for n_tensors entries, kept sorted by offset. Returns the peak in bytes,
 * or UINT64_MAX when an offset would not fit 32 bits. Deterministic: lbm_load and lbm_run
 * compute the same plan. Worst case O(n_ops^2), trivial for real graphs. */
static uint64_t plan_arena(const lbm_model *m, uint32_t *off, uint16_t *live)
{
    uint32_t n_live = 0;
    uint64_t peak   = 0;
    for (uint32_t t = 0; t < m->n_tensors; t++) off[t] = NO_OFFSET;
    for (uint32_t i = 0; i < m->n_ops; i++) {
        opinfo op;
        op_read(m, i, &op);
        const uint64_t size = tensor_bytes(m, op.out);
        uint64_t       at   = 0;
        uint32_t       pos  = 0;
        for (; pos < n_live; pos++) {
            const uint64_t lo = off[live[pos]];
            if (at + size <= lo) break;
            at = lo + tensor_bytes(m, live[pos]);
        }
        if (at + size >= NO_OFFSET) return UINT64_MAX;
        memmove(live + pos + 1, live + pos, (n_live - pos) * sizeof *live);
        live[pos] = (uint16_t)op.out;
        n_live++;
        off[op.out] = (uint32_t)at;
        if (at + size > peak) peak = at + size;
        const uint32_t dying[3] = { op.in[0], op.in[op.n_in == 2 ? 1 : 0], op.out };
        for (int k = 0; k < 3; k++) {
            const uint32_t t = dying[k];
            if (t == m->input || t == m->output || read_after(m, i, t)) continue;
            for (uint32_t p = 0; p < n_live; p++) {
                if (live[p] != t) continue;
                memmove(live + p, live + p + 1, (n_live - p - 1) * sizeof *live);
                n_live--;
                break;
            }
        }
    }
    return peak;
}

/* ---- lbm_load --------------------------------------------------------------------------- */

static lbm_status load(lbm_model *m, const uint8_t *b, size_t size, msgbuf *e)
{
    uint32_t   n_sections = 0;
    lbm_status st = check_header(b, size, &n_sections, e);
    if (st != LBM_OK) return st;
    m->buf  = b;
    m->size = (uint32_t)size;
    if ((st = check_sections(m, b, m->size, n_sections, e)) != LBM_OK) return st;
    if ((st = check_meta(m, e)) != LBM_OK) return st;

    /* 1. counts and the GRAPH size they imply */
    if (m->graph_size < 16)
        return fail(e, LBM_ERR_FORMAT, "GRAPH: %d bytes (at least 16)", LL(m->graph_size));
    m->n_tensors = rd_u32(m->graph);
    m->n_ops     = rd_u32(m->graph + 4);
    m->input     = rd_u32(m->graph + 8);
    m->output    = rd_u32(m->graph + 12);
    if (m->n_tensors < 1 || m->n_tensors > LBM_MAX_TENSORS || m->n_ops < 1 ||
        m->n_ops > LBM_MAX_OPS)
        return fail(e, LBM_ERR_FORMAT,
                    "GRAPH: %d tensors, %d ops (expected 1..%d tensors and 1..%d ops%s)",
                    LL(m->n_tensors), LL(m->n_ops), LL(LBM_MAX_TENSORS), LL(LBM_MAX_OPS),
                    LBM_MAX_TENSORS < 1024 || LBM_MAX_OPS < 1024
                        ? ": this runtime was built with lower limits, see LBM_MAX_TENSORS" : "");
    const uint64_t want = 16u + 32u * (uint64_t)m->n_tensors + 64u * (uint64_t)m->n_ops;
    if (m->graph_size != want)
        return fail(e, LBM_ERR_FORMAT, "GRAPH: %d bytes, expected %d for %d tensors and %d ops",
                    LL(m->graph_size), LL(want), LL(m->n_tensors), LL(m->n_ops));
    if (m->input >= m->n_tensors || m->output >= m->n_tensors)
        return fail(e, LBM_ERR_FORMAT, "GRAPH: input %d / output %d out of range (%d tensors)",
                    LL(m->input), LL(m->output), LL(m->n_tensors));

    /* 2. tensor records, then the graph's input and output */
    for (uint32_t t = 0; t < m->n_tensors; t++)
        if ((st = check_tensor(m, t, e)) != LBM_OK) return st;
    const tinfo in = tensor_info(m, m->input), out = tensor_info(m, m->output);
    if (in.dtype != LBM_UINT8 || in.n_dims != 3)
        return fail(e, LBM_ERR_FORMAT, "GRAPH: input tensor %d must be UINT8 (C,H,W)",
                    LL(m->input));
    if (out.dtype != LBM_INT32 || out.n_dims != 1)
        return fail(e, LBM_ERR_FORMAT, "GRAPH: output tensor %d must be INT32 with n_dims 1",
                    LL(m->output));

    /* 3. ops in order; the input counts as produced */
    uint8_t made[(LBM_MAX_TENSORS + 7) / 8];
    memset(made, 0, sizeof made);
    made[m->input / 8] = (uint8_t)(1u << (m->input % 8));
    for (uint32_t i = 0; i < m->n_ops; i++)
        if ((st = check_op(m, i, made, e)) != LBM_OK) return st;
    if (!(made[m->output / 8] >> (m->output % 8) & 1))
        return fail(e, LBM_ERR_FORMAT, "GRAPH: no op produces the output tensor %d",
                    LL(m->output));
    m->input_bytes = in.numel;
    m->n_classes   = out.numel;

    /* 4. the arena: planner tables plus the peak of the activations */
    uint32_t       off[LBM_MAX_TENSORS];
    uint16_t       live[LBM_MAX_TENSORS];
    const uint64_t peak  = plan_arena(m, off, live);
    const uint64_t total = peak == UINT64_MAX ? peak : tables_bytes(m->n_tensors) + peak;
    if (total > 0xFFFFFFFFu || total > (uint64_t)SIZE_MAX)
        return fail(e, LBM_ERR_FORMAT, "GRAPH: activations need more than 4 GiB");
    m->arena_bytes = (size_t)total;
    return LBM_OK;
}

lbm_status lbm_load(lbm_model *m, const void *buf, size_t size, char *msg, size_t msg_cap)
{
    msgbuf e = { msg, msg_cap, 0 };
    if (msg && msg_cap) msg[0] = '\0';
    if (!m || !buf) return fail(&e, LBM_ERR_ARG, "lbm_load: model or buffer is NULL");
    memset(m, 0, sizeof *m);
    if ((uintptr_t)buf % 4 != 0)
        return fail(&e, LBM_ERR_ARG, "lbm_load: buffer is not 4-byte aligned");
    if (size > 0xFFFFFFFFu)
        return fail(&e, LBM_ERR_FORMAT, "file is larger than 4 GiB");
    const lbm_status st = load(m, buf, size, &e);
    if (st != LBM_OK) memset(m, 0, sizeof *m);   /* a half-validated model must not run */
    return st;
}

size_t lbm_arena_size(const lbm_model *m) { return m ? m->arena_bytes : 0; }

const char *lbm_meta(const lbm_model *m, const char *key, size_t *len)
{
    if (!m || !m->meta || !key) return NULL;
    const size_t klen = strlen(key);
    for (uint32_t k = 0; k < m->meta_size;) {
        uint32_t end = k;
        while (m->meta[end] != '\n') end++;   /* lbm_load checked every line ends so */
        if (end - k > klen && memcmp(m->meta + k, key, klen) == 0 && m->meta[k + klen] == '=') {
            if (len) *len = end - k - klen - 1;
            return (const char *)m->meta + k + klen + 1;
        }
        k = end + 1;
    }
    return NULL;
}

/* ---- kernels ---------------------------------------------------------------------------- */

/* requant(a, m, sh) = round_half_up(a * m / 2^(31 + sh)), FORMAT.md section 4, with
 * sh in -31..62 (checked at load), so the total shift s = 31 + sh is 0..93.
 *   s == 0:  2^(30+sh) is 1/2 and the quotient exact: the plain product (may exceed int32;
 *            callers clamp or saturate).
 *   s <= 62: |a*m| < 2^62, so a*m + 2^(s-1) < 2^63 fits int64; then an arithmetic shift.
 *   s >= 63: |a*m / 2^s| < 1/2, so the exact rounded result is 0.
 * Only a 64-bit multiply and shifts: no division. */
static int64_t requant(int32_t a, int32_t mult, int32_t shift)
{
    const int64_t p = (int64_t)a * mult;
    const int     s = 31 + shift;
    if (s == 0) return p;
    if (s >= 63) return 0;
    return asr64(p + ((int64_t)1 << (s - 1)), s);
}

/* floor(num / den) for den >= 1 by binary long division: shifts and subtractions only, where
 * the / operator on 64-bit values would be a libgcc call (__aeabi_ldivmod) on 32-bit Arm. */
static int64_t floor_div64(int64_t num, uint64_t den)
{
    const uint64_t n = num < 0 ? 0u - (uint64_t)num : (uint64_t)num;
    uint64_t       q = 0, r = 0;
    for (int b = 63; b >= 0; b--) {   /* r < den <= 2^33 throughout: no overflow */
        r = r << 1 | (n >> b & 1u);
        if (r >= den) {
            r -= den;
            q |= (uint64_t)1 << b;
        }
    }
    /* n = q den + r, so floor(-n / den) = -q - (r != 0) */
    return num < 0 ? -(int64_t)q - (r != 0) : (int64_t)q;
}

/* round_half_up(sum / count) = floor((2 sum + count) / (2 count)) for count >= 1. The mean
 * of int32 values (padding counted as 0) fits int32. A 32-bit division when the numbers are
 * small (the usual case), else the long division above, once per output: no 64-bit
 * division anywhere in the runtime. */
static int32_t avg_round(int64_t sum, uint32_t count)
{
    if (sum > -(1 << 28) && sum < (1 << 28) && count < (1u << 28)) {
        const int32_t num = 2 * (int32_t)sum + (int32_t)count, den = 2 * (int32_t)count;
        const int32_t q = num / den;
        return q - (q * den > num);   /* C division truncates; floor for negative num */
    }
    return (int32_t)floor_div64(2 * sum + (int64_t)count, 2 * (uint64_t)count);
}

/* Element i of an INT8/UINT8/INT32 tensor; and a store that clamps to [lo, hi] for byte
 * dtypes and saturates to int32 for INT32. Used by the cheap kernels. */
static int32_t ld(const uint8_t *x, uint32_t dtype, uint32_t i)
{
    if (dtype == LBM_INT32) return ((const int32_t *)(const void *)x)[i];
    return dtype == LBM_INT8 ? s8(x[i]) : (int32_t)x[i];
}

static void st(uint8_t *y, uint32_t dtype, uint32_t i, int64_t v, int32_t lo, int32_t hi)
{
    if (dtype == LBM_INT32) {
        ((int32_t *)(void *)y)[i] = sat32(v);
        return;
    }
    v = v < lo ? lo : v > hi ? hi : v;
    y[i] = (uint8_t)((uint32_t)v & 0xFFu);   /* two's-complement byte of an INT8 value */
}

/* sum_{j<n} w[k0 + j] * x[j] over one contiguous run of a weight row (packed at bits, as
 * FORMAT.md section 4) and of an INT8 (xflip 0x80) or UINT8 (xflip 0) input. The sum wraps
 * modulo 2^32 like an int32 MAC would: lowbit never exports a model that overflows, and a
 * hostile file must not make it undefined behaviour. */
static uint32_t dot(const uint8_t *row, uint32_t k0, const uint8_t *x, uint32_t n, int bits,
                    uint32_t xflip)
{
    const int32_t xoff = (int32_t)xflip;
    uint32_t      acc  = 0;
    switch (bits) {
    case 8:
        for (uint32_t j = 0; j < n; j++)
            acc += (uint32_t)(s8(row[k0 + j]) * ((int32_t)(x[j] ^ xflip) - xoff));
        break;
    case 4:   /* element 2t in the low nibble: (v ^ 8) - 8 sign-extends 4 bits */
        for (uint32_t j = 0, k = k0; j < n; j++, k++) {
            const uint32_t v = (uint32_t)row[k >> 1] >> ((k & 1u) * 4u) & 15u;
            acc += (uint32_t)(((int32_t)(v ^ 8u) - 8) * ((int32_t)(x[j] ^ xflip) - xoff));
        }
        break;
    case 2:   /* element 4t in bits 0-1 */
        for (uint32_t j = 0, k = k0; j < n; j++, k++) {
            const uint32_t v = (uint32_t)row[k >> 2] >> ((k & 3u) * 2u) & 3u;
            acc += (uint32_t)(((int32_t)(v ^ 2u) - 2) * ((int32_t)(x[j] ^ xflip) - xoff));
        }
        break;
    default:  /* 1 bit, element 8t in bit 0: 1 -> +1, 0 -> -1 */
        for (uint32_t j = 0, k = k0; j < n; j++, k++) {
            const int32_t xv = (int32_t)(x[j] ^ xflip) - xoff;
            acc += (uint32_t)((row[k >> 3] >> (k & 7u) & 1u) ? xv : -xv);
        }
        break;
    }
    return acc;
}

/* Weights unpacked to one int8 per element, on the stack: CONV2D rows of up to WBUF weights
 * are unpacked once per output channel (they are reused at every output position), LINEAR
 * rows WBUF at a time. Rows longer than WBUF in a CONV2D use dot() on the packed bytes. */
#define WBUF 256

/* w[j] = element k0 + j of a packed weight row, for j < n (bits 1, 2 or 4; FORMAT.md
 * section 4). Every value is in -8..7 (1 bit: -1 or +1), so the int8 store is exact. */
static void unpack(const uint8_t *row, uint32_t k0, uint32_t n, int bits, int8_t *w)
{
    for (uint32_t j = 0, k = k0; j < n; j++, k++) {
        int32_t v;
        if (bits == 4) v = (int32_t)(((uint32_t)row[k >> 1] >> ((k & 1u) * 4u) & 15u) ^ 8u) - 8;
        else if (bits == 2) v = (int32_t)(((uint32_t)row[k >> 2] >> ((k & 3u) * 2u) & 3u) ^ 2u) - 2;
        else v = (row[k >> 3] >> (k & 7u) & 1u) ? 1 : -1;
        w[j] = (int8_t)v;
    }
}

/* sum_{j<n} w[j] * x[j] for int8 weights and a UINT8 (xsigned 0) or INT8 (xsigned 1) input;
 * wraps modulo 2^32 like dot(). Reading INT8 bytes through an int8_t pointer is exact
 * (int8_t is two's complement) and lets a compiler use sign-extending byte loads. Four terms
 * a turn (their int32 sum cannot overflow): convolution rows are short (kw), so the loop
 * overhead matters as much as the multiplies. */
#define DOT8_BODY(X)                                                                           \
    for (; j + 4 <= n; j += 4)                                                                 \
        acc += (uint32_t)(w[j] * (int32_t)X[j] + w[j + 1] * (int32_t)X[j + 1] +                \
                          w[j + 2] * (int32_t)X[j + 2] + w[j + 3] * (int32_t)X[j + 3]);        \
    for (; j < n; j++) acc += (uint32_t)(w[j] * (int32_t)X[j]);

static uint32_t dot8(const int8_t *w, const uint8_t *x, int xsigned, uint32_t n)
{
    const int8_t *xs  = (const int8_t *)(const void *)x;
    uint32_t      acc = 0, j = 0;
    if (xsigned) {
        DOT8_BODY(xs)
    } else {
        DOT8_BODY(x)
    }
    return acc;
}

/* sum_{k<n} w[k] * x[k] over a whole packed row of 4- or 2-bit weights (from its first byte):
 * each byte load gives 2 or 4 weights, sign-extended with (v ^ 2^(b-1)) - 2^(b-1); the last
 * partial byte goes through dot(). Same result as dot(row, 0, x, n, bits, ...). */
#define W4(b, s) ((int32_t)(((uint32_t)(b) >> (s) & 15u) ^ 8u) - 8)
#define W2(b, s) ((int32_t)(((uint32_t)(b) >> (s) & 3u) ^ 2u) - 2)
#define DOTP_BODY(X)                                                                           \
    if (bits == 4)                                                                             \
        for (; t < n / 2; t++, X += 2) {                                                       \
            const uint32_t b = row[t];                                                         \
            acc += (uint32_t)(W4(b, 0) * (int32_t)X[0] + W4(b, 4) * (int32_t)X[1]);            \
        }                                                                                      \
    else                                                                                       \
        for (; t < n / 4; t++, X += 4) {                                                       \
            const uint32_t b = row[t];                                                         \
            acc += (uint32_t)(W2(b, 0) * (int32_t)X[0] + W2(b, 2) * (int32_t)X[1] +            \
                              W2(b, 4) * (int32_t)X[2] + W2(b, 6) * (int32_t)X[3]);            \
        }

static uint32_t dotp(const uint8_t *row, const uint8_t *x, int xsigned, uint32_t n, int bits)
{
    const int8_t  *xs  = (const int8_t *)(const void *)x;   /* both advance in the loops */
    const uint8_t *xu  = x;
    uint32_t       acc = 0, t = 0;
    if (xsigned) {
        DOTP_BODY(xs)
    } else {
        DOTP_BODY(xu)
    }
    const uint32_t done = t * (8u / (uint32_t)bits);   /* elements consumed */
    return acc + dot(row, done, x + done, n - done, bits, xsigned ? 0x80u : 0u);
}

/* One CONV2D output: sum over channels c < C and kernel rows i < rows of a run of n int8
 * weights (w: the first weight inside, rows kw apart, channels khw apart) times n input bytes
 * (x: the first input byte inside, rows W apart, channels HW apart). Rows are short, so the
 * usual widths (3 and 5 inside the image) are written out: a call or a loop per row would
 * cost as much as the row's multiplies. */
#define TERM(X, j) wr[j] * (int32_t)X[j]
#define ROW3(X) (TERM(X, 0) + TERM(X, 1) + TERM(X, 2))
#define ROW5(X) (TERM(X, 0) + TERM(X, 1) + TERM(X, 2) + TERM(X, 3) + TERM(X, 4))
#define WINDOW(T, ROW)                                                                         \
    for (uint32_t c = 0; c < C; c++, w += khw, x += HW) {                                      \
        const int8_t *wr = w;                                                                  \
        const T      *xr = (const T *)(const void *)x;                                         \
        for (uint32_t i = 0; i < rows; i++, wr += kw, xr += W) acc += (uint32_t)ROW(xr);       \
    }

static uint32_t window8(const int8_t *w, const uint8_t *x, int xsigned, uint32_t C, uint32_t khw,
                        uint32_t kw, uint32_t HW, uint32_t W, uint32_t rows, uint32_t n)
{
    uint32_t acc = 0;
    if (n == 5 && xsigned) {
        WINDOW(int8_t, ROW5)
    } else if (n == 5) {
        WINDOW(uint8_t, ROW5)
    } else if (n == 3 && xsigned) {
        WINDOW(int8_t, ROW3)
    } else if (n == 3) {
        WINDOW(uint8_t, ROW3)
    } else {
        for (uint32_t c = 0; c < C; c++, w += khw, x += HW) {
            const int8_t  *wr = w;
            const uint8_t *xr = x;
            for (uint32_t i = 0; i < rows; i++, wr += kw, xr += W) acc += dot8(wr, xr, xsigned, n);
        }
    }
    return acc;
}

/* Per-channel parameters of a CONV2D/LINEAR op, located in DATA. */
typedef struct wparams {
    const uint8_t *w, *bias, *mult, *shift;
    uint32_t       row_bytes;
    int            bits;
} wparams;

static wparams wparams_of(const lbm_model *m, const opinfo *op, uint32_t K, uint32_t O)
{
    wparams  p;
    uint64_t row_bytes;
    p.bits      = op->attr[5];
    p.w         = m->data + op->data_off;
    p.bias      = p.w + (weights_need(K, O, p.bits, &row_bytes) - 12u * (uint64_t)O);
    p.mult      = p.bias + 4u * O;
    p.shift     = p.mult + 4u * O;
    p.row_bytes = (uint32_t)row_bytes;
    return p;
}

/* The requantization of output channel o, read once per channel. */
typedef struct chan {
    uint32_t bias;
    int32_t  mult, shift, lo, hi, acc_shift;
} chan;

static chan chan_of(const wparams *p, const opinfo *op, uint32_t o)
{
    chan c;
    c.bias      = rd_u32(p->bias + 4u * o);
    c.mult      = rd_i32(p->mult + 4u * o);
    c.shift     = rd_i32(p->shift + 4u * o);
    c.lo        = op->attr[6];
    c.hi        = op->attr[7];
    c.acc_shift = op->attr[8];
    return c;
}

/* The output of a channel at position idx from its accumulator acc = sum w*x:
 * t = acc * 2^acc_shift + bias (int32, wrapping), then requant and clamp (or saturate). */
static void conv_out(const chan *c, uint32_t acc, uint8_t *y, uint32_t ydtype, uint32_t idx)
{
    const uint32_t t = (acc << c->acc_shift) + c->bias;
    st(y, ydtype, idx, requant(u32_to_i32(t), c->mult, c->shift), c->lo, c->hi);
}

/* x (C,H,W) INT8/UINT8 -> y (O,Ho,Wo); weights (O, C, kh, kw) packed. Direct loops, no
 * scratch beyond WBUF bytes of stack: for each output position, the kernel row i of channel
 * c is one contiguous run of the input row, clipped to the image (padding reads 0, so
 * clipped terms vanish). */
static void conv2d(const lbm_model *m, const opinfo *op, const tinfo *xi, const uint8_t *x,
                   const tinfo *yi, uint8_t *y)
{
    const uint32_t C = xi->d[0], H = xi->d[1], W = xi->d[2];
    const uint32_t O = yi->d[0], Ho = yi->d[1], Wo = yi->d[2];
    const int32_t  kh = op->attr[1], kw = op->attr[2], stride = op->attr[3], pad = op->attr[4];
    const uint32_t K = C * (uint32_t)kh * (uint32_t)kw, HW = H * W, khw = (uint32_t)(kh * kw);
    const int      xsigned = xi->dtype == LBM_INT8;
    const wparams  p = wparams_of(m, op, K, O);
    int8_t         wbuf[WBUF];
    for (uint32_t o = 0; o < O; o++) {
        const uint8_t *row = p.w + (size_t)o * p.row_bytes;
        const chan     ch  = chan_of(&p, op, o);
        const int8_t  *w8  = NULL;   /* the row as int8, when it is (8 bits) or fits wbuf */
        if (p.bits == 8) {
            w8 = (const int8_t *)(const void *)row;
        } else if (K <= WBUF) {
            unpack(row, 0, K, p.bits, wbuf);
            w8 = wbuf;
        }
        for (uint32_t oy = 0; oy < Ho; oy++) {
            const int32_t iy0 = (int32_t)oy * stride - pad;
            const int32_t i0  = iy0 < 0 ? -iy0 : 0;                      /* rows inside */
            const int32_t i1  = (int32_t)H - iy0 < kh ? (int32_t)H - iy0 : kh;
            for (uint32_t ox = 0; ox < Wo; ox++) {
                const int32_t ix0 = (int32_t)ox * stride - pad;
                const int32_t j0  = ix0 < 0 ? -ix0 : 0;                    /* first j inside */
                const int32_t j1  = (int32_t)W - ix0 < kw ? (int32_t)W - ix0 : kw;
                uint32_t      acc = 0;
                if (j0 < j1 && i0 < i1) {
                    const uint32_t n  = (uint32_t)(j1 - j0), rows = (uint32_t)(i1 - i0);
                    const uint32_t k0 = (uint32_t)(i0 * kw + j0);
                    const uint32_t xo = (uint32_t)(iy0 + i0) * W + (uint32_t)(ix0 + j0);
                    if (w8) {
                        acc = window8(w8 + k0, x + xo, xsigned, C, khw, (uint32_t)kw, HW, W,
                                      rows, n);
                    } else {   /* a long packed row: dot() on the packed bytes */
                        for (uint32_t c = 0; c < C; c++)
                            for (uint32_t i = 0; i < rows; i++)
                                acc += dot(row, c * khw + k0 + i * (uint32_t)kw,
                                           x + c * HW + xo + i * W, n, p.bits,
                                           xsigned ? 0x80u : 0u);
                    }
                }
                conv_out(&ch, acc, y, yi->dtype, (o * Ho + oy) * Wo + ox);
            }
        }
    }
}

/* x (K) INT8/UINT8 (any dims, NCHW-flattened) -> y (O); weights (O, K) packed, each weight
 * used once: 8-bit rows directly, 4- and 2-bit rows a byte at a time, 1-bit rows unpacked
 * WBUF weights at a time. */
static void linear(const lbm_model *m, const opinfo *op, const tinfo *xi, const uint8_t *x,
                   const tinfo *yi, uint8_t *y)
{
    const uint32_t K = xi->numel, O = yi->d[0];
    const int      xsigned = xi->dtype == LBM_INT8;
    const wparams  p = wparams_of(m, op, K, O);
    int8_t         wbuf[WBUF];
    for (uint32_t o = 0; o < O; o++) {
        const uint8_t *row = p.w + (size_t)o * p.row_bytes;
        const chan     ch  = chan_of(&p, op, o);
        uint32_t       acc = 0;
        if (p.bits == 8) {
            acc = dot8((const int8_t *)(const void *)row, x, xsigned, K);
        } else if (p.bits != 1) {
            acc = dotp(row, x, xsigned, K, p.bits);
        } else {
            for (uint32_t k0 = 0; k0 < K; k0 += WBUF) {
                const uint32_t n = K - k0 < WBUF ? K - k0 : WBUF;
                unpack(row, k0, n, p.bits, wbuf);
                acc += dot8(wbuf, x + k0, xsigned, n);
            }
        }
        conv_out(&ch, acc, y, yi->dtype, o);
    }
}

/* x (C,H,W) -> y (C,Ho,Wo), k x k windows clamped to the image. MAXPOOL takes the max of the
 * pixels inside (pad < k guarantees one); AVGPOOL sums them and divides by k*k (padding
 * counts as zero). */
static void pool(const opinfo *op, const tinfo *xi, const uint8_t *x, const tinfo *yi,
                 uint8_t *y)
{
    const uint32_t C = xi->d[0], H = xi->d[1], W = xi->d[2], Ho = yi->d[1], Wo = yi->d[2];
    const int32_t  k = op->attr[0], stride = op->attr[1], pad = op->attr[2];
    const int      is_max = op->kind == LBM_OP_MAXPOOL;
    for (uint32_t c = 0; c < C; c++)
        for (uint32_t oy = 0; oy < Ho; oy++)
            for (uint32_t ox = 0; ox < Wo; ox++) {
                const int32_t y0 = (int32_t)oy * stride - pad, x0 = (int32_t)ox * stride - pad;
                const int32_t ya = y0 < 0 ? 0 : y0, yb = y0 + k < (int32_t)H ? y0 + k : (int32_t)H;
                const int32_t xa = x0 < 0 ? 0 : x0, xb = x0 + k < (int32_t)W ? x0 + k : (int32_t)W;
                int64_t       acc = is_max ? INT64_MIN : 0;
                for (int32_t iy = ya; iy < yb; iy++)
                    for (int32_t ix = xa; ix < xb; ix++) {
                        const uint32_t s = (c * H + (uint32_t)iy) * W + (uint32_t)ix;
                        const int32_t  v = ld(x, xi->dtype, s);
                        if (!is_max) acc += v;
                        else if (v > acc) acc = v;
                    }
                const uint32_t idx = (c * Ho + oy) * Wo + ox;
                if (is_max) st(y, yi->dtype, idx, acc, -128, 255);   /* same dtype: no clamp */
                else st(y, LBM_INT32, idx, avg_round(acc, (uint32_t)k * (uint32_t)k), 0, 0);
            }
}

/* x (C,H,W) INT32 -> y (C) INT32: the rounded mean of each channel. */
static void gap(const tinfo *xi, const int32_t *x, int32_t *y)
{
    const uint32_t C = xi->d[0], HW = xi->d[1] * xi->d[2];
    for (uint32_t c = 0; c < C; c++) {
        int64_t sum = 0;
        for (uint32_t s = 0; s < HW; s++) sum += x[c * HW + s];
        y[c] = avg_round(sum, HW);
    }
}

/* Runs op i. x, x2: inputs (x2 only for ADD); y: the output's storage. */
static void run_op(const lbm_model *m, const opinfo *op, const uint8_t *x, const uint8_t *x2,
                   uint8_t *y)
{
    const tinfo xi = tensor_info(m, op->in[0]), yi = tensor_info(m, op->out);
    const uint32_t n = yi.numel;
    switch (op->kind) {
    case LBM_OP_INPUT: {   /* x (C,H,W) pixels -> y (C,H,W): y = lut[c][x] */
        const uint32_t HW = xi.d[1] * xi.d[2];
        const uint8_t *lut = m->data + op->data_off;
        for (uint32_t c = 0; c < xi.d[0]; c++)
            for (uint32_t s = 0; s < HW; s++) y[c * HW + s] = lut[256u * c + x[c * HW + s]];
        break;
    }
    case LBM_OP_CONV2D:  conv2d(m, op, &xi, x, &yi, y); break;
    case LBM_OP_LINEAR:  linear(m, op, &xi, x, &yi, y); break;
    case LBM_OP_MAXPOOL:
    case LBM_OP_AVGPOOL: pool(op, &xi, x, &yi, y); break;
    case LBM_OP_GAP:
        gap(&xi, (const int32_t *)(const void *)x, (int32_t *)(void *)y);
        break;
    case LBM_OP_ADD: {     /* wraps modulo 2^32, like the accumulators */
        const int32_t *a = (const int32_t *)(const void *)x, *b = (const int32_t *)(const void *)x2;
        int32_t       *s = (int32_t *)(void *)y;
        for (uint32_t k = 0; k < n; k++) s[k] = u32_to_i32((uint32_t)a[k] + (uint32_t)b[k]);
        break;
    }
    case LBM_OP_RELU:
        for (uint32_t k = 0; k < n; k++) {
            const int32_t v = ld(x, xi.dtype, k);
            st(y, yi.dtype, k, v > 0 ? v : 0, -128, 127);
        }
        break;
    case LBM_OP_REQUANT: {
        const int32_t *a = (const int32_t *)(const void *)x;
        for (uint32_t k = 0; k < n; k++)
            st(y, yi.dtype, k, requant(a[k], op->attr[0], op->attr[1]), op->attr[6], op->attr[7]);
        break;
    }
    case LBM_OP_FLATTEN:
        memcpy(y, x, (size_t)n * elem_size(yi.dtype));
        break;
    default:
        break;   /* unreachable: lbm_load accepts only the kinds above */
    }
}

lbm_status lbm_run(const lbm_model *m, const uint8_t *input, void *arena, size_t arena_size,
                   int32_t *scores, int *pred)
{
    if (!m || !m->graph || !input || !arena) return LBM_ERR_ARG;
    if ((uintptr_t)arena % 4 != 0 || arena_size < m->arena_bytes) return LBM_ERR_ARG;
    /* arena: off[n_tensors] | live[n_tensors] (+pad) | activations */
    uint8_t *const  base = arena;
    uint32_t *const off  = arena;
    uint16_t *const live = (uint16_t *)(void *)(base + 4u * (size_t)m->n_tensors);
    uint8_t *const  act  = base + tables_bytes(m->n_tensors);
    plan_arena(m, off, live);
    for (uint32_t i = 0; i < m->n_ops; i++) {
        opinfo op;
        op_read(m, i, &op);
        const uint8_t *x[2] = { NULL, NULL };
        for (uint32_t k = 0; k < op.n_in; k++)   /* in[1] is only meaningful for ADD */
            x[k] = op.in[k] == m->input ? input : act + off[op.in[k]];
        run_op(m, &op, x[0], x[1], act + off[op.out]);
    }
    const int32_t *out = (const int32_t *)(const void *)(act + off[m->output]);
    int            best = 0;
    for (uint32_t k = 0; k < m->n_classes; k++) {
        if (scores) scores[k] = out[k];
        if (out[k] > out[best]) best = (int)k;
    }
    if (pred) *pred = best;
    return LBM_OK;
}

/* ---- inspection ------------------------------------------------------------------------ */

lbm_status lbm_get_op(const lbm_model *m, uint32_t i, lbm_op *op)
{
    if (!m || !op || i >= m->n_ops) return LBM_ERR_ARG;
    const uint8_t *r = m->graph + 16u + 32u * m->n_tensors + 64u * i;
    op->kind = (int)(r[0] | (uint32_t)r[1] << 8);
    op->n_in = (uint32_t)(r[2] | (uint32_t)r[3] << 8);
    op->in[0] = rd_u32(r + 4);
    op->in[1] = rd_u32(r + 8);
    op->out = rd_u32(r + 12);
    op->data_offset = rd_u32(r + 16);
    op->data_size = rd_u32(r + 20);
    for (int k = 0; k < 10; k++) op->attr[k] = rd_i32(r + 24 + 4 * k);
    return LBM_OK;
}

lbm_status lbm_get_tensor(const lbm_model *m, uint32_t i, lbm_tensor *t)
{
    if (!m || !t || i >= m->n_tensors) return LBM_ERR_ARG;
    const uint8_t *r = m->graph + 16u + 32u * i;
    t->dtype = r[0];
    t->n_dims = r[1];
    for (int k = 0; k < 3; k++) t->dims[k] = rd_u32(r + 4 + 4 * k);
    const uint32_t bits = rd_u32(r + 16);
    memcpy(&t->scale, &bits, sizeof t->scale);
    t->zero_point = rd_i32(r + 20);
    return LBM_OK;
}

const char *lbm_op_name(int kind)
{
    static const char *const names[] = { "?", "INPUT", "CONV2D", "LINEAR", "MAXPOOL", "AVGPOOL",
                                         "GAP", "ADD", "RELU", "REQUANT", "FLATTEN" };
    return kind >= 1 && kind <= 10 ? names[kind] : names[0];
}
