"""The play session engine on real replays: the same step as ``rollout``, synthesized starts, rules, export, dream.

The model is a tiny Mamba-2 world model (configs/tiny.yaml) with the encoding fitted on two real games of
games-1.zip. Its weights are not trained (training belongs to tests/train); the continuous head gets small random
weights so that positions move and depend on the controllers. What these tests check is the machinery: that a
session computes exactly what the model's rollout computes, and what it exports is what it decoded.
"""

from __future__ import annotations

import numpy as np
import peppi_py
import pyarrow.compute as pc
import pytest
import torch
from torch.utils.data import default_collate
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.data.cache import build_cache
from meleewm.data.encoding import EncodingSpec
from meleewm.data.step import StepInput
from meleewm.data.windows import WindowDataset
from meleewm.melee import SPAWN_POINTS
from meleewm.model.rollout import rollout
from meleewm.model.rules import RULE_EVENTS, GameRules
from meleewm.model.world import WorldModel
from meleewm.play.controllers import (
    ApproachController,
    ControllerError,
    ControllerState,
    RandomController,
    encode_controllers,
)
from meleewm.play.dream import dream_session
from meleewm.melee.game import FIRST_FRAME
from meleewm.play.session import Session, tick_together
from meleewm.play.starts import ReplayGame, SessionError
from meleewm.model import checkpoint as checkpoint_module
from meleewm.model.checkpoint import ModelNotFound, load_model, resolve_model
from meleewm.replay.dataset import Dataset
from meleewm.replay.reader import parse_replay
from meleewm.train.checkpoint import save_checkpoint
from tests.train.realdata import real_dataset, tiny_config


def play_checkpoint(replays, manifest, tmp_path_factory):
    """(checkpoint path, dataset folder): built once per test session (shared by tests/play through the disk)."""
    data = real_dataset(replays, manifest, tmp_path_factory, count=2)
    path = tmp_path_factory.getbasetemp() / "play_model" / "tiny.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset = Dataset(data)
        spec = EncodingSpec.fit(dataset, sorted(dataset.game_ids()))
        config = tiny_config()
        torch.manual_seed(0)
        model = WorldModel(spec, config.model)
        with torch.no_grad():  # untrained heads predict "nothing moves": give the continuous head some motion
            model.cont_head.weight.normal_(0.0, 0.05)
        save_checkpoint(path, model=model, config=config)
    return path, data


@pytest.fixture(scope="session")
def play_files(replays, manifest, tmp_path_factory):
    return play_checkpoint(replays, manifest, tmp_path_factory)


@pytest.fixture(scope="module")
def model(play_files):
    return load_model(play_files[0]).model


@pytest.fixture(scope="module")
def dataset(play_files):
    return Dataset(play_files[1])


@pytest.fixture(scope="module")
def game_id(dataset):
    return sorted(dataset.game_ids())[0]


@pytest.fixture(scope="module")
def replay(model, dataset, game_id):
    return ReplayGame(dataset, game_id, model.spec)


def history_tensors(session: Session) -> dict[str, torch.Tensor]:
    h = session._history.view()
    return {"state_cont": torch.from_numpy(h["cont"]), "state_bin": torch.from_numpy(h["binary"]),
            "state_cat": torch.from_numpy(h["cat"])}


@pytest.mark.parametrize("temperature,rules", [(0.0, False), (0.8, False), (0.0, True), (0.8, True)])
def test_replay_inputs_reproduce_rollout_exactly(model, dataset, game_id, replay, tmp_path, temperature, rules):
    """Session with replay controllers on both ports == meleewm.model.rollout.rollout, bit for bit, with the game
    rules on or off (one step function, so the rules act identically in eval, training rollouts, dream and play)."""
    cache = build_cache(dataset, model.spec, [game_id], cache_dir=tmp_path / "cache", progress=False)
    windows = WindowDataset(cache, 8)
    W, H, start = 40, 90, 500
    warm = windows.sample_at(0, start, W)
    ctrl = windows.sample_at(0, start + W, H - 1)["ctrl"]
    warmup = StepInput.from_window(default_collate([warm]))
    expected = rollout(model, warmup, ctrl.unsqueeze(0), temperature=temperature,
                       generator=torch.Generator().manual_seed(7), rules=GameRules(model.spec) if rules else None)

    session = Session(model, temperature=temperature, seed=7, rules=rules)
    session.set_controller(0, replay.controller(0))
    session.set_controller(1, replay.controller(1))
    frame = int(replay.frame_ids[start + W])
    session.start_replay(replay, frame, warmup=W)
    session.run(H - 1)
    got = history_tensors(session)
    assert session.frame == frame + H - 1
    for key in ("state_cont", "state_bin", "state_cat"):
        assert got[key].shape == expected[key][0].shape, key
        assert torch.equal(got[key], expected[key][0].to(got[key].dtype)), key
    if rules:
        assert torch.equal(session.rule_counts, expected["rule_counts"])
    # the controllers the session encoded are the replay's, exactly as the cache holds them
    inputs = session._history.view()
    enc = np.stack([encode_controllers(model.spec, [ControllerState(*inputs["stick"][i, p], *inputs["trig"][i, p],
                                                                    int(inputs["buttons"][i, p]))
                                                    for p in range(2)]) for i in range(1, H)])
    assert np.array_equal(enc, ctrl.numpy())


def test_replay_start_needs_a_real_frame_before(model, replay):
    session = Session(model)
    with pytest.raises(SessionError, match="first frame"):
        session.start_replay(replay, replay.first_frame)
    with pytest.raises(SessionError, match="not in replay"):
        session.start_replay(replay, replay.last_frame + 10)
    session.start_replay(replay, replay.first_frame + 1)   # one warm-up frame is enough
    assert session.start_info["warmup"] == 1


@pytest.mark.parametrize("mode", ["entry", "standing"])
def test_synthesized_start(model, mode):
    session = Session(model)
    session.start_synthetic(31, (20, 2), mode=mode)
    st = session.state
    (x0, y0), (x1, y1) = SPAWN_POINTS[31]
    assert session.frame == FIRST_FRAME
    assert np.allclose(st["post_position_x"], [x0, x1], atol=1e-3)
    assert list(st["post_stocks"]) == [4, 4] and np.allclose(st["post_percent"], 0, atol=1e-4)
    assert list(st["post_direction"]) == [1.0, -1.0]                   # facing inward
    assert list(st["post_state"]) == ([322, 322] if mode == "entry" else [14, 14])
    assert list(st["post_airborne"]) == ([1, 1] if mode == "entry" else [0, 0])
    if mode == "standing":
        assert np.allclose(st["post_position_y"], 0, atol=1e-3)
        assert list(st["post_ground"]) == [1, 1]                           # Battlefield's main stage
    masks = session._cur
    assert bool(masks.cont_mask.all()) and bool(masks.bin_mask.all()) and bool(masks.cat_mask.all())
    session.set_controller(0, ApproachController())
    session.set_controller(1, RandomController(seed=3))
    session.run(30)
    assert session.frame == FIRST_FRAME + 30
    with pytest.raises(SessionError, match="legal stage"):
        session.start_synthetic(4, (20, 2))
    with pytest.raises(SessionError, match="character"):
        session.start_synthetic(31, (20, 99))


def test_state_age_follows_the_rule(model, replay):
    session = Session(model)
    session.start_replay(replay, 300)
    for _ in range(40):
        prev_action, prev_age = session.state["post_state"].copy(), session.state["post_state_age"].copy()
        st = session.tick()
        same = st["post_state"] == prev_action
        assert np.array_equal(st["post_state_age"], np.where(same, prev_age + 1, 0))


def test_sampling_is_seeded(model):
    def run(seed):
        s = Session(model, temperature=1.0, seed=seed)
        s.start_synthetic(32, (2, 20))
        s.run(40)
        return history_tensors(s)["state_cat"]

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_rules_act_visibly_and_only_when_on(model):
    """A character put past the blast zone is KO'd (one stock) with the rules on, counted in the state message;
    the model alone leaves it there."""
    for on in (False, True):
        session = Session(model, rules=on)
        session.start_synthetic(31, (20, 2), mode="standing")
        session.run(2)
        with torch.inference_mode():
            session._cur.state_cont[0, 0, model.spec.cont_index("post_position_x")] = \
                model.spec.normalise("post_position_x", 1000.0)
        st = session.tick()
        msg = session.message()
        assert msg["rules"] == session.rule_counts_dict() and msg["rules_on"] is on
        assert set(msg["rules"]) == set(RULE_EVENTS)
        if on:
            assert msg["rules"]["ko_blast_zone"] == 1
            assert st["post_stocks"].tolist() == [3, 4] and st["post_state"][0] == 2    # DEAD_RIGHT
        else:
            assert sum(msg["rules"].values()) == 0
            assert st["post_position_x"][0] > 900           # the untrained model alone: still out there


def test_sessions_ticked_together_match_ticked_alone(model, replay):
    """One batched model step for several sessions (how the server catches up when it falls behind) gives each the
    frames it would have alone: different starts, controllers and rules; a sampling session ticks on its own."""
    def sessions():
        made = []
        for stage, chars, rules in ((31, (20, 2), True), (32, (2, 9), True), (31, (20, 2), False)):
            s = Session(model, rules=rules)
            s.set_controller(0, ApproachController())
            s.set_controller(1, RandomController(seed=stage))
            s.start_synthetic(stage, chars, mode="standing")
            made.append(s)
        takeover = Session(model)
        takeover.start_replay(replay, replay.first_frame + 200)
        sampling = Session(model, temperature=0.8, seed=3)
        sampling.start_synthetic(31, (20, 2))
        return made + [takeover, sampling]

    alone, together = sessions(), sessions()
    with torch.inference_mode():    # put one game past the blast zone, so that a rule acts inside the batch
        for group in (alone, together):
            group[0]._cur.state_cont[0, 0, model.spec.cont_index("post_position_x")] = \
                model.spec.normalise("post_position_x", 1000.0)
    steps = []      # the batch size of every model step a round takes
    real_step = model.step
    for _ in range(40):
        for s in alone:
            s.tick()
        model.step = lambda x, state: steps.append(len(x.stage)) or real_step(x, state)
        try:
            assert tick_together(together) == [None] * len(together)
        finally:
            del model.step          # back to the class's method
    # One step per group: the 3 greedy sessions with rules (a replay takeover among them), the one without, and
    # the sampling one alone.
    assert steps == [3, 1, 1] * 40
    for a, b in zip(alone, together):
        ha, hb = history_tensors(a), history_tensors(b)
        assert torch.equal(ha["state_cat"], hb["state_cat"]) and torch.equal(ha["state_bin"], hb["state_bin"])
        torch.testing.assert_close(ha["state_cont"], hb["state_cont"], rtol=1e-5, atol=1e-5)
        assert a.rule_counts_dict() == b.rule_counts_dict() and a.frame == b.frame
    assert together[0].rule_counts_dict()["ko_blast_zone"] >= 1


def test_a_failing_tick_leaves_the_others_alone(model):
    good, bad = Session(model), Session(model)
    good.start_synthetic(31, (20, 2))
    errors = tick_together([bad, good])      # never started
    assert isinstance(errors[0], SessionError) and errors[1] is None and good.ticks == 1


def test_controller_state_messages():
    s = ControllerState.from_message({"stick": [1, -0.5], "cstick": [0, 0], "l": 0.3, "buttons": ["A", "Z"]})
    assert s.stick_x == 1.0 and s.stick_y == -0.5 and s.l == 0.3 and s.pressed == ["A", "Z"]
    assert ControllerState.from_message({"stick": [5, 0]}).stick_x == 1.0   # clamped
    for bad in ([1, 2], {"stick": [1]}, {"buttons": ["Q"]}, {"l": "x"}, {"stick": [float("nan"), 0]},
                {"jump": True}):
        with pytest.raises(ControllerError):
            ControllerState.from_message(bad)


def test_export_is_a_real_replay_of_the_decoded_states(model, tmp_path):
    session = Session(model)
    session.set_controller(0, ApproachController())
    session.set_controller(1, RandomController(seed=5))
    session.start_synthetic(8, (9, 15))
    session.run(150)
    path = session.export_slp(tmp_path / "synth.slp")
    game = peppi_py.read_slippi(str(path))
    assert game.start.stage == 8
    assert [p.character for p in game.start.players] == [9, 15]
    ids = np.asarray(game.frames.id)
    assert ids[0] == FIRST_FRAME and len(ids) == 151
    d = session.decoded_history()
    for p, port in enumerate(game.frames.ports):
        post, pre = port.leader.post, port.leader.pre
        assert np.array_equal(np.asarray(post.position.x), d["post_position_x"][:, p])
        assert np.array_equal(np.asarray(post.position.y), d["post_position_y"][:, p])
        assert np.array_equal(np.asarray(pre.joystick.x), d["pre_joystick_x"][:, p])
        known = d["post_state"][:, p] >= 0    # UNKNOWN (-1) is written as null and filled by the writer
        assert np.array_equal(np.asarray(post.state)[known], d["post_state"][known, p])
        assert np.array_equal(np.asarray(pre.state)[1:], np.asarray(post.state)[:-1])  # starts from the last post


@pytest.fixture(scope="module")
def item_model(dataset):
    """The tiny model with item slots, its item heads set so that slots 0 and 1 always hold an item that moves."""
    spec = EncodingSpec.fit(dataset, sorted(dataset.game_ids()), items=True, item_slots=3)
    torch.manual_seed(0)
    model = WorldModel(spec, tiny_config().model)
    with torch.no_grad():
        model.item_present_head.weight.zero_()
        model.item_present_head.bias.copy_(torch.tensor([9.0, 9.0, -9.0]))
        model.item_cont_head.weight.normal_(0.0, 0.5)
    return model.eval()


def test_export_writes_the_predicted_items(item_model, replay_files):
    """Items the model predicts reach the exported replay as Item Update events: a new spawn id when a slot fills
    or its item changes type, owners as ports; a replay takeover keeps the real items before the start."""
    session = Session(item_model)
    session.start_synthetic(31, (20, 2))
    session.run(30)
    mine = session.items_table()
    h = session._history.view()
    raw = item_model.spec.decode_items(h["item_present"], h["item_type"], h["item_owner"], h["item_cont"])
    assert mine.num_rows == int(raw["present"].sum()) > 0
    back = parse_replay(session.slp_bytes(), "export").items
    for name in ("frame", "type", "id", "owner", "position_x", "position_y", "velocity_x", "velocity_y"):
        assert back.column(name).to_pylist() == mine.column(name).to_pylist(), name
    assert set(back.column("owner").to_pylist()) <= {-1, session.ports[0] - 1, session.ports[1] - 1}
    changed = (raw["present"][1:] & ~raw["present"][:-1]) | (raw["present"][1:] & (raw["type"][1:] != raw["type"][:-1]))
    assert len(set(back.column("id").to_pylist())) == int(raw["present"][0].sum() + changed.sum())

    takeover = Session(item_model)       # a Falco vs Marth recording with lasers
    replay = ReplayGame.from_bytes(replay_files["recent_316"].read_bytes(), "recent_316", item_model.spec)
    real = replay.dataset.items(replay.game_id)
    start = int(real.column("frame").to_numpy()[len(real) // 2])
    takeover.start_replay(replay, start)
    takeover.run(10)
    real = real.filter(pc.less(real.column("frame"), start))
    written = parse_replay(takeover.slp_bytes(), "takeover").items
    before = written.filter(pc.less(written.column("frame"), start))
    after = written.filter(pc.greater_equal(written.column("frame"), start))
    assert before.column("id").to_pylist() == real.column("id").to_pylist()
    assert after.num_rows == takeover.items_table().num_rows > 0 and real.num_rows > 0
    assert before.column("position_x").to_pylist() == real.column("position_x").to_pylist()
    assert min(after.column("id").to_pylist()) > max(real.column("id").to_pylist())


def test_dream_cli_writes_prefix_plus_model_frames(model, play_files, replay, game_id, tmp_path):
    checkpoint, data = play_files
    out = tmp_path / "dream.slp"
    frame, frames = 300, 120
    result = CliRunner().invoke(app, ["dream", "--model", str(checkpoint), "--data", str(data), "--replay",
                                      game_id[:10], "--frame", str(frame), "--frames", str(frames),
                                      "--export", str(out)])
    assert result.exit_code == 0, result.output
    game = peppi_py.read_slippi(str(out))
    ids = np.asarray(game.frames.id)
    prefix = frame - replay.first_frame
    assert len(ids) == prefix + frames and ids[0] == replay.first_frame and ids[-1] == frame + frames - 1
    assert game.start.stage == replay.stage
    assert tuple(p.character for p in game.start.players) == replay.chars
    # the same session, run again, decodes exactly what the file holds after the prefix
    session = dream_session(model, replay, frame, frames)
    d = session.decoded_history()
    for p, port in enumerate(game.frames.ports):
        post = port.leader.post
        assert np.array_equal(np.asarray(post.position.x)[prefix:], d["post_position_x"][:, p])
        assert np.array_equal(np.asarray(post.position.y)[prefix:], d["post_position_y"][:, p])
        real = replay.spec.decode_state(replay.encoded.cont[:prefix], replay.encoded.binary[:prefix],
                                        replay.encoded.cat[:prefix])
        assert np.allclose(np.asarray(post.position.x)[:prefix], real["post_position_x"][:, p], atol=1e-3)


def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoint_module, "DEFAULT_MODEL", tmp_path / "models" / "meleewm-small.pt")
    with pytest.raises(ModelNotFound, match="--model"):
        resolve_model(None)
    with pytest.raises(ModelNotFound, match="no model at"):
        resolve_model(tmp_path / "nope.pt")
    result = CliRunner().invoke(app, ["play"])
    assert result.exit_code == 2 and "meleewm-small.pt" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["dream", "--replay", "x.slp", "--frame", "1", "--export", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--model" in result.output
