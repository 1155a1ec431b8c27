"""Run cards on real data: ``meleewm plan`` facts match the dataset and the model, kill thresholds stop a run
with their reason and a loadable checkpoint, a finished run's card has its results, and ``meleewm runs`` lists
runs sorted by a metric."""

from __future__ import annotations

import json
import math

import torch
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.data.encoding import EncodingSpec
from meleewm.data.windows import split_games
from meleewm.model.world import WorldModel
from meleewm.replay.dataset import Dataset
from meleewm.train.card import read_card
from meleewm.train.card_common import PENDING
from meleewm.model.checkpoint import load_model
from meleewm.train.config import load_config
from meleewm.train.trainer import Trainer
from tests.train.realdata import TINY, tiny_config

SHORT = ("log.tensorboard=false", "data.batch_size=4", "eval.rollout_starts=4", "eval.max_val_batches=1")


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_plan_card_matches_dataset_and_model(train_data, tmp_path):
    out = tmp_path / "runs" / "planned"
    overrides = ("log.tensorboard=false", "data.val_fraction=0.3", "data.max_games=3", "card.goal=check the card",
                 "card.targets={change_acc: '>0.5'}")
    cli("plan", "--config", TINY, "--data", train_data, "--out", out, "--gpu-hourly-cost", "2.5", "--probe-steps",
        "1", *overrides)
    facts = read_card(out)
    assert facts["status"] == "planned" and not (out / "last.pt").exists()   # planned, not trained

    # The split and its frame counts, as the dataset index gives them (val falls back to a training game).
    config = load_config(TINY, list(overrides))
    dataset = Dataset(train_data)
    train_ids, val_ids = split_games(dataset.games, config.data.val_fraction, config.data.split_seed,
                                     filters=config.data.filters())
    train_ids = train_ids[:config.data.max_games]
    val_ids = val_ids or train_ids[:1]
    frames = {g["game_id"]: g["frame_count"] for g in dataset.games.to_pylist()}
    split = facts["split"]
    assert split["train"]["games"] == len(train_ids) == 2 and split["val"]["games"] == len(val_ids) == 2
    assert split["train"]["frames"] == sum(frames[g] for g in train_ids)
    assert split["val"]["frames"] == sum(frames[g] for g in val_ids)
    assert split["train"]["windows"] > 0 and split["val"]["windows"] > 0
    assert facts["dataset"]["games"] == dataset.games.num_rows
    assert facts["dataset"]["frames"] == sum(frames.values())

    # The exact parameter count of the model that this config and the fitted encoding describe.
    spec = EncodingSpec.fit(dataset, train_ids, items=config.data.items, item_slots=config.data.item_slots)
    model = WorldModel(spec, config.model)
    params = sum(p.numel() for p in model.parameters())
    assert facts["model"]["params"] == params
    assert facts["encoding"]["hash"] == spec.hash()[:16]
    assert facts["encoding"]["input_total"] == model.input_proj.in_features == facts["model"]["input_width"]

    # The measured estimate, its cost line, the commands; the markdown says the same.
    est = facts["estimate"]
    assert est["seconds_per_batch"] > 0 and est["total_steps"] == 50 and est["batches_per_epoch"] == 25
    assert math.isclose(est["cost"], est["total_seconds"] / 3600 * 2.5)
    assert facts["baseline"]["change_acc"] is not None
    text = (out / "card.md").read_text()
    for words in (f"{params:,}", "check the card", "## Estimate", "## Escape hatches", "--resume",
                  "## Prior comparable runs", "```yaml", "| continuous |", "cat/post_state", PENDING):
        assert words in text, words
    assert f"{split['train']['frames']:,}" in text


def test_kill_threshold_stops_the_run(train_data, tmp_path):
    out = tmp_path / "runs" / "killed"
    result = cli("train", "--config", TINY, "--data", train_data, "--out", out, "--no-eval", *SHORT,
                 "optim.steps_per_epoch=3", "optim.epochs=5", "kill.min={change_acc: 0.99}", "kill.after_epoch=1")
    assert "kill.min.change_acc" in " ".join(result.output.split())
    facts = read_card(out)
    assert facts["status"] == "killed"
    assert facts["results"]["stop_reason"].startswith("kill: change_acc") and "< min 0.99 after epoch 1" in \
        facts["results"]["stop_reason"]
    assert facts["results"]["steps"] == 3 and facts["results"]["epochs"] == 1
    assert "kill.min.change_acc" in (out / "card.md").read_text()
    payload = load_model(out / "last.pt").payload
    assert payload["position"]["step"] == 3

    # Loss not decreasing (lr 0) at half of epoch 1: the trainer's reason names the threshold.
    stuck = Trainer(train_data, tiny_config(*SHORT, "optim.lr=0", "optim.steps_per_epoch=8",
                                            "kill.no_decrease_fraction=0.5", "kill.min_decrease=0.5"),
                    tmp_path / "stuck", progress=False).run()
    assert "kill.no_decrease_fraction" in stuck.stop_reason and stuck.steps == 4, stuck.stop_reason
    load_model(tmp_path / "stuck" / "last.pt")

    # A non-finite loss: the update is skipped (weights unchanged, finite) and the run stops at once.
    trainer = Trainer(train_data, tiny_config(*SHORT), tmp_path / "nan", progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.cont_delta_scale.fill_(float("nan"))
    nan = trainer.run()
    assert nan.stop_reason.startswith("kill: non-finite training loss") and nan.steps == 0, nan.stop_reason
    weights = torch.load(tmp_path / "nan" / "last.pt", weights_only=True)["model"]
    for name, value in before.items():
        if name != "cont_delta_scale":
            assert torch.equal(weights[name], value), name


def test_finished_run_card_and_runs_listing(train_data, tmp_path):
    runs = tmp_path / "runs"
    cli("train", "--config", TINY, "--data", train_data, "--out", runs / "full", *SHORT, "optim.steps_per_epoch=4",
        "card.hourly_cost=1.0", "card.goal=a whole tiny run", "card.targets={change_acc: '>0.01', "
        "rollout_position_error: '<1000'}")
    facts = read_card(runs / "full")
    assert facts["status"] == "finished"
    results = facts["results"]
    assert all(value is not None for value in results.values()), results
    assert results["eval"].get("summary_table") and results["eval"].get("horizon_table"), results["eval"]
    for row in results["metrics"]:
        assert row["final"] is not None and row["best"] is not None, row
    targets = {row["metric"]: row for row in results["metrics"] if row["target"]}
    assert targets["rollout_position_error"]["best_met"] is True
    assert facts["estimate"]["seconds_per_batch"] > 0 and facts["estimate"]["val_seconds"] is not None
    text = (runs / "full" / "card.md").read_text()
    assert PENDING not in text and "n/a" not in text and "Not run" not in text
    for words in ("## Results", "stopped**: finished", "met", "pos model", "report.html", "metrics.jsonl",
                  "against the estimate", "cost**: "):
        assert words in text, words
    assert (runs / "full" / "eval" / "report.html").is_file()

    # A second, shorter run: its card lists the first as a comparable prior run; `runs` sorts both.
    cli("train", "--config", TINY, "--data", train_data, "--out", runs / "short", "--no-eval", *SHORT,
        "optim.steps_per_epoch=2", "optim.epochs=1", "optim.lr=1e-5")
    assert "| full |" in (runs / "short" / "card.md").read_text()
    listing = cli("runs", runs, "--sort", "change_acc")
    assert "full" in listing.output and "short" in listing.output and "change_acc" in listing.output
    for order in ([], ["--desc"]):
        rows = json.loads(cli("runs", runs, "--sort", "change_acc", "--json", *order).output)
        values = [row["metrics"]["change_acc"] for row in rows]
        assert {row["run"] for row in rows} == {"full", "short"}
        assert values == sorted(values, reverse=bool(order)), values
