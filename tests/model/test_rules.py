"""The game rules on hand-built states: a KO past a blast zone (one stock, the death sequence, a respawn at the
spawn point at 0 %), percent never falls, the floor is solid, stocks change by one KO at a time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from meleewm.data.encoding import CAT_FIELDS, CONT_FIELDS, CTRL_FIELDS, EncodingSpec
from meleewm.data.step import StepInput
from meleewm.melee import (
    ACTION_IDS,
    DEAD_FRAMES,
    HALO_DESCENT_FRAMES,
    HALO_DESCENT_SPEED,
    HALO_WAIT_MAX_FRAMES,
    RESPAWN_POINTS,
    geometry,
)
from meleewm.melee.actions import STOCK_LOSS_FRAMES
from meleewm.melee.stages import BATTLEFIELD, FINAL_DESTINATION
from meleewm.model.rules import DEAD, DESCENT, LIVE, OUT, RULE_EVENTS, WAIT, GameRules

STANDING, FALLING = ACTION_IDS["STANDING"], ACTION_IDS["FALLING"]


@pytest.fixture(scope="module")
def spec() -> EncodingSpec:
    """An encoding built by hand: non-trivial normalisation, so the rules must undo it exactly."""
    stats = {f: [0.0, 1.0] for f in CONT_FIELDS}
    stats.update({"post_position_x": [0.0, 60.0], "post_position_y": [12.0, 40.0], "post_percent": [35.0, 40.0],
                  "post_velocities_self_y": [-0.3, 1.5]})
    vocabs = {f: [0, 1, 2] for f in CAT_FIELDS}
    vocabs.update({"post_state": list(range(0, 400)), "post_stocks": [0, 1, 2, 3, 4],
                   "post_ground": [0, 1, 2, 3, 4, 5, 65535], "post_character": list(range(33))})
    return EncodingSpec(cont_stats=stats, vocabs=vocabs)


@pytest.fixture(scope="module")
def rules(spec) -> GameRules:
    return GameRules(spec)


def state(spec, stage=BATTLEFIELD, x=(-30.0, 30.0), y=(0.0, 0.0), percent=(10.0, 20.0), stocks=(4, 4),
          action=(STANDING, STANDING), airborne=(0, 0), vy=(0.0, 0.0)) -> StepInput:
    """Inputs of one frame (batch of 1) from raw values of both players, neutral controllers."""
    raw = {"post_position_x": np.array(x, np.float32), "post_position_y": np.array(y, np.float32),
           "post_percent": np.array(percent, np.float32), "post_velocities_self_y": np.array(vy, np.float32),
           "post_stocks": np.array(stocks), "post_state": np.array(action), "post_airborne": np.array(airborne),
           "post_ground": np.array([1, 1]), "post_direction": np.array([1.0, -1.0], np.float32)}
    enc = spec.encode_state_columns(raw)
    stage_index, chars = spec.encode_constants(stage, (20, 2))
    return replace(StepInput.from_encoded(enc, stage_index, chars), ctrl=torch.zeros(1, 2, len(CTRL_FIELDS)))


def raw(spec, inputs) -> dict[str, np.ndarray]:
    return spec.decode_state(inputs.state_cont[0], inputs.state_bin[0], inputs.state_cat[0])


def step(rules, prev, predicted, ctrl=None):
    """One rule application: ``predicted`` (a model's next frame) after ``prev`` (with its rule state)."""
    prev = prev if ctrl is None else replace(prev, ctrl=ctrl)
    out, counts = rules.apply(prev, predicted)
    return (replace(prev, **out.state(), rule_phase=out.rule_phase, rule_age=out.rule_age),
            dict(zip(RULE_EVENTS, counts.sum(0).tolist())))


def start(rules, frame):
    phase, age = rules.initial_state(frame)
    return replace(frame, rule_phase=phase, rule_age=age)


def test_past_the_blast_zone_one_stock_death_sequence_and_respawn(spec, rules):
    g = geometry(BATTLEFIELD)
    prev = start(rules, state(spec, x=(g.blast_right - 3, 0.0), percent=(120.0, 20.0), stocks=(3, 4)))
    # The model carries player 0 past the right blast zone and keeps it alive at 130 %: a KO all the same.
    past = state(spec, x=(g.blast_right + 2, 0.0), percent=(130.0, 20.0), stocks=(3, 4))
    cur, counts = step(rules, prev, past)
    s = raw(spec, cur)
    assert counts["ko_blast_zone"] == 1 and counts["respawn"] == 0
    assert s["post_stocks"].tolist() == [2, 4]                          # exactly one stock, on the first DEAD frame
    assert s["post_state"][0] == ACTION_IDS["DEAD_RIGHT"] and s["post_state"][1] == STANDING
    assert cur.rule_phase.tolist() == [[DEAD, LIVE]]
    assert s["post_position_x"][0] == pytest.approx(g.blast_right + 2, abs=1e-3)
    assert s["post_velocities_self_y"][0] == pytest.approx(0.0, abs=1e-5)
    # However the model goes on, the death sequence runs as real games show it.
    lively = state(spec, x=(0.0, 0.0), percent=(50.0, 20.0), stocks=(3, 4), action=(FALLING, STANDING))
    frames = [s]
    for _ in range(DEAD_FRAMES[ACTION_IDS["DEAD_RIGHT"]] + HALO_DESCENT_FRAMES + 5):
        cur, counts = step(rules, cur, lively)
        frames.append(raw(spec, cur))
    dead = DEAD_FRAMES[ACTION_IDS["DEAD_RIGHT"]]
    for f in frames[:dead]:
        assert f["post_state"][0] == ACTION_IDS["DEAD_RIGHT"] and f["post_stocks"][0] == 2
        assert f["post_position_x"][0] == pytest.approx(g.blast_right + 2, abs=1e-3)
        assert f["post_percent"][0] == pytest.approx(120.0, abs=1e-3)    # percent stays until the respawn
    (rest_x, rest_y), speed = RESPAWN_POINTS[BATTLEFIELD][0], HALO_DESCENT_SPEED[BATTLEFIELD]
    descent = frames[dead:dead + HALO_DESCENT_FRAMES]
    for age, f in enumerate(descent):
        assert f["post_state"][0] == ACTION_IDS["ON_HALO_DESCENT"] and f["post_airborne"][0] == 1
        assert f["post_position_x"][0] == pytest.approx(rest_x, abs=1e-3)
        assert f["post_position_y"][0] == pytest.approx(rest_y + speed * (HALO_DESCENT_FRAMES - 1 - age), abs=1e-3)
        assert f["post_percent"][0] == pytest.approx(0.0, abs=1e-3) and f["post_stocks"][0] == 2
    for f in frames[dead + HALO_DESCENT_FRAMES:]:                       # neutral controllers: waiting on the platform
        assert f["post_state"][0] == ACTION_IDS["ON_HALO_WAIT"]
        assert f["post_position_y"][0] == pytest.approx(rest_y, abs=1e-3)
    assert cur.rule_phase.tolist() == [[WAIT, LIVE]]
    assert all(f["post_state"][1] == STANDING and f["post_stocks"][1] == 4 for f in frames)
    # The first input releases the character to the model.
    pressed = torch.zeros(1, 2, len(CTRL_FIELDS))
    pressed[0, 0, 0] = 1.0
    cur, _ = step(rules, cur, lively, ctrl=pressed)
    assert cur.rule_phase.tolist() == [[LIVE, LIVE]]
    assert raw(spec, cur)["post_state"][0] == FALLING


def test_each_blast_zone_and_port_gives_its_own_death_and_respawn(spec, rules):
    g = geometry(FINAL_DESTINATION)
    for player, (x, y, action) in enumerate([(0.0, g.blast_bottom - 1, "DEAD_DOWN"),
                                             (g.blast_left - 1, 0.0, "DEAD_LEFT")]):
        xs, ys = [0.0, 0.0], [0.0, 0.0]
        xs[player], ys[player] = x, y
        cur = start(rules, state(spec, stage=FINAL_DESTINATION))
        cur, counts = step(rules, cur, state(spec, stage=FINAL_DESTINATION, x=xs, y=ys))
        assert counts["ko_blast_zone"] == 1
        assert raw(spec, cur)["post_state"][player] == ACTION_IDS[action]
        for _ in range(DEAD_FRAMES[ACTION_IDS[action]]):
            cur, _ = step(rules, cur, state(spec, stage=FINAL_DESTINATION))
        s = raw(spec, cur)
        assert s["post_state"][player] == ACTION_IDS["ON_HALO_DESCENT"]
        assert s["post_position_x"][player] == pytest.approx(RESPAWN_POINTS[FINAL_DESTINATION][player][0], abs=1e-3)


def test_a_star_ko_takes_its_stock_late(spec, rules):
    """Past the top blast zone a character is star-KO'd: DEAD_FLY_STAR for its 176 frames, the stock taken on its
    131st (STOCK_LOSS_FRAMES), as on every star KO of the shared games; a history that ends inside one takes the stock
    on that frame too, not again at the next."""
    g = geometry(BATTLEFIELD)
    star = ACTION_IDS["DEAD_FLY_STAR"]
    cur = start(rules, state(spec, stocks=(3, 4)))
    cur, counts = step(rules, cur, state(spec, x=(0.0, 0.0), y=(g.blast_top + 2, 0.0), stocks=(3, 4)))
    assert counts["ko_blast_zone"] == 1 and raw(spec, cur)["post_state"][0] == star
    stocks = [int(raw(spec, cur)["post_stocks"][0])]
    for _ in range(DEAD_FRAMES[star]):
        cur, counts = step(rules, cur, state(spec, stocks=(3, 4)))
        stocks.append(int(raw(spec, cur)["post_stocks"][0]))
    loss = STOCK_LOSS_FRAMES[star]
    assert stocks[:loss] == [3] * loss and stocks[loss:] == [2] * (len(stocks) - loss)
    assert raw(spec, cur)["post_state"][0] == ACTION_IDS["ON_HALO_DESCENT"]      # 176 frames dead, then respawned
    dying = state(spec, action=(star, STANDING), y=(g.blast_top + 2, 0.0), stocks=(3, 4))
    for frames, then in ((loss, [2, 2, 2]), (loss + 5, [3, 3, 3])):   # a history one frame short of it, or past it
        history = replace(dying, **{k: torch.stack([getattr(dying, k)] * frames, dim=1)
                                    for k in ("state_cont", "state_bin", "state_cat")})
        cur = replace(dying, rule_phase=rules.initial_state(history)[0], rule_age=rules.initial_state(history)[1])
        after = []
        for _ in range(3):
            cur, _ = step(rules, cur, dying)
            after.append(int(raw(spec, cur)["post_stocks"][0]))
        assert after == then, (frames, after)


def test_the_wait_on_the_platform_ends_after_its_longest(spec, rules):
    cur = start(rules, state(spec, action=(ACTION_IDS["ON_HALO_WAIT"], STANDING), x=(12.8, 0.0), y=(80.0, 0.0)))
    assert cur.rule_phase.tolist() == [[WAIT, LIVE]]
    still = state(spec, action=(ACTION_IDS["ON_HALO_WAIT"], STANDING), x=(12.8, 0.0), y=(80.0, 0.0))
    for _ in range(HALO_WAIT_MAX_FRAMES - 1):         # the longest wait real games show: 240 frames
        cur, _ = step(rules, cur, still)
    assert cur.rule_phase.tolist() == [[WAIT, LIVE]]
    # Then the character is released; one the model keeps on the platform falls instead (the platform is gone).
    cur, counts = step(rules, cur, still)
    assert cur.rule_phase.tolist() == [[LIVE, LIVE]]
    assert counts["halo_fixed"] == 1 and raw(spec, cur)["post_state"][0] == FALLING


def test_stocks_change_only_by_one_ko_and_never_go_negative(spec, rules):
    cur = start(rules, state(spec, stocks=(4, 1)))
    # The model drops player 0 from 4 to 1 stock with no KO, and player 1 to UNKNOWN: both undone.
    cur, counts = step(rules, cur, state(spec, stocks=(1, 4)))
    assert counts["stocks_fixed"] == 2 and raw(spec, cur)["post_stocks"].tolist() == [4, 1]
    # The last stock: KO'd to 0, then dead for good, never below 0.
    g = geometry(BATTLEFIELD)
    cur, _ = step(rules, cur, state(spec, x=(0.0, g.blast_left - 5), stocks=(4, 1)))
    assert raw(spec, cur)["post_stocks"].tolist() == [4, 0]
    for _ in range(DEAD_FRAMES[ACTION_IDS["DEAD_LEFT"]] + 100):
        cur, counts = step(rules, cur, state(spec, x=(0.0, g.blast_left - 5), stocks=(4, 0)))
        assert counts["ko_blast_zone"] == 0 and raw(spec, cur)["post_stocks"].tolist() == [4, 0]
    assert cur.rule_phase.tolist() == [[LIVE, OUT]] and raw(spec, cur)["post_state"][1] == ACTION_IDS["DEAD_LEFT"]


def test_a_dead_action_from_the_model_is_a_ko(spec, rules):
    cur = start(rules, state(spec))
    cur, counts = step(rules, cur, state(spec, action=(ACTION_IDS["DEAD_DOWN"], STANDING)))
    assert counts["ko_model"] == 1 and raw(spec, cur)["post_stocks"].tolist() == [3, 4]
    assert cur.rule_phase.tolist() == [[DEAD, LIVE]]


def test_percent_never_falls_while_alive(spec, rules):
    cur = start(rules, state(spec, percent=(40.0, 40.0)))
    cur, counts = step(rules, cur, state(spec, percent=(25.0, 52.5)))
    assert counts["percent_fixed"] == 1
    assert raw(spec, cur)["post_percent"] == pytest.approx([40.0, 52.5], abs=1e-3)


def test_the_floor_is_solid(spec, rules):
    # Sinking from the surface into the stage: back on the surface, no downward speed.
    cur = start(rules, state(spec, y=(0.0, -60.0), airborne=(0, 1)))
    cur, counts = step(rules, cur, state(spec, y=(-12.0, -20.0), vy=(-3.0, 2.0), airborne=(0, 1)))
    s = raw(spec, cur)
    assert counts["floor_fixed"] == 2
    assert s["post_position_y"][0] == pytest.approx(0.0, abs=1e-3)
    assert s["post_velocities_self_y"][0] == pytest.approx(0.0, abs=1e-5)
    # Coming up from under the stage into its body: pushed back under it.
    assert s["post_position_y"][1] < -39.9 and s["post_velocities_self_y"][1] == pytest.approx(0.0, abs=1e-5)
    # A few units below the surface (an aerial's dip, as real games show) and past the ledges: left alone.
    cur = start(rules, state(spec))
    cur, counts = step(rules, cur, state(spec, x=(0.0, 80.0), y=(-5.0, -30.0)))
    assert counts["floor_fixed"] == 0
    assert raw(spec, cur)["post_position_y"] == pytest.approx([-5.0, -30.0], abs=1e-3)


def test_quiet_frames_pass_unchanged(spec, rules):
    cur = start(rules, state(spec))
    nxt = state(spec, x=(-29.0, 31.0), percent=(10.0, 21.0))
    out, counts = step(rules, cur, nxt)
    assert sum(counts.values()) == 0
    for key in ("state_cont", "state_bin", "state_cat"):
        assert torch.equal(getattr(out, key), getattr(nxt, key))


def test_initial_state_reads_the_death_sequence_from_history(spec, rules):
    dead = state(spec, action=(ACTION_IDS["DEAD_DOWN"], STANDING))
    live = state(spec)
    history = replace(live, **{k: torch.stack([getattr(live, k)] * 5 + [getattr(dead, k)] * 7, dim=1)
                               for k in ("state_cont", "state_bin", "state_cat")})
    phase, age = rules.initial_state(history)
    assert phase.tolist() == [[DEAD, LIVE]] and age.tolist() == [[6, 0]]
    halo = state(spec, action=(ACTION_IDS["ON_HALO_DESCENT"], STANDING))
    assert rules.initial_state(halo)[0].tolist() == [[DESCENT, LIVE]]
