"""A small real dataset for the training and world-model tests: the first few 2-player games of games-1.zip,
ingested once per test session (shared by tests/train and tests/model/test_world_model.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import extract_members, pick_members

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"

_BUILT: dict[int, Path] = {}


def real_dataset(replays: Path, manifest: dict, tmp_path_factory, count: int = 4) -> Path:
    """A dataset folder with ``count`` real full 2-player games (built once per session and count)."""
    if count not in _BUILT:
        from meleewm.replay.ingest import ingest

        root = tmp_path_factory.mktemp(f"train_data_{count}")
        names = pick_members(manifest, "games-1.zip", count, n_players=2)
        assert len(names) == count, names
        extract_members(replays / "games-1.zip", names, root / "replays")
        stats = ingest([root / "replays"], root / "dataset", workers=1)
        assert stats.ingested == count, stats
        _BUILT[count] = root / "dataset"
    return _BUILT[count]


def tiny_config(*overrides: str):
    """configs/tiny.yaml with overrides, TensorBoard off (tests that check logging turn it back on)."""
    from meleewm.train.config import load_config

    return load_config(TINY, ["log.tensorboard=false", *overrides])
