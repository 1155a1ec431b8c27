"""The plots of the evaluation report, as base64 PNGs: error against horizon, the summary against the bars,
the best- and worst-predicted actions, and trajectories drawn over the stage."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from meleewm.eval.metrics import POS_X, POS_Y, ROLLOUT_METRIC_NAMES, RolloutSet, cumulative_curves, step_curves
from meleewm.eval.verdict import MODEL, REFERENCE_MEAN, WATCHABLE
from meleewm.melee import geometry, stage_name

N_TRAJECTORIES = 4

LABELS = {
    "position_error": "position error (game units)",
    "action_accuracy": "action accuracy",
    "percent_error": "percent error (%)",
    "velocity_error": "velocity error (units/frame)",
    "stocks_accuracy": "stocks accuracy",
}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float = 6.4, h: float = 3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


_STYLE = {
    MODEL: dict(color="#d62728", lw=2.0),
    "persistence": dict(color="#7f7f7f", lw=1.3, ls="--"),
    "constant_velocity": dict(color="#1f77b4", lw=1.3, ls="-."),
}


def _style(name: str) -> dict[str, Any]:
    return _STYLE.get(name, dict(lw=1.2))


def _curve_plots(rollouts: RolloutSet, names: list[str]) -> list[tuple[str, str]]:
    """Per-step error vs horizon (with the watchable bar at its step), and the summary (mean over 1..K) with the
    reference's mean."""
    curves = {n: step_curves(rollouts.predictions[n], rollouts.truth) for n in names}
    cums = {n: cumulative_curves(rollouts.predictions[n], rollouts.truth) for n in names}
    _, h, _ = rollouts.shape
    steps = np.arange(1, h + 1)
    out = []
    for metric in ROLLOUT_METRIC_NAMES:
        if all(all(v is None for v in curves[n][metric]) for n in names):
            continue
        fig = _figure()
        ax = fig.add_subplot()
        for n in names:
            _plot_curve(ax, steps, curves[n][metric], n)
        if metric in WATCHABLE and WATCHABLE["horizon"] <= h:
            ax.plot([WATCHABLE["horizon"]], [WATCHABLE[metric]], "gv" if metric == "position_error" else "g^", ms=9,
                    label="watchable bar")
        ax.set_xscale("log")
        out.append((f"{LABELS[metric]} vs horizon",
                    _finish(fig, ax, "step after warm-up (frames)", LABELS[metric], f"{LABELS[metric]} at each step")))
    kmax = min(h, 60)
    for metric in ("position_error", "action_accuracy"):
        fig = _figure()
        ax = fig.add_subplot()
        for n in names:
            _plot_curve(ax, steps[:kmax], cums[n][metric][:kmax], n)
        if REFERENCE_MEAN["k"] <= kmax:
            ax.plot([REFERENCE_MEAN["k"]], [REFERENCE_MEAN[metric]], "k*", ms=12, label="reference system")
        out.append((f"summary {LABELS[metric]}", _finish(fig, ax, "K (mean over steps 1..K)", LABELS[metric],
                                                         f"summary: {LABELS[metric]} over steps 1..K")))
    return out


def _finish(fig, ax, xlabel: str, ylabel: str, title: str) -> str:
    """Labels, grid and legend on a curve plot; the figure as base64 PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_curve(ax, steps: np.ndarray, values, name: str) -> None:
    """One predictor's curve; a missing value (None) leaves a gap."""
    ax.plot(steps, np.array([np.nan if v is None else v for v in values], float), label=name, **_style(name))


def _action_plots(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    actions = (((metrics.get("breakdowns") or {}).get(MODEL) or {}).get("action")) or {}
    out = []
    for key, title in (("most_frequent", "most frequent true actions"), ("worst", "worst-predicted true actions")):
        rows = actions.get(key) or []
        if not rows:
            continue
        fig = _figure(6.4, 0.9 + 0.28 * len(rows))
        ax = fig.add_subplot()
        acc = [np.nan if r["action_accuracy"] is None else 100 * r["action_accuracy"] for r in rows]
        ypos = np.arange(len(rows))[::-1]
        ax.barh(ypos, acc, color="#d62728" if key == "worst" else "#2ca02c")
        ax.set_yticks(ypos, [f"{r['name']} (n={r['count']})" for r in rows], fontsize=7)
        ax.set_xlim(0, 100)
        ax.set_xlabel("model action accuracy (%)")
        ax.set_title(f"{title} (steps 1..{(metrics['breakdowns'][MODEL]).get('steps')})")
        ax.grid(True, axis="x", alpha=0.3)
        out.append((title, _png(fig)))
    return out


def _draw_stage(ax, stage_id: int) -> tuple[float, float, float, float] | None:
    g = geometry(stage_id)
    if g is None:
        return None
    from matplotlib.patches import Polygon, Rectangle

    ax.add_patch(
        Rectangle(
            (g.blast_left, g.blast_bottom),
            g.blast_right - g.blast_left,
            g.blast_top - g.blast_bottom,
            fill=False,
            ls=":",
            ec="#999999",
            lw=1,
        )
    )
    lx = g.ledge_x
    ax.add_patch(
        Polygon(
            [(-lx, g.main_y), (lx, g.main_y), (0.8 * lx, g.main_y - 0.25 * lx), (-0.8 * lx, g.main_y - 0.25 * lx)],
            closed=True,
            fc="#dddddd",
            ec="#555555",
            lw=1,
        )
    )
    ax.plot([-lx, lx], [g.main_y, g.main_y], "o", color="#555555", ms=2.5)  # ledges
    for y, x0, x1 in g.platforms:
        ax.plot([x0, x1], [y, y], color="#555555", lw=2)
    return g.blast_left, g.blast_right, g.blast_bottom, g.blast_top


def _stage_x(stage_id: int) -> tuple[float, float]:
    g = geometry(stage_id)
    return -g.ledge_x - 15.0, g.ledge_x + 15.0


def _stage_y(stage_id: int) -> tuple[float, float]:
    g = geometry(stage_id)
    top = max([y for y, _, _ in g.platforms] + [g.main_y])
    return g.main_y - 0.25 * g.ledge_x - 10.0, top + 25.0


def _view(values: np.ndarray, lo: float, hi: float, stage: tuple[float, float]) -> tuple[float, float]:
    """Axis limits covering the stage and every finite point, but no more than the blast zones (+5%)."""
    v = values[np.isfinite(values)]
    a = min(stage[0], float(v.min()) if v.size else stage[0])
    b = max(stage[1], float(v.max()) if v.size else stage[1])
    m = 0.05 * (hi - lo)
    a, b = max(a - 5.0, lo - m), min(b + 5.0, hi + m)
    return a, b


def _pick_starts(rollouts: RolloutSet, k: int) -> list[int]:
    n = rollouts.shape[0]
    known = [i for i in range(n) if geometry(int(rollouts.stage[i])) is not None] or list(range(n))
    idx = np.unique(np.linspace(0, len(known) - 1, min(k, len(known))).round().astype(int))
    return [known[i] for i in idx]


def _trajectory_plots(rollouts: RolloutSet, names: list[str]) -> list[tuple[str, str]]:
    _, h, p = rollouts.shape
    out = []
    player_colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")
    shown = [n for n in (MODEL, "constant_velocity") if n in names]
    for i in _pick_starts(rollouts, N_TRAJECTORIES):
        fig = _figure(6.4, 4.2)
        ax = fig.add_subplot()
        box = _draw_stage(ax, int(rollouts.stage[i]))
        xs, ys = [], []
        for j in range(p):
            c = player_colors[j % len(player_colors)]
            x0, y0 = rollouts.context[POS_X][i, j], rollouts.context[POS_Y][i, j]
            tx = np.concatenate([[x0], np.asarray(rollouts.truth[POS_X][i, :, j], float)])
            ty = np.concatenate([[y0], np.asarray(rollouts.truth[POS_Y][i, :, j], float)])
            xs.append(tx), ys.append(ty)
            ax.plot(tx, ty, color=c, lw=1.8, label=f"P{j} truth")
            ax.plot([x0], [y0], "o", color=c, ms=5)
            for n, ls in zip(shown, ("--", ":"), strict=False):
                pr = rollouts.predictions[n]
                px = np.concatenate([[x0], np.asarray(pr[POS_X][i, :, j], float)])
                py = np.concatenate([[y0], np.asarray(pr[POS_Y][i, :, j], float)])
                xs.append(px), ys.append(py)
                ax.plot(px, py, color=c, lw=1.2, ls=ls, label=f"P{j} {n}")
        if box is not None:
            ax.set_xlim(*_view(np.concatenate(xs), box[0], box[1], _stage_x(int(rollouts.stage[i]))))
            ax.set_ylim(*_view(np.concatenate(ys), box[2], box[3], _stage_y(int(rollouts.stage[i]))))
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(
            f"{stage_name(int(rollouts.stage[i]))}: start {i} (frame {int(rollouts.start_frames[i])}), {h} steps",
            fontsize=9,
        )
        ax.legend(fontsize=6, ncol=2, loc="upper right")
        out.append((f"trajectories of start {i}", _png(fig)))
    return out


def report_plots(metrics: Mapping[str, Any], rollouts: RolloutSet, names: list[str]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of every plot of the report, in the order the page shows them."""
    return _curve_plots(rollouts, names) + _action_plots(metrics) + _trajectory_plots(rollouts, names)
