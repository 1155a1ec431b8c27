"""A checkpoint is plain data: a pickle that would run code when loaded (here: write a file) is refused with one
clear line by every command that loads checkpoints, and the file is never written."""

from __future__ import annotations

import pathlib
import pickle
import pickletools
import random
import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from meleewm.cli import app
from meleewm.model.checkpoint import DEFAULT_MODEL, CheckpointError, load_model, read_checkpoint
from meleewm.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from tests.train.conftest import FAST
from tests.train.realdata import TINY, tiny_config


class WritesFile:
    """Unpickling this calls ``Path(marker).write_text(...)``: the shape of any code-execution payload."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (pathlib.Path(self.marker), "code ran while loading a checkpoint")


def hostile_files(folder: pathlib.Path, checkpoint: pathlib.Path, marker: pathlib.Path) -> dict[str, pathlib.Path]:
    """Three hostile files: the payload alone (torch.save), the payload inside a working checkpoint, a raw pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.pt" for name in ("bare", "inside", "raw")}
    torch.save(WritesFile(marker), files["bare"])
    payload = torch.load(checkpoint, weights_only=True)
    payload["metrics"]["extra"] = WritesFile(marker)
    torch.save(payload, files["inside"])
    files["raw"].write_bytes(pickle.dumps({"format": "meleewm-checkpoint", "model": WritesFile(marker)}))
    return files


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(text: str) -> str:
    return " ".join(text.split())


def pickle_bytes(path: pathlib.Path) -> bytes:
    """The pickle inside a file: a torch.save zip's ``data.pkl``, or the file itself."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    return path.read_bytes()


def test_the_payloads_are_live(checkpoint, tmp_path):
    """Each payload asks the unpickler to import and call ``pathlib.Path.write_text`` (so the refusals below are
    real). Read from the pickle's opcodes, never by unpickling it."""
    for name, path in hostile_files(tmp_path / "files", checkpoint, tmp_path / "probe").items():
        ops = list(pickletools.genops(pickle_bytes(path)))
        strings = {arg for _, arg, _ in ops if isinstance(arg, str)}
        assert {"pathlib", "write_text"} <= {part for s in strings for part in s.replace(".", " ").split()}, name
        assert any(op.name == "REDUCE" for op, _, _ in ops), name
        assert not (tmp_path / "probe").exists(), name


def test_read_checkpoint_refuses_code(checkpoint, tmp_path):
    marker = tmp_path / "marker"
    for name, path in hostile_files(tmp_path / "files", checkpoint, marker).items():
        with pytest.raises(CheckpointError) as error:
            read_checkpoint(path)
        message = str(error.value)
        assert "\n" not in message and str(path) in message, message
        if name == "raw":
            assert "not a torch.save file" in message, message
        else:
            assert "refused" in message and "pathlib" in message, message
        assert not marker.exists(), name


@pytest.mark.parametrize("placement", ["last.pt", "best.pt", "model file"])
def test_every_command_refuses_code(train_data, checkpoint, tmp_path, placement):
    """Hostile files as a run folder's last.pt or best.pt, or as a model file given by path."""
    marker = tmp_path / "marker"
    runs = tmp_path / "runs"
    for name, hostile in hostile_files(tmp_path / "files", checkpoint, marker).items():
        run = runs / f"evil-{name}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("name: evil\n")  # a run without a card: `runs` reads its checkpoint
        target = run / ("last.pt" if placement == "model file" else placement)
        target.write_bytes(hostile.read_bytes())
        model = hostile if placement == "model file" else run
        results = {
            "eval": cli("eval", model, "--data", train_data, "--out", tmp_path / "eval", "--starts", 2,
                        "--horizon", 10, "--warmup", 10),
            "eval --compare": cli("eval", checkpoint, "--compare", target, "--data", train_data, "--out",
                                  tmp_path / "eval", "--split", "all", "--starts", 2, "--horizon", 10,
                                  "--warmup", 10),
            "play": cli("play", "--model", model),
            "dream": cli("dream", "--model", model, "--replay", tmp_path / "none.slp", "--frame", 100,
                         "--export", tmp_path / "dream.slp"),
            "export": cli("export", model, "--out", tmp_path / "exported.pt"),
        }
        if placement == "last.pt":  # what a resume reads
            results["train --resume"] = cli("train", "--data", train_data, "--config", TINY, "--out", run,
                                            "--resume", "--no-eval", *FAST)
        expected = "not a torch.save file" if name == "raw" else "refused: it is not plain data"
        for command, result in results.items():
            text = one_line(result.output)
            assert result.exit_code == 2 and "error:" in text and expected in text, (name, command, result.output)
            assert not marker.exists(), (name, command)
        assert not (tmp_path / "exported.pt").exists() and not (tmp_path / "dream.slp").exists()
    # Listing runs and planning one (which reads sibling runs for its prior-runs table) go on, and say which
    # checkpoint was refused.
    listed = cli("runs", runs)
    assert listed.exit_code == 0, listed.output
    text = one_line(listed.output)
    assert text.count("refused: it is not plain data") == 2 and "not a torch.save file" in text, listed.output
    planned = cli("plan", "--data", train_data, "--config", TINY, "--out", runs / "new", "--probe-steps", 0,
                  "log.tensorboard=false")
    assert planned.exit_code == 0, planned.output
    assert not marker.exists()


def test_bundled_model_is_plain_data():
    payload = torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=True)
    assert payload["optimizer"] is None and payload["rng"] is None
    model = load_model(DEFAULT_MODEL).model
    assert model.num_params() == payload["num_params"]


def test_rng_state_is_plain_and_restores_every_stream(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # numpy's state then carries a cached Gaussian
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (random.random(), np.random.standard_normal(), np.random.random(), torch.rand(3))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.standard_normal(), np.random.random(), torch.rand(3))
    assert first[:3] == again[:3] and torch.equal(first[3], again[3])


def test_saving_refuses_what_would_not_load(train_data, tmp_path):
    from meleewm.train.trainer import Trainer

    trainer = Trainer(train_data, tiny_config(*FAST), tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match=r"checkpoint\.metrics\.loss is a numpy\.float64"):
        save_checkpoint(tmp_path / "x.pt", model=trainer.model, config=trainer.config,
                        metrics={"loss": np.float64(1.0)})
    assert not list(tmp_path.glob("*x.pt*"))
