"""Baseline predictors that the model must beat: they extrapolate the last true state.

Both take ``context`` (RawState [N, P], the last true state before step 1) and return a RawState [N, H, P] with
every key of ``context``.

- ``persistence``: nothing changes.
- ``constant_velocity``: the position moves by the last velocity every frame, everything else is frozen. The
  x speed is ``self_x_ground`` when grounded (``post_airborne`` = 0) and ``self_x_air`` when airborne, plus
  ``knockback_x``; the y speed is ``self_y + knockback_y``. In Slippi data the velocities of frame t are the
  displacement during frame t (position[t] - position[t-1]), so the last known velocity is the best constant
  guess of the next ones: position at step t = position at step 0 + t * velocity at step 0. Missing velocity
  fields (replays before Slippi 3.5) or NaN count as 0, which makes it persistence. A missing ``post_airborne``
  counts as airborne.
"""

from __future__ import annotations

import numpy as np

from meleewm.eval.metrics import AIRBORNE, POS_X, POS_Y, RawState, RolloutSet

PERSISTENCE = "persistence"
CONSTANT_VELOCITY = "constant_velocity"


def persistence(context: RawState, horizon: int) -> RawState:
    """Every field keeps its context value for ``horizon`` steps: [N, P] -> [N, H, P]."""
    return {k: np.repeat(np.asarray(v)[:, None], horizon, axis=1) for k, v in context.items()}


def _field(context: RawState, key: str, like: np.ndarray) -> np.ndarray:
    if key not in context:
        return np.zeros_like(like, dtype=np.float64)
    return np.nan_to_num(np.asarray(context[key], np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def velocity_of(context: RawState) -> tuple[np.ndarray, np.ndarray]:
    """The per-frame displacement (vx, vy) implied by a state's velocity fields, [N, P] each."""
    like = np.asarray(context[POS_X], np.float64)
    airborne = np.asarray(context[AIRBORNE], np.float64) > 0.5 if AIRBORNE in context else np.ones(like.shape, bool)
    vx = np.where(
        airborne,
        _field(context, "post_velocities_self_x_air", like),
        _field(context, "post_velocities_self_x_ground", like),
    )
    vx = vx + _field(context, "post_velocities_knockback_x", like)
    vy = _field(context, "post_velocities_self_y", like) + _field(context, "post_velocities_knockback_y", like)
    return vx, vy


def constant_velocity(context: RawState, horizon: int) -> RawState:
    """Positions advance by the last velocity each frame; every other field is frozen. [N, P] -> [N, H, P]."""
    out = persistence(context, horizon)
    vx, vy = velocity_of(context)
    t = np.arange(1, horizon + 1, dtype=np.float64)[None, :, None]
    for key, v in ((POS_X, vx), (POS_Y, vy)):
        base = np.asarray(context[key], np.float64)[:, None]
        out[key] = base + t * v[:, None]  # float64
    return out


BASELINES = {PERSISTENCE: persistence, CONSTANT_VELOCITY: constant_velocity}


def add_baselines(rollouts: RolloutSet, names: tuple[str, ...] = (PERSISTENCE, CONSTANT_VELOCITY)) -> RolloutSet:
    """Add each named baseline's predictions to ``rollouts.predictions`` (in place) and return ``rollouts``."""
    _, h, _ = rollouts.shape
    for name in names:
        rollouts.predictions[name] = BASELINES[name](rollouts.context, h)
    return rollouts
