"""A memory-mapped cache of encoded games: encode once, then every epoch slices ``.npy`` memmaps.

Layout of ``DATASET/cache/<key>/`` (``key = <games hash 16>-<spec hash 16>``)::

    meta.json        format, key, dataset schema version, spec (EncodingSpec.to_dict()), totals
    index.json       per game: game_id, offset, length (frames), stage (Slippi id), chars (select-screen ids),
                     const_stage, const_chars (vocabulary indices)
    <array>.npy      the EncodedGame frame arrays of all games concatenated on the frame axis (game i is rows
                     offset[i] : offset[i] + length[i]): frame_ids, cont, cont_mask, binary, bin_mask, cat, cat_mask,
                     ctrl, state_age, and item_present, item_type, item_owner, item_cont when items are on

The games hash covers the sorted game ids and the dataset schema version (game ids are content hashes, so equal
ids mean equal data); the spec hash covers ``spec.to_dict()``. A build writes into ``cache/.tmp-<key>-<host>-<pid>-*``
and renames it into place when complete, so a killed build leaves nothing under a key name (its temp folder is
removed by the next build on the same host once its process is gone). Building a key that exists reuses it.

The encoding spec that a run fits on its training games is saved once, beside the caches and stores, in
``DATASET/specs/<key>.json`` (:func:`fitted_spec`): other ranks and later runs on the same games read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meleewm.atomic import write_text_atomic
from meleewm.data.encoding import ENCODING_VERSION, FRAME_ARRAYS, ITEM_ARRAYS, CONT_FIELDS, EncodedGame, EncodingSpec
from meleewm.errors import MeleewmError

CACHE_FORMAT = "meleewm-encoded-cache"
CACHE_VERSION = 1
FITTED_SPEC_FORMAT, FITTED_SPEC_VERSION = "meleewm-fitted-spec", 1
META, INDEX = "meta.json", "index.json"


class CacheError(MeleewmError):
    """A folder that is not a complete encoded cache."""


def games_hash(game_ids, schema_version: int) -> str:
    text = json.dumps({"schema_version": int(schema_version), "game_ids": sorted(game_ids)})
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(dataset, spec: EncodingSpec, game_ids) -> str:
    """``<games hash>-<spec hash>`` (16 hex digits each)."""
    return f"{games_hash(game_ids, dataset.header['schema_version'])[:16]}-{spec.hash()[:16]}"


def fitted_spec(dataset, game_ids, *, items: bool = False, item_slots: int = 8, workers: int = 1,
                spec_dir: str | Path | None = None) -> EncodingSpec:
    """The encoding spec fitted on ``game_ids`` (:meth:`EncodingSpec.fit`, in ``workers`` processes), fitted once:
    the first call saves it as ``spec_dir/<key>.json`` (default ``DATASET/specs``), later calls (the other DDP ranks,
    a plan's train, another run on the same games) read it.

    The key covers the games hash, the fit's options, ENCODING_VERSION and FITTED_SPEC_VERSION, so other games or
    options fit anew (bump FITTED_SPEC_VERSION when the fit's rule changes without a new encoding version).
    """
    game_ids = sorted(set(game_ids))
    key = hashlib.sha256(json.dumps({
        "games": games_hash(game_ids, dataset.header["schema_version"]), "items": bool(items),
        "item_slots": int(item_slots), "encoding_version": ENCODING_VERSION,
        "version": FITTED_SPEC_VERSION}).encode()).hexdigest()[:32]
    path = (Path(spec_dir) if spec_dir is not None else Path(dataset.root) / "specs") / f"{key}.json"
    if path.is_file():
        return EncodingSpec.from_dict(
            read_versioned(path, FITTED_SPEC_FORMAT, "version", FITTED_SPEC_VERSION, CacheError)["spec"])
    spec = EncodingSpec.fit(dataset, game_ids, items=items, item_slots=item_slots, workers=workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"format": FITTED_SPEC_FORMAT, "version": FITTED_SPEC_VERSION, "key": key,
                                        "games": len(game_ids), "spec": spec.to_dict()}))
    return spec


def _array_names(spec: EncodingSpec) -> tuple[str, ...]:
    return tuple(n for n in FRAME_ARRAYS if spec.items or n not in ITEM_ARRAYS)


def array_shapes(spec: EncodingSpec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-frame shape and dtype of each cached array."""
    S = spec.item_slots
    return {
        "frame_ids": ((), np.int32),
        "cont": ((2, spec.n_cont), np.float32), "cont_mask": ((2, spec.n_cont), np.bool_),
        "binary": ((2, spec.n_bin), np.uint8), "bin_mask": ((2, spec.n_bin), np.bool_),
        "cat": ((2, spec.n_cat), np.int32), "cat_mask": ((2, spec.n_cat), np.bool_),
        "ctrl": ((2, spec.n_ctrl), np.float32), "state_age": ((2,), np.float32),
        "item_present": ((S,), np.uint8), "item_type": ((S,), np.int32), "item_owner": ((S,), np.int32),
        "item_cont": ((S, spec.n_item_cont), np.float32),
    }


def read_versioned(path: Path, fmt: str, version_key: str, version: int, error: type[Exception]) -> dict:
    """The JSON header at ``path``, when it declares ``fmt`` at ``version``; else ``error`` saying to rebuild."""
    header = json.loads(path.read_text())
    if header.get("format") != fmt or header.get(version_key) != version:
        raise error(f"{path.parent}: format {header.get('format')} v{header.get(version_key)} is not {fmt} "
                    f"v{version}; delete it and rebuild")
    return header


def ko_frame_indices(cat: np.ndarray, cat_mask: np.ndarray, spec: EncodingSpec) -> np.ndarray:
    """Frame indices of a game's KOs: frames where a player's stock count is lower than on the frame before
    (stock vocabulary indices follow the sorted raw counts)."""
    column = spec.cat_index("post_stocks")
    stocks = np.asarray(cat[:, :, column], np.int64)
    known = np.asarray(cat_mask[:, :, column]) & (stocks > 0)
    fell = (stocks[1:] < stocks[:-1]) & known[1:] & known[:-1]
    return np.nonzero(fell.any(axis=1))[0] + 1


def game_facts(dataset, game: EncodedGame) -> dict:
    """What an index keeps of an encoded game: its id, frames, stage and characters (raw and vocabulary)."""
    record = dataset.game(game.game_id)
    by_port = {p["port"]: p["character"] for p in record["players"]}
    return {"game_id": game.game_id, "length": len(game), "stage": int(record["stage"]),
            "chars": [int(by_port[p]) for p in sorted(by_port)], "const_stage": int(game.const_stage),
            "const_chars": [int(c) for c in game.const_chars]}


@dataclass
class _GameEntry:
    game_id: str
    offset: int
    length: int
    stage: int
    chars: list[int]
    const_stage: int
    const_chars: list[int]


class EncodedCache:
    """Read access to a built cache. Arrays open lazily (memmaps), per process: safe to send to DataLoader workers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path, index_path = self.path / META, self.path / INDEX
        if not meta_path.is_file() or not index_path.is_file():
            raise CacheError(f"{self.path} is not an encoded cache (no {META} / {INDEX})")
        self.meta = read_versioned(meta_path, CACHE_FORMAT, "cache_version", CACHE_VERSION, CacheError)
        self.spec = EncodingSpec.from_dict(self.meta["spec"])
        self.key = self.meta["key"]
        self.entries = [_GameEntry(**e) for e in json.loads(index_path.read_text())]
        self.offsets = np.array([e.offset for e in self.entries], np.int64)
        self.lengths = np.array([e.length for e in self.entries], np.int64)
        self.game_ids = [e.game_id for e in self.entries]
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None  # never pickle memmaps (that would copy the data); reopen in the new process
        return state

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """name -> memmap of all games concatenated on axis 0 (read-only)."""
        if self._arrays is None:
            self._arrays = {n: np.load(self.path / f"{n}.npy", mmap_mode="r") for n in _array_names(self.spec)}
        return self._arrays

    @property
    def n_frames(self) -> int:
        return int(self.lengths.sum())

    def __len__(self) -> int:
        return len(self.entries)

    def window(self, game: int, start: int, length: int, names=None) -> dict[str, np.ndarray]:
        """``length`` frames of game ``game`` from frame index ``start``: name -> array (a copy); all arrays, or
        those in ``names``."""
        begin = int(self.offsets[game]) + start
        return {n: np.array(a[begin:begin + length]) for n, a in self.arrays.items() if names is None or n in names}

    def kos(self, game: int) -> np.ndarray:
        """Frame indices of the KOs of game ``game`` (see :func:`ko_frame_indices`)."""
        w = self.window(game, 0, int(self.lengths[game]), names=("cat", "cat_mask"))
        return ko_frame_indices(w["cat"], w["cat_mask"], self.spec)

    def game(self, i: int) -> EncodedGame:
        """Game ``i`` (index order = sorted game ids) as an EncodedGame of memmap views."""
        e = self.entries[i]
        sl = slice(e.offset, e.offset + e.length)
        arrays = {n: a[sl] for n, a in self.arrays.items()}
        return EncodedGame(game_id=e.game_id, const_stage=e.const_stage,
                           const_chars=np.asarray(e.const_chars, np.int64), **arrays)

    def __repr__(self) -> str:
        return f"EncodedCache({str(self.path)!r}, games={len(self)}, frames={self.n_frames})"


def _remove_stale_tmp(cache_dir: Path) -> None:
    """Remove temp folders left by killed builds on this host (their process is gone)."""
    host = socket.gethostname()
    for path in cache_dir.glob(".tmp-*"):
        parts = path.name.split("-")
        # .tmp-<games>-<spec>-<host...>-<pid>-<uuid>
        if len(parts) < 6 or "-".join(parts[3:-2]) != host:
            continue
        try:
            pid = int(parts[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def build_cache(dataset, spec: EncodingSpec, game_ids, cache_dir: str | Path | None = None,
                progress: bool = True) -> EncodedCache:
    """Encode ``game_ids`` with ``spec`` into ``cache_dir/<key>/`` (default ``DATASET/cache``), or reuse it.

    ``dataset`` is a :class:`meleewm.replay.dataset.Dataset` or its path. Games are stored in sorted id order.
    """
    if isinstance(dataset, (str, Path)):
        from meleewm.replay.dataset import Dataset
        dataset = Dataset(dataset)
    game_ids = sorted(set(game_ids))
    if not game_ids:
        raise ValueError("build_cache needs at least one game")
    key = cache_key(dataset, spec, game_ids)
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(dataset.root) / "cache"
    final = cache_dir / key
    if (final / META).is_file():
        cache = EncodedCache(final)
        spec.check_compatible(cache.spec, ("requested", "cached"))
        return cache
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(cache_dir)
    tmp = cache_dir / f".tmp-{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write(dataset, spec, game_ids, key, tmp, progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / META).is_file():  # not a concurrent builder that won the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return EncodedCache(final)


def _write(dataset, spec: EncodingSpec, game_ids: list[str], key: str, tmp: Path, progress: bool) -> None:
    games = dataset.games
    counts = dict(zip(games.column("game_id").to_pylist(), games.column("frame_count").to_pylist()))
    missing = [g for g in game_ids if g not in counts]
    if missing:
        raise KeyError(f"{len(missing)} game(s) are not in {dataset.root}, e.g. {missing[0]}")
    lengths = [int(counts[g]) for g in game_ids]
    total = int(sum(lengths))
    shapes = array_shapes(spec)
    names = _array_names(spec)
    out = {n: np.lib.format.open_memmap(tmp / f"{n}.npy", mode="w+", dtype=shapes[n][1],
                                        shape=(total,) + shapes[n][0]) for n in names}
    entries = []
    offset = 0

    def encode_all(advance):
        nonlocal offset
        for gid, length in zip(game_ids, lengths):
            game = spec.encode_game(dataset, gid)
            if len(game) != length:
                raise ValueError(f"game {gid}: {len(game)} frames encoded but the games index says {length}")
            for n in names:
                out[n][offset:offset + length] = getattr(game, n)
            entries.append(_GameEntry(offset=offset, **game_facts(dataset, game)))
            offset += length
            advance(length)

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        with Progress(TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                      TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task("encode", total=total)
            encode_all(lambda n: bar.advance(task, n))
    else:
        encode_all(lambda n: None)
    for a in out.values():
        a.flush()
    out.clear()  # drop the memory maps before the folder is renamed
    (tmp / INDEX).write_text(json.dumps([e.__dict__ for e in entries]))
    meta = {"format": CACHE_FORMAT, "cache_version": CACHE_VERSION, "key": key,
            "schema_version": dataset.header["schema_version"], "dataset": str(dataset.root),
            "games": len(game_ids), "frames": total, "arrays": list(names), "cont_fields": list(CONT_FIELDS),
            "spec": spec.to_dict()}
    (tmp / META).write_text(json.dumps(meta, indent=1))  # written last: a folder without it is incomplete
