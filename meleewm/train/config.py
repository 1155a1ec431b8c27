"""Training configuration: nested dataclasses, loaded from YAML, any field overridable as ``section.key=value``.

Unknown keys, keys given twice, wrong types, non-finite numbers and values outside their allowed range
(:data:`RULES`) are errors: one line that names the key and what it allows (``meleewm.config``). The model, loss
and data sections live on their own floors, so a saved model is read without this module.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meleewm.config import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, Bound, ConfigError, Rules, build_config
from meleewm.data.config import DATA_RULES, DataConfig
from meleewm.model.losses import LossConfig
from meleewm.model.world import WorldModelConfig


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
    # Comma-separated prefixes of the parameters to train (e.g. "cont_head"); the others keep init_from's values.
    # Empty: train all. A head retrained alone on new targets leaves every other prediction of the model as it was
    train_only: str = ""


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


# The allowed range of every numeric key of the training sections (the model and loss sections check their own).
RULES = Rules(limits={
    **DATA_RULES.limits,
    "seed": Bound(0, 2**32 - 1),
    "optim.lr": AT_LEAST_0, "optim.weight_decay": AT_LEAST_0, "optim.betas": Bound(0, 1, high_open=True),
    "optim.warmup_steps": AT_LEAST_0, "optim.min_lr_ratio": FRACTION, "optim.grad_clip": POSITIVE,
    "optim.epochs": AT_LEAST_1, "optim.max_steps": AT_LEAST_0, "optim.steps_per_epoch": AT_LEAST_0,
    "self_forcing.prob": FRACTION, "self_forcing.max_unroll": AT_LEAST_0, "self_forcing.start_epoch": AT_LEAST_0,
    "eval.rollout_starts": AT_LEAST_1, "eval.rollout_horizon": AT_LEAST_1, "eval.warmup": AT_LEAST_1,
    "eval.max_val_batches": AT_LEAST_1, "eval.seed": AT_LEAST_0,
    "log.every_steps": AT_LEAST_1,
    "kill.no_decrease_fraction": FRACTION, "kill.min_decrease": Bound(0, 1, high_open=True),
    "kill.smoothing": AT_LEAST_0, "kill.after_epoch": AT_LEAST_0,
    "card.hourly_cost": AT_LEAST_0,
}, choices={
    **DATA_RULES.choices,
    "device": ("auto", "cpu", "cuda"),
    "log.wandb_mode": ("online", "offline", "disabled"),
})


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (YAML would keep the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, Hashable):
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _yaml(text: str):
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def _set_dotted(values: dict, dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    try:
        node[keys[-1]] = _yaml(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {dotted}: {raw!r} is not a YAML value: {_one_line(error)}") from None
    except ConfigError as error:  # a duplicate key
        raise ConfigError(f"override {dotted}: {error}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A config from YAML (or the defaults) with ``section.key=value`` overrides applied on top."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        try:
            values = _yaml(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path} is not a YAML text file: byte {error.start} is not UTF-8 text") from None
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {_one_line(error)}") from None
        except ConfigError as error:  # a duplicate key
            raise ConfigError(f"{path} {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        _set_dotted(values, key.strip(), raw)
    return build_config(TrainConfig, values, rules=RULES)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(values: dict) -> TrainConfig:
    return build_config(TrainConfig, values, rules=RULES)
