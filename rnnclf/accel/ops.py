"""rnnclf's C kernels as torch.library custom ops, so torch.compile and torch.export see them.

- `rnnclf::gru_layer`: a training GRU layer, one or two directions (fused_gru._kernel_forward),
  with autograd: its backward is `rnnclf::gru_layer_backward` (fused_gru._kernel_backward);
- `rnnclf::recurrent_layer`: an inference GRU or LSTM layer, one direction, pooled in the loop
  (cpu_inference._kernel_layer); no autograd (inference only).

Each op checks its tensors' shapes, dtypes (fp32), device (CPU) and, where the C code reads raw
memory, contiguity, and fails with one line naming the tensor; its fake (meta) kernel runs the
same checks and gives the outputs' shapes without running anything. The kernels' callers
(`fused_gru`, `recurrent_layer`) take these ops where rnnclf's C library was built
(`kernels.usable`), and the same math in ATen ops elsewhere (no compiler, RNNCLF_KERNELS=0).
This module is imported by rnnclf/accel/__init__.py, so the ops exist whenever rnnclf.accel does.
"""

from __future__ import annotations

from typing import Any, NoReturn

import torch
from torch import Tensor

from rnnclf.accel import cpu_inference, fused_gru

_MATMUL_DTYPES = (torch.float32, torch.bfloat16)
_GATES_PER_UNIT = {"gru": 3, "lstm": 4}
_POOLINGS = ("max", "sum", "last", "none")


def _fail(op: str, message: str) -> NoReturn:
    raise ValueError(f"rnnclf::{op}: {message}")


def _check(op: str, name: str, tensor: Tensor, layout: str, shape: tuple[Any, ...],
           dtype: torch.dtype = torch.float32, contiguous: bool = False) -> None:
    """tensor must be on the CPU, of this dtype and shape (`layout` names the dimensions for the
    message), and contiguous where the C code reads its memory directly. (Messages are only
    formatted on failure: these checks run on every call.)"""
    if tensor.device.type != "cpu":
        _fail(op, f"{name} must be on the CPU, not {tensor.device}")
    if tensor.dtype != dtype:
        _fail(op, f"{name} must be {dtype}, not {tensor.dtype}")
    if tensor.shape != shape:
        _fail(op, f"{name} must be {layout} = {tuple(shape)}, not {tuple(tensor.shape)}")
    if contiguous and not tensor.is_contiguous():
        _fail(op, f"{name} must be contiguous")


def _gru_sizes(op: str, weight_ih: Tensor, weight_hh: Tensor) -> tuple[int, int, int]:
    """(D, H, E) of a GRU layer's weights, checked to be (D, 3H, E) and (D, 3H, H)."""
    if weight_ih.dim() != 3 or weight_ih.size(0) not in (1, 2) or weight_ih.size(1) % 3 != 0:
        _fail(op, f"weight_ih must be (D, 3H, E) with D 1 or 2, not {tuple(weight_ih.shape)}")
    directions, hidden = weight_ih.size(0), weight_ih.size(1) // 3
    _check(op, "weight_ih", weight_ih, "(D, 3H, E)",
           (directions, 3 * hidden, weight_ih.size(2)))
    _check(op, "weight_hh", weight_hh, "(D, 3H, H)", (directions, 3 * hidden, hidden))
    return directions, hidden, weight_ih.size(2)


def _check_gru_layer(inputs: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
                     bias_hh: Tensor, lengths: Tensor | None, matmul_dtype: torch.dtype) -> None:
    op = "gru_layer"
    if inputs.dim() != 3:
        _fail(op, f"inputs must be (T, B, E), not {tuple(inputs.shape)}")
    steps, batch = inputs.shape[:2]
    directions, hidden, _ = _gru_sizes(op, weight_ih, weight_hh)
    _check(op, "inputs", inputs, "(T, B, E)", (steps, batch, weight_ih.size(2)))
    _check(op, "bias_ih", bias_ih, "(D, 3H)", (directions, 3 * hidden))
    _check(op, "bias_hh", bias_hh, "(D, 3H)", (directions, 3 * hidden))
    if lengths is not None:
        _check(op, "lengths", lengths, "(B,)", (batch,), dtype=torch.int64)
    if matmul_dtype not in _MATMUL_DTYPES:
        _fail(op, f"matmul_dtype must be torch.float32 or torch.bfloat16, not {matmul_dtype}")


@torch.library.custom_op("rnnclf::gru_layer", mutates_args=())
def gru_layer(inputs: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
              bias_hh: Tensor, lengths: Tensor | None, matmul_dtype: torch.dtype,
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """A GRU layer, D = 1 or 2 directions, from h = 0 (as fused_gru.FusedGRU, which documents
    the layouts): inputs (T, B, E), weight_ih (D, 3H, E), weight_hh (D, 3H, H), bias_ih and
    bias_hh (D, 3H), lengths (B,) int64 or None, matmul_dtype float32 or bfloat16 (the big
    matmuls' operands) -> outputs (T, B, D*H), then what the backward reads (not
    differentiable): the input matmul's operand (T*B, E), states (D, T+1, B, H), rz
    (D, T, B, 2H), reset_hidden and n (D, T, B, H). Inputs of any strides."""
    _check_gru_layer(inputs, weight_ih, weight_hh, bias_ih, bias_hh, lengths, matmul_dtype)
    outputs, flat_inputs, *saved = fused_gru._kernel_forward(
        inputs, weight_ih, weight_hh, bias_ih, bias_hh, lengths, matmul_dtype)
    if flat_inputs.untyped_storage().data_ptr() == inputs.untyped_storage().data_ptr():
        flat_inputs = flat_inputs.clone()  # an op's outputs may not alias its inputs
    return outputs, flat_inputs, *saved


@gru_layer.register_fake
def _(inputs: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor,
      lengths: Tensor | None, matmul_dtype: torch.dtype) -> tuple[Tensor, ...]:
    _check_gru_layer(inputs, weight_ih, weight_hh, bias_ih, bias_hh, lengths, matmul_dtype)
    steps, batch, features = inputs.shape
    directions, hidden = weight_hh.size(0), weight_hh.size(2)
    return (inputs.new_empty(steps, batch, directions * hidden),
            inputs.new_empty(steps * batch, features, dtype=matmul_dtype),
            inputs.new_empty(directions, steps + 1, batch, hidden),
            inputs.new_empty(directions, steps, batch, 2 * hidden),
            inputs.new_empty(directions, steps, batch, hidden),
            inputs.new_empty(directions, steps, batch, hidden))


def _check_gru_layer_backward(grad_outputs: Tensor, flat_inputs: Tensor, weight_ih: Tensor,
                              weight_hh: Tensor, states: Tensor, rz: Tensor,
                              reset_hidden: Tensor, n: Tensor) -> None:
    op = "gru_layer_backward"
    directions, hidden, features = _gru_sizes(op, weight_ih, weight_hh)
    if states.dim() != 4:
        _fail(op, f"states must be (D, T+1, B, H), not {tuple(states.shape)}")
    steps, batch = states.size(1) - 1, states.size(2)
    _check(op, "grad_outputs", grad_outputs, "(T, B, D*H)", (steps, batch, directions * hidden))
    if flat_inputs.dtype not in _MATMUL_DTYPES:
        _fail(op, "flat_inputs must be torch.float32 or torch.bfloat16, "
                  f"not {flat_inputs.dtype}")
    _check(op, "flat_inputs", flat_inputs, "(T*B, E)", (steps * batch, features),
           dtype=flat_inputs.dtype)
    _check(op, "states", states, "(D, T+1, B, H)", (directions, steps + 1, batch, hidden),
           contiguous=True)
    _check(op, "rz", rz, "(D, T, B, 2H)", (directions, steps, batch, 2 * hidden),
           contiguous=True)
    for name, saved in (("reset_hidden", reset_hidden), ("n", n)):
        _check(op, name, saved, "(D, T, B, H)", (directions, steps, batch, hidden),
               contiguous=True)


@torch.library.custom_op("rnnclf::gru_layer_backward", mutates_args=())
def gru_layer_backward(grad_outputs: Tensor, flat_inputs: Tensor, weight_ih: Tensor,
                       weight_hh: Tensor, states: Tensor, rz: Tensor, reset_hidden: Tensor,
                       n: Tensor, inputs_need_grad: bool,
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """gru_layer's backward: the outputs' gradient (T, B, D*H) (any time and batch strides),
    gru_layer's weights and what it saved -> the gradients of inputs (T, B, E) (an empty
    tensor unless inputs_need_grad), weight_ih, weight_hh, bias_ih and bias_hh."""
    _check_gru_layer_backward(grad_outputs, flat_inputs, weight_ih, weight_hh, states, rz,
                              reset_hidden, n)
    grad_inputs, *grads = fused_gru._kernel_backward(
        grad_outputs, flat_inputs, weight_ih, weight_hh, states, rz, reset_hidden, n,
        inputs_need_grad)
    return (states.new_empty(0) if grad_inputs is None else grad_inputs), *grads


@gru_layer_backward.register_fake
def _(grad_outputs: Tensor, flat_inputs: Tensor, weight_ih: Tensor, weight_hh: Tensor,
      states: Tensor, rz: Tensor, reset_hidden: Tensor, n: Tensor,
      inputs_need_grad: bool) -> tuple[Tensor, ...]:
    _check_gru_layer_backward(grad_outputs, flat_inputs, weight_ih, weight_hh, states, rz,
                              reset_hidden, n)
    steps, batch = states.size(1) - 1, states.size(2)
    grad_inputs = (states.new_empty(steps, batch, flat_inputs.size(1)) if inputs_need_grad
                   else states.new_empty(0))
    directions, gates = weight_hh.shape[:2]
    return (grad_inputs, torch.empty_like(weight_ih), torch.empty_like(weight_hh),
            states.new_empty(directions, gates), states.new_empty(directions, gates))


def _save_for_backward(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    _, weight_ih, weight_hh, *_ = inputs
    _, flat_inputs, states, rz, reset_hidden, n = output
    ctx.mark_non_differentiable(flat_inputs, states, rz, reset_hidden, n)
    # Only the outputs' gradient is ever used: no zeros made for the other five.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(flat_inputs, weight_ih, weight_hh, states, rz, reset_hidden, n)


def _gru_layer_gradients(ctx: Any, grad_outputs: Tensor | None,
                         *unused: Tensor | None) -> tuple[Tensor | None, ...]:
    if grad_outputs is None:
        return (None,) * 7
    inputs_need_grad = ctx.needs_input_grad[0]  # not when the embedding is frozen
    grad_inputs, *grads = torch.ops.rnnclf.gru_layer_backward(
        grad_outputs, *ctx.saved_tensors, inputs_need_grad)
    return (grad_inputs if inputs_need_grad else None), *grads, None, None


gru_layer.register_autograd(_gru_layer_gradients, setup_context=_save_for_backward)


def _check_recurrent_layer(cell: str, inputs: Tensor, active: list[int], pooling: str,
                           weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
                           bias_hh: Tensor) -> None:
    op = "recurrent_layer"
    if cell not in _GATES_PER_UNIT:
        _fail(op, f"cell must be 'gru' or 'lstm', not {cell!r}")
    if pooling not in _POOLINGS:
        _fail(op, f"pooling must be one of {_POOLINGS}, not {pooling!r}")
    if weight_hh.dim() != 2:
        _fail(op, f"weight_hh must be (G*H, H), not {tuple(weight_hh.shape)}")
    hidden = weight_hh.size(1)
    gates = _GATES_PER_UNIT[cell] * hidden
    _check(op, "weight_hh", weight_hh, "(G*H, H)", (gates, hidden))
    _check(op, "bias_hh", bias_hh, "(G*H,)", (gates,))
    if inputs.dim() not in (2, 3):
        _fail(op, "inputs must be token rows (T, B) or states (T, B, E), "
                  f"not {tuple(inputs.shape)}")
    steps, batch = inputs.shape[:2]
    if len(active) != steps:
        _fail(op, f"active must hold T = {steps} counts, not {len(active)}")
    if inputs.dim() == 2:  # rows of a table of input gates
        _check(op, "inputs", inputs, "(T, B)", (steps, batch), dtype=torch.int64)
        _check(op, "weight_ih", weight_ih, "(U, G*H)", (weight_ih.size(0), gates))
        if bias_ih is not None:
            _fail(op, "bias_ih must be None with token rows (it is in the table)")
        return
    _check(op, "inputs", inputs, "(T, B, E)", (steps, batch, inputs.size(2)))
    _check(op, "weight_ih", weight_ih, "(G*H, E)", (gates, inputs.size(2)))
    if bias_ih is not None:
        _check(op, "bias_ih", bias_ih, "(G*H,)", (gates,))


@torch.library.custom_op("rnnclf::recurrent_layer", mutates_args=())
def recurrent_layer(cell: str, inputs: Tensor, active: list[int], pooling: str,
                    weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
                    bias_hh: Tensor) -> Tensor:
    """cpu_inference.recurrent_layer for a GRU or LSTM in fp32 (its docstring has the layouts):
    -> (B, H) pooled ("max", "sum", "last"), or every step's states (T, B, H) ("none"; the
    rows past each text's end are left unwritten, so their values are unspecified)."""
    _check_recurrent_layer(cell, inputs, active, pooling, weight_ih, weight_hh, bias_ih, bias_hh)
    # The C loop reads the gate table at these rows.
    if inputs.dim() == 2 and inputs.numel() > 0 and (
            int(inputs.min()) < 0 or int(inputs.max()) >= weight_ih.size(0)):
        _fail("recurrent_layer", f"inputs must be rows 0 to {weight_ih.size(0) - 1}")
    return cpu_inference._kernel_layer(cell, inputs, active, pooling, weight_ih, weight_hh,
                                       bias_ih, bias_hh)


@recurrent_layer.register_fake
def _(cell: str, inputs: Tensor, active: list[int], pooling: str, weight_ih: Tensor,
      weight_hh: Tensor, bias_ih: Tensor | None, bias_hh: Tensor) -> Tensor:
    _check_recurrent_layer(cell, inputs, active, pooling, weight_ih, weight_hh, bias_ih, bias_hh)
    steps, batch = inputs.shape[:2]
    if pooling == "none":
        return weight_hh.new_empty(steps, batch, weight_hh.size(1))
    return weight_hh.new_empty(batch, weight_hh.size(1))
