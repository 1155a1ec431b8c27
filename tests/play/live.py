"""Helpers for tests against a real play server on 127.0.0.1: uvicorn in a thread of the test, or ``meleewm play``
in its own process, real WebSocket clients (the ``websockets`` library) and raw sockets, and hostile clients.

``python -m tests.play.live PORT SECONDS NAME[@ADDRESS] ...`` runs the named hostile clients (:data:`ATTACKERS`)
against the server on 127.0.0.1:PORT for SECONDS, from ADDRESS (a loopback address) when given; it prints
``attacking`` once they have started, then one JSON object of their results. Tests run it as a process of its own,
so that the attackers' work does not slow down the test's own well-behaved client."""

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

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app) -> Iterator[int]:
    """``app`` served by uvicorn with ``serve``'s configuration, in a thread; yields the port."""
    import uvicorn

    from meleewm.play.server import server_config

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
    with contextlib.suppress(TimeoutError):        # first drop what waits already (a burst would count)
        while True:
            await asyncio.wait_for(ws.recv(), 0.005)
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


# -- hostile clients ----------------------------------------------------------------------------------------------

async def flood_steps(port: int, stop: asyncio.Event, **connect_options) -> int:
    """Pause a session of its own and send 600-frame steps at half the message rate the server allows; how many
    were refused because this client's queue was full (so the server had a queue's worth of steps to run all
    along)."""
    async with ws_connect(port, **connect_options) as ws:
        rate = (await next_message(ws, "hello"))["max_messages_per_s"] // 2
        await ws.send(json.dumps({"type": "new", "controllers": [{"kind": "keyboard"}, {"kind": "idle"}]}))
        await next_message(ws, "session")
        await ws.send(json.dumps({"type": "pause"}))
        step = json.dumps({"type": "step", "frames": 600})
        while not stop.is_set():
            for _ in range(rate // 20):
                await ws.send(step)
            await asyncio.sleep(1 / 20)
        refused = 0
        try:
            async with asyncio.timeout(0.5):
                while True:
                    message = json.loads(await ws.recv())
                    refused += message["type"] == "error" and "still waiting" in message["message"]
        except TimeoutError:
            return refused


async def flood_over_limit(port: int, stop: asyncio.Event, **connect_options) -> int:
    """Send pings as fast as possible until the server closes the connection for it; reconnect a second later
    and again. How many times it was closed with the reason as an error reply."""
    closed = 0
    while not stop.is_set():
        async with ws_connect(port, **connect_options) as ws:
            await next_message(ws, "hello")
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.send('{"type":"ping"}')
                    await asyncio.sleep(0)
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                closed += "more than" in (await next_message(ws, "error", timeout=5))["message"]
        await asyncio.sleep(1.0)
    return closed


BAD_MESSAGES = [
    "{not json", "[1, 2]", "[" * 8000 + "]" * 8000, "x" * 20_000, json.dumps({"type": "teleport"}),
    json.dumps({"type": "step", "frames": -1}), json.dumps({"type": "input", "port": 9, "state": {}}),
    json.dumps({"type": "join"}),
    json.dumps({"type": "ping", "t": {"a": [1, 2, 3]}}), b"\x00\x01binary", "9" * 5000,
]


async def send_bad_messages(port: int, stop: asyncio.Event, **connect_options) -> list[int]:
    """Malformed messages in rounds of a dozen, five rounds a second, each round ended by a ping: [bad messages
    sent, error replies received before the pongs]."""
    sent = answered = 0
    async with ws_connect(port, **connect_options) as ws:
        await next_message(ws, "hello")
        while not stop.is_set():
            for payload in BAD_MESSAGES:
                await ws.send(payload)
            sent += len(BAD_MESSAGES)
            await ws.send(json.dumps({"type": "ping", "t": sent}))
            async with asyncio.timeout(20):
                while (message := json.loads(await ws.recv()))["type"] != "pong":
                    answered += message["type"] == "error"
            await asyncio.sleep(0.2)
    return [sent, answered]


async def send_oversized(port: int, stop: asyncio.Event, **connect_options) -> int:
    """A message over the WebSocket size limit, which uvicorn answers by closing (1009); reconnect a second later
    and again. How many such closes."""
    closed = 0
    while not stop.is_set():
        async with ws_connect(port, max_size=None, **connect_options) as ws:
            await next_message(ws, "hello")
            await ws.send("y" * 200_000)
            try:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            except ConnectionClosed as error:
                closed += error.rcvd is not None and error.rcvd.code == 1009
        await asyncio.sleep(1.0)
    return closed


async def churn_sessions(port: int, stop: asyncio.Event, **connect_options) -> int:
    """Connect, create a session, leave; again, three times a second. Sessions made."""
    made = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):     # a busy server may take longer; the next try counts
            async with ws_connect(port, **connect_options) as ws:
                made += (await new_session(ws))["type"] == "session"
        await asyncio.sleep(0.3)
    return made


async def never_read(port: int, stop: asyncio.Event, **connect_options) -> int:
    """A bot-vs-bot session whose client never reads its state stream."""
    async with ws_connect(port, max_queue=1, **connect_options) as ws:
        await ws.send(json.dumps({"type": "new", "controllers": [{"kind": "random"}, {"kind": "approach"}]}))
        await stop.wait()
    return 1


async def hold_partial_requests(port: int, stop: asyncio.Event, **connect_options) -> int:
    """Connections that send half an HTTP request, a new one every 0.5 s; how many the server has cut off."""
    loop = asyncio.get_running_loop()
    held = []
    while not stop.is_set():
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)
        sock.setblocking(False)
        held.append(sock)
        await asyncio.sleep(0.5)
    cut = 0
    for sock in held:
        try:
            cut += await asyncio.wait_for(loop.sock_recv(sock, 1), 0.01) == b""
        except (TimeoutError, ConnectionError):
            pass
        sock.close()
    return cut


ATTACKERS = {f.__name__: f for f in (flood_steps, flood_over_limit, send_bad_messages, send_oversized,
                                     churn_sessions, never_read, hold_partial_requests)}


async def attack(port: int, seconds: float, names: list[str]) -> dict:
    stop = asyncio.Event()
    tasks = {}
    for i, spec in enumerate(names):
        name, _, address = spec.partition("@")
        options = {"local_addr": (address, 0)} if address else {}
        tasks[f"{i}:{name}"] = asyncio.create_task(ATTACKERS[name](port, stop, **options))
    await asyncio.sleep(0.5)
    print("attacking", flush=True)
    await asyncio.sleep(seconds)
    stop.set()
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    return {name: repr(r) if isinstance(r, BaseException) else r for name, r in zip(tasks, results)}


@contextlib.contextmanager
def attackers(port: int, seconds: float, *names: str) -> Iterator[dict]:
    """The named hostile clients, in a process of their own, for ``seconds``; yields a dict that holds their
    results (by "index:name") once the block ends."""
    process = subprocess.Popen([sys.executable, "-m", "tests.play.live", str(port), str(seconds), *names],
                               cwd=REPO, stdout=subprocess.PIPE, text=True)
    results: dict = {}
    try:
        assert process.stdout.readline().strip() == "attacking", "the attackers did not start"
        yield results
        out, _ = process.communicate(timeout=seconds + 60)
        assert process.returncode == 0, out
        results.update(json.loads(out.strip().splitlines()[-1]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(attack(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]))), flush=True)
