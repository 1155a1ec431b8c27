"""Projectiles and items in closed loop (``meleewm.eval.items``): the measure on hand-built slots, and real lasers
followed by the bundled model (``item_motion``) better than by holding them still."""

from __future__ import annotations

import numpy as np
import pytest

from meleewm.data.cache import build_cache
from meleewm.data.windows import WindowDataset
from meleewm.eval.items import PERSISTENCE, item_metrics
from meleewm.eval.run import EvalSettings, model_rollouts
from meleewm.model.checkpoint import DEFAULT_MODEL, export_model, load_model
from meleewm.model.rollout import rollout_starts
from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from tests.conftest import extract_members


def _slots(present, x, y):
    present = np.asarray(present, bool)
    return {"present": present, "position_x": np.where(present, x, np.nan), "position_y": np.where(present, y, np.nan)}


def test_item_metrics_on_hand_built_slots():
    """One start, two steps, two slots: a laser flying right by 2 units a frame in slot 0, and in slot 1 an item
    that the rollout invents at step 2."""
    truth = _slots([[[1, 0], [1, 0]]], [[[2.0, 0], [4.0, 0]]], [[[10.0, 0], [10.0, 0]]])
    model = _slots([[[1, 0], [1, 1]]], [[[2.0, 0], [7.0, 5.0]]], [[[10.0, 0], [14.0, 5.0]]])
    context = _slots([[1, 0]], [[0.0, 0]], [[10.0, 0]])  # the last warm-up frame: the laser at x = 0
    out = item_metrics({"model": model}, truth, context, [1, 2, 9])
    at = {r["horizon"]: r for r in out["model"]["by_horizon"]}
    assert sorted(at) == [1, 2]
    assert at[1]["presence_f1"] == 1.0 and at[1]["position_error"] == 0.0
    assert at[2]["presence_f1"] == pytest.approx(2 / 3) and at[2]["position_error"] == pytest.approx(5.0)
    held = {r["horizon"]: r for r in out[PERSISTENCE]["by_horizon"]}
    assert held[1]["presence_f1"] == 1.0 and held[1]["position_error"] == 2.0 and held[2]["position_error"] == 4.0
    assert out["starts_with_items"] == 1 and out["starts"] == 1


@pytest.fixture(scope="module")
def laser_games(replays, manifest, tmp_path_factory):
    """Two real full games with a Falco or a Fox (lasers), ingested."""
    names = sorted(name for (archive, name), r in manifest.items()
                   if archive == "games-1.zip" and r.get("n_players") == 2 and r.get("item_observations")
                   and {"Falco", "Fox"} & set(r.get("characters") or []))[:2]
    assert names, "games-1.zip holds games with lasers"
    root = tmp_path_factory.mktemp("lasers")
    ingest(extract_members(replays / "games-1.zip", names, root / "in"), root / "ds")
    return Dataset(root / "ds")


def test_item_motion_follows_projectiles(laser_games, tmp_path):
    """The bundled model (``item_motion`` on) keeps most real items in their slots and places them closer than
    persistence (the items held where they were) at the next frame, and at half the error of its own weights
    with the learned positions (``meleewm export --switch item_motion=false``) 5 frames on."""
    learned = export_model(DEFAULT_MODEL, tmp_path / "learned.pt", {"item_motion": False})
    assert load_model(DEFAULT_MODEL).model.config.item_motion and not load_model(learned).model.config.item_motion
    ids = laser_games.games.column("game_id").to_pylist()
    settings = EvalSettings(starts=200, horizon=10, warmup=30, batch_size=100)
    measured = {}
    for name, path in (("bundled", DEFAULT_MODEL), ("learned", learned)):
        model = load_model(path).model.eval()
        cache = build_cache(laser_games, model.spec, ids, progress=False)
        windows = WindowDataset(cache, 256, random_phase=False)
        candidates = rollout_starts(windows, settings.starts, settings.warmup + settings.horizon, seed=0)
        with_items = [(g, s) for g, s in candidates
                      if cache.arrays["item_present"][cache.offsets[g] + s + settings.warmup - 1].any()][:40]
        assert len(with_items) >= 10
        slots: dict = {}
        model_rollouts(model, windows, with_items, settings, items=slots)
        assert slots["predicted"]["present"].shape == slots["truth"]["present"].shape == (len(with_items), 10, 8)
        out = item_metrics({name: slots["predicted"]}, slots["truth"], slots["context"], [1, 5, 10])
        measured[name] = {r["horizon"]: r for r in out[name]["by_horizon"]}
        held = {r["horizon"]: r for r in out[PERSISTENCE]["by_horizon"]}
    print({n: {h: (r["presence_f1"], r["position_error"]) for h, r in m.items()} for n, m in measured.items()},
          {h: r["position_error"] for h, r in held.items()})
    bundled = measured["bundled"]
    assert bundled[1]["presence_f1"] > 0.75 and bundled[5]["presence_f1"] > 0.5
    assert bundled[1]["position_error"] < held[1]["position_error"] < measured["learned"][1]["position_error"]
    assert bundled[5]["position_error"] < measured["learned"][5]["position_error"] / 2
