"""Training with item slots on: items are read and predicted (closed loop), with their own losses."""

from __future__ import annotations

import json
import math

from meleewm.model.checkpoint import load_model
from meleewm.train.trainer import train
from tests.train.realdata import tiny_config


def test_training_with_items_has_item_losses(train_data, tmp_path):
    config = tiny_config("data.items=true", "data.item_slots=4", "optim.max_steps=4", "log.every_steps=1",
                         "self_forcing.prob=1.0")
    result = train(train_data, config, tmp_path / "run", progress=False)
    assert result.steps == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    for name in ("loss/items/present", "loss/items/type", "loss/items/owner", "loss/items/cont"):
        assert all(name in r and math.isfinite(r[name]) for r in train_records), name
    assert any(r["self_forcing_unroll"] > 0 for r in train_records)  # item predictions fed back in, too
    model = load_model(tmp_path / "run" / "last.pt").model
    assert model.spec.items and model.spec.item_slots == 4
