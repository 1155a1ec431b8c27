"""``player_items_only``: stage items (Yoshi's Story's Shy Guys, owned by nobody) out of the encoding and out of
what a model with that encoding predicts; the option switched on an exported model."""

from __future__ import annotations

import pytest

from meleewm.data.encoding import EncodingSpec
from meleewm.model.checkpoint import DEFAULT_MODEL, CheckpointError, export_model, load_model
from meleewm.replay.dataset import Dataset
from meleewm.replay.ingest import ingest
from tests.conftest import extract_members


@pytest.fixture(scope="module")
def yoshis_game(replays, manifest, tmp_path_factory):
    """A real two-player game on Yoshi's Story with Shy Guys (item type 210) and players' projectiles."""
    name = min(n for (a, n), r in manifest.items()
               if a == "games-1.zip" and r.get("stage_id") == 8 and {210, 55} <= set(r.get("item_type_ids") or []))
    root = tmp_path_factory.mktemp("yoshis")
    ingest(extract_members(replays / "games-1.zip", [name], root / "in"), root / "ds")
    dataset = Dataset(root / "ds")
    return dataset, dataset.games.column("game_id").to_pylist()[0]


def test_player_items_only_leaves_stage_items_out(yoshis_game):
    dataset, game_id = yoshis_game
    spec = EncodingSpec.fit(dataset, [game_id], items=True)
    assert "player_items_only" not in spec.to_dict()  # specs written before the option keep their hash
    every = spec.encode_game(dataset, game_id)
    spec.player_items_only = True
    assert EncodingSpec.from_dict(spec.to_dict()).player_items_only
    players = spec.encode_game(dataset, game_id)
    nobody = (every.item_present > 0) & (every.item_owner == 0)
    assert nobody.any()                                            # the game has Shy Guys
    assert not ((players.item_present > 0) & (players.item_owner == 0)).any()
    owned = lambda g: int(((g.item_present > 0) & (g.item_owner > 0)).sum())
    assert owned(players) >= owned(every) > 0                      # freed slots keep more of the players' items


def test_a_model_with_that_encoding_predicts_no_ownerless_item():
    """With ``player_items_only`` (the bundled model's encoding) no slot of a rollout holds an item that nobody owns,
    even from weights that predict nothing else; with the option off, the same weights fill the slots with them."""
    import torch

    from meleewm.model.world import OWNER_NONE
    from meleewm.eval.scenarios import IDLE_PAIRS, idle_inputs
    from meleewm.model.rollout import rollout

    ownerless = {}
    for option in (True, False):
        model = load_model(DEFAULT_MODEL).model.eval()
        assert model.spec.player_items_only
        model.spec.player_items_only = option
        with torch.no_grad():  # every slot: present, owned by nobody
            model.item_present_head.bias.fill_(30.0)
            model.item_owner_head.bias.view(model.spec.item_slots, -1)[:, OWNER_NONE] += 60.0
        warm, _ = idle_inputs(model, [8], IDLE_PAIRS[:1])
        out = rollout(model, warm, warm.ctrl[:, :1].expand(-1, 120, -1, -1))
        items = model.spec.decode_items(out["state_item_present"], out["state_item_type"],
                                        out["state_item_owner"], out["state_item_cont"])
        ownerless[option] = int((items["present"] & (items["owner"] == 0)).sum())
    assert ownerless[False] > 0 and ownerless[True] == 0, ownerless


def test_only_weightless_options_can_be_switched(tmp_path):
    with pytest.raises(CheckpointError, match="cannot switch"):
        export_model(DEFAULT_MODEL, tmp_path / "x.pt", {"cont_gate": False})


def test_a_game_with_stage_items_only_encodes_empty_slots(yoshis_game):
    """A game whose only items are the stage's (here: the Yoshi's Story game without its players' items) encodes
    with every slot empty under ``player_items_only``, not an error."""
    import pyarrow.compute as pc

    dataset, game_id = yoshis_game

    class StageItemsOnly:
        def __getattr__(self, name):
            return getattr(dataset, name)

        def items(self, game, columns=None):
            table = dataset.items(game, columns=columns)
            return table.filter(pc.less(pc.fill_null(table.column("owner"), -1), 0))

    spec = EncodingSpec.fit(dataset, [game_id], items=True)
    spec.player_items_only = True
    game = spec.encode_game(StageItemsOnly(), game_id)
    assert len(game) > 1000 and not game.item_present.any()
