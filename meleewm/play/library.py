"""The replays the play page can browse: a folder of ``.slp`` files (by default the Slippi Launcher's) and files
dropped on the page.

The work is bounded: a listing walks at most :data:`MAX_SCANNED` directory entries and keeps the newest
:data:`DEFAULT_LIMIT` files (by modification time); a file's header (date, stage, characters, length) is read only
when a page of the listing asks for it, with peppi's header-only read, and cached by (path, size, mtime). Clients
name a listed replay by an opaque id, never by a path. An upload is bounded by :data:`MAX_UPLOAD_BYTES`.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import heapq
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from meleewm.errors import MeleewmError
from meleewm.melee.characters import EXTERNAL_NAMES
from meleewm.melee.game import FIRST_FRAME, FPS
from meleewm.melee.stages import stage_name

DEFAULT_LIMIT = 500              # newest files a listing offers
MAX_SCANNED = 50_000             # directory entries a listing looks at, at most
MAX_PAGE = 100                   # headers one listing request reads, at most
MAX_UPLOAD_BYTES = 32 << 20      # a dropped file larger than this is refused (full games are 2-8 MB)
HEADER_CACHE = 4096
PORT_NUMBERS = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}


class LibraryError(MeleewmError, ValueError):
    """A replay the page cannot list or open; the message says why."""


def default_replay_folder(home: Path | None = None, platform: str = sys.platform) -> Path:
    """Where the Slippi Launcher saves replays by default: ``Documents/Slippi`` on Windows, ``~/Slippi`` on macOS
    and Linux."""
    home = Path.home() if home is None else Path(home)
    return home / "Documents" / "Slippi" if platform.startswith("win") else home / "Slippi"


@dataclass(frozen=True)
class ListedFile:
    id: str
    path: Path
    size: int
    mtime: float


def read_header(path: Path) -> dict:
    """Date, stage, characters (by port) and length of a replay, from its header and metadata only."""
    from peppi_py import _peppi

    try:
        raw = _peppi.read_slippi(str(path), True)
    except BaseException as error:  # noqa: BLE001 - pyo3 PanicException is a BaseException
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        raise LibraryError(f"{path.name}: not a readable Slippi replay ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:200] if str(error) else 'no detail'})") from None
    start, meta = raw.start or {}, raw.metadata or {}
    players = sorted(((PORT_NUMBERS.get(str(p.get("port")), 0), int(p["character"])) for p in start.get("players", [])))
    last = meta.get("lastFrame")
    return {"date": meta.get("startAt"), "stage": int(start.get("stage", -1)),
            "stage_name": stage_name(int(start.get("stage", -1))),
            "ports": [port for port, _ in players], "chars": [c for _, c in players],
            "char_names": [EXTERNAL_NAMES.get(c, str(c)) for _, c in players],
            "frames": None if last is None else int(last) + 124,     # frames -123..lastFrame
            "duration_s": None if last is None else round((int(last) - FIRST_FRAME + 1) / FPS, 1)}


class ReplayLibrary:
    """A folder of replays, listed newest first (see the module doc for the bounds)."""

    def __init__(self, folder: str | Path | None, limit: int = DEFAULT_LIMIT):
        self.folder = None if folder is None else Path(folder).expanduser()
        if self.folder is not None and not self.folder.is_dir():
            raise LibraryError(f"replay folder {self.folder} does not exist or is not a folder")
        self.limit = int(limit)
        self._files: dict[str, ListedFile] = {}
        self._order: list[str] = []
        self._headers: collections.OrderedDict[tuple, dict] = collections.OrderedDict()
        self.truncated = False

    def scan(self) -> None:
        """Find the newest ``limit`` ``.slp`` files under the folder (looking at no more than MAX_SCANNED entries)."""
        if self.folder is None:
            return
        newest: list[tuple[float, str, int]] = []
        seen = 0
        stack = [self.folder]
        self.truncated = False
        while stack and not self.truncated:
            try:
                entries = os.scandir(stack.pop())
            except OSError:
                continue
            with entries:
                for entry in entries:
                    seen += 1
                    if seen > MAX_SCANNED:
                        self.truncated = True
                        break
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.name.lower().endswith(".slp") and entry.is_file():
                            st = entry.stat()
                            item = (st.st_mtime, entry.path, st.st_size)
                            if len(newest) < self.limit:
                                heapq.heappush(newest, item)
                            elif item > newest[0]:
                                heapq.heapreplace(newest, item)
                    except OSError:
                        continue
        files = sorted(newest, reverse=True)
        self._files = {}
        self._order = []
        for mtime, path, size in files:
            file_id = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]
            self._files[file_id] = ListedFile(file_id, Path(path), size, mtime)
            self._order.append(file_id)

    def listing(self, offset: int = 0, count: int = 50) -> dict:
        """One page of the listing (rescanned on the first page), each entry with its header fields, or the reason
        it cannot be read."""
        offset, count = max(0, int(offset)), max(1, min(int(count), MAX_PAGE))
        if offset == 0:
            self.scan()
        entries = [self.entry(file_id) for file_id in self._order[offset:offset + count]]
        return {"folder": None if self.folder is None else str(self.folder), "total": len(self._order),
                "offset": offset, "truncated": self.truncated, "limit": self.limit, "entries": entries}

    def entry(self, file_id: str) -> dict:
        f = self._files[file_id]
        key = (str(f.path), f.size, f.mtime)
        out = {"id": f.id, "name": f.path.name, "size": f.size,
               "modified": dt.datetime.fromtimestamp(f.mtime, dt.timezone.utc).isoformat(timespec="seconds")}
        header = self._headers.get(key)
        if header is None:
            try:
                header = read_header(f.path)
            except LibraryError as error:
                header = {"error": str(error)}
            self._headers[key] = header
            while len(self._headers) > HEADER_CACHE:
                self._headers.popitem(last=False)
        self._headers.move_to_end(key)
        out.update(header)
        out["date"] = out.get("date") or out["modified"]
        return out

    def path(self, file_id: str) -> Path:
        if file_id not in self._files:
            raise LibraryError(f"no listed replay {file_id!r} (list the folder again)")
        return self._files[file_id].path
