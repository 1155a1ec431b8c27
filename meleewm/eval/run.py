"""``meleewm eval``: a checkpoint's teacher-forced metrics and closed-loop rollouts from fixed starts on
validation games, next to the persistence and constant-velocity baselines (and any ``--compare`` checkpoint),
written as ``metrics.json`` and a self-contained ``report.html``.

Rollouts use ``meleewm.model.rollout.rollout`` (the one step function of training, play and dream): after
warm-up the model reads nothing but its own predictions and the real controllers of the replay. The checkpoint
is rolled out twice from the same starts: the model alone (``model``) and the model with the game rules of
``meleewm.model.rules`` (``model_with_rules``), so what is learned is never confused with what is enforced.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meleewm import __version__
from meleewm.data.cache import build_cache
from meleewm.data.config import run_split
from meleewm.data.encoding import CONT_FIELDS, to_numpy
from meleewm.data.windows import WindowDataset
from meleewm.errors import MeleewmError
from meleewm.eval.baselines import add_baselines
from meleewm.eval.items import item_metrics
from meleewm.eval.metrics import (
    BREAKDOWN_STEPS,
    DEFAULT_HORIZONS,
    KO_WINDOW,
    SUMMARY_KS,
    RolloutSet,
    breakdowns,
    flag_f1,
    ko_timing,
    mae,
    rollout_metrics,
    stocks_accuracy,
    summary_metrics,
    to_jsonable,
    velocity_mae,
)
from meleewm.eval.plausibility import plausibility, seen_actions
from meleewm.eval.report import EvalResult, write_report
from meleewm.eval.scenarios import EVENT_LEAD, IDLE_FRAMES, IDLE_PAIRS, action_timing, event_detection, idle_test
from meleewm.model.checkpoint import file_hash, load_model
from meleewm.model.measures import teacher_forced_metrics
from meleewm.model.rollout import rollout, rollout_batch, rollout_starts
from meleewm.model.rules import RULE_EVENTS, GameRules
from meleewm.model.world import WorldModel
from meleewm.replay.dataset import Dataset, dataset_hash


class EvalError(MeleewmError):
    """An evaluation that cannot run: no usable games, games too short for the horizon."""


@dataclass
class EvalSettings:
    starts: int = 300
    horizon: int = 600
    warmup: int = 60
    seed: int = 0
    batch_size: int = 100
    tf_batches: int = 20
    idle_pairs: int = 2          # character pairs per legal stage in the idle test (0 skips it)
    idle_frames: int = IDLE_FRAMES
    timing_starts: int = 120     # action onsets in the action-timing measure (0 skips it)
    event_starts: int = 60       # real KOs, and as many real hits, in the event-conditioned measure (0 skips it)
    event_lead: int = EVENT_LEAD  # frames before each real event that its rollout starts


def evaluate(
    rollouts: RolloutSet,
    horizons: Iterable[int] = DEFAULT_HORIZONS,
    ks: Iterable[int] = SUMMARY_KS,
    ko_window: int = KO_WINDOW,
    breakdown_steps: int = BREAKDOWN_STEPS,
    allowed_actions: frozenset[tuple[int, int]] | None = None,
    predictors: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All rollout metrics for every predictor in ``rollouts.predictions``.

    Returns ``{"config", "rollout", "summary", "ko_timing", "breakdowns", "plausibility"}``; each section but
    ``config`` maps predictor name -> that section's output (``plausibility`` also has ``"truth"``, the rate
    of each check on real data, as a yardstick). ``allowed_actions`` is the set of (internal character,
    action id) pairs seen in training data (``plausibility.seen_actions``); without it the impossible-action
    check is skipped. :func:`run_eval` adds ``"teacher_forced"`` and the scenarios; the report renders them.
    """
    rollouts.validate()
    n, h, p = rollouts.shape
    names = list(predictors) if predictors is not None else sorted(rollouts.predictions)
    horizons = sorted({int(x) for x in horizons if 1 <= int(x) <= h})
    ks = sorted({int(x) for x in ks if 1 <= int(x) <= h})
    out: dict[str, Any] = {
        "config": {
            "horizons": horizons,
            "summary_ks": ks,
            "ko_window": int(ko_window),
            "breakdown_steps": int(min(breakdown_steps, h)),
            "n_starts": n,
            "horizon": h,
            "players": p,
            "predictors": names,
        },
        "rollout": {},
        "summary": {},
        "ko_timing": {},
        "breakdowns": {},
        "plausibility": {},
    }
    for name in names:
        pred = rollouts.predictions[name]
        out["rollout"][name] = rollout_metrics(pred, rollouts.truth, horizons)
        out["summary"][name] = summary_metrics(pred, rollouts.truth, ks)
        out["ko_timing"][name] = ko_timing(pred, rollouts.truth, rollouts.context, ko_window)
        out["breakdowns"][name] = breakdowns(pred, rollouts, breakdown_steps)
    out["plausibility"] = plausibility(rollouts, allowed_actions, predictors=names)
    return to_jsonable(out)


def _decode(model: WorldModel, cont, binary, cat, cont_mask=None, bin_mask=None) -> dict[str, np.ndarray]:
    """Encoded states → raw columns. With ``cont_mask`` (for true states), continuous fields the game lacks
    become NaN, never a fake 0, so metrics skip them; with ``bin_mask``, so does ``post_airborne`` (Slippi before
    2.0 has none: not grounded). Predictions are left as the model made them."""
    raw = model.spec.decode_state(cont, binary, cat)
    if cont_mask is not None:
        mask = to_numpy(cont_mask)
        for i, name in enumerate(CONT_FIELDS):
            raw[name] = np.where(mask[..., i], raw[name], np.nan).astype(np.float32)
    if bin_mask is not None:
        known = to_numpy(bin_mask)[..., model.spec.bin_index("airborne")] > 0
        raw["post_airborne"] = np.where(known, raw["post_airborne"], np.nan).astype(np.float32)
    return raw


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def game_selection(dataset: Dataset, train_ids: list[str], val_ids: list[str], split: str,
                   games: list[str] | None) -> list[str]:
    """The two-player games to evaluate: ``games`` as given, or a side of the model's own split."""
    if games:
        missing = sorted(set(games) - dataset.game_ids())
        if missing:
            raise EvalError(f"games not in {dataset.root}: {', '.join(missing)}")
        chosen = sorted(games)
    else:
        chosen = {"val": val_ids, "train": train_ids, "all": sorted(train_ids + val_ids)}.get(split)
        if chosen is None:
            raise EvalError(f"--split must be val, train or all, not {split!r}")
    players = dict(zip(dataset.games.column("game_id").to_pylist(), dataset.games.column("n_players").to_pylist()))
    return [g for g in chosen if players[g] == 2]


MODEL_WITH_RULES = "model_with_rules"


@torch.no_grad()
def model_rollouts(model: WorldModel, windows: WindowDataset, starts, settings: EvalSettings, *, progress=None,
                   rules: GameRules | None = None, rule_counts: dict | None = None, items: dict | None = None):
    """Predicted raw states [N, H, 2] of ``model`` (with ``rules``, if given) from every start, plus the truth
    and context. With ``rules``, ``rule_counts`` (a dict) receives how often each rule acted. With ``items`` (a
    dict) and a model that predicts items, it receives the decoded item slots: ``predicted`` and ``truth``
    [N, H, S], ``context`` [N, S] (the last warm-up frame)."""
    W, H = settings.warmup, settings.horizon
    predicted, truth, context = [], [], []
    with_items = items is not None and model.spec.items
    item_parts: dict[str, list] = {"predicted": [], "truth": [], "context": []}
    for begin in range(0, len(starts), settings.batch_size):
        chunk = starts[begin:begin + settings.batch_size]
        batch, warm = rollout_batch(windows, chunk, W, H)
        out = rollout(model, warm, batch["ctrl"][:, W:], rules=rules)
        if rules is not None and rule_counts is not None:
            for name, count in zip(RULE_EVENTS, out["rule_counts"].tolist()):
                rule_counts[name] = rule_counts.get(name, 0) + int(count)
        predicted.append(_decode(model, out["state_cont"], out["state_bin"], out["state_cat"]))
        truth.append(_decode(model, batch["next_cont"][:, W - 1:], batch["next_bin"][:, W - 1:],
                             batch["next_cat"][:, W - 1:], batch["next_cont_mask"][:, W - 1:],
                             batch["next_bin_mask"][:, W - 1:]))
        context.append(_decode(model, batch["state_cont"][:, W - 1], batch["state_bin"][:, W - 1],
                               batch["state_cat"][:, W - 1], batch["cont_mask"][:, W - 1],
                               batch["bin_mask"][:, W - 1]))
        if with_items:
            for part, source, prefix, at in (("predicted", out, "state", slice(None)),
                                             ("truth", batch, "next", slice(W - 1, None)),
                                             ("context", batch, "state", W - 1)):
                item_parts[part].append(model.spec.decode_items(
                    *(source[f"{prefix}_item_{n}"][:, at] for n in ("present", "type", "owner", "cont"))))
        if progress:
            progress(len(chunk))
    if with_items:
        items.update({part: _stack(chunks) for part, chunks in item_parts.items()})
    return _stack(predicted), _stack(truth), _stack(context)


class DecodedTeacherForced:
    """Teacher-forced velocity, percent and shield MAE, binary-flag F1 and stocks accuracy, in raw units: fed
    each batch by ``teacher_forced_metrics(on_batch=...)``, so both sets come from one forward pass."""

    def __init__(self, model: WorldModel):
        self.model = model
        self.pred: list[dict] = []
        self.true: list[dict] = []
        self.bits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, pred: dict, batch: dict) -> None:
        cat = torch.stack([logits.argmax(-1) for logits in pred["cat_logits"]], dim=-1)
        predicted_bits = pred["bin_logits"] > 0
        self.pred.append(_decode(self.model, pred["cont"], predicted_bits, cat))
        self.true.append(_decode(self.model, batch["next_cont"], batch["next_bin"], batch["next_cat"],
                                 batch["next_cont_mask"]))
        self.bits.append((predicted_bits.cpu().numpy(), batch["next_bin"].cpu().numpy() > 0.5,
                          batch["next_bin_mask"].cpu().numpy()))

    def metrics(self) -> dict:
        pred, true = _stack(self.pred), _stack(self.true)
        flags = flag_f1(*(np.concatenate(part) for part in zip(*self.bits)))
        return {
            "velocity_mae": velocity_mae(pred, true),
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


def run_eval(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *, split: str = "val",
             games: list[str] | None = None, compare: list[Path] = (), settings: EvalSettings = EvalSettings(),
             progress=None, command: str = "") -> EvalResult:
    """Evaluate a checkpoint; writes ``out_dir/metrics.json`` and ``out_dir/report.html``, returns what they say."""
    torch.manual_seed(settings.seed)
    saved = load_model(checkpoint)
    model, seq_len = saved.model, saved.data.seq_len
    dataset = Dataset(data)
    train_ids, val_ids = run_split(dataset, saved.data)
    eval_ids = game_selection(dataset, train_ids, val_ids, split, games)
    if not eval_ids:
        raise EvalError(f"no 2-player games to evaluate in {dataset.root} (split {split})")
    cache = build_cache(dataset, model.spec, eval_ids, progress=False)
    windows = WindowDataset(cache, seq_len, seed=settings.seed, random_phase=False)
    length = settings.warmup + settings.horizon
    starts = rollout_starts(windows, settings.starts, length, settings.seed)
    if not starts:
        raise EvalError(f"no game in the selection is longer than warm-up + horizon ({length} frames)")

    models = {"model": model}
    for path in compare:
        other = load_model(path).model
        models[Path(path).parent.name if Path(path).name in ("best.pt", "last.pt") else Path(path).stem] = other
    predictions, truth, context = {}, None, None
    item_predictions, item_truth = {}, None
    for name, m in models.items():
        other_cache = cache if m is model else build_cache(dataset, m.spec, eval_ids, progress=False)
        other_windows = windows if m is model else WindowDataset(other_cache, seq_len,
                                                                  random_phase=False)
        item_slots: dict = {}
        predicted, t, c = model_rollouts(m, other_windows, starts, settings, progress=progress, items=item_slots)
        predictions[name] = predicted
        if item_slots:
            item_predictions[name] = item_slots["predicted"]
            item_truth = item_truth or item_slots
        if truth is None:
            truth, context = t, c
    rule_counts: dict[str, int] = {}
    item_slots = {}
    predictions[MODEL_WITH_RULES], _, _ = model_rollouts(model, windows, starts, settings, progress=progress,
                                                        rules=GameRules(model.spec), rule_counts=rule_counts,
                                                        items=item_slots)
    if item_slots:
        item_predictions[MODEL_WITH_RULES] = item_slots["predicted"]

    # Raw stage and select-screen characters (port order) come from the cache index, frame ids from its arrays.
    entries, frame_ids = cache.entries, cache.arrays["frame_ids"]
    rollouts = RolloutSet(
        truth=truth, context=context, predictions=predictions,
        stage=np.array([entries[g].stage for g, _ in starts]),
        characters=np.array([entries[g].chars for g, _ in starts]),
        game_ids=[cache.game_ids[g] for g, _ in starts],
        start_frames=np.array([int(frame_ids[cache.offsets[g] + s + settings.warmup]) for g, s in starts]))
    add_baselines(rollouts)
    metrics = evaluate(rollouts, horizons=[h for h in (1, 5, 10, 20, 60, 120, 300, 600) if h <= settings.horizon],
                       allowed_actions=_allowed_actions(dataset, train_ids or eval_ids))
    metrics["teacher_forced"], teacher_forced_note = {}, None
    if len(windows):
        decoded = DecodedTeacherForced(model)
        tf = teacher_forced_metrics(model, windows, batch_size=16, max_batches=settings.tf_batches, device="cpu",
                                    loss_config=saved.loss, on_batch=decoded)
        tf.update(decoded.metrics())
        metrics["teacher_forced"] = tf
    else:  # rollouts need warm-up + horizon frames, a teacher-forced window the model's whole seq_len
        teacher_forced_note = (f"not computed: no game of the selection is longer than one window of "
                               f"{seq_len} frames (data.seq_len of the model)")
    metrics["rule_counts"] = rule_counts
    if item_truth:
        metrics["items"] = item_metrics(item_predictions, item_truth["truth"], item_truth["context"],
                                        metrics["config"]["horizons"])
    predictors = [("model", None), (MODEL_WITH_RULES, GameRules(model.spec))]
    if settings.idle_pairs > 0:
        metrics["idle"] = idle_test(model, predictors, frames=settings.idle_frames,
                                    pairs=IDLE_PAIRS[:settings.idle_pairs])
    if settings.timing_starts > 0:
        metrics["action_timing"] = action_timing(model, windows, predictors, count=settings.timing_starts,
                                                 warmup=settings.warmup, seed=settings.seed)
    if settings.event_starts > 0:
        metrics["events"] = event_detection(model, windows, predictors, count=settings.event_starts,
                                            warmup=settings.warmup, seed=settings.seed, lead=settings.event_lead)
    meta = {"checkpoint": str(checkpoint), "checkpoint_hash": file_hash(checkpoint),
            "dataset": str(dataset.root), "dataset_hash": dataset_hash(eval_ids),
            "games": len(eval_ids), "split": "games" if games else split, "starts": len(starts),
            "warmup": settings.warmup, "horizon": settings.horizon, "seed": settings.seed,
            "code_version": _code_version(), "command": command,
            "compare": [str(p) for p in compare], "num_params": model.num_params()}
    if teacher_forced_note:
        meta["teacher_forced"] = teacher_forced_note
    result = EvalResult.of(metrics, meta)
    write_report(out_dir, result, rollouts)
    return result
