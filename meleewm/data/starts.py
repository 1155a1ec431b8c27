"""Synthesized game starts: the raw post-frame columns of two characters at a legal stage's spawn points, and the
same start as step inputs of the world model.

Play sessions start from them, and ``meleewm eval``'s idle test does too.
"""

from __future__ import annotations

import numpy as np

from meleewm.data.encoding import STATE_COLUMNS, EncodingSpec
from meleewm.data.step import StepInput
from meleewm.errors import MeleewmError
from meleewm.melee.actions import ACTION_IDS
from meleewm.melee.game import FULL_SHIELD
from meleewm.melee.characters import PLAYABLE_CHARACTERS, external_to_internal
from meleewm.melee.stages import LEGAL_STAGES, MAIN_GROUND, SPAWN_POINTS, stage_name

# Synthesized starts copy the states of frame -123 that every recorded game in games-1 has (the entry animation:
# airborne, ground 65535, 1 jump left (5 for Kirby and Jigglypuff), flags byte 4 = 0x40), at the stage's spawn
# points (meleewm.melee.SPAWN_POINTS).
ENTRY_ACTION, STANDING_ACTION = ACTION_IDS["ENTRY"], ACTION_IDS["STANDING"]
MULTI_JUMPERS = frozenset({4, 15})   # external ids: Kirby, Jigglypuff
START_MODES = ("entry", "standing")
GROUND_Y = 1e-4                       # y of a character standing on the main stage, as recorded



class StartError(MeleewmError, ValueError):
    """A start that cannot be synthesized (not a legal stage, an unknown character, a bad mode)."""


def synthetic_columns(stage: int, chars, mode: str = "entry") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw post-frame columns ``{column: [2]}`` of a game start, and its ``post_state_age [2]``."""
    stage = int(stage)
    if stage not in SPAWN_POINTS:
        legal = ", ".join(f"{s} {stage_name(s)}" for s in LEGAL_STAGES)
        raise StartError(f"synthesized starts need a legal stage ({legal}), not {stage} ({stage_name(stage)})")
    if mode not in START_MODES:
        raise StartError(f"start mode must be one of {', '.join(START_MODES)}, not {mode!r}")
    chars = [int(c) for c in chars]
    if len(chars) != 2:
        raise StartError(f"a game needs two characters, got {len(chars)}")
    for c in chars:
        if c not in PLAYABLE_CHARACTERS:
            raise StartError(f"unknown or unplayable character id {c}")
    (x0, y0), (x1, y1) = SPAWN_POINTS[stage]
    entry = mode == "entry"
    multi = np.array([c in MULTI_JUMPERS for c in chars])
    zeros = np.zeros(2, np.float32)
    v: dict[str, np.ndarray] = {
        "post_position_x": np.array([x0, x1], np.float32),
        "post_position_y": np.array([y0, y1] if entry else [GROUND_Y, GROUND_Y], np.float32),
        "post_percent": zeros, "post_shield": np.full(2, FULL_SHIELD, np.float32), "post_hitlag": zeros,
        "post_misc_as": zeros, "post_combo_count": zeros,
        "post_direction": np.array([1.0, -1.0], np.float32),   # player 0 on the left faces right
        "post_airborne": np.full(2, 1 if entry else 0, np.int64),
        "post_hurtbox_state": np.zeros(2, np.int64),
        "post_state": np.full(2, ENTRY_ACTION if entry else STANDING_ACTION, np.int64),
        "post_jumps": np.where(multi, 5 if entry else 6, 1 if entry else 2).astype(np.int64),
        "post_stocks": np.full(2, 4, np.int64),
        "post_l_cancel": np.zeros(2, np.int64),
        "post_ground": np.full(2, 65535 if entry else MAIN_GROUND[stage], np.int64),
        "post_last_attack_landed": np.zeros(2, np.int64),
        "post_character": np.array([external_to_internal(c) for c in chars], np.int64),
    }
    for name in ("post_velocities_self_x_air", "post_velocities_self_y", "post_velocities_knockback_x",
                 "post_velocities_knockback_y", "post_velocities_self_x_ground"):
        v[name] = zeros
    for j in range(5):
        v[f"post_state_flags_{j}"] = np.full(2, 0x40 if (entry and j == 4) else 0, np.int64)
    missing = set(STATE_COLUMNS) - set(v) - {"post_state_age"}
    assert not missing, missing
    age = np.full(2, -1.0 if entry else 0.0, np.float32)
    return v, age


def synthetic_inputs(spec: EncodingSpec, stage: int, chars, mode: str = "entry"):
    """A synthesized start as the step inputs of one game (batch 1, no time axis, controllers at rest): the encoded
    state with its state_age, empty item slots when ``spec`` has them, the masks, and the constants. Also returns
    the raw columns and state ages it encodes (:func:`synthetic_columns`)."""
    values, age = synthetic_columns(stage, chars, mode)
    stage_index, char_index = spec.encode_constants(stage, chars)
    start = StepInput.from_encoded({**spec.encode_state_columns(values), "state_age": age}, stage_index, char_index)
    # on zeros: no item on the stage at a game's start
    return StepInput.zeros(spec).replace(**start.tensors()), values, age
