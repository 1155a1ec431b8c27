"""Measure how long each (character, action) lasts at most, and what follows it, on a dataset; write
``meleewm/melee/moves.json`` (the facts ``model.move_end`` reads).

    python tools/measure_moves.py datasets/all
"""

from __future__ import annotations

import sys

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from meleewm.data.cache import build_cache, fitted_spec
from meleewm.data.config import DataConfig, run_split
from meleewm.melee.characters import external_to_internal
from meleewm.melee.moves import MOVES_FILE, measure_moves, save_moves
from meleewm.replay.dataset import Dataset


def main(dataset: str, out: str = str(MOVES_FILE)) -> None:
    ds = Dataset(dataset)
    train, val = run_split(ds, DataConfig())   # the two-player games, as training reads them
    spec = fitted_spec(ds, train + val)
    cache = build_cache(ds, spec, train + val, progress=True)
    arrays = cache.arrays
    actions = spec.decode_lut("post_state")[np.asarray(arrays["cat"][:, :, spec.cat_index("post_state")])]
    airborne = np.asarray(arrays["binary"][:, :, spec.bin_index("airborne")]) > 0
    airborne_known = np.asarray(arrays["bin_mask"][:, :, spec.bin_index("airborne")]) > 0
    chars = np.zeros(actions.shape, np.int16)
    for entry, start, length in zip(cache.entries, cache.offsets, cache.lengths):
        chars[start:start + length] = [external_to_internal(c) for c in entry.chars[:2]]
    table = measure_moves(actions, airborne, chars, np.asarray(arrays["state_age"]), np.asarray(cache.offsets),
                          np.asarray(cache.lengths), airborne_known)
    save_moves(table, out, source=f"{len(cache.entries)} games, {actions.shape[0]:,} frames of {dataset}")
    summary = Table(title=f"moves measured → {out}")
    for column in ("characters", "limited moves", "frames"):
        summary.add_column(column, justify="right")
    summary.add_row(str(len(table)), str(sum(len(v) for v in table.values())), f"{actions.shape[0]:,}")
    Console().print(summary)


if __name__ == "__main__":
    sys.exit(typer.run(main))
