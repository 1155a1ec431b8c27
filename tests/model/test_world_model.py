"""The world model on real data: step() equals the chunked forward, causality, and the window layout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from meleewm.model.rollout import handoff_age, rollout
from meleewm.data.encoding import apply_state_age_rule
from meleewm.data.step import StepInput
from meleewm.model.world import (ACTION_COLUMN, GATE_FREE, GATE_SAME, GATE_ZERO, POSITION_FIELDS, WorldModel,
                                 WorldModelConfig, gate_classes, last_step, next_inputs)
from tests.conftest import extract_members
from tests.train.realdata import real_dataset

TOL = 1e-4
T = 96
BODIES = {
    # chunk_size 32 < T: several chunks, and warm-up splits that fall inside a chunk.
    "mamba2": dict(body="mamba2", d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=32,
                   action_embed_dim=16, cat_embed_dim=4, const_embed_dim=8),
    "mlp": dict(body="mlp", d_model=32, n_layer=2, context=10, hidden_mult=2,
                action_embed_dim=16, cat_embed_dim=4, const_embed_dim=8),
    # state_age as an input and the continuous gate (their argmax choices must agree between step and forward)
    "mamba2_age_gate": dict(body="mamba2", d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=32,
                            action_embed_dim=16, cat_embed_dim=4, const_embed_dim=8, age_embed_dim=8, age_max=40,
                            cont_gate=True),
}
MASKS = ("cont_mask", "bin_mask", "cat_mask")


@pytest.fixture(scope="module")
def real(replays, manifest, tmp_path_factory):
    """(spec, WindowDataset) over the small real dataset, items on (so the item heads are exercised)."""
    from meleewm.data.cache import build_cache
    from meleewm.data.encoding import EncodingSpec
    from meleewm.data.windows import WindowDataset
    from meleewm.replay.dataset import Dataset

    dataset = Dataset(real_dataset(replays, manifest, tmp_path_factory))
    ids = sorted(dataset.games.column("game_id").to_pylist())
    spec = EncodingSpec.fit(dataset, ids, items=True, item_slots=4)
    cache = build_cache(dataset, spec, ids, progress=False)
    return spec, WindowDataset(cache, T, seed=3, swap=True, mirror=True)


@pytest.fixture(scope="module")
def batch(real):
    _, windows = real
    # Windows from different games and places in them (the fixed stride puts game starts at index 0).
    picks = [1, len(windows) // 3, 2 * len(windows) // 3 + 1]
    return default_collate([windows[i] for i in picks])


@pytest.fixture(scope="module")
def tiled(real):
    """Every frame of the real games (but each game's last window's tail) as consecutive windows of T steps."""
    _, windows = real
    return default_collate([windows.sample_at(g, s, T) for g in windows.games
                            for s in range(0, windows.cache.lengths[g] - T - 1, T)])


def make(spec, body: str, seed: int = 0, **options) -> WorldModel:
    torch.manual_seed(seed)
    model = WorldModel(spec, WorldModelConfig(**BODIES[body], **options)).eval()
    # The continuous head starts at zero ("nothing moves"); give it weights so it is tested too.
    with torch.no_grad():
        model.cont_head.weight.normal_(0, 0.05)
        model.cont_head.bias.normal_(0, 0.05)
    return model


def at(x: StepInput, t) -> StepInput:
    """Inputs at time index ``t`` (an int: one step; or a slice: a sequence), constants untouched."""
    return x.frames(t.start, t.stop) if isinstance(t, slice) else x.frames(t, t + 1).last()


def flat(pred: dict) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in pred.items():
        if isinstance(v, list):
            out.update({f"{k}[{i}]": t for i, t in enumerate(v)})
        else:
            out[k] = v
    return out


def max_diff(a: dict, b: dict) -> dict[str, float]:
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    return {k: (fa[k].float() - fb[k].float()).abs().max().item() for k in fa}


def real_outputs(batch: dict, sizes: list[int]) -> tuple[dict, dict]:
    """A batch's real next frames as the heads' predictions (decided logits over categorical ``sizes``), and a copy
    of them to compare with after a rule."""
    out = {"cont": batch["next_cont"].clone(), "bin_logits": torch.where(batch["next_bin"] > 0, 30.0, -30.0),
           "cat_logits": [30.0 * F.one_hot(batch["next_cat"][..., i].long(), n).float() for i, n in enumerate(sizes)]}
    return out, {k: (list(v) if isinstance(v, list) else v.clone()) for k, v in out.items()}


def real_picks(batch: dict) -> tuple[StepInput, torch.Tensor]:
    """A batch's inputs and its real next actions: a rule given the game's own decisions as the model's picks."""
    return StepInput.from_window(batch), batch["next_cat"][..., ACTION_COLUMN].long()


def run_steps(model, x: StepInput, state, start: int = 0):
    outs = []
    for t in range(start, x.ctrl.shape[1]):
        pred, state = model.step(at(x, t), state)
        outs.append(pred)
    stacked = {k: ([torch.stack([o[k][i] for o in outs], 1) for i in range(len(outs[0][k]))]
                   if isinstance(outs[0][k], list) else torch.stack([o[k] for o in outs], 1)) for k in outs[0]}
    return stacked, state


@pytest.mark.parametrize("body", BODIES)
def test_step_equals_chunked_forward(real, batch, body):
    spec, _ = real
    model = make(spec, body)
    x = StepInput.from_window(batch)
    with torch.no_grad():
        full = model(x)
        stepped, _ = run_steps(model, x, model.init_state(x.ctrl.shape[0]))
    assert {"cont", "bin_logits", "cat_logits", "item_present_logits", "item_cont"} <= set(full)
    assert flat(full)["cat_logits[0]"].shape[:2] == (3, T)
    diffs = max_diff(full, stepped)
    assert max(diffs.values()) < TOL, diffs


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("warm", [1, 31, 40])
def test_warmup_state_then_step_equals_forward(real, batch, body, warm):
    """forward(return_state) over a warm-up, then step() frame by frame, equals the full forward after it."""
    spec, _ = real
    model = make(spec, body, seed=1)
    x = StepInput.from_window(batch)
    with torch.no_grad():
        full = model(x)
        head, state = model(at(x, slice(0, warm)), return_state=True)
        tail, _ = run_steps(model, x, state, start=warm)
        tail_fwd = model(at(x, slice(warm, None)), state=state)
    later = {k: ([t[:, warm:] for t in v] if isinstance(v, list) else v[:, warm:]) for k, v in full.items()}
    earlier = {k: ([t[:, :warm] for t in v] if isinstance(v, list) else v[:, :warm]) for k, v in full.items()}
    for got, want in ((tail, later), (tail_fwd, later), (head, earlier)):
        diffs = max_diff(got, want)
        assert max(diffs.values()) < TOL, diffs


@pytest.mark.parametrize("body", BODIES)
def test_rollout_is_step_on_own_predictions(real, batch, body):
    """rollout(): first frame from the warm-up forward, then step() on its own (argmax) predictions."""
    spec, _ = real
    model = make(spec, body, seed=2)
    x = StepInput.from_window(batch)
    W, H = 40, 12
    warm = at(x, slice(0, W))
    controllers = x.ctrl[:, W:W + H - 1]
    out = rollout(model, warm, controllers)
    assert out["state_cont"].shape[:2] == (3, H)
    with torch.no_grad():
        pred, state = model(warm, return_state=True)
        last = warm.last()
        frames = [next_inputs(last_step(pred), last)]
        for h in range(H - 1):
            step_in = replace(last, **frames[-1].state(), ctrl=controllers[:, h])
            current, state = model.step(step_in, state)
            last = step_in
            frames.append(next_inputs(current, step_in))
    for key, value in out.items():
        want = torch.stack([getattr(f, key) for f in frames], 1)
        assert torch.allclose(value.float(), want.float(), atol=TOL), key
    # Masks carry over: a field absent at the end of the warm-up stays absent.
    assert not set(out) & set(MASKS)


def _perturb(x: StepInput, key: str, t: int) -> StepInput:
    v = getattr(x, key).clone()
    if v.dtype.is_floating_point:
        v[:, t] = v[:, t] + 0.7 + torch.rand_like(v[:, t])
    else:  # categorical indices: move to another valid index
        v[:, t] = v[:, t] % 3 + 1  # != v, and < 4 (the smallest vocabulary)
    return replace(x, **{key: v})


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("key", ["state_cont", "state_bin", "state_cat", "state_item_cont", "ctrl"])
def test_causality(real, batch, body, key):
    """Perturbing the inputs at position t (state of frame t, or the controllers of frame t+1) leaves the
    predictions at positions < t bit-identical and changes position t."""
    spec, _ = real
    model = make(spec, body)
    x = StepInput.from_window(batch)
    if key == "state_item_cont":
        x = replace(x, state_item_present=torch.ones_like(x.state_item_present))
    # make every field present, so a perturbation can never be masked away
    x = replace(x, **{k: torch.ones_like(getattr(x, k)) for k in MASKS})
    with torch.no_grad():
        base = flat(model(x))
        for t in (5, 33, T - 1):
            moved = flat(model(_perturb(x, key, t)))
            for name in base:
                assert torch.equal(base[name][:, :t], moved[name][:, :t]), (name, t)
            changed = max((base[n][:, t].float() - moved[n][:, t].float()).abs().max().item() for n in base)
            assert changed > 1e-6, (key, t)


def test_window_layout(real):
    """next_*[i] == state_*[i + 1]; ctrl[i] and next_*[i] belong to frame[i]; consecutive frame ids."""
    spec, windows = real
    windows.set_epoch(1)
    pairs = [("next_cont", "state_cont"), ("next_cont_mask", "cont_mask"), ("next_bin", "state_bin"),
             ("next_bin_mask", "bin_mask"), ("next_cat", "state_cat"), ("next_cat_mask", "cat_mask"),
             ("next_item_present", "state_item_present"), ("next_item_type", "state_item_type"),
             ("next_item_owner", "state_item_owner"), ("next_item_cont", "state_item_cont")]
    flags = set()
    for i in range(0, len(windows), max(1, len(windows) // 12)):
        s = windows[i]
        flags.add((bool(s["swapped"]), bool(s["mirrored"])))
        for nxt, cur in pairs:
            assert torch.equal(s[nxt][:-1], s[cur][1:]), (i, nxt)
        assert s["frame"].shape == (T,)
        assert torch.equal(s["frame"][1:] - s["frame"][:-1], torch.ones(T - 1, dtype=s["frame"].dtype))
        # The window starting at `start` reads state of frame index start and predicts start+1..start+T.
        g, start = int(s["game"]), int(s["start"])
        plain = windows.sample_at(g, start, T)
        assert torch.equal(plain["frame"], s["frame"])
        if not s["swapped"] and not s["mirrored"]:
            assert torch.equal(plain["ctrl"], s["ctrl"]) and torch.equal(plain["next_cont"], s["next_cont"])
        if start + T + 2 <= windows.cache.lengths[g]:  # the window one frame later reads what this one predicts
            nxt = windows.sample_at(g, start + 1, T)
            assert torch.equal(nxt["state_cont"], plain["next_cont"])
            assert torch.equal(nxt["ctrl"][:-1], plain["ctrl"][1:])
    assert len(flags) > 1  # augmentations were exercised
    windows.set_epoch(0)


@pytest.fixture(scope="module")
def recent_game(replays, manifest, tmp_path_factory):
    """(spec, WindowDataset) of one real Slippi 3.1x game: one that records velocities, and items (Falco's lasers)."""
    from meleewm.data.cache import build_cache
    from meleewm.data.encoding import EncodingSpec
    from meleewm.data.windows import WindowDataset
    from meleewm.replay.dataset import Dataset
    from meleewm.replay.ingest import ingest

    name = min(n for (a, n), r in manifest.items()
               if a == "games-1.zip" and r.get("slippi_version", "").startswith("3.1") and r.get("n_players") == 2)
    root = tmp_path_factory.mktemp("recent")
    ingest(extract_members(replays / "games-1.zip", [name], root / "in"), root / "ds")
    dataset = Dataset(root / "ds")
    ids = dataset.games.column("game_id").to_pylist()
    spec = EncodingSpec.fit(dataset, ids, items=True)
    return spec, WindowDataset(build_cache(dataset, spec, ids, progress=False), T, random_phase=False)


@pytest.fixture(scope="module")
def recent(recent_game):
    """(spec, batch) of three windows of the 3.1x game."""
    spec, windows = recent_game
    return spec, default_collate([windows[i] for i in (0, len(windows) // 2, len(windows) - 1)])


@pytest.mark.parametrize("ground_motion", [False, True])
@pytest.mark.parametrize("airborne", [True, False])
def test_positions_move_by_the_predicted_velocity(recent, airborne, ground_motion):
    """With no learned correction, x(t) = x(t-1) + (air or ground speed, by the predicted airborne bit) +
    knockback, and y(t) = y(t-1) + its speed + knockback, in game units, where the game has velocities. With
    ``ground_motion``, a grounded character's y stays where it is, whatever its y speeds read."""
    spec, batch = recent
    model = make(spec, "mamba2", ground_motion=ground_motion)
    with torch.no_grad():
        model.cont_head.weight.zero_()
        model.cont_head.bias.zero_()
        model.bin_head.weight.zero_()
        model.bin_head.bias.zero_()
        model.bin_head.bias[spec.bin_index("airborne")::spec.n_bin] = 30.0 if airborne else -30.0
        pred = model(StepInput.from_window(batch))
    mean = {f: spec.cont_stats[f][0] for f in spec.cont_fields}
    std = {f: spec.cont_stats[f][1] for f in spec.cont_fields}
    state, mask = batch["state_cont"], batch["cont_mask"]

    def raw(field):
        return state[..., spec.cont_index(field)] * std[field] + mean[field]

    has_velocity = mask[..., spec.cont_index("post_velocities_self_y")]
    assert has_velocity.any()
    speed_x = raw("post_velocities_self_x_air" if airborne else "post_velocities_self_x_ground")
    moved_x = speed_x + raw("post_velocities_knockback_x")
    moved_y = raw("post_velocities_self_y") + raw("post_velocities_knockback_y")
    if ground_motion and not airborne:
        assert moved_y.abs().max() > 0.1  # real y speeds that a grounded prediction must ignore
        moved_y = torch.zeros_like(moved_y)
    for field, moved in (("post_position_x", moved_x), ("post_position_y", moved_y)):
        i = spec.cont_index(field)
        got = (pred["cont"][..., i] - state[..., i] * mask[..., i]) * std[field]
        expected = torch.where(has_velocity, moved, torch.zeros_like(moved))
        torch.testing.assert_close(got, expected.float(), atol=1e-3, rtol=1e-4)
    assert moved_x[has_velocity].abs().max() > 0.1  # the check is not all zeros


def test_knockback_decays_as_in_the_game(recent_game):
    """``knockback_decay``: given the real next frames as the predictions (their knockback off by a unit), a real
    game's knockback is the input's spent by KNOCKBACK_DECAY along its direction wherever the rule applies (in the
    air, out of hitlag, no new hit), and a spent one is exactly 0; elsewhere the prediction is left alone. In the
    model, positions move by the decayed knockback."""
    from meleewm.melee.game import KNOCKBACK_DECAY
    from meleewm.model.world import KNOCKBACK_FIELDS

    spec, windows = recent_game
    batch = default_collate([windows[i] for i in range(len(windows))])
    model = make(spec, "mamba2", cont_gate=True, knockback_decay=True)
    x, actions = real_picks(batch)
    airborne = spec.bin_index("airborne")
    bin_logits = torch.where(batch["next_bin"] > 0.5, 30.0, -30.0)
    k = [spec.cont_index(f) for f in KNOCKBACK_FIELDS]
    guess = batch["next_cont"].clone()
    guess[..., k] += 1.0
    with torch.no_grad():
        out = model._knockback_decay(guess, bin_logits, actions, x)
    changed = (out != guess).any(-1)
    raw = {axis: spec.denormalise(f, batch["state_cont"][..., i]) for axis, f, i in zip("xy", KNOCKBACK_FIELDS, k)}
    speed = torch.hypot(raw["x"], raw["y"])
    hitlag = spec.denormalise("post_hitlag", batch["next_cont"][..., spec.cont_index("post_hitlag")])
    rule = (batch["next_bin"][..., airborne] > 0.5) & (hitlag < 0.5) & (speed > 0) & ~(
        model.damage_action[actions] & (actions != x.state_cat[..., ACTION_COLUMN]))
    assert rule.sum() > 100, "the game holds flights"
    assert not changed[~rule].any()                                  # elsewhere the prediction stands
    right = [(spec.denormalise(f, out[..., i]) - spec.denormalise(f, batch["next_cont"][..., i])).abs() < 1e-3
             for f, i in zip(KNOCKBACK_FIELDS, k)]
    assert (right[0] & right[1])[rule].float().mean() > 0.95        # 97.8 % over the shared games
    spent = rule & (speed <= KNOCKBACK_DECAY)
    assert torch.equal(out[..., k][spent], model.cont_zero[k].expand_as(out[..., k])[spent])
    with torch.no_grad():   # velocities kept, positions moved by them, every frame airborne and without a hit
        model.cont_head.weight.zero_()
        model.cont_head.bias.zero_()
        model.gate_head.weight.zero_()
        position = [spec.cont_index("post_position_x"), spec.cont_index("post_position_y")]
        bias = torch.tensor([-9.0, -9.0, 9.0]).repeat(2, spec.n_cont, 1)    # every field "unchanged" ...
        bias[:, position] = torch.tensor([9.0, -9.0, -9.0])                 # ... but positions, moved
        model.gate_head.bias.copy_(bias.flatten())
        model.bin_head.weight.zero_()
        model.bin_head.bias.zero_()
        model.bin_head.bias[airborne::spec.n_bin] = 30.0
        model.cat_heads[ACTION_COLUMN].weight.zero_()
        model.cat_heads[ACTION_COLUMN].bias.zero_()     # picks index 0 (UNKNOWN): no hit
        pred = model(x)
    flying = (speed > 0) & (spec.denormalise("post_hitlag", x.state_cont[..., spec.cont_index("post_hitlag")]) < 0.5)
    assert flying.sum() > 100
    left = (1 - KNOCKBACK_DECAY / speed.clamp_min(KNOCKBACK_DECAY)).clamp_min(0)
    for field, own, axis in (("post_position_x", "post_velocities_self_x_air", "x"),
                             ("post_position_y", "post_velocities_self_y", "y")):
        i = spec.cont_index(field)
        moved = (pred["cont"][..., i] - x.state_cont[..., i]) * spec.cont_stats[field][1]
        expected = spec.denormalise(own, x.state_cont[..., spec.cont_index(own)]) + raw[axis] * left
        torch.testing.assert_close(moved[flying], expected[flying].float(), atol=2e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="cont_gate"):
        WorldModelConfig(knockback_decay=True)


def test_hitlag_freezes_a_character_where_it_stands(recent_game):
    """``hitlag_freeze``: where the input frame and the prediction are both in hitlag, the position is the input's,
    exactly; as in a real game, where the character stands still on nearly all such frames; elsewhere the
    prediction is left alone."""
    spec, windows = recent_game
    batch = default_collate([windows[i] for i in range(len(windows))])
    model = make(spec, "mamba2", hitlag_freeze=True)
    x = StepInput.from_window(batch)
    moved = batch["next_cont"].clone()
    position = [spec.cont_index("post_position_x"), spec.cont_index("post_position_y")]
    moved[..., position] += 0.5                               # a prediction that moves everybody
    with torch.no_grad():
        out = model._hitlag_freeze(moved, x)
    hitlag = spec.cont_index("post_hitlag")
    lagging = [spec.denormalise("post_hitlag", v[..., hitlag]) >= 0.5 for v in (batch["state_cont"], moved)]
    frozen = lagging[0] & lagging[1]
    assert frozen.sum() > 50, "the game holds hits"
    assert torch.equal(out[..., position][frozen], batch["state_cont"][..., position][frozen])
    others = [i for i in range(spec.n_cont) if i not in position]
    assert torch.equal(out[~frozen], moved[~frozen]) and torch.equal(out[..., others], moved[..., others])
    still = (batch["next_cont"][..., position] == batch["state_cont"][..., position]).all(-1)
    assert still[frozen].float().mean() > 0.9               # 97.7 % over the shared games


def test_a_jump_starts_at_the_games_speed(recent_game):
    """``jump_speed``: given the real next actions as the picks and a fall speed off the real one by a little, every
    ground and double jump a real game starts (characters in the jump tables) gets exactly its real first speed: the
    short or full hop the model's speed is nearer to, or the double jump's; every other entry is left alone."""
    spec, windows = recent_game
    batch = default_collate([windows[i] for i in range(len(windows))])
    model = make(spec, "mamba2", cont_gate=True, jump_speed=True)
    x, actions = real_picks(batch)
    i = spec.cont_index("post_velocities_self_y")
    guess = batch["next_cont"].clone()
    guess[..., i] += 0.2 / spec.cont_stats["post_velocities_self_y"][1]     # 0.2 units above the real speed
    with torch.no_grad():
        out = model._jump_speed(guess, None, actions, x)   # reads no airborne bit
    before = x.state_cat[..., ACTION_COLUMN].long()
    table = torch.isfinite(model.jump_speeds[x.state_cat[..., spec.cat_index("post_character")].long()])
    ground = model.ground_jump[actions] & ~model.ground_jump[before] & table[..., 0]
    double = model.double_jump[actions] & ~model.double_jump[before] & table[..., 2]
    starts = ground | double
    assert ground.sum() >= 20 and double.sum() >= 5
    real = spec.denormalise("post_velocities_self_y", batch["next_cont"][..., i])
    got = spec.denormalise("post_velocities_self_y", out[..., i])
    torch.testing.assert_close(got[starts], real[starts], atol=1e-3, rtol=0)
    others = torch.ones_like(guess, dtype=torch.bool)
    others[..., i] = ~starts
    assert torch.equal(out[others], guess[others])
    with pytest.raises(ValueError, match="cont_gate"):
        WorldModelConfig(jump_speed=True)


def speed_rule_on_real_game(recent_game, switch: str, fields: tuple[str, ...]):
    """A speed rule on the 3.1x game, given the real next actions and airborne bits as the predictions and ``fields``
    a unit off the real values everywhere: (spec, inputs, picks, the entries the rule set, then the real next values,
    the rule's and the input's, raw ``[..., len(fields)]``). Every entry the rule leaves keeps the guessed values."""
    spec, windows = recent_game
    batch = default_collate([windows[i] for i in range(len(windows))])
    model = make(spec, "mamba2", cont_gate=True, **{switch: True})
    x, actions = real_picks(batch)
    bin_logits = torch.where(batch["next_bin"] > 0.5, 30.0, -30.0)
    columns = [spec.cont_index(f) for f in fields]
    guess = batch["next_cont"].clone()
    guess[..., columns] += 1.0
    with torch.no_grad():
        out = getattr(model, f"_{switch}")(guess, bin_logits, actions, x)
    ruled = (out != guess).any(-1)
    others = torch.ones_like(guess, dtype=torch.bool)
    for i in columns:
        others[..., i] = ~ruled
    assert torch.equal(out[others], guess[others])
    real, got, before = (torch.stack([spec.denormalise(f, v[..., i]) for f, i in zip(fields, columns)], -1)
                         for v in (batch["next_cont"], out, batch["state_cont"]))
    return spec, x, actions, ruled, real, got, before


def is_falco(spec, x: StepInput) -> torch.Tensor:
    """``[..., 2]``: the input frame's character is Falco (internal 22)."""
    return x.state_cat[..., spec.cat_index("post_character")] == spec.cat_value_index("post_character", 22)


def test_an_airdodge_moves_as_in_the_game(recent_game):
    """``airdodge_speed``: given the real next actions as the picks, every airdodge of a real game starts at the real
    speed along the frame's control stick and slows as the game slows it; the model's speeds stand elsewhere."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.model.world import AIR_SPEED_FIELDS

    spec, x, actions, ruled, real, got, _ = speed_rule_on_real_game(recent_game, "airdodge_speed", AIR_SPEED_FIELDS)
    dodge = spec.cat_value_index("post_state", ACTION_IDS["AIRDODGE"])
    in_dodge = actions == dodge
    assert ruled.sum() >= 50 and not ruled[~in_dodge].any()
    entering = in_dodge & (x.state_cat[..., ACTION_COLUMN] != dodge)
    assert ruled[entering].all()
    right = ((got - real).abs() < 1e-3).all(-1)
    assert right[ruled].float().mean() > 0.95


def test_fire_fox_and_fire_bird_fly_as_in_the_game(recent_game):
    """``fire_travel``: given the real next actions as the picks, Falco's Fire Birds of a real game start at the game's
    speed along the frame's control stick and fly on at the schedule's speed for their age; the same action id of the
    other character (Ice Climbers) and every other frame keep the model's speeds."""
    from meleewm.model.world import AIR_SPEED_FIELDS, FIRE_AIR

    spec, x, actions, ruled, real, got, _ = speed_rule_on_real_game(recent_game, "fire_travel", AIR_SPEED_FIELDS)
    falco, right = is_falco(spec, x), ((got - real).abs() < 1e-3).all(-1)
    fire = actions == spec.cat_value_index("post_state", FIRE_AIR)
    assert ruled.sum() >= 20 and not ruled[~(fire & falco)].any()
    assert (fire & ~falco).any(), "the Ice Climbers use the same action id for another move"
    entering = fire & falco & (x.state_cat[..., ACTION_COLUMN] != actions)
    assert entering.any() and ruled[entering].all()
    assert right[ruled].float().mean() > 0.8, right[ruled].float().mean()


def test_an_illusion_dashes_and_ends_as_in_the_game(recent_game):
    """``illusion_travel``: given the real next actions as the picks, Falco's Illusions in the air of a real game dash
    at the game's speed along the facing (still on their first frame) and end by the game's slowing and falling; the
    same action ids of the other character and every other frame keep the model's speeds."""
    from meleewm.model.world import AIR_SPEED_FIELDS, ILLUSION_AIR, ILLUSION_AIR_END

    spec, x, actions, ruled, real, got, _ = speed_rule_on_real_game(recent_game, "illusion_travel", AIR_SPEED_FIELDS)
    falco, right = is_falco(spec, x), ((got - real).abs() < 1e-3).all(-1)
    dash, end = (actions == spec.cat_value_index("post_state", a) for a in (ILLUSION_AIR, ILLUSION_AIR_END))
    assert (ruled & dash).sum() >= 3 and (ruled & end).sum() >= 10
    assert not ruled[~((dash | end) & falco)].any()
    assert right[ruled].float().mean() > 0.95, right[ruled].float().mean()
    assert (got[..., 0].abs()[ruled & dash] > 10).any()        # the dash itself, not only its still first frame


def test_a_ledge_is_caught_where_the_game_catches_it(real, tiled):
    """``ledge_catch``: given the real next frames as the predictions (positions 5 units off), every ledge catch of
    the real games is kept, at the real position (the catch point of its character, for the characters with one) and
    still; a catch the model would make 40 units from the ledge gives way to its best action that is not a ledge
    action."""
    from meleewm.melee.actions import ACTION_IDS, LEDGE_STATES
    from meleewm.melee.characters import LEDGE_CATCH_OFFSETS
    from meleewm.model.world import MOTION_FIELDS, POSITION_FIELDS

    spec, _ = real
    batch = tiled
    model = make(spec, "mamba2", cont_gate=True, ledge_catch=True)
    x = StepInput.from_window(batch)
    sizes = [size for _, size in spec.cat_fields]
    positions = [spec.cont_index(f) for f in POSITION_FIELDS]
    guess = batch["next_cont"].clone()
    guess[..., positions] += 5.0 / torch.tensor([spec.cont_stats[f][1] for f in POSITION_FIELDS])
    logits = [30.0 * F.one_hot(batch["next_cat"][..., i].long(), n).float() for i, n in enumerate(sizes)]
    out = {"cont": guess, "cat_logits": list(logits)}
    with torch.no_grad():
        model._ledge_catch(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    raw = torch.as_tensor(spec.decode_lut("post_state"))
    ledge = torch.tensor(sorted(LEDGE_STATES))
    catch = (torch.isin(raw[batch["next_cat"][..., ACTION_COLUMN].long()], ledge)
             & ~torch.isin(raw[x.state_cat[..., ACTION_COLUMN].long()], ledge))
    character = x.state_cat[..., spec.cat_index("post_character")].long()
    chars = torch.as_tensor(spec.decode_lut("post_character"))[character]
    placed = catch & torch.isin(chars, torch.tensor(sorted(LEDGE_CATCH_OFFSETS)))
    assert placed.sum() >= 3, "the games hold ledge catches"
    assert torch.equal(out["cat_logits"][ACTION_COLUMN], logits[ACTION_COLUMN])    # none of them impossible
    moved = (out["cont"] != guess).any(-1)
    assert moved[placed].all() and not moved[~placed].any()
    error = torch.stack([(spec.denormalise(f, out["cont"][..., i]) - spec.denormalise(f, batch["next_cont"][..., i]))
                         .abs() for f, i in zip(POSITION_FIELDS, positions)], -1)
    assert (error[placed] < 0.01).all(-1).float().mean() > 0.9, error[placed]
    still = torch.stack([spec.denormalise(f, out["cont"][..., spec.cont_index(f)]) for f in MOTION_FIELDS], -1)
    assert (still[placed] == 0).all()

    # the same catches from 40 units farther out: the model's second pick (here FALLING) stands
    far = x.replace(state_cont=x.state_cont.clone())
    ix = positions[0]
    px = spec.denormalise("post_position_x", far.state_cont[..., ix])
    far.state_cont[..., ix] = spec.normalise("post_position_x", px + 40.0 * torch.sign(px))
    second = logits[ACTION_COLUMN] + 20.0 * F.one_hot(torch.tensor(spec.cat_value_index(
        "post_state", ACTION_IDS["FALLING"])), sizes[ACTION_COLUMN]).float()
    out = {"cont": guess, "cat_logits": [*logits[:ACTION_COLUMN], second, *logits[ACTION_COLUMN + 1:]]}
    with torch.no_grad():
        picks = model._ledge_catch(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), far)
    assert torch.equal(picks, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
    assert (picks[catch] == spec.cat_value_index("post_state", ACTION_IDS["FALLING"])).all()
    assert torch.equal(picks[~catch], second.argmax(-1)[~catch])
    assert torch.equal(out["cont"], guess)


def test_a_sliding_character_slows_by_its_friction(recent_game):
    """``ground_friction``: given the real next actions and airborne bits as the predictions, and the model's own ground
    speed a little off the real one, a real game's sliding frames (the same SLIDING action on the ground) get their
    real next ground speed on nearly all of them, never past 0; every other entry is left alone."""
    spec, windows = recent_game
    batch = default_collate([windows[i] for i in range(len(windows))])
    model = make(spec, "mamba2", cont_gate=True, ground_friction=True)
    x, actions = real_picks(batch)
    bin_logits = torch.where(batch["next_bin"] > 0.5, 30.0, -30.0)
    i = spec.cont_index("post_velocities_self_x_ground")
    guess = batch["next_cont"].clone()
    guess[..., i] += 0.005 / spec.cont_stats["post_velocities_self_x_ground"][1]   # under half the least friction
    with torch.no_grad():
        out = model._ground_friction(guess, bin_logits, actions, x)
        moved = model._ground_friction(guess + 1.0, bin_logits, actions, x)   # own values far off
    ruled = (moved != guess + 1.0).any(-1)
    assert ruled.sum() >= 200
    real = spec.denormalise("post_velocities_self_x_ground", batch["next_cont"][..., i])
    got = spec.denormalise("post_velocities_self_x_ground", out[..., i])
    assert ((got - real).abs() < 1e-3)[ruled].float().mean() > 0.9
    before = spec.denormalise("post_velocities_self_x_ground", batch["state_cont"][..., i])
    assert (got[ruled] * before[ruled] >= 0).all()              # a slide stops at 0, never turns back
    others = torch.ones_like(guess, dtype=torch.bool)
    others[..., i] = ~ruled
    assert torch.equal(moved[others], (guess + 1.0)[others])


def test_a_character_drifts_in_the_air_as_in_the_game(recent_game):
    """``air_drift``: given the real next actions and airborne bits as the predictions and air speeds a unit off, a
    real game's drifting frames get their real air speed on nearly all of them, with the stick at rest (slowing, never
    past 0) and held (towards the stick's target speed), the helpless fall after Falco's Fire Bird and a tumble too;
    every other entry is left alone."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.game import STICK_DEADZONE
    from meleewm.model.world import AIR_SPEED_FIELDS

    spec, x, _, ruled, real, got, before = speed_rule_on_real_game(recent_game, "air_drift", AIR_SPEED_FIELDS[:1])
    real, got, before = real[..., 0], got[..., 0], before[..., 0]
    held = x.ctrl[..., spec.ctrl_index("pre_joystick_x")].abs() >= STICK_DEADZONE
    assert (ruled & held).sum() >= 200 and (ruled & ~held).sum() >= 200
    right = (got - real).abs() < 1e-3
    assert right[ruled & held].float().mean() > 0.85 and right[ruled & ~held].float().mean() > 0.85
    assert (got[ruled & ~held] * before[ruled & ~held] >= 0).all()     # at rest a drift stops at 0, never turns back
    for name in ("DEAD_FALL", "TUMBLING"):
        these = ruled & (x.state_cat[..., ACTION_COLUMN] == spec.cat_value_index("post_state", ACTION_IDS[name]))
        assert these.sum() >= 20 and right[these].float().mean() > 0.85, (name, these.sum())


def test_a_character_falls_as_in_the_game(recent_game):
    """``air_fall``: given the real next actions and airborne bits as the predictions and fall speeds a unit off, a
    real game's frames in the air get their real fall speed on nearly all of them (gravity to the top fall speed, fast
    falls, falls in hitstun and the helpless fall after Falco's Fire Bird); every other entry is left alone."""
    from meleewm.melee.actions import ACTION_IDS, DAMAGE_STATES
    from meleewm.melee.characters import AIR_FALL
    from meleewm.model.world import AIR_SPEED_FIELDS

    spec, x, _, ruled, real, got, _ = speed_rule_on_real_game(recent_game, "air_fall", AIR_SPEED_FIELDS[1:])
    real, got = real[..., 0], got[..., 0]
    right = (got - real).abs() < 1e-3
    assert ruled.sum() >= 500 and right[ruled].float().mean() > 0.9
    hitstun = torch.isin(torch.as_tensor(spec.decode_lut("post_state"))[x.state_cat[..., ACTION_COLUMN].long()],
                         torch.tensor(sorted(DAMAGE_STATES)))
    assert (ruled & hitstun).sum() >= 100 and right[ruled & hitstun].float().mean() > 0.95   # launched, falling
    helpless = x.state_cat[..., ACTION_COLUMN] == spec.cat_value_index("post_state", ACTION_IDS["DEAD_FALL"])
    # 36 of 40 here (a pull counts on the frame the stick crosses the line, which the inputs cannot see)
    assert (ruled & helpless).sum() >= 20 and right[ruled & helpless].float().mean() > 0.85
    for speed in AIR_FALL[22][1:]:                               # Falco at his top fall speed, and fast-falling
        at = ruled & ((real + speed).abs() < 1e-3)
        assert at.sum() >= 20 and right[at].float().mean() > 0.9, (speed, at.sum(), right[at].float().mean())


def test_state_age_is_exact_in_closed_loop(real, batch):
    """A rollout's state_age is the rule's, frame by frame, from the last real age of the warm-up (counted along the
    warm-up where Slippi records none): +1 while the predicted action stays, 0 when it changes; and the age model
    reads it (another age, another prediction)."""
    spec, _ = real
    model = make(spec, "mamba2_age_gate", seed=4)
    x = StepInput.from_window(batch)
    W, H = 40, 30
    warm = at(x, slice(0, W))
    out = rollout(model, warm, x.ctrl[:, W:W + H - 1])
    actions = torch.cat([warm.state_cat[:, -1:, :, ACTION_COLUMN], out["state_cat"][..., ACTION_COLUMN]], 1)
    age = handoff_age(warm)
    assert not torch.isnan(age).any()
    changed = 0
    for h in range(H):
        age = torch.where(actions[:, h + 1] == actions[:, h], age + 1, torch.zeros_like(age))
        changed += int((actions[:, h + 1] != actions[:, h]).sum())
        assert torch.equal(out["state_age"][:, h], age), h
    assert changed > 0 and (out["state_age"] > 0).any()  # both branches of the rule were exercised
    with torch.no_grad():
        older = model(replace(x, state_age=x.state_age + 7))["cat_logits"][0]
        assert not torch.allclose(older, model(x)["cat_logits"][0])
    assert torch.equal(apply_state_age_rule(actions[:, 0], handoff_age(warm), actions[:, 1]),
                       out["state_age"][:, 0])


def test_a_handoff_counts_the_ages_slippi_does_not_record(real, batch):
    """Where the warm-up's last recorded age is -1 (Slippi keeps no count of deaths and shields), closed loop counts
    on from the frames the action has lasted in the warm-up (0 on its first); recorded ages and unknown ones stay."""
    x = StepInput.from_window(batch)
    warm = at(x, slice(0, 6))
    actions = torch.tensor([[3, 3, 5, 5, 5, 5], [3, 3, 3, 3, 3, 3], [5, 3, 5, 5, 3, 3]])
    cat = warm.state_cat.clone()
    cat[..., 0, ACTION_COLUMN] = actions
    recorded = torch.tensor([[-1.0, 7.0], [-1.0, float("nan")], [-1.0, 2.0]])
    age = warm.state_age.clone()
    age[:, -1] = recorded
    counted = handoff_age(warm.replace(state_cat=cat, state_age=age))
    torch.testing.assert_close(counted, torch.tensor([[3.0, 7.0], [5.0, float("nan")], [1.0, 2.0]]), equal_nan=True)


def test_gate_classes_on_hand_built_values():
    zero = torch.tensor([-0.5, 0.0])
    prev = torch.tensor([[[-0.5, 1.0], [2.0, 3.0]]])
    nxt = torch.tensor([[[-0.5, 1.0], [2.5, 0.0]]])
    # field 0 of player 0 is both zero and unchanged: zero wins (a still character's speed snaps to 0)
    assert gate_classes(nxt, prev, zero).tolist() == [[[GATE_ZERO, GATE_SAME], [GATE_FREE, GATE_ZERO]]]


def test_gate_gives_exact_zero_and_exact_copy(real, batch):
    """Where the gate says "zero" the prediction is exactly the encoded raw 0 and decodes to exactly 0.0; where it
    says "unchanged" it is exactly the input value, positions included (no motion term is added)."""
    spec, _ = real
    model = make(spec, "mamba2_age_gate", seed=5)
    velocity = [spec.cont_index(f) for f in spec.cont_fields if f.startswith("post_velocities")]
    n = spec.n_cont
    with torch.no_grad():
        model.gate_head.weight.zero_()
        bias = torch.full((2, n, 3), -10.0)
        bias[:, :, GATE_SAME] = 10.0
        bias[:, velocity, GATE_SAME] = -10.0
        bias[:, velocity, GATE_ZERO] = 10.0
        model.gate_head.bias.copy_(bias.flatten())
        x = StepInput.from_window(batch)
        pred = model(x)
    cont, mask = pred["cont"], x.cont_mask
    others = [i for i in range(n) if i not in velocity]
    assert torch.equal(cont[..., velocity], model.cont_zero[velocity].expand_as(cont[..., velocity]))
    assert torch.equal(cont[..., others], (x.state_cont * mask)[..., others])
    assert not torch.equal(pred["cont_free"][..., others], cont[..., others])  # the head alone would move them
    decoded = spec.decode_state(cont[0], x.state_bin[0], x.state_cat[0])
    for f in spec.cont_fields:
        if f.startswith("post_velocities"):
            assert (decoded[f] == 0.0).all(), f


def test_items_move_by_their_predicted_velocity(recent):
    """With ``item_motion`` and no learned correction, an item that held its slot moves by its velocity (in game
    units); an empty slot does not move."""
    from meleewm.data.encoding import EncodingSpec
    from meleewm.data.starts import synthetic_inputs

    spec, _ = recent
    spec = EncodingSpec.from_dict({**spec.to_dict(), "items": True, "item_slots": 2, "item_type_vocab": [54],
                                   "item_stats": {"position_x": [0.0, 50.0], "position_y": [10.0, 40.0],
                                                  "velocity_x": [0.0, 2.0], "velocity_y": [0.0, 1.0]}})
    model = make(spec, "mamba2", item_motion=True)
    with torch.no_grad():
        model.item_cont_head.weight.zero_()
        model.item_cont_head.bias.zero_()
    x, _, _ = synthetic_inputs(spec, 31, (20, 1))
    raw = torch.tensor([[30.0, 20.0, 2.5, -1.0], [0.0, 0.0, 0.0, 0.0]])  # a laser in slot 0, slot 1 empty
    mean, std = (torch.tensor(a, dtype=torch.float32) for a in spec.item_scale())
    present = torch.tensor([[1.0, 0.0]])
    x = x.replace(state_item_present=present,
                  state_item_cont=((raw - mean) / std).unsqueeze(0) * present.unsqueeze(-1))
    with torch.no_grad():
        pred, _ = model.step(x, model.init_state(1))
        moved = pred["item_cont"][0] * std + mean
    torch.testing.assert_close(moved[0], torch.tensor([32.5, 19.0, 2.5, -1.0]))
    torch.testing.assert_close(moved[1], mean)  # an empty slot: encoded 0, not moved


def test_a_landing_stands_on_the_surface_the_game_puts_it_on(real, tiled):
    """``ground_snap``: where the input frame is airborne and the prediction grounded on a surface of one height,
    y is that height. Given the real next airborne bit and ground as the predictions and a y 6 units off, real
    landings stand where the game puts them (within 0.001); every other y is the model's own."""
    spec, _ = real
    model = make(spec, "mamba2", ground_snap=True)
    batch = tiled
    x = StepInput.from_window(batch)
    a, iy, ground = spec.bin_index("airborne"), spec.cont_index("post_position_y"), spec.cat_index("post_ground")
    off = batch["next_cont"].clone()
    off[..., iy] -= 6.0 / spec.cont_stats["post_position_y"][1]
    bin_logits = torch.where(batch["next_bin"] > 0, 30.0, -30.0)
    ground_logits = 30.0 * F.one_hot(batch["next_cat"][..., ground].long(), spec.cat_fields[ground][1]).float()
    with torch.no_grad():
        snapped = model._ground_snap(off, bin_logits, ground_logits, x)
    landing = (x.state_bin[..., a] > 0) & (batch["next_bin"][..., a] == 0) & (x.bin_mask[..., a] > 0)
    heights = torch.tensor(spec.surface_heights(), dtype=torch.float32)
    stage = x.stage.long()[:, None, None].expand_as(landing)
    on_surface = landing & torch.isfinite(heights[stage, batch["next_cat"][..., ground].long()])
    assert on_surface.sum() > 20
    y = lambda c: spec.denormalise("post_position_y", c[..., iy])
    error = (y(snapped) - y(batch["next_cont"])).abs()[on_surface]
    assert (error < 1e-3).float().mean() > 0.95, error
    assert torch.equal(snapped[~on_surface], off[~on_surface])
    # a character 20 units under or over the surface it picks (the platform it last stood on, the stage under it)
    # is neither lifted nor dropped onto it
    for offset in (-20.0, 20.0):
        away = x.replace(state_cont=x.state_cont.clone())
        away.state_cont[..., iy] = (spec.normalise("post_position_y", heights[stage, batch["next_cat"][..., ground]
                                                                              .long()] + offset)).nan_to_num()
        with torch.no_grad():
            assert torch.equal(model._ground_snap(off, bin_logits, ground_logits, away), off)


def test_a_respawn_appears_on_top_of_the_respawn_platform(real, tiled):
    """``respawn_snap``: where the input frame is a death and the prediction the first frame of ON_HALO_DESCENT, the
    position is the top of the stage's respawn platform. Given the real next actions as the predictions and
    positions 50 units off, every real respawn of the games is where the game put it; nothing else moves."""
    from meleewm.melee.actions import ACTION_IDS, DEAD_STATES

    spec, _ = real
    model = make(spec, "mamba2", respawn_snap=True)
    batch = tiled
    x = StepInput.from_window(batch)
    off = batch["next_cont"].clone()
    positions = [spec.cont_index("post_position_x"), spec.cont_index("post_position_y")]
    off[..., positions] += 50.0 / torch.tensor([spec.cont_stats["post_position_x"][1],
                                                spec.cont_stats["post_position_y"][1]])
    actions = batch["next_cat"][..., ACTION_COLUMN].long()
    with torch.no_grad():
        snapped = model._respawn_snap(off, actions, x)
    raw = torch.as_tensor(spec.decode_lut("post_state"))
    respawn = (torch.isin(raw[x.state_cat[..., ACTION_COLUMN].long()], torch.tensor(sorted(DEAD_STATES)))
               & (raw[actions] == ACTION_IDS["ON_HALO_DESCENT"]))
    assert respawn.sum() >= 3, "the games' KOs give respawns"
    for i, name in zip(positions, ("post_position_x", "post_position_y")):
        error = (spec.denormalise(name, snapped[..., i]) - spec.denormalise(name, batch["next_cont"][..., i])).abs()
        assert error[respawn].max() < 0.01, error[respawn]   # the descent speeds are read off to 4 digits
    assert torch.equal(snapped[~respawn], off[~respawn])


def test_a_death_lasts_as_long_as_the_games(real):
    """``respawn_snap``: a death goes on until it has lasted its DEAD_FRAMES, whatever the model picks; then the
    model's respawn appears on the platform. On the real games, with each death's frames counted as closed loop counts
    them (Slippi records -1), every real respawn comes on time: none is held, and counted 10 frames short, all are."""
    from meleewm.data.encoding import frames_in_action
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.stages import FINAL_DESTINATION, halo_start
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, windows = real
    model = make(spec, "mamba2", respawn_snap=True)
    raw = torch.as_tensor(spec.decode_lut("post_state"))
    respawns = 0
    for game in windows.games:
        batch = default_collate([windows.sample_at(game, 0, windows.cache.lengths[game] - 1)])
        x, actions = real_picks(batch)
        before = x.state_cat[..., ACTION_COLUMN].long()
        counted = torch.as_tensor(frames_in_action(raw[before[0]].numpy(), x.cat_mask[0, ..., ACTION_COLUMN] > 0))
        respawn = model.dead_action[before] & (raw[actions] == ACTION_IDS["ON_HALO_DESCENT"])
        respawns += int(respawn.sum())
        sizes = [size for _, size in spec.cat_fields]
        picks = {}
        for short in (0, 10):
            out = {"cat_logits": [30.0 * F.one_hot(batch["next_cat"][..., i].long(), n).float()
                                  for i, n in enumerate(sizes)]}
            with torch.no_grad():
                picks[short] = model._death_hold(out, actions, x.replace(state_age=counted.unsqueeze(0) - short))
        assert torch.equal(picks[0], actions)                                    # on time: nothing held
        held = picks[10] != actions
        assert held[respawn].all() and torch.equal(picks[10][held], before[held])   # early: all held, in the death
    assert respawns >= 3, "the games' KOs give respawns"

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, respawn_snap=True))
    sizes = [size for _, size in spec.cat_fields]
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name]) for name in ("DEAD_DOWN", "ON_HALO_DESCENT")}

    def respawn(age):
        """Falco DEAD_DOWN under the stage, ``age`` frames into his death; the model picks his respawn. Returns his
        pick and position after the switches."""
        x = final_destination_state(spec, post_position_x=(10.0, 0.0), post_position_y=(-150.0, 0.0),
                                    post_state=(ACTION_IDS["DEAD_DOWN"], ACTION_IDS["STANDING"]))
        x = x.replace(state_age=torch.tensor([[float(age), 5.0]]))
        logits = [torch.zeros(1, 2, n) for n in sizes]
        logits[ACTION_COLUMN][0, 0, index["ON_HALO_DESCENT"]] = 10.0
        out = {"cat_logits": logits, "cont": x.state_cont.clone()}
        with torch.no_grad():
            pick = model._death_hold(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
            assert torch.equal(pick, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick is the decode's
            cont = model._respawn_snap(out["cont"], pick, x)
        return pick[0, 0].item(), [round(spec.denormalise(f, cont[0, 0, spec.cont_index(f)]).item(), 2)
                                   for f in ("post_position_x", "post_position_y")]

    platform = [round(v, 2) for v in halo_start(FINAL_DESTINATION)[0]]
    assert respawn(10) == (index["DEAD_DOWN"], [10.0, -150.0])       # 10 frames into a 60-frame death: still dead
    assert respawn(58) == (index["DEAD_DOWN"], [10.0, -150.0])
    assert respawn(59) == (index["ON_HALO_DESCENT"], platform)      # its 60th frame over: on the platform


def test_a_hit_the_model_picks_takes_its_damage_and_launch(real, tiled):
    """``hit_percent`` and ``hit_launch``: where the prediction enters a damage action, the percent is the input's
    plus the damage head's value and the knockback speeds and hitlag are the launch head's, whatever the gate said.
    Given the real next actions as the predictions, the real rises as the damage head's values and a gate that keeps
    every field, the games' hits take their real damage and the launch head's values; nothing else moves. On real
    games a damage action entered is a hit: the percent rises on nearly all of them. The knockback points away from
    the other player, and hitlag is never negative."""
    from meleewm.melee.actions import DAMAGE_STATES
    from meleewm.model.world import LAUNCH_FIELDS

    spec, _ = real
    model = make(spec, "mamba2", cont_gate=True, hit_percent=True, hit_launch=True)
    batch = tiled
    x, actions = real_picks(batch)
    i = spec.cont_index("post_percent")
    k = [spec.cont_index(f) for f in LAUNCH_FIELDS]
    raw = torch.as_tensor(spec.decode_lut("post_state"))
    damage = torch.tensor(sorted(DAMAGE_STATES))
    entered = torch.isin(raw[actions], damage) & (actions != x.state_cat[..., ACTION_COLUMN].long())
    kept = batch["state_cont"].clone()
    launch = batch["state_cont"][..., k] + 1.0
    # the real rise on the frames that enter a damage action, +1 elsewhere: any other frame taken for a hit shows
    rise = torch.where(entered, batch["next_cont"][..., i] - batch["state_cont"][..., i], 1.0)
    with torch.no_grad():
        hit = model._hit(kept, {"damage": rise, "launch": launch}, actions, x)
    before, after = (spec.denormalise("post_percent", v[..., i]) for v in (batch["state_cont"], batch["next_cont"]))
    assert entered.sum() >= 100, "the games hold hits"
    assert (after > before)[entered].float().mean() > 0.85   # 0.90 here, 0.996 on the validation games
    torch.testing.assert_close(hit[..., i][entered], batch["next_cont"][..., i][entered])
    torch.testing.assert_close(hit[..., k][entered], launch[entered])
    others = torch.ones_like(kept, dtype=torch.bool)
    for column in (i, *k):
        others[..., column] = ~entered
    assert torch.equal(hit[others], kept[others])
    with torch.no_grad():
        pred = model(x)
    assert (pred["damage"] > 0).all() and pred["launch"].shape == (*pred["damage"].shape, 3)
    assert (spec.denormalise("post_hitlag", pred["launch"][..., 2]) > 0).all()
    with torch.no_grad():   # a head that says "1 along, 0 up": x away from the other player, wherever they stand
        model.launch_head.weight.zero_()
        model.launch_head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
        speed_x = spec.denormalise("post_velocities_knockback_x", model(x)["launch"][..., 0])
    position_x = spec.denormalise("post_position_x", x.state_cont[..., spec.cont_index("post_position_x")])
    apart = (position_x - position_x.flip(-1)).abs() > 1
    assert apart.float().mean() > 0.9
    assert torch.equal(torch.sign(speed_x)[apart], torch.sign(position_x - position_x.flip(-1))[apart])
    with pytest.raises(ValueError, match="cont_gate"):
        WorldModelConfig(hit_percent=True)
    with pytest.raises(ValueError, match="hit_percent"):
        WorldModelConfig(cont_gate=True, hit_launch=True)


def test_a_landing_inside_the_stage_lands_on_its_surface():
    """``body_landing``: a character the model lands (airborne in, grounded out) from 25 units under Final
    Destination's surface, between the ledges, stands on the surface whatever surface it picks; beyond the ledge,
    or without the switch, it stays where the model put it."""
    from meleewm.data.starts import synthetic_inputs
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
    from meleewm.melee.stages import FINAL_DESTINATION

    spec = load_model(DEFAULT_MODEL).model.spec
    x, _, _ = synthetic_inputs(spec, FINAL_DESTINATION, (20, 2))
    a, ix, iy = spec.bin_index("airborne"), spec.cont_index("post_position_x"), spec.cont_index("post_position_y")
    x = x.replace(state_bin=x.state_bin.clone(), state_cont=x.state_cont.clone())
    x.state_bin[..., a] = 1.0
    x.state_cont[..., 0, ix] = spec.normalise("post_position_x", torch.tensor(10.0))
    x.state_cont[..., 1, ix] = spec.normalise("post_position_x", torch.tensor(100.0))   # past the ledge (85.57)
    x.state_cont[..., iy] = spec.normalise("post_position_y", torch.tensor(-25.0))
    predicted = x.state_cont.clone()
    bin_logits = torch.full(x.state_bin.shape, -30.0)                     # grounded
    ground_logits = torch.zeros(1, 2, spec.cat_fields[spec.cat_index("post_ground")][1])  # picks UNKNOWN
    landed = {}
    for body_landing in (False, True):
        model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, ground_snap=True,
                                                  body_landing=body_landing))
        with torch.no_grad():
            landed[body_landing] = spec.denormalise("post_position_y", model._ground_snap(
                predicted, bin_logits, ground_logits, x)[..., iy])[0]
    torch.testing.assert_close(landed[True], torch.tensor([0.0, -25.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(landed[False], torch.tensor([-25.0, -25.0]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="ground_snap"):
        WorldModelConfig(body_landing=True)


def test_relative_inputs_say_where_the_other_player_is_from_each_facing():
    """``relative_inputs`` on hand-placed players: the other player ahead (along the facing) and above, in units of
    10, clipped at 40 units; the same under a left-right mirror; zero where a position is unknown."""
    from meleewm.data.starts import synthetic_inputs
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
    from meleewm.melee.stages import FINAL_DESTINATION
    from meleewm.model.world import N_RELATIVE_FEATURES

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, relative_inputs=True))
    x, _, _ = synthetic_inputs(spec, FINAL_DESTINATION, (20, 2), "standing")
    ix, iy, facing = (spec.cont_index("post_position_x"), spec.cont_index("post_position_y"),
                      spec.bin_index("facing"))

    def placed(xs, ys, faces):
        cont, binary = x.state_cont.clone(), x.state_bin.clone()
        cont[0, :, ix] = spec.normalise("post_position_x", torch.tensor(xs))
        cont[0, :, iy] = spec.normalise("post_position_y", torch.tensor(ys))
        binary[0, :, facing] = torch.tensor(faces)
        return x.replace(state_cont=cont, state_bin=binary)

    # player 0 at (0, 0) facing right, player 1 at (15, 5) facing right (its back to player 0)
    features = model.relative_features(placed([0.0, 15.0], [0.0, 5.0], [1.0, 1.0]))
    assert features.shape == (1, 2, N_RELATIVE_FEATURES)
    torch.testing.assert_close(features[0], torch.tensor([[1.5, 0.5], [-1.5, -0.5]]))
    mirrored = model.relative_features(placed([0.0, -15.0], [0.0, 5.0], [0.0, 0.0]))
    torch.testing.assert_close(mirrored, features)
    far = model.relative_features(placed([-60.0, 60.0], [0.0, 100.0], [1.0, 0.0]))
    torch.testing.assert_close(far[0], torch.tensor([[4.0, 4.0], [4.0, -4.0]]))
    unknown = placed([0.0, 15.0], [0.0, 5.0], [1.0, 1.0])
    mask = unknown.cont_mask.clone()
    mask[0, 1, ix] = False
    assert model.relative_features(unknown.replace(cont_mask=mask)).abs().sum() == 0


def test_geometry_inputs_place_a_player_on_the_stage():
    """``geometry_inputs`` on hand-placed Battlefield positions: over the main stage, on a side platform, off the
    stage; nothing on a stage without known geometry."""
    from meleewm.data.starts import synthetic_inputs
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
    from meleewm.model.world import N_GEOMETRY_FEATURES

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, geometry_inputs=True))
    x, _, _ = synthetic_inputs(spec, 31, [2, 20])   # Battlefield, Fox and Falco
    ix, iy = spec.cont_index("post_position_x"), spec.cont_index("post_position_y")

    def features(positions, stage=None):
        cont = x.state_cont.clone()
        for p, (px, py) in enumerate(positions):
            cont[0, p, ix] = spec.normalise("post_position_x", px)
            cont[0, p, iy] = spec.normalise("post_position_y", py)
        at = x.replace(state_cont=cont, stage=x.stage if stage is None else torch.full_like(x.stage, stage))
        return model.geometry_features(at)[0]

    f = features([(0.0, 5.0), (30.0, 30.0)])
    assert f.shape == (2, N_GEOMETRY_FEATURES)
    # over the main stage 5 above it, 7.1 tens from the ledge, under no platform; blast zones far
    torch.testing.assert_close(f[0, :5], torch.tensor([1.0, 0.5, 7.13079, 0.0, 0.0]).clamp(max=3), atol=1e-4, rtol=0)
    # over the right platform (y 27.2 from x 20 to 57.6), 2.8 above it; the main stage 30 below
    torch.testing.assert_close(f[1, :5], torch.tensor([1.0, 3.0, 4.13079, 1.0, 0.28]).clamp(max=3), atol=1e-4, rtol=0)
    off = features([(150.0, -50.0), (-230.0, 0.0)])
    torch.testing.assert_close(off[0], torch.tensor([0.0, 0.0, -3.0, 0.0, 0.0, 74 / 40, 58.8 / 40, 3.0]), atol=1e-4,
                               rtol=0)
    assert abs(float(off[1, 5]) + 6 / 40) < 1e-5    # past the left blast zone
    assert not features([(0.0, 5.0), (30.0, 30.0)], stage=0).any()  # an unknown stage


def test_blast_inputs_see_a_crossing_one_frame_ahead():
    """``blast_inputs`` on hand-placed Battlefield states: 1 unit inside the right blast zone with a knockback of 3
    to the right reads 2 units past it next frame; falling 0.5 above the bottom zone at 2 a frame reads 1.5 past
    it; a still character in the middle reads the clip; nothing on a stage without known geometry."""
    from meleewm.data.starts import synthetic_inputs
    from meleewm.melee.stages import geometry
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
    from meleewm.model.world import N_BLAST_FEATURES

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, blast_inputs=True,
                                              ground_motion=True))
    x, _, _ = synthetic_inputs(spec, 31, [2, 20])   # Battlefield, Fox and Falco
    g = geometry(31)
    airborne = spec.bin_index("airborne")

    def at(values: dict, player: int = 0, stage=None):
        cont, binary = x.state_cont.clone(), x.state_bin.clone()
        for name, value in values.items():
            cont[0, player, spec.cont_index(name)] = spec.normalise(name, value)
        binary[0, player, airborne] = 1
        return x.replace(state_cont=cont, state_bin=binary,
                         stage=x.stage if stage is None else torch.full_like(x.stage, stage))

    launched = at({"post_position_x": g.blast_right - 1.0, "post_position_y": 40.0, "post_velocities_knockback_x": 3.0})
    f = model.blast_features(launched)[0]
    assert f.shape == (2, N_BLAST_FEATURES)
    torch.testing.assert_close(f[0, 0], torch.tensor(-0.2), atol=1e-3, rtol=0)
    falling = at({"post_position_x": 0.0, "post_position_y": g.blast_bottom + 0.5, "post_velocities_self_y": -2.0})
    torch.testing.assert_close(model.blast_features(falling)[0, 0, 1], torch.tensor(-0.15), atol=1e-3, rtol=0)
    still = at({"post_position_x": 0.0, "post_position_y": 0.0})
    torch.testing.assert_close(model.blast_features(still)[0, 0], torch.full((3,), 3.0))
    assert not model.blast_features(at({"post_position_x": 0.0}, stage=0)).any()


def test_the_main_stage_ends_at_its_edges(real, tiled):
    """``stage_edge``: a grounded prediction past the main stage's edge (``ground_edge``) stops at the edge where the
    character walked up to it; dashing off, or landing there from the air, it is airborne instead, FALLING where its
    pick was a ground action. The games' own next frames pass through unchanged (grounded past the edge on none of
    the legal stages but Yoshi's Story, whose side platforms reach past its ledge x)."""
    from meleewm.data.starts import synthetic_inputs
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.stages import FINAL_DESTINATION, YOSHIS_STORY, ground_edge

    def forced(cat, size):
        return 30.0 * F.one_hot(cat.long(), size).float()

    spec, _ = real
    model = make(spec, "mamba2", stage_edge=True)
    x = StepInput.from_window(tiled)
    sizes = [size for _, size in spec.cat_fields]
    real_out = {"cont": tiled["next_cont"].clone(), "bin_logits": torch.where(tiled["next_bin"] > 0, 30.0, -30.0),
                "cat_logits": [forced(tiled["next_cat"][..., i], n) for i, n in enumerate(sizes)]}
    kept = {k: (list(v) if isinstance(v, list) else v.clone()) for k, v in real_out.items()}
    with torch.no_grad():
        model._stage_edge(real_out, real_out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    assert max(max_diff(real_out, kept).values()) == 0

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, stage_edge=True))
    edge = ground_edge(FINAL_DESTINATION)
    a, ix = spec.bin_index("airborne"), spec.cont_index("post_position_x")
    sizes = [size for _, size in spec.cat_fields]
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name])
             for name in ("STANDING", "DASHING", "FAIR", "LANDING", "FALLING")}

    def step(stage, airborne, before, action, pick, after):
        """The switch on one prediction: player 0 from ``before`` (airborne or not, in ``action``) to ``after``,
        grounded, by ``pick``; player 1 stands at the centre. Returns player 0's x, airborne logit and pick."""
        x, _, _ = synthetic_inputs(spec, stage, (1, 2))
        x = x.replace(state_bin=x.state_bin.clone(), state_cont=x.state_cont.clone(), state_cat=x.state_cat.clone())
        x.state_bin[0, 0, a] = float(airborne)
        x.state_cont[0, 0, ix] = spec.normalise("post_position_x", torch.tensor(before))
        x.state_cat[0, 0, ACTION_COLUMN] = index[action]
        cont = x.state_cont.clone()
        cont[0, 0, ix] = spec.normalise("post_position_x", torch.tensor(after))
        picks = x.state_cat.clone()
        picks[0, 0, ACTION_COLUMN] = index[pick]
        out = {"cont": cont, "bin_logits": torch.full(x.state_bin.shape, -30.0),
               "cat_logits": [forced(picks[..., i], n) for i, n in enumerate(sizes)]}
        picked = model._stage_edge(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(picked, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        return (spec.denormalise("post_position_x", out["cont"][0, 0, ix]).item(), out["bin_logits"][0, 0, a].item(),
                out["cat_logits"][ACTION_COLUMN][0, 0].argmax().item())

    with torch.no_grad():
        x_, air, pick = step(FINAL_DESTINATION, False, edge - 1, "STANDING", "STANDING", edge + 2)
        assert (round(x_, 3), air < 0, pick) == (round(edge, 3), True, index["STANDING"])   # stops at the edge
        x_, air, pick = step(FINAL_DESTINATION, False, -edge + 1, "STANDING", "STANDING", -edge - 2)
        assert round(x_, 3) == round(-edge, 3)                                             # either side
        x_, air, pick = step(FINAL_DESTINATION, False, edge - 1, "DASHING", "DASHING", edge + 2)
        assert (round(x_, 3), air > 0, pick) == (round(edge + 2, 3), True, index["FALLING"])   # dashes off
        x_, air, pick = step(FINAL_DESTINATION, True, edge + 5, "FAIR", "LANDING", edge + 4)
        assert (air > 0, pick) == (True, index["FALLING"])                                 # no ground to land on
        x_, air, pick = step(FINAL_DESTINATION, True, edge + 5, "FAIR", "FAIR", edge + 4)
        assert (air > 0, pick) == (True, index["FAIR"])                                    # the aerial goes on
        x_, air, pick = step(FINAL_DESTINATION, False, edge - 3, "STANDING", "STANDING", edge - 2)
        assert (round(x_, 3), air < 0) == (round(edge - 2, 3), True)                        # inside: untouched
        x_, air, pick = step(YOSHIS_STORY, False, 57.0, "STANDING", "STANDING", 58.0)
        assert (round(x_, 3), air < 0) == (58.0, True)                                     # a side platform there


def final_destination_state(spec, **players):
    """Step inputs (batch 1, no time axis, controllers at rest) of a Final Destination game between Falco and Marth,
    from the raw columns ``players`` gives, each ``column=(player 0's value, player 1's)``; the rest a standing
    start."""
    import numpy as np

    from meleewm.data.starts import synthetic_columns
    from meleewm.melee.characters import internal_to_external
    from meleewm.melee.stages import FINAL_DESTINATION

    values, age = synthetic_columns(FINAL_DESTINATION, (internal_to_external(22), internal_to_external(18)),
                                    "standing")
    for column, pair in players.items():
        values[column] = np.asarray(pair, values[column].dtype)
    stage_index, char_index = spec.encode_constants(FINAL_DESTINATION, values["post_character"])
    start = StepInput.from_encoded({**spec.encode_state_columns(values), "state_age": age + 5}, stage_index,
                                   char_index)
    return StepInput.zeros(spec).replace(**start.tensors())


def grounded_at(spec, x: StepInput, at: tuple[float, float], action: int) -> dict:
    """Heads' predictions for ``x`` (batch 1): player 0 grounded at ``at`` (x, y) in ``action`` (a vocabulary index),
    the rest of the state as the input's."""
    cont = x.state_cont.clone()
    for f, v in zip(POSITION_FIELDS, at):
        cont[0, 0, spec.cont_index(f)] = spec.normalise(f, torch.tensor(v))
    logits = [torch.zeros(1, 2, n) for _, n in spec.cat_fields]
    logits[ACTION_COLUMN][0, 0, action] = 20.0
    return {"cont": cont, "bin_logits": torch.full(x.state_bin.shape, -30.0), "cat_logits": logits}


def test_the_game_catches_a_ledge_for_a_falling_character(real, tiled):
    """``ledge_grab``: Falco falling into his catch box below the ledge catches it, at his catch point and still,
    whatever the model picked, and so does one that rose in the box and now falls; not facing away from it, with the
    stick held down, with Marth already on that ledge, from inside the box falling already, or starting a double jump.
    On the real games, given their next frames as the predictions, the frames where it catches are real catches."""
    from meleewm.melee.actions import ACTION_IDS, LEDGE_STATES
    from meleewm.melee.characters import LEDGE_CATCH_OFFSETS
    from meleewm.melee.stages import FINAL_DESTINATION, ledge_point
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, _ = real
    model = make(spec, "mamba2", ledge_catch=True, ledge_grab=True)
    x = StepInput.from_window(tiled)
    sizes = [size for _, size in spec.cat_fields]
    logits = [30.0 * F.one_hot(tiled["next_cat"][..., i].long(), n).float() for i, n in enumerate(sizes)]
    out = {"cont": tiled["next_cont"].clone(), "cat_logits": logits}
    with torch.no_grad():
        grabbed = model._ledge_grab(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    raw = torch.as_tensor(spec.decode_lut("post_state"))
    ledge = torch.tensor(sorted(LEDGE_STATES))
    catch = (raw[tiled["next_cat"][..., ACTION_COLUMN].long()] == ACTION_IDS["EDGE_CATCHING"]) & ~torch.isin(
        raw[x.state_cat[..., ACTION_COLUMN].long()], ledge)
    assert grabbed.sum() >= 5, (grabbed.sum(), catch.sum())
    assert (grabbed & catch).sum() >= 0.85 * grabbed.sum(), ((grabbed & catch).sum(), grabbed.sum())

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, ledge_catch=True,
                                              ledge_grab=True))
    ledge_x, ledge_y = ledge_point(FINAL_DESTINATION)
    sizes = [size for _, size in spec.cat_fields]
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name])
             for name in ("FALLING", "EDGE_CATCHING", "EDGE_HANGING", "JUMPING_ARIAL_FORWARD")}
    fields = ("post_position_x", "post_position_y", "post_velocities_self_y")

    def falls(before_y=-6.0, facing=-1.0, stick_y=0.0, marth=("STANDING", 0.0), pick="FALLING", rose=False):
        """Falco from 3 units out past the right ledge and ``before_y`` below it, FALLING at 3 a frame (rising at 1
        where ``rose``), to 3 lower; Marth in ``marth`` (action, x). Returns Falco's (x, y, fall speed) and pick after
        the switch."""
        x = final_destination_state(spec, post_position_x=(ledge_x + 3.0, marth[1]),
                        post_position_y=(ledge_y + before_y, 0.0),
                        post_state=(ACTION_IDS["FALLING"], ACTION_IDS[marth[0]]), post_direction=(facing, -1.0),
                        post_airborne=(1, 0), post_velocities_self_y=(1.0 if rose else -3.0, 0.0))
        x = x.replace(ctrl=torch.zeros(1, 2, spec.n_ctrl))
        x.ctrl[0, 0, spec.ctrl_index("pre_joystick_y")] = stick_y
        cont = x.state_cont.clone()
        for f, v in zip(fields, (ledge_x + 3.0, ledge_y + before_y - 3.0, -3.17)):
            cont[0, 0, spec.cont_index(f)] = spec.normalise(f, torch.tensor(v))
        picks = x.state_cat.clone()
        picks[0, 0, ACTION_COLUMN] = index[pick]
        out = {"cont": cont, "cat_logits": [30.0 * F.one_hot(picks[..., i].long(), n).float()
                                            for i, n in enumerate(sizes)]}
        with torch.no_grad():
            picked = model._ledge_catch(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(picked, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        return [round(spec.denormalise(f, out["cont"][0, 0, spec.cont_index(f)]).item(), 3) for f in fields], \
            picked[0, 0].item()

    catch_x, catch_y = LEDGE_CATCH_OFFSETS[22]
    caught = [round(ledge_x + catch_x, 3), round(ledge_y + catch_y, 3), 0.0]
    assert falls() == (caught, index["EDGE_CATCHING"])
    assert falls(marth=("EDGE_HANGING", -ledge_x - 3.0)) == (caught, index["EDGE_CATCHING"])   # the other ledge
    missed = ([round(ledge_x + 3.0, 3), round(ledge_y - 9.0, 3), -3.17], index["FALLING"])
    assert falls(facing=1.0) == missed                                          # facing away from the stage
    assert falls(stick_y=-1.0) == missed                                        # the stick held down
    assert falls(marth=("EDGE_HANGING", ledge_x + 3.0)) == missed               # Marth holds that ledge
    assert falls(pick="JUMPING_ARIAL_FORWARD")[1] == index["JUMPING_ARIAL_FORWARD"]   # a double jump instead
    assert falls(before_y=-10.0)[1] == index["FALLING"]                         # in the box already, falling
    assert falls(before_y=-10.0, rose=True) == (caught, index["EDGE_CATCHING"])  # in it, rising: the fall catches
    with pytest.raises(ValueError, match="ledge_catch"):
        WorldModelConfig(ledge_grab=True)


def test_nobody_stands_past_the_stage_edge_before_the_speed_rules(real):
    """``stage_edge`` with ``air_fall``: a FALLING character past the main stage's edge that the model's own bit calls
    grounded falls by its gravity (before, it hung still in the air); one on the stage, or on the ledge (getting up
    onto the stage from it), keeps the model's bit."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.stages import FINAL_DESTINATION, ledge_point
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, cont_gate=True,
                                              air_fall=True, stage_edge=True, ground_motion=True)).eval()
    a = spec.bin_index("airborne")
    with torch.no_grad():
        model.bin_head.weight.zero_()
        model.bin_head.bias.fill_(-5.0)                     # the model's bit: grounded, everywhere
        head = model.cat_heads[ACTION_COLUMN]
        head.weight.zero_()
        head.bias.zero_()
    ledge_x, _ = ledge_point(FINAL_DESTINATION)

    def state(x_position, action):
        x = final_destination_state(spec, post_position_x=(x_position, 0.0), post_position_y=(-20.0, 0.0),
                        post_state=(ACTION_IDS[action], ACTION_IDS["STANDING"]), post_airborne=(1, 0),
                        post_velocities_self_y=(-1.0, 0.0))
        return x.replace(ctrl=torch.zeros(1, 2, spec.n_ctrl))

    def step(x_position, action):
        x = state(x_position, action)
        with torch.no_grad():
            head.bias.zero_()
            head.bias.view(2, -1)[:, spec.cat_value_index("post_state", ACTION_IDS[action])] = 10.0   # goes on
            out = model.heads(torch.zeros(1, 32), x)
        y, speed = (spec.denormalise(f, out["cont"][0, 0, spec.cont_index(f)]).item()
                    for f in ("post_position_y", "post_velocities_self_y"))
        return round(y, 3), round(speed, 3), out["bin_logits"][0, 0, a].item() > 0

    gravity = 0.17                                          # Falco's (AIR_FALL)
    assert step(ledge_x + 20.0, "FALLING") == (round(-20.0 - 1.0 - gravity, 3), round(-1.0 - gravity, 3), True)
    assert step(ledge_x - 20.0, "FALLING")[2] is False                       # over the stage: the model's bit
    grounded = torch.full((1, 2, spec.n_bin), -5.0)
    hanging = state(ledge_x + 3.0, "EDGE_HANGING")                             # on the ledge: the model's bit
    out = {"bin_logits": grounded.clone(), "cat_logits": [torch.zeros(1, 2, n) for _, n in spec.cat_fields]}
    model._off_the_stage(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), hanging)
    assert torch.equal(out["bin_logits"], grounded)


def test_a_hit_is_taken_only_within_reach(recent_game):
    """``hit_reach``: Falco's pick of a damage action stands with Marth 30 units from him, or a projectile 20 units
    from him with Marth 80 away; with nothing within reach it is the model's next best action. On the real games,
    given their next frames as the predictions, nearly every hit taken stands (items in 4 slots only here)."""
    import dataclasses

    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.game import HIT_REACH
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, windows = recent_game
    batch = default_collate([windows[i] for i in range(len(windows))])
    model = make(spec, "mamba2", hit_reach=True)
    x, actions = real_picks(batch)
    sizes = [size for _, size in spec.cat_fields]
    out = {"cat_logits": [30.0 * F.one_hot(batch["next_cat"][..., i].long(), n).float() for i, n in enumerate(sizes)]}
    with torch.no_grad():
        picked = model._hit_reach(out, actions, x)
    assert model._new_hit(actions, x).sum() >= 30, "the game holds hits"
    assert torch.equal(picked, actions)

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, hit_reach=True))
    sizes = [size for _, size in spec.cat_fields]
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name]) for name in ("STANDING", "DAMAGE_HIGH_1")}
    item_x, item_y = (spec.item_cont_fields.index(f) for f in ("position_x", "position_y"))
    item_mean, item_std = (torch.tensor(v) for v in spec.item_scale())

    def hit(marth_x, item_at=None):
        """Falco stands at the centre, Marth ``marth_x`` from him, a projectile at ``item_at`` (x) where given; the
        model picks a hit for Falco, standing its second choice. Returns Falco's pick after the switch."""
        x = final_destination_state(spec, post_position_x=(0.0, marth_x))
        if item_at is not None:
            items = x.state_item_cont.clone()
            items[0, 0, item_x] = (item_at - item_mean[item_x]) / item_std[item_x]
            items[0, 0, item_y] = (10.0 - item_mean[item_y]) / item_std[item_y]
            present = x.state_item_present.clone()
            present[0, 0] = 1.0
            x = x.replace(state_item_cont=items, state_item_present=present)
        logits = [torch.zeros(1, 2, n) for n in sizes]
        logits[ACTION_COLUMN][0, :, index["STANDING"]] = 10.0
        logits[ACTION_COLUMN][0, 0, index["DAMAGE_HIGH_1"]] = 20.0
        out = {"cat_logits": logits}
        with torch.no_grad():
            picked = model._hit_reach(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(picked, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        return picked[0, 0].item()

    assert hit(30.0) == index["DAMAGE_HIGH_1"]                                    # Marth within reach
    assert hit(-30.0) == index["DAMAGE_HIGH_1"]                                   # on either side
    assert hit(HIT_REACH + 30.0) == index["STANDING"]                           # nobody near: no hit
    assert hit(HIT_REACH + 30.0, item_at=20.0) == index["DAMAGE_HIGH_1"]          # a projectile near
    assert hit(HIT_REACH + 30.0, item_at=-HIT_REACH - 10.0) == index["STANDING"]   # a projectile far away
    with pytest.raises(ValueError, match="items"):
        WorldModel(dataclasses.replace(spec, items=False),
                   WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, hit_reach=True))


def test_the_main_stage_is_solid(real, tiled):
    """``solid_stage``: Falco in a forward air, falling from above the stage under its surface, lands on it in the
    model's best landing action, grounded, over the body and nearer the ledge too, but not over its last units (a
    corner clipped); coming at the body from beside it, he stops short of it; from above the body but not into it (an
    aerial's dip) and beside the stage, nothing changes. The games' own next frames pass through unchanged."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.stages import FINAL_DESTINATION, body_bounds, geometry
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, _ = real
    model = make(spec, "mamba2", cont_gate=True, ground_snap=True, body_landing=True, solid_stage=True)
    x = StepInput.from_window(tiled)
    sizes = [size for _, size in spec.cat_fields]
    real_out, kept = real_outputs(tiled, sizes)
    with torch.no_grad():
        model._solid_stage(real_out, real_out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    assert max(max_diff(real_out, kept).values()) == 0

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, cont_gate=True,
                                              ground_snap=True, body_landing=True, solid_stage=True))
    sizes = [size for _, size in spec.cat_fields]
    a = spec.bin_index("airborne")
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name]) for name in ("FAIR", "FAIR_LANDING")}
    half, _, _ = body_bounds(FINAL_DESTINATION)
    ledge_x = geometry(FINAL_DESTINATION).ledge_x

    def falls(before, after):
        """Falco in a forward air from ``before`` (x, y) to ``after``, airborne by the model, its second choice the
        aerial's landing. Returns his (x, y), airborne logit and pick after the switch."""
        x = final_destination_state(spec, post_position_x=(before[0], -30.0), post_position_y=(before[1], 0.0),
                                    post_state=(ACTION_IDS["FAIR"], ACTION_IDS["STANDING"]), post_airborne=(1, 0))
        cont = x.state_cont.clone()
        for f, v in zip(POSITION_FIELDS, after):
            cont[0, 0, spec.cont_index(f)] = spec.normalise(f, torch.tensor(v))
        logits = [torch.zeros(1, 2, n) for n in sizes]
        logits[ACTION_COLUMN][0, 0, index["FAIR"]] = 20.0
        logits[ACTION_COLUMN][0, 0, index["FAIR_LANDING"]] = 10.0
        out = {"cont": cont, "bin_logits": torch.full(x.state_bin.shape, 30.0), "cat_logits": logits}
        with torch.no_grad():
            pick = model._solid_stage(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(pick, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        return ([round(spec.denormalise(f, out["cont"][0, 0, spec.cont_index(f)]).item(), 2) for f in POSITION_FIELDS],
                out["bin_logits"][0, 0, a].item() > 0, pick[0, 0].item())

    assert falls((10.0, 5.0), (12.0, -15.0)) == ([12.0, 0.0], False, index["FAIR_LANDING"])   # lands on the surface
    near = round(half + 8.0, 2)                                # over the stage, nearer the ledge than the body
    assert falls((near, 5.0), (near, -15.0)) == ([near, 0.0], False, index["FAIR_LANDING"])
    corner = round(ledge_x - 2.0, 2)                               # the stage's last units: a fall clips the corner
    assert falls((corner, 5.0), (corner, -15.0)) == ([corner, -15.0], True, index["FAIR"])
    assert falls((10.0, 5.0), (12.0, -4.0)) == ([12.0, -4.0], True, index["FAIR"])             # a dip: no landing
    side = round(half + 3.0, 2)
    assert falls((half + 3.0, -20.0), (half - 3.0, -22.0)) == ([side, -22.0], True, index["FAIR"])   # from beside
    assert falls((half + 3.0, -20.0), (half + 1.0, -22.0)) == ([round(half + 1.0, 2), -22.0], True, index["FAIR"])
    with pytest.raises(ValueError, match="body_landing"):
        WorldModelConfig(cont_gate=True, solid_stage=True)


def test_a_landing_is_on_a_surface(real, tiled):
    """``surface_landing``: Falco falling over Final Destination whom the model lands 15 units above the stage stays
    in the air, in his fall, a frame further down it (in a fall too where he was dashing in the air); 6 units above
    it, he lands on it; landing on the surface, or catching the ledge, stands. The games' own next frames pass
    through unchanged: every real landing is on a surface."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.characters import AIR_FALL
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, _ = real
    model = make(spec, "mamba2", cont_gate=True, air_fall=True, surface_landing=True)
    x = StepInput.from_window(tiled)
    sizes = [size for _, size in spec.cat_fields]
    real_out, kept = real_outputs(tiled, sizes)
    a = spec.bin_index("airborne")
    assert ((x.state_bin[..., a] > 0) & (tiled["next_bin"][..., a] == 0)).sum() >= 20, "the games hold landings"
    with torch.no_grad():
        model._surface_landing(real_out, real_out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    assert max(max_diff(real_out, kept).values()) == 0

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, cont_gate=True,
                                              air_fall=True, surface_landing=True))
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name])
             for name in ("FALLING", "LANDING", "EDGE_CATCHING")}
    gravity = AIR_FALL[22][0]                                                  # Falco's

    def lands(at, action, before="FALLING"):
        """Falco falling at 1 unit a frame in ``before``, whom the model puts grounded at ``at`` (x, y) in ``action``.
        Returns his (x, y), fall speed, airborne logit and pick after the switch."""
        x = final_destination_state(spec, post_position_x=(at[0], -30.0), post_position_y=(at[1] + 1.0, 0.0),
                                    post_state=(ACTION_IDS[before], ACTION_IDS["STANDING"]), post_airborne=(1, 0),
                                    post_velocities_self_y=(-1.0, 0.0))
        out = grounded_at(spec, x, at, index[action])
        with torch.no_grad():
            pick = model._surface_landing(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(pick, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        fields = (*POSITION_FIELDS, "post_velocities_self_y")
        return ([round(spec.denormalise(f, out["cont"][0, 0, spec.cont_index(f)]).item(), 3) for f in fields],
                out["bin_logits"][0, 0, spec.bin_index("airborne")].item() > 0, pick[0, 0].item())

    fall = round(-1.0 - gravity, 3)
    assert lands((10.0, 15.0), "LANDING") == ([10.0, round(16.0 + fall, 3), fall], True, index["FALLING"])  # on air
    assert lands((10.0, 0.0), "LANDING") == ([10.0, 0.0, -1.0], False, index["LANDING"])   # on the stage
    assert lands((10.0, 0.5), "LANDING")[1:] == (False, index["LANDING"])                   # within the slack
    assert lands((10.0, 6.0), "LANDING") == ([10.0, 0.0, -1.0], False, index["LANDING"])   # within reach: onto it
    assert lands((100.0, -20.0), "EDGE_CATCHING")[1:] == (False, index["EDGE_CATCHING"])    # a ledge: no landing
    # an action of the ground the model held in the air (a dash, in the air 15 units up) is a fall there
    assert lands((10.0, 15.0), "LANDING", before="DASHING")[1:] == (True, index["FALLING"])
    with pytest.raises(ValueError, match="air_fall"):
        WorldModelConfig(cont_gate=True, surface_landing=True)


def test_a_move_ends_by_its_limit(real, tiled):
    """``move_end``: Falco's jab picked again on the frame at its limit becomes the model's best successor (standing,
    grounded); a frame earlier it goes on; standing goes on for ever. His fair at its limit, in the air, becomes a
    successor in the air, the model's best of them. On the real games, given their next frames as the predictions,
    nothing changes: no real move goes past its limit."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.moves import moves
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, _ = real
    model = make(spec, "mamba2_age_gate", move_end=True)
    x = StepInput.from_window(tiled)
    real_out, kept = real_outputs(tiled, [size for _, size in spec.cat_fields])
    going_on = tiled["next_cat"][..., ACTION_COLUMN] == x.state_cat[..., ACTION_COLUMN]
    assert going_on.sum() > 1000
    with torch.no_grad():
        pick = model._move_end(real_out, real_out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    assert max(max_diff(real_out, kept).values()) == 0 and torch.equal(pick, tiled["next_cat"][..., ACTION_COLUMN])

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, age_embed_dim=4,
                                              move_end=True))
    sizes = [size for _, size in spec.cat_fields]
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name])
             for name in ("NEUTRAL_ATTACK_1", "STANDING", "FAIR", "FALLING", "DASHING")}
    falco = moves()[22]

    def after(action, age, airborne, ranked):
        """Falco in ``action`` for ``age`` frames, picked again, then the actions of ``ranked`` in the model's order.
        Returns the pick and whether the prediction is airborne."""
        x = final_destination_state(spec, post_state=(ACTION_IDS[action], ACTION_IDS["STANDING"]),
                                    post_airborne=(int(airborne), 0), post_position_y=(30.0 * airborne, 0.0))
        x = x.replace(state_age=torch.tensor([[float(age), 5.0]]))
        logits = [torch.zeros(1, 2, n) for n in sizes]
        for rank, name in enumerate((action, *ranked)):
            logits[ACTION_COLUMN][0, 0, index[name]] = 20.0 - rank
        out = {"cont": x.state_cont.clone(), "cat_logits": logits,
               "bin_logits": torch.where(x.state_bin > 0, 30.0, -30.0)}
        with torch.no_grad():
            pick = model._move_end(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(pick, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        return pick[0, 0].item(), out["bin_logits"][0, 0, spec.bin_index("airborne")].item() > 0

    jab = falco[ACTION_IDS["NEUTRAL_ATTACK_1"]].limit
    assert after("NEUTRAL_ATTACK_1", jab - 1, False, ["DASHING", "STANDING"]) == (index["NEUTRAL_ATTACK_1"], False)
    assert after("NEUTRAL_ATTACK_1", jab, False, ["FALLING", "STANDING"]) == (index["STANDING"], False)
    assert after("STANDING", 5000, False, ["DASHING"]) == (index["STANDING"], False)        # held
    fair = falco[ACTION_IDS["FAIR"]]
    assert (ACTION_IDS["FALLING"], True) in fair.successors
    assert after("FAIR", fair.limit, True, ["STANDING", "FALLING"]) == (index["FALLING"], True)
    with pytest.raises(ValueError, match="age_embed_dim"):
        WorldModelConfig(move_end=True)


def test_in_the_air_the_speeds_move_the_character(real):
    """``air_motion``: Falco in the air, falling at 2 units a frame and drifting at 0.5, whose gate holds his position
    moves by his speeds; grounded, or on the ledge, the gate's position stands; a position the head moves stands."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, cont_gate=True,
                                              air_motion=True, ground_motion=True)).eval()
    a, position = spec.bin_index("airborne"), [spec.cont_index(f) for f in POSITION_FIELDS]

    def step(action, airborne, gate=GATE_SAME):
        x = final_destination_state(spec, post_position_x=(20.0, -30.0), post_position_y=(30.0, 0.0),
                                    post_state=(ACTION_IDS[action], ACTION_IDS["STANDING"]),
                                    post_airborne=(int(airborne), 0), post_velocities_self_y=(-2.0, 0.0),
                                    post_velocities_self_x_air=(0.5, 0.0))
        with torch.no_grad():
            for head in (model.cont_head, model.gate_head, model.bin_head, model.cat_heads[ACTION_COLUMN]):
                head.weight.zero_()
                head.bias.zero_()
            bias = torch.tensor([-9.0, -9.0, 9.0]).repeat(2, spec.n_cont, 1)   # every field "unchanged" ...
            bias[:, position] = torch.eye(3)[gate] * 18.0 - 9.0               # ... positions by ``gate``
            model.gate_head.bias.copy_(bias.flatten())
            model.bin_head.bias[a::spec.n_bin] = 30.0 if airborne else -30.0
            model.cat_heads[ACTION_COLUMN].bias[spec.cat_value_index("post_state", ACTION_IDS[action])] = 30.0
            out = model.heads(torch.zeros(1, 32), x)
        return tuple(round(spec.denormalise(f, out["cont"][0, 0, i]).item(), 3)
                     for f, i in zip(POSITION_FIELDS, position))

    assert step("FALLING", True) == (20.5, 28.0)
    assert step("STANDING", False) == (20.0, 30.0)             # grounded: the gate's
    assert step("EDGE_HANGING", True) == (20.0, 30.0)          # on the ledge: the gate's
    assert step("FALLING", True, gate=GATE_FREE) == (20.5, 28.0)
    with pytest.raises(ValueError, match="cont_gate"):
        WorldModelConfig(air_motion=True)


def test_past_the_edge_a_dash_in_the_air_is_a_fall(real):
    """``stage_edge``: past the edge, in the air, a dash the model picks is a fall, and falls by Falco's gravity (the
    model dashed there, held up by nothing); over the stage the dash stands."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.characters import AIR_FALL
    from meleewm.melee.stages import FINAL_DESTINATION, ledge_point
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, cont_gate=True,
                                              air_fall=True, stage_edge=True, ground_motion=True)).eval()
    a = spec.bin_index("airborne")
    ledge_x, _ = ledge_point(FINAL_DESTINATION)

    def step(x_position, before, pick):
        x = final_destination_state(spec, post_position_x=(x_position, 0.0), post_position_y=(-20.0, 0.0),
                                    post_state=(ACTION_IDS[before], ACTION_IDS["STANDING"]), post_airborne=(1, 0),
                                    post_velocities_self_y=(-1.0, 0.0))
        with torch.no_grad():
            for head in (model.bin_head, model.cat_heads[ACTION_COLUMN]):
                head.weight.zero_()
                head.bias.zero_()
            model.bin_head.bias[a::spec.n_bin] = 30.0                    # the model's bit: in the air
            model.cat_heads[ACTION_COLUMN].bias[spec.cat_value_index("post_state", ACTION_IDS[pick])] = 30.0
            out = model.heads(torch.zeros(1, 32), x.replace(ctrl=torch.zeros(1, 2, spec.n_ctrl)))
        picked = spec.decode_lut("post_state")[out["cat_logits"][ACTION_COLUMN][0, 0].argmax().item()]
        return (int(picked), out["bin_logits"][0, 0, a].item() > 0,
                round(spec.denormalise("post_velocities_self_y", out["cont"][0, 0, spec.cont_index(
                    "post_velocities_self_y")]).item(), 3))

    gravity = AIR_FALL[22][0]
    assert step(ledge_x + 20.0, "FALLING", "DASHING") == (ACTION_IDS["FALLING"], True, round(-1.0 - gravity, 3))
    assert step(0.0, "FALLING", "DASHING")[0] == ACTION_IDS["DASHING"]


def test_a_grounded_character_stands_on_a_surface(real, tiled):
    """``surface_stand``: Falco standing on Final Destination whom the model keeps grounded 4 units over the stage is
    put on it; walked 8 units out of the stage's span, where no surface is under him, he falls (airborne, FALLING, a
    frame into the fall); on the ledge he stays. On the real games, given their next frames as the predictions, hardly
    a grounded frame moves (the games' own: 0.04 % of grounded frames stand off every surface)."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.characters import AIR_FALL
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, _ = real
    options = dict(cont_gate=True, air_fall=True, surface_landing=True, stage_edge=True, surface_stand=True)
    model = make(spec, "mamba2", **options)
    x = StepInput.from_window(tiled)
    real_out, kept = real_outputs(tiled, [size for _, size in spec.cat_fields])
    a = spec.bin_index("airborne")
    grounded = (x.state_bin[..., a] <= 0) & (tiled["next_bin"][..., a] == 0) & (x.bin_mask[..., a] > 0)
    with torch.no_grad():
        model._surface_stand(real_out, real_out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    moved = (real_out["cont"] != kept["cont"]).any(-1)
    assert grounded.sum() > 10_000 and moved.sum() <= 0.001 * grounded.sum()

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, **options))
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name])
             for name in ("FALLING", "WALK_SLOW", "EDGE_HANGING")}

    def stands(at, action="WALK_SLOW"):
        """Falco walking on Final Destination at (80, 0), whom the model puts grounded at ``at`` in ``action``.
        Returns his (x, y), airborne logit and pick after the switch."""
        x = final_destination_state(spec, post_position_x=(80.0, -30.0),
                                    post_state=(ACTION_IDS[action], ACTION_IDS["STANDING"]))
        out = grounded_at(spec, x, at, index[action])
        with torch.no_grad():
            pick = model._surface_stand(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(pick, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        return ([round(spec.denormalise(f, out["cont"][0, 0, spec.cont_index(f)]).item(), 3) for f in POSITION_FIELDS],
                out["bin_logits"][0, 0, a].item() > 0, pick[0, 0].item())

    assert stands((81.0, 0.0)) == ([81.0, 0.0], False, index["WALK_SLOW"])
    assert stands((81.0, 4.0)) == ([81.0, 0.0], False, index["WALK_SLOW"])           # within reach: onto it
    gravity = AIR_FALL[22][0]
    assert stands((97.0, 0.0)) == ([97.0, round(-gravity, 3)], True, index["FALLING"])  # no surface under him
    assert stands((97.0, 0.0), "EDGE_HANGING") == ([97.0, 0.0], False, index["EDGE_HANGING"])
    with pytest.raises(ValueError, match="surface_landing"):
        WorldModelConfig(cont_gate=True, air_fall=True, surface_stand=True)



def test_a_ko_begins_at_a_blast_zone(real, tiled):
    """``death_at_blast_zone``: Falco falling 30 units over Final Destination's bottom blast zone whom the model puts
    in DEAD_DOWN is not dead: the pick is the model's next best (a fall); 5 units over it he dies, and so does one 12
    units inside a side zone (a launch crosses it fast); a death going on stands. On the real games, given their next
    frames as the predictions, nothing changes: every real KO begins within reach of a zone."""
    from meleewm.melee.actions import ACTION_IDS
    from meleewm.melee.stages import FINAL_DESTINATION, geometry
    from meleewm.model.checkpoint import DEFAULT_MODEL, load_model

    spec, _ = real
    model = make(spec, "mamba2", death_at_blast_zone=True)
    x = StepInput.from_window(tiled)
    real_out, kept = real_outputs(tiled, [size for _, size in spec.cat_fields])
    with torch.no_grad():
        pick = model._death_at_blast_zone(real_out, real_out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
    assert model.dead_action[pick].any(), "the games hold deaths"
    assert max(max_diff(real_out, kept).values()) == 0

    spec = load_model(DEFAULT_MODEL).model.spec
    model = WorldModel(spec, WorldModelConfig(d_model=32, n_layer=1, d_state=8, headdim=16, death_at_blast_zone=True))
    sizes = [size for _, size in spec.cat_fields]
    index = {name: spec.cat_value_index("post_state", ACTION_IDS[name]) for name in ("DEAD_DOWN", "FALLING")}
    zones = geometry(FINAL_DESTINATION)

    def dies(at, before="FALLING"):
        x = final_destination_state(spec, post_position_x=(at[0], 0.0), post_position_y=(at[1], 0.0),
                                    post_state=(ACTION_IDS[before], ACTION_IDS["STANDING"]), post_airborne=(1, 0))
        logits = [torch.zeros(1, 2, n) for n in sizes]
        logits[ACTION_COLUMN][0, 0, index["DEAD_DOWN"]] = 20.0
        logits[ACTION_COLUMN][0, 0, index["FALLING"]] = 10.0
        out = {"cont": x.state_cont.clone(), "cat_logits": logits, "bin_logits": torch.zeros(1, 2, spec.n_bin)}
        with torch.no_grad():
            pick = model._death_at_blast_zone(out, out["cat_logits"][ACTION_COLUMN].argmax(-1), x)
        assert torch.equal(pick, out["cat_logits"][ACTION_COLUMN].argmax(-1))   # the pick it returns is the decode's
        return pick[0, 0].item()

    assert dies((0.0, zones.blast_bottom + 30.0)) == index["FALLING"]
    assert dies((0.0, zones.blast_bottom + 5.0)) == index["DEAD_DOWN"]
    assert dies((zones.blast_right - 12.0, 0.0)) == index["DEAD_DOWN"]
    assert dies((0.0, 0.0), before="DEAD_DOWN") == index["DEAD_DOWN"]
