"""Training configuration: nested dataclasses, loaded from YAML, any field overridable as ``section.key=value``.

Unknown keys, wrong types and impossible values are errors that name the offending key.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meleewm.model.world import LossConfig, WorldModelConfig


class ConfigError(ValueError):
    """A configuration that cannot be used, with the key at fault in the message."""


@dataclass
class DataConfig:
    seq_len: int = 256             # T: frames per training window, a loss at every position
    batch_size: int = 16           # global batch (split across DDP ranks)
    val_fraction: float = 0.1
    split_seed: int = 0
    two_humans: bool = False       # extra filters on top of "exactly two players"
    completed: bool = False
    legal_stage: bool = False
    long_enough: bool = False
    max_games: int = 0             # 0 = all
    swap_players: bool = True      # augmentation: swap the two players with p=0.5
    mirror: bool = True            # augmentation: left-right mirror with p=0.5
    items: bool = False            # item slots in the encoding (read and predicted)
    item_slots: int = 8
    num_workers: int = 0


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    epochs: int = 10
    max_steps: int = 0             # 0 = epochs decide; else stop after this many optimizer steps
    steps_per_epoch: int = 0       # 0 = one pass over the windows; else this many steps make an "epoch"


@dataclass
class SelfForcingConfig:
    enabled: bool = True
    prob: float = 0.2              # share of batches trained on the model's own predictions
    max_unroll: int = 3            # curriculum: 1 → max_unroll passes over the run
    start_epoch: int = 0           # no self-forcing before this epoch


@dataclass
class EvalConfig:
    rollout_starts: int = 64       # fixed starts (seeded) over validation games
    rollout_horizon: int = 20
    warmup: int = 60
    max_val_batches: int = 50
    seed: int = 0


@dataclass
class LogConfig:
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "meleewm"
    wandb_mode: str = "offline"
    every_steps: int = 10


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"           # auto, cpu, cuda
    compile: bool = False
    bf16: bool = True              # autocast on CUDA only
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    self_forcing: SelfForcingConfig = field(default_factory=SelfForcingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _coerce(value, kind, key: str):
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(kind, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_kind = typing.get_args(kind)
        return {str(k): _coerce(v, value_kind, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        kinds = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
            raise ConfigError(f"{key}: expected {len(kinds)} values, got {value!r}")
        return tuple(_coerce(v, k, key) for v, k in zip(value, kinds))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {kind}")


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key(s): {', '.join(where + u for u in unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _set_dotted(values: dict, dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A config from YAML (or the defaults) with ``section.key=value`` overrides applied on top."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        _set_dotted(values, key.strip(), raw)
    return _build(TrainConfig, values)


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(values: dict) -> TrainConfig:
    return _build(TrainConfig, values)
