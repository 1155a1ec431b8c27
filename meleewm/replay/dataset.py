"""The on-disk dataset: Parquet parts for frames, items and stage events, a games index, a quarantine log.

Layout (``docs/dataset.md`` documents every column)::

    DATASET/dataset.json              header: schema version, meleewm and peppi-py versions, creation time
    DATASET/games/<part>.parquet      games index rows of one part: the commit record of that part
    DATASET/frames/<part>.parquet     one row group per game
    DATASET/items/<part>.parquet      one row group per game that has items
    DATASET/stage_events/<part>.parquet
    DATASET/quarantine.jsonl          one JSON line per file that could not be ingested

A part's data files are written under temporary names (by an ingest worker); only the driver renames them, and
then renames the part's ``games`` file into place last. A game is visible only once its ``games`` file exists, so a
run killed at any moment leaves a valid dataset; files of an uncommitted part are orphans, removed by the next
writer.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import queue
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from meleewm import __version__
from meleewm.atomic import atomic_write, write_text_atomic
from meleewm.errors import MeleewmError
from meleewm.replay.reader import PEPPI_VERSION, ParsedGame
from meleewm.replay.schema import FRAME_SCHEMA, GAME_SCHEMA, ITEM_SCHEMA, SCHEMA_VERSION, STAGE_EVENT_SCHEMA

HEADER = "dataset.json"
QUARANTINE = "quarantine.jsonl"
DATA_TABLES = ("frames", "items", "stage_events")
CLAIMS = ".ingest-claims"  # content hashes claimed by the workers of a running ingest (see ingest.py)
# Dictionary-encode only the repeated keys: on float columns it costs 2x the write time and the files grow.
# Min/max statistics only for the keys a scan may select games and frames by: those of the 70 value columns cost
# 5% of the write time (a filter on a value column still works, reading every row group).
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": ["game_id", "kind"],
                   "write_statistics": ["game_id", "frame", "port", "follower", "slot", "kind"]}


class DatasetError(MeleewmError):
    """A path that is not a meleewm dataset, or one written by an incompatible schema."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class WrittenPart:
    """A part whose data files are written under temporary names; :meth:`Dataset.commit` makes it visible."""
    name: str
    records: list[dict]
    tables: list[str]  # the data tables that have a file for this part


def _part_file(root: Path, table_name: str, part: str, *, temporary: bool) -> Path:
    return root / table_name / (f".{part}.parquet.tmp" if temporary else f"{part}.parquet")


class PartWriter:
    """Writes one part's data files, one row group per game, on a background thread.

    Arrow's Parquet encoder releases the GIL, so the previous game is compressed and written while the next one
    is parsed. Files get temporary names until :meth:`close`, and nothing is visible until the caller commits.
    """

    def __init__(self, root: Path):
        self.root, self.name = Path(root), f"part-{uuid.uuid4().hex[:16]}"
        self.records: list[dict] = []
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._row_groups = dict.fromkeys(DATA_TABLES, 0)
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"write {self.name}", daemon=True)
        self._thread.start()

    def _tmp(self, table_name: str) -> Path:
        return _part_file(self.root, table_name, self.name, temporary=True)

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            record, game = item
            if self._error is not None:
                continue
            try:
                for table_name in DATA_TABLES:
                    table = getattr(game, table_name)
                    if table.num_rows == 0:
                        record[f"{table_name}_row_group"] = None
                        continue
                    if table_name not in self._writers:
                        self._writers[table_name] = pq.ParquetWriter(self._tmp(table_name), table.schema,
                                                                     **PARQUET_OPTIONS)
                    self._writers[table_name].write_table(table, row_group_size=table.num_rows)
                    record[f"{table_name}_row_group"] = self._row_groups[table_name]
                    self._row_groups[table_name] += 1
            except BaseException as error:  # noqa: BLE001 - re-raised by close() in the caller's thread
                self._error = error

    def add(self, game: ParsedGame) -> None:
        record = dict(game.record, part=self.name)
        self.records.append(record)
        self._queue.put((record, game))

    def close(self) -> WrittenPart:
        """Finish the files (still under temporary names); returns index rows that locate each game."""
        self._queue.put(None)
        self._thread.join()
        for writer in self._writers.values():
            writer.close()
        if self._error is not None:
            for table_name in self._writers:
                self._tmp(table_name).unlink(missing_ok=True)
            raise self._error
        return WrittenPart(self.name, self.records, list(self._writers))


def dataset_hash(game_ids) -> str:
    """A short fingerprint of a set of games (their content hashes), for reports and run cards."""
    return hashlib.sha256("\n".join(sorted(game_ids)).encode()).hexdigest()[:16]


class Dataset:
    """Read access to a dataset, plus the few writes ingest needs (commit a part, log a quarantine)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        header_path = self.root / HEADER
        if not header_path.is_file():
            raise DatasetError(f"{self.root} is not a meleewm dataset (no {HEADER}); create one with `meleewm ingest`")
        try:
            self.header = json.loads(header_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"{header_path} is unreadable: {error}") from None
        if self.header.get("schema_version") != SCHEMA_VERSION:
            raise DatasetError(f"{self.root} has schema version {self.header.get('schema_version')}; this meleewm "
                               f"reads version {SCHEMA_VERSION}: re-ingest the replays into a new dataset")
        self._games: pa.Table | None = None
        self._rows: dict[str, int] | None = None  # game_id -> row of ``games``, for lookups by id

    @classmethod
    def create(cls, root: str | Path) -> Dataset:
        """Open ``root`` for writing, creating it if needed, and clear what a killed writer left behind."""
        root = Path(root)
        if root.exists() and not (root / HEADER).is_file() and any(root.iterdir()):
            raise DatasetError(f"{root} exists, is not empty and is not a meleewm dataset")
        for sub in ("games", *DATA_TABLES):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if not (root / HEADER).is_file():
            header = {"format": "meleewm-dataset", "schema_version": SCHEMA_VERSION, "meleewm_version": __version__,
                      "peppi_py_version": PEPPI_VERSION, "created": _now()}
            write_text_atomic(root / HEADER, json.dumps(header, indent=2))
        dataset = cls(root)
        dataset._remove_orphans()
        return dataset

    def _remove_orphans(self) -> None:
        shutil.rmtree(self.root / CLAIMS, ignore_errors=True)
        committed = {p.stem for p in (self.root / "games").glob("*.parquet")}
        for sub in ("games", *DATA_TABLES):
            for path in (self.root / sub).iterdir():
                if path.name.endswith(".tmp") or (sub != "games" and path.stem not in committed):
                    path.unlink(missing_ok=True)

    # -- writes -------------------------------------------------------------------------------------------------

    def commit(self, part: WrittenPart) -> None:
        """Make a written part visible: its data files get their names, then its games file, the commit record."""
        for table_name in part.tables:
            os.replace(_part_file(self.root, table_name, part.name, temporary=True),
                       _part_file(self.root, table_name, part.name, temporary=False))
        now = _now()
        rows = [{**r, "ingested_at": now} for r in part.records]
        table = pa.Table.from_pylist(rows, schema=GAME_SCHEMA)
        # The games file is the part's commit record (small: Parquet defaults are fine).
        with atomic_write(self.root / "games" / f"{part.name}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        self._games = self._rows = None

    def log_quarantine(self, entries: list[dict]) -> None:
        if not entries:
            return
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
        with open(self.root / QUARANTINE, "a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    # -- reads --------------------------------------------------------------------------------------------------

    @property
    def games(self) -> pa.Table:
        """The games index, sorted by game_id (stable whatever order the parts were written in)."""
        if self._games is None:
            parts = sorted((self.root / "games").glob("*.parquet"))
            tables = [pq.read_table(p, schema=GAME_SCHEMA) for p in parts]
            table = pa.concat_tables(tables) if tables else GAME_SCHEMA.empty_table()
            self._games = table.sort_by("game_id")
        return self._games

    def subset(self, game_ids) -> Dataset:
        """This dataset seen through ``game_ids`` only: its games index holds just their rows, so a worker sent it
        (pickled) reads no other part's index."""
        view = copy.copy(self)
        view._games = self.games.filter(pc.is_in(self.games.column("game_id"), value_set=pa.array(sorted(game_ids))))
        view._rows = None
        return view

    def game_ids(self) -> set[str]:
        return set(self.games.column("game_id").to_pylist())

    def game(self, game_id: str) -> dict:
        if self._rows is None:
            self._rows = {g: i for i, g in enumerate(self.games.column("game_id").to_pylist())}
        if game_id not in self._rows:
            raise KeyError(f"game {game_id} is not in {self.root}")
        return self.games.slice(self._rows[game_id], 1).to_pylist()[0]

    def _read(self, table_name: str, game_id: str, columns: list[str] | None = None) -> pa.Table | None:
        record = self.game(game_id)
        row_group = record[f"{table_name}_row_group"]
        if row_group is None:
            return None
        return pq.ParquetFile(self.root / table_name / f"{record['part']}.parquet").read_row_group(
            row_group, columns=columns)

    def frames(self, game_id: str, columns: list[str] | None = None) -> pa.Table:
        """One game's frames: blocks of (port, follower), each with every frame in increasing order."""
        table = self._read("frames", game_id, columns)
        assert table is not None, f"game {game_id} has no frames row group"
        return table

    def items(self, game_id: str, columns: list[str] | None = None) -> pa.Table:
        table = self._read("items", game_id, columns)
        return table if table is not None else ITEM_SCHEMA.empty_table().select(columns or ITEM_SCHEMA.names)

    def stage_events(self, game_id: str) -> pa.Table:
        table = self._read("stage_events", game_id)
        return table if table is not None else STAGE_EVENT_SCHEMA.empty_table()

    def scan_frames(self, columns: list[str] | None = None):
        """All frames as a pyarrow dataset, for fast full scans and filtered queries."""
        committed = [self.root / "frames" / f"{p}.parquet" for p in sorted(set(self.games.column("part").to_pylist()))]
        return ds.dataset([str(p) for p in committed if p.exists()], schema=FRAME_SCHEMA, format="parquet")

    def quarantine(self) -> list[dict]:
        """Quarantine entries; a line cut short by a killed writer is skipped."""
        path = self.root / QUARANTINE
        if not path.is_file():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries
