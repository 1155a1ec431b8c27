"""Latency of one play tick at batch 1: both controllers, ``model.step()``, decode, the JSON state message.

    .venv/bin/python benchmarks/play_latency.py [--model M] [--frames 3600] [--threads 1]

Uses the bundled model (``meleewm.model.checkpoint.DEFAULT_MODEL``) when present, else ``--model``. A synthesized
Battlefield start, port 1 on the approach-and-attack bot and port 2 on the random bot (so inputs change), then
``--frames`` ticks back to back. Each tick is timed end to end: ``Session.tick()`` (read both controllers, encode
them, ``model.step()``, ``next_inputs``, ``decode_state`` + state-age rule, record for export) plus
``Session.message_json()`` (the message a client receives). Baseline in the same run: the bare ``model.step()``
on the same inputs (no controllers, no ``next_inputs``, no decode), so ``ratio`` = tick p50 / step p50.
Reports p50, p99 and max in ms and the share of ticks over the 16.7 ms frame budget; the last line is one JSON
object with the figures. Goal: p99 < 4 ms on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from meleewm.play.controllers import ApproachController, RandomController
from meleewm.model.checkpoint import DEFAULT_MODEL, load_model
from meleewm.play.session import Session

BUDGET_MS = 1000.0 / 60.0


def _stats(ms: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "max_ms": round(float(ms.max()), 4), "mean_ms": round(float(ms.mean()), 4),
            "over_budget": round(float((ms > BUDGET_MS).mean()), 6)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help=f"checkpoint (default {DEFAULT_MODEL} when present)")
    parser.add_argument("--frames", type=int, default=3600)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--warm", type=int, default=120, help="untimed ticks first")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model_path = DEFAULT_MODEL if DEFAULT_MODEL.is_file() else args.model
    if model_path is None:
        sys.exit(f"no bundled model at {DEFAULT_MODEL}; pass --model RUN/best.pt")
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
    x = {**session._last, **session._cur, "ctrl": session._last["ctrl"]}
    state = session._body
    with torch.inference_mode():
        for _ in range(args.warm):
            _, state = model.step(x, state)
        for i in range(args.frames):
            t0 = time.perf_counter()
            _, state = model.step(x, state)
            step_only[i] = (time.perf_counter() - t0) * 1e3

    t, s = _stats(tick), _stats(step_only)
    result = {
        "benchmark": "play_latency", "model": str(model_path), "params": model.num_params(),
        "body": model.config.body, "d_model": model.config.d_model, "n_layer": model.config.n_layer,
        "frames": args.frames, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "tick": t, "step": s, "ratio_p50": round(t["p50_ms"] / s["p50_ms"], 3),
        "message_bytes": round(size / args.frames), "goal_p99_ms": 4.0, "goal_met": t["p99_ms"] < 4.0,
    }
    print(f"model {model_path} ({result['params']:,} parameters, {model.config.body} d={model.config.d_model} "
          f"layers={model.config.n_layer}); {args.frames} ticks at batch 1, {result['threads']} thread(s)")
    for name, st in (("tick (controllers+step+decode+JSON)", t), ("bare model.step()", s)):
        print(f"  {name:38s} p50 {st['p50_ms']:.3f} ms  p99 {st['p99_ms']:.3f} ms  max {st['max_ms']:.3f} ms  "
              f"over 16.7 ms: {100 * st['over_budget']:.3f} %")
    print(f"  tick / step (p50): {result['ratio_p50']:.2f}x; state message {result['message_bytes']} bytes")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
