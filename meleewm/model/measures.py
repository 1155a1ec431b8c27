"""What training's validation and evaluation both measure of a model on real windows: teacher-forced losses,
action accuracy and position error. One definition, so the numbers a run card shows and ``meleewm eval``
reports mean the same thing.
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from meleewm.data.step import StepInput
from meleewm.data.windows import WindowDataset
from meleewm.model.losses import head_losses, total_loss
from meleewm.model.rollout import to_device
from meleewm.model.world import WorldModel


def position_error(model: WorldModel, cont_pred: torch.Tensor, cont_true: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """Euclidean position error in game units, ``[..., 2]`` per player (NaN where the position is absent)."""
    spec = model.spec
    ix, iy = spec.cont_index("post_position_x"), spec.cont_index("post_position_y")
    std = torch.tensor([spec.cont_stats["post_position_x"][1], spec.cont_stats["post_position_y"][1]],
                       device=cont_pred.device)
    delta = (cont_pred[..., [ix, iy]] - cont_true[..., [ix, iy]]).float() * std
    error = delta.norm(dim=-1)
    valid = mask[..., ix] & mask[..., iy]
    return torch.where(valid, error, torch.full_like(error, float("nan")))


@torch.no_grad()
def teacher_forced_metrics(model: WorldModel, windows: WindowDataset, *, batch_size: int, max_batches: int,
                           device, loss_config, autocast=None, on_batch=None) -> dict[str, float]:
    """Loss per head, action accuracy, change_acc (accuracy where the true action changes), position error.

    ``on_batch(pred, batch)``, if given, sees every batch's predictions (for more metrics in the same pass)."""
    model.eval()
    action = model.spec.cat_index("post_state")
    sums: dict[str, float] = {}
    counts = {"action": 0, "change": 0, "position": 0}
    hits = {"action": 0, "change": 0}
    position_total, batches = 0.0, 0
    for start in range(0, min(len(windows), max_batches * batch_size), batch_size):
        batch = to_device(default_collate([windows[i] for i in range(start, min(start + batch_size, len(windows)))]),
                          device)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            pred = model(StepInput.from_window(batch))
        if on_batch is not None:
            on_batch(pred, batch)
        losses = head_losses(pred, batch, model.cat_names, loss_config, model.cont_delta_scale, model.cont_zero,
                             model.dead_action)
        losses["total"] = total_loss(losses, loss_config)
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        batches += 1
        predicted = pred["cat_logits"][action].argmax(-1)
        true = batch["next_cat"][..., action]
        valid = batch["next_cat_mask"][..., action]
        changed = valid & (true != batch["state_cat"][..., action])
        right = predicted == true
        hits["action"] += int((right & valid).sum())
        counts["action"] += int(valid.sum())
        hits["change"] += int((right & changed).sum())
        counts["change"] += int(changed.sum())
        error = position_error(model, pred["cont"], batch["next_cont"], batch["next_cont_mask"])
        position_total += float(torch.nan_to_num(error, nan=0.0).sum())
        counts["position"] += int((~torch.isnan(error)).sum())
    metrics = {f"loss/{name}": value / max(batches, 1) for name, value in sums.items()}
    metrics["action_acc"] = hits["action"] / max(counts["action"], 1)
    metrics["change_acc"] = hits["change"] / max(counts["change"], 1)
    metrics["position_error"] = position_total / max(counts["position"], 1)
    return metrics
