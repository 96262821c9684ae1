"""The optimizer of a model, and gradient clipping that understands sparse gradients.

A sparse embedding (`nn.Embedding(sparse=True)`) hands back a gradient holding only the rows a
batch used (about 2,800 of 33,000 for AG News at batch 64). `torch.optim.SparseAdam` updates just
those rows, where a dense AdamW rewrites the whole table (4.2M numbers, three times) every step.
The rest of the model keeps its dense optimizer; `OptimizerGroup` steps both as one.
The private torch calls that clipping uses live in rnnclf/accel/sparse_grad.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rnnclf.accel import sparse_grad
from rnnclf.config.schema import OptimConfig
from rnnclf.training.finetune import scaled_groups


class OptimizerGroup:
    """Several torch optimizers used as one: shared `param_groups`, `step`, `state_dict`.

    Enough of the `torch.optim.Optimizer` interface for the training loop, checkpoints and
    `torch.amp.GradScaler` (which reads `param_groups` and calls `step`).
    """

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        # The dicts themselves, so setting group["lr"] reaches the optimizer that owns it.
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @property
    def state(self) -> dict[torch.Tensor, Any]:
        merged: dict[torch.Tensor, Any] = {}
        for optimizer in self.optimizers:
            merged.update(optimizer.state)
        return merged

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """Plain data (tensors, numbers, lists, dicts): loads with torch.load(weights_only=True)."""
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
                "kinds": [type(optimizer).__name__ for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        kinds = [type(optimizer).__name__ for optimizer in self.optimizers]
        if state.get("kinds") != kinds:
            # fit() reports this as "last.pt cannot be resumed (...)", one line.
            raise ValueError(f"its optimizer state is for {state.get('kinds')}, not {kinds}")
        for optimizer, optimizer_state in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(optimizer_state)


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """`nn.utils.clip_grad_norm_` that also takes sparse gradients; returns the total norm.

    A sparse gradient is coalesced first (an embedding row used twice in a batch appears twice
    before that), so its norm is the norm of the dense gradient it stands for. No host sync.
    """
    parameters = [parameter for parameter in parameters if parameter.grad is not None]
    if not any(parameter.grad.is_sparse for parameter in parameters):
        return nn.utils.clip_grad_norm_(parameters, max_norm)
    values = []
    for parameter in parameters:
        if parameter.grad.is_sparse:
            parameter.grad = parameter.grad.coalesce()
            values.append(sparse_grad.stored_values(parameter.grad))
        else:
            values.append(parameter.grad)
    norms = sparse_grad.norms(values)
    total = torch.linalg.vector_norm(torch.stack([norm.float() for norm in norms]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    sparse_grad.scale_(values, scale)  # the stored values share storage with the sparse gradient
    return total


def build_optimizer(config: OptimConfig, model: nn.Module
                    ) -> torch.optim.Optimizer | OptimizerGroup:
    """AdamW or SGD; with a sparse embedding, SparseAdam for it and AdamW for the rest."""
    tables = {name for name, _ in model.named_parameters()
              if isinstance(_owner(model, name), nn.Embedding)}  # word and n-gram tables
    sparse = [parameter for name, parameter in model.named_parameters()
              if name in tables and parameter.requires_grad
              and _owner(model, name).sparse]
    if sparse and config.name != "adamw":
        raise ValueError("a sparse embedding needs optim.name=adamw")
    # No weight decay on biases and embedding tables: decaying rare words' vectors every
    # step would shrink them toward zero between the few steps that see them.
    decayed, not_decayed = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or any(parameter is other for other in sparse):
            continue  # frozen, or updated by SparseAdam below
        (not_decayed if name in tables or parameter.ndim < 2 else decayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": config.weight_decay},
              {"params": not_decayed, "weight_decay": 0.0}]
    if config.discriminative_lr != 1.0:
        groups = scaled_groups(model, groups, config.discriminative_lr)
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    dense = _adamw(groups, config.lr)
    if not sparse:
        return dense
    # Lazy Adam on the rows a batch used; same betas and eps as AdamW, and the embedding had no
    # weight decay there either.
    sparse_groups: list[Any] = sparse
    if config.discriminative_lr != 1.0:
        sparse_groups = scaled_groups(model, [{"params": sparse}], config.discriminative_lr)
    return OptimizerGroup([dense, torch.optim.SparseAdam(sparse_groups, lr=config.lr)])


def _adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    """The fused AdamW kernel: one pass over each tensor instead of several (same update)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device / torch
        return torch.optim.AdamW(groups, lr=lr)


def _owner(model: nn.Module, parameter_name: str) -> nn.Module:
    return model.get_submodule(parameter_name.rpartition(".")[0])
