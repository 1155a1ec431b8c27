"""``meleewm ingest``: replays from files, folders and archives → a dataset, in parallel, resumably.

The driver (the main process) only lists the replays and commits. It sends workers references to files and zip
members, which they open and read themselves, and the bytes of tar and 7z members, which only a stream in order
can give (memory in flight is bounded by bytes). A worker reads, hashes, skips what the dataset already has,
claims the hash (so that a game found twice in one run is parsed once), parses, and writes a part's data files
under temporary names. Only the driver commits a part (renames its files, then writes its games index) and logs
the quarantine. Workers exit as soon as the driver dies, so nothing happens without it. Killing the run at any
moment loses at most the parts in flight, and the next run redoes exactly those.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from meleewm.replay.dataset import CLAIMS, Dataset, PartWriter, WrittenPart
from meleewm.replay.limits import violations
from meleewm.replay.reader import ReplayError, parse_replay, sha256_hex
from meleewm.replay.sources import (
    MAX_REPLAY_BYTES,
    MemberError,
    Replay,
    ReplayBlob,
    SourceFailure,
    close_archives,
    iter_replays,
    source_fields,
)

# A batch closes at this many (declared) bytes, whatever its count: parts of even size keep the workers evenly busy.
BATCH_BYTES = 16 * 1024 * 1024
IN_FLIGHT_BYTES = 4 * MAX_REPLAY_BYTES  # replay bytes the driver may hold in submitted batches (tar, 7z members)


@dataclass
class IngestStats:
    ingested: int = 0
    duplicates: int = 0
    already_quarantined: int = 0
    quarantined: Counter = field(default_factory=Counter)
    frames: int = 0
    seconds_of_play: float = 0.0
    elapsed: float = 0.0
    tasks_per_node: Counter = field(default_factory=Counter)  # Ray node id -> batches it parsed (Ray runs only)

    @property
    def seen(self) -> int:
        return self.ingested + self.duplicates + self.already_quarantined + sum(self.quarantined.values())


@dataclass
class BatchResult:
    part: WrittenPart | None
    quarantine: list[dict]
    frames: int
    skipped: list[tuple[str, str]]  # (sha256, "duplicate" | "already quarantined" | "copy": claimed in this run)


def _quarantine_entry(source: str, sha: str | None, reason: str, error: str) -> dict:
    name = source_fields(source)
    return {"source": name["source"], "source_hex": name["source_bytes"].hex() if name["source_bytes"] else None,
            "sha256": sha, "reason": reason, "error": error,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# -- the worker side ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Run:
    """What every worker of one run knows: where to write, and which hashes to skip."""
    root: Path
    known: frozenset[str]
    quarantined: frozenset[str]
    keep_names: bool
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def claims(self) -> Path:
        """This run's claims folder: a stray worker of an earlier, killed run finds no folder to claim in."""
        return self.root / CLAIMS / self.run_id


_run: _Run | None = None


def _start_worker(run: _Run, driver_pid: int | None) -> None:
    global _run
    _run = run
    if driver_pid is not None:
        threading.Thread(target=_exit_with_driver, args=(driver_pid,), name="watch driver", daemon=True).start()


def _exit_with_driver(driver_pid: int) -> None:
    """A worker whose driver died (even by SIGKILL) is re-parented: it exits at once, leaving only temporary
    files, which the next run removes. Nothing it did is committed."""
    while os.getppid() == driver_pid:
        time.sleep(0.2)
    os._exit(1)


def _claim(sha: str) -> bool:
    """True for the first worker of this run to see ``sha``; a second copy is skipped, not parsed again."""
    try:
        os.close(os.open(_run.claims / sha, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _read_and_hash(item: Replay) -> tuple[bytes, str]:
    data = item.read()
    return data, sha256_hex(data)


def _read_ahead(batch: list[Replay]) -> Iterator[tuple[Replay, Future]]:
    """Each replay with a Future of its bytes and hash, read one replay ahead in a thread. Reads, inflating and
    SHA-256 release the GIL, so they run while the previous replay is parsed: for games-1, 0.19 s of CPU off the
    parsing thread's 1.1 s. One replay ahead keeps at most two replays' bytes in memory."""
    with ThreadPoolExecutor(1, thread_name_prefix="read ahead") as pool:
        ahead = pool.submit(_read_and_hash, batch[0]) if batch else None
        for i, item in enumerate(batch):
            current, ahead = ahead, pool.submit(_read_and_hash, batch[i + 1]) if i + 1 < len(batch) else None
            yield item, current


@dataclass
class _ParsedBatch:
    """A batch whose games are parsed and queued to their part's writer, which may still be writing them."""
    writer: PartWriter
    quarantine: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def finish(self) -> BatchResult:
        """Wait for the part's data files to be written (under temporary names)."""
        part = self.writer.close()
        frames = sum(r["frame_count"] for r in part.records)
        return BatchResult(part if part.records else None, self.quarantine, frames, self.skipped)


def ingest_batch(batch: list[Replay]) -> BatchResult:
    """Read, hash, parse and write one part's data files; runs in a worker."""
    return _parse_batch(batch).finish()


def _parse_batch(batch: list[Replay]) -> _ParsedBatch:
    run = _run
    parsed = _ParsedBatch(PartWriter(run.root))
    quarantine, skipped, writer = parsed.quarantine, parsed.skipped, parsed.writer
    for item, read in _read_ahead(batch):
        try:
            data, sha = read.result()
        except MemberError as error:
            quarantine.append(_quarantine_entry(item.source, None, error.reason, str(error)))
            continue
        if sha in run.known or sha in run.quarantined:
            skipped.append((sha, "duplicate" if sha in run.known else "already quarantined"))
            continue
        if not _claim(sha):
            skipped.append((sha, "copy"))
            continue
        try:
            game = parse_replay(data, item.source, keep_names=run.keep_names, game_id=sha)
            if problems := violations(game.frames):
                raise ReplayError("implausible values", "; ".join(problems[:3]))
            writer.add(game)
        except ReplayError as error:
            quarantine.append(_quarantine_entry(item.source, sha, error.reason, error.detail))
        except Exception as error:  # noqa: BLE001 - one bad file never ends the run
            detail = f"{type(error).__name__}: {error}"
            quarantine.append(_quarantine_entry(item.source, sha, "unexpected error", detail))
    return parsed


# -- the driver side ----------------------------------------------------------------------------------------------

class _Ledger:
    """The driver's book of a run: commits parts, logs the quarantine once per file, and counts."""

    def __init__(self, dataset: Dataset, failed_sources: set[str], on_progress):
        self.dataset, self.failed_sources, self.on_progress = dataset, failed_sources, on_progress
        self.stats = IngestStats()
        self._fate: dict[str, bool] = {}      # sha claimed in this run -> ingested (True) or quarantined (False)
        self._waiting: Counter = Counter()    # copies of a sha whose first copy's batch is not back yet

    def _settle(self, sha: str, ingested: bool) -> None:
        self._fate[sha] = ingested
        self._count_copies(ingested, self._waiting.pop(sha, 0))

    def _count_copies(self, ingested: bool, copies: int) -> None:
        if ingested:
            self.stats.duplicates += copies
        else:
            self.stats.already_quarantined += copies

    def log(self, entries: list[dict]) -> None:
        """Log quarantine entries, except unreadable sources an earlier run already logged."""
        fresh = []
        for entry in entries:
            if entry["sha256"] is None:
                if entry["source"] in self.failed_sources:
                    self.stats.already_quarantined += 1
                    continue
                self.failed_sources.add(entry["source"])
            fresh.append(entry)
        self.dataset.log_quarantine(fresh)
        self.stats.quarantined.update(e["reason"] for e in fresh)

    def absorb(self, result: BatchResult) -> None:
        if result.part is not None:
            self.dataset.commit(result.part)
            self.stats.ingested += len(result.part.records)
            self.stats.seconds_of_play += sum(r["duration_s"] for r in result.part.records)
            for record in result.part.records:
                self._settle(record["game_id"], True)
        for entry in result.quarantine:
            if entry["sha256"] is not None:
                self._settle(entry["sha256"], False)
        self.log(result.quarantine)
        for sha, why in result.skipped:
            if why == "duplicate":
                self.stats.duplicates += 1
            elif why == "already quarantined":
                self.stats.already_quarantined += 1
            elif sha in self._fate:
                self._count_copies(self._fate[sha], 1)
            else:
                self._waiting[sha] += 1
        self.stats.frames += result.frames
        if self.on_progress:
            self.on_progress(self.stats)

    def finish(self) -> None:
        """Copies whose first copy never came back (its batch failed) count as duplicates."""
        self._count_copies(True, sum(self._waiting.values()))
        self._waiting.clear()

    def batches(self, items: Iterator[Replay | SourceFailure], batch_size: int) -> Iterator[list[Replay]]:
        """Batches of at most ``batch_size`` replays and about BATCH_BYTES; unreadable sources are logged here."""
        batch: list[Replay] = []
        size = 0
        for item in items:
            if isinstance(item, SourceFailure):
                self.log([_quarantine_entry(item.source, None, item.reason, item.error)])
                continue
            batch.append(item)
            size += item.size
            if len(batch) >= batch_size or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch


def _held_bytes(batch: list[Replay]) -> int:
    """Replay bytes a batch holds in the driver (references hold none: their worker reads them)."""
    return sum(item.size for item in batch if isinstance(item, ReplayBlob))


def _absorb_in_parallel(ledger: _Ledger, batches: Iterator[list[Replay]], submit, slots: int) -> None:
    """Run ``submit(batch)`` (a Future of a BatchResult) for every batch, at most ``slots`` at once and within
    IN_FLIGHT_BYTES of held replay bytes, and commit each result as it comes back."""
    pending: dict[Future, int] = {}
    for batch in batches:
        pending[submit(batch)] = _held_bytes(batch)
        while len(pending) >= slots or sum(pending.values()) > IN_FLIGHT_BYTES:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                del pending[future]
                ledger.absorb(future.result())
    for future in list(pending):
        ledger.absorb(future.result())


def ingest(paths: list[str | Path], out: str | Path, *, workers: int = 1, batch_size: int = 16,
           keep_names: bool = False, retry_quarantined: bool = False, ray: str | None = None,
           on_progress=None) -> IngestStats:
    """Ingest every replay under ``paths`` into the dataset at ``out``; returns what happened.

    ``ray``: parse on a Ray cluster instead of local processes: its address as ``ray.init`` takes it (``"auto"``,
    ``"host:port"``, or ``"local"`` to start a Ray for this run); ``workers`` is then ignored (see
    ``meleewm.replay.ray_ingest``).
    ``on_progress(stats)`` is called after each committed batch (for progress bars).
    """
    global _run
    started = time.perf_counter()
    dataset = Dataset.create(out)
    earlier = [] if retry_quarantined else dataset.quarantine()
    run = _Run(dataset.root, frozenset(dataset.game_ids()),
               frozenset(q["sha256"] for q in earlier if q.get("sha256")), keep_names)
    ledger = _Ledger(dataset, {q["source"] for q in earlier if not q.get("sha256")}, on_progress)
    run.claims.mkdir(parents=True)
    batches = ledger.batches(iter_replays(paths), batch_size)
    try:
        if ray is not None:
            from meleewm.replay.ray_ingest import RayTasks
            with RayTasks(ray, run) as cluster:
                _absorb_in_parallel(ledger, batches, cluster.submit, cluster.slots)
            ledger.stats.tasks_per_node = cluster.tasks_per_node
        elif workers <= 1:
            # One process: the driver parses a batch while a thread waits for the previous part's writer to
            # finish, so the parse never stops at the end of a part (11% of the wall time on games-1, at a load of 7).
            _start_worker(run, None)
            with ThreadPoolExecutor(1, thread_name_prefix="finish part") as finisher:
                _absorb_in_parallel(ledger, batches, lambda batch: finisher.submit(_parse_batch(batch).finish), 2)
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                                     initargs=(run, os.getpid())) as pool:
                _absorb_in_parallel(ledger, batches, lambda batch: pool.submit(ingest_batch, batch), 2 * workers)
    finally:
        _run = None
        close_archives()
        shutil.rmtree(dataset.root / CLAIMS, ignore_errors=True)
    ledger.finish()
    ledger.stats.elapsed = time.perf_counter() - started
    return ledger.stats
