"""Checkpoints: one self-contained file (weights, config, encoding, optimizer, scheduler, RNG, data position).

A checkpoint is plain data: tensors, and dicts, lists, tuples, strings, numbers, booleans and None. It is read
with ``torch.load(weights_only=True)``, whose unpickler builds nothing else, so a file that asks to import or call
anything (a pickle ``__reduce__`` payload) is refused with a :class:`CheckpointError`, never run. Saving checks the
same rule, so every checkpoint meleewm writes can be read back. The weights are a ``state_dict`` and the model
is described by its config dict, so a model with other layers saves and loads the same way.

Written to a temporary name and renamed, so a killed run never leaves a half-written checkpoint. Loading checks
the format and the encoding version and fails with a clear message.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import shutil
import uuid
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from meleewm.data.encoding import ENCODING_VERSION, EncodingSpec
from meleewm.model.world import WorldModel
from meleewm.train.config import ConfigError, TrainConfig, config_from_dict, config_to_dict

FORMAT = "meleewm-checkpoint"
FORMAT_VERSION = 1
# What every checkpoint holds, with the type each must have (exports set optimizer, scheduler and rng to None).
REQUIRED = {"model": dict, "config": dict, "encoding": dict, "position": dict, "metrics": dict}
PLAIN_MAPPINGS = (dict, OrderedDict)          # a state_dict is an OrderedDict
PLAIN_SEQUENCES = (list, tuple, torch.Size)
PLAIN_LEAVES = (str, int, float, bool, type(None))


class CheckpointError(Exception):
    """A file that is not a usable meleewm checkpoint."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- RNG state as tensors and numbers (numpy's and Python's own state objects are not plain data) ---------------


def rng_state() -> dict:
    py_version, py_internal, py_gauss = random.getstate()
    algorithm, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": {"version": py_version, "state": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
        "numpy": {"algorithm": str(algorithm), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    np.random.set_state((npy["algorithm"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- writing ----------------------------------------------------------------------------------------------------


def _check_plain(value, where: str) -> None:
    """Raise unless ``value`` is plain data (what ``torch.load(weights_only=True)`` reads back). Types are
    matched exactly: a subclass (numpy's float64, a defaultdict) would be pickled as a class to import."""
    if type(value) in PLAIN_MAPPINGS:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise CheckpointError(f"{where}: key {key!r} is a {type(key).__name__}, not a string or integer")
            _check_plain(item, f"{where}.{key}")
    elif type(value) in PLAIN_SEQUENCES:
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif type(value) not in PLAIN_LEAVES and not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint "
                              f"holds only tensors and plain values")


def _write(payload: dict, path: Path) -> Path:
    """Save plain data to ``path`` through a temporary file and a rename."""
    try:
        _check_plain(payload, "checkpoint")
    except CheckpointError as error:
        raise CheckpointError(f"cannot save {path}: {error}") from None
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(path: str | Path, *, model: WorldModel, config: TrainConfig, optimizer=None, scheduler=None,
                    position: dict | None = None, metrics: dict | None = None) -> Path:
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
    return _write(payload, Path(path))


def copy_checkpoint(source: Path, destination: Path) -> Path:
    """The same checkpoint under another name (best.pt from last.pt), atomically."""
    tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
    return destination


def remove_partial_checkpoints(folder: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed process left in ``folder``."""
    removed = []
    for path in Path(folder).glob(".*.pt.*.tmp"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# -- reading ----------------------------------------------------------------------------------------------------


def _refusal(path: Path, error: Exception) -> str:
    """Why the restricted unpickler refused ``path``: the globals it names, else the unpickler's own reason."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - the scan is only for a better message
        names = []
    if names:
        return f"loading it would import or call {', '.join(names)}"
    detail = str(error).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
    return _one_line(detail) or type(error).__name__


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes zip files; older pickle formats are not read
        raise CheckpointError(f"{path} is not a readable checkpoint: not a torch.save file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path} refused: it is not plain data ({_refusal(path, error)}); a meleewm "
                              f"checkpoint holds only tensors and plain values") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path} is not a readable checkpoint: {type(error).__name__}: "
                              f"{_one_line(error)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a meleewm checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {payload.get('format_version')}; this meleewm reads "
                              f"format {FORMAT_VERSION}")
    for key, kind in REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path} is not a complete meleewm checkpoint: no {key} {kind.__name__}")
    version = payload["encoding"].get("version")
    if version != ENCODING_VERSION:
        raise CheckpointError(f"{path} was trained with encoding version {version}; this meleewm uses encoding "
                              f"version {ENCODING_VERSION}: retrain, or use the meleewm version that made it")
    return payload


def checkpoint_config(path: str | Path, payload: dict) -> TrainConfig:
    """The training config a checkpoint records (a CheckpointError when it is not a valid config)."""
    try:
        return config_from_dict(payload["config"])
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config is not valid: {error}") from None


def checkpoint_spec(path: str | Path, payload: dict) -> EncodingSpec:
    """The encoding a checkpoint records (a CheckpointError when it is not a valid encoding)."""
    try:
        return EncodingSpec.from_dict(payload["encoding"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its encoding is not valid: {type(error).__name__}: {error}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[WorldModel, TrainConfig, dict]:
    """The model of a checkpoint, in eval mode, with its config and the whole payload (metrics, position...)."""
    payload = read_checkpoint(path)
    config = checkpoint_config(path, payload)
    model = WorldModel(checkpoint_spec(path, payload), config.model)
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
    return _write(payload, destination)


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
