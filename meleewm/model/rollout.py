"""Closed-loop rollouts: warm up on real frames, then run on the model's own predictions.

Only the controllers come from outside after warm-up, so whatever this measures is what a player sees.
"""

from __future__ import annotations

import torch

from meleewm.model.world import MASK_KEYS, WorldModel, last_step, next_inputs

CONSTANT_KEYS = ("stage", "chars")


def warm_start(model: WorldModel, warmup: dict[str, torch.Tensor], *, temperature: float = 0.0,
               generator: torch.Generator | None = None):
    """Run the chunked forward over real frames and take over: returns (the model's first frame as inputs,
    the last real step's inputs, the body state). Rollouts, eval, dream and play all start this way."""
    pred, state = model(warmup, return_state=True)
    last = {k: (v if k in CONSTANT_KEYS else v[:, -1]) for k, v in warmup.items()}
    first = next_inputs(last_step(pred), last, temperature=temperature, generator=generator)
    return first, last, state


@torch.no_grad()
def rollout(model: WorldModel, warmup: dict[str, torch.Tensor], controllers: torch.Tensor, *,
            temperature: float = 0.0, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Predict ``H = controllers.shape[1] + 1`` frames after a teacher-forced warm-up.

    ``warmup``: step inputs with a time axis, ``[B, W, ...]`` (state of frames 0..W-1 and controllers of frames
    1..W), plus constants ``stage [B]`` and ``chars [B, 2]``. ``controllers``: ``[B, H-1, 2, n_ctrl]``, the real
    controllers of frames W+1..W+H-1. Step 1 predicts frame W (from the true frame W-1); step h predicts frame
    W+h-1 from the model's own frame W+h-2. Returns encoded states ``[B, H, ...]`` under the input names
    (state_cont, state_bin, state_cat, state_item_*).
    """
    first, last, state = warm_start(model, warmup, temperature=temperature, generator=generator)
    frames = [first]
    for h in range(controllers.shape[1]):
        x = {**last, **frames[-1], "ctrl": controllers[:, h]}
        current, state = model.step(x, state)
        last = x
        frames.append(next_inputs(current, x, temperature=temperature, generator=generator))
    keys = [k for k in frames[0] if k not in MASK_KEYS]
    return {k: torch.stack([f[k] for f in frames], dim=1) for k in keys}
