"""One game with a garbage value (from a dataset ingested before the physical limits) cannot poison the
encoding's normalisation statistics: values are clipped to the limits before they are counted."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from meleewm.data.encoding import EncodingSpec
from meleewm.replay.dataset import Dataset, PartWriter
from meleewm.replay.ingest import ingest
from meleewm.replay.reader import parse_replay
from tests.conftest import extract_members
from tests.data.conftest import MEMBERS


def test_one_garbage_game_does_not_poison_the_statistics(replays, tmp_path):
    paths = extract_members(replays / "games-1.zip", [MEMBERS["ys_314"], MEMBERS["dl_314"]], tmp_path / "in")
    ingest(paths, tmp_path / "ds")
    dataset = Dataset(tmp_path / "ds")
    clean_ids = sorted(dataset.game_ids())

    # The second game again, under another id, with x = 1e30 on one frame: written past ingest's validation.
    game = parse_replay(paths[1].read_bytes(), "garbage.slp", game_id="f" * 64)
    x = game.frames.column("post_position_x").to_numpy(zero_copy_only=False).copy()
    x[1000] = 1e30
    frames = game.frames.set_column(game.frames.schema.get_field_index("post_position_x"), "post_position_x",
                                    pa.array(x, pa.float32()))
    frames = frames.set_column(0, "game_id", pa.array(["f" * 64] * frames.num_rows))
    assert pc.max(frames.column("post_position_x")).as_py() == pytest.approx(1e30)
    writer = PartWriter(dataset.root)
    writer.add(type(game)(game.record, frames, game.items, game.stage_events))
    dataset.commit(writer.close())
    dataset = Dataset(tmp_path / "ds")

    clean = EncodingSpec.fit(dataset, clean_ids).cont_stats
    mixed = EncodingSpec.fit(dataset, sorted(dataset.game_ids())).cont_stats
    mean_clean, std_clean = clean["post_position_x"]
    mean_mixed, std_mixed = mixed["post_position_x"]
    assert std_mixed == pytest.approx(std_clean, rel=0.2)  # the game's other frames count; its 1e30 cannot
    assert abs(mean_mixed) < 1e-9 and std_mixed < 200
