"""Write games as real Slippi replays (``.slp``) that Slippi's replay viewer and every ``.slp`` parser open.

The writer follows the Slippi replay spec (project-slippi/slippi-wiki ``SPEC.md``) and writes the newest layout
it documents, **Slippi 3.18.0**. Every event's payload has exactly the 3.18.0 size, and the Event Payloads
event lists those sizes, so readers (peppi, py-slippi, slippi-js, Slippi Dolphin's playback) parse it as a
3.18.0 recording.

File layout (all numbers big-endian)::

    {U\\x03raw[$U#l <int32 length> <raw event stream> U\\x08metadata{ ...UBJSON... } }

Raw event stream, in order:

* Event Payloads (0x35): the payload size of each event written below (no stage events, no gecko codes: none
  are written, so none are listed);
* Game Start (0x36, 760 bytes): version 3.18.0, the 312-byte game info block, random seed, UCF toggles,
  name tags (empty), PAL and frozen-Stadium flags, scene (minor 2, major 2 = VS), display names, connect
  codes, Slippi uids (empty), language (English), match id (empty), game and tiebreaker numbers;
* per frame, from -123 upwards: Frame Start (0x3A), a Pre-Frame Update (0x37) for each character, a
  Post-Frame Update (0x38) for each character, an Item Update (0x3B) for each item and projectile of the frame
  (``SlpGame.items``), Frame Bookend (0x3C) with latest finalized frame = frame (a written file has no
  rollbacks);
* Game End (0x39): end method, LRAS initiator, placements.

The game info block is built field by field. Fields the spec documents come from :class:`SlpGame` /
:class:`SlpPlayer`; fields it leaves undocumented take the values every recorded local VS game in the
project's real replays has (stock mode, 8-minute timer, items off, damage ratio 1.0, ...), spelled out below
in ``_game_info_block``.

**Input.** ``SlpGame.frames`` holds one row per (player, frame) with the dataset's column names
(``meleewm.replay.schema.FRAME_SCHEMA``: ``frame``, ``port``, optional ``follower``, ``start_*``, ``pre_*``,
``post_*``). It may be a ``pyarrow.Table`` or a dict of arrays (NumPy, masked NumPy, lists or Arrow). Rows
with ``follower`` true are Ice Climbers' Nana; a table without that column holds leaders only. Frame ids must
run from -123 without gaps, and every player must have a row on frame -123.

**Missing values.** A column that is absent, or a null value, is written with a default; nothing is ever
left undefined. A row whose player fields are all null (an eliminated player, a dead Nana) writes no events
for that character on that frame, as Slippi does. Defaults:

* ``pre_state``, ``pre_position_x/y``, ``pre_direction``, ``pre_percent`` and their ``post_`` twins: a
  missing post value takes the next frame's pre value (the state the next frame starts from); then, along
  pre, post, next pre, next post, ..., a missing value holds the last known one, so a missing pre value is
  the previous frame's post value (the first frames take the first known value). A player with no value
  at all: state 0, position 0, direction +1, percent 0.
* ``post_state_age``: frames since ``post_state`` last changed (0 on the first frame of an action).
* ``post_character``: the internal id of the player's character (Nana for a follower).
* ``post_stocks``: the player's starting stocks; ``post_shield``: 60 (full); ``post_last_hit_by``: 6
  (nobody, as the game writes it).
* ``pre_random_seed``: the frame's start seed; ``start_random_seed``: the first pre seed of the frame, else 0.
* ``start_scene_frame_counter``: frame + 123; ``end_latest_finalized_frame`` is always the frame itself.
* ``pre_raw_analog_x/y`` and ``pre_raw_analog_cstick_x/y``: the processed stick value × 80, rounded (the raw
  range of a calibrated controller).
* ``pre_buttons`` ↔ ``pre_buttons_physical``: each from the other (the low 16 bits are the same buttons);
  ``pre_triggers``: max of the physical triggers.
* every other field: 0.

**Items.** ``SlpGame.items`` (optional) holds one row per item per frame with the dataset's item column names
(``meleewm.replay.schema.ITEM_SCHEMA``: ``frame``, ``type``, ``position_x/y``, ``velocity_x/y``, ``owner``,
``id`` (the spawn id), ...), as a ``pyarrow.Table`` or a dict of arrays. A missing column or null value is 0,
except ``owner`` (-1, nobody) and ``direction`` (the sign of ``velocity_x``). Rows are written in the order
given within each frame.

Float fields are written as float32, so a float32 input reads back bit for bit.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meleewm.atomic import write_bytes_atomic
from meleewm.melee.game import FIRST_FRAME, FULL_SHIELD
from meleewm.melee.characters import EXTERNAL_NAMES, NANA, external_to_internal
from meleewm.replay.schema import FRAME_FIELDS, FRAME_SCHEMA, POST_FIELDS, PRE_FIELDS

SLIPPI_VERSION = (3, 18, 0)

# Event command bytes.
EVENT_PAYLOADS = 0x35
GAME_START = 0x36
PRE_FRAME = 0x37
POST_FRAME = 0x38
GAME_END = 0x39
FRAME_START = 0x3A
ITEM_UPDATE = 0x3B
FRAME_BOOKEND = 0x3C

END_METHODS = {"UNRESOLVED": 0, "TIME": 1, "GAME": 2, "RESOLVED": 3, "NO_CONTEST": 7}
PLAYER_TYPES = {"human": 0, "cpu": 1, "demo": 2}
EMPTY_PLAYER_TYPE = 3
TEAM_IDS = {"red": 0, "blue": 1, "green": 2}
LANGUAGES = {"japanese": 0, "english": 1}
SCENE_VS = 2            # major scene of a game started from VS mode (8 = Slippi online)
SCENE_MINOR_IN_GAME = 2
NO_HITTER = 6           # post.last_hit_by before anyone has been hit
RAW_STICK_SCALE = 80.0  # processed stick 1.0 ~ raw 80 on a calibrated controller


def _be(fields: list[tuple[str, str]]) -> np.dtype:
    """A packed big-endian record: the command byte, then the payload fields in spec order."""
    return np.dtype([("command", "u1"), *fields])


# Payload layouts of Slippi 3.18.0 (offsets in the spec count the command byte). Field names are the
# dataset column names without their prefix.
PRE_DTYPE = _be([
    ("frame", ">i4"), ("port_index", "u1"), ("is_follower", "u1"),
    ("random_seed", ">u4"), ("state", ">u2"),
    ("position_x", ">f4"), ("position_y", ">f4"), ("direction", ">f4"),
    ("joystick_x", ">f4"), ("joystick_y", ">f4"), ("cstick_x", ">f4"), ("cstick_y", ">f4"),
    ("triggers", ">f4"), ("buttons", ">u4"), ("buttons_physical", ">u2"),
    ("triggers_physical_l", ">f4"), ("triggers_physical_r", ">f4"),
    ("raw_analog_x", "i1"),                                        # 1.2.0
    ("percent", ">f4"),                                            # 1.4.0
    ("raw_analog_y", "i1"),                                        # 3.15.0
    ("raw_analog_cstick_x", "i1"), ("raw_analog_cstick_y", "i1"),  # 3.17.0
])
POST_DTYPE = _be([
    ("frame", ">i4"), ("port_index", "u1"), ("is_follower", "u1"),
    ("character", "u1"), ("state", ">u2"),
    ("position_x", ">f4"), ("position_y", ">f4"), ("direction", ">f4"),
    ("percent", ">f4"), ("shield", ">f4"),
    ("last_attack_landed", "u1"), ("combo_count", "u1"), ("last_hit_by", "u1"), ("stocks", "u1"),
    ("state_age", ">f4"),                                           # 0.2.0
    *((f"state_flags_{i}", "u1") for i in range(5)),                # 2.0.0
    ("misc_as", ">f4"), ("airborne", "u1"), ("ground", ">u2"), ("jumps", "u1"), ("l_cancel", "u1"),
    ("hurtbox_state", "u1"),                                        # 2.1.0
    ("velocities_self_x_air", ">f4"), ("velocities_self_y", ">f4"),  # 3.5.0
    ("velocities_knockback_x", ">f4"), ("velocities_knockback_y", ">f4"),
    ("velocities_self_x_ground", ">f4"),
    ("hitlag", ">f4"),                                              # 3.8.0
    ("animation_index", ">u4"),                                     # 3.11.0
    ("last_hit_by_instance", ">u2"), ("instance_id", ">u2"),        # 3.16.0
])
FRAME_START_DTYPE = _be([("frame", ">i4"), ("random_seed", ">u4"),
                         ("scene_frame_counter", ">u4")])           # counter: 3.10.0
FRAME_BOOKEND_DTYPE = _be([("frame", ">i4"), ("latest_finalized_frame", ">i4")])  # 3.7.0
ITEM_DTYPE = _be([
    ("frame", ">i4"), ("type", ">u2"), ("state", "u1"), ("direction", ">f4"),
    ("velocity_x", ">f4"), ("velocity_y", ">f4"), ("position_x", ">f4"), ("position_y", ">f4"),
    ("damage", ">u2"), ("timer", ">f4"), ("id", ">u4"),
    *((f"misc_{i}", "u1") for i in range(4)),                       # 3.2.0
    ("owner", "i1"),                                                # 3.6.0
    ("instance_id", ">u2"),                                         # 3.16.0
])
GAME_END_DTYPE = _be([("method", "u1"), ("lras_initiator", "i1"), ("placements", "i1", (4,))])  # 3.13.0

GAME_START_SIZE = 760  # through the tiebreaker number (3.14.0); unchanged up to 3.18.0
PAYLOAD_SIZES: dict[int, int] = {
    GAME_START: GAME_START_SIZE,
    PRE_FRAME: PRE_DTYPE.itemsize - 1,
    POST_FRAME: POST_DTYPE.itemsize - 1,
    GAME_END: GAME_END_DTYPE.itemsize - 1,
    FRAME_START: FRAME_START_DTYPE.itemsize - 1,
    FRAME_BOOKEND: FRAME_BOOKEND_DTYPE.itemsize - 1,
    ITEM_UPDATE: ITEM_DTYPE.itemsize - 1,
}
assert PAYLOAD_SIZES == {0x36: 760, 0x37: 66, 0x38: 84, 0x39: 6, 0x3A: 12, 0x3C: 8, 0x3B: 44}, PAYLOAD_SIZES

_COLUMN_TYPES = {f.name: f.type for f in FRAME_SCHEMA}
_NUMPY_TYPES = {f.name: pa.array([0], f.type).to_numpy().dtype for f in FRAME_SCHEMA if pa.types.is_integer(f.type)
                or pa.types.is_floating(f.type)}
_PRE_COLUMNS = [c.name for c in PRE_FIELDS]
_POST_COLUMNS = [c.name for c in POST_FIELDS]
_PLAYER_COLUMNS = _PRE_COLUMNS + _POST_COLUMNS
_FRAME_COLUMNS = [c.name for c in FRAME_FIELDS]
# (pre, post) pairs where the pre value of a frame is the post value of the frame before.
_CARRIED = ("state", "position_x", "position_y", "direction", "percent")


@dataclass
class SlpPlayer:
    """One player slot of the game (Game Start data)."""

    port: int                 # 1-4
    character: int            # external (character-select) id: 0 Falcon, 2 Fox, 9 Marth, 20 Falco, ...
    costume: int = 0
    type: str = "human"       # human, cpu or demo
    stocks: int = 4
    team: int = 0             # team id, used only when SlpGame.is_teams: 0 red, 1 blue, 2 green
    cpu_level: int = 1        # the game stores one for humans too
    handicap: int = 9
    ucf_dashback: int = 1     # 0 off, 1 UCF, 2 Dween
    ucf_shield_drop: int = 1
    display_name: str = ""    # Slippi online display name (max 15 characters), shown by replay browsers
    connect_code: str = ""    # e.g. "ABCD#123"


@dataclass
class SlpGame:
    """A game to write. ``frames``: see the module docstring."""

    stage: int                                   # Slippi stage id (2 FoD, 3 PS, 8 YS, 28 DL, 31 BF, 32 FD)
    players: list[SlpPlayer]
    frames: pa.Table | Mapping[str, object]
    items: pa.Table | Mapping[str, object] | None = None   # see the module docstring
    end_method: str = "NO_CONTEST"               # GAME, TIME, NO_CONTEST (or UNRESOLVED, RESOLVED)
    lras_initiator: int | None = None            # port that quit with L+R+A+Start
    placements: Mapping[int, int] | None = None  # port -> 0-based placement; None: by final stocks, then %
    start_at: datetime | None = None             # None: now
    timer_seconds: int = 480
    random_seed: int = 0                         # the Game Start seed
    is_teams: bool = False
    is_pal: bool = False
    is_frozen_ps: bool = False
    scene_major: int = SCENE_VS
    language: str = "english"
    match_id: str = ""                           # Slippi online session id; empty for local games
    game_number: int = 0
    tiebreaker_number: int = 0
    # py-slippi 1.6.2 accepts only console/dolphin/network/nintendont here and rejects the whole file
    # otherwise, so the provenance mark goes into consoleNick.
    played_on: str = "dolphin"
    console_nick: str | None = "meleewm"
    extra_metadata: dict = field(default_factory=dict)


# -- UBJSON (the little the metadata needs) ------------------------------------------------------------------

def _ubjson_length(n: int) -> bytes:
    return b"U" + bytes([n]) if n < 256 else b"l" + struct.pack(">i", n)


def _ubjson(value) -> bytes:
    if isinstance(value, Mapping):
        out = [b"{"]
        for key, item in value.items():
            key_bytes = str(key).encode("utf-8")
            out += [_ubjson_length(len(key_bytes)), key_bytes, _ubjson(item)]
        return b"".join(out) + b"}"
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, (int, np.integer)):
        value = int(value)
        return b"l" + struct.pack(">i", value) if -2**31 <= value < 2**31 else b"L" + struct.pack(">q", value)
    if isinstance(value, (float, np.floating)):
        return b"D" + struct.pack(">d", float(value))
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"S" + _ubjson_length(len(data)) + data
    raise TypeError(f"cannot write {type(value).__name__} to UBJSON metadata")


# -- input normalisation -------------------------------------------------------------------------------------

def _as_table(frames) -> pa.Table:
    if isinstance(frames, pa.Table):
        return frames
    if isinstance(frames, Mapping):
        arrays = {}
        for name, values in frames.items():
            if values is None:
                continue
            if isinstance(values, (pa.Array, pa.ChunkedArray)):
                arrays[name] = values
            elif isinstance(values, np.ma.MaskedArray):
                arrays[name] = pa.array(np.ma.getdata(values), mask=np.ma.getmaskarray(values))
            else:
                arrays[name] = pa.array(np.asarray(values) if not isinstance(values, list) else values)
        return pa.table(arrays)
    raise TypeError(f"SlpGame.frames must be a pyarrow.Table or a dict of arrays, not {type(frames).__name__}")


class _Grid:
    """The input as dense [slot, frame] arrays; ``valid`` marks values the input really had."""

    def __init__(self, table: pa.Table, players: list[SlpPlayer]):
        for required in ("frame", "port"):
            if required not in table.column_names:
                raise ValueError(f"frames need a {required!r} column")
        if table.num_rows == 0:
            raise ValueError("frames is empty")
        frame = self._numpy(table, "frame", np.int64)
        port = self._numpy(table, "port", np.int64)
        follower = (self._numpy(table, "follower", bool) if "follower" in table.column_names
                    else np.zeros(len(frame), bool))
        first, last = int(frame.min()), int(frame.max())
        if first != FIRST_FRAME:
            raise ValueError(f"frames must start at {FIRST_FRAME}, the first frame Slippi records; got {first}")
        self.frame_ids = np.arange(first, last + 1, dtype=np.int32)
        self.n_frames = len(self.frame_ids)
        missing = np.setdiff1d(self.frame_ids, frame)
        if len(missing):
            raise ValueError(f"frame ids must increase by one; missing {missing[:5].tolist()}...")
        known_ports = {p.port for p in players}
        if not set(np.unique(port).tolist()) <= known_ports:
            raise ValueError(f"frames hold ports {sorted(set(port.tolist()))}, players are {sorted(known_ports)}")

        # Slots in Slippi's event order: by port, the leader before the follower.
        row_key = port * 2 + follower
        keys = np.union1d(np.unique(row_key), [p * 2 for p in known_ports])
        self.slots = [(int(k) // 2, bool(k % 2)) for k in keys]
        slot_of = {s: i for i, s in enumerate(self.slots)}
        flat = np.searchsorted(keys, row_key) * self.n_frames + (frame - first)
        if len(np.unique(flat)) != len(flat):
            raise ValueError("frames has two rows for the same (port, follower, frame)")
        shape = (len(self.slots), self.n_frames)
        self.exists = np.zeros(shape, bool)
        self.exists.reshape(-1)[flat] = True

        self.frame_seed = np.zeros(self.n_frames, np.uint32)     # set by _fill_defaults
        self.scene_counter = np.zeros(self.n_frames, np.uint32)  # set by _fill_defaults
        self.values: dict[str, np.ndarray] = {}
        self.valid: dict[str, np.ndarray] = {}
        for name in _PLAYER_COLUMNS + _FRAME_COLUMNS:
            if name not in table.column_names:
                continue
            column = table.column(name)
            target = _COLUMN_TYPES[name]
            if column.type != target:
                column = pc.cast(column, target, safe=not pa.types.is_floating(target))
            dtype = _NUMPY_TYPES[name]
            values = np.zeros(shape, dtype)
            valid = np.zeros(shape, bool)
            values.reshape(-1)[flat] = pc.fill_null(column, 0).to_numpy()
            valid.reshape(-1)[flat] = pc.is_valid(column).to_numpy()
            self.values[name], self.valid[name] = values, valid

        given = [n for n in _PLAYER_COLUMNS if n in self.values]
        if given:
            self.present = self.exists & np.logical_or.reduce([self.valid[n] for n in given])
        else:
            self.present = self.exists.copy()
        for p in players:
            if not self.present[slot_of[(p.port, False)], 0]:
                raise ValueError(f"player on port {p.port} has no data on frame {FIRST_FRAME}")

    @staticmethod
    def _numpy(table: pa.Table, name: str, dtype) -> np.ndarray:
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"column {name!r} has nulls")
        return column.to_numpy().astype(dtype)

    def get(self, name: str, default) -> np.ndarray:
        """Column values with the default where the input had none."""
        dtype = _NUMPY_TYPES[name]
        shape = (len(self.slots), self.n_frames)
        if name not in self.values:
            return np.broadcast_to(np.asarray(default, dtype=np.float64), shape).astype(dtype)
        return np.where(self.valid[name], self.values[name], default).astype(dtype)

    def set(self, name: str, values: np.ndarray) -> None:
        self.values[name] = values.astype(_NUMPY_TYPES[name])
        self.valid[name] = np.ones(values.shape, bool)

    def has(self, name: str) -> np.ndarray:
        return self.valid.get(name, np.zeros((len(self.slots), self.n_frames), bool))

    def per_frame(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A frame-level value: the first valid one among the frame's rows."""
        if name not in self.values:
            return np.zeros(self.n_frames), np.zeros(self.n_frames, bool)
        valid = self.valid[name] & self.present
        first = np.argmax(valid, axis=0)
        return self.values[name][first, np.arange(self.n_frames)], valid.any(axis=0)


def _shift(a: np.ndarray, by: int) -> np.ndarray:
    """Shift along frames: by=1 gives the previous frame's value (the first frame keeps its own)."""
    out = a.copy()
    if by == 1:
        out[:, 1:] = a[:, :-1]
    else:
        out[:, :-1] = a[:, 1:]
    return out


def _hold(values: np.ndarray, valid: np.ndarray, default) -> np.ndarray:
    """Fill gaps along the last axis with the last valid value; leading gaps take the first; none: default."""
    positions = np.arange(values.shape[-1])
    last = np.maximum.accumulate(np.where(valid, positions, -1), axis=-1)
    first = np.minimum.accumulate(np.where(valid, positions, values.shape[-1])[..., ::-1], axis=-1)[..., ::-1]
    source = np.where(last >= 0, last, first)
    any_valid = valid.any(axis=-1, keepdims=True)
    filled = np.take_along_axis(values, np.minimum(source, values.shape[-1] - 1), axis=-1)
    return np.where(any_valid, filled, default)


def _state_age(state: np.ndarray) -> np.ndarray:
    frames = np.arange(state.shape[1])
    changed = np.ones(state.shape, bool)
    changed[:, 1:] = state[:, 1:] != state[:, :-1]
    last_change = np.maximum.accumulate(np.where(changed, frames, 0), axis=1)
    return (frames - last_change).astype(np.float32)


def _fill_defaults(grid: _Grid, players: list[SlpPlayer]) -> None:
    """Complete every pre/post/frame column in place (see the module docstring for the rules)."""
    by_port = {p.port: p for p in players}
    shape = (len(grid.slots), grid.n_frames)

    def column_of_slot(value_of) -> np.ndarray:
        return np.array([value_of(port, follower) for port, follower in grid.slots])[:, None]

    # Pre values carried over from the previous frame's post values, and the other way round.
    constant = {"state": 0, "position_x": 0.0, "position_y": 0.0, "direction": 1.0, "percent": 0.0}
    for name in _CARRIED:
        pre, post = f"pre_{name}", f"post_{name}"
        pre_v, pre_ok = grid.get(pre, 0), grid.has(pre)
        post_v, post_ok = grid.get(post, 0), grid.has(post)
        # A missing post value: the next frame's pre value, when the input has it.
        take = ~post_ok & _shift(pre_ok, -1)
        take[:, -1] = False
        post_v, post_ok = np.where(take, _shift(pre_v, -1), post_v), post_ok | take
        # Then, along pre[0], post[0], pre[1], post[1], ...: the last known value (the first, at the start).
        seq_v = np.stack([pre_v, post_v], axis=2).reshape(len(grid.slots), -1)
        seq_ok = np.stack([pre_ok, post_ok], axis=2).reshape(len(grid.slots), -1)
        seq_v = _hold(seq_v, seq_ok, constant[name]).reshape(len(grid.slots), -1, 2)
        grid.set(pre, seq_v[:, :, 0])
        grid.set(post, seq_v[:, :, 1])

    # Frame-level values.
    seed, seed_ok = grid.per_frame("start_random_seed")
    pre_seed, pre_seed_ok = grid.per_frame("pre_random_seed")
    grid.frame_seed = np.where(seed_ok, seed, np.where(pre_seed_ok, pre_seed, 0)).astype(np.uint32)
    counter, counter_ok = grid.per_frame("start_scene_frame_counter")
    grid.scene_counter = np.where(counter_ok, counter, grid.frame_ids - FIRST_FRAME).astype(np.uint32)
    grid.set("pre_random_seed", grid.get("pre_random_seed", np.broadcast_to(grid.frame_seed, shape)))

    internal = column_of_slot(lambda port, follower: NANA if follower else
                              external_to_internal(by_port[port].character))
    grid.set("post_character", grid.get("post_character", np.broadcast_to(internal, shape)))
    stocks = column_of_slot(lambda port, follower: by_port[port].stocks)
    grid.set("post_stocks", grid.get("post_stocks", np.broadcast_to(stocks, shape)))
    grid.set("post_state_age", grid.get("post_state_age", _state_age(grid.values["post_state"])))

    # Controller: raw sticks from processed ones, buttons and triggers from each other.
    for raw, processed in (("pre_raw_analog_x", "pre_joystick_x"), ("pre_raw_analog_y", "pre_joystick_y"),
                           ("pre_raw_analog_cstick_x", "pre_cstick_x"),
                           ("pre_raw_analog_cstick_y", "pre_cstick_y")):
        estimate = np.clip(np.rint(grid.get(processed, 0.0).astype(np.float64) * RAW_STICK_SCALE), -128, 127)
        grid.set(raw, grid.get(raw, estimate))
    physical = grid.get("pre_buttons_physical", 0)
    processed = grid.get("pre_buttons", 0)
    grid.set("pre_buttons", np.where(grid.has("pre_buttons"), processed, physical.astype(np.uint32)))
    grid.set("pre_buttons_physical", np.where(grid.has("pre_buttons_physical"), physical,
                                              (processed & 0xFFFF).astype(np.uint16)))
    trigger = np.maximum(grid.get("pre_triggers_physical_l", 0.0), grid.get("pre_triggers_physical_r", 0.0))
    grid.set("pre_triggers", grid.get("pre_triggers", trigger))

    other = {"post_shield": FULL_SHIELD, "post_last_hit_by": NO_HITTER}
    for name in _PLAYER_COLUMNS:
        if not np.all(grid.has(name)):
            grid.set(name, grid.get(name, other.get(name, 0)))


# -- events --------------------------------------------------------------------------------------------------

def _event_payloads() -> bytes:
    body = b"".join(struct.pack(">BH", code, size) for code, size in PAYLOAD_SIZES.items())
    return bytes([EVENT_PAYLOADS, len(body) + 1]) + body


def _fixed_string(text: str, size: int, *, connect_code: bool = False) -> bytes:
    """A null-terminated Shift JIS string in a fixed-size field (the connect code's '#' is full width)."""
    if connect_code:
        text = text.replace("#", "＃")
    data = text.encode("shift_jis")
    if len(data) > size - 1:
        raise ValueError(f"{text!r} is too long for a {size}-byte Slippi string field")
    return data.ljust(size, b"\0")


def _game_info_block(game: SlpGame) -> bytes:
    """The 312-byte block Melee initialises a match from (offsets from the block's start)."""
    block = bytearray(312)
    # Game bitfields 1-4: countdown timer (2) | 4 character places (4 << 2) | stock mode (1 << 5) = 0x32;
    # bitfields 2-4 and byte 0x04 as in every recorded local VS game (0x01, 0x86, 0x4C, 0xC3).
    block[0x00:0x05] = bytes([0x32, 0x01, 0x86, 0x4C, 0xC3])
    block[0x08] = 1 if game.is_teams else 0
    block[0x0B] = 0xFF                   # item spawn frequency: -1 = off
    block[0x0C] = 0xFF                   # self-destruct score: -1
    block[0x0D] = 0x6E                   # undocumented; as recorded
    struct.pack_into(">H", block, 0x0E, game.stage)
    struct.pack_into(">I", block, 0x10, game.timer_seconds)
    block[0x20:0x28] = b"\xFF" * 8       # item switch bitfields (every item allowed; frequency is off)
    struct.pack_into(">fff", block, 0x2C, 1.0, 1.0, 1.0)  # 0x30 = damage ratio 1.0, its neighbours as recorded
    by_port = {p.port: p for p in game.players}
    for slot in range(6):
        base = 0x60 + 0x24 * slot
        player = by_port.get(slot + 1)
        if player is not None:
            character, kind, stocks, costume = (player.character, PLAYER_TYPES[player.type], player.stocks,
                                                player.costume)
            handicap, team, cpu_level = player.handicap, player.team, player.cpu_level
            # Player bitfield: 0x40 (start on the warp-in platform) for everyone, 0x80 (rumble) for humans.
            bitfield = 0xC0 if player.type == "human" else 0x40
        else:
            # Empty slots as the game fills them: a placeholder character, type 3 (empty).
            character, kind, stocks, costume = (0x1A if slot < 4 else 0x21), EMPTY_PLAYER_TYPE, 4, 0
            handicap, team, cpu_level, bitfield = 9, 0, (1 if slot < 4 else 0), 0x40
        block[base + 0x00] = character
        block[base + 0x01] = kind
        block[base + 0x02] = stocks
        block[base + 0x03] = costume
        block[base + 0x05] = 0xFF        # undocumented; 0xFF in recorded local games
        block[base + 0x07] = 0           # team shade: normal
        block[base + 0x08] = handicap
        block[base + 0x09] = team
        block[base + 0x0A] = 0x78        # undocumented; as recorded
        block[base + 0x0C] = bitfield
        block[base + 0x0E] = 0x04        # undocumented; as recorded
        block[base + 0x0F] = cpu_level
        # 0x10 damage start, 0x12 damage spawn: 0. Offense ratio, defense ratio, model scale: 1.0.
        struct.pack_into(">fff", block, base + 0x18, 1.0, 1.0, 1.0)
    return bytes(block)


def _game_start(game: SlpGame) -> bytes:
    by_port = {p.port: p for p in game.players}
    out = bytearray([GAME_START, *SLIPPI_VERSION, 0])
    out += _game_info_block(game)
    out += struct.pack(">I", game.random_seed & 0xFFFFFFFF)
    for port in range(1, 5):  # UCF toggles (1.0.0): dashback, shield drop; empty ports as recorded (UCF)
        p = by_port.get(port)
        out += struct.pack(">II", p.ucf_dashback if p else 1, p.ucf_shield_drop if p else 1)
    out += bytes(16 * 4)                                    # name tags (1.3.0): none
    out += bytes([int(game.is_pal), int(game.is_frozen_ps)])  # 1.5.0, 2.0.0
    out += bytes([SCENE_MINOR_IN_GAME, game.scene_major])   # 3.7.0
    for port in range(1, 5):                                # display names (3.9.0)
        out += _fixed_string(by_port[port].display_name if port in by_port else "", 31)
    for port in range(1, 5):                                # connect codes (3.9.0)
        out += _fixed_string(by_port[port].connect_code if port in by_port else "", 10, connect_code=True)
    out += bytes(29 * 4)                                    # Slippi uids (3.11.0): none
    out += bytes([LANGUAGES[game.language]])                # 3.12.0
    out += _fixed_string(game.match_id, 51)                 # 3.14.0
    out += struct.pack(">II", game.game_number, game.tiebreaker_number)
    assert len(out) == 1 + GAME_START_SIZE, len(out)
    return bytes(out)


def _placements(game: SlpGame, grid: _Grid) -> dict[int, int]:
    if game.placements is not None:
        return {int(port): int(place) for port, place in game.placements.items()}
    final = []
    for slot, (port, follower) in enumerate(grid.slots):
        if follower:
            continue
        seen = np.nonzero(grid.present[slot])[0]
        last = seen[-1]
        final.append((-int(grid.values["post_stocks"][slot, last]),
                      float(grid.values["post_percent"][slot, last]), port))
    return {port: place for place, (_, _, port) in enumerate(sorted(final))}


def _game_end(game: SlpGame, grid: _Grid) -> bytes:
    if game.end_method not in END_METHODS:
        raise ValueError(f"end_method must be one of {sorted(END_METHODS)}, not {game.end_method!r}")
    record = np.zeros(1, GAME_END_DTYPE)
    record["command"] = GAME_END
    record["method"] = END_METHODS[game.end_method]
    record["lras_initiator"] = -1 if game.lras_initiator is None else game.lras_initiator - 1
    placements = np.full(4, -1, np.int8)
    for port, place in _placements(game, grid).items():
        placements[port - 1] = place
    record["placements"][0] = placements
    return record.tobytes()


def _item_records(items, frame_ids: np.ndarray) -> np.ndarray:
    """Item Update records of ``SlpGame.items``, in frame order (rows of a frame as given)."""
    table = _as_table(items)
    if "frame" not in table.column_names:
        raise ValueError("items need a 'frame' column")
    frame = table.column("frame")
    if frame.null_count:
        raise ValueError("column 'frame' of items has nulls")
    frame = frame.to_numpy().astype(np.int64)
    outside = (frame < frame_ids[0]) | (frame > frame_ids[-1])
    if outside.any():
        raise ValueError(f"items on frames {np.unique(frame[outside])[:5].tolist()} outside the game's frames "
                         f"{int(frame_ids[0])}..{int(frame_ids[-1])}")
    rec = np.zeros(len(frame), ITEM_DTYPE)
    rec["command"] = ITEM_UPDATE
    rec["frame"] = frame
    defaults = {"owner": -1}
    for name in ITEM_DTYPE.names[2:]:
        if name in table.column_names:
            rec[name] = pc.fill_null(table.column(name), defaults.get(name, 0)).to_numpy(zero_copy_only=False)
        else:
            rec[name] = defaults.get(name, 0)
    given = (pc.is_valid(table.column("direction")).to_numpy(zero_copy_only=False)
             if "direction" in table.column_names else np.zeros(len(rec), bool))
    rec["direction"] = np.where(given, rec["direction"], np.sign(rec["velocity_x"]))   # facing its flight
    return rec[np.argsort(frame, kind="stable")]


def _frame_events(grid: _Grid, items=None) -> tuple[bytes, dict[tuple[int, int], int]]:
    """Every frame's events in Slippi's order; also post-frame counts per (port index, internal character)."""
    n_slots, n_frames = len(grid.slots), grid.n_frames
    frame_ids = grid.frame_ids

    starts = np.zeros(n_frames, FRAME_START_DTYPE)
    starts["command"] = FRAME_START
    starts["frame"] = frame_ids
    starts["random_seed"] = grid.frame_seed
    starts["scene_frame_counter"] = grid.scene_counter
    bookends = np.zeros(n_frames, FRAME_BOOKEND_DTYPE)
    bookends["command"] = FRAME_BOOKEND
    bookends["frame"] = frame_ids
    bookends["latest_finalized_frame"] = frame_ids

    slot_idx, frame_idx = np.nonzero(grid.present)  # sorted by slot, then frame
    port_index = np.array([port - 1 for port, _ in grid.slots], np.uint8)[slot_idx]
    is_follower = np.array([f for _, f in grid.slots], np.uint8)[slot_idx]
    records = {}
    for name, dtype, command, prefix in (("pre", PRE_DTYPE, PRE_FRAME, "pre_"),
                                         ("post", POST_DTYPE, POST_FRAME, "post_")):
        rec = np.zeros(len(slot_idx), dtype)
        rec["command"] = command
        rec["frame"] = frame_ids[frame_idx]
        rec["port_index"] = port_index
        rec["is_follower"] = is_follower
        for field_name in dtype.names[4:]:
            rec[field_name] = grid.values[prefix + field_name][slot_idx, frame_idx]
        records[name] = rec

    item_rec = _item_records(items, frame_ids) if items is not None else np.zeros(0, ITEM_DTYPE)
    item_frame = item_rec["frame"].astype(np.int64) - FIRST_FRAME
    item_rank = np.arange(len(item_rec)) - np.searchsorted(item_frame, item_frame)   # position within its frame

    # Order: frame, then kind (start, pres, posts, items, bookend), then slot (an item: its rank in the frame).
    # Scatter the records into one buffer.
    kinds = [(starts, np.arange(n_frames), 0, np.zeros(n_frames, np.int64)),
             (records["pre"], frame_idx, 1, slot_idx),
             (records["post"], frame_idx, 2, slot_idx),
             (item_rec, item_frame, 3, item_rank),
             (bookends, np.arange(n_frames), 4, np.zeros(n_frames, np.int64))]
    width = max(n_slots, int(item_rank.max(initial=0))) + 1
    keys = np.concatenate([(f.astype(np.int64) * 5 + kind) * width + s for _, f, kind, s in kinds])
    sizes = np.concatenate([np.full(len(r), r.dtype.itemsize, np.int64) for r, *_ in kinds])
    order = np.argsort(keys, kind="stable")
    offsets = np.empty(len(keys), np.int64)
    offsets[order] = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])
    out = np.empty(int(sizes.sum()), np.uint8)
    start = 0
    for rec, *_ in kinds:
        n, size = len(rec), rec.dtype.itemsize
        where = offsets[start:start + n, None] + np.arange(size)
        out[where] = rec.view(np.uint8).reshape(n, size)
        start += n

    counts: dict[tuple[int, int], int] = {}
    post = records["post"]
    pairs, n = np.unique(np.stack([post["port_index"].astype(np.int64), post["character"].astype(np.int64)]),
                         axis=1, return_counts=True)
    for (idx, char), count in zip(pairs.T.tolist(), n.tolist()):
        counts[(idx, char)] = count
    return out.tobytes(), counts


def _metadata(game: SlpGame, grid: _Grid, counts: dict[tuple[int, int], int]) -> dict:
    start_at = game.start_at or datetime.now(timezone.utc)
    if start_at.tzinfo is not None:
        start_at = start_at.astimezone(timezone.utc)
    players = {}
    for player in sorted(game.players, key=lambda p: p.port):
        idx = player.port - 1
        names = {}
        if player.display_name or player.connect_code:
            names = {"netplay": player.display_name, "code": player.connect_code}
        players[str(idx)] = {
            "names": names,
            "characters": {str(char): count for (i, char), count in sorted(counts.items()) if i == idx},
        }
    meta = {"startAt": start_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "lastFrame": int(grid.frame_ids[-1]),
            "players": players, "playedOn": game.played_on}
    if game.console_nick:
        meta["consoleNick"] = game.console_nick
    meta.update(game.extra_metadata)
    return meta


def _validate(game: SlpGame) -> None:
    if not game.players:
        raise ValueError("a game needs at least one player")
    ports = [p.port for p in game.players]
    if len(set(ports)) != len(ports) or not all(1 <= p <= 4 for p in ports):
        raise ValueError(f"player ports must be distinct and in 1-4, got {ports}")
    for p in game.players:
        if p.character not in EXTERNAL_NAMES:
            raise ValueError(f"port {p.port}: unknown external character id {p.character}")
        if p.type not in PLAYER_TYPES:
            raise ValueError(f"port {p.port}: player type must be one of {sorted(PLAYER_TYPES)}, not {p.type!r}")
    if not 0 <= game.stage < 2**16:
        raise ValueError(f"bad stage id {game.stage}")
    if game.language not in LANGUAGES:
        raise ValueError(f"language must be one of {sorted(LANGUAGES)}")
    if game.lras_initiator is not None and game.lras_initiator not in ports:
        raise ValueError(f"lras_initiator {game.lras_initiator} is not a player's port")


def encode_slp(game: SlpGame) -> bytes:
    """The bytes of a ``.slp`` file for ``game``."""
    _validate(game)
    grid = _Grid(_as_table(game.frames), game.players)
    _fill_defaults(grid, game.players)
    frames, counts = _frame_events(grid, game.items)
    raw = b"".join([_event_payloads(), _game_start(game), frames, _game_end(game, grid)])
    if len(raw) >= 2**31:
        raise ValueError("game too long for one .slp file")
    return b"".join([b"{U\x03raw[$U#l", struct.pack(">i", len(raw)), raw,
                     b"U\x08metadata", _ubjson(_metadata(game, grid, counts)), b"}"])


def write_slp(game: SlpGame, path: str | os.PathLike) -> Path:
    """Write ``game`` to ``path`` atomically."""
    return write_bytes_atomic(path, encode_slp(game))


# -- from the dataset ----------------------------------------------------------------------------------------

def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.rstrip("\x00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def game_from_dataset(dataset, game_id: str, *, last_frame: int | None = None) -> SlpGame:
    """Rebuild a game of a dataset (``meleewm.replay.dataset.Dataset``) as an :class:`SlpGame`.

    ``last_frame`` keeps only frames up to that id (a prefix, e.g. to continue it with the model); a prefix
    that stops before the game's end is written as a NO_CONTEST with placements from the final frame.
    """
    record = dataset.game(game_id)
    frames = dataset.frames(game_id)
    truncated = last_frame is not None and last_frame < record["last_frame"]
    items = dataset.items(game_id)
    if last_frame is not None:
        frames = frames.filter(pc.less_equal(frames.column("frame"), last_frame))
        items = items.filter(pc.less_equal(items.column("frame"), last_frame))
    players = []
    placements = {}
    for p in record["players"]:
        team = p.get("team")
        players.append(SlpPlayer(
            port=p["port"], character=p["character"], costume=p.get("costume") or 0,
            type=p.get("type") if p.get("type") in PLAYER_TYPES else "human",
            stocks=p["start_stocks"] if p.get("start_stocks") is not None else 4,
            team=TEAM_IDS.get(str(team).lower(), 0) if team is not None else 0,
            cpu_level=p["cpu_level"] if p.get("cpu_level") is not None else 1,
            handicap=p["handicap"] if p.get("handicap") is not None else 9,
        ))
        if p.get("placement") is not None:
            placements[p["port"]] = p["placement"]
    end_method = record.get("end_method")
    complete = not truncated and end_method in END_METHODS
    return SlpGame(
        stage=record["stage"],
        players=players,
        frames=frames,
        items=items.sort_by([("frame", "ascending"), ("slot", "ascending")]) if items.num_rows else None,
        end_method=end_method if complete else "NO_CONTEST",
        lras_initiator=record.get("lras_initiator") if complete else None,
        placements=placements if complete and len(placements) == len(players) else None,
        start_at=_parse_time(record.get("start_at")),
        timer_seconds=record["timer_seconds"] if record.get("timer_seconds") is not None else 480,
        is_teams=bool(record.get("is_teams")),
        is_pal=bool(record.get("is_pal")),
        is_frozen_ps=bool(record.get("is_frozen_ps")),
        scene_major=record["scene_major"] if record.get("scene_major") is not None else SCENE_VS,
    )
