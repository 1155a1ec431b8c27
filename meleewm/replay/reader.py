"""One replay's bytes → a game record plus frames, items and stage-event tables (see ``schema``).

peppi-py does the parsing. Its Python dataclasses drop items and raw-only fields, so the raw Arrow struct
(``peppi_py._peppi.read_slippi``) is read and flattened generically: whatever peppi exposes is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from peppi_py import _peppi

from meleewm.errors import MeleewmError
from meleewm.melee import FPS, LEGAL_STAGES
from meleewm.replay.schema import (
    FRAME_FIELDS,
    FRAME_SCHEMA,
    ITEM_SCHEMA,
    PLAYER_FIELD_NAMES,
    STAGE_EVENT_SCHEMA,
)
from meleewm.replay.sources import source_fields

PEPPI_VERSION = importlib_metadata.version("peppi-py")
SLIPPI_MAGIC = b"{U\x03raw[$U#l"
MIN_LENGTH_FRAMES = 30 * 60  # a game shorter than 30 s of play is a handwarmer or a quit-out
PORT_NUMBERS = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}
# Scene majors of single-player modes; a Slippi game of these is no versus game (minor 2 is "in game").
NON_VERSUS_SCENES = {3: "Classic (1P mode)", 4: "Adventure (1P mode)", 5: "All-Star (1P mode)",
                     10: "Camera mode", 28: "Training mode"}


class ReplayError(MeleewmError):
    """A replay that cannot be ingested: ``reason`` is a short category, ``detail`` the underlying error."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ParsedGame:
    record: dict          # one row of the games index (see dataset.GAME_SCHEMA)
    frames: pa.Table      # FRAME_SCHEMA, sorted by (port, follower, frame); every player block has every frame
    items: pa.Table       # ITEM_SCHEMA, sorted by (frame, slot)
    stage_events: pa.Table  # STAGE_EVENT_SCHEMA


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _quiet_stderr():
    """Rust panics print a backtrace to fd 2; the error itself reaches us as an exception, so mute the noise."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _ReplayMemfd:
    """One anonymous in-memory file (memfd, Linux) per process, rewritten for each replay: its pages stay
    allocated between replays, so a write costs half what it costs into a fresh memfd (0.05 s instead of 0.12 s for
    games-1's 188 MB). It holds the last replay's bytes until the next, and vanishes with the process: even a killed
    worker leaves nothing behind. A lock keeps threads from rewriting it under a read."""

    def __init__(self):
        self._start_afresh()
        os.register_at_fork(after_in_child=self._start_afresh)

    def _start_afresh(self) -> None:
        """Also a forked child's first step: its own file, never its parent's, and a lock no thread holds."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
        self._lock = threading.Lock()
        self._fd: int | None = None

    def read_slippi(self, data: bytes, skip_frames: bool):
        with self._lock:
            if self._fd is None:
                self._fd = os.memfd_create("meleewm-replay", os.MFD_CLOEXEC)
            os.ftruncate(self._fd, len(data))
            with memoryview(data) as view:
                written = 0
                while written < len(view):
                    written += os.pwrite(self._fd, view[written:], written)
            with _quiet_stderr():
                return _peppi.read_slippi(f"/proc/self/fd/{self._fd}", skip_frames)


_memfd = _ReplayMemfd()


def _read_raw(data: bytes, skip_frames: bool):
    """peppi-py reads from a path only. Hand it an anonymous in-memory file (memfd, Linux); elsewhere, a private
    temporary file."""
    if hasattr(os, "memfd_create"):
        return _memfd.read_slippi(data, skip_frames)
    with tempfile.NamedTemporaryFile(suffix=".slp") as tmp, _quiet_stderr():
        tmp.write(data)
        tmp.flush()
        return _peppi.read_slippi(tmp.name, skip_frames)


# peppi's messages may quote the bytes it read ("expected: [123, ...], got: [84, ...]"): never log file contents.
_QUOTED_BYTES = re.compile(r"\[\s*\d+(?:\s*,\s*\d+)*\s*\]")


def _classify(data: bytes, error: BaseException) -> ReplayError:
    message = _QUOTED_BYTES.sub("[...]", f"{type(error).__name__}: {error}".splitlines()[0])[:500]
    if type(error).__name__ == "PanicException":
        try:
            version = _read_raw(data, skip_frames=True).start["slippi"]["version"]
        except BaseException as header_error:  # noqa: BLE001 - peppi panics are BaseExceptions
            if isinstance(header_error, (KeyboardInterrupt, SystemExit)):
                raise
            version = None
        if version and version[0] == 3 and version[1] <= 6:
            return ReplayError("unsupported Slippi version (peppi-py cannot read 3.0-3.6 frames)",
                               f"v{'.'.join(map(str, version))}: {message}")
        return ReplayError("parser panic", message)
    text = str(error)
    if "failed to fill whole buffer" in text or "Cannot skip to game end" in text or "in-progress" in text:
        return ReplayError("truncated or incomplete file", message)
    if "game end method" in text or "placement" in text:
        return ReplayError("unsupported game mode", message)
    return ReplayError("corrupt replay", message)


def _flatten(array: pa.Array, prefix: str) -> dict[str, pa.Array]:
    """Struct arrays → flat columns named by their path; a parent's nulls propagate to its children."""
    if not pa.types.is_struct(array.type):
        return {prefix: array}
    columns: dict[str, pa.Array] = {}
    for field, child in zip(array.type, array.flatten()):
        columns.update(_flatten(child, f"{prefix}_{field.name}" if prefix else field.name))
    return columns


def _conform(columns: dict[str, pa.Array], schema: pa.Schema, length: int) -> tuple[list[pa.Array], list[str]]:
    """Columns in schema order: missing ones become nulls (never zeros); returns the arrays and present names."""
    arrays, present = [], []
    for field in schema:
        if field.name in columns:
            column = columns[field.name]
            arrays.append(column if column.type == field.type else column.cast(field.type))
            present.append(field.name)
        else:
            arrays.append(pa.nulls(length, field.type))
    return arrays, present


def _last_copy_indices(frame_ids: np.ndarray) -> np.ndarray:
    """Rollback re-sends frames: the last copy of each id is the one that happened. Sorted by id."""
    reversed_ids = frame_ids[::-1]
    _, first_in_reversed = np.unique(reversed_ids, return_index=True)
    return (len(frame_ids) - 1 - first_in_reversed).astype(np.int64)


def _version_tuple(start: dict) -> tuple[int, int, int]:
    return tuple(start["slippi"]["version"])  # type: ignore[return-value]


def _check_versus(start: dict) -> None:
    players = start.get("players") or []
    if len(players) < 2:
        raise ReplayError("not a versus game", f"{len(players)} player(s)")
    scene = start.get("scene")
    if scene and scene.get("major") in NON_VERSUS_SCENES:
        raise ReplayError("not a versus game", NON_VERSUS_SCENES[scene["major"]])


def _player_tables(frames: pa.StructArray, game_id: str) -> tuple[list[pa.Table], list[str], dict]:
    """One table per (port, follower) block, each with every frame; also the player fields present."""
    ports = frames.field("ports")
    frame_ids = frames.field("id")
    frame_level = {}
    for name in ("start", "end"):
        if name in [f.name for f in frames.type]:
            frame_level.update(_flatten(frames.field(name), name))
    n = len(frames)
    game_ids = pa.repeat(game_id, n)  # one column for every block: 64 bytes a row, built once
    blocks, present_fields, stats = [], set(), {}
    for port_field, port_array in zip(ports.type, ports.flatten()):
        port = PORT_NUMBERS[port_field.name]
        for role, follower in (("leader", False), ("follower", True)):
            if role not in [f.name for f in port_field.type]:
                continue
            data = port_array.field(role)
            if follower and data.null_count == n:
                continue  # a follower column that never holds a Nana
            columns = {"game_id": game_ids,
                       "frame": frame_ids,
                       "port": pa.array(np.full(n, port, np.uint8)),
                       "follower": pa.array(np.full(n, follower)),
                       **frame_level}
            for side in ("pre", "post"):
                columns.update(_flatten(data.field(side), side))
            arrays, present = _conform(columns, FRAME_SCHEMA, n)
            present_fields.update(p for p in present if p in PLAYER_FIELD_NAMES or
                                  p in {c.name for c in FRAME_FIELDS})
            blocks.append(pa.Table.from_arrays(arrays, schema=FRAME_SCHEMA))
            if not follower:
                stocks = columns.get("post_stocks")
                valid = pc.drop_null(stocks) if stocks is not None else pa.array([], pa.uint8())
                stats[port] = {"final_stocks": int(valid[-1].as_py()) if len(valid) else None,
                               "internal_chars": sorted(pc.unique(pc.drop_null(columns["post_character"])).to_pylist())}
    return blocks, sorted(present_fields), stats


def _list_table(frames: pa.StructArray, field: str, game_id: str, schema: pa.Schema,
                extra: dict[str, object] | None = None) -> pa.Table | None:
    if field not in [f.name for f in frames.type]:
        return None
    lists = frames.field(field)
    values = lists.flatten()
    if len(values) == 0:
        return schema.empty_table()
    parents = pc.list_parent_indices(lists)
    offsets = lists.offsets.to_numpy()
    parents_np = parents.to_numpy()
    columns = {"game_id": pa.repeat(game_id, len(values)),
               "frame": pc.take(frames.field("id"), parents),
               "slot": pa.array((np.arange(len(values)) - offsets[parents_np]).astype(np.uint8))}
    for name, value in (extra or {}).items():
        columns[name] = pa.repeat(value, len(values))
    columns.update(_flatten(values, ""))
    arrays, _ = _conform(columns, schema, len(values))
    return pa.Table.from_arrays(arrays, schema=schema)


def parse_replay(data: bytes, source: str, *, keep_names: bool = False, game_id: str | None = None) -> ParsedGame:
    """Parse one replay; raises ``ReplayError`` with a clear reason for anything that cannot be ingested."""
    game_id = game_id or sha256_hex(data)
    if len(data) == 0:
        raise ReplayError("empty file")
    if not data.startswith(SLIPPI_MAGIC):
        raise ReplayError("not a Slippi replay", "the file does not start with Slippi's header")
    try:
        raw = _read_raw(data, skip_frames=False)
    except BaseException as error:  # noqa: BLE001 - pyo3 PanicException is a BaseException
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        raise _classify(data, error) from None
    start, end, meta = raw.start, raw.end, raw.metadata or {}
    _check_versus(start)
    if raw.frames is None or len(raw.frames) == 0:
        raise ReplayError("no frames")

    all_ids = raw.frames.field("id").to_numpy()
    if np.all(np.diff(all_ids) > 0):  # no rollback: nothing to drop
        keep, frames = np.arange(len(all_ids)), raw.frames
    else:
        keep = _last_copy_indices(all_ids)
        frames = raw.frames.take(pa.array(keep))
    blocks, fields, stats = _player_tables(frames, game_id)
    frame_table = pa.concat_tables(blocks)
    items = _list_table(frames, "item", game_id, ITEM_SCHEMA)
    events = [t for kind in ("fod_platform", "dreamland_whispy", "stadium_transformation")
              if (t := _list_table(frames, kind, game_id, STAGE_EVENT_SCHEMA, {"kind": kind})) is not None]
    stage_events = pa.concat_tables(events) if events else STAGE_EVENT_SCHEMA.empty_table()

    record = _game_record(start, end, meta, stats, game_id=game_id, source=source, size=len(data),
                          n_records=len(all_ids), frame_ids=all_ids[keep], keep_names=keep_names)
    record["fields"] = fields
    record["has_follower"] = bool(pc.any(frame_table.column("follower")).as_py())
    record["has_items"] = items is not None and items.num_rows > 0
    record["item_rows"] = 0 if items is None else items.num_rows
    return ParsedGame(record, frame_table, items if items is not None else ITEM_SCHEMA.empty_table(), stage_events)


def _game_record(start: dict, end: dict | None, meta: dict, stats: dict, *, game_id: str, source: str, size: int,
                 n_records: int, frame_ids: np.ndarray, keep_names: bool) -> dict:
    version = _version_tuple(start)
    placements = {PORT_NUMBERS[p["port"]]: p["placement"] for p in (end or {}).get("players") or []}
    players = []
    for p in start["players"]:
        port = PORT_NUMBERS[p["port"]]
        netplay = p.get("netplay") or {}
        players.append({
            "port": port,
            "character": p["character"],
            "internal_characters": stats.get(port, {}).get("internal_chars", []),
            "type": str(p["type"]).lower(),
            "costume": p.get("costume"),
            "team": None if p.get("team") is None else str(p["team"].get("color") if isinstance(p["team"], dict)
                                                           else p["team"]),
            "cpu_level": p.get("cpu_level"),
            "handicap": p.get("handicap"),
            "start_stocks": p.get("stocks"),
            "final_stocks": stats.get(port, {}).get("final_stocks"),
            "placement": placements.get(port),
            "name_tag": p.get("name_tag") if keep_names else None,
            "netplay_name": netplay.get("name") if keep_names else None,
            "netplay_code": netplay.get("code") if keep_names else None,
        })
    end_method = _end_method_name(end)
    humans = sum(p["type"] == "human" for p in players)
    zero_stocks = any(p["final_stocks"] == 0 for p in players)
    scene = start.get("scene") or {}
    lras = (end or {}).get("lras_initiator")
    frame_count = int(len(frame_ids))
    return {
        "game_id": game_id,
        **source_fields(source),
        "size_bytes": size,
        "slippi_version": ".".join(map(str, version)),
        "stage": int(start["stage"]),
        "is_teams": bool(start.get("is_teams")),
        "is_pal": start.get("is_pal"),
        "is_frozen_ps": start.get("is_frozen_ps"),
        "timer_seconds": start.get("timer"),
        "scene_major": scene.get("major"),
        "scene_minor": scene.get("minor"),
        "start_at": meta.get("startAt"),
        "played_on": meta.get("playedOn"),
        "console_nick": meta.get("consoleNick") if keep_names else None,
        "end_method": end_method,
        "lras_initiator": PORT_NUMBERS.get(lras) if isinstance(lras, str) else None,
        "n_players": len(players),
        "n_humans": humans,
        "players": players,
        "frame_count": frame_count,
        "first_frame": int(frame_ids[0]),
        "last_frame": int(frame_ids[-1]),
        "rollback_frames": int(n_records - frame_count),
        "duration_s": frame_count / FPS,
        "two_humans": len(players) == 2 and humans == 2,
        "completed": end_method in ("GAME", "TIME") or zero_stocks,
        "legal_stage": int(start["stage"]) in LEGAL_STAGES,
        "long_enough": frame_count >= MIN_LENGTH_FRAMES,
    }


def _end_method_name(end: dict | None) -> str | None:
    """Raw enum strings ('NoContest') as the upper-snake names peppi-py's dataclasses use (NO_CONTEST)."""
    if not end or end.get("method") is None:
        return None
    method = str(end["method"])
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(method)).upper()
