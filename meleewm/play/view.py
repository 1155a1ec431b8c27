"""What the page draws of one player, from a decoded state (the dream's or the real game's).

:func:`player_view` turns one player of a decoded state (``{dataset column: [2]}``) into the fields a client draws:
position, action, percent, stocks, facing, shield, flags, and a *pose* (:func:`pose_of`) that names the visual cue
for the action (crouch, shield, attack and its direction, tumble, ledge, dead, respawn...). The same function
serves the session's own players and the real game's ghosts in a replay takeover, so both are drawn alike.

:class:`Divergence` compares the dream with the real game frame by frame (position distance in game units, same
action or not) and keeps running means since the takeover.
"""

from __future__ import annotations

import math

import numpy as np

from meleewm.melee.actions import (
    ACTION_IDS,
    DAMAGE_STATES,
    DEAD_STATES,
    ENTRY_STATES,
    FIRST_SPECIAL,
    RESPAWN_STATES,
    SHIELD_STATES,
    action_name,
)

# Slippi post-frame state flags (byte, bit), as peppi names them; checked against games-1 (hitstun is set on
# 85 % of DAMAGE_* frames, hitlag on every frame with post_hitlag > 0, shield on 80 % of SHIELD_* frames).
FLAG_HITLAG = (1, 5)
FLAG_SHIELD = (2, 7)
FLAG_HITSTUN = (3, 1)

_A = ACTION_IDS
CROUCH_STATES = frozenset(range(_A["CROUCH_START"], _A["CROUCH_END"] + 1))
TUMBLE_STATES = frozenset({_A["TUMBLING"], *range(_A["DAMAGE_FLY_HIGH"], _A["DAMAGE_FLY_ROLL"] + 1)})
LEDGE_HANG_STATES = frozenset({_A["EDGE_CATCHING"], _A["EDGE_HANGING"]})
LYING_STATES = frozenset(range(_A["TECH_MISS_UP"], _A["CEILING_TECH"] + 1)) - {_A["GROUND_ATTACK_UP"],
                                                                                 _A["GETUP_ATTACK"]}
DODGE_STATES = frozenset(range(_A["ROLL_FORWARD"], _A["AIRDODGE"] + 1))
GRAB_STATES = frozenset(range(_A["GRAB"], _A["THROW_DOWN"] + 1))
# Attacks and the direction their hitboxes point (relative to the facing): forward, up, down, back, around.
ATTACK_DIRECTIONS: dict[int, str] = {}
for _name, _dir in (
    ("NEUTRAL_ATTACK_1", "forward"), ("NEUTRAL_ATTACK_2", "forward"), ("NEUTRAL_ATTACK_3", "forward"),
    ("LOOPING_ATTACK_START", "forward"), ("LOOPING_ATTACK_MIDDLE", "forward"), ("LOOPING_ATTACK_END", "forward"),
    ("DASH_ATTACK", "forward"), ("FTILT_HIGH", "forward"), ("FTILT_HIGH_MID", "forward"), ("FTILT_MID", "forward"),
    ("FTILT_LOW_MID", "forward"), ("FTILT_LOW", "forward"), ("UPTILT", "up"), ("DOWNTILT", "down"),
    ("FSMASH_HIGH", "forward"), ("FSMASH_MID_HIGH", "forward"), ("FSMASH_MID", "forward"),
    ("FSMASH_MID_LOW", "forward"), ("FSMASH_LOW", "forward"), ("UPSMASH", "up"), ("DOWNSMASH", "down"),
    ("NAIR", "around"), ("FAIR", "forward"), ("BAIR", "back"), ("UAIR", "up"), ("DAIR", "down"),
    ("GROUND_ATTACK_UP", "around"), ("GETUP_ATTACK", "around"), ("EDGE_ATTACK_SLOW", "forward"),
    ("EDGE_ATTACK_QUICK", "forward"),
):
    ATTACK_DIRECTIONS[_A[_name]] = _dir


def pose_of(action: int) -> str:
    """The visual cue of an action id: dead, respawn, entry, shield, crouch, attack, special, tumble, hurt, ledge,
    lying, dodge, grab, or plain."""
    if action in DEAD_STATES:
        return "dead"
    if action in RESPAWN_STATES:
        return "respawn"
    if action in ENTRY_STATES:
        return "entry"
    if action in SHIELD_STATES:
        return "shield"
    if action in CROUCH_STATES:
        return "crouch"
    if action in ATTACK_DIRECTIONS:
        return "attack"
    if action >= FIRST_SPECIAL:
        return "special"
    if action in TUMBLE_STATES:
        return "tumble"
    if action in DAMAGE_STATES:
        return "hurt"
    if action in LEDGE_HANG_STATES:
        return "ledge"
    if action in LYING_STATES:
        return "lying"
    if action in DODGE_STATES:
        return "dodge"
    if action in GRAB_STATES:
        return "grab"
    return "plain"


def _num(value, digits: int):
    """A JSON-safe rounded float (None for NaN or infinity, which JSON cannot carry)."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def _flag(flags: list[int], where: tuple[int, int]) -> bool:
    return bool(flags[where[0]] >> where[1] & 1)


def player_view(st: dict, p: int, character: int, port: int, character_name: str) -> dict:
    """The fields a client draws for player ``p`` (0/1) of a decoded state ``st``."""
    flags = [int(st[f"post_state_flags_{j}"][p]) for j in range(5)]
    action = int(st["post_state"][p])
    internal = int(st["post_character"][p])
    hitlag = float(st["post_hitlag"][p])
    age = st.get("post_state_age")
    return {
        "port": int(port),
        "character": int(character),
        "character_name": character_name,
        "x": _num(st["post_position_x"][p], 3),
        "y": _num(st["post_position_y"][p], 3),
        "action": action,
        "action_name": action_name(action, internal if internal >= 0 else None) if action >= 0 else "UNKNOWN",
        "action_frame": _num(age[p], 1) if age is not None else None,
        "pose": pose_of(action),
        "attack_direction": ATTACK_DIRECTIONS.get(action),
        "percent": _num(st["post_percent"][p], 2),
        "stocks": int(st["post_stocks"][p]),
        "facing": 1 if float(st["post_direction"][p]) > 0 else -1,
        "shield": _num(st["post_shield"][p], 2),
        "shielding": bool(action in SHIELD_STATES or _flag(flags, FLAG_SHIELD)),
        "hitlag": _num(max(hitlag, 0.0), 2),
        "in_hitlag": bool(hitlag > 0.5 or _flag(flags, FLAG_HITLAG)),
        "hitstun": bool(action in DAMAGE_STATES or _flag(flags, FLAG_HITSTUN)),
        "airborne": bool(st["post_airborne"][p]),
        "jumps": int(st["post_jumps"][p]),
        # 1 invulnerable, 2 intangible; 0 vulnerable and -1 (unknown: files older than the field) are not
        "invulnerable": bool(int(st["post_hurtbox_state"][p]) > 0),
    }


def items_view(items: dict[str, np.ndarray] | None) -> list[dict]:
    """Present item slots (``spec.decode_items`` of one frame, or the same keys from a replay's item table)."""
    if items is None:
        return []
    out = []
    for s in np.nonzero(np.asarray(items["present"]))[0]:
        x, y = float(items["position_x"][s]), float(items["position_y"][s])
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        out.append({"type": int(items["type"][s]), "owner": int(items["owner"][s]), "x": round(x, 2),
                    "y": round(y, 2), "vx": _num(items["velocity_x"][s], 2), "vy": _num(items["velocity_y"][s], 2)})
    return out


class Divergence:
    """The dream against the real game since a takeover: per frame, each player's position distance (game units)
    and whether the action ids match; running means over the frames compared so far."""

    def __init__(self):
        self.frames = 0
        self._distance = np.zeros(2)
        self._measured = np.zeros(2)      # frames with a finite distance (a NaN prediction has none)
        self._same_action = np.zeros(2)

    def update(self, dream: list[dict], real: list[dict]) -> dict:
        distance, same = [], []
        for p in range(2):
            d, r = dream[p], real[p]
            if None in (d["x"], d["y"], r["x"], r["y"]):
                dist = None
            else:
                dist = math.hypot(d["x"] - r["x"], d["y"] - r["y"])
            distance.append(None if dist is None else round(dist, 2))
            same.append(d["action"] == r["action"])
        self.frames += 1
        self._distance += [0.0 if d is None else d for d in distance]
        self._measured += [d is not None for d in distance]
        self._same_action += same
        return self.summary(distance, same)

    def summary(self, distance=None, same=None) -> dict:
        n = max(self.frames, 1)
        return {"frames": self.frames, "distance": distance, "same_action": same,
                "mean_distance": [round(float(v) / m, 2) if m else None
                                  for v, m in zip(self._distance, self._measured)],
                "action_agreement": [round(float(v) / n, 3) for v in self._same_action]}
