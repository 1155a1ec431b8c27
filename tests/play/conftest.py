"""Fixtures for the play tests: a small dataset ingested from a few real replays of shared/replays."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from meleewm.play.session import use_play_threads
from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from meleewm.replay.reader import sha256_hex
from tests.conftest import extract_members


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Play runs torch on one intra-op thread (``use_play_threads``, as ``meleewm play`` and ``dream`` do): on a busy
    2-core machine two OpenMP threads make a batch-1 softmax take milliseconds. Restored afterwards."""
    threads = torch.get_num_threads()
    use_play_threads()
    yield
    torch.set_num_threads(threads)



# fixtures.zip members used by the writer tests, by the label the tests use.
MEMBERS = {
    "recent": "hohav-peppi/tests/data/v3.18.slp",                      # 3.18.0, Marth vs CPU Falcon, every field
    "recent_316": "walnut356-slpprocess/test_replays/inputs.slp",      # 3.16.0, Falco vs Marth, velocities, hitlag
    "older": "altf4-libmelee/test_artifacts/test_game_2.slp",          # 2.0.1, DK vs Marth on ports 2-3
    "ice_climbers": "project-slippi-slippi-js/slp/moveTest/id_31.slp",  # 3.9.0, Kirby vs Ice Climbers (Nana)
}


@pytest.fixture(scope="session")
def replay_files(replays, tmp_path_factory) -> dict[str, Path]:
    """The chosen members extracted to files, by label."""
    dest = tmp_path_factory.mktemp("slp_writer_replays")
    return dict(zip(MEMBERS, extract_members(replays / "fixtures.zip", list(MEMBERS.values()), dest)))


@pytest.fixture(scope="session")
def fixtures_dataset(replay_files, tmp_path_factory) -> tuple[Dataset, dict[str, str]]:
    """A dataset of the chosen members, and each one's game id by label."""
    root = tmp_path_factory.mktemp("slp_writer_dataset") / "ds"
    folder = next(iter(replay_files.values())).parent
    ingest([folder], root)
    dataset = Dataset(root)
    ids = {label: sha256_hex(path.read_bytes()) for label, path in replay_files.items()}
    missing = [label for label, gid in ids.items() if gid not in dataset.game_ids()]
    assert not missing, f"not ingested: {missing} (quarantine: {dataset.quarantine()})"
    return dataset, ids
