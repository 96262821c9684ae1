"""Data-parallel training on PyTorch's own engine: torchrun starts the processes, DDP syncs them.

`torchrun --nproc_per_node=N -m rnnclf train CONFIG` starts N copies of `rnnclf train`; each reads
RANK / LOCAL_RANK / WORLD_SIZE from its environment, joins one process group (gloo on CPU, NCCL on
CUDA, one GPU per process: cuda:LOCAL_RANK) and trains its share of every epoch's batches.
`rnnclf train --nproc N` runs that same torchrun command for you (single machine).

Everything the training loop needs from the group is here: who am I (`DistContext`), agree on a
flag, sum a tensor, wait for the others, let one process build a cache first. With one process
every helper is a no-op, so `fit()` reads the same either way.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from rnnclf.data.batches import collate, eval_order
from rnnclf.data.dataset import EncodedSplit
from rnnclf.errors import RnnclfError, RunFailed
from rnnclf.inference.multilabel_metrics import is_multi_hot, validation_metrics, validation_sums

T = TypeVar("T")

# Test hook: when set to a folder, every rank saves its final model state there as rank<R>.pt,
# so a test can check that DDP left identical parameters on all ranks.
STATE_DUMP_ENV = "RNNCLF_DDP_STATE_DUMP"


class PeerFailed(RunFailed):
    """Another process of the run failed; it printed the reason."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run; the defaults describe a plain single-process run."""

    rank: int = 0  # 0 .. world_size-1 over all machines
    local_rank: int = 0  # index on this machine (picks the GPU)
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, and writes checkpoints and metrics."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over all ranks, in place (on this rank's device); returns it."""
        if self.enabled:
            moved = tensor.to(self.device)
            _all_reduce(moved, torch_dist.ReduceOp.SUM)
            if moved is not tensor:
                tensor.copy_(moved)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on at least one rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        _all_reduce(value, torch_dist.ReduceOp.MAX)
        return bool(value.item())

    def all(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on all ranks."""
        return not self.any(not flag)

    def barrier(self) -> None:
        """Wait until every rank gets here (an all-reduce: works on gloo and NCCL alike)."""
        self.any(False)

    def main_first(self, work: Callable[[], T], per_machine: bool = True) -> T:
        """Run `work` on the first process (of each machine), then on the others.

        For caches and downloads: the first process builds them, the others then load what it
        wrote instead of all building the same files at once. `per_machine` lets local rank 0 of
        every machine go first, so machines that share no disk each build their own cache. If the
        first process fails, the others stop with PeerFailed instead of waiting forever.
        """
        if not self.enabled:
            return work()
        first = self.local_rank == 0 if per_machine else self.is_main
        result: Any = None
        failure: BaseException | None = None
        if first:
            try:
                result = work()
            except BaseException as error:  # re-raised below, after the others know
                failure = error
        if not self.all(failure is None):
            if failure is not None:
                raise failure
            raise PeerFailed("another process of this run failed (its error is shown above); "
                             "stopping this one too")
        return result if first else work()

    def main_only(self, work: Callable[[], T]) -> T | None:
        """Run `work` on rank 0 only (its result there, None on the other ranks); every rank
        stops if it failed there, and none goes on before rank 0 has finished it."""
        return self.main_first(lambda: work() if self.is_main else None, per_machine=False)


SINGLE = DistContext()

RELEASE_WAIT_S = 5.0  # at most this long for gloo's worker thread to let go of a tensor


def _all_reduce(tensor: torch.Tensor, op: torch_dist.ReduceOp) -> None:
    """all_reduce, returning only once the backend's threads hold no reference to `tensor`.

    gloo completes the collective (and all_reduce returns) a moment before its worker thread
    drops its own references to the tensor. If Python drops the tensor first, the worker thread
    frees it and must take the GIL to do so; when that happens while the interpreter is exiting,
    the thread is stopped inside a C++ destructor and the process aborts with "terminate called
    without an active exception" (SIGABRT, exit 134) after a run that did all its work. Waiting
    here for our reference to be the only one means Python always frees it, with the GIL held.
    """
    ours = tensor._use_count()
    torch_dist.all_reduce(tensor, op=op)
    if tensor.device.type != "cpu":
        return  # CUDA: NCCL, whose ranks leave through destroy_process_group's abort
    deadline = time.monotonic() + RELEASE_WAIT_S
    while tensor._use_count() > ours and time.monotonic() < deadline:
        time.sleep(0.0005)


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        raise RnnclfError(f"${name} is missing or not a number; start distributed runs with "
                          "torchrun (or rnnclf train --nproc N)") from None


def process_device(device_name: str, local_rank: int) -> torch.device:
    """The device of one process: train.device picks CPU or CUDA, LOCAL_RANK picks the GPU."""
    use_cuda = device_name.startswith("cuda") or (device_name == "auto"
                                                  and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RnnclfError(f"train.device={device_name} but CUDA is not available here; "
                          "use train.device=cpu or auto")
    if local_rank >= torch.cuda.device_count():
        raise RnnclfError(f"LOCAL_RANK {local_rank} needs GPU cuda:{local_rank} but this machine "
                          f"has {torch.cuda.device_count()}; start at most that many processes "
                          "per machine (--nproc_per_node)")
    return torch.device("cuda", local_rank)


@contextmanager
def session(device_name: str) -> Iterator[DistContext]:
    """Join the torchrun process group for the length of a run; SINGLE when not under torchrun."""
    if not launched_by_torchrun() or _env_int("WORLD_SIZE") <= 1:
        yield SINGLE
        return
    rank, local_rank, world_size = (_env_int("RANK"), _env_int("LOCAL_RANK"),
                                    _env_int("WORLD_SIZE"))
    device = process_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    except (RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RunFailed(f"rank {rank} could not join the {backend} process group "
                        f"({first_line[:160]}); check torchrun's --rdzv_endpoint / "
                        "--master_addr and --master_port") from None
    context = DistContext(rank, local_rank, world_size, device)
    try:
        yield context
        _meet_before_teardown(context)
    finally:
        torch_dist.destroy_process_group()


def _meet_before_teardown(context: DistContext) -> None:
    """On a normal finish, wait for every rank before the process group is torn down, so the
    rank that finishes first does not close its connections while a peer still talks to it.
    (The abort at exit seen in CI, "terminate called without an active exception", had another
    cause: see _all_reduce.) A peer that has already gone is no error here: the run's work is
    done and saved.
    """
    with suppress(RuntimeError):
        context.barrier()


def wrap_model(model: nn.Module, context: DistContext) -> nn.Module:
    """DDP around `model` (already on context.device); the model itself when single-process.

    Keep using the unwrapped `model` for state_dict() (no "module." prefix, so checkpoints load
    in a single process) and for evaluation (no gradient sync needed).
    """
    if not context.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if context.device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[context.device.index],
                                       output_device=context.device.index)
    return DistributedDataParallel(model)


@torch.inference_mode()
def evaluate_sharded(model: nn.Module, split: EncodedSplit, batch_size: int, max_length: int,
                     context: DistContext) -> dict[str, Any]:
    """Mean loss and accuracy over the whole `split`, shared out over the ranks.

    The batches are those of a single-process evaluation (length order, `batch_size` rows); rank r
    scores batches r, r + world_size, ... and the sums are all-reduced, so every rank gets the
    numbers one process would compute for the same weights.
    """
    model.eval()
    batches = eval_order(split, max_length).split(batch_size)
    if is_multi_hot(split.labels):  # data.multi_label: its own sums, thresholds included
        return _evaluate_sharded_multilabel(model, split, batches, max_length, context)
    sums = torch.zeros(3, dtype=torch.float64, device=context.device)  # loss sum, correct, rows
    for indices in batches[context.rank::context.world_size]:
        batch = collate(split, indices, max_length).to(context.device)
        logits = model(batch.tokens, batch.lengths).float()  # (B, C)
        sums[0] += F.cross_entropy(logits, batch.labels, reduction="sum").double()
        sums[1] += (logits.argmax(1) == batch.labels).sum()
        sums[2] += len(batch.labels)
    context.all_reduce_sum(sums)
    loss_sum, correct, rows = sums.tolist()
    return {"loss": loss_sum / max(1.0, rows), "accuracy": correct / max(1.0, rows)}


def _evaluate_sharded_multilabel(model: nn.Module, split: EncodedSplit,
                                 batches: tuple[torch.Tensor, ...], max_length: int,
                                 context: DistContext) -> dict[str, Any]:
    """evaluate_sharded for multi-hot labels: every rank adds up its batches' validation sums
    (loss, exact rows, per-label counts at each candidate threshold), then all ranks sum them."""
    sums: torch.Tensor | None = None
    for indices in batches[context.rank::context.world_size]:
        batch = collate(split, indices, max_length).to(context.device)
        batch_sums = validation_sums(model(batch.tokens, batch.lengths), batch.labels)
        sums = batch_sums if sums is None else sums + batch_sums
    if sums is None:  # more ranks than batches: this rank adds zeros
        sums = validation_sums(torch.zeros(0, split.labels.size(1), device=context.device),
                               split.labels[:0].to(context.device))
    context.all_reduce_sum(sums)
    return validation_metrics(sums, split.labels.size(1))


def dump_state_for_tests(model: nn.Module, context: DistContext) -> None:
    """Save this rank's final parameters when $RNNCLF_DDP_STATE_DUMP names a folder (tests)."""
    folder = os.environ.get(STATE_DUMP_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        torch.save({name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
                   Path(folder) / f"rank{context.rank}.pt")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def torchrun_arguments(nproc: int, rnnclf_args: list[str]) -> list[str]:
    """torchrun's arguments that run `rnnclf <rnnclf_args>` in `nproc` processes on this machine."""
    return [f"--nproc_per_node={nproc}", "--nnodes=1", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", "-m", "rnnclf", *rnnclf_args]


def launch(nproc: int, rnnclf_args: list[str]) -> int:
    """Run `rnnclf <rnnclf_args>` in `nproc` processes through torchrun; returns the exit code.

    This process becomes torchrun's agent (torch.distributed.run, in-process), so a Ctrl-C reaches
    it once and it passes one SIGINT to every worker (they run in their own sessions); the workers
    stop together at their next sync point with last.pt saved. The workers print their own errors,
    so the agent's exceptions are turned into an exit code instead of a second traceback.
    """
    if launched_by_torchrun():
        raise RnnclfError("--nproc starts torchrun itself; under torchrun, drop --nproc")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    try:
        run(get_args_parser().parse_args(torchrun_arguments(nproc, rnnclf_args)))
    except SignalException as error:
        return 128 + int(error.sigval)  # 130 after Ctrl-C, as in a single-process run
    except ChildFailedError as error:
        code = error.get_first_failure()[1].exitcode  # negative: killed by that signal
        return code if code > 0 else 128 - code if code < 0 else 1
    return 0
