"""The evaluation report: ``metrics.json`` (every number) and a self-contained ``report.html``.

``report.html`` has no external resources: plots are PNGs embedded as base64 data URIs and the only script
is inline (on load it writes the number of loaded images into ``<body data-images-loaded=...>``, which the
browser test reads). Both files are deterministic functions of their inputs: no timestamps unless ``meta``
has them, sorted JSON keys, PNGs saved without a Software tag. Files are written under a temporary name and
renamed, so a half-written report is never visible.

The verdict at the top is :mod:`meleewm.eval.verdict`, the plots :mod:`meleewm.eval.plots`.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meleewm.atomic import write_text_atomic
from meleewm.eval.metrics import HIGHER_IS_BETTER, ROLLOUT_METRIC_NAMES, RolloutSet, to_jsonable
from meleewm.eval.plots import LABELS, report_plots
from meleewm.eval.verdict import (BASELINE_ORDER, MODEL, MODEL_WITH_RULES, REFERENCE_AT, REFERENCE_MEAN, RULE_CHECKS,
                                  WATCHABLE, by_key, format_value, verdict)

SECTIONS = (
    "meta",
    "verdict",
    "idle",
    "action-timing",
    "events",
    "items",
    "rules",
    "summary",
    "rollout",
    "teacher-forced",
    "ko-timing",
    "plausibility",
    "breakdowns",
    "plots",
)


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
            format_value(meta.get(k))
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
    rows += [[html.escape(n)] + [format_value(idle[n][c], "rate" if c == "idle_share" else c) for c in cols]
             for n in _pair_names(idle)]
    stages = [r["stage"] for r in idle[MODEL]["by_stage"]] if MODEL in idle else []
    stage_rows = [[html.escape(st)] + [
        format_value(idle[n]["by_stage"][i][c], "rate" if c == "idle_share" else c)
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
        rows.append([html.escape(family), format_value(first.get("onsets")), format_value(first.get("median_real"))]
                    + [c for n in names for c in (format_value(t[n][family]["median_abs_error"]),
                                                   format_value(t[n][family]["reproduced"]))])
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
    parts = [f"<p>Rollouts start {e['lead']} frame{'' if e['lead'] == 1 else 's'} before each real event (real "
             "controllers fed).</p>"]
    for kind, title in (("ko", "KOs (a stock lost)"), ("hit", "hits (percent up)")):
        section = e.get(kind) or {}
        names = [n for n in ("real", MODEL, MODEL_WITH_RULES) if n in section]
        rows = [[html.escape(n)] + [format_value(section[n].get(c), c) for c in cols] for n in names]
        parts.append(f"<h3>{title}, within ±{format_value(section.get('tolerance'))} frames</h3>"
                     + _table(["predictor", *cols], rows))
    return "".join(parts)


def _items_html(metrics: Mapping[str, Any]) -> str:
    items = metrics.get("items")
    if not items:
        return "<p>Not measured: the model does not predict items (data.items off).</p>"
    names = [n for n, v in items.items() if isinstance(v, dict)]  # predictors, in the order measured
    horizons = [r["horizon"] for r in items[names[0]]["by_horizon"]]
    rows = [[html.escape(n)] + [f"{format_value(r['presence_f1'], 'rate')} / {format_value(r['position_error'])}"
                                for r in items[n]["by_horizon"]] for n in names]
    return (f"<p>Projectiles and items, slot by slot ({items['starts_with_items']} of {items['starts']} starts "
            "hold an item): presence F1 / mean position error in game units where both the rollout and the game "
            "hold an item in the slot. Persistence holds the items of the last warm-up frame.</p>"
            + _table(["predictor", *(f"h{h}" for h in horizons)], rows))


def _rules_html(metrics: Mapping[str, Any]) -> str:
    plaus = metrics.get("plausibility") or {}
    names = [n for n in ("truth", MODEL, MODEL_WITH_RULES, *BASELINE_ORDER[1:]) if n in plaus]
    rows = [[html.escape(words)] + [format_value((plaus[n].get(check) or {}).get("rate"), "rate") for n in names]
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
            recs = by_key(metrics["rollout"][n], "horizon")
            rows.append([html.escape(n)] + [format_value(recs.get(h, {}).get(metric), metric) for h in horizons])
            per = [recs.get(h, {}).get(f"{metric}_per_player") or [] for h in horizons]
            for j in range(max((len(x) for x in per), default=0)):
                pp_rows.append([f"{html.escape(n)} P{j}"] + [format_value(x[j] if j < len(x) else None, metric) for x in per])
        if metric in REFERENCE_AT:
            rows.append(["<i>reference system</i>"] + [format_value(REFERENCE_AT[metric], metric)
                                                       if h == REFERENCE_AT["horizon"] else "" for h in horizons])
        if metric in WATCHABLE:
            bar = (f"&lt; {WATCHABLE[metric]}" if metric == "position_error" else f"&gt; {WATCHABLE[metric]:.0%}")
            rows.append(["<i>watchable bar</i>"] + [bar if h == WATCHABLE["horizon"] else "" for h in horizons])
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
        recs = by_key(metrics["summary"][n], "k")
        rows.append([html.escape(n)] + [format_value(recs.get(k, {}).get(m), m) for k, m in cols])
    ref = [
        (f"{REFERENCE_MEAN[m]:.1%}" if m == "action_accuracy" else str(REFERENCE_MEAN[m]))
        if k == REFERENCE_MEAN["k"] and m in REFERENCE_MEAN
        else ""
        for k, m in cols
    ]
    rows.append(["<i>reference system (mean 1..20)</i>"] + ref)
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
        rows.append([html.escape(k), ", ".join(format_value(x, metric) for x in v) if isinstance(v, list) else format_value(v, metric)])
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
    rows = [[html.escape(n)] + [format_value(metrics["ko_timing"][n].get(c), c) for c in cols] for n in names]
    w = next((metrics["ko_timing"][n].get("window") for n in names), None)
    return (
        f"<p>A true stock loss is detected when the predictor loses a stock for the same player within "
        f"±{format_value(w)} frames; offsets are predicted minus true frames.</p>" + _table(["predictor", *cols], rows)
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
                "—" if r.get("count") is None else f"{r['count']} / {r['checked']} ({format_value(r.get('rate'), 'rate')})"
            )
        rows.append(row)
    return ("<p>Violations / checked entries (rate); <i>percent_increase</i> counts hits taken, which should match "
            "real games, not be 0. The <i>truth</i> row is real data, the yardstick.</p>") + _table(
        ["predictor", *checks], rows
    )


def _breakdowns_html(metrics: Mapping[str, Any]) -> str:
    bd = metrics.get("breakdowns") or {}
    names = _predictors(metrics, "breakdowns")
    if not names:
        return "<p>No breakdowns.</p>"
    steps = bd[names[0]].get("steps")
    parts = [f"<p>Over steps 1..{format_value(steps)}, grouped by the true value.</p>"]
    for key, title in (("character", "by character"), ("stage", "by stage"), ("player", "by player")):
        ids = sorted({r["id"] for n in names for r in bd[n].get(key, [])})
        header = ["", "frames"] + [f"{n} {lab}" for n in names for lab in ("pos err", "action acc")]
        rows = []
        for i in ids:
            recs = {n: next((r for r in bd[n].get(key, []) if r["id"] == i), {}) for n in names}
            first = recs[names[0]]
            rows.append(
                [html.escape(str(first.get("name", i))), format_value(first.get("count"))]
                + [format_value(recs[n].get(m), m) for n in names for m in ("position_error", "action_accuracy")]
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
                        format_value(r["count"]),
                        format_value(r["frequency"], "frequency"),
                        format_value(r["action_accuracy"], "action_accuracy"),
                        format_value(r["position_error"]),
                    ]
                    + [format_value(lookup[n].get(k, {}).get("action_accuracy"), "action_accuracy") for n in others]
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
    plots = report_plots(metrics, rollouts, names)
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
            _section("items", "Projectiles and items", _items_html(metrics)),
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
