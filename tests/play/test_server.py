"""The play server over real WebSockets (FastAPI TestClient): sessions, controllers, bad messages, download."""

from __future__ import annotations

import json

import numpy as np
import peppi_py
import pytest
from fastapi.testclient import TestClient

from meleewm.play.server import MAX_MESSAGE_BYTES, ReplayCatalog, create_app
from meleewm.model.checkpoint import load_model
from meleewm.replay.dataset import Dataset
from tests.play.test_session import play_checkpoint


@pytest.fixture(scope="module")
def client(replays, manifest, tmp_path_factory):
    checkpoint, data = play_checkpoint(replays, manifest, tmp_path_factory)
    model = load_model(checkpoint).model
    app = create_app(model, replays=ReplayCatalog(model.spec, data=data))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:   # the server's own address (OriginGuard)
        c.game_ids = sorted(Dataset(data).game_ids())
        yield c


def recv(ws, kind: str, limit: int = 400, where=lambda m: True) -> dict:
    """The next message of ``kind`` (state messages stream at 60 fps in between)."""
    for _ in range(limit):
        msg = ws.receive_json()
        if msg["type"] == kind and where(msg):
            return msg
    raise AssertionError(f"no {kind} message in {limit}")


def new_session(ws, **extra) -> dict:
    hello = recv(ws, "hello")
    assert hello["stages"]["31"]["name"] == "Battlefield" and hello["characters"]
    ws.send_json({"type": "new", "start": {"kind": "synthetic", "stage": 31, "chars": [20, 2]},
                  "controllers": [{"kind": "keyboard"}, {"kind": "idle"}], **extra})
    return recv(ws, "session")


def test_a_session_streams_state_and_takes_input(client):
    with client.websocket_connect("/ws") as ws:
        session = new_session(ws)
        assert session["your_ports"] == [0] and session["controllers"][1]["kind"] == "idle"
        state = recv(ws, "state")
        p = state["players"][0]
        for key in ("x", "y", "action", "action_name", "percent", "stocks", "facing", "shield", "hitlag", "hitstun",
                    "airborne"):
            assert key in p, key
        assert {"fps", "step_ms", "tick_ms", "rules", "frame", "timer"} <= set(state)
        ws.send_json({"type": "input", "port": 0, "state": {"stick": [1, 0], "buttons": ["A"]}})
        got = recv(ws, "state", where=lambda m: m["players"][0]["input"]["stick"] == [1.0, 0.0])
        assert got["players"][0]["input"]["buttons"] == 0x0100          # A
        ws.send_json({"type": "input", "port": 1, "state": {"stick": [1, 0]}})   # a bot holds port 1
        assert "not controlled by this client" in recv(ws, "error")["message"]


def test_pause_step_reset_swap_and_settings(client):
    with client.websocket_connect("/ws") as ws:
        new_session(ws)
        ws.send_json({"type": "step"})
        assert "pause first" in recv(ws, "error")["message"]
        ws.send_json({"type": "pause"})
        frame = recv(ws, "state", where=lambda m: m["paused"])["frame"]
        ws.send_json({"type": "step", "frames": 5})
        assert recv(ws, "state", where=lambda m: m["frame"] != frame)["frame"] == frame + 5
        ws.send_json({"type": "reset"})
        assert recv(ws, "state", where=lambda m: m["frame"] == -123)
        ws.send_json({"type": "swap"})
        swapped = recv(ws, "session")
        assert swapped["your_ports"] == [1] and swapped["controllers"][0]["kind"] == "idle"
        ws.send_json({"type": "controller", "port": 0, "kind": "approach"})
        assert recv(ws, "session")["controllers"][0]["kind"] == "approach"
        ws.send_json({"type": "controller", "port": 0, "kind": "replay"})
        assert "replay" in recv(ws, "error")["message"]
        ws.send_json({"type": "temperature", "value": 0.5})
        assert recv(ws, "session")["temperature"] == 0.5
        ws.send_json({"type": "rules", "on": False})
        assert recv(ws, "session")["rules"] is False
        ws.send_json({"type": "step", "frames": 2})
        assert recv(ws, "state")["rules_on"] is False


def test_replay_start_with_recorded_inputs(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "hello")
        ws.send_json({"type": "new", "start": {"kind": "replay", "replay": client.game_ids[0], "frame": 400},
                      "controllers": [{"kind": "replay"}, {"kind": "replay"}]})
        session = recv(ws, "session")
        assert session["start"]["kind"] == "replay" and session["controllers"][0]["kind"] == "replay"
        assert recv(ws, "state", where=lambda m: m["frame"] > 400)
        ws.send_json({"type": "start", "start": {"kind": "replay", "replay": "nope", "frame": 1}})
        assert "unknown replay" in recv(ws, "error")["message"]


@pytest.mark.parametrize("payload, words", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"type": "teleport"}), "unknown message type"),
    (json.dumps({"no": "type"}), "unknown message type"),
    (json.dumps({"type": "input", "port": 7, "state": {}}), "port: Input should be less than or equal to 1"),
    (json.dumps({"type": "input", "port": True, "state": {}}), "port: Input should be a valid integer"),
    (json.dumps({"type": "input", "port": 0, "state": {"stick": "left"}}), "stick"),
    (json.dumps({"type": "step", "frames": 10**6}), "frames: Input should be less than or equal to 600"),
    (json.dumps({"type": "step", "frames": "5"}), "frames: Input should be a valid integer"),
    (json.dumps({"type": "temperature", "value": float("nan")}), "finite number"),
    (json.dumps({"type": "pause", "extra": 1}), "extra: Extra inputs are not permitted"),
    ("[" * 5000 + "]" * 5000, "too deeply nested"),                    # dropped the connection before
    (json.dumps({"type": "ping", "t": json.loads("[" * 40 + "]" * 40)}), "nested"),
    (json.dumps({"type": "new", "start": {"kind": "synthetic", "stage": 4}}), "legal stage"),
    (json.dumps({"type": "__init__"}), "unknown message type"),
    ("x" * (MAX_MESSAGE_BYTES + 1), "too large"),
    (json.dumps({"type": "ping", "pad": "y" * 60_000}), "too large"),   # < WS_MAX_SIZE: a reply, not a close
])
def test_bad_messages_get_an_error_and_others_are_unaffected(client, payload, words):
    with client.websocket_connect("/ws") as other, client.websocket_connect("/ws") as ws:
        new_session(other)
        new_session(ws)
        ws.send_json({"type": "pause"})
        recv(ws, "session")
        ws.send_text(payload)
        error = recv(ws, "error")
        assert words in error["message"], error
        ws.send_json({"type": "ping", "t": 1})           # the connection still works
        assert recv(ws, "pong")["t"] == 1
        frames = [recv(other, "state")["frame"] for _ in range(3)]   # the other session kept running
        assert frames == sorted(frames) and frames[-1] > frames[0]


def test_binary_messages_are_refused(client):
    with client.websocket_connect("/ws") as ws:
        recv(ws, "hello")
        ws.send_bytes(b"\x00\x01")
        assert "binary" in recv(ws, "error")["message"]


def test_second_client_joins_as_player_two(client):
    with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as two:
        sid = new_session(one)["id"]
        recv(two, "hello")
        two.send_json({"type": "join", "session": sid, "port": 1})
        joined = recv(two, "session", where=lambda m: m["your_ports"] == [1])
        assert joined["clients"] == 2 and joined["id"] == sid
        two.send_json({"type": "input", "port": 1, "state": {"stick": [-1, 0]}})
        one.send_json({"type": "input", "port": 0, "state": {"stick": [1, 0]}})
        state = recv(one, "state", where=lambda m: m["players"][1]["input"]["stick"] == [-1.0, 0.0]
                     and m["players"][0]["input"]["stick"] == [1.0, 0.0])
        assert state["players"][1]["input"]["stick"] == [-1.0, 0.0]
        two.send_json({"type": "input", "port": 0, "state": {}})
        assert "not controlled" in recv(two, "error")["message"]
        two.send_json({"type": "join", "session": sid, "port": 0})
        assert "held by another player" in recv(two, "error")["message"]
        two.send_json({"type": "join", "session": "nope"})
        assert "no session" in recv(two, "error")["message"]


def test_download_is_a_slippi_replay(client, tmp_path):
    with client.websocket_connect("/ws") as ws:
        session = new_session(ws)
        recv(ws, "state", where=lambda m: m["frame"] > -100)
        response = client.get(session["download"])
        assert response.status_code == 200 and response.content.startswith(b"{U\x03raw[$U#l")
        assert "attachment" in response.headers["content-disposition"]
        path = tmp_path / "session.slp"
        path.write_bytes(response.content)
        game = peppi_py.read_slippi(str(path))
        ids = np.asarray(game.frames.id)
        assert ids[0] == -123 and len(ids) >= 20 and game.start.stage == 31
    assert client.get("/api/sessions/nope/replay.slp").status_code == 404


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/main.js"' in page.text
    for name in ("main.js", "render.js", "input.js"):
        assert client.get(f"/static/{name}").status_code == 200, name
    info = client.get("/api/info").json()
    assert set(info["stages"]) == {"2", "3", "8", "28", "31", "32"} and info["replays"]
