"""Forward-only recurrent layers for inference on the CPU (fp32, no autograd).

ATen's CPU RNN/GRU kernels run every step's matmul through MKL (no AVX-512 path on AMD CPUs,
where oneDNN's kernel runs these shapes much faster) and tanh through a kernel much slower than
sigmoid; all of them, LSTM included, work over the whole padded batch or packed sequences and
write every step's states (figures: docs/benchmarks.md). `RNNClassifier` sends eval-mode,
no-grad CPU batches here:

- the first layer's input projection W_ih x + b_ih depends only on the token, so it is computed
  once per distinct token id in the batch (`token_gates`), and each step gathers its rows;
- for the GRU and LSTM in fp32, the time loop runs in C where rnnclf's kernels were built: the
  custom op rnnclf::recurrent_layer (rnnclf/accel/ops.py) runs `_kernel_layer`
  (rnnclf/accel/_kernels.c: one call per layer and direction, row ranges balanced by tokens on
  threads of their own); otherwise `_aten_layer`: per step one oneDNN matmul for the hidden
  part and a few in-place elementwise ops, with tanh(a) = 2 sigmoid(2a) - 1 (as in
  rnnclf/accel/fused_gru.py);
- rows sorted longest first: step t computes only the texts still running, as packing does,
  so padding costs nothing;
- max, mean and last pooling happen inside the loop, so no (T, B, H) states are written, masked
  and read back (only attention and lower layers of a stack keep them, time-major).

Same equations and parameters as `nn.RNN` (tanh), `nn.GRU` (gate order r, z, n) and `nn.LSTM`
(gate order i, f, g, o; without proj_size).
"""

from __future__ import annotations

import torch

from rnnclf.accel import kernels
from rnnclf.accel.onednn import linear as _linear


def token_gates(tokens: torch.Tensor, embedding: torch.Tensor, weight_ih: list[torch.Tensor],
                bias_ih: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """tokens (B, T), embedding (V, E), per direction weight_ih (G*H, E) / bias_ih (G*H,)
    -> per direction the input gates of each distinct token (U, G*H), and tokens as rows of
    those tables (B, T).

    A batch of 512 AG News texts holds ~23k tokens but only a fraction as many distinct ids.
    """
    distinct, rows = torch.unique(tokens, return_inverse=True)  # (U,), (B, T)
    vectors = embedding.index_select(0, distinct)  # (U, E)
    return [_linear(vectors, weight, bias) for weight, bias in zip(weight_ih, bias_ih,
                                                                      strict=True)], rows


def recurrent_layer(cell: str, inputs: torch.Tensor, active: list[int], pooling: str,
                    weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                    bias_ih: torch.Tensor | None, bias_hh: torch.Tensor,
                    matmul_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One layer and direction from h = 0, pooled over each text's steps.

    inputs (T, B, E) with weight_ih (G*H, E), bias_ih (G*H,); or (T, B) rows of a gate table
    from `token_gates` as weight_ih (U, G*H), bias_ih None (it is in the table). Rows are
    longest text first, and step t computes only its first active[t] rows (as packing does).
    pooling "max", "sum" or "last" -> (B, H), pooled as the steps run; "none" -> all states
    (T, B, H), rows past a text's end holding junk. Pooling in the loop spares writing, and
    masking, a (T, B, H) tensor that the pooling reads once.
    matmul_dtype bfloat16 runs the per-step hidden matmul as autocast would (bf16 operands,
    the states, gates and their math in fp32): on CPUs with native bf16 dot products oneDNN
    runs it faster than fp32 at these shapes (docs/benchmarks.md).
    """
    if matmul_dtype == weight_hh.dtype and cell in _KERNEL_GATES and kernels.usable(weight_hh):
        return torch.ops.rnnclf.recurrent_layer(cell, inputs, active, pooling, weight_ih,
                                                weight_hh, bias_ih, bias_hh)
    return _aten_layer(cell, inputs, active, pooling, weight_ih, weight_hh, bias_ih, bias_hh,
                       matmul_dtype)


def _aten_layer(cell: str, inputs: torch.Tensor, active: list[int], pooling: str,
                weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor | None,
                bias_hh: torch.Tensor, matmul_dtype: torch.dtype) -> torch.Tensor:
    """`recurrent_layer` in ATen ops: any cell, dtype and matmul dtype."""
    steps, batch = inputs.shape[:2]
    hidden = weight_hh.size(1)
    states = weight_hh.new_empty(steps, batch, hidden) if pooling == "none" else None
    # One buffer for all steps: a fresh (B, G*H) tensor each step cost page faults (see
    # fused_gru._scratch, which cannot serve here: inference tensors would leak out of it).
    buffer = weight_hh.new_empty(batch, weight_hh.size(0))
    h = weight_hh.new_zeros(batch, hidden)  # row b: its state at step min(t, length_b - 1)
    cell_state = weight_hh.new_zeros(batch, hidden) if cell == "lstm" else None  # LSTM's c
    pooled = h
    h_low = None
    if matmul_dtype != weight_hh.dtype:  # the weights cast once, the state into one buffer
        weight_hh, bias_hh = weight_hh.to(matmul_dtype), bias_hh.to(matmul_dtype)
        h_low = h.to(matmul_dtype)
        if inputs.dim() == 3:
            weight_ih = weight_ih.to(matmul_dtype)
            bias_ih = None if bias_ih is None else bias_ih.to(matmul_dtype)
    for t, rows in enumerate(active):
        if inputs.dim() == 2:
            gates = torch.index_select(weight_ih, 0, inputs[t, :rows], out=buffer[:rows])
        elif h_low is not None:
            gates = buffer[:rows].copy_(_linear(inputs[t, :rows].to(matmul_dtype), weight_ih,
                                                bias_ih))
        else:
            gates = _linear(inputs[t, :rows], weight_ih, bias_ih)  # (rows, G*H)
        h_now = h[:rows]
        h_operand = h_now if h_low is None else h_low[:rows].copy_(h_now)
        hidden_gates = _linear(h_operand, weight_hh, bias_hh)  # (rows, G*H)
        _aten_step(cell, gates, hidden_gates, h_now,
                   None if cell_state is None else cell_state[:rows])
        if states is not None:
            states[t, :rows] = h_now
        elif t == 0 and pooling != "last":
            pooled = h.clone()  # every text has a first step
        elif pooling == "max":
            torch.maximum(pooled[:rows], h_now, out=pooled[:rows])
        elif pooling == "sum":
            pooled[:rows] += h_now
    return states if states is not None else pooled


def _aten_step(cell: str, gates: torch.Tensor, hidden_gates: torch.Tensor, h_now: torch.Tensor,
               c_now: torch.Tensor | None) -> None:
    """One step of the running rows: gates (rows, G*H) the input part (overwritten),
    hidden_gates the hidden part; h_now (and the LSTM's c_now) (rows, H) updated in place."""
    hidden = h_now.size(1)
    if cell == "rnn":
        _tanh_into(gates.add_(hidden_gates), h_now)
    elif c_now is not None:  # LSTM, gates i, f, g, o
        gates.add_(hidden_gates)
        g = gates[:, 2 * hidden:3 * hidden].mul_(2)  # one sigmoid for all, tanh(g) below
        gates.sigmoid_()
        g.mul_(2).sub_(1)
        c_now.mul_(gates[:, hidden:2 * hidden]).addcmul_(gates[:, :hidden], g)
        # h = o tanh(c), the tanh written over the spent g
        torch.mul(gates[:, 3 * hidden:], _tanh_into(g.copy_(c_now), g), out=h_now)
    else:
        rz = gates[:, :2 * hidden].add_(hidden_gates[:, :2 * hidden]).sigmoid_()
        n = gates[:, 2 * hidden:].addcmul_(rz[:, :hidden], hidden_gates[:, 2 * hidden:])
        n = _tanh_into(n, n)
        torch.lerp(n, h_now, rz[:, hidden:], out=h_now)  # n + z (h - n)


# Pooling as rnnclf/accel/_kernels.c's inference loops take it: the running maximum or sum.
_KERNEL_POOLS = {"max": 1, "sum": 2}
_KERNEL_GATES = {"gru": 3, "lstm": 4}  # the cells the C loop runs, and their gates per unit
# Hidden-to-hidden layers (a stack's upper ones) get their input gates from one matmul per this
# many steps: ~1024 x 32 x G*H floats at most at a time.
_STEPS_PER_PRODUCT = 32


def _kernel_layer(cell: str, inputs: torch.Tensor, active: list[int], pooling: str,
                  weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor | None,
                  bias_hh: torch.Tensor) -> torch.Tensor:
    """rnnclf::recurrent_layer's CPU kernel (rnnclf/accel/ops.py): `recurrent_layer` for a GRU
    or LSTM in fp32 with the C time loop: for token-id inputs one call for all steps (it reads
    the token table's rows itself), for hidden-state inputs one matmul then one call per
    `_STEPS_PER_PRODUCT` steps."""
    steps, batch = inputs.shape[:2]
    hidden = weight_hh.size(1)
    states = weight_hh.new_empty(steps, batch, hidden) if pooling == "none" else None
    h = weight_hh.new_zeros(batch, hidden)  # row b: its state at step min(t, length_b - 1)
    cell_state = weight_hh.new_zeros(batch, hidden) if cell == "lstm" else None
    pooled = weight_hh.new_empty(batch, hidden) if pooling in _KERNEL_POOLS else None
    weight_hh_t = kernels.padded_columns(weight_hh.t())  # (H, P)
    bias_padded = kernels.padded_columns(bias_hh)
    active_steps = torch.tensor(active, dtype=torch.int64)
    # Row ranges of about equal tokens on threads of their own (rows run longest first), each
    # with its own scratch for the hidden gates.
    lengths = (active_steps.unsqueeze(1) > torch.arange(batch)).sum(0).tolist()
    parts = kernels.split_rows(lengths, torch.get_num_threads())
    scratch = [weight_hh.new_empty(row1 - row0, weight_hh_t.size(1)) for row0, row1 in parts]

    def run_steps(first: int, last: int, gates: torch.Tensor, tokens: torch.Tensor | None) -> None:
        kernels.run("recurrent_infer", [kernels.RecurrentInfer(
            gates_per_unit=_KERNEL_GATES[cell], t0=first, t1=last, batch=batch, hidden=hidden,
            padded=weight_hh_t.size(1), row0=row0, row1=row1, pool=_KERNEL_POOLS.get(pooling, 0),
            active=active_steps, gates=gates, tokens=tokens, weight_hh_t=weight_hh_t,
            bias_hh=bias_padded, hidden_gates=hidden_gates, h=h, c=cell_state, pooled=pooled,
            states=states) for (row0, row1), hidden_gates in zip(parts, scratch, strict=True)])

    if inputs.dim() == 2:  # rows of the token table
        run_steps(0, steps, weight_ih.contiguous(), inputs.contiguous())
    else:
        for first in range(0, steps, _STEPS_PER_PRODUCT):
            last = min(first + _STEPS_PER_PRODUCT, steps)
            chunk = inputs[first:last].reshape((last - first) * batch, -1)
            run_steps(first, last, _linear(chunk, weight_ih, bias_ih).contiguous(), None)
    if states is not None:
        return states
    return h if pooled is None else pooled


def reverse_time(values: torch.Tensor, reverse: torch.Tensor) -> torch.Tensor:
    """values (T, B, F), reverse (B, T) -> values[reverse[b, t], b, :]: each text reversed
    within its length, padding left in place (its own inverse)."""
    return values.gather(0, reverse.t().unsqueeze(2).expand(-1, -1, values.size(2)))


def _tanh_into(values: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = tanh(values), overwriting values: 2 sigmoid(2a) - 1, as ATen's CPU tanh is slow."""
    return torch.sub(values.mul_(2).sigmoid_().mul_(2), 1, out=out)
