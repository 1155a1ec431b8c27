"""Training throughput and inference latency of the world model against the reference system's design.

    python benchmarks/train_throughput.py [--device auto|cpu|cuda] [--games 4] [--steps 4]
                                          [--self-forcing-steps 0]

Measured in one run, on real replays (the first games of ../shared/replays/games-1.zip, ingested into a temp dir):

(a) training: predicted frames per second of this design (Mamba-2 body, the `small` config shape, windows of
    T=256 frames, a loss at every position) against the reference design (the reference system fed the same
    Mamba-2 a K=10 frame window and predicted only its last frame: same model, same parameters, batch sized so
    both see the same number of input frames per step). Also, for comparison, the frame-stack MLP baseline at
    the same parameter count (its d_model tuned to match), on K=10 windows with the loss at the last position;
(b) inference latency per frame at batch 1: the recurrent WorldModel.step() of the `small` shape against
    re-running the same model on the last K=10 frames every frame (the reference system's rollout), and
    against re-running the frame-stack MLP's window;
(c) the share of a training step spent waiting for data (the trainer's DataLoader/sample assembly) against the
    compute (forward, backward, optimizer step).
Optionally (--self-forcing-steps N > 0) a report of the effect of self-forcing: two `tiny` runs of N steps, with
and without it, and their closed-loop rollout position error on validation windows.

Prints a table with ratios against the baseline measured in the same run, and a last line holding one JSON
object of all figures. Goals: >= 10x predicted frames/s against the windowed design; step() <= 2 ms/frame for
`small` on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, default_collate

from meleewm.data.cache import build_cache
from meleewm.data.encoding import EncodingSpec
from meleewm.data.step import StepInput
from meleewm.data.windows import WindowDataset
from meleewm.model.world import WorldModel, WorldModelConfig, next_inputs
from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from meleewm.train.config import load_config
from meleewm.model.losses import LossConfig, head_losses, total_loss

ROOT = Path(__file__).resolve().parents[1]
REPLAYS = Path(os.environ.get("MELEEWM_REPLAYS", ROOT.parent / "shared" / "replays"))
K = 10                      # the reference design's window
console = Console()


# -- data ---------------------------------------------------------------------------------------------------------

def build_dataset(work: Path, games: int) -> Path:
    manifest = json.loads((REPLAYS / "manifest.json").read_text())["files"]
    names = sorted(r["file"] for r in manifest if r["archive"] == "games-1.zip" and r.get("n_players") == 2)[:games]
    src = work / "replays"
    src.mkdir(parents=True)
    with zipfile.ZipFile(REPLAYS / "games-1.zip") as archive:
        for i, name in enumerate(names):
            (src / f"{i:03d}.slp").write_bytes(archive.read(name))
    ingest([src], work / "dataset", workers=1)
    return work / "dataset"


def at(x: StepInput, t) -> StepInput:
    """Inputs at time index ``t`` (an int: one step; or a slice: a sequence)."""
    return x.frames(t.start, t.stop) if isinstance(t, slice) else x.frames(t, t + 1).last()


def to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- models -------------------------------------------------------------------------------------------------------

def matched_mlp(spec: EncodingSpec, target: int, base: dict) -> tuple[WorldModelConfig, int]:
    """The frame-stack config (``base`` shape, K=10) whose d_model gives the parameter count nearest ``target``."""
    best = None
    lo, hi = 8, 2048
    while lo <= hi:
        d = (lo + hi) // 2
        cfg = WorldModelConfig(**{**base, "d_model": d})
        n = WorldModel(spec, cfg).num_params()
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (cfg, n)
        lo, hi = (d + 1, hi) if n < target else (lo, d - 1)
    return best


def losses_of(model: WorldModel, pred: dict, batch: dict) -> torch.Tensor:
    losses = head_losses(pred, batch, model.cat_names, LossConfig(), model.cont_delta_scale)
    return total_loss(losses, LossConfig())


def last_position(model: WorldModel, x: StepInput) -> dict:
    """The reference design's forward: embed the K frames of each window, one MLP pass on the window, heads at
    the last position only (no wasted outputs at the other K-1 positions)."""
    e = model.embed(x)                                   # [B, K, d]
    h, _ = model.body.step(e[:, -1], e[:, :-1])
    return model.heads(h, at(x, -1))


def train_step(model, optimizer, batch: dict, windowed: bool) -> torch.Tensor:
    x = StepInput.from_window(batch)
    if windowed:
        if model.config.body == "mlp":
            pred = last_position(model, x)
        else:  # a sequence body must run over the whole window to predict its last frame
            pred = {k: ([t[:, -1] for t in v] if isinstance(v, list) else v[:, -1]) for k, v in model(x).items()}
        target = {k: v[:, -1] for k, v in batch.items() if k.startswith("next_")}
    else:
        pred, target = model(x), batch
    loss = losses_of(model, pred, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss


def time_steps(run, steps: int, device, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        run(0)
    sync(device)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        run(i + 1)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# -- measurements -------------------------------------------------------------------------------------------------

def training_throughput(spec, cache, design_cfg, ref_cfg, windowed_cfg, device, batch: int, T: int,
                        steps: int) -> dict:
    long = WindowDataset(cache, T, seed=0, random_phase=False)
    short = WindowDataset(cache, K, seed=0, random_phase=False)
    ref_batch = batch * T // K                         # same input frames per step
    n_long, n_short = len(long), len(short)
    design_batches = [to(default_collate([long[(j * batch + i) * 7 % n_long] for i in range(batch)]), device)
                      for j in range(2)]
    ref_batches = [to(default_collate([short[(j * ref_batch + i) * 13 % n_short] for i in range(ref_batch)]), device)
                   for j in range(2)]
    runs = []
    for name, cfg, batches, windowed, predicted in (
            ("design", design_cfg, design_batches, False, batch * T),
            ("reference", ref_cfg, ref_batches, True, ref_batch),
            ("windowed_mamba2", windowed_cfg, ref_batches, True, ref_batch)):
        torch.manual_seed(0)
        model = WorldModel(spec, cfg).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs.append((name, model, batches, windowed, predicted, optimizer, []))
    # Interleaved (one step of each in turn), so that load from other jobs falls on all of them alike.
    for i in range(steps + 1):
        for name, model, batches, windowed, predicted, optimizer, times in runs:
            sync(device)
            start = time.perf_counter()
            train_step(model, optimizer, batches[i % 2], windowed)
            sync(device)
            if i:  # the first step warms up
                times.append(time.perf_counter() - start)
    out = {}
    for name, model, batches, windowed, predicted, optimizer, times in runs:
        step = statistics.median(times)
        out[name] = {"params": model.num_params(), "batch": len(batches[0]["ctrl"]),
                     "input_frames_per_step": len(batches[0]["ctrl"]) * batches[0]["ctrl"].shape[1],
                     "predicted_frames_per_step": predicted, "step_s": step,
                     "predicted_frames_per_s": predicted / step}
    return out


def inference_latency(spec, cache, design_cfg, ref_cfg, device, frames: int) -> dict:
    """Per-frame latencies with the default intra-op threads and with one thread (batch 1 is too small to
    share between threads: on a busy machine, waiting for the second thread dominates)."""
    default = torch.get_num_threads()
    out = {}
    for threads in sorted({1, default}):
        torch.set_num_threads(threads)
        try:
            out[f"threads_{threads}"] = _latency(spec, cache, design_cfg, ref_cfg, device, frames)
        finally:
            torch.set_num_threads(default)
    return out


@torch.inference_mode()
def _latency(spec, cache, design_cfg, ref_cfg, device, frames: int) -> dict:
    windows = WindowDataset(cache, frames + K, seed=0, random_phase=False)
    seq = StepInput.from_window(default_collate([windows[len(windows) // 2]])).to(device)   # [1, frames+K, ...]
    out = {}

    torch.manual_seed(0)
    design = WorldModel(spec, design_cfg).to(device).eval()

    def recurrent(teacher: bool):
        state = design.init_state(1, device=device)
        x = at(seq, 0)

        def run(i):
            nonlocal state, x
            pred, state = design.step(x, state)
            if teacher:
                x = at(seq, i % (frames + K))
            else:
                x = next_inputs(pred, x).replace(ctrl=seq.ctrl[:, i % (frames + K)])
        return run

    out["design_step_ms"] = 1e3 * statistics.median(time_steps(recurrent(True), frames, device, warmup=20))
    out["design_closed_loop_ms"] = 1e3 * statistics.median(time_steps(recurrent(False), frames, device, warmup=20))

    def design_rerun_window(i):  # the reference system's rollout: the same Mamba-2 re-run on the last K frames
        s = i % frames
        design(at(seq, slice(s, s + K)))

    out["design_window_ms"] = 1e3 * statistics.median(time_steps(design_rerun_window, frames, device, warmup=20))

    torch.manual_seed(0)
    ref = WorldModel(spec, ref_cfg).to(device).eval()

    def rerun_window(i):
        s = i % frames
        last_position(ref, at(seq, slice(s, s + K)))

    out["reference_window_ms"] = 1e3 * statistics.median(time_steps(rerun_window, frames, device, warmup=20))
    state = ref.init_state(1, device=device)

    def shift_register(i):
        nonlocal state
        _, state = ref.step(at(seq, i % (frames + K)), state)

    out["reference_mlp_step_ms"] = 1e3 * statistics.median(time_steps(shift_register, frames, device, warmup=20))
    return out


def data_share(spec, cache, design_cfg, device, batch: int, T: int, steps: int) -> dict:
    """The trainer's per-step data assembly (random-phase, augmented windows through a DataLoader, as in
    Trainer.run) against its compute, for the design at the benchmark's batch."""
    windows = WindowDataset(cache, T, seed=0, swap=True, mirror=True, random_phase=True)
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(0)).tolist()
    torch.manual_seed(0)
    model = WorldModel(spec, design_cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data_t, compute_t = [], []
    for i in range(steps + 1):
        indices = [order[(i * batch + j) % len(order)] for j in range(batch)]
        start = time.perf_counter()
        b = next(iter(DataLoader(windows, batch_size=len(indices), sampler=indices, num_workers=0)))
        b = to(b, device)
        sync(device)
        mid = time.perf_counter()
        train_step(model, optimizer, b, windowed=False)
        sync(device)
        end = time.perf_counter()
        if i:  # the first step warms up
            data_t.append(mid - start)
            compute_t.append(end - mid)
    data, compute = statistics.median(data_t), statistics.median(compute_t)
    return {"data_s": data, "compute_s": compute, "data_share": data / (data + compute)}


def self_forcing_report(data: Path, work: Path, steps: int) -> dict:
    """Two `tiny` runs of ``steps`` steps, with and without self-forcing; their validation metrics."""
    from meleewm.train.trainer import Trainer

    out = {}
    for name, enabled in (("teacher_forcing", "false"), ("self_forcing", "true")):
        config = load_config(ROOT / "configs" / "tiny.yaml", [
            "log.tensorboard=false", "data.max_games=0", "data.val_fraction=0.3", f"optim.steps_per_epoch={steps}",
            "optim.epochs=1", f"self_forcing.enabled={enabled}", "self_forcing.prob=0.5", "self_forcing.max_unroll=3",
            "eval.rollout_starts=64", "eval.max_val_batches=8", "eval.rollout_horizon=30"])
        trainer = Trainer(data, config, work / name, progress=False)
        result = trainer.run()
        metrics = result.last_metrics
        out[name] = {k: metrics[k] for k in ("loss/total", "action_acc", "position_error", "rollout_position_error",
                                             "rollout_position_error_last") if k in metrics}
        out[name]["val_games"], out[name]["train_games"] = len(trainer.val_ids), len(trainer.train_ids)
    return out


# -- report -------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--games", type=int, default=4, help="real games to ingest (games-1.zip)")
    parser.add_argument("--batch", type=int, default=4, help="design batch (windows of T frames)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per design")
    parser.add_argument("--frames", type=int, default=300, help="timed inference frames")
    parser.add_argument("--self-forcing-steps", type=int, default=0,
                        help="> 0: also train two tiny models this many steps, with and without self-forcing")
    args = parser.parse_args()
    if not (REPLAYS / "manifest.json").is_file():
        print(f"skipped: real replays not found at {REPLAYS} (set MELEEWM_REPLAYS)")
        return
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="meleewm-train-bench-"))
    try:
        data = build_dataset(work, args.games)
        dataset = Dataset(data)
        ids = sorted(dataset.games.column("game_id").to_pylist())
        spec = EncodingSpec.fit(dataset, ids)
        cache = build_cache(dataset, spec, ids, progress=False)
        design_cfg = load_config(ROOT / "configs" / "small.yaml").model
        target = WorldModel(spec, design_cfg).num_params()
        mlp = load_config(ROOT / "configs" / "mlp.yaml").model
        ref_cfg, _ = matched_mlp(spec, target, {"body": "mlp", "n_layer": mlp.n_layer, "context": K,
                                                "hidden_mult": mlp.hidden_mult})
        windowed_cfg = dataclasses.replace(design_cfg, chunk_size=K)
        train = training_throughput(spec, cache, design_cfg, ref_cfg, windowed_cfg, device, args.batch, args.seq_len,
                                    args.steps)
        infer = inference_latency(spec, cache, design_cfg, ref_cfg, device, args.frames)
        share = data_share(spec, cache, design_cfg, device, args.batch, args.seq_len, args.steps)
        sf = self_forcing_report(data, work, args.self_forcing_steps) if args.self_forcing_steps > 0 else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    d, r, w = train["design"], train["reference"], train["windowed_mamba2"]
    speedup = d["predicted_frames_per_s"] / w["predicted_frames_per_s"]   # the goal: vs the reference design
    mlp_ratio = d["predicted_frames_per_s"] / r["predicted_frames_per_s"]
    load = os.getloadavg()[0]
    table = Table(title=f"training and inference, {device} ({torch.get_num_threads()} threads, load average "
                        f"{load:.1f}), {args.games} real games")
    for col, justify in (("measure", "left"), ("this design", "right"), ("baseline", "right"),
                         ("ratio", "right"), ("goal", "left")):
        table.add_column(col, justify=justify)
    table.add_row("parameters", f"{d['params']:,}", f"{r['params']:,}  (MLP d_model {ref_cfg.d_model})",
                  f"{d['params'] / r['params']:.2f}", "within 10%")
    table.add_row("batch x input frames", f"{d['batch']} x {args.seq_len}", f"{r['batch']} x {K}",
                  f"{d['input_frames_per_step'] / r['input_frames_per_step']:.2f}", "same input frames")
    table.add_row("training step (median)", f"{d['step_s'] * 1e3:.0f} ms", f"{r['step_s'] * 1e3:.0f} ms",
                  f"{d['step_s'] / r['step_s']:.2f}", "")
    table.add_row("predicted frames / s vs the reference design (same Mamba-2, K=10 window, last frame only)",
                  f"{d['predicted_frames_per_s']:,.0f}", f"{w['predicted_frames_per_s']:,.0f}",
                  f"[bold]{speedup:.2f}x[/]", "≥ 10x " + ("[green]met[/]" if speedup >= 10 else "[red]missed[/]"))
    table.add_row("  vs the frame-stack MLP at equal parameters (K=10, last frame only)",
                  f"{d['predicted_frames_per_s']:,.0f}", f"{r['predicted_frames_per_s']:,.0f}", f"{mlp_ratio:.2f}x", "")
    lat = {k: v for k, v in infer.items()}
    best = min(v["design_step_ms"] for v in lat.values())
    for key, v in lat.items():
        n = key.split("_")[1]
        table.add_row(f"inference ms / frame, batch 1, {n} thread(s), vs the same Mamba-2 re-run on K=10",
                      f"{v['design_step_ms']:.2f} (step)", f"{v['design_window_ms']:.2f} (re-run window)",
                      f"{v['design_window_ms'] / v['design_step_ms']:.2f}x", "")
        table.add_row(f"  vs the frame-stack MLP re-run on K=10, {n} thread(s)", f"{v['design_step_ms']:.2f} (step)",
                      f"{v['reference_window_ms']:.2f} (re-run window)",
                      f"{v['reference_window_ms'] / v['design_step_ms']:.2f}x",
                      ("step ≤ 2 ms " + ("[green]met[/]" if v["design_step_ms"] <= 2 else "[red]missed[/]")))
        table.add_row("  closed loop (step + decode) / MLP step", f"{v['design_closed_loop_ms']:.2f}",
                      f"{v['reference_mlp_step_ms']:.2f} (shift register)", "", "")
    table.add_row("data wait share of a step", f"{share['data_share']:.1%}", "",
                  f"{share['data_s'] * 1e3:.1f} ms data / {share['compute_s'] * 1e3:.0f} ms compute", "")
    if sf:
        for name, values in sf.items():
            table.add_row(f"tiny, {args.self_forcing_steps} steps, {name.replace('_', ' ')}",
                          f"rollout err {values.get('rollout_position_error', float('nan')):.2f}",
                          f"last {values.get('rollout_position_error_last', float('nan')):.2f}",
                          f"teacher-forced pos err {values.get('position_error', float('nan')):.2f}", "")
    console.print(table)
    figures = {"device": str(device), "threads": torch.get_num_threads(), "games": args.games,
               "seq_len": args.seq_len, "K": K, "training": train, "predicted_frames_speedup": speedup,
               "speedup_vs_frame_stack_mlp": mlp_ratio, "inference": infer, "data": share, "self_forcing": sf,
               "load_average": load, "goals": {"speedup_ge_10x": speedup >= 10, "step_le_2ms": best <= 2},
               "elapsed_s": time.perf_counter() - started}
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
