"""The sharded store on real games: equal to the encoded cache, compact, self-describing, resumable to build, and
streamed with bounded memory and exact resume, each rank from its own shards."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from meleewm.data.cache import build_cache
from meleewm.data.encoding import EncodingSpec
from meleewm.data.store import HEADER_KEY, INDEX, ShardedStore, ShardStream, StoreError, build_store
from meleewm.data.windows import WindowDataset
from meleewm.replay.dataset import Dataset
from tests.train.realdata import real_dataset

T = 64


@pytest.fixture(scope="module")
def encoded(replays, manifest, tmp_path_factory):
    """The 4-game real dataset, its spec (items on), its encoded cache, and a store of one game per shard."""
    dataset = Dataset(real_dataset(replays, manifest, tmp_path_factory))
    ids = sorted(dataset.game_ids())
    spec = EncodingSpec.fit(dataset, ids, items=True)
    cache = build_cache(dataset, spec, ids, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    store = build_store(dataset, spec, ids, tmp_path_factory.mktemp("store"), games_per_shard=1, workers=2,
                        progress=False)
    return dataset, spec, cache, store


def test_the_store_holds_exactly_what_the_cache_holds(encoded):
    _, _, cache, store = encoded
    assert store.game_ids == cache.game_ids and list(store.lengths) == list(cache.lengths)
    for game in range(len(cache)):
        length = int(cache.lengths[game])
        mine, theirs = store.window(game, 0, length), cache.window(game, 0, length)
        assert mine.keys() == theirs.keys()
        for name, values in theirs.items():
            assert mine[name].dtype == values.dtype and mine[name].shape == values.shape, name
            np.testing.assert_array_equal(mine[name], values, err_msg=name)  # NaNs of state_age included
        assert list(store.kos(game)) == list(cache.kos(game))
    # Windows and samples are the same whichever holds the games.
    a, b = WindowDataset(cache, T, seed=3, swap=True, mirror=True), WindowDataset(store, T, seed=3, swap=True,
                                                                                   mirror=True)
    for i in range(0, len(a), 7):
        for key, value in a[i].items():
            assert torch.equal(value, b[i][key]), (i, key)


def test_the_store_is_compact_and_self_describing(encoded):
    _, spec, cache, store = encoded
    per_frame = store.bytes_on_disk() / store.n_frames
    cache_per_frame = sum(p.stat().st_size for p in cache.path.glob("*.npy")) / cache.n_frames
    print(f"sharded store {per_frame:.1f} bytes/frame; encoded cache {cache_per_frame:.1f} bytes/frame")
    assert per_frame <= 200
    shard = store.path / store.index["shards"][0]["file"]
    with pa.memory_map(str(shard)) as source:
        header = json.loads(pa.ipc.open_file(source).schema.metadata[HEADER_KEY])
    assert header["spec_hash"] == spec.hash() and EncodingSpec.from_dict(header["spec"]) == spec
    assert [g["game_id"] for g in header["games"]] == [store.game_ids[0]]
    assert header["frames"] == store.lengths[0] and header["games"][0]["first_frame"] == -123
    assert {c["array"] for c in header["columns"]} >= {"cont", "binary", "cat", "ctrl", "item_cont"}


def test_a_killed_build_keeps_its_whole_shards(encoded, tmp_path):
    dataset, spec, _, store = encoded
    ids = store.game_ids
    first = build_store(dataset, spec, ids, tmp_path, games_per_shard=2, progress=False)
    kept = first.path / first.index["shards"][0]["file"]
    stamp = kept.stat().st_mtime_ns
    (first.path / INDEX).unlink()  # as if killed before its index: the store is not there yet
    (first.path / first.index["shards"][1]["file"]).unlink()
    (first.path / ".shard-00001.arrow.0000.tmp").write_bytes(b"half a shard")
    with pytest.raises(StoreError, match="no index.json"):
        ShardedStore(first.path)
    again = build_store(dataset, spec, ids, tmp_path, games_per_shard=2, progress=False)
    assert kept.stat().st_mtime_ns == stamp, "a whole shard was rebuilt"
    assert not list(again.path.glob(".*.tmp"))
    for game in range(len(again)):
        for name, values in store.window(game, 0, 300).items():
            np.testing.assert_array_equal(again.window(game, 0, 300)[name], values, err_msg=name)


def _stream(store, **options):
    return ShardStream(store, T, 4, seed=5, swap=True, mirror=True, ko_windows=0.5, **options)


def test_the_stream_resumes_exactly(encoded):
    store = encoded[3]
    stream = _stream(store)
    assert stream.steps_per_epoch > 6
    for epoch in (0, 1):
        whole = list(stream.batches(epoch))
        assert len(whole) == stream.steps_per_epoch
        for start in (3, stream.steps_per_epoch - 1):
            for a, b in zip(whole[start:], stream.batches(epoch, start), strict=True):
                assert all(torch.equal(a[k], b[k]) for k in a)
    first, second = next(stream.batches(0)), next(stream.batches(1))
    assert not torch.equal(first["state_cont"], second["state_cont"]), "epochs draw other windows"
    assert any(b["swapped"].any() for b in whole) and any(b["mirrored"].any() for b in whole)


def test_shards_read_ahead_change_no_batch(encoded):
    store = encoded[3]
    ahead, inline = _stream(store), _stream(ShardedStore(store.path), prefetch_shards=False)
    assert ahead.prefetch_shards and not inline.prefetch_shards
    for a, b in zip(ahead.batches(1), inline.batches(1), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_each_rank_reads_its_own_shards_with_bounded_memory(encoded):
    store = ShardedStore(encoded[3].path, open_shards=1)
    ranks = [_stream(store, rank=rank, world=2) for rank in (0, 1)]
    assert ranks[0].steps_per_epoch == ranks[1].steps_per_epoch > 0
    games = []
    for stream in ranks:
        seen = set()
        for batch in stream.batches(0):
            seen |= set(batch["game"].tolist())
            assert len(store._decoded) <= 1  # never more than open_shards decoded at once
        games.append(seen)
    assert games[0] and games[1] and not games[0] & games[1]
    with pytest.raises(StoreError, match="fewer than the 8 ranks"):
        _stream(store, rank=0, world=8)
