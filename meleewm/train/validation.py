"""Validation during training: teacher-forced metrics over validation windows, and a short closed-loop rollout
metric from fixed starts (the one that picks the best checkpoint, since teacher-forced numbers flatter rollouts).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate

from meleewm.data.windows import WindowDataset
from meleewm.model.rollout import rollout
from meleewm.model.world import MASK_KEYS, STATE_KEYS, WorldModel
from meleewm.train.losses import head_losses, total_loss

ROLLOUT_INPUT_KEYS = (*STATE_KEYS, *MASK_KEYS, "ctrl")


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


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
            pred = model(batch)
        if on_batch is not None:
            on_batch(pred, batch)
        losses = head_losses(pred, batch, model.cat_names, loss_config, model.cont_delta_scale, model.cont_zero)
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
                  device="cpu") -> tuple[dict, dict]:
    """Windows of ``warmup + horizon - 1`` steps at ``starts``: the whole batch (truth included) and the
    warm-up inputs a rollout may read (states, masks, controllers and constants of the first ``warmup`` steps)."""
    batch = to_device(default_collate([windows.sample_at(g, s, warmup + horizon - 1) for g, s in starts]), device)
    warm = {k: v[:, :warmup] for k, v in batch.items() if k in ROLLOUT_INPUT_KEYS or k.startswith("state_item_")}
    warm.update({k: batch[k] for k in ("stage", "chars")})
    return batch, warm


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
