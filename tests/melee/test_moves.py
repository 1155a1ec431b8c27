"""How long a move lasts, and what follows it (meleewm.melee.moves): the measure, and the table it keeps."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from meleewm.melee.actions import ACTION_IDS
from meleewm.melee.moves import measure_moves, moves
from tests.conftest import REPLAYS

JAB, STANDING, FAIR, FALLING = (ACTION_IDS[n] for n in ("NEUTRAL_ATTACK_1", "STANDING", "FAIR", "FALLING"))
DAMAGE = ACTION_IDS["DAMAGE_HIGH_1"]


def _game(runs: list[tuple[int, int]], air: frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One player's actions, airborne bits and recorded ages (the closed loop's count) from (action, frames) runs."""
    actions = np.concatenate([np.full(n, a) for a, n in runs])
    ages = np.concatenate([np.arange(n, dtype=np.float32) for _, n in runs])
    return actions, np.isin(actions, list(air)), ages


def test_a_move_is_limited_by_its_longest_run_and_followed_by_what_followed_it():
    """Five jabs of 20, 20, 19, 17 and 18 frames (three whole ones: a move of fixed length): the last frame is at age
    19 at most, and standing follows; a jab cut by a hit adds no successor. Standing is held (no limit). Two fair runs
    of the same length are too few; a recorded age beyond the count raises the limit (Slippi's animation rate)."""
    runs = [(STANDING, 30)]
    for length in (20, 20, 19, 17, 18):
        runs += [(JAB, length), (STANDING, 10)]
    runs += [(JAB, 5), (DAMAGE, 10), (STANDING, 5), (FAIR, 30), (FALLING, 5), (FAIR, 30), (FALLING, 5),
             (STANDING, 3)]
    actions, airborne, ages = _game(runs, air=frozenset({FAIR, FALLING}))
    player = np.stack([actions, airborne, ages], -1)
    frames = np.concatenate([player[:, None, :]] * 2, 1)       # two players alike: Fox and Falco
    chars = np.tile(np.array([[1, 22]], np.int16), (len(actions), 1))
    table = measure_moves(frames[..., 0].astype(np.int64), frames[..., 1] > 0, chars, frames[..., 2].copy(),
                          np.array([0]), np.array([len(actions)]))
    assert table[1][JAB].limit == 19
    assert table[1][JAB].successors == ((STANDING, False),)
    assert STANDING not in table[1] and FAIR not in table[1]     # held; too few
    recorded = frames[..., 2].copy()
    recorded[40, 1] = 31.5                                        # Falco's first jab, its 11th frame
    assert actions[40] == JAB
    table = measure_moves(frames[..., 0].astype(np.int64), frames[..., 1] > 0, chars, recorded,
                          np.array([0]), np.array([len(actions)]))
    assert (table[1][JAB].limit, table[22][JAB].limit) == (19, 32)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Per character of three real games (games-1.zip): its actions, recorded ages and internal character id, from
    peppi-py (the last of each frame where a rollback repeated it)."""
    peppi = pytest.importorskip("peppi_py")
    archive = REPLAYS / "games-1.zip"
    if not archive.is_file():
        pytest.skip(f"no {archive}")
    players = []
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".slp"))[:3]
        for i, name in enumerate(names):
            path = tmp_path_factory.mktemp("moves") / f"{i}.slp"
            path.write_bytes(zf.read(name))
            game = peppi.read_slippi(str(path))
            ids = game.frames.id.to_numpy()
            last = len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1]   # each frame's last occurrence
            for port in game.frames.ports:
                post = port.leader.post
                players.append((post.state.to_numpy()[last].astype(np.int64),
                                post.state_age.to_numpy()[last].astype(np.float64),
                                int(post.character.to_numpy()[0])))
    return players


def test_the_kept_table_holds_the_real_games(real_runs):
    """No frame of real games goes on with a move past the kept table's limit, under either count of its age (the
    closed loop's count of frames in the action, and the age Slippi records)."""
    table = moves()
    # Falco's jab lasts 17 frames, a few more with a hit's hitlag: the limit is the jab's, not a bound no move reaches
    assert 16 <= table[22][JAB].limit <= 24 and (STANDING, False) in table[22][JAB].successors
    checked = 0
    for actions, ages, char in real_runs:
        limits = np.array([table[char][a].limit if a in table.get(char, {}) else np.inf for a in actions.tolist()])
        count = np.zeros(len(actions))
        for t in range(1, len(actions)):
            count[t] = count[t - 1] + 1 if actions[t] == actions[t - 1] else 0
        going_on = actions[1:] == actions[:-1]
        assert not np.any(going_on & (count[:-1] >= limits[:-1]))
        assert not np.any(going_on & (np.nan_to_num(ages[:-1], nan=-1) >= limits[:-1]))
        checked += int(np.isfinite(limits).sum())
    assert checked > 10_000
