"""Validation during training: teacher-forced metrics over validation windows (``meleewm.model.measures``), and
a short closed-loop rollout metric from fixed starts (the one that picks the best checkpoint, since teacher-forced
numbers flatter rollouts).
"""

from __future__ import annotations

import torch

from meleewm.data.windows import WindowDataset
from meleewm.model.measures import position_error
from meleewm.model.rollout import rollout, rollout_batch
from meleewm.model.world import WorldModel


@torch.no_grad()
def rollout_metric(model: WorldModel, windows: WindowDataset, starts: list[tuple[int, int]], *, warmup: int,
                   horizon: int, device, batch_size: int = 64) -> dict[str, float]:
    """Mean position error (game units) over ``horizon`` closed-loop steps, real controllers fed: the model alone
    (``rollout`` without rules), since this picks the checkpoint for what it learned."""
    model.eval()
    errors = []
    for begin in range(0, len(starts), batch_size):
        batch, warm = rollout_batch(windows, starts[begin:begin + batch_size], warmup, horizon, device)
        predicted = rollout(model, warm, batch["ctrl"][:, warmup:])
        errors.append(position_error(model, predicted["state_cont"], batch["next_cont"][:, warmup - 1:],
                                     batch["next_cont_mask"][:, warmup - 1:]))
    if not errors:
        return {"rollout_position_error": float("nan")}
    error = torch.cat(errors)                                  # [N, H, 2]
    per_step = torch.nanmean(error.float(), dim=(0, 2))
    return {"rollout_position_error": float(torch.nanmean(per_step)),
            "rollout_position_error_last": float(per_step[-1])}
