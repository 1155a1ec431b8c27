"""The evaluation report: ``metrics.json`` (every number) and a self-contained ``report.html``.

``report.html`` has no external resources: plots are PNGs embedded as base64 data URIs and the only script
is inline (on load it writes the number of loaded images into ``<body data-images-loaded=...>``, which the
browser test reads). Both files are deterministic functions of their inputs: no timestamps unless ``meta``
has them, sorted JSON keys, PNGs saved without a Software tag. Files are written under a temporary name and
renamed, so a half-written report is never visible.

The verdict at the top leads with what a player notices (the idle test, KOs, the floor, move timing; the model
alone and with the game rules), then compares the model with the baselines and two fixed bars:

- the **reference system** (the best earlier Melee world model we know of), like with like: at horizon 20 its
  position error is 8.88 game units and its action accuracy 53.0%; its means over steps 1..20 are 4.80 and
  77.5%. The model's error at step 20 is read against the first pair, its mean over steps 1..20 against the
  second;
- the **watchable bar**: mean position error < 3.0 over steps 1..10 and < 6.0 over 1..20, action accuracy
  > 85% over 1..10 and > 70% over 1..20.

"Beats constant velocity at 5-20 frames" means a lower position error at each of the horizons 5, 10 and 20
(those <= H).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meleewm.atomic import write_text_atomic
from meleewm.eval.metrics import (
    HIGHER_IS_BETTER,
    POS_X,
    POS_Y,
    ROLLOUT_METRIC_NAMES,
    RolloutSet,
    cumulative_curves,
    step_curves,
    to_jsonable,
)
from meleewm.melee import geometry, stage_name

# The reference system at step 20, and its mean over steps 1..20 (compare horizon with horizon, mean with mean).
REFERENCE_AT = {"horizon": 20, "position_error": 8.88, "action_accuracy": 0.530}
REFERENCE_MEAN = {"k": 20, "position_error": 4.80, "action_accuracy": 0.775}
WATCHABLE = {
    10: {"position_error": 3.0, "action_accuracy": 0.85},
    20: {"position_error": 6.0, "action_accuracy": 0.70},
}
VERDICT_HORIZONS = (5, 10, 20)
MODEL = "model"
MODEL_WITH_RULES = "model_with_rules"
BASELINE_ORDER = (MODEL_WITH_RULES, "persistence", "constant_velocity")
# Plausibility checks that are rules of the game (the rules report), with the player's words for them.
RULE_CHECKS = {"outside_blast_zone": "alive outside a blast zone", "percent_decrease": "percent falls",
               "stocks_not_one_ko": "stocks change other than by one KO", "inside_stage_body": "inside the stage's floor"}
N_TRAJECTORIES = 4

SECTIONS = (
    "meta",
    "verdict",
    "idle",
    "action-timing",
    "events",
    "rules",
    "summary",
    "rollout",
    "teacher-forced",
    "ko-timing",
    "plausibility",
    "breakdowns",
    "plots",
)

LABELS = {
    "position_error": "position error (game units)",
    "action_accuracy": "action accuracy",
    "percent_error": "percent error (%)",
    "velocity_error": "velocity error (units/frame)",
    "stocks_accuracy": "stocks accuracy",
}


# ---------------------------------------------------------------------------------------------------------------
# Verdict


def _by(records: list[dict[str, Any]] | None, key: str) -> dict[int, dict[str, Any]]:
    return {int(r[key]): r for r in (records or [])}


def _lt(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and a < b


def verdict(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict as data: ``{"status": "OK" | "BROKEN" | "NO MODEL", "headline": str, "lines": [str],
    "beats_constant_velocity": bool | None, "beats_reference": bool | None, "watchable": bool | None}``."""
    rollout = metrics.get("rollout", {}) or {}
    summary = metrics.get("summary", {}) or {}
    out: dict[str, Any] = {"lines": [], "beats_constant_velocity": None, "beats_reference": None, "watchable": None}
    if MODEL not in rollout:
        out.update(status="NO MODEL", headline="No model predictions were evaluated.")
        return out
    model_h = _by(rollout[MODEL], "horizon")
    hs = [h for h in VERDICT_HORIZONS if h in model_h]
    lines = out["lines"]
    out["player_lines"] = player_lines(metrics)

    def compare(base: str) -> bool | None:
        if base not in rollout or not hs:
            return None
        base_h = _by(rollout[base], "horizon")
        wins = [_lt(model_h[h]["position_error"], base_h[h]["position_error"]) for h in hs]
        parts = ", ".join(
            f"{h}: {_fmt(model_h[h]['position_error'])} vs {_fmt(base_h[h]['position_error'])}" for h in hs
        )
        lines.append(f"Position error at {_span(hs)} frames, model vs {base}: {parts}.")
        return all(wins)

    beats_cv = compare("constant_velocity")
    beats_p = compare("persistence")
    if "persistence" in rollout and hs:
        base_h = _by(rollout["persistence"], "horizon")
        parts = ", ".join(
            f"{h}: {_fmt(model_h[h]['action_accuracy'], 'action_accuracy')} vs "
            f"{_fmt(base_h[h]['action_accuracy'], 'action_accuracy')}"
            for h in hs
        )
        lines.append(f"Action accuracy at {_span(hs)} frames, model vs persistence: {parts}.")
    out["beats_constant_velocity"] = beats_cv

    s = _by(summary.get(MODEL), "k")
    at = model_h.get(REFERENCE_AT["horizon"])
    mean = s.get(REFERENCE_MEAN["k"])
    if at is not None and mean is not None:
        verdicts = []
        for what, r, ref in ((f"at step {REFERENCE_AT['horizon']}", at, REFERENCE_AT),
                             (f"mean over steps 1..{REFERENCE_MEAN['k']}", mean, REFERENCE_MEAN)):
            pos_ok = _lt(r["position_error"], ref["position_error"] + 1e-12)
            acc_ok = r["action_accuracy"] is not None and r["action_accuracy"] >= ref["action_accuracy"]
            verdicts.append(pos_ok and acc_ok)
            lines.append(
                f"Reference system, {what}: position error {ref['position_error']} and action accuracy "
                f"{ref['action_accuracy']:.1%}; the model: {_fmt(r['position_error'])} and "
                f"{_fmt(r['action_accuracy'], 'action_accuracy')} ("
                + ("at or better than the reference" if pos_ok and acc_ok else "behind the reference on " + " and ".join(
                    name for name, ok in (("position", pos_ok), ("action accuracy", acc_ok)) if not ok))
                + ")."
            )
        out["beats_reference"] = all(verdicts)
    if all(k in s for k in WATCHABLE):
        fails = []
        for k, bar in WATCHABLE.items():
            if not _lt(s[k]["position_error"], bar["position_error"]):
                fails.append(
                    f"position error over 1..{k} is {_fmt(s[k]['position_error'])} (bar < {bar['position_error']})"
                )
            acc = s[k]["action_accuracy"]
            if acc is None or not acc > bar["action_accuracy"]:
                fails.append(
                    f"action accuracy over 1..{k} is {_fmt(acc, 'action_accuracy')} "
                    f"(bar > {bar['action_accuracy']:.0%})"
                )
        out["watchable"] = not fails
        lines.append("Watchable bar: met." if not fails else "Watchable bar: not met: " + "; ".join(fails) + ".")

    plaus = (metrics.get("plausibility") or {}).get(MODEL) or {}
    nonfinite = (plaus.get("nonfinite") or {}).get("count")
    if nonfinite:
        lines.append(f"WARNING: the model produced non-finite values in {nonfinite} entries.")

    if beats_cv is None:
        out["status"] = "OK" if beats_p else "BROKEN" if beats_p is False else "UNKNOWN"
        out["headline"] = "No constant-velocity baseline to compare with."
    elif beats_cv:
        out["status"] = "OK"
        out["headline"] = f"The model beats constant velocity at {_span(hs)} frames."
        if out["watchable"]:
            out["headline"] += " It meets the watchable bar."
    else:
        out["status"] = "BROKEN"
        out["headline"] = f"BROKEN: the model does not beat constant velocity at {_span(hs)} frames."
    return out


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


# The two rollouts every player-facing measure reports: what the model learned, and what the rules enforce on it.
ROLLOUT_LABELS = ((MODEL, "model alone"), (MODEL_WITH_RULES, "with rules"))


def player_lines(metrics: Mapping[str, Any]) -> list[str]:
    """What a player would notice, in words, for the model alone and with the game rules."""
    lines = []
    idle = metrics.get("idle") or {}
    if MODEL in idle:
        parts = [f"{label}: moves up to {_fmt(idle[n]['max_displacement'])} units, percent changes by up to "
                 f"{_fmt(idle[n]['percent_change'])}, idle action on {_pct(idle[n]['idle_share'])} of frames, "
                 f"{idle[n]['stocks_lost']} stocks lost"
                 for n, label in ROLLOUT_LABELS if n in idle]
        lines.append(f"Idle {idle['frames'] / 60:.0f} s, controllers neutral ({len(idle['starts'])} starts; in Melee "
                     f"nothing moves): " + "; ".join(parts) + ".")
    plaus = metrics.get("plausibility") or {}
    if MODEL in plaus:
        for check, words in RULE_CHECKS.items():
            rates = [f"{label} {_pct((plaus.get(n, {}).get(check) or {}).get('rate'))}"
                     for n, label in (*ROLLOUT_LABELS, ("truth", "real games"))
                     if n in plaus]
            lines.append(f"Frames {words}: " + ", ".join(rates) + ".")
    events = metrics.get("events") or {}
    for kind, words in (("ko", "KOs"), ("hit", "hits")):
        section = events.get(kind) or {}
        if MODEL in section:
            parts = [f"{label} {section[n]['hits']} of {section[n]['events']} ({section[n]['false_alarms']} false alarms)"
                     for n, label in ROLLOUT_LABELS if n in section]
            lines.append(f"Real {words} predicted within ±{section['tolerance']} frames, from {events['lead']} frames "
                         f"before: " + "; ".join(parts) + ".")
    timing = metrics.get("action_timing") or {}
    if MODEL in timing:
        parts = [f"{label} {_fmt(timing[n]['overall']['median_abs_error'])} frames "
                 f"({timing[n]['overall']['reproduced']} of {timing[n]['overall']['onsets']} actions reproduced)"
                 for n, label in ROLLOUT_LABELS if n in timing]
        lines.append("Move durations, median absolute error: " + "; ".join(parts) + ".")
    return lines


def _span(hs) -> str:
    return f"{hs[0]}–{hs[-1]}" if len(hs) > 1 else str(hs[0]) if hs else "no"


# ---------------------------------------------------------------------------------------------------------------
# Formatting


def _fmt(v: Any, metric: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if (
            "accuracy" in metric
            or "f1" in metric
            or metric in ("rate", "frequency", "detection_rate", "macro", "micro", "per_flag")
        ):
            return f"{100 * v:.1f}%"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _predictors(metrics: Mapping[str, Any], section: str) -> list[str]:
    names = list((metrics.get(section) or {}).keys())
    first = [n for n in (MODEL, *BASELINE_ORDER) if n in names]
    return first + sorted(n for n in names if n not in first)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        out = []
        for k in sorted(obj, key=str):
            out += _flatten(obj[k], f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and obj and all(isinstance(x, (int, float)) or x is None for x in obj):
        return [(prefix, obj)]
    if isinstance(obj, list):
        out = []
        for i, x in enumerate(obj):
            out += _flatten(x, f"{prefix}[{i}]")
        return out
    return [(prefix, obj)]


# ---------------------------------------------------------------------------------------------------------------
# Plots


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
    """Per-step error vs horizon, and the summary (mean over 1..K) with the reference and watchable bars."""
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
            y = np.array([np.nan if v is None else v for v in curves[n][metric]], float)
            ax.plot(steps, y, label=n, **_style(n))
        ax.set_xscale("log")
        ax.set_xlabel("step after warm-up (frames)")
        ax.set_ylabel(LABELS[metric])
        ax.set_title(f"{LABELS[metric]} at each step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        out.append((f"{LABELS[metric]} vs horizon", _png(fig)))
    kmax = min(h, 60)
    for metric in ("position_error", "action_accuracy"):
        fig = _figure()
        ax = fig.add_subplot()
        for n in names:
            y = np.array([np.nan if v is None else v for v in cums[n][metric][:kmax]], float)
            ax.plot(steps[:kmax], y, label=n, **_style(n))
        if REFERENCE_MEAN["k"] <= kmax:
            ax.plot([REFERENCE_MEAN["k"]], [REFERENCE_MEAN[metric]], "k*", ms=12, label="reference system")
        wk = [k for k in WATCHABLE if k <= kmax]
        if wk:
            ax.plot(
                wk,
                [WATCHABLE[k][metric] for k in wk],
                "gv" if metric == "position_error" else "g^",
                ms=9,
                label="watchable bar",
            )
        ax.set_xlabel("K (mean over steps 1..K)")
        ax.set_ylabel(LABELS[metric])
        ax.set_title(f"summary: {LABELS[metric]} over steps 1..K")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        out.append((f"summary {LABELS[metric]}", _png(fig)))
    return out


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


# ---------------------------------------------------------------------------------------------------------------
# HTML


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f2f2f2}
.verdict{padding:.8em 1em;border-radius:.4em;font-size:1.05em}
.OK{background:#e5f5e0}.BROKEN{background:#fde0dd}.UNKNOWN,.NO\\ MODEL{background:#eee}
.headline{font-size:1.25em;font-weight:bold}
.meta td{font-family:monospace;text-align:left}
img{max-width:100%;display:block;margin:.5em 0}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{margin:0;flex:1 1 30em}
figcaption{font-size:.8em;color:#555}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.dataset.imagesLoaded = String(ok);
  document.body.dataset.imagesTotal = String(imgs.length);
});
"""


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def _meta_html(meta: Mapping[str, Any]) -> str:
    keys = ("checkpoint_hash", "dataset_hash", "code_version", "seed", "command")
    rows = [
        [
            html.escape(k),
            _fmt(meta.get(k))
            if not isinstance(meta.get(k), (list, dict))
            else html.escape(json.dumps(to_jsonable(meta.get(k)), sort_keys=True)),
        ]
        for k in (*keys, *sorted(k for k in meta if k not in keys))
    ]
    return _table(["", "value"], rows, "meta")


def _verdict_html(v: Mapping[str, Any]) -> str:
    player = "".join(f"<li>{html.escape(x)}</li>" for x in v.get("player_lines", []))
    lines = "".join(f"<li>{html.escape(x)}</li>" for x in v.get("lines", []))
    return (
        f'<div class="verdict {html.escape(v["status"])}"><div class="headline">{html.escape(v["headline"])}</div>'
        + (f"<h3>What a player notices</h3><ul>{player}</ul><h3>Prediction error</h3>" if player else "")
        + f"<ul>{lines}</ul></div>"
    )


def _pair_names(section: Mapping[str, Any]) -> list[str]:
    return [n for n in (MODEL, MODEL_WITH_RULES) if n in section]


def _idle_html(metrics: Mapping[str, Any]) -> str:
    idle = metrics.get("idle")
    if not idle:
        return "<p>Not run (--idle-pairs 0).</p>"
    cols = ("max_displacement", "mean_displacement", "percent_change", "mean_percent_change", "idle_share",
            "stocks_lost")
    rows = [["<i>Melee</i>", "0", "0", "0", "0", "100.0%", "0"]]
    rows += [[html.escape(n)] + [_fmt(idle[n][c], "rate" if c == "idle_share" else c) for c in cols]
             for n in _pair_names(idle)]
    stages = [r["stage"] for r in idle[MODEL]["by_stage"]] if MODEL in idle else []
    stage_rows = [[html.escape(st)] + [
        _fmt(idle[n]["by_stage"][i][c], "rate" if c == "idle_share" else c)
        for n in _pair_names(idle) for c in ("max_displacement", "percent_change", "idle_share")]
        for i, st in enumerate(stages)]
    starts = ", ".join(sorted({" vs ".join(s["chars"]) for s in idle["starts"]}))
    return (f"<p>Both characters standing at the spawn points, both controllers neutral for {idle['frames']} "
            f"frames, on each legal stage ({html.escape(starts)}). Displacement from the start in game units; "
            f"percent change is the largest absolute change from 0.</p>"
            + _table(["predictor", *cols], rows)
            + _table(["stage"] + [f"{n} {c}" for n in _pair_names(idle)
                                  for c in ("max displacement", "percent change", "idle share")], stage_rows))


def _timing_html(metrics: Mapping[str, Any]) -> str:
    t = metrics.get("action_timing")
    if not t:
        return "<p>Not run (--timing-starts 0).</p>"
    names = _pair_names(t)
    rows = []
    for family in (*t["families"], "overall"):
        first = t[names[0]][family] if names else {}
        rows.append([html.escape(family), _fmt(first.get("onsets")), _fmt(first.get("median_real"))]
                    + [c for n in names for c in (_fmt(t[n][family]["median_abs_error"]),
                                                   _fmt(t[n][family]["reproduced"]))])
    return (f"<p>{t['starts']} real action onsets of (character, action) pairs seen at least {t['min_count']} "
            f"times; each rollout starts {t['lead']} frames before the onset with the real controllers. Error: "
            f"|rolled-out − real| frames in the action, over the onsets the rollout reproduced (its action begins "
            f"within ±{t['tolerance']} frames). Real games: 0.</p>"
            + _table(["family", "onsets", "median real frames"]
                     + [f"{n} {c}" for n in names for c in ("median abs error", "reproduced")], rows))


def _events_html(metrics: Mapping[str, Any]) -> str:
    e = metrics.get("events")
    if not e:
        return "<p>Not run (--event-starts 0).</p>"
    cols = ("events", "hits", "misses", "false_alarms", "detection_rate", "mean_offset")
    parts = [f"<p>Rollouts start {e['lead']} frames before each real event (real controllers fed).</p>"]
    for kind, title in (("ko", "KOs (a stock lost)"), ("hit", "hits (percent up)")):
        section = e.get(kind) or {}
        names = [n for n in ("real", MODEL, MODEL_WITH_RULES) if n in section]
        rows = [[html.escape(n)] + [_fmt(section[n].get(c), c) for c in cols] for n in names]
        parts.append(f"<h3>{title}, within ±{_fmt(section.get('tolerance'))} frames</h3>"
                     + _table(["predictor", *cols], rows))
    return "".join(parts)


def _rules_html(metrics: Mapping[str, Any]) -> str:
    plaus = metrics.get("plausibility") or {}
    names = [n for n in ("truth", MODEL, MODEL_WITH_RULES, *BASELINE_ORDER[1:]) if n in plaus]
    rows = [[html.escape(words)] + [_fmt((plaus[n].get(check) or {}).get("rate"), "rate") for n in names]
            for check, words in RULE_CHECKS.items()]
    counts = metrics.get("rule_counts") or {}
    acted = ", ".join(f"{html.escape(k)} {v}" for k, v in counts.items())
    return ("<p>Share of rolled-out (start, step, player) entries that break a rule of the game; <i>truth</i> is "
            "the real games. With rules, the rules of <code>meleewm.model.rules</code> act on every frame: "
            f"{acted or 'no rule acted'}.</p>" + _table(["rule broken", *names], rows))


def _rollout_html(metrics: Mapping[str, Any]) -> str:
    names = _predictors(metrics, "rollout")
    if not names:
        return "<p>No rollouts.</p>"
    horizons = sorted({r["horizon"] for n in names for r in metrics["rollout"][n]})
    parts = []
    for metric in ROLLOUT_METRIC_NAMES:
        rows, pp_rows = [], []
        for n in names:
            recs = _by(metrics["rollout"][n], "horizon")
            rows.append([html.escape(n)] + [_fmt(recs.get(h, {}).get(metric), metric) for h in horizons])
            per = [recs.get(h, {}).get(f"{metric}_per_player") or [] for h in horizons]
            for j in range(max((len(x) for x in per), default=0)):
                pp_rows.append([f"{html.escape(n)} P{j}"] + [_fmt(x[j] if j < len(x) else None, metric) for x in per])
        if metric in REFERENCE_AT:
            rows.append(["<i>reference system</i>"] + [_fmt(REFERENCE_AT[metric], metric)
                                                       if h == REFERENCE_AT["horizon"] else "" for h in horizons])
        better = "higher is better" if metric in HIGHER_IS_BETTER else "lower is better"
        parts.append(
            f"<h3>{html.escape(LABELS[metric])} <small>({better})</small></h3>"
            + _table(["predictor \\ step"] + [str(h) for h in horizons], rows)
            + "<details><summary>per player</summary>"
            + _table(["predictor, player"] + [str(h) for h in horizons], pp_rows)
            + "</details>"
        )
    return "".join(parts)


def _summary_html(metrics: Mapping[str, Any]) -> str:
    names = _predictors(metrics, "summary")
    ks = sorted({r["k"] for n in names for r in metrics["summary"][n]})
    cols = [(k, m) for k in ks for m in ("position_error", "action_accuracy", "percent_error")]
    header = ["predictor"] + [f"{LABELS[m].split(' (')[0]} 1..{k}" for k, m in cols]
    rows = []
    for n in names:
        recs = _by(metrics["summary"][n], "k")
        rows.append([html.escape(n)] + [_fmt(recs.get(k, {}).get(m), m) for k, m in cols])
    ref = [
        (f"{REFERENCE_MEAN[m]:.1%}" if m == "action_accuracy" else str(REFERENCE_MEAN[m]))
        if k == REFERENCE_MEAN["k"] and m in REFERENCE_MEAN
        else ""
        for k, m in cols
    ]
    rows.append(["<i>reference system (mean 1..20)</i>"] + ref)
    bar = [
        (f"&lt; {WATCHABLE[k][m]}" if m == "position_error" else f"&gt; {WATCHABLE[k][m]:.0%}")
        if k in WATCHABLE and m in WATCHABLE[k]
        else ""
        for k, m in cols
    ]
    rows.append(["<i>watchable bar</i>"] + bar)
    return (
        "<p>Means over steps 1..K after warm-up, over starts and players: the numbers comparable with the "
        "reference system.</p>" + _table(header, rows)
    )


def _teacher_forced_html(metrics: Mapping[str, Any]) -> str:
    tf = metrics.get("teacher_forced")
    if not tf:
        return "<p>Not computed for this report.</p>"
    rows = []
    for k, v in _flatten(tf):
        metric = k.rsplit(".", 1)[-1]
        rows.append([html.escape(k), ", ".join(_fmt(x, metric) for x in v) if isinstance(v, list) else _fmt(v, metric)])
    return _table(["metric", "value"], rows)


def _ko_html(metrics: Mapping[str, Any]) -> str:
    names = _predictors(metrics, "ko_timing")
    cols = (
        "true_losses",
        "detected",
        "detection_rate",
        "mean_abs_offset",
        "mean_offset",
        "predicted_losses",
        "false_alarms",
    )
    rows = [[html.escape(n)] + [_fmt(metrics["ko_timing"][n].get(c), c) for c in cols] for n in names]
    w = next((metrics["ko_timing"][n].get("window") for n in names), None)
    return (
        f"<p>A true stock loss is detected when the predictor loses a stock for the same player within "
        f"±{_fmt(w)} frames; offsets are predicted minus true frames.</p>" + _table(["predictor", *cols], rows)
    )


def _plausibility_html(metrics: Mapping[str, Any]) -> str:
    plaus = metrics.get("plausibility") or {}
    names = [n for n in ("truth", *_predictors(metrics, "plausibility")) if n in plaus]
    names = list(dict.fromkeys(names))
    checks = sorted({c for n in names for c in plaus[n]})
    rows = []
    for n in names:
        row = [html.escape(n)]
        for c in checks:
            r = plaus[n].get(c) or {}
            row.append(
                "—" if r.get("count") is None else f"{r['count']} / {r['checked']} ({_fmt(r.get('rate'), 'rate')})"
            )
        rows.append(row)
    return "<p>Violations / checked entries (rate). The <i>truth</i> row is real data, the yardstick.</p>" + _table(
        ["predictor", *checks], rows
    )


def _breakdowns_html(metrics: Mapping[str, Any]) -> str:
    bd = metrics.get("breakdowns") or {}
    names = _predictors(metrics, "breakdowns")
    if not names:
        return "<p>No breakdowns.</p>"
    steps = bd[names[0]].get("steps")
    parts = [f"<p>Over steps 1..{_fmt(steps)}, grouped by the true value.</p>"]
    for key, title in (("character", "by character"), ("stage", "by stage"), ("player", "by player")):
        ids = sorted({r["id"] for n in names for r in bd[n].get(key, [])})
        header = ["", "frames"] + [f"{n} {lab}" for n in names for lab in ("pos err", "action acc")]
        rows = []
        for i in ids:
            recs = {n: next((r for r in bd[n].get(key, []) if r["id"] == i), {}) for n in names}
            first = recs[names[0]]
            rows.append(
                [html.escape(str(first.get("name", i))), _fmt(first.get("count"))]
                + [_fmt(recs[n].get(m), m) for n in names for m in ("position_error", "action_accuracy")]
            )
        parts.append(f"<h3>{title}</h3>" + _table(header, rows))
    if MODEL in bd:
        act = bd[MODEL].get("action") or {}
        others = [n for n in names if n != MODEL]
        lookup = {
            n: {(r["action"], r["character"]): r for r in (bd[n].get("action") or {}).get("all", [])} for n in others
        }
        for key, title in (
            ("most_frequent", "most frequent true actions"),
            ("worst", f"worst-predicted true actions (seen at least {act.get('min_count')} times)"),
        ):
            rows = []
            for r in act.get(key, []):
                k = (r["action"], r["character"])
                rows.append(
                    [
                        html.escape(r["name"]),
                        str(r["action"]),
                        _fmt(r["count"]),
                        _fmt(r["frequency"], "frequency"),
                        _fmt(r["action_accuracy"], "action_accuracy"),
                        _fmt(r["position_error"]),
                    ]
                    + [_fmt(lookup[n].get(k, {}).get("action_accuracy"), "action_accuracy") for n in others]
                )
            parts.append(
                f"<h3>{html.escape(title)}</h3>"
                + _table(
                    ["action", "id", "frames", "share", "model action acc", "model pos err"]
                    + [f"{n} action acc" for n in others],
                    rows,
                )
            )
    return "".join(parts)


def _plots_html(plots: list[tuple[str, str]]) -> str:
    figs = "".join(
        f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}">'
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for t, b in plots
    )
    return f'<div class="plots">{figs}</div>'


def render_html(metrics: Mapping[str, Any], rollouts: RolloutSet, meta: Mapping[str, Any]) -> str:
    """The report page as a string (see the module docstring)."""
    v = metrics.get("verdict") or verdict(metrics)
    names = [n for n in _predictors({"p": rollouts.predictions}, "p")]
    plots = _curve_plots(rollouts, names) + _action_plots(metrics) + _trajectory_plots(rollouts, names)
    n, h, p = rollouts.shape
    body = "".join(
        [
            "<h1>meleewm evaluation report</h1>",
            f"<p>{n} rollouts of {h} steps, {p} players; predictors: {html.escape(', '.join(names))}.</p>",
            _section("meta", "Run", _meta_html(meta)),
            _section("verdict", "Verdict", _verdict_html(v)),
            _section("idle", "Idle test", _idle_html(metrics)),
            _section("action-timing", "Action timing", _timing_html(metrics)),
            _section("events", "Event-conditioned starts", _events_html(metrics)),
            _section("rules", "Rules report: model alone and with rules", _rules_html(metrics)),
            _section("summary", "Summary (reference-comparable)", _summary_html(metrics)),
            _section("rollout", "Rollout metrics per horizon", _rollout_html(metrics)),
            _section("teacher-forced", "Teacher-forced metrics", _teacher_forced_html(metrics)),
            _section("ko-timing", "KO timing", _ko_html(metrics)),
            _section("plausibility", "Plausibility", _plausibility_html(metrics)),
            _section("breakdowns", "Breakdowns", _breakdowns_html(metrics)),
            _section("plots", "Plots", _plots_html(plots)),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>meleewm evaluation report</title>'
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>{body}</body></html>\n"
    )


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation found, as metrics.json holds it: ``meta`` (what was evaluated, and how), ``metrics``
    (rollout, summary, teacher_forced, idle... JSON-ready, no NaN) and the ``verdict`` (:func:`verdict`)."""
    meta: dict[str, Any]
    metrics: dict[str, Any]
    verdict: dict[str, Any]

    @classmethod
    def of(cls, metrics: Mapping[str, Any], meta: Mapping[str, Any]) -> EvalResult:
        m = to_jsonable(metrics)
        return cls(meta=to_jsonable(meta), metrics=m, verdict=m.get("verdict") or verdict(m))

    def to_json(self) -> str:
        """The text of metrics.json: ``{"meta", "metrics", "verdict"}``, sorted keys."""
        doc = {"meta": self.meta, "metrics": self.metrics, "verdict": self.verdict}
        return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"


def write_report(out_dir: str | os.PathLike, result: EvalResult, rollouts: RolloutSet) -> Path:
    """Write ``metrics.json`` and ``report.html`` into ``out_dir`` (created if needed); return report.html's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "metrics.json", result.to_json())
    path = out / "report.html"
    write_text_atomic(path, render_html(result.metrics, rollouts, result.meta))
    return path
