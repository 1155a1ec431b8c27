"""torchrun with 2 CPU processes (gloo) trains the same weights as 1 process on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

from meleewm.train.trainer import Trainer
from tests.train.realdata import ROOT, TINY, tiny_config

# Below one epoch (steps_per_epoch 25), so the stop at max_steps writes only last.pt; self-forcing at p=0.5
# exercises the no-grad forward through DDP; augmentation on.
DDP = ("data.batch_size=4", "optim.max_steps=6", "self_forcing.prob=0.5", "self_forcing.max_unroll=2",
       "data.swap_players=true", "data.mirror=true", "log.every_steps=1", "log.tensorboard=false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_equal_one(train_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "meleewm.cli", "train", "--data", str(train_data),
               "--config", str(TINY), "--out", str(out), *DDP]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (out / "last.pt").is_file() and not (out / "best.pt").exists()

    single = Trainer(train_data, tiny_config(*DDP), tmp_path / "one", progress=False).run()
    assert single.steps == 6
    a = torch.load(out / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    assert a["position"]["step"] == b["position"]["step"] == 6
    worst = max((a["model"][k].float() - v.float()).abs().max().item() for k, v in b["model"].items())
    for name, value in b["model"].items():
        assert torch.allclose(a["model"][name], value, atol=1e-5, rtol=1e-4), (name, worst)
    # The models moved (so equality is not trivial), and the runs used self-forcing on some steps.
    init = Trainer(train_data, tiny_config(*DDP), tmp_path / "init", progress=False).model.state_dict()
    assert any(not torch.allclose(init[k], v, atol=1e-4) for k, v in b["model"].items())
    for run in (out, tmp_path / "one"):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        unrolls = [r["self_forcing_unroll"] for r in records if r["kind"] == "train"]
        assert len(unrolls) == 6 and any(unrolls), unrolls
    # Only rank 0 logs: one train record per step.
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6
    print(f"DDP vs 1 process: largest weight difference {worst:.2e}")
