"""The Slippi replay writer: real games and synthetic ones round-trip through peppi (both APIs) and py-slippi."""

from __future__ import annotations

import os
import struct
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import peppi_py
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import slippi
from peppi_py import _peppi

from meleewm.melee import external_to_internal
from meleewm import atomic
from meleewm.replay.writer import SlpGame, SlpPlayer, encode_slp, game_from_dataset, write_slp
from meleewm.replay.reader import parse_replay
from meleewm.replay.schema import FRAME_FIELDS, FRAME_SCHEMA, POST_FIELDS, PRE_FIELDS

PLAYER_COLUMNS = [c.name for c in PRE_FIELDS + POST_FIELDS]
FRAME_LEVEL = [c.name for c in FRAME_FIELDS]


# -- helpers -------------------------------------------------------------------------------------------------

def _split_raw(data: bytes) -> tuple[dict[int, int], list[tuple[int, bytes]], bytes]:
    """Our own minimal reading of a .slp: payload sizes, events, and the bytes after the raw element."""
    assert data[:11] == b"{U\x03raw[$U#l"
    (length,) = struct.unpack(">i", data[11:15])
    raw = data[15:15 + length]
    assert raw[0] == 0x35
    sizes = {raw[2 + 3 * i]: struct.unpack(">H", raw[3 + 3 * i:5 + 3 * i])[0] for i in range((raw[1] - 1) // 3)}
    pos, events = 1 + raw[1], []
    while pos < len(raw):
        code = raw[pos]
        events.append((code, raw[pos + 1:pos + 1 + sizes[code]]))
        pos += 1 + sizes[code]
    assert pos == len(raw)
    return sizes, events, data[15 + length:]


def _same(a: pa.ChunkedArray | pa.Array, b: pa.ChunkedArray | pa.Array, name: str) -> None:
    """Same validity and the same values; floats compared bit for bit."""
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    b = b.combine_chunks() if isinstance(b, pa.ChunkedArray) else b
    assert len(a) == len(b), name
    assert np.array_equal(pc.is_valid(a).to_numpy(zero_copy_only=False),
                          pc.is_valid(b).to_numpy(zero_copy_only=False)), f"{name}: nulls differ"
    av, bv = _filled(a), _filled(b)
    if av.dtype == np.float32:
        av, bv = av.view(np.uint32), bv.astype(np.float32).view(np.uint32)
    bad = np.nonzero(av != bv)[0]
    assert len(bad) == 0, f"{name}: {len(bad)} values differ, first at row {bad[0]}: {av[bad[0]]} != {bv[bad[0]]}"


def _filled(a: pa.Array) -> np.ndarray:
    zero = pa.scalar(False) if pa.types.is_boolean(a.type) else pa.scalar(0, a.type)
    return pc.fill_null(a, zero).to_numpy(zero_copy_only=False)


def _dataclass_leaf(data, column: str):
    """``post_velocities_self_y`` -> data.post.velocities.self_y on peppi_py's dataclasses (None if absent)."""
    side, rest = column.split("_", 1)
    node = getattr(data, side)
    tokens = rest.split("_")
    while tokens:
        if isinstance(node, tuple):
            node = node[int(tokens.pop(0))]
            continue
        for n in range(len(tokens), 0, -1):
            name = "_".join(tokens[:n])
            if hasattr(node, name):
                node, tokens = getattr(node, name), tokens[n:]
                break
        else:
            return None  # a raw-only field (not in the dataclasses)
    return node


def _record_players(record: dict) -> list[tuple]:
    return [(p["port"], p["character"], p["type"], p["costume"], p["internal_characters"], p["start_stocks"])
            for p in record["players"]]


# -- real games ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("member", ["recent", "recent_316", "older", "ice_climbers"])
def test_real_game_round_trips(member, fixtures_dataset, tmp_path):
    dataset, ids = fixtures_dataset
    game_id = ids[member]
    record = dataset.game(game_id)
    original = dataset.frames(game_id)
    path = write_slp(game_from_dataset(dataset, game_id), tmp_path / "out.slp")
    data = path.read_bytes()

    # Raw peppi (through the project's reader, which flattens peppi_py._peppi.read_slippi's struct array).
    back = parse_replay(data, "written")
    written = back.record
    assert written["slippi_version"] == "3.18.0"
    for key in ("stage", "frame_count", "first_frame", "last_frame", "n_players", "is_teams", "end_method",
                "lras_initiator", "timer_seconds", "scene_major"):
        if record[key] is not None:
            assert written[key] == record[key], key
    assert written["rollback_frames"] == 0
    assert _record_players(written) == _record_players(record)
    if all(p["placement"] is not None for p in record["players"]):
        assert [p["placement"] for p in written["players"]] == [p["placement"] for p in record["players"]]
    assert written["has_follower"] == record["has_follower"]

    got = back.frames
    assert got.num_rows == original.num_rows
    for key in ("frame", "port", "follower"):
        _same(got.column(key), original.column(key), key)
    fields = record["fields"]
    assert any(f.startswith("post_") for f in fields)
    for name in fields:
        _same(got.column(name), original.column(name), name)

    # Items and projectiles: every one the recording had, field for field (those its version recorded).
    items = dataset.items(game_id)
    assert back.items.num_rows == items.num_rows == record["item_rows"]
    for name in items.column_names:
        if name != "game_id" and items.column(name).null_count < items.num_rows:
            _same(back.items.column(name), items.column(name), f"items.{name}")

    # The raw struct array read directly: one record per frame, ids -123.. with no repeats.
    raw = _peppi.read_slippi(str(path), False)
    ids_raw = raw.frames.field("id").to_numpy()
    assert np.array_equal(ids_raw, np.arange(-123, record["last_frame"] + 1))
    assert raw.start["stage"] == record["stage"]
    assert [p["character"] for p in raw.start["players"]] == [p["character"] for p in record["players"]]
    assert raw.metadata["lastFrame"] == record["last_frame"]

    # peppi_py's dataclasses: start, end, and every leader field the input had that the dataclasses expose.
    game = peppi_py.read_slippi(str(path))
    assert game.start.slippi.version == (3, 18, 0)
    assert game.start.stage == record["stage"]
    assert [(int(p.port) + 1, p.character) for p in game.start.players] == \
        [(p["port"], p["character"]) for p in record["players"]]
    assert len(game.frames.id) == record["frame_count"]
    checked = 0
    for i, player in enumerate(record["players"]):
        leader = game.frames.ports[i].leader
        rows = original.filter(pc.and_(pc.equal(original.column("port"), player["port"]),
                                       pc.invert(original.column("follower"))))
        assert set(pc.unique(pc.drop_null(leader.post.character)).to_pylist()) == set(player["internal_characters"])
        for name in fields:
            if name in FRAME_LEVEL:
                continue
            leaf = _dataclass_leaf(leader, name)
            if leaf is None:
                continue
            _same(leaf, rows.column(name), f"port {player['port']} {name}")
            checked += 1
    assert checked >= 10

    # py-slippi, an independent parser.
    parsed = slippi.Game(str(path))
    assert len(parsed.frames) == record["frame_count"]
    assert parsed.start.stage.value == record["stage"]
    for player in record["players"]:
        assert parsed.start.players[player["port"] - 1].character.value == player["character"]
    assert [p is not None for p in parsed.start.players] == [
        any(p["port"] == port for p in record["players"]) for port in range(1, 5)]
    last = parsed.frames[-1]
    for player in record["players"]:
        port = last.ports[player["port"] - 1]
        assert port.leader.post.character.value in player["internal_characters"]


def test_recent_game_frames_are_byte_identical_to_the_recording(fixtures_dataset, replay_files, tmp_path):
    """A 3.18.0 recording holds every field we write, so our frame events equal Slippi's byte for byte."""
    dataset, ids = fixtures_dataset
    ours = encode_slp(game_from_dataset(dataset, ids["recent"]))
    recorded = replay_files["recent"].read_bytes()
    frame_events = (0x3A, 0x37, 0x38, 0x3B, 0x3C)
    _, ours_events, _ = _split_raw(ours)
    _, recorded_events, _ = _split_raw(recorded)
    mine = [e for e in ours_events if e[0] in frame_events]
    theirs = [e for e in recorded_events if e[0] in frame_events]
    assert len(mine) == len(theirs) == 2 * 941 + 2 * 2 * 941
    assert mine == theirs
    assert [e for e in ours_events if e[0] == 0x39] == [e for e in recorded_events if e[0] == 0x39]
    # Game Start: identical but for the Game Start random seed, which the dataset does not keep.
    (mine_start,) = [e for c, e in ours_events if c == 0x36]
    (their_start,) = [e for c, e in recorded_events if c == 0x36]
    differ = [i for i in range(len(mine_start)) if mine_start[i] != their_start[i]]
    assert len(mine_start) == len(their_start) == 760
    assert set(differ) <= set(range(0x13C, 0x140)), [hex(i) for i in differ]


def test_prefix_of_a_real_game(fixtures_dataset, tmp_path):
    dataset, ids = fixtures_dataset
    game = game_from_dataset(dataset, ids["recent_316"], last_frame=100)
    assert game.end_method == "NO_CONTEST"
    path = write_slp(game, tmp_path / "prefix.slp")
    read = peppi_py.read_slippi(str(path))
    assert read.frames.id.to_pylist() == list(range(-123, 101))
    assert read.end.method == peppi_py.game.EndMethod.NO_CONTEST
    assert read.metadata["lastFrame"] == 100
    assert len(slippi.Game(str(path)).frames) == 224


# -- synthetic games -----------------------------------------------------------------------------------------

N_FRAMES = 200
SYNTH_PLAYERS = [SlpPlayer(port=1, character=2, costume=1), SlpPlayer(port=4, character=9, type="cpu", cpu_level=9)]


def _random_column(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    dtype = pa.array([0], FRAME_SCHEMA.field(name).type).to_numpy().dtype
    if name.endswith("direction"):
        return rng.choice(np.array([-1.0, 1.0], np.float32), n)
    if name == "post_l_cancel":
        return rng.integers(0, 3, n).astype(dtype)
    if name == "post_last_hit_by":
        return rng.choice(np.array([0, 1, 2, 3, 6], dtype), n)
    if dtype.kind == "f":
        return (rng.normal(size=n) * 50).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, n, dtype=np.int64).astype(dtype)


def _synthetic_frames(rng: np.random.Generator) -> dict[str, np.ndarray]:
    frame = np.tile(np.arange(-123, -123 + N_FRAMES, dtype=np.int32), 2)
    port = np.repeat(np.array([1, 4], np.uint8), N_FRAMES)
    columns = {"frame": frame, "port": port}
    for name in PLAYER_COLUMNS + FRAME_LEVEL:
        columns[name] = _random_column(name, len(frame), rng)
    columns["post_character"] = np.repeat(np.array([external_to_internal(2), external_to_internal(9)], np.uint8),
                                          N_FRAMES)
    columns["post_stocks"] = rng.integers(1, 5, len(frame)).astype(np.uint8)
    columns["end_latest_finalized_frame"] = frame.copy()  # a written file has no rollback
    for name in FRAME_LEVEL:  # frame-level values are the same on every row of a frame
        columns[name] = np.tile(columns[name][:N_FRAMES], 2)
    return columns


def test_synthetic_game_round_trips(tmp_path):
    rng = np.random.default_rng(7)
    columns = _synthetic_frames(rng)
    game = SlpGame(stage=31, players=SYNTH_PLAYERS, frames=columns, end_method="GAME", lras_initiator=None,
                   placements={1: 1, 4: 0}, start_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
                   random_seed=0x12345678)
    path = write_slp(game, tmp_path / "synthetic.slp")

    back = parse_replay(path.read_bytes(), "synthetic")
    assert back.record["frame_count"] == N_FRAMES
    assert back.record["stage"] == 31
    assert [(p["port"], p["character"], p["type"], p["costume"]) for p in back.record["players"]] == \
        [(1, 2, "human", 1), (4, 9, "cpu", 0)]
    assert back.record["end_method"] == "GAME"
    assert [p["placement"] for p in back.record["players"]] == [1, 0]
    assert set(back.record["fields"]) == set(PLAYER_COLUMNS + FRAME_LEVEL)
    for name in ["frame", "port"] + PLAYER_COLUMNS + FRAME_LEVEL:
        _same(back.frames.column(name), pa.array(columns[name]), name)

    game_read = peppi_py.read_slippi(str(path))
    assert game_read.start.random_seed == 0x12345678
    assert game_read.start.players[1].cpu_level == 9
    assert game_read.end.lras_initiator is None
    assert game_read.metadata["startAt"] == "2024-05-06T07:08:09Z"
    assert game_read.metadata["players"]["3"]["characters"] == {"18": N_FRAMES}
    assert game_read.metadata["consoleNick"] == "meleewm"
    leader = game_read.frames.ports[1].leader
    _same(leader.post.velocities.knockback_x, pa.array(columns["post_velocities_knockback_x"][N_FRAMES:]), "kb x")
    _same(leader.pre.joystick.y, pa.array(columns["pre_joystick_y"][N_FRAMES:]), "joystick y")

    parsed = slippi.Game(str(path))
    assert len(parsed.frames) == N_FRAMES
    assert parsed.start.stage == slippi.id.Stage.BATTLEFIELD
    assert parsed.start.players[0].character == slippi.id.CSSCharacter.FOX
    assert parsed.start.players[3].character == slippi.id.CSSCharacter.MARTH
    assert parsed.start.players[1] is None and parsed.start.players[2] is None
    assert parsed.frames[50].ports[3].leader.post.position.x == columns["post_position_x"][N_FRAMES + 50]
    assert parsed.metadata.duration == N_FRAMES


def test_missing_fields_get_documented_defaults(tmp_path):
    rng = np.random.default_rng(3)
    n = 120
    frame = np.tile(np.arange(-123, -123 + n, dtype=np.int32), 2)
    port = np.repeat(np.array([2, 3], np.uint8), n)
    state = np.repeat(rng.integers(14, 40, 2 * n // 10), 10).astype(np.uint16)
    percent = np.ma.masked_array(rng.uniform(0, 100, 2 * n).astype(np.float32), mask=np.zeros(2 * n, bool))
    percent.mask[[5, 6, n + 9]] = True
    columns = {
        "frame": frame, "port": port,
        "post_state": state,
        "post_position_x": rng.normal(size=2 * n).astype(np.float32),
        "post_position_y": rng.normal(size=2 * n).astype(np.float32),
        "post_percent": percent,
        "pre_joystick_x": rng.uniform(-1, 1, 2 * n).astype(np.float32),
        "pre_cstick_y": rng.uniform(-1, 1, 2 * n).astype(np.float32),
        "pre_buttons_physical": rng.integers(0, 2**13, 2 * n).astype(np.uint16),
    }
    # An eliminated player: every field null on port 3's last 20 frames -> no events there.
    for name in ("post_state", "post_position_x", "post_position_y"):
        columns[name] = np.ma.masked_array(columns[name], mask=np.zeros(2 * n, bool))
        columns[name].mask[2 * n - 20:] = True
    columns["post_percent"].mask[2 * n - 20:] = True
    for name in ("pre_joystick_x", "pre_cstick_y", "pre_buttons_physical"):
        columns[name] = np.ma.masked_array(columns[name], mask=columns["post_state"].mask.copy())
    players = [SlpPlayer(port=2, character=20, stocks=3), SlpPlayer(port=3, character=14)]
    path = write_slp(SlpGame(stage=8, players=players, frames=columns), tmp_path / "defaults.slp")

    got = parse_replay(path.read_bytes(), "defaults").frames
    def col(name: str) -> np.ndarray:
        return pc.fill_null(pc.cast(got.column(name), pa.float64()), -999).to_numpy().reshape(2, n)

    valid = pc.is_valid(got.column("post_state")).to_numpy().reshape(2, n)
    assert valid[0].all() and valid[1, :n - 20].all() and not valid[1, n - 20:].any()
    live = valid

    def src(name: str) -> np.ndarray:
        return np.ma.getdata(columns[name]).astype(np.float64).reshape(2, n)

    # Carried values: pre = previous frame's post (the first frame takes its own).
    for name in ("state", "position_x", "position_y"):
        expected = src(f"post_{name}").copy()
        expected[:, 1:] = src(f"post_{name}")[:, :-1]
        assert np.array_equal(col(f"pre_{name}")[live], expected[live]), name
    assert np.array_equal(col("post_state")[live], src("post_state")[live])
    # Null post percents (no pre percents given) hold the last known value.
    held = np.float32(src("post_percent")[0, 4])
    assert col("post_percent")[0, 5] == held and col("post_percent")[0, 6] == held
    assert col("pre_percent")[0, 7] == held and col("pre_percent")[0, 8] == np.float32(src("post_percent")[0, 7])
    assert np.all(col("post_direction")[live] == 1.0) and np.all(col("pre_direction")[live] == 1.0)
    # state age: frames since the state changed.
    state = src("post_state")[0]
    age = col("post_state_age")[0]
    for f in range(1, n):
        assert age[f] == (age[f - 1] + 1 if state[f] == state[f - 1] else 0)
    assert np.all(col("post_character")[0][live[0]] == external_to_internal(20))
    assert np.all(col("post_character")[1][live[1]] == external_to_internal(14))
    assert np.all(col("post_stocks")[0] == 3) and np.all(col("post_stocks")[1][live[1]] == 4)
    assert np.all(col("post_shield")[live] == 60.0)
    assert np.all(col("post_last_hit_by")[live] == 6)
    assert np.all(col("post_velocities_self_y")[live] == 0)
    # Controller: raw sticks from processed ones, processed buttons from physical ones.
    assert np.array_equal(col("pre_raw_analog_x")[live], np.rint(src("pre_joystick_x")[live].astype(np.float32)
                                                                 .astype(np.float64) * 80))
    assert np.array_equal(col("pre_raw_analog_cstick_y")[live],
                          np.rint(src("pre_cstick_y")[live].astype(np.float32).astype(np.float64) * 80))
    assert np.array_equal(col("pre_buttons")[live], src("pre_buttons_physical")[live])
    # Frame level.
    frames = np.arange(-123, -123 + n)
    assert np.array_equal(col("start_scene_frame_counter")[0], frames + 123)
    assert np.array_equal(col("end_latest_finalized_frame")[0], frames)
    assert np.all(col("start_random_seed")[0] == 0) and np.all(col("pre_random_seed")[live] == 0)
    # Placements from the final frame: stocks first.
    end = peppi_py.read_slippi(str(path)).end
    assert end.method == peppi_py.game.EndMethod.NO_CONTEST
    assert [(int(p.port) + 1, p.placement) for p in end.players] == [(2, 1), (3, 0)]
    parsed = slippi.Game(str(path))
    assert len(parsed.frames) == n
    assert parsed.frames[-1].ports[2] is None  # eliminated: no data


def test_pre_only_positions_give_post_positions():
    """A missing post value is the next frame's pre value; the last frame's is its own pre value."""
    n = 30
    x = np.arange(n, dtype=np.float32) * 1.5
    frames = {"frame": np.tile(np.arange(-123, -123 + n, dtype=np.int32), 2),
              "port": np.repeat(np.array([1, 2], np.uint8), n), "pre_position_x": np.concatenate([x, -x])}
    players = [SlpPlayer(1, 2), SlpPlayer(2, 9)]
    got = parse_replay(encode_slp(SlpGame(stage=31, players=players, frames=frames)), "x").frames
    post = got.column("post_position_x").to_numpy()[:n]
    assert np.array_equal(post[:-1], x[1:]) and post[-1] == x[-1]
    assert np.array_equal(got.column("pre_position_x").to_numpy()[:n], x)


# -- the file itself -----------------------------------------------------------------------------------------

def _minimal_game(**kwargs) -> SlpGame:
    frames = {"frame": np.tile(np.arange(-123, -100, dtype=np.int32), 2),
              "port": np.repeat(np.array([1, 2], np.uint8), 23)}
    return SlpGame(stage=32, players=[SlpPlayer(1, 2), SlpPlayer(2, 20, costume=2)], frames=frames, **kwargs)


def test_file_layout_follows_the_3_18_spec():
    data = encode_slp(_minimal_game(start_at=datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)))
    sizes, events, tail = _split_raw(data)
    assert sizes == {0x36: 760, 0x37: 66, 0x38: 84, 0x39: 6, 0x3A: 12, 0x3C: 8, 0x3B: 44}
    codes = [c for c, _ in events]
    assert codes[0] == 0x36 and codes[-1] == 0x39
    assert codes[1:7] == [0x3A, 0x37, 0x37, 0x38, 0x38, 0x3C]
    assert len(codes) == 2 + 23 * 6
    frame_of = {c: [struct.unpack(">i", e[:4])[0] for cc, e in events if cc == c] for c in (0x3A, 0x3C)}
    assert frame_of[0x3A] == frame_of[0x3C] == list(range(-123, -100))

    start = events[0][1]
    assert start[:4] == bytes([3, 18, 0, 0])
    block = start[4:4 + 312]
    assert struct.unpack(">H", block[0x0E:0x10])[0] == 32
    assert struct.unpack(">I", block[0x10:0x14])[0] == 480
    assert [block[0x60 + 0x24 * i + 1] for i in range(6)] == [0, 0, 3, 3, 3, 3]  # P3-P6 empty
    assert [block[0x60 + 0x24 * i] for i in range(2)] == [2, 20]
    assert block[0x60 + 0x24 + 3] == 2  # P2 costume
    assert start[0x1A2:0x1A4] == bytes([2, 2])  # scene minor, major (payload offsets = spec offsets - 1)
    assert start[0x2BC] == 1  # English

    end = events[-1][1]
    assert end[0] == 7 and struct.unpack(">b", end[1:2])[0] == -1
    assert tail[:10] == b"U\x08metadata" and tail[-2:] == b"}}"
    meta = _peppi_metadata(data)
    assert meta == {"startAt": "2020-01-02T03:04:05Z", "lastFrame": -101, "playedOn": "dolphin",
                    "consoleNick": "meleewm",
                    "players": {"0": {"names": {}, "characters": {"1": 23}},
                                "1": {"names": {}, "characters": {"22": 23}}}}


def test_items_are_written_after_the_posts_of_their_frame():
    """Two lasers on frame -110 and one on -105 (given out of order): Item Update events where Slippi puts them,
    with the spec's offsets, and read back by peppi with their values."""
    items = {"frame": np.array([-105, -110, -110], np.int32), "type": np.array([54, 54, 55], np.uint16),
             "position_x": np.array([10.5, -3.0, 7.25], np.float32),
             "velocity_x": np.array([-2.0, 3.5, 0.0], np.float32), "id": np.array([2, 0, 1], np.uint32),
             "owner": np.array([1, 0, 0], np.int8)}
    data = encode_slp(_minimal_game(items=items))
    _, events, _ = _split_raw(data)
    codes = [c for c, _ in events]
    first = codes.index(0x3B)
    assert codes[first - 2:first + 3] == [0x38, 0x38, 0x3B, 0x3B, 0x3C]
    laser = events[first][1]          # payload offsets = spec offsets - 1
    assert struct.unpack(">i", laser[0:4])[0] == -110 and struct.unpack(">H", laser[4:6])[0] == 54
    assert struct.unpack(">f", laser[7:11])[0] == 1.0                     # direction: the sign of velocity_x
    assert struct.unpack(">f", laser[19:23])[0] == -3.0 and struct.unpack(">I", laser[33:37])[0] == 0
    assert struct.unpack(">b", laser[41:42])[0] == 0
    back = parse_replay(data, "written").items
    assert back.column("frame").to_pylist() == [-110, -110, -105]
    assert back.column("id").to_pylist() == [0, 1, 2] and back.column("type").to_pylist() == [54, 55, 54]
    assert back.column("position_x").to_pylist() == [-3.0, 7.25, 10.5]
    assert back.column("owner").to_pylist() == [0, 0, 1]
    half_known = {**items, "direction": pa.array([None, -1.0, None], pa.float32())}
    back = parse_replay(encode_slp(_minimal_game(items=half_known)), "written").items
    assert back.column("direction").to_pylist() == [-1.0, 0.0, -1.0]    # a null takes the sign of velocity_x
    with pytest.raises(ValueError, match="outside the game's frames"):
        encode_slp(_minimal_game(items={"frame": np.array([-50], np.int32)}))


def _peppi_metadata(data: bytes) -> dict:
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".slp") as tmp:
        tmp.write(data)
        tmp.flush()
        return peppi_py.read_slippi(tmp.name, skip_frames=True).metadata


def test_names_and_played_on_are_written():
    players = [SlpPlayer(1, 2, display_name="meleewm", connect_code="WM#001"), SlpPlayer(2, 20)]
    game = SlpGame(stage=31, players=players, frames=_minimal_game().frames, played_on="meleewm",
                   console_nick=None)
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = write_slp(game, Path(folder) / "named.slp")
        read = peppi_py.read_slippi(str(path))
        assert read.start.players[0].netplay.name == "meleewm"
        assert read.start.players[0].netplay.code == "WM＃001"  # full-width '#', as in recorded games
        assert read.metadata["playedOn"] == "meleewm"
        assert "consoleNick" not in read.metadata
        assert read.metadata["players"]["0"]["names"] == {"netplay": "meleewm", "code": "WM#001"}
        # py-slippi 1.6.2 only knows four platforms: this is why "dolphin" is the default.
        with pytest.raises(Exception):
            slippi.Game(str(path))


def test_bad_input_is_refused():
    good = _minimal_game().frames
    late = {**good, "frame": good["frame"] + 123}
    with pytest.raises(ValueError, match="start at -123"):
        encode_slp(SlpGame(stage=32, players=_minimal_game().players, frames=late))
    gap = {k: v[np.arange(46) != 10] for k, v in good.items()}
    gap = {**gap, "port": np.full(45, 1, np.uint8)}
    with pytest.raises(ValueError, match="increase by one|two rows|no data"):
        encode_slp(SlpGame(stage=32, players=[SlpPlayer(1, 2)], frames=gap))
    with pytest.raises(ValueError, match="ports"):
        encode_slp(SlpGame(stage=32, players=[SlpPlayer(1, 2)], frames=good))
    with pytest.raises(ValueError, match="two rows"):
        encode_slp(SlpGame(stage=32, players=[SlpPlayer(1, 2)],
                           frames={"frame": np.array([-123, -123], np.int32), "port": np.array([1, 1], np.uint8)}))
    with pytest.raises(ValueError, match="no data on frame -123"):
        encode_slp(SlpGame(stage=32, players=[SlpPlayer(1, 2), SlpPlayer(2, 9)],
                           frames={"frame": np.array([-123, -122], np.int32), "port": np.array([1, 2], np.uint8)}))
    with pytest.raises(ValueError, match="end_method"):
        encode_slp(_minimal_game(end_method="QUIT"))
    with pytest.raises(ValueError, match="character"):
        encode_slp(SlpGame(stage=32, players=[SlpPlayer(1, 99)], frames={"frame": np.array([-123], np.int32),
                                                                         "port": np.array([1], np.uint8)}))


# -- atomic writes -------------------------------------------------------------------------------------------

def test_write_is_atomic(tmp_path, monkeypatch):
    dest = tmp_path / "game.slp"
    game = _minimal_game()
    expected = encode_slp(game)
    seen = []
    real_replace = os.replace

    def checking_replace(src, dst):
        src, dst = Path(src), Path(dst)
        assert dst == dest and src != dest and src.parent == dest.parent
        assert not dest.exists()                    # nothing at the destination until the rename
        seen.append(len(src.read_bytes()))          # the temporary file is complete before it is renamed
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", checking_replace)
    write_slp(game, dest)
    assert seen == [len(expected)]
    assert dest.read_bytes()[:200] == expected[:200] and dest.stat().st_size == len(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["game.slp"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    dest = tmp_path / "game.slp"
    dest.write_bytes(b"previous replay")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_slp(_minimal_game(), dest)
    assert dest.read_bytes() == b"previous replay"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["game.slp"]
