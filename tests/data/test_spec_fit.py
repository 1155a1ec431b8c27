"""The encoding spec's fit on real games: in worker processes it gives the one-process spec to the bit, and a run's
fit is saved once and read back, keyed by its games and options."""

from __future__ import annotations

import json

import pytest

from meleewm.data import encoding
from meleewm.data.cache import fitted_spec
from meleewm.data.encoding import EncodingSpec


def test_the_fit_in_workers_equals_the_fit_in_one_process(small_dataset, monkeypatch):
    dataset, ids = small_dataset
    games = sorted(ids.values())
    serial = EncodingSpec.fit(dataset, games, items=True, item_slots=4)
    # One game a task: 4 tasks over 2 workers finish in any order, and are added in game order all the same.
    monkeypatch.setattr(encoding, "FIT_GAMES_PER_TASK", 1)
    parallel = EncodingSpec.fit(dataset, games, items=True, item_slots=4, workers=2)
    assert json.dumps(parallel.to_dict()) == json.dumps(serial.to_dict())  # every float to the bit, fit_info too
    assert parallel.fit_info == {"games": 4, "frames": serial.fit_info["frames"]} and serial.item_type_vocab


def test_a_fit_is_saved_once_and_read_back(small_dataset, tmp_path, monkeypatch):
    dataset, ids = small_dataset
    games = sorted(ids.values())
    first = fitted_spec(dataset, games, items=True, item_slots=4, spec_dir=tmp_path)
    [saved] = tmp_path.glob("*.json")
    assert not list(tmp_path.glob(".*.tmp"))

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted again")

    fit = EncodingSpec.fit
    monkeypatch.setattr(EncodingSpec, "fit", no_fit)
    again = fitted_spec(dataset, list(reversed(games)), items=True, item_slots=4, spec_dir=tmp_path, workers=2)
    assert again == first and again.fit_info == first.fit_info
    # Other games or other options are another fit, saved under another key.
    monkeypatch.setattr(EncodingSpec, "fit", fit)
    fewer = fitted_spec(dataset, games[:3], items=True, item_slots=4, spec_dir=tmp_path)
    no_items = fitted_spec(dataset, games, items=False, spec_dir=tmp_path)
    assert fewer.fit_info["games"] == 3 and not no_items.items
    assert len(list(tmp_path.glob("*.json"))) == 3 and saved.is_file()


def test_a_saved_fit_of_another_format_is_refused(small_dataset, tmp_path):
    dataset, ids = small_dataset
    games = sorted(ids.values())
    fitted_spec(dataset, games, spec_dir=tmp_path)
    [saved] = tmp_path.glob("*.json")
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "version": 99}))
    with pytest.raises(encoding.MeleewmError, match="delete it"):
        fitted_spec(dataset, games, spec_dir=tmp_path)
