"""Facts about a dataset, as titled lists of (name, value) rows: what ``meleewm info`` prints."""

from __future__ import annotations

from collections import Counter

from meleewm.melee import character_name, stage_name
from meleewm.replay.dataset import Dataset


def _counted(counter: Counter, label=str) -> list[tuple[str, int]]:
    return [(label(key), count) for key, count in counter.most_common()]


def summarize(dataset: Dataset) -> dict[str, list[tuple[str, object]]]:
    games = dataset.games.to_pylist()
    quarantine = dataset.quarantine()
    frames = sum(g["frame_count"] for g in games)
    seconds = sum(g["duration_s"] for g in games)
    characters = Counter(p["character"] for g in games for p in g["players"])
    return {
        f"dataset {dataset.root}": [
            ("games", len(games)),
            ("frames", frames),
            ("hours of play", f"{seconds / 3600:.2f}"),
            ("two humans, completed, legal stage, ≥30 s",
             sum(g["two_humans"] and g["completed"] and g["legal_stage"] and g["long_enough"] for g in games)),
            ("games with items", sum(bool(g["has_items"]) for g in games)),
            ("games with Ice Climbers' follower", sum(bool(g["has_follower"]) for g in games)),
            ("rollback frames removed", sum(g["rollback_frames"] for g in games)),
            ("quarantined files", len(quarantine)),
            ("schema version", dataset.header["schema_version"]),
            ("created", dataset.header["created"]),
        ],
        "characters (players)": _counted(characters, lambda c: character_name(c)),
        "stages": _counted(Counter(g["stage"] for g in games), stage_name),
        "Slippi versions": _counted(Counter(g["slippi_version"] for g in games)),
        "end methods": _counted(Counter(g["end_method"] or "none" for g in games)),
        "quarantine reasons": _counted(Counter(q["reason"] for q in quarantine)),
    }
