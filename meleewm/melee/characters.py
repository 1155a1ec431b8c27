"""Character ids.

Melee numbers characters two ways:

* **external** (character-select) ids, used by Slippi's GameStart event
  (``peppi_py`` ``game.start.players[i].character``);
* **internal** ids, used by every post-frame update (``post.character``) and by
  ``metadata.players[*].characters``.

Ice Climbers are one external character (14) but two internal ones: Popo (10),
the leader, and Nana (11), the follower. Zelda (external 18, internal 19) and
Sheik (external 19, internal 7) transform into each other mid-game, so a port's
internal id can change between the two.
"""

from __future__ import annotations

from meleewm.melee.actions import SPECIAL_ACTION_IDS

EXTERNAL_NAMES: dict[int, str] = {
    0: "Captain Falcon",
    1: "Donkey Kong",
    2: "Fox",
    3: "Mr. Game & Watch",
    4: "Kirby",
    5: "Bowser",
    6: "Link",
    7: "Luigi",
    8: "Mario",
    9: "Marth",
    10: "Mewtwo",
    11: "Ness",
    12: "Peach",
    13: "Pikachu",
    14: "Ice Climbers",
    15: "Jigglypuff",
    16: "Samus",
    17: "Yoshi",
    18: "Zelda",
    19: "Sheik",
    20: "Falco",
    21: "Young Link",
    22: "Dr. Mario",
    23: "Roy",
    24: "Pichu",
    25: "Ganondorf",
    # Not selectable in a normal VS game.
    26: "Master Hand",
    27: "Wireframe Male",
    28: "Wireframe Female",
    29: "Giga Bowser",
    30: "Crazy Hand",
    31: "Sandbag",
    32: "Popo",
}
# Select-screen ids a player can pick in a VS game (0..25; the rest are bosses, wireframes and Popo alone).
PLAYABLE_CHARACTERS: tuple[int, ...] = tuple(c for c in sorted(EXTERNAL_NAMES) if c <= 25)

INTERNAL_NAMES: dict[int, str] = {
    0: "Mario",
    1: "Fox",
    2: "Captain Falcon",
    3: "Donkey Kong",
    4: "Kirby",
    5: "Bowser",
    6: "Link",
    7: "Sheik",
    8: "Ness",
    9: "Peach",
    10: "Popo",
    11: "Nana",
    12: "Pikachu",
    13: "Samus",
    14: "Yoshi",
    15: "Jigglypuff",
    16: "Mewtwo",
    17: "Luigi",
    18: "Marth",
    19: "Zelda",
    20: "Young Link",
    21: "Dr. Mario",
    22: "Falco",
    23: "Pichu",
    24: "Mr. Game & Watch",
    25: "Ganondorf",
    26: "Roy",
    27: "Master Hand",
    28: "Crazy Hand",
    29: "Wireframe Male",
    30: "Wireframe Female",
    31: "Giga Bowser",
    32: "Sandbag",
}

ICE_CLIMBERS = 14  # external
POPO, NANA = 10, 11  # internal

# A jump's first vertical speed, by internal character: (short hop, full hop) off the ground, and the double jump's.
# Measured on the shared games (fixtures, games-1, games-2): every jump of the characters listed took one of these, to
# 0.001 units, but for 4 of Popo's and Nana's 141 ground jumps and 3 of Jigglypuff's 318. Left out (their jumps are the
# model's own): characters with fewer than 5 of either ground jump or 10 double jumps, and double jumps under 95 %
# one speed (Pikachu's, the Ice Climbers'). Ness's and Peach's double jumps start at 0 and rise by their animation.
GROUND_JUMP_SPEEDS: dict[int, tuple[float, float]] = {
    0: (1.4, 2.3), 1: (2.1, 3.68), 2: (1.9, 3.1), 4: (1.5, 2.0), 7: (2.14, 2.8), 8: (1.5, 2.5), 9: (1.6, 2.2),
    10: (1.4, 2.6), 11: (1.4, 2.6), 12: (1.7, 2.6), 13: (1.7, 2.1), 15: (1.05, 1.6), 17: (1.4, 2.4), 18: (1.5, 2.4),
    22: (1.9, 4.1), 25: (2.0, 2.6), 26: (1.5, 2.6),
}
DOUBLE_JUMP_SPEEDS: dict[int, float] = {
    0: 2.205, 1: 4.186, 2: 2.66, 7: 2.96, 8: 0.0, 9: 0.0, 13: 1.824, 17: 2.091, 18: 2.027, 22: 3.684, 25: 2.34,
    26: 2.174,
}

# Ground friction by internal character: how much a sliding character's ground speed falls each frame (twice as much on
# some frames: when it moves fast). Measured on the shared games: the most common fall of the ground speed while
# standing, shielding, turning, grabbing, crouching, in jumpsquat or landing, on 65-100 % of such frames per character,
# and twice it on nearly all the rest. Link (1 frame) is left out.
GROUND_FRICTION: dict[int, float] = {
    0: 0.06, 1: 0.08, 2: 0.08, 3: 0.08, 4: 0.08, 5: 0.06, 7: 0.08, 8: 0.06, 9: 0.1, 10: 0.035, 11: 0.035, 12: 0.09,
    13: 0.06, 14: 0.06, 15: 0.09, 17: 0.025, 18: 0.06, 19: 0.1, 20: 0.08, 21: 0.06, 22: 0.08, 23: 0.1, 24: 0.06,
    25: 0.07, 26: 0.06,
}

# Air friction by internal character: how much a character's air speed falls each frame, in jumps, falls and aerials,
# with the control stick at rest sideways (inside the dead zone), until it is 0. Measured on the shared games: that
# fall on 86-100 % of such frames per character (the rest: a jump's first frame, a speed already spent). Ness (82 %)
# is left out.
AIR_FRICTION: dict[int, float] = {
    0: 0.016, 1: 0.02, 2: 0.01, 3: 0.02, 4: 0.02, 5: 0.01, 6: 0.005, 7: 0.04, 9: 0.005, 10: 0.02, 12: 0.01, 13: 0.01,
    14: 0.013, 15: 0.05, 16: 0.016, 17: 0.01, 18: 0.005, 19: 0.005, 20: 0.005, 21: 0.016, 22: 0.02, 23: 0.01,
    24: 0.016, 25: 0.02, 26: 0.005,
}

# Air drift with the control stick held sideways, by internal character: (a, b, top speed). The air speed moves toward
# the stick's target (stick x times the top speed) by a * stick + b * its sign a frame, stopping at the target; a
# speed beyond the target slows by the air friction, down to the target. Measured on the shared games: the rule gives
# the next air speed to 0.001 units on 91-98 % of such frames per character (the others, under 90 %, left out).
AIR_DRIFT: dict[int, tuple[float, float, float]] = {
    0: (0.025, 0.02, 0.86), 1: (0.06, 0.02, 0.83), 2: (0.04, 0.02, 1.12), 4: (0.04, 0.02, 0.78),
    7: (0.04, 0.02, 0.8), 9: (0.06, 0.01, 1.1), 10: (0.027, 0.02, 0.7), 13: (0.012, 0.02, 0.89),
    17: (0.025, 0.015, 0.68), 18: (0.03, 0.02, 0.9), 21: (0.04, 0.032, 1.395), 22: (0.05, 0.02, 0.83),
}

# Falling in the air, by internal character: (gravity, top fall speed, fast-fall speed). In jumps, falls and aerials
# out of hitlag the fall speed grows by the gravity each frame up to the top fall speed; once falling (a speed of 0 or
# less), the stick pulled down (``meleewm.melee.game.FAST_FALL_STICK``) sets the fast-fall speed, which then holds.
# Measured on the shared games: the next fall speed to 0.001 units on 93-99 % of such frames per character (99.5 %
# where the stick's pull is a fresh one, which the model's inputs cannot see). Peach floats: left out.
AIR_FALL: dict[int, tuple[float, float, float]] = {
    0: (0.095, 1.7, 2.3), 1: (0.23, 2.8, 3.4), 2: (0.13, 2.9, 3.5), 4: (0.08, 1.6, 2.0), 7: (0.12, 2.13, 3.0),
    10: (0.1, 1.6, 2.0), 12: (0.11, 1.9, 2.7), 13: (0.066, 1.4, 2.3), 17: (0.069, 1.6, 2.0), 18: (0.085, 2.2, 2.5),
    22: (0.17, 3.1, 3.5), 25: (0.13, 2.0, 2.6),
}

# Fox's Fire Fox and Falco's Fire Bird (FIRE_AIR), by internal character: the travel's speed, the frames it holds it,
# and how much it slows each frame after. Measured on the shared games (168 of Fox's, 628 of Falco's): every one starts
# at that speed along the control stick (straight up with the stick at rest) and keeps its direction; the speed of
# each frame is the schedule's on 82-100 % of frames (the rest meet the stage or another player).
FIRE_TRAVEL: dict[int, tuple[float, int, float]] = {1: (3.8, 5, 0.1), 22: (4.2, 3, 0.17)}

# Fox's and Falco's Illusion in the air (ILLUSION_AIR, then ILLUSION_AIR_END), by internal character: the dash's speed
# along the facing after its first frame (which stands still). The end is the same for both: it starts at
# ILLUSION_END_SPEED, slows by ILLUSION_END_SLOWDOWN a frame to a stop, and falls from its frame
# ILLUSION_END_FALL_START on, ILLUSION_END_GRAVITY faster each frame (every one of the shared games' 106 and 474, to
# 0.001 units, through frame 35 of the end).
ILLUSION_SPEED: dict[int, float] = {1: 18.72, 22: 16.5}
ILLUSION_END_SPEED = 1.93
ILLUSION_END_SLOWDOWN = 0.07
ILLUSION_END_FALL_START = 5
ILLUSION_END_GRAVITY = 0.08
ILLUSION_END_MEASURED_FRAMES = 35

# Where a character catches the ledge, by internal character: its position on the first frame of EDGE_CATCHING,
# outward from the ledge point and below it (``meleewm.melee.stages.ledge_point``). Every catch of the shared games
# on the stages of ``EDGE_STAGES`` is at that offset, to 0.01 units, on 97 % of them (1,970 of 2,032). Characters
# with at least 18 catches.
LEDGE_CATCH_OFFSETS: dict[int, tuple[float, float]] = {
    1: (1.788, -13.475), 2: (2.999, -20.115), 7: (3.534, -18.666), 9: (4.251, -14.439), 13: (2.451, -18.249),
    15: (2.981, -8.128), 17: (9.67, -4.65), 18: (3.657, -20.665), 22: (2.473, -15.44), 25: (3.669, -22.396),
}

# The game catches a ledge by itself: a character falling into its catch box (by internal character: outward from the
# ledge point, from and to, then below it, from and to, of the position after the frame's move) catches it, facing the
# ledge, unless the control stick is held down past FAST_FALL_STICK or the other player holds that ledge. Fitted on
# the shared games' 2,234 catches on the stages of ``EDGE_STAGES`` (2nd to 98th percentile, padded by 0.1; the top
# edge at the 99.5th): fitted on half of the games, 96.6 % of the other half's frames in the box catch. Characters
# with at least 15 such catches.
LEDGE_GRAB_BOXES: dict[int, tuple[float, float, float, float]] = {
    1: (-2.08, 10.58, -16.92, -8.51), 2: (-2.04, 9.22, -22.15, -11.53), 7: (-1.8, 10.66, -17.37, -9.42),
    9: (-0.65, 9.12, -20.66, -9.52), 15: (-2.08, 8.45, -9.57, -5.65), 17: (-0.96, 11.44, -17.5, -9.93),
    18: (-2.03, 11.73, -21.23, -11.39), 22: (-1.79, 11.64, -16.94, -8.41),
}
# Besides ``meleewm.melee.actions.LEDGE_GRAB_ACTIONS``, the specials that catch a ledge so, by internal character:
# Fox's and Falco's Illusion end, Fire Fox / Fire Bird in flight and its fall (ILLUSION_AIR_END, FIRE_AIR, FIRE_FALL;
# their FIRE_HOLD_AIR catches on a third of such frames only, left out)
LEDGE_GRAB_SPECIALS: dict[int, tuple[int, ...]] = {
    char: tuple(SPECIAL_ACTION_IDS[char][name] for name in ("ILLUSION_AIR_END", "FIRE_AIR", "FIRE_FALL"))
    for char in (1, 22)
}

_BY_NAME_INTERNAL = {name: i for i, name in INTERNAL_NAMES.items()}
_EXT_TO_INT: dict[int, int] = {
    ext: (POPO if ext == ICE_CLIMBERS else _BY_NAME_INTERNAL[name])
    for ext, name in EXTERNAL_NAMES.items()
}
# Popo and Nana both map back to the Ice Climbers slot, not the special "Popo" (32).
_INT_TO_EXT: dict[int, int] = {i: e for e, i in _EXT_TO_INT.items() if e != 32}
_INT_TO_EXT[NANA] = ICE_CLIMBERS


def external_to_internal(ext_id: int) -> int:
    """Internal id of a character-select id (Ice Climbers give Popo, the leader)."""
    try:
        return _EXT_TO_INT[int(ext_id)]
    except KeyError:
        raise ValueError(f"unknown external character id {ext_id}") from None


def internal_to_external(int_id: int) -> int:
    """Character-select id of an internal id (Popo and Nana give Ice Climbers)."""
    try:
        return _INT_TO_EXT[int(int_id)]
    except KeyError:
        raise ValueError(f"unknown internal character id {int_id}") from None


def character_name(char_id: int, internal: bool = False) -> str:
    """Display name of a character id; ``internal`` says which numbering it uses."""
    table = INTERNAL_NAMES if internal else EXTERNAL_NAMES
    return table.get(int(char_id), f"UNKNOWN_{int(char_id)}")
