"""Stage ids (Slippi GameStart numbering) and geometry of the six legal stages.

Coordinates are Melee world units: x grows to the right, y grows upward, the
main stage surface is at y = 0 and every legal stage is centred on x = 0.
Blast zones and ledge x come from ARCHITECTURE.md (cross-checked against
libmelee). Platform numbers were checked against real replays: the range of
positions where characters stand on each ground id (``post.ground``) in
games-1/games-2 matches them to within 0.1 unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meleewm.melee.actions import HALO_DESCENT_FRAMES

STAGE_NAMES: dict[int, str] = {
    2: "Fountain of Dreams",
    3: "Pokémon Stadium",
    4: "Princess Peach's Castle",
    5: "Kongo Jungle",
    6: "Brinstar",
    7: "Corneria",
    8: "Yoshi's Story",
    9: "Onett",
    10: "Mute City",
    11: "Rainbow Cruise",
    12: "Jungle Japes",
    13: "Great Bay",
    14: "Hyrule Temple",
    15: "Brinstar Depths",
    16: "Yoshi's Island",
    17: "Green Greens",
    18: "Fourside",
    19: "Mushroom Kingdom I",
    20: "Mushroom Kingdom II",
    # 21 is unused (a stage cut from the game).
    22: "Venom",
    23: "Poké Floats",
    24: "Big Blue",
    25: "Icicle Mountain",
    26: "Icetop",
    27: "Flat Zone",
    28: "Dream Land N64",
    29: "Yoshi's Island N64",
    30: "Kongo Jungle N64",
    31: "Battlefield",
    32: "Final Destination",
}

FOUNTAIN_OF_DREAMS, POKEMON_STADIUM, YOSHIS_STORY = 2, 3, 8
DREAM_LAND, BATTLEFIELD, FINAL_DESTINATION = 28, 31, 32
LEGAL_STAGES: tuple[int, ...] = (
    FOUNTAIN_OF_DREAMS, POKEMON_STADIUM, YOSHIS_STORY, DREAM_LAND, BATTLEFIELD, FINAL_DESTINATION,
)

Platform = tuple[float, float, float]  # (y, x_left, x_right)


@dataclass(frozen=True)
class StageGeometry:
    stage_id: int
    name: str
    blast_left: float
    blast_right: float
    blast_top: float
    blast_bottom: float
    ledge_x: float  # main platform spans [-ledge_x, +ledge_x]
    platforms: tuple[Platform, ...] = ()  # pass-through platforms, left to right then top
    main_y: float = 0.0


_GEOMETRY: dict[int, StageGeometry] = {
    g.stage_id: g
    for g in (
        StageGeometry(FINAL_DESTINATION, "Final Destination", -246.0, 246.0, 188.0, -140.0, 88.4735),
        StageGeometry(
            BATTLEFIELD, "Battlefield", -224.0, 224.0, 200.0, -108.8, 71.3079,
            ((27.2, -57.6, -20.0), (27.2, 20.0, 57.6), (54.4, -18.8, 18.8)),
        ),
        # The main stage slopes down to y = -3.5 near its edges, and the side
        # platforms reach 0.6 past the ledge x. Randall (the moving cloud under
        # each side) is not modelled.
        StageGeometry(
            YOSHIS_STORY, "Yoshi's Story", -175.7, 173.6, 168.0, -91.0, 58.9078,
            ((23.45, -59.5, -28.0), (23.45, 28.0, 59.5), (42.0, -15.75, 15.75)),
        ),
        # Dream Land's side platforms are slightly asymmetric (checked in replays).
        StageGeometry(
            DREAM_LAND, "Dream Land N64", -255.0, 255.0, 250.0, -123.0, 80.1792,
            ((30.1422, -61.3929, -31.7254), (30.2426, 31.7036, 63.0745), (51.4254, -19.0181, 19.0171)),
        ),
        # Neutral form only; stage transformations change the layout.
        StageGeometry(
            POKEMON_STADIUM, "Pokémon Stadium", -230.0, 230.0, 180.0, -111.0, 90.6579,
            ((25.0, -55.0, -25.0), (25.0, 25.0, 55.0)),
        ),
        # The side platforms move up and down during play (standing heights seen
        # in replays span y 0.375..27.375). The heights here are where they start
        # each game, as seen in replays (left 16.125, right 22.125); their x
        # edges (±21.0 .. ±49.5) are approximate, from standing positions.
        StageGeometry(
            FOUNTAIN_OF_DREAMS, "Fountain of Dreams", -198.75, 198.75, 202.5, -146.25, 66.2554,
            ((16.125, -49.5, -21.0), (22.125, 21.0, 49.5), (42.75, -14.25, 14.25)),
        ),
    )
}


# Where ports 1 and 2 appear on frame -123 of a game, per legal stage (read off every game in games-1), and the
# ground id of the main stage near its centre.
SPAWN_POINTS: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    FINAL_DESTINATION: ((-60.0, 10.0), (60.0, 10.0)),
    BATTLEFIELD: ((-38.8, 35.2), (38.8, 35.2)),
    YOSHIS_STORY: ((-42.0, 26.6), (42.0, 28.0)),
    DREAM_LAND: ((-46.6, 37.2), (47.4, 37.3)),
    POKEMON_STADIUM: ((-40.0, 32.0), (40.0, 32.0)),
    FOUNTAIN_OF_DREAMS: ((-41.25, 21.0), (41.25, 27.0)),
}
MAIN_GROUND: dict[int, int] = {FINAL_DESTINATION: 1, BATTLEFIELD: 1, YOSHIS_STORY: 3, DREAM_LAND: 4,
                               POKEMON_STADIUM: 34, FOUNTAIN_OF_DREAMS: 5}

# Ground ids that swap under x -> -x, per legal stage. Read off games-1 replays: the mean x where characters stand
# on each ground id (e.g. Battlefield 0 at x -64.5 and 5 at +64.2; 2 at -36.7 and 4 at +36.9). Unlisted ids (the
# main stage, top platforms, Yoshi's Story's Randall) map to themselves. Other stages: identity.
GROUND_MIRROR: dict[int, dict[int, int]] = {
    FOUNTAIN_OF_DREAMS: {0: 1, 3: 7, 4: 6},
    POKEMON_STADIUM: {35: 36, 51: 54, 52: 53},
    YOSHIS_STORY: {1: 5, 2: 6},
    DREAM_LAND: {0: 1, 3: 5},
    BATTLEFIELD: {0: 5, 2: 4},
    FINAL_DESTINATION: {0: 2},
}
MIRROR_STAGES: frozenset[int] = frozenset(GROUND_MIRROR)


def ground_mirror(stage: int) -> dict[int, int]:
    """Ground id → the id of the same surface on the other side, both ways, on ``stage`` (empty: identity)."""
    pairs = GROUND_MIRROR.get(stage, {})
    return {**pairs, **{b: a for a, b in pairs.items()}}


# The height of every surface a character lands on at one height, per legal stage and ground id: on every landing
# (airborne one frame, grounded the next) on these surfaces in games-1/games-2 the position is within 0.001 of it
# (Dream Land's main stage: 99.7 %). They are the main stages (y = 0; Fountain of Dreams' 0.003 and its raised sides
# 0.624, Dream Land's 0.009) and the platforms of the geometry above. Left out: Fountain of Dreams' side platforms
# (they move), Yoshi's Story's sloped ends and Randall, and Pokémon Stadium's transformations but for their floors.
SURFACE_HEIGHTS: dict[int, dict[int, float]] = {
    FINAL_DESTINATION: {0: 0.0, 1: 0.0, 2: 0.0},
    BATTLEFIELD: {0: 0.0, 1: 0.0, 2: 27.2, 3: 54.4, 4: 27.2, 5: 0.0},
    YOSHIS_STORY: {1: 23.45, 3: 0.0, 4: 42.0, 5: 23.45},
    DREAM_LAND: {0: 30.1422, 1: 30.2426, 2: 51.4254, 3: 0.0089, 4: 0.0089, 5: 0.0089},
    POKEMON_STADIUM: {34: 0.0, 35: 25.0, 36: 25.0, 51: 0.0, 52: 0.0, 53: 0.0, 54: 0.0},
    FOUNTAIN_OF_DREAMS: {2: 42.75, 3: 0.6239, 5: 0.0029, 7: 0.6239},
}

# Where a KO'd character comes back: the respawn platform's resting point per port (ports 1 and 2; player 0 is
# the lower port), and how fast the platform descends to it (units per frame over the 60 frames of
# ON_HALO_DESCENT, which starts 59 steps above the resting point). Read off every respawn in games-1/games-2:
# the point depends on the port only (Battlefield and Final Destination differ by port, the others do not).
RESPAWN_POINTS: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    FINAL_DESTINATION: ((16.0, 45.0), (-50.0, 45.0)),
    BATTLEFIELD: ((12.8, 80.0), (-40.0, 80.0)),
    YOSHIS_STORY: ((0.0, 52.5), (0.0, 52.5)),
    DREAM_LAND: ((0.0, 84.2215), (0.0, 84.2215)),
    POKEMON_STADIUM: ((0.0, 60.0), (0.0, 60.0)),
    FOUNTAIN_OF_DREAMS: ((0.0, 63.75), (0.0, 63.75)),
}
HALO_DESCENT_SPEED: dict[int, float] = {FINAL_DESTINATION: 1.15, BATTLEFIELD: 0.9333, YOSHIS_STORY: 1.0967,
                                        DREAM_LAND: 1.763, POKEMON_STADIUM: 1.0, FOUNTAIN_OF_DREAMS: 0.8125}


def halo_start(stage_id: int) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Where each player (0 = the lower port) appears on the first frame of ON_HALO_DESCENT: above the resting point
    by the 59 steps of descent still to come. None for a stage without respawn facts."""
    if stage_id not in RESPAWN_POINTS:
        return None
    rise = HALO_DESCENT_SPEED[stage_id] * (HALO_DESCENT_FRAMES - 1)
    return tuple((x, y + rise) for x, y in RESPAWN_POINTS[stage_id])

# The main stage ends at its edges: a grounded character stands no nearer than EDGE_STOP to the ledge (1.5M grounded
# frames of the shared games on these stages: all but 0.02 % of them; one that walks up to the edge stops 2.8-2.91
# from it, its speed unchanged), or runs off it into the air. Yoshi's Story is left out: its side platforms and
# Randall hold characters past its ledge x.
EDGE_STOP = 2.75
EDGE_STAGES = (FINAL_DESTINATION, BATTLEFIELD, DREAM_LAND, POKEMON_STADIUM, FOUNTAIN_OF_DREAMS)

# Where a ledge can be caught from: the frame before every catch of the shared games on those stages (2,058) had the
# character on the ledge's side, between these distances outward from the ledge (x) and below the main stage's surface
# (y), padded by half a unit or more: (x low, x high, y low, y high)
LEDGE_CATCH_BOX = (-4.0, 16.5, -23.0, -3.0)
# The height of the ledge where it is not the main stage's y: Fountain of Dreams' raised sides, Dream Land's edges
LEDGE_Y = {FOUNTAIN_OF_DREAMS: 0.6239, DREAM_LAND: 0.0089}


def ledge_point(stage_id: int) -> tuple[float, float] | None:
    """(|x|, y) of the stage's ledges (the right one; the left mirrors it), or None for a stage without that fact."""
    if stage_id not in EDGE_STAGES:
        return None
    g = _GEOMETRY[stage_id]
    return g.ledge_x, LEDGE_Y.get(stage_id, g.main_y)


def ground_edge(stage_id: int) -> float | None:
    """The farthest |x| at which a character stands on the main stage, or None for a stage without that fact."""
    point = ledge_point(stage_id)
    return None if point is None else point[0] - EDGE_STOP


# The solid body of the main stage: between the ledges (less an inset, where ledge hangs and recoveries hug the
# stage's tapered sides) and from a little below the surface (a character's position dips up to ~8 units below
# it in some aerials and landings, since Melee collides by the ECB, not by the position) down to a depth.
# A live character is never inside it in the shared replays except for a few grabs and throws (~0.04 % of live
# frames); a character sinking through the stage crosses it. Below the body is open air on every legal stage.
BODY_INSET = 15.0
BODY_TOLERANCE = 10.0
BODY_DEPTH = 40.0
# A fall from above lands on the main stage all the way to SOLID_INSET from its ledges: in the shared games, 103 frames
# go from above the surface to more than BODY_TOLERANCE under it there (within BODY_DEPTH), 92 of them characters
# carried or thrown (THROWN_DOWN 81); nearer the ledges, falls that clip the stage's corner do (FALLING, airdodges).
SOLID_INSET = 5.0


# Where a landing can put a character: boxes (x low, x high, y low, y high) on the surfaces of each legal stage, give or
# take LANDING_SLACK. Every landing (airborne one frame, grounded the next) of the shared games does: the main stage
# between its ledges (Yoshi's Story's slopes down to -3.5 near its ends), the platforms, Fountain of Dreams' side
# platforms anywhere on their way up and down, and Yoshi's Story's Randall where it is landed on. The model alone had
# landed 1 in 5 of its landings on nothing, and stood there in the air.
LANDING_SLACK = 1.0
MAIN_SURFACE_SPAN = {YOSHIS_STORY: (-3.5, 0.0), FOUNTAIN_OF_DREAMS: (0.0, 0.6239), DREAM_LAND: (0.0, 0.0089)}
MOVING_PLATFORMS = {FOUNTAIN_OF_DREAMS: ((0, 1), (0.375, 27.375))}   # which platforms, and the heights they stand at
RANDALL = {YOSHIS_STORY: ((-105.0, -50.0, -33.25, -13.6), (50.0, 105.0, -33.25, -13.6))}


def landing_areas(stage_id: int) -> tuple[tuple[float, float, float, float], ...] | None:
    """The boxes (x low, x high, y low, y high) a landing on ``stage_id`` lies in (see LANDING_SLACK), or None for a
    stage without geometry."""
    g = geometry(stage_id)
    if g is None:
        return None
    low, high = MAIN_SURFACE_SPAN.get(g.stage_id, (g.main_y, g.main_y))
    moving, heights = MOVING_PLATFORMS.get(g.stage_id, ((), None))
    platforms = tuple((left, right, *(heights if k in moving else (y, y)))
                      for k, (y, left, right) in enumerate(g.platforms))
    return ((-g.ledge_x, g.ledge_x, low, high), *platforms, *RANDALL.get(g.stage_id, ()))


def on_a_surface(stage_id: int, x, y) -> np.ndarray:
    """True where (x, y) lies in one of the stage's landing areas, within LANDING_SLACK (vectorised, like
    :func:`in_blast_zone`); ValueError for a stage without geometry."""
    areas = landing_areas(stage_id)
    if areas is None:
        raise ValueError(f"no geometry for stage {stage_id} ({stage_name(stage_id)})")
    x, y = np.asarray(x), np.asarray(y)
    on = np.zeros(np.broadcast(x, y).shape, bool)
    for x_low, x_high, y_low, y_high in areas:
        on |= ((x >= x_low - LANDING_SLACK) & (x <= x_high + LANDING_SLACK)
               & (y >= y_low - LANDING_SLACK) & (y <= y_high + LANDING_SLACK))
    return on


def stage_name(stage_id: int) -> str:
    return STAGE_NAMES.get(int(stage_id), f"UNKNOWN_{int(stage_id)}")


def geometry(stage_id: int) -> StageGeometry | None:
    """Geometry of a legal stage, or None for any other stage."""
    return _GEOMETRY.get(int(stage_id))


def in_blast_zone(stage_id: int, x, y) -> np.ndarray:
    """True where (x, y) lies strictly inside the stage's blast zones.

    Vectorised over numpy arrays (or scalars). Raises ValueError for a stage
    without known geometry. Crossing the side or bottom blast zone always KOs;
    the top one KOs only a character in hitstun, so a live character can be
    above ``blast_top`` for a few frames (seen in real replays).
    """
    g = geometry(stage_id)
    if g is None:
        raise ValueError(f"no geometry for stage {stage_id} ({stage_name(stage_id)})")
    x, y = np.asarray(x), np.asarray(y)
    return (x > g.blast_left) & (x < g.blast_right) & (y > g.blast_bottom) & (y < g.blast_top)


def body_bounds(stage_id: int) -> tuple[float, float, float]:
    """(half-width, top, bottom) of the main stage's solid body (see BODY_INSET); ValueError without geometry."""
    g = geometry(stage_id)
    if g is None:
        raise ValueError(f"no geometry for stage {stage_id} ({stage_name(stage_id)})")
    return g.ledge_x - BODY_INSET, g.main_y - BODY_TOLERANCE, g.main_y - BODY_DEPTH


def in_stage_body(stage_id: int, x, y) -> np.ndarray:
    """True where (x, y) lies inside the main stage's solid body (vectorised, like :func:`in_blast_zone`)."""
    half, top, bottom = body_bounds(stage_id)
    x, y = np.asarray(x), np.asarray(y)
    return (np.abs(x) < half) & (y < top) & (y > bottom)
