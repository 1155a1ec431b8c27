"""What a player does first, through the play session and the bundled model: run off the stage, fall, jump back with
an up special, jab. Each is checked against the game: nobody stands on air, a fall falls, a move ends."""

from __future__ import annotations

import numpy as np

from meleewm.melee.actions import ACTION_IDS, GROUND_ACTIONS, LEDGE_STATES, SPECIAL_ACTION_IDS
from meleewm.melee.moves import moves
from meleewm.melee.stages import FINAL_DESTINATION, ground_edge
from meleewm.play.controllers import NEUTRAL, ControllerState
from meleewm.play.session import Session

FOX, FALCO = 2, 20          # select-screen ids
FOX_INTERNAL = 1


def play(model, script: list[tuple[int, ControllerState]]) -> dict[str, np.ndarray]:
    """Fox (port 1) against an idle Falco on Final Destination, standing; ``script`` is (frames, Fox's controller)
    in turn. Returns Fox's decoded states, one per frame."""
    session = Session(model, rules=True)
    session.start_synthetic(FINAL_DESTINATION, (FOX, FALCO), mode="standing")
    frames = []
    for count, controller in script:
        for _ in range(count):
            state = session.tick((controller, NEUTRAL))
            frames.append({k: v[0] for k, v in state.items()})
    return {k: np.array([f[k] for f in frames]) for k in frames[0]}


def test_fox_runs_off_the_stage_falls_and_flies_back(bundled):
    """Fox holds right until he is off Final Destination: past its edge he is in the air, in no action of the ground,
    and falls, faster every frame, until he jumps. Jumping back and holding B with the stick up and back, Fire Fox
    flies him toward the stage and ends within its limit, and he is back on the stage or its ledge, alive."""
    right, back = ControllerState(stick_x=1.0), ControllerState(stick_x=-1.0)
    fire = moves()[FOX_INTERNAL][SPECIAL_ACTION_IDS[FOX_INTERNAL]["FIRE_AIR"]].limit
    fox = play(bundled, [(64, right), (8, back), (2, ControllerState.from_buttons(["X"], stick_x=-1.0)), (8, back),
                         (2, ControllerState.from_buttons(["B"], stick_x=-0.7, stick_y=0.7)),
                         (70, ControllerState(stick_x=-0.7, stick_y=0.7)), (100, NEUTRAL)])
    x, y, action = fox["post_position_x"], fox["post_position_y"], fox["post_state"].astype(int)
    airborne = fox["post_airborne"] > 0
    edge = ground_edge(FINAL_DESTINATION)
    past = (np.abs(x) > edge) & ~np.isin(action, list(LEDGE_STATES))
    assert past.sum() >= 20, "he left the stage"
    assert airborne[past].all()
    assert not np.isin(action[past], list(GROUND_ACTIONS)).any()
    left = int(np.argmax(past))
    jump = left + int(np.argmax(np.isin(action[left:], [ACTION_IDS["JUMPING_ARIAL_FORWARD"],
                                                         ACTION_IDS["JUMPING_ARIAL_BACKWARD"]])))
    assert jump - left >= 8
    fall_speed = np.diff(y[left:jump])
    assert (fall_speed < 0).all() and (np.diff(fall_speed[:-1]) <= 1e-4).all(), fall_speed   # faster, or at the top
    flying = action == SPECIAL_ACTION_IDS[FOX_INTERNAL]["FIRE_AIR"]
    assert 10 <= flying.sum() <= fire + 1
    assert abs(x[-1]) <= edge + 10 and fox["post_stocks"][-1] == 4 and y[-1] > -10


def test_a_jab_ends(bundled):
    """A tapped: Fox jabs once, for no longer than the game's jab, and stands again."""
    jab = ACTION_IDS["NEUTRAL_ATTACK_1"]
    fox = play(bundled, [(10, NEUTRAL), (3, ControllerState.from_buttons(["A"])), (60, NEUTRAL)])
    action = fox["post_state"].astype(int)
    jabbing = np.flatnonzero(action == jab)
    assert len(jabbing) and np.all(np.diff(jabbing) == 1)
    assert len(jabbing) <= moves()[FOX_INTERNAL][jab].limit + 1
    assert action[-1] == ACTION_IDS["STANDING"]


def test_a_tapped_shine_ends(bundled):
    """Down and B tapped: Fox's shine starts, loops no longer than the games' longest loop, ends, and he stands."""
    shine = SPECIAL_ACTION_IDS[FOX_INTERNAL]
    fox = play(bundled, [(10, NEUTRAL), (3, ControllerState.from_buttons(["B"], stick_y=-1.0)), (90, NEUTRAL)])
    action = fox["post_state"].astype(int)
    assert (action == shine["SHINE_START"]).any() and (action == shine["SHINE_END"]).any()
    assert (action == shine["SHINE_LOOP"]).sum() <= moves()[FOX_INTERNAL][shine["SHINE_LOOP"]].limit + 1
    assert action[-1] == ACTION_IDS["STANDING"]
