"""A CPU GRU layer for training, with a hand-written backward (`FusedGRU`).

ATen's CPU GRU runs one cell per time step out of ~10 small elementwise ops, and autograd records
each of them; its backward also does one small weight-gradient matmul per step. Here, as cuDNN
does it:

- forward: the input projection of every step is ONE matmul; per step one matmul for the hidden
  part and a few elementwise ops written into preallocated buffers;
- backward: the gate derivatives (which do not depend on the incoming gradient) are computed for
  all steps at once; per step only the gate gradients, the carry and one matmul into dh_{t-1}
  stay on the sequential chain; the weight, bias and input gradients are then each ONE matmul
  (or sum) over all steps.

Several independent GRUs (the two directions of a layer) run in one pass, so the Python loop and
its elementwise ops run once for both; only the matmuls are per direction. The matmuls go to
oneDNN where it exists (`_linear`), large scratch buffers are reused (`_scratch`).

Same equations and parameters as `nn.GRU` (gate order r, z, n):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
from torch.autograd.function import once_differentiable


class FusedGRU(torch.autograd.Function):
    """D independent single-layer GRUs over time-major input, starting from h = 0.

    inputs (D, T, B, E), weight_ih (D, 3H, E), weight_hh (D, 3H, H), bias_ih / bias_hh (D, 3H)
    -> states (D, T, B, H).

    matmul_dtype bfloat16 (under CPU autocast) gives every matmul bf16 operands, as autocast
    would; states, gates, their math and all gradients stay in the inputs' dtype.
    """

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, weight_ih: torch.Tensor,
                weight_hh: torch.Tensor, bias_ih: torch.Tensor,
                bias_hh: torch.Tensor, matmul_dtype: torch.dtype) -> torch.Tensor:
        directions, steps, batch, features = inputs.shape
        hidden = weight_hh.size(2)
        low = matmul_dtype != inputs.dtype
        # The matmuls' operands: the inputs themselves, or bf16 copies made once.
        inputs_mm, weight_ih_mm, weight_hh_mm = (
            (inputs.to(matmul_dtype), weight_ih.to(matmul_dtype), weight_hh.to(matmul_dtype))
            if low else (inputs, weight_ih, weight_hh))
        # Input part of the gates for all steps at once, bias folded in: (D, T, B, 3H).
        input_gates = _scratch("rows", (directions, steps, batch, 3 * hidden), inputs)
        input_products = [_linear(inputs_mm[d].reshape(-1, features), weight_ih_mm[d], bias_ih[d])
                          for d in range(directions)]
        flat_input_gates = input_gates.view(directions, -1, 3 * hidden)
        if low:  # stack cannot cast
            for d, product in enumerate(input_products):
                flat_input_gates[d].copy_(product)
        else:
            torch.stack(input_products, out=flat_input_gates)
        del input_products
        # Hidden part W_h h_{t-1} + b_h, time-major so each step writes one contiguous block
        # (in the matmuls' dtype: the gate math below reads it as it is).
        hidden_gates = _scratch("columns", (steps, directions, batch, 3 * hidden),
                                weight_hh_mm)
        # The previous state as a matmul operand: a bf16 copy of both directions per step.
        h_operand = inputs.new_empty(directions, batch, hidden, dtype=matmul_dtype) if low \
            else None
        # Saved for the backward: r, z (after the sigmoid), r * (W_hn h + b_hn), n.
        rz = inputs.new_empty(directions, steps, batch, 2 * hidden)
        reset_hidden = inputs.new_empty(directions, steps, batch, hidden)
        n = inputs.new_empty(directions, steps, batch, hidden)
        states = inputs.new_zeros(directions, steps + 1, batch, hidden)  # [:, t] = h_{t-1}
        # Per-step views made in one C call each: indexing inside the loop costs more than the math.
        x_rz, x_n = input_gates[..., :2 * hidden].unbind(1), input_gates[..., 2 * hidden:].unbind(1)
        h_all, h_gates = states.unbind(1), hidden_gates.unbind(0)
        h_rz = hidden_gates[..., :2 * hidden].unbind(0)
        h_n = hidden_gates[..., 2 * hidden:].unbind(0)
        h_by_direction = [states[d].unbind(0) for d in range(directions)]
        rz_all, r, z = rz.unbind(1), rz[..., :hidden].unbind(1), rz[..., hidden:].unbind(1)
        n_all, reset_hidden_all = n.unbind(1), reset_hidden.unbind(1)
        step_weights = list(zip(weight_hh_mm.unbind(0), bias_hh.unbind(0), strict=True))
        for t in range(steps):
            if h_operand is not None:
                previous = h_operand.copy_(states[:, t]).unbind(0)
            else:
                previous = [h[t] for h in h_by_direction]
            torch.stack([_linear(h, weight, bias)
                         for h, (weight, bias) in zip(previous, step_weights, strict=True)],
                        out=h_gates[t])  # (D, B, 3H)
            torch.add(x_rz[t], h_rz[t], out=rz_all[t]).sigmoid_()
            # tanh(a) = 2 sigmoid(2a) - 1: ATen's CPU tanh is ~15x slower than its sigmoid.
            torch.mul(r[t], h_n[t], out=reset_hidden_all[t])
            torch.add(x_n[t], reset_hidden_all[t], out=n_all[t]).mul_(2).sigmoid_()
            n_all[t].mul_(2).sub_(1)
            torch.lerp(n_all[t], h_all[t], z[t], out=h_all[t + 1])  # n + z (h - n)
        ctx.save_for_backward(inputs_mm, weight_ih_mm, weight_hh_mm)
        ctx.saved = rz, reset_hidden, n, states
        return states[:, 1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_states: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs, weight_ih, weight_hh = ctx.saved_tensors  # in the matmuls' dtype
        rz, reset_hidden, n, states = ctx.saved
        directions, steps, batch, hidden = grad_states.shape
        matmul_dtype, exact = inputs.dtype, states.dtype
        low = matmul_dtype != exact
        r, z = rz[..., :hidden], rz[..., hidden:]  # (D, T, B, H) each
        # Gradient of the gate pre-activations per unit dh_t, for all steps at once; the loop
        # below then scales each step by its dh_t in place. Order [n input part, r, z, n hidden
        # part]: then [:3H] is the input-gate gradient (gates n, r, z) and [H:] the hidden-gate
        # gradient (gates r, z, n), both without a copy.
        grad_gates = _scratch("grad_gates", (directions, steps, batch, 4, hidden), states)
        grad_n, grad_r, grad_z, grad_hidden_n = grad_gates.unbind(3)  # (D, T, B, H) each
        grad_h = _scratch("grad_h", grad_states.shape, states)  # (D, T, B, H): total dh_t
        # Without temporaries of their own: grad_z holds 1 - z and grad_h holds h' - n until
        # they are needed for their real contents.
        one_minus_z = torch.sub(1, z, out=grad_z)
        torch.mul(one_minus_z, n, out=grad_n)
        torch.addcmul(one_minus_z, grad_n, n, value=-1, out=grad_n)  # (1 - z)(1 - n^2)
        torch.mul(grad_n, r, out=grad_hidden_n)  # through r * (W_hn h + b_hn)
        # Through r: grad_n (W_hn h + b_hn) r (1 - r) = grad_n * reset_hidden * (1 - r).
        torch.mul(grad_n, reset_hidden, out=grad_r)
        torch.addcmul(grad_r, grad_r, r, value=-1, out=grad_r)
        # z (h - n) = h' - n, so dz-pre = (h' - n) (1 - z).
        grad_z.mul_(torch.sub(states[:, 1:], n, out=grad_h))
        # The sequential chain: dh_{t-1} = grad_states[t-1] + z_t dh_t + dG_t W_hh.
        grad_h[:, -1] = grad_states[:, -1]
        g_out, g_h, z_all = grad_states.unbind(1), grad_h.unbind(1), z.unbind(1)
        g_gates = grad_gates.unbind(1)
        flat_gates = grad_gates.view(directions, steps, batch, 4 * hidden)
        g_h_by_direction = [grad_h[d].unbind(0) for d in range(directions)]
        g_hidden_by_direction = [flat_gates[d, ..., hidden:].unbind(0) for d in range(directions)]
        weight_hh_t = [weight.t() for weight in weight_hh.unbind(0)]  # (H, 3H): x @ W_hh
        # The hidden-gate gradient as a matmul operand: a bf16 copy of both directions per step.
        g_operand = grad_states.new_empty(directions, batch, 3 * hidden, dtype=matmul_dtype) \
            if low else None
        for t in range(steps - 1, -1, -1):
            g_gates[t].mul_(g_h[t].unsqueeze(2))  # (D, B, 4, H)
            if t == 0:
                break
            torch.addcmul(g_out[t - 1], g_h[t], z_all[t], out=g_h[t - 1])
            if g_operand is not None:
                hidden_gradients = g_operand.copy_(flat_gates[:, t, :, hidden:]).unbind(0)
            else:
                hidden_gradients = [g[t] for g in g_hidden_by_direction]
            for d in range(directions):
                g_h_by_direction[d][t - 1].add_(_linear(hidden_gradients[d], weight_hh_t[d]))
        # Everything else is one big matmul (or sum) per direction over all steps. oneDNN wants
        # contiguous operands (it copies others itself, into fresh memory), and the weight
        # gradients want the gate gradients transposed: copies (D, T*B, 3H) and (D, 3H, T*B).
        # (In bf16 the copies are the casts; products come back to the exact dtype.)
        flat_gates = flat_gates.view(directions, steps * batch, 4 * hidden)
        rows, columns = _contiguous_copies(flat_gates[..., :3 * hidden], matmul_dtype)  # n, r, z
        grad_inputs = None
        if ctx.needs_input_grad[0]:  # not when the embedding is frozen
            weight_ih_nrz = weight_ih.roll(hidden, dims=1)  # rows n, r, z
            grad_inputs = torch.stack([_linear(rows[d], weight_ih_nrz[d].t())
                                       for d in range(directions)]).view(inputs.shape)
            grad_inputs = grad_inputs.to(exact)
        flat_inputs = inputs.reshape(directions, steps * batch, -1)
        grad_weight_ih = torch.stack([_linear(columns[d], flat_inputs[d].t())
                                      for d in range(directions)]).to(exact).roll(-hidden, dims=1)
        grad_bias_ih = columns.sum(2, dtype=exact).roll(-hidden, dims=1)
        rows, columns = _contiguous_copies(flat_gates[..., hidden:], matmul_dtype)  # r, z, n
        previous = states[:, :-1].reshape(directions, steps * batch, hidden).to(matmul_dtype)
        grad_weight_hh = torch.stack([_linear(columns[d], previous[d].t())
                                      for d in range(directions)]).to(exact)
        return (grad_inputs, grad_weight_ih, grad_weight_hh, grad_bias_ih,
                columns.sum(2, dtype=exact), None)


def _contiguous_copies(values: torch.Tensor, dtype: torch.dtype
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """values (D, N, M) with strided rows -> contiguous scratch copies (D, N, M) and (D, M, N)
    in `dtype`, valid until the next call.

    In two steps, one matrix at a time: ATen's transposing copy was ~6x slower from strided rows.
    """
    like = values if dtype == values.dtype else values.new_empty(0, dtype=dtype)
    rows = _scratch("rows", values.shape, like).copy_(values)
    columns = _scratch("columns", (values.size(0), values.size(2), values.size(1)), like)
    for matrix, transposed in zip(rows, columns, strict=True):
        transposed.copy_(matrix.t())
    return rows, columns


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised buffer of this shape, reused by every call in this thread.

    Why: the CPU allocator returns large blocks to the OS, and the first touch of fresh pages
    cost ~0.3 ms per MB on the benchmark machine, as much as the math. Only for tensors that
    die within the forward or backward call that takes them (never a saved or returned one),
    so the forward and the backward can share names.
    """
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key, size = (name, like.dtype, like.device), math.prod(shape)
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < size:
        buffer = buffers[key] = like.new_empty(size)
    return buffer[:size].view(shape)


def _onednn_linear() -> Any:
    """oneDNN's fp32 inner product (`torch.ops.mkldnn._linear_pointwise`), or None.

    Why: torch's fp32 matmul calls MKL, which takes no AVX-512 path on AMD CPUs; oneDNN's kernel
    ran these products 1.5-2.4x faster on the benchmark machine (AMD EPYC). It is the op PyTorch's
    own compiler emits for CPU linear layers, but private, so everything falls back to matmul.
    """
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_LINEAR = _onednn_linear()


def _linear(inputs: torch.Tensor, weight: torch.Tensor,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """inputs (N, K), weight (M, K), bias (M,) -> inputs @ weight^T + bias, (N, M)."""
    if _ONEDNN_LINEAR is not None and inputs.dtype in (torch.float32, torch.bfloat16):
        return _ONEDNN_LINEAR(inputs, weight, bias, "none", [], "")
    return inputs @ weight.t() if bias is None else torch.addmm(bias, inputs, weight.t())


def fused_gru(inputs: torch.Tensor, weights: list[list[torch.Tensor]],
              matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """inputs (D, T, B, E); weights: per direction [weight_ih, weight_hh, bias_ih, bias_hh]
    -> states (D, T, B, H). matmul_dtype: the matmuls' operands (default: the inputs' dtype;
    bfloat16 as under CPU autocast)."""
    stacked = [torch.stack(group) for group in zip(*weights, strict=True)]
    return FusedGRU.apply(inputs, *stacked, matmul_dtype or inputs.dtype)


def release_scratch() -> None:
    """Free this thread's scratch buffers (hundreds of MB for long batches), e.g. before an
    evaluation pass, so the training buffers and the evaluation's tensors never add up."""
    _SCRATCH.__dict__.pop("buffers", None)
