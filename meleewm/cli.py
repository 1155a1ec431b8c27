"""The ``meleewm`` command line: one thin function per command, each calling into the package."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from meleewm.errors import MeleewmError

app = typer.Typer(help="meleewm: a playable world model of Super Smash Bros. Melee, learned from Slippi replays.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help=".slp files, folders (searched recursively) or archives "
                                                 "(.zip, .tar, .tar.gz, .tar.zst, .7z)"),
    out: Path = typer.Option(..., "--out", "-o", help="dataset folder (created, or extended)"),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="parallel parser processes"),
    batch_size: int = typer.Option(16, help="at most this many games per part file (a part also closes at 16 MiB)"),
    keep_names: bool = typer.Option(False, "--keep-names", help="store netplay names, connect codes and tags"),
    retry_quarantined: bool = typer.Option(False, help="try files quarantined by an earlier run again"),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="parse on the Ray cluster at ADDRESS (host:port; `auto`: the one this machine is "
                                 "in; `local`: a Ray started for this run); needs `pip install meleewm[ray]`, and "
                                 "the replays and --out on a file system every node sees"),
) -> None:
    """Parse replays into a columnar dataset; bad files are quarantined, never fatal. Re-runs resume."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meleewm.replay.ingest import ingest as run_ingest
    from meleewm.replay.sources import count_replays

    try:
        total = count_replays(paths)
    except MeleewmError as error:  # a path that does not exist: say so before starting
        _fail(str(error))
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
                               retry_quarantined=retry_quarantined, ray=ray, on_progress=on_progress)
        except (MeleewmError, ModuleNotFoundError) as error:
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
    for node, batches in sorted(stats.tasks_per_node.items()):
        table.add_row(f"batches parsed on Ray node {node[:12]}", f"{batches:,}")
    console.print(table)


@app.command()
def info(dataset: Path = typer.Argument(..., help="dataset folder")) -> None:
    """Summarise a dataset: games, frames, hours, characters, stages, versions, end methods, quarantine."""
    from meleewm.replay.dataset import Dataset
    from meleewm.replay.summary import summarize

    try:
        summary = summarize(Dataset(dataset))
    except MeleewmError as error:
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
    run_eval_after: bool = typer.Option(True, "--eval/--no-eval", help="evaluate best.pt into the run card at "
                                                                        "the end (horizon 120)"),
) -> None:
    """Train the world model. Under torchrun, each process trains its share of every batch (DDP).

    Writes OUT/card.md at launch (the plan: data, model, estimate, kill thresholds), stops when a kill threshold
    fires or on Ctrl-C/SIGTERM (saving last.pt), then evaluates best.pt and adds the results to the card."""
    from meleewm.train.config import load_config
    from meleewm.train.card import CardRecorder
    from meleewm.train.trainer import Trainer

    card = CardRecorder(out, data=data, config_path=config, overrides=overrides or [])
    try:
        train_config = load_config(config, overrides or [])
        trainer = Trainer(data, train_config, out, resume=resume, on_step=card.on_step, on_epoch=card.on_epoch)
        if trainer.fresh_start and trainer.is_main:
            console.print(f"[yellow]{escape(trainer.fresh_start)}[/]", soft_wrap=True)
        card.launch(trainer)  # card.md at launch: the plan, the baseline; results appended below
        try:
            result = trainer.run()
        except BaseException as error:
            card.fail(error)
            raise
    except MeleewmError as error:
        _fail(str(error))
    if card.active and run_eval_after:
        _eval_into_card(card, trainer, result, data, out)
    elif card.active:
        card.finish(result, eval_error="skipped (--no-eval)")
    if not trainer.is_main:  # under torchrun, rank 0 reports
        return
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
    table.add_row("checkpoints", ", ".join(str(out / n) for n in ("last.pt", "best.pt") if (out / n).is_file()))
    if card.active:
        table.add_row("run card", f"{out}/card.md")
    console.print(table)


def _eval_into_card(card, trainer, result, data: Path, out: Path) -> None:
    """``meleewm eval`` of best.pt on the run's validation games (modest settings), into the card's results."""
    from meleewm.eval.run import EvalSettings, run_eval

    config, best = trainer.config, out / "best.pt"
    evaluation, error, started = None, None, time.perf_counter()
    if result.stop_reason.startswith("interrupted"):
        error = "skipped: the run was interrupted"
    elif not best.is_file():
        error = "skipped: no best.pt (the run stopped before its first validation)"
    else:
        settings = EvalSettings(starts=config.eval.rollout_starts, horizon=120, warmup=config.eval.warmup,
                                seed=config.eval.seed)
        console.print(f"eval of {best}: {settings.starts} starts, horizon {settings.horizon}")
        try:
            evaluation = run_eval(best, data, out / "eval", games=list(trainer.val_ids), settings=settings,
                                  command=f"meleewm eval {best} --data {data} --starts {settings.starts} "
                                          f"--horizon {settings.horizon} --warmup {settings.warmup}")
        except MeleewmError as failure:
            error = f"eval failed: {failure}"
    card.finish(result, evaluation=evaluation, eval_error=error, eval_dir=out / "eval",
                eval_seconds=time.perf_counter() - started if evaluation is not None else None)
    if evaluation is not None:
        _print_rollout_table(evaluation.metrics)


@app.command("eval")
def eval_command(
    model: Path = typer.Argument(None, help="run folder or checkpoint (default: the bundled model)"),
    data: Path = typer.Option(..., "--data", "-d", help="dataset folder"),
    out: Path = typer.Option(None, "--out", "-o", help="report folder (default: RUN/eval or ./eval)"),
    split: str = typer.Option("val", help="val, train or all: games of the model's own split"),
    games: str = typer.Option(None, help="comma-separated game ids instead of a split"),
    compare: list[Path] = typer.Option([], "--compare", help="another checkpoint to evaluate on the same starts"),
    starts: int = typer.Option(300, help="fixed rollout starts (seeded)"),
    horizon: int = typer.Option(600, help="closed-loop frames after warm-up"),
    warmup: int = typer.Option(60, help="real frames before the model takes over"),
    seed: int = typer.Option(0),
    idle_pairs: int = typer.Option(2, min=0, max=3, help="character pairs per legal stage in the idle test (0: skip)"),
    idle_frames: int = typer.Option(1800, min=2, help="frames of the idle test (1800 = 30 s)"),
    timing_starts: int = typer.Option(120, min=0, help="real action onsets in the action-timing measure (0: skip)"),
    event_starts: int = typer.Option(60, min=0, help="real KOs, and as many hits, to start before (0: skip)"),
    event_lead: int = typer.Option(60, min=1, help="frames before each real KO or hit that its rollout starts"),
) -> None:
    """Rollout quality against persistence and constant velocity, and what a player notices (idle test, move
    timing, KOs and hits, rules of the game), for the model alone and with the game rules: metrics.json and
    report.html."""
    import shlex
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from meleewm.eval.run import EvalSettings, run_eval

    checkpoint = _resolve_model(model)
    out = out or (checkpoint.parent / "eval" if checkpoint.name in ("best.pt", "last.pt") else Path("eval"))
    settings = EvalSettings(starts=starts, horizon=horizon, warmup=warmup, seed=seed, idle_pairs=idle_pairs,
                            idle_frames=idle_frames, timing_starts=timing_starts, event_starts=event_starts,
                            event_lead=event_lead)
    with Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("eval", total=starts * (2 + len(compare)))
        try:
            evaluation = run_eval(checkpoint, data, out, split=split, games=games.split(",") if games else None,
                                  compare=compare, settings=settings, command=shlex.join(sys.argv),
                                  progress=lambda n: progress.advance(task, n))
        except MeleewmError as error:
            _fail(str(error))
    judged = evaluation.verdict
    if evaluation.meta.get("teacher_forced"):
        console.print(f"[yellow]teacher-forced metrics {escape(evaluation.meta['teacher_forced'])}[/]", soft_wrap=True)
    for line in judged.get("player_lines", []):
        console.print(line, soft_wrap=True)
    console.print(f"[bold]{judged['headline']}[/]", soft_wrap=True)
    _print_rollout_table(evaluation.metrics)
    console.print(f"report: {out / 'report.html'}   metrics: {out / 'metrics.json'}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="run folder (its best.pt) or checkpoint"),
    out: Path = typer.Option(..., "--out", "-o", help="destination, e.g. models/meleewm-small.pt"),
    switch: list[str] = typer.Option([], "--switch", metavar="OPTION=true|false",
                                     help="an option that adds no weights (ground_motion, item_motion, "
                                          "ground_snap, body_landing, respawn_snap, player_items_only)"),
) -> None:
    """Write a play/eval-only copy of a checkpoint (no optimizer state): what gets bundled."""
    from meleewm.model.checkpoint import export_model

    source = _resolve_model(run)
    switches = {}
    for item in switch:
        name, _, value = item.partition("=")
        if value not in ("true", "false"):
            _fail(f"--switch {item}: expected OPTION=true or OPTION=false")
        switches[name] = value == "true"
    try:
        path = export_model(source, out, switches)
    except MeleewmError as error:
        _fail(str(error))
    console.print(f"{source} → {path} ({path.stat().st_size / 1e6:.1f} MB)")


def _resolve_model(model: Path | None) -> Path:
    """A checkpoint path from a run folder, a file, or (when None) the bundled model; exit 2 when none."""
    from meleewm.model.checkpoint import resolve_model

    try:
        return resolve_model(model)
    except MeleewmError as error:
        _fail(str(error))


def _print_rollout_table(metrics: dict) -> None:
    summary = metrics["summary"]
    table = Table(title="rollout: mean over steps 1..K (position error in game units, action accuracy)")
    table.add_column("predictor", no_wrap=True, min_width=17)
    ks = [row["k"] for row in next(iter(summary.values()))]
    for k in ks:
        table.add_column(f"pos 1..{k}", justify="right")
        table.add_column(f"act 1..{k}", justify="right")
    for name, rows in summary.items():
        cells = []
        for row in rows:
            cells += [_fmt(row.get("position_error")), _fmt(row.get("action_accuracy"), 3)]
        table.add_row(name, *cells)
    console.print(table)


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


@app.command()
def play(
    model: Path = typer.Option(None, "--model", "-m", help="checkpoint (default: models/meleewm-small.pt)"),
    replay: str = typer.Option(None, "--replay", "-r", help="a .slp file, or a game id of --data, to start from"),
    frame: int = typer.Option(None, "--frame", "-f", help="frame id of --replay to start from (default 0)"),
    data: Path = typer.Option(None, "--data", "-d", help="dataset folder: its games become selectable starts"),
    replays: Path = typer.Option(None, "--replays", help="folder of .slp files the page lists (default: the Slippi "
                                                         "Launcher's replay folder, when it exists)"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (localhost unless told otherwise)"),
    port: int = typer.Option(8000, help="TCP port (0: any free port)"),
    temperature: float = typer.Option(0.0, min=0.0, max=5.0, help="0 = argmax; > 0 samples categorical heads"),
    rules: bool = typer.Option(True, "--rules/--no-rules", help="game rules (KO and respawn, stocks, percent, "
                               "solid floor; counted on screen) or the model alone"),
    warmup: int = typer.Option(None, min=0, help="real frames a replay start warms up on (0 = all)"),
    allow_origin: list[str] = typer.Option(None, "--allow-origin", help="a web origin (scheme://host:port) that "
                                           "may use the server besides its own page; repeatable"),
) -> None:
    """Play the world model in the browser: a local web server, one WebSocket per player.

    Only the server's own page (and each --allow-origin) may use it; see docs/security.md."""
    from meleewm.play.library import ReplayLibrary, default_replay_folder
    from meleewm.play.server import ReplayCatalog, create_app, listen, normalize_origin, serve
    from meleewm.model.checkpoint import load_model, resolve_model

    if frame is not None and not replay:
        _fail("--frame needs --replay")
    if replays is None and default_replay_folder().is_dir():
        replays = default_replay_folder()
    try:
        origins = [normalize_origin(o) for o in allow_origin or ()]   # before the model loads: fail fast
        library = ReplayLibrary(replays)
        world = load_model(resolve_model(model)).model
        catalog = ReplayCatalog(world.spec, [replay] if replay else [], data=data)
        default_start = None
        if replay:
            game = catalog.get(catalog.entries[0]["id"])
            start_frame = frame if frame is not None else max(0, game.first_frame + 1)
            if not game.first_frame < start_frame <= game.last_frame:
                _fail(f"--frame {start_frame} is not a frame to take over from in {game.source}: the replay has "
                      f"frames {game.first_frame}..{game.last_frame}, and a takeover needs one real frame before it "
                      f"(so {game.first_frame + 1}..{game.last_frame})")
            default_start = {"kind": "replay", "replay": game.game_id, "frame": start_frame}
        app_ = create_app(world, replays=catalog, library=library, default_start=default_start,
                          temperature=temperature, rules=rules, warmup=warmup, allow_origins=origins)
        sock, url = listen(host, port)
    except MeleewmError as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    if library.folder is not None:
        console.print(f"replays: {library.folder}")
    console.print(f"meleewm play: open [bold]{url}[/] (Ctrl+C stops the server)", soft_wrap=True)
    serve(app_, sock)


@app.command()
def dream(
    replay: str = typer.Option(..., "--replay", "-r", help="a .slp file, or a game id of --data"),
    frame: int = typer.Option(..., "--frame", "-f", help="frame id to take over from (the model predicts it)"),
    export: Path = typer.Option(..., "--export", "-o", help="the .slp to write"),
    model: Path = typer.Option(None, "--model", "-m", help="checkpoint (default: models/meleewm-small.pt)"),
    frames: int = typer.Option(600, "--frames", "-n", min=1, help="frames the model generates"),
    data: Path = typer.Option(None, "--data", "-d", help="dataset folder, when --replay is a game id"),
    temperature: float = typer.Option(0.0, min=0.0, max=5.0, help="0 = argmax; > 0 samples categorical heads"),
    seed: int = typer.Option(0, help="sampling seed (with --temperature > 0)"),
    warmup: int = typer.Option(None, min=0, help="real frames to warm up on (default 256; 0 = all)"),
    rules: bool = typer.Option(True, "--rules/--no-rules", help="game rules on (counted) or the model alone"),
) -> None:
    """Roll the model forward from a real moment on the replay's recorded inputs; save it as a Slippi replay."""
    from meleewm.play.dream import dream as run_dream

    if not export.parent.is_dir():
        _fail(f"cannot write {export}: the folder {export.parent} does not exist")
    try:
        result = run_dream(model, replay, frame, frames, export, data=data, temperature=temperature, seed=seed,
                           warmup=warmup, rules=rules)
    except MeleewmError as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"cannot write {export}: {error.strerror or error}")
    console.print(f"dream → {result.path}: {result.prefix_frames} real frames (warm-up on the last "
                  f"{result.warmup}), then {result.model_frames} model frames from frame {result.start_frame}; "
                  f"{result.total_frames} in all ({result.elapsed:.1f} s)")
    if rules:
        console.print("rules: " + ", ".join(f"{name} {count}" for name, count in result.rule_counts.items()))


@app.command()
def plan(
    data: Path = typer.Option(..., "--data", "-d", help="dataset folder (from `meleewm ingest`)"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (configs/tiny.yaml, small, base, mlp)"),
    out: Path = typer.Option(None, "--out", "-o", help="run folder (default: runs/<config name>)"),
    overrides: list[str] = typer.Argument(None, help="config overrides: section.key=value ..."),
    gpu_hourly_cost: float = typer.Option(None, "--gpu-hourly-cost", min=0.0,
                                          help="cost per hour of the machine, for the cost estimate"),
    probe_steps: int = typer.Option(3, "--probe-steps", min=0,
                                    help="training steps timed for the estimate (0: no probe, no baseline)"),
) -> None:
    """Plan a run without training it: write OUT/card.md (data, model, encoding, estimate, kill thresholds,
    launch and resume commands, prior comparable runs)."""
    from meleewm.train.card import plan as plan_run
    from meleewm.train.config import load_config

    overrides = list(overrides or [])
    try:
        train_config = load_config(config, overrides)
        if gpu_hourly_cost is not None:   # already a checked float: set it; the launch command carries it as text
            train_config.card.hourly_cost = gpu_hourly_cost
            overrides.append(f"card.hourly_cost={gpu_hourly_cost}")
        out = out or Path("runs") / train_config.name
        facts = plan_run(data, train_config, out, config_path=config, overrides=overrides, probe_steps=probe_steps,
                         progress=True)
    except MeleewmError as error:
        _fail(str(error))
    split, est = facts["split"], facts["estimate"]
    table = Table(title=f"plan → {out}/card.md")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{facts['model']['params']:,}")
    for side in ("train", "val"):
        table.add_row(side, f"{split[side]['games']:,} games, {split[side]['frames']:,} frames, "
                            f"{split[side]['windows']:,} windows")
    if est:
        table.add_row("seconds per batch", f"{est['seconds_per_batch']:.3f}")
        table.add_row("estimated wall time", f"{est['total_seconds'] / 3600:.3g} h")
        if est.get("cost") is not None:
            table.add_row("estimated cost", f"{est['cost']:.3g}")
    table.add_row("launch", facts["commands"]["launch"])
    console.print(table)


@app.command()
def runs(
    root: Path = typer.Argument(Path("runs"), help="folder of run folders"),
    sort: str = typer.Option(None, "--sort", help="column or metric to sort by (change_acc, "
                                                  "rollout_position_error, eval_pos@20, params, date ...)"),
    desc: bool = typer.Option(False, "--desc", help="sort descending"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
) -> None:
    """List the runs of a folder from their cards: params, data, status, key metrics, time."""
    import json

    from meleewm.train.card_common import format_duration
    from meleewm.train.runs import list_runs

    rows = list_runs(root, sort=sort, descending=desc)
    if as_json:
        typer.echo(json.dumps(rows, indent=1, default=str))
        return
    if not rows:
        console.print(f"no runs in {root}")
        return
    metric_names = list(dict.fromkeys(k for row in rows for k in row["metrics"] if k != "loss/total"))
    table = Table(title=f"runs in {root}" + (f" by {sort}{' (desc)' if desc else ''}" if sort else ""))
    for column in ("run", "date", "params", "data", "status", *metric_names, "time"):
        table.add_column(column, justify="right" if column in ("params", *metric_names, "time") else "left")
    for row in rows:
        data_cell = Path(row["dataset"]).name if row.get("dataset") else "?"
        if row.get("train_games") is not None:
            data_cell += f" ({row['train_games']} games)"
        table.add_row(row["run"], (row.get("date") or "")[:16].replace("T", " "),
                      f"{row['params']:,}" if row.get("params") else "?", data_cell, row.get("status") or "?",
                      *[_fmt(row["metrics"].get(m), 3) for m in metric_names], format_duration(row.get("wall_seconds")))
    # Wide enough for every column when the output is a file or a pipe (rich assumes 80 columns there).
    out = console if console.is_terminal else Console(width=240)
    out.print(table)
    for row in rows:
        if row.get("checkpoint_error"):
            out.print(f"[yellow]{escape(row['run'])}:[/] {escape(row['checkpoint_error'])}", soft_wrap=True)


if __name__ == "__main__":
    app()
