"""The `rnnclf` command end to end, run as a real process: train, eval, predict, and errors."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rnnclf import __version__
from rnnclf.cli import main
from rnnclf.config import load_config
from rnnclf.runs.checkpoint import load_model

CELLS = ("rnn", "lstm", "gru")
LABELS = ("World", "Sports", "Business", "Sci/Tech")
METRIC_KEYS = {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
               "samples_per_s"}
TIMING_KEYS = {"seconds", "samples_per_s"}
PREDICTION = re.compile(r"^(World|Sports|Business|Sci/Tech)  (0\.\d\d|1\.00)$")
CLASS_TEXTS = {
    "World": "president minister election embassy troops parliament summit treaty",
    "Sports": "football coach striker season goal league playoff tournament",
    "Business": "shares profit investors earnings dividend revenue merger stocks",
    "Sci/Tech": "software internet computer microsoft linux browser processor chip",
}


def rnnclf(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rnnclf", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def user_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2, no traceback, and exactly one line on stderr that starts with 'error:'."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The console entry point in this process (cheaper than a new one), as a CompletedProcess."""
    monkeypatch.setattr(sys, "argv", ["rnnclf", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["rnnclf", *args], code or 0, captured.out, captured.err)


def tiny_train_args(data_dir: Path, cell: str = "gru", name: str | None = None,
                    epochs: int = 2) -> list[str]:
    return [f"data.dir={data_dir}", "model.embedding_dim=16", "model.pretrained_embeddings=",
            "model.hidden_size=16",
            f"train.epochs={epochs}", "train.progress=false", f"model.cell={cell}",
            f"train.name={name or cell}", "train.batch_size=16", "optim.lr=0.01",
            "train.num_threads=1"]


@dataclass
class World:
    """A working directory with its own env, tiny AG News, and one trained run per cell."""

    root: Path
    data: Path
    env: dict[str, str]
    runs: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return rnnclf(*args, cwd=self.root, env=self.env, stdin=stdin)

    def best(self, cell: str) -> Path:
        return self.runs / cell / "best.pt"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory,
          tiny_agnews_factory: Callable[[Path], Path]) -> World:
    root = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "RNNCLF_CACHE_DIR": str(root / "cache"),
           "RNNCLF_RUNS_DIR": str(root / "runs"), "RNNCLF_DATA_DIR": str(root / "default_data"),
           "XDG_CACHE_HOME": str(root / "xdg"), "OMP_NUM_THREADS": "1"}
    env.pop("RNNCLF_AGNEWS_MIRROR", None)
    world = World(root, tiny_agnews_factory(root / "tiny_agnews"), env, root / "runs")
    # The three runs, and a second GRU run for the determinism test, train side by side.
    commands = [tiny_train_args(world.data, cell) for cell in CELLS]
    commands.append([*tiny_train_args(world.data, "gru"), f"train.runs_dir={root / 'again'}"])
    processes = [subprocess.Popen([sys.executable, "-m", "rnnclf", "train", *args], cwd=root,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for args in commands]
    for args, process in zip(commands, processes):
        stdout, stderr = process.communicate(timeout=600)
        ok(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return world


# --- train ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_train_writes_the_run_folder(world: World, cell: str) -> None:
    run_dir = world.runs / cell
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".*.tmp")), "temp files left behind"

    config = load_config(run_dir / "config.yaml")
    assert config.model.cell == cell and config.train.name == cell
    assert config.model.hidden_size == 16 and config.train.epochs == 2
    assert Path(config.data.dir).is_absolute() and Path(config.data.dir) == world.data

    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2
    for number, record in enumerate(records, 1):
        assert set(record) >= METRIC_KEYS
        assert record["epoch"] == number
        assert all(isinstance(record[key], (int, float)) and math.isfinite(record[key])
                   for key in METRIC_KEYS)
        assert 0 <= record["train_acc"] <= 1 and 0 <= record["val_acc"] <= 1
        assert record["lr"] > 0 and record["seconds"] > 0 and record["samples_per_s"] > 0
    assert records[0]["step"] == 24 and records[1]["step"] == 48  # 380 rows / 16 per batch
    assert records[1]["train_loss"] < records[0]["train_loss"]

    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["epochs_run"] == 2 and summary["global_step"] == 48
    assert summary["train_rows"] == 380 and summary["val_rows"] == 20
    assert summary["best_val_acc"] == max(r["val_acc"] for r in records)
    assert summary["epochs"] == records
    loaded = load_model(run_dir / "best.pt")
    assert loaded.config.model.cell == cell and loaded.label_names == list(LABELS)


def test_eval_explicit_checkpoint_json_process(world: World) -> None:
    result = ok(world.run("eval", str(world.best("gru")), "--json"))
    assert result.stderr.strip() == ""
    report = json.loads(result.stdout)
    assert report["accuracy"] >= 0.7 and report["checkpoint"] == str(world.best("gru"))
    assert (world.runs / "gru" / "eval.json").is_file()


@pytest.mark.parametrize("cell", CELLS)
def test_eval_explicit_checkpoint_json(world: World, cell: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    result = ok(run_main(monkeypatch, capsys, "eval", str(world.best(cell)), "--json"))
    report = json.loads(result.stdout)
    assert report["num_examples"] == 80
    assert report["accuracy"] >= 0.7, report["accuracy"]  # the tiny data is easy to learn
    assert set(report["per_class"]) == set(LABELS)
    assert sum(map(sum, report["confusion_matrix"])) == 80
    written = json.loads((world.runs / cell / "eval.json").read_text(encoding="utf-8"))
    assert written == report
    assert result.stderr.strip() == ""


@pytest.mark.parametrize("cell", CELLS)
def test_predict_prints_label_and_probability(world: World, cell: str,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    result = ok(run_main(monkeypatch, capsys, "predict", "-c", str(world.best(cell)),
                         *CLASS_TEXTS.values()))
    assert result.stderr == ""  # an explicit checkpoint: no note
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    for line in lines:
        assert PREDICTION.match(line), line
    assert [line.split("  ")[0] for line in lines] == list(CLASS_TEXTS)


def make_newest(world: World, cell: str) -> Path:
    """Date `cell`'s best.pt after every other run's, so "the newest run" is not left to the
    file system's clock: runs trained side by side can share one mtime tick."""
    latest = max(path.stat().st_mtime for path in world.runs.glob("*/best.pt"))
    newest = world.best(cell)
    os.utime(newest, (latest + 10, latest + 10))
    return newest


def test_eval_default_is_the_newest_run(world: World) -> None:
    newest = make_newest(world, "rnn")
    result = ok(world.run("eval"))
    assert result.stderr.strip() == f"checkpoint: {newest}"
    assert "accuracy" in result.stdout and "confusion matrix" in result.stdout
    assert str(world.data / "test.csv") in result.stdout
    report = json.loads((newest.parent / "eval.json").read_text(encoding="utf-8"))
    assert Path(report["checkpoint"]) == newest and 0.7 <= report["accuracy"] <= 1


@pytest.mark.parametrize("cell", CELLS)
def test_eval_and_predict_in_bf16(world: World, cell: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--precision bf16 reports itself and lands where fp32 does, within bf16 rounding."""
    best = str(world.best(cell))
    exact = json.loads(ok(run_main(monkeypatch, capsys, "eval", best, "--json")).stdout)
    low = json.loads(ok(run_main(monkeypatch, capsys, "eval", best, "--json",
                                 "--precision", "bf16")).stdout)
    assert (exact["precision"], low["precision"]) == ("fp32", "bf16")
    assert abs(low["accuracy"] - exact["accuracy"]) <= 0.025  # at most 2 of 80 rows
    texts = list(CLASS_TEXTS.values())
    exact_lines = ok(run_main(monkeypatch, capsys, "predict", "-c", best, "--json",
                              *texts)).stdout.splitlines()
    low_lines = ok(run_main(monkeypatch, capsys, "predict", "-c", best, "--json",
                            "--precision", "bf16", *texts)).stdout.splitlines()
    for exact_line, low_line in zip(exact_lines, low_lines, strict=True):
        exact_row, low_row = json.loads(exact_line), json.loads(low_line)
        assert abs(exact_row["probability"] - low_row["probability"]) < 0.02


def test_eval_on_another_file(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.csv"
    shutil.copy(world.data / "test.csv", other)
    report = json.loads(ok(run_main(monkeypatch, capsys, "eval", str(world.best("lstm")),
                                    "--data", str(other), "--json")).stdout)
    assert report["split"] == "file" and report["num_examples"] == 80
    assert (world.runs / "lstm" / "eval_other.json").is_file()


def test_eval_val_split(world: World, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(ok(run_main(monkeypatch, capsys, "eval", str(world.best("rnn")),
                                    "--split", "val", "--json")).stdout)
    summary = json.loads((world.runs / "rnn" / "summary.json").read_text(encoding="utf-8"))
    assert report["num_examples"] == 20
    assert report["accuracy"] == pytest.approx(summary["best_val_acc"])


def test_predict_default_newest_run(world: World) -> None:
    newest = make_newest(world, "lstm")
    result = ok(world.run("predict", "NASA launches a new satellite"))
    assert PREDICTION.match(result.stdout.strip()), result.stdout
    assert result.stderr.strip() == f"checkpoint: {newest}"


def test_predict_top_k(world: World, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    line = ok(run_main(monkeypatch, capsys, "predict", "--top-k", "2", "-c",
                       str(world.best("lstm")), CLASS_TEXTS["Sports"])).stdout.strip()
    match = re.fullmatch(r"(\S+)  (\d\.\d\d)  (\S+)  (\d\.\d\d)", line)
    assert match, line
    first, p1, second, p2 = match.groups()
    assert first in LABELS and second in LABELS and first != second
    assert float(p1) >= float(p2)


def test_predict_from_stdin(world: World) -> None:
    texts = "stocks fall on profit warning\nstriker scores late goal\nnew linux browser\n"
    result = ok(world.run("predict", "-", stdin=texts))
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(PREDICTION.match(line) for line in lines), lines


def test_predict_json(world: World) -> None:
    long_text = " ".join(["football"] * 300)  # default max_length is 256 tokens
    result = ok(world.run("predict", "--json", "-k", "4", "oil prices", "tennis final", long_text))
    assert result.stderr.strip() == ""  # --json keeps the checkpoint note off stderr too
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [output["text"] for output in outputs[:2]] == ["oil prices", "tennis final"]
    assert [output["truncated"] for output in outputs] == [False, False, True]
    assert outputs[2]["text"].endswith("...") and len(outputs[2]["text"]) == 203
    for output in outputs:
        assert output["label"] in LABELS and 0 <= output["probability"] <= 1
        assert [entry["label"] for entry in output["top_k"]][0] == output["label"]
        assert sorted(entry["label"] for entry in output["top_k"]) == sorted(LABELS)
        assert sum(entry["probability"] for entry in output["top_k"]) == pytest.approx(1, 1e-4)


def test_same_seed_gives_identical_metrics(world: World) -> None:
    def records(run_dir: Path) -> list[dict]:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    first, second = records(world.runs / "gru"), records(world.root / "again" / "gru")
    assert len(first) == len(second) == 2
    assert all(a["seconds"] != b["seconds"] for a, b in zip(first, second))  # really two runs

    def strip(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]

    assert strip(first) == strip(second)
    lstm = records(world.runs / "lstm")  # a different model gives other numbers
    assert strip(lstm) != strip(first)


def test_print_config_and_run_name_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "my_experiment.yaml"
    config.write_text("model:\n  cell: lstm\n", encoding="utf-8")
    result = ok(run_main(monkeypatch, capsys, "train", str(config), "train.epochs=3",
                         "--print-config"))
    assert "cell: lstm" in result.stdout and "epochs: 3" in result.stdout
    assert "name: my_experiment" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_overwrite(world: World, tmp_path: Path, isolated_env, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = isolated_env.runs_dir / "rnn"
    shutil.copytree(world.runs / "rnn", run_dir)
    args = tiny_train_args(world.data, "rnn", epochs=1)
    message = user_error(rnnclf("train", *args, cwd=tmp_path))
    assert "already holds a run" in message and "--overwrite" in message
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2  # untouched
    ok(run_main(monkeypatch, capsys, "train", *args, "--overwrite"))
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1  # replaced
    assert not (run_dir / "eval.json").exists()  # the old run's eval went with it


def test_train_honours_rnnclf_runs_dir(tmp_path: Path, tiny_agnews: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """train.runs_dir's help says "$RNNCLF_RUNS_DIR overrides"; eval/predict look there."""
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("RNNCLF_RUNS_DIR", str(elsewhere))
    ok(run_main(monkeypatch, capsys, "train",
                *tiny_train_args(tiny_agnews, "gru", "envrun", epochs=1)))
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.glob("*/envrun"))
    assert (elsewhere / "envrun" / "best.pt").is_file(), f"run written to {written}"
    ok(run_main(monkeypatch, capsys, "predict", "markets rally"))


def test_version(tmp_path: Path) -> None:
    result = ok(rnnclf("--version", cwd=tmp_path))
    assert result.stdout.strip() == f"rnnclf {__version__}"


# --- user errors: exit 2, one line, no traceback ------------------------------------------------
# These run the real console script in a new process...


def test_error_missing_config_file(tmp_path: Path) -> None:
    message = user_error(rnnclf("train", "no_such.yaml", cwd=tmp_path))
    assert "no_such.yaml" in message and "does not exist" in message


def test_error_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("model:\n  cell: [gru\n", encoding="utf-8")
    message = user_error(rnnclf("train", "bad.yaml", cwd=tmp_path))
    assert "bad.yaml" in message and "invalid YAML" in message


def test_error_unknown_key(tmp_path: Path) -> None:
    message = user_error(rnnclf("train", "model.celll=gru", cwd=tmp_path))
    assert "model.celll" in message and "did you mean 'cell'" in message


def test_error_embedding_size_other_than_the_default_vectors(tmp_path: Path) -> None:
    message = user_error(rnnclf("train", "model.embedding_dim=128", cwd=tmp_path))
    assert "glove.6B.50d" in message and "model.embedding_dim=50" in message
    assert "model.pretrained_embeddings=" in message  # the other way out: random vectors
    assert not (tmp_path / "runs").exists()


def test_error_predict_with_no_runs(tmp_path: Path) -> None:
    message = user_error(rnnclf("predict", "some text", cwd=tmp_path))
    assert "no run with a best.pt" in message


def test_error_predict_empty_text(world: World, tmp_path: Path) -> None:
    message = user_error(rnnclf("predict", "-c", str(world.best("gru")), "", cwd=tmp_path))
    assert "text 1 is empty" in message


def test_error_eval_of_a_non_checkpoint(tmp_path: Path, tiny_agnews: Path) -> None:
    message = user_error(rnnclf("eval", str(tiny_agnews / "train.csv"), cwd=tmp_path))
    assert "train.csv" in message and "checkpoint" in message


# ... and these run its entry point, main(), in this process: the same code, less start-up time.


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "--set", "train.epoch=2"], "did you mean 'epochs'"),
    (["train", "model.dropout=1.0"], "model.dropout"),
    (["train", "a.yaml", "b.yaml"], "unexpected argument"),
    (["train", "data.dir=NOWHERE", "data.download=false"], "train.csv is missing"),
    (["train", "--resume", "runs/x"], "no last.pt"),
    (["eval"], "no run with a best.pt"),
    (["eval", "missing.pt"], "does not exist"),
    (["eval", "empty.pt"], "empty.pt is not a readable rnnclf checkpoint"),
    (["eval", "BEST", "--split", "train"], "--split"),
    (["eval", "BEST", "--data", "nope.csv"], "nope.csv does not exist"),
    (["predict", "-c", "BEST", "fine", "   "], "text 2 is empty"),
    (["predict", "-c", "BEST", "-"], "no text to classify"),
    (["predict", "-c", "missing.pt", "text"], "does not exist"),
    (["eval", "BEST", "--precision", "int8"], "--precision 'int8' is not allowed"),
    (["eval", "BEST", "--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
    (["predict", "-c", "BEST", "--precision", "fp64", "text"], "use fp32, bf16, fp16"),
])
def test_user_errors_in_process(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], args: list[str],
                                fragment: str) -> None:
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "empty.pt").write_bytes(b"")
    args = [str(world.best("gru")) if arg == "BEST" else arg for arg in args]
    args = [arg.replace("NOWHERE", str(tmp_path / "nowhere")) for arg in args]
    message = user_error(run_main(monkeypatch, capsys, *args, stdin=""))
    assert fragment in message
