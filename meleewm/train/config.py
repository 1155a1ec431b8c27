"""Training configuration: nested dataclasses, loaded from YAML, any field overridable as ``section.key=value``.

Unknown keys, wrong types and impossible values are errors that name the offending key.
"""

from __future__ import annotations

import dataclasses
import re
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
    ko_windows: float = 0.0        # extra training windows per KO and epoch, around the KO (rare-event oversampling)
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
    # Gaussian noise on the continuous state inputs of every training batch (GNS-style), in units of each field's
    # typical per-frame change; 0 = off
    input_noise: float = 0.0


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


# Validation metrics a kill threshold or a card target may name (besides any "loss/<head>").
KNOWN_METRICS = ("action_acc", "change_acc", "position_error", "rollout_position_error",
                 "rollout_position_error_last")


def _check_metric(key: str, name: str) -> None:
    if name not in KNOWN_METRICS and not name.startswith("loss/"):
        raise ValueError(f"{key}.{name}: unknown metric; known: {', '.join(KNOWN_METRICS)}, loss/<head>")


@dataclass
class KillConfig:
    """Kill thresholds: the run stops (last.pt saved, the reason recorded) when one fires."""
    nonfinite_loss: bool = True        # a NaN/inf training loss: the update is skipped and the run stops
    no_decrease_fraction: float = 0.0  # 0 = off; else at this fraction of epoch 1, the smoothed training loss
    min_decrease: float = 0.0          # must be below its start value times (1 - min_decrease)
    smoothing: int = 0                 # steps averaged at each end of that comparison (0 = a quarter of them)
    after_epoch: int = 1               # metric bounds are checked once this many epochs are done
    min: dict[str, float] = field(default_factory=dict)   # validation metric -> lowest allowed value
    max: dict[str, float] = field(default_factory=dict)   # validation metric -> highest allowed value

    def __post_init__(self):
        if not 0.0 <= self.no_decrease_fraction <= 1.0:
            raise ValueError(f"kill.no_decrease_fraction must lie in [0, 1], got {self.no_decrease_fraction}")
        if not 0.0 <= self.min_decrease < 1.0:
            raise ValueError(f"kill.min_decrease must lie in [0, 1), got {self.min_decrease}")
        if self.smoothing < 0 or self.after_epoch < 0:
            raise ValueError("kill.smoothing and kill.after_epoch must be >= 0")
        for key in ("min", "max"):
            for name in getattr(self, key):
                _check_metric(f"kill.{key}", name)


def parse_target(target: str) -> tuple[str, float]:
    """A card target such as ``"<6.0"`` or ``">=0.7"`` as (comparison, bound)."""
    match = re.fullmatch(r"\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", str(target))
    if not match:
        raise ValueError(f"a target looks like '<6.0' or '>=0.7', not {target!r}")
    return match.group(1), float(match.group(2))


@dataclass
class CardConfig:
    """What the run card states: the goal, target metrics (``"<6.0"``, ``">=0.7"``), the hourly cost."""
    goal: str = ""
    targets: dict[str, str] = field(default_factory=dict)
    hourly_cost: float = 0.0           # currency units per hour of this run's machine (0 = no cost lines)

    def __post_init__(self):
        for name, target in self.targets.items():
            _check_metric("card.targets", name)
            try:
                parse_target(target)
            except ValueError as error:
                raise ValueError(f"card.targets.{name}: {error}") from None
        if self.hourly_cost < 0:
            raise ValueError(f"card.hourly_cost must be >= 0, got {self.hourly_cost}")


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"           # auto, cpu, cuda
    compile: bool = False
    bf16: bool = True              # autocast on CUDA only
    init_from: str = ""            # a checkpoint whose matching weights start the run (a warm start); "" = none
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    self_forcing: SelfForcingConfig = field(default_factory=SelfForcingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    kill: KillConfig = field(default_factory=KillConfig)
    card: CardConfig = field(default_factory=CardConfig)


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
    try:
        node[keys[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {dotted}: {raw!r} is not a YAML value: {error}") from None


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
