"""rnnclf.accel.sparse_grad: each private torch call against its public equivalent."""

from __future__ import annotations

import torch

from rnnclf.accel import sparse_grad


def sparse_gradient() -> torch.Tensor:
    """An embedding-style gradient: rows 0 and 2 of a (5, 4) table, row 0 used twice."""
    torch.manual_seed(0)
    indices = torch.tensor([[0, 2, 0]])
    return torch.sparse_coo_tensor(indices, torch.randn(3, 4), (5, 4),
                                   check_invariants=True).coalesce()


def test_stored_values_are_the_public_values_and_share_their_storage() -> None:
    gradient = sparse_gradient()
    values = sparse_grad.stored_values(gradient)
    assert torch.equal(values, gradient.values())
    assert values.shape == (2, 4)  # coalesced: row 0 once
    values.mul_(2.0)  # a write to the values is a write to the gradient
    assert torch.equal(gradient.to_dense()[[0, 2]], values)


def test_norms_equal_vector_norm_of_each_tensor() -> None:
    torch.manual_seed(1)
    tensors = [torch.randn(10), torch.randn(3, 7), sparse_gradient().values(),
               torch.randn(2, 2, dtype=torch.float64)]
    private = sparse_grad.norms(tensors)
    public = [torch.linalg.vector_norm(tensor) for tensor in tensors]
    assert len(private) == len(public)
    for ours, theirs in zip(private, public):
        assert ours.dtype == theirs.dtype
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=0.0)


def test_scale_equals_mul_of_each_tensor_in_place() -> None:
    torch.manual_seed(2)
    tensors = [torch.randn(10), torch.randn(3, 7)]
    expected = [tensor.clone() for tensor in tensors]
    scale = torch.tensor(0.25)
    sparse_grad.scale_(tensors, scale)
    for ours, theirs in zip(tensors, expected):
        theirs.mul_(scale)
        assert torch.equal(ours, theirs)


def test_scaling_stored_values_clips_the_sparse_gradient_itself() -> None:
    gradient = sparse_gradient()
    dense = gradient.to_dense()
    sparse_grad.scale_([sparse_grad.stored_values(gradient)], torch.tensor(0.5))
    assert torch.equal(gradient.to_dense(), dense * 0.5)
