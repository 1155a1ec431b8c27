"""The encoding between raw dataset columns and model tensors (``docs/encoding.md`` documents every field).

Causality: step t reads state(t-1), both players' controllers(t) and the constants (stage, characters), and
predicts state(t). "state" is the post-frame fields of a frame, "controllers" the pre-frame controller fields of
the same frame. A game of F frames gives F-1 targets.

Per player and frame, the state splits into
  * ``cont``   normalised floats (``(raw - mean) / std``, stats fitted on training games),
  * ``binary`` 0/1 bits (facing, airborne, invulnerable, the 40 state-flag bits),
  * ``cat``    vocabulary indices (index 0 = UNKNOWN: an id unseen at fit time, or a missing value),
each with a same-shaped presence mask (False where the field is null: an old Slippi version, an absent player).
Masked entries hold 0 and losses must skip them. ``post_state_age`` is not encoded: it follows
:func:`apply_state_age_rule`. Controllers (``ctrl``) are already in [-1, 1] / [0, 1] and are not normalised.

The player axis is always the one just before the field axis (``[..., 2, n]``); player 0 is the lower port.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meleewm.data.pool import map_game_groups
from meleewm.errors import MeleewmError
from meleewm.melee.buttons import DIGITAL_BUTTONS, PhysicalButton, button_bits
from meleewm.melee.characters import EXTERNAL_NAMES, INTERNAL_NAMES
from meleewm.melee.stages import GROUND_MIRROR, STAGE_NAMES, SURFACE_HEIGHTS, ground_mirror
from meleewm.replay.limits import clip as clip_to_limits

ENCODING_VERSION = 1
UNKNOWN = 0  # vocabulary index of an unseen or missing categorical value

# -- field lists (their order is the tensor layout) ---------------------------------------------------------------

CONT_FIELDS: tuple[str, ...] = (
    "post_position_x", "post_position_y",
    "post_velocities_self_x_air", "post_velocities_self_y", "post_velocities_knockback_x",
    "post_velocities_knockback_y", "post_velocities_self_x_ground",
    "post_percent", "post_shield", "post_hitlag", "post_misc_as", "post_combo_count",
)
# Fields that change sign under x -> -x. Their mean is fixed at 0 so that mirroring is an exact negation.
MIRROR_CONT: tuple[str, ...] = (
    "post_position_x", "post_velocities_self_x_air", "post_velocities_knockback_x", "post_velocities_self_x_ground",
)
INTEGER_CONT: tuple[str, ...] = ("post_combo_count",)  # rounded (and clipped at 0) when decoded

FLAG_BITS: tuple[str, ...] = tuple(f"post_state_flags_{j}_bit{i}" for j in range(5) for i in range(8))
BINARY_FIELDS: tuple[str, ...] = ("facing", "airborne", "invulnerable") + FLAG_BITS

CAT_FIELDS: tuple[str, ...] = (
    "post_state", "post_jumps", "post_stocks", "post_l_cancel", "post_hurtbox_state", "post_ground",
    "post_last_attack_landed", "post_character",
)
# Categorical fields whose vocabulary starts from known game facts (plus whatever else the fit games show).
FIXED_VOCABS: dict[str, tuple[int, ...]] = {
    "post_l_cancel": (0, 1, 2),
    "post_hurtbox_state": (0, 1, 2),
    "post_character": tuple(sorted(INTERNAL_NAMES)),
}

STICK_FIELDS: tuple[str, ...] = ("pre_joystick_x", "pre_joystick_y", "pre_cstick_x", "pre_cstick_y")
TRIGGER_FIELDS: tuple[str, ...] = ("pre_triggers_physical_l", "pre_triggers_physical_r")
BUTTON_FIELDS: tuple[str, ...] = tuple(f"button_{b}" for b in DIGITAL_BUTTONS)
CTRL_FIELDS: tuple[str, ...] = STICK_FIELDS + TRIGGER_FIELDS + BUTTON_FIELDS
MIRROR_CTRL: tuple[str, ...] = ("pre_joystick_x", "pre_cstick_x")

ITEM_CONT_FIELDS: tuple[str, ...] = ("position_x", "position_y", "velocity_x", "velocity_y")
MIRROR_ITEM_CONT: tuple[str, ...] = ("position_x", "velocity_x")
# Item owner, relative to the two players (so that swapping players is a relabelling).
ITEM_OWNER_NAMES: tuple[str, ...] = ("none", "player0", "player1", "other")

# Raw columns that encode_game reads.
STATE_COLUMNS: tuple[str, ...] = (
    CONT_FIELDS + ("post_direction", "post_airborne", "post_hurtbox_state")
    + tuple(f"post_state_flags_{j}" for j in range(5)) + CAT_FIELDS + ("post_state_age",)
)
CTRL_COLUMNS: tuple[str, ...] = STICK_FIELDS + TRIGGER_FIELDS + ("pre_triggers", "pre_buttons_physical")

# Arrays of an EncodedGame (and of a window sample) that have a frame axis first.
FRAME_ARRAYS: tuple[str, ...] = (
    "frame_ids", "cont", "cont_mask", "binary", "bin_mask", "cat", "cat_mask", "ctrl", "state_age",
    "item_present", "item_type", "item_owner", "item_cont",
)
ITEM_ARRAYS: tuple[str, ...] = ("item_present", "item_type", "item_owner", "item_cont")


class EncodingMismatch(MeleewmError, ValueError):
    """Two encodings (e.g. a checkpoint's and a cache's) that cannot be used together."""


# -- the encoded arrays of one game -------------------------------------------------------------------------------

@dataclass
class EncodedGame:
    """One 2-player game, encoded. F frames; S item slots (item arrays are None when items are off)."""

    game_id: str
    frame_ids: np.ndarray        # [F] int32, increasing
    cont: np.ndarray             # [F, 2, n_cont] float32, normalised; 0 where masked
    cont_mask: np.ndarray        # [F, 2, n_cont] bool, False where the field is null (old version, absent player)
    binary: np.ndarray           # [F, 2, n_bin] uint8 0/1
    bin_mask: np.ndarray         # [F, 2, n_bin] bool
    cat: np.ndarray              # [F, 2, n_cat] int32 vocabulary indices (0 = UNKNOWN)
    cat_mask: np.ndarray         # [F, 2, n_cat] bool
    ctrl: np.ndarray             # [F, 2, n_ctrl] float32, controllers of that frame (pre-frame fields)
    state_age: np.ndarray        # [F, 2] float32 post_state_age, recorded or counted (spec.age_by_rule); NaN: unknown
    const_stage: int             # stage vocabulary index
    const_chars: np.ndarray      # [2] int64 character (select-screen id) vocabulary indices
    item_present: np.ndarray | None = None  # [F, S] uint8
    item_type: np.ndarray | None = None     # [F, S] int32 item-type vocabulary index
    item_owner: np.ndarray | None = None    # [F, S] int32 index into ITEM_OWNER_NAMES
    item_cont: np.ndarray | None = None     # [F, S, 4] float32 normalised ITEM_CONT_FIELDS

    def __len__(self) -> int:
        return int(self.frame_ids.shape[0])

    def slice(self, start: int, stop: int) -> EncodedGame:
        """Frames [start, stop) (views)."""
        return replace(self, **{k: getattr(self, k)[start:stop] for k in FRAME_ARRAYS
                                if getattr(self, k) is not None})

    def arrays(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- helpers that work on numpy arrays and torch tensors alike ---------------------------------------------------

def is_torch(x) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch for numpy callers)."""
    return type(x).__module__.split(".")[0] == "torch"


def to_numpy(x) -> np.ndarray:
    """``x`` (a tensor, on any device, or array-like) as a numpy array."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def apply_state_age_rule(prev_action, prev_age, new_action):
    """``post_state_age`` of the next frame: prev + 1 if the action is unchanged, else 0 (numpy or torch).

    A rule, not learned. On games-1 it matches the recorded value on ~79 % of unchanged-action frames (the rest
    are animations that run at non-unit rates) and ~51 % of action changes (the others start at 1).
    """
    same = new_action == prev_action
    if is_torch(same):
        import torch
        return torch.where(same, prev_age + 1, torch.zeros_like(prev_age))
    return np.where(same, np.asarray(prev_age) + 1, 0).astype(np.asarray(prev_age).dtype, copy=False)


def frames_in_action(actions: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``post_state_age`` as :func:`apply_state_age_rule` counts it along a game, ``[F, P]`` float32: 0 on the first
    frame and wherever the action changes, else the previous age + 1; NaN where the action is unknown (the next known
    one starts again at 0)."""
    actions, valid = np.asarray(actions), np.asarray(valid, bool)
    frames = np.arange(len(actions))[:, None]
    starts = np.ones(actions.shape, bool)
    starts[1:] = (actions[1:] != actions[:-1]) | ~valid[:-1]
    last_start = np.maximum.accumulate(np.where(starts, frames, 0), axis=0)
    return np.where(valid, frames - last_start, np.nan).astype(np.float32)


def frames_in_last_action(actions):
    """``[B, 2]``: how many frames the last action of ``actions`` (``[B, T, 2]`` torch, the time axis second) has
    lasted at the last frame, 0 on its first: :func:`frames_in_action`'s count at the end of a history that may have
    begun inside the action."""
    return (actions == actions[:, -1:]).flip(1).long().cumprod(1).sum(1) - 1


def _lookup(values: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """Vocabulary indices (position + 1, 0 for out of vocabulary) of raw integer values."""
    values = np.asarray(values)
    if len(vocab) == 0:
        return np.zeros(values.shape, np.int32)
    pos = np.searchsorted(vocab, values)
    pos_c = np.minimum(pos, len(vocab) - 1)
    found = vocab[pos_c] == values
    return np.where(found, pos_c + 1, 0).astype(np.int32)


def _stats(count: float, total: float, total_sq: float, zero_mean: bool) -> tuple[float, float]:
    if count == 0:
        return 0.0, 1.0
    mean = 0.0 if zero_mean else total / count
    var = max(total_sq / count - (2 * mean * total / count) + mean * mean, 0.0)
    std = float(np.sqrt(var))
    return float(mean), (std if std > 1e-6 else 1.0)


# -- reading a game's raw columns --------------------------------------------------------------------------------

def read_player_columns(dataset, game_id: str, columns) -> tuple[np.ndarray, tuple[int, int], dict, dict]:
    """The leader rows of both players: (frame_ids [F], ports, values {col: [F, 2]}, valid {col: [F, 2]}).

    Null entries read as 0 in ``values`` and False in ``valid``; non-finite floats count as null.
    """
    columns = list(dict.fromkeys(columns))
    table = dataset.frames(game_id, columns=["frame", "port", "follower", *columns])
    table = table.filter(pc.invert(table.column("follower")))
    ports = sorted(set(table.column("port").to_pylist()))
    if len(ports) != 2:
        raise ValueError(f"game {game_id} has {len(ports)} players (ports {ports}); the encoding models exactly 2")
    blocks = [table.filter(pc.equal(table.column("port"), p)) for p in ports]
    frames = [b.column("frame").to_numpy() for b in blocks]
    if not np.array_equal(frames[0], frames[1]):
        raise ValueError(f"game {game_id}: the two players' frame ids differ")
    values, valid = {}, {}
    for col in columns:
        vs, ok = [], []
        for block in blocks:
            arr = block.column(col)
            v = arr.fill_null(0).to_numpy()
            m = arr.is_valid().to_numpy()
            if v.dtype.kind == "f":
                m = m & np.isfinite(v)
                v = np.where(m, v, 0)
            vs.append(v)
            ok.append(m)
        values[col] = np.stack(vs, axis=1)
        valid[col] = np.stack(ok, axis=1)
    return frames[0].astype(np.int32), (int(ports[0]), int(ports[1])), values, valid


# -- the fit's statistics ----------------------------------------------------------------------------------------

# Games a fit task reads: about a second of work, so that sending a task and its answer costs little beside it.
FIT_GAMES_PER_TASK = 32


@dataclass
class FitStatistics:
    """What the spec's fit needs of some games: their frames, each game's sums, and the categories they show."""

    frames: int
    sums: np.ndarray               # [games, fields, 3] float64: count, sum and sum of squares of each continuous
                                   # field (CONT_FIELDS, then ITEM_CONT_FIELDS), per game in the order given
    values: dict[str, set[int]]    # raw values seen of each of CAT_FIELDS, and of "item_type"


def _fit_statistics(dataset, game_ids: list[str], items: bool) -> FitStatistics:
    """The fit's statistics of ``game_ids``, in that order (a task of :meth:`EncodingSpec.fit`)."""
    sums = np.zeros((len(game_ids), len(CONT_FIELDS) + len(ITEM_CONT_FIELDS), 3))
    values: dict[str, set[int]] = {f: set() for f in (*CAT_FIELDS, "item_type")}
    frames = 0
    for g, game_id in enumerate(game_ids):
        frame_ids, _, raw, valid = read_player_columns(dataset, game_id, CONT_FIELDS + CAT_FIELDS)
        frames += len(frame_ids)
        for i, f in enumerate(CONT_FIELDS):
            # Clipped to the physical limits: one game with a garbage value cannot poison the statistics.
            v = clip_to_limits(f, raw[f][valid[f]].astype(np.float64))
            sums[g, i] = (v.size, v.sum(), np.square(v).sum())
        for f in CAT_FIELDS:
            values[f].update(np.unique(raw[f][valid[f]]).tolist())
        if items:
            table = dataset.items(game_id, columns=["type", *ITEM_CONT_FIELDS])
            values["item_type"].update(pc.unique(table.column("type").drop_null()).to_pylist())
            for i, f in enumerate(ITEM_CONT_FIELDS, start=len(CONT_FIELDS)):
                v = table.column(f).drop_null().to_numpy().astype(np.float64)
                v = v[np.isfinite(v)]
                sums[g, i] = (v.size, v.sum(), np.square(v).sum())
    return FitStatistics(frames=frames, sums=sums, values=values)


# -- the spec ---------------------------------------------------------------------------------------------------

@dataclass
class EncodingSpec:
    """Everything needed to turn raw columns into tensors and back. Build it with :meth:`fit`."""

    cont_stats: dict[str, list[float]]              # field -> [mean, std], in CONT_FIELDS order
    vocabs: dict[str, list[int]]                    # cat field -> raw values; index i+1 is vocabs[f][i]
    stage_vocab: list[int] = field(default_factory=lambda: sorted(STAGE_NAMES))
    char_vocab: list[int] = field(default_factory=lambda: sorted(EXTERNAL_NAMES))
    items: bool = False
    item_slots: int = 8
    # Only items a player owns (projectiles, turnips, thrown items): stage items such as Yoshi's Story's Shy Guys
    # left out. A character standing still beside Shy Guys for 20 s is beyond what the games teach (docs/design.md).
    player_items_only: bool = False
    # The state_age input counted as closed loop counts it (:func:`frames_in_action`), not as recorded: recorded ages
    # start at 1 on about half of the actions and read -1 through a death, so a model trained on them met ages in
    # closed loop that it never saw, one frame off, and could not time a respawn (docs/design.md).
    age_by_rule: bool = False
    item_type_vocab: list[int] = field(default_factory=list)
    item_stats: dict[str, list[float]] = field(default_factory=dict)  # ITEM_CONT_FIELDS -> [mean, std]
    fit_info: dict[str, Any] = field(default_factory=dict)            # games and frames fitted on (not compared)
    version: int = ENCODING_VERSION

    # -- fitting ------------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, dataset, game_ids, items: bool = False, item_slots: int = 8, workers: int = 1) -> EncodingSpec:
        """Normalisation statistics and vocabularies from the leader rows of ``game_ids`` (2-player games).

        ``workers`` processes read the games, FIT_GAMES_PER_TASK at a time, and send back each game's sums
        (:func:`_fit_statistics`); they are added here in sorted game order, as one process adds them, so the spec
        is the same to the bit whatever the number of workers.
        """
        game_ids = sorted(game_ids)
        sums = np.zeros((len(CONT_FIELDS) + len(ITEM_CONT_FIELDS), 3))
        seen: dict[str, set[int]] = {f: set(FIXED_VOCABS.get(f, ())) for f in CAT_FIELDS}
        seen["item_type"] = set()
        n_frames = 0
        tasks = [(game_ids[i:i + FIT_GAMES_PER_TASK], (items,)) for i in range(0, len(game_ids), FIT_GAMES_PER_TASK)]
        finished: dict[int, FitStatistics] = {}
        merged = 0
        for index, statistics in map_game_groups(_fit_statistics, dataset, tasks, workers):
            finished[index] = statistics
            while merged in finished:
                part = finished.pop(merged)
                merged += 1
                n_frames += part.frames
                for game_sums in part.sums:
                    sums += game_sums
                for name, values in part.values.items():
                    seen[name].update(values)
        cont_stats = {f: list(_stats(*sums[i], zero_mean=f in MIRROR_CONT)) for i, f in enumerate(CONT_FIELDS)}
        vocabs = {f: sorted(int(x) for x in seen[f]) for f in CAT_FIELDS}
        spec = cls(cont_stats=cont_stats, vocabs=vocabs, items=bool(items), item_slots=int(item_slots),
                   fit_info={"games": len(game_ids), "frames": int(n_frames)})
        if items:
            spec.item_type_vocab = sorted(int(x) for x in seen["item_type"])
            spec.item_stats = {f: list(_stats(*sums[len(CONT_FIELDS) + i], zero_mean=f in MIRROR_ITEM_CONT))
                               for i, f in enumerate(ITEM_CONT_FIELDS)}
        return spec

    # -- serialisation ------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": "meleewm-encoding", "version": self.version,
            "cont_fields": list(CONT_FIELDS), "binary_fields": list(BINARY_FIELDS),
            "cat_fields": list(CAT_FIELDS), "ctrl_fields": list(CTRL_FIELDS),
            "cont_stats": {f: list(self.cont_stats[f]) for f in CONT_FIELDS},
            "vocabs": {f: list(self.vocabs[f]) for f in CAT_FIELDS},
            "stage_vocab": list(self.stage_vocab), "char_vocab": list(self.char_vocab),
            "items": self.items, "item_slots": self.item_slots,
            "item_type_vocab": list(self.item_type_vocab),
            "item_stats": {f: list(v) for f, v in self.item_stats.items()},
            "fit_info": dict(self.fit_info),
            # Only when set, so that the specs (and cache keys) written before the option stay the same.
            **({"player_items_only": True} if self.player_items_only else {}),
            **({"age_by_rule": True} if self.age_by_rule else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> EncodingSpec:
        if d.get("version") != ENCODING_VERSION:
            raise EncodingMismatch(f"encoding version {d.get('version')} cannot be read by this meleewm, which uses "
                                   f"encoding version {ENCODING_VERSION}")
        for key, ours in (("cont_fields", CONT_FIELDS), ("binary_fields", BINARY_FIELDS),
                          ("cat_fields", CAT_FIELDS), ("ctrl_fields", CTRL_FIELDS)):
            if tuple(d.get(key, ())) != ours:
                diff = _list_diff(d.get(key, []), ours, ("stored", "this meleewm"))
                raise EncodingMismatch(f"encoding {key} differ from this meleewm's (same version "
                                       f"{ENCODING_VERSION}): {diff}")
        return cls(
            cont_stats={f: [float(x) for x in d["cont_stats"][f]] for f in CONT_FIELDS},
            vocabs={f: [int(x) for x in d["vocabs"][f]] for f in CAT_FIELDS},
            stage_vocab=[int(x) for x in d["stage_vocab"]], char_vocab=[int(x) for x in d["char_vocab"]],
            items=bool(d["items"]), item_slots=int(d["item_slots"]),
            item_type_vocab=[int(x) for x in d["item_type_vocab"]],
            item_stats={f: [float(x) for x in v] for f, v in d["item_stats"].items()},
            player_items_only=bool(d.get("player_items_only", False)),
            age_by_rule=bool(d.get("age_by_rule", False)),
            fit_info=dict(d.get("fit_info", {})), version=int(d["version"]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EncodingSpec:
        return cls.from_dict(json.loads(text))

    def hash(self) -> str:
        """sha256 (hex) of the canonical JSON of :meth:`to_dict`."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def check_compatible(self, other: EncodingSpec, what: tuple[str, str] = ("this", "other")) -> None:
        """Raise :class:`EncodingMismatch`, naming every difference, unless both encode data identically."""
        a, b = self.to_dict(), other.to_dict()
        problems = []
        if a["version"] != b["version"]:
            problems.append(f"version: {what[0]} {a['version']}, {what[1]} {b['version']}")
        for key in ("cont_fields", "binary_fields", "cat_fields", "ctrl_fields", "stage_vocab", "char_vocab",
                    "items", "item_slots", "item_type_vocab", "player_items_only", "age_by_rule"):
            if a.get(key) != b.get(key):
                problems.append(f"{key}: {_describe(a.get(key), b.get(key), what)}")
        for f in sorted(set(a["vocabs"]) | set(b["vocabs"])):
            va, vb = a["vocabs"].get(f), b["vocabs"].get(f)
            if va != vb:
                problems.append(f"vocabulary of {f}: {_describe(va, vb, what)}")
        for key in ("cont_stats", "item_stats"):
            for f in sorted(set(a[key]) | set(b[key])):
                if a[key].get(f) != b[key].get(f):
                    problems.append(f"normalisation of {f} (mean, std): {what[0]} {a[key].get(f)}, "
                                    f"{what[1]} {b[key].get(f)}")
        if problems:
            raise EncodingMismatch("incompatible encodings:\n  " + "\n  ".join(problems))

    # -- sizes and names ----------------------------------------------------------------------------------------

    @property
    def cont_fields(self) -> list[str]:
        return list(CONT_FIELDS)

    @property
    def binary_fields(self) -> list[str]:
        return list(BINARY_FIELDS)

    @property
    def cat_fields(self) -> list[tuple[str, int]]:
        """(name, vocabulary size including UNKNOWN) in tensor order."""
        return [(f, len(self.vocabs[f]) + 1) for f in CAT_FIELDS]

    @property
    def ctrl_fields(self) -> list[str]:
        return list(CTRL_FIELDS)

    n_cont = property(lambda self: len(CONT_FIELDS))
    n_bin = property(lambda self: len(BINARY_FIELDS))
    n_cat = property(lambda self: len(CAT_FIELDS))
    n_ctrl = property(lambda self: len(CTRL_FIELDS))
    n_stages = property(lambda self: len(self.stage_vocab) + 1, doc="stage vocabulary size with UNKNOWN")
    n_chars = property(lambda self: len(self.char_vocab) + 1, doc="character vocabulary size with UNKNOWN")
    n_item_types = property(lambda self: len(self.item_type_vocab) + 1)
    n_item_owners = property(lambda self: len(ITEM_OWNER_NAMES))
    n_item_cont = property(lambda self: len(ITEM_CONT_FIELDS))
    item_cont_fields = property(lambda self: list(ITEM_CONT_FIELDS))

    def cont_index(self, name: str) -> int:
        return _index(CONT_FIELDS, name, "continuous")

    def bin_index(self, name: str) -> int:
        return _index(BINARY_FIELDS, name, "binary")

    def cat_index(self, name: str) -> int:
        return _index(CAT_FIELDS, name, "categorical")

    def ctrl_index(self, name: str) -> int:
        return _index(CTRL_FIELDS, name, "controller")

    def normalise(self, name: str, raw):
        """A continuous field's raw value(s) in model units, ``(raw - mean) / std`` (numpy, torch or float)."""
        mean, std = self.cont_stats[name]
        return (raw - mean) / std

    def denormalise(self, name: str, value):
        """A continuous field's model-unit value(s) in raw units (the inverse of :meth:`normalise`)."""
        mean, std = self.cont_stats[name]
        return value * std + mean

    def cat_value_index(self, name: str, raw: int) -> int:
        """Vocabulary index of a raw categorical value (0 = UNKNOWN when the fit games never showed it)."""
        return int(_lookup(np.int64(raw), self._arr("vocab_arrays")[name]))

    def decode_lut(self, name: str) -> np.ndarray:
        """Vocabulary index → raw value of a categorical field (UNKNOWN → -1)."""
        return self._arr("decode_luts")[name]

    def vocab(self, name: str) -> list[int]:
        """Raw values of a categorical field; vocabulary index i + 1 is ``vocab(name)[i]``, 0 is UNKNOWN."""
        return list(self.vocabs[name])

    def stage_index(self, stage_id: int) -> int:
        return int(_lookup(np.int64(stage_id), np.asarray(self.stage_vocab, np.int64)))

    def char_index(self, ext_id: int) -> int:
        return int(_lookup(np.int64(ext_id), np.asarray(self.char_vocab, np.int64)))

    def encode_constants(self, stage_id: int, ext_chars) -> tuple[int, np.ndarray]:
        """(stage index, [2] character indices) from a Slippi stage id and two select-screen character ids."""
        return self.stage_index(stage_id), np.array([self.char_index(c) for c in ext_chars], np.int64)

    def item_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of ITEM_CONT_FIELDS in raw units: encoded = (raw - mean) / std."""
        return self._arr("item_mean"), self._arr("item_std")

    # -- cached arrays ------------------------------------------------------------------------------------------

    def _arr(self, name):
        cache = self.__dict__.setdefault("_cache", {})
        if name not in cache:
            if name == "mean":
                cache[name] = np.array([self.cont_stats[f][0] for f in CONT_FIELDS], np.float64)
            elif name == "std":
                cache[name] = np.array([self.cont_stats[f][1] for f in CONT_FIELDS], np.float64)
            elif name == "zero":  # raw 0 encoded as encode_state_columns writes it
                cache[name] = ((0.0 - self._arr("mean")) / self._arr("std")).astype(np.float32)
            elif name == "item_mean":
                cache[name] = np.array([self.item_stats.get(f, [0.0, 1.0])[0] for f in ITEM_CONT_FIELDS])
            elif name == "item_std":
                cache[name] = np.array([self.item_stats.get(f, [0.0, 1.0])[1] for f in ITEM_CONT_FIELDS])
            elif name == "vocab_arrays":
                cache[name] = {f: np.asarray(self.vocabs[f], np.int64) for f in CAT_FIELDS}
            elif name == "decode_luts":  # vocabulary index -> raw value, UNKNOWN (index 0) -> -1
                cache[name] = {f: np.asarray([-1, *self.vocabs[f]], np.int64) for f in CAT_FIELDS}
                cache[name]["item_type"] = np.asarray([-1, *self.item_type_vocab], np.int64)
            elif name == "ground_mirror":
                cache[name] = self._ground_mirror_table()
        return cache[name]

    def __eq__(self, other) -> bool:
        return isinstance(other, EncodingSpec) and self.to_dict() == other.to_dict()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    def _ground_mirror_table(self) -> np.ndarray:
        """[n_stages, n_ground] vocabulary index of the mirrored ground surface, per stage index."""
        vocab = np.asarray(self.vocabs["post_ground"], np.int64)
        n = len(vocab) + 1
        table = np.tile(np.arange(n, dtype=np.int64), (self.n_stages, 1))
        for stage_id in GROUND_MIRROR:
            s = self.stage_index(stage_id)
            if s == UNKNOWN:
                continue
            for a, b in ground_mirror(stage_id).items():
                ia = int(_lookup(np.int64(a), vocab))
                if ia != UNKNOWN:
                    table[s, ia] = int(_lookup(np.int64(b), vocab))
        return table

    def surface_heights(self) -> np.ndarray:
        """[n_stages, n_ground] height (raw y) of the surface of each stage index and ground vocabulary index, NaN
        where it has no single height (``SURFACE_HEIGHTS``: moving platforms, slopes, unknown stages and ids)."""
        vocab = np.asarray(self.vocabs["post_ground"], np.int64)
        table = np.full((self.n_stages, len(vocab) + 1), np.nan)
        for stage_id, heights in SURFACE_HEIGHTS.items():
            s = self.stage_index(stage_id)
            if s == UNKNOWN:
                continue
            for ground, height in heights.items():
                g = int(_lookup(np.int64(ground), vocab))
                if g != UNKNOWN:
                    table[s, g] = height
        return table

    # -- encoding -----------------------------------------------------------------------------------------------

    def encode_state_columns(self, values: Mapping[str, Any], valid: Mapping[str, Any] | None = None) -> dict:
        """Encode raw post-frame columns ``{column: [..., 2]}`` into cont/binary/cat arrays and their masks.

        A column absent from ``values`` counts as null everywhere; ``valid`` (same keys) marks nulls.
        """
        valid = valid or {}
        shape = next(np.shape(v) for v in values.values())

        def get(col, dtype=np.float64):
            if col not in values:
                return np.zeros(shape, dtype), np.zeros(shape, bool)
            v = np.asarray(values[col])
            m = np.asarray(valid[col], bool) if col in valid else np.ones(shape, bool)
            if v.dtype.kind == "f":
                m = m & np.isfinite(v)
                v = np.where(m, v, 0)
            return v, m

        mean, std = self._arr("mean"), self._arr("std")
        cont = np.zeros(shape + (len(CONT_FIELDS),), np.float32)
        cont_mask = np.zeros(cont.shape, bool)
        for i, f in enumerate(CONT_FIELDS):
            v, m = get(f)
            cont[..., i] = np.where(m, (v - mean[i]) / std[i], 0.0)
            cont_mask[..., i] = m
        binary = np.zeros(shape + (len(BINARY_FIELDS),), np.uint8)
        bin_mask = np.zeros(binary.shape, bool)
        v, m = get("post_direction")
        binary[..., 0], bin_mask[..., 0] = (v > 0) & m, m
        v, m = get("post_airborne", np.int64)
        binary[..., 1], bin_mask[..., 1] = (v != 0) & m, m
        v, m = get("post_hurtbox_state", np.int64)
        binary[..., 2], bin_mask[..., 2] = (v != 0) & m, m
        for j in range(5):
            v, m = get(f"post_state_flags_{j}", np.int64)
            v = v.astype(np.int64)
            for i in range(8):
                k = 3 + 8 * j + i
                binary[..., k] = ((v >> i) & 1) * m
                bin_mask[..., k] = m
        cat = np.zeros(shape + (len(CAT_FIELDS),), np.int32)
        cat_mask = np.zeros(cat.shape, bool)
        vocab_arrays = self._arr("vocab_arrays")
        for i, f in enumerate(CAT_FIELDS):
            v, m = get(f, np.int64)
            cat[..., i] = np.where(m, _lookup(v.astype(np.int64), vocab_arrays[f]), UNKNOWN)
            cat_mask[..., i] = m
        return {"cont": cont, "cont_mask": cont_mask, "binary": binary, "bin_mask": bin_mask,
                "cat": cat, "cat_mask": cat_mask}

    def encode_ctrl_columns(self, values: Mapping[str, Any], valid: Mapping[str, Any] | None = None) -> np.ndarray:
        """Encode raw pre-frame controller columns ``{column: [..., 2]}`` into ``[..., 2, n_ctrl]`` float32.

        Sticks and physical triggers are copied; where a physical trigger is null, ``pre_triggers`` (the
        processed max of L and R) fills both. Buttons are the bits of ``pre_buttons_physical``. Null reads 0.
        """
        valid = valid or {}
        shape = next(np.shape(v) for v in values.values())

        def get(col):
            if col not in values:
                return np.zeros(shape), np.zeros(shape, bool)
            v = np.asarray(values[col])
            m = np.asarray(valid[col], bool) if col in valid else np.ones(shape, bool)
            if v.dtype.kind == "f":
                m = m & np.isfinite(v)
            return np.where(m, v, 0), m

        ctrl = np.zeros(shape + (len(CTRL_FIELDS),), np.float32)
        for i, f in enumerate(STICK_FIELDS):
            ctrl[..., i] = get(f)[0]
        fallback, fallback_ok = get("pre_triggers")
        for i, f in enumerate(TRIGGER_FIELDS, start=len(STICK_FIELDS)):
            v, m = get(f)
            ctrl[..., i] = np.where(m, v, np.where(fallback_ok, fallback, 0))
        buttons, _ = get("pre_buttons_physical")
        ctrl[..., len(STICK_FIELDS) + len(TRIGGER_FIELDS):] = button_bits(buttons.astype(np.int64))
        return ctrl

    def encode_game(self, dataset, game_id: str) -> EncodedGame:
        """Encode one 2-player game (leader rows; player 0 is the lower port)."""
        frame_ids, ports, values, valid = read_player_columns(dataset, game_id, STATE_COLUMNS + CTRL_COLUMNS)
        state = self.encode_state_columns(values, valid)
        ctrl = self.encode_ctrl_columns(values, valid)
        if self.age_by_rule:
            state_age = frames_in_action(values["post_state"], valid["post_state"])
        else:
            state_age = np.where(valid["post_state_age"], values["post_state_age"], np.nan).astype(np.float32)
        record = dataset.game(game_id)
        by_port = {p["port"]: p["character"] for p in record["players"]}
        stage, chars = self.encode_constants(record["stage"], [by_port.get(p, -1) for p in ports])
        game = EncodedGame(game_id=game_id, frame_ids=frame_ids, ctrl=ctrl, state_age=state_age,
                           const_stage=stage, const_chars=chars, **state)
        if self.items:
            self._encode_items(dataset, game, ports, values, valid)
        return game

    def _item_rows(self, dataset, game: EncodedGame) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The game's item rows on its encoded frames (stage items left out with player_items_only), and their frame
        indices."""
        F = len(game)
        table = dataset.items(game.game_id, columns=["frame", "id", "type", "owner", *ITEM_CONT_FIELDS])
        it = {}
        for c in table.column_names:
            col = table.column(c)
            if c in ITEM_CONT_FIELDS:
                it[c] = col.cast(pa.float64()).fill_null(np.nan).to_numpy()
            else:
                it[c] = col.cast(pa.int64()).fill_null(-1).to_numpy()
        fi = np.searchsorted(game.frame_ids, it["frame"])
        keep = (fi < F) & (game.frame_ids[np.minimum(fi, F - 1)] == it["frame"])
        if self.player_items_only:
            keep &= it["owner"] >= 0
        return {k: v[keep] for k, v in it.items()}, fi[keep]

    def _encode_items(self, dataset, game: EncodedGame, ports, values, valid) -> None:
        """Fill the item arrays: each frame keeps the S items nearest to either player.

        Slots are stable: an item keeps its slot while it stays among the S nearest; newly chosen items take the
        free slots, nearest first. So a slot's contents change only when an item appears or leaves.
        """
        F, S = len(game), self.item_slots
        present = np.zeros((F, S), np.uint8)
        type_idx = np.zeros((F, S), np.int32)
        owner = np.zeros((F, S), np.int32)
        cont = np.zeros((F, S, len(ITEM_CONT_FIELDS)), np.float32)
        it, fi = self._item_rows(dataset, game)
        if len(fi):  # a game with no items, or with the stage's own only, keeps its slots empty
            px = np.where(valid["post_position_x"], values["post_position_x"], np.nan)
            py = np.where(valid["post_position_y"], values["post_position_y"], np.nan)
            dist = np.hypot(it["position_x"][:, None] - px[fi], it["position_y"][:, None] - py[fi])
            dist = np.nan_to_num(np.nanmin(np.where(np.isnan(dist), np.inf, dist), axis=1), nan=np.inf)
            order = np.lexsort((dist, fi))  # by frame, then distance
            fi_sorted = fi[order]
            starts = np.searchsorted(fi_sorted, np.arange(F))
            ends = np.searchsorted(fi_sorted, np.arange(F), side="right")
            chosen_rows = np.full((F, S), -1, np.int64)
            slot_of: dict[int, int] = {}
            for f in np.unique(fi_sorted):
                rows = order[starts[f]:ends[f]][:S]
                ids = it["id"][rows]
                new_slot_of, free = {}, [s for s in range(S)]
                for r, i in zip(rows, ids):
                    s = slot_of.get(int(i))
                    if s is not None and s in free:
                        new_slot_of[int(i)] = s
                        free.remove(s)
                for r, i in zip(rows, ids):
                    if int(i) not in new_slot_of:
                        new_slot_of[int(i)] = free.pop(0)
                    chosen_rows[f, new_slot_of[int(i)]] = r
                slot_of = new_slot_of
            has = chosen_rows >= 0
            rows = np.where(has, chosen_rows, 0)
            present[:] = has
            type_idx[:] = np.where(has, _lookup(it["type"][rows].astype(np.int64),
                                                np.asarray(self.item_type_vocab, np.int64)), 0)
            raw_owner = it["owner"][rows].astype(np.int64)
            rel = np.where(raw_owner < 0, 0, np.where(raw_owner == ports[0] - 1, 1,
                                                      np.where(raw_owner == ports[1] - 1, 2, 3)))
            owner[:] = np.where(has, rel, 0)
            mean, std = self._arr("item_mean"), self._arr("item_std")
            for k, f in enumerate(ITEM_CONT_FIELDS):
                v = it[f][rows].astype(np.float64)
                ok = has & np.isfinite(v)
                cont[..., k] = np.where(ok, (np.where(ok, v, 0) - mean[k]) / std[k], 0)
        game.item_present, game.item_type, game.item_owner, game.item_cont = present, type_idx, owner, cont

    # -- decoding -----------------------------------------------------------------------------------------------

    def decode_state(self, cont, binary, cat, prev_state: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Raw-unit state ``{dataset column: [..., 2]}`` from ``cont [..., 2, n_cont]``, ``binary [..., 2, n_bin]``
        (bits, or probabilities thresholded at 0.5) and ``cat [..., 2, n_cat]`` indices (numpy or torch).

        UNKNOWN categorical indices decode to -1. ``post_state_age`` is included when ``prev_state`` (a decoded
        state of the previous frame with ``post_state`` and ``post_state_age``) is given, by the rule.
        """
        cont, binary, cat = to_numpy(cont), to_numpy(binary), to_numpy(cat)
        out: dict[str, np.ndarray] = {}
        raw = cont.astype(np.float64) * self._arr("std") + self._arr("mean")
        # the encoded raw 0 (what a gated model writes for "exactly 0") decodes to exactly 0, not to a rounding
        raw = np.where(cont.astype(np.float32) == self._arr("zero"), 0.0, raw)
        for i, f in enumerate(CONT_FIELDS):
            v = raw[..., i]
            if f in INTEGER_CONT:
                v = np.maximum(np.round(v), 0)
            out[f] = v.astype(np.float32)
        bits = (binary >= 0.5) if binary.dtype.kind == "f" else (binary != 0)
        out["post_direction"] = np.where(bits[..., 0], 1.0, -1.0).astype(np.float32)
        out["post_airborne"] = bits[..., 1].astype(np.uint8)
        for j in range(5):
            byte = np.zeros(bits.shape[:-1], np.int64)
            for i in range(8):
                byte |= bits[..., 3 + 8 * j + i].astype(np.int64) << i
            out[f"post_state_flags_{j}"] = byte.astype(np.uint8)
        for i, f in enumerate(CAT_FIELDS):
            lut = self._arr("decode_luts")[f]
            out[f] = lut[np.clip(cat[..., i].astype(np.int64), 0, len(lut) - 1)]
        if prev_state is not None:
            out["post_state_age"] = apply_state_age_rule(np.asarray(prev_state["post_state"]),
                                                         np.asarray(prev_state["post_state_age"], np.float32),
                                                         out["post_state"])
        return out

    def decode_ctrl(self, ctrl) -> dict[str, np.ndarray]:
        """Raw controller columns from ``ctrl [..., 2, n_ctrl]``: sticks, physical triggers, pre_buttons_physical."""
        ctrl = to_numpy(ctrl)
        out = {f: ctrl[..., i].astype(np.float32) for i, f in enumerate(STICK_FIELDS + TRIGGER_FIELDS)}
        mask = np.zeros(ctrl.shape[:-1], np.int64)
        for k, b in enumerate(DIGITAL_BUTTONS):
            mask |= (ctrl[..., len(STICK_FIELDS) + len(TRIGGER_FIELDS) + k] >= 0.5).astype(np.int64) \
                * int(PhysicalButton[b].value)
        out["pre_buttons_physical"] = mask.astype(np.uint16)
        return out

    def decode_items(self, present, type_idx, owner, item_cont) -> dict[str, np.ndarray]:
        """Raw item slots ``[..., S]``: present (bool), type (-1 unknown), owner (ITEM_OWNER_NAMES index),
        position/velocity in game units (NaN where no item)."""
        present = to_numpy(present)
        present = (present >= 0.5) if present.dtype.kind == "f" else present != 0
        lut = self._arr("decode_luts")["item_type"]
        out = {"present": present,
               "type": np.where(present, lut[np.clip(to_numpy(type_idx).astype(np.int64), 0, len(lut) - 1)], -1),
               "owner": np.where(present, to_numpy(owner), 0)}
        raw = to_numpy(item_cont).astype(np.float64) * self._arr("item_std") + self._arr("item_mean")
        for k, f in enumerate(ITEM_CONT_FIELDS):
            out[f] = np.where(present, raw[..., k], np.nan).astype(np.float32)
        return out

    def decode_game(self, game: EncodedGame) -> dict[str, np.ndarray]:
        """The raw-unit state of every frame of an encoded game (with its encoded state_age), ``[F, 2]``."""
        out = self.decode_state(game.cont, game.binary, game.cat)
        out["post_state_age"] = np.asarray(game.state_age)
        return out


def _index(names: tuple[str, ...], name: str, kind: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise KeyError(f"{name!r} is not a {kind} field; those are: {', '.join(names)}") from None


def _list_diff(a, b, what=("this", "other")) -> str:
    a, b = list(a), list(b)
    sizes = f"{what[0]} has {len(a)} entries, {what[1]} has {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"{sizes}; first difference at index {i}: {x!r} vs {y!r}"
    return f"{sizes}; one is a prefix of the other"


def _describe(a, b, what) -> str:
    if isinstance(a, list) and isinstance(b, list):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        extra = []
        if only_a:
            extra.append(f"only in {what[0]}: {only_a[:10]}{' ...' if len(only_a) > 10 else ''}")
        if only_b:
            extra.append(f"only in {what[1]}: {only_b[:10]}{' ...' if len(only_b) > 10 else ''}")
        return _list_diff(a, b, what) + (f" ({'; '.join(extra)})" if extra else "")
    return f"{what[0]} {a!r}, {what[1]} {b!r}"
