"""``meleewm ingest``: replays from files, folders and archives → a dataset, in parallel, resumably.

The main process streams replays, hashes them and drops the ones the dataset already has (or already
quarantined). Batches go to worker processes, which parse and write a part's data files; the main process
then commits each part and logs quarantined files. Killing the run at any moment loses at most the parts in
flight, and the next run redoes exactly those.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from meleewm.replay.dataset import Dataset, PartWriter, WrittenPart
from meleewm.replay.reader import ReplayError, parse_replay, sha256_hex
from meleewm.replay.sources import ReplayBlob, SourceFailure, iter_replays


@dataclass
class IngestStats:
    ingested: int = 0
    duplicates: int = 0
    already_quarantined: int = 0
    quarantined: Counter = field(default_factory=Counter)
    frames: int = 0
    seconds_of_play: float = 0.0
    elapsed: float = 0.0

    @property
    def seen(self) -> int:
        return self.ingested + self.duplicates + self.already_quarantined + sum(self.quarantined.values())


@dataclass
class BatchResult:
    part: WrittenPart | None
    quarantine: list[dict]
    frames: int


def _quarantine_entry(source: str, sha: str | None, reason: str, error: str) -> dict:
    return {"source": source, "sha256": sha, "reason": reason, "error": error,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def ingest_batch(root: str, batch: list[tuple[str, str, bytes]], keep_names: bool) -> BatchResult:
    """Parse a batch of (source, sha256, bytes) and write its part files; runs inside a worker process."""
    writer = PartWriter(Path(root))
    quarantine: list[dict] = []
    for source, sha, data in batch:
        try:
            writer.add(parse_replay(data, source, keep_names=keep_names, game_id=sha))
        except ReplayError as error:
            quarantine.append(_quarantine_entry(source, sha, error.reason, error.detail))
        except Exception as error:  # noqa: BLE001 - one bad file never ends the run
            quarantine.append(_quarantine_entry(source, sha, "unexpected error", f"{type(error).__name__}: {error}"))
    part = writer.close()
    frames = sum(r["frame_count"] for r in part.records)
    return BatchResult(part if part.records else None, quarantine, frames)


def _batches(blobs: Iterator[ReplayBlob | SourceFailure], known: set[str], quarantined: set[str],
             stats: IngestStats, failures: list[dict], batch_size: int) -> Iterator[list[tuple[str, str, bytes]]]:
    batch: list[tuple[str, str, bytes]] = []
    for blob in blobs:
        if isinstance(blob, SourceFailure):
            failures.append(_quarantine_entry(blob.source, None, "unreadable source", blob.error))
            continue
        sha = sha256_hex(blob.data)
        if sha in known:
            stats.duplicates += 1
            continue
        if sha in quarantined:
            stats.already_quarantined += 1
            continue
        known.add(sha)
        batch.append((blob.source, sha, blob.data))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(paths: list[str | Path], out: str | Path, *, workers: int = 1, batch_size: int = 16,
           keep_names: bool = False, retry_quarantined: bool = False,
           on_progress=None) -> IngestStats:
    """Ingest every replay under ``paths`` into the dataset at ``out``; returns what happened.

    ``on_progress(stats)`` is called after each committed batch (for progress bars).
    """
    started = time.perf_counter()
    dataset = Dataset.create(out)
    known = dataset.game_ids()
    quarantined = set() if retry_quarantined else {q["sha256"] for q in dataset.quarantine() if q.get("sha256")}
    stats = IngestStats()
    source_failures: list[dict] = []

    def absorb(result: BatchResult) -> None:
        if result.part is not None:
            dataset.commit(result.part)
            stats.ingested += len(result.part.records)
            stats.seconds_of_play += sum(r["duration_s"] for r in result.part.records)
        dataset.log_quarantine(result.quarantine)
        stats.quarantined.update(q["reason"] for q in result.quarantine)
        stats.frames += result.frames
        if on_progress:
            on_progress(stats)

    def flush_source_failures() -> None:
        dataset.log_quarantine(source_failures)
        stats.quarantined.update(q["reason"] for q in source_failures)
        source_failures.clear()

    batches = _batches(iter_replays(paths), known, quarantined, stats, source_failures, batch_size)
    if workers <= 1:
        for batch in batches:
            absorb(ingest_batch(str(dataset.root), batch, keep_names))
            flush_source_failures()
    else:
        # Bounded in-flight work keeps memory flat however large the input is.
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: set[Future] = set()
            for batch in batches:
                pending.add(pool.submit(ingest_batch, str(dataset.root), batch, keep_names))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        absorb(future.result())
                flush_source_failures()
            for future in pending:
                absorb(future.result())
    flush_source_failures()
    stats.elapsed = time.perf_counter() - started
    return stats
