"""Clear errors: bad configs, checkpoints of another encoding or shape, a resume without a checkpoint, an empty
dataset. Each is one exception type with a message that names the problem, and exit code 2 from the CLI."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.model.checkpoint import CheckpointError, load_model, read_checkpoint
from meleewm.train.config import ConfigError, load_config
from meleewm.train.trainer import Trainer, TrainError
from tests.train.conftest import FAST
from tests.train.realdata import TINY, tiny_config


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("override, key, words", [
    ("optim.lrr=0.1", "optim.lrr", "unknown config key"),
    ("modle.d_model=8", "modle", "unknown config key"),
    ("optim.lr=fast", "optim.lr", "expected a number"),
    ("data.batch_size=2.5", "data.batch_size", "expected an integer"),
    ("data.mirror=3", "data.mirror", "expected true or false"),
    ("optim.betas=[0.9]", "optim.betas", "expected 2 values"),
    ("model.body=transformer", "model.body", "must be"),
    ("model.d_model=0", "model.d_model", "must be positive"),
    ("loss.continuous=l1", "loss.continuous", "must be"),
])
def test_bad_config_names_the_key(override, key, words, tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(TINY, [override])
    assert key in str(error.value) and words in str(error.value), str(error.value)
    result = cli("train", "--data", tmp_path, "--config", TINY, "--out", tmp_path / "run", override)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and key in one_line(result.output), result.output


@pytest.mark.parametrize("override, allowed", [
    ("data.seq_len=0", "an integer >= 1"),
    ("data.batch_size=0", "an integer >= 1"),
    ("data.batch_size=-4", "an integer >= 1"),
    ("optim.lr=-1", "a number >= 0"),
    ("optim.lr=.nan", "a finite number"),
    ("optim.lr=nan", "a finite number"),
    ("optim.lr=inf", "a finite number"),
    ("data.val_fraction=1.5", "a number in [0, 1)"),
    ("optim.epochs=-1", "an integer >= 1"),
    ("optim.grad_clip=-1", "a number > 0"),
    ("self_forcing.prob=2", "a number in [0, 1]"),
    ("data.max_games=-3", "an integer >= 0"),
    ("log.every_steps=0", "an integer >= 1"),
    ("optim.betas=[0.9, 1.5]", "a number in [0, 1)"),
    ("seed=-1", "an integer in [0, 4294967295]"),
    ("eval.warmup=0", "an integer >= 1"),
    ("kill.min_decrease=1", "a number in [0, 1)"),
    ("card.hourly_cost=-2", "a number >= 0"),
    ("device=gpu", "auto, cpu, cuda"),
])
def test_out_of_range_value_names_key_and_range(override, allowed, tmp_path):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as error:
        load_config(TINY, [override])
    message = str(error.value)
    assert message.startswith(f"{key}: ") and allowed in message and "\n" not in message, message
    result = cli("train", "--data", tmp_path, "--config", TINY, "--out", tmp_path / "run", override)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"error: {key}: " in one_line(result.output) and allowed in one_line(result.output), result.output


def test_duplicate_keys_and_binary_files(tmp_path):
    config = tmp_path / "dup.yaml"
    config.write_text("optim:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml line 4: key 'lr' is given twice"):
        load_config(config)
    with pytest.raises(ConfigError, match="override optim: line 1: key 'lr' is given twice"):
        load_config(TINY, ["optim={lr: 0.1, lr: 0.2}"])
    binary = tmp_path / "model.pt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=r"model\.pt is not a YAML text file: byte 128 is not UTF-8 text"):
        load_config(binary)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)
    for path in (config, binary, tmp_path):
        result = cli("train", "--data", tmp_path, "--config", path, "--out", tmp_path / "run")
        assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output, \
            result.output
        assert len(result.output.strip().splitlines()) <= 2, result.output  # one line (wrapped at most once)


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: 32, layers: 2}\n")
    with pytest.raises(ConfigError, match=r"model\.layers"):
        load_config(bad)
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(TINY, ["optim.lr"])


def _edited(checkpoint, dest, edit) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    edit(payload)
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dest / "last.pt")


def test_checkpoint_of_another_encoding_version(train_data, checkpoint, tmp_path):
    run = tmp_path / "run"
    _edited(checkpoint, run, lambda p: p["encoding"].update(version=p["encoding"]["version"] + 1))
    for call in (lambda: read_checkpoint(run / "last.pt"), lambda: load_model(run / "last.pt")):
        with pytest.raises(CheckpointError, match="encoding version"):
            call()
    with pytest.raises(CheckpointError, match="encoding version"):
        Trainer(train_data, tiny_config(*FAST, "optim.max_steps=2"), run, resume=True, progress=False)
    result = cli("train", "--data", train_data, "--config", TINY, "--out", run, "--resume", *FAST)
    assert result.exit_code == 2 and "encoding version" in one_line(result.output), result.output


def test_checkpoint_of_another_vocabulary(train_data, checkpoint, tmp_path):
    """A checkpoint whose encoding (action vocabulary) does not fit its weights: a clear error, no traceback."""
    run = tmp_path / "run"
    _edited(checkpoint, run, lambda p: p["encoding"]["vocabs"]["post_state"].pop())
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(run / "last.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        Trainer(train_data, tiny_config(*FAST, "optim.max_steps=2"), run, resume=True, progress=False)
    result = cli("train", "--data", train_data, "--config", TINY, "--out", run, "--resume", *FAST,
                 "optim.max_steps=2")
    assert result.exit_code == 2 and "do not fit" in one_line(result.output), result.output


def test_resume_with_another_model_shape(train_data, checkpoint, tmp_path):
    run = tmp_path / "run"
    _edited(checkpoint, run, lambda p: None)
    result = cli("train", "--data", train_data, "--config", TINY, "--out", run, "--resume", *FAST,
                 "optim.max_steps=2", "model.d_model=48")
    assert result.exit_code == 2 and "do not fit" in one_line(result.output), result.output


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a meleewm checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(tmp_path / "missing.pt")


def test_empty_dataset(tmp_path):
    from meleewm.replay.ingest import ingest

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.slp").write_text("this is not a replay\n")
    stats = ingest([tmp_path / "in"], tmp_path / "dataset", workers=1)
    assert stats.ingested == 0 and sum(stats.quarantined.values()) == 1
    with pytest.raises(TrainError, match="no training games"):
        Trainer(tmp_path / "dataset", tiny_config(*FAST), tmp_path / "run", progress=False)
    result = cli("train", "--data", tmp_path / "dataset", "--config", TINY, "--out", tmp_path / "run", *FAST)
    assert result.exit_code == 2 and "no training games" in one_line(result.output), result.output
    result = cli("train", "--data", tmp_path / "nowhere", "--config", TINY, "--out", tmp_path / "run2", *FAST)
    assert result.exit_code == 2 and "error:" in result.output, result.output


def test_too_few_windows(train_data, tmp_path):
    with pytest.raises(TrainError, match="lower data.seq_len or data.batch_size"):
        Trainer(train_data, tiny_config("data.seq_len=20000"), tmp_path / "run", progress=False)


def test_resume_from_an_export(train_data, checkpoint, tmp_path):
    """An exported model has no optimizer, scheduler or RNG state: a resume from it says so."""
    from meleewm.model.checkpoint import export_model

    export_model(checkpoint, tmp_path / "run" / "last.pt")
    with pytest.raises(CheckpointError, match="has no optimizer, scheduler, rng .* cannot be resumed"):
        Trainer(train_data, tiny_config(*FAST), tmp_path / "run", resume=True, progress=False)


def test_checkpoint_with_a_bad_config_or_encoding(checkpoint, tmp_path):
    # Loading reads the sections a model needs (model, data, loss): each is checked as the run's config was.
    _edited(checkpoint, tmp_path / "config", lambda p: p["config"]["data"].update(seq_len="long"))
    with pytest.raises(CheckpointError, match="its config is not valid: data.seq_len"):
        load_model(tmp_path / "config" / "last.pt")
    _edited(checkpoint, tmp_path / "model-config", lambda p: p["config"]["model"].update(n_layer=0))
    with pytest.raises(CheckpointError, match="its config is not valid: model.n_layer must be positive"):
        load_model(tmp_path / "model-config" / "last.pt")
    _edited(checkpoint, tmp_path / "encoding", lambda p: p["encoding"].pop("vocabs"))
    with pytest.raises(CheckpointError, match="its encoding is not valid: KeyError"):
        load_model(tmp_path / "encoding" / "last.pt")
    _edited(checkpoint, tmp_path / "partial", lambda p: p.pop("model"))
    with pytest.raises(CheckpointError, match="not a complete meleewm checkpoint: no model"):
        load_model(tmp_path / "partial" / "last.pt")
