"""rnnclf's C gate kernels (rnnclf/accel/_kernels.c via rnnclf/accel/kernels.py): built, loaded
only with matching argument structs, accurate, used.

Their results against nn.GRU, nn.LSTM and the ATen paths are checked in test_fused_gru.py and
test_cpu_inference.py, where every test runs once with them and once without (`gate_math`).
"""

from __future__ import annotations

import ctypes
import os
import shutil

import pytest
import torch
from kernel_support import KernelCalls, gru_weights
from torch import nn

from rnnclf.accel import kernels
from rnnclf.accel.backend import CpuBackend
from rnnclf.accel.fused_gru import fused_gru
from rnnclf.models.classifier import RNNClassifier

needs_kernels = pytest.mark.skipif(kernels.KERNELS is None,
                                   reason="rnnclf/accel/_kernels.c is not built here")


def test_built_where_a_compiler_exists() -> None:
    """`make install` builds them; a silent fallback would hide a broken build."""
    if os.environ.get("RNNCLF_KERNELS") == "0":
        pytest.skip("RNNCLF_KERNELS=0 turns them off")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: rnnclf runs its ATen fallback")
    assert kernels.KERNELS is not None


def test_turned_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNCLF_KERNELS", "0")
    assert kernels._load() is None


@needs_kernels
def test_a_library_from_another_source_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An editable install does not rebuild the library when _kernels.c changes: a stale one
    (other arguments) must not be called, and the user hears it in one line with the fix."""

    class Renamed(kernels.KernelArguments):  # a field renamed, as a changed _kernels.c would
        _fields_ = [("steps" if name == "batch" else name, kind)
                    for name, kind in kernels.GruTrainForward._fields_]

    monkeypatch.setitem(kernels.ARGUMENTS, "gru_train_forward", Renamed)
    assert kernels._load() is None
    message = capsys.readouterr().err
    assert message.count("\n") == 1
    assert "another version of rnnclf/accel/_kernels.c" in message
    assert "pip install -e ." in message


def test_a_library_from_before_the_layout_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A library built before the layout text existed (positional arguments) is stale too."""

    class OldLibrary:
        def __init__(self, path: str) -> None:
            self.rnnclf_kernels_version = lambda: 6

    monkeypatch.delenv("RNNCLF_KERNELS", raising=False)
    monkeypatch.setattr(kernels.importlib.util, "find_spec",
                        lambda name: type("Spec", (), {"origin": "/old/_kernels.so"})())
    monkeypatch.setattr(kernels.ctypes, "CDLL", OldLibrary)
    assert kernels._load() is None
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "/old/_kernels.so" in message
    assert "pip install -e ." in message


@needs_kernels
def test_the_mirrors_match_the_c_structs_field_by_field() -> None:
    """The C file's layout text, parsed, is each ctypes mirror's fields in order, pointers as
    pointers: the check `_load` relies on, seen from both sides."""
    layout = kernels.KERNELS.rnnclf_kernels_layout
    layout.restype = ctypes.c_char_p
    parsed = kernels.parse_layout(layout().decode())
    assert parsed == {name: kernels.describe(arguments)
                      for name, arguments in kernels.ARGUMENTS.items()}
    assert ("pad_before", "pointer") in parsed["gru_train_forward"]
    assert parsed["gru_train_backward"][8] == ("grad_time_stride", "int64_t")


def test_arguments_must_name_every_field_once() -> None:
    """ctypes alone would take a misspelt keyword as an attribute and leave the field 0."""
    fields = {name: 0 for name, _ in kernels.RecurrentInfer._fields_}
    kernels.RecurrentInfer(**fields)
    with pytest.raises(TypeError, match=r"missing \['pool'\]"):
        kernels.RecurrentInfer(**{name: 0 for name in fields if name != "pool"})
    with pytest.raises(TypeError, match=r"unknown \['pooling'\]"):
        kernels.RecurrentInfer(**fields, pooling=1)
    values = torch.zeros(3)
    assert kernels.RecurrentInfer(**{**fields, "h": values, "c": None}).h == values.data_ptr()


def activation(name: str, values: torch.Tensor) -> torch.Tensor:
    values = values.contiguous()
    out = torch.empty_like(values)
    getattr(kernels.KERNELS, f"{name}_array")(values.numel(), values.data_ptr(), out.data_ptr())
    return out


@needs_kernels
@pytest.mark.parametrize(("name", "reference", "tolerance"),
                         [("sigmoid", torch.sigmoid, 2e-7), ("tanh", torch.tanh, 5e-7)])
def test_activations_are_accurate_over_the_whole_range(name: str, reference: object,
                                                       tolerance: float) -> None:
    values = torch.cat([torch.linspace(-120, 120, 400_001), torch.linspace(-1e-3, 1e-3, 2001)])
    got = activation(name, values).double()
    want = reference(values.double())
    assert float((got - want).abs().max()) <= tolerance


@needs_kernels
def test_activations_at_infinities_and_nan() -> None:
    """sigmoid(+inf) = 1 exactly: the training kernel's padding relies on z = 1 there."""
    special = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0])
    sigmoid, tanh = activation("sigmoid", special), activation("tanh", special)
    assert sigmoid[0] == 1.0 and 0.0 <= float(sigmoid[1]) < 1e-37 and sigmoid[3] == 0.5
    assert tanh[0] == 1.0 and tanh[1] == -1.0 and tanh[3] == 0.0
    assert torch.isnan(sigmoid[2]) and torch.isnan(tanh[2])  # never hidden as a finite value


@needs_kernels
def test_training_layer_takes_the_kernels_and_matches_aten(monkeypatch: pytest.MonkeyPatch,
                                                           kernel_calls: KernelCalls) -> None:
    """fp32 fused_gru runs through the C forward and backward loops, and gives ATen's outputs and
    gradients, with padding and with the outputs' gradient handed over batch-major (strided)."""
    torch.manual_seed(0)
    gru = nn.GRU(16, 12, bidirectional=True)
    lengths = torch.tensor([7, 3, 7, 1, 5])
    batch_major = torch.randn(len(lengths), 7, 16, requires_grad=True)
    inputs = batch_major.transpose(0, 1)  # (T, B, E), as the model passes it
    upstream = torch.randn(len(lengths), 7, 24)  # batch-major, like the pooling's gradient
    wrt = [batch_major, *gru.parameters()]

    def run() -> tuple[torch.Tensor, ...]:
        outputs = fused_gru(inputs, gru_weights(gru), lengths)
        return (outputs.detach(), *torch.autograd.grad(outputs.transpose(0, 1), wrt, upstream))

    with_kernels = run()
    assert kernel_calls.calls == {"gru_train_forward": 1, "gru_train_backward": 1}
    monkeypatch.setattr(kernels, "KERNELS", None)
    with_aten = run()
    for got, want in zip(with_kernels, with_aten, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@needs_kernels
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_inference_takes_the_kernels(cell: str, kernel_calls: KernelCalls) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(vocab_size=30, num_classes=4, embedding_dim=8, hidden_size=6,
                          cell=cell, bidirectional=True, backend=CpuBackend()).eval()
    tokens = torch.randint(1, 30, (3, 5))
    with torch.inference_mode():
        model(tokens, torch.tensor([5, 4, 2]))
    assert model.backend.lean_inference
    assert kernel_calls.calls == {"recurrent_infer": 2}  # per direction


@needs_kernels
@pytest.mark.parametrize(("rows", "inner", "columns"),
                         [(1, 5, 32), (7, 6, 32), (8, 128, 384), (13, 384, 128), (64, 3, 64)])
def test_matmul_blocks_and_leftover_rows(rows: int, inner: int, columns: int) -> None:
    """The time loops' matmul: 8-row blocks, single leftover rows, 32-column panels, bias."""
    generator = torch.Generator().manual_seed(rows)
    a, b = torch.randn(rows, inner, generator=generator), torch.randn(inner, columns,
                                                                      generator=generator)
    bias = torch.randn(columns, generator=generator)
    for with_bias in (bias, None):
        out = torch.full((rows, columns), float("nan"))
        kernels.KERNELS.matmul(rows, columns, inner, a.data_ptr(), b.data_ptr(),
                               kernels.address(with_bias), out.data_ptr())
        want = a.double() @ b.double() + (0 if with_bias is None else with_bias.double())
        torch.testing.assert_close(out.double(), want, atol=1e-4, rtol=1e-5)


def test_split_rows_balances_work_at_multiples_of_8() -> None:
    assert kernels.split_rows([1.0] * 64, 2) == [(0, 32), (32, 64)]
    assert kernels.split_rows([1.0] * 64, 1) == [(0, 64)]
    assert kernels.split_rows([1.0] * 5, 4) == [(0, 5)]  # too few rows to split
    longest_first = [float(length) for length in range(100, 0, -1)]
    parts = kernels.split_rows(longest_first, 2)
    assert parts == [(0, 32), (32, 100)]  # half the tokens lie in the first 30 rows
    assert kernels.split_directions(2, 64, 1) == [(0, 2, 0, 64)]
    assert kernels.split_directions(2, 64, 2) == [(0, 1, 0, 64), (1, 2, 0, 64)]
    assert kernels.split_directions(1, 64, 2) == [(0, 1, 0, 32), (0, 1, 32, 64)]
    assert kernels.split_directions(2, 64, 4) == [(0, 1, 0, 32), (0, 1, 32, 64),
                                                  (1, 2, 0, 32), (1, 2, 32, 64)]


@pytest.fixture
def threads() -> object:
    """Sets torch's thread count in a test, restoring it afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@needs_kernels
@pytest.mark.parametrize("bidirectional", [False, True])
def test_threads_split_training_by_direction_and_rows(bidirectional: bool, threads: object) -> None:
    """Several threads (parts of 8 rows and single leftover rows) give the one-thread results."""
    torch.manual_seed(0)
    gru = nn.GRU(16, 12, bidirectional=bidirectional)
    weights = gru_weights(gru)
    lengths = torch.randint(1, 10, (21,))
    inputs = torch.randn(int(lengths.max()), 21, 16, requires_grad=True)
    upstream = torch.randn(int(lengths.max()), 21, 12 * (1 + bidirectional))

    def run(count: int) -> tuple[torch.Tensor, ...]:
        threads(count)
        outputs = fused_gru(inputs, weights, lengths)
        return (outputs.detach(),
                *torch.autograd.grad(outputs, [inputs, *gru.parameters()], upstream))

    one = run(1)
    for count in (2, 3, 5):
        for got, want in zip(run(count), one, strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@needs_kernels
@pytest.mark.parametrize(("cell", "pooling"), [("gru", "max"), ("lstm", "attention"),
                                               ("gru", "mean"), ("lstm", "last")])
def test_threads_split_inference_by_rows(cell: str, pooling: str, threads: object) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(vocab_size=50, num_classes=4, embedding_dim=8, hidden_size=6,
                          cell=cell, bidirectional=True, num_layers=2, pooling=pooling,
                          backend=CpuBackend()).eval()
    lengths = torch.randint(1, 12, (37,))
    tokens = torch.randint(1, 50, (37, int(lengths.max())))
    results = []
    for count in (1, 2, 4):
        threads(count)
        with torch.inference_mode():
            results.append(model(tokens, lengths))
    for got in results[1:]:
        torch.testing.assert_close(got, results[0], atol=1e-6, rtol=1e-6)


@needs_kernels
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_threads_of_its_own(threads: object) -> None:
    """The pool's threads do not survive a fork: a child that reused the parent's pool would
    wait forever (a data loader's worker, say); it must start its own."""
    threads(2)
    kernels.run_parallel([lambda: None, lambda: None])  # the parent's pool exists
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        done = []
        kernels.run_parallel([lambda: done.append(1), lambda: done.append(2)])
        os.write(writer, bytes([len(done)]))
        os._exit(0)
    os.close(writer)
    import select

    ready, _, _ = select.select([reader], [], [], 20)
    result = os.read(reader, 1) if ready else b""
    os.waitpid(child, 0) if ready else os.kill(child, 9)
    assert result == bytes([2]), "the forked child's tasks never ran"
