/* lenet5_f32.c: LeNet-5 at FP32 as a plain float C loop, the reference that the integer
 * runtime is measured against on the Cortex-M4 (mcu.h backend). Same architecture as lowbit's
 * zoo "lenet5" on 1x28x28 inputs: conv 6x5x5 pad 2, ReLU, maxpool 2, conv 16x5x5, ReLU,
 * maxpool 2, flatten, linear 120, ReLU, linear 84, ReLU, linear 10. Weights come from
 * experiments/mcu/fp32_weights.py (an FP32 checkpoint). Two static ping-pong buffers hold the
 * activations. Straightforward loops, no fusion and no tricks: what one would write first.
 *
 * Legend: C, H, W input channels, height, width; O output channels; K kernel size; P pad.
 */
#include <string.h>

#include "runtime/mcu/mcu.h"

extern const float lenet5_mean, lenet5_std;
extern const float lenet5_conv1_w[6 * 1 * 5 * 5], lenet5_conv1_b[6];
extern const float lenet5_conv2_w[16 * 6 * 5 * 5], lenet5_conv2_b[16];
extern const float lenet5_fc1_w[120 * 400], lenet5_fc1_b[120];
extern const float lenet5_fc2_w[84 * 120], lenet5_fc2_b[84];
extern const float lenet5_fc3_w[10 * 84], lenet5_fc3_b[10];
extern const unsigned lenet5_n_params;

static float buf_a[6 * 28 * 28];   /* conv1 out, conv2 out, fc1 out, fc3 out */
static float buf_b[6 * 14 * 14];   /* input, pool1 out, pool2 out, fc2 out   */

/* x (C,H,W) -> y (O,Ho,Wo) with zero padding P, stride 1, then ReLU */
static void conv_relu(const float *x, int C, int H, int W, const float *w, const float *b, int O,
                      int K, int P, float *y)
{
    const int Ho = H + 2 * P - K + 1, Wo = W + 2 * P - K + 1;
    for (int o = 0; o < O; o++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                float acc = b[o];
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < K; i++) {
                        const int iy = oy + i - P;
                        if (iy < 0 || iy >= H) continue;
                        for (int j = 0; j < K; j++) {
                            const int ix = ox + j - P;
                            if (ix < 0 || ix >= W) continue;
                            acc += w[((o * C + c) * K + i) * K + j] * x[(c * H + iy) * W + ix];
                        }
                    }
                y[(o * Ho + oy) * Wo + ox] = acc > 0.0f ? acc : 0.0f;
            }
}

/* x (C,H,W) -> y (C,H/2,W/2): 2x2 max pooling */
static void maxpool2(const float *x, int C, int H, int W, float *y)
{
    for (int c = 0; c < C; c++)
        for (int oy = 0; oy < H / 2; oy++)
            for (int ox = 0; ox < W / 2; ox++) {
                const float *p = x + (c * H + 2 * oy) * W + 2 * ox;
                float m = p[0];
                if (p[1] > m) m = p[1];
                if (p[W] > m) m = p[W];
                if (p[W + 1] > m) m = p[W + 1];
                y[(c * (H / 2) + oy) * (W / 2) + ox] = m;
            }
}

/* x (N) -> y (O) = W x + b, with ReLU when relu */
static void linear(const float *x, int N, const float *w, const float *b, int O, int relu,
                   float *y)
{
    for (int o = 0; o < O; o++) {
        float acc = b[o];
        for (int k = 0; k < N; k++) acc += w[o * N + k] * x[k];
        y[o] = relu && acc < 0.0f ? 0.0f : acc;
    }
}

int bench_init(char *msg, size_t msg_cap)
{
    if (msg && msg_cap) msg[0] = '\0';
    return 0;
}

const char *bench_name(void) { return "lenet5-fp32"; }
uint32_t bench_input_bytes(void) { return 28 * 28; }
uint32_t bench_model_bytes(void) { return 4u * lenet5_n_params; }
uint32_t bench_arena_bytes(void) { return (uint32_t)(sizeof buf_a + sizeof buf_b); }

int bench_run(const uint8_t *pixels, int32_t *scores, uint32_t *n_scores, int *pred)
{
    for (int k = 0; k < 28 * 28; k++)   /* the framework's normalisation */
        buf_b[k] = ((float)pixels[k] / 255.0f - lenet5_mean) / lenet5_std;
    conv_relu(buf_b, 1, 28, 28, lenet5_conv1_w, lenet5_conv1_b, 6, 5, 2, buf_a);
    maxpool2(buf_a, 6, 28, 28, buf_b);
    conv_relu(buf_b, 6, 14, 14, lenet5_conv2_w, lenet5_conv2_b, 16, 5, 0, buf_a);
    maxpool2(buf_a, 16, 10, 10, buf_b);
    linear(buf_b, 400, lenet5_fc1_w, lenet5_fc1_b, 120, 1, buf_a);
    linear(buf_a, 120, lenet5_fc2_w, lenet5_fc2_b, 84, 1, buf_b);
    linear(buf_b, 84, lenet5_fc3_w, lenet5_fc3_b, 10, 0, buf_a);
    int best = 0;
    for (int k = 0; k < 10; k++) {
        memcpy(&scores[k], &buf_a[k], 4);   /* the float's bits: exact comparison */
        if (buf_a[k] > buf_a[best]) best = k;
    }
    *n_scores = 10;
    *pred = best;
    return 0;
}
