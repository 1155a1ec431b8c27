"""Ingest throughput against raw peppi-py reads of the same replays, measured in the same run.

    python benchmarks/ingest.py [--archive ../shared/replays/games-1.zip] [--repeats 3]

Prints games/s, frames/s and MB/s for raw ``peppi_py.read_slippi``, single-process ingest and ``--workers 2``,
the ratios between them (single-process ingest against the read also in CPU seconds, which swing less with other
jobs than wall times), the cores one ingest worker keeps busy (its parse plus its Parquet writer thread: this
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


def best_of(repeats: int, runs: dict[str, tuple]) -> tuple[dict[str, float], dict[str, float]]:
    """The best wall time of each of ``runs`` (name -> (prepare, run)) over ``repeats`` rounds, and the cores busy
    during that best run. A round runs each once, in turn, so that a change in the machine's load hits them all
    alike; ``prepare`` (not timed) clears what an earlier run left."""
    best = dict.fromkeys(runs, float("inf"))
    cores = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, (prepare, run) in runs.items():
            prepare()
            start, cpu = time.perf_counter(), _cpu_seconds()
            run()
            wall = time.perf_counter() - start
            if wall < best[name]:
                best[name], cores[name] = wall, (_cpu_seconds() - cpu) / wall
    return best, cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="meleewm-bench-"))
    try:
        with zipfile.ZipFile(args.archive) as archive:
            members = [m for m in archive.namelist() if m.endswith(".slp")]
            archive.extractall(work / "files", members)
        files = sorted((work / "files").rglob("*.slp"))
        megabytes = sum(f.stat().st_size for f in files) / 1e6

        def raw_read() -> None:
            for f in files:
                read_slippi(str(f))

        def ingest_with(workers: int, source: Path) -> tuple:
            out = work / f"dataset-{workers}"
            return (lambda: shutil.rmtree(out, ignore_errors=True)), (lambda: ingest([source], out, workers=workers))

        # The raw read starts from extracted files; "from_folder" is the like-for-like ingest, the others
        # stream the zip (inflate and hash included), as a user would run it.
        seconds, cores = best_of(args.repeats, {
            "peppi_read": ((lambda: None), raw_read),
            "ingest_1_worker_from_folder": ingest_with(1, work / "files"),
            "ingest_1_worker": ingest_with(1, args.archive),
            "ingest_2_workers": ingest_with(2, args.archive)})
        frames = sum(len(set(read_slippi(str(f)).frames.id.to_pylist())) for f in files)  # rollback copies once
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
    figures["cores_busy_1_worker"] = round(cores["ingest_1_worker"], 2)
    # CPU seconds (all threads) swing less than wall times with other jobs' load: the work the ratio is made of.
    cpu = {name: seconds[name] * cores[name] for name in seconds}
    figures["peppi_read_cpu_s"] = round(cpu["peppi_read"], 3)
    figures["ingest_1_worker_from_folder_cpu_s"] = round(cpu["ingest_1_worker_from_folder"], 3)
    figures["ingest_cpu_vs_peppi"] = round(cpu["ingest_1_worker_from_folder"] / cpu["peppi_read"], 3)
    figures["cpu_count"] = os.cpu_count()
    figures["load_before"], figures["load_after"] = round(load_before, 2), round(os.getloadavg()[0], 2)
    console = Console()
    console.print(table)
    console.print(f"single-process ingest costs {figures['ingest_cost_vs_peppi']:.2f}x the raw peppi-py read of "
                  f"the same files (goal ≤ 1.5x), {figures['zip_ingest_cost_vs_peppi']:.2f}x when streaming the zip; "
                  f"--workers 2 is {figures['speedup_2_workers']:.2f}x faster than one (goal ≥ 1.7x; one worker "
                  f"keeps {figures['cores_busy_1_worker']:.2f} of {figures['cpu_count']} cores busy); in CPU seconds, "
                  f"ingest costs {figures['ingest_cpu_vs_peppi']:.2f}x the read; load average "
                  f"{figures['load_before']:.2f} before, {figures['load_after']:.2f} after")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
