"""Game facts: unit checks plus checks against the real replays in shared/replays."""

from __future__ import annotations

import collections
import json
import zipfile

import numpy as np
import pytest

from meleewm.melee import (
    ACTION_NAMES,
    DEAD_STATES,
    DIGITAL_BUTTONS,
    EXTERNAL_NAMES,
    FIRST_SPECIAL,
    INTERNAL_NAMES,
    LEGAL_STAGES,
    SURFACE_HEIGHTS,
    PhysicalButton,
    ProcessedButton,
    action_name,
    button_bits,
    character_name,
    external_to_internal,
    geometry,
    in_blast_zone,
    internal_to_external,
    is_dead,
    stage_name,
)
from tests.conftest import REPLAYS

needs_replays = pytest.mark.skipif(not (REPLAYS / "manifest.json").is_file(), reason=f"no replays at {REPLAYS}")


def _manifest() -> list[dict]:
    return json.loads((REPLAYS / "manifest.json").read_text())["files"]


# ---------------------------------------------------------------- characters

def test_character_tables():
    assert len(EXTERNAL_NAMES) == 33 and len(INTERNAL_NAMES) == 33
    assert [character_name(i) for i in (0, 2, 9, 19, 20, 25)] == [
        "Captain Falcon", "Fox", "Marth", "Sheik", "Falco", "Ganondorf"]
    assert [character_name(i, internal=True) for i in (0, 1, 2, 7, 18, 19, 22)] == [
        "Mario", "Fox", "Captain Falcon", "Sheik", "Marth", "Zelda", "Falco"]
    assert external_to_internal(14) == 10  # Ice Climbers -> Popo
    assert internal_to_external(10) == internal_to_external(11) == 14  # Popo, Nana
    for ext in range(26):  # round trip for every selectable character
        assert internal_to_external(external_to_internal(ext)) == ext
    with pytest.raises(ValueError):
        external_to_internal(99)


@needs_replays
def test_external_to_internal_matches_replays():
    checked = 0
    for rec in _manifest():
        players, seen = rec.get("players") or [], rec.get("internal_chars_seen")
        ext = {p["character_id"] for p in players}
        if rec.get("n_players") != 2 or seen is None or ext & {18, 19}:  # Zelda/Sheik transform
            continue
        assert {external_to_internal(c) for c in ext} == set(seen), rec["file"]
        for p in players:
            assert character_name(p["character_id"]) == p["character"]
        checked += 1
    assert checked > 100


# ---------------------------------------------------------------- stages

def test_stage_geometry_sane():
    assert set(LEGAL_STAGES) == {2, 3, 8, 28, 31, 32}
    for sid in LEGAL_STAGES:
        g = geometry(sid)
        assert g is not None and g.name == stage_name(sid)
        assert g.blast_left < 0 < g.blast_right and g.blast_bottom < 0 < g.blast_top
        assert g.blast_left < -g.ledge_x < 0 < g.ledge_x < g.blast_right
        for y, xl, xr in g.platforms:  # Yoshi's side platforms overhang the ledge by 0.6
            assert -g.ledge_x - 1 < xl < xr < g.ledge_x + 1 and 0 < y < g.blast_top
    assert geometry(32).platforms == () and len(geometry(31).platforms) == 3
    assert geometry(4) is None and stage_name(4) == "Princess Peach's Castle"


def test_in_blast_zone_vectorized():
    x = np.array([0.0, 245.0, 247.0, 0.0, 0.0])
    y = np.array([0.0, 0.0, 0.0, 189.0, -141.0])
    assert in_blast_zone(32, x, y).tolist() == [True, True, False, False, False]
    assert bool(in_blast_zone(31, 0.0, 0.0))
    with pytest.raises(ValueError):
        in_blast_zone(4, 0.0, 0.0)


@needs_replays
def test_stage_names_match_manifest():
    for rec in _manifest():
        if rec.get("stage_id") is not None:
            assert stage_name(rec["stage_id"]) == rec["stage"]


# ---------------------------------------------------------------- actions

def test_action_names():
    assert len(ACTION_NAMES) == FIRST_SPECIAL == 341
    known = {0: "DEAD_DOWN", 12: "ON_HALO_DESCENT", 14: "STANDING", 20: "DASHING", 21: "RUNNING",
             24: "KNEE_BEND", 29: "FALLING", 38: "TUMBLING", 42: "LANDING", 44: "NEUTRAL_ATTACK_1",
             65: "NAIR", 75: "DAMAGE_HIGH_1", 91: "DAMAGE_FLY_ROLL", 179: "SHIELD", 212: "GRAB",
             233: "ROLL_FORWARD", 236: "AIRDODGE", 252: "EDGE_CATCHING", 253: "EDGE_HANGING",
             322: "ENTRY", 340: "BARREL_CANNON_WAIT"}
    assert {i: action_name(i) for i in known} == known
    assert action_name(360) == "SPECIAL_360"
    assert action_name(360, internal_char=1) == "SHINE_START"  # Fox
    assert action_name(354, internal_char=22) == "FIRE_HOLD_AIR"  # Falco
    assert action_name(999, internal_char=1) == "SPECIAL_999"
    assert DEAD_STATES == set(range(11))
    assert is_dead(0) and is_dead(10) and not is_dead(11) and not is_dead(14)
    assert is_dead(np.array([3, 14, 400])).tolist() == [True, False, False]


# ---------------------------------------------------------------- buttons

def test_button_bits_match_spec():
    phys = {"D_LEFT": 0x1, "D_RIGHT": 0x2, "D_DOWN": 0x4, "D_UP": 0x8, "Z": 0x10, "R": 0x20, "L": 0x40,
            "A": 0x100, "B": 0x200, "X": 0x400, "Y": 0x800, "START": 0x1000}
    assert {b.name: b.value for b in PhysicalButton} == phys
    proc = {b.name: b.value for b in ProcessedButton}
    assert {k: proc[k] for k in phys} == phys
    assert proc["JOYSTICK_UP"] == 0x10000 and proc["CSTICK_RIGHT"] == 0x800000
    assert proc["ANY_TRIGGER"] == 0x80000000
    assert set(DIGITAL_BUTTONS) == set(phys)
    bits = button_bits(np.array([0x0100 | 0x0010, 0]))
    assert bits.shape == (2, len(DIGITAL_BUTTONS))
    assert [n for n, b in zip(DIGITAL_BUTTONS, bits[0]) if b] == ["A", "Z"] and not bits[1].any()


# ---------------------------------------------------------------- real games

@pytest.fixture(scope="module")
def real_games(tmp_path_factory):
    peppi = pytest.importorskip("peppi_py")
    archive = REPLAYS / "games-1.zip"
    if not archive.is_file():
        pytest.skip(f"no {archive}")
    recs = [r for r in _manifest() if r.get("archive") == "games-1.zip" and r.get("stage_id") in LEGAL_STAGES]
    picked, stages = [], set()
    for r in recs:  # three games on different stages
        if r["stage_id"] not in stages:
            picked.append(r)
            stages.add(r["stage_id"])
        if len(picked) == 3:
            break
    tmp = tmp_path_factory.mktemp("slp")
    games = []
    with zipfile.ZipFile(archive) as zf:
        for i, r in enumerate(picked):
            path = tmp / f"{i}.slp"
            path.write_bytes(zf.read(r["file"]))
            games.append(peppi.read_slippi(str(path)))
    return games


def _ports(game):
    """Yield (frame ids, post) for every character (leader and follower) of a game."""
    fid = game.frames.id.to_numpy()
    for port in game.frames.ports:
        for data in (port.leader, port.follower):
            if data is not None:
                yield fid, data.post


def _np(arr):
    return arr.to_numpy(zero_copy_only=False)


@needs_replays
def test_frequent_actions_are_named(real_games):
    counts = collections.Counter()
    for game in real_games:
        for _, post in _ports(game):
            counts.update(_np(post.state).tolist())
    frequent = [a for a, _ in counts.most_common(40)]
    assert any(a >= FIRST_SPECIAL for a in counts)  # character-specific states do occur
    for a in frequent:
        if a < FIRST_SPECIAL:
            assert not action_name(a).startswith("SPECIAL_"), a


@needs_replays
def test_positions_inside_blast_zones(real_games):
    for game in real_games:
        g = geometry(game.start.stage)
        for fid, post in _ports(game):
            x, y = _np(post.position.x), _np(post.position.y)
            state = _np(post.state)
            live = (fid >= 0) & ~np.isnan(x) & ~is_dead(state)
            outside = live & ~in_blast_zone(game.start.stage, x, y)
            # The top blast zone only KOs a character in hitstun, so a live one may
            # fly above it for a moment; sides and bottom always KO.
            assert (y[outside] >= g.blast_top).all(), list(zip(fid[outside], state[outside], x[outside], y[outside]))[:5]
            assert live.sum() > 1000


@needs_replays
def test_landings_stand_at_the_surface_heights(real_games):
    """SURFACE_HEIGHTS against peppi's reads: a character landing (airborne, then grounded) on one of those surfaces
    stands at its height."""
    landed = []
    for game in real_games:
        heights = SURFACE_HEIGHTS[game.start.stage]
        for fid, post in _ports(game):
            if post.airborne is None:  # recorded from Slippi 2.0 on
                continue
            air, ground, y = _np(post.airborne).astype(bool), _np(post.ground), _np(post.position.y)
            landing = np.nonzero(air[:-1] & ~air[1:] & (np.diff(fid) == 1))[0] + 1
            landed += [y[i] - heights[int(ground[i])] for i in landing if int(ground[i]) in heights]
    assert len(landed) > 100
    assert (np.abs(landed) < 1e-3).mean() > 0.99
