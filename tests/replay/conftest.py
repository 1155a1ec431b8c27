"""Fixtures shared by the ingest tests."""

from __future__ import annotations

import pytest

from tests.conftest import extract_members


@pytest.fixture(scope="module")
def small_games(replays, manifest, tmp_path_factory):
    """The six smallest real 2-player games of fixtures.zip, as plain files (smallest first)."""
    names = [n for _, n in sorted((r["size_bytes"], n) for (a, n), r in manifest.items()
                                  if a == "fixtures.zip" and r.get("n_players") == 2)][:6]
    return extract_members(replays / "fixtures.zip", names, tmp_path_factory.mktemp("small"))
