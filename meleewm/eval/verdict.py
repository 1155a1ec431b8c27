"""The verdict of an evaluation: what a player would notice, and the model against the baselines and two bars.

The verdict, at the top of the report, leads with what a player notices (the idle test, KOs, the floor, move timing; the model
alone and with the game rules), then compares the model with the baselines and two fixed bars:

- the **reference system** (the best earlier Melee world model we know of), like with like: at horizon 20 its
  position error is 8.88 game units and its action accuracy 53.0%; its means over steps 1..20 are 4.80 and
  77.5%. The model's error at step 20 is read against the first pair, its mean over steps 1..20 against the
  second;
- the **watchable bar** (issue 12), at step 20 like the reference's first pair: position error < 6.0 and action
  accuracy > 70%. (It was once read off the means over 1..10 and 1..20, which a model 2.5 units and 8 points short
  of it at step 20 met.)

"Beats constant velocity at 5-20 frames" means a lower position error at each of the horizons 5, 10 and 20
(those <= H).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

# The reference system at step 20, and its mean over steps 1..20 (compare horizon with horizon, mean with mean).
REFERENCE_AT = {"horizon": 20, "position_error": 8.88, "action_accuracy": 0.530}
REFERENCE_MEAN = {"k": 20, "position_error": 4.80, "action_accuracy": 0.775}
WATCHABLE = {"horizon": 20, "position_error": 6.0, "action_accuracy": 0.70}
VERDICT_HORIZONS = (5, 10, 20)
MODEL = "model"
MODEL_WITH_RULES = "model_with_rules"
BASELINE_ORDER = (MODEL_WITH_RULES, "persistence", "constant_velocity")
# Plausibility checks that are rules of the game (the rules report), with the player's words for them.
RULE_CHECKS = {"outside_blast_zone": "alive outside a blast zone", "percent_decrease": "percent falls",
               "stocks_not_one_ko": "stocks change other than by one KO", "inside_stage_body": "inside the stage's floor",
               "standing_past_edge": "standing on air past the stage's edge",
               "standing_on_nothing": "standing where the stage has no surface",
               "ground_action_in_air": "in an action of the ground, in the air",
               "move_past_limit": "a move longer than the game's"}


def by_key(records: list[dict[str, Any]] | None, key: str) -> dict[int, dict[str, Any]]:
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
    model_h = by_key(rollout[MODEL], "horizon")
    hs = [h for h in VERDICT_HORIZONS if h in model_h]
    lines = out["lines"]
    out["player_lines"] = player_lines(metrics)

    def compare(base: str) -> bool | None:
        if base not in rollout or not hs:
            return None
        base_h = by_key(rollout[base], "horizon")
        wins = [_lt(model_h[h]["position_error"], base_h[h]["position_error"]) for h in hs]
        parts = ", ".join(
            f"{h}: {format_value(model_h[h]['position_error'])} vs {format_value(base_h[h]['position_error'])}" for h in hs
        )
        lines.append(f"Position error at {_span(hs)} frames, model vs {base}: {parts}.")
        return all(wins)

    beats_cv = compare("constant_velocity")
    beats_p = compare("persistence")
    if "persistence" in rollout and hs:
        base_h = by_key(rollout["persistence"], "horizon")
        parts = ", ".join(
            f"{h}: {format_value(model_h[h]['action_accuracy'], 'action_accuracy')} vs "
            f"{format_value(base_h[h]['action_accuracy'], 'action_accuracy')}"
            for h in hs
        )
        lines.append(f"Action accuracy at {_span(hs)} frames, model vs persistence: {parts}.")
    out["beats_constant_velocity"] = beats_cv

    s = by_key(summary.get(MODEL), "k")
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
                f"{ref['action_accuracy']:.1%}; the model: {format_value(r['position_error'])} and "
                f"{format_value(r['action_accuracy'], 'action_accuracy')} ("
                + ("at or better than the reference" if pos_ok and acc_ok else "behind the reference on " + " and ".join(
                    name for name, ok in (("position", pos_ok), ("action accuracy", acc_ok)) if not ok))
                + ")."
            )
        out["beats_reference"] = all(verdicts)
    bar_at = model_h.get(WATCHABLE["horizon"])
    if bar_at is not None:
        k, fails = WATCHABLE["horizon"], []
        if not _lt(bar_at["position_error"], WATCHABLE["position_error"]):
            fails.append(f"position error at step {k} is {format_value(bar_at['position_error'])} "
                         f"(bar < {WATCHABLE['position_error']})")
        acc = bar_at["action_accuracy"]
        if acc is None or not acc > WATCHABLE["action_accuracy"]:
            fails.append(f"action accuracy at step {k} is {format_value(acc, 'action_accuracy')} "
                         f"(bar > {WATCHABLE['action_accuracy']:.0%})")
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
        parts = [f"{label}: moves up to {format_value(idle[n]['max_displacement'])} units, percent changes by up to "
                 f"{format_value(idle[n]['percent_change'])}, idle action on {_pct(idle[n]['idle_share'])} of frames, "
                 f"{idle[n]['stocks_lost']} stocks lost"
                 for n, label in ROLLOUT_LABELS if n in idle]
        lines.append(f"Idle {idle['frames'] / 60:.0f} s, controllers neutral ({len(idle['starts'])} starts; in Melee "
                     f"nothing moves): " + "; ".join(parts) + ".")
    plaus = metrics.get("plausibility") or {}
    if MODEL in plaus:
        def rates(check: str) -> str:
            return ", ".join(f"{label} {_pct((plaus[n].get(check) or {}).get('rate'))}"
                             for n, label in (*ROLLOUT_LABELS, ("truth", "real games")) if n in plaus)
        for check, words in RULE_CHECKS.items():
            lines.append(f"Frames {words}: {rates(check)}.")
        lines.append(f"Frames where a player takes damage (percent rises): {rates('percent_increase')}.")
    events = metrics.get("events") or {}
    for kind, words in (("ko", "KOs"), ("hit", "hits")):
        section = events.get(kind) or {}
        if MODEL in section:
            parts = [f"{label} {section[n]['hits']} of {section[n]['events']} ({section[n]['false_alarms']} false alarms)"
                     for n, label in ROLLOUT_LABELS if n in section]
            lead = events["lead"]
            lines.append(f"Real {words} predicted within ±{section['tolerance']} frames, from {lead} "
                         f"frame{'' if lead == 1 else 's'} before: " + "; ".join(parts) + ".")
    items = metrics.get("items") or {}
    if MODEL in items:
        labels = [(n, label) for n, label in (*ROLLOUT_LABELS, ("persistence", "persistence")) if n in items]
        at = {n: by_key(items[n]["by_horizon"], "horizon") for n, _ in labels}
        h = max((x for x in at[MODEL] if x <= 20), default=None)
        if h is not None:
            parts = [f"{label} F1 {_pct(at[n][h]['presence_f1'])}, position error "
                     f"{format_value(at[n][h]['position_error'])}" for n, label in labels]
            lines.append(f"Projectiles and items at {h} frames ({items['starts_with_items']} of {items['starts']} "
                         f"starts hold one): " + "; ".join(parts) + ".")
    timing = metrics.get("action_timing") or {}
    if MODEL in timing:
        parts = [f"{label} {format_value(timing[n]['overall']['median_abs_error'])} frames "
                 f"({timing[n]['overall']['reproduced']} of {timing[n]['overall']['onsets']} actions reproduced)"
                 for n, label in ROLLOUT_LABELS if n in timing]
        lines.append("Move durations, median absolute error: " + "; ".join(parts) + ".")
    return lines


def _span(hs) -> str:
    return f"{hs[0]}–{hs[-1]}" if len(hs) > 1 else str(hs[0]) if hs else "no"


def format_value(v: Any, metric: str = "") -> str:
    """A number as the report writes it: a share as a percentage (by the metric's name), escaped for HTML."""
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
