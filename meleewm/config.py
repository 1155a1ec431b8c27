"""Typed settings from plain values: the checks every config section shares.

A section is a dataclass; :func:`build_config` makes one from a dict (YAML, or the config a checkpoint records).
Unknown keys, wrong types, non-finite numbers and values outside their allowed range (:class:`Rules`) are errors:
one line that names the key and what it allows. Each floor keeps its own sections and their rules (the data
section in ``meleewm.data.config``, the training run in ``meleewm.train.config``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from meleewm.errors import MeleewmError


class ConfigError(MeleewmError, ValueError):
    """A configuration that cannot be used, with the key at fault in the message."""


@dataclass(frozen=True)
class Bound:
    """The allowed range of a number: ``low``/``high`` (None: unbounded), each end included unless ``open``."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, integer: bool) -> str:
        kind = "an integer" if integer else "a number"
        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {_number(self.low)}"
        return (f"{kind} in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                f"{')' if self.high_open else ']'}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


AT_LEAST_0, AT_LEAST_1, POSITIVE = Bound(0), Bound(1), Bound(0, low_open=True)
FRACTION = Bound(0, 1)


@dataclass(frozen=True)
class Rules:
    """What numeric and string keys allow, by dotted key (``data.seq_len``): a range or a list of choices."""
    limits: dict[str, Bound] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _check_allowed(value, key: str, rules: Rules):
    """``value`` when ``key`` allows it, else a ConfigError that names the key and what it allows."""
    bound, choices = rules.limits.get(key), rules.choices.get(key)
    if bound is not None and not bound.allows(value):
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: {bound.describe(isinstance(value, int))}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {', '.join(choices)}")
    return value


def _coerce(value, kind, key: str, rules: Rules):
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build_config(kind, value, key, rules)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_kind = typing.get_args(kind)
        return {str(k): _coerce(v, value_kind, f"{key}.{k}", rules) for k, v in value.items()}
    if origin is tuple:
        kinds = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
            raise ConfigError(f"{key}: expected {len(kinds)} values, got {value!r}")
        return tuple(_check_allowed(_coerce(v, k, key, rules), key, rules) for v, k in zip(value, kinds))
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
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {kind}")


def build_config(cls, values: dict, prefix: str = "", rules: Rules = Rules()):
    """An instance of the dataclass ``cls`` from plain ``values`` (nested dataclasses from nested dicts), every
    value checked against its type and ``rules``; a ConfigError naming the key (``prefix.name``) when one is off."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key(s): {', '.join(where + u for u in unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key, rules)
        if typing.get_origin(hints[name]) is not tuple:  # tuples are checked per element
            _check_allowed(kwargs[name], key, rules)
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ConfigError(str(error)) from None
