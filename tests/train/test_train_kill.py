"""A training process killed with SIGKILL leaves a loadable last.pt, and resuming from it gives the same weights
as an uninterrupted run to the same step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from meleewm.train.runs import read_run
from meleewm.model.checkpoint import read_checkpoint
from meleewm.train.trainer import Trainer
from tests.train.realdata import ROOT, TINY, tiny_config

# Short epochs (a last.pt every 3 steps) in a run far too long to finish before the kill.
LONG = ("data.batch_size=4", "optim.steps_per_epoch=3", "optim.epochs=1000", "self_forcing.prob=0.5",
        "eval.rollout_starts=4", "eval.max_val_batches=1", "log.tensorboard=false", "log.every_steps=1")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_then_resume(train_data, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "meleewm.cli", "train", "--data", str(train_data), "--config",
                                str(TINY), "--out", str(out), *LONG], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not (out / "last.pt").exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no last.pt after 90 s"
            time.sleep(0.05)
        time.sleep(0.1)  # into the next epoch, possibly in the middle of writing the next last.pt
        assert read_run(out)["status"] == "running"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert read_run(out)["status"] == f"dead (process {process.pid} is gone)"
    payload = read_checkpoint(out / "last.pt")  # complete and loadable
    reached = payload["position"]["step"]
    assert reached >= 3 and reached % 3 == 0, reached  # written at epoch ends only
    target = reached + 2
    resumed = Trainer(train_data, tiny_config(*LONG, f"optim.max_steps={target}"), out, resume=True,
                      progress=False).run()
    straight = Trainer(train_data, tiny_config(*LONG, f"optim.max_steps={target}"), tmp_path / "straight",
                       progress=False).run()
    assert resumed.steps == straight.steps == target
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == list(range(1, target + 1)), steps
    assert not list(out.glob(".*.pt.*.tmp")), list(out.glob(".*.tmp"))  # a save cut short is cleaned up
    a = torch.load(out / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    for name, value in b.items():
        assert torch.allclose(a[name], value, atol=1e-6), name
