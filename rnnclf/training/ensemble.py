"""Ensembles: `train.ensemble = K` trains K models one after another and averages them.

The K members are seeds of one model, or, with `train.ensemble_members` (one mapping of
`section.key: value` overrides per member, e.g. `{model.cell: lstm}`), models that differ; each
member keeps the data and vocabulary of the rest, so their probabilities can be averaged.

Member k (1..K) is an ordinary run in runs/<name>/member_k/ (config.yaml, metrics.jsonl,
best.pt, last.pt), trained with seed `train.seed + 1000 (k - 1)` on the same training/validation
split and chosen on the same validation rows: member 1 is the single model of the same seed, and
ensembles of seeds 0, 1, 2 share no member, so their spread is an honest one. Once all are
trained, runs/<name>/best.pt holds every member's weights in one checkpoint (its config has
`train.ensemble = K`); eval, predict and export load it like any other and average the members'
probabilities (`EnsembleClassifier`).

An interrupted ensemble resumes with `rnnclf train --resume runs/<name>`: finished members are
kept, the interrupted one continues from its last.pt, the rest start.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import yaml

from rnnclf.config import Config, from_dict, from_saved_dict, to_yaml
from rnnclf.config.loading import member_config
from rnnclf.config.resume import load_resume_config, resume_overrides_applied
from rnnclf.data.dataset import TrainingData, prepare_training_data, resolve_data_dir
from rnnclf.data.word_vectors import extra_vocabulary
from rnnclf.device import resolve_device
from rnnclf.errors import Interrupted, RnnclfError, RunFailed
from rnnclf.inference.scoring import evaluate
from rnnclf.models.classifier import count_parameters
from rnnclf.runs.atomic import atomic_write_text, write_json
from rnnclf.runs.checkpoint import load_checkpoint, load_model, save_checkpoint
from rnnclf.runs.folder import RunFolder, claim_run_folder, run_directory
from rnnclf.training.class_weights import resolve_class_weights
from rnnclf.training.finetune import resolve_init_from
from rnnclf.training.trainer import fit

CONFIG_FILE = "config.yaml"
MEMBER_SEED_STRIDE = 1000


def member_seed(seed: int, index: int) -> int:
    """The seed of member `index` (1-based) of the ensemble of `seed`."""
    return seed + MEMBER_SEED_STRIDE * (index - 1)


def member_dir(run_dir: Path, index: int) -> Path:
    return run_dir / f"member_{index}"


def load_run_config(run_dir: Path, overrides: list[str]) -> Config:
    """The config `rnnclf train --resume run_dir` goes on with: a single run's (from its
    last.pt), or an ensemble's (from its config.yaml; an ensemble folder has no last.pt)."""
    if not (run_dir / "last.pt").exists() and (run_dir / CONFIG_FILE).is_file():
        config = _saved_ensemble_config(run_dir, overrides)
        if config is not None:
            return config
    return load_resume_config(run_dir, overrides)


def _saved_ensemble_config(run_dir: Path, overrides: list[str]) -> Config | None:
    try:
        raw = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RnnclfError(f"{run_dir}/{CONFIG_FILE} cannot be read ({type(error).__name__}); "
                          "the run cannot be resumed, start a new one") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("train"), dict) \
            or raw["train"].get("ensemble", 1) == 1:
        return None
    return from_dict(resume_overrides_applied(raw, overrides), source=f"{run_dir}/{CONFIG_FILE}")


def _member_config(config: Config, run_dir: Path, index: int) -> Config:
    """Member `index` (1-based): its own overrides (train.ensemble_members), its own seed."""
    if config.train.ensemble_members:
        member = member_config(config, index - 1)
    else:
        member = copy.deepcopy(config)
    member.train.ensemble = 1
    member.train.seed = member_seed(config.train.seed, index)
    if member.model.init_from:  # a bare run name means one in the user's runs_dir, not ours
        member.model.init_from = str(resolve_init_from(member).resolve())
    member.train.runs_dir = str(run_dir)
    member.train.name = member_dir(run_dir, index).name
    return member


def fit_ensemble(config: Config, overwrite: bool = False, resume_dir: Path | None = None,
                 overrides: list[str] | None = None, log: Any = print) -> dict[str, Any]:
    """Train (or finish training) the members of `config`'s ensemble, then write best.pt."""
    if resume_dir is None:
        config.data.dir = str(resolve_data_dir(config.data))
    run_dir = resume_dir if resume_dir is not None else run_directory(config)
    # The ensemble's folder stays locked while its members (each locking its own folder) train.
    with claim_run_folder(run_dir, overwrite, resuming=resume_dir is not None) as run:
        if resume_dir is None:
            atomic_write_text(run_dir / CONFIG_FILE, to_yaml(config))
        return _train_members(config, run_dir, run, overrides, log)


def _train_members(config: Config, run_dir: Path, run: RunFolder, overrides: list[str] | None,
                   log: Any) -> dict[str, Any]:
    size = config.train.ensemble
    started = time.perf_counter()
    seeds = ", ".join(str(member_seed(config.train.seed, index)) for index in range(1, size + 1))
    log(f"ensemble: {size} members (seeds {seeds}) in {run_dir}/member_1..{size}")
    for index, member_overrides in enumerate(config.train.ensemble_members, start=1):
        log(f"member {index}: {_shown(member_overrides)}")
    # Every member's config before the first trains: a missing init_from stops the run now.
    member_configs = [_member_config(config, run_dir, index) for index in range(1, size + 1)]
    members = []
    for index in range(1, size + 1):
        folder = member_dir(run_dir, index)
        if (folder / "summary.json").is_file() and (folder / "best.pt").is_file():
            log(f"member {index}/{size}: already trained ({folder})")
            members.append(folder)
            continue
        log(f"member {index}/{size}: seed {member_seed(config.train.seed, index)}")
        try:
            if (folder / "last.pt").is_file():
                fit(load_resume_config(folder, list(overrides or [])), resume_dir=folder, log=log)
            else:
                fit(member_configs[index - 1], overwrite=True, log=log)
        except Interrupted as stop:  # point the hint at the ensemble, not at the member
            raise Interrupted(str(stop).replace(f"--resume {folder}", f"--resume {run_dir}"),
                              exit_code=stop.exit_code) from None
        members.append(folder)
        run.new_best_written()  # --overwrite: a member has its best.pt, the old members can go
    return _assemble(config, run_dir, members, started, log)


def _assemble(config: Config, run_dir: Path, members: list[Path], started: float, log: Any
              ) -> dict[str, Any]:
    """One checkpoint with every member's best weights; its val accuracy; summary.json."""
    payloads = [load_checkpoint(folder / "best.pt") for folder in members]
    first = payloads[0]
    ensemble_config = _as_trained(config, members, payloads)
    state = {f"members.{index}.{key}": value for index, payload in enumerate(payloads)
             for key, value in payload["model_state"].items()}
    save_checkpoint(run_dir / "best.pt", {
        "config": ensemble_config.to_dict(), "vocab": first["vocab"],
        "label_names": first["label_names"], "model_state": state,
        "members": [str(folder.name) for folder in members]})
    member_records = [{"best_val_acc": float(payload["progress"]["best_val_acc"]),
                       "best_val_macro_f1": float(payload["progress"].get("best_val_macro_f1",
                                                                          -1.0)),
                       "best_epoch": int(payload["progress"]["best_epoch"]),
                       "overrides": overrides}
                      for payload, overrides in zip(payloads, _overrides_each(config))]
    vocab_size = len(first["vocab"])
    del state, payloads, first  # the weights live on in best.pt; peak memory counts here
    device = resolve_device(config.train.device)
    loaded = load_model(run_dir / "best.pt", device)
    data = prepare_training_data(config.data, extra_words=extra_vocabulary(config.model))
    val = evaluate(loaded.model, data.val, config.train.eval_batch_size,
                   config.data.max_length, device)
    if val.get("thresholds") is not None:  # multi-label: tuned for the averaged probabilities
        _store_thresholds(run_dir / "best.pt", val["thresholds"])
    summary = {
        "run_dir": str(run_dir), "ensemble": len(members),
        "best_val_acc": val["accuracy"], "val_loss": val["loss"],
        "val_macro_f1": val["macro_f1"],
        "class_weights": _resolved_class_weights(config, data),
        "members": [{"run_dir": str(folder), "seed": member_seed(config.train.seed, index + 1),
                     **record} for index, (folder, record) in enumerate(zip(members,
                                                                             member_records))],
        "parameters": count_parameters(loaded.model), "vocab_size": vocab_size,
        "train_rows": len(data.train), "val_rows": len(data.val),
        "seconds": time.perf_counter() - started,
    }
    write_json(run_dir / "summary.json", summary)
    freed = _remove_member_resume_states(members)
    listed = ", ".join(f"{record['best_val_acc']:.4f}" for record in member_records)
    figure = "micro-F1" if config.data.multi_label else "accuracy"
    log(f"ensemble of {len(members)}: val {figure} {val['accuracy']:.4f} (members {listed}); "
        f"checkpoint {run_dir / 'best.pt'}")
    if freed:
        log(f"removed the members' last.pt files ({freed / 2**20:.0f} MiB): best.pt holds "
            "their weights")
    return summary


def _resolved_class_weights(config: Config, data: TrainingData) -> dict[str, float] | None:
    """The weights every member trained with (the same training split, so the same numbers)."""
    weights = resolve_class_weights(config.optim.class_weights, data.train.labels,
                                    data.label_names)
    return None if weights is None else dict(zip(data.label_names, weights))


def _overrides_each(config: Config) -> list[dict[str, Any]]:
    return list(config.train.ensemble_members) or [{} for _ in range(config.train.ensemble)]


def _shown(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in overrides.items()) or "the base model"


def _as_trained(config: Config, members: list[Path], payloads: list[dict[str, Any]]) -> Config:
    """The ensemble's config with each member's model as trained (e.g. the n-gram table size
    used); a member trained on other data or as another model stops the assembly."""
    trained = [from_saved_dict(payload["config"], source=f"{folder}/best.pt").model
               for folder, payload in zip(members, payloads)]
    ensemble_config = copy.deepcopy(config)
    for index, (folder, payload, model) in enumerate(zip(members, payloads, trained)):
        requested = _member_config(config, folder.parent, index + 1).model
        requested.ngram_buckets = model.ngram_buckets  # the one change training may make
        if payload["vocab"] != payloads[0]["vocab"] or model != requested \
                or payload["label_names"] != payloads[0]["label_names"]:
            raise RunFailed(f"{folder} was trained on other data or with another model than "
                            f"{members[0]}; train the ensemble again with --overwrite")
    if not config.train.ensemble_members:
        ensemble_config.model = trained[0]
        return ensemble_config
    ensemble_config.train.ensemble_members = [
        {**overrides, **{f"model.{key}": value for key, value in vars(model).items()
                         if getattr(config.model, key) != value}}
        for overrides, model in zip(config.train.ensemble_members, trained)]
    return ensemble_config


def _store_thresholds(path: Path, thresholds: list[float]) -> None:
    """Add the ensemble's own per-label thresholds (its validation split) to its best.pt."""
    payload = load_checkpoint(path)
    payload["thresholds"] = thresholds
    save_checkpoint(path, payload)


def _remove_member_resume_states(members: list[Path]) -> int:
    """Delete the members' last.pt once best.pt holds the ensemble; returns the bytes freed.

    A finished member's last.pt only serves to train it further; with Adam it is three times
    the member's weights (the default's n-gram table makes that large), which best.pt already
    holds."""
    freed = 0
    for folder in members:
        path = folder / "last.pt"
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except OSError:  # already gone, or read-only: nothing is lost either way
            pass
    return freed
