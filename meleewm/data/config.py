"""The data section of a run: which games, split how, in windows of what length, augmented how.

A checkpoint records it, so evaluation finds the model's own validation games (:func:`run_split`) without the
rest of the training config.
"""

from __future__ import annotations

from dataclasses import dataclass

from meleewm.config import AT_LEAST_0, AT_LEAST_1, Bound, Rules
from meleewm.data.windows import split_games


@dataclass
class DataConfig:
    seq_len: int = 256             # T: frames per training window, a loss at every position
    batch_size: int = 16           # global batch (split across DDP ranks)
    val_fraction: float = 0.1
    split_seed: int = 0
    two_humans: bool = False       # extra filters on top of "exactly two players"
    completed: bool = False
    legal_stage: bool = False
    long_enough: bool = False
    max_games: int = 0             # 0 = all
    swap_players: bool = True      # augmentation: swap the two players with p=0.5
    mirror: bool = True            # augmentation: left-right mirror with p=0.5
    items: bool = False            # item slots in the encoding (read and predicted)
    item_slots: int = 8
    player_items_only: bool = False  # items a player owns only: stage items (Yoshi's Story's Shy Guys) left out
    age_by_rule: bool = False      # the state_age input counted as in closed loop (EncodingSpec.age_by_rule)
    ko_windows: float = 0.0        # extra training windows per KO and epoch, around the KO (rare-event oversampling)
    num_workers: int = 0
    store: str = "cache"           # "cache": one memory-mapped encoded cache; "sharded": compact shards, streamed
                                   # (meleewm.data.store; for datasets larger than a node's disk or memory)
    store_workers: int = 1         # processes that fit the encoding spec and build the sharded store
    prefetch_shards: bool = True   # sharded store: a thread reads and decompresses the next shards while the
                                   # current ones are served (memory: one more group of open shards)

    def filters(self) -> list[str]:
        """The game filters of the split (``meleewm.data.windows.GAME_FILTERS``): exactly two players, plus each
        filter switched on."""
        return ["two_players", *(f for f in ("two_humans", "completed", "legal_stage", "long_enough")
                                 if getattr(self, f))]


# The allowed range of the data section's numeric keys (keys as a run's config names them).
DATA_RULES = Rules(limits={
    "data.seq_len": AT_LEAST_1, "data.batch_size": AT_LEAST_1, "data.val_fraction": Bound(0, 1, high_open=True),
    "data.max_games": AT_LEAST_0, "data.item_slots": AT_LEAST_1, "data.num_workers": AT_LEAST_0,
    "data.store_workers": AT_LEAST_1,
}, choices={"data.store": ("cache", "sharded")})


def run_split(dataset, data: DataConfig) -> tuple[list[str], list[str]]:
    """A run's (train, val) game ids in ``dataset``: the hash split under the data section's filters, training
    capped at ``max_games``; on a dataset too small for a validation game, the first training game validates."""
    train_ids, val_ids = split_games(dataset.games, data.val_fraction, data.split_seed, filters=data.filters())
    if data.max_games:
        train_ids = train_ids[:data.max_games]
    return train_ids, val_ids or train_ids[:1]
