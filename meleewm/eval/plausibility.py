"""Plausibility checks on rolled-out states: things a real game never (or almost never) does.

Each check looks at every (start, step, player) entry of a RawState [N, H, P] and counts violations:

- ``nonfinite``: any predicted field is NaN or ±inf.
- ``outside_blast_zone``: the position is outside the stage's blast zones (``meleewm.melee.in_blast_zone``:
  strictly inside is fine) while the action is not a death state. Only legal stages with geometry are checked.
  A live character can legitimately be above the top blast zone for a few frames (it KOs only in hitstun).
- ``percent_decrease``: percent drops by more than ``tol`` from the previous step (step 0 = the context) while
  neither this step's nor the previous step's action is a death or respawn state. Real games do this rarely
  (healing items, Ness absorbing energy), hence the ``truth`` yardstick.
- ``percent_increase``: percent rises by more than ``tol`` (on the same entries): a hit taken. Not a violation
  but the game's damage, to read against the ``truth`` row: a model that never raises the percent never hits.
- ``stocks_increase``: the stock count (rounded) rises from the previous step.
- ``stocks_not_one_ko``: the stock count changes other than by one KO at a time: by anything but -1, or by -1
  while the action is not a death state (a real KO loses its stock on the first DEAD_* frame).
- ``inside_stage_body``: a live character inside the main stage's solid body (``meleewm.melee.in_stage_body``:
  between the ledges, below the surface by more than an aerial's dip); the floor is not solid there.
- ``standing_past_edge``: a live character grounded (``post_airborne`` 0) farther out than the main stage's edge
  (``meleewm.melee.ground_edge``, by more than ``EDGE_TOL``): standing on air. Stages without that fact are skipped.
- ``standing_on_nothing``: a live character grounded, not on a ledge, where no surface of the stage is
  (``meleewm.melee.on_a_surface``: the stage's landing areas): standing on air anywhere. In real games, a character
  carried or thrown.
- ``ground_action_in_air``: a character airborne in an action of the ground (``meleewm.melee.GROUND_ACTIONS``:
  never airborne on any frame of the shared games): dashing, standing or in landing lag held up by nothing.
- ``move_past_limit``: a character in a move that has lasted longer than its limit (``meleewm.melee.moves``: the
  longest the shared games went on with it for that character), counted from the rollout's first frame (a move
  begun before it counts from there: fewer, never more). The table is measured on the shared games, the validation
  games among them, so the truth's rate is 0 by construction.
- ``impossible_action``: the action id is not one that the character was ever seen in, per the set of
  (internal character, action id) pairs from training data (``seen_actions``). Ids >= 341 (character-
  specific) must have been seen for that very character; ids < 341 (common) must have been seen for some
  character; negative ids are always impossible. Skipped (None) without the set. The character of an entry is
  the predictor's own ``post_character`` if it predicts one, else the truth's, else the start's external id.

``rate`` = count / checked entries (None when nothing was checked).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from meleewm.eval.metrics import (ACTION, AIRBORNE, CHARACTER, PERCENT, POS_X, POS_Y, STOCKS, RawState, RolloutSet,
                                  to_jsonable)
from meleewm.data.encoding import frames_in_action
from meleewm.melee import (DEAD_STATES, FIRST_SPECIAL, GROUND_ACTIONS, LEDGE_STATES, RESPAWN_STATES, geometry,
                           ground_edge, in_blast_zone, in_stage_body, on_a_surface)
from meleewm.melee.moves import moves

CHECKS: tuple[str, ...] = (
    "nonfinite",
    "outside_blast_zone",
    "percent_decrease",
    "percent_increase",
    "stocks_increase",
    "stocks_not_one_ko",
    "inside_stage_body",
    "standing_past_edge",
    "standing_on_nothing",
    "ground_action_in_air",
    "move_past_limit",
    "impossible_action",
)
PERCENT_TOL = 0.01
EDGE_TOL = 0.01   # a position put at the edge comes back from the encoding a hair past it
TRUTH = "truth"


def seen_actions(
    characters: Iterable[np.ndarray] | np.ndarray, actions: Iterable[np.ndarray] | np.ndarray
) -> frozenset[tuple[int, int]]:
    """The set of (internal character, action id) pairs present in data.

    ``characters`` and ``actions`` are same-shaped arrays of ``post_character`` and ``post_state`` (or
    iterables of such arrays, e.g. one per training shard). Non-finite entries are ignored.
    """
    if isinstance(characters, np.ndarray) or isinstance(actions, np.ndarray):
        characters, actions = [characters], [actions]
    pairs: set[tuple[int, int]] = set()
    for c, a in zip(characters, actions, strict=True):
        c = np.asarray(c, np.float64).reshape(-1)
        a = np.asarray(a, np.float64).reshape(-1)
        ok = np.isfinite(c) & np.isfinite(a)
        if ok.any():
            u = np.unique(np.stack([c[ok], a[ok]], 1).astype(np.int64), axis=0)
            pairs.update((int(x), int(y)) for x, y in u)
    return frozenset(pairs)


def _result(count: int, checked: int) -> dict[str, Any]:
    return {"count": int(count), "checked": int(checked), "rate": (count / checked) if checked else None}


def _prev(arr: np.ndarray, before: np.ndarray | None) -> np.ndarray:
    """The value at the previous step: [N, H, P] with ``before`` [N, P] (or the first step) as step 0."""
    first = arr[:, :1] if before is None else np.asarray(before, arr.dtype)[:, None]
    return np.concatenate([first, arr[:, :-1]], 1)


def _standing_on_nothing(state: RawState, stage: np.ndarray, x: np.ndarray, y: np.ndarray,
                         act_i: np.ndarray | None) -> dict[str, Any]:
    """Live, grounded entries off the ledge whose position lies in none of the stage's landing areas."""
    if AIRBORNE not in state or act_i is None:
        return _result(0, 0)
    grounded = np.asarray(state[AIRBORNE], np.float64) == 0
    standing = grounded & ~np.isin(act_i, list(DEAD_STATES | RESPAWN_STATES | LEDGE_STATES))
    count = checked = 0
    for s in np.unique(stage).tolist():
        if geometry(s) is None:
            continue
        m = (stage == s)[:, None, None] & np.isfinite(x) & np.isfinite(y) & standing
        count += int((m & ~on_a_surface(s, x, y)).sum())
        checked += int(m.sum())
    return _result(count, checked)


def _ground_action_in_air(state: RawState, act_i: np.ndarray | None) -> dict[str, Any]:
    """Airborne entries in an action of the ground."""
    if AIRBORNE not in state or act_i is None:
        return _result(0, 0)
    airborne = np.asarray(state[AIRBORNE], np.float64)
    m = np.isfinite(airborne) & (act_i >= 0)
    return _result((m & (airborne > 0) & np.isin(act_i, list(GROUND_ACTIONS))).sum(), m.sum())


def _move_past_limit(act_i: np.ndarray | None, chars: np.ndarray | None) -> dict[str, Any]:
    """Entries whose action has gone on longer than its limit, by the frames counted from the rollout's first."""
    if act_i is None or chars is None:
        return _result(0, 0)
    n, h, p = act_i.shape
    valid = act_i >= 0
    age = frames_in_action(act_i.transpose(1, 0, 2).reshape(h, n * p), valid.transpose(1, 0, 2).reshape(h, n * p))
    age = age.reshape(h, n, p).transpose(1, 0, 2)
    table = moves()
    c = np.where(np.isfinite(chars), chars, -1).astype(np.int64)
    pairs, inverse = np.unique(np.stack([c.ravel(), act_i.ravel()], -1), axis=0, return_inverse=True)
    limits = np.array([getattr(table.get(char, {}).get(action), "limit", np.inf) for char, action in pairs.tolist()])
    limit = limits[inverse.reshape(-1)].reshape(act_i.shape)
    return _result((valid & (age > limit)).sum(), valid.sum())


def check_state(
    state: RawState,
    stage: np.ndarray,
    context: RawState | None = None,
    characters: np.ndarray | None = None,
    allowed_actions: frozenset[tuple[int, int]] | None = None,
    percent_tol: float = PERCENT_TOL,
) -> dict[str, dict[str, Any]]:
    """Run every check on one RawState [N, H, P]; ``characters`` [N, H, P] are internal ids (needed only for
    ``impossible_action`` when ``state`` has no ``post_character``). Returns check -> {count, checked, rate}."""
    context = context or {}
    x = np.asarray(state[POS_X], np.float64)
    n, h, p = x.shape
    total = n * h * p
    out: dict[str, dict[str, Any]] = {}

    bad = np.zeros((n, h, p), bool)
    for arr in state.values():
        arr = np.asarray(arr)
        if arr.dtype.kind in "fc":
            bad |= ~np.isfinite(arr)
    out["nonfinite"] = _result(bad.sum(), total)

    act = np.asarray(state[ACTION], np.float64) if ACTION in state else None
    act_i = None if act is None else np.where(np.isfinite(act), act, -1).astype(np.int64)
    dead = np.zeros((n, h, p), bool) if act_i is None else np.isin(act_i, list(DEAD_STATES))

    # Blast zones and the stage's solid body, per stage with geometry.
    y = np.asarray(state[POS_Y], np.float64)
    count = checked = in_body = 0
    stage = np.asarray(stage).astype(np.int64)
    for s in np.unique(stage).tolist():
        if geometry(s) is None:
            continue
        m = (stage == s)[:, None, None] & np.isfinite(x) & np.isfinite(y) & ~dead
        inside = in_blast_zone(s, x, y)
        count += int((m & ~inside).sum())
        in_body += int((m & in_stage_body(s, x, y)).sum())
        checked += int(m.sum())
    out["outside_blast_zone"] = _result(count, checked)
    out["inside_stage_body"] = _result(in_body, checked)

    # Standing on air: grounded past the main stage's edge, per stage with that fact.
    count = checked = 0
    if AIRBORNE in state:
        grounded = np.asarray(state[AIRBORNE], np.float64) == 0
        live = ~dead if act_i is None else ~np.isin(act_i, list(DEAD_STATES | RESPAWN_STATES))
        for s in np.unique(stage).tolist():
            edge = ground_edge(s)
            if edge is None:
                continue
            m = (stage == s)[:, None, None] & np.isfinite(x) & live & grounded
            count += int((m & (np.abs(x) > edge + EDGE_TOL)).sum())
            checked += int(m.sum())
    out["standing_past_edge"] = _result(count, checked)
    out["standing_on_nothing"] = _standing_on_nothing(state, stage, x, y, act_i)
    out["ground_action_in_air"] = _ground_action_in_air(state, act_i)
    chars = (np.asarray(state[CHARACTER], np.float64) if CHARACTER in state
             else (None if characters is None else np.asarray(characters, np.float64)))
    out["move_past_limit"] = _move_past_limit(act_i, chars)

    if PERCENT in state:
        pc = np.asarray(state[PERCENT], np.float64)
        prev = _prev(pc, context.get(PERCENT))
        m = np.isfinite(pc) & np.isfinite(prev)
        if context.get(PERCENT) is None:
            m[:, 0] = False
        if act_i is not None:
            ok_states = list(DEAD_STATES | RESPAWN_STATES)
            prev_act = _prev(
                act_i,
                None
                if context.get(ACTION) is None
                else np.nan_to_num(np.asarray(context[ACTION], np.float64), nan=-1).astype(np.int64),
            )
            m &= ~np.isin(act_i, ok_states) & ~np.isin(prev_act, ok_states)
        out["percent_decrease"] = _result((m & (pc < prev - percent_tol)).sum(), m.sum())
        out["percent_increase"] = _result((m & (pc > prev + percent_tol)).sum(), m.sum())
    else:
        out["percent_decrease"] = out["percent_increase"] = _result(0, 0)

    if STOCKS in state:
        st = np.asarray(state[STOCKS], np.float64)
        prev = _prev(st, context.get(STOCKS))
        m = np.isfinite(st) & np.isfinite(prev)
        if context.get(STOCKS) is None:
            m[:, 0] = False
        out["stocks_increase"] = _result((m & (np.round(st) > np.round(prev))).sum(), m.sum())
        change = np.round(st) - np.round(prev)
        one_ko = (change == -1) & dead
        out["stocks_not_one_ko"] = _result((m & (change != 0) & ~one_ko).sum(), m.sum())
    else:
        out["stocks_increase"] = _result(0, 0)
        out["stocks_not_one_ko"] = _result(0, 0)

    if allowed_actions is None or act_i is None:
        out["impossible_action"] = {"count": None, "checked": 0, "rate": None}
    else:
        m = np.isfinite(act)
        common = np.array(sorted({a for _, a in allowed_actions if 0 <= a < FIRST_SPECIAL}), np.int64)
        ok = (act_i >= 0) & (act_i < FIRST_SPECIAL) & np.isin(act_i, common)
        special = act_i >= FIRST_SPECIAL
        if chars is not None:
            c = np.where(np.isfinite(chars), chars, -1).astype(np.int64)
            pairs = np.array(sorted(allowed_actions), np.int64).reshape(-1, 2)
            # Encode (character, action) as one int for a vectorised membership test.
            code = c * 100_000 + act_i
            allowed_codes = pairs[:, 0] * 100_000 + pairs[:, 1]
            ok |= special & np.isin(code, allowed_codes)
        else:
            ok |= special & np.isin(act_i, [a for _, a in allowed_actions if a >= FIRST_SPECIAL])
        out["impossible_action"] = _result((m & ~ok).sum(), m.sum())
    return out


def plausibility(
    rollouts: RolloutSet,
    allowed_actions: frozenset[tuple[int, int]] | None = None,
    predictors: Sequence[str] | None = None,
    percent_tol: float = PERCENT_TOL,
) -> dict[str, Any]:
    """``check_state`` for every predictor and for the truth (the yardstick): name -> check -> result."""
    names = list(predictors) if predictors is not None else sorted(rollouts.predictions)
    chars = rollouts.internal_characters()
    out = {}
    for name, state in [(TRUTH, rollouts.truth), *((k, rollouts.predictions[k]) for k in names)]:
        out[name] = check_state(state, rollouts.stage, rollouts.context, chars, allowed_actions, percent_tol)
    return to_jsonable(out)
