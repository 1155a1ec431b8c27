"""How ingest, the sharded store and its training loader grow with the number of games, extrapolated to 100K.

    python benchmarks/scale.py [--sizes 250,500,1000,2000] [--quick] [--work DIR]

The games are VARIANTS of the real full games of ../shared/replays (games-1.zip and games-2.zip, 195 games):
variant k of a replay is its exact bytes with the year of its metadata ``startAt`` set to 3000 + k (variant 0 is
the original). That changes the content hash, so ingest stores each as a new game, and nothing that is played. So
the frames repeat those of the 195 real games: sizes and speeds are those of real data.

At each size it measures, each in a fresh process (so peak memory is that of the step alone):
- ingest from a folder of .slp files with 1 and 2 workers: seconds, frames/s, peak memory of the driver and of the
  largest worker, and the dataset's size on disk;
- the encoding spec's fit in 1 and in 2 processes (the two specs must be equal), and the sharded store's build (2
  processes): seconds, size on disk, bytes per frame;
- the training loader (ShardStream, T=256, batch 16) over the store, with and without reading the next shards
  ahead (``prefetch_shards``), in turn, twice each, in one process: windows/s and peak memory.
The encoded cache is built once, at the smallest size, as the baseline of the store's figures. Then it fits each
figure's growth (a line in the number of games, and the exponent of a power law), prints the fits and what they
give at 100,000 games, and ends with one line holding a JSON object of every figure. ``--quick`` measures 40 and 80
games and streams fewer batches (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPLAYS = Path(__file__).resolve().parents[2] / "shared" / "replays"
ARCHIVES = ("games-1.zip", "games-2.zip")
TARGET = 100_000
WINDOW, BATCH = 256, 16
# A memory figure that grows slower than games ** 0.25 over the sizes measured is taken as bounded: its largest
# measured value stands for 100K games (a line through noise would extrapolate to nonsense).
BOUNDED_EXPONENT = 0.25


# -- the variants ---------------------------------------------------------------------------------------------------

def variant(data: bytes, k: int) -> bytes:
    """``data`` with the year of its metadata startAt set to 3000 + k (k = 0: unchanged)."""
    if k == 0:
        return data
    at = data.rfind(b"U\x07startAtSU")
    if at < 0:
        raise ValueError("no metadata startAt")
    year = at + len(b"U\x07startAtSU") + 1  # after the string's one-byte length
    if not data[year:year + 4].isdigit():
        raise ValueError("startAt does not begin with a year")
    return data[:year] + str(3000 + k).encode() + data[year + 4:]


def write_variants(count: int, folder: Path) -> list[Path]:
    """``count`` replay files in ``folder``: the real games, then their variants 1, 2, ... in turn."""
    originals = []
    for name in ARCHIVES:
        with zipfile.ZipFile(REPLAYS / name) as archive:
            originals += [archive.read(m) for m in sorted(archive.namelist()) if m.endswith(".slp")]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        k, original = divmod(i, len(originals))
        path = folder / f"game-{original:03d}-variant-{k:03d}.slp"
        path.write_bytes(variant(originals[original], k))
        paths.append(path)
    return paths


# -- one measured step, in its own process ----------------------------------------------------------------------------

def _memory_mib(pid: int | str, field: str, table: str = "status") -> float:
    """A memory figure of /proc/PID/<table> (status: VmRSS, VmHWM; smaps_rollup: Pss) in MiB; 0 for a process
    that is gone."""
    try:
        for line in Path(f"/proc/{pid}/{table}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0.0


def _children(pid: int) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(entry.name)
    return found


class PeakMemory:
    """The peak memory of this process and its children (ingest and store workers) together, sampled every
    200 ms as their proportional set size (a page shared by n processes counts 1/n in each): RSS would count the
    pages forked workers share with their parent once per worker."""

    def __init__(self):
        self.peak, self._done = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        me = os.getpid()
        while not self._done.wait(0.2):
            total = sum(_memory_mib(pid, "Pss", "smaps_rollup") for pid in [me, *_children(me)])
            self.peak = max(self.peak, total)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak


def _step(queue, name: str, kwargs: dict) -> None:
    memory = PeakMemory()
    started = time.perf_counter()
    result = STEPS[name](**kwargs)
    seconds = time.perf_counter() - started
    queue.put({**result, "seconds": seconds, "peak_mib": memory.stop(),
               "main_peak_mib": _memory_mib(os.getpid(), "VmHWM")})


def measure(name: str, **kwargs) -> dict:
    """Run step ``name`` in a forked process (as the CLI's workers are: a spawned one would make its own workers
    spawn too, each importing everything again); its figures, with its seconds and peak memory (MiB)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_step, args=(queue, name, kwargs))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"step {name} failed with exit code {process.exitcode}")
    return result


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def ingest_step(source: str, out: str, workers: int) -> dict:
    from meleewm.replay.ingest import ingest
    stats = ingest([source], out, workers=workers)
    return {"games": stats.ingested, "frames": stats.frames, "quarantined": sum(stats.quarantined.values()),
            "dataset_bytes": _folder_bytes(Path(out))}


def store_step(dataset: str, out: str, workers: int) -> dict:
    from meleewm.data.encoding import EncodingSpec
    from meleewm.data.store import build_store
    from meleewm.replay.dataset import Dataset

    data = Dataset(dataset)
    ids = sorted(data.game_ids())
    fit_s, specs = {}, {}
    for processes in (1, workers):
        started = time.perf_counter()
        specs[processes] = EncodingSpec.fit(data, ids, items=True, workers=processes)
        fit_s[processes] = time.perf_counter() - started
    if json.dumps(specs[1].to_dict()) != json.dumps(specs[workers].to_dict()):
        raise RuntimeError(f"the fit in {workers} processes differs from the fit in one")
    started = time.perf_counter()
    store = build_store(data, specs[1], ids, Path(out) / "store", workers=workers, progress=False)
    return {"fit_1p_s": fit_s[1], f"fit_{workers}p_s": fit_s[workers], "store_s": time.perf_counter() - started,
            "store_bytes": store.bytes_on_disk(), "frames": store.n_frames, "shards": len(store.shard_games)}


def cache_step(dataset: str, out: str) -> dict:
    """The baseline: the encoded cache of the same games and spec."""
    from meleewm.data.cache import build_cache
    from meleewm.data.encoding import EncodingSpec
    from meleewm.replay.dataset import Dataset

    data = Dataset(dataset)
    ids = sorted(data.game_ids())
    spec = EncodingSpec.fit(data, ids, items=True)
    started = time.perf_counter()
    cache = build_cache(data, spec, ids, Path(out) / "cache", progress=False)
    result = {"cache_s": time.perf_counter() - started,
              "cache_bytes": sum(p.stat().st_size for p in cache.path.iterdir())}
    shutil.rmtree(Path(out) / "cache")
    return result


def loader_step(store: str, batches: int) -> dict:
    """The same batches streamed without and with shards read ahead, in turn, twice each (the load of the machine
    moves: taken in turn, both see it alike); windows/s of each over its two runs, and the peak memory of each."""
    from meleewm.data.store import ShardedStore, ShardStream

    before = _memory_mib(os.getpid(), "Pss", "smaps_rollup")
    opened = ShardedStore(store)
    groups = -(-len(opened.shard_games) // opened.open_shards)  # groups of shards a rank reads in turn
    seconds, peak, done = {False: 0.0, True: 0.0}, {False: 0.0, True: 0.0}, 0
    for prefetch in (False, True, False, True):
        stream = ShardStream(ShardedStore(store), WINDOW, BATCH, seed=0, swap=True, mirror=True, ko_windows=0.5,
                             prefetch_shards=prefetch)
        steps = min(batches, stream.steps_per_epoch)
        memory = PeakMemory()
        started = time.perf_counter()
        done = sum(1 for _ in stream.batches(0, steps=steps))
        seconds[prefetch] += time.perf_counter() - started
        peak[prefetch] = max(peak[prefetch], memory.stop())
        del stream  # its decoded shards, before the next run's
    windows = 2 * done * BATCH
    return {"windows_per_s": windows / seconds[False], "prefetch_windows_per_s": windows / seconds[True],
            "inline_peak_mib": peak[False], "prefetch_peak_mib": peak[True], "batches": done,
            "groups": groups, "before_streaming_mib": before}


STEPS = {"ingest": ingest_step, "store": store_step, "cache": cache_step, "loader": loader_step}


# -- growth -------------------------------------------------------------------------------------------------------------

def fit_growth(sizes: list[int], values: list[float]) -> dict:
    """A line ``a + b * games`` (least squares), the power-law exponent, and the line's value at TARGET games."""
    slope, intercept = np.polyfit(sizes, values, 1)
    exponent = np.polyfit(np.log(sizes), np.log(np.maximum(values, 1e-9)), 1)[0]
    return {"per_game": float(slope), "fixed": float(intercept), "exponent": float(exponent),
            "at_target": float(intercept + slope * TARGET)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,500,1000,2000", help="game counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="40 and 80 games, 60 loader batches")
    parser.add_argument("--batches", type=int, default=600, help="loader batches streamed at each size")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    sizes = [40, 80] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    batches = 60 if args.quick else args.batches
    if not (REPLAYS / ARCHIVES[0]).is_file():
        raise SystemExit(f"the real replays are not at {REPLAYS}")

    console = Console(width=120)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="meleewm-scale-", dir=args.work))
    rows: dict[int, dict] = {}
    try:
        files = write_variants(max(sizes), work / "all")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("scale benchmark", total=len(sizes) * 4)
            for n in sizes:
                source = work / f"replays-{n}"
                source.mkdir()
                for path in files[:n]:
                    os.link(path, source / path.name)
                row = {"games": n}
                for workers in (1, 2):
                    out = work / f"dataset-{n}-{workers}"
                    result = measure("ingest", source=str(source), out=str(out), workers=workers)
                    if result["games"] != n:
                        raise RuntimeError(f"{n} variants gave {result['games']} games: {result}")
                    row.update({f"ingest_{workers}w_s": result["seconds"],
                                f"ingest_{workers}w_peak_mib": result["peak_mib"],
                                f"ingest_{workers}w_driver_mib": result["main_peak_mib"],
                                "frames": result["frames"], "dataset_bytes": result["dataset_bytes"]})
                    if workers == 1:
                        shutil.rmtree(out)
                    progress.advance(task)
                dataset = work / f"dataset-{n}-2"
                store = measure("store", dataset=str(dataset), out=str(work / f"encoded-{n}"), workers=2)
                row.update({"fit_1p_s": store["fit_1p_s"], "fit_2p_s": store["fit_2p_s"], "store_s": store["store_s"],
                            "store_bytes": store["store_bytes"], "store_peak_mib": store["peak_mib"],
                            "shards": store["shards"]})
                if n == sizes[0]:
                    row.update(measure("cache", dataset=str(dataset), out=str(work / f"encoded-{n}")))
                progress.advance(task)
                [store_path] = (work / f"encoded-{n}" / "store").iterdir()
                loader = measure("loader", store=str(store_path), batches=batches)
                row.update({"loader_windows_per_s": loader["windows_per_s"],
                            "loader_prefetch_windows_per_s": loader["prefetch_windows_per_s"],
                            "loader_groups": loader["groups"], "loader_peak_mib": loader["peak_mib"],
                            "loader_inline_peak_mib": loader["inline_peak_mib"],
                            "loader_prefetch_peak_mib": loader["prefetch_peak_mib"],
                            "loader_before_streaming_mib": loader["before_streaming_mib"],
                            "loader_batches": loader["batches"]})
                progress.advance(task)
                rows[n] = row
                shutil.rmtree(dataset)
                shutil.rmtree(work / f"encoded-{n}")
                shutil.rmtree(source)
                progress.advance(task)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title="scale benchmark (variants of 195 real games; see the docstring)")
    table.add_column("figure")
    for n in rows:
        table.add_column(f"{n:,} games", justify="right")
    for row in rows.values():
        row["store_bytes_per_frame"] = row["store_bytes"] / row["frames"]
        row["dataset_bytes_per_frame"] = row["dataset_bytes"] / row["frames"]
        row["ingest_2w_speedup"] = row["ingest_1w_s"] / row["ingest_2w_s"]
        row["fit_2p_speedup"] = row["fit_1p_s"] / row["fit_2p_s"]
        row["loader_prefetch_speedup"] = row["loader_prefetch_windows_per_s"] / row["loader_windows_per_s"]
    shown = [("frames", "{:,}"), ("ingest_1w_s", "{:.1f}"), ("ingest_2w_s", "{:.1f}"), ("ingest_2w_speedup", "{:.2f}"),
             ("ingest_1w_peak_mib", "{:.0f}"), ("ingest_2w_peak_mib", "{:.0f}"), ("ingest_2w_driver_mib", "{:.0f}"),
             ("dataset_bytes_per_frame", "{:.1f}"), ("fit_1p_s", "{:.1f}"), ("fit_2p_s", "{:.1f}"),
             ("fit_2p_speedup", "{:.2f}"), ("store_s", "{:.1f}"), ("shards", "{}"), ("store_bytes_per_frame", "{:.1f}"),
             ("store_peak_mib", "{:.0f}"), ("loader_groups", "{}"), ("loader_windows_per_s", "{:.0f}"),
             ("loader_prefetch_windows_per_s", "{:.0f}"), ("loader_prefetch_speedup", "{:.2f}"),
             ("loader_inline_peak_mib", "{:.0f}"), ("loader_prefetch_peak_mib", "{:.0f}"),
             ("loader_before_streaming_mib", "{:.0f}"), ("loader_peak_mib", "{:.0f}")]
    for name, fmt in shown:
        table.add_row(name, *(fmt.format(row[name]) for row in rows.values()))
    console.print(table)

    ns = sorted(rows)
    frames_per_game = sum(rows[n]["frames"] for n in ns) / sum(ns)
    growth = {name: fit_growth(ns, [rows[n][name] for n in ns]) for name in (
        "ingest_1w_s", "ingest_2w_s", "ingest_1w_peak_mib", "ingest_2w_peak_mib", "ingest_2w_driver_mib",
        "fit_1p_s", "fit_2p_s", "store_s", "store_bytes", "dataset_bytes", "store_peak_mib", "loader_peak_mib")}
    fits = Table(title=f"growth, and the line's value at {TARGET:,} games ({TARGET * frames_per_game / 1e9:.2f}B "
                       f"frames at {frames_per_game:,.0f} frames a game)")
    for column in ("figure", "per game", "fixed", "power-law exponent", f"at {TARGET:,} games"):
        fits.add_column(column, justify="right")
    for name, fit in growth.items():
        at = fit["at_target"]
        if name.endswith("_mib") and fit["exponent"] < BOUNDED_EXPONENT:
            fit["at_target"] = max(rows[n][name] for n in ns)
            shown = f"bounded: {fit['at_target']:,.0f} MiB"
        else:
            shown = (f"{at / 3600:.1f} h" if name.endswith("_s") else f"{at / 1e9:.1f} GB" if name.endswith("bytes")
                     else f"{at:,.0f} MiB")
        fits.add_row(name, f"{fit['per_game']:.4g}", f"{fit['fixed']:.4g}", f"{fit['exponent']:.2f}", shown)
    console.print(fits)
    console.print(f"memory figures whose power-law exponent is below {BOUNDED_EXPONENT} are bounded: their largest "
                  f"measured value is shown")
    base = rows[ns[0]]
    figures = {"sizes": ns, "rows": rows, "growth": growth, "frames_per_game": frames_per_game,
               "cache_bytes_per_frame": base["cache_bytes"] / base["frames"],
               "store_vs_cache_bytes": base["store_bytes"] / base["cache_bytes"],
               "store_vs_cache_build_time": base["store_s"] / base["cache_s"],
               "cpu_count": os.cpu_count(), "load_before": round(load_before, 2),
               "load_after": round(os.getloadavg()[0], 2)}
    store_vs_cache = (f"the store takes {figures['store_vs_cache_bytes']:.3f}x the encoded cache's bytes "
                      f"({base['store_bytes_per_frame']:.1f} against {figures['cache_bytes_per_frame']:.0f} bytes a "
                      f"frame, items on) and {figures['store_vs_cache_build_time']:.2f}x its build time (2 processes "
                      f"against 1) at {ns[0]} games")
    console.print(f"{store_vs_cache}; load average {figures['load_before']:.2f} before, {figures['load_after']:.2f} "
                  f"after")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
