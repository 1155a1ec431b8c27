"""Fixtures shared by the ingest tests."""

from __future__ import annotations

import pyarrow as pa
import pytest

from meleewm.replay.dataset import Dataset
from tests.conftest import extract_members


@pytest.fixture(scope="module")
def small_games(replays, manifest, tmp_path_factory):
    """The six smallest real 2-player games of fixtures.zip, as plain files (smallest first)."""
    names = [n for _, n in sorted((r["size_bytes"], n) for (a, n), r in manifest.items()
                                  if a == "fixtures.zip" and r.get("n_players") == 2)][:6]
    return extract_members(replays / "fixtures.zip", names, tmp_path_factory.mktemp("small"))


def comparable(dataset: Dataset) -> tuple[list[dict], dict[str, pa.Table]]:
    """A dataset's games (less where and when each was written) and frames by game: equal for equal datasets."""
    placement = {"part", "frames_row_group", "items_row_group", "stage_events_row_group", "ingested_at"}
    games = [{k: v for k, v in g.items() if k not in placement} for g in dataset.games.to_pylist()]
    frames = {g["game_id"]: dataset.frames(g["game_id"]) for g in games}
    return games, frames
