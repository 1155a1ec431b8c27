"""The ``meleewm`` command line: one thin function per command, each calling into the package."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="meleewm: a playable world model of Super Smash Bros. Melee, learned from Slippi replays.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help=".slp files, folders (searched recursively) or archives "
                                                 "(.zip, .tar, .tar.gz, .tar.zst, .7z)"),
    out: Path = typer.Option(..., "--out", "-o", help="dataset folder (created, or extended)"),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="parallel parser processes"),
    batch_size: int = typer.Option(16, help="games per part file"),
    keep_names: bool = typer.Option(False, "--keep-names", help="store netplay names, connect codes and tags"),
    retry_quarantined: bool = typer.Option(False, help="try files quarantined by an earlier run again"),
) -> None:
    """Parse replays into a columnar dataset; bad files are quarantined, never fatal. Re-runs resume."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meleewm.replay.dataset import DatasetError
    from meleewm.replay.ingest import count_replays
    from meleewm.replay.ingest import ingest as run_ingest
    from meleewm.replay.sources import SourceError

    total = count_replays(paths)
    columns = [TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[rate]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("ingest", total=total, rate="")

        def on_progress(stats) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=stats.seen,
                            rate=f"{stats.frames / elapsed:,.0f} frames/s  {stats.ingested} games")

        started = time.perf_counter()
        try:
            stats = run_ingest(paths, out, workers=workers, batch_size=batch_size, keep_names=keep_names,
                               retry_quarantined=retry_quarantined, on_progress=on_progress)
        except (DatasetError, SourceError) as error:
            _fail(str(error))
        progress.update(task, completed=stats.seen)

    table = Table(title=f"ingest → {out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("ingested", f"{stats.ingested:,}")
    table.add_row("skipped (already in the dataset)", f"{stats.duplicates:,}")
    table.add_row("skipped (quarantined before)", f"{stats.already_quarantined:,}")
    for reason, count in sorted(stats.quarantined.items()):
        table.add_row(f"quarantined: {reason}", f"{count:,}")
    table.add_row("frames", f"{stats.frames:,}")
    table.add_row("hours of play", f"{stats.seconds_of_play / 3600:.2f}")
    table.add_row("elapsed", f"{stats.elapsed:.1f} s")
    console.print(table)


@app.command()
def info(dataset: Path = typer.Argument(..., help="dataset folder")) -> None:
    """Summarise a dataset: games, frames, hours, characters, stages, versions, end methods, quarantine."""
    from meleewm.replay.dataset import Dataset, DatasetError
    from meleewm.replay.summary import summarize

    try:
        summary = summarize(Dataset(dataset))
    except DatasetError as error:
        _fail(str(error))
    for title, rows in summary.items():
        table = Table(title=title)
        table.add_column("name")
        table.add_column("value", justify="right")
        for name, value in rows:
            table.add_row(str(name), f"{value:,}" if isinstance(value, int) else str(value))
        console.print(table)


@app.command()
def train(
    data: Path = typer.Option(..., "--data", "-d", help="dataset folder (from `meleewm ingest`)"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (configs/tiny.yaml, small, base, mlp)"),
    out: Path = typer.Option(..., "--out", "-o", help="run folder: checkpoints, metrics.jsonl, tensorboard/"),
    overrides: list[str] = typer.Argument(None, help="config overrides: section.key=value ..."),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
) -> None:
    """Train the world model. Under torchrun, each process trains its share of every batch (DDP)."""
    from meleewm.data.encoding import EncodingMismatch
    from meleewm.replay.dataset import DatasetError
    from meleewm.train.checkpoint import CheckpointError
    from meleewm.train.config import ConfigError, load_config
    from meleewm.train.trainer import TrainError
    from meleewm.train.trainer import train as run_training

    try:
        train_config = load_config(config, overrides or [])
        result = run_training(data, train_config, out, resume=resume)
    except (ConfigError, TrainError, DatasetError, CheckpointError, EncodingMismatch) as error:
        _fail(str(error))
    table = Table(title=f"train → {out}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("stopped", result.stop_reason)
    table.add_row("parameters", f"{result.num_params:,}")
    table.add_row("steps", f"{result.steps:,}")
    table.add_row("epochs", str(result.epochs_done))
    for name in ("loss/total", "action_acc", "change_acc", "position_error", "rollout_position_error"):
        if name in result.last_metrics:
            table.add_row(f"last val {name}", f"{result.last_metrics[name]:.4f}")
    if result.best_metric is not None:
        table.add_row("best rollout position error", f"{result.best_metric:.4f}")
    table.add_row("elapsed", f"{result.elapsed:.1f} s")
    table.add_row("checkpoints", f"{out}/last.pt, {out}/best.pt")
    console.print(table)


if __name__ == "__main__":
    app()
