"""Fixtures of the training tests: a small real dataset (4 games of games-1.zip), built once per session."""

from __future__ import annotations

import pytest

from tests.train.realdata import real_dataset


@pytest.fixture(scope="session")
def train_data(replays, manifest, tmp_path_factory):
    """Folder of a 4-game real dataset."""
    return real_dataset(replays, manifest, tmp_path_factory)
