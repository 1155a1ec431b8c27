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

from meleewm.data.encoding import CAT_FIELDS, CONT_FIELDS
from meleewm.model.world import GATE_FREE, LAUNCH_FIELDS, gate_classes

PERCENT_COLUMN = CONT_FIELDS.index("post_percent")
LAUNCH_COLUMNS = [CONT_FIELDS.index(f) for f in LAUNCH_FIELDS]
STOCKS_COLUMN = CAT_FIELDS.index("post_stocks")


@dataclass
class LossConfig:
    continuous: str = "huber"     # "mse" or "huber"
    huber_delta: float = 1.0
    uniform_mix: float = 0.01     # categorical targets mixed with this much uniform mass (0 disables)
    # Continuous errors are small numbers next to 8 categorical cross-entropies: weight them up.
    weights: dict[str, float] = field(default_factory=lambda: {"cont": 10.0, "binary": 1.0, "cat": 1.0, "items": 1.0,
                                                                "gate": 1.0})
    field_weights: dict[str, float] = field(default_factory=lambda: {"post_state": 2.0})
    # Hits and KOs are under 1% of frames, and a gate that never fires on them scores well on the rest: frames
    # where a player's percent rises or stocks change count this many times in every head's loss but the items'.
    event_weight: float = 1.0
    # KOs alone (a player's stock count changes: about 0.07% of frames, a hundredth of the hits) count this many times
    # more, on top of ``event_weight``: at 1 the model of commit 3bdfd4b put the lost stock on 0 of 98 validation KOs
    ko_weight: float = 1.0
    # Respawns (a player's action leaves a death: the first frame on the respawn platform, 60 frames after a KO) count
    # this many times more, on top of ``event_weight``: about one frame in 2,000, and the model that reads the death's
    # ages (data.age_by_rule) respawned on the 60th dead frame on 46 % of the validation respawns after 800 steps
    respawn_weight: float = 1.0
    # With the continuous gate: the head's value learns only from entries whose gate target is that value (the field
    # changed, and not to 0). On every entry, a hit's percent regressed to +0.14 % (real: +7.9 %) and knockback to
    # a fraction of itself: the frames that did not change pulled the value of a change towards no change.
    gated_regression: bool = False

    def __post_init__(self):
        if self.continuous not in ("mse", "huber"):
            raise ValueError(f"loss.continuous must be 'mse' or 'huber', not {self.continuous!r}")
        if not 0 <= self.uniform_mix < 1:
            raise ValueError(f"loss.uniform_mix must be in [0, 1), got {self.uniform_mix}")
        for name in ("event_weight", "ko_weight", "respawn_weight"):
            if getattr(self, name) < 1:
                raise ValueError(f"loss.{name} must be >= 1, got {getattr(self, name)}")


def _per_sample_mean(values: torch.Tensor, mask: torch.Tensor, frame_weight: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Mean of ``values`` over the valid entries of each sample (dim 0), then over samples. ``frame_weight``
    ([B, T]) scales each frame's entries; the divisor stays the count of valid entries, so weighted frames add
    to the loss rather than diluting the others."""
    valid = mask.to(values.dtype)
    weighted = valid if frame_weight is None else valid * frame_weight.to(values.dtype).reshape(
        *frame_weight.shape, *(1,) * (values.dim() - 2))
    dims = tuple(range(1, values.dim()))
    return ((values * weighted).sum(dims) / valid.sum(dims).clamp_min(1.0)).mean()


def ko_frames(batch: dict) -> torch.Tensor:
    """[B, T] True where a player's stock count changes (a KO) from the input frame to the target."""
    return ((batch["next_cat"][..., STOCKS_COLUMN] != batch["state_cat"][..., STOCKS_COLUMN])
            & batch["next_cat_mask"][..., STOCKS_COLUMN] & batch["cat_mask"][..., STOCKS_COLUMN]).any(-1)


def respawn_frames(batch: dict, dead_action: torch.Tensor) -> torch.Tensor:
    """[B, T] True where a player's action is a death in the input frame and not in the target (a respawn);
    ``dead_action`` marks the death actions' vocabulary indices (``WorldModel.dead_action``)."""
    action = CAT_FIELDS.index("post_state")
    known = batch["cat_mask"][..., action] & batch["next_cat_mask"][..., action]
    return (dead_action[batch["state_cat"][..., action].long()] & ~dead_action[batch["next_cat"][..., action].long()]
            & known).any(-1)


def hit_entries(batch: dict) -> torch.Tensor:
    """[B, T, 2] True where the player's percent rises from the input frame to the target (a hit taken;
    normalisation keeps the order of raw values)."""
    return ((batch["next_cont"][..., PERCENT_COLUMN] > batch["state_cont"][..., PERCENT_COLUMN])
            & batch["next_cont_mask"][..., PERCENT_COLUMN] & batch["cont_mask"][..., PERCENT_COLUMN])


def event_frames(batch: dict, kos: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] True where a player takes a hit (:func:`hit_entries`) or stocks change (a KO, ``kos`` when the caller
    has :func:`ko_frames` already) from the input frame to the target."""
    return hit_entries(batch).any(-1) | (ko_frames(batch) if kos is None else kos)


def head_losses(pred: dict, batch: dict, cat_names: list[str], config: LossConfig,
                cont_scale: torch.Tensor, cont_zero: torch.Tensor | None = None,
                dead_action: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-head losses (before the group weights of :func:`total_loss`; frames of hits and KOs counted
    ``config.event_weight`` times, KOs ``ko_weight - 1`` and respawns ``respawn_weight - 1`` times more) against the ``next_*`` targets of a window batch.

    Continuous errors are divided by ``cont_scale`` (each field's typical per-frame change), so that a
    one-unit position error weighs like a typical frame's movement, not like 1/std of the whole stage. With a
    continuous gate (``gate_logits``; ``cont_zero`` is then the encoded raw 0 per field), the regression reads the
    head's ungated value and the gate learns its class by cross-entropy against the true previous frame.
    """
    weight = None
    if config.event_weight != 1 or config.ko_weight != 1:
        kos = ko_frames(batch)
        weight = 1 + (config.event_weight - 1) * event_frames(batch, kos).float() + (config.ko_weight - 1) * kos.float()
    if config.respawn_weight != 1:
        if dead_action is None:
            raise ValueError("loss.respawn_weight needs dead_action (the model's death actions per vocabulary index)")
        respawns = (config.respawn_weight - 1) * respawn_frames(batch, dead_action).float()
        weight = 1 + respawns if weight is None else weight + respawns
    scale = cont_scale.float()
    pred_cont, true_cont = pred.get("cont_free", pred["cont"]).float() / scale, batch["next_cont"].float() / scale
    if config.continuous == "mse":
        cont = F.mse_loss(pred_cont, true_cont, reduction="none")
    else:
        cont = F.huber_loss(pred_cont, true_cont, reduction="none", delta=config.huber_delta)

    def huber(value, target, columns):   # of the hit heads, in each field's typical per-frame change
        return F.huber_loss(value.float() / scale[columns], target.float() / scale[columns], reduction="none",
                            delta=config.huber_delta)
    losses, regressed = {}, batch["next_cont_mask"]
    if "gate_logits" in pred:
        if cont_zero is None:
            raise ValueError("a gated model's losses need cont_zero (the model's encoded raw 0 per field)")
        target = gate_classes(batch["next_cont"], batch["state_cont"], cont_zero)
        ce = F.cross_entropy(pred["gate_logits"].float().movedim(-1, 1), target, reduction="none")
        losses["gate"] = _per_sample_mean(ce, batch["next_cont_mask"], weight)
        if config.gated_regression:
            regressed = regressed & (target == GATE_FREE)
    elif config.gated_regression:
        raise ValueError("loss.gated_regression needs a model with the continuous gate (model.cont_gate)")
    losses["cont"] = _per_sample_mean(cont, regressed, weight)
    if "damage" in pred:   # model.hit_percent: the damage of each real hit
        hits = hit_entries(batch)
        rise = batch["next_cont"][..., PERCENT_COLUMN] - batch["state_cont"][..., PERCENT_COLUMN]
        losses["damage"] = _per_sample_mean(huber(pred["damage"], rise, PERCENT_COLUMN), hits)
        if "launch" in pred:   # model.hit_launch: the knockback speeds and hitlag the same hits set
            k = LAUNCH_COLUMNS
            losses["launch"] = _per_sample_mean(huber(pred["launch"], batch["next_cont"][..., k], k),
                                                hits.unsqueeze(-1) & batch["next_cont_mask"][..., k])
    bce = F.binary_cross_entropy_with_logits(pred["bin_logits"].float(), batch["next_bin"].float(), reduction="none")
    losses["binary"] = _per_sample_mean(bce, batch["next_bin_mask"], weight)
    for i, (name, logits) in enumerate(zip(cat_names, pred["cat_logits"])):
        ce = F.cross_entropy(logits.float().movedim(-1, 1), batch["next_cat"][..., i].long(), reduction="none",
                             label_smoothing=config.uniform_mix)
        losses[f"cat/{name}"] = _per_sample_mean(ce, batch["next_cat_mask"][..., i], weight)
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
