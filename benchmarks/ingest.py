"""Ingest throughput against raw peppi-py reads of the same replays, measured in the same run.

    python benchmarks/ingest.py [--archive ../shared/replays/games-1.zip] [--repeats 2]

Prints games/s, frames/s and MB/s for raw ``peppi_py.read_slippi``, single-process ingest and ``--workers 2``,
the ratios between them, and a last line holding a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
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


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

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
                   "ingest_1_worker": best_of(args.repeats, ingest_with(1, args.archive)),
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
    console = Console()
    console.print(table)
    console.print(f"single-process ingest costs {figures['ingest_cost_vs_peppi']:.2f}x the raw peppi-py read of "
                  f"the same files (goal ≤ 1.5x), {figures['zip_ingest_cost_vs_peppi']:.2f}x when streaming the zip; "
                  f"--workers 2 is {figures['speedup_2_workers']:.2f}x faster than one (goal ~2x)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
