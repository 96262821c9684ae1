"""Data-parallel training: batch sharding, and real 2-process gloo runs through torchrun on CPU."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from agnews_support import make_train_only_agnews as write_tiny_agnews

from rnnclf.config.resume import load_resume_config
from rnnclf.config.schema import DataConfig
from rnnclf.data.batches import bucketed_batches, epoch_batches, shard_plan, steps_per_epoch
from rnnclf.data.dataset import prepare_training_data
from rnnclf.errors import RnnclfError
from rnnclf.inference.scoring import evaluate
from rnnclf.runs.atomic import read_jsonl
from rnnclf.runs.checkpoint import load_checkpoint, load_model
from rnnclf.training.distributed import (
    SINGLE,
    STATE_DUMP_ENV,
    DistContext,
    evaluate_sharded,
    launch,
)
from rnnclf.training.epoch import LOG_EVERY
from rnnclf.training.trainer import fit

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.embedding_dim=8", "model.pretrained_embeddings=",
        "model.hidden_size=8", "train.batch_size=8",
        "train.eval_batch_size=8", "train.progress=false", "train.device=cpu",
        "data.val_fraction=0.1", "train.early_stopping_patience=0"]
# ddp_run also weighs the classes and picks best.pt by macro-F1 (an all-reduced confusion matrix).
WEIGHTED = ["optim.class_weights=[1, 2, 3, 4]", "train.select_by=macro_f1"]
TIMEOUT = 120  # seconds for one torchrun run before the test gives up (a hang, not a speed check)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and the 2-process runs share the cores anyway."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_env(root: Path, dump: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RNNCLF_CACHE_DIR": str(root / "cache"), "RNNCLF_RUNS_DIR": str(root / "runs"),
           STATE_DUMP_ENV: str(dump), "OMP_NUM_THREADS": "1"}
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's own connections stay on the loopback too
    return env


def assert_same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{name} differs"


# --- sharding the batch plan --------------------------------------------------------------------

@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shards_are_disjoint_equal_and_cover_the_truncated_plan(world_size: int) -> None:
    lengths = torch.randint(1, 50, (1003,))
    plan = bucketed_batches(lengths, 16, torch.Generator().manual_seed(0), bucket_batches=5)
    shards = [shard_plan(plan, rank, world_size) for rank in range(world_size)]
    assert len({len(shard) for shard in shards}) == 1  # same step count on every rank
    assert len(shards[0]) == len(plan) // world_size
    rows = torch.cat([batch for shard in shards for batch in shard])
    assert len(rows.unique()) == len(rows)  # no row twice in one epoch
    kept = len(plan) - len(plan) % world_size
    assert sorted(rows.tolist()) == sorted(torch.cat(plan[:kept]).tolist())


def test_epoch_batches_of_ranks_match_steps_per_epoch(tmp_path: Path) -> None:
    config = DataConfig(dir=str(write_tiny_agnews(tmp_path / "data", rows=900)))
    split = prepare_training_data(config, cache_dir=tmp_path / "cache").train
    for world_size in (1, 2, 3):
        expected = steps_per_epoch(len(split), 8, world_size=world_size)
        for rank in range(world_size):
            batches = list(epoch_batches(split, 8, 64, seed=3, epoch=1, rank=rank,
                                         world_size=world_size))
            assert len(batches) == expected
            # a resumed rank skips exactly the steps it trained on, in its own shard
            tail = list(epoch_batches(split, 8, 64, seed=3, epoch=1, start_step=2, rank=rank,
                                      world_size=world_size))
            assert [batch.labels.tolist() for batch in tail] == \
                [batch.labels.tolist() for batch in batches[2:]]


def test_single_process_helpers_are_no_ops() -> None:
    calls: list[int] = []
    assert SINGLE.main_first(lambda: calls.append(1) or 7) == 7
    assert calls == [1]
    assert SINGLE.any(True) and not SINGLE.any(False) and SINGLE.all(True)
    tensor = torch.ones(3)
    assert SINGLE.all_reduce_sum(tensor) is tensor and tensor.tolist() == [1, 1, 1]
    SINGLE.barrier()


def test_sharded_evaluation_sums_match_single_process_evaluate(tmp_path: Path) -> None:
    """With one rank, evaluate_sharded's sum-based numbers equal evaluate()'s."""
    from rnnclf.config.schema import ModelConfig
    from rnnclf.models.build import build_model

    config = DataConfig(dir=str(write_tiny_agnews(tmp_path / "data")), val_fraction=0.2)
    data = prepare_training_data(config, cache_dir=tmp_path / "cache")
    torch.manual_seed(0)
    model = build_model(ModelConfig(embedding_dim=8, hidden_size=8), len(data.vocab), 4)
    one = evaluate(model, data.val, 7, 64, torch.device("cpu"))
    sharded = evaluate_sharded(model, data.val, 7, 64, DistContext(), num_classes=4)
    assert sharded["accuracy"] == pytest.approx(one["accuracy"], abs=1e-12)
    assert sharded["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert sharded["macro_f1"] == pytest.approx(one["macro_f1"], abs=1e-12)


def test_nproc_refuses_to_nest_inside_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RnnclfError, match="drop --nproc"):
        launch(2, ["train"])


# --- real 2-process runs (gloo on CPU, torchrun) -------------------------------------------------

@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 2-epoch, 2-process run through torchrun; what it printed and wrote."""
    root = tmp_path_factory.mktemp("ddp")
    data = write_tiny_agnews(root / "data")
    env = run_env(root, root / "dump")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "rnnclf",
               "train", f"data.dir={data}", f"train.runs_dir={root / 'runs'}", "train.name=ddp",
               "train.epochs=2", *TINY, *WEIGHTED]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return {"root": root, "run": root / "runs" / "ddp", "env": env, "stdout": done.stdout,
            "data": data}


def test_class_weights_and_macro_f1_on_the_data_parallel_path(ddp_run: dict) -> None:
    assert ddp_run["stdout"].count("class weights (as given): World 1.0000, Sports 2.0000") == 1
    summary = json.loads((ddp_run["run"] / "summary.json").read_text())
    assert summary["class_weights"] == {"World": 1.0, "Sports": 2.0, "Business": 3.0,
                                        "Sci/Tech": 4.0}
    records = [json.loads(line) for line in (ddp_run["run"] / "metrics.jsonl").open()]
    assert summary["best_val_macro_f1"] == max(record["val_macro_f1"] for record in records)


def test_ranks_end_with_identical_parameters(ddp_run: dict) -> None:
    dump = ddp_run["root"] / "dump"
    assert_same_state(torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt"))


def test_only_rank_zero_prints_and_steps_are_per_rank(ddp_run: dict) -> None:
    assert ddp_run["stdout"].count("epoch 1:") == 1
    assert "data-parallel: 2 processes" in ddp_run["stdout"]
    records = [json.loads(line) for line in (ddp_run["run"] / "metrics.jsonl").open()]
    assert [record["epoch"] for record in records] == [1, 2]
    per_rank = steps_per_epoch(360, 8, world_size=2)  # 400 rows, 10% held out for validation
    assert records[-1]["step"] == 2 * per_rank


def test_checkpoint_is_a_plain_state_dict_that_loads_single_process(ddp_run: dict) -> None:
    payload = load_checkpoint(ddp_run["run"] / "last.pt")
    assert not any(name.startswith("module.") for name in payload["model_state"])
    assert payload["world_size"] == 2
    assert_same_state(payload["model_state"], torch.load(ddp_run["root"] / "dump" / "rank0.pt"))
    load_model(ddp_run["run"] / "best.pt")  # raises if the keys do not fit the plain model


def test_reported_validation_equals_a_single_process_eval(ddp_run: dict) -> None:
    last = json.loads((ddp_run["run"] / "metrics.jsonl").read_text().splitlines()[-1])
    done = subprocess.run([sys.executable, "-m", "rnnclf", "eval", str(ddp_run["run"] / "last.pt"),
                           "--split", "val", "--json", "--device", "cpu"],
                          env=ddp_run["env"], cwd=ddp_run["root"], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["num_examples"] == 40
    assert last["val_acc"] == pytest.approx(report["accuracy"], abs=1e-12)
    # the loss too: the same weights evaluated by one process, in this process
    loaded = load_model(ddp_run["run"] / "last.pt")
    data = prepare_training_data(loaded.config.data, cache_dir=ddp_run["root"] / "cache")
    single = evaluate(loaded.model, data.val, 8, loaded.config.data.max_length,
                      torch.device("cpu"))
    assert last["val_loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert last["val_acc"] == pytest.approx(single["accuracy"], abs=1e-12)
    assert last["val_macro_f1"] == pytest.approx(single["macro_f1"], abs=1e-12)
    assert last["val_macro_f1"] == pytest.approx(report["macro_f1"], abs=1e-12)


def test_sigint_stops_all_ranks_with_last_pt_and_resume_finishes(tmp_path: Path) -> None:
    """`rnnclf train --nproc 2`, Ctrl-C after the first epoch, then --resume with 2 processes."""
    data = write_tiny_agnews(tmp_path / "data")
    env = run_env(tmp_path, tmp_path / "dump")
    run_dir = tmp_path / "runs" / "sig"
    train = [sys.executable, "-m", "rnnclf", "train", "--nproc", "2"]
    process = subprocess.Popen(
        [*train, f"data.dir={data}", f"train.runs_dir={tmp_path / 'runs'}", "train.name=sig",
         "train.epochs=500", *TINY], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # rank 0's "epoch 1: ..." line: training is under way
            if line.startswith("epoch 1:"):
                break
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "last.pt saved" in err and "Traceback" not in err
    progress = load_checkpoint(run_dir / "last.pt")["progress"]
    # Ranks agree on stopping every LOG_EVERY steps and at each epoch's last step.
    epoch_steps = read_jsonl(run_dir / "metrics.jsonl")[0]["step"]
    assert progress["epoch"] >= 1
    stopped_at = progress["step_in_epoch"]
    assert stopped_at % LOG_EVERY == 0 or stopped_at == epoch_steps

    # resuming with another process count is refused (batches and lr schedule would not line up)
    with pytest.raises(RnnclfError, match="--nproc 2"):
        fit(load_resume_config(run_dir, []), resume_dir=run_dir, log=lambda *args: None)

    finish = progress["epoch"] + 1  # finish the interrupted epoch only
    done = subprocess.run([*train, "--resume", str(run_dir), f"train.epochs={finish}"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert records[-1]["epoch"] == finish
    assert records[-1]["step"] == finish * steps_per_epoch(360, 8, world_size=2)
    assert_same_state(torch.load(tmp_path / "dump" / "rank0.pt"),
                      torch.load(tmp_path / "dump" / "rank1.pt"))


def test_pretrain_on_two_processes_and_fine_tune_from_it_in_one(tmp_path: Path) -> None:
    """`rnnclf pretrain --nproc 2`: the ranks end equal, the run folder is rank 0's, and the
    encoder it writes starts a single-process classifier (model.init_from)."""
    data = write_tiny_agnews(tmp_path / "data")
    env = run_env(tmp_path, tmp_path / "dump")
    common = [f"data.dir={data}", f"train.runs_dir={tmp_path / 'runs'}", "train.name=lm2",
              *TINY]
    done = subprocess.run([sys.executable, "-m", "rnnclf", "pretrain", "--nproc", "2", *common,
                           "pretrain.batch_size=8", "pretrain.epochs=2"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("epoch 1: train perplexity") == 1  # rank 0 alone prints
    assert "data-parallel: 2 processes" in done.stdout
    dump = tmp_path / "dump"
    assert_same_state(torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt"))
    run_dir = tmp_path / "runs" / "lm2_lm"
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [record["epoch"] for record in records] == [1, 2]
    assert all(record["val_ppl"] > 1 for record in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert records[-1]["step"] == 2 * (records[0]["step"])
    assert records[0]["step"] == steps_per_epoch(summary["train_texts"], 8, world_size=2)
    assert_same_state(load_checkpoint(run_dir / "last.pt")["model_state"],
                      torch.load(dump / "rank0.pt"))

    fine_tuned = subprocess.run([sys.executable, "-m", "rnnclf", "train", *common,
                                 f"model.init_from={run_dir}", "train.name=ft", "train.epochs=1"],
                                env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=TIMEOUT)
    assert fine_tuned.returncode == 0, fine_tuned.stdout + fine_tuned.stderr
    assert f"init from {run_dir / 'best.pt'}" in fine_tuned.stdout
    assert "embedding and gru layers loaded, same vocabulary" in fine_tuned.stdout


def test_pretrain_on_two_processes_when_a_batch_misses_a_softmax_cluster(tmp_path: Path) -> None:
    """Over 2,000 words, so the adaptive softmax has a tail cluster; short texts in batches of 2,
    so most steps predict none of its words. DDP needs a gradient for every parameter on every
    step: without one for the unused cluster it stopped the run with a traceback."""
    rare = [f"rare{index}" for index in range(3000)]
    rows = [(str(index % 4 + 1), f"word{index % 7} word{index % 5}", f"word{index % 3} day")
            for index in range(300)]
    rows += [("1", "list", " ".join(rare[start:start + 100] * 2))  # each rare word twice
             for start in range(0, len(rare), 100)]
    (tmp_path / "data").mkdir()
    with (tmp_path / "data" / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    done = subprocess.run(
        [sys.executable, "-m", "rnnclf", "pretrain", "--nproc", "2",
         f"data.dir={tmp_path / 'data'}", "data.download=false",
         f"train.runs_dir={tmp_path / 'runs'}", "train.name=rare", *TINY,
         "model.ngram_order=0", "pretrain.batch_size=2", "pretrain.epochs=1"],
        env=run_env(tmp_path, tmp_path / "dump"), cwd=tmp_path, capture_output=True, text=True,
        timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    vocabulary = re.search(r"vocabulary ([\d,]+)", done.stdout)
    assert vocabulary and int(vocabulary[1].replace(",", "")) > 2001  # a tail cluster exists
    assert_same_state(torch.load(tmp_path / "dump" / "rank0.pt"),
                      torch.load(tmp_path / "dump" / "rank1.pt"))
