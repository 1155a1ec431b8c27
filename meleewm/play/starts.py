"""Where a play session starts: a synthesized game start, or a real replay (a ``.slp`` file or a dataset game).

:class:`ReplayGame` is a real 2-player game encoded for the model: its frames to warm up on, its recorded
controllers (``ReplayController``), the real game at each frame for a takeover's side-by-side view, and its
prefix for export. :func:`synthetic_inputs` is ``meleewm.data.starts.synthetic_inputs`` with the session's
errors. Every problem is a :class:`SessionError` whose message says what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meleewm.data import starts
from meleewm.data.encoding import EncodingSpec
from meleewm.errors import MeleewmError
from meleewm.melee.characters import character_name
from meleewm.melee.stages import stage_name
from meleewm.play.controllers import ReplayController
from meleewm.play.view import items_view, player_view
from meleewm.replay.writer import SlpGame, game_from_dataset


class SessionError(MeleewmError, ValueError):
    """A start, replay or model that a session cannot use; the message says why."""


# -- synthesized starts -------------------------------------------------------------------------------------------

def synthetic_inputs(spec, stage: int, chars, mode: str = "entry"):
    """``meleewm.data.starts.synthetic_inputs``, its errors as SessionError."""
    try:
        return starts.synthetic_inputs(spec, stage, chars, mode)
    except starts.StartError as error:
        raise SessionError(str(error)) from None


# -- replays ------------------------------------------------------------------------------------------------------

class _ParsedDataset:
    """One parsed ``.slp`` behind the few Dataset methods encoding and export read."""

    def __init__(self, parsed):
        self._parsed = parsed

    def game(self, game_id: str) -> dict:
        return self._parsed.record

    def frames(self, game_id: str, columns=None) -> pa.Table:
        table = self._parsed.frames
        return table.select(list(columns)) if columns else table

    def items(self, game_id: str, columns=None) -> pa.Table:
        table = self._parsed.items
        return table.select(list(columns)) if columns else table


class ReplayGame:
    """A real 2-player game to start from or to take inputs from: its encoding, raw controller columns, record.

    Open one with :meth:`open` (a ``.slp`` file, or a game id of a dataset).
    """

    def __init__(self, dataset, game_id: str, spec: EncodingSpec, source: str | None = None):
        self.dataset, self.game_id, self.spec = dataset, game_id, spec
        self.source = source or game_id
        self.record = dataset.game(game_id)
        try:
            self.encoded = spec.encode_game(dataset, game_id)
        except ValueError as error:
            raise SessionError(f"replay {self.source}: {error}") from None
        self.frame_ids = np.asarray(self.encoded.frame_ids)
        leaders = dataset.frames(game_id, columns=["port", "follower"])
        leaders = leaders.filter(pc.invert(leaders.column("follower")))
        self.ports = tuple(sorted(set(leaders.column("port").to_pylist())))
        by_port = {p["port"]: p["character"] for p in self.record["players"]}
        self.chars = tuple(int(by_port.get(p, -1)) for p in self.ports)
        self.stage = int(self.record["stage"])
        self.ctrl_columns = spec.decode_ctrl(self.encoded.ctrl)
        self._decoded: dict[str, np.ndarray] | None = None     # view_at's decode of every frame
        self._items: dict[str, np.ndarray] | None = None       # view_at's item rows, sorted by frame

    @classmethod
    def open(cls, source: str | Path, spec: EncodingSpec, data: str | Path | None = None) -> ReplayGame:
        """``source``: a ``.slp`` file, or (with ``data``, a dataset folder) a game id or a unique prefix of one."""
        path = Path(source)
        if path.is_file():
            return cls.from_bytes(path.read_bytes(), path.name, spec)
        if data is None:
            raise SessionError(f"replay {source!r} is not a file; to name a dataset game, also give --data DATASET")
        from meleewm.replay.dataset import Dataset, DatasetError

        try:
            dataset = Dataset(data)
        except DatasetError as error:
            raise SessionError(str(error)) from None
        game_id = resolve_game_id(dataset, str(source))
        return cls(dataset, game_id, spec, source=game_id[:12])

    @classmethod
    def from_bytes(cls, data: bytes, name: str, spec: EncodingSpec) -> ReplayGame:
        """A ``.slp`` file's bytes (``name`` for messages); a bad file raises SessionError saying why."""
        from meleewm.replay.reader import ReplayError, parse_replay

        try:
            parsed = parse_replay(data, name)
        except ReplayError as error:
            raise SessionError(f"{name}: {error}") from None
        return cls(_ParsedDataset(parsed), parsed.record["game_id"], spec, source=name)

    @property
    def first_frame(self) -> int:
        return int(self.frame_ids[0])

    @property
    def last_frame(self) -> int:
        return int(self.frame_ids[-1])

    def index_of(self, frame: int) -> int:
        i = int(np.searchsorted(self.frame_ids, int(frame)))
        if i >= len(self.frame_ids) or int(self.frame_ids[i]) != int(frame):
            raise SessionError(f"frame {frame} is not in replay {self.source} (frames {self.first_frame}.."
                               f"{self.last_frame})")
        return i

    def controller(self, player: int) -> ReplayController:
        """The recorded inputs of player ``player`` (0 = the lower port)."""
        return ReplayController(self.frame_ids, self.ctrl_columns, player)

    def prefix(self, last_frame: int) -> SlpGame:
        """The real game up to ``last_frame`` (inclusive), as an SlpGame (players, stage, frames)."""
        return game_from_dataset(self.dataset, self.game_id, last_frame=last_frame)

    def view_at(self, frame: int) -> dict | None:
        """The real game at ``frame`` as the page draws it (players as :func:`player_view`, items), or None when the
        frame is outside the replay. The whole game is decoded once, on first use."""
        i = int(frame) - self.first_frame
        if not 0 <= i < len(self.frame_ids) or int(self.frame_ids[i]) != int(frame):
            i = int(np.searchsorted(self.frame_ids, int(frame)))
            if i >= len(self.frame_ids) or int(self.frame_ids[i]) != int(frame):
                return None
        if self._decoded is None:
            self._decoded = self.spec.decode_game(self.encoded)
        st = {k: v[i] for k, v in self._decoded.items()}
        players = [player_view(st, p, self.chars[p], self.ports[p], character_name(self.chars[p])) for p in range(2)]
        return {"frame": int(frame), "players": players, "items": items_view(self._items_at(int(frame)))}

    def _items_at(self, frame: int) -> dict[str, np.ndarray] | None:
        if self._items is None:
            columns = ["frame", "type", "owner", "position_x", "position_y", "velocity_x", "velocity_y"]
            try:
                table = self.dataset.items(self.game_id, columns=columns)
            except (KeyError, ValueError):      # a dataset written without items
                table = None
            if table is None or table.num_rows == 0:
                self._items = {}
            else:
                self._items = {c: table.column(c).to_numpy(zero_copy_only=False) for c in columns}
        if not self._items:
            return None
        frames = self._items["frame"]
        lo, hi = np.searchsorted(frames, frame, "left"), np.searchsorted(frames, frame, "right")
        if lo == hi:
            return None
        rows = {c: np.nan_to_num(v[lo:hi].astype(np.float64), nan=-1.0) if c == "owner" else v[lo:hi]
                for c, v in self._items.items()}
        # owner: the port index of the owner; the page wants 1/2 for this game's players, 0 for none, 3 other
        owner = np.array([1 + self.ports.index(int(o) + 1) if int(o) + 1 in self.ports else (0 if o < 0 else 3)
                          for o in rows["owner"]])
        return {"present": np.ones(hi - lo, bool), "type": rows["type"], "owner": owner,
                **{c: rows[c] for c in ("position_x", "position_y", "velocity_x", "velocity_y")}}

    def describe(self) -> dict:
        return {"id": self.game_id, "source": self.source, "stage": self.stage, "stage_name": stage_name(self.stage),
                "chars": list(self.chars), "char_names": [character_name(c) for c in self.chars],
                "ports": list(self.ports), "first_frame": self.first_frame, "last_frame": self.last_frame}


def resolve_game_id(dataset, text: str) -> str:
    ids = sorted(dataset.game_ids())
    if text in ids:
        return text
    matches = [g for g in ids if g.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SessionError(f"no game {text!r} in {getattr(dataset, 'root', 'the dataset')}")
    raise SessionError(f"game id prefix {text!r} matches {len(matches)} games; give more of it")
