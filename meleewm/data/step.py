"""The step input: what one step of the world model reads, as one typed object.

A step reads the state of frame t-1 (with its masks), both controllers of frame t and the game's constants.
Leading dims ``L`` are ``[B]`` (one step) or ``[B, T]`` (a sequence); the constants have no time axis. Field
names are those of the window samples (``meleewm.data.windows``), so a collated batch of windows holds a
``StepInput`` under the same keys, beside its targets (``next_*``) and bookkeeping.

It lives on the data floor because data builds it (synthesized starts, encoded games) and augments it; the model,
the rules and every caller of ``meleewm.model.rollout`` take and return it (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Mapping

import numpy as np
import torch

from meleewm.data.encoding import EncodingSpec

# The encoded array (EncodedGame's name) each field is a frame of; stage and chars are the game's constants.
ENCODED_NAMES = {"state_cont": "cont", "state_bin": "binary", "state_cat": "cat", "cont_mask": "cont_mask",
                 "bin_mask": "bin_mask", "cat_mask": "cat_mask", "ctrl": "ctrl", "state_age": "state_age",
                 "state_item_present": "item_present", "state_item_type": "item_type",
                 "state_item_owner": "item_owner", "state_item_cont": "item_cont",
                 "stage": "const_stage", "chars": "const_chars"}
# The dtype a step reads of each encoded array (the cache stores smaller ones: uint8 bits, int32 categories).
INPUT_DTYPES = {"cont": np.float32, "binary": np.float32, "cat": np.int64, "cont_mask": np.bool_,
                "bin_mask": np.bool_, "cat_mask": np.bool_, "ctrl": np.float32, "state_age": np.float32,
                "item_present": np.float32, "item_type": np.int64, "item_owner": np.int64, "item_cont": np.float32,
                "const_stage": np.int64, "const_chars": np.int64}
CONSTANTS = ("stage", "chars")


@dataclass
class StepInput:
    state_cont: torch.Tensor                 # [*L, 2, n_cont] float32, normalised continuous state of frame t-1
    state_bin: torch.Tensor                  # [*L, 2, n_bin] float32, 0/1
    state_cat: torch.Tensor                  # [*L, 2, n_cat] int64 vocabulary indices
    cont_mask: torch.Tensor                  # [*L, 2, n_cont] bool: the game has the field (masks never change)
    bin_mask: torch.Tensor
    cat_mask: torch.Tensor
    stage: torch.Tensor                      # [B] int64 stage vocabulary index
    chars: torch.Tensor                      # [B, 2] int64 character vocabulary indices
    ctrl: torch.Tensor | None = None         # [*L, 2, n_ctrl] controllers of frame t (None: not read yet)
    state_age: torch.Tensor | None = None    # [*L, 2] raw post_state_age, NaN where unknown
    # Item slots, when the encoding has them: [*L, S] present (float 0/1), type, owner; [*L, S, 4] continuous.
    state_item_present: torch.Tensor | None = None
    state_item_type: torch.Tensor | None = None
    state_item_owner: torch.Tensor | None = None
    state_item_cont: torch.Tensor | None = None
    # The rules' state (meleewm.model.rules: death-sequence phase and its age, [B, 2]); the model never reads it.
    rule_phase: torch.Tensor | None = None
    rule_age: torch.Tensor | None = None

    # -- building ------------------------------------------------------------------------------------------------

    @classmethod
    def from_window(cls, sample: Mapping) -> StepInput:
        """The inputs of a window sample or a collated batch of them (its targets and bookkeeping stay behind)."""
        return cls(**{f.name: sample[f.name] for f in fields(cls) if f.name in sample})

    @classmethod
    def from_encoded(cls, arrays: Mapping[str, np.ndarray], stage: int, chars) -> StepInput:
        """One game's encoded arrays (EncodedGame's names, None where absent; frames ``[T, ...]`` or one frame) as
        the inputs of a batch of 1, in the dtypes a step reads; ``stage`` and ``chars`` are vocabulary indices."""
        arrays = {**arrays, "const_stage": np.asarray([stage]), "const_chars": np.asarray(chars)}
        found = {}
        for name, encoded in ENCODED_NAMES.items():
            if arrays.get(encoded) is not None:
                array = np.array(arrays[encoded], dtype=INPUT_DTYPES[encoded], copy=True)
                found[name] = torch.from_numpy(array if name == "stage" else array[None])
        return cls(**found)

    @classmethod
    def zeros(cls, spec: EncodingSpec, batch: int = 1) -> StepInput:
        """``batch`` frames of ``spec``'s inputs, all zero: every field absent, controllers at rest, stage and
        characters unknown, and empty item slots when ``spec`` has them."""
        def zero(*shape, dtype=torch.float32):
            return torch.zeros(batch, *shape, dtype=dtype)
        items = {}
        if spec.items:
            slots = spec.item_slots
            items = {"state_item_present": zero(slots), "state_item_type": zero(slots, dtype=torch.long),
                     "state_item_owner": zero(slots, dtype=torch.long),
                     "state_item_cont": zero(slots, spec.n_item_cont)}
        return cls(state_cont=zero(2, spec.n_cont), state_bin=zero(2, spec.n_bin),
                   state_cat=zero(2, spec.n_cat, dtype=torch.long), cont_mask=zero(2, spec.n_cont, dtype=torch.bool),
                   bin_mask=zero(2, spec.n_bin, dtype=torch.bool), cat_mask=zero(2, spec.n_cat, dtype=torch.bool),
                   stage=zero(dtype=torch.long), chars=zero(2, dtype=torch.long), ctrl=zero(2, spec.n_ctrl),
                   state_age=zero(2), **items)

    @staticmethod
    def cat(inputs: list[StepInput]) -> StepInput:
        """Inputs of several games as one batch (every one with the same fields present)."""
        first = inputs[0]
        return first.replace(**{k: torch.cat([getattr(x, k) for x in inputs]) for k in first.tensors()})

    def replace(self, **changes) -> StepInput:
        """A copy with ``changes`` (field name: value). A play tick makes several, so this copies the attributes
        instead of going through ``dataclasses.replace`` (5x slower)."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"StepInput has no field {', '.join(sorted(unknown))}")
        new = object.__new__(StepInput)
        new.__dict__ = {**self.__dict__, **changes}
        return new

    # -- reading ------------------------------------------------------------------------------------------------

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields present (not None), by name."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def state(self) -> dict[str, torch.Tensor]:
        """The fields the model predicts (``state_*``): what a rollout replaces frame by frame."""
        return {k: v for k, v in self.__dict__.items() if v is not None and k.startswith("state_")}

    def _map(self, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> StepInput:
        return self.replace(**{k: fn(k, v) for k, v in self.tensors().items()})

    def to(self, device, non_blocking: bool = False) -> StepInput:
        return self._map(lambda _, v: v.to(device, non_blocking=non_blocking))

    def _per_frame(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> StepInput:
        """``fn`` applied to every field with a time axis; constants and the rule state ([B, ...]) as they are."""
        return self._map(lambda k, v: v if k in CONSTANTS or k.startswith("rule_") else fn(v))

    def last(self) -> StepInput:
        """A sequence's last step, as one step's inputs (``[B, T, ...]`` → ``[B, ...]``)."""
        return self._per_frame(lambda v: v[:, -1])

    def frames(self, start: int | None = None, stop: int | None = None) -> StepInput:
        """Steps ``start:stop`` of a sequence."""
        return self._per_frame(lambda v: v[:, start:stop])

    def as_sequence(self) -> StepInput:
        """One step's inputs as a sequence of one step (``[B, ...]`` → ``[B, 1, ...]``)."""
        return self._per_frame(lambda v: v.unsqueeze(1))

    def rows(self, start: int, stop: int) -> StepInput:
        """Games ``start:stop`` of the batch."""
        return self._map(lambda _, v: v[start:stop])
