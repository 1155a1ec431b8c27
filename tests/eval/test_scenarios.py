"""The player-facing measures: the idle test on the bundled model, event matching and action timing helpers."""

from __future__ import annotations

import numpy as np
import pytest

from meleewm.eval.plausibility import check_state
from meleewm.eval.scenarios import _duration_in, family_of, idle_inputs, idle_test, match_events
from meleewm.melee import ACTION_IDS, LEGAL_STAGES
from meleewm.melee.stages import BATTLEFIELD
from meleewm.model.rollout import rollout
from meleewm.model.rules import GameRules

IDLE_FRAMES = 1800


def test_idle_test_on_the_bundled_model(bundled):
    """30 s of neutral controllers, Falco and Fox standing on Battlefield (where the issue saw Falco slide past the
    blast zone). The model alone stands still, as in Melee: under 2 units of displacement, percent unchanged, the
    idle action on at least 99% of frames (the bundled model learned it; the old one slid 470+ units). With the
    rules as well: nobody alive past a blast zone, percent never falls, stocks change only by one KO at a time,
    nobody inside the floor. Then the measure itself, short, on two stages."""
    rules = GameRules(bundled.spec)
    warm, starts = idle_inputs(bundled, [BATTLEFIELD], [(20, 2)])
    ctrl = warm.ctrl.expand(-1, IDLE_FRAMES - 1, -1, -1)
    stage = np.array([s for s, _, _ in starts])
    context = {k: np.stack([v[k] for _, _, v in starts]) for k in ("post_percent", "post_stocks", "post_state")}
    for name, r in (("model", None), ("model_with_rules", rules)):
        out = rollout(bundled, warm, ctrl, rules=r)
        state = bundled.spec.decode_state(out["state_cont"], out["state_bin"], out["state_cat"])
        assert state["post_position_x"].shape == (1, IDLE_FRAMES, 2)
        checks = check_state(state, stage, context)
        print(name, {k: v["rate"] for k, v in checks.items()})
        x0 = np.stack([v["post_position_x"] for _, _, v in starts])[:, None]
        y0 = np.stack([v["post_position_y"] for _, _, v in starts])[:, None]
        displacement = np.hypot(state["post_position_x"] - x0, state["post_position_y"] - y0).max()
        assert displacement < 2.0, displacement
        assert (state["post_percent"] == np.stack([v["post_percent"] for _, _, v in starts])[:, None]).all()
        assert np.isin(state["post_state"], [ACTION_IDS["STANDING"]]).mean() >= 0.99
        if r is not None:
            for check in ("outside_blast_zone", "percent_decrease", "stocks_increase", "stocks_not_one_ko",
                          "inside_stage_body", "standing_past_edge"):
                assert checks[check]["count"] == 0, (check, checks[check])
            assert (state["post_stocks"] >= 0).all()
    report = idle_test(bundled, [("model", None), ("model_with_rules", rules)], frames=30,
                       stages=LEGAL_STAGES[:2], pairs=[(9, 19)])
    print(report["model"], report["model_with_rules"])
    assert report["real"] == {"max_displacement": 0.0, "percent_change": 0.0, "idle_share": 1.0, "stocks_lost": 0}
    for name in ("model", "model_with_rules"):
        r = report[name]
        assert np.isfinite(r["max_displacement"]) and 0.0 <= r["idle_share"] <= 1.0
        assert [row["stage"] for row in r["by_stage"]] == ["Fountain of Dreams", "Pokémon Stadium"]


def test_match_events_counts_hits_misses_and_false_alarms():
    true = np.zeros((3, 20, 2), bool)
    true[:, 10, 0] = True                      # every start: player 0's real event at step 10
    pred = np.zeros_like(true)
    pred[0, 13, 0] = True                      # hit, 3 late
    pred[1, 10, 1] = True                      # the wrong player: a miss, and a false alarm
    pred[2, 2, 0] = True                       # far from any real event: a miss and a false alarm
    pred[2, 18, 0] = True                      # a second false alarm
    r = match_events(true, pred, 10, np.zeros(3, int), tolerance=5)
    assert (r["hits"], r["misses"], r["false_alarms"]) == (1, 2, 3)
    assert r["detection_rate"] == pytest.approx(1 / 3) and r["mean_offset"] == 3.0
    assert match_events(true, true, 10, np.zeros(3, int), 5)["false_alarms"] == 0


def test_rolled_out_duration_and_families():
    a = np.array([1, 1, 1, 7, 7, 7, 7, 2, 2])
    assert _duration_in(a, 7, lead=2, tolerance=2) == 4          # begins 1 frame late, lasts 4
    assert _duration_in(a, 9, lead=2, tolerance=2) is None        # never begins: not reproduced
    assert _duration_in(np.array([7] * 6), 7, lead=2, tolerance=1) == 5   # already under way: counted from the window
    assert family_of(ACTION_IDS["NEUTRAL_ATTACK_1"]) == "jab" and family_of(ACTION_IDS["SHIELD"]) == "shield"
    assert family_of(ACTION_IDS["DASHING"]) == "dash/run" and family_of(ACTION_IDS["KNEE_BEND"]) == "jump/landing"
    assert family_of(ACTION_IDS["GRAB"]) == "grab" and family_of(350) == "specials"
    assert family_of(ACTION_IDS["STANDING"]) is None
