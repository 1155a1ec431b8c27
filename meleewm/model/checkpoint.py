"""The saved model: reading a checkpoint file safely, and the model it describes, for play and evaluation.

A checkpoint is one file of plain data: tensors, and dicts, lists, tuples, strings, numbers, booleans and None.
It is read with ``torch.load(weights_only=True)``, whose unpickler builds nothing else, so a file that asks to
import or call anything (a pickle ``__reduce__`` payload) is refused with a :class:`CheckpointError`, never run.
Writing checks the same rule, so every checkpoint meleewm writes can be read back, and goes through a temporary
name and a rename, so a killed process never leaves a half-written checkpoint.

Loading a model reads only what the model needs (as nanoGPT's ``model_args``): the weights, the ``encoding``,
and the ``model``, ``data`` and ``loss`` sections of the recorded config. The rest of that config (optimizer,
schedule, kill thresholds...) and the optimizer, scheduler and RNG state belong to training and its resume
(``meleewm.train.checkpoint``); :func:`export_model` drops the states, keeping the file's format.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from meleewm.atomic import atomic_write
from meleewm.config import ConfigError, Rules, build_config
from meleewm.data.config import DATA_RULES, DataConfig
from meleewm.data.encoding import ENCODING_VERSION, EncodingSpec
from meleewm.errors import MeleewmError
from meleewm.model.losses import LossConfig
from meleewm.model.world import SPEED_RULES, WorldModel, WorldModelConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "meleewm-small.pt"   # the bundled model: play and eval without a run

FORMAT = "meleewm-checkpoint"
FORMAT_VERSION = 1
# What every checkpoint holds, with the type each must have (exports set optimizer, scheduler and rng to None).
REQUIRED = {"model": dict, "config": dict, "encoding": dict, "position": dict, "metrics": dict}
PLAIN_MAPPINGS = (dict, OrderedDict)          # a state_dict is an OrderedDict
PLAIN_SEQUENCES = (list, tuple, torch.Size)
PLAIN_LEAVES = (str, int, float, bool, type(None))
TRAINING_STATE = ("optimizer", "scheduler", "rng")   # what only resuming a run needs


class CheckpointError(MeleewmError):
    """A file that is not a usable meleewm checkpoint."""


class ModelNotFound(CheckpointError, FileNotFoundError):
    """No checkpoint where one was expected."""


def _one_line(text) -> str:
    return " ".join(str(text).split())


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


def write_checkpoint(payload: dict, path: str | Path) -> Path:
    """Save plain data to ``path`` atomically (a CheckpointError, and no file, when it is not plain data)."""
    path = Path(path)
    try:
        _check_plain(payload, "checkpoint")
    except CheckpointError as error:
        raise CheckpointError(f"cannot save {path}: {error}") from None
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


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
    """The checkpoint's payload, read as plain data only; a CheckpointError saying why when it is not a complete
    meleewm checkpoint of this format and encoding version."""
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


def checkpoint_spec(path: str | Path, payload: dict) -> EncodingSpec:
    """The encoding a checkpoint records (a CheckpointError when it is not a valid encoding)."""
    try:
        return EncodingSpec.from_dict(payload["encoding"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its encoding is not valid: {type(error).__name__}: {error}") from None


def _config_section(path: Path, payload: dict, name: str, cls, rules: Rules = Rules()):
    """One section of the config a checkpoint records, checked as the run's config was."""
    try:
        return build_config(cls, payload["config"].get(name, {}), name, rules)
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config is not valid: {error}") from None


@dataclass(frozen=True)
class SavedModel:
    """A checkpoint's model (in eval mode) with the settings evaluation needs and the whole payload."""
    model: WorldModel
    data: DataConfig        # the run's games, split and window length
    loss: LossConfig        # the objective it was trained on (evaluation reports it)
    payload: dict           # metrics, position, the recorded config...


def load_model(path: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """The model of the checkpoint file at ``path`` (see :func:`resolve_model` for run folders and the default)."""
    path = Path(path)
    payload = read_checkpoint(path)
    config = _config_section(path, payload, "model", WorldModelConfig)
    data = _config_section(path, payload, "data", DataConfig, DATA_RULES)
    loss = _config_section(path, payload, "loss", LossConfig)
    model = WorldModel(checkpoint_spec(path, payload), config)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes: {error}") from None
    return SavedModel(model.to(device).eval(), data, loss, payload)


def resolve_model(path: str | Path | None = None) -> Path:
    """A checkpoint: ``path`` itself, a run folder's best.pt (else last.pt), or :data:`DEFAULT_MODEL` when None;
    a clear error when there is none."""
    if path is None:
        if not DEFAULT_MODEL.is_file():
            raise ModelNotFound(f"no model given and the default model {DEFAULT_MODEL} is missing: pass --model "
                                f"RUN/best.pt (a checkpoint from `meleewm train`) or put the bundled model there")
        return DEFAULT_MODEL
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise ModelNotFound(f"{path} holds no best.pt or last.pt")
    if not path.is_file():
        raise ModelNotFound(f"no model at {path}: no checkpoint file there")
    return path


# Options that add no weights, and the checkpoint section each lives in: an exported model may switch them on (or
# off) as it is: rules of motion, and which items the encoding keeps.
WEIGHTLESS_SWITCHES = {**{name: "model" for name in (
    "ground_motion", "item_motion", "ground_snap", "body_landing", "solid_stage", "respawn_snap", "hitlag_freeze",
    "stage_edge", "ledge_catch", "ledge_grab", "hit_reach", "surface_landing", "move_end", "air_motion",
    "surface_stand", "death_at_blast_zone",
    *SPEED_RULES)},
    "player_items_only": "encoding"}


def export_model(source: str | Path, destination: str | Path, switches: dict[str, bool] | None = None) -> Path:
    """A play/eval-only copy of a checkpoint: weights, config, encoding and metrics, without the optimizer,
    scheduler and RNG state that only resuming needs (a third of the size). ``switches`` sets weightless model
    options (:data:`WEIGHTLESS_SWITCHES`); the copy records which were switched, beside where it came from."""
    switches = dict(switches or {})
    unknown = sorted(set(switches) - set(WEIGHTLESS_SWITCHES))
    if unknown:
        raise CheckpointError(f"cannot switch {', '.join(unknown)} on an exported model: only "
                              f"{', '.join(WEIGHTLESS_SWITCHES)} add no weights")
    payload = read_checkpoint(source)
    for key in TRAINING_STATE:
        payload[key] = None
    for name, value in switches.items():
        section = payload["config"]["model"] if WEIGHTLESS_SWITCHES[name] == "model" else payload["encoding"]
        section[name] = value
    payload["position"] = {k: v for k, v in payload["position"].items() if k != "history"} | {
        "exported_from": str(source)} | ({"switched": switches} if switches else {})
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(payload, destination)


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (a report names the exact checkpoint it measured)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
