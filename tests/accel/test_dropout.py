"""rnnclf/accel/dropout.py: the CPU dropout keeps the distribution and contract of nn.Dropout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnclf.accel.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.25, 0.5, 0.1, 0.3])
def test_keep_rate_and_scale(p: float) -> None:
    """Each element is kept with probability 1 - p (to 1/65536) and scaled so the mean is 1;
    checked on 2^22 draws, within 5 standard deviations, in each of the four 16-bit lanes of the
    64-bit draws (a biased lane would show as a lane off by far more)."""
    torch.manual_seed(0)
    mask = keep_mask((1 << 22,), 1 - p)
    kept = mask > 0
    tolerance = 5 * math.sqrt(p * (1 - p) / (kept.numel() / 4))
    for lane in range(4):
        assert abs(kept[lane::4].float().mean().item() - (1 - p)) < tolerance
    levels = round((1 - p) * 65536)
    assert torch.allclose(mask[kept], torch.tensor(65536 / levels))
    assert abs(mask.mean().item() - 1.0) < 5 * math.sqrt(p / (1 - p) / mask.numel())


def test_edge_probabilities() -> None:
    assert torch.equal(keep_mask((3, 4), 1.0), torch.ones(3, 4))
    assert torch.equal(keep_mask((3, 4), 0.0), torch.zeros(3, 4))
    inputs = torch.randn(5, 6)
    assert torch.equal(dropout(inputs, 1.0, True), torch.zeros(5, 6))
    assert dropout(inputs, 0.0, True) is inputs
    assert dropout(inputs, 0.5, False) is inputs


def test_same_seed_same_mask_and_gradient_through_the_kept_elements() -> None:
    inputs = torch.randn(8, 16, 32, requires_grad=True)
    torch.manual_seed(3)
    first = dropout(inputs, 0.25, True)
    torch.manual_seed(3)
    second = dropout(inputs, 0.25, True)
    assert torch.equal(first, second)
    first.sum().backward()
    scale = first.detach() / inputs.detach()
    torch.testing.assert_close(inputs.grad, scale)  # d(out)/d(in) is the mask itself
    assert set(torch.unique(inputs.grad).tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}


def test_module_is_nn_dropout_in_eval_and_in_state() -> None:
    module = Dropout(0.3)
    assert isinstance(module, torch.nn.Dropout) and module.state_dict() == {}
    inputs = torch.randn(4, 5)
    module.eval()
    assert torch.equal(module(inputs), inputs)
    module.train()
    assert not torch.equal(module(torch.ones(100, 100)), torch.ones(100, 100))


def test_non_float_or_other_devices_fall_back_to_atens_dropout(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    calls: list[float] = []

    def recording(inputs: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        calls.append(p)
        return inputs

    monkeypatch.setattr(F, "dropout", recording)
    dropout(torch.randn(3, 3), 1.0, True)
    assert calls == [1.0]
    dropout(torch.randn(3, 3), 0.5, True)  # CPU float: the cheap mask, not ATen's
    assert calls == [1.0]
