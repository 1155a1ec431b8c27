"""A run's checkpoints: the saved model (``meleewm.model.checkpoint``) plus what resuming needs, the optimizer,
scheduler, RNG state and data position, in one self-contained file.

RNG states are stored as tensors and numbers, so a checkpoint stays plain data (read with
``torch.load(weights_only=True)``). Loading checks the format and the encoding version and fails with a clear
message (``read_checkpoint``).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from meleewm.atomic import atomic_write
from meleewm.data.encoding import EncodingSpec
from meleewm.model.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    read_checkpoint,
    write_checkpoint,
)
from meleewm.model.world import WorldModel
from meleewm.train.config import TrainConfig, config_to_dict


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
    return write_checkpoint(payload, path)


def copy_checkpoint(source: Path, destination: Path) -> Path:
    """The same checkpoint under another name (best.pt from last.pt), atomically."""
    with atomic_write(destination) as tmp:
        shutil.copyfile(source, tmp)
    return destination


def remove_partial_checkpoints(folder: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed process left in ``folder``."""
    removed = []
    for path in Path(folder).glob(".*.pt.*.tmp"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# -- warm starts ------------------------------------------------------------------------------------------------


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
