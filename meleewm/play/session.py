"""The play session: a checkpoint, its recurrent state, and one ``model.step()`` per tick.

Each :meth:`Session.tick` reads both controllers (``meleewm.play.controllers``), encodes them in one place
(``encode_controllers`` → ``spec.encode_ctrl_columns``), calls ``WorldModel.step`` once, turns the prediction into
the next inputs with ``next_inputs`` (argmax, or sampled at ``temperature``), applies the game rules and decodes
the whole state once with
``spec.decode_state`` (``post_state_age`` by ``apply_state_age_rule``). ``model.step``, ``next_inputs`` and the rules
are :func:`meleewm.model.rollout.advance`, the one step function of training rollouts, evaluation and ``dream``.

Starts (the replay and the synthesized state come from ``meleewm.play.starts``):

* **from a real replay** (:meth:`Session.start_replay`, frame id ``F``): the model's chunked forward runs over
  the ``warmup`` real frames before ``F`` (states of frames F−W..F−1, controllers of F−W+1..F) with
  ``return_state=True``, exactly as ``rollout`` does; the session's first state is the model's prediction of
  frame ``F`` and every tick after it runs on the model's own predictions. ``warmup`` defaults to
  :data:`DEFAULT_WARMUP` frames (0 = the whole prefix).
* **synthesized** (:meth:`Session.start_synthetic`): the state of a game start, built from raw columns with
  ``spec.encode_state_columns``: two characters on a legal stage at its player-1/player-2 spawn points, facing
  inward, 4 stocks, 0 %, full shield. ``mode="entry"`` is the state every recorded game starts in on frame −123
  (the entry animation above the spawn point: action 322, airborne, no ground, the values real replays show);
  ``mode="standing"`` puts both on the main stage (action 14 STANDING, grounded on the stage's main ground id).
  The first state is frame −123 either way, so the timer starts at frame 0 as in Melee.

Game rules (``rules=True``, the default): the exact rules of ``meleewm.model.rules`` (a KO past a blast zone
with one stock lost, the death sequence and a respawn at 0 %; percent never falls; stocks change only by a KO;
the floor is solid) act on the model's next inputs inside :func:`meleewm.model.rollout.advance`, the step
rollouts, eval and ``dream`` take too. Every rule action is counted and shown in each state message
(``rules``); ``rules=False`` is the model alone.

Pacing (60 fps, or as fast as possible for scripts) is the caller's business: the web server runs one asyncio
task per session, ``dream`` runs ticks back to back.

Export: :meth:`Session.slp_game` / :meth:`Session.export_slp` write the session as a real Slippi replay with
``meleewm.replay.writer``: a replay start keeps the real frames −123..F−1 as they were recorded (the warm-up
prefix), then the session's frames F.. (post_* from the decoded states, pre_* controller columns from the inputs
used, pre_state/position/direction/percent from the previous frame's post state).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from meleewm.data.encoding import EncodingSpec
from meleewm.data.step import StepInput
from meleewm.melee.characters import character_name
from meleewm.melee.game import FIRST_FRAME, FPS
from meleewm.melee.stages import BATTLEFIELD, LEGAL_STAGES, SPAWN_POINTS, geometry
from meleewm.model.rollout import advance, warm_start
from meleewm.model.rules import RULE_EVENTS, GameRules
from meleewm.model.world import WorldModel
from meleewm.play.controllers import (
    NEUTRAL,
    Controller,
    ControllerState,
    IdleController,
    ReplayController,
    TickView,
    encode_controllers,
)
from meleewm.play.starts import ReplayGame, SessionError, synthetic_inputs
from meleewm.play.view import Divergence, items_view, player_view
from meleewm.replay.writer import SlpGame, SlpPlayer, encode_slp, write_slp

DEFAULT_WARMUP = 256        # real frames a replay start warms up on (the small model's training window)
DEFAULT_TIMER = 480         # seconds (8 minutes), as in recorded local games
MAX_HISTORY = 60 * 60 * FPS  # frames kept for export (one hour); later frames are played but not recorded


def use_play_threads(threads: int = 1) -> None:
    """Batch-1 steps of a small model gain nothing from intra-op threads, and on a busy 2-core machine extra
    threads cost a lot (p50 tick 1.5 ms with 1 thread, 23 ms with 2 under load): play and dream use one."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# -- the session --------------------------------------------------------------------------------------------------

@dataclass
class _History:
    """Per-frame records of a session (the encoded state after the rules, its state_age, the controller input)."""

    spec: EncodingSpec
    capacity: int = 1024
    n: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        s = self.spec
        self._shapes = {"frame": ((), np.int32), "cont": ((2, s.n_cont), np.float32),
                        "binary": ((2, s.n_bin), np.float32), "cat": ((2, s.n_cat), np.int64),
                        "age": ((2,), np.float32), "stick": ((2, 4), np.float32), "trig": ((2, 2), np.float32),
                        "buttons": ((2,), np.int64)}
        if s.items:
            S = s.item_slots
            self._shapes.update({"item_present": ((S,), np.uint8), "item_type": ((S,), np.int64),
                                 "item_owner": ((S,), np.int64), "item_cont": ((S, s.n_item_cont), np.float32)})
        self.arrays = {k: np.zeros((self.capacity, *shape), dt) for k, (shape, dt) in self._shapes.items()}

    def append(self, frame, cont, binary, cat, age, inputs, items: dict[str, np.ndarray] | None = None) -> bool:
        if self.n >= MAX_HISTORY:
            return False
        if self.n == self.capacity:
            self.capacity *= 2
            for k, a in self.arrays.items():
                grown = np.zeros((self.capacity, *a.shape[1:]), a.dtype)
                grown[:self.n] = a[:self.n]
                self.arrays[k] = grown
        a, i = self.arrays, self.n
        a["frame"][i] = frame
        a["cont"][i], a["binary"][i], a["cat"][i], a["age"][i] = cont, binary, cat, age
        for p, s in enumerate(inputs):
            a["stick"][i, p] = (s.stick_x, s.stick_y, s.cstick_x, s.cstick_y)
            a["trig"][i, p] = (s.l, s.r)
            a["buttons"][i, p] = s.buttons
        for k, v in (items or {}).items():
            a[k][i] = v
        self.n += 1
        return True

    def view(self) -> dict[str, np.ndarray]:
        return {k: a[:self.n] for k, a in self.arrays.items()}


_NUMPY_OF = {pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.int8(): np.int8,
             pa.int32(): np.int32, pa.float32(): np.float32}


@dataclass
class _Tick:
    """A tick between its two halves (:meth:`Session._begin_tick`, :meth:`Session._end_tick`)."""

    x: StepInput                                  # the step inputs
    inputs: tuple[ControllerState, ControllerState]
    started: float                                # perf_counter at the start, and once the inputs were encoded
    encoded: float


class Session:
    """One game in progress: the model, its recurrent state, the two controllers and the decoded state.

    ``temperature`` 0 decodes categorical and binary heads by argmax/threshold; above 0 it samples (seeded by
    ``seed``). ``rules`` switches the game rules on (the default) or off. After a start, ``state`` holds the decoded
state of the
    current frame ``frame`` (``{dataset column: [2]}``).
    """

    def __init__(self, model: WorldModel, *, temperature: float = 0.0, seed: int = 0, rules: bool = True,
                 warmup: int | None = None, timer_seconds: int = DEFAULT_TIMER):
        self.model = model.eval()
        self.spec: EncodingSpec = model.spec
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.rules = bool(rules)
        self._rules = GameRules(self.spec)
        self.warmup = DEFAULT_WARMUP if warmup is None else int(warmup)
        self.timer_seconds = int(timer_seconds)
        self.controllers: list[Controller] = [IdleController(), IdleController()]
        self.replay: ReplayGame | None = None
        self.start_info: dict | None = None
        self.frame: int | None = None
        self.state: dict[str, np.ndarray] | None = None
        self.rule_counts = torch.zeros(len(RULE_EVENTS), dtype=torch.long)
        self.real: dict | None = None   # the real game beside the dream in a replay takeover (_compare_real)
        self.last_inputs: tuple[ControllerState, ControllerState] = (NEUTRAL, NEUTRAL)
        self.step_ms = 0.0     # model.step + next_inputs of the last tick
        self.tick_ms = 0.0     # the whole last tick (controllers, step, rules, decode, record)
        self.ticks = 0
        self._generator = torch.Generator().manual_seed(self.seed)
        self._ctrl_cache: tuple = (None, None)

    # -- starting -------------------------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.state is not None

    def set_controller(self, player: int, controller: Controller) -> None:
        if player not in (0, 1):
            raise SessionError(f"player must be 0 or 1, not {player}")
        self.controllers[player] = controller

    def set_temperature(self, temperature: float) -> None:
        if not 0.0 <= float(temperature) <= 5.0:
            raise SessionError("temperature must lie in [0, 5]")
        self.temperature = float(temperature)

    def _reset_common(self, stage: int, chars) -> None:
        self.stage = int(stage)
        self.chars = tuple(int(c) for c in chars)
        self.rule_counts = torch.zeros(len(RULE_EVENTS), dtype=torch.long)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._history = _History(self.spec)
        self._divergence = Divergence()
        self._stage_geometry = geometry(self.stage)
        self.ticks = 0
        for c in self.controllers:
            c.reset()

    def start_synthetic(self, stage: int = BATTLEFIELD, chars=(20, 2), mode: str = "entry") -> None:
        """A new game on ``stage`` (Slippi id) with two characters (select-screen ids), from frame −123."""
        x, _, age = synthetic_inputs(self.spec, stage, chars, mode)
        self._reset_common(stage, chars)
        self.replay = None
        self.ports = (1, 2)
        self.start_info = {"kind": "synthetic", "stage": int(stage), "chars": [int(c) for c in chars], "mode": mode}
        self._cur = x
        self._body = self.model.init_state(1)
        self.frame = FIRST_FRAME
        self.first_frame = FIRST_FRAME
        self._prev_raw = None
        self.state = self.spec.decode_state(x.state_cont[0], x.state_bin[0], x.state_cat[0])
        self.state["post_state_age"] = age
        self.last_inputs = (NEUTRAL, NEUTRAL)
        self._record()
        self._compare_real()

    def start_replay(self, replay: ReplayGame, frame: int, warmup: int | None = None) -> None:
        """Warm up on the real frames before ``frame`` (a frame id of the replay), then take over from it."""
        i = replay.index_of(frame)
        if i < 1:
            raise SessionError(f"frame {frame} is the replay's first frame; a replay start needs at least one real "
                               f"frame before it (frames {replay.first_frame + 1}..{replay.last_frame})")
        W = self.warmup if warmup is None else int(warmup)
        W = i if W <= 0 else min(W, i)
        g = replay.encoded
        s = i - W
        # states of frames s..i-1, and the controllers of the frame each step predicts (s+1..i)
        warm = StepInput.from_encoded({**g.slice(s, i).arrays(), "ctrl": g.ctrl[s + 1:i + 1]}, g.const_stage,
                                      g.const_chars)
        self._reset_common(replay.stage, replay.chars)
        self.replay = replay
        self.ports = replay.ports
        self.start_info = {"kind": "replay", "replay": replay.game_id, "source": replay.source,
                           "frame": int(frame), "warmup": W}
        with torch.inference_mode():
            self._cur, self._body, counts = warm_start(self.model, warm, rules=self._active_rules(),
                                                       temperature=self.temperature, generator=self._generator)
        if counts is not None:
            self.rule_counts += counts.sum(0)
        self.frame = int(frame)
        self.first_frame = int(frame)
        prev = self.spec.decode_state(g.cont[i - 1], g.binary[i - 1], g.cat[i - 1])
        prev["post_state_age"] = np.nan_to_num(np.asarray(g.state_age[i - 1], np.float32), nan=0.0)
        self._prev_raw = prev
        self.state = self._decode(prev)
        self.last_inputs = tuple(replay.controller(p).read(TickView(int(frame), p, prev)) for p in range(2))
        self._record()
        self._compare_real()

    def restart(self) -> None:
        """Start again the way the session last started (same start, same seed)."""
        info = self.start_info
        if info is None:
            raise SessionError("the session has not started")
        if info["kind"] == "synthetic":
            self.start_synthetic(info["stage"], info["chars"], info["mode"])
        else:
            self.start_replay(self.replay, info["frame"], info["warmup"])

    def replay_controller(self, player: int) -> ReplayController:
        if self.replay is None:
            raise SessionError("replay inputs need a session started from a replay")
        return self.replay.controller(player)

    # -- ticking --------------------------------------------------------------------------------------------------

    def read_controllers(self) -> tuple[ControllerState, ControllerState]:
        frame = self.frame + 1
        return tuple(c.read(TickView(frame, p, self.state)) for p, c in enumerate(self.controllers))

    def tick(self, inputs=None) -> dict[str, np.ndarray]:
        """Advance one frame: read both controllers (or use ``inputs``), one ``model.step()``, decode."""
        tick = self._begin_tick(inputs)
        with torch.inference_mode():
            stepped = advance(self.model, tick.x, self._body, rules=self._active_rules(),
                              temperature=self.temperature, generator=self._generator)
        self._end_tick(tick, *stepped)
        return self.state

    def _begin_tick(self, inputs=None) -> _Tick:
        """The step inputs of the next frame: the current state, both controllers (read now unless given) and, when
        the rules were switched on during the session, their initial state."""
        if self.state is None:
            raise SessionError("start the session first")
        started = time.perf_counter()
        inputs = tuple(inputs) if inputs is not None else self.read_controllers()
        if inputs != self._ctrl_cache[0]:   # controllers often hold still: encode only when they change
            self._ctrl_cache = (inputs, torch.from_numpy(encode_controllers(self.spec, inputs)).unsqueeze(0))
        rules = self._active_rules()
        if rules is not None and self._cur.rule_phase is None:   # rules switched on during the session
            with torch.inference_mode():
                phase, age = rules.initial_state(self._cur)
            self._cur = self._cur.replace(rule_phase=phase, rule_age=age)
        x = self._cur.replace(ctrl=self._ctrl_cache[1])
        return _Tick(x, inputs, started, time.perf_counter())

    def _end_tick(self, tick: _Tick, cur: StepInput, body, counts: torch.Tensor | None) -> None:
        """Take the stepped frame: count the rules' actions, decode, record, compare with the real game."""
        stepped = time.perf_counter()
        self._cur, self._body = cur, body
        if counts is not None:
            self.rule_counts += counts.sum(0)
        self.frame += 1
        self.last_inputs = tick.inputs
        self.state = self._decode(self.state)
        self._record()
        self._compare_real()
        self.ticks += 1
        self.step_ms = (stepped - tick.encoded) * 1e3
        self.tick_ms = (time.perf_counter() - tick.started) * 1e3

    def run(self, n: int, realtime: bool = False) -> None:
        """``n`` ticks: back to back (scripts, ``dream``), or paced at 60 fps with ``realtime`` (a late tick is not
        made up with a burst)."""
        period = 1.0 / FPS
        next_time = time.perf_counter()
        for _ in range(int(n)):
            self.tick()
            if realtime:
                next_time += period
                delay = next_time - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:
                    next_time = time.perf_counter()

    def _decode(self, prev: dict) -> dict[str, np.ndarray]:
        cur = self._cur
        return self.spec.decode_state(cur.state_cont[0], cur.state_bin[0], cur.state_cat[0],
                                      prev_state=prev)

    def _active_rules(self) -> GameRules | None:
        return self._rules if self.rules else None

    def rule_counts_dict(self) -> dict[str, int]:
        """How often each rule acted since the start (``meleewm.model.rules.RULE_EVENTS``)."""
        return dict(zip(RULE_EVENTS, (int(c) for c in self.rule_counts.tolist())))

    def _record(self) -> None:
        cur = self._cur
        if "post_state_age" not in self.state:
            self.state["post_state_age"] = np.zeros(2, np.float32)
        items = ({k.removeprefix("state_"): v[0].numpy() for k, v in cur.state().items() if "_item_" in k}
                 if self.spec.items else None)
        self._history.append(self.frame, cur.state_cont[0].numpy(), cur.state_bin[0].numpy(),
                             cur.state_cat[0].numpy(), self.state["post_state_age"], self.last_inputs, items)

    # -- messages -------------------------------------------------------------------------------------------------

    def timer(self) -> float:
        """Seconds left on the game clock (it runs from frame 0)."""
        return max(self.timer_seconds - max(self.frame, 0) / FPS, 0.0)

    def players(self) -> list[dict]:
        """The per-player fields a client draws (from the decoded state of the current frame)."""
        out = []
        for p in range(2):
            view = player_view(self.state, p, self.chars[p], self.ports[p], character_name(self.chars[p]))
            inp = self.last_inputs[p]
            view["input"] = {"stick": [inp.stick_x, inp.stick_y], "cstick": [inp.cstick_x, inp.cstick_y],
                             "l": inp.l, "r": inp.r, "buttons": inp.buttons}
            out.append(view)
        return out

    def items(self) -> list[dict]:
        """The items and projectiles the model predicts this frame (none when the model has no item heads)."""
        cur = self._cur
        if not self.spec.items:
            return []
        return items_view(self.spec.decode_items(cur.state_item_present[0], cur.state_item_type[0],
                                                 cur.state_item_owner[0], cur.state_item_cont[0]))

    def _compare_real(self) -> None:
        """Once per frame, in a replay takeover: the real game at the current frame (its players and items) and the
        dream's divergence from it, kept in ``real``; past the replay's last frame only the final divergence
        (``ended``). None outside takeovers."""
        if self.replay is None:
            self.real = None
            return
        real = self.replay.view_at(self.frame)
        if real is None:
            self.real = {"ended": True, "divergence": self._divergence.summary()}
        else:
            self.real = {"ended": False, **real, "divergence": self._divergence.update(self.players(), real["players"])}

    def message(self, **extra) -> dict:
        """The state message a client receives every tick (JSON-ready)."""
        return {"type": "state", "frame": int(self.frame), "stage": self.stage, "timer": round(self.timer(), 3),
                "players": self.players(), "items": self.items(), "real": self.real,
                "step_ms": round(self.step_ms, 3), "tick_ms": round(self.tick_ms, 3),
                "rules": self.rule_counts_dict(), "rules_on": self.rules,
                "temperature": self.temperature, **extra}

    def message_json(self, **extra) -> str:
        return json.dumps(self.message(**extra), separators=(",", ":"))

    # -- export ---------------------------------------------------------------------------------------------------

    def decoded_history(self) -> dict[str, np.ndarray]:
        """Every recorded frame decoded (``{column: [N, 2]}`` plus ``frame [N]``): the same decode as each tick."""
        h = self._history.view()
        out = self.spec.decode_state(h["cont"], h["binary"], h["cat"])
        out["post_state_age"] = h["age"].copy()
        out["frame"] = h["frame"].copy()
        out["pre_joystick_x"], out["pre_joystick_y"] = h["stick"][..., 0], h["stick"][..., 1]
        out["pre_cstick_x"], out["pre_cstick_y"] = h["stick"][..., 2], h["stick"][..., 3]
        out["pre_triggers_physical_l"], out["pre_triggers_physical_r"] = h["trig"][..., 0], h["trig"][..., 1]
        out["pre_buttons_physical"] = h["buttons"]
        return out

    def frames_table(self) -> pa.Table:
        """The session's frames as dataset rows (``frame``, ``port``, ``follower``, ``pre_*``, ``post_*``)."""
        from meleewm.replay.schema import FRAME_SCHEMA

        d = self.decoded_history()
        N = len(d["frame"])
        if N == 0:
            raise SessionError("nothing to export")
        cols: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        post_names = [k for k in d if k.startswith("post_")]
        for name in post_names:
            cols[name] = np.asarray(d[name])
        for name in ("pre_joystick_x", "pre_joystick_y", "pre_cstick_x", "pre_cstick_y", "pre_triggers_physical_l",
                     "pre_triggers_physical_r", "pre_buttons_physical"):
            cols[name] = np.asarray(d[name])
        cols["pre_triggers"] = np.maximum(cols["pre_triggers_physical_l"], cols["pre_triggers_physical_r"])
        # pre_state / position / direction / percent: the state the frame starts from (the previous post state).
        first = self._prev_raw if self._prev_raw is not None else {k: d[k][0] for k in post_names}
        for pre, post in (("pre_state", "post_state"), ("pre_position_x", "post_position_x"),
                          ("pre_position_y", "post_position_y"), ("pre_direction", "post_direction"),
                          ("pre_percent", "post_percent")):
            start = np.asarray(first[post])[None]
            cols[pre] = np.concatenate([start.astype(d[post].dtype), d[post][:-1]])
        # Categorical UNKNOWN decodes to -1: written as null (the writer's defaults fill it).
        for name, values in cols.items():
            if values.dtype.kind in "iu":
                masks[name] = values < 0
        fields = {f.name: f.type for f in FRAME_SCHEMA}
        arrays = {"frame": pa.array(np.tile(d["frame"], 2), pa.int32()),
                  "port": pa.array(np.repeat(np.asarray(self.ports, np.int64), N), pa.uint8()),
                  "follower": pa.array(np.zeros(2 * N, bool))}
        for name, values in cols.items():
            flat = np.concatenate([values[:, 0], values[:, 1]])   # rows: player 0's frames, then player 1's
            target = fields[name]
            mask = np.concatenate([masks[name][:, 0], masks[name][:, 1]]) if name in masks else None
            dtype = _NUMPY_OF[target]
            if pa.types.is_integer(target):
                info = np.iinfo(dtype)
                flat = np.clip(flat, info.min, info.max)
            arrays[name] = pa.array(flat.astype(dtype), target, mask=mask)
        return pa.table(arrays)

    def items_table(self, first_spawn_id: int = 0) -> pa.Table | None:
        """The items and projectiles the model predicted, as item rows of the dataset's schema (``frame``, ``type``,
        ``owner`` as a port index, position and velocity; the rest is the writer's default), or None when the
        model has no item heads. An item's spawn id is new (from ``first_spawn_id``) when its slot fills or its
        type changes, so a replay viewer sees one projectile per flight."""
        h = self._history.view()
        if "item_present" not in h or len(h["frame"]) == 0:
            return None
        raw = self.spec.decode_items(h["item_present"], h["item_type"], h["item_owner"], h["item_cont"])
        present, kind = raw["present"], raw["type"]
        was_present = np.concatenate([np.zeros_like(present[:1]), present[:-1]])
        was_kind = np.concatenate([kind[:1], kind[:-1]])
        spawned = present & (~was_present | (kind != was_kind))
        spawn = first_spawn_id + np.cumsum(spawned.reshape(-1)).reshape(spawned.shape) - 1
        frame_idx, slot = np.nonzero(present)
        owner_port = np.array([-1, self.ports[0] - 1, self.ports[1] - 1, -1], np.int8)
        return pa.table({"frame": pa.array(h["frame"][frame_idx], pa.int32()),
                         "type": pa.array(np.clip(kind[frame_idx, slot], 0, None), pa.uint16()),
                         "id": pa.array(spawn[frame_idx, slot], pa.uint32()),
                         "owner": pa.array(owner_port[raw["owner"][frame_idx, slot]], pa.int8()),
                         **{f: pa.array(raw[f][frame_idx, slot], pa.float32())
                            for f in ("position_x", "position_y", "velocity_x", "velocity_y")}})

    def slp_game(self) -> SlpGame:
        """The session as an :class:`SlpGame` (a replay start keeps the real frames and items before the start)."""
        table = self.frames_table()
        if self.replay is None:
            players = [SlpPlayer(port=port, character=char) for port, char in zip(self.ports, self.chars)]
            return SlpGame(stage=self.stage, players=players, frames=table, items=self.items_table(),
                           timer_seconds=self.timer_seconds)
        prefix = self.replay.prefix(self.first_frame - 1)
        real = prefix.frames
        if not isinstance(real, pa.Table):
            raise SessionError("replay prefix is not a table")
        keep = [n for n in real.column_names if n != "game_id"]
        real = real.select(keep)
        table = table.cast(pa.schema([real.schema.field(n) if n in real.column_names else table.schema.field(n)
                                      for n in table.column_names]))
        frames = pa.concat_tables([real, table], promote_options="default")
        items = prefix.items
        ours = self.items_table(first_spawn_id=0 if items is None else int(pc.max(items.column("id")).as_py()) + 1)
        if ours is not None and items is not None:
            ours = ours.cast(pa.schema([items.schema.field(n) for n in ours.column_names]))
            items = pa.concat_tables([items.drop_columns(["game_id"]), ours], promote_options="default")
        elif ours is not None:
            items = ours
        return dataclasses.replace(prefix, frames=frames, items=items, end_method="NO_CONTEST", placements=None,
                                   lras_initiator=None)

    def export_slp(self, path: str | Path) -> Path:
        return write_slp(self.slp_game(), path)

    def slp_bytes(self) -> bytes:
        return encode_slp(self.slp_game())

    def describe(self) -> dict:
        return {"start": self.start_info, "frame": self.frame, "stage": getattr(self, "stage", None),
                "chars": list(getattr(self, "chars", ())), "ports": list(getattr(self, "ports", ())),
                "temperature": self.temperature, "rules": self.rules,
                "controllers": [c.describe() for c in self.controllers]}


def _cat_states(states: list):
    """Body states (a tensor, or lists/tuples of them, batch first) joined along the batch."""
    if isinstance(states[0], torch.Tensor):
        return torch.cat(states)
    return type(states[0])(_cat_states(list(parts)) for parts in zip(*states))


def _state_row(state, row: int):
    """One game's body state out of a batch's."""
    if isinstance(state, torch.Tensor):
        return state[row:row + 1]
    return type(state)(_state_row(part, row) for part in state)


def tick_together(sessions: list[Session]) -> list[BaseException | None]:
    """One frame for each of ``sessions``, with one ``model.step()`` for each group that shares a model and its
    rules and decodes greedily: a round of two costs about 1.3 times one session's tick on a CPU
    (``benchmarks/play_latency.py``), so several players at 60 fps fit one model thread. Sampling sessions keep their own generator and tick alone. Returns, per session,
    the error its tick raised (None when it ticked); one session's error leaves the others' ticks alone."""
    errors: list[BaseException | None] = [None] * len(sessions)
    groups: dict[tuple, list[int]] = {}
    for i, session in enumerate(sessions):
        key = (id(session.model), session.rules) if session.temperature <= 0 else ("alone", i)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        ticks = {}
        for i in members:
            try:
                ticks[i] = sessions[i]._begin_tick()
            except Exception as error:  # noqa: BLE001 - reported to that session's players only
                errors[i] = error
        if not ticks:
            continue
        order = list(ticks)
        first = sessions[order[0]]
        x = StepInput.cat([ticks[i].x for i in order])
        body = _cat_states([sessions[i]._body for i in order])
        try:
            with torch.inference_mode():
                cur, body, counts = advance(first.model, x, body, rules=first._active_rules(),
                                            temperature=first.temperature, generator=first._generator)
        except Exception as error:  # noqa: BLE001 - the group's step failed: each of its sessions is told
            for i in order:
                errors[i] = error
            continue
        for row, i in enumerate(order):
            try:
                sessions[i]._end_tick(ticks[i], cur.rows(row, row + 1),
                                      _state_row(body, row),
                                      None if counts is None else counts[row:row + 1])
            except Exception as error:  # noqa: BLE001
                errors[i] = error
    return errors


def stage_geometry_message() -> dict[str, Any]:
    """Geometry of the six legal stages, for clients to draw (Slippi stage id → blast zones, ledges, platforms)."""
    out = {}
    for s in LEGAL_STAGES:
        g = geometry(s)
        out[str(s)] = {"id": s, "name": g.name, "blast": [g.blast_left, g.blast_right, g.blast_top, g.blast_bottom],
                       "ledge_x": g.ledge_x, "main_y": g.main_y, "platforms": [list(p) for p in g.platforms],
                       "spawn": [list(p) for p in SPAWN_POINTS[s]]}
    return out


__all__ = ["DEFAULT_WARMUP", "Session", "stage_geometry_message", "use_play_threads"]
