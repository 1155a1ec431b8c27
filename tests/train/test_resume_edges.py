"""Resume edge cases: a run killed before its first checkpoint, partial checkpoint files, the log of a resumed
run, and telling a killed run from a running one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.train.runs import read_run
from meleewm.train.liveness import HEARTBEAT, STALE_AFTER_S, Heartbeat, _process_start
from meleewm.train.trainer import Trainer
from tests.train.realdata import TINY, tiny_config

# Epochs of 3 steps (a last.pt at steps 3, 6, ...), every step logged.
EPOCHS = ("data.batch_size=4", "optim.steps_per_epoch=3", "optim.epochs=5", "eval.rollout_starts=2",
          "eval.max_val_batches=1", "log.every_steps=1", "self_forcing.prob=0.5")


class Killed(Exception):
    """Stands for a SIGKILL: the process stops at once, saving nothing."""


def killed_at(step: int):
    def on_step(trainer, values):
        if trainer.step == step:
            raise Killed
    return on_step


def log_steps(run, kind: str = "train") -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [record["step"] for record in map(json.loads, lines) if record["kind"] == kind]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_resume_before_the_first_checkpoint_starts_fresh(train_data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Killed):
        Trainer(train_data, tiny_config(*EPOCHS), run, on_step=killed_at(2), progress=False).run()
    partial = run / ".last.pt.0123456789abcdef0123456789abcdef.tmp"
    partial.write_bytes(b"PK\x03\x04 the first half of a checkpoint")  # killed in the middle of its first save
    assert log_steps(run) == [1, 2] and not (run / "last.pt").exists()

    result = cli("train", "--data", train_data, "--config", TINY, "--out", run, "--resume", "--no-eval", *EPOCHS,
                 "optim.max_steps=1", "log.tensorboard=false")
    assert result.exit_code == 0, result.output
    assert "has no last.pt" in result.output and "starting fresh" in " ".join(result.output.split())
    assert not partial.exists() and (run / "last.pt").is_file()
    assert log_steps(run) == [1]  # the new run's step, not the dead run's


def test_resumed_log_has_each_step_once(train_data, tmp_path):
    """Killed at step 5 (last.pt of step 3): the resumed run replays steps 4 and 5, and the log keeps one record
    per step; partial checkpoint files are removed."""
    run = tmp_path / "run"
    with pytest.raises(Killed):
        Trainer(train_data, tiny_config(*EPOCHS), run, on_step=killed_at(5), progress=False).run()
    assert log_steps(run) == [1, 2, 3, 4, 5] and log_steps(run, "val") == [3]
    partials = [run / ".last.pt.feedfacefeedfacefeedfacefeedface.tmp", run / ".best.pt.0badc0de.tmp"]
    for path in partials:
        path.write_bytes(b"partial")
    resumed = Trainer(train_data, tiny_config(*EPOCHS, "optim.max_steps=7"), run, resume=True, progress=False)
    assert resumed.resumed and resumed.step == 3
    resumed.run()
    assert log_steps(run) == list(range(1, 8)) and log_steps(run, "val") == [3, 6]
    assert not any(path.exists() for path in partials)


@pytest.fixture
def running_card(train_data, tmp_path):
    """A run folder whose card says "running" (a plan card, marked as a launched run)."""
    run = tmp_path / "runs" / "r"
    result = cli("plan", "--data", train_data, "--config", TINY, "--out", run, "--probe-steps", 0)
    assert result.exit_code == 0, result.output
    card = json.loads((run / "card.json").read_text())
    (run / "card.json").write_text(json.dumps({**card, "status": "running"}))
    return run


def write_heartbeat(run, **fields) -> None:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "process_started": _process_start(os.getpid()),
              "updated": time.time()}
    (run / HEARTBEAT).write_text(json.dumps({**record, **fields}))


def test_runs_tells_a_dead_run_from_a_live_one(running_card):
    run = running_card
    assert read_run(run)["status"] == "dead (no heartbeat.json: its process is gone)"
    beat = Heartbeat(run)
    beat.start()
    assert read_run(run)["status"] == "running"
    beat.stop()
    assert not (run / HEARTBEAT).exists()

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_heartbeat(run, pid=int(gone.stdout))
    assert read_run(run)["status"] == f"dead (process {int(gone.stdout)} is gone)"
    write_heartbeat(run, process_started="1")  # this pid, but another process's start time: a reused pid
    assert read_run(run)["status"].startswith("dead (process")
    write_heartbeat(run, host="another-host", updated=time.time() - STALE_AFTER_S - 5)
    assert read_run(run)["status"].startswith("dead (no heartbeat from another-host for")
    write_heartbeat(run, host="another-host")
    assert read_run(run)["status"] == "running"
    listed = cli("runs", run.parent)
    assert listed.exit_code == 0 and "running" in listed.output


def test_a_second_training_process_is_refused(train_data, running_card):
    run = running_card
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_heartbeat(run, pid=other.pid, process_started=_process_start(other.pid))
        result = cli("train", "--data", train_data, "--config", TINY, "--out", run, "--no-eval", *EPOCHS,
                     "optim.max_steps=1")
        assert result.exit_code == 2 and f"process {other.pid}" in result.output and "is in use" in result.output
    finally:
        other.kill()
        other.wait()
    assert not (run / "last.pt").exists()
