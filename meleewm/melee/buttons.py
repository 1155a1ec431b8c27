"""Controller button bitmasks of the Slippi pre-frame update (replay spec).

``pre.buttons_physical`` (uint16) holds the buttons as pressed on the
controller. ``pre.buttons`` (uint32) holds the buttons as the game processed
them: its low 16 bits use the same layout as the physical field, and its upper
bits add the stick directions and an "any trigger" bit.
"""

from __future__ import annotations

from enum import IntFlag

import numpy as np


class PhysicalButton(IntFlag):
    D_LEFT = 0x0001
    D_RIGHT = 0x0002
    D_DOWN = 0x0004
    D_UP = 0x0008
    Z = 0x0010
    R = 0x0020  # digital press of the R trigger
    L = 0x0040  # digital press of the L trigger
    A = 0x0100
    B = 0x0200
    X = 0x0400
    Y = 0x0800
    START = 0x1000
    # 0x0080 and 0x2000..0x8000 are unused.


class ProcessedButton(IntFlag):
    D_LEFT = 0x0001
    D_RIGHT = 0x0002
    D_DOWN = 0x0004
    D_UP = 0x0008
    Z = 0x0010
    R = 0x0020
    L = 0x0040
    A = 0x0100
    B = 0x0200
    X = 0x0400
    Y = 0x0800
    START = 0x1000
    JOYSTICK_UP = 0x0001_0000
    JOYSTICK_DOWN = 0x0002_0000
    JOYSTICK_LEFT = 0x0004_0000
    JOYSTICK_RIGHT = 0x0008_0000
    CSTICK_UP = 0x0010_0000
    CSTICK_DOWN = 0x0020_0000
    CSTICK_LEFT = 0x0040_0000
    CSTICK_RIGHT = 0x0080_0000
    ANY_TRIGGER = 0x8000_0000
    # 0x0100_0000..0x4000_0000 are unused.


# The digital buttons a controller model reads, in a fixed order.
DIGITAL_BUTTONS: tuple[str, ...] = ("A", "B", "X", "Y", "Z", "L", "R", "START", "D_UP", "D_DOWN", "D_LEFT", "D_RIGHT")


def button_bits(mask, names: tuple[str, ...] = DIGITAL_BUTTONS, flag=PhysicalButton):
    """Unpack bitmask value(s) into booleans, one per name (last axis for arrays)."""
    m = np.asarray(mask).astype(np.uint64)
    return np.stack([(m & np.uint64(flag[n].value)) != 0 for n in names], axis=-1)
