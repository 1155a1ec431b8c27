"""A seeded fuzz test of the ingest path: real replays mutated (bit flips, truncation, swapped byte ranges, huge
lengths, wrong versions) must each be ingested exactly as peppi-py reads them, or quarantined with a reason; the
untouched ones must all land, and nothing may be written outside the output folder. Bounded: 120 mutants, about
10 s."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import tempfile

import pytest

from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from tests.conftest import extract_members
from tests.replay.slippi_bytes import RAW_START, payload_sizes, with_version
from tests.replay.test_ingest import assert_stored_equals_peppi

SEED = int(os.environ.get("MELEEWM_FUZZ_SEED", "20261202"))
MUTANTS = 120


def _bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _truncation(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def _swapped_ranges(data: bytes, rng: random.Random) -> bytes:
    length = rng.randint(1, 4096)
    a, b = sorted(rng.sample(range(len(data) - length), 2))
    if b < a + length:
        b = min(a + length, len(data) - length)
    out = bytearray(data)
    out[a:a + length], out[b:b + length] = data[b:b + length], data[a:a + length]
    return bytes(out)


def _huge_length(data: bytes, rng: random.Random) -> bytes:
    """The raw element's length, or one event's payload size, set to something absurd."""
    out = bytearray(data)
    if rng.random() < 0.3:
        out[RAW_START - 4:RAW_START] = struct.pack(">I", rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, len(data) * 16]))
    else:
        entry = RAW_START + 2 + 3 * rng.randrange((len(payload_sizes(data)) - 1))
        out[entry + 1:entry + 3] = struct.pack(">H", rng.choice([0, 1, 0xFFFF, 0x8000]))
    return bytes(out)


def _wrong_version(data: bytes, rng: random.Random) -> bytes:
    return with_version(data, rng.choice([(0, 1, 0), (1, 0, 0), (2, 0, 0), (3, 3, 0), (3, 99, 0), (255, 255, 255)]))


MUTATIONS = (_bit_flips, _truncation, _swapped_ranges, _huge_length, _wrong_version)


@pytest.fixture(scope="module")
def originals(replays, manifest, tmp_path_factory):
    """Four short real two-player games of different Slippi versions."""
    by_version = {}
    for (archive, name), record in sorted(manifest.items(), key=lambda kv: kv[1]["size_bytes"]):
        if archive == "fixtures.zip" and record.get("n_players") == 2 and record.get("parse_ok", True):
            by_version.setdefault(record["slippi_version"].split(".")[0], name)
    names = sorted(by_version.values())[:4]
    return extract_members(replays / "fixtures.zip", names, tmp_path_factory.mktemp("originals"))


def _listing(root) -> set[str]:
    return {os.path.join(folder, name) for folder, dirs, files in os.walk(root) for name in dirs + files}


def test_mutated_replays_are_ingested_exactly_or_quarantined(originals, tmp_path, monkeypatch):
    rng = random.Random(SEED)
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = {}
    for index, original in enumerate(originals):
        files[f"good-{index}.slp"] = original.read_bytes()
    for index in range(MUTANTS):
        mutation = MUTATIONS[index % len(MUTATIONS)]
        files[f"mutant-{index:03d}-{mutation.__name__[1:]}.slp"] = mutation(rng.choice(originals).read_bytes(), rng)
    for name, data in files.items():
        (inputs / name).write_bytes(data)

    # Run somewhere empty, with an empty temporary folder, and see that only the output folder changes.
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", None)
    outside_before = _listing(tmp_path)
    shm_before = _listing("/dev/shm")
    out = tmp_path / "ds"
    ingest([inputs], out, batch_size=8)
    assert {p for p in _listing(tmp_path) if not p.startswith(str(out))} == outside_before
    assert not {p for p in _listing("/dev/shm") - shm_before if p.endswith(".slp")}  # shared: replays only

    dataset = Dataset(out)
    stored = {g["game_id"]: g for g in dataset.games.to_pylist()}
    quarantined = {q["sha256"]: q for q in dataset.quarantine()}
    assert not set(stored) & set(quarantined), "a file both ingested and quarantined"
    outcomes = {"ingested": 0, "quarantined": 0}
    for name, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        if name.startswith("good-"):
            assert sha in stored, f"an untouched replay did not land: {name}"
        if sha in stored:
            assert_stored_equals_peppi(dataset, sha, inputs / name)
            outcomes["ingested"] += 1
        else:
            assert sha in quarantined, f"{name} (seed {SEED}) is neither ingested nor quarantined"
            entry = quarantined[sha]
            assert entry["reason"] and entry["error"] is not None, entry
            outcomes["quarantined"] += 1
    assert outcomes["quarantined"] >= MUTANTS // 2, outcomes  # the mutations do break most files
