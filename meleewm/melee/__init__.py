"""Game facts shared by every stage: characters, stages, action states, buttons, the game clock."""

from meleewm.melee.actions import (
    ACTION_IDS,
    ACTION_NAMES,
    DAMAGE_STATES,
    DEAD_FRAMES,
    DEAD_STATES,
    HALO_DESCENT_FRAMES,
    HALO_WAIT_MAX_FRAMES,
    FIRST_SPECIAL,
    GROUND_ACTIONS,
    LEDGE_STATES,
    RESPAWN_STATES,
    SHIELD_STATES,
    action_name,
    is_dead,
)
from meleewm.melee.buttons import DIGITAL_BUTTONS, PhysicalButton, ProcessedButton, button_bits
from meleewm.melee.characters import (
    EXTERNAL_NAMES,
    INTERNAL_NAMES,
    PLAYABLE_CHARACTERS,
    character_name,
    external_to_internal,
    internal_to_external,
)
from meleewm.melee.game import FIRST_FRAME, FPS, FULL_SHIELD
from meleewm.melee.stages import (
    HALO_DESCENT_SPEED,
    LANDING_SLACK,
    LEGAL_STAGES,
    MAIN_GROUND,
    RESPAWN_POINTS,
    SPAWN_POINTS,
    STAGE_NAMES,
    SURFACE_HEIGHTS,
    StageGeometry,
    body_bounds,
    geometry,
    ground_edge,
    in_blast_zone,
    in_stage_body,
    landing_areas,
    on_a_surface,
    stage_name,
)

__all__ = [
    "ACTION_IDS", "ACTION_NAMES", "DAMAGE_STATES", "DEAD_FRAMES", "DEAD_STATES", "FIRST_SPECIAL", "GROUND_ACTIONS",
    "HALO_DESCENT_FRAMES", "HALO_WAIT_MAX_FRAMES", "LEDGE_STATES", "RESPAWN_STATES", "SHIELD_STATES",
    "action_name", "is_dead",
    "DIGITAL_BUTTONS", "PhysicalButton", "ProcessedButton", "button_bits",
    "EXTERNAL_NAMES", "INTERNAL_NAMES", "PLAYABLE_CHARACTERS", "character_name", "external_to_internal",
    "internal_to_external",
    "FIRST_FRAME", "FPS", "FULL_SHIELD",
    "HALO_DESCENT_SPEED", "LANDING_SLACK", "LEGAL_STAGES", "MAIN_GROUND", "RESPAWN_POINTS", "SPAWN_POINTS",
    "STAGE_NAMES", "SURFACE_HEIGHTS",
    "StageGeometry", "body_bounds", "geometry", "ground_edge", "in_blast_zone", "in_stage_body", "landing_areas",
    "on_a_surface", "stage_name",
]
