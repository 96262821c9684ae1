"""Private torch calls of gradient clipping: one kernel for many tensors, sparse values in place.

`rnnclf.training.optimizers.clip_grad_norm` clips dense and sparse gradients together. These are
the three private torch APIs it needs; each has a public equivalent that gives the same numbers
(tests/accel/test_sparse_grad.py compares them), and would cost one kernel launch per tensor
instead of one for the whole list.
"""

from __future__ import annotations

import torch


def stored_values(gradient: torch.Tensor) -> torch.Tensor:
    """The stored values of a coalesced sparse gradient, sharing its storage: a write to them is
    a write to the gradient. Public equivalent: `gradient.values()`."""
    return gradient._values()


def norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The 2-norm of each tensor, in one pass over the list (no host sync).
    Public equivalent: `[torch.linalg.vector_norm(t) for t in tensors]`."""
    return list(torch._foreach_norm(tensors))


def scale_(tensors: list[torch.Tensor], scale: torch.Tensor) -> None:
    """Multiply every tensor in place by `scale` (a 0-d tensor, which stays on the device).
    Public equivalent: `for t in tensors: t.mul_(scale)`."""
    torch._foreach_mul_(tensors, scale)
