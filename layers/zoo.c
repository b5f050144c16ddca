/* zoo.c: the model zoo as generated description text (see model.h for the format).
 * Generating text rather than calling layer constructors directly means every zoo model
 * goes through the same parser as a user's file, and checkpoints can store the text. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "layers/model.h"

static const char *const zoo_names[] = { "mlp", "lenet5", "vgg-small", "resnet20", NULL };

const char *const *lb_zoo_names(void) { return zoo_names; }

typedef struct {
    char  *buf;
    size_t len, cap;
    bool   oom;
} sbuf;

static void emit(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = true; return; }
        if (b->buf && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *nb = realloc(b->buf, nc);
        if (!nb) { b->oom = true; return; }
        b->buf = nb;
        b->cap = nc;
    }
}

static void mlp(sbuf *b, int n_classes)
{
    emit(b, "flatten\n"
            "linear name=fc1 out=256\nrelu\n"
            "linear name=fc2 out=256\nrelu\n"
            "linear name=fc3 out=%d\n", n_classes);
}

/* LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, as in most modern reproductions.
 * 28x28 inputs get pad=2 on the first conv so the geometry matches the 32x32 original. */
static void lenet5(sbuf *b, int h, int n_classes)
{
    emit(b, "conv name=conv1 out=6 k=5 pad=%d\nrelu\nmaxpool k=2\n"
            "conv name=conv2 out=16 k=5\nrelu\nmaxpool k=2\n"
            "flatten\n"
            "linear name=fc1 out=120\nrelu\n"
            "linear name=fc2 out=84\nrelu\n"
            "linear name=fc3 out=%d\n", h < 32 ? 2 : 0, n_classes);
}

/* VGG-style: three stages of two 3x3 conv+BN+ReLU (64, 128, 256 channels), each followed by
 * 2x2 max pooling, then a 256-unit hidden layer. */
static void vgg_small(sbuf *b, int n_classes)
{
    static const int ch[3] = { 64, 128, 256 };
    for (int s = 0; s < 3; s++) {
        for (int j = 1; j <= 2; j++)
            emit(b, "conv name=conv%d_%d out=%d k=3 pad=1 bias=0\nbn name=bn%d_%d\nrelu\n", s + 1, j,
                 ch[s], s + 1, j);
        emit(b, "maxpool k=2\n");
    }
    emit(b, "flatten\nlinear name=fc1 out=256\nrelu\nlinear name=fc2 out=%d\n", n_classes);
}

/* ResNet-20 for CIFAR (He et al. 2016, section 4.2): a 3x3 stem with 16 channels, three
 * stages of three basic blocks (16, 32, 64 channels; stride 2 at the start of stages 2 and 3),
 * global average pooling and one linear layer. Where the shape changes the shortcut is a 1x1
 * stride-2 conv + BN (option B), which exports as an ordinary conv. */
static void resnet20(sbuf *b, int n_classes)
{
    emit(b, "conv name=stem.conv out=16 k=3 pad=1 bias=0\nbn name=stem.bn\nrelu name=stem.relu\n");
    const char *prev = "stem.relu";
    char prevbuf[LB_NAME_LEN];
    int c_in = 16;
    for (int s = 1; s <= 3; s++) {
        const int c = 16 << (s - 1);
        for (int k = 1; k <= 3; k++) {
            const int stride = (s > 1 && k == 1) ? 2 : 1;
            char id[16];
            snprintf(id, sizeof id, "s%db%d", s, k);
            emit(b, "conv name=%s.conv1 out=%d k=3 stride=%d pad=1 bias=0 in=%s\n", id, c, stride, prev);
            emit(b, "bn name=%s.bn1\nrelu name=%s.relu1\n", id, id);
            emit(b, "conv name=%s.conv2 out=%d k=3 pad=1 bias=0\nbn name=%s.bn2\n", id, c, id);
            if (stride != 1 || c != c_in) {
                emit(b, "conv name=%s.down out=%d k=1 stride=%d bias=0 in=%s\n", id, c, stride, prev);
                emit(b, "bn name=%s.downbn\n", id);
                emit(b, "add name=%s.add in=%s.bn2,%s.downbn\n", id, id, id);
            } else {
                emit(b, "add name=%s.add in=%s.bn2,%s\n", id, id, prev);
            }
            emit(b, "relu name=%s.out\n", id);
            snprintf(prevbuf, sizeof prevbuf, "%s.out", id);
            prev = prevbuf;
            c_in = c;
        }
    }
    emit(b, "gap\nlinear name=fc out=%d\n", n_classes);
}

char *lb_zoo_spec(const char *name, int c, int h, int w, int n_classes, lb_error *err)
{
    sbuf b = { 0 };
    emit(&b, "# lowbit zoo model %s for %dx%dx%d inputs, %d classes\nmodel %s\ninput %d %d %d\n",
         name, c, h, w, n_classes, name, c, h, w);
    if (!strcmp(name, "mlp")) mlp(&b, n_classes);
    else if (!strcmp(name, "lenet5")) lenet5(&b, h, n_classes);
    else if (!strcmp(name, "vgg-small")) vgg_small(&b, n_classes);
    else if (!strcmp(name, "resnet20")) resnet20(&b, n_classes);
    else {
        free(b.buf);
        lb_errorf(err, LB_ERR_ARG, "unknown model '%s' (zoo: mlp, lenet5, vgg-small, resnet20; "
                                   "or give a description file)", name);
        return NULL;
    }
    if (b.oom) {
        free(b.buf);
        lb_errorf(err, LB_ERR_NOMEM, "out of memory generating model %s", name);
        return NULL;
    }
    return b.buf;
}

lb_status lb_model_build_zoo(const char *name, int c, int h, int w, int n_classes,
                             const lb_qconfig *qc, lb_model **out, lb_error *err)
{
    *out = NULL;
    char *spec = lb_zoo_spec(name, c, h, w, n_classes, err);
    if (!spec) return err ? err->status : LB_ERR_ARG;
    char origin[80];
    snprintf(origin, sizeof origin, "zoo:%s", name);
    lb_status st = lb_model_build(spec, origin, qc, out, err);
    free(spec);
    return st;
}
