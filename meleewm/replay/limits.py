"""Physical limits of per-frame values: a game with a value outside them is garbage, quarantined at ingest.

Each limit comes from the game and is checked against the real replays in ``../shared/replays`` (320 games,
3.96M player-frames; ``docs/dataset.md`` gives the measured ranges). The limits are far outside what play
produces, so that only impossible values trip them, yet tight enough that nothing that passes can poison the
encoding's statistics (``data/encoding.py`` also clips to them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Limit:
    low: float
    high: float
    why: str
    finite: bool = True  # NaN and inf are garbage too (False where real replays hold NaN)


# Positions: every stage's blast zones lie within a few hundred units of its centre (the legal ones within ±255 x,
# -146..250 y) and a character past one is KO'd; replays show |x| ≤ 274, -153 ≤ y ≤ 264.
_POSITION = Limit(-1000.0, 1000.0, "beyond every stage's blast zones (real: |x| ≤ 274, -153 ≤ y ≤ 264)")
# Velocities in units per frame: Melee caps knockback at 2500 (75 units/frame); replays show |v| ≤ 24.
_VELOCITY = Limit(-100.0, 100.0, "faster than Melee's knockback cap of 75 units/frame (real: |v| ≤ 24)")
_PERCENT = Limit(0.0, 999.0, "Melee shows 0-999% (real: ≤ 315)")

LIMITS: dict[str, Limit] = {
    "pre_position_x": _POSITION, "pre_position_y": _POSITION,
    "post_position_x": _POSITION, "post_position_y": _POSITION,
    "post_velocities_self_x_air": _VELOCITY, "post_velocities_self_y": _VELOCITY,
    "post_velocities_knockback_x": _VELOCITY, "post_velocities_knockback_y": _VELOCITY,
    "post_velocities_self_x_ground": _VELOCITY,
    "pre_percent": _PERCENT, "post_percent": _PERCENT,
    "post_shield": Limit(0.0, 60.0, "a full shield is 60 (real: 6.8-60)"),
    "post_stocks": Limit(0, 99, "the rules allow at most 99 stocks (real: ≤ 32)"),
    # Ids 0-340 are shared; character-specific ones follow, the largest well under 600 (real: ≤ 535).
    "pre_state": Limit(0, 1023, "no action state id is that large (real: ≤ 535)"),
    "post_state": Limit(0, 1023, "no action state id is that large (real: ≤ 535)"),
    "post_hitlag": Limit(0.0, 100.0, "hitlag lasts at most 20-odd frames (real: ≤ 18)"),
    # Real replays hold NaN in misc_as (152 of 3.75M frames): NaN stays allowed, and is read as missing.
    "post_misc_as": Limit(-1000.0, 1000.0, "hitstun and similar timers are short (real: -28 to 220)", finite=False),
    "post_combo_count": Limit(0, 255, "a uint8 counter (real: ≤ 12)"),
}


def violations(table: pa.Table) -> list[str]:
    """One line per limited column of ``table`` holding a value outside its limit (absent columns pass)."""
    problems = []
    present = set(table.column_names)
    for name, limit in LIMITS.items():
        if name not in present:
            continue
        column = table.column(name)
        # numpy's reductions are several times faster than Arrow's min_max here, and this runs on every game.
        values = (column.drop_null() if column.null_count else column).to_numpy()
        if values.size == 0:
            continue
        low, high = values.min(), values.max()  # NaN if any value is NaN
        if values.dtype.kind == "f" and not np.isfinite([low, high]).all():
            if limit.finite:
                problems.append(f"{name}: {int(np.count_nonzero(~np.isfinite(values)))} non-finite value(s)")
                continue
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                continue
            low, high = finite.min(), finite.max()
        for value in (low, high):
            if not limit.low <= value <= limit.high:
                problems.append(f"{name} = {value:.6g}, outside [{limit.low:g}, {limit.high:g}]: {limit.why}")
                break
    return problems


def clip(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` clipped to the field's limits (unchanged for a field without one)."""
    limit = LIMITS.get(name)
    return values if limit is None else np.clip(values, limit.low, limit.high)
