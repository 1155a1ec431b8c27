"""`meleewm export`: the bundled-model copy of a checkpoint loads and predicts like the original."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.model.checkpoint import load_model, read_checkpoint
from meleewm.train.trainer import train
from tests.train.realdata import tiny_config


def test_export_drops_training_state_and_keeps_the_model(train_data, tmp_path):
    train(train_data, tiny_config("optim.max_steps=3"), tmp_path / "run", progress=False)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run" / "last.pt"), "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    exported = read_checkpoint(tmp_path / "m.pt")
    assert exported["optimizer"] is None and exported["rng"] is None
    assert (tmp_path / "m.pt").stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size / 2
    original = load_model(tmp_path / "run" / "last.pt").model
    copy = load_model(tmp_path / "m.pt").model
    for name, value in original.state_dict().items():
        assert torch.equal(value, copy.state_dict()[name]), name
