"""Closed-loop rollouts: warm up on real frames, then run on the model's own predictions.

Only the controllers come from outside after warm-up, so whatever this measures is what a player sees.
:func:`advance` is the one step that training rollouts, evaluation, ``dream`` and play all take: ``model.step``,
the prediction turned into the next inputs, and (when given) the game rules of ``meleewm.model.rules`` applied
to them. With ``rules=None`` it is the model alone. :func:`rollout_starts` and :func:`rollout_batch` pick the real
windows that training validation and evaluation roll out from.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate

from meleewm.data.encoding import apply_state_age_rule, frames_in_last_action
from meleewm.data.step import StepInput
from meleewm.data.windows import WindowDataset
from meleewm.model.rules import GameRules
from meleewm.model.world import ACTION_COLUMN, WorldModel, last_step, next_inputs


def _next_frame(model: WorldModel, pred: dict, x: StepInput, rules: GameRules | None, temperature: float,
                generator: torch.Generator | None) -> tuple[StepInput, torch.Tensor | None]:
    """The prediction ``pred`` made from inputs ``x`` as the next inputs, with the rules applied (and counted)."""
    nxt = next_inputs(pred, x, temperature=temperature, generator=generator,
                      player_items_only=model.spec.player_items_only)
    if rules is None:
        return nxt, None
    nxt, counts = rules.apply(x, nxt)
    if nxt.state_age is not None:  # an action a rule set (a KO, a respawn) starts its age at 0, as the game does
        nxt = nxt.replace(state_age=apply_state_age_rule(x.state_cat[..., ACTION_COLUMN], x.state_age,
                                                          nxt.state_cat[..., ACTION_COLUMN]))
    return nxt, counts


def advance(model: WorldModel, x: StepInput, body, *, rules: GameRules | None = None,
            temperature: float = 0.0, generator: torch.Generator | None = None):
    """One frame: inputs ``x`` (state of frame t-1, controllers of frame t, constants, and the rule state when
    ``rules`` is given) → (the inputs for frame t, without controllers; the new body state; counts of rule actions
    or None)."""
    pred, body = model.step(x, body)
    nxt, counts = _next_frame(model, pred, x, rules, temperature, generator)
    return nxt, body, counts


def warm_start(model: WorldModel, warmup: StepInput, *, rules: GameRules | None = None,
               temperature: float = 0.0, generator: torch.Generator | None = None):
    """Run the chunked forward over real frames and take over: returns (the model's first frame as inputs, without
    controllers; the body state; counts of rule actions or None). Rollouts, eval, dream and play all start this
    way; the first frame obeys the rules like every later one."""
    pred, state = model(warmup, return_state=True)
    last = warmup.last()
    if last.state_age is not None:
        last = last.replace(state_age=handoff_age(warmup))
    if rules is not None:
        phase, age = rules.initial_state(warmup)
        last = last.replace(rule_phase=phase, rule_age=age)
    first, counts = _next_frame(model, last_step(pred), last, rules, temperature, generator)
    return first, state, counts


def handoff_age(warmup: StepInput) -> torch.Tensor:
    """The warm-up's last ages, ``[B, 2]``, where Slippi records none (-1: deaths, shields) the frames its action has
    lasted in the warm-up (0 on its first): closed loop counts on from there, and ``model.respawn_snap`` reads a
    death's count."""
    lasted = frames_in_last_action(warmup.state_cat[..., ACTION_COLUMN])
    recorded = warmup.state_age[:, -1]
    return torch.where(recorded < 0, lasted.to(recorded.dtype), recorded)


@torch.no_grad()
def rollout(model: WorldModel, warmup: StepInput, controllers: torch.Tensor, *,
            rules: GameRules | None = None, temperature: float = 0.0,
            generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Predict ``H = controllers.shape[1] + 1`` frames after a teacher-forced warm-up.

    ``warmup``: step inputs with a time axis, ``[B, W, ...]`` (state of frames 0..W-1 and controllers of frames
    1..W). ``controllers``: ``[B, H-1, 2, n_ctrl]``, the real controllers of frames W+1..W+H-1. Step 1 predicts
    frame W (from the true frame W-1); step h predicts frame W+h-1 from the model's own frame W+h-2. Returns the
    predicted states ``[B, H, ...]`` under their input names (``StepInput.state()``: state_cont, state_bin,
    state_cat, state_age, state_item_*); with ``rules``, also ``rule_counts`` (one total per
    ``meleewm.model.rules.RULE_EVENTS``).
    """
    first, state, counts = warm_start(model, warmup, rules=rules, temperature=temperature, generator=generator)
    frames = [first]
    for h in range(controllers.shape[1]):
        current, state, step_counts = advance(model, frames[-1].replace(ctrl=controllers[:, h]), state,
                                              rules=rules, temperature=temperature, generator=generator)
        if rules is not None:
            counts = counts + step_counts
        frames.append(current)
    out = {k: torch.stack([getattr(f, k) for f in frames], dim=1) for k in first.state()}
    if rules is not None:
        out["rule_counts"] = counts.sum(0)
    return out


def to_device(batch: dict, device) -> dict:
    """A collated batch with its tensors on ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def rollout_starts(windows: WindowDataset, count: int, length: int, seed: int) -> list[tuple[int, int]]:
    """``count`` fixed (game, start) pairs, seeded, spread over the games that are long enough."""
    cache = windows.cache
    games = [g for g in windows.games if cache.lengths[g] > length]
    if not games:
        return []
    rng = np.random.default_rng(seed)
    chosen = [games[i % len(games)] for i in rng.permutation(max(count, len(games)))[:count]]
    return [(int(g), int(rng.integers(0, cache.lengths[g] - length))) for g in chosen]


def rollout_batch(windows: WindowDataset, starts: list[tuple[int, int]], warmup: int, horizon: int,
                  device="cpu") -> tuple[dict, StepInput]:
    """Windows of ``warmup + horizon - 1`` steps at ``starts``: the whole batch (truth included) and the
    warm-up inputs a rollout may read (the step inputs of the first ``warmup`` steps)."""
    batch = to_device(default_collate([windows.sample_at(g, s, warmup + horizon - 1) for g, s in starts]), device)
    return batch, StepInput.from_window(batch).frames(0, warmup)
