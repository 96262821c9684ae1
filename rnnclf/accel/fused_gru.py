"""A CPU GRU layer for training, with a hand-written backward (`FusedGRU`).

ATen's CPU GRU runs one cell per time step out of ~10 small elementwise ops, and autograd records
each of them; its backward also does one small weight-gradient matmul per step. Here, as cuDNN
does it:

- forward: the input projection of every step is ONE matmul (both directions at once); then the
  time loop, per step one matmul for the hidden part and the gate math;
- backward: the time loop carries only the gate gradients and one matmul into dh_{t-1} per step;
  the weight, bias and input gradients are then each ONE matmul (or sum) over all steps.

The time loop runs in C where rnnclf's kernels were built: `fused_gru` then calls the custom op
`rnnclf::gru_layer` (rnnclf/accel/ops.py: checks, fake kernel, autograd), which runs
`_kernel_forward` and, for the backward, `_kernel_backward` (rnnclf/accel/_kernels.c: one call per
layer, directions and row ranges on threads of their own). Elsewhere `FusedGRU` runs it in
PyTorch ops from Python (per step two oneDNN matmuls and ~9 elementwise ops into preallocated
buffers). The backward direction reads the padded batch
reversed in time, so no per-text reversal of inputs or outputs is needed, and both directions
share their input matmuls: the C loop reads its input gates at T - 1 - t and skips its leading
padding; the PyTorch path makes that padding inert (see `FusedGRU`). The big matmuls go to oneDNN
where it exists (`_linear`, rnnclf/accel/onednn.py), large scratch buffers are reused (`_scratch`).

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

from rnnclf.accel import kernels
from rnnclf.accel.onednn import linear as _linear


class FusedGRU(torch.autograd.Function):
    """The ATen path of `fused_gru` (where rnnclf's C kernels are not used): D = 1 or 2
    single-layer GRUs over the same time-major input, starting from h = 0; the second reads each
    text backwards, from its last real token (a bidirectional layer).

    inputs (T, B, E), weight_ih (D, 3H, E), weight_hh (D, 3H, H), bias_ih / bias_hh (D, 3H),
    lengths (B,) int64 or None (every text T long) -> outputs (T, B, D*H), as `nn.GRU`'s: at
    each position, the forward state after it and the backward state after reading from the
    text's end back to it. Past a text's end the backward states are 0 and the forward states
    junk (callers mask them).

    The backward direction runs over time reversed, so texts shorter than T meet their padding
    first; there its update gate's input is +inf: z = 1 keeps the state at exactly 0 and every
    gate gradient at 0, so padding never reaches a real position (no per-text reversal of the
    inputs, as a packed sequence would need).

    matmul_dtype bfloat16 (under CPU autocast) gives every matmul bf16 operands, as autocast
    would; states, gates, their math and all gradients stay in the inputs' dtype.
    """

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, weight_ih: torch.Tensor,
                weight_hh: torch.Tensor, bias_ih: torch.Tensor, bias_hh: torch.Tensor,
                lengths: torch.Tensor | None, matmul_dtype: torch.dtype) -> torch.Tensor:
        steps, batch, features = inputs.shape
        directions, hidden = weight_ih.size(0), weight_hh.size(2)
        flat_inputs = inputs.reshape(steps * batch, features).to(matmul_dtype)
        weight_ih_mm, weight_hh_mm = weight_ih.to(matmul_dtype), weight_hh.to(matmul_dtype)
        reversed_steps = torch.arange(steps - 1, -1, -1)
        input_gates = _aten_input_gates(flat_inputs, weight_ih_mm, bias_ih, lengths,
                                        reversed_steps, inputs)
        rz, reset_hidden, n, states = _aten_time_loop(input_gates, weight_hh_mm, bias_hh, inputs)
        ctx.save_for_backward(flat_inputs, weight_ih_mm, weight_hh_mm)
        ctx.saved = rz, reset_hidden, n, states, reversed_steps
        outputs = inputs.new_empty(steps, batch, directions, hidden)
        outputs[:, :, 0] = states[0, 1:]
        if directions == 2:  # back into text order
            _copy_reversed_time(outputs[:, :, 1], states[1, 1:], reversed_steps)
        return outputs.view(steps, batch, directions * hidden)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        flat_inputs, weight_ih, weight_hh = ctx.saved_tensors  # in the matmuls' dtype
        rz, reset_hidden, n, states, reversed_steps = ctx.saved
        directions, steps, batch, hidden = n.shape
        # The outputs' gradient in each direction's reading order: (D, T, B, H).
        by_direction = grad_outputs.view(steps, batch, directions, hidden)
        grad_states = _scratch("grad_states", (directions, steps, batch, hidden), states)
        grad_states[0].copy_(by_direction[:, :, 0])
        if directions == 2:
            _copy_reversed_time(grad_states[1], by_direction[:, :, 1], reversed_steps)
        hidden_rows, grad_n, grad_h = _aten_gate_gradients(rz, reset_hidden, n, states)
        _aten_backward_loop(grad_states, grad_h, rz[..., hidden:], hidden_rows, weight_hh,
                            flat_inputs.dtype)
        grad_n.mul_(grad_h)
        # The input gates' gradient, in W_ih's row order (r, z, n): (D, T*B, 3H).
        low = flat_inputs.dtype != states.dtype
        input_rows = _scratch("rows", (directions, steps, batch, 3 * hidden),
                              flat_inputs if low else states)
        input_rows[..., :2 * hidden].copy_(hidden_rows[..., :2 * hidden])
        input_rows[..., 2 * hidden:].copy_(grad_n)
        return (*_matmul_gradients(flat_inputs, weight_ih, states, input_rows, hidden_rows,
                                   ctx.needs_input_grad[0]), None, None)


def _aten_input_gates(flat_inputs: torch.Tensor, weight_ih: torch.Tensor, bias_ih: torch.Tensor,
                      lengths: torch.Tensor | None, reversed_steps: torch.Tensor,
                      inputs: torch.Tensor) -> torch.Tensor:
    """FusedGRU's input gates W_ih x + b_ih per direction in its reading order, (D, T, B, 3H),
    the backward direction's leading padding made inert (z's input +inf)."""
    steps, batch = inputs.shape[:2]
    directions, gates, features = weight_ih.shape  # gates = 3H
    hidden = gates // 3
    # Both directions read the same inputs: their input gates are ONE matmul, bias folded in.
    products = _linear(flat_inputs, weight_ih.reshape(directions * gates, features),
                       bias_ih.reshape(-1)).view(steps, batch, directions, gates)
    input_gates = _scratch("rows", (directions, steps, batch, gates), inputs)
    input_gates[0].copy_(products[:, :, 0])
    if directions == 2:
        _copy_reversed_time(input_gates[1], products[:, :, 1], reversed_steps)
        if lengths is not None and bool((lengths < steps).any()):
            # Reading order: a text of length L meets T - L padded positions first.
            padding = torch.arange(steps).unsqueeze(1) < (steps - lengths).unsqueeze(0)
            input_gates[1, ..., hidden:2 * hidden].masked_fill_(padding.unsqueeze(2), math.inf)
    return input_gates


def _aten_time_loop(input_gates: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor,
                    inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """FusedGRU's time loop over input_gates (D, T, B, 3H), weight_hh (D, 3H, H) in the
    matmuls' dtype -> what the backward needs: rz (D, T, B, 2H) (after the sigmoid),
    reset_hidden (D, T, B, H) = r * (W_hn h + b_hn), n (D, T, B, H), and the states
    (D, T+1, B, H), [:, t] = h_{t-1}."""
    directions, steps, batch, gates = input_gates.shape
    hidden = gates // 3
    matmul_dtype = weight_hh.dtype
    # Hidden part W_h h_{t-1} + b_h, time-major so each step writes one contiguous block
    # (in the matmuls' dtype: the gate math below reads it as it is).
    hidden_gates = _scratch("columns", (steps, directions, batch, gates), weight_hh)
    # The previous state as a matmul operand: a bf16 copy of both directions per step.
    h_operand = inputs.new_empty(directions, batch, hidden, dtype=matmul_dtype) \
        if matmul_dtype != inputs.dtype else None
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
    step_weights = list(zip(weight_hh.unbind(0), bias_hh.unbind(0), strict=True))
    for t in range(steps):
        if h_operand is not None:
            previous = h_operand.copy_(states[:, t]).unbind(0)
        else:
            previous = [h[t] for h in h_by_direction]
        torch.stack([_linear(h, weight, bias)
                     for h, (weight, bias) in zip(previous, step_weights, strict=True)],
                    out=h_gates[t])  # (D, B, 3H)
        torch.add(x_rz[t], h_rz[t], out=rz_all[t]).sigmoid_()
        # tanh(a) = 2 sigmoid(2a) - 1: ATen's CPU tanh is much slower than its sigmoid.
        torch.mul(r[t], h_n[t], out=reset_hidden_all[t])
        torch.add(x_n[t], reset_hidden_all[t], out=n_all[t]).mul_(2).sigmoid_()
        n_all[t].mul_(2).sub_(1)
        torch.lerp(n_all[t], h_all[t], z[t], out=h_all[t + 1])  # n + z (h - n)
    return rz, reset_hidden, n, states


def _aten_gate_gradients(rz: torch.Tensor, reset_hidden: torch.Tensor, n: torch.Tensor,
                         states: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The gradient of the gate pre-activations per unit dh_t, for all steps at once; the
    backward loop then scales each step by its dh_t in place -> hidden_rows (D, T, B, 3H) (r, z,
    and n's W_hn h + b_hn, laid out so that each step's is one contiguous (B, 3H) matmul operand
    per direction: a strided one cost oneDNN a copy per call), grad_n (D, T, B, H) (n's input
    part, only needed after the loop and scaled there), and grad_h, a (D, T, B, H) buffer for
    the total dh_t."""
    directions, steps, batch, hidden = n.shape
    r, z = rz[..., :hidden], rz[..., hidden:]  # (D, T, B, H) each
    grad_hidden_gates = _scratch("grad_gates", (directions, steps, batch, 3, hidden), states)
    grad_r, grad_z, grad_hidden_n = grad_hidden_gates.unbind(3)  # (D, T, B, H) each
    grad_n = _scratch("grad_n", n.shape, states)  # n's input part
    grad_h = _scratch("grad_h", n.shape, states)  # (D, T, B, H): total dh_t
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
    return grad_hidden_gates.view(directions, steps, batch, 3 * hidden), grad_n, grad_h


def _aten_backward_loop(grad_states: torch.Tensor, grad_h: torch.Tensor, z: torch.Tensor,
                        hidden_rows: torch.Tensor, weight_hh: torch.Tensor,
                        matmul_dtype: torch.dtype) -> None:
    """The sequential chain dh_{t-1} = grad_states[t-1] + z_t dh_t + dG_t W_hh, steps T-1 to 0:
    fills grad_h (D, T, B, H) with each step's total dh_t and scales hidden_rows (D, T, B, 3H),
    the gate gradients per unit dh_t, by it in place."""
    directions, steps, batch, gates = hidden_rows.shape
    hidden = gates // 3
    grad_h[:, -1] = grad_states[:, -1]
    g_out, g_h, z_all = grad_states.unbind(1), grad_h.unbind(1), z.unbind(1)
    g_gates = hidden_rows.view(directions, steps, batch, 3, hidden).unbind(1)  # (D, B, 3, H)
    g_h_by_direction = [grad_h[d].unbind(0) for d in range(directions)]
    g_hidden_by_direction = [hidden_rows[d].unbind(0) for d in range(directions)]
    weight_hh_t = [weight.t() for weight in weight_hh.unbind(0)]  # (H, 3H): x @ W_hh
    # The hidden-gate gradient as a matmul operand: a bf16 copy of both directions per step.
    g_operand = grad_states.new_empty(directions, batch, gates, dtype=matmul_dtype) \
        if matmul_dtype != grad_states.dtype else None
    for t in range(steps - 1, -1, -1):
        g_gates[t].mul_(g_h[t].unsqueeze(2))  # (D, B, 3, H)
        if t == 0:
            break
        torch.addcmul(g_out[t - 1], g_h[t], z_all[t], out=g_h[t - 1])
        if g_operand is not None:
            hidden_gradients = g_operand.copy_(hidden_rows[:, t]).unbind(0)
        else:
            hidden_gradients = [g[t] for g in g_hidden_by_direction]
        for d in range(directions):
            g_h_by_direction[d][t - 1].add_(_linear(hidden_gradients[d], weight_hh_t[d]))


def _matmul_gradients(flat_inputs: torch.Tensor, weight_ih: torch.Tensor, states: torch.Tensor,
                      input_rows: torch.Tensor, hidden_rows: torch.Tensor,
                      inputs_need_grad: bool,
                      bias_gradients: tuple[torch.Tensor, torch.Tensor] | None = None,
                      ) -> tuple[torch.Tensor | None, ...]:
    """The backward's products over all steps at once, from the gradients of the gate
    pre-activations per direction in its reading order, (D, T, B, 3H) each: input_rows for
    W_ih x + b_ih, hidden_rows for W_hh h + b_hh -> the gradients of the inputs (T, B, E) (None
    unless inputs_need_grad), weight_ih, weight_hh, bias_ih and bias_hh. flat_inputs (T*B, E)
    and weight_ih are the matmuls' operands (in their dtype), states (D, T+1, B, H) the forward's.
    bias_gradients: (b_ih's, b_hh's) where the caller summed them already, else their sums.

    Each is one big matmul (or sum) per direction, on contiguous operands (oneDNN copies strided
    ones itself, into fresh memory, which made a strided weight operand very slow). A weight
    gradient G^T X is computed as (X^T G)^T: oneDNN transposes G while packing it, for less than
    ATen's transposing copy costs. (In bf16 the copies are the casts; products come back in fp32.)
    """
    directions, steps, batch, gates = input_rows.shape
    rows_count, matmul_dtype, exact = steps * batch, flat_inputs.dtype, states.dtype
    reversed_steps = torch.arange(steps - 1, -1, -1)
    input_rows = input_rows.view(directions, rows_count, gates)
    # The backward direction's rows are in its reading order: it meets the inputs reversed
    # in time (T - 1 - t), and its input gradient comes back reversed.
    sources = [flat_inputs]
    if directions == 2:
        sources.append(torch.index_select(flat_inputs.view(steps, batch, -1), 0,
                                          reversed_steps).view(rows_count, -1))
    grad_inputs = None
    if inputs_need_grad:  # not when the embedding is frozen
        grad_inputs = _linear(input_rows[0], weight_ih[0].t())
        if directions == 2:
            backward_part = _linear(input_rows[1], weight_ih[1].t())
            grad_inputs += torch.index_select(backward_part.view(steps, batch, -1), 0,
                                              reversed_steps).view(rows_count, -1)
        grad_inputs = grad_inputs.to(exact).view(steps, batch, -1)
    grad_weight_ih = torch.stack([_linear(source.t(), input_rows[d].t()).t()
                                  for d, source in enumerate(sources)]).to(exact)
    if bias_gradients is None:
        bias_gradients = input_rows.sum(1, dtype=exact), hidden_rows.sum((1, 2), dtype=exact)
    # Against the previous states h_{t-1} (views of the saved states in fp32).
    hidden_rows = hidden_rows.view(directions, rows_count, gates)
    hidden_operand = hidden_rows.to(matmul_dtype)
    grad_weight_hh = torch.stack([
        _linear(states[d, :-1].reshape(rows_count, -1).to(matmul_dtype).t(),
                hidden_operand[d].t()).t() for d in range(directions)]).to(exact)
    return grad_inputs, grad_weight_ih, grad_weight_hh, bias_gradients[0], bias_gradients[1]


def _kernel_forward(inputs: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                    bias_ih: torch.Tensor, bias_hh: torch.Tensor, lengths: torch.Tensor | None,
                    matmul_dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """rnnclf::gru_layer's CPU kernel (rnnclf/accel/ops.py): FusedGRU.forward in fp32 with the
    C time loop (rnnclf/accel/_kernels.c): one oneDNN matmul for every step's input gates, then
    one call for all steps of both directions. The kernel reads the backward direction's input
    gates at T - 1 - t straight from that matmul, keeps its leading padding inert itself (no
    +inf), and writes the outputs in text order. -> outputs (T, B, D*H), and for the backward:
    the input matmul's operand (T*B, E), states (D, T+1, B, H), rz, reset_hidden, n.

    Under bf16 autocast the big products over all steps (here and in the backward) take bf16
    operands; the per-step hidden matmuls stay fp32 inside the kernel (more exact than autocast
    would make them, and faster; docs/benchmarks.md)."""
    steps, batch, features = inputs.shape
    directions, gates, _ = weight_ih.shape
    hidden = weight_hh.size(2)
    flat_inputs = inputs.reshape(steps * batch, features).to(matmul_dtype)
    products = _linear(flat_inputs, weight_ih.to(matmul_dtype).reshape(directions * gates, -1),
                       bias_ih.reshape(-1).to(matmul_dtype))
    products = products.to(inputs.dtype).contiguous()  # (T, B, D, 3H)
    pad_before = None
    if directions == 2 and lengths is not None and bool((lengths < steps).any()):
        pad_before = (steps - lengths).contiguous()
    weight_hh_t = kernels.padded_columns(weight_hh.transpose(1, 2))  # (D, H, P)
    bias_hh_padded = kernels.padded_columns(bias_hh)  # (D, P)
    padded = weight_hh_t.size(2)
    rz = inputs.new_empty(directions, steps, batch, 2 * hidden)
    reset_hidden = inputs.new_empty(directions, steps, batch, hidden)
    n = inputs.new_empty(directions, steps, batch, hidden)
    states = inputs.new_empty(directions, steps + 1, batch, hidden)  # [:, t] = h_{t-1}
    states[:, 0] = 0
    outputs = inputs.new_empty(steps, batch, directions, hidden)
    # Directions (and rows, with threads to spare) on threads of their own; each part
    # needs its own scratch for the hidden gates.
    parts = kernels.split_directions(directions, batch, torch.get_num_threads())
    scratch = [inputs.new_empty(row1 - row0, padded) for _, _, row0, row1 in parts]
    kernels.run("gru_train_forward", [kernels.GruTrainForward(
        steps=steps, batch=batch, hidden=hidden, directions=directions, d0=d0, d1=d1, row0=row0,
        row1=row1, padded=padded, products=products, pad_before=pad_before,
        weight_hh_t=weight_hh_t, bias_hh=bias_hh_padded, hidden_gates=hidden_gates,
        states=states, rz=rz, reset_hidden=reset_hidden, n=n, outputs=outputs)
        for (d0, d1, row0, row1), hidden_gates in zip(parts, scratch, strict=True)])
    return (outputs.view(steps, batch, directions * hidden), flat_inputs, states, rz,
            reset_hidden, n)


def _kernel_backward(grad_outputs: torch.Tensor, flat_inputs: torch.Tensor,
                     weight_ih: torch.Tensor, weight_hh: torch.Tensor, states: torch.Tensor,
                     rz: torch.Tensor, reset_hidden: torch.Tensor, n: torch.Tensor,
                     inputs_need_grad: bool) -> tuple[torch.Tensor | None, ...]:
    """rnnclf::gru_layer_backward's CPU kernel: FusedGRU.backward in fp32 with the C time loop.
    One call runs all steps of both directions (gate gradients from the saved gates, the
    outputs' gradient and what reaches h_t from step t + 1, in both layouts the big matmuls
    read, and the bias gradients), then `_matmul_gradients` does the rest in oneDNN."""
    directions, steps, batch, hidden = n.shape
    if grad_outputs.stride(2) != 1:  # the kernel takes any time and batch strides
        grad_outputs = grad_outputs.contiguous()  # (T, B, D*H)
    hidden_rows = _scratch("grad_gates", (directions, steps, batch, 3 * hidden), states)
    input_rows = _scratch("rows", (directions, steps, batch, 3 * hidden), states)
    weight_hh_padded = kernels.padded_columns(weight_hh)  # (D, 3H, Q)
    padded = weight_hh_padded.size(2)
    carried = states.new_empty(directions, batch, hidden)  # z_{t+1} dh_{t+1}
    parts = kernels.split_directions(directions, batch, torch.get_num_threads())
    # Per part: dG_{t+1} W_hh for its rows, and its own bias sums (dr, dz, dn, dn * r).
    recurrent = [states.new_empty(row1 - row0, padded) for _, _, row0, row1 in parts]
    bias_partial = states.new_empty(len(parts), 4 * hidden)
    bias_sums = states.new_zeros(len(parts), directions, 4 * hidden, dtype=torch.float64)
    kernels.run("gru_train_backward", [kernels.GruTrainBackward(
        steps=steps, batch=batch, hidden=hidden, d0=d0, d1=d1, row0=row0, row1=row1,
        padded=padded, grad_time_stride=grad_outputs.stride(0),
        grad_batch_stride=grad_outputs.stride(1), grad_outputs=grad_outputs,
        weight_hh=weight_hh_padded, recurrent=recurrent[i], carried=carried, rz=rz,
        reset_hidden=reset_hidden, n=n, states=states, hidden_rows=hidden_rows,
        input_rows=input_rows, bias_partial=bias_partial[i], bias_sums=bias_sums[i])
        for i, (d0, d1, row0, row1) in enumerate(parts)])
    sums = bias_sums.sum(0).to(states.dtype).view(directions, 4, hidden)
    # Contiguous, as the op's fake kernel promises (a reshape of sums[:, :3] would be a view).
    grad_bias_ih = sums[:, :3].contiguous().view(directions, 3 * hidden)
    grad_bias_hh = sums[:, [0, 1, 3]].reshape(directions, 3 * hidden)
    matmul_dtype = flat_inputs.dtype  # bf16 under autocast
    return _matmul_gradients(flat_inputs, weight_ih.to(matmul_dtype), states,
                             input_rows.to(matmul_dtype), hidden_rows, inputs_need_grad,
                             (grad_bias_ih, grad_bias_hh))


def _copy_reversed_time(destination: torch.Tensor, source: torch.Tensor,
                        reversed_steps: torch.Tensor) -> None:
    """destination[t] = source[T - 1 - t] along dim 0 (`reversed_steps` = T-1, ..., 0).

    index_select writes a contiguous destination of the same dtype in one pass, as fast as a
    plain copy (index_copy_ was several times slower); otherwise a flipped copy, then a copy."""
    if destination.is_contiguous() and destination.dtype == source.dtype:
        torch.index_select(source, 0, reversed_steps, out=destination)
    else:
        destination.copy_(source.flip(0))


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised buffer of this shape, reused by every call in this thread.

    Why: the CPU allocator returns large blocks to the OS, and the first touch of fresh pages
    costs about as much as the math on them (docs/benchmarks.md). Only for tensors that
    die within the forward or backward call that takes them (never a saved or returned one),
    so the forward and the backward can share names.
    """
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key, size = (name, like.dtype, like.device), math.prod(shape)
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < size:
        buffer = buffers[key] = like.new_empty(size)
    return buffer[:size].view(shape)


def fused_gru(inputs: torch.Tensor, weights: list[list[torch.Tensor]],
              lengths: torch.Tensor | None = None,
              matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """A GRU layer (one or two directions, as `weights` has) over time-major inputs (T, B, E)
    -> outputs (T, B, D*H), as `nn.GRU`'s for texts of these `lengths` (B,) (default: all T).
    weights: per direction [weight_ih, weight_hh, bias_ih, bias_hh]; matmul_dtype: the
    matmuls' operands (default: the inputs' dtype; bfloat16 as under CPU autocast).

    fp32 CPU tensors go to the custom op rnnclf::gru_layer (the C time loops) where rnnclf's
    kernels were built, everything else to `FusedGRU` (ATen ops)."""
    if len(weights) not in (1, 2):
        raise ValueError(f"a GRU layer has 1 or 2 directions, not {len(weights)}")
    stacked = [torch.stack(group) for group in zip(*weights, strict=True)]
    lengths = None if lengths is None else lengths.to("cpu", torch.int64)
    matmul_dtype = matmul_dtype or inputs.dtype
    if kernels.usable(inputs, stacked[1]):
        return torch.ops.rnnclf.gru_layer(inputs, *stacked, lengths, matmul_dtype)[0]
    return FusedGRU.apply(inputs, *stacked, lengths, matmul_dtype)


def release_scratch() -> None:
    """Free this thread's scratch buffers (sized to the longest batch so far), e.g. before an
    evaluation pass, so the training buffers and the evaluation's tensors never add up."""
    _SCRATCH.__dict__.pop("buffers", None)
