"""Losses of the world model's heads: continuous (MSE or Huber), binary (BCE), categorical (CE with an
optional uniform mix), items. Each sample's loss is averaged over its own valid entries, then samples are
averaged, so that DDP's mean of per-rank gradients equals the single-process gradient of the same global batch.

The loss is the model's objective: training minimises it, and evaluation reports it with the settings a
checkpoint records (its ``loss`` section), so it lives on the model's floor, beside the network, not in train/.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from meleewm.model.world import gate_classes


@dataclass
class LossConfig:
    continuous: str = "huber"     # "mse" or "huber"
    huber_delta: float = 1.0
    uniform_mix: float = 0.01     # categorical targets mixed with this much uniform mass (0 disables)
    # Continuous errors are small numbers next to 8 categorical cross-entropies: weight them up.
    weights: dict[str, float] = field(default_factory=lambda: {"cont": 10.0, "binary": 1.0, "cat": 1.0, "items": 1.0,
                                                                "gate": 1.0})
    field_weights: dict[str, float] = field(default_factory=lambda: {"post_state": 2.0})

    def __post_init__(self):
        if self.continuous not in ("mse", "huber"):
            raise ValueError(f"loss.continuous must be 'mse' or 'huber', not {self.continuous!r}")
        if not 0 <= self.uniform_mix < 1:
            raise ValueError(f"loss.uniform_mix must be in [0, 1), got {self.uniform_mix}")


def _per_sample_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the valid entries of each sample (dim 0), then over samples."""
    mask = mask.to(values.dtype)
    dims = tuple(range(1, values.dim()))
    return ((values * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)).mean()


def head_losses(pred: dict, batch: dict, cat_names: list[str], config: LossConfig,
                cont_scale: torch.Tensor, cont_zero: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-head losses (unweighted) against the ``next_*`` targets of a window batch.

    Continuous errors are divided by ``cont_scale`` (each field's typical per-frame change), so that a
    one-unit position error weighs like a typical frame's movement, not like 1/std of the whole stage. With a
    continuous gate (``gate_logits``; ``cont_zero`` is then the encoded raw 0 per field), the regression reads the
    head's ungated value and the gate learns its class by cross-entropy against the true previous frame.
    """
    scale = cont_scale.float()
    pred_cont, true_cont = pred.get("cont_free", pred["cont"]).float() / scale, batch["next_cont"].float() / scale
    if config.continuous == "mse":
        cont = F.mse_loss(pred_cont, true_cont, reduction="none")
    else:
        cont = F.huber_loss(pred_cont, true_cont, reduction="none", delta=config.huber_delta)
    losses = {"cont": _per_sample_mean(cont, batch["next_cont_mask"])}
    if "gate_logits" in pred:
        if cont_zero is None:
            raise ValueError("a gated model's losses need cont_zero (the model's encoded raw 0 per field)")
        target = gate_classes(batch["next_cont"], batch["state_cont"], cont_zero)
        ce = F.cross_entropy(pred["gate_logits"].float().movedim(-1, 1), target, reduction="none")
        losses["gate"] = _per_sample_mean(ce, batch["next_cont_mask"])
    bce = F.binary_cross_entropy_with_logits(pred["bin_logits"].float(), batch["next_bin"].float(), reduction="none")
    losses["binary"] = _per_sample_mean(bce, batch["next_bin_mask"])
    for i, (name, logits) in enumerate(zip(cat_names, pred["cat_logits"])):
        ce = F.cross_entropy(logits.float().movedim(-1, 1), batch["next_cat"][..., i].long(), reduction="none",
                             label_smoothing=config.uniform_mix)
        losses[f"cat/{name}"] = _per_sample_mean(ce, batch["next_cat_mask"][..., i])
    if "item_present_logits" in pred:
        present = batch["next_item_present"].float()
        losses["items/present"] = F.binary_cross_entropy_with_logits(
            pred["item_present_logits"].float(), present, reduction="none").flatten(1).mean(1).mean()
        type_ce = F.cross_entropy(pred["item_type_logits"].float().movedim(-1, 1), batch["next_item_type"].long(),
                                  reduction="none")
        owner_ce = F.cross_entropy(pred["item_owner_logits"].float().movedim(-1, 1),
                                   batch["next_item_owner"].long(), reduction="none")
        item_cont = F.huber_loss(pred["item_cont"].float(), batch["next_item_cont"].float(),
                                 reduction="none").mean(-1)
        losses["items/type"] = _per_sample_mean(type_ce, present)
        losses["items/owner"] = _per_sample_mean(owner_ce, present)
        losses["items/cont"] = _per_sample_mean(item_cont, present)
    return losses


def total_loss(losses: dict[str, torch.Tensor], config: LossConfig) -> torch.Tensor:
    """Weighted sum: a group weight (cont, binary, cat, items) times an optional per-field weight."""
    total = 0.0
    for name, value in losses.items():
        group, _, field = name.partition("/")
        total = total + config.weights.get(group, 1.0) * config.field_weights.get(field, 1.0) * value
    return total
