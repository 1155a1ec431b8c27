"""The dataset's column schemas: one canonical list, used by the writer, the readers and docs/dataset.md.

Per-frame columns are peppi-py's raw struct fields flattened with ``_`` (``post.velocities.self_y`` becomes
``post_velocities_self_y``). Every column is nullable: a field that a replay's Slippi version predates is null
for that game (never zero-filled), and ``games.fields`` lists the columns a game really has.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    unit: str
    source: str
    description: str


def _c(name: str, type_: pa.DataType, unit: str, source: str, description: str) -> Column:
    return Column(name, type_, unit, source, description)


f32, u8, u16, u32, i8, i32 = pa.float32(), pa.uint8(), pa.uint16(), pa.uint32(), pa.int8(), pa.int32()

# Keys that identify a row of the frames table.
FRAME_KEYS: tuple[Column, ...] = (
    _c("game_id", pa.string(), "sha256 hex", "file bytes", "content hash of the replay; joins games.game_id"),
    _c("frame", i32, "frame", "frames.id", "game frame id, -123 first, 0 = timer start; unique per player row"),
    _c("port", u8, "1-4", "frames.ports key", "controller port of the player (P1 = 1)"),
    _c("follower", pa.bool_(), "bool", "leader/follower", "true for Ice Climbers' Nana, false otherwise"),
)

# Frame-level fields (the same for every player row of a frame).
FRAME_FIELDS: tuple[Column, ...] = (
    _c("start_random_seed", u32, "raw", "frames.start.random_seed", "RNG seed at frame start (>=2.2)"),
    _c("start_scene_frame_counter", u32, "frame", "frames.start.scene_frame_counter", "scene frame counter (>=3.10)"),
    _c("end_latest_finalized_frame", i32, "frame", "frames.end.latest_finalized_frame",
       "newest frame no longer subject to rollback (>=3.7)"),
)

PRE_FIELDS: tuple[Column, ...] = (
    _c("pre_random_seed", u32, "raw", "pre.random_seed", "RNG seed before the frame"),
    _c("pre_state", u16, "action id", "pre.state", "action state before the frame"),
    _c("pre_position_x", f32, "game units", "pre.position.x", "x position before the frame"),
    _c("pre_position_y", f32, "game units", "pre.position.y", "y position before the frame"),
    _c("pre_direction", f32, "-1/+1", "pre.direction", "facing before the frame: -1 left, +1 right"),
    _c("pre_joystick_x", f32, "-1..1", "pre.joystick.x", "processed main stick x"),
    _c("pre_joystick_y", f32, "-1..1", "pre.joystick.y", "processed main stick y"),
    _c("pre_cstick_x", f32, "-1..1", "pre.cstick.x", "processed C-stick x"),
    _c("pre_cstick_y", f32, "-1..1", "pre.cstick.y", "processed C-stick y"),
    _c("pre_triggers", f32, "0..1", "pre.triggers", "processed analog trigger (max of L, R)"),
    _c("pre_buttons", u32, "bitmask", "pre.buttons", "processed buttons (see meleewm.melee.buttons)"),
    _c("pre_buttons_physical", u16, "bitmask", "pre.buttons_physical", "physical buttons pressed"),
    _c("pre_triggers_physical_l", f32, "0..1", "pre.triggers_physical.l", "physical L trigger"),
    _c("pre_triggers_physical_r", f32, "0..1", "pre.triggers_physical.r", "physical R trigger"),
    _c("pre_raw_analog_x", i8, "raw -128..127", "pre.raw_analog_x", "raw main stick x (>=1.2)"),
    _c("pre_percent", f32, "%", "pre.percent", "damage before the frame (>=1.4)"),
    _c("pre_raw_analog_y", i8, "raw -128..127", "pre.raw_analog_y", "raw main stick y (>=3.15)"),
    _c("pre_raw_analog_cstick_x", i8, "raw -128..127", "pre.raw_analog_cstick_x", "raw C-stick x (>=3.17)"),
    _c("pre_raw_analog_cstick_y", i8, "raw -128..127", "pre.raw_analog_cstick_y", "raw C-stick y (>=3.17)"),
)

POST_FIELDS: tuple[Column, ...] = (
    _c("post_character", u8, "internal id", "post.character", "internal character id (changes on Zelda/Sheik swap)"),
    _c("post_state", u16, "action id", "post.state", "action state after the frame"),
    _c("post_position_x", f32, "game units", "post.position.x", "x position after the frame"),
    _c("post_position_y", f32, "game units", "post.position.y", "y position after the frame"),
    _c("post_direction", f32, "-1/+1", "post.direction", "facing: -1 left, +1 right"),
    _c("post_percent", f32, "%", "post.percent", "damage"),
    _c("post_shield", f32, "shield HP", "post.shield", "shield health, 60 full"),
    _c("post_last_attack_landed", u8, "move id", "post.last_attack_landed", "id of the last move that hit"),
    _c("post_combo_count", u8, "count", "post.combo_count", "combo counter"),
    _c("post_last_hit_by", u8, "port index", "post.last_hit_by", "port index of the last attacker"),
    _c("post_stocks", u8, "stocks", "post.stocks", "stocks remaining"),
    _c("post_state_age", f32, "frames", "post.state_age", "frames spent in the current action (>=0.2)"),
    *(_c(f"post_state_flags_{i}", u8, "bitfield", f"post.state_flags.{i}", f"state flag byte {i + 1} of 5 (>=2.0)")
      for i in range(5)),
    _c("post_misc_as", f32, "frames", "post.misc_as", "hitstun frames left, among other uses (>=2.0)"),
    _c("post_airborne", u8, "bool", "post.airborne", "1 in the air (>=2.0)"),
    _c("post_ground", u16, "ground id", "post.ground", "last ground surface id (>=2.0)"),
    _c("post_jumps", u8, "count", "post.jumps", "jumps remaining (>=2.0)"),
    _c("post_l_cancel", u8, "enum", "post.l_cancel", "0 none, 1 success, 2 fail (>=2.0)"),
    _c("post_hurtbox_state", u8, "enum", "post.hurtbox_state", "0 vulnerable, 1 invulnerable, 2 intangible (>=2.1)"),
    _c("post_velocities_self_x_air", f32, "units/frame", "post.velocities.self_x_air", "own air x speed (>=3.5)"),
    _c("post_velocities_self_y", f32, "units/frame", "post.velocities.self_y", "own y speed (>=3.5)"),
    _c("post_velocities_knockback_x", f32, "units/frame", "post.velocities.knockback_x", "knockback x speed (>=3.5)"),
    _c("post_velocities_knockback_y", f32, "units/frame", "post.velocities.knockback_y", "knockback y speed (>=3.5)"),
    _c("post_velocities_self_x_ground", f32, "units/frame", "post.velocities.self_x_ground",
       "own ground x speed (>=3.5)"),
    _c("post_hitlag", f32, "frames", "post.hitlag", "hitlag frames left (>=3.8)"),
    _c("post_animation_index", u32, "index", "post.animation_index", "animation index (>=3.11)"),
    _c("post_last_hit_by_instance", u16, "instance id", "post.last_hit_by_instance",
       "instance id of the last thing that hit (>=3.16)"),
    _c("post_instance_id", u16, "instance id", "post.instance_id", "this character's instance id (>=3.16)"),
)

FRAME_COLUMNS: tuple[Column, ...] = FRAME_KEYS + FRAME_FIELDS + PRE_FIELDS + POST_FIELDS
FRAME_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in FRAME_COLUMNS])

ITEM_COLUMNS: tuple[Column, ...] = (
    _c("game_id", pa.string(), "sha256 hex", "file bytes", "content hash of the replay"),
    _c("frame", i32, "frame", "frames.id", "game frame id"),
    _c("slot", u8, "index", "item list position", "position of the item in that frame's item list"),
    _c("type", u16, "item type id", "item.type", "item or projectile type"),
    _c("state", u8, "raw", "item.state", "item action state"),
    _c("direction", f32, "-1/+1", "item.direction", "facing"),
    _c("velocity_x", f32, "units/frame", "item.velocity.x", "x speed"),
    _c("velocity_y", f32, "units/frame", "item.velocity.y", "y speed"),
    _c("position_x", f32, "game units", "item.position.x", "x position"),
    _c("position_y", f32, "game units", "item.position.y", "y position"),
    _c("damage", u16, "damage", "item.damage", "damage taken by the item"),
    _c("timer", f32, "frames", "item.timer", "expiration timer"),
    _c("id", u32, "spawn id", "item.id", "unique id of this item within the game"),
    *(_c(f"misc_{i}", u8, "raw", f"item.misc.{i}", f"misc byte {i} (>=3.2)") for i in range(4)),
    _c("owner", i8, "port index", "item.owner", "owner port index, -1 none (>=3.6)"),
    _c("instance_id", u16, "instance id", "item.instance_id", "instance id (>=3.16)"),
)
ITEM_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in ITEM_COLUMNS])

# Per-frame stage events of Slippi >=3.18 (Fountain of Dreams platforms, Dream Land Whispy, Stadium transformations).
STAGE_EVENT_COLUMNS: tuple[Column, ...] = (
    _c("game_id", pa.string(), "sha256 hex", "file bytes", "content hash of the replay"),
    _c("frame", i32, "frame", "frames.id", "game frame id"),
    _c("kind", pa.string(), "name", "event list name", "fod_platform, dreamland_whispy or stadium_transformation"),
    _c("platform", u8, "0 right, 1 left", "fod_platform.platform", "which FoD platform moved"),
    _c("height", f32, "game units", "fod_platform.height", "new FoD platform height"),
    _c("direction", u8, "enum", "dreamland_whispy.direction", "Whispy's blow direction"),
    _c("event", u16, "enum", "stadium_transformation.event", "transformation event"),
    _c("type", u16, "enum", "stadium_transformation.type", "transformation type"),
)
STAGE_EVENT_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in STAGE_EVENT_COLUMNS])

PLAYER_FIELD_NAMES: tuple[str, ...] = tuple(c.name for c in PRE_FIELDS + POST_FIELDS)

PLAYER_TYPE = pa.struct([
    ("port", u8), ("character", u8), ("internal_characters", pa.list_(u8)), ("type", pa.string()),
    ("costume", u8), ("team", pa.string()), ("cpu_level", u8), ("handicap", u8), ("start_stocks", u8),
    ("final_stocks", u8), ("placement", u8), ("name_tag", pa.string()), ("netplay_name", pa.string()),
    ("netplay_code", pa.string()),
])

# The games index: one row per ingested game. ``part`` and the row-group columns give random access.
GAME_COLUMNS: tuple[Column, ...] = (
    _c("game_id", pa.string(), "sha256 hex", "file bytes", "content hash; the same game found twice is stored once"),
    _c("source", pa.string(), "path", "ingest", "where it was found: a path, or archive::member (bytes of the "
       "name that are not UTF-8 shown as \\xNN)"),
    _c("source_bytes", pa.binary(), "bytes", "ingest", "the name's exact bytes when it is not valid UTF-8; else null"),
    _c("size_bytes", pa.int64(), "bytes", "file", "replay file size"),
    _c("slippi_version", pa.string(), "x.y.z", "start.slippi.version", "Slippi version that recorded it"),
    _c("stage", u16, "Slippi stage id", "start.stage", "2 FoD, 3 PS, 8 YS, 28 DL, 31 BF, 32 FD, ..."),
    _c("is_teams", pa.bool_(), "bool", "start.is_teams", "team battle"),
    _c("is_pal", pa.bool_(), "bool", "start.is_pal", "PAL version (>=1.5)"),
    _c("is_frozen_ps", pa.bool_(), "bool", "start.is_frozen_ps", "frozen Pokémon Stadium (>=2.0)"),
    _c("timer_seconds", pa.uint32(), "s", "start.timer", "match timer setting"),
    _c("scene_major", u8, "scene id", "start.scene.major", "2 VS mode, 8 online (>=3.7)"),
    _c("scene_minor", u8, "scene id", "start.scene.minor", "2 in game (>=3.7)"),
    _c("start_at", pa.string(), "ISO 8601", "metadata.startAt", "when the game started"),
    _c("played_on", pa.string(), "name", "metadata.playedOn", "dolphin, nintendont, network, ..."),
    _c("console_nick", pa.string(), "name", "metadata.consoleNick", "console name (only with --keep-names)"),
    _c("end_method", pa.string(), "enum", "end.method", "GAME, TIME, NO_CONTEST, RESOLVED, UNRESOLVED; null if absent"),
    _c("lras_initiator", u8, "port", "end.lras_initiator", "port that quit with L+R+A+Start (>=2.0)"),
    _c("n_players", u8, "count", "start.players", "players in the game"),
    _c("n_humans", u8, "count", "start.players.type", "human players"),
    _c("players", pa.list_(PLAYER_TYPE), "list", "start.players, end.players, frames",
       "per player: port, character (select-screen id), internal_characters (seen in frames), type, costume, "
       "team, cpu_level, handicap, start/final stocks, placement; names and codes only with --keep-names"),
    _c("frame_count", pa.int32(), "frames", "frames.id", "unique frames (rollback copies removed)"),
    _c("first_frame", pa.int32(), "frame", "frames.id", "first frame id (-123 normally)"),
    _c("last_frame", pa.int32(), "frame", "frames.id", "last frame id"),
    _c("rollback_frames", pa.int32(), "frames", "frames.id", "frame records dropped as rolled-back copies"),
    _c("duration_s", pa.float64(), "s", "frame_count / 60", "length of the game"),
    _c("two_humans", pa.bool_(), "bool", "derived", "exactly two players, both human"),
    _c("completed", pa.bool_(), "bool", "derived", "ended by GAME or TIME, or a player reached 0 stocks"),
    _c("legal_stage", pa.bool_(), "bool", "derived", "one of the six tournament-legal stages"),
    _c("long_enough", pa.bool_(), "bool", "derived", "at least 30 s (1800 frames)"),
    _c("fields", pa.list_(pa.string()), "column names", "derived", "frame columns this game really has"),
    _c("has_follower", pa.bool_(), "bool", "derived", "an Ice Climbers follower (Nana) is stored"),
    _c("has_items", pa.bool_(), "bool", "derived", "the items table holds rows for this game"),
    _c("item_rows", pa.int64(), "rows", "derived", "item observations stored"),
    _c("part", pa.string(), "name", "ingest", "part file holding the game in frames/, items/, stage_events/"),
    _c("frames_row_group", pa.int32(), "index", "ingest", "row group of the game in frames/<part>.parquet"),
    _c("items_row_group", pa.int32(), "index", "ingest", "row group in items/<part>.parquet, null if none"),
    _c("stage_events_row_group", pa.int32(), "index", "ingest", "row group in stage_events/<part>.parquet, or null"),
    _c("ingested_at", pa.string(), "ISO 8601", "ingest", "when the game was added"),
)
GAME_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in GAME_COLUMNS])
