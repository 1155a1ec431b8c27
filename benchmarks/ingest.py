"""Ingest throughput against raw peppi-py reads of the same replays, measured in the same run.

    python benchmarks/ingest.py [--archive ../shared/replays/games-1.zip] [--repeats 2]

Prints games/s, frames/s and MB/s for raw ``peppi_py.read_slippi``, single-process ingest and ``--workers 2``,
the ratios between them, the cores one ingest worker keeps busy (its parse plus its Parquet writer thread: this
bounds what a second worker can add on a small machine), the machine's load average before and after (other work
on a shared machine skews the ratios), and a last line holding a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from peppi_py import read_slippi
from rich.console import Console
from rich.table import Table

from meleewm.replay.ingest import ingest

DEFAULT_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "replays" / "games-1.zip"


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ingest workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def best_of(repeats: int, run, cores: list[float] | None = None) -> float:
    """The best wall time of ``repeats`` runs; appends the cores busy during that run to ``cores``."""
    best, best_cores = float("inf"), 0.0
    for _ in range(repeats):
        start, cpu = time.perf_counter(), _cpu_seconds()
        run()
        wall = time.perf_counter() - start
        if wall < best:
            best, best_cores = wall, (_cpu_seconds() - cpu) / wall
    if cores is not None:
        cores.append(best_cores)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    one_worker_cores: list[float] = []
    work = Path(tempfile.mkdtemp(prefix="meleewm-bench-"))
    try:
        with zipfile.ZipFile(args.archive) as archive:
            members = [m for m in archive.namelist() if m.endswith(".slp")]
            archive.extractall(work / "files", members)
        files = sorted((work / "files").rglob("*.slp"))
        megabytes = sum(f.stat().st_size for f in files) / 1e6

        frames = 0

        def raw_read() -> None:
            nonlocal frames
            frames = sum(len(set(read_slippi(str(f)).frames.id.to_pylist())) for f in files)

        def ingest_with(workers: int, source: Path):
            def run() -> None:
                out = work / f"dataset-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                ingest([source], out, workers=workers)
            return run

        # The raw read starts from extracted files; "from_folder" is the like-for-like ingest, the others
        # stream the zip (inflate and hash included), as a user would run it.
        seconds = {"peppi_read": best_of(args.repeats, raw_read),
                   "ingest_1_worker_from_folder": best_of(args.repeats, ingest_with(1, work / "files")),
                   "ingest_1_worker": best_of(args.repeats, ingest_with(1, args.archive), one_worker_cores),
                   "ingest_2_workers": best_of(args.repeats, ingest_with(2, args.archive))}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title=f"ingest benchmark: {len(files)} games, {frames:,} frames, {megabytes:.0f} MB")
    for column in ("run", "seconds", "games/s", "frames/s", "MB/s"):
        table.add_column(column, justify="right")
    figures: dict[str, float] = {"games": len(files), "frames": frames, "megabytes": round(megabytes, 1)}
    for name, s in seconds.items():
        table.add_row(name, f"{s:.2f}", f"{len(files) / s:.1f}", f"{frames / s:,.0f}", f"{megabytes / s:.1f}")
        figures[f"{name}_s"] = round(s, 3)
        figures[f"{name}_frames_per_s"] = round(frames / s)
    figures["ingest_cost_vs_peppi"] = round(seconds["ingest_1_worker_from_folder"] / seconds["peppi_read"], 3)
    figures["zip_ingest_cost_vs_peppi"] = round(seconds["ingest_1_worker"] / seconds["peppi_read"], 3)
    figures["speedup_2_workers"] = round(seconds["ingest_1_worker"] / seconds["ingest_2_workers"], 3)
    figures["cores_busy_1_worker"] = round(one_worker_cores[0], 2)
    figures["cpu_count"] = os.cpu_count()
    figures["load_before"], figures["load_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
    console = Console()
    console.print(table)
    console.print(f"single-process ingest costs {figures['ingest_cost_vs_peppi']:.2f}x the raw peppi-py read of "
                  f"the same files (goal ≤ 1.5x), {figures['zip_ingest_cost_vs_peppi']:.2f}x when streaming the zip; "
                  f"--workers 2 is {figures['speedup_2_workers']:.2f}x faster than one (goal ≥ 1.7x; one worker "
                  f"keeps {figures['cores_busy_1_worker']:.2f} of {figures['cpu_count']} cores busy); load average "
                  f"{figures['load_before']:.2f} before, {figures['load_after']:.2f} after")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
