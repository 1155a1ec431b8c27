"""What a run card, its markdown and the run listing share: the file names, the metrics shown, number formats."""

from __future__ import annotations

import math

from meleewm.train.config import parse_target

CARD_JSON, CARD_MD = "card.json", "card.md"
PENDING = "_pending_"           # the one placeholder a card may hold, and only before its run ends
KEY_METRICS = ("loss/total", "action_acc", "change_acc", "position_error", "rollout_position_error")
PROBE_STEPS = 3                 # measured training steps (after one warm-up step)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_number(value, digits: int = 4) -> str:
    if not finite(value):
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"


def format_money(value: float) -> str:
    return f"{value:.2f}" if value >= 0.01 else f"{value:.2g}"


def format_duration(seconds) -> str:
    """``12.3 s``, ``4.5 min``, ``2.25 h`` (``n/a`` when unknown)."""
    if not finite(seconds):
        return "n/a"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def higher_is_better(metric: str, target: str | None = None) -> bool:
    if target:
        return parse_target(target)[0].startswith(">")
    return metric.endswith("_acc") or metric.endswith("accuracy")
