"""Latency of one play tick at batch 1: both controllers, ``model.step()``, decode, the JSON state message.

    .venv/bin/python benchmarks/play_latency.py [--model M] [--frames 3600] [--threads 1]

Uses ``--model``, or else the bundled model (``meleewm.model.checkpoint.DEFAULT_MODEL``). A synthesized
Battlefield start, port 1 on the approach-and-attack bot and port 2 on the random bot (so inputs change), then
``--frames`` ticks back to back. Each tick is timed end to end: ``Session.tick()`` (read both controllers, encode
them, ``model.step()``, ``next_inputs``, ``decode_state`` + state-age rule, record for export) plus
``Session.message_json()`` (the message a client receives). Baseline in the same run: the bare ``model.step()``
on the same inputs (no controllers, no ``next_inputs``, no decode), so ``ratio`` = tick p50 / step p50.
Reports p50, p99 and max in ms and the share of ticks over the 16.7 ms frame budget. Then ``--sessions`` games
at once (the server's catching-up round when ticks queue on its model thread): the time of a round ticked one
session after another against the same round as one batched step (``tick_together``), alternating, so the ratio
is measured under the same load. The last line is one JSON object with the figures. Goal: p99 < 4 ms on 2 CPU
cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from meleewm.play.controllers import ApproachController, RandomController
from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
from meleewm.play.session import Session, tick_together

BUDGET_MS = 1000.0 / 60.0


def _stats(ms: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "max_ms": round(float(ms.max()), 4), "mean_ms": round(float(ms.mean()), 4),
            "over_budget": round(float((ms > BUDGET_MS).mean()), 6)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help=f"checkpoint (default: the bundled {DEFAULT_MODEL})")
    parser.add_argument("--frames", type=int, default=3600)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--warm", type=int, default=120, help="untimed ticks first")
    parser.add_argument("--sessions", type=int, default=2, help="games of a round ticked together (0: skip)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model_path = args.model or DEFAULT_MODEL
    if not Path(model_path).is_file():
        sys.exit(f"no model at {model_path}; pass --model RUN/best.pt")
    model = load_model(model_path).model

    session = Session(model)
    session.set_controller(0, ApproachController())
    session.set_controller(1, RandomController(seed=1))
    session.start_synthetic(31, (20, 2), mode="entry")
    for _ in range(args.warm):
        session.tick()
        session.message_json()
    session.start_synthetic(31, (20, 2), mode="entry")

    tick = np.zeros(args.frames)
    step_only = np.zeros(args.frames)
    size = 0
    for i in range(args.frames):
        t0 = time.perf_counter()
        session.tick()
        text = session.message_json(session="bench", fps=60.0, paused=False)
        tick[i] = (time.perf_counter() - t0) * 1e3
        size += len(text)

    # Baseline: the bare model.step() on the session's last inputs, the same number of times.
    x = session._cur.replace(ctrl=session._ctrl_cache[1])   # the current frame, the last controllers
    state = session._body
    with torch.inference_mode():
        for _ in range(args.warm):
            _, state = model.step(x, state)
        for i in range(args.frames):
            t0 = time.perf_counter()
            _, state = model.step(x, state)
            step_only[i] = (time.perf_counter() - t0) * 1e3

    t, s = _stats(tick), _stats(step_only)
    rounds = _rounds(model, args.sessions, args.frames // 2, args.warm) if args.sessions > 1 else None
    result = {
        "benchmark": "play_latency", "model": str(model_path), "params": model.num_params(),
        "body": model.config.body, "d_model": model.config.d_model, "n_layer": model.config.n_layer,
        "frames": args.frames, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "tick": t, "step": s, "ratio_p50": round(t["p50_ms"] / s["p50_ms"], 3),
        "message_bytes": round(size / args.frames), "goal_p99_ms": 4.0, "goal_met": t["p99_ms"] < 4.0,
        "rounds": rounds,
    }
    print(f"model {model_path} ({result['params']:,} parameters, {model.config.body} d={model.config.d_model} "
          f"layers={model.config.n_layer}); {args.frames} ticks at batch 1, {result['threads']} thread(s)")
    for name, st in (("tick (controllers+step+decode+JSON)", t), ("bare model.step()", s)):
        print(f"  {name:38s} p50 {st['p50_ms']:.3f} ms  p99 {st['p99_ms']:.3f} ms  max {st['max_ms']:.3f} ms  "
              f"over 16.7 ms: {100 * st['over_budget']:.3f} %")
    print(f"  tick / step (p50): {result['ratio_p50']:.2f}x; state message {result['message_bytes']} bytes")
    if rounds:
        print(f"  a round of {rounds['sessions']} sessions: one after another p50 {rounds['alone']['p50_ms']:.3f} ms, "
              f"batched p50 {rounds['together']['p50_ms']:.3f} ms ({rounds['speedup_p50']:.2f}x)")
    print(json.dumps(result))
    return result


def _rounds(model, n: int, frames: int, warm: int) -> dict:
    """Rounds of ``n`` sessions: each ticked alone, then all in one batched step, alternating round by round."""
    def sessions():
        made = []
        for k in range(n):
            session = Session(model)
            session.set_controller(0, ApproachController())
            session.set_controller(1, RandomController(seed=k))
            session.start_synthetic(31, (20, 2), mode="entry")
            made.append(session)
        return made

    alone, together = sessions(), sessions()
    times = {"alone": np.zeros(frames), "together": np.zeros(frames)}
    for i in range(-warm, frames):
        t0 = time.perf_counter()
        for session in alone:
            session.tick()
            session.message_json()
        t1 = time.perf_counter()
        tick_together(together)
        for session in together:
            session.message_json()
        t2 = time.perf_counter()
        if i >= 0:
            times["alone"][i], times["together"][i] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
    alone_stats, together_stats = _stats(times["alone"]), _stats(times["together"])
    return {"sessions": n, "alone": alone_stats, "together": together_stats,
            "speedup_p50": round(alone_stats["p50_ms"] / together_stats["p50_ms"], 3)}


if __name__ == "__main__":
    main()
