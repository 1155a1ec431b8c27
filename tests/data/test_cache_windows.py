"""The memory-mapped cache, training windows and game splits."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from meleewm.data.cache import CacheError, EncodedCache, build_cache, cache_key
from meleewm.data.augment import swap_players
from meleewm.data.encoding import CTRL_COLUMNS, FRAME_ARRAYS, read_player_columns
from meleewm.data.windows import WindowDataset, split_games

T = 64


@pytest.fixture(scope="module")
def cache(small_dataset, spec, tmp_path_factory):
    dataset, ids = small_dataset
    return build_cache(dataset, spec, list(ids.values()), tmp_path_factory.mktemp("cache"), progress=False)


def test_cache_matches_encode_game_and_is_reused(small_dataset, spec, cache):
    dataset, ids = small_dataset
    assert len(cache) == 4 and cache.game_ids == sorted(ids.values())
    assert cache.path.name == cache_key(dataset, spec, ids.values())
    for i, gid in enumerate(cache.game_ids):
        cached, direct = cache.game(i), spec.encode_game(dataset, gid)
        assert cached.game_id == gid and cached.const_stage == direct.const_stage
        assert np.array_equal(cached.const_chars, direct.const_chars)
        for name in FRAME_ARRAYS:
            a, b = getattr(cached, name), getattr(direct, name)
            assert isinstance(a, np.memmap), name
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    def no_encoding(*args, **kwargs):
        raise AssertionError("an existing cache was encoded again")

    with pytest.MonkeyPatch.context() as patch:  # reuse must not encode anything
        patch.setattr(type(spec), "encode_game", no_encoding)
        again = build_cache(dataset, spec, reversed(list(ids.values())), cache.path.parent, progress=False)
    assert again.path == cache.path and again.key == cache.key
    reopened = EncodedCache(cache.path)
    assert reopened.spec == spec and reopened.n_frames == int(dataset.games.column("frame_count").to_numpy().sum())


def test_killed_build_leaves_nothing_visible(small_dataset, spec, tmp_path, monkeypatch):
    dataset, ids = small_dataset
    game_ids = sorted(ids.values())[:2]
    key = cache_key(dataset, spec, game_ids)
    # a build killed mid-way by an exception: no key folder, no temp folder
    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(spec), "encode_game", boom)
    with pytest.raises(KeyboardInterrupt):
        build_cache(dataset, spec, game_ids, tmp_path, progress=False)
    monkeypatch.undo()
    assert calls and list(tmp_path.iterdir()) == []
    # a build killed hard (SIGKILL) leaves a temp folder: it is never used, and is removed once its process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".tmp-{key}-{socket.gethostname()}-{dead.pid}-deadbeef"
    stale.mkdir()
    (stale / "cont.npy").write_bytes(b"half written")
    with pytest.raises(CacheError):
        EncodedCache(stale)
    built = build_cache(dataset, spec, game_ids, tmp_path, progress=False)
    assert built.path == tmp_path / key and len(built) == 2
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]


def test_window_causality(small_dataset, cache):
    dataset, _ = small_dataset
    ds = WindowDataset(cache, T, seed=3)
    expected = sum((n - 1) // T for n in cache.lengths)
    assert len(ds) == expected
    for i in (0, len(ds) // 2, len(ds) - 1):
        s = ds[i]
        for name in ("cont", "bin", "cat"):
            assert torch.equal(s[f"next_{name}"][:-1], s[f"state_{name}"][1:]), name
        assert torch.equal(s["next_cont_mask"][:-1], s["cont_mask"][1:])
        g = cache.game(int(s["game"]))
        a = int(s["start"])
        assert a + T + 1 <= len(g)
        assert np.array_equal(s["state_cont"].numpy(), g.cont[a:a + T])
        assert np.array_equal(s["next_cat"].numpy(), g.cat[a + 1:a + T + 1])
        assert np.array_equal(s["ctrl"].numpy(), g.ctrl[a + 1:a + T + 1])
        assert np.array_equal(s["frame"].numpy(), g.frame_ids[a + 1:a + T + 1])
        assert torch.equal(s["state_item_present"][1:], s["next_item_present"][:-1])
        # ctrl[i] is the pre-frame controller of the frame whose state next_*[i] is
        frame_ids, _, values, _ = read_player_columns(dataset, g.game_id, CTRL_COLUMNS)
        rows = np.searchsorted(frame_ids, s["frame"].numpy())
        assert np.allclose(s["ctrl"][..., 0].numpy(), values["pre_joystick_x"][rows])
        assert np.allclose(s["ctrl"][..., 3].numpy(), values["pre_cstick_y"][rows])
    assert s["state_cat"].dtype == torch.int64 and s["state_bin"].dtype == torch.float32
    assert s["cont_mask"].dtype == torch.bool and s["chars"].shape == (2,)


def test_epochs_are_deterministic(cache):
    a, b = WindowDataset(cache, T, seed=1, swap=True, mirror=True), WindowDataset(cache, T, seed=1, swap=True,
                                                                                    mirror=True)
    a.set_epoch(2)
    b.set_epoch(2)
    assert np.array_equal(a._start_in_game, b._start_in_game) and np.array_equal(a._swap, b._swap)
    for k, v in a[5].items():
        assert torch.equal(v, b[5][k]), k
    starts = a._start_in_game.copy()
    a.set_epoch(3)
    assert len(a) == len(b) and not np.array_equal(a._start_in_game, starts)
    assert a._swap.any() and a._mirror.any() and not a._swap.all()
    fixed = WindowDataset(cache, T, random_phase=False)
    fixed.set_epoch(7)
    assert np.all(fixed._start_in_game % T == 0)
    # windows of one game never overlap within an epoch
    for g in np.unique(a._game_of):
        s = np.sort(a._start_in_game[a._game_of == g])
        assert np.all(np.diff(s) >= T)


def test_augmented_windows(cache, spec):
    plain = WindowDataset(cache, T, seed=4)
    aug = WindowDataset(cache, T, seed=4, swap=True)
    i = int(np.flatnonzero(aug._swap)[0])
    p, s = plain[i], aug[i]
    assert bool(s["swapped"]) and not bool(p["swapped"])
    expected = swap_players({k: v for k, v in p.items()})
    for k in p:
        if k not in ("swapped",):
            assert torch.equal(s[k], expected[k]), k
    mir = WindowDataset(cache, T, seed=4, mirror=True)
    j = int(np.flatnonzero(mir._mirror)[0])
    m, p = mir[j], plain[j]
    xi = spec.cont_index("post_position_x")
    assert torch.allclose(m["next_cont"][..., xi], -p["next_cont"][..., xi])


def test_collate_and_workers(cache):
    ds = WindowDataset(cache, T, swap=True, mirror=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)
    batch = next(iter(loader))
    assert batch["state_cont"].shape == (4, T, 2, ds.spec.n_cont)
    assert batch["stage"].shape == (4,) and batch["chars"].shape == (4, 2)
    assert batch["state_item_cont"].shape == (4, T, ds.spec.item_slots, 4)
    _ = cache.arrays  # opened memmaps must not travel with the dataset to workers
    assert len(pickle.dumps(ds)) < 200_000
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3]["next_cont"], ds[3]["next_cont"])


def _rows(n, start=0):
    return [{"game_id": f"{i:064x}", "n_players": 2 if i % 7 else 3, "two_humans": True} for i in range(start, n)]


def test_split_games():
    rows = _rows(400)
    train, val = split_games(rows, val_fraction=0.2, seed=0)
    assert not set(train) & set(val)
    assert len(train) + len(val) == sum(r["n_players"] == 2 for r in rows)
    assert 0.1 < len(val) / (len(train) + len(val)) < 0.3
    assert split_games(rows, 0.2, 0) == (train, val)
    assert split_games(list(reversed(rows)), 0.2, 0) == (train, val)
    train2, val2 = split_games(rows + _rows(600, 400), 0.2, 0)  # adding games moves no old game
    assert set(train) <= set(train2) and set(val) <= set(val2)
    assert split_games(rows, 0.2, seed=1) != (train, val)
    assert split_games(rows, 0.2, filters=())[0] != train
    with pytest.raises(KeyError):
        split_games(rows, filters=("nope",))


def test_split_real_games(small_dataset):
    dataset, ids = small_dataset
    train, val = split_games(dataset.games, val_fraction=0.5, seed=0, filters=("two_players", "legal_stage"))
    assert sorted(train + val) == sorted(ids.values())
