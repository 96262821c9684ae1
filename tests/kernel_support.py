"""A counter of the calls of rnnclf's C gate kernels, for tests/conftest.py's fixtures."""

from __future__ import annotations


class KernelCalls:
    """rnnclf.kernels.KERNELS behind a counter of the C functions called through it."""

    def __init__(self, library: object) -> None:
        self.library, self.calls = library, {}

    def __getattr__(self, name: str) -> object:
        function = getattr(self.library, name)

        def counted(*args: object) -> object:
            self.calls[name] = self.calls.get(name, 0) + 1
            return function(*args)

        return counted
