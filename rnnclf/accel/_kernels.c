/* The time loop of rnnclf's CPU recurrent layers: every step's hidden matmul and gate math.
 *
 * Why C: in PyTorch ops a GRU step is two oneDNN matmul calls (each with a fixed cost that is a
 * large share of the call at these small shapes) and ~9 elementwise kernels, each a pass over
 * (batch x hidden) values, all dispatched from Python. Here one call runs a whole layer: per step
 * a register-blocked matmul (`gemm`, faster than oneDNN's call at these shapes) and one pass of
 * gate math over values still in cache (figures: docs/benchmarks.md). The big products over all
 * steps at once (input projections, weight gradients) stay in oneDNN. Callers:
 * rnnclf/accel/fused_gru.py and rnnclf/accel/cpu_inference.py, behind the custom ops of
 * rnnclf/accel/ops.py, through ctypes (rnnclf/accel/kernels.py, which says why ctypes and not a
 * torch C++ extension).
 *
 * fp32, row-major arrays; layouts are given per function. Built at install time as an optional
 * extension (setup.py): without a C compiler rnnclf runs the same math in PyTorch ops.
 *
 * exp is a Cephes-style polynomial (range reduction by ln 2, degree-6 polynomial, ~2 ulp) written
 * in plain arithmetic so the compiler vectorizes it; tanh(a) = 2 sigmoid(2a) - 1, as the PyTorch
 * fallback computes it. NaN inputs give NaN outputs (the clamps use comparisons that NaN fails).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* One copy of each exported function per x86-64 level (AVX-512, AVX2+FMA, baseline), picked by
 * the loader for the CPU at hand: a build from one machine runs on any other. Everything they
 * call is inlined into them, so it is compiled for each level too. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif
#define INLINE static inline __attribute__((always_inline))

/* ---- arguments ------------------------------------------------------------------------------ */

/* Each kernel takes one struct of named arguments, listed once here as (type, name) pairs: they
 * expand into the struct (FIELD), into the kernel's local variables of the same names (UNPACK)
 * and into the text rnnclf_kernels_layout() returns (DESCRIBE). rnnclf/accel/kernels.py mirrors
 * each struct as a ctypes.Structure and refuses a library whose layout text differs from its
 * mirrors (an editable install does not rebuild this file by itself), so no version number has
 * to be kept by hand. Integers first, then pointers; layouts are given at each kernel. */
#define GRU_TRAIN_FORWARD_ARGS(X)                                                              \
    X(int64_t, steps) X(int64_t, batch) X(int64_t, hidden) X(int64_t, directions)            \
    X(int64_t, d0) X(int64_t, d1) X(int64_t, row0) X(int64_t, row1) X(int64_t, padded)       \
    X(const float *, products) X(const int64_t *, pad_before) X(const float *, weight_hh_t)  \
    X(const float *, bias_hh) X(float *, hidden_gates) X(float *, states) X(float *, rz)     \
    X(float *, reset_hidden) X(float *, n) X(float *, outputs)

#define GRU_TRAIN_BACKWARD_ARGS(X)                                                             \
    X(int64_t, steps) X(int64_t, batch) X(int64_t, hidden) X(int64_t, d0) X(int64_t, d1)     \
    X(int64_t, row0) X(int64_t, row1) X(int64_t, padded) X(int64_t, grad_time_stride)        \
    X(int64_t, grad_batch_stride) X(const float *, grad_outputs)                              \
    X(const float *, weight_hh) X(float *, recurrent) X(float *, carried)                    \
    X(const float *, rz) X(const float *, reset_hidden) X(const float *, n)                  \
    X(const float *, states) X(float *, hidden_rows) X(float *, input_rows)                  \
    X(float *, bias_partial) X(double *, bias_sums)

#define RECURRENT_INFER_ARGS(X)                                                                \
    X(int64_t, gates_per_unit) X(int64_t, t0) X(int64_t, t1) X(int64_t, batch)               \
    X(int64_t, hidden) X(int64_t, padded) X(int64_t, row0) X(int64_t, row1) X(int64_t, pool) \
    X(const int64_t *, active) X(const float *, gates) X(const int64_t *, tokens)            \
    X(const float *, weight_hh_t) X(const float *, bias_hh) X(float *, hidden_gates)         \
    X(float *, h) X(float *, c) X(float *, pooled) X(float *, states)

#define FIELD(type, name) type name;
#define UNPACK(type, name) type name = args->name;
#define DESCRIBE(type, name) #type " " #name ";"

struct gru_train_forward_args { GRU_TRAIN_FORWARD_ARGS(FIELD) };
struct gru_train_backward_args { GRU_TRAIN_BACKWARD_ARGS(FIELD) };
struct recurrent_infer_args { RECURRENT_INFER_ARGS(FIELD) };

/* One line per kernel: "name: type field; type field; ..." */
const char *rnnclf_kernels_layout(void) {
    return "gru_train_forward: " GRU_TRAIN_FORWARD_ARGS(DESCRIBE) "\n"
           "gru_train_backward: " GRU_TRAIN_BACKWARD_ARGS(DESCRIBE) "\n"
           "recurrent_infer: " RECURRENT_INFER_ARGS(DESCRIBE) "\n";
}

/* ---- activations ------------------------------------------------------------------------- */

/* condition ? if_true : if_false, picked by bit masks rather than a branch: from a branch GCC
 * makes a copy of exp_poly for each clamp's path (where it folds to a constant), and only
 * AVX-512's masked operations let it vectorize a loop holding such paths, so the AVX2 and
 * baseline clones ran their gate loops one value at a time. The masks pick the same value. */
INLINE float select_float(int condition, float if_true, float if_false) {
    int32_t t, f;
    memcpy(&t, &if_true, sizeof t);
    memcpy(&f, &if_false, sizeof f);
    const int32_t mask = -condition; /* all ones or all zeros */
    const int32_t bits = (t & mask) | (f & ~mask);
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

INLINE float exp_poly(float x) {
    x = select_float(x < -87.0f, -87.0f, x); /* keeps 2^k a normal float; e^-87 ~ 1.6e-38 */
    x = select_float(x > 88.0f, 88.0f, x);
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

/* sigmoid(+inf) = 1 exactly and sigmoid(-inf) ~ 1.6e-38. */
INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_poly(-x)); }

INLINE float tanh_via_sigmoid(float x) { return 2.0f * sigmoid(2.0f * x) - 1.0f; }

/* ---- matmul -------------------------------------------------------------------------------- */

/* 16 and 8 floats: one AVX-512 register, one AVX2 register. GCC lowers a vector wider than the
 * clone's registers through the stack (v16 in the AVX2 clone spends most of its time there), so
 * `gemm` works in the width of the running clone's registers. */
typedef float v16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));

/* Whether this CPU runs the x86-64-v4 (AVX-512) clone: the loader picked it by the same test, so
 * in the other clones the v16 code is never run. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define WIDE_REGISTERS __builtin_cpu_supports("x86-64-v4")
#elif defined(__AVX512F__)
#define WIDE_REGISTERS 1
#else
#define WIDE_REGISTERS 0
#endif

/* Rows [0, R) and columns [j, j + 32) of C = A @ B (+ bias) in v16: 2R vector accumulators, each
 * B row segment loaded once per k for all R rows. R is a constant after inlining (8, or 1 for the
 * leftover rows), so the accumulators live in registers (16 of AVX-512's 32). */
INLINE void gemm_block16(const int R, const float *A, int64_t lda, const float *B, int64_t ldb,
                         int64_t K, int64_t j, const float *bias, float *C, int64_t ldc) {
    v16 acc[8][2];
    const v16 zero = {0};
    const v16 bias0 = bias == NULL ? zero : *(const v16 *)(bias + j);
    const v16 bias1 = bias == NULL ? zero : *(const v16 *)(bias + j + 16);
    for (int r = 0; r < R; r++) {
        acc[r][0] = bias0;
        acc[r][1] = bias1;
    }
    for (int64_t k = 0; k < K; k++) {
        const v16 b0 = *(const v16 *)(B + k * ldb + j), b1 = *(const v16 *)(B + k * ldb + j + 16);
        for (int r = 0; r < R; r++) {
            const float a = A[r * lda + k];
            acc[r][0] += a * b0;
            acc[r][1] += a * b1;
        }
    }
    for (int r = 0; r < R; r++) {
        *(v16 *)(C + r * ldc + j) = acc[r][0];
        *(v16 *)(C + r * ldc + j + 16) = acc[r][1];
    }
}

/* The same for columns [j, j + 16) in v8, R <= 6: AVX2 has 16 registers, and R = 6 takes 12
 * accumulators, the two B segments and the broadcast A value. */
INLINE void gemm_block8(const int R, const float *A, int64_t lda, const float *B, int64_t ldb,
                        int64_t K, int64_t j, const float *bias, float *C, int64_t ldc) {
    v8 acc[6][2];
    const v8 zero = {0};
    const v8 bias0 = bias == NULL ? zero : *(const v8 *)(bias + j);
    const v8 bias1 = bias == NULL ? zero : *(const v8 *)(bias + j + 8);
    for (int r = 0; r < R; r++) {
        acc[r][0] = bias0;
        acc[r][1] = bias1;
    }
    for (int64_t k = 0; k < K; k++) {
        const v8 b0 = *(const v8 *)(B + k * ldb + j), b1 = *(const v8 *)(B + k * ldb + j + 8);
        for (int r = 0; r < R; r++) {
            const float a = A[r * lda + k];
            acc[r][0] += a * b0;
            acc[r][1] += a * b1;
        }
    }
    for (int r = 0; r < R; r++) {
        *(v8 *)(C + r * ldc + j) = acc[r][0];
        *(v8 *)(C + r * ldc + j + 8) = acc[r][1];
    }
}

/* C (M x N) = A (M x K, row stride lda) @ B (K x N, row stride ldb) + bias (N, or NULL), with N
 * a multiple of 32 (callers pad B's and the bias's columns with zeros). However the rows and
 * columns are blocked, every element is bias + the sum over k in increasing order of
 * A[i, k] B[k, j], one fused multiply-add per k in the FMA clones. A panel of B's columns stays
 * in L1 for all rows. Leftover rows of the v8 path go 2 at a time: one row alone keeps too few
 * accumulators busy. */
INLINE void gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, const float *bias, float *C, int64_t ldc) {
    if (WIDE_REGISTERS) {
        for (int64_t j = 0; j < N; j += 32) {
            int64_t i = 0;
            for (; i + 8 <= M; i += 8)
                gemm_block16(8, A + i * lda, lda, B, ldb, K, j, bias, C + i * ldc, ldc);
            for (; i < M; i++)
                gemm_block16(1, A + i * lda, lda, B, ldb, K, j, bias, C + i * ldc, ldc);
        }
        return;
    }
    for (int64_t j = 0; j < N; j += 16) {
        int64_t i = 0;
        for (; i + 6 <= M; i += 6)
            gemm_block8(6, A + i * lda, lda, B, ldb, K, j, bias, C + i * ldc, ldc);
        for (; i + 2 <= M; i += 2)
            gemm_block8(2, A + i * lda, lda, B, ldb, K, j, bias, C + i * ldc, ldc);
        if (i < M) gemm_block8(1, A + i * lda, lda, B, ldb, K, j, bias, C + i * ldc, ldc);
    }
}

/* ---- training GRU ---------------------------------------------------------------------------- */

/* Training GRU layer, forward: D directions (1 or 2) from h = 0, nn.GRU's equations:
 *   r = s(xr + hr), z = s(xz + hz), n = tanh(xn + r hn), h' = n + z (h - n)
 * with x = W_ih x_t + b_ih and h = W_hh h_{t-1} + b_hh (gate order r, z, n).
 * products (T, B, D, 3H): every step's input gates; direction 0 reads time t at step t, direction
 *     1 reads T - 1 - t (it reads each text from its end);
 * weight_hh_t (D, H, P): W_hh transposed, columns zero-padded to P (a multiple of 32 >= 3H);
 *     bias_hh (D, P) likewise; hidden_gates (B, P): scratch;
 * pad_before (B,) or NULL: for direction 1, steps t < pad_before[b] = T - length_b are padding:
 *     the state stays 0, and the saved gates (z = 1, r = n = 0) make every gradient there 0;
 * states (D, T+1, B, H): [d, 0] given (zeros), [d, t+1] written at step t;
 * saved for the backward: rz (D, T, B, 2H), reset_hidden (D, T, B, H) = r * hn, n (D, T, B, H);
 * outputs (T, B, D, H): each new state at its text position (t, or T - 1 - t for direction 1).
 * Runs directions [d0, d1) for rows [row0, row1) only (texts never interact, so callers run
 * disjoint parts on threads of their own); hidden_gates then holds row1 - row0 rows. */
CLONES void gru_train_forward(const struct gru_train_forward_args *args) {
    GRU_TRAIN_FORWARD_ARGS(UNPACK)
    const int64_t H = hidden, G = 3 * hidden;
    for (int64_t t = 0; t < steps; t++) {
        for (int64_t d = d0; d < d1; d++) {
            const int64_t position = d == 0 ? t : steps - 1 - t;
            const float *h_prev = states + ((d * (steps + 1) + t) * batch) * H;
            float *h_next = states + ((d * (steps + 1) + t + 1) * batch) * H;
            gemm(row1 - row0, padded, H, h_prev + row0 * H, H, weight_hh_t + d * H * padded,
                 padded, bias_hh + d * padded, hidden_gates, padded);
            const int64_t saved = (d * steps + t) * batch;
            for (int64_t b = row0; b < row1; b++) {
                const float *x = products + ((position * batch + b) * directions + d) * G;
                const float *hg = hidden_gates + (b - row0) * padded;
                const float *hp = h_prev + b * H;
                float *hn = h_next + b * H;
                float *rz_row = rz + (saved + b) * 2 * H;
                float *rh_row = reset_hidden + (saved + b) * H;
                float *n_row = n + (saved + b) * H;
                float *out = outputs + ((position * batch + b) * directions + d) * H;
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
}

/* Training GRU layer, backward, steps T-1 down to 0, D directions.
 * grad_outputs (T, B, D, H) with strides (grad_time_stride, grad_batch_stride, H, 1) in floats:
 *     the loss gradient of the outputs, read at each direction's positions as the forward wrote
 *     them (the model's pooling hands it over batch-major, so it is not copied first);
 * weight_hh (D, 3H, Q): W_hh, columns zero-padded to Q (a multiple of 32 >= H);
 * recurrent (B, Q): scratch for dG_{t+1} W_hh, the gradient reaching h_t through step t + 1;
 * carried (D, B, H): scratch for z_{t+1} dh_{t+1};
 * rz, reset_hidden, n, states: as the forward saved them;
 * writes the gradients of the gate pre-activations, per direction in its reading order:
 *   hidden_rows (D, T, B, 3H): (dr, dz, dn * r), the gradient of W_hh h + b_hh;
 *   input_rows (D, T, B, 3H): (dr, dz, dn), the gradient of W_ih x + b_ih;
 * and bias_sums (D, 4H), zeroed by the caller: the sums of (dr, dz, dn, dn * r) over all steps
 * and rows (the bias gradients), per step in float (bias_partial, 4H floats of scratch), then
 * added up in double.
 * Runs directions [d0, d1) for rows [row0, row1) only, as gru_train_forward; recurrent then
 * holds row1 - row0 rows, and bias_sums sums these rows only. */
CLONES void gru_train_backward(const struct gru_train_backward_args *args) {
    GRU_TRAIN_BACKWARD_ARGS(UNPACK)
    const int64_t H = hidden, G = 3 * hidden;
    float *sum_r = bias_partial, *sum_z = bias_partial + H;
    float *sum_n = bias_partial + 2 * H, *sum_nr = bias_partial + 3 * H;
    for (int64_t t = steps - 1; t >= 0; t--) {
        for (int64_t d = d0; d < d1; d++) {
            const int64_t position = d == 0 ? t : steps - 1 - t;
            const int first = t == steps - 1; /* nothing comes back from a later step */
            if (!first)
                gemm(row1 - row0, padded, G,
                     hidden_rows + ((d * steps + t + 1) * batch + row0) * G, G,
                     weight_hh + d * G * padded, padded, NULL, recurrent, padded);
            const int64_t saved = (d * steps + t) * batch;
            memset(bias_partial, 0, 4 * H * sizeof(float));
            for (int64_t b = row0; b < row1; b++) {
                const float *g_out =
                    grad_outputs + position * grad_time_stride + b * grad_batch_stride + d * H;
                const float *rec = recurrent + (b - row0) * padded;
                float *carry = carried + (d * batch + b) * H;
                const float *rz_row = rz + (saved + b) * 2 * H;
                const float *rh_row = reset_hidden + (saved + b) * H;
                const float *n_row = n + (saved + b) * H;
                const float *hp = states + ((d * (steps + 1) + t) * batch + b) * H;
                float *g_hidden = hidden_rows + (saved + b) * G;
                float *g_input = input_rows + (saved + b) * G;
#pragma GCC ivdep
                for (int64_t j = 0; j < H; j++) {
                    const float g = first ? g_out[j] : g_out[j] + carry[j] + rec[j];
                    const float r = rz_row[j], z = rz_row[H + j], nj = n_row[j];
                    const float dn = g * (1.0f - z) * (1.0f - nj * nj);
                    const float dz = g * (hp[j] - nj) * z * (1.0f - z);
                    const float dr = dn * rh_row[j] * (1.0f - r); /* dn hn r (1 - r) */
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
            double *sums = bias_sums + d * 4 * H;
#pragma GCC ivdep
            for (int64_t j = 0; j < 4 * H; j++) sums[j] += bias_partial[j];
        }
    }
}

/* ---- inference ------------------------------------------------------------------------------ */

/* Inference, one layer and direction, steps [t0, t1) of a batch sorted longest text first: step t
 * computes only its first active[t] rows (as packing does), so padding costs nothing.
 * Input gates, G*H wide (G = gates_per_unit: 3 for the GRU, 4 for the LSTM), either
 *   tokens (T, B) given: row tokens[t, b] of a table `gates` (U, G*H) of each distinct token's
 *       input gates (the first layer: W_ih x + b_ih depends only on the token), or
 *   tokens NULL: gates ((t1 - t0), B, G*H), the input gates of these steps;
 * weight_hh_t (H, P): W_hh transposed, columns zero-padded to P (a multiple of 32 >= G*H); bias_hh
 *     (P); hidden_gates (B, P): scratch;
 * h (B, H) (and the LSTM's c) carried across calls: row b holds its state at step
 *     min(t, length_b - 1), so after the last step each text's last state;
 * pooled (B, H) or NULL: the states pooled as they come, pool 1 their maximum, 2 their sum (the
 *     first step copies);
 * states (T, B, H) or NULL: every step's states (rows past a text's end are left as they are).
 * Runs rows [row0, row1) only (callers run disjoint row ranges on threads of their own);
 * hidden_gates then holds row1 - row0 rows. */
INLINE void pool_row(float *pooled, const float *h, int64_t H, int64_t pool) {
    if (pool == 0) {
        for (int64_t j = 0; j < H; j++) pooled[j] = h[j];
    } else if (pool == 1) {
        for (int64_t j = 0; j < H; j++) pooled[j] = h[j] > pooled[j] ? h[j] : pooled[j];
    } else {
        for (int64_t j = 0; j < H; j++) pooled[j] += h[j];
    }
}

INLINE void store_states(float *states, int64_t t, int64_t batch, int64_t row0, int64_t row1,
                         int64_t H, const float *h) {
    if (states != NULL)
        memcpy(states + (t * batch + row0) * H, h + row0 * H, (row1 - row0) * H * sizeof(float));
}

/* One row's step: nn.GRU's equations (as gru_train_forward; h updated in place, c unused), or
 * nn.LSTM's (gate order i, f, g, o): c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c'). */
INLINE void gru_row(int64_t H, const float *x, const float *hg, float *h) {
#pragma GCC ivdep
    for (int64_t j = 0; j < H; j++) {
        const float r = sigmoid(x[j] + hg[j]);
        const float z = sigmoid(x[H + j] + hg[H + j]);
        const float nj = tanh_via_sigmoid(x[2 * H + j] + r * hg[2 * H + j]);
        h[j] = nj + z * (h[j] - nj);
    }
}

INLINE void lstm_row(int64_t H, const float *x, const float *hg, float *h, float *c) {
#pragma GCC ivdep
    for (int64_t j = 0; j < H; j++) {
        const float i = sigmoid(x[j] + hg[j]);
        const float f = sigmoid(x[H + j] + hg[H + j]);
        const float g = tanh_via_sigmoid(x[2 * H + j] + hg[2 * H + j]);
        const float o = sigmoid(x[3 * H + j] + hg[3 * H + j]);
        const float cj = f * c[j] + i * g;
        c[j] = cj;
        h[j] = o * tanh_via_sigmoid(cj);
    }
}

/* gates_per_unit 3: a GRU (c NULL), 4: an LSTM with its cell state c (B, H). */
CLONES void recurrent_infer(const struct recurrent_infer_args *args) {
    RECURRENT_INFER_ARGS(UNPACK)
    const int64_t H = hidden, G = gates_per_unit * hidden;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t end = active[t] < row1 ? active[t] : row1; /* texts still running */
        if (end <= row0) break; /* and none of them later */
        gemm(end - row0, padded, H, h + row0 * H, H, weight_hh_t, padded, bias_hh, hidden_gates,
             padded);
        for (int64_t b = row0; b < end; b++) {
            const float *x = tokens != NULL ? gates + tokens[t * batch + b] * G
                                            : gates + ((t - t0) * batch + b) * G;
            const float *hg = hidden_gates + (b - row0) * padded;
            if (gates_per_unit == 4)
                lstm_row(H, x, hg, h + b * H, c + b * H);
            else
                gru_row(H, x, hg, h + b * H);
            if (pooled != NULL) pool_row(pooled + b * H, h + b * H, H, t == 0 ? 0 : pool);
        }
        store_states(states, t, batch, row0, end, H, h);
    }
}

/* ---- for tests ------------------------------------------------------------------------------ */

CLONES void sigmoid_array(int64_t count, const float *values, float *out) {
#pragma GCC ivdep
    for (int64_t i = 0; i < count; i++) out[i] = sigmoid(values[i]);
}

CLONES void tanh_array(int64_t count, const float *values, float *out) {
#pragma GCC ivdep
    for (int64_t i = 0; i < count; i++) out[i] = tanh_via_sigmoid(values[i]);
}

/* C (M x N) = A (M x K) @ B (K x N) + bias (N or NULL), all contiguous, N a multiple of 32. */
CLONES void matmul(int64_t M, int64_t N, int64_t K, const float *A, const float *B,
                   const float *bias, float *C) {
    gemm(M, N, K, A, K, B, N, bias, C, N);
}

/* An empty Python module, only so that setuptools' Extension can build and install this file:
 * on Windows its link step exports PyInit__kernels and fails without it, and find_spec() finds
 * the library by this module name. rnnclf/accel/kernels.py loads the library with ctypes and
 * never imports the module. */
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_kernels",
    .m_doc = "rnnclf's C recurrent kernels, loaded with ctypes.", .m_size = -1};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
