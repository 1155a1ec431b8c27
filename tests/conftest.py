"""Shared test fixtures: the real replays in ../shared/replays (tests that need them skip when absent)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

REPLAYS = Path(os.environ.get("MELEEWM_REPLAYS", Path(__file__).resolve().parents[2] / "shared" / "replays"))


def replays_dir() -> Path:
    if not (REPLAYS / "manifest.json").is_file():
        pytest.skip(f"real replays not found at {REPLAYS} (set MELEEWM_REPLAYS)")
    return REPLAYS


@pytest.fixture(scope="session")
def replays() -> Path:
    return replays_dir()


@pytest.fixture(scope="session")
def manifest(replays) -> dict[tuple[str, str], dict]:
    """Manifest records keyed by (archive, member)."""
    records = json.loads((replays / "manifest.json").read_text())["files"]
    return {(r["archive"], r["file"]): r for r in records}


def extract_members(archive: Path, members: list[str], dest: Path) -> list[Path]:
    """Copy a few zip members into ``dest`` (flat names), for tests that need small inputs."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    with zipfile.ZipFile(archive) as zf:
        for member in members:
            path = dest / member.replace("/", "__")
            path.write_bytes(zf.read(member))
            paths.append(path)
    return paths


def pick_members(manifest: dict, archive: str, count: int, **where) -> list[str]:
    """The first ``count`` members of an archive whose manifest records match ``where``, sorted by name."""
    names = sorted(name for (arch, name), r in manifest.items()
                   if arch == archive and all(r.get(k) == v for k, v in where.items()))
    return names[:count]


@pytest.fixture(scope="session")
def bundled():
    """The bundled model (``models/meleewm-small.pt``), on one torch thread as `play` runs it."""
    import torch

    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no bundled model at {DEFAULT_MODEL}")
    torch.set_num_threads(1)
    return load_model(DEFAULT_MODEL).model
