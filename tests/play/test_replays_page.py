"""Replays in the play page: the folder listing, opening and dropping a .slp, the timeline's preview, a takeover's
real game beside the dream (ghosts and divergence), and the play/dream command-line checks around them."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from meleewm.cli import app as cli_app
from meleewm.play import server as server_module
from meleewm.play.library import LibraryError, ReplayLibrary, default_replay_folder
from meleewm.play.server import ReplayCatalog, create_app, listen
from meleewm.play.session import Session
from meleewm.data.starts import synthetic_columns
from meleewm.play.starts import ReplayGame
from meleewm.play.view import player_view, pose_of
from tests.conftest import extract_members
from tests.play.test_server import recv
from tests.play.test_session import dataset, game_id, model, play_files, replay  # noqa: F401 - shared fixtures

PAGE = {"X-Meleewm": "1"}


@pytest.fixture(scope="module")
def replay_folder(play_files, tmp_path_factory):
    """The dataset's two real .slp files, a corrupt one and a non-replay, with modification times in a known order."""
    source = play_files[1].parent / "replays"
    folder = tmp_path_factory.mktemp("library")
    files = sorted(source.glob("*.slp"))
    assert len(files) == 2
    nested = folder / "2024-01"
    nested.mkdir()
    for i, f in enumerate(files):
        target = (nested if i else folder) / f"game{i}.slp"
        target.write_bytes(f.read_bytes())
        os.utime(target, (1_700_000_000 + 100 * i, 1_700_000_000 + 100 * i))
    bad = folder / "broken.slp"
    bad.write_bytes(b"this is not a replay")
    os.utime(bad, (1_700_000_050, 1_700_000_050))
    (folder / "notes.txt").write_text("not listed")
    return folder


@pytest.fixture(scope="module")
def client(model, play_files, replay_folder):
    app = create_app(model, replays=ReplayCatalog(model.spec, data=play_files[1]),
                     library=ReplayLibrary(replay_folder))
    with TestClient(app) as c:
        yield c


def test_default_replay_folder_is_the_slippi_launchers(tmp_path):
    assert default_replay_folder(tmp_path, "win32") == tmp_path / "Documents" / "Slippi"
    assert default_replay_folder(tmp_path, "linux") == tmp_path / "Slippi"
    assert default_replay_folder(tmp_path, "darwin") == tmp_path / "Slippi"
    with pytest.raises(LibraryError, match="does not exist"):
        ReplayLibrary(tmp_path / "nope")


def test_listing_is_newest_first_bounded_and_reads_headers_of_one_page(replay_folder):
    library = ReplayLibrary(replay_folder)
    page = library.listing(0, 2)
    assert page["total"] == 3 and [e["name"] for e in page["entries"]] == ["game1.slp", "broken.slp"]
    good, bad = page["entries"]
    assert good["stage_name"] and len(good["char_names"]) == 2 and good["duration_s"] > 30
    assert good["date"] and good["frames"] > 1800
    assert "not a readable Slippi replay" in bad["error"]
    assert len(library._headers) == 2            # the third file's header is not read until asked for
    assert library.listing(2, 50)["entries"][0]["name"] == "game0.slp"
    capped = ReplayLibrary(replay_folder, limit=1)
    assert [e["name"] for e in capped.listing()["entries"]] == ["game1.slp"]
    with pytest.raises(LibraryError, match="no listed replay"):
        library.path("0123456789abcdef")


def test_open_a_listed_replay_preview_a_frame_and_take_over(client):
    listing = client.get("/api/library").json()
    good = next(e for e in listing["entries"] if "error" not in e)
    assert client.post(f"/api/library/{good['id']}/open").status_code == 403      # not from the page
    entry = client.post(f"/api/library/{good['id']}/open", headers=PAGE).json()
    assert entry["chars"] == good["chars"] and entry["last_frame"] > entry["first_frame"]
    frame = entry["first_frame"] + 700
    view = client.get(f"/api/replays/{entry['id']}/frames/{frame}").json()
    assert view["frame"] == frame and len(view["players"]) == 2 and view["players"][0]["pose"]
    assert client.get(f"/api/replays/{entry['id']}/frames/99999999").status_code == 404
    bad = next(e for e in listing["entries"] if "error" in e)
    reply = client.post(f"/api/library/{bad['id']}/open", headers=PAGE)
    assert reply.status_code == 400 and "not a Slippi replay" in reply.json()["detail"]

    with client.websocket_connect("/ws") as ws:
        recv(ws, "hello")
        ws.send_json({"type": "new", "start": {"kind": "replay", "replay": entry["id"], "frame": frame},
                      "controllers": [{"kind": "keyboard"}, {"kind": "replay"}]})
        state = recv(ws, "state", where=lambda m: m["frame"] >= frame + 3)
        real = state["real"]
        assert not real["ended"] and real["frame"] == state["frame"]
        assert [p["port"] for p in real["players"]] == [p["port"] for p in state["players"]]
        div = real["divergence"]
        assert div["frames"] == state["frame"] - frame + 1          # one comparison per frame
        assert len(div["distance"]) == 2 and len(div["action_agreement"]) == 2


def test_dropped_files_bad_ones_get_a_clear_message(client, replay_folder, monkeypatch):
    bad = client.post("/api/replays", content=b"garbage bytes", headers={**PAGE, "X-Filename": "oops%20x.slp"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("oops x.slp: not a Slippi replay")
    assert client.post("/api/replays", content=b"x").status_code == 403
    monkeypatch.setattr(server_module, "MAX_UPLOAD_BYTES", 1000)
    big = client.post("/api/replays", content=b"x" * 1001, headers=PAGE)
    assert big.status_code == 413 and "upload limit" in big.json()["detail"]
    monkeypatch.undo()
    data = (replay_folder / "2024-01" / "game1.slp").read_bytes()
    entry = client.post("/api/replays", content=data, headers={**PAGE, "X-Filename": "game1.slp"}).json()
    assert "game1.slp" in entry["label"]
    assert client.get(f"/api/replays/{entry['id']}/frames/{entry['first_frame'] + 1}").status_code == 200


def test_a_takeover_compares_with_the_real_game_until_it_ends(model, replay):
    session = Session(model)
    session.set_controller(0, replay.controller(0))
    session.set_controller(1, replay.controller(1))
    start = replay.last_frame - 3
    session.start_replay(replay, start)
    assert session.real["divergence"]["frames"] == 1
    for _ in range(3):
        session.tick()
    session.message()                                   # messages do not count as comparisons
    assert session.real["divergence"]["frames"] == 4 and not session.real["ended"]
    dream, real = session.players()[0], session.real["players"][0]
    assert real == replay.view_at(session.frame)["players"][0]
    assert session.real["divergence"]["distance"][0] == pytest.approx(
        math.hypot(dream["x"] - real["x"], dream["y"] - real["y"]), abs=0.01)
    session.tick()                                      # past the replay's last frame
    assert session.real["ended"] and session.real["divergence"]["frames"] == 4
    session.start_synthetic(31, (20, 2), "standing")
    assert session.real is None and session.message()["real"] is None


def test_poses_name_the_cues():
    assert pose_of(0) == "dead" and pose_of(12) == "respawn" and pose_of(40) == "crouch"
    assert pose_of(179) == "shield" and pose_of(0x41) == "attack" and pose_of(38) == "tumble"
    assert pose_of(253) == "ledge" and pose_of(341) == "special" and pose_of(14) == "plain"


def test_player_view_reads_unknown_hurtbox_as_vulnerable():
    st, age = synthetic_columns(31, (20, 2), "standing")
    st["post_state_age"] = age
    st["post_hurtbox_state"] = np.array([-1, 1])        # unknown (older files) and invulnerable
    views = [player_view(st, p, c, p + 1, "x") for p, c in enumerate((20, 2))]
    assert [v["invulnerable"] for v in views] == [False, True]
    assert views[0]["pose"] == "plain" and views[0]["facing"] == 1 and views[1]["facing"] == -1


def test_the_real_games_items_are_drawn_in_a_takeover(model, replays, tmp_path):
    """peppi's v3.16.slp (Fox on port 1 vs Falco on Yoshi's Story, 315 frames) has Fox's laser and another item of
    his, and the stage's own items (owner -1): view_at lists them with the owner as the page colours it."""
    (path,) = extract_members(replays / "fixtures.zip", ["hohav-peppi/tests/data/v3.16.slp"], tmp_path)
    game = ReplayGame.from_bytes(path.read_bytes(), path.name, model.spec)
    seen = [it for f in range(game.first_frame, game.last_frame + 1) for it in game.view_at(f)["items"]]
    owners = {(it["owner"], it["type"]) for it in seen}
    assert (1, 54) in owners and (0, 210) in owners          # Fox's laser (player 1), a stage item (nobody's)
    assert all(math.isfinite(it["x"]) and math.isfinite(it["y"]) for it in seen)


def test_replay_game_from_bytes_rejects_junk(model):
    with pytest.raises(ValueError, match="junk.slp: not a Slippi replay"):
        ReplayGame.from_bytes(b"\x00" * 64, "junk.slp", model.spec)


def test_listen_reports_the_address_it_really_listens_on():
    sock, url = listen("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert url == f"http://127.0.0.1:{port}/" and port != 0
        with pytest.raises(OSError):
            listen("127.0.0.1", port)               # taken: an error before anything is served
    finally:
        sock.close()


def test_play_and_dream_fail_early_with_clear_errors(play_files, game_id, tmp_path):
    checkpoint, data = play_files
    result = CliRunner().invoke(cli_app, ["play", "--model", str(checkpoint), "--data", str(data), "--replay",
                                          game_id[:10], "--frame", "999999", "--port", "0"])
    assert result.exit_code == 2 and "--frame 999999 is not a frame" in " ".join(result.output.split())
    result = CliRunner().invoke(cli_app, ["play", "--model", str(checkpoint), "--replays", str(tmp_path / "no")])
    assert result.exit_code == 2 and "does not exist" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = CliRunner().invoke(cli_app, ["play", "--model", str(checkpoint), "--port",
                                              str(taken.getsockname()[1])])
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1" in result.output
    result = CliRunner().invoke(cli_app, ["dream", "--model", str(checkpoint), "--data", str(data), "--replay",
                                          game_id[:10], "--frame", "300", "--frames", "2", "--export",
                                          "/nonexistent_dir/x.slp"])
    assert result.exit_code == 2 and "the folder /nonexistent_dir does not exist" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
