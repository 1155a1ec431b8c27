"""Ingest on real replays: every archive member ingested or quarantined, values equal to peppi-py's."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from peppi_py import _peppi, read_slippi

from meleewm.melee import character_name, stage_name
from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from meleewm.replay.schema import FRAME_SCHEMA, PLAYER_FIELD_NAMES
from tests.conftest import extract_members, pick_members

ARCHIVES = ("fixtures.zip", "games-1.zip", "games-2.zip")


@pytest.fixture(scope="session")
def full_dataset(replays, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "dataset"
    stats = ingest([replays / name for name in ARCHIVES], out, workers=2)
    return Dataset(out), stats


def _member(source: str) -> tuple[str, str]:
    archive, member = source.split("::", 1)
    return archive.rsplit("/", 1)[-1], member


def test_every_member_ingested_or_quarantined_and_matches_manifest(full_dataset, manifest):
    dataset, stats = full_dataset
    games = {_member(g["source"]): g for g in dataset.games.to_pylist()}
    quarantined = {_member(q["source"]): q for q in dataset.quarantine()}
    # The same bytes under two names are stored once, so count by content hash.
    by_hash = {}
    for key, record in manifest.items():
        by_hash.setdefault(record["sha256"], []).append(key)
    stored_hashes = {g["game_id"] for g in games.values()} | {q["sha256"] for q in quarantined.values()}
    assert stored_hashes == set(by_hash), "every distinct file is either a game or a quarantine entry"
    assert stats.duplicates == len(manifest) - len(by_hash)
    for q in quarantined.values():
        assert q["reason"] and q["error"] is not None
        assert q["reason"] != "implausible values", f"a real game is outside the physical limits: {q}"

    checked = 0
    for key, game in games.items():
        expected = manifest[key]
        if "unique_frames" in expected:
            assert game["frame_count"] == expected["unique_frames"], key
        # games-2 records count frame events as written, rollback copies included.
        assert game["frame_count"] + game["rollback_frames"] == expected["frames"], key
        assert stage_name(game["stage"]) == expected["stage"], key
        assert [character_name(p["character"]) for p in game["players"]] == expected["characters"], key
        if "end_method" in expected:
            assert game["end_method"] == expected["end_method"], key
            assert [p["port"] for p in game["players"]] == [int(p["port"][1]) for p in expected["players"]]
            assert sorted({c for p in game["players"] for c in p["internal_characters"]}) == \
                sorted(expected["internal_chars_seen"]), key
        checked += 1
    assert checked >= 300


def test_frame_ids_unique_increasing_and_blocks_aligned(full_dataset):
    dataset, _ = full_dataset
    for game in dataset.games.to_pylist()[:40]:
        frames = dataset.frames(game["game_id"], columns=["frame", "port", "follower"])
        ids = frames.column("frame").to_numpy()
        blocks = len(ids) // game["frame_count"]
        assert blocks * game["frame_count"] == len(ids)
        for block in ids.reshape(blocks, -1):
            assert block[0] == game["first_frame"] and block[-1] == game["last_frame"]
            assert np.all(np.diff(block) == 1), "unique, increasing, no gaps"


def test_rollback_keeps_the_last_copy(replays, manifest, tmp_path):
    name = min((r["size_bytes"], n) for (a, n), r in manifest.items()
               if a == "fixtures.zip" and r.get("rollback_frames", 0) > 0 and r.get("n_players") == 2)[1]
    [path] = extract_members(replays / "fixtures.zip", [name], tmp_path / "in")
    ingest([path], tmp_path / "ds")
    dataset = Dataset(tmp_path / "ds")
    [game] = dataset.games.to_pylist()
    assert game["rollback_frames"] == manifest[("fixtures.zip", name)]["rollback_frames"] > 0

    raw = _peppi.read_slippi(str(path), False).frames
    raw_ids = raw.field("id").to_numpy()
    p1 = raw.field("ports").field("P1").field("leader").field("post")
    raw_x = p1.field("position").field("x").to_numpy(zero_copy_only=False)
    raw_state = p1.field("state").to_numpy(zero_copy_only=False)
    repeated = [i for i in np.unique(raw_ids) if (raw_ids == i).sum() > 1]
    assert repeated
    frames = dataset.frames(game["game_id"]).filter(pc.equal(dataset.frames(game["game_id"])["port"], 1))
    stored = dict(zip(frames["frame"].to_pylist(), zip(frames["post_position_x"].to_pylist(),
                                                        frames["post_state"].to_pylist())))
    for frame_id in repeated:
        last = np.flatnonzero(raw_ids == frame_id)[-1]
        assert stored[int(frame_id)] == (pytest.approx(float(raw_x[last])), int(raw_state[last]))


def _dataclass_columns(side, prefix: str) -> dict[str, np.ndarray]:
    """peppi-py's high-level dataclasses, flattened to our column names."""
    import dataclasses

    columns = {}
    for field in dataclasses.fields(side):
        value = getattr(side, field.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            columns.update(_dataclass_columns(value, f"{prefix}_{field.name}"))
        elif isinstance(value, tuple):
            for i, part in enumerate(value):
                columns[f"{prefix}_{field.name}_{i}"] = part.to_numpy(zero_copy_only=False)
        else:
            columns[f"{prefix}_{field.name}"] = value.to_numpy(zero_copy_only=False)
    return columns


def assert_stored_equals_peppi(dataset: Dataset, game_id: str, path) -> int:
    """Every player column peppi-py's dataclasses give for the file at ``path`` equals the stored game's (rollback
    copies removed), and the fields its version predates are null; returns the number of columns compared."""
    game = read_slippi(str(path))
    ids = game.frames.id.to_numpy()
    keep = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]
    record = dataset.game(game_id)
    frames = dataset.frames(game_id)
    compared = 0
    for index, port in enumerate(game.frames.ports):
        port_number = int(game.start.players[index].port) + 1
        rows = frames.filter(pc.and_(pc.equal(frames["port"], port_number), pc.invert(frames["follower"])))
        expected = {**_dataclass_columns(port.leader.pre, "pre"), **_dataclass_columns(port.leader.post, "post")}
        assert set(expected) <= set(PLAYER_FIELD_NAMES)
        for name, values in expected.items():
            stored = rows[name].to_numpy(zero_copy_only=False)
            np.testing.assert_array_equal(stored, values[keep], err_msg=f"{path} {name}")
            compared += 1
        absent = set(PLAYER_FIELD_NAMES) - set(expected) - {"pre_raw_analog_cstick_x", "pre_raw_analog_cstick_y",
                                                             "post_last_hit_by_instance", "post_instance_id"}
        for name in absent:  # fields the version predates are null, never zero
            assert rows[name].null_count == rows.num_rows, name
            assert name not in record["fields"]
    return compared


@pytest.mark.parametrize("archive", ["fixtures.zip", "games-1.zip"])
def test_stored_columns_equal_peppi(replays, manifest, archive, tmp_path):
    names = pick_members(manifest, archive, 3, n_players=2)
    paths = extract_members(replays / archive, names, tmp_path / "in")
    ingest(paths, tmp_path / "ds")
    dataset = Dataset(tmp_path / "ds")
    sources = {g["source"]: g["game_id"] for g in dataset.games.to_pylist()}
    assert sum(assert_stored_equals_peppi(dataset, sources[str(path)], path) for path in paths) > 100


def test_old_version_fields_are_null_and_listed(full_dataset):
    dataset, _ = full_dataset
    old = [g for g in dataset.games.to_pylist() if g["slippi_version"].startswith("1.")]
    new = [g for g in dataset.games.to_pylist() if tuple(map(int, g["slippi_version"].split("."))) >= (3, 15)]
    assert old and new
    frames = dataset.frames(old[0]["game_id"], columns=["post_velocities_self_y", "post_hitlag", "post_position_x"])
    assert frames["post_velocities_self_y"].null_count == frames.num_rows
    assert frames["post_position_x"].null_count == 0
    assert "post_velocities_self_y" not in old[0]["fields"]
    assert {"post_velocities_self_y", "post_hitlag", "pre_raw_analog_y"} <= set(new[0]["fields"])


def test_items_and_followers_are_kept(full_dataset, manifest):
    dataset, _ = full_dataset
    games = dataset.games.to_pylist()
    with_items = [g for g in games if g["has_items"]]
    assert with_items
    items = dataset.items(with_items[0]["game_id"])
    assert items.num_rows == with_items[0]["item_rows"] > 0
    assert set(items.column_names) >= {"type", "state", "owner", "position_x", "velocity_y", "damage", "timer", "id"}
    # The manifest counts item observations over every frame record, rolled-back copies included.
    expected_items = {r["sha256"]: r["item_observations"] for r in manifest.values()
                      if r.get("item_observations") and r["rollback_frames"] == 0}
    compared = [g for g in with_items if g["game_id"] in expected_items]
    assert compared
    for game in compared:
        assert game["item_rows"] == expected_items[game["game_id"]]
    nana = [g for g in games if g["has_follower"]]
    assert nana
    frames = dataset.frames(nana[0]["game_id"], columns=["follower", "post_character"])
    followers = frames.filter(frames["follower"])
    assert followers.num_rows == nana[0]["frame_count"]
    assert 11 in set(followers["post_character"].drop_null().to_pylist())  # internal id of Nana


def test_names_are_dropped_unless_kept(replays, manifest, tmp_path):
    [name] = [n for (a, n), r in manifest.items() if a == "games-2.zip"][:1]
    paths = extract_members(replays / "games-2.zip", [name], tmp_path / "in")
    ingest(paths, tmp_path / "anon")
    ingest(paths, tmp_path / "named", keep_names=True)
    anonymous = Dataset(tmp_path / "anon").games.to_pylist()[0]
    named = Dataset(tmp_path / "named").games.to_pylist()[0]
    assert all(p["netplay_code"] is None and p["netplay_name"] is None for p in anonymous["players"])
    assert any(p["netplay_code"] for p in named["players"])
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "anon").rglob("*") if p.is_file())
    for player in named["players"]:
        if player["netplay_code"]:
            assert player["netplay_code"].encode() not in on_disk


def test_schema_is_uniform_across_versions(full_dataset):
    dataset, _ = full_dataset
    assert dataset.scan_frames().schema.equals(FRAME_SCHEMA)
    assert dataset.scan_frames().count_rows() > 2_000_000
