"""Fixtures of the training tests: a small real dataset (4 games of games-1.zip), built once per session, and a
one-step run on it."""

from __future__ import annotations

import pytest

from tests.train.realdata import real_dataset, tiny_config

FAST = ("data.batch_size=4", "optim.max_steps=1", "eval.rollout_starts=2", "eval.max_val_batches=1")


@pytest.fixture(scope="session")
def train_data(replays, manifest, tmp_path_factory):
    """Folder of a 4-game real dataset."""
    return real_dataset(replays, manifest, tmp_path_factory)


@pytest.fixture(scope="session")
def checkpoint(train_data, tmp_path_factory):
    """The last.pt of a one-step run."""
    from meleewm.train.trainer import Trainer

    out = tmp_path_factory.mktemp("ckpt") / "run"
    Trainer(train_data, tiny_config(*FAST), out, progress=False).run()
    assert (out / "last.pt").is_file()
    return out / "last.pt"
