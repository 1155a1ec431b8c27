"""``meleewm dream``: roll the model forward from a real moment and save it as a Slippi replay.

It is a play session (``meleewm.play.session.Session``: the same warm-up, ``model.step()`` and decode) whose two
controllers replay the game's recorded inputs, ticked as fast as the machine goes. The ``.slp`` holds the real
frames −123..F−1 (the warm-up prefix, as recorded) followed by ``frames`` frames of the model: its prediction of
frame F from the warm-up, then ``frames − 1`` ticks. So it has ``(F − first frame) + frames`` frames, and Slippi's
replay viewer shows the real game up to F and the model's dream after it. Past the end of the real game the
recorded inputs run out and both controllers go neutral.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from meleewm.model.checkpoint import load_model, resolve_model
from meleewm.play.session import Session, use_play_threads
from meleewm.play.starts import ReplayGame, SessionError


@dataclass
class DreamResult:
    path: Path
    replay: str
    start_frame: int
    model_frames: int
    prefix_frames: int
    warmup: int
    elapsed: float
    rule_counts: dict

    @property
    def total_frames(self) -> int:
        return self.prefix_frames + self.model_frames


def dream_session(model, replay: ReplayGame, frame: int, frames: int, *, temperature: float = 0.0, seed: int = 0,
                  warmup: int | None = None, rules: bool = True) -> Session:
    """A session started at ``frame`` of ``replay`` with both ports on the recorded inputs, run to ``frames``
    model frames (the start frame included)."""
    if frames < 1:
        raise SessionError("--frames must be at least 1")
    session = Session(model, temperature=temperature, seed=seed, rules=rules, warmup=warmup)
    session.set_controller(0, replay.controller(0))
    session.set_controller(1, replay.controller(1))
    session.start_replay(replay, frame)
    session.run(frames - 1)
    return session


def dream(model_path: str | Path | None, replay: str | Path, frame: int, frames: int, export: str | Path, *,
          data: str | Path | None = None, temperature: float = 0.0, seed: int = 0, warmup: int | None = None,
          rules: bool = True) -> DreamResult:
    """Load the model (default: the bundled one), open the replay (a ``.slp`` or, with ``data``, a dataset game
    id), dream ``frames`` frames from ``frame`` and write ``export``."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    use_play_threads()
    try:
        model = load_model(resolve_model(model_path)).model
        game = ReplayGame.open(replay, model.spec, data=data)
        session = dream_session(model, game, frame, frames, temperature=temperature, seed=seed, warmup=warmup,
                                rules=rules)
        path = session.export_slp(export)
    finally:
        torch.set_num_threads(threads)
    return DreamResult(path=Path(path), replay=game.source, start_frame=int(frame), model_frames=int(frames),
                       prefix_frames=int(frame) - game.first_frame, warmup=session.start_info["warmup"],
                       elapsed=time.perf_counter() - started, rule_counts=session.rule_counts_dict())
