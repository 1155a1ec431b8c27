"""The play page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A uvicorn server on 127.0.0.1 serves a tiny model; the page starts a session by itself; holding the WASD layout's
"right" key for a second must reach the server as player 1's stick (the state stream shows it) and move player 1;
a second page that opens the invite link plays port 2 with the arrow keys. The canvas must not be blank. With
MELEEWM_PLAY_SCREENSHOT=path (e.g. docs/play.png) the screenshot is also saved there; MELEEWM_PLAY_MODEL=checkpoint
serves that model instead of the test's tiny untrained one (for a README screenshot of the real model).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from meleewm.play.server import ReplayCatalog, create_app
from meleewm.play.session import load_play_model
from tests.play.test_session import play_checkpoint

CHROMIUM = os.environ.get("MELEEWM_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(replays, manifest, tmp_path_factory):
    import uvicorn

    checkpoint, data = play_checkpoint(replays, manifest, tmp_path_factory)
    model, _ = load_play_model(os.environ.get("MELEEWM_PLAY_MODEL") or checkpoint)   # e.g. the bundled model
    app = create_app(model, replays=ReplayCatalog(model.spec, data=data))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as error:  # noqa: BLE001 - a Chromium that cannot start here is a skip, not a failure
            pytest.skip(f"Chromium does not start: {error}")
        yield b
        b.close()


def state(page) -> dict:
    return page.evaluate("window.__meleewm_state")


def canvas_variance(page) -> float:
    return page.evaluate("""() => {
        const c = document.getElementById('screen');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0, s = 0, s2 = 0;
        for (let i = 0; i < d.length; i += 16) {
            const v = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
            n++; s += v; s2 += v * v;
        }
        return s2 / n - (s / n) ** 2;
    }""")


def test_keys_move_player_one_and_a_second_browser_plays_port_two(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 760})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_function("window.__meleewm_state && window.__meleewm_state.frame > -115", timeout=15000)
    page.focus("#screen")

    before = state(page)
    assert before["players"][0]["input"]["stick"] == [0, 0]
    page.keyboard.down("d")
    page.wait_for_function("window.__meleewm_state.players[0].input.stick[0] === 1", timeout=5000)
    held = state(page)
    time.sleep(1.0)
    after = state(page)
    page.keyboard.up("d")
    assert after["players"][0]["input"]["stick"] == [1, 0]
    assert after["frame"] >= held["frame"] + 30          # the loop ran at ~60 fps meanwhile
    assert after["players"][0]["x"] != held["players"][0]["x"]
    page.wait_for_function("window.__meleewm_state.players[0].input.stick[0] === 0", timeout=5000)

    # a second browser page joins through the invite link and plays port 2 with its own keyboard
    invite = page.get_attribute("#invite", "href")
    assert "join=" in invite
    second = browser.new_page()
    second.goto(invite)
    second.wait_for_function("window.__meleewm.session && window.__meleewm.session.your_ports[0] === 1",
                             timeout=10000)
    second.focus("#screen")
    second.keyboard.down("a")
    page.wait_for_function("window.__meleewm_state.players[1].input.stick[0] === -1", timeout=5000)
    second.keyboard.up("a")
    second.close()

    page.wait_for_timeout(200)
    shot = tmp_path / "play.png"
    page.screenshot(path=str(shot))
    wanted = os.environ.get("MELEEWM_PLAY_SCREENSHOT")
    if wanted:
        Path(wanted).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, wanted)
    assert shot.stat().st_size > 10_000
    assert canvas_variance(page) > 50.0
    assert not errors, errors
    assert page.evaluate("window.__meleewm.errors") == []
    page.close()
