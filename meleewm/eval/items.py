"""Projectiles and items in closed loop: presence F1 and position error by horizon, slot by slot.

The encoding keeps an item in its slot while it lives (``EncodingSpec.encode_items``), so a slot of a rollout and
the same slot of the real game hold the same item when the model follows it. At each horizon h over every start
and slot: presence F1 (a predicted item where the game has one is a true positive), and the mean distance in game
units between predicted and real positions where both hold an item. Persistence (the items of the last warm-up
frame, held) is the yardstick: a laser flies, so holding it still is wrong after a few frames, and an item that
appears after the warm-up is a miss for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

PERSISTENCE = "persistence"


def _at_horizons(predicted: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray],
                 horizons: list[int]) -> dict[str, Any]:
    present_p, present_t = np.asarray(predicted["present"], bool), np.asarray(truth["present"], bool)
    distance = np.hypot(np.asarray(predicted["position_x"], np.float64) - truth["position_x"],
                        np.asarray(predicted["position_y"], np.float64) - truth["position_y"])
    rows = []
    for h in horizons:
        p, t = present_p[:, h - 1], present_t[:, h - 1]
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        both = p & t
        rows.append({
            "horizon": h, "true_items": int(t.sum()), "predicted_items": int(p.sum()),
            "presence_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
            "position_error": float(distance[:, h - 1][both].mean()) if both.any() else None,
        })
    return {"by_horizon": rows}


def item_metrics(predicted: Mapping[str, Mapping[str, np.ndarray]], truth: Mapping[str, np.ndarray],
                 context: Mapping[str, np.ndarray], horizons: Iterable[int]) -> dict[str, Any]:
    """``predicted``: predictor name -> decoded item slots ``[N, H, S]`` (``EncodingSpec.decode_items``);
    ``truth`` the same for the real games; ``context`` the slots of the last warm-up frame ``[N, S]``.
    Returns per predictor (and persistence) the presence F1 and position error at each horizon, plus how many
    real items the starts hold at all (items are rare outside projectile characters)."""
    n, h, _ = np.asarray(truth["present"]).shape
    horizons = sorted({int(x) for x in horizons if 1 <= int(x) <= h})
    held = {k: np.repeat(np.asarray(v)[:, None], h, axis=1) for k, v in context.items()}
    out = {name: _at_horizons(items, truth, horizons) for name, items in predicted.items()}
    out[PERSISTENCE] = _at_horizons(held, truth, horizons)
    out["starts_with_items"] = int(np.asarray(truth["present"]).any(axis=(1, 2)).sum())
    out["starts"] = int(n)
    return out
