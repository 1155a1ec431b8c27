"""Who may use the play server, and what one client can make it do: a real uvicorn server on 127.0.0.1 (``serve``'s
configuration) with the bundled model, real WebSocket clients and raw sockets. Each test is bounded in time."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest
from websockets.exceptions import InvalidStatus

from meleewm.play.server import Limits, create_app
from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
from tests.play.live import REPO, http_get, new_session, next_message, serving, ws_connect

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def model():
    return load_model(DEFAULT_MODEL).model          # the bundled model: no replays needed


def refused_status(port: int, **kwargs) -> int | None:
    """The HTTP status a WebSocket handshake was refused with, or None when it was accepted."""
    async def attempt():
        try:
            async with ws_connect(port, **kwargs) as ws:
                await next_message(ws, "hello")
                return None
        except InvalidStatus as error:
            return error.response.status_code

    return asyncio.run(attempt())


def test_a_foreign_origin_is_refused_with_403(model):
    with serving(create_app(model)) as port:
        assert refused_status(port, origin="http://evil.example") == 403
        assert refused_status(port, origin="null") == 403                       # a sandboxed frame or file://
        assert refused_status(port, origin=f"http://127.0.0.1:{port + 1}") == 403  # another local server
        status, body = http_get(port, "/api/info", {"Origin": "http://evil.example"})
        assert status == 403 and b"Origin" in body


def test_a_rebinding_host_is_refused(model):
    """DNS rebinding: a name the attacker controls resolves to 127.0.0.1; the browser then sends that name as Host
    (and the attacker's page is same-origin with it, so Origin does not help)."""
    with serving(create_app(model)) as port:
        rebinding = f"rebind.example:{port}"
        assert refused_status(port, origin=f"http://{rebinding}") == 403
        status, body = http_get(port, "/api/info", {"Host": rebinding})
        assert status == 403 and b"Host" in body
        assert http_get(port, "/", {"Host": rebinding})[0] == 403
        assert http_get(port, "/static/main.js", {"Host": rebinding})[0] == 403


def test_the_page_own_origin_is_served(model):
    with serving(create_app(model)) as port:
        for name in ("127.0.0.1", "localhost"):
            assert refused_status(port, origin=f"http://{name}:{port}") is None, name
        assert refused_status(port) is None            # no Origin: a program, not a web page
        assert http_get(port, "/api/info")[0] == 200
        assert http_get(port, "/", {"Host": f"localhost:{port}"})[0] == 200


def test_allow_origin_admits_the_named_origin_only(model):
    trusted = "http://trusted.example:8123"
    with serving(create_app(model, allow_origins=[trusted + "/"])) as port:
        assert refused_status(port, origin=trusted) is None
        assert refused_status(port, origin="http://trusted.example:8124") == 403
        assert http_get(port, "/api/info", {"Host": "trusted.example:8123", "Origin": trusted})[0] == 200


def test_a_bad_allow_origin_is_a_clear_error():
    result = subprocess.run([sys.executable, "-m", "meleewm.cli", "play", "--allow-origin", "evil.example/path"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "an origin is scheme://host[:port]" in result.stdout and "Traceback" not in result.stderr


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within ``within`` seconds (reading whatever it sends first)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False


def test_partial_http_requests_time_out(model):
    """A client that opens a connection and sends part of a request (or nothing) is cut off after the deadline;
    before, uvicorn waited for the rest forever."""
    with serving(create_app(model, limits=Limits(request_timeout_s=1.0))) as port:
        for partial in (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port, b"",
                        b"POST /api/info HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 100\r\n\r\nabc" % port):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                started = time.monotonic()
                sock.sendall(partial)
                assert closed_by_server(sock, within=4), partial
                assert time.monotonic() - started >= 0.9, partial
        assert http_get(port, "/api/info")[0] == 200        # whole requests are still served


def test_error_replies_are_not_dropped_under_a_burst(model):
    """300 bad messages sent at once, while the session streams states, get 300 error replies, in order."""
    with serving(create_app(model, limits=Limits(queued_replies=4))) as port:
        async def burst():
            async with ws_connect(port) as ws:
                await new_session(ws)
                await asyncio.gather(*(ws.send(json.dumps({"type": "nope", "n": i})) for i in range(300)))
                await ws.send(json.dumps({"type": "ping", "t": "end"}))
                errors = []
                async with asyncio.timeout(30):
                    while (message := json.loads(await ws.recv()))["type"] != "pong":
                        if message["type"] == "error":
                            errors.append(message["message"])
                return errors

        errors = asyncio.run(burst())
        assert len(errors) == 300 and all("unknown message type 'nope'" in e for e in errors)


def test_deeply_nested_json_gets_an_error_reply_over_a_real_socket(model):
    with serving(create_app(model)) as port:
        async def nested():
            async with ws_connect(port) as ws:
                await next_message(ws, "hello")
                await ws.send("[" * 8000 + "]" * 8000)
                error = await next_message(ws, "error")
                await ws.send(json.dumps({"type": "ping", "t": 1}))
                return error, await next_message(ws, "pong")

        error, pong = asyncio.run(nested())
        assert "too deeply nested" in error["message"] and pong["t"] == 1


def test_sessions_are_capped_per_client_address(model):
    """One address holds at most ``sessions_per_host`` sessions, so it cannot take the whole server; a player from
    another address (127.0.0.2 is loopback too) still gets one."""
    limits = Limits(sessions_per_host=2, max_sessions=3)
    with serving(create_app(model, limits=limits)) as port:
        async def crowd():
            async with ws_connect(port) as a1, ws_connect(port) as a2, ws_connect(port) as a3, \
                    ws_connect(port, local_addr=("127.0.0.2", 0)) as b1, \
                    ws_connect(port, local_addr=("127.0.0.2", 0)) as b2:
                await new_session(a1)
                await new_session(a2)
                await next_message(a3, "hello")
                await a3.send(json.dumps({"type": "new"}))
                third = await next_message(a3, "error")
                assert (await new_session(b1))["your_ports"] == [0]
                await next_message(b2, "hello")
                await b2.send(json.dumps({"type": "new"}))
                return third, await next_message(b2, "error")

        per_address, total = asyncio.run(crowd())
        assert "your address already runs 2 sessions" in per_address["message"]
        assert "already runs 3 sessions" in total["message"]


def test_idle_sessions_expire(model):
    """A session whose clients send nothing ends (its client is told); one whose player sends keeps running."""
    with serving(create_app(model, limits=Limits(session_idle_s=1.0))) as port:
        async def idle():
            async with ws_connect(port) as quiet, ws_connect(port) as active:
                await new_session(quiet)
                await new_session(active)

                async def keep_pinging():
                    for _ in range(12):
                        await active.send(json.dumps({"type": "input", "port": 0, "state": {}}))
                        await asyncio.sleep(0.25)

                pinging = asyncio.create_task(keep_pinging())
                ended = await next_message(quiet, "error", timeout=5)
                await pinging
                still = await next_message(active, "state", timeout=5, where=lambda m: m["frame"] > -123 + 120)
                await quiet.send(json.dumps({"type": "pause"}))
                return ended, still, await next_message(quiet, "error")

        ended, still, after = asyncio.run(idle())
        assert "no message from its players for 1 s" in ended["message"]
        assert still["frame"] > -3                 # the active session ran on for its 3 s
        assert "join or create a session first" in after["message"]


def test_queued_commands_are_bounded_and_dropped_when_the_client_goes(model):
    app = create_app(model, limits=Limits(queued_commands=4))
    hub = app.state.hub
    with serving(app) as port:
        async def flood():
            async with ws_connect(port) as ws:
                sid = (await new_session(ws))["id"]
                await ws.send(json.dumps({"type": "pause"}))
                await asyncio.gather(*(ws.send(json.dumps({"type": "step", "frames": 600})) for _ in range(20)))
                refused = await next_message(ws, "error")
                runner = hub.sessions[sid]
            # the client is gone: its queued steps are dropped and the running one stops at its next frame
            await asyncio.sleep(0.5)
            ticks = runner.session.ticks
            await asyncio.sleep(1.0)
            return refused, ticks, runner

        refused, ticks, runner = asyncio.run(flood())
        assert "of your commands are still waiting" in refused["message"]
        assert runner.closed and not runner.jobs and runner.session.ticks == ticks
        assert ticks < 4 * 600 and not hub.sessions
