"""``meleewm eval``: a checkpoint's teacher-forced metrics and closed-loop rollouts from fixed starts on
validation games, next to the persistence and constant-velocity baselines (and any ``--compare`` checkpoint),
written as ``metrics.json`` and a self-contained ``report.html``.

Rollouts use ``meleewm.model.rollout.rollout`` (the one step function of training, play and dream): after
warm-up the model reads nothing but its own predictions and the real controllers of the replay.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from meleewm import __version__
from meleewm.data.cache import build_cache
from meleewm.data.encoding import CONT_FIELDS
from meleewm.data.windows import WindowDataset, split_games
from meleewm.eval.baselines import add_baselines
from meleewm.eval.metrics import RolloutSet, evaluate, flag_f1, mae, stocks_accuracy, to_jsonable
from meleewm.eval.plausibility import seen_actions
from meleewm.eval.report import write_report
from meleewm.model.rollout import rollout
from meleewm.model.world import WorldModel
from meleewm.replay.dataset import Dataset
from meleewm.train.checkpoint import file_hash, load_model
from meleewm.train.trainer import filters_for
from meleewm.train.validation import ROLLOUT_INPUT_KEYS, rollout_starts, teacher_forced_metrics


class EvalError(Exception):
    """An evaluation that cannot run: no usable games, games too short for the horizon."""


@dataclass
class EvalSettings:
    starts: int = 300
    horizon: int = 600
    warmup: int = 60
    seed: int = 0
    batch_size: int = 100
    tf_batches: int = 20


def _decode(model: WorldModel, cont, binary, cat, cont_mask=None) -> dict[str, np.ndarray]:
    """Encoded states → raw columns. With ``cont_mask`` (for true states), continuous fields the game lacks
    become NaN, never a fake 0, so metrics skip them; predictions are left as the model made them."""
    raw = model.spec.decode_state(cont, binary, cat)
    if cont_mask is None:
        return raw
    mask = cont_mask.cpu().numpy() if torch.is_tensor(cont_mask) else np.asarray(cont_mask)
    for i, name in enumerate(CONT_FIELDS):
        raw[name] = np.where(mask[..., i], raw[name], np.nan).astype(np.float32)
    return raw


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def game_selection(dataset: Dataset, config, split: str, games: list[str] | None) -> list[str]:
    if games:
        missing = sorted(set(games) - dataset.game_ids())
        if missing:
            raise EvalError(f"games not in {dataset.root}: {', '.join(missing)}")
        return sorted(games)
    train_ids, val_ids = split_games(dataset.games, config.data.val_fraction, config.data.split_seed,
                                     filters=filters_for(config))
    chosen = {"val": val_ids, "train": train_ids, "all": sorted(train_ids + val_ids)}.get(split)
    if chosen is None:
        raise EvalError(f"--split must be val, train or all, not {split!r}")
    return chosen


@torch.no_grad()
def model_rollouts(model: WorldModel, windows: WindowDataset, starts, settings: EvalSettings, *, progress=None):
    """Predicted raw states [N, H, 2] of ``model`` from every start, plus the truth and context."""
    W, H = settings.warmup, settings.horizon
    predicted, truth, context = [], [], []
    for begin in range(0, len(starts), settings.batch_size):
        chunk = starts[begin:begin + settings.batch_size]
        batch = default_collate([windows.sample_at(g, s, W + H - 1) for g, s in chunk])
        warm = {k: batch[k][:, :W] for k in ROLLOUT_INPUT_KEYS}
        warm.update({k: batch[k] for k in ("stage", "chars")})
        if model.spec.items:
            warm.update({k: v[:, :W] for k, v in batch.items() if k.startswith("state_item_")})
        out = rollout(model, warm, batch["ctrl"][:, W:])
        mask = batch["next_cont_mask"][:, W - 1:]
        predicted.append(_decode(model, out["state_cont"], out["state_bin"], out["state_cat"]))
        truth.append(_decode(model, batch["next_cont"][:, W - 1:], batch["next_bin"][:, W - 1:],
                             batch["next_cat"][:, W - 1:], mask))
        context.append(_decode(model, batch["state_cont"][:, W - 1], batch["state_bin"][:, W - 1],
                               batch["state_cat"][:, W - 1], batch["cont_mask"][:, W - 1]))
        if progress:
            progress(len(chunk))
    return _stack(predicted), _stack(truth), _stack(context)


@torch.no_grad()
def decoded_teacher_forced(model: WorldModel, windows: WindowDataset, *, batch_size: int, max_batches: int):
    """Teacher-forced velocity, percent and shield MAE, binary-flag F1 and stocks accuracy, in raw units."""
    sums: dict[str, list] = {"pred": [], "true": []}
    bin_pred, bin_true, bin_mask = [], [], []
    for start in range(0, min(len(windows), max_batches * batch_size), batch_size):
        batch = default_collate([windows[i] for i in range(start, min(start + batch_size, len(windows)))])
        pred = model(batch)
        cat = torch.stack([l.argmax(-1) for l in pred["cat_logits"]], dim=-1)
        sums["pred"].append(_decode(model, pred["cont"], pred["bin_logits"] > 0, cat))
        sums["true"].append(_decode(model, batch["next_cont"], batch["next_bin"], batch["next_cat"],
                                    batch["next_cont_mask"]))
        bin_pred.append((pred["bin_logits"] > 0).numpy())
        bin_true.append(batch["next_bin"].numpy() > 0.5)
        bin_mask.append(batch["next_bin_mask"].numpy())
    pred, true = _stack(sums["pred"]), _stack(sums["true"])
    velocity = [f for f in CONT_FIELDS if f.startswith("post_velocities_")]
    flags = flag_f1(np.concatenate(bin_pred), np.concatenate(bin_true), np.concatenate(bin_mask))
    return {
        "velocity_mae": mae(np.stack([pred[f] for f in velocity]), np.stack([true[f] for f in velocity])),
        "percent_mae": mae(pred["post_percent"], true["post_percent"]),
        "shield_mae": mae(pred["post_shield"], true["post_shield"]),
        "stocks_acc": stocks_accuracy(pred["post_stocks"], true["post_stocks"]),
        "flag_f1_macro": flags["macro"], "flag_f1_micro": flags["micro"],
    }


def _allowed_actions(dataset: Dataset, game_ids: list[str]) -> frozenset:
    characters, actions = [], []
    for game_id in game_ids:
        frames = dataset.frames(game_id, columns=["post_character", "post_state"])
        characters.append(frames["post_character"].to_numpy(zero_copy_only=False))
        actions.append(frames["post_state"].to_numpy(zero_copy_only=False))
    return seen_actions(characters, actions)


def _code_version() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"meleewm {__version__}" + (f" ({commit})" if commit else "")


def dataset_hash(dataset: Dataset, game_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(game_ids)).encode()).hexdigest()[:16]


def run_eval(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *, split: str = "val",
             games: list[str] | None = None, compare: list[Path] = (), settings: EvalSettings = EvalSettings(),
             progress=None, command: str = "") -> dict:
    """Evaluate a checkpoint; writes ``out_dir/metrics.json`` and ``out_dir/report.html``, returns the metrics."""
    torch.manual_seed(settings.seed)
    model, config, _ = load_model(checkpoint)
    dataset = Dataset(data)
    eval_ids = game_selection(dataset, config, split, games)
    eval_ids = [g for g in eval_ids if dataset.game(g)["n_players"] == 2]
    if not eval_ids:
        raise EvalError(f"no 2-player games to evaluate in {dataset.root} (split {split})")
    cache = build_cache(dataset, model.spec, eval_ids, progress=False)
    windows = WindowDataset(cache, config.data.seq_len, seed=settings.seed, random_phase=False)
    length = settings.warmup + settings.horizon
    starts = rollout_starts(windows, settings.starts, length, settings.seed)
    if not starts:
        raise EvalError(f"no game in the selection is longer than warm-up + horizon ({length} frames)")

    models = {"model": model}
    for path in compare:
        other, _, _ = load_model(path)
        models[Path(path).parent.name if Path(path).name in ("best.pt", "last.pt") else Path(path).stem] = other
    predictions, truth, context = {}, None, None
    for name, m in models.items():
        other_cache = cache if m is model else build_cache(dataset, m.spec, eval_ids, progress=False)
        other_windows = windows if m is model else WindowDataset(other_cache, config.data.seq_len,
                                                                  random_phase=False)
        predicted, t, c = model_rollouts(m, other_windows, starts, settings, progress=progress)
        predictions[name] = predicted
        if truth is None:
            truth, context = t, c

    entries = cache.entries
    stage_vocab = [None, *model.spec.stage_vocab]
    rollouts = RolloutSet(
        truth=truth, context=context, predictions=predictions,
        stage=np.array([stage_vocab[entries[g].const_stage] for g, _ in starts]),
        characters=np.array([[dataset.game(cache.game_ids[g])["players"][p]["character"] for p in range(2)]
                             for g, _ in starts]),
        game_ids=[cache.game_ids[g] for g, _ in starts],
        start_frames=np.array([int(cache.game(g).frame_ids[s + settings.warmup]) for g, s in starts]))
    add_baselines(rollouts)
    train_ids, _ = split_games(dataset.games, config.data.val_fraction, config.data.split_seed,
                               filters=filters_for(config))
    metrics = evaluate(rollouts, horizons=[h for h in (1, 5, 10, 20, 60, 120, 300, 600) if h <= settings.horizon],
                       allowed_actions=_allowed_actions(dataset, train_ids or eval_ids))
    tf = teacher_forced_metrics(model, windows, batch_size=16, max_batches=settings.tf_batches, device="cpu",
                                loss_config=config.loss)
    tf.update(decoded_teacher_forced(model, windows, batch_size=16, max_batches=settings.tf_batches))
    metrics["teacher_forced"] = tf
    meta = {"checkpoint": str(checkpoint), "checkpoint_hash": file_hash(checkpoint),
            "dataset": str(dataset.root), "dataset_hash": dataset_hash(dataset, eval_ids),
            "games": len(eval_ids), "split": "games" if games else split, "starts": len(starts),
            "warmup": settings.warmup, "horizon": settings.horizon, "seed": settings.seed,
            "code_version": _code_version(), "command": command,
            "compare": [str(p) for p in compare], "num_params": model.num_params()}
    write_report(out_dir, metrics, rollouts, meta)
    return {"meta": meta, **to_jsonable(metrics)}
