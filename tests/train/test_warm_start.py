"""Warm starts (``init_from``): a model that gains optional inputs and the gate starts out computing exactly
what the checkpoint's model did, and an encoding that differs is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from meleewm.data.encoding import EncodingSpec
from meleewm.data.step import StepInput
from meleewm.model.world import WorldModel, WorldModelConfig
from meleewm.model.checkpoint import CheckpointError
from meleewm.train.checkpoint import load_matching_weights, save_checkpoint
from meleewm.train.config import TrainConfig

SIZE = dict(d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=16, action_embed_dim=8, cat_embed_dim=4,
            const_embed_dim=4)


def spec(**changes) -> EncodingSpec:
    from meleewm.data.encoding import CAT_FIELDS, CONT_FIELDS

    base = EncodingSpec(cont_stats={f: [0.5, 2.0] for f in CONT_FIELDS},
                        vocabs={f: [0, 1, 2, 3] for f in CAT_FIELDS}, items=True, item_slots=2,
                        item_type_vocab=[54, 55], item_stats={f: [0.0, 10.0] for f in
                                                              ("position_x", "position_y", "velocity_x", "velocity_y")})
    return replace(base, **changes)


def inputs(s: EncodingSpec, B=2, T=12) -> StepInput:
    g = torch.Generator().manual_seed(0)
    n_cat = len(s.cat_fields)
    return StepInput(
        state_cont=torch.randn(B, T, 2, s.n_cont, generator=g), cont_mask=torch.ones(B, T, 2, s.n_cont, dtype=torch.bool),
        state_bin=(torch.rand(B, T, 2, s.n_bin, generator=g) > 0.5).float(),
        bin_mask=torch.ones(B, T, 2, s.n_bin, dtype=torch.bool),
        state_cat=torch.randint(0, 5, (B, T, 2, n_cat), generator=g),
        cat_mask=torch.ones(B, T, 2, n_cat, dtype=torch.bool),
        state_age=torch.randint(0, 50, (B, T, 2), generator=g).float(),
        ctrl=torch.rand(B, T, 2, s.n_ctrl, generator=g), stage=torch.zeros(B, dtype=torch.long),
        chars=torch.zeros(B, 2, dtype=torch.long),
        state_item_present=torch.ones(B, T, 2), state_item_type=torch.ones(B, T, 2, dtype=torch.long),
        state_item_owner=torch.ones(B, T, 2, dtype=torch.long), state_item_cont=torch.randn(B, T, 2, 4, generator=g))


def test_new_inputs_and_gate_start_as_the_old_model(tmp_path):
    old_spec = spec(items=False, item_type_vocab=[], item_stats={})
    torch.manual_seed(0)
    old = WorldModel(old_spec, WorldModelConfig(**SIZE)).eval()
    with torch.no_grad():
        old.cont_head.weight.normal_(0, 0.05)
    save_checkpoint(tmp_path / "old.pt", model=old, config=TrainConfig())
    new = WorldModel(spec(), WorldModelConfig(**SIZE, age_embed_dim=4, age_max=20, cont_gate=True)).eval()
    loaded = load_matching_weights(new, tmp_path / "old.pt")
    assert "input_proj.weight" in loaded and "cont_head.weight" in loaded
    x = inputs(spec())
    with torch.no_grad():
        no_items = replace(x, state_item_present=None, state_item_type=None, state_item_owner=None,
                           state_item_cont=None)
        want, got = old(no_items), new(x)
    assert torch.allclose(want["cont"], got["cont"], atol=1e-5)
    for a, b in zip(want["cat_logits"], got["cat_logits"]):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(CheckpointError, match="cont_stats"):
        other = WorldModel(spec(cont_stats={f: [0.0, 3.0] for f in spec().cont_stats}), WorldModelConfig(**SIZE))
        load_matching_weights(other, tmp_path / "old.pt")
