"""EncodingSpec on real games: round trips, missing-field masks, serialisation, augmentations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from meleewm.data.encoding import (
    BINARY_FIELDS,
    CAT_FIELDS,
    CONT_FIELDS,
    CTRL_COLUMNS,
    ENCODING_VERSION,
    STATE_COLUMNS,
    EncodingMismatch,
    EncodingSpec,
    apply_state_age_rule,
    read_player_columns,
)
from meleewm.data.augment import mirror_x, swap_players


@pytest.fixture(scope="module")
def encoded(small_dataset, spec):
    dataset, ids = small_dataset
    return {name: spec.encode_game(dataset, gid) for name, gid in ids.items()}


@pytest.fixture(scope="module")
def raw(small_dataset):
    dataset, ids = small_dataset
    return {name: read_player_columns(dataset, gid, STATE_COLUMNS + CTRL_COLUMNS) for name, gid in ids.items()}


def test_shapes_and_sizes(spec, encoded):
    g = encoded["ys_314"]
    F = len(g)
    assert g.cont.shape == (F, 2, spec.n_cont) and g.cont.dtype == np.float32
    assert g.binary.shape == (F, 2, spec.n_bin) == g.bin_mask.shape
    assert g.cat.shape == (F, 2, spec.n_cat) == g.cat_mask.shape
    assert g.ctrl.shape == (F, 2, spec.n_ctrl) and g.frame_ids.shape == (F,)
    assert g.item_cont.shape == (F, 4, 4) and g.item_present.shape == (F, 4)
    assert spec.n_cont == len(CONT_FIELDS) == 12 and spec.n_bin == len(BINARY_FIELDS) == 43
    assert [n for n, _ in spec.cat_fields] == list(CAT_FIELDS)
    assert all(size == len(spec.vocabs[n]) + 1 for n, size in spec.cat_fields)
    assert spec.cont_index("post_position_x") == 0 and spec.cat_index("post_state") == 0
    assert spec.ctrl_fields[spec.ctrl_index("button_A")] == "button_A"
    with pytest.raises(KeyError, match="not a continuous field"):
        spec.cont_index("nope")
    assert np.all(np.diff(g.frame_ids) > 0) and g.frame_ids[0] == -123
    assert np.all(g.cat[g.cat_mask] >= 0)
    assert np.abs(g.cont[g.cont_mask]).max() < 100  # normalised


@pytest.mark.parametrize("name", ["ys_314", "bf_201"])
def test_encode_decode_round_trip(spec, encoded, raw, name):
    g = encoded[name]
    _, _, values, valid = raw[name]
    dec = spec.decode_game(g)
    pos = valid["post_position_x"]
    assert pos.all()
    for f in ("post_position_x", "post_position_y"):
        assert np.abs(dec[f] - values[f]).max() < 1e-3
    for f in CONT_FIELDS:
        m = valid[f]
        if m.any():
            assert np.allclose(dec[f][m], values[f][m], rtol=1e-5, atol=1e-3), f
    for f in CAT_FIELDS:  # every value of a fit game is in the vocabulary
        m = valid[f]
        assert np.array_equal(dec[f][m], values[f][m].astype(np.int64)), f
    for f in ("post_state", "post_stocks", "post_jumps"):
        assert np.array_equal(dec[f][valid[f]], values[f][valid[f]])
    assert np.array_equal(dec["post_direction"] > 0, values["post_direction"] > 0)
    for f in ["post_airborne"] + [f"post_state_flags_{j}" for j in range(5)]:
        m = valid[f]
        assert np.array_equal(dec[f][m], values[f][m]), f
    # controllers: sticks, physical triggers and buttons come back
    ctrl = spec.decode_ctrl(g.ctrl)
    for f in ("pre_joystick_x", "pre_cstick_y", "pre_triggers_physical_l"):
        assert np.allclose(ctrl[f], values[f], atol=1e-6), f
    buttons = values["pre_buttons_physical"].astype(np.int64) & 0x1F7F  # the 12 modelled bits
    assert np.array_equal(ctrl["pre_buttons_physical"].astype(np.int64), buttons)
    assert np.array_equal(spec.encode_ctrl_columns(ctrl), g.ctrl)
    # re-encoding the decoded state gives the same tensors where present
    again = spec.encode_state_columns({k: v for k, v in dec.items() if k in STATE_COLUMNS})
    assert np.array_equal(again["cat"][g.cat_mask], g.cat[g.cat_mask])
    assert np.allclose(again["cont"][g.cont_mask], g.cont[g.cont_mask], atol=1e-5)


def test_probabilities_decode_like_bits(spec, encoded):
    g = encoded["dl_314"]
    probs = np.where(g.binary == 1, 0.9, 0.1).astype(np.float32)
    a = spec.decode_state(g.cont, g.binary, g.cat)
    b = spec.decode_state(torch.from_numpy(g.cont), torch.from_numpy(probs), torch.from_numpy(g.cat))
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_missing_field_masks(spec, encoded):
    old = encoded["bf_201"]  # Slippi 2.0.1: velocities (>=3.5), hitlag (>=3.8) and hurtbox (>=2.1) absent
    for f in CONT_FIELDS:
        i = spec.cont_index(f)
        absent = f.startswith("post_velocities_") or f == "post_hitlag"
        assert old.cont_mask[..., i].any() != absent, f
        if absent:
            assert np.all(old.cont[..., i] == 0)
    assert not old.bin_mask[..., spec.bin_index("invulnerable")].any()
    assert old.bin_mask[..., spec.bin_index("airborne")].all()
    assert not old.cat_mask[..., spec.cat_index("post_hurtbox_state")].any()
    oldest = encoded["dl_01"]  # Slippi 0.1: no airborne, flags, jumps, ground, l_cancel, misc_as, state_age
    assert not oldest.bin_mask[..., 1:].any() and oldest.bin_mask[..., 0].all()
    for f in ("post_jumps", "post_ground", "post_l_cancel"):
        assert not oldest.cat_mask[..., spec.cat_index(f)].any()
        assert np.all(oldest.cat[..., spec.cat_index(f)] == 0)
    assert np.isnan(oldest.state_age).all()
    modern = encoded["ys_314"]
    assert modern.cont_mask.all() and modern.bin_mask.all() and modern.cat_mask.all()


def test_unknown_values(spec):
    values = {"post_state": np.array([[14, 9999]]), "post_ground": np.array([[1, 60000]])}
    enc = spec.encode_state_columns(values)
    i, g = spec.cat_index("post_state"), spec.cat_index("post_ground")
    assert enc["cat"][0, 0, i] > 0 and enc["cat"][0, 1, i] == 0
    assert enc["cat"][0, 1, g] == 0 and enc["cat_mask"][0, 1, g]  # present but unseen -> UNKNOWN
    assert not enc["cont_mask"].any()  # columns not given count as null
    dec = spec.decode_state(enc["cont"], enc["binary"], enc["cat"])
    assert dec["post_state"].tolist() == [[14, -1]]


def test_spec_serialisation_round_trip(spec):
    text = json.dumps(spec.to_dict())
    back = EncodingSpec.from_dict(json.loads(text))
    assert back == spec and back.hash() == spec.hash() and back.to_dict() == spec.to_dict()
    back.check_compatible(spec)
    assert EncodingSpec.from_json(spec.to_json()) == spec


def test_check_compatible_names_the_difference(spec):
    d = spec.to_dict()
    d["vocabs"]["post_state"] = d["vocabs"]["post_state"] + [4000]
    other = EncodingSpec.from_dict(d)
    with pytest.raises(EncodingMismatch, match=r"vocabulary of post_state.*4000") as err:
        spec.check_compatible(other, ("checkpoint", "cache"))
    assert "checkpoint" in str(err.value) and isinstance(err.value, ValueError)
    d = spec.to_dict()
    d["cont_stats"]["post_percent"] = [1.0, 2.0]
    with pytest.raises(EncodingMismatch, match="normalisation of post_percent"):
        spec.check_compatible(EncodingSpec.from_dict(d))
    d = spec.to_dict()
    d["version"] = ENCODING_VERSION + 1
    with pytest.raises(EncodingMismatch, match="version"):
        EncodingSpec.from_dict(d)
    other = EncodingSpec.from_dict(spec.to_dict())
    other.version = ENCODING_VERSION + 1
    with pytest.raises(EncodingMismatch, match="version"):
        spec.check_compatible(other)


def _same(a, b):
    for k, v in a.arrays().items():
        w = getattr(b, k)
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, w), k
        else:
            assert v == w, k


def test_mirror_and_swap_are_involutions(spec, encoded):
    for g in (encoded["dl_314"], encoded["bf_201"].slice(500, 900)):
        _same(mirror_x(mirror_x(g, spec), spec), g)
        _same(swap_players(swap_players(g)), g)
        assert not np.array_equal(mirror_x(g, spec).cont, g.cont)
    # torch, batched window-style dicts
    g = encoded["ys_314"]
    sample = {"state_cont": torch.from_numpy(g.cont[None, :64]), "state_cat": torch.from_numpy(g.cat[None, :64]),
              "state_bin": torch.from_numpy(g.binary[None, :64]).float(), "ctrl": torch.from_numpy(g.ctrl[None, :64]),
              "stage": torch.tensor([g.const_stage]), "chars": torch.from_numpy(g.const_chars[None])}
    for fn in (lambda s: mirror_x(s, spec), swap_players):
        twice = fn(fn(sample))
        for k in sample:
            assert torch.equal(twice[k], sample[k]), k


def test_mirror_negates_raw_x(spec, encoded):
    g = encoded["dl_314"]
    m = mirror_x(g, spec)
    a, b = spec.decode_game(g), spec.decode_game(m)
    for f in ("post_position_x", "post_velocities_self_x_air", "post_velocities_knockback_x"):
        assert np.allclose(b[f], -a[f], atol=1e-3), f
    assert np.allclose(b["post_position_y"], a["post_position_y"], atol=1e-3)
    assert np.array_equal(b["post_direction"], -a["post_direction"])
    assert np.array_equal(m.ctrl[..., spec.ctrl_index("pre_joystick_x")],
                          -g.ctrl[..., spec.ctrl_index("pre_joystick_x")])
    assert np.array_equal(b["post_state"], a["post_state"])
    # Dream Land side platforms (ground 0 left, 1 right) swap; the main stage (4) stays
    ground, mirrored = a["post_ground"], b["post_ground"]
    assert np.all(mirrored[ground == 0] == 1) and np.all(mirrored[ground == 1] == 0)
    assert np.all(mirrored[ground == 4] == 4)
    # items: x negated, owner unchanged
    assert np.allclose(m.item_cont[..., 0], -g.item_cont[..., 0]) and np.array_equal(m.item_owner, g.item_owner)


def test_swap_exchanges_players(spec, encoded):
    g = encoded["dl_314"]
    s = swap_players(g)
    assert np.array_equal(s.cont[:, 0], g.cont[:, 1]) and np.array_equal(s.ctrl[:, 1], g.ctrl[:, 0])
    assert np.array_equal(s.const_chars, g.const_chars[::-1])
    owners = g.item_owner[g.item_present == 1]
    swapped = s.item_owner[g.item_present == 1]
    assert {1, 2} & set(owners.tolist())
    assert np.array_equal(swapped[owners == 1], np.full((owners == 1).sum(), 2))


def test_items(spec, small_dataset, encoded):
    dataset, ids = small_dataset
    g = encoded["ys_314"]
    items = dataset.items(ids["ys_314"], columns=["frame"]).column("frame").to_numpy()
    per_frame = np.bincount(np.searchsorted(g.frame_ids, items), minlength=len(g))
    assert np.array_equal(g.item_present.sum(1), np.minimum(per_frame, spec.item_slots))
    assert np.all(g.item_type[g.item_present == 0] == 0) and np.all(g.item_type[g.item_present == 1] > 0)
    assert g.item_owner.max() <= 3
    dec = spec.decode_items(g.item_present, g.item_type, g.item_owner, g.item_cont)
    assert np.isnan(dec["position_x"][g.item_present == 0]).all()


def test_constants(spec, encoded, small_dataset):
    dataset, ids = small_dataset
    g = encoded["bf_201"]
    rec = dataset.game(ids["bf_201"])
    assert spec.stage_vocab[g.const_stage - 1] == rec["stage"] == 31
    chars = [p["character"] for p in sorted(rec["players"], key=lambda p: p["port"])]
    assert [spec.char_vocab[c - 1] for c in g.const_chars] == chars
    assert spec.stage_index(999) == 0


def test_state_age_rule():
    prev_a, prev_age, new_a = np.array([5, 5, 7]), np.array([3.0, 0.0, 9.0], np.float32), np.array([5, 6, 7])
    assert apply_state_age_rule(prev_a, prev_age, new_a).tolist() == [4.0, 0.0, 10.0]
    t = apply_state_age_rule(torch.tensor(prev_a), torch.tensor(prev_age), torch.tensor(new_a))
    assert t.tolist() == [4.0, 0.0, 10.0]


def test_age_by_rule_counts_ages_as_closed_loop_does(spec, encoded, small_dataset):
    """With ``age_by_rule`` the age input of a real game is what ``apply_state_age_rule`` makes of its actions, frame
    after frame, as in closed loop: through a death it counts the 60 DEAD frames that the recording marks -1."""
    dataset, ids = small_dataset
    by_rule = EncodingSpec.from_dict({**spec.to_dict(), "age_by_rule": True})
    assert by_rule.age_by_rule and by_rule.hash() != spec.hash()
    assert EncodingSpec.from_json(by_rule.to_json()) == by_rule
    with pytest.raises(EncodingMismatch, match="age_by_rule"):
        spec.check_compatible(by_rule)
    recorded, counted = encoded["ys_314"], by_rule.encode_game(dataset, ids["ys_314"])
    for name, value in recorded.arrays().items():
        if name != "state_age" and isinstance(value, np.ndarray):
            assert np.array_equal(value, getattr(counted, name)), name
    actions = spec.decode_state(recorded.cont, recorded.binary, recorded.cat)["post_state"]
    age = np.zeros(2, np.float32)
    for t in range(1, len(actions)):
        age = apply_state_age_rule(actions[t - 1], age, actions[t])
        assert np.array_equal(counted.state_age[t], age), t
    dead = actions <= 10
    assert dead[:, 0].sum() == 181, "player 0 loses three stocks (60 DEAD frames each) and the game ends on a fourth"
    assert np.all(recorded.state_age[dead] == -1)
    assert counted.state_age[dead].min() == 0 and counted.state_age[dead].max() == 59
    respawns = np.flatnonzero(dead[:-1, 0] & ~dead[1:, 0]) + 1
    assert len(respawns) == 3 and np.all(counted.state_age[respawns - 1, 0] == 59)
    assert np.all(actions[respawns, 0] == 12) and np.all(counted.state_age[respawns, 0] == 0)   # ON_HALO_DESCENT
