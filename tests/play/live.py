"""Helpers for tests against a real play server on 127.0.0.1: uvicorn in a thread of the test, or ``meleewm play``
in its own process, and real WebSocket clients (the ``websockets`` library) and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from websockets.asyncio.client import connect

from meleewm.play.server import server_config

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app) -> Iterator[int]:
    """``app`` served by uvicorn with ``serve``'s configuration, in a thread; yields the port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def play_process(*args: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """``meleewm play ARGS --port P`` (the bundled model) in its own process, once it serves; yields (process, P)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "meleewm.cli", "play", "--port", str(port), *args],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while http_get(port, "/api/info")[0] != 200:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "meleewm play did not start serving"
            time.sleep(0.2)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET to 127.0.0.1:port; (0, b"") when nothing listens yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except ConnectionRefusedError:
        return 0, b""
    finally:
        conn.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def ws_connect(port: int, **kwargs):
    """A WebSocket client of the server on 127.0.0.1:port (no proxy from the environment). It buffers what it has
    not read yet without limit (unless ``max_queue`` is given), so that a test that stops reading still closes
    at once."""
    options = {"proxy": None, "open_timeout": 20, "close_timeout": 2, "max_queue": None, **kwargs}
    return connect(f"ws://127.0.0.1:{port}/ws", **options)


async def next_message(ws, kind: str, timeout: float = 10.0, where=lambda m: True) -> dict:
    """The next message of ``kind`` (others, such as the 60 fps state stream, are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind and where(message):
                return message


async def new_session(ws, **fields) -> dict:
    """Create a Battlefield session (keyboard on port 0, an idle bot on port 1); its session message."""
    await next_message(ws, "hello")
    await ws.send(json.dumps({"type": "new", "start": {"kind": "synthetic", "stage": 31, "chars": [20, 2]},
                              "controllers": [{"kind": "keyboard"}, {"kind": "idle"}], **fields}))
    return await next_message(ws, "session")


async def count_states(ws, seconds: float) -> list[int]:
    """State messages received in each whole second of ``seconds`` (other messages are read and skipped)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    counts = [0] * int(seconds)
    while (elapsed := loop.time() - start) < int(seconds):
        try:
            async with asyncio.timeout(int(seconds) - elapsed):
                text = await ws.recv()
        except TimeoutError:
            break
        second = int(loop.time() - start)
        if second < len(counts) and json.loads(text)["type"] == "state":
            counts[second] += 1
    return counts
