"""Config loading: shipped configs, validation errors (one line each), overrides, run names."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnclf.config import Config, from_dict, load_config, to_yaml
from rnnclf.config.explain import describe
from rnnclf.config.loading import apply_overrides, parse_override
from rnnclf.errors import RnnclfError

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(CONFIGS_DIR.glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(excinfo: pytest.ExceptionInfo[RnnclfError]) -> str:
    message = str(excinfo.value)
    assert message, "empty error message"
    assert "\n" not in message and "\r" not in message, message
    return message


# --- shipped files and defaults ----------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_config_loads(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.train.name == path.stem
    # What the file sets is what the config holds (no key silently dropped or renamed).
    import yaml

    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for section, values in raw.items():
        for key, value in (values or {}).items():
            loaded = getattr(getattr(config, section), key)
            assert loaded == value, f"{section}.{key}: file has {value!r}, loaded {loaded!r}"


def test_defaults_load() -> None:
    config = load_config()
    assert config == Config(train=config.train)  # every other section at its default
    assert config.model.cell == "gru"
    assert config.train.name == "default"
    assert config.data.train_file == "train.csv" and config.data.test_file == "test.csv"
    assert 0 < config.data.val_fraction < 1


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing set\n"))
    assert config.model == load_config().model
    assert config.train.name == "exp"


def test_to_yaml_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["model.cell=lstm", "train.epochs=3", "train.name=x"])
    again = load_config(write(tmp_path, to_yaml(config)))
    assert again == config


def test_describe_lists_every_section() -> None:
    text = describe()
    for key in ("data:", "model:", "optim:", "train:", "  hidden_size: 128", "  cell: 'gru'"):
        assert key in text


# --- errors: one line each ---------------------------------------------------------------------


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  hiden_size: 8\n")
    with pytest.raises(RnnclfError) as excinfo:
        load_config(path)
    message = one_line_error(excinfo)
    assert "model.hiden_size" in message
    assert "did you mean 'hidden_size'" in message
    assert str(path) in message


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, "modle:\n  cell: gru\n"))
    message = one_line_error(excinfo)
    assert "modle" in message and "did you mean 'model'" in message


@pytest.mark.parametrize(("yaml_text", "key", "hint"), [
    ("model:\n  hidden_size: big\n", "model.hidden_size", "whole number"),
    ("model:\n  hidden_size: 8.5\n", "model.hidden_size", "whole number"),
    ("train:\n  epochs: true\n", "train.epochs", "whole number"),
    ("model:\n  bidirectional: 'yes please'\n", "model.bidirectional", "true or false"),
    ("model:\n  bidirectional: 1\n", "model.bidirectional", "true or false"),
    ("optim:\n  lr: fast\n", "optim.lr", "number"),
    ("optim:\n  lr: .nan\n", "optim.lr", "finite"),
    ("data:\n  dir: [a, b]\n", "data.dir", "text"),
])
def test_wrong_type(tmp_path: Path, yaml_text: str, key: str, hint: str) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, yaml_text))
    message = one_line_error(excinfo)
    assert key in message and hint in message


@pytest.mark.parametrize(("yaml_text", "key", "bound"), [
    ("model:\n  dropout: 1.0\n", "model.dropout", "less than 1.0"),
    ("model:\n  dropout: -0.1\n", "model.dropout", "at least 0.0"),
    ("model:\n  hidden_size: 0\n", "model.hidden_size", "at least 1"),
    ("train:\n  epochs: -1\n", "train.epochs", "at least 1"),
    ("model:\n  num_layers: 17\n", "model.num_layers", "at most 16"),
    ("data:\n  val_fraction: 0\n", "data.val_fraction", "greater than 0.0"),
    ("optim:\n  lr: 0\n", "optim.lr", "greater than 0.0"),
])
def test_out_of_range(tmp_path: Path, yaml_text: str, key: str, bound: str) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, yaml_text))
    message = one_line_error(excinfo)
    assert key in message and bound in message


def test_limits_are_inclusive_where_documented(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "model:\n  dropout: 0.0\n  num_layers: 16\n"
                                         "data:\n  val_fraction: 0.5\n"))
    assert (config.model.dropout, config.model.num_layers, config.data.val_fraction) == (
        0.0, 16, 0.5)


def test_unknown_cell_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, "model:\n  cell: lstmm\n"))
    message = one_line_error(excinfo)
    assert "model.cell" in message and "'lstmm'" in message
    assert "rnn, lstm, gru" in message
    assert "did you mean 'lstm'" in message


def test_bad_device(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, "train:\n  device: gpu\n"))
    assert "train.device" in one_line_error(excinfo)
    assert load_config(None, ["train.device=cuda:1"]).train.device == "cuda:1"


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  cell: gru\n  hidden_size: [16\n")
    with pytest.raises(RnnclfError) as excinfo:
        load_config(path)
    message = one_line_error(excinfo)
    assert str(path) in message and "invalid YAML" in message and "line" in message


def test_tab_indented_yaml_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, "model:\n\tcell: gru\n"))
    assert "invalid YAML" in one_line_error(excinfo)


@pytest.mark.parametrize("text", ["- model\n- train\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, text))
    assert "top level must be a mapping" in one_line_error(excinfo)


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(write(tmp_path, "model: [gru]\n"))
    assert "section 'model'" in one_line_error(excinfo)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(tmp_path / "nope.yaml")
    assert "does not exist" in one_line_error(excinfo)
    with pytest.raises(RnnclfError) as excinfo:
        load_config(tmp_path)
    assert "folder" in one_line_error(excinfo)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"train:\n  name: caf\xe9\n")
    with pytest.raises(RnnclfError) as excinfo:
        load_config(path)
    one_line_error(excinfo)


# --- overrides ---------------------------------------------------------------------------------


def test_override_cell() -> None:
    assert load_config(None, ["model.cell=lstm"]).model.cell == "lstm"


def test_override_beats_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  cell: rnn\n  hidden_size: 32\n")
    config = load_config(path, ["model.cell=lstm"])
    assert config.model.cell == "lstm" and config.model.hidden_size == 32


def test_override_typed_as_int() -> None:
    config = load_config(None, ["train.epochs=3"])
    assert config.train.epochs == 3 and type(config.train.epochs) is int


def test_override_typed_as_float_and_bool() -> None:
    config = load_config(None, ["optim.lr=1e-3", "model.bidirectional=false", "optim.lr=0.5"])
    assert config.optim.lr == 0.5 and isinstance(config.optim.lr, float)
    assert config.model.bidirectional is False


def test_override_text_field_keeps_what_was_typed() -> None:
    config = load_config(None, ["data.dir=123", "train.name=007", "data.train_file=yes"])
    assert config.data.dir == "123"
    assert config.train.name == "007"
    assert config.data.train_file == "yes"


def test_override_value_may_contain_equals() -> None:
    assert load_config(None, ["data.dir=/tmp/a=b"]).data.dir == "/tmp/a=b"


def test_override_is_validated() -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(None, ["train.epochs=three"])
    assert "train.epochs" in one_line_error(excinfo)
    with pytest.raises(RnnclfError) as excinfo:
        load_config(None, ["model.celll=gru"])
    assert "did you mean 'cell'" in one_line_error(excinfo)


@pytest.mark.parametrize("text", ["modelcell=lstm", "model.cell", "model.cell.x=1", ".cell=gru",
                                  "model.=gru", "=gru"])
def test_bad_override_form(text: str) -> None:
    with pytest.raises(RnnclfError) as excinfo:
        load_config(None, [text])
    assert "section.key=value" in one_line_error(excinfo)


def test_parse_override() -> None:
    assert parse_override("model.cell=lstm") == ("model", "cell", "lstm")
    assert parse_override(" train.epochs =3") == ("train", "epochs", "3")


def test_apply_overrides_does_not_mutate_its_input() -> None:
    raw = {"model": {"cell": "gru"}}
    merged = apply_overrides(raw, ["model.cell=rnn", "train.epochs=2"])
    assert raw == {"model": {"cell": "gru"}}
    assert merged == {"model": {"cell": "rnn"}, "train": {"epochs": 2}}


# --- run name ----------------------------------------------------------------------------------


def test_run_name_defaults_to_the_config_file_stem(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "model:\n  cell: lstm\n", "my_lstm.yaml")).train.name \
        == "my_lstm"


def test_run_name_explicit_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  name: chosen\n", "file_name.yaml")
    assert load_config(path).train.name == "chosen"
    assert load_config(path, ["train.name=cli"]).train.name == "cli"


def test_from_dict_with_none_sections() -> None:
    config = from_dict({"model": None, "train": {}})
    assert config.model.cell == "gru"
