"""A small real dataset (4 games of games-1.zip, ingested once per session) for the data-layer tests."""

from __future__ import annotations

import pytest

from tests.conftest import extract_members

# name -> games-1.zip member. Chosen small and varied: Slippi 3.14 with items (Yoshi's Story, Dream Land),
# 2.0.1 (no velocities, hitlag, hurtbox) on Battlefield, and 0.1 (no state flags, airborne, jumps, state_age).
MEMBERS = {
    "ys_314": "walnut356-py-slippi/Modern Replays/NUT#356 (Falco) vs LSK#555 (Falcon) on YS - 12-14-22 02.08am .slp",
    "dl_314": "walnut356-py-slippi/Modern Replays/COWS#797 (Pikachu) vs NUT#356 (Falco) on DL - 12-22-22 12.34am .slp",
    "bf_201": "project-slippi-slippi-js/slp/v2/test.slp",
    "dl_01": "hohav-peppi/tests/data/v0.1.slp",
}


@pytest.fixture(scope="session")
def small_dataset(replays, tmp_path_factory):
    """(Dataset, {name: game_id}) for the MEMBERS games."""
    from meleewm.replay.dataset import Dataset
    from meleewm.replay.ingest import ingest

    root = tmp_path_factory.mktemp("data_layer")
    paths = extract_members(replays / "games-1.zip", list(MEMBERS.values()), root / "replays")
    ingest([root / "replays"], root / "dataset", workers=1)
    dataset = Dataset(root / "dataset")
    by_source = {row["source"]: row["game_id"] for row in dataset.games.select(["game_id", "source"]).to_pylist()}
    ids = {name: by_source[str(path)] for name, path in zip(MEMBERS, paths)}
    return dataset, ids


@pytest.fixture(scope="session")
def spec(small_dataset):
    from meleewm.data.encoding import EncodingSpec

    dataset, ids = small_dataset
    return EncodingSpec.fit(dataset, sorted(ids.values()), items=True, item_slots=4)
