"""Measures of what a player notices, each for the model alone and the model with the game rules:

* **Idle test** (:func:`idle_test`): both characters standing on a legal stage, both controllers neutral for
  30 s. In Melee nothing moves: displacement 0, percent unchanged, the idle action (STANDING) on every frame.
* **Action timing** (:func:`action_timing`): rollouts that start a few frames before a real action begins, with
  the real controllers fed; the rollout's duration of that action against the real one, per family.
* **Event-conditioned starts** (:func:`event_detection`): rollouts that start a fixed number of frames before a
  real KO (a stock lost) or a real hit (percent up); is the event predicted within a tolerance, and how many
  predicted events match nothing (false alarms).

All rollouts go through ``meleewm.model.rollout.rollout``, the step of training, eval, dream and play.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from meleewm.data.starts import synthetic_inputs
from meleewm.data.step import StepInput
from meleewm.data.windows import WindowDataset
from meleewm.melee.actions import ACTION_IDS, FIRST_SPECIAL
from meleewm.melee.characters import character_name
from meleewm.melee.stages import LEGAL_STAGES, stage_name
from meleewm.model.rollout import rollout, rollout_batch
from meleewm.model.rules import GameRules
from meleewm.model.world import WorldModel

Predictor = tuple[str, GameRules | None]   # (name, rules or None for the model alone)

IDLE_FRAMES = 1800
# Character pairs (select-screen ids) of the idle test: Falco–Fox, Marth–Sheik, Captain Falcon–Jigglypuff.
IDLE_PAIRS: tuple[tuple[int, int], ...] = ((20, 2), (9, 19), (0, 15))
IDLE_ACTIONS = frozenset({ACTION_IDS["STANDING"]})

TIMING_LEAD = 5          # frames of real controllers fed (closed loop) before the action begins
TIMING_TOLERANCE = 5     # the rollout's action may begin this many frames early or late
TIMING_MAX_DURATION = 80
TIMING_MIN_COUNT = 5     # (character, action) pairs seen fewer times in the games are not measured


def _ids(names: str) -> frozenset[int]:
    return frozenset(ACTION_IDS[n] for n in names.split())


FAMILIES: dict[str, frozenset[int]] = {
    "jab": _ids("NEUTRAL_ATTACK_1 NEUTRAL_ATTACK_2 NEUTRAL_ATTACK_3"),
    "dash/run": _ids("DASHING RUNNING RUN_DIRECT RUN_BRAKE TURNING_RUN"),
    "jump/landing": _ids("KNEE_BEND JUMPING_FORWARD JUMPING_BACKWARD JUMPING_ARIAL_FORWARD JUMPING_ARIAL_BACKWARD "
                         "LANDING LANDING_SPECIAL NAIR_LANDING FAIR_LANDING BAIR_LANDING UAIR_LANDING DAIR_LANDING"),
    "shield": _ids("SHIELD_START SHIELD SHIELD_RELEASE SHIELD_STUN"),
    "grab": _ids("GRAB GRAB_PULLING GRAB_RUNNING GRAB_RUNNING_PULLING GRAB_WAIT GRAB_PUMMEL GRAB_BREAK "
                 "THROW_FORWARD THROW_BACK THROW_UP THROW_DOWN"),
}
SPECIALS = "specials"
FAMILY_NAMES = (*FAMILIES, SPECIALS)

EVENT_LEAD = 60          # frames before the real event that the rollout starts
EVENT_AFTER = 30
KO_TOLERANCE, HIT_TOLERANCE = 10, 5
HIT_MIN_PERCENT = 0.9    # the smallest hit in Melee adds 1 %; model noise below this is no hit


def family_of(action: int) -> str | None:
    if action >= FIRST_SPECIAL:
        return SPECIALS
    return next((name for name, ids in FAMILIES.items() if action in ids), None)


def _median(values) -> float | None:
    return float(np.median(values)) if len(values) else None


def _decoded(model: WorldModel, out: dict) -> dict[str, np.ndarray]:
    return model.spec.decode_state(out["state_cont"], out["state_bin"], out["state_cat"])


# -- idle ---------------------------------------------------------------------------------------------------------

def idle_inputs(model: WorldModel, stages: Sequence[int], pairs: Sequence[tuple[int, int]]):
    """Warm-up inputs (one frame: both standing at the spawn points) for every stage × pair, and the starts."""
    spec, starts, frames = model.spec, [], []
    for stage in stages:
        for pair in pairs:
            x, values, _ = synthetic_inputs(spec, stage, pair, "standing")
            frames.append(x)
            starts.append((int(stage), tuple(int(c) for c in pair), values))
    neutral = spec.encode_ctrl_columns({"pre_joystick_x": np.zeros((len(frames), 2), np.float32)})
    warm = StepInput.cat(frames).replace(ctrl=torch.from_numpy(neutral)).as_sequence()   # one warm-up frame
    return warm, starts


@torch.no_grad()
def idle_test(model: WorldModel, predictors: Sequence[Predictor], *, frames: int = IDLE_FRAMES,
              stages: Sequence[int] = LEGAL_STAGES, pairs: Sequence[tuple[int, int]] = IDLE_PAIRS[:2]) -> dict:
    """Both controllers neutral for ``frames`` frames from a standing start on each stage and pair.

    Per predictor: max displacement from the start (game units; mean and max over characters), the percent
    change (largest absolute change over the run, mean and max), the share of frames in the idle action, stocks
    lost, and one row per stage. The yardstick is Melee itself: 0, 0, 100 %, 0."""
    warm, starts = idle_inputs(model, stages, pairs)
    ctrl = warm.ctrl[:, :1].expand(-1, frames - 1, -1, -1)
    out: dict = {"frames": int(frames), "starts": [{"stage": s, "stage_name": stage_name(s),
                                                    "chars": [character_name(c) for c in pair]}
                                                   for s, pair, _ in starts],
                 "real": {"max_displacement": 0.0, "percent_change": 0.0, "idle_share": 1.0, "stocks_lost": 0}}
    x0 = np.stack([v["post_position_x"] for _, _, v in starts])[:, None]
    y0 = np.stack([v["post_position_y"] for _, _, v in starts])[:, None]
    for name, rules in predictors:
        s = _decoded(model, rollout(model, warm, ctrl, rules=rules))
        displacement = np.hypot(s["post_position_x"] - x0, s["post_position_y"] - y0).max(1)     # [N, 2]
        percent = np.abs(s["post_percent"]).max(1)                                                  # from 0 %
        idle = np.isin(s["post_state"], list(IDLE_ACTIONS)).mean(1)
        stocks = s["post_stocks"]
        lost = np.clip(4 - np.where(stocks >= 0, stocks, 4).min(1), 0, None)
        stage_ids = np.array([st for st, _, _ in starts])
        out[name] = {
            "max_displacement": float(displacement.max()), "mean_displacement": float(displacement.mean()),
            "percent_change": float(percent.max()), "mean_percent_change": float(percent.mean()),
            "idle_share": float(idle.mean()), "stocks_lost": int(lost.sum()),
            "by_stage": [{"stage": stage_name(st), "max_displacement": float(displacement[stage_ids == st].max()),
                          "percent_change": float(percent[stage_ids == st].max()),
                          "idle_share": float(idle[stage_ids == st].mean())} for st in stages],
        }
    return out


# -- action timing ------------------------------------------------------------------------------------------------

@dataclass
class TimingStart:
    game: int
    start: int           # window start (game frame index) of the rollout
    player: int
    action: int          # raw action id
    action_index: int    # its vocabulary index
    character: int       # internal id
    duration: int        # real frames in the action
    family: str


def _runs(actions: np.ndarray):
    """(onset index, run length) of every action run in a [F] array."""
    change = np.flatnonzero(np.diff(actions) != 0) + 1
    onsets = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(actions)]])
    return onsets, ends - onsets


def timing_starts(windows: WindowDataset, *, count: int, warmup: int, seed: int = 0,
                  lead: int = TIMING_LEAD, max_duration: int = TIMING_MAX_DURATION,
                  min_count: int = TIMING_MIN_COUNT) -> list[TimingStart]:
    """Up to ``count`` action onsets of the windows' games, spread evenly over the families (seeded), of the
    (character, action) pairs with at least ``min_count`` measurable onsets."""
    cache, spec = windows.cache, windows.cache.spec
    ia, ic = spec.cat_index("post_state"), spec.cat_index("post_character")
    action_lut, char_lut = spec.decode_lut("post_state"), spec.decode_lut("post_character")
    found: dict[tuple[int, int], list[TimingStart]] = defaultdict(list)
    for g in windows.games:
        off, length = int(cache.offsets[g]), int(cache.lengths[g])
        cat = np.asarray(cache.arrays["cat"][off:off + length])
        for p in range(2):
            index = cat[:, p, ia]
            onsets, durations = _runs(index)
            for t, d in zip(onsets.tolist(), durations.tolist()):
                s = t - warmup - lead
                if t == 0 or s < 0 or d > max_duration or t + max_duration + 10 >= length:
                    continue
                raw = int(action_lut[index[t]])
                family = family_of(raw) if raw >= 0 else None
                if family is None:
                    continue
                char = int(char_lut[cat[t, p, ic]])
                found[(char, raw)].append(TimingStart(int(g), s, p, raw, int(index[t]), char, int(d), family))
    by_family: dict[str, list[TimingStart]] = defaultdict(list)
    for onsets in found.values():
        if len(onsets) >= min_count:
            for o in onsets:
                by_family[o.family].append(o)
    rng = np.random.default_rng(seed)
    pools = {f: [by_family[f][i] for i in rng.permutation(len(by_family[f]))] for f in FAMILY_NAMES if by_family[f]}
    chosen: list[TimingStart] = []
    while len(chosen) < count and any(pools.values()):
        for pool in pools.values():
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return chosen


def _duration_in(actions: np.ndarray, index: int, lead: int, tolerance: int) -> int | None:
    """Frames the rollout stays in ``index`` from its first step within ``lead ± tolerance`` (None: never)."""
    window = np.flatnonzero(actions[max(lead - tolerance, 0):lead + tolerance + 1] == index)
    if not len(window):
        return None
    begin = max(lead - tolerance, 0) + int(window[0])
    after = np.flatnonzero(actions[begin:] != index)
    return int(after[0]) if len(after) else len(actions) - begin


@torch.no_grad()
def action_timing(model: WorldModel, windows: WindowDataset, predictors: Sequence[Predictor], *, count: int,
                  warmup: int, seed: int = 0, batch_size: int = 64, progress: Callable | None = None) -> dict:
    """Real vs rolled-out duration of actions, from ``TIMING_LEAD`` frames before each onset (real controllers).

    Per predictor and family (and overall): the median absolute error in frames over the onsets the rollout
    reproduced (its action begins within ±TIMING_TOLERANCE frames), how many it reproduced, and the median real
    duration (the yardstick's scale)."""
    chosen = timing_starts(windows, count=count, warmup=warmup, seed=seed)
    horizon = TIMING_LEAD + TIMING_MAX_DURATION + 10     # what timing_starts leaves room for
    ia = model.spec.cat_index("post_state")
    out: dict = {"starts": len(chosen), "lead": TIMING_LEAD, "tolerance": TIMING_TOLERANCE,
                 "min_count": TIMING_MIN_COUNT, "families": list(FAMILY_NAMES)}
    for name, rules in predictors:
        errors: dict[str, list[int]] = defaultdict(list)
        missed: dict[str, int] = defaultdict(int)
        real: dict[str, list[int]] = defaultdict(list)
        for begin in range(0, len(chosen), batch_size):
            part = chosen[begin:begin + batch_size]
            batch, warm = rollout_batch(windows, [(o.game, o.start) for o in part], warmup, horizon)
            actions = rollout(model, warm, batch["ctrl"][:, warmup:], rules=rules)["state_cat"][..., ia].numpy()
            for i, o in enumerate(part):
                real[o.family].append(o.duration)
                got = _duration_in(actions[i, :, o.player], o.action_index, TIMING_LEAD, TIMING_TOLERANCE)
                if got is None:
                    missed[o.family] += 1
                else:
                    errors[o.family].append(abs(got - o.duration))
            if progress:
                progress(len(part))
        rows = {}
        for family in FAMILY_NAMES:
            rows[family] = {"onsets": len(real[family]), "reproduced": len(errors[family]),
                            "median_abs_error": _median(errors[family]), "median_real": _median(real[family])}
        everything = [e for f in FAMILY_NAMES for e in errors[f]]
        rows["overall"] = {"onsets": len(chosen), "reproduced": len(everything),
                           "median_abs_error": _median(everything),
                           "median_real": _median([o.duration for o in chosen])}
        out[name] = rows
    return out


# -- event-conditioned starts -------------------------------------------------------------------------------------

def _events(kind: str, stocks: np.ndarray, percent: np.ndarray) -> np.ndarray:
    """[N, H, 2] bool: a KO (the stock count falls) or a hit (percent rises by HIT_MIN_PERCENT or more) at each
    step, from the previous step (``stocks``/``percent`` [N, H+1, 2], the start's frame first)."""
    if kind == "ko":
        s = np.where(stocks >= 0, stocks, np.nan)
        with np.errstate(invalid="ignore"):
            return np.diff(s, axis=1) < -0.5
    return np.diff(percent, axis=1) >= HIT_MIN_PERCENT


def event_starts(windows: WindowDataset, kind: str, *, count: int, warmup: int, seed: int = 0,
                 lead: int = EVENT_LEAD):
    """(game, window start, player) for up to ``count`` real KOs or hits (seeded sample), each window starting
    ``warmup + lead`` frames before its event."""
    cache, spec = windows.cache, windows.cache.spec
    i_stocks, i_percent = spec.cat_index("post_stocks"), spec.cont_index("post_percent")
    stocks_lut = spec.decode_lut("post_stocks")
    found = []
    for g in windows.games:
        off, length = int(cache.offsets[g]), int(cache.lengths[g])
        stocks = stocks_lut[np.asarray(cache.arrays["cat"][off:off + length, :, i_stocks])][None].astype(np.float64)
        percent = spec.denormalise("post_percent", np.asarray(cache.arrays["cont"][off:off + length, :, i_percent],
                                                              np.float64))[None]
        events = _events(kind, stocks, percent)[0]                       # event at frame t + 1
        for t, p in zip(*np.nonzero(events)):
            frame = int(t) + 1
            s = frame - warmup - lead
            if s >= 0 and frame + EVENT_AFTER + 2 < length:
                found.append((int(g), s, int(p)))
    rng = np.random.default_rng(seed)
    return [found[i] for i in sorted(rng.permutation(len(found))[:count])]


def match_events(true: np.ndarray, predicted: np.ndarray, centre: int, player: np.ndarray, tolerance: int) -> dict:
    """Hits, misses and false alarms: each start's real event (step ``centre`` of its ``player``) is hit when the
    predictor has an event of that player within ±``tolerance`` steps; a predicted event within ``tolerance`` of
    no real event (of that player, in that rollout) is a false alarm."""
    hits, offsets, false_alarms = 0, [], 0
    for i in range(true.shape[0]):
        p = int(player[i])
        near = np.flatnonzero(predicted[i, :, p])
        close = near[np.abs(near - centre) <= tolerance]
        if len(close):
            hits += 1
            offsets.append(int(close[np.argmin(np.abs(close - centre))] - centre))
        for q in range(true.shape[2]):
            real = np.flatnonzero(true[i, :, q])
            for step in np.flatnonzero(predicted[i, :, q]):
                if not len(real) or np.abs(real - step).min() > tolerance:
                    false_alarms += 1
    n = true.shape[0]
    return {"events": n, "hits": hits, "misses": n - hits, "false_alarms": false_alarms,
            "detection_rate": hits / n if n else None,
            "mean_offset": float(np.mean(offsets)) if offsets else None}


@torch.no_grad()
def event_detection(model: WorldModel, windows: WindowDataset, predictors: Sequence[Predictor], *, count: int,
                    warmup: int, seed: int = 0, lead: int = EVENT_LEAD, batch_size: int = 64,
                    progress: Callable | None = None) -> dict:
    """KOs (within ±KO_TOLERANCE frames) and hits (±HIT_TOLERANCE) from ``lead`` frames before each real one,
    real controllers fed: per predictor, hits, misses and false alarms. A short lead asks whether the model sees
    the event coming; the default, whether a rollout gets there."""
    if lead < 1:
        raise ValueError(f"the event lead must be at least 1 frame, got {lead}")
    horizon = lead + EVENT_AFTER + 1
    spec = model.spec
    out: dict = {"lead": lead, "after": EVENT_AFTER}
    for kind, tolerance in (("ko", KO_TOLERANCE), ("hit", HIT_TOLERANCE)):
        starts = event_starts(windows, kind, count=count, warmup=warmup, seed=seed, lead=lead)
        section: dict = {"tolerance": tolerance, "starts": len(starts)}
        if not starts:
            out[kind] = section
            continue
        truth, predicted = [], defaultdict(list)
        for begin in range(0, len(starts), batch_size):
            part = starts[begin:begin + batch_size]
            batch, warm = rollout_batch(windows, [(g, s) for g, s, _ in part], warmup, horizon)
            first = spec.decode_state(batch["state_cont"][:, warmup - 1], batch["state_bin"][:, warmup - 1],
                                      batch["state_cat"][:, warmup - 1])
            true = spec.decode_state(batch["next_cont"][:, warmup - 1:], batch["next_bin"][:, warmup - 1:],
                                     batch["next_cat"][:, warmup - 1:])
            truth.append(_series(kind, first, true))
            for name, rules in predictors:
                s = _decoded(model, rollout(model, warm, batch["ctrl"][:, warmup:], rules=rules))
                predicted[name].append(_series(kind, first, s))
            if progress:
                progress(len(part))
        true_events = np.concatenate(truth)
        players = np.array([p for _, _, p in starts])
        for name, _ in predictors:
            section[name] = match_events(true_events, np.concatenate(predicted[name]), lead, players, tolerance)
        section["real"] = match_events(true_events, true_events, lead, players, tolerance)
        out[kind] = section
    return out


def _series(kind: str, first: dict, state: dict) -> np.ndarray:
    stocks = np.concatenate([first["post_stocks"][:, None], state["post_stocks"]], 1).astype(np.float64)
    percent = np.concatenate([first["post_percent"][:, None], state["post_percent"]], 1).astype(np.float64)
    return _events(kind, stocks, percent)


__all__ = ["FAMILIES", "FAMILY_NAMES", "IDLE_PAIRS", "action_timing", "event_detection", "family_of", "idle_test",
           "match_events", "timing_starts"]
