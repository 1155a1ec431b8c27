"""Windows feed state_age, and KO oversampling adds windows around real KOs (on the small real dataset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.realdata import real_dataset

T = 128


@pytest.fixture(scope="module")
def cache(replays, manifest, tmp_path_factory):
    from meleewm.data.cache import build_cache
    from meleewm.data.encoding import EncodingSpec
    from meleewm.replay.dataset import Dataset

    dataset = Dataset(real_dataset(replays, manifest, tmp_path_factory))
    ids = sorted(dataset.games.column("game_id").to_pylist())
    return build_cache(dataset, EncodingSpec.fit(dataset, ids), ids, progress=False)


def test_windows_feed_the_recorded_state_age(cache):
    from meleewm.data.windows import WindowDataset

    windows = WindowDataset(cache, T, random_phase=False)
    s = windows[1]
    g, start = int(s["game"]), int(s["start"])
    begin = int(cache.offsets[g]) + start
    assert torch.equal(s["state_age"], torch.from_numpy(np.asarray(cache.arrays["state_age"][begin:begin + T])))


def test_ko_windows_surround_real_kos(cache):
    from meleewm.data.windows import WindowDataset, ko_frames

    kos = ko_frames(cache, range(len(cache)))
    assert len(kos) > 0
    stock = cache.spec.cat_index("post_stocks")
    for game, frame in kos:
        at = int(cache.offsets[game]) + int(frame)
        assert (cache.arrays["cat"][at, :, stock] < cache.arrays["cat"][at - 1, :, stock]).any()
    plain = WindowDataset(cache, T, seed=1)
    boosted = WindowDataset(cache, T, seed=1, ko_windows=2.0)
    extra = len(boosted) - len(plain)
    assert 0 < extra <= 2 * len(kos)
    for i in range(len(plain), len(boosted)):
        s = boosted[i]
        g, start = int(s["game"]), int(s["start"])
        inside = kos[(kos[:, 0] == g) & (kos[:, 1] > start) & (kos[:, 1] <= start + T)]
        assert len(inside), (g, start)  # every extra window holds a KO
    with pytest.raises(ValueError):
        WindowDataset(cache, T, ko_windows=-1)
