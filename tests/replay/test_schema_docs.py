"""docs/dataset.md documents every column the dataset has."""

from pathlib import Path

from meleewm.replay.schema import FRAME_COLUMNS, GAME_COLUMNS, ITEM_COLUMNS, STAGE_EVENT_COLUMNS

DOC = Path(__file__).resolve().parents[2] / "docs" / "dataset.md"


def test_every_column_is_documented():
    text = DOC.read_text()
    for column in (*GAME_COLUMNS, *FRAME_COLUMNS, *ITEM_COLUMNS, *STAGE_EVENT_COLUMNS):
        assert f"`{column.name}`" in text, column.name
