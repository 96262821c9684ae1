"""rnnclf's custom ops (rnnclf/accel/ops.py): torch.library's own checks (schema, fake kernel,
autograd registration, AOT dispatch), the ops' one-line errors, and torch.compile / torch.export
seeing them. Their numbers against nn.GRU / nn.LSTM are checked in test_fused_gru.py,
test_cpu_inference.py and test_kernels.py."""

from __future__ import annotations

import pytest
import torch
from kernel_support import KernelCalls
from torch import nn

from rnnclf.accel import kernels
from rnnclf.accel.cpu_inference import recurrent_layer
from rnnclf.accel.fused_gru import fused_gru

needs_kernels = pytest.mark.skipif(kernels.KERNELS is None,
                                   reason="rnnclf/accel/_kernels.c is not built here")


def gru_arguments(directions: int, lengths: list[int] | None,
                  requires_grad: bool = True) -> tuple[object, ...]:
    torch.manual_seed(0)
    steps, batch, features, hidden = 5, 4, 3, 2
    inputs = torch.randn(batch, steps, features).transpose(0, 1)  # strided, as the model's
    shapes = [(3 * hidden, features), (3 * hidden, hidden), (3 * hidden,), (3 * hidden,)]
    weights = [torch.randn(directions, *shape) for shape in shapes]
    for tensor in (inputs, *weights):
        tensor.requires_grad_(requires_grad)
    return (inputs, *weights, None if lengths is None else torch.tensor(lengths),
            torch.float32)


def saved_for_backward(directions: int) -> tuple[object, ...]:
    inputs, weight_ih, weight_hh, bias_ih, bias_hh, lengths, dtype = gru_arguments(
        directions, [5, 2, 4, 1], requires_grad=False)
    outputs, *saved = torch.ops.rnnclf.gru_layer(inputs, weight_ih, weight_hh, bias_ih,
                                                 bias_hh, lengths, dtype)
    flat_inputs, states, rz, reset_hidden, n = saved
    return (torch.randn_like(outputs), flat_inputs, weight_ih, weight_hh, states, rz,
            reset_hidden, n)


def inference_arguments(cell: str, pooling: str, tokens: bool) -> tuple[object, ...]:
    torch.manual_seed(1)
    steps, batch, features, hidden = 6, 5, 4, 3
    gates = {"gru": 3, "lstm": 4}[cell] * hidden
    # Every row runs every step where all states are kept: rows past a text's end are left
    # unwritten (unspecified), and opcheck compares whole outputs.
    active = [batch] * steps if pooling == "none" else [5, 5, 4, 2, 2, 1]
    if tokens:  # rows of a table of 7 tokens' input gates
        inputs, weight_ih = torch.randint(0, 7, (steps, batch)), torch.randn(7, gates)
        bias_ih = None
    else:
        inputs, weight_ih, bias_ih = (torch.randn(steps, batch, features),
                                      torch.randn(gates, features), torch.randn(gates))
    return (cell, inputs, active, pooling, weight_ih, torch.randn(gates, hidden), bias_ih,
            torch.randn(gates))


@needs_kernels
@pytest.mark.parametrize(("directions", "lengths"), [(1, None), (2, None), (2, [5, 2, 4, 1])])
def test_opcheck_gru_layer(directions: int, lengths: list[int] | None) -> None:
    torch.library.opcheck(torch.ops.rnnclf.gru_layer.default,
                          gru_arguments(directions, lengths))


@needs_kernels
@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("inputs_need_grad", [True, False])
def test_opcheck_gru_layer_backward(directions: int, inputs_need_grad: bool) -> None:
    torch.library.opcheck(torch.ops.rnnclf.gru_layer_backward.default,
                          (*saved_for_backward(directions), inputs_need_grad))


@needs_kernels
@pytest.mark.parametrize(("cell", "pooling", "tokens"),
                         [("gru", "max", True), ("lstm", "sum", True), ("gru", "none", False),
                          ("lstm", "last", False)])
def test_opcheck_recurrent_layer(cell: str, pooling: str, tokens: bool) -> None:
    torch.library.opcheck(torch.ops.rnnclf.recurrent_layer.default,
                          inference_arguments(cell, pooling, tokens))


def one_line_error(op: object, *arguments: object) -> str:
    """The ops check before they run anything, so these need no C library."""
    with pytest.raises(ValueError) as error:
        op(*arguments)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_gru_layer_refuses_wrong_tensors_in_one_line() -> None:
    inputs, weight_ih, weight_hh, bias_ih, bias_hh, lengths, dtype = gru_arguments(2, None, False)
    op = torch.ops.rnnclf.gru_layer

    def refused(**changes: object) -> str:
        arguments = dict(inputs=inputs, weight_ih=weight_ih, weight_hh=weight_hh,
                         bias_ih=bias_ih, bias_hh=bias_hh, lengths=lengths, dtype=dtype)
        return one_line_error(op, *{**arguments, **changes}.values())

    assert "inputs must be torch.float32, not torch.float64" in refused(inputs=inputs.double())
    assert "weight_hh must be (D, 3H, H) = (2, 6, 2), not (2, 6, 1)" in refused(
        weight_hh=weight_hh[..., :1])
    assert "weight_ih must be (D, 3H, E) with D 1 or 2" in refused(
        weight_ih=weight_ih.repeat(2, 1, 1))
    assert "bias_hh must be (D, 3H) = (2, 6)" in refused(bias_hh=bias_hh[:, :5])
    assert "lengths must be torch.int64" in refused(lengths=torch.ones(4, dtype=torch.int32))
    assert "lengths must be (B,) = (4,)" in refused(lengths=torch.ones(3, dtype=torch.int64))
    assert "matmul_dtype must be" in refused(dtype=torch.float16)
    assert refused(inputs=inputs.to("meta")).startswith("rnnclf::gru_layer: inputs must be on")


@needs_kernels
def test_gru_layer_backward_refuses_non_contiguous_saved_tensors() -> None:
    grad_outputs, flat_inputs, weight_ih, weight_hh, states, rz, reset_hidden, n = \
        saved_for_backward(2)
    strided = n.transpose(1, 2).contiguous().transpose(1, 2)
    message = one_line_error(torch.ops.rnnclf.gru_layer_backward, grad_outputs, flat_inputs,
                             weight_ih, weight_hh, states, rz, reset_hidden, strided, True)
    assert message == "rnnclf::gru_layer_backward: n must be contiguous"


def test_recurrent_layer_refuses_wrong_arguments_in_one_line() -> None:
    cell, inputs, active, pooling, weight_ih, weight_hh, bias_ih, bias_hh = \
        inference_arguments("gru", "max", True)
    op = torch.ops.rnnclf.recurrent_layer
    assert "cell must be 'gru' or 'lstm'" in one_line_error(
        op, "rnn", inputs, active, pooling, weight_ih, weight_hh, bias_ih, bias_hh)
    assert "pooling must be one of" in one_line_error(
        op, cell, inputs, active, "mean", weight_ih, weight_hh, bias_ih, bias_hh)
    assert "active must hold T = 6 counts, not 5" in one_line_error(
        op, cell, inputs, active[:5], pooling, weight_ih, weight_hh, bias_ih, bias_hh)
    assert "inputs must be rows 0 to 6" in one_line_error(
        op, cell, inputs + 1, active, pooling, weight_ih, weight_hh, bias_ih, bias_hh)
    assert "weight_ih must be (U, G*H) = (7, 9)" in one_line_error(
        op, cell, inputs, active, pooling, weight_ih[:, :8], weight_hh, bias_ih, bias_hh)


@needs_kernels
def test_compiled_fused_gru_runs_the_op_in_its_graph(kernel_calls: KernelCalls) -> None:
    """torch.compile traces through fused_gru to rnnclf::gru_layer and its backward with the
    fake kernels, in one graph (fullgraph: the C calls could not be traced otherwise), and the
    compiled function runs the C kernels and gives eager's outputs and gradients."""
    torch.manual_seed(0)
    inputs = torch.randn(6, 3, 4, requires_grad=True)
    weights = [[torch.randn(*shape, requires_grad=True) for shape in ((9, 4), (9, 3), (9,), (9,))]
               for _ in range(2)]  # dynamo traces no nn.GRU module: the raw parameters
    lengths = torch.tensor([6, 2, 5])

    def layer(inputs: torch.Tensor) -> torch.Tensor:
        return fused_gru(inputs, weights, lengths).square().sum()

    results = []
    for function in (layer, torch.compile(layer, backend="aot_eager", fullgraph=True)):
        loss = function(inputs)
        results.append((loss.detach(),
                        *torch.autograd.grad(loss, [inputs, *weights[0], *weights[1]])))
    assert kernel_calls.calls == {"gru_train_forward": 2, "gru_train_backward": 2}
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@needs_kernels
def test_exported_inference_layer_keeps_the_op() -> None:
    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(4, 3)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return recurrent_layer("lstm", inputs, [5, 5, 4, 2, 2, 1], "max",
                                   self.lstm.weight_ih_l0, self.lstm.weight_hh_l0,
                                   self.lstm.bias_ih_l0, self.lstm.bias_hh_l0)

    torch.manual_seed(0)
    layer, inputs = Layer().eval(), torch.randn(6, 5, 4)
    with torch.no_grad():
        exported = torch.export.export(layer, (inputs,))
        targets = {str(node.target) for node in exported.graph.nodes}
        assert "rnnclf.recurrent_layer.default" in targets
        torch.testing.assert_close(exported.module()(inputs), layer(inputs), atol=0, rtol=0)
