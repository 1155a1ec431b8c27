"""Work over groups of a dataset's games in worker processes: the encoding spec's fit and the sharded store's build.

Each task is sent a view of the dataset that holds its own games only (``Dataset.subset``): sent the whole games
index, every task would read all of it, and the work would grow with the square of the number of games.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def map_game_groups(function: Callable, dataset, tasks: Sequence[tuple[list[str], tuple]],
                    workers: int) -> Iterator[tuple[int, Any]]:
    """``function(dataset, game_ids, *args)`` for each ``(game_ids, args)`` of ``tasks``, in ``workers`` processes
    (in this one, on the whole dataset, when ``workers`` <= 1); yields ``(task index, result)`` as tasks finish."""
    if workers <= 1:
        for index, (game_ids, args) in enumerate(tasks):
            yield index, function(dataset, game_ids, *args)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(function, dataset.subset(game_ids), game_ids, *args): index
                   for index, (game_ids, args) in enumerate(tasks)}
        for future in as_completed(futures):
            yield futures[future], future.result()
