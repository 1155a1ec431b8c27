"""Checkpoints: one self-contained file (weights, config, encoding, optimizer, scheduler, RNG, data position).

Written to a temporary name and renamed, so a killed run never leaves a half-written checkpoint. Loading checks
the format and the encoding version and fails with a clear message.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch

from meleewm.data.encoding import ENCODING_VERSION, EncodingSpec
from meleewm.model.world import WorldModel
from meleewm.train.config import TrainConfig, config_from_dict, config_to_dict

FORMAT = "meleewm-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A file that is not a usable meleewm checkpoint."""


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, *, model: WorldModel, config: TrainConfig, optimizer=None, scheduler=None,
                    position: dict | None = None, metrics: dict | None = None) -> Path:
    path = Path(path)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "config": config_to_dict(config),
        "encoding": model.spec.to_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "position": position or {},
        "metrics": metrics or {},
        "num_params": model.num_params(),
    }
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def copy_checkpoint(source: Path, destination: Path) -> Path:
    """The same checkpoint under another name (best.pt from last.pt), atomically."""
    tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
    return destination


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path} is not a readable checkpoint: {type(error).__name__}: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a meleewm checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {payload.get('format_version')}; this meleewm reads "
                              f"format {FORMAT_VERSION}")
    version = payload["encoding"].get("version")
    if version != ENCODING_VERSION:
        raise CheckpointError(f"{path} was trained with encoding version {version}; this meleewm uses encoding "
                              f"version {ENCODING_VERSION}: retrain, or use the meleewm version that made it")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[WorldModel, TrainConfig, dict]:
    """The model of a checkpoint, in eval mode, with its config and the whole payload (metrics, position...)."""
    payload = read_checkpoint(path)
    config = config_from_dict(payload["config"])
    spec = EncodingSpec.from_dict(payload["encoding"])
    model = WorldModel(spec, config.model)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes: {error}") from None
    return model.to(device).eval(), config, payload


def export_checkpoint(source: str | Path, destination: str | Path) -> Path:
    """A play/eval-only copy of a checkpoint: weights, config, encoding and metrics, without the optimizer,
    scheduler and RNG state that only resuming needs (a third of the size)."""
    payload = read_checkpoint(source)
    for key in ("optimizer", "scheduler", "rng"):
        payload[key] = None
    payload["position"] = {k: v for k, v in payload["position"].items() if k != "history"} | {
        "exported_from": str(source)}
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, destination)
    return destination


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_matching_weights(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Start ``model`` from the weights of the checkpoint at ``path`` (a warm start): every tensor whose name and
    shape match, and an input layer that has only gained input columns (optional inputs come last) with its old
    columns first and the new ones at zero, so the model starts out computing what the old one did. Returns the
    names loaded. The two encodings must agree on normalisation and vocabularies, or the weights mean nothing."""
    payload = read_checkpoint(path)
    old = EncodingSpec.from_dict(payload["encoding"])
    for name in ("cont_stats", "vocabs", "stage_vocab", "char_vocab"):
        if getattr(old, name) != getattr(model.spec, name):
            raise CheckpointError(f"{path}: its encoding's {name} differ from this run's; a warm start needs the "
                                  f"same normalisation and vocabularies (the same training games)")
    state, loaded = model.state_dict(), []
    for name, value in payload["model"].items():
        target = state.get(name)
        if target is None:
            continue
        if target.shape == value.shape:
            state[name] = value
        elif name == "input_proj.weight" and target.shape[0] == value.shape[0] and target.shape[1] > value.shape[1]:
            state[name] = torch.cat([value, torch.zeros(target.shape[0], target.shape[1] - value.shape[1],
                                                        dtype=value.dtype)], dim=1)
        else:
            continue
        loaded.append(name)
    model.load_state_dict(state)
    return loaded
