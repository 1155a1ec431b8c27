"""Model-independent evaluation metrics on raw game states.

Everything here works on **raw game units keyed by dataset column names** (``meleewm.replay.schema``), so the
same code scores the model, the baselines and anything else that produces states.

The contract with the rollout driver
------------------------------------
``RawState`` is a ``dict[str, np.ndarray]`` keyed by post-frame column names (``post_position_x``,
``post_state``, ``post_percent``, ``post_stocks``, the five ``post_velocities_*`` fields, ``post_airborne``,
``post_character`` ...). Each array is ``[N, H, P]`` (N rollout starts, H steps, P players, in port order) for
a sequence, or ``[N, P]`` for a single frame. Floats may hold NaN where the dataset had a null (a field that the
replay's Slippi version predates): metrics skip entries whose *truth* is not finite. A *prediction* that is not
finite where the truth is makes that metric ``None`` (undefined), and ``plausibility`` counts it.

``RolloutSet`` bundles, for N starts: the true states of steps 1..H after warm-up (``truth``), the last true
state before step 1 (``context``, what the baselines extrapolate from), the predictions of every predictor
(``predictions``: name -> RawState; ``"model"`` plus baselines added by ``meleewm.eval.baselines``), and per
start the stage id, the external (character-select) ids of the players, the game id and the frame id of step 1.

Output conventions
------------------
Every public function returns plain JSON-able values: Python floats/ints/strings, lists and dicts with string
keys. Undefined numbers (an empty bucket, a metric on a field that is absent) are ``None``, never NaN. Series
over horizons are lists of records (``[{"horizon": 1, ...}, ...]``), so their order survives ``sort_keys``.

Units: positions and their errors in game units, percent in %, velocities in units/frame, accuracies and
rates as fractions in [0, 1], KO timing offsets in frames (positive = the predictor is late).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from meleewm.melee import FIRST_SPECIAL, action_name, character_name, external_to_internal, stage_name

RawState = dict[str, np.ndarray]

POS_X, POS_Y = "post_position_x", "post_position_y"
ACTION = "post_state"
PERCENT = "post_percent"
SHIELD = "post_shield"
STOCKS = "post_stocks"
CHARACTER = "post_character"
AIRBORNE = "post_airborne"
VELOCITY_FIELDS: tuple[str, ...] = (
    "post_velocities_self_x_air",
    "post_velocities_self_y",
    "post_velocities_knockback_x",
    "post_velocities_knockback_y",
    "post_velocities_self_x_ground",
)

DEFAULT_HORIZONS: tuple[int, ...] = (1, 5, 10, 20, 60, 120, 300, 600)
SUMMARY_KS: tuple[int, ...] = (5, 10, 20)
KO_WINDOW = 30
BREAKDOWN_STEPS = 20  # breakdowns score steps 1..20 (the reference-comparable range)
TOP_ACTIONS = 15  # rows in the "most frequent" and "worst" action lists
MIN_ACTION_COUNT = 20  # an action must be seen this often to be ranked among the worst


@dataclass
class RolloutSet:
    """N closed-loop rollouts of H steps, with their truth and the context they started from.

    truth:       RawState [N, H, P], true states of steps 1..H after warm-up.
    context:     RawState [N, P], the last true state before step 1.
    predictions: predictor name -> RawState [N, H, P] ("model", "persistence", "constant_velocity", ...).
    stage:       [N] Slippi stage ids.
    characters:  [N, P] external (character-select) ids.
    game_ids:    N game ids (dataset ``game_id``).
    start_frames:[N] frame id of step 1 of each rollout.
    """

    truth: RawState
    context: RawState
    predictions: dict[str, RawState]
    stage: np.ndarray
    characters: np.ndarray
    game_ids: list[str]
    start_frames: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, ignored by the metrics

    @property
    def shape(self) -> tuple[int, int, int]:
        n, h, p = np.asarray(self.truth[POS_X]).shape
        return int(n), int(h), int(p)

    def validate(self) -> None:
        """Raise ValueError when shapes disagree with the contract."""
        n, h, p = self.shape
        for name, state in [("truth", self.truth), *((f"predictions[{k}]", v) for k, v in self.predictions.items())]:
            for key, arr in state.items():
                if np.shape(arr) != (n, h, p):
                    raise ValueError(f"{name}[{key}] has shape {np.shape(arr)}, expected {(n, h, p)}")
        for key, arr in self.context.items():
            if np.shape(arr) != (n, p):
                raise ValueError(f"context[{key}] has shape {np.shape(arr)}, expected {(n, p)}")
        if np.shape(self.stage) != (n,):
            raise ValueError(f"stage has shape {np.shape(self.stage)}, expected {(n,)}")
        if np.shape(self.characters) != (n, p):
            raise ValueError(f"characters has shape {np.shape(self.characters)}, expected {(n, p)}")
        if len(self.game_ids) != n or np.shape(self.start_frames) != (n,):
            raise ValueError("game_ids and start_frames need one entry per start")
        for key in (POS_X, POS_Y, ACTION):
            if key not in self.truth:
                raise ValueError(f"truth lacks {key}")

    def internal_characters(self) -> np.ndarray:
        """[N, H, P] internal character ids: truth's post_character, else derived from the external ids."""
        n, h, p = self.shape
        if CHARACTER in self.truth:
            return _ids(self.truth[CHARACTER])
        internal = np.vectorize(_safe_internal, otypes=[np.int64])(np.asarray(self.characters))
        return np.broadcast_to(internal[:, None, :], (n, h, p))


def _ids(arr: np.ndarray) -> np.ndarray:
    """Integer ids of an array that may be float with NaN (a null): NaN becomes -1."""
    a = np.asarray(arr)
    if a.dtype.kind in "fc":
        a = np.where(np.isfinite(a), a, -1)
    return a.astype(np.int64)


def _safe_internal(ext: int) -> int:
    try:
        return external_to_internal(int(ext))
    except ValueError:
        return -1


# ---------------------------------------------------------------------------------------------------------------
# JSON helpers


def fnum(x: Any) -> float | None:
    """A finite Python float, or None for NaN/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays and tuples to JSON types; NaN/inf become None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return fnum(obj)
    return obj


def _mean(err: np.ndarray, valid: np.ndarray | None = None) -> float | None:
    """Mean of ``err`` over ``valid`` entries; None when empty or when a valid entry is not finite."""
    err = np.asarray(err, dtype=np.float64)
    if valid is not None:
        err = err[np.asarray(valid, dtype=bool)]
    if err.size == 0:
        return None
    return fnum(err.mean())


# ---------------------------------------------------------------------------------------------------------------
# Teacher-forced helpers: pure numpy, any shape; ``mask`` (same shape, bool) selects the entries to score.


def action_accuracy(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Fraction of entries where the predicted action id equals the true one."""
    pred, true = np.asarray(pred), np.asarray(true)
    return _mean(np.round(pred) == np.round(true), mask)


def change_accuracy(
    pred: np.ndarray, true: np.ndarray, axis: int = 1, prev_true: np.ndarray | None = None
) -> float | None:
    """Action accuracy on the frames where the true action differs from the previous frame's true action.

    ``axis`` is the time axis (1 for [B, T, P] arrays). Without ``prev_true`` (the true action of the frame
    before the first one, shaped like ``true`` without the time axis) the first frame is not scored, since its
    previous action is unknown. None when no frame changes action.
    """
    pred, true = np.asarray(pred), np.asarray(true)
    if prev_true is not None:
        prev = np.concatenate(
            [np.expand_dims(np.asarray(prev_true), axis), np.take(true, range(true.shape[axis] - 1), axis)], axis
        )
        changed = true != prev
    else:
        changed = np.zeros(true.shape, dtype=bool)
        t = true.shape[axis]
        later = np.take(true, range(1, t), axis) != np.take(true, range(t - 1), axis)
        idx = [slice(None)] * true.ndim
        idx[axis] = slice(1, None)
        changed[tuple(idx)] = later
    return _mean(pred == true, changed)


def position_mae(
    pred_x: np.ndarray, pred_y: np.ndarray, true_x: np.ndarray, true_y: np.ndarray, mask: np.ndarray | None = None
) -> float | None:
    """Mean Euclidean distance between predicted and true positions (game units); skips non-finite truth."""
    err = np.hypot(np.asarray(pred_x, np.float64) - true_x, np.asarray(pred_y, np.float64) - true_y)
    valid = np.isfinite(true_x) & np.isfinite(true_y)
    return _mean(err, valid if mask is None else valid & mask)


def mae(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Mean absolute error (percent, shield, a velocity, ...); skips entries whose truth is not finite."""
    true = np.asarray(true, np.float64)
    err = np.abs(np.asarray(pred, np.float64) - true)
    valid = np.isfinite(true)
    return _mean(err, valid if mask is None else valid & mask)


def velocity_mae(
    pred: Mapping[str, np.ndarray], true: Mapping[str, np.ndarray], mask: np.ndarray | None = None
) -> float | None:
    """Mean absolute error over the five ``post_velocities_*`` fields (those present in both states)."""
    errs, valids = _velocity_err(pred, true)
    if errs is None:
        return None
    return _mean(errs, valids if mask is None else valids & mask[..., None])


def _velocity_err(pred: Mapping[str, np.ndarray], true: Mapping[str, np.ndarray]):
    keys = [k for k in VELOCITY_FIELDS if k in pred and k in true]
    if not keys:
        return None, None
    t = np.stack([np.asarray(true[k], np.float64) for k in keys], -1)
    p = np.stack([np.asarray(pred[k], np.float64) for k in keys], -1)
    return np.abs(p - t), np.isfinite(t)


def stocks_accuracy(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Fraction of entries whose predicted stock count (rounded) equals the truth."""
    true = np.asarray(true, np.float64)
    valid = np.isfinite(true)
    return _mean(np.round(np.asarray(pred, np.float64)) == np.round(true), valid if mask is None else valid & mask)


def flag_f1(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """F1 of binary flags: ``pred`` and ``true`` are 0/1 arrays [..., n_flags].

    Returns ``{"per_flag": [f1 or None], "macro": mean of the defined per-flag F1, "micro": pooled F1}``.
    A flag's F1 is None when it is never true and never predicted.
    """
    p = np.asarray(pred) > 0.5
    t = np.asarray(true) > 0.5
    if mask is not None:
        p, t = p[np.asarray(mask, bool)], t[np.asarray(mask, bool)]
    p = p.reshape(-1, p.shape[-1])
    t = t.reshape(-1, t.shape[-1])
    tp = (p & t).sum(0)
    fp = (p & ~t).sum(0)
    fn = (~p & t).sum(0)
    per = [
        None if tp[i] + fp[i] + fn[i] == 0 else float(2 * tp[i] / (2 * tp[i] + fp[i] + fn[i])) for i in range(len(tp))
    ]
    defined = [f for f in per if f is not None]
    total = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "per_flag": per,
        "macro": float(np.mean(defined)) if defined else None,
        "micro": float(2 * tp.sum() / total) if total else None,
    }


# ---------------------------------------------------------------------------------------------------------------
# Rollout metrics
#
# Each metric is first computed per entry (``_elementwise``) as values and a validity mask; every aggregate (a
# horizon, steps 1..K, one player, a bucket) is then a ratio of sums. Velocity error has a trailing field axis.


def _steps(truth: RawState) -> int:
    return int(np.shape(truth[POS_X])[1])


def _pos_err(pred: RawState, truth: RawState) -> tuple[np.ndarray, np.ndarray]:
    tx, ty = np.asarray(truth[POS_X], np.float64), np.asarray(truth[POS_Y], np.float64)
    err = np.hypot(np.asarray(pred[POS_X], np.float64) - tx, np.asarray(pred[POS_Y], np.float64) - ty)
    return err, np.isfinite(tx) & np.isfinite(ty)


def _elementwise(pred: RawState, truth: RawState) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """name -> (values, valid) per entry [N, H, P] (velocity: [N, H, P, F]); None when the fields are absent."""
    out: dict[str, tuple[np.ndarray, np.ndarray] | None] = {"position_error": _pos_err(pred, truth)}
    if ACTION in pred:
        t = np.asarray(truth[ACTION], np.float64)
        out["action_accuracy"] = (
            (np.round(np.asarray(pred[ACTION], np.float64)) == np.round(t)).astype(np.float64),
            np.isfinite(t),
        )
    else:
        out["action_accuracy"] = None
    if PERCENT in pred and PERCENT in truth:
        t = np.asarray(truth[PERCENT], np.float64)
        out["percent_error"] = (np.abs(np.asarray(pred[PERCENT], np.float64) - t), np.isfinite(t))
    else:
        out["percent_error"] = None
    v, valid = _velocity_err(pred, truth)
    out["velocity_error"] = None if v is None else (v, valid)
    if STOCKS in pred and STOCKS in truth:
        t = np.asarray(truth[STOCKS], np.float64)
        out["stocks_accuracy"] = (
            (np.round(np.asarray(pred[STOCKS], np.float64)) == np.round(t)).astype(np.float64),
            np.isfinite(t),
        )
    else:
        out["stocks_accuracy"] = None
    return out


ROLLOUT_METRIC_NAMES: tuple[str, ...] = (
    "position_error",
    "action_accuracy",
    "percent_error",
    "velocity_error",
    "stocks_accuracy",
)
# Higher is better for these; lower for the rest.
HIGHER_IS_BETTER = frozenset({"action_accuracy", "stocks_accuracy", "change_accuracy", "detection_rate"})


def _step_player_sums(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts over starts (and fields) of the valid entries: two [H, P] arrays (sums may be NaN)."""
    s = np.where(valid, values, 0.0)
    c = valid.astype(np.float64)
    axes = (0,) if values.ndim == 3 else (0, 3)
    return s.sum(axes), c.sum(axes)


def _ratio(s: np.ndarray, c: np.ndarray) -> float | None:
    total = float(c.sum())
    return None if total == 0 else fnum(float(s.sum()) / total)


def _aggregate(sums: dict[str, tuple[np.ndarray, np.ndarray] | None], steps: slice, names) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for name in names:
        if sums[name] is None:
            rec[name], rec[f"{name}_per_player"] = None, None
            continue
        s, c = sums[name][0][steps], sums[name][1][steps]
        rec[name] = _ratio(s, c)
        rec[f"{name}_per_player"] = [_ratio(s[:, j], c[:, j]) for j in range(s.shape[1])]
    return rec


def _sums(pred: RawState, truth: RawState):
    return {k: (None if v is None else _step_player_sums(*v)) for k, v in _elementwise(pred, truth).items()}


def rollout_metrics(
    pred: RawState, truth: RawState, horizons: Iterable[int] = DEFAULT_HORIZONS
) -> list[dict[str, Any]]:
    """Metrics at step h exactly (1-based) for each horizon h <= H.

    One record per horizon: ``{"horizon": h, <metric>: mean over starts and players,
    <metric>_per_player: [one per player]}`` for position_error (Euclidean, game units), action_accuracy,
    percent_error, velocity_error (mean abs over the velocity fields) and stocks_accuracy. A metric whose
    fields are missing from the prediction is None.
    """
    h_max = _steps(truth)
    sums = _sums(pred, truth)
    return [
        {"horizon": h, **_aggregate(sums, slice(h - 1, h), ROLLOUT_METRIC_NAMES)}
        for h in sorted({int(h) for h in horizons if 1 <= int(h) <= h_max})
    ]


def summary_metrics(pred: RawState, truth: RawState, ks: Iterable[int] = SUMMARY_KS) -> list[dict[str, Any]]:
    """The reference-comparable summary: means over steps 1..K for each K <= H.

    One record per K: ``{"k": K, "position_error", "action_accuracy", "percent_error"}`` with ``_per_player``
    lists, each averaged over steps 1..K, starts and players.
    """
    h_max = _steps(truth)
    sums = _sums(pred, truth)
    return [
        {"k": k, **_aggregate(sums, slice(0, k), ("position_error", "action_accuracy", "percent_error"))}
        for k in sorted({int(k) for k in ks if 1 <= int(k) <= h_max})
    ]


def cumulative_curves(pred: RawState, truth: RawState) -> dict[str, list[float | None]]:
    """Each rollout metric averaged over steps 1..K, for every K in 1..H (the summary as a curve)."""
    h = _steps(truth)
    sums = _sums(pred, truth)
    out: dict[str, list[float | None]] = {}
    for name in ROLLOUT_METRIC_NAMES:
        if sums[name] is None:
            out[name] = [None] * h
            continue
        s, c = np.cumsum(sums[name][0].sum(1)), np.cumsum(sums[name][1].sum(1))
        out[name] = [None if c[k] == 0 else fnum(s[k] / c[k]) for k in range(h)]
    return out


def step_curves(pred: RawState, truth: RawState) -> dict[str, list[float | None]]:
    """Each rollout metric at every step 1..H (for plots): name -> list of H values (None where undefined)."""
    h = _steps(truth)
    sums = _sums(pred, truth)
    return {
        name: ([None] * h if sums[name] is None else [_ratio(sums[name][0][t], sums[name][1][t]) for t in range(h)])
        for name in ROLLOUT_METRIC_NAMES
    }


# ---------------------------------------------------------------------------------------------------------------
# KO timing


def _stock_losses(stocks: np.ndarray, before: np.ndarray | None) -> np.ndarray:
    """[N, H, P] bool: the stock count at step t is lower than at step t-1 (step 0 = ``before``)."""
    s = np.asarray(stocks, np.float64)
    prev = np.concatenate([(s[:, :1] if before is None else np.asarray(before, np.float64)[:, None]), s[:, :-1]], 1)
    with np.errstate(invalid="ignore"):
        return np.round(s) < np.round(prev)


def ko_timing(
    pred: RawState, truth: RawState, context: RawState | None = None, window: int = KO_WINDOW
) -> dict[str, Any]:
    """Does the predictor lose a stock when the truth does?

    Every true stock loss (stocks at step t < stocks at step t-1; step 0 is ``context``) of a player is matched
    to the nearest unmatched predicted stock loss of the same player and start within ±``window`` steps.
    Returns counts, ``detection_rate`` (None when no true loss), ``mean_abs_offset`` and ``mean_offset``
    (frames, predicted minus true, over the detected ones) and ``false_alarms`` (predicted losses matched to no
    true loss). A true loss near the end of the horizon whose predicted twin would fall after step H counts as
    missed.
    """
    if STOCKS not in truth or STOCKS not in pred:
        return {
            "true_losses": 0,
            "detected": 0,
            "detection_rate": None,
            "mean_abs_offset": None,
            "mean_offset": None,
            "predicted_losses": 0,
            "false_alarms": 0,
            "window": window,
        }
    before = None if context is None or STOCKS not in context else context[STOCKS]
    t_loss = _stock_losses(truth[STOCKS], before)
    p_loss = _stock_losses(pred[STOCKS], before)
    offsets: list[int] = []
    n_true = int(t_loss.sum())
    n_pred = int(p_loss.sum())
    matched_pred = 0
    n, _, p = t_loss.shape
    for i in range(n):
        for j in range(p):
            ts = np.flatnonzero(t_loss[i, :, j])
            ps = list(np.flatnonzero(p_loss[i, :, j]))
            for t in ts:
                if not ps:
                    break
                best = min(ps, key=lambda q: (abs(q - t), q))
                if abs(best - t) <= window:
                    offsets.append(int(best - t))
                    ps.remove(best)
                    matched_pred += 1
    return {
        "window": int(window),
        "true_losses": n_true,
        "detected": len(offsets),
        "detection_rate": (len(offsets) / n_true) if n_true else None,
        "mean_abs_offset": float(np.mean(np.abs(offsets))) if offsets else None,
        "mean_offset": float(np.mean(offsets)) if offsets else None,
        "predicted_losses": n_pred,
        "false_alarms": n_pred - matched_pred,
    }


# ---------------------------------------------------------------------------------------------------------------
# Breakdowns


BUCKET_METRICS: tuple[str, ...] = ("position_error", "action_accuracy", "percent_error")


def _grouped(elem, groups: np.ndarray, n_groups: int) -> dict[str, list[float | None]]:
    """Per-group means of the bucket metrics; ``groups`` [N, H, P] holds a group index or -1 (not scored)."""
    scored = groups >= 0
    g = groups[scored]
    out: dict[str, list[float | None]] = {}
    for name in BUCKET_METRICS:
        if elem[name] is None:
            out[name] = [None] * n_groups
            continue
        values, valid = elem[name]
        v, ok = values[scored], valid[scored]
        s = np.bincount(g, weights=np.where(ok, v, 0.0), minlength=n_groups)
        c = np.bincount(g, weights=ok.astype(np.float64), minlength=n_groups)
        out[name] = [None if c[i] == 0 else fnum(s[i] / c[i]) for i in range(n_groups)]
    out["count"] = np.bincount(g, minlength=n_groups).tolist()
    return out


def _bucket_rows(elem, keys: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, dict[str, list]]:
    """Group the windowed entries by ``keys`` ([N, H, P, k] ints): unique keys [G, k] and their stats."""
    flat = keys[window]
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    groups = np.full(window.shape, -1, dtype=np.int64)
    groups[window] = inv.reshape(-1)
    return uniq, _grouped(elem, groups, len(uniq))


def breakdowns(
    pred: RawState,
    rollouts: RolloutSet,
    steps: int = BREAKDOWN_STEPS,
    top: int = TOP_ACTIONS,
    min_count: int = MIN_ACTION_COUNT,
) -> dict[str, Any]:
    """Errors over steps 1..``steps`` split by true action, character, stage and player.

    ``action``: ``{"all": rows sorted by count, "most_frequent": the first ``top`` rows, "worst": the ``top``
    rows with the lowest action accuracy among those seen at least ``min_count`` times (or all rows if none
    is), "min_count"}``; a row is ``{"action", "character" (internal id, only for ids >= 341, else None),
    "name", "count", "frequency", "action_accuracy", "position_error", "percent_error"}``. ``character``
    (external ids), ``stage`` and ``player``: lists of ``{"id", "name", "count", "position_error",
    "action_accuracy", "percent_error"}`` rows. Counts are scored (start, step, player) entries.
    """
    truth = rollouts.truth
    n, h, p = rollouts.shape
    k = max(1, min(int(steps), h))
    window = np.zeros((n, h, p), bool)
    window[:, :k] = True
    elem = _elementwise(pred, truth)
    out: dict[str, Any] = {"steps": k}

    # By true action; character-specific ids (>= 341) are split by internal character.
    actions = _ids(truth[ACTION])
    window &= actions >= 0  # a null action (NaN) is not scored
    key_char = np.where(actions >= FIRST_SPECIAL, rollouts.internal_characters(), -1)
    uniq, stats = _bucket_rows(elem, np.stack([actions, key_char], -1), window)
    total = int(window.sum())
    rows = []
    for i, (a, c) in enumerate(uniq.tolist()):
        name = action_name(a) if c < 0 else f"{action_name(a, c)} ({character_name(c, internal=True)})"
        rows.append(
            {
                "action": int(a),
                "character": None if c < 0 else int(c),
                "name": name,
                "count": int(stats["count"][i]),
                "frequency": stats["count"][i] / total,
                **{m: stats[m][i] for m in BUCKET_METRICS},
            }
        )
    rows.sort(key=lambda r: (-r["count"], r["action"], -1 if r["character"] is None else r["character"]))
    ranked = [r for r in rows if r["count"] >= min_count] or rows
    worst = sorted(
        (r for r in ranked if r["action_accuracy"] is not None),
        key=lambda r: (r["action_accuracy"], -r["count"], r["action"], r["character"] or -1),
    )
    out["action"] = {"all": rows, "most_frequent": rows[:top], "worst": worst[:top], "min_count": int(min_count)}

    def simple(ids: np.ndarray, namer) -> list[dict[str, Any]]:
        uniq, stats = _bucket_rows(elem, ids[..., None], window)
        return [
            {
                "id": int(u),
                "name": namer(int(u)),
                "count": int(stats["count"][i]),
                **{m: stats[m][i] for m in BUCKET_METRICS},
            }
            for i, u in enumerate(uniq[:, 0].tolist())
        ]

    shape = (n, h, p)
    out["character"] = simple(
        np.broadcast_to(np.asarray(rollouts.characters, np.int64)[:, None, :], shape), character_name
    )
    out["stage"] = simple(np.broadcast_to(np.asarray(rollouts.stage, np.int64)[:, None, None], shape), stage_name)
    out["player"] = simple(np.broadcast_to(np.arange(p)[None, None, :], shape), lambda j: f"player {j}")
    return out
