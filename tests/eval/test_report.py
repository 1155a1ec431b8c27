"""The HTML report and metrics.json on a synthetic rollout set (random walks with known structure)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from meleewm.eval.baselines import add_baselines
from meleewm.eval.metrics import RolloutSet
from meleewm.eval.run import evaluate
from tests.eval.test_metrics import KEYS
from meleewm.eval.plausibility import seen_actions
from meleewm.eval.report import SECTIONS, EvalResult, write_report
from meleewm.eval.verdict import verdict

META = {
    "checkpoint_hash": "ck0123",
    "dataset_hash": "ds4567",
    "code_version": "0.1.0+test",
    "seed": 7,
    "command": "meleewm eval RUN DATASET",
}


def synthetic_rollouts(n: int = 12, h: int = 40, p: int = 2, seed: int = 0, model_noise: float = 0.3) -> RolloutSet:
    """Characters drifting at a constant speed plus a random walk; the "model" is the truth plus noise and
    20% wrong actions; one stock loss at step 10 of start 0."""
    rng = np.random.default_rng(seed)
    full = {
        k: np.zeros((n, h + 1, p))
        for k in KEYS
    }
    v = rng.normal(0, 1, (n, 1, p))
    full["post_velocities_self_x_ground"][:] = v
    full["post_position_x"] = (
        rng.uniform(-50, 50, (n, 1, p))
        + np.cumsum(np.broadcast_to(v, (n, h + 1, p)), 1)
        + np.cumsum(rng.normal(0, 0.3, (n, h + 1, p)), 1)
    )
    full["post_position_y"] = np.abs(np.cumsum(rng.normal(0, 0.5, (n, h + 1, p)), 1))
    full["post_state"] = rng.choice([14, 20, 35, 75], (n, h + 1, p))
    full["post_percent"] = np.cumsum(rng.random((n, h + 1, p)) < 0.05, 1) * 4.0
    full["post_stocks"][:] = 4
    full["post_stocks"][0, 11:, 0] = 3
    full["post_shield"][:] = 60
    full["post_character"][:] = 1  # Fox
    truth = {k: a[:, 1:] for k, a in full.items()}
    context = {k: a[:, 0] for k, a in full.items()}
    model = {k: a.copy() for k, a in truth.items()}
    model["post_position_x"] += rng.normal(0, model_noise, model["post_position_x"].shape)
    model["post_state"] = np.where(rng.random((n, h, p)) < 0.8, truth["post_state"], 20)
    rs = RolloutSet(
        truth=truth,
        context=context,
        predictions={"model": model},
        stage=np.array([31, 32, 8, 28, 3, 2] * n)[:n],
        characters=np.full((n, p), 2),
        game_ids=[f"game{i}" for i in range(n)],
        start_frames=np.arange(n) * 600,
    )
    return add_baselines(rs)


@pytest.fixture(scope="module")
def rollouts() -> RolloutSet:
    return synthetic_rollouts()


@pytest.fixture(scope="module")
def metrics(rollouts) -> dict:
    m = evaluate(rollouts, allowed_actions=seen_actions(rollouts.truth["post_character"], rollouts.truth["post_state"]))
    m["teacher_forced"] = {
        "action_accuracy": 0.91,
        "change_accuracy": 0.42,
        "position_mae": 0.8,
        "flags": {"per_flag": [0.5, None], "macro": 0.5},
    }
    return m


@pytest.fixture(scope="module")
def report(tmp_path_factory, metrics, rollouts) -> Path:
    return write_report(tmp_path_factory.mktemp("report"), EvalResult.of(metrics, META), rollouts)


def test_report_has_every_section(report):
    assert report.name == "report.html"
    assert (report.parent / "metrics.json").is_file()
    page = report.read_text(encoding="utf-8")
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    for word in (
        "ck0123",
        "ds4567",
        "0.1.0+test",
        "meleewm eval RUN DATASET",
        "constant_velocity",
        "persistence",
        "reference system",
        "watchable bar",
        "change_accuracy",
        "DASHING",
        "Battlefield",
        "Fox",
    ):
        assert word in page, word
    # Self-contained: no external resources, every image is an embedded PNG.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "http://" not in page and "https://" not in page
    imgs = re.findall(r"<img [^>]*>", page)
    assert len(imgs) >= 10
    assert all('src="data:image/png;base64,' in i for i in imgs)


def test_metrics_json(report, metrics):
    doc = json.loads((report.parent / "metrics.json").read_text())
    assert set(doc) == {"meta", "metrics", "verdict"}
    assert doc["meta"] == META
    for key in ("rollout", "summary", "ko_timing", "breakdowns", "plausibility", "teacher_forced", "config"):
        assert key in doc["metrics"], key
    assert doc["metrics"]["ko_timing"]["model"]["detected"] == 1
    text = (report.parent / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text


def test_metrics_json_is_deterministic(tmp_path, metrics, rollouts, report):
    again = write_report(tmp_path, EvalResult.of(metrics, META), rollouts)
    assert (again.parent / "metrics.json").read_bytes() == (report.parent / "metrics.json").read_bytes()
    assert again.read_bytes() == report.read_bytes()  # the page too, plots included


def test_verdict():
    good = synthetic_rollouts(n=6, h=25, model_noise=0.0)
    good.predictions["model"] = {k: v.copy() for k, v in good.truth.items()}
    v = verdict(evaluate(good))
    assert v["status"] == "OK" and v["beats_constant_velocity"] and v["beats_reference"] and v["watchable"]
    assert v["headline"].startswith("The model beats constant velocity at 5–20 frames")

    bad = synthetic_rollouts(n=6, h=25, model_noise=50.0)
    v = verdict(evaluate(bad))
    assert v["status"] == "BROKEN" and v["beats_constant_velocity"] is False and v["watchable"] is False
    assert v["headline"] == "BROKEN: the model does not beat constant velocity at 5–20 frames."
    assert verdict({})["status"] == "NO MODEL"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def test_report_images_load_in_a_browser(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        report.resolve().as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    body = re.search(r"<body[^>]*>", out.stdout)
    assert body, out.stdout[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(0))
    total = re.search(r'data-images-total="(\d+)"', body.group(0))
    assert loaded and total, body.group(0)
    n_imgs = len(re.findall(r"<img ", report.read_text(encoding="utf-8")))
    assert int(total.group(1)) == n_imgs
    assert int(loaded.group(1)) == n_imgs


def test_reference_is_compared_horizon_with_horizon_and_mean_with_mean():
    """The reference's 8.88 / 53.0 % are at step 20 and its 4.80 / 77.5 % the mean over 1..20: the bundled
    model's 11.06 / 58.2 % at step 20 and 5.19 / 75.2 % mean are behind it, not ahead."""
    step20 = {"horizon": 20, "position_error": 11.06, "action_accuracy": 0.582}
    mean20 = {"k": 20, "position_error": 5.19, "action_accuracy": 0.752}
    v = verdict({"rollout": {"model": [step20]}, "summary": {"model": [mean20]}})
    assert v["beats_reference"] is False
    at, mean = [line for line in v["lines"] if line.startswith("Reference system")]
    assert "at step 20" in at and "8.88" in at and "53.0%" in at and "behind the reference on position" in at
    assert "action accuracy" not in at.split("behind")[1]                  # 58.2 % beats 53.0 % at step 20
    assert "1..20" in mean and "4.8" in mean and "77.5%" in mean
    assert "position and action accuracy" in mean
    better = verdict({"rollout": {"model": [{**step20, "position_error": 8.0}]},
                      "summary": {"model": [{**mean20, "position_error": 4.5, "action_accuracy": 0.78}]}})
    assert better["beats_reference"] is True


def test_watchable_bar_is_read_at_step_20_not_off_the_means():
    """A model whose means over 1..10 and 1..20 are small but whose error at step 20 is 8.65 units (the fifth
    session's bundled model: mean 4.13) is not watchable; one at 5.9 units and 71% at step 20 is."""
    metrics = {"rollout": {"model": [{"horizon": h, "position_error": e, "action_accuracy": a}
                                     for h, e, a in ((5, 1.7, 0.87), (10, 3.8, 0.77), (20, 8.65, 0.62))]},
               "summary": {"model": [{"k": 10, "position_error": 1.9, "action_accuracy": 0.87},
                                     {"k": 20, "position_error": 4.13, "action_accuracy": 0.78}]}}
    v = verdict(metrics)
    assert v["watchable"] is False
    assert any("position error at step 20 is 8.65" in line and "action accuracy at step 20" in line
               for line in v["lines"])
    metrics["rollout"]["model"][2].update(position_error=5.9, action_accuracy=0.71)
    assert verdict(metrics)["watchable"] is True
