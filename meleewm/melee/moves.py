"""How long a move lasts, and what comes after it: per (character, action), measured on real games.

Melee's moves are animations of a fixed number of frames per character, cut short by a landing, a hit or an
interrupt; none lasts longer than its animation (a hit's hitlag adds a few frames, and is in the measure). A move's
**limit** is the first age from which no character of the shared games went on with it (a frame at that age is its
last), under two counts: the frames an action has lasted, as ``meleewm.data.encoding.apply_state_age_rule`` counts
them in closed loop (0 on its first frame), and the age Slippi records (which runs at the animation's rate); so no real
frame is past it under either count. Its **successors** are the actions that followed it in the games (a death, a hit
or a grab taken are left out: another player or a blast zone decides those), each with the airborne bit it had.

Held actions are not limited: standing, walking, running, crouching, shielding, a ledge hang, falls, hitstun,
deaths and the respawn, being held in a grab, and Sheik's and Marth's charges last as long as a player (or a fall, a
launch) keeps them going.

The table is measured by ``tools/measure_moves.py`` on a dataset and kept in ``moves.json`` beside this module.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from meleewm.atomic import atomic_write
from meleewm.melee.actions import (ACTION_IDS, CAPTURED_STATES, DAMAGE_STATES, DEAD_STATES, RESPAWN_STATES,
                                   SPECIAL_ACTION_IDS)

MOVES_FILE = Path(__file__).with_name("moves.json")
# A (character, action) has a limit where its longest run is likely the whole animation: seen MIN_RUNS times, or
# FEW_RUNS times with MIN_FULL_RUNS of them within a frame of the longest (a move of fixed length)
MIN_RUNS, FEW_RUNS, MIN_FULL_RUNS = 10, 5, 3
MAX_SUCCESSORS = 12    # the most common ones; each seen at least twice
HELD_ACTIONS = DEAD_STATES | RESPAWN_STATES | DAMAGE_STATES | CAPTURED_STATES | frozenset(
    ACTION_IDS[name] for name in (
    "STANDING", "WALK_SLOW", "WALK_MIDDLE", "WALK_FAST", "RUNNING", "CROUCHING", "SHIELD", "EDGE_HANGING",
    "FALLING", "FALLING_FORWARD", "FALLING_BACKWARD", "FALLING_AERIAL", "FALLING_AERIAL_FORWARD",
    "FALLING_AERIAL_BACKWARD", "DEAD_FALL", "SPECIAL_FALL_FORWARD", "SPECIAL_FALL_BACK", "TUMBLING",
    "LYING_GROUND_UP", "LYING_GROUND_DOWN", "GRAB_WAIT"))
# Specials charged as long as B is held (internal character id: action ids). Fox's and Falco's shine loops are not:
# B is down on only 23-56 % of their real frames, and they last at most 18 to 65 frames
HELD_SPECIALS: dict[int, frozenset[int]] = {
    char: frozenset(ids[name] for name in names if name in ids)
    for char, ids in SPECIAL_ACTION_IDS.items()
    for names in [("NEEDLE_LOOP", "NEEDLE_AIR_LOOP", "SHIELD_BREAKER_LOOP", "SHIELD_BREAKER_AIR_LOOP")]}
NOT_SUCCESSORS = DEAD_STATES | DAMAGE_STATES | CAPTURED_STATES


@dataclass(frozen=True)
class Move:
    """One (character, action): the age of its last frame at most, and what follows it."""

    limit: int
    successors: tuple[tuple[int, bool], ...]   # (action id, airborne), most common first


def is_held(char: int, action: int) -> bool:
    """True where the game lets (internal) ``char`` stay in ``action`` as long as it is kept going."""
    return action in HELD_ACTIONS or action in HELD_SPECIALS.get(char, frozenset())


def measure_moves(actions: np.ndarray, airborne: np.ndarray, chars: np.ndarray, recorded_age: np.ndarray,
                  starts: np.ndarray, lengths: np.ndarray, airborne_known: np.ndarray | None = None
                  ) -> dict[int, dict[int, Move]]:
    """The table of every (character, action) that is not held and has enough runs, from games laid end to end:
    ``actions``, ``airborne``, ``recorded_age`` ``[frames, players]``, ``chars`` the internal character per frame and
    player, ``starts``/``lengths`` each game's frames; ``airborne_known`` where the replay has the airborne bit (a
    successor is taken only there). A run cut by a game's first or last frame counts toward the limit (it lasted at
    least that long) but not toward the runs or successors."""
    known = np.ones(actions.shape, bool) if airborne_known is None else airborne_known
    continuing_age: dict[tuple[int, int], float] = defaultdict(lambda: -1.0)
    runs: dict[tuple[int, int], list[int]] = defaultdict(list)
    followers: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for start, length in zip(starts.tolist(), lengths.tolist()):
        end = start + length
        for p in range(actions.shape[1]):
            a = actions[start:end, p].astype(np.int64)
            air, age = airborne[start:end, p], recorded_age[start:end, p]
            char = int(chars[start, p])
            change = np.flatnonzero(a[1:] != a[:-1]) + 1
            run_starts, run_ends = np.r_[0, change], np.r_[change, len(a)]
            for s, e in zip(run_starts.tolist(), run_ends.tolist()):
                key = (char, int(a[s]))
                # the ages of the run's frames that went on into another frame of it
                going_on = e - s - 1 if e < len(a) else e - s
                if going_on > 0:
                    recorded = np.nan_to_num(age[s:s + going_on], nan=-1.0).max()
                    continuing_age[key] = max(continuing_age[key], float(going_on - 1), float(recorded))
                if s > 0 and e < len(a):
                    runs[key].append(e - s)
                    if int(a[e]) not in NOT_SUCCESSORS and known[start + e, p]:
                        followers[key][(int(a[e]), bool(air[e]))] += 1
    table: dict[int, dict[int, Move]] = defaultdict(dict)
    for (char, action), lengths in runs.items():
        longest = max(lengths)
        full = sum(length >= longest - 1 for length in lengths)
        if is_held(char, action) or not (len(lengths) >= MIN_RUNS or (len(lengths) >= FEW_RUNS
                                                                       and full >= MIN_FULL_RUNS)):
            continue
        successors = tuple(s for s, n in followers[(char, action)].most_common(MAX_SUCCESSORS) if n >= 2)
        if successors:
            table[char][action] = Move(int(continuing_age[(char, action)]) + 1, successors)
    return dict(table)


def save_moves(table: dict[int, dict[int, Move]], path: Path, source: str) -> None:
    doc = {"source": source,
           "moves": {str(char): {str(action): [move.limit, [[a, int(air)] for a, air in move.successors]]
                                 for action, move in sorted(actions.items())}
                     for char, actions in sorted(table.items())}}
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n")


@cache
def moves(path: Path = MOVES_FILE) -> dict[int, dict[int, Move]]:
    """The measured table: internal character id → action id → :class:`Move`."""
    doc = json.loads(Path(path).read_text())
    return {int(char): {int(action): Move(int(limit), tuple((int(a), bool(air)) for a, air in successors))
                        for action, (limit, successors) in actions.items()}
            for char, actions in doc["moves"].items()}
