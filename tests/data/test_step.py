"""StepInput: built from windows, encoded games and zeros alike; cut, joined and augmented without losing a field."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.data import default_collate

from meleewm.data.augment import swap_players
from meleewm.data.cache import build_cache
from meleewm.data.starts import synthetic_inputs
from meleewm.data.step import StepInput
from meleewm.data.windows import WindowDataset

T = 16


@pytest.fixture(scope="module")
def batch(small_dataset, spec, tmp_path_factory):
    dataset, ids = small_dataset
    cache = build_cache(dataset, spec, list(ids.values()), tmp_path_factory.mktemp("cache"), progress=False)
    windows = WindowDataset(cache, T, random_phase=False)
    return default_collate([windows[i] for i in (0, len(windows) // 2, len(windows) - 1)]), cache


def test_from_window_takes_the_inputs_and_nothing_else(batch):
    batch, _ = batch
    x = StepInput.from_window(batch)
    assert set(x.tensors()) == {k for k in batch if not k.startswith("next_")} - {
        "frame", "game", "start", "swapped", "mirrored"}
    assert all(getattr(x, k) is batch[k] for k in x.tensors())
    assert x.rule_phase is None and x.state_item_cont is not None


def test_from_encoded_equals_the_window_of_the_same_frames(batch):
    """A replay start (play) reads the same inputs as the window over the same frames (training, eval)."""
    batch, cache = batch
    game, start = int(batch["game"][1]), int(batch["start"][1])
    g = cache.game(game)
    x = StepInput.from_encoded({**g.slice(start, start + T).arrays(), "ctrl": g.ctrl[start + 1:start + T + 1]},
                               g.const_stage, g.const_chars)
    want = StepInput.from_window(batch).rows(1, 2)
    assert x.tensors().keys() == want.tensors().keys()
    for k, v in want.tensors().items():
        assert v.dtype == getattr(x, k).dtype and torch.equal(torch.nan_to_num(v), torch.nan_to_num(getattr(x, k))), k


def test_zeros_and_synthetic_starts_have_the_window_layout(batch, spec):
    batch, _ = batch
    one_step = StepInput.from_window(batch).last()
    for x in (StepInput.zeros(spec, 3), synthetic_inputs(spec, 31, (20, 2))[0]):
        for k, v in one_step.tensors().items():
            assert getattr(x, k).shape[1:] == v.shape[1:] and getattr(x, k).dtype == v.dtype, k


def test_cut_join_and_swap(batch):
    batch, _ = batch
    x = StepInput.from_window(batch)
    joined = StepInput.cat([x.rows(0, 1), x.rows(1, 3)])
    assert all(torch.equal(torch.nan_to_num(v), torch.nan_to_num(getattr(joined, k))) for k, v in x.tensors().items())
    assert torch.equal(x.last().as_sequence().state_cont, x.frames(T - 1).state_cont)
    assert x.frames(2, 5).state_cont.shape[1] == 3 and x.frames(2, 5).stage is x.stage
    step = replace(x.last(), rule_phase=torch.tensor([[1, 0]] * 3), rule_age=torch.tensor([[5, 0]] * 3))
    swapped = swap_players(step)
    assert swapped.rule_phase.tolist() == [[0, 1]] * 3 and torch.equal(swapped.chars, step.chars.flip(-1))
    assert all(torch.equal(torch.nan_to_num(v), torch.nan_to_num(getattr(swap_players(swapped), k)))
               for k, v in step.tensors().items())
    assert x.to("cpu").state_cont.device.type == "cpu"
