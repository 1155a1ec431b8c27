"""Training on real data: overfitting one game, exact resume, self-forcing, and a full CLI run."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch.utils.data import default_collate
from typer.testing import CliRunner

from meleewm.config import ConfigError
from meleewm.data.step import StepInput
from meleewm.model.losses import head_losses, total_loss
from meleewm.train.trainer import Trainer, _self_forced
from meleewm.model.world import next_inputs
from tests.train.realdata import TINY, tiny_config


def fixed_loss(trainer: Trainer, batch: dict) -> float:
    trainer.model.eval()
    with torch.no_grad():
        losses = head_losses(trainer.model(StepInput.from_window(batch)), batch, trainer.model.cat_names, trainer.config.loss,
                             trainer.model.cont_delta_scale)
    return float(total_loss(losses, trainer.config.loss))


def test_overfit_one_real_game(train_data, tmp_path):
    """A small model drives the training loss on a fixed batch of one real game down by more than 10x within a
    minute on 2 CPU cores (teacher forcing, no augmentation, default loss settings).

    The time limit is on this process's CPU time per torch thread, which equals the wall time on an idle
    machine but does not grow when other jobs share the cores."""
    max_steps = 400
    config = tiny_config("data.max_games=1", "data.val_fraction=0", "data.swap_players=false",
                         "data.mirror=false", "self_forcing.enabled=false", "optim.lr=5e-3",
                         "optim.weight_decay=0", "optim.warmup_steps=10", f"optim.steps_per_epoch={max_steps}",
                         "optim.epochs=1")
    trainer = Trainer(train_data, config, tmp_path / "run", progress=False)
    assert len(trainer.train_ids) == 1
    windows = trainer.train_windows
    windows.set_epoch(0)
    picks = range(0, len(windows), max(1, len(windows) // 16))
    fixed = default_collate([windows[i] for i in picks][:16])
    before = fixed_loss(trainer, fixed)
    started, cpu, after, steps = time.perf_counter(), time.process_time(), before, 0
    for indices in trainer._epoch_batches(0):
        trainer.train_step(default_collate([windows[i] for i in indices]))
        steps += 1
        if steps % 25 == 0:
            after = fixed_loss(trainer, fixed)
            if after < before / 10:
                break
    elapsed = time.perf_counter() - started
    per_thread = (time.process_time() - cpu) / torch.get_num_threads()
    print(f"overfit: loss {before:.3f} -> {after:.4f} ({before / after:.1f}x) in {steps} steps, {elapsed:.1f} s "
          f"wall, {per_thread:.1f} s CPU per thread")
    assert after < before / 10, (before, after, steps)
    assert per_thread < 60, (elapsed, per_thread)


def _run(data, out, *overrides, resume=False):
    config = tiny_config(*overrides)
    return Trainer(data, config, out, resume=resume, progress=False).run()


RESUME = ("data.batch_size=4", "optim.steps_per_epoch=3", "optim.epochs=3", "self_forcing.prob=0.5",
          "self_forcing.max_unroll=2", "data.swap_players=true", "data.mirror=true", "eval.rollout_starts=4",
          "eval.max_val_batches=1", "log.every_steps=1")


@pytest.mark.parametrize("store, prefetch", [("cache", False), ("sharded", False), ("sharded", True)])
def test_resume_is_exact(train_data, tmp_path, store, prefetch):
    """N steps, stop, resume to 2N == 2N steps straight (self-forcing and augmentation on; the stop falls
    mid-epoch, after an epoch end with validation), from the encoded cache and from the sharded store, with and
    without reading its shards ahead."""
    n = 4
    data = (*RESUME, f"data.store={store}", f"data.prefetch_shards={str(prefetch).lower()}")
    straight = _run(train_data, tmp_path / "straight", *data, f"optim.max_steps={2 * n}")
    first = _run(train_data, tmp_path / "split", *data, f"optim.max_steps={n}")
    assert (first.steps, first.epochs_done) == (n, 1)
    resumed = _run(train_data, tmp_path / "split", *data, f"optim.max_steps={2 * n}", resume=True)
    assert straight.steps == resumed.steps == 2 * n
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    assert a["position"]["step"] == b["position"]["step"] == 2 * n
    assert a["position"]["best_metric"] == b["position"]["best_metric"]
    assert len(a["position"]["history"]) == len(b["position"]["history"]) == 2
    # The runs really used self-forcing and augmentation.
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    unrolls = [r["self_forcing_unroll"] for r in records if r["kind"] == "train"]
    assert len(unrolls) == 2 * n and any(unrolls) and not all(unrolls), unrolls
    # The split run's log continues where it stopped (steps 1..2N, each once).
    records = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 2 * n + 1))


@pytest.mark.parametrize("items", [False, True])
def test_self_forced_feeds_predictions(train_data, tmp_path, items):
    config = tiny_config("data.batch_size=4", "optim.max_steps=1", f"data.items={str(items).lower()}")
    trainer = Trainer(train_data, config, tmp_path / "sf", progress=False)
    windows = trainer.train_windows
    batch = StepInput.from_window(default_collate([windows[i] for i in range(4)]))
    model = trainer.model.eval()
    with torch.no_grad():
        x = _self_forced(model, batch, 1)
        own = next_inputs(model(batch), batch).state()
    fed = list(own)
    assert {"state_cont", "state_bin", "state_cat"} <= set(fed)
    item_keys = {"state_item_present", "state_item_type", "state_item_owner", "state_item_cont"}
    assert (item_keys <= set(fed)) == items
    for key in fed:
        assert torch.equal(getattr(x, key)[:, 0], getattr(batch, key)[:, 0]), key   # position 0 keeps the truth
        assert torch.equal(getattr(x, key)[:, 1:], own[key][:, :-1]), key          # then the model's own frame
    assert not torch.equal(x.state_cont[:, 1:], batch.state_cont[:, 1:])
    assert not torch.equal(x.state_cat[:, 1:], batch.state_cat[:, 1:])
    for key in ("cont_mask", "bin_mask", "cat_mask", "ctrl", "stage", "chars"):
        assert getattr(x, key) is getattr(batch, key), key                # masks, controllers, constants kept
    with torch.no_grad():
        x2 = _self_forced(model, batch, 2)
        own2 = next_inputs(model(x), x)
    assert torch.equal(x2.state_cat[:, 1:], own2.state_cat[:, :-1])       # pass 2 reads pass 1's inputs


def test_cli_full_tiny_run(train_data, tmp_path):
    from meleewm.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(train_data), "--config", str(TINY), "--out", str(out),
                                      "optim.steps_per_epoch=4", "eval.rollout_starts=4",
                                      "eval.max_val_batches=1", "log.every_steps=2"])
    assert result.exit_code == 0, result.output
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("val") == 2 and kinds.count("train") >= 4
    assert all(r["loss"] > 0 for r in records if r["kind"] == "train")
    assert all("rollout_position_error" in r and "action_acc" in r for r in records if r["kind"] == "val")
    assert "train →" in result.output and "stopped" in result.output and "finished" in result.output
    assert "best rollout position error" in result.output
    from meleewm.model.checkpoint import load_model
    from meleewm.train.config import config_from_dict, load_config

    payload = load_model(out / "best.pt").payload
    config = config_from_dict(payload["config"])
    assert config.name == "tiny" and payload["position"]["step"] in (4, 8)
    assert load_config(out / "config.yaml") == config


def test_best_checkpoint_without_rollout_metric(train_data, tmp_path):
    """Validation games too short for a rollout give a NaN rollout metric: best.pt is still written."""
    out = tmp_path / "run"
    result = Trainer(train_data, tiny_config("data.batch_size=4", "optim.steps_per_epoch=2", "eval.warmup=100000",
                                             "eval.max_val_batches=1"), out, progress=False).run()
    assert result.epochs_done == 2 and (out / "best.pt").is_file() and (out / "last.pt").is_file()


def test_rules_of_melee_options_train(train_data, tmp_path):
    """The issue-12 options together (state_age embedding, continuous gate, input noise, KO windows) train a
    tiny model: every step's loss is finite, the gate has its own loss, and the noise reaches the inputs."""
    from meleewm.train.trainer import _noisy

    config = tiny_config("model.age_embed_dim=4", "model.age_max=20", "model.cont_gate=true",
                         "self_forcing.input_noise=0.5", "data.ko_windows=1.0", "data.batch_size=4",
                         "optim.epochs=1", "optim.steps_per_epoch=3", "eval.rollout_starts=4",
                         "eval.max_val_batches=1")
    trainer = Trainer(train_data, config, tmp_path / "rules", progress=False)
    assert len(trainer.train_windows.kos) > 0
    windows = trainer.train_windows
    batch = default_collate([windows[i] for i in range(4)])
    values = trainer.train_step(batch)
    assert "loss/gate" in values and all(torch.isfinite(torch.tensor(v)) for v in values.values()), values
    noisy = _noisy(StepInput.from_window(batch), trainer.model.cont_delta_scale, torch.Generator().manual_seed(0))
    moved = noisy.state_cont != batch["state_cont"]
    assert moved.any() and not moved[~batch["cont_mask"]].any()  # absent fields stay untouched
    result = trainer.run()
    assert result.stop_reason == "finished" and result.steps == 4


def test_event_weight_counts_hits_and_kos_more(train_data, tmp_path):
    """``loss.event_weight`` finds the frames of real games where a percent rises or stocks change, and only
    those frames' losses grow: with every event frame's target made the input (no event left), the weighted
    and unweighted losses are equal."""
    from meleewm.model.losses import LossConfig, event_frames

    trainer = Trainer(train_data, tiny_config("model.cont_gate=true"), tmp_path / "events", progress=False)
    windows = trainer.train_windows
    windows.set_epoch(0)
    batch = default_collate([windows[i] for i in range(min(8, len(windows)))])
    events = event_frames(batch)
    assert 0 < events.float().mean() < 0.05  # hits are rare frames of real games, but there are some
    model, names = trainer.model.eval(), trainer.model.cat_names

    def losses(config, b):
        with torch.no_grad():
            return head_losses(model(StepInput.from_window(b)), b, names, config, model.cont_delta_scale,
                               model.cont_zero)

    plain, weighted = losses(LossConfig(), batch), losses(LossConfig(event_weight=10.0), batch)
    assert weighted["gate"] > plain["gate"] and weighted["cat/post_state"] > plain["cat/post_state"]
    calm = dict(batch)
    for key in ("cont", "cat"):
        calm[f"next_{key}"] = torch.where(events[..., None, None], batch[f"state_{key}"], batch[f"next_{key}"])
    assert not event_frames(calm).any()
    calm_plain, calm_weighted = losses(LossConfig(), calm), losses(LossConfig(event_weight=10.0), calm)
    assert all(torch.allclose(calm_plain[k], calm_weighted[k]) for k in calm_plain)
    with pytest.raises(ValueError, match="event_weight"):
        LossConfig(event_weight=0.5)


def test_gated_regression_learns_the_value_of_a_change_only(train_data, tmp_path):
    """``loss.gated_regression``: the head's value is scored only on entries of real games whose gate target is
    that value, so what it predicts where the field stays (or falls to 0) changes nothing, and a change the gate
    cannot see is scored exactly as without the option."""
    from meleewm.model.losses import LossConfig
    from meleewm.model.world import GATE_FREE, gate_classes

    trainer = Trainer(train_data, tiny_config("model.cont_gate=true"), tmp_path / "gated", progress=False)
    windows = trainer.train_windows
    windows.set_epoch(0)
    batch = default_collate([windows[i] for i in range(min(8, len(windows)))])
    model, names = trainer.model.eval(), trainer.model.cat_names
    with torch.no_grad():
        pred = model(StepInput.from_window(batch))
    classes = gate_classes(batch["next_cont"], batch["state_cont"], model.cont_zero)
    changed = (classes == GATE_FREE) & batch["next_cont_mask"]
    assert 0 < changed.float().mean() < 1   # real games hold both kinds of entries

    def cont_loss(config, p):
        return head_losses(p, batch, names, config, model.cont_delta_scale, model.cont_zero)["cont"]

    gated = LossConfig(gated_regression=True)
    far = dict(pred, cont_free=torch.where(changed, pred["cont_free"], pred["cont_free"] + 100.0))
    assert torch.allclose(cont_loss(gated, far), cont_loss(gated, pred))
    assert cont_loss(LossConfig(), far) > cont_loss(LossConfig(), pred)   # without it, those entries count
    exact = dict(pred, cont_free=torch.where(changed, batch["next_cont"], pred["cont_free"] + 100.0))
    assert cont_loss(gated, exact) == 0 < cont_loss(gated, pred)
    ungated = {k: v for k, v in pred.items() if k != "gate_logits"}
    with pytest.raises(ValueError, match="cont_gate"):
        cont_loss(gated, ungated)


def test_ko_weight_counts_only_the_frames_of_a_ko(train_data, tmp_path):
    """``loss.ko_weight``: windows of real games around their KOs; only the KO frames' losses grow (the stocks
    head's among them), and with those frames' stock change undone the weighted and plain losses are equal."""
    from meleewm.model.losses import LossConfig, ko_frames

    trainer = Trainer(train_data, tiny_config("data.ko_windows=1.0"), tmp_path / "kos", progress=False)
    windows = trainer.train_windows
    kos = windows.kos[:4]
    assert len(kos) > 0
    batch = default_collate([windows.sample_at(int(g), max(0, int(f) - 100), 200) for g, f in kos])
    found = ko_frames(batch)
    assert found.any(-1).all() and found.float().mean() < 0.05   # each window holds its KO, and KOs are rare
    model, names = trainer.model.eval(), trainer.model.cat_names

    def losses(config, b):
        with torch.no_grad():
            return head_losses(model(StepInput.from_window(b)), b, names, config, model.cont_delta_scale)

    plain, weighted = losses(LossConfig(), batch), losses(LossConfig(ko_weight=50.0), batch)
    assert weighted["cat/post_stocks"] > plain["cat/post_stocks"]
    calm = dict(batch, next_cat=torch.where(found[..., None, None], batch["state_cat"], batch["next_cat"]))
    assert not ko_frames(calm).any()
    calm_plain, calm_weighted = losses(LossConfig(), calm), losses(LossConfig(ko_weight=50.0), calm)
    assert all(torch.allclose(calm_plain[k], calm_weighted[k]) for k in calm_plain)
    with pytest.raises(ValueError, match="ko_weight"):
        LossConfig(ko_weight=0.0)


def test_respawn_weight_counts_only_the_frames_of_a_respawn(train_data, tmp_path):
    """``loss.respawn_weight``: windows of real games that hold the respawn 60 frames after each KO; the respawn
    frames are found (a death in the input frame, the respawn platform in the target), only their losses grow, and
    with those frames' actions kept dead the weighted and plain losses are equal."""
    from meleewm.model.losses import LossConfig, respawn_frames

    trainer = Trainer(train_data, tiny_config("data.ko_windows=1.0"), tmp_path / "respawns", progress=False)
    windows = trainer.train_windows
    kos = windows.kos[:4]
    assert len(kos) > 0
    batch = default_collate([windows.sample_at(int(g), int(f) - 20, 100) for g, f in kos
                             if 20 <= int(f) <= windows.cache.lengths[int(g)] - 101])
    model, names = trainer.model.eval(), trainer.model.cat_names
    found = respawn_frames(batch, model.dead_action)
    assert found.sum(-1).eq(1).all()   # one respawn per window: 60 frames after its KO
    action = names.index("post_state")
    raw = torch.as_tensor(model.spec.decode_lut("post_state"))
    dead = model.dead_action
    leaving = dead[batch["state_cat"][..., action].long()] & ~dead[batch["next_cat"][..., action].long()]
    assert (raw[batch["next_cat"][..., action].long()][leaving] == 12).all()   # onto the platform: ON_HALO_DESCENT

    def losses(config, b):
        with torch.no_grad():
            return head_losses(model(StepInput.from_window(b)), b, names, config, model.cont_delta_scale,
                               model.cont_zero, model.dead_action)

    plain, weighted = losses(LossConfig(), batch), losses(LossConfig(respawn_weight=50.0), batch)
    assert weighted["cat/post_state"] > plain["cat/post_state"]
    calm = dict(batch, next_cat=torch.where(found[..., None, None], batch["state_cat"], batch["next_cat"]))
    assert not respawn_frames(calm, model.dead_action).any()
    calm_plain, calm_weighted = losses(LossConfig(), calm), losses(LossConfig(respawn_weight=50.0), calm)
    assert all(torch.allclose(calm_plain[k], calm_weighted[k]) for k in calm_plain)
    with pytest.raises(ValueError, match="dead_action"):
        head_losses(model(StepInput.from_window(batch)), batch, names, LossConfig(respawn_weight=2.0),
                    model.cont_delta_scale, model.cont_zero)
    with pytest.raises(ValueError, match="respawn_weight"):
        LossConfig(respawn_weight=0.5)


def test_train_only_trains_the_named_parameters_alone(train_data, tmp_path):
    """``optim.train_only``: a run on real games changes the named parameters and leaves every other one bitwise as
    it started; a prefix that names no parameter is a config error."""
    trainer = Trainer(train_data, tiny_config("optim.train_only=cont_head", "optim.max_steps=2", "data.batch_size=4",
                                              "self_forcing.prob=0.5", "eval.rollout_starts=2",
                                              "eval.max_val_batches=1"), tmp_path / "head", progress=False)
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    trainer.run()
    after = trainer.model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"cont_head.weight", "cont_head.bias"}
    with pytest.raises(ConfigError, match="optim.train_only"):
        Trainer(train_data, tiny_config("optim.train_only=no_such_head", "optim.max_steps=1"), tmp_path / "none",
                progress=False)


def test_the_hit_heads_learn_from_real_hits_alone(train_data, tmp_path):
    """``model.hit_percent``'s damage head and ``hit_launch``'s launch head (knockback speeds, hitlag) are scored on
    the frames of real games where a player's percent rises, and only there: their values elsewhere change nothing,
    and the real rises and launches score 0."""
    from meleewm.data.encoding import CONT_FIELDS
    from meleewm.model.losses import PERCENT_COLUMN, LossConfig
    from meleewm.model.world import LAUNCH_FIELDS

    trainer = Trainer(train_data, tiny_config("model.cont_gate=true", "model.hit_percent=true",
                                              "model.hit_launch=true"), tmp_path / "hits", progress=False)
    windows = trainer.train_windows
    windows.set_epoch(0)
    batch = default_collate([windows[i] for i in range(min(16, len(windows)))])
    rise = batch["next_cont"][..., PERCENT_COLUMN] - batch["state_cont"][..., PERCENT_COLUMN]
    hits = (rise > 0) & batch["next_cont_mask"][..., PERCENT_COLUMN] & batch["cont_mask"][..., PERCENT_COLUMN]
    assert hits.any() and hits.float().mean() < 0.05   # real games hold hits, and they are rare
    model = trainer.model.eval()
    with torch.no_grad():
        pred = model(StepInput.from_window(batch))

    def loss(name, value):
        return head_losses(dict(pred, **{name: value}), batch, model.cat_names, LossConfig(), model.cont_delta_scale,
                           model.cont_zero)[name]

    launch = [CONT_FIELDS.index(f) for f in LAUNCH_FIELDS]
    assert not batch["next_cont_mask"][..., launch[0]].any()   # these games' versions record no speeds:
    batch["next_cont_mask"][..., launch] = True                # score the head against their zeros too
    for name, real in (("damage", rise), ("launch", batch["next_cont"][..., launch])):
        at_hits = hits if name == "damage" else hits.unsqueeze(-1)
        assert loss(name, pred[name]) > 0
        assert loss(name, torch.where(at_hits, real, pred[name] + 100.0)) == 0
        assert torch.allclose(loss(name, torch.where(at_hits, pred[name], pred[name] + 100.0)), loss(name, pred[name]))
