"""Metrics, baselines and plausibility on small hand-made sequences whose answers are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from meleewm.eval.baselines import add_baselines, constant_velocity, persistence
from meleewm.eval.metrics import (
    VELOCITY_FIELDS,
    RolloutSet,
    action_accuracy,
    breakdowns,
    change_accuracy,
    cumulative_curves,
    flag_f1,
    ko_timing,
    mae,
    position_mae,
    rollout_metrics,
    step_curves,
    stocks_accuracy,
    summary_metrics,
    velocity_mae,
)
from meleewm.eval.plausibility import check_state, plausibility, seen_actions
from meleewm.eval.run import evaluate

KEYS = (
    "post_position_x",
    "post_position_y",
    "post_state",
    "post_percent",
    "post_shield",
    "post_stocks",
    "post_direction",
    "post_airborne",
    "post_jumps",
    *VELOCITY_FIELDS,
    "post_hitlag",
    "post_misc_as",
    "post_character",
)


def zeros_state(n: int, h: int, p: int) -> dict[str, np.ndarray]:
    s = {k: np.zeros((n, h, p)) for k in KEYS}
    s["post_state"][:] = 14  # STANDING
    s["post_stocks"][:] = 4
    s["post_shield"][:] = 60
    s["post_character"][:] = 1  # Fox (internal id)
    return s


def copy_state(s):
    return {k: v.copy() for k, v in s.items()}


def make_rollouts(truth, context, predictions, stage=32, chars=(3, 3)) -> RolloutSet:
    n = truth["post_position_x"].shape[0]
    return RolloutSet(
        truth=truth,
        context=context,
        predictions=predictions,
        stage=np.full(n, stage),
        characters=np.tile(np.array(chars), (n, 1)),
        game_ids=[f"g{i}" for i in range(n)],
        start_frames=np.arange(n) * 100,
    )


# ---------------------------------------------------------------------------------------------------------------
# Rollout metrics


@pytest.fixture
def hand_case():
    """N=1, H=3, P=2 with known errors (see the comments)."""
    truth = zeros_state(1, 3, 2)
    truth["post_state"][0, :, :] = np.array([14, 14, 20])[:, None]
    pred = copy_state(truth)
    # Player 0 position offsets per step: (3,4) -> 5, (0,1) -> 1, (6,8) -> 10. Player 1 exact.
    pred["post_position_x"][0, :, 0] = [3, 0, 6]
    pred["post_position_y"][0, :, 0] = [4, 1, 8]
    # Actions: player 0 [14, 20, 20] (right, wrong, right); player 1 [14, 14, 14] (right, right, wrong).
    pred["post_state"][0, :, 0] = [14, 20, 20]
    pred["post_state"][0, :, 1] = [14, 14, 14]
    # Percent: player 1 is 2% off at step 3.
    pred["post_percent"][0, 2, 1] = 2.0
    # Velocity: player 0's self_y is 5 off at step 2 (one of 5 fields).
    pred["post_velocities_self_y"][0, 1, 0] = 5.0
    # Stocks: player 0 predicted 3 at step 3.
    pred["post_stocks"][0, 2, 0] = 3
    return truth, pred


def test_rollout_metrics_by_hand(hand_case):
    truth, pred = hand_case
    recs = rollout_metrics(pred, truth, horizons=(1, 2, 3, 5, 600))
    assert [r["horizon"] for r in recs] == [1, 2, 3]  # horizons past H are dropped
    r1, r2, r3 = recs
    assert r1["position_error"] == pytest.approx(2.5)
    assert r1["position_error_per_player"] == pytest.approx([5.0, 0.0])
    assert r2["position_error"] == pytest.approx(0.5)
    assert r3["position_error"] == pytest.approx(5.0)
    assert [r["action_accuracy"] for r in recs] == pytest.approx([1.0, 0.5, 0.5])
    assert r2["action_accuracy_per_player"] == pytest.approx([0.0, 1.0])
    assert r3["action_accuracy_per_player"] == pytest.approx([1.0, 0.0])
    assert [r["percent_error"] for r in recs] == pytest.approx([0.0, 0.0, 1.0])
    assert r3["percent_error_per_player"] == pytest.approx([0.0, 2.0])
    # 5 off in one of 5 velocity fields, averaged with a perfect player: 5 / (5 * 2).
    assert [r["velocity_error"] for r in recs] == pytest.approx([0.0, 0.5, 0.0])
    assert r2["velocity_error_per_player"] == pytest.approx([1.0, 0.0])
    assert [r["stocks_accuracy"] for r in recs] == pytest.approx([1.0, 1.0, 0.5])


def test_summary_by_hand(hand_case):
    truth, pred = hand_case
    recs = summary_metrics(pred, truth, ks=(2, 3, 20))
    assert [r["k"] for r in recs] == [2, 3]
    k2, k3 = recs
    assert k2["position_error"] == pytest.approx((5 + 0 + 1 + 0) / 4)
    assert k3["position_error"] == pytest.approx(16 / 6)
    assert k3["position_error_per_player"] == pytest.approx([16 / 3, 0.0])
    assert k3["action_accuracy"] == pytest.approx(4 / 6)
    assert k3["percent_error"] == pytest.approx(2 / 6)
    # Curves agree with the records.
    assert cumulative_curves(pred, truth)["position_error"] == pytest.approx([2.5, 1.5, 16 / 6])
    assert step_curves(pred, truth)["action_accuracy"] == pytest.approx([1.0, 0.5, 0.5])


def test_missing_fields_and_nan():
    truth = zeros_state(1, 2, 1)
    truth["post_percent"][0, 0, 0] = np.nan  # a null in the dataset: skipped
    pred = {k: truth[k].copy() for k in ("post_position_x", "post_position_y", "post_state", "post_percent")}
    pred["post_percent"][0, 1, 0] = 3.0
    r = rollout_metrics(pred, truth, (1, 2))
    assert r[0]["percent_error"] is None  # only entry is a null
    assert r[1]["percent_error"] == pytest.approx(3.0)
    assert r[0]["velocity_error"] is None and r[0]["stocks_accuracy"] is None  # not predicted
    pred["post_position_x"][0, 1, 0] = np.nan  # a broken prediction makes the metric undefined
    assert rollout_metrics(pred, truth, (2,))[0]["position_error"] is None


# ---------------------------------------------------------------------------------------------------------------
# Teacher-forced helpers


def test_change_accuracy_by_hand():
    true = np.array([1, 1, 2, 2, 3])
    pred = np.array([1, 1, 1, 2, 3])
    # Changes at index 2 (1->2, predicted 1: wrong) and 4 (2->3, right).
    assert change_accuracy(pred, true, axis=0) == pytest.approx(0.5)
    # With the previous true action 0, index 0 is a change too (0->1, right).
    assert change_accuracy(pred, true, axis=0, prev_true=np.array(0)) == pytest.approx(2 / 3)
    assert change_accuracy(np.zeros(4), np.ones(4), axis=0) is None
    # [B, T, P] on the time axis 1: batch 0 player 0 changes at t=1 (right); batch 1 player 1 at t=2 (wrong).
    t = np.zeros((2, 3, 2), int)
    t[0, 1:, 0] = 5
    t[1, 2:, 1] = 7
    p = t.copy()
    p[1, 2, 1] = 0
    assert change_accuracy(p, t, axis=1) == pytest.approx(0.5)


def test_array_helpers_by_hand():
    assert action_accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == pytest.approx(0.5)
    assert position_mae(np.array([3.0, 0.0]), np.array([4.0, 0.0]), np.zeros(2), np.zeros(2)) == pytest.approx(2.5)
    assert mae(np.array([1.0, 5.0, 9.0]), np.array([2.0, 2.0, np.nan])) == pytest.approx(2.0)
    assert mae(np.array([1.0]), np.array([2.0]), mask=np.array([False])) is None
    assert stocks_accuracy(np.array([4.0, 2.9, 1.0]), np.array([4, 3, 2])) == pytest.approx(2 / 3)
    p = {k: np.zeros(2) for k in VELOCITY_FIELDS}
    t = {k: np.zeros(2) for k in VELOCITY_FIELDS}
    p["post_velocities_knockback_x"][:] = [1.0, 3.0]
    assert velocity_mae(p, t) == pytest.approx(4 / 10)


def test_flag_f1_by_hand():
    pred = np.array([[1, 0, 1], [1, 0, 1], [0, 0, 1]])
    true = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    out = flag_f1(pred, true)
    # Flag 0: tp 1, fp 1, fn 1 -> 0.5. Flag 1: never true, never predicted -> None. Flag 2: perfect -> 1.
    assert out["per_flag"][0] == pytest.approx(0.5)
    assert out["per_flag"][1] is None
    assert out["per_flag"][2] == pytest.approx(1.0)
    assert out["macro"] == pytest.approx(0.75)
    assert out["micro"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))


# ---------------------------------------------------------------------------------------------------------------
# Baselines


def test_persistence_is_exact_on_a_static_sequence():
    context = {k: v[:, 0] for k, v in zeros_state(3, 1, 2).items()}
    context["post_position_x"][:] = [[10.0, -20.0]] * 3
    context["post_percent"][:] = 37.0
    truth = persistence(context, 7)
    pred = persistence(context, 7)
    assert pred["post_position_x"].shape == (3, 7, 2)
    for r in rollout_metrics(pred, truth, (1, 5, 7)):
        assert r["position_error"] == 0.0 and r["percent_error"] == 0.0 and r["velocity_error"] == 0.0
        assert r["action_accuracy"] == 1.0 and r["stocks_accuracy"] == 1.0


def _constant_velocity_case(h: int = 10):
    """Player 0 airborne, player 1 grounded, each moving at a constant velocity; the unused speed is a decoy."""
    ctx = {k: v[:, 0] for k, v in zeros_state(1, 1, 2).items()}
    ctx["post_position_x"][0] = [5.0, -30.0]
    ctx["post_position_y"][0] = [40.0, 0.0]
    ctx["post_airborne"][0] = [1, 0]
    ctx["post_velocities_self_x_air"][0] = [1.5, 77.0]  # 77: ignored, player 1 is grounded
    ctx["post_velocities_self_x_ground"][0] = [99.0, -2.0]  # 99: ignored, player 0 is airborne
    ctx["post_velocities_knockback_x"][0] = [0.5, 0.25]
    ctx["post_velocities_self_y"][0] = [-1.0, 0.0]
    ctx["post_velocities_knockback_y"][0] = [0.25, 0.0]
    vx, vy = np.array([2.0, -1.75]), np.array([-0.75, 0.0])
    truth = persistence(ctx, h)
    t = np.arange(1, h + 1)[None, :, None]
    truth["post_position_x"] = ctx["post_position_x"][:, None] + t * vx
    truth["post_position_y"] = ctx["post_position_y"][:, None] + t * vy
    return ctx, truth


def test_constant_velocity_is_exact_on_a_constant_velocity_sequence():
    ctx, truth = _constant_velocity_case()
    pred = constant_velocity(ctx, 10)
    np.testing.assert_allclose(pred["post_position_x"], truth["post_position_x"], atol=1e-12)
    np.testing.assert_allclose(pred["post_position_y"], truth["post_position_y"], atol=1e-12)
    for r in rollout_metrics(pred, truth, (1, 5, 10)):
        assert r["position_error"] == pytest.approx(0.0, abs=1e-12)
        assert r["action_accuracy"] == 1.0
    # ... and persistence is not: at step 10 player 0 is off by 10 * |(2, -0.75)|, player 1 by 17.5.
    r10 = rollout_metrics(persistence(ctx, 10), truth, (10,))[0]
    assert r10["position_error_per_player"] == pytest.approx([10 * np.hypot(2.0, 0.75), 17.5])


def test_add_baselines_and_evaluate_are_jsonable():
    ctx, truth = _constant_velocity_case(25)
    rs = make_rollouts(truth, ctx, {"model": persistence(ctx, 25)})
    add_baselines(rs)
    assert set(rs.predictions) == {"model", "persistence", "constant_velocity"}
    m = evaluate(rs, allowed_actions=seen_actions(truth["post_character"], truth["post_state"]))
    json.dumps(m, allow_nan=False)  # plain JSON, no NaN
    assert set(m) == {"config", "rollout", "summary", "ko_timing", "breakdowns", "plausibility"}
    assert m["config"]["horizons"] == [1, 5, 10, 20]
    assert [r["k"] for r in m["summary"]["model"]] == [5, 10, 20]
    cv = {r["horizon"]: r for r in m["rollout"]["constant_velocity"]}
    assert cv[20]["position_error"] == pytest.approx(0.0, abs=1e-9)
    assert "truth" in m["plausibility"]


def test_rolloutset_validate():
    truth = zeros_state(2, 3, 2)
    ctx = {k: v[:, 0] for k, v in truth.items()}
    rs = make_rollouts(truth, ctx, {"model": {"post_position_x": np.zeros((2, 4, 2))}})
    with pytest.raises(ValueError, match="predictions\\[model\\]"):
        rs.validate()


# ---------------------------------------------------------------------------------------------------------------
# KO timing


def test_ko_timing_by_hand():
    truth = zeros_state(1, 60, 2)
    truth["post_stocks"][0, 9:, 0] = 3  # player 0 loses a stock at step 10 (index 9)
    ctx = {k: v[:, 0] for k, v in zeros_state(1, 1, 2).items()}  # 4 stocks before step 1

    late = copy_state(truth)
    late["post_stocks"][0, :, 0] = 4
    late["post_stocks"][0, 13:, 0] = 3  # 4 frames late
    r = ko_timing(late, truth, ctx, window=30)
    assert (r["true_losses"], r["detected"], r["detection_rate"]) == (1, 1, 1.0)
    assert r["mean_offset"] == 4.0 and r["mean_abs_offset"] == 4.0 and r["false_alarms"] == 0

    far = copy_state(truth)
    far["post_stocks"][0, :, 0] = 4
    far["post_stocks"][0, 49:, 0] = 3  # 40 frames late: outside the window
    r = ko_timing(far, truth, ctx, window=30)
    assert (r["detected"], r["detection_rate"], r["mean_abs_offset"], r["false_alarms"]) == (0, 0.0, None, 1)

    wrong_player = copy_state(truth)
    wrong_player["post_stocks"][0, :, 0] = 4
    wrong_player["post_stocks"][0, 9:, 1] = 3
    r = ko_timing(wrong_player, truth, ctx)
    assert r["detected"] == 0 and r["false_alarms"] == 1

    r = ko_timing(persistence(ctx, 60), truth, ctx)
    assert (r["true_losses"], r["detected"], r["predicted_losses"]) == (1, 0, 0)

    # A loss right at step 1 is seen against the context.
    early = zeros_state(1, 5, 2)
    early["post_stocks"][0, :, 1] = 3
    assert ko_timing(early, early, ctx)["true_losses"] == 1
    assert ko_timing(early, early, None)["true_losses"] == 0
    assert ko_timing(truth, truth, ctx)["detection_rate"] == 1.0
    assert ko_timing(zeros_state(1, 5, 2), zeros_state(1, 5, 2), ctx)["detection_rate"] is None


# ---------------------------------------------------------------------------------------------------------------
# Breakdowns


def test_breakdowns_by_hand():
    truth = zeros_state(2, 4, 2)
    truth["post_state"][0] = 20  # DASHING everywhere in start 0
    truth["post_state"][1, :, 0] = 341  # character-specific, player 0 of start 1 (internal 1 = Fox)
    pred = copy_state(truth)
    pred["post_state"][0, :2] = 14  # half of the DASHING frames wrong
    pred["post_position_x"][1, :, 1] += 3.0  # STANDING frames of start 1 player 1: error 3
    rs = make_rollouts(truth, {k: v[:, 0] for k, v in truth.items()}, {"model": pred}, chars=(3, 20))
    rs.stage[:] = [31, 32]
    b = breakdowns(pred, rs, steps=20, min_count=1)
    assert b["steps"] == 4
    rows = {(r["action"], r["character"]): r for r in b["action"]["all"]}
    assert set(rows) == {(20, None), (14, None), (341, 1)}
    assert rows[(20, None)]["count"] == 8 and rows[(20, None)]["frequency"] == pytest.approx(0.5)
    assert rows[(20, None)]["action_accuracy"] == pytest.approx(0.5)
    assert rows[(20, None)]["name"] == "DASHING"
    assert rows[(14, None)]["position_error"] == pytest.approx(3.0)
    assert rows[(341, 1)]["name"] == "BLASTER_START (Fox)"
    assert b["action"]["most_frequent"][0]["action"] == 20
    assert b["action"]["worst"][0]["action"] == 20
    chars = {r["id"]: r for r in b["character"]}
    assert chars[3]["count"] == 8 and chars[3]["action_accuracy"] == pytest.approx(0.75)
    assert chars[20]["position_error"] == pytest.approx(1.5)
    stages = {r["name"]: r for r in b["stage"]}
    assert stages["Battlefield"]["action_accuracy"] == pytest.approx(0.5)
    assert stages["Final Destination"]["action_accuracy"] == 1.0
    assert [r["id"] for r in b["player"]] == [0, 1]


# ---------------------------------------------------------------------------------------------------------------
# Plausibility


def test_plausibility_by_hand():
    ctx = {k: v[:, 0] for k, v in zeros_state(1, 1, 2).items()}
    ctx["post_percent"][0] = [50.0, 0.0]
    s = zeros_state(1, 4, 2)  # FD: blast zones x in (-246, 246), y in (-140, 188)
    s["post_percent"][0, :, 0] = [50.0, 40.0, 30.0, 30.0]
    s["post_percent"][0, 0, 1] = 12.0  # a hit: 0 -> 12, and back to 0 on DEAD_DOWN (not checked)
    s["post_state"][0, :, 0] = [14, 14, 12, 14]  # step 3 is ON_HALO_DESCENT: the drop to 30 is fine
    # Blast zones: step 1 out while standing (counted); step 2 out while DEAD_DOWN (not counted).
    s["post_position_x"][0, 0:2, 1] = -300.0
    s["post_state"][0, 1, 1] = 0
    s["post_position_y"][0, 3, 1] = 200.0  # above the top, alive: counted
    s["post_stocks"][0, 3, 1] = 5  # 4 -> 5
    s["post_shield"][0, 2, 1] = np.nan
    s["post_hitlag"][0, 2, 1] = np.inf  # same entry as the NaN: one entry
    s["post_state"][0, 3, 0] = 342  # unseen special for Fox
    s["post_state"][0, 2, 1] = 20  # unseen common id
    s["post_state"][0, 0, 1] = 341  # seen special
    allowed = frozenset({(1, 14), (1, 0), (1, 12), (1, 341), (2, 342)})
    r = check_state(s, np.array([32]), ctx, allowed_actions=allowed)
    assert r["nonfinite"] == {"count": 1, "checked": 8, "rate": 1 / 8}
    assert r["outside_blast_zone"]["count"] == 2 and r["outside_blast_zone"]["checked"] == 7
    assert r["percent_decrease"]["count"] == 1
    # Not checked: player 0 steps 3-4 (touch ON_HALO_DESCENT), player 1 steps 2-3 (touch DEAD_DOWN).
    assert r["percent_decrease"]["checked"] == 4
    assert r["percent_increase"] == {"count": 1, "checked": 4, "rate": 1 / 4}
    assert r["stocks_increase"]["count"] == 1 and r["stocks_increase"]["checked"] == 8
    assert r["impossible_action"]["count"] == 2 and r["impossible_action"]["checked"] == 8
    assert check_state(s, np.array([32]), ctx)["impossible_action"]["count"] is None
    # An unknown stage is not checked for blast zones.
    assert check_state(s, np.array([5]), ctx)["outside_blast_zone"] == {"count": 0, "checked": 0, "rate": None}

    truth = zeros_state(1, 4, 2)
    truth["post_percent"][0, :, 0] = 50.0
    rs = make_rollouts(truth, ctx, {"model": s})
    out = plausibility(rs, allowed)
    assert set(out) == {"truth", "model"}
    assert out["model"]["stocks_increase"]["count"] == 1
    assert all(v["count"] == 0 for v in out["truth"].values())


def test_standing_past_the_stage_edge_by_hand():
    """``standing_past_edge``: grounded farther out than the main stage's edge counts; in the air, at the edge, dead
    or on Yoshi's Story (whose side platforms reach past its ledge) it does not."""
    from meleewm.melee import ground_edge

    edge = ground_edge(32)
    s = zeros_state(1, 5, 2)   # Final Destination
    s["post_position_x"][0, :, 0] = [edge - 1, edge, edge + 1, -edge - 1, edge + 1]
    s["post_airborne"][0, 4, 0] = 1.0                       # past it, in the air
    s["post_position_x"][0, :, 1] = edge + 5
    s["post_state"][0, :, 1] = 0                            # DEAD_DOWN: not checked
    r = check_state(s, np.array([32]))["standing_past_edge"]
    assert (r["count"], r["checked"]) == (2, 4)
    assert check_state(s, np.array([8]))["standing_past_edge"] == {"count": 0, "checked": 0, "rate": None}


def test_standing_on_nothing_by_hand():
    """``standing_on_nothing``: grounded where the stage has no surface counts (over Final Destination 15 units up,
    under it); on the stage, on Battlefield's platform, on Fountain of Dreams' side platform wherever it has moved, in
    the air, on a ledge or dead it does not."""
    s = zeros_state(1, 5, 2)
    s["post_position_x"][0, :, 0] = [0.0, 0.0, 0.0, 30.0, 0.0]
    s["post_position_y"][0, :, 0] = [0.0, 15.0, -20.0, 27.2, 15.0]
    s["post_airborne"][0, 4, 0] = 1.0                        # 15 units up, in the air
    s["post_position_x"][0, :, 1] = 35.0
    s["post_position_y"][0, :, 1] = 10.0
    s["post_state"][0, :, 1] = [253, 0, 253, 0, 14]          # EDGE_HANGING, DEAD_DOWN: not checked; then STANDING
    final_destination, battlefield, fountain = (check_state(s, np.array([stage]))["standing_on_nothing"]
                                                for stage in (32, 31, 2))
    assert (final_destination["count"], final_destination["checked"]) == (4, 5)   # 15 up, under; 27.2 and (35, 10)
    assert (battlefield["count"], battlefield["checked"]) == (3, 5)              # the platform holds (30, 27.2)
    assert (fountain["count"], fountain["checked"]) == (2, 5)                    # ... and its side one (35, 10)



def test_ground_action_in_air_and_move_past_limit_by_hand():
    """``ground_action_in_air``: a dash in the air counts, a dash on the ground or a fall in the air does not.
    ``move_past_limit``: Falco's jab held 30 frames from the rollout's start counts its frames past the limit; his
    standing (held) never counts."""
    from meleewm.melee.moves import moves

    s = zeros_state(1, 4, 2)
    s["post_state"][0, :, 0] = [20, 20, 29, 14]               # DASHING, DASHING, FALLING, STANDING
    s["post_airborne"][0, :, 0] = [1, 0, 1, 0]
    result = check_state(s, np.array([32]))["ground_action_in_air"]
    assert (result["count"], result["checked"]) == (1, 8)

    jab = moves()[22][44].limit
    s = zeros_state(1, 30, 2)
    s["post_state"][0, :, 0] = 44                              # NEUTRAL_ATTACK_1 on every frame
    s["post_state"][0, :, 1] = 14                              # STANDING
    s["post_character"][:] = 22                                # Falco (internal id)
    result = check_state(s, np.array([32]))["move_past_limit"]
    assert (result["count"], result["checked"]) == (30 - 1 - jab, 60)


def test_seen_actions():
    chars = [np.array([[1, 1], [2, np.nan]]), np.array([7])]
    acts = [np.array([[14, 341], [14, 20]]), np.array([350])]
    assert seen_actions(chars, acts) == frozenset({(1, 14), (1, 341), (2, 14), (7, 350)})
    assert seen_actions(np.array([1, 1]), np.array([3, 3])) == frozenset({(1, 3)})
