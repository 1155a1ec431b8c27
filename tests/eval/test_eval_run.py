"""`meleewm eval` end to end on real replays: a tiny trained model, rollouts, baselines and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.data.cache import build_cache
from meleewm.data.windows import WindowDataset
from meleewm.eval.run import EvalSettings, model_rollouts, run_eval
from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from meleewm.model.checkpoint import load_model
from meleewm.train.config import load_config
from meleewm.train.trainer import train
from tests.conftest import extract_members

SETTINGS = EvalSettings(starts=12, horizon=120, warmup=30, seed=3, batch_size=6, tf_batches=2, idle_pairs=1,
                        idle_frames=20, timing_starts=6, event_starts=2)


@pytest.fixture(scope="module")
def trained(replays, manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    names = sorted(name for (archive, name), r in manifest.items()
                   if archive == "games-1.zip" and r.get("slippi_version", "").startswith("3.1"))[:5]
    extract_members(replays / "games-1.zip", names, root / "in")
    ingest([root / "in"], root / "ds")
    config = load_config("configs/tiny.yaml", ["log.tensorboard=false", "data.val_fraction=0.3", "optim.epochs=1"])
    train(root / "ds", config, root / "run", progress=False)
    return root / "ds", root / "run" / "best.pt"


def test_eval_writes_every_section(trained, tmp_path):
    data, checkpoint = trained
    result = run_eval(checkpoint, data, tmp_path / "report", split="all", settings=SETTINGS)
    metrics = result.metrics
    assert result.meta
    for section in ("rollout", "summary", "ko_timing", "breakdowns", "plausibility", "teacher_forced",
                    "idle", "action_timing", "events", "rule_counts"):
        assert metrics[section], section
    for name in ("model", "model_with_rules"):
        assert len(metrics["idle"][name]["by_stage"]) == 6
        assert metrics["action_timing"][name]["overall"]["onsets"] == metrics["action_timing"]["starts"] > 0
        for kind in ("ko", "hit"):
            section = metrics["events"][kind]
            if section["starts"]:
                r = section[name]
                assert r["hits"] + r["misses"] == r["events"] == section["starts"]
    assert set(metrics["rollout"]) == {"model", "model_with_rules", "persistence", "constant_velocity"}
    rules = metrics["plausibility"]["model_with_rules"]
    assert rules["outside_blast_zone"]["count"] == 0 and rules["percent_decrease"]["count"] == 0
    assert rules["stocks_increase"]["count"] == 0
    horizons = [row["horizon"] for row in metrics["rollout"]["model"]]
    assert horizons == [1, 5, 10, 20, 60, 120]
    tf = metrics["teacher_forced"]
    for key in ("loss/total", "action_acc", "change_acc", "position_error", "velocity_mae", "percent_mae",
                "shield_mae", "stocks_acc", "flag_f1_macro"):
        assert tf[key] is not None, key
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("<img") >= 5 and "constant_velocity" in html
    for title in ("Idle test", "Action timing", "Event-conditioned starts", "Rules report", "What a player notices"):
        assert title in html, title
    written = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert written["meta"]["checkpoint_hash"] and written["meta"]["dataset_hash"]


def test_two_runs_give_the_same_metrics(trained, tmp_path):
    data, checkpoint = trained
    run_eval(checkpoint, data, tmp_path / "a", split="all", settings=SETTINGS)
    run_eval(checkpoint, data, tmp_path / "b", split="all", settings=SETTINGS)
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()


class PoisonedWindows:
    """Windows whose true states after warm-up are garbage: a rollout that peeks at them changes."""

    def __init__(self, windows: WindowDataset, warmup: int):
        self.windows, self.warmup = windows, warmup

    def sample_at(self, game, start, length):
        sample = self.windows.sample_at(game, start, length)
        for key in ("state_cont", "state_bin", "state_cat"):
            poisoned = sample[key].clone()
            poisoned[self.warmup:] = 1e6 if key == "state_cont" else 1
            sample[key] = poisoned
        return sample


def test_rollout_never_reads_the_truth_after_warmup(trained):
    data, checkpoint = trained
    model = load_model(checkpoint).model
    dataset = Dataset(data)
    game_ids = [g["game_id"] for g in dataset.games.to_pylist()][:2]
    windows = WindowDataset(build_cache(dataset, model.spec, game_ids, progress=False), 64, random_phase=False)
    starts = [(0, 10), (1, 200)]
    clean, truth, _ = model_rollouts(model, windows, starts, SETTINGS)
    poisoned, poisoned_truth, _ = model_rollouts(model, PoisonedWindows(windows, SETTINGS.warmup), starts, SETTINGS)
    for key in clean:
        np.testing.assert_array_equal(clean[key], poisoned[key], err_msg=key)
    # The poison did reach the inputs: a teacher-forced pass over the same samples sees it.
    sample = PoisonedWindows(windows, SETTINGS.warmup).sample_at(0, 10, 100)
    assert torch.all(sample["state_cont"][SETTINGS.warmup:] == 1e6)


def test_eval_cli(trained, tmp_path):
    data, checkpoint = trained
    result = CliRunner().invoke(app, ["eval", str(checkpoint.parent), "--data", str(data), "--out",
                                      str(tmp_path / "cli"), "--split", "all", "--starts", "6", "--horizon", "60", "--warmup", "20"])
    assert result.exit_code == 0, result.output
    assert "constant_velocity" in result.output and (tmp_path / "cli" / "report.html").is_file()
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "nothing.pt"), "--data", str(data)])
    assert result.exit_code == 2 and "no checkpoint" in result.output


def test_eval_of_games_shorter_than_a_window(trained, tmp_path):
    """Games long enough for the rollouts but shorter than the model's training window (a small dataset of short
    games): the rollouts are evaluated, the teacher-forced section says why it is empty (an IndexError before)."""
    data, checkpoint = trained
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["data"]["seq_len"] = 1_000_000  # longer than every game
    torch.save(payload, tmp_path / "long-window.pt")
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "long-window.pt"), "--data", str(data), "--out",
                                      str(tmp_path / "short"), "--split", "all", "--starts", "2", "--horizon", "10",
                                      "--warmup", "10"])
    assert result.exit_code == 0, result.output
    assert "teacher-forced metrics not computed" in " ".join(result.output.split()), result.output
    written = json.loads((tmp_path / "short" / "metrics.json").read_text())
    meta, metrics = written["meta"], written["metrics"]
    assert not metrics.get("teacher_forced") and "1000000 frames" in meta["teacher_forced"]
    assert meta["starts"] == 2 and metrics["summary"]["model"], metrics["summary"]
    assert "Not computed" in (tmp_path / "short" / "report.html").read_text()


def test_event_lead_starts_each_rollout_that_many_frames_before_its_event(trained):
    """``event_lead`` on real games: the real games' own series put every KO and hit exactly ``lead`` steps into
    its rollout (caught, with no false alarm and no offset), for a lead of 1 as for the default 60; a lead below 1
    is refused."""
    from meleewm.eval.scenarios import event_detection

    data, checkpoint = trained
    model = load_model(checkpoint).model
    dataset = Dataset(data)
    game_ids = [g["game_id"] for g in dataset.games.to_pylist()]
    windows = WindowDataset(build_cache(dataset, model.spec, game_ids, progress=False), 64, random_phase=False)
    for lead in (1, 60):
        events = event_detection(model, windows, [("model", None)], count=4, warmup=SETTINGS.warmup, lead=lead)
        assert events["lead"] == lead
        assert events["hit"]["starts"] == 4   # five real games hold many hits
        for kind in ("ko", "hit"):
            if events[kind]["starts"]:
                real = events[kind]["real"]
                assert real["hits"] == real["events"] == events[kind]["starts"] and real["false_alarms"] == 0
                assert real["mean_offset"] == 0
    with pytest.raises(ValueError, match="lead"):
        event_detection(model, windows, [("model", None)], count=1, warmup=SETTINGS.warmup, lead=0)
