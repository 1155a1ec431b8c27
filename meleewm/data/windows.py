"""Train/val splits by game, and training windows of T+1 consecutive frames over an EncodedCache.

A window covers frames w[0..T] of one game. Step i (0 <= i < T) reads state w[i] and the controllers of frame
w[i+1], and predicts state w[i+1]. One sample (a dict of tensors; the default collate_fn adds a batch axis;
``meleewm.data.step.StepInput.from_window`` takes the model's inputs out of it):

    state_cont     [T, 2, n_cont]  float32  normalised continuous state of frames w[0..T-1]   (inputs)
    cont_mask      [T, 2, n_cont]  bool     presence of state_cont
    state_bin      [T, 2, n_bin]   float32  0/1 binary state                                   (inputs)
    bin_mask       [T, 2, n_bin]   bool
    state_cat      [T, 2, n_cat]   int64    vocabulary indices                                  (inputs)
    cat_mask       [T, 2, n_cat]   bool
    state_age      [T, 2]          float32  raw post_state_age of frames w[0..T-1] (NaN where unknown)  (inputs)
    ctrl           [T, 2, n_ctrl]  float32  controllers of frames w[1..T]: the frame being predicted
    next_cont      [T, 2, n_cont]  float32  state of frames w[1..T]                             (targets)
    next_cont_mask [T, 2, n_cont]  bool     losses skip False entries
    next_bin, next_bin_mask, next_cat, next_cat_mask                                            (targets)
    stage          []              int64    stage vocabulary index
    chars          [2]             int64    character (select-screen id) vocabulary indices
    frame          [T]             int32    frame ids of the targets w[1..T]
    game           []              int64    game index in the cache;  start: index in the game of w[0]
    swapped, mirrored []           bool     augmentations applied to this sample
  with items on (spec.items), S slots:
    state_item_present [T, S] float32, state_item_type [T, S] int64, state_item_owner [T, S] int64,
    state_item_cont [T, S, 4] float32 (inputs, frames w[0..T-1]); next_item_* the same for w[1..T] (targets)

So ``next_*[i] == state_*[i + 1]`` and ``ctrl[i]`` belongs to the frame of ``next_*[i]``.

Sampling: each game of F frames gives floor((F - 1) / T) disjoint windows per epoch. Their common phase (the
offset of the first window, 0 .. (F - 1) mod T) is drawn per game and epoch from ``(seed, epoch)``, so window
borders move between epochs while every epoch has the same length; ``random_phase=False`` uses phase 0 (fixed
stride, for validation). Augmentation flags (swap players, mirror x; p = 0.5 each) are drawn from the same
generator; mirroring applies only to games on ``mirror_stages`` (Slippi ids; default the legal six,
``meleewm.melee.stages.MIRROR_STAGES``).
Rare events: with ``ko_windows`` = r > 0, each epoch adds about r extra windows per KO of the games (a frame where
a player's stock count falls), each placed so that the KO lies at a random position in its middle three quarters.
They come on top of the disjoint windows (validation uses none).
Call ``set_epoch(e)`` before iterating epoch e (before creating the DataLoader iterator when workers are used).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import torch

from meleewm.data.cache import EncodedCache
from meleewm.data.augment import mirror_x, swap_players
from meleewm.data.step import CONSTANTS, ENCODED_NAMES, INPUT_DTYPES
from meleewm.melee.stages import MIRROR_STAGES

GAME_FILTERS: dict[str, Callable[[dict], bool]] = {
    "two_players": lambda g: g.get("n_players") == 2,
    "two_humans": lambda g: bool(g.get("two_humans")),
    "completed": lambda g: bool(g.get("completed")),
    "legal_stage": lambda g: bool(g.get("legal_stage")),
    "long_enough": lambda g: bool(g.get("long_enough")),
}


def _unit_hash(game_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{int(seed)}:{game_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_games(games_table: pa.Table | list[dict], val_fraction: float = 0.1, seed: int = 0,
                filters: Iterable[str | Callable[[dict], bool]] = ("two_players",)) -> tuple[list[str], list[str]]:
    """(train_ids, val_ids), sorted. A game goes to val when sha256(f"{seed}:{game_id}") falls below
    ``val_fraction``: deterministic, disjoint, and a game keeps its side when other games are added.

    ``filters``: names of GAME_FILTERS (two_players, two_humans, completed, legal_stage, long_enough) or
    callables on a games-table row; a game must pass all of them.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1], got {val_fraction}")
    checks = []
    for f in filters:
        if callable(f):
            checks.append(f)
        elif f in GAME_FILTERS:
            checks.append(GAME_FILTERS[f])
        else:
            raise KeyError(f"unknown game filter {f!r}; known: {', '.join(GAME_FILTERS)}")
    rows = games_table.to_pylist() if isinstance(games_table, pa.Table) else list(games_table)
    train, val = [], []
    for row in rows:
        if all(check(row) for check in checks):
            (val if _unit_hash(row["game_id"], seed) < val_fraction else train).append(row["game_id"])
    return sorted(set(train)), sorted(set(val))


class WindowDataset(torch.utils.data.Dataset):
    """Windows of ``window + 1`` frames over an EncodedCache (see the module docstring for the sample layout)."""

    def __init__(self, cache: EncodedCache, window: int, *, seed: int = 0, swap: bool = False,
                 mirror: bool = False, random_phase: bool = True, games: Iterable[int] | None = None,
                 mirror_stages: Iterable[int] = MIRROR_STAGES, ko_windows: float = 0.0):
        if window < 1:
            raise ValueError("window must be >= 1")
        if ko_windows < 0:
            raise ValueError(f"ko_windows must be >= 0, got {ko_windows}")
        self.cache, self.window, self.seed = cache, int(window), int(seed)
        self.swap, self.mirror, self.random_phase = bool(swap), bool(mirror), bool(random_phase)
        self.spec = cache.spec
        self.games = np.asarray(sorted(games) if games is not None else range(len(cache)), np.int64)
        self._mirrorable = mirrorable(cache, mirror_stages)
        self.ko_windows = float(ko_windows)
        self.kos = ko_frames(cache, self.games) if self.ko_windows else np.zeros((0, 2), np.int64)
        self.set_epoch(0)

    def __len__(self) -> int:
        return int(self._game_of.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's window phases and augmentation flags (deterministic in seed and epoch)."""
        self.epoch = int(epoch)
        self._game_of, self._start_in_game, self._swap, self._mirror = draw_windows(
            self.cache, self.games, self.window, np.random.default_rng([self.seed, self.epoch]),
            random_phase=self.random_phase, kos=self.kos, ko_windows=self.ko_windows, swap=self.swap,
            mirror=self.mirror, mirrorable=self._mirrorable)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.sample_at(int(self._game_of[i]), int(self._start_in_game[i]), self.window,
                              swap=bool(self._swap[i]), mirror=bool(self._mirror[i]))

    def sample_at(self, game: int, start: int, length: int, *, swap: bool = False,
                  mirror: bool = False) -> dict[str, torch.Tensor]:
        """The sample of ``length`` steps that begins at frame index ``start`` of cache game ``game``."""
        if start < 0 or start + length + 1 > self.cache.lengths[game]:
            raise IndexError(f"window {start}..{start + length} is outside game {game} "
                             f"({self.cache.lengths[game]} frames)")
        return window_sample(self.cache, game, start, self.cache.window(game, start, int(length) + 1),
                             swap=swap, mirror=mirror)


def mirrorable(cache, mirror_stages: Iterable[int] = MIRROR_STAGES) -> np.ndarray:
    """Per game of ``cache``: whether its stage may be mirrored."""
    mirror_idx = [cache.spec.stage_index(s) for s in mirror_stages]
    return np.isin([e.const_stage for e in cache.entries], mirror_idx)


def draw_windows(cache, games: np.ndarray, window: int, rng: np.random.Generator, *, random_phase: bool,
                 kos: np.ndarray, ko_windows: float, swap: bool, mirror: bool, mirrorable: np.ndarray):
    """One epoch's windows over ``games`` of ``cache``: (game, start in game, swap, mirror) arrays. The disjoint
    windows of each game (one phase per game), then ``ko_windows`` extra windows per KO of ``kos``."""
    lengths = cache.lengths[games]
    counts = np.maximum((lengths - 1) // window, 0)
    slack = (lengths - 1) - counts * window
    phase = rng.integers(0, np.maximum(slack, 0) + 1) if random_phase else np.zeros(len(games), np.int64)
    k = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
    game_of = np.repeat(games, counts)
    start_in_game = np.repeat(phase, counts) + k * window
    if len(kos):
        # floor(r) windows per KO, plus one more with probability frac(r)
        copies = int(ko_windows) + (rng.random(len(kos)) < ko_windows % 1)
        game, frame = np.repeat(kos[:, 0], copies), np.repeat(kos[:, 1], copies)
        offset = rng.integers(window // 8, window - window // 8 + 1, len(game))
        last_start = cache.lengths[game] - 1 - window
        start = np.clip(frame - offset, 0, np.maximum(last_start, 0))
        fits = last_start >= 0
        game_of = np.concatenate([game_of, game[fits]])
        start_in_game = np.concatenate([start_in_game, start[fits]])
    n = len(game_of)
    swapped = (rng.random(n) < 0.5) & swap
    mirrored = (rng.random(n) < 0.5) & mirror & mirrorable[game_of]
    return game_of, start_in_game, swapped, mirrored


def window_sample(cache, game: int, start: int, w: dict[str, np.ndarray], *, swap: bool = False,
                  mirror: bool = False) -> dict[str, torch.Tensor]:
    """The sample (module docstring) of the frames ``w`` (arrays of T + 1 frames) from ``start`` in ``game``:
    each StepInput field of frames 0..T-1 (controllers of 1..T), and its ``next_*`` target of frames 1..T."""
    entry = cache.entries[game]
    w = {**w, "const_stage": np.int64(entry.const_stage), "const_chars": np.asarray(entry.const_chars, np.int64)}
    if swap:
        w = swap_players(w)
    if mirror:
        w = mirror_x(w, cache.spec)
    sample = {}
    for name, encoded in ENCODED_NAMES.items():
        if encoded not in w:
            continue
        v = np.asarray(w[encoded], INPUT_DTYPES[encoded])
        if name in CONSTANTS:
            sample[name] = v
        elif name == "ctrl":
            sample[name] = v[1:]
        else:
            sample[name] = v[:-1]
            if name != "state_age":   # the age is not predicted: next_inputs advances it by rule
                sample["next_" + name.removeprefix("state_")] = v[1:]
    out = {k: torch.from_numpy(np.array(v, copy=True)) if np.ndim(v) else torch.tensor(v) for k, v in sample.items()}
    out["frame"] = torch.from_numpy(np.array(w["frame_ids"][1:], copy=True))
    out["game"] = torch.tensor(game, dtype=torch.int64)
    out["start"] = torch.tensor(start, dtype=torch.int64)
    out["swapped"] = torch.tensor(swap)
    out["mirrored"] = torch.tensor(mirror)
    return out


def ko_frames(cache, games: Iterable[int]) -> np.ndarray:
    """``[K, 2]`` (cache game, frame index) of every KO in ``games`` (see ``EncodedCache.kos``)."""
    found = [np.stack([np.full(len(frames), game), frames], axis=1) for game in games
             for frames in [cache.kos(game)]]
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 2), np.int64)
