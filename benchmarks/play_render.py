"""Render cost of the play page per frame, in a real headless Chromium (performance.now() around the draw).

    .venv/bin/python benchmarks/play_render.py [--model M] [--replay FILE.slp --frame F] [--seconds 20]

Serves the model (the bundled one by default) on 127.0.0.1, opens the page in Debian's Chromium (Playwright) and
lets the game run for ``--seconds``: the page draws every state message it receives (60 per second) and times each
``Renderer.draw()``. With ``--replay`` the page starts as a takeover of that replay, so the real game's ghosts, the
divergence meter and the replay's items are drawn too. Then, still in the page, the same state is drawn back to back
``--loops`` times, and so is the empty canvas (no state: background and text only) — the baseline measured in the
same run, so ``ratio`` = full draw p50 / empty draw p50. Chromium runs with ``--disable-gpu`` (software canvas), as
the browser tests do. The last line is one JSON object with the figures. Goal: live p99 < 4 ms.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--replay", default=None, help="a .slp file: start as a takeover of it (ghosts drawn)")
    parser.add_argument("--frame", type=int, default=1200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--loops", type=int, default=600)
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args(argv)

    import uvicorn
    from playwright.sync_api import sync_playwright

    from meleewm.play.server import ReplayCatalog, create_app
    from meleewm.model.checkpoint import load_model, resolve_model
    from meleewm.play.session import use_play_threads

    use_play_threads()
    model = load_model(resolve_model(args.model)).model
    catalog = ReplayCatalog(model.spec, [args.replay] if args.replay else [])
    default_start = ({"kind": "replay", "replay": catalog.entries[0]["id"], "frame": args.frame}
                     if args.replay else None)
    app = create_app(model, replays=catalog, default_start=default_start)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("window.__meleewm_state && window.__meleewm_state.frame > -100", timeout=30000)
            page.wait_for_timeout(1000)
            page.evaluate("() => { const r = window.__meleewm.renderer; r.timeCount = 0; }")   # drop the warm-up
            page.wait_for_timeout(int(args.seconds * 1000))
            live = page.evaluate("window.__meleewm.renderer.renderStats()")
            drawn = page.evaluate("window.__meleewm.renderer.drawn")
            loops = page.evaluate("""(n) => {
                const r = window.__meleewm.renderer, st = r.state;
                const time = (state) => { const ms = [];
                    for (let i = 0; i < n; i++) { r.state = state; const t = performance.now(); r._draw();
                                                  ms.push(performance.now() - t); }
                    ms.sort((a, b) => a - b);
                    return {p50: ms[Math.floor(n / 2)], p99: ms[Math.floor(n * 0.99)], max: ms[n - 1]}; };
                const full = time(st), empty = time(null);
                r.state = st;
                return {full, empty};
            }""", args.loops)
            browser.close()
    finally:
        server.should_exit = True
    rnd = lambda d: {k: round(v, 4) for k, v in d.items()}  # noqa: E731
    result = {"benchmark": "play_render", "model": str(resolve_model(args.model)), "replay": args.replay,
              "seconds": args.seconds, "live": {**rnd({k: v for k, v in live.items() if k != "samples"}),
                                                "samples": live["samples"]},
              "drawn_last_frame": drawn, "loop_full": rnd(loops["full"]), "loop_empty": rnd(loops["empty"]),
              "ratio_p50": round(loops["full"]["p50"] / max(loops["empty"]["p50"], 1e-6), 3),
              "goal_p99_ms": 4.0, "goal_met": live["p99"] is not None and live["p99"] < 4.0}
    print(f"live: {live['samples']} draws, p50 {live['p50']:.3f} ms, p99 {live['p99']:.3f} ms, max {live['max']:.3f} ms "
          f"(drawn: {drawn})")
    print(f"back to back: full p50 {loops['full']['p50']:.3f} ms p99 {loops['full']['p99']:.3f} ms; empty canvas "
          f"p50 {loops['empty']['p50']:.3f} ms; ratio {result['ratio_p50']:.2f}x")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
