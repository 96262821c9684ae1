/* Per-time-step gate math of rnnclf's CPU recurrent layers, one pass over memory per step.
 *
 * Why C: a GRU step in ATen ops is ~9 elementwise kernels of a few microseconds each, every one
 * a pass over (batch x hidden) values, between two small matmuls. Here each step is one call
 * (through ctypes; rnnclf/kernels.py) that reads each operand once. Matmuls stay in oneDNN.
 *
 * fp32 only, contiguous row-major arrays; layouts are given per function. Built at install time
 * as an optional extension (setup.py): without a C compiler rnnclf runs the same math as ATen ops.
 *
 * exp is a Cephes-style polynomial (range reduction by ln 2, degree-6 polynomial, ~2 ulp) written
 * in plain arithmetic so the compiler vectorizes it; tanh(a) = 2 sigmoid(2a) - 1, as the ATen
 * fallback computes it. NaN inputs give NaN outputs (clamps use comparisons that NaN fails).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* One copy of each exported function per x86-64 level (AVX-512, AVX2+FMA, baseline), picked by
 * the loader for the CPU at hand: a build from one machine runs on any other. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

/* Bumped whenever a signature below changes: rnnclf/kernels.py refuses a library built from an
 * older source (an editable install does not rebuild by itself). */
int64_t rnnclf_kernels_version(void) { return 3; }

static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x; /* keeps 2^k a normal float; e^-87 ~ 1.6e-38 */
    x = x > 88.0f ? 88.0f : x;
    /* k = round(x / ln 2) by the 1.5 * 2^23 trick (default rounding, no libm call). */
    const float magic = 12582912.0f;
    float k = (x * 1.44269504088896341f + magic) - magic;
    float r = x - k * 0.693359375f + k * 2.12194440e-4f; /* ln 2 in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* sigmoid(+inf) = 1 exactly and sigmoid(-inf) ~ 1.6e-38: the GRU's inert padding relies on z = 1. */
static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_poly(-x)); }

static inline float tanh_via_sigmoid(float x) { return 2.0f * sigmoid(2.0f * x) - 1.0f; }

/* Training GRU, forward, step t of D directions (1 or 2) at once. Equations as nn.GRU's:
 *   r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r hn), h' = n + z (h - n)
 * with x = W_ih x_t + b_ih and h = W_hh h_{t-1} + b_hh (gate order r, z, n).
 * products (T, B, D, 3H): every step's input gates, direction d's at time t for d = 0 and at
 *     T - 1 - t for d = 1 (the backward direction reads the text from its end);
 * hidden_gates[d] (B, 3H): this step's W_hh h + b_hh;
 * pad_before (B,) or NULL: for d = 1, steps t < pad_before[b] are padding (T - length): the state
 *     stays 0 and the saved gates (z = 1, r = n = 0) make every gradient there 0;
 * states (D, T+1, B, H): reads [d, t], writes [d, t+1];
 * saved for the backward: rz (D, T, B, 2H), reset_hidden (D, T, B, H) = r * hn, n (D, T, B, H);
 * outputs (T, B, D, H): the new state at its text position (t, or T - 1 - t for d = 1). */
CLONES void gru_train_forward_step(int64_t steps, int64_t batch, int64_t hidden,
                                   int64_t directions, int64_t t, const float *products,
                                   const float *hidden_gates0, const float *hidden_gates1,
                                   const int64_t *pad_before, float *states, float *rz,
                                   float *reset_hidden, float *n, float *outputs) {
    const int64_t H = hidden, G = 3 * hidden;
    for (int64_t d = 0; d < directions; d++) {
        const int64_t position = d == 0 ? t : steps - 1 - t;
        const float *hidden_gates = d == 0 ? hidden_gates0 : hidden_gates1;
        const float *h_prev = states + ((d * (steps + 1) + t) * batch) * H;
        float *h_next = states + ((d * (steps + 1) + t + 1) * batch) * H;
        const int64_t saved = (d * steps + t) * batch;
        for (int64_t b = 0; b < batch; b++) {
            const float *restrict x = products + ((position * batch + b) * directions + d) * G;
            const float *restrict hg = hidden_gates + b * G;
            const float *restrict hp = h_prev + b * H;
            float *restrict hn = h_next + b * H;
            float *restrict rz_row = rz + (saved + b) * 2 * H;
            float *restrict rh_row = reset_hidden + (saved + b) * H;
            float *restrict n_row = n + (saved + b) * H;
            float *restrict out = outputs + ((position * batch + b) * directions + d) * H;
            if (d == 1 && pad_before != NULL && t < pad_before[b]) {
                #pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) {
                    rz_row[j] = 0.0f;
                    rz_row[H + j] = 1.0f;
                    rh_row[j] = 0.0f;
                    n_row[j] = 0.0f;
                    hn[j] = 0.0f;
                    out[j] = 0.0f;
                }
                continue;
            }
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const float r = sigmoid(x[j] + hg[j]);
                const float z = sigmoid(x[H + j] + hg[H + j]);
                const float rh = r * hg[2 * H + j];
                const float nj = tanh_via_sigmoid(x[2 * H + j] + rh);
                const float h = nj + z * (hp[j] - nj);
                rz_row[j] = r;
                rz_row[H + j] = z;
                rh_row[j] = rh;
                n_row[j] = nj;
                hn[j] = h;
                out[j] = h;
            }
        }
    }
}

/* Training GRU, backward, step t (called for t = T-1 down to 0), D directions at once.
 * grad_outputs (T, B, D, H) with strides (grad_time_stride, grad_batch_stride, H, 1) in floats:
 *     the loss gradient of the outputs (read at each direction's position, as the forward wrote
 *     them; the model's pooling hands it over batch-major, so it is not copied first);
 * carried (D, B, H): z_{t+1} dh_{t+1} from the call for step t + 1, written for step t - 1;
 * recurrent[d] (B, H) or NULL (at t = T-1): dG_{t+1} W_hh, the gradient reaching h_t through the
 *     next step's hidden matmul;
 * rz, reset_hidden, n, states: as saved by the forward;
 * writes the gradients of the gate pre-activations at step t, per direction:
 *   hidden_rows (D, T, B, 3H): (dr, dz, dn * r), the gradient of W_hh h + b_hh;
 *   input_rows (D, T, B, 3H): (dr, dz, dn), the gradient of W_ih x + b_ih;
 * and adds the step's sums over the batch of (dr, dz, dn, dn * r) to bias_sums (D, 4H), in double
 * (the bias gradients: ~T x B terms each), through bias_partial (4H floats of scratch). */
CLONES void gru_train_backward_step(int64_t steps, int64_t batch, int64_t hidden,
                                    int64_t directions, int64_t t, const float *grad_outputs,
                                    int64_t grad_time_stride, int64_t grad_batch_stride,
                                    float *carried, const float *recurrent0,
                                    const float *recurrent1, const float *rz,
                                    const float *reset_hidden, const float *n,
                                    const float *states, float *hidden_rows, float *input_rows,
                                    float *bias_partial, double *bias_sums) {
    const int64_t H = hidden, G = 3 * hidden;
    for (int64_t d = 0; d < directions; d++) {
        const int64_t position = d == 0 ? t : steps - 1 - t;
        const float *recurrent = d == 0 ? recurrent0 : recurrent1;
        const int64_t saved = (d * steps + t) * batch;
        float *restrict sum_r = bias_partial, *restrict sum_z = bias_partial + H;
        float *restrict sum_n = bias_partial + 2 * H, *restrict sum_nr = bias_partial + 3 * H;
        memset(bias_partial, 0, 4 * H * sizeof(float));
        for (int64_t b = 0; b < batch; b++) {
            const float *restrict g_out =
                grad_outputs + position * grad_time_stride + b * grad_batch_stride + d * H;
            const float *restrict rec = recurrent == NULL ? NULL : recurrent + b * H;
            float *restrict carry = carried + (d * batch + b) * H;
            const float *restrict rz_row = rz + (saved + b) * 2 * H;
            const float *restrict rh_row = reset_hidden + (saved + b) * H;
            const float *restrict n_row = n + (saved + b) * H;
            const float *restrict hp = states + ((d * (steps + 1) + t) * batch + b) * H;
            float *restrict g_hidden = hidden_rows + (saved + b) * G;
            float *restrict g_input = input_rows + (saved + b) * G;
            if (rec == NULL) {
                #pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) carry[j] = 0.0f;
            }
            #pragma GCC ivdep
            for (int64_t j = 0; j < H; j++) {
                const float g = g_out[j] + carry[j] + (rec == NULL ? 0.0f : rec[j]);
                const float r = rz_row[j], z = rz_row[H + j], nj = n_row[j];
                const float dn = g * (1.0f - z) * (1.0f - nj * nj);
                const float dz = g * (hp[j] - nj) * z * (1.0f - z);
                const float dr = dn * rh_row[j] * (1.0f - r); /* r hn r(1-r) / r */
                g_hidden[j] = dr;
                g_hidden[H + j] = dz;
                g_hidden[2 * H + j] = dn * r;
                g_input[j] = dr;
                g_input[H + j] = dz;
                g_input[2 * H + j] = dn;
                carry[j] = g * z;
                sum_r[j] += dr;
                sum_z[j] += dz;
                sum_n[j] += dn;
                sum_nr[j] += dn * r;
            }
        }
        double *restrict sums = bias_sums + d * 4 * H;
#pragma GCC ivdep
        for (int64_t j = 0; j < 4 * H; j++) sums[j] += bias_partial[j];
    }
}

/* Inference, one step of one layer and direction over the first `rows` texts (longest first).
 * gates (rows, G*H) or, with `tokens`, a table (U, G*H) of input gates per distinct token read at
 * row tokens[b]; hidden_gates (rows, G*H) = W_hh h + b_hh; h (rows, H) updated in place (and c
 * for the LSTM); pooled (rows, H) or NULL: pool 0 copies the new state (first step), 1 keeps the
 * running maximum, 2 the running sum. */
static inline void pool_row(float *pooled, const float *h, int64_t H, int64_t pool) {
    if (pool == 0) {
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; j++) pooled[j] = h[j];
    } else if (pool == 1) {
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; j++) pooled[j] = h[j] > pooled[j] ? h[j] : pooled[j];
    } else {
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; j++) pooled[j] += h[j];
    }
}

CLONES void gru_infer_step(int64_t rows, int64_t hidden, const float *gates,
                           const int64_t *tokens, const float *hidden_gates, float *h,
                           float *pooled, int64_t pool) {
    const int64_t H = hidden, G = 3 * hidden;
    for (int64_t b = 0; b < rows; b++) {
        const float *restrict x = gates + (tokens == NULL ? b : tokens[b]) * G;
        const float *restrict hg = hidden_gates + b * G;
        float *restrict hb = h + b * H;
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; j++) {
            const float r = sigmoid(x[j] + hg[j]);
            const float z = sigmoid(x[H + j] + hg[H + j]);
            const float nj = tanh_via_sigmoid(x[2 * H + j] + r * hg[2 * H + j]);
            hb[j] = nj + z * (hb[j] - nj);
        }
        if (pooled != NULL) pool_row(pooled + b * H, hb, H, pool);
    }
}

/* As gru_infer_step for nn.LSTM's equations (gate order i, f, g, o):
 *   c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c'). */
CLONES void lstm_infer_step(int64_t rows, int64_t hidden, const float *gates,
                            const int64_t *tokens, const float *hidden_gates, float *h, float *c,
                            float *pooled, int64_t pool) {
    const int64_t H = hidden, G = 4 * hidden;
    for (int64_t b = 0; b < rows; b++) {
        const float *restrict x = gates + (tokens == NULL ? b : tokens[b]) * G;
        const float *restrict hg = hidden_gates + b * G;
        float *restrict hb = h + b * H, *restrict cb = c + b * H;
        #pragma GCC ivdep
        for (int64_t j = 0; j < H; j++) {
            const float i = sigmoid(x[j] + hg[j]);
            const float f = sigmoid(x[H + j] + hg[H + j]);
            const float g = tanh_via_sigmoid(x[2 * H + j] + hg[2 * H + j]);
            const float o = sigmoid(x[3 * H + j] + hg[3 * H + j]);
            const float cj = f * cb[j] + i * g;
            cb[j] = cj;
            hb[j] = o * tanh_via_sigmoid(cj);
        }
        if (pooled != NULL) pool_row(pooled + b * H, hb, H, pool);
    }
}

/* The two activations over an array, for tests of their accuracy. */
CLONES void sigmoid_array(int64_t count, const float *values, float *out) {
#pragma GCC ivdep
    for (int64_t i = 0; i < count; i++) out[i] = sigmoid(values[i]);
}

CLONES void tanh_array(int64_t count, const float *values, float *out) {
#pragma GCC ivdep
    for (int64_t i = 0; i < count; i++) out[i] = tanh_via_sigmoid(values[i]);
}

/* A module of its own only so that setuptools builds and installs this file; rnnclf/kernels.py
 * loads the shared library with ctypes and never imports it. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "rnnclf's C gate kernels, loaded with ctypes.", -1, NULL};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
