"""The play page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

A uvicorn server on 127.0.0.1 serves a tiny model and a replay folder; the page starts a session by itself. Checked:
holding the WASD layout's "right" key reaches the server as player 1's stick and moves player 1, also after a
dropdown kept the focus (and the dropdown does not change); a second page that opens the invite link plays port 2;
the camera keeps both fighters in view; a replay picked from the list starts a takeover and the real game's ghosts
are drawn; a dropped bad file gets a message; a gamepad button bound on the mapping screen moves the character. With
MELEEWM_PLAY_SCREENSHOTS=folder (e.g. docs) the screenshots play.png, play-replays.png and play-takeover.png are
saved there; MELEEWM_PLAY_MODEL=checkpoint serves that model instead of the test's tiny untrained one (for the
README's screenshots of the real model).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from meleewm.play.library import ReplayLibrary
from meleewm.play.server import ReplayCatalog, create_app
from meleewm.model.checkpoint import load_model, resolve_model
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
    model = load_model(resolve_model(os.environ.get("MELEEWM_PLAY_MODEL") or checkpoint)).model   # e.g. bundled
    # The tiny untrained model flies off the stage within seconds; with the rules on it would spend the test KO'd
    # and waiting to respawn, so the page is tested on the model alone (the rules have tests of their own).
    app = create_app(model, replays=ReplayCatalog(model.spec, data=data), library=ReplayLibrary(data.parent / "replays"),
                     rules=False)
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


def screenshot(page, tmp_path, name: str) -> Path:
    """A PNG of the page (kept in MELEEWM_PLAY_SCREENSHOTS when set)."""
    shot = tmp_path / name
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shot))
    wanted = os.environ.get("MELEEWM_PLAY_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(wanted) / name)
    return shot


def open_page(browser, server, query: str = "", init_script: str | None = None):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    if init_script:
        page.add_init_script(init_script)
    page.goto(server + "/" + query)
    page.wait_for_function("window.__meleewm_state && window.__meleewm_state.frame > -115", timeout=15000)
    return page


def hold_right(page, ms: int) -> tuple[dict, dict]:
    """Hold player 1's right (D) for ``ms`` once the game has seen it: the states when it took hold and after."""
    page.keyboard.down("d")
    page.wait_for_function("window.__meleewm_state.players[0].input.stick[0] === 1", timeout=5000)
    held = state(page)
    page.wait_for_timeout(ms)
    after = state(page)
    page.keyboard.up("d")
    return held, after


def test_keys_move_player_one_and_a_second_browser_plays_port_two(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 760})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_function("window.__meleewm_state && window.__meleewm_state.frame > -115", timeout=15000)
    page.focus("#screen")

    before = state(page)
    assert before["players"][0]["input"]["stick"] == [0, 0]
    held, after = hold_right(page, 1000)
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
    shot = screenshot(page, tmp_path, "play.png")
    assert shot.stat().st_size > 10_000
    assert canvas_variance(page) > 50.0
    assert not errors, errors
    assert page.evaluate("window.__meleewm.errors") == []
    page.close()


def test_game_keys_reach_the_game_after_a_dropdown_was_used(server, browser):
    page = open_page(browser, server)
    page.select_option("#ctrl-1", "idle")              # a dropdown used with the mouse...
    page.wait_for_function("window.__meleewm.session.controllers[1].kind === 'idle'", timeout=5000)
    page.focus("#ctrl-1")                              # ...and still (or again) holding the focus
    page.keyboard.press("ArrowDown")                   # player 2's "down": must not pick the next option
    held, moved = hold_right(page, 700)
    assert moved["players"][0]["x"] != held["players"][0]["x"]
    assert page.eval_on_selector("#ctrl-1", "e => e.value") == "idle"
    page.wait_for_timeout(200)
    assert page.evaluate("window.__meleewm.session.controllers[1].kind") == "idle"
    assert not page.errors and page.evaluate("window.__meleewm.errors") == []
    page.close()


def test_the_camera_keeps_both_fighters_in_view(server, browser):
    """The session is paused and the renderer is given states with known positions: the camera must frame both
    fighters, zoom with their distance and stay inside the blast zones, also on the frame a fighter jumps away."""
    page = open_page(browser, server)
    page.click("#pause")
    page.wait_for_function("window.__meleewm.session.paused", timeout=5000)
    check = """([a, b, frames]) => {
        const r = window.__meleewm.renderer, st = JSON.parse(JSON.stringify(window.__meleewm_state));
        st.players[0].x = a[0]; st.players[0].y = a[1]; st.players[1].x = b[0]; st.players[1].y = b[1];
        st.players.forEach(p => { p.pose = "plain"; });
        r.state = st;
        for (let i = 0; i < frames; i++) r.draw();
        const g = r.stages[String(st.stage)];
        return {at: [r.project(...a), r.project(...b)], camera: r.camera, blast: g.blast,
                W: r.canvas.width, H: r.canvas.height - 90};
    }"""
    widths = {}
    cases = {"close": ([-10, 0], [12, 0]), "apart": ([-120, 0], [110, 40]), "tall": ([0, 140], [5, -60]),
             "by a blast zone": ([-220, 10], [-30, 0]), "jump": ([-10, 0], [150, 100])}
    for name, (a, b) in cases.items():
        frames = 1 if name == "jump" else 60            # "jump": one frame after "by a blast zone"
        out = page.evaluate(check, [a, b, frames])
        left, right, top, bottom = out["blast"]
        cam = out["camera"]
        assert left - 1e-6 <= cam["cx"] - cam["w"] / 2 and cam["cx"] + cam["w"] / 2 <= right + 1e-6, name
        for x, y in out["at"]:
            assert 0 <= x <= out["W"] and 0 <= y <= out["H"], (name, out)
        widths[name] = cam["w"]
    assert widths["close"] < widths["apart"] < out["blast"][1] - out["blast"][0]
    page.close()


def test_a_replay_picked_from_the_list_starts_a_takeover_with_ghosts(server, browser, tmp_path):
    page = open_page(browser, server)
    page.wait_for_selector("#library tr.pick", timeout=10000)
    page.click("#library tr.pick")
    page.wait_for_selector("#timeline-box:not([hidden])", timeout=20000)
    page.eval_on_selector("#timeline", "t => { t.value = Number(t.min) + 1200; t.dispatchEvent(new Event('input')); }")
    page.wait_for_function("window.__meleewm.renderer.state && window.__meleewm.renderer.state.preview", timeout=10000)
    page.wait_for_timeout(300)
    screenshot(page, tmp_path, "play-replays.png")
    frame = int(page.eval_on_selector("#timeline", "t => t.value"))
    page.click("#takeover")
    page.wait_for_function(
        f"window.__meleewm_state.real && window.__meleewm_state.frame > {frame + 30}"
        " && window.__meleewm.renderer.drawn.ghosts === 2", timeout=20000)
    st = state(page)
    assert st["real"]["divergence"]["frames"] >= 30
    assert page.evaluate("window.__meleewm.session.controllers[1].kind") == "replay"
    page.wait_for_timeout(300)
    screenshot(page, tmp_path, "play-takeover.png")
    assert not page.errors and page.evaluate("window.__meleewm.errors") == []
    page.close()


def test_a_dropped_bad_file_gives_a_message(server, browser):
    page = open_page(browser, server)
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array([1, 2, 3, 4, 5])], "broken.slp"));
        document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""")
    page.wait_for_selector("#replay-message.error", timeout=10000)
    assert "broken.slp: not a Slippi replay" in page.inner_text("#replay-message")
    frame = state(page)["frame"]
    page.wait_for_function(f"window.__meleewm_state.frame > {frame + 10}", timeout=5000)   # the game goes on
    assert not page.errors
    page.close()


# A scripted gamepad: navigator.getGamepads returns one pad whose buttons the test presses.
FAKE_PAD = """
window.__pad = {id: "scripted pad", index: 0, connected: true, mapping: "standard", timestamp: 0,
                axes: [0, 0, 0, 0], buttons: Array.from({length: 17}, () => ({pressed: false, touched: false, value: 0}))};
window.__press = (i, on) => { window.__pad.buttons[i] = {pressed: on, touched: on, value: on ? 1 : 0};
                              window.__pad.timestamp += 1; };
navigator.getGamepads = () => [window.__pad, null, null, null];
"""


def test_a_mapped_gamepad_button_moves_the_character(server, browser):
    page = open_page(browser, server, init_script=FAKE_PAD)
    page.select_option("#ctrl-0", "gamepad:0")
    page.wait_for_function("window.__meleewm.session.controllers[0].kind === 'gamepad'", timeout=5000)
    page.click("#pad-mapping summary")
    page.click("#pad-map tr[data-target='STICK_RIGHT'] button")
    page.evaluate("window.__press(10, true)")          # button 10 (left stick click) becomes "stick right"
    page.wait_for_function("document.querySelector(\"#pad-map tr[data-target='STICK_RIGHT'] td:nth-child(2)\")"
                           ".textContent === 'button 10'", timeout=5000)
    held = state(page)
    page.wait_for_function("window.__meleewm_state.players[0].input.stick[0] === 1", timeout=5000)
    page.wait_for_timeout(700)
    moved = state(page)
    assert moved["players"][0]["x"] != held["players"][0]["x"]
    assert "scripted pad" in page.inner_text("#pad-live")
    page.evaluate("window.__press(10, false)")
    page.wait_for_function("window.__meleewm_state.players[0].input.stick[0] === 0", timeout=5000)
    saved = page.evaluate("localStorage.getItem('meleewm.gamepad-mapping')")
    assert '"STICK_RIGHT":{"button":10}' in saved
    page.reload()                                      # the mapping survives a reload
    page.wait_for_function("window.__meleewm && window.__meleewm.padMapping.STICK_RIGHT.button === 10",
                           timeout=10000)
    assert not page.errors
    page.close()


def test_every_fighter_draws_every_cue_and_a_ko_bursts(server, browser):
    """Each character's silhouette in each pose (plus shield, hitlag, hitstun, invulnerability flags) draws without
    an error; a fighter that turns dead leaves a KO burst; the respawn pose draws its halo."""
    page = open_page(browser, server)
    page.click("#pause")
    page.wait_for_function("window.__meleewm.session.paused", timeout=5000)
    out = page.evaluate("""() => {
        const r = window.__meleewm.renderer, base = JSON.parse(JSON.stringify(window.__meleewm_state));
        const poses = ["plain", "crouch", "shield", "attack", "special", "tumble", "hurt", "ledge", "lying", "dodge",
                       "grab", "entry", "respawn"];
        let drawn = 0;
        for (let c = 0; c <= 25; c++) {
            for (const pose of poses) {
                const st = JSON.parse(JSON.stringify(base));
                st.players.forEach((p, i) => Object.assign(p, {character: c, pose, x: i ? 20 : -20, y: 0,
                    shielding: pose === "shield", shield: 30, in_hitlag: i === 0, hitstun: pose === "hurt",
                    invulnerable: pose === "respawn", attack_direction: ["forward", "up", "down", "back", "around"][c % 5],
                    action_frame: 3}));
                r.state = st;
                r.draw();
                drawn += r.drawn.fighters;
            }
        }
        const st = JSON.parse(JSON.stringify(base));
        st.players[0].pose = "plain"; r.state = st; r.draw();
        const dead = JSON.parse(JSON.stringify(st));
        dead.players[0].pose = "dead"; dead.players[0].stocks -= 1; r.state = dead; r.draw();
        return {drawn, effects: r.effects.length, fightersWhenDead: r.drawn.fighters};
    }""")
    assert out["drawn"] == 26 * 13 * 2
    assert out["effects"] == 1 and out["fightersWhenDead"] == 1
    assert not page.errors
    page.close()
