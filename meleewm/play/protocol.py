"""The play protocol: the messages of ``WS /ws`` (one WebSocket per client; JSON text messages, each an object with
a ``type``), the pydantic models of what a client may send, and the limits checked before a message is parsed.

Client → server (``port`` is 0 or 1: the lower or the higher port of the game):

=================================================  ===================================================================
``{"type": "new", "start": S, "controllers": [C, C], "temperature": t, "rules": b}``  create a session and join it
``{"type": "join", "session": id, "port": p}``     join a session; ``port`` 0/1 takes that port (keyboard), null watches
``{"type": "start", "start": S}``                  restart the session from another start state
``{"type": "input", "port": p, "state": K}``       this client's controller state for a port it holds
``{"type": "controller", "port": p, "kind": k}``   k: keyboard, gamepad (this client's), idle, random, approach, replay
``{"type": "pause"}`` / ``{"type": "resume"}``     pause or resume the 60 fps loop
``{"type": "step", "frames": n}``                  advance n frames (1..600) while paused
``{"type": "reset"}``                              start again from the same start state
``{"type": "swap"}``                               swap the two ports' controllers (and the clients holding them)
``{"type": "temperature", "value": t}``            0 = argmax; > 0 samples categorical heads at t
``{"type": "rules", "on": b}``                     game rules on/off (counted in every state message)
``{"type": "ping"}``                               answered by ``{"type": "pong"}``
=================================================  ===================================================================

S is ``{"kind": "synthetic", "stage": 31, "chars": [20, 2], "mode": "entry"|"standing"}`` or
``{"kind": "replay", "replay": ID, "frame": F}`` (ID from ``/api/info``'s replays). K is a controller state
(``ControllerState.from_message``). C is ``{"kind": k}``.

Server → client: ``hello`` (what ``/api/info`` returns, and this client's id), ``session`` (the session's
description and the ports this client holds; sent on every change), ``state`` (every tick: frame, timer, per
player x, y, action id and name, pose, percent, stocks, facing, shield, hitlag, hitstun, airborne, ...; items;
in a replay takeover ``real``: the real game's players and items at that frame and the divergence; fps, step and
tick latency in ms, rule counts; see ``Session.message``), ``error`` (``message``; the connection stays open)
and ``pong``.

:func:`parse_message` turns one WebSocket text message into one of the models below, or raises
:class:`ProtocolError` with a one-line reason the client gets as an ``error`` reply. The checks, cheapest first:

* at most :data:`MAX_MESSAGE_BYTES` characters;
* at most :data:`MAX_CONTAINERS` JSON objects and arrays (counted as ``{`` and ``[`` characters, at C speed,
  before parsing): this bounds the nesting depth, so deeply nested JSON is refused without recursing into it;
* valid JSON, an object, a known ``type``;
* the fields of that type: exact types (no ``"3"`` for 3, no ``true`` for 1), ranges, no unknown fields.

A controller ``state`` is checked by :meth:`ControllerState.from_message`, start stages, characters and frames by
the session, the one place each of those rules lives.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from meleewm.errors import MeleewmError
from meleewm.play.controllers import BOT_KINDS

MAX_MESSAGE_BYTES = 16 * 1024      # longer messages get an error reply (uvicorn closes above WS_MAX_SIZE)
MAX_CONTAINERS = 32                # objects and arrays in one message; the largest valid message ("new") has 7
MAX_STEP_FRAMES = 600              # frames one "step" message may ask for
MAX_ID_LENGTH = 128                # session and replay ids (replay ids are 64 hex digits)
BROWSER_KINDS = ("keyboard", "gamepad")
CONTROLLER_KINDS = BROWSER_KINDS + BOT_KINDS + ("replay",)

Port = Annotated[int, Field(ge=0, le=1)]   # a strict int: true is not port 1
ControllerKind = Literal[CONTROLLER_KINDS]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class ProtocolError(MeleewmError, ValueError):
    """A message the server will not act on; the text is the client's error reply."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class SyntheticStart(_Strict):
    kind: Literal["synthetic"]
    stage: int = 31
    chars: Annotated[list[int], Field(min_length=2, max_length=2)] = [20, 2]
    mode: Literal["entry", "standing"] = "standing"


class ReplayStart(_Strict):
    kind: Literal["replay"]
    replay: Identifier
    frame: int | None = None          # default: the replay's first frame + 1


Start = Annotated[Union[SyntheticStart, ReplayStart], Field(discriminator="kind")]
START = TypeAdapter(Start)            # the server's default start is checked with it too


class ControllerChoice(_Strict):
    kind: ControllerKind


class New(_Strict):
    type: Literal["new"]
    start: Start | None = None        # default: the server's default start
    controllers: Annotated[list[ControllerChoice], Field(min_length=2, max_length=2)] = [
        ControllerChoice(kind="keyboard"), ControllerChoice(kind="approach")]
    temperature: Annotated[float, Field(ge=0.0, le=5.0, allow_inf_nan=False)] | None = None
    rules: bool | None = None


class Join(_Strict):
    type: Literal["join"]
    session: Identifier
    port: Port | None = 1             # None watches
    kind: ControllerKind = "keyboard"


class Restart(_Strict):
    type: Literal["start"]
    start: Start


class Input(_Strict):
    type: Literal["input"]
    port: Port
    state: dict[str, Any]             # checked by ControllerState.from_message


class SetController(_Strict):
    type: Literal["controller"]
    port: Port
    kind: ControllerKind


class Step(_Strict):
    type: Literal["step"]
    frames: Annotated[int, Field(ge=1, le=MAX_STEP_FRAMES)] = 1


class Temperature(_Strict):
    type: Literal["temperature"]
    value: Annotated[float, Field(ge=0.0, le=5.0, allow_inf_nan=False)]


class Rules(_Strict):
    type: Literal["rules"]
    on: bool


class Ping(_Strict):
    type: Literal["ping"]
    t: float | Annotated[str, Field(max_length=64)] | None = None   # echoed in the pong


class Pause(_Strict):
    type: Literal["pause"]


class Resume(_Strict):
    type: Literal["resume"]


class Reset(_Strict):
    type: Literal["reset"]


class Swap(_Strict):
    type: Literal["swap"]


MESSAGES: dict[str, type[_Strict]] = {
    model.model_fields["type"].annotation.__args__[0]: model
    for model in (New, Join, Restart, Input, SetController, Pause, Resume, Step, Reset, Swap, Temperature, Rules,
                  Ping)
}


def parse_message(text: str) -> _Strict:
    """The message ``text`` holds, validated; :class:`ProtocolError` says why not."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message too large ({len(text)} characters; the limit is {MAX_MESSAGE_BYTES})")
    containers = text.count("{") + text.count("[")
    if containers > MAX_CONTAINERS:
        raise ProtocolError(f"message too deeply nested or too complex ({containers} objects and arrays; "
                            f"the limit is {MAX_CONTAINERS})")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ProtocolError(f"malformed JSON: {error}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object with a 'type'")
    kind = data.get("type")
    model = MESSAGES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ProtocolError(f"unknown message type {kind!r}; the types are {', '.join(MESSAGES)}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:3])
        raise ProtocolError(f"bad {kind!r} message: {problems}") from None


__all__ = [
    "BROWSER_KINDS", "CONTROLLER_KINDS", "MAX_CONTAINERS", "MAX_MESSAGE_BYTES", "MAX_STEP_FRAMES", "MESSAGES",
    "START", "ControllerChoice", "Input", "Join", "New", "Pause", "Ping", "ProtocolError", "ReplayStart", "Rules",
    "Reset", "Restart", "Resume", "SetController", "Step", "Swap", "SyntheticStart", "Temperature", "parse_message",
]
