"""Controllers for live play and ``dream``: one interface, one place that turns controller state into model input.

Every controller answers :meth:`Controller.read` with a :class:`ControllerState` (sticks in −1..1, analog triggers
in 0..1, digital buttons as a ``pre_buttons_physical`` bitmask) for the frame the session is about to compute.
:func:`encode_controllers` turns the two ports' states into the model's ``ctrl [2, n_ctrl]`` through
``EncodingSpec.encode_ctrl_columns`` — the same encoding the dataset's recorded inputs went through.

Kinds:

* ``browser``  — the state a web page last sent (its keyboard or a gamepad, read in the browser); see below.
* ``replay``   — a real replay's recorded inputs for one port (``ReplayController``); neutral past its end.
* ``idle``     — neutral stick, nothing pressed.
* ``random``   — random stick directions and buttons, each held for a few frames (seeded).
* ``approach`` — walks or dashes toward the opponent and attacks (A, sometimes a smash) when close; jumps when
                 the opponent is well above it.

Keyboard (read by ``static/input.js``; ``KeyboardEvent.code``, so the physical keys whatever the layout):

==========================  =====================  ==========================
GameCube                    layout "wasd" (P1)     layout "arrows" (P2)
==========================  =====================  ==========================
control stick               W A S D                ↑ ← ↓ →
tilt (stick at 50 %)        Left Shift             Right Shift
A                           F                      J
B                           G                      K
X (jump)                    T                      L
Y (jump)                    Y                      U
Z (grab)                    E                      O
L (full press: shield)      R                      I
R (full press: shield)      Q                      P
START                       1                      0
C-stick                     —                      Numpad 8 4 2 6
==========================  =====================  ==========================

Gamepad (browser Gamepad API, "standard" mapping; Xbox and PlayStation pads): left stick → control stick, right
stick → C-stick (y axes flipped: up is +1 in Melee), LT/L2 and RT/R2 (analog) → L and R triggers (digital L/R
at > 0.9), bottom face button (Xbox A / PS ✕) → A, left (X / □) → B, right (B / ○) → X, top (Y / △) → Y,
RB/R1 → Z, Start/Options → START, D-pad → D-pad. Stick dead zone 0.15 (radial), clamped to the unit circle. The
page's mapping screen rebinds any control to any pad button or stick direction (saved in the browser).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from meleewm.data.encoding import EncodingSpec
from meleewm.errors import MeleewmError
from meleewm.melee.buttons import DIGITAL_BUTTONS, PhysicalButton

BUTTON_NAMES: tuple[str, ...] = DIGITAL_BUTTONS  # A B X Y Z L R START D_UP D_DOWN D_LEFT D_RIGHT
_ALL_BUTTONS = 0
for _name in BUTTON_NAMES:
    _ALL_BUTTONS |= int(PhysicalButton[_name].value)


class ControllerError(MeleewmError, ValueError):
    """A controller state or controller choice that cannot be used."""


@dataclass(frozen=True)
class ControllerState:
    """One port's controller on one frame, in the units of the dataset's pre-frame columns."""

    stick_x: float = 0.0      # pre_joystick_x, −1..1
    stick_y: float = 0.0      # pre_joystick_y, −1..1 (up is +1)
    cstick_x: float = 0.0     # pre_cstick_x
    cstick_y: float = 0.0     # pre_cstick_y
    l: float = 0.0            # pre_triggers_physical_l, 0..1
    r: float = 0.0            # pre_triggers_physical_r, 0..1
    buttons: int = 0          # pre_buttons_physical bitmask (meleewm.melee.buttons.PhysicalButton)

    @classmethod
    def from_buttons(cls, names: Sequence[str] = (), **axes) -> ControllerState:
        mask = 0
        for name in names:
            mask |= int(PhysicalButton[name].value)
        return cls(buttons=mask, **axes)

    @property
    def pressed(self) -> list[str]:
        return [n for n in BUTTON_NAMES if self.buttons & int(PhysicalButton[n].value)]

    @classmethod
    def from_message(cls, data: Any) -> ControllerState:
        """Validate a controller state sent by a client: ``{"stick": [x, y], "cstick": [x, y], "l": 0..1,
        "r": 0..1, "buttons": ["A", ...]}`` (every key optional). Raises :class:`ControllerError`."""
        if not isinstance(data, Mapping):
            raise ControllerError("controller state must be an object")
        unknown = set(data) - {"stick", "cstick", "l", "r", "buttons"}
        if unknown:
            raise ControllerError(f"unknown controller state keys: {sorted(unknown)}")

        def pair(key):
            value = data.get(key, (0.0, 0.0))
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ControllerError(f"{key} must be [x, y]")
            return tuple(_number(v, key, -1.0, 1.0) for v in value)

        sx, sy = pair("stick")
        cx, cy = pair("cstick")
        buttons = data.get("buttons", [])
        if not isinstance(buttons, (list, tuple)) or len(buttons) > len(BUTTON_NAMES):
            raise ControllerError("buttons must be a list of button names")
        mask = 0
        for name in buttons:
            if name not in BUTTON_NAMES:
                raise ControllerError(f"unknown button {name!r}; buttons are {', '.join(BUTTON_NAMES)}")
            mask |= int(PhysicalButton[name].value)
        return cls(sx, sy, cx, cy, _number(data.get("l", 0.0), "l", 0.0, 1.0),
                   _number(data.get("r", 0.0), "r", 0.0, 1.0), mask)

    def to_message(self) -> dict:
        return {"stick": [self.stick_x, self.stick_y], "cstick": [self.cstick_x, self.cstick_y], "l": self.l,
                "r": self.r, "buttons": self.pressed}


NEUTRAL = ControllerState()


def _number(value, key: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ControllerError(f"{key} must be a finite number")
    return float(min(max(value, lo), hi))


def encode_controllers(spec: EncodingSpec, states: Sequence[ControllerState]) -> np.ndarray:
    """The model's ``ctrl [2, n_ctrl]`` (float32) for the two ports: the one place controller state is encoded."""
    s0, s1 = states
    values = {
        "pre_joystick_x": np.array((s0.stick_x, s1.stick_x), np.float32),
        "pre_joystick_y": np.array((s0.stick_y, s1.stick_y), np.float32),
        "pre_cstick_x": np.array((s0.cstick_x, s1.cstick_x), np.float32),
        "pre_cstick_y": np.array((s0.cstick_y, s1.cstick_y), np.float32),
        "pre_triggers_physical_l": np.array((s0.l, s1.l), np.float32),
        "pre_triggers_physical_r": np.array((s0.r, s1.r), np.float32),
        "pre_buttons_physical": np.array((s0.buttons, s1.buttons), np.int64),
    }
    return spec.encode_ctrl_columns(values)


def controller_columns(states: Sequence[ControllerState]) -> dict[str, np.ndarray]:
    """Raw pre-frame controller columns ``{column: [2]}`` (for ``.slp`` export)."""
    return {
        "pre_joystick_x": np.array([s.stick_x for s in states], np.float32),
        "pre_joystick_y": np.array([s.stick_y for s in states], np.float32),
        "pre_cstick_x": np.array([s.cstick_x for s in states], np.float32),
        "pre_cstick_y": np.array([s.cstick_y for s in states], np.float32),
        "pre_triggers_physical_l": np.array([s.l for s in states], np.float32),
        "pre_triggers_physical_r": np.array([s.r for s in states], np.float32),
        "pre_buttons_physical": np.array([s.buttons for s in states], np.int64),
    }


@dataclass
class TickView:
    """What a controller may look at: the frame being computed, its port index (0 or 1) and the decoded state of
    the frame before (``{column: [2]}``: post_position_x/y, post_direction, post_state, post_airborne, ...)."""

    frame: int
    player: int
    state: Mapping[str, np.ndarray]


class Controller:
    """Base class. ``read`` is called once per tick for the frame about to be computed."""

    kind = "base"

    def read(self, view: TickView) -> ControllerState:
        raise NotImplementedError

    def reset(self) -> None:
        """Called when the session (re)starts."""

    def describe(self) -> dict:
        return {"kind": self.kind}


class IdleController(Controller):
    kind = "idle"

    def read(self, view: TickView) -> ControllerState:
        return NEUTRAL


class BrowserController(Controller):
    """The controller state a client last sent (keyboard or gamepad, read in its browser)."""

    kind = "browser"

    def __init__(self, source: str = "keyboard", client: str | None = None):
        self.source, self.client = source, client
        self.state = NEUTRAL

    def update(self, state: ControllerState) -> None:
        self.state = state

    def read(self, view: TickView) -> ControllerState:
        return self.state

    def reset(self) -> None:
        self.state = NEUTRAL

    def describe(self) -> dict:
        return {"kind": self.kind, "source": self.source, "client": self.client}


class ReplayController(Controller):
    """A replay's recorded inputs for one player (0 = lower port). ``columns``: raw controller columns
    ``{column: [F, 2]}`` (``spec.decode_ctrl`` of the encoded game), ``frame_ids [F]``. Neutral outside the replay."""

    kind = "replay"

    def __init__(self, frame_ids: np.ndarray, columns: Mapping[str, np.ndarray], player: int):
        self.frame_ids = np.asarray(frame_ids)
        self.first = int(self.frame_ids[0])
        self.player = int(player)
        p = self.player
        self._axes = np.stack([np.asarray(columns[c][:, p], np.float32) for c in (
            "pre_joystick_x", "pre_joystick_y", "pre_cstick_x", "pre_cstick_y", "pre_triggers_physical_l",
            "pre_triggers_physical_r")], axis=1).tolist()        # python floats of the float32 values
        self._buttons = np.asarray(columns["pre_buttons_physical"][:, p], np.int64).tolist()
        contiguous = np.array_equal(self.frame_ids, np.arange(self.first, self.first + len(self.frame_ids)))
        self._index = None if contiguous else {int(f): i for i, f in enumerate(self.frame_ids)}

    def read(self, view: TickView) -> ControllerState:
        if self._index is None:
            i = int(view.frame) - self.first
            if not 0 <= i < len(self._buttons):
                return NEUTRAL
        else:
            i = self._index.get(int(view.frame), -1)
            if i < 0:
                return NEUTRAL
        return ControllerState(*self._axes[i], self._buttons[i])

    def describe(self) -> dict:
        return {"kind": self.kind, "player": self.player}


class RandomController(Controller):
    """Random inputs: a stick direction and maybe a button, held for ``hold`` frames (deterministic in ``seed``)."""

    kind = "random"
    _CHOICES = ("A", "B", "X", "Z", "L", None, None, None)

    def __init__(self, seed: int = 0, hold: int = 8):
        self.seed, self.hold = int(seed), max(1, int(hold))
        self.reset()

    def reset(self) -> None:
        self._rng = random.Random(self.seed)
        self._left = 0
        self._state = NEUTRAL

    def read(self, view: TickView) -> ControllerState:
        if self._left <= 0:
            rng = self._rng
            angle = rng.uniform(0, 2 * math.pi)
            mag = rng.choice((0.0, 0.5, 1.0))
            button = rng.choice(self._CHOICES)
            l = 1.0 if button == "L" else 0.0
            self._state = ControllerState.from_buttons(
                [button] if button else [], stick_x=round(mag * math.cos(angle), 4),
                stick_y=round(mag * math.sin(angle), 4), l=l)
            self._left = self.hold
        self._left -= 1
        return self._state

    def describe(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "hold": self.hold}


class ApproachController(Controller):
    """A simple bot: moves toward the opponent, attacks when close, jumps when the opponent is well above it."""

    kind = "approach"

    def __init__(self, reach: float = 18.0, seed: int = 0):
        self.reach, self.seed = float(reach), int(seed)
        self.reset()

    def reset(self) -> None:
        self._rng = random.Random(self.seed)
        self._cooldown = 0

    def read(self, view: TickView) -> ControllerState:
        me, other = view.player, 1 - view.player
        s = view.state
        dx = float(s["post_position_x"][other] - s["post_position_x"][me])
        dy = float(s["post_position_y"][other] - s["post_position_y"][me])
        facing = float(s["post_direction"][me])
        if self._cooldown > 0:  # release buttons between presses so every attack is a fresh press
            self._cooldown -= 1
            return ControllerState(stick_x=0.0)
        if abs(dx) < self.reach and abs(dy) < 20:
            self._cooldown = 10
            if dx * facing < 0:  # turn around first
                return ControllerState(stick_x=math.copysign(0.5, dx))
            if self._rng.random() < 0.25:  # a smash attack through the C-stick
                return ControllerState(cstick_x=math.copysign(1.0, dx))
            return ControllerState.from_buttons(["A"])
        if dy > 30 and abs(dx) < 40 and self._rng.random() < 0.1:
            self._cooldown = 15
            return ControllerState.from_buttons(["X"], stick_x=math.copysign(0.5, dx))
        return ControllerState(stick_x=math.copysign(1.0, dx) if abs(dx) > 2 else 0.0)

    def describe(self) -> dict:
        return {"kind": self.kind, "reach": self.reach}


BOT_KINDS = ("idle", "random", "approach")


def make_bot(kind: str, seed: int = 0) -> Controller:
    if kind == "idle":
        return IdleController()
    if kind == "random":
        return RandomController(seed=seed)
    if kind == "approach":
        return ApproachController(seed=seed)
    raise ControllerError(f"unknown bot {kind!r}; bots are {', '.join(BOT_KINDS)}")


__all__ = [
    "ApproachController", "BOT_KINDS", "BUTTON_NAMES", "BrowserController", "Controller", "ControllerError",
    "ControllerState", "IdleController", "NEUTRAL", "RandomController", "ReplayController", "TickView",
    "controller_columns", "encode_controllers", "make_bot",
]
