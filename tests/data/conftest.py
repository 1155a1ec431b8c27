"""A small real dataset (4 games of games-1.zip, ingested once per session) for the data-layer tests."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

REPLAYS = Path(os.environ.get("MELEEWM_REPLAYS", Path(__file__).resolve().parents[3] / "shared" / "replays"))

# name -> games-1.zip member. Chosen small and varied: Slippi 3.14 with items (Yoshi's Story, Dream Land),
# 2.0.1 (no velocities, hitlag, hurtbox) on Battlefield, and 0.1 (no state flags, airborne, jumps, state_age).
MEMBERS = {
    "ys_314": "walnut356-py-slippi/Modern Replays/NUT#356 (Falco) vs LSK#555 (Falcon) on YS - 12-14-22 02.08am .slp",
    "dl_314": "walnut356-py-slippi/Modern Replays/COWS#797 (Pikachu) vs NUT#356 (Falco) on DL - 12-22-22 12.34am .slp",
    "bf_201": "project-slippi-slippi-js/slp/v2/test.slp",
    "dl_01": "hohav-peppi/tests/data/v0.1.slp",
}


@pytest.fixture(scope="session")
def games_zip() -> Path:
    path = REPLAYS / "games-1.zip"
    if not path.is_file():
        pytest.skip(f"real replays not found at {REPLAYS} (set MELEEWM_REPLAYS)")
    return path


@pytest.fixture(scope="session")
def small_dataset(games_zip, tmp_path_factory):
    """(Dataset, {name: game_id}) for the MEMBERS games."""
    from meleewm.replay.dataset import Dataset
    from meleewm.replay.ingest import ingest

    root = tmp_path_factory.mktemp("data_layer")
    src = root / "replays"
    src.mkdir()
    with zipfile.ZipFile(games_zip) as zf:
        for name, member in MEMBERS.items():
            (src / f"{name}.slp").write_bytes(zf.read(member))
    ingest([src], root / "dataset", workers=1)
    dataset = Dataset(root / "dataset")
    ids = {}
    for row in dataset.games.select(["game_id", "source"]).to_pylist():
        ids[Path(row["source"]).stem] = row["game_id"]
    assert set(ids) == set(MEMBERS), ids
    return dataset, ids


@pytest.fixture(scope="session")
def spec(small_dataset):
    from meleewm.data.encoding import EncodingSpec

    dataset, ids = small_dataset
    return EncodingSpec.fit(dataset, sorted(ids.values()), items=True, item_slots=4)
