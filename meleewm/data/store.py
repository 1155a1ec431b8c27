"""A compact sharded training store: encoded games in self-describing shards, built in parallel, read as a stream.

Layout of ``DATASET/store/<key>/`` (``key`` as for the encoded cache: ``<games hash 16>-<spec hash 16>``)::

    shard-00000.arrow   Arrow IPC files (zstd-compressed buffers), one per group of ``games_per_shard`` games in
    shard-00001.arrow   sorted id order. Rows are frames; each column is one encoded array in a compact form
    ...                 (LAYOUT). The schema's metadata holds the shard's header: format, encoding spec and its
                        hash, each array's layout, and per game its id, frames, first frame id, constants and KOs.
    index.json          written last (the store's commit record): the spec, the shards and their games

Compact forms, per frame, all lossless (the encoded cache keeps every array as float32, int32 or bool: 528 bytes a
frame without items, 728 with):

- masks, binary fields and item presence are bit-packed (``numpy.packbits``);
- categories are uint8 or uint16, whichever their vocabularies need;
- frame ids are not stored: a game's frames run from its first frame id without a gap (checked when built);
- continuous values stay float32: float16 was measured to lose up to 0.1 game units of position and, under zstd,
  to take more room, not less (``docs/scale.md``);
- zstd then squeezes what repeats: values constant over many frames, masks of absent fields, empty item slots.

A shard is written under a temporary name and renamed when complete, so a killed build leaves only whole shards,
which the next build keeps (it checks their headers) and completes. :class:`ShardedStore` reads windows from it
(random access, a few decoded shards kept); :class:`ShardStream` streams a training epoch from a few shards at a
time, each DDP rank from its own shards, so memory does not grow with the dataset.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from torch.utils.data import default_collate

from meleewm.atomic import atomic_write, write_text_atomic
from meleewm.data.cache import array_shapes, cache_key, game_facts, ko_frame_indices, read_versioned
from meleewm.data.encoding import FRAME_ARRAYS, ITEM_ARRAYS, EncodingSpec
from meleewm.data.pool import map_game_groups
from meleewm.data.windows import draw_windows, mirrorable, window_sample
from meleewm.errors import MeleewmError
from meleewm.melee.stages import MIRROR_STAGES

STORE_FORMAT = "meleewm-sharded-store"
STORE_VERSION = 1
INDEX = "index.json"
HEADER_KEY = b"meleewm"
GAMES_PER_SHARD = 32  # about 270K frames, some 40 MB decoded: a few shards open at once stay small


class StoreError(MeleewmError):
    """A folder that is not a complete sharded store, or a shard that does not match its index."""


# -- compact forms ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Column:
    """How a shard stores one encoded array: ``form`` "bits" (0/1 values packed 8 a byte) or "cast" (as
    ``dtype``, which holds every value of the array exactly)."""
    array: str
    form: str
    dtype: str


def _small_int(vocabulary_size: int) -> str:
    return "uint8" if vocabulary_size <= 256 else "uint16"


def _layout(spec: EncodingSpec) -> list[_Column]:
    columns = [_Column("cont", "cast", "float32"),
               *(_Column(n, "bits", "uint8") for n in ("cont_mask", "binary", "bin_mask", "cat_mask")),
               _Column("cat", "cast", _small_int(max(len(spec.vocab(f)) for f, _ in spec.cat_fields))),
               _Column("ctrl", "cast", "float32"), _Column("state_age", "cast", "float32")]
    if spec.items:
        columns += [_Column("item_present", "bits", "uint8"),
                    _Column("item_type", "cast", _small_int(len(spec.to_dict()["item_type_vocab"]))),
                    _Column("item_owner", "cast", "uint8"), _Column("item_cont", "cast", "float32")]
    return columns


def _encode_columns(game, columns: list[_Column]) -> dict[str, np.ndarray]:
    """The compact columns of one encoded game: name -> [F, width] array."""
    out = {}
    for column in columns:
        values = getattr(game, column.array)
        frames = len(values)
        if column.form == "bits":
            out[column.array] = np.packbits(np.asarray(values, bool).reshape(frames, -1), axis=1)
        else:
            out[column.array] = np.asarray(values).astype(column.dtype).reshape(frames, -1)
    return out


def _decode_columns(table: dict[str, np.ndarray], rows: slice, columns: list[_Column], shapes, names) -> dict:
    """Encoded arrays (the cache's dtypes and shapes) of ``rows`` from compact columns."""
    out: dict[str, np.ndarray] = {}
    for column in columns:
        if column.array not in names:
            continue
        stored = table[column.array][rows]
        frames = len(stored)
        shape, dtype = shapes[column.array]
        if column.form == "bits":
            bits = np.unpackbits(stored, axis=1, count=int(np.prod(shape)))
            out[column.array] = bits.reshape((frames,) + shape).astype(dtype)
        else:
            out[column.array] = stored.reshape((frames,) + shape).astype(dtype)
    return out


# -- building -----------------------------------------------------------------------------------------------------

def _shard_name(index: int) -> str:
    return f"shard-{index:05d}.arrow"


def _read_header(path: Path) -> dict:
    with pa.memory_map(str(path)) as source:
        metadata = pa.ipc.open_file(source).schema.metadata or {}
    if HEADER_KEY not in metadata:
        raise StoreError(f"{path} is not a meleewm store shard (no header)")
    return json.loads(metadata[HEADER_KEY])


def _write_shard(dataset, game_ids: list[str], spec_dict: dict, path: str) -> dict:
    """Encode ``game_ids`` of ``dataset`` (a subset holding them) into one shard at ``path`` (written atomically);
    returns its header."""
    spec = EncodingSpec.from_dict(spec_dict)
    columns = _layout(spec)
    parts: dict[str, list[np.ndarray]] = {c.array: [] for c in columns}
    games, row = [], 0
    for game_id in game_ids:
        game = spec.encode_game(dataset, game_id)
        frames = len(game)
        first = int(game.frame_ids[0])
        if not np.array_equal(game.frame_ids, np.arange(first, first + frames, dtype=game.frame_ids.dtype)):
            raise StoreError(f"game {game_id}: its frame ids have gaps; the store keeps only the first id")
        for name, values in _encode_columns(game, columns).items():
            parts[name].append(values)
        games.append({**game_facts(dataset, game), "row": row, "first_frame": first,
                      "kos": ko_frame_indices(game.cat, game.cat_mask, spec).tolist()})
        row += frames
    arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    header = {"format": STORE_FORMAT, "store_version": STORE_VERSION, "spec_hash": spec.hash(),
              "columns": [{"array": c.array, "form": c.form, "dtype": c.dtype,
                           "shape": list(array_shapes(spec)[c.array][0]), "width": int(arrays[c.array].shape[1])}
                          for c in columns],
              "frames": row, "games": games, "spec": spec_dict}
    table = pa.table({name: pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
                      for name, values in arrays.items()})
    table = table.replace_schema_metadata({HEADER_KEY: json.dumps(header).encode()})
    with atomic_write(path) as tmp, pa.OSFile(str(tmp), "wb") as sink:
        with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
            writer.write_table(table, max_chunksize=max(row, 1))
    return header


def build_store(dataset, spec: EncodingSpec, game_ids, store_dir: str | Path | None = None, *,
                games_per_shard: int = GAMES_PER_SHARD, workers: int = 1, progress: bool = True) -> ShardedStore:
    """Encode ``game_ids`` with ``spec`` into ``store_dir/<key>/`` (default ``DATASET/store``), in ``workers``
    processes, one shard per ``games_per_shard`` games; reuses the store, or the whole shards of a killed build."""
    from meleewm.replay.dataset import Dataset

    if isinstance(dataset, (str, Path)):
        dataset = Dataset(dataset)
    game_ids = sorted(set(game_ids))
    if not game_ids:
        raise ValueError("build_store needs at least one game")
    missing = set(game_ids) - dataset.game_ids()
    if missing:
        raise KeyError(f"{len(missing)} game(s) are not in {dataset.root}, e.g. {min(missing)}")
    root = (Path(store_dir) if store_dir is not None else Path(dataset.root) / "store") / cache_key(
        dataset, spec, game_ids)
    if (root / INDEX).is_file():
        store = ShardedStore(root)
        spec.check_compatible(store.spec, ("requested", "stored"))
        return store
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    groups = [game_ids[i:i + games_per_shard] for i in range(0, len(game_ids), games_per_shard)]
    headers: dict[int, dict] = {}
    for index, group in enumerate(groups):  # whole shards of a killed build, if they hold the right games
        path = root / _shard_name(index)
        if path.is_file():
            header = _read_header(path)
            if [g["game_id"] for g in header["games"]] == group and header["spec_hash"] == spec.hash():
                headers[index] = header
    todo = [i for i in range(len(groups)) if i not in headers]
    tasks = [(groups[i], (spec.to_dict(), str(root / _shard_name(i)))) for i in todo]
    with _ShardProgress(progress, len(groups), len(headers)) as advance:
        for task, header in map_game_groups(_write_shard, dataset, tasks, workers):
            headers[todo[task]] = header
            advance()
    index = {"format": STORE_FORMAT, "store_version": STORE_VERSION, "key": root.name,
             "schema_version": dataset.header["schema_version"], "spec": spec.to_dict(),
             "games": len(game_ids), "frames": int(sum(h["frames"] for h in headers.values())),
             "shards": [{"file": _shard_name(i), "frames": headers[i]["frames"],
                         "games": headers[i]["games"]}
                        for i in range(len(groups))]}
    write_text_atomic(root / INDEX, json.dumps(index))  # last: a store without it is incomplete
    return ShardedStore(root)


class _ShardProgress:
    """A rich progress bar over shards (or nothing when ``enabled`` is False); yields ``advance()``."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled, self.total, self.done = enabled, total, done

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self._bar = Progress(TextColumn("building store"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
                             TimeRemainingColumn(), transient=True)
        self._bar.__enter__()
        task = self._bar.add_task("shards", total=self.total, completed=self.done)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)


# -- reading ------------------------------------------------------------------------------------------------------

@dataclass
class StoreEntry:
    """One game of a store: where it is, its constants (as the encoded cache's index has them), its KOs."""
    game_id: str
    length: int
    stage: int
    chars: list[int]
    const_stage: int
    const_chars: list[int]
    shard: int
    row: int
    first_frame: int
    kos: list[int] = field(default_factory=list)


class ShardedStore:
    """Read access to a built store: windows by (game, start), decoding at most ``open_shards`` shards at a time
    (least recently used first out). Safe to send to other processes (decoded shards are not sent)."""

    def __init__(self, path: str | Path, open_shards: int = 4):
        self.path, self.open_shards = Path(path), int(open_shards)
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise StoreError(f"{self.path} is not a sharded store (no {INDEX}); it may be an interrupted build")
        self.index = read_versioned(index_path, STORE_FORMAT, "store_version", STORE_VERSION, StoreError)
        self.spec = EncodingSpec.from_dict(self.index["spec"])
        self.key = self.index["key"]
        self.entries = [StoreEntry(**{k: g[k] for k in StoreEntry.__dataclass_fields__ if k in g}, shard=s)
                        for s, shard in enumerate(self.index["shards"]) for g in shard["games"]]
        self.lengths = np.array([e.length for e in self.entries], np.int64)
        self.game_ids = [e.game_id for e in self.entries]
        self.shard_games = [np.array([i for i, e in enumerate(self.entries) if e.shard == s], np.int64)
                            for s in range(len(self.index["shards"]))]
        self._columns = _layout(self.spec)
        self._shapes = array_shapes(self.spec)
        self._names = tuple(n for n in FRAME_ARRAYS if n != "frame_ids" and (self.spec.items or n not in ITEM_ARRAYS))
        self._decoded: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_decoded"] = OrderedDict()
        return state

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def n_frames(self) -> int:
        return int(self.lengths.sum())

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir())

    def _shard(self, shard: int) -> dict[str, np.ndarray]:
        """The compact columns of one shard (decompressed), kept among the ``open_shards`` most recent."""
        if shard not in self._decoded:
            self.keep_decoded({shard: self.read_shard(shard)})
        self._decoded.move_to_end(shard)
        return self._decoded[shard]

    def read_shard(self, shard: int) -> dict[str, np.ndarray]:
        """The compact columns of one shard, read and decompressed (kept nowhere: safe in another thread)."""
        path = self.path / self.index["shards"][shard]["file"]
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        header = json.loads(table.schema.metadata[HEADER_KEY])
        if header["spec_hash"] != self.spec.hash() or header["frames"] != self.index["shards"][shard]["frames"]:
            raise StoreError(f"{path} does not match {self.path / INDEX}: rebuild the store")
        columns = {}
        for name in table.column_names:
            chunk = table.column(name).combine_chunks()
            columns[name] = chunk.values.to_numpy(zero_copy_only=False).reshape(len(chunk), chunk.type.list_size)
        return columns

    def read_shards(self, shards) -> dict[int, dict[str, np.ndarray]]:
        return {int(shard): self.read_shard(int(shard)) for shard in shards}

    def keep_decoded(self, decoded: dict[int, dict[str, np.ndarray]]) -> None:
        """Keep shards read by :meth:`read_shards` as the most recent, dropping the least recent beyond
        ``open_shards``."""
        for shard, columns in decoded.items():
            self._decoded[shard] = columns
            self._decoded.move_to_end(shard)
        while len(self._decoded) > self.open_shards:
            self._decoded.popitem(last=False)

    def window(self, game: int, start: int, length: int, names=None) -> dict[str, np.ndarray]:
        """``length`` frames of game ``game`` from frame index ``start``: name -> array, as the cache has them."""
        entry = self.entries[game]
        rows = slice(entry.row + start, entry.row + start + length)
        out = _decode_columns(self._shard(entry.shard), rows, self._columns, self._shapes,
                              set(names) if names is not None else set(self._names))
        if names is None or "frame_ids" in names:
            first = entry.first_frame + start
            out["frame_ids"] = np.arange(first, first + (rows.stop - rows.start), dtype=np.int32)
        return out

    def kos(self, game: int) -> np.ndarray:
        return np.asarray(self.entries[game].kos, np.int64)

    def __repr__(self) -> str:
        return f"ShardedStore({str(self.path)!r}, games={len(self)}, shards={len(self.shard_games)})"


# -- the training stream ------------------------------------------------------------------------------------------

class ShardStream:
    """A training epoch as a stream of batches, each rank from its own shards, ``open_shards`` at a time.

    Epoch e: the shards are shuffled by (seed, e) and dealt to the ranks in turn; a rank reads its shards in
    groups of ``store.open_shards``; within a group, windows are drawn as :class:`WindowDataset` draws them
    (random phase per game, KO windows, swap and mirror flags) and shuffled, by a generator seeded by (seed, e,
    the group's first shard). Everything is a function of (seed, epoch, rank), so ``batches(e, start=k)`` gives
    exactly the batches that ``batches(e)`` gives after its first k: resume is exact, and skipping reads nothing.
    Every rank gives ``steps_per_epoch`` batches (the least any rank's shards hold), as DDP needs.
    """

    def __init__(self, store: ShardedStore, window: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world: int = 1, swap: bool = False, mirror: bool = False, ko_windows: float = 0.0,
                 mirror_stages=MIRROR_STAGES, prefetch_shards: bool = True):
        if len(store.shard_games) < world:
            raise StoreError(f"{store.path} has {len(store.shard_games)} shard(s), fewer than the {world} ranks: "
                             f"build it with fewer games per shard")
        self.store, self.window, self.batch_size = store, int(window), int(batch_size)
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)
        self.swap, self.mirror, self.ko_windows = bool(swap), bool(mirror), float(ko_windows)
        self.prefetch_shards = bool(prefetch_shards)
        self._mirrorable = mirrorable(store, mirror_stages)
        # Windows a rank is sure to get whatever the shuffle: disjoint windows, plus floor(ko_windows) per KO.
        sure = [sum(max((int(store.lengths[g]) - 1) // self.window, 0)
                    + int(self.ko_windows) * len(store.entries[g].kos) for g in games) for games in store.shard_games]
        per_rank = [sum(sorted(sure)[r::world]) for r in range(world)]  # the smallest shards' deal: a lower bound
        self.steps_per_epoch = min(per_rank) // self.batch_size

    def _groups(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.store.shard_games))
        mine = order[self.rank::self.world]
        size = self.store.open_shards
        return [mine[i:i + size] for i in range(0, len(mine), size)]

    def _group_windows(self, epoch: int, group: np.ndarray):
        games = np.concatenate([self.store.shard_games[s] for s in group])
        kos = np.array([(g, f) for g in games for f in self.store.entries[g].kos], np.int64).reshape(-1, 2)
        rng = np.random.default_rng([self.seed, epoch, int(group[0])])
        game_of, start, swap, mirror = draw_windows(
            self.store, games, self.window, rng, random_phase=True, kos=kos if self.ko_windows else kos[:0],
            ko_windows=self.ko_windows, swap=self.swap, mirror=self.mirror, mirrorable=self._mirrorable)
        order = rng.permutation(len(game_of))
        return game_of[order], start[order], swap[order], mirror[order]

    def batches(self, epoch: int, start: int = 0, steps: int | None = None):
        """Batches ``start`` .. ``steps`` - 1 (default ``steps_per_epoch``) of ``epoch`` for this rank."""
        steps = self.steps_per_epoch if steps is None else steps
        if steps > self.steps_per_epoch:
            raise StoreError(f"{steps} steps per epoch asked, but rank {self.rank}'s shards give "
                             f"{self.steps_per_epoch} batches of {self.batch_size}")
        groups = self._groups(epoch)
        skip, emitted, pending = start * self.batch_size, start, []
        with ThreadPoolExecutor(1) if self.prefetch_shards else nullcontext() as reader:
            ahead = None  # the next group's shards, being read: only ever groups after the first one served
            for g, group in enumerate(groups):
                if emitted >= steps:
                    return
                game_of, begin, swap, mirror = self._group_windows(epoch, group)
                if skip >= len(game_of):
                    skip -= len(game_of)
                    continue
                if ahead is not None:
                    self.store.keep_decoded(ahead.result())
                if reader is not None and g + 1 < len(groups):
                    ahead = reader.submit(self.store.read_shards, groups[g + 1])
                for i in range(skip, len(game_of)):
                    game, at = int(game_of[i]), int(begin[i])
                    frames = self.store.window(game, at, self.window + 1)
                    pending.append(window_sample(self.store, game, at, frames, swap=bool(swap[i]),
                                                 mirror=bool(mirror[i])))
                    if len(pending) == self.batch_size:
                        yield default_collate(pending)
                        pending, emitted = [], emitted + 1
                        if emitted >= steps:
                            return
                skip = 0
