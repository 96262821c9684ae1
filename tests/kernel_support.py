"""Helpers for the tests of the fused GRU and rnnclf's C kernels: a counter of kernel calls (for
tests/conftest.py's fixtures) and an nn.GRU's weights as fused_gru takes them."""

from __future__ import annotations

from torch import Tensor, nn


def gru_weights(gru: nn.GRU) -> list[list[Tensor]]:
    """A one-layer nn.GRU's parameters per direction: [weight_ih, weight_hh, bias_ih, bias_hh]."""
    suffixes = ("", "_reverse") if gru.bidirectional else ("",)
    return [[getattr(gru, f"{name}_l0{suffix}") for name in
             ("weight_ih", "weight_hh", "bias_ih", "bias_hh")] for suffix in suffixes]


class KernelCalls:
    """rnnclf.accel.kernels.KERNELS behind a counter of the C functions called through it."""

    def __init__(self, library: object) -> None:
        self.library, self.calls = library, {}

    def __getattr__(self, name: str) -> object:
        function = getattr(self.library, name)

        def counted(*args: object) -> object:
            self.calls[name] = self.calls.get(name, 0) + 1
            return function(*args)

        return counted
