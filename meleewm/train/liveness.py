"""Is a training run alive? ``heartbeat.json`` in the run folder names the process that trains there (host, pid,
and that process's start time, so a reused pid is not taken for it) and when it last beat, every few seconds from
a background thread. ``meleewm runs`` reads it to tell a run in progress from one whose process was killed: on the
same host by the process itself, from another host by the age of the last beat."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from meleewm.atomic import write_text_atomic

HEARTBEAT = "heartbeat.json"
INTERVAL_S = 10.0
STALE_AFTER_S = 6 * INTERVAL_S  # a run on another host is taken for dead after this long without a beat


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process exists
        pass
    now_started = _process_start(pid)
    return started is None or now_started is None or now_started == started


class Heartbeat:
    """Beats into ``folder/heartbeat.json`` from :meth:`start` until :meth:`stop` (which removes the file)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / HEARTBEAT
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "process_started": _process_start(os.getpid())}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        write_text_atomic(self.path, json.dumps({**self.record, "updated": time.time()}))

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.beat()
        self._thread = threading.Thread(target=self._run, name="meleewm-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self.beat()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.path.unlink(missing_ok=True)


def read_heartbeat(folder: str | Path) -> dict | None:
    try:
        record = json.loads((Path(folder) / HEARTBEAT).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def dead_reason(folder: str | Path, now: float | None = None) -> str | None:
    """Why the run that last trained in ``folder`` is not alive, or None when its process is (or may be) alive."""
    record = read_heartbeat(folder)
    if record is None:
        return "no heartbeat.json: its process is gone"
    try:
        host, pid, updated = str(record["host"]), int(record["pid"]), float(record["updated"])
    except (KeyError, TypeError, ValueError):
        return "unreadable heartbeat.json"
    if host == socket.gethostname():
        if not _alive(pid, record.get("process_started")):
            return f"process {pid} is gone"
        return None
    age = (time.time() if now is None else now) - updated
    if age > STALE_AFTER_S:
        return f"no heartbeat from {host} for {age:.0f} s"
    return None


def live_owner(folder: str | Path) -> dict | None:
    """The heartbeat of another live process that trains in ``folder``, if there is one."""
    record = read_heartbeat(folder)
    if record is None or dead_reason(folder) is not None:
        return None
    if record.get("host") == socket.gethostname() and record.get("pid") == os.getpid():
        return None
    return record
