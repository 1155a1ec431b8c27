"""Augmentations of encoded games and window samples: swap the two players, mirror the game through x = 0.

They take an EncodedGame (or a slice), a ``StepInput``, or a dict of named arrays (the EncodedGame names, or the
window names of ``meleewm.data.windows``: a step input's fields and their ``next_*`` targets), numpy or torch, and
return a new object of the same kind; unknown keys pass through.
See docs/encoding.md for what is exact and what is only plausible.
"""

from __future__ import annotations

from dataclasses import is_dataclass, replace

import numpy as np

from meleewm.data.encoding import (
    ITEM_CONT_FIELDS,
    MIRROR_CONT,
    MIRROR_CTRL,
    MIRROR_ITEM_CONT,
    EncodedGame,
    EncodingSpec,
    is_torch,
)
from meleewm.data.step import ENCODED_NAMES, StepInput


# Roles by EncodedGame array name; other names reach them through _array_name.
_PLAYER_FIELDS = ("cont", "cont_mask", "binary", "bin_mask", "cat", "cat_mask", "ctrl")
_PLAYER_VECTORS = ("state_age", "const_chars", "rule_phase", "rule_age")


def _array_name(key: str) -> str:
    """The encoded array ``key`` is a frame of: EncodedGame's own names, a StepInput field, or a window's target
    (``next_cont`` is frame t+1 of ``cont``, as ``state_cont`` is frame t)."""
    key = key.removeprefix("next_")
    return ENCODED_NAMES.get(key) or ENCODED_NAMES.get(f"state_{key}", key)


def _copy(x):
    return x.clone() if is_torch(x) else np.array(x, copy=True)


def _flip(x, axis: int):
    if is_torch(x):
        import torch
        return torch.flip(x, [axis])
    return np.flip(x, axis).copy()


def _apply(sample, fn):
    """``fn`` maps ``[(key, encoded array name, array)]`` to ``{key: new array}``."""
    if isinstance(sample, EncodedGame):
        arrays = {k: v for k, v in sample.arrays().items() if v is not None}
    elif isinstance(sample, StepInput):
        arrays = sample.tensors()
    else:
        arrays = dict(sample)
    out = fn([(k, _array_name(k), v) for k, v in arrays.items()])
    return replace(sample, **out) if is_dataclass(sample) else {**sample, **out}


def swap_players(sample):
    """Swap player 0 and player 1 everywhere (state, masks, controllers, characters, item owners)."""
    def fn(a):
        out = {}
        for k, name, v in a:
            if name in _PLAYER_FIELDS:
                out[k] = _flip(v, -2)
            elif name in _PLAYER_VECTORS:
                out[k] = _flip(v, -1)
            elif name == "item_owner":
                y = _copy(v)
                y[v == 1], y[v == 2] = 2, 1
                out[k] = y
        return out
    return _apply(sample, fn)


def mirror_x(sample, spec: EncodingSpec):
    """Reflect the game through x = 0: negate x positions, x velocities and stick/C-stick x, flip facing, and swap
    left/right ground surfaces (GROUND_MIRROR). Stage comes from ``const_stage`` or ``stage``.

    Works in normalised space as "decode, negate, re-encode": ``z' = (-(z * std + mean) - mean) / std
    = -z - 2 mean / std``. ``fit`` fixes the mean of those fields at 0, so this is an exact negation (and masked
    zeros stay zero). It is exact physics only for a stage symmetric about x = 0; see docs/encoding.md.
    """
    ci = [spec.cont_index(f) for f in MIRROR_CONT]
    c_off = np.array([2 * spec.cont_stats[f][0] / spec.cont_stats[f][1] for f in MIRROR_CONT], np.float32)
    ki = [spec.ctrl_index(f) for f in MIRROR_CTRL]
    ii = [ITEM_CONT_FIELDS.index(f) for f in MIRROR_ITEM_CONT]
    i_off = np.array([2 * spec.item_stats.get(f, [0.0, 1.0])[0] / spec.item_stats.get(f, [0.0, 1.0])[1]
                      for f in MIRROR_ITEM_CONT], np.float32)
    fi, gi = spec.bin_index("facing"), spec.cat_index("post_ground")

    def negate(v, idx, off):
        y = _copy(v)
        if is_torch(v):
            import torch
            y[..., idx] = -y[..., idx] - torch.as_tensor(off, dtype=y.dtype, device=y.device)
        else:
            y[..., idx] = -y[..., idx] - off.astype(y.dtype)
        return y

    def fn(a):
        out = {}
        stage = next((v for _, name, v in a if name == "const_stage"), None)
        for k, name, v in a:
            if name == "cont":
                out[k] = negate(v, ci, c_off)
            elif name == "ctrl":
                out[k] = negate(v, ki, np.zeros(len(ki), np.float32))
            elif name == "item_cont":
                out[k] = negate(v, ii, i_off)
            elif name == "binary":
                y = _copy(v)
                y[..., fi] = 1 - y[..., fi]
                out[k] = y
            elif name == "cat":
                if stage is None:
                    raise ValueError("mirror_x needs the stage (const_stage or stage) to mirror ground ids")
                table = spec._arr("ground_mirror")
                y = _copy(v)
                g = y[..., gi]
                if is_torch(v):
                    import torch
                    t = torch.as_tensor(table, dtype=g.dtype, device=g.device)
                    s = torch.as_tensor(stage, device=g.device).long()
                    s = s.reshape(s.shape + (1,) * (g.dim() - s.dim()))
                    y[..., gi] = t[s, g.long()]
                else:
                    s = np.asarray(stage, np.int64)
                    s = s.reshape(s.shape + (1,) * (g.ndim - s.ndim))
                    y[..., gi] = table[s, g.astype(np.int64)]
                out[k] = y
        return out
    return _apply(sample, fn)
