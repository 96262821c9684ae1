"""Each private torch API rnnclf uses (rnnclf/accel/onednn.py) against its public path."""

from __future__ import annotations

import os
import platform

import pytest
import torch

from rnnclf import device
from rnnclf.accel import onednn

needs_onednn = pytest.mark.skipif(onednn.LINEAR_POINTWISE is None,
                                  reason="this torch has no oneDNN inner product")


@needs_onednn
@pytest.mark.parametrize(("rows", "inner", "columns"), [(1, 5, 3), (37, 64, 96), (512, 128, 384)])
def test_private_linear_matches_addmm(rows: int, inner: int, columns: int) -> None:
    generator = torch.Generator().manual_seed(rows)
    inputs = torch.randn(rows, inner, generator=generator)
    weight = torch.randn(columns, inner, generator=generator)
    bias = torch.randn(columns, generator=generator)
    for with_bias in (bias, None):
        private = onednn.LINEAR_POINTWISE(inputs, weight, with_bias, "none", [], "")
        public = onednn.public_linear(inputs, weight, with_bias)
        torch.testing.assert_close(private, public, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(onednn.linear(inputs, weight, with_bias), private,
                                   atol=0, rtol=0)  # linear takes the private path in fp32


@needs_onednn
def test_private_linear_takes_strided_operands_as_the_backward_passes_them() -> None:
    """The GRU's weight gradients are (X^T G)^T: both operands transposed views."""
    generator = torch.Generator().manual_seed(1)
    states, gradients = (torch.randn(200, 12, generator=generator),
                         torch.randn(200, 36, generator=generator))
    private = onednn.LINEAR_POINTWISE(states.t(), gradients.t(), None, "none", [], "").t()
    torch.testing.assert_close(private, gradients.t() @ states, atol=1e-4, rtol=1e-5)


@pytest.mark.skipif(not onednn.has_native_bf16(), reason="no native bf16 on this CPU")
def test_private_linear_in_bf16_matches_addmm_in_bf16() -> None:
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(64, 32, generator=generator).bfloat16()
    weight = torch.randn(48, 32, generator=generator).bfloat16()
    bias = torch.randn(48, generator=generator).bfloat16()
    torch.testing.assert_close(onednn.linear(inputs, weight, bias).float(),
                               onednn.public_linear(inputs, weight, bias).float(),
                               atol=5e-2, rtol=2e-2)


def test_without_onednn_linear_is_the_public_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a torch without the private op gets: the same numbers from addmm."""
    monkeypatch.setattr(onednn, "LINEAR_POINTWISE", None)
    inputs, weight, bias = torch.randn(5, 4), torch.randn(3, 4), torch.randn(3)
    assert torch.equal(onednn.linear(inputs, weight, bias), torch.addmm(bias, inputs, weight.t()))
    assert torch.equal(onednn.linear(inputs, weight), inputs @ weight.t())


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or "ATEN_CPU_CAPABILITY" in os.environ,
                    reason="the public check reads torch's x86 CPU dispatch level")
def test_native_bf16_check_agrees_with_torchs_cpu_capability() -> None:
    """oneDNN's bf16 check (private) and torch's AVX-512 dispatch (public) agree; a CPU with
    AVX-NE-CONVERT but no AVX-512 is the one case where only the private check says yes."""
    private, public = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), \
        onednn.public_has_native_bf16()
    if private and not public:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            assert "avx_ne_convert" in cpuinfo.read()
    else:
        assert private == public
    assert onednn.has_native_bf16() == private == device.cpu_has_native_bf16()


def test_native_bf16_check_falls_back_to_the_public_one(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPrivateOps:
        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(torch.ops, "mkldnn", NoPrivateOps())
    assert onednn.has_native_bf16() == onednn.public_has_native_bf16()
