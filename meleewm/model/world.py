"""The world model: encoded frame → body (Mamba-2 or frame-stack MLP) → heads that predict the next state.

Step t reads state(t-1), both players' controllers(t) and the constants (stage, characters), and predicts
state(t): every continuous, binary and categorical field it reads (and item slots, when enabled), so a rollout
needs no true state after warm-up. The same :meth:`WorldModel.step` and :func:`next_inputs` advance the game in
training rollouts (self-forcing), evaluation, ``dream`` and live play.

Inputs are a ``meleewm.data.step.StepInput``; tensors follow ``meleewm.data.encoding``: ``[..., 2, n]`` with the
player axis before the field axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from meleewm.data.encoding import CAT_FIELDS, EncodingSpec, apply_state_age_rule
from meleewm.data.step import StepInput
from meleewm.model.mamba2 import Mamba2, Mamba2Config
from meleewm.model.mlp import FrameStackConfig, FrameStackMLP
from meleewm.melee.actions import (ACTION_IDS, CAPTURED_STATES, DAMAGE_STATES, DEAD_FRAMES, DEAD_STATES,
                                   ENTRY_STATES, GROUND_ACTIONS, LANDING_STATES, LEDGE_GRAB_ACTIONS, LEDGE_STATES,
                                   RESPAWN_STATES, SPECIAL_ACTION_IDS)
from meleewm.melee.characters import (AIR_DRIFT, AIR_FALL, AIR_FRICTION, DOUBLE_JUMP_SPEEDS, FIRE_TRAVEL,
                                      GROUND_FRICTION, GROUND_JUMP_SPEEDS, ILLUSION_END_FALL_START,
                                      ILLUSION_END_GRAVITY, ILLUSION_END_MEASURED_FRAMES, ILLUSION_END_SLOWDOWN,
                                      ILLUSION_END_SPEED, ILLUSION_SPEED, LEDGE_CATCH_OFFSETS,
                                      LEDGE_GRAB_BOXES, LEDGE_GRAB_SPECIALS)
from meleewm.melee.game import (AIRDODGE_DECAY, AIRDODGE_DECAY_FRAMES, AIRDODGE_SPEED, FAST_FALL_STICK,
                                HIT_REACH, KNOCKBACK_DECAY, KO_REACH, STICK_DEADZONE)
from meleewm.melee.moves import MAX_SUCCESSORS, moves
from meleewm.melee.stages import (BODY_TOLERANCE, LANDING_SLACK, LEDGE_CATCH_BOX, LEGAL_STAGES, SOLID_INSET,
                                  body_bounds, geometry, ground_edge, halo_start, landing_areas, ledge_point)

# state_age is read only by models with an age embedding, and is always advanced by apply_state_age_rule in
# next_inputs, so it stays exact in closed loop.
ACTION_COLUMN = CAT_FIELDS.index("post_state")
# Item owner "none" (ITEM_OWNER_NAMES[0]).
OWNER_NONE = 0
# Classes of the continuous gate: the head's value, exactly 0 (raw), or exactly the input value.
GATE_FREE, GATE_ZERO, GATE_SAME = 0, 1, 2
# A character's position, x and y
POSITION_FIELDS = ("post_position_x", "post_position_y")
# A launch's knockback speed, x and y
KNOCKBACK_FIELDS = ("post_velocities_knockback_x", "post_velocities_knockback_y")
# What a hit sets besides the damage (model.hit_launch).
LAUNCH_FIELDS = (*KNOCKBACK_FIELDS, "post_hitlag")
# The actions that start a jump off the ground, and a double jump
GROUND_JUMPS = (ACTION_IDS["JUMPING_FORWARD"], ACTION_IDS["JUMPING_BACKWARD"])
DOUBLE_JUMPS = (ACTION_IDS["JUMPING_ARIAL_FORWARD"], ACTION_IDS["JUMPING_ARIAL_BACKWARD"])
# Actions in which a grounded character slides to a stop by its friction
SLIDING = tuple(ACTION_IDS[name] for name in (
    "STANDING", "LANDING", "NAIR_LANDING", "FAIR_LANDING", "BAIR_LANDING", "UAIR_LANDING", "DAIR_LANDING",
    "SHIELD_START", "SHIELD", "TURNING", "GRAB", "CROUCH_START", "KNEE_BEND"))
# Grounded actions that carry a character off the main stage's edge into the air, where the others stop at it (of the
# shared games' frames that move a character at the edge outward: dashing 94 fall and 3 stop, landing from a wavedash 80
# and 64; standing 36 and 1,352, the others fewer falls still)
RUN_OFF = (ACTION_IDS["DASHING"], ACTION_IDS["RUNNING"], ACTION_IDS["LANDING_SPECIAL"])
FALLING = ACTION_IDS["FALLING"]
# The falls an air action ends in (FALLING..SPECIAL_FALL_BACK): a pick that goes on falling, for ledge_grab
FALLS = tuple(range(FALLING, ACTION_IDS["SPECIAL_FALL_BACK"] + 1))
# A logit that no head's value reaches: a pick the game makes (model.stage_edge)
FORCED_LOGIT = 30.0
# The weightless switches that set a speed the game gives (by a game fact, where the model's pick says so)
SPEED_RULES = ("knockback_decay", "jump_speed", "airdodge_speed", "ground_friction", "fire_travel",
               "illusion_travel", "air_drift", "air_fall")
# Actions in which a character drifts in the air by the control stick (and slows by its air friction at rest), and
# falls by its gravity: with the helpless fall after an up special (Melee's special fall; DEAD_FALL in the action
# names), whose speeds follow the same rules (its fall speed on 96.7 % of its 10,878 frames out of hitlag in the shared
# games, FALLING's rate; its drift the same acceleration, top speed and friction)
DRIFT_ACTIONS = tuple(ACTION_IDS[name] for name in (
    "FALLING", "JUMPING_FORWARD", "JUMPING_BACKWARD", "JUMPING_ARIAL_FORWARD", "JUMPING_ARIAL_BACKWARD",
    "NAIR", "FAIR", "BAIR", "UAIR", "DAIR", "DEAD_FALL"))
# Falls in hitstun: the damage actions and a tumble, which fall by the character's gravity as DRIFT_ACTIONS do
# (99.3-100 % of such frames of the shared games out of hitlag; a tumble 93 %, since it may fast-fall)
HITSTUN_FALLS = (*sorted(DAMAGE_STATES), ACTION_IDS["TUMBLING"])
# A tumble drifts by the stick as DRIFT_ACTIONS do: the drift rule's air speed on 99.9 % of its 18,482 frames of the
# shared games out of hitlag (FALLING: 99.3 %); in the damage actions the air speed stays 0 (98.3 %)
DRIFTS = (*DRIFT_ACTIONS, ACTION_IDS["TUMBLING"])
# Fox's and Falco's up special in flight, and their side special in the air and its end (special-action ids the two
# share; Fox's internal id is 1)
FIRE_AIR, ILLUSION_AIR, ILLUSION_AIR_END = (SPECIAL_ACTION_IDS[1][name]
                                            for name in ("FIRE_AIR", "ILLUSION_AIR", "ILLUSION_AIR_END"))
# The speeds an air move sets: x in the air, y
AIR_SPEED_FIELDS = ("post_velocities_self_x_air", "post_velocities_self_y")
# Velocity fields that move a character: x air speed, x ground speed, x knockback, y speed, y knockback.
MOTION_FIELDS = ("post_velocities_self_x_air", "post_velocities_self_x_ground", "post_velocities_knockback_x",
                 "post_velocities_self_y", "post_velocities_knockback_y")


@dataclass
class WorldModelConfig:
    body: str = "mamba2"          # "mamba2" (the sequence model) or "mlp" (the frame-stack baseline)
    d_model: int = 128
    n_layer: int = 4
    # Mamba-2
    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    headdim: int = 32
    chunk_size: int = 64
    # frame-stack MLP
    context: int = 10
    hidden_mult: int = 4
    # embeddings
    action_embed_dim: int = 32
    cat_embed_dim: int = 8
    const_embed_dim: int = 16
    # post_state_age as an input: a learned embedding of floor(age) clipped to 0..age_max (0 = not an input)
    age_embed_dim: int = 0
    age_max: int = 100
    # Continuous gate: per field, "exactly 0", "exactly unchanged" or the head's value (most velocities, percents
    # and positions of a frame are one of the first two)
    cont_gate: bool = False
    # y moves by its velocities in the air only (weighted by the predicted airborne probability): a grounded
    # character follows the surface in Melee, and a fall speed left on a standing character sank it into the stage
    ground_motion: bool = False
    # An item that was in its slot moves exactly by its predicted velocity (x(t) = x(t-1) + v(t) on 99.6% of real
    # item frames); the head's position is used for new items only. A free position residual of items was off by
    # 4 units a frame, teacher-forced, where holding the item still is off by 2: the loss barely sees it
    item_motion: bool = False
    # A landing (airborne, then grounded by the model's own pick) within 10 units of the picked surface puts y on its
    # height when it has one (``SURFACE_HEIGHTS``): every real landing on those surfaces is within 0.001 of it, while
    # the model, landing a frame or two late, stood 2 to 10 units inside the stage and walked on there
    ground_snap: bool = False
    # Where the stage is, as inputs: per player, the clearance above the main stage and the platform under it, the
    # margin to the ledge and to the blast zones (from the legal stages' geometry and the player's position). Melee
    # lands, falls and KOs by these; from positions alone the model landed a frame or two late and fell through
    geometry_inputs: bool = False
    # Per player, the margins to the side, bottom and top blast zones one frame ahead, at the input frame's velocity
    # (units of 10, clipped). A real KO is the first frame past a zone, from a frame 1.3 units inside it (median):
    # the geometry inputs' margin reads 0.03 there, and the model put the DEAD action on 9 of 98 KOs teacher-forced
    blast_inputs: bool = False
    # Per player, where the other player is: ahead of it along its facing and above it (units of 10, clipped to
    # +-4). Melee hits where an attack's hitbox, placed by the attacker's position and facing, meets the other's
    # hurtbox; from the two absolute positions and a facing bit the model caught few hits even teacher-forced
    relative_inputs: bool = False
    # With ground_snap: a landing from inside the main stage's solid body (between the ledges, under the surface) can
    # only be onto its surface, whatever the surface pick and however far under it: landing late, the model had put
    # characters 10 to 34 units under the stage, where they walked on for hundreds of frames
    body_landing: bool = False
    # A respawn comes when and where the game brings it: a death lasts its DEAD_FRAMES (by the closed loop's count of
    # its frames; 60 for a KO off a blast zone, on 1,023 of the shared games' KOs), so no other pick is one before
    # then, and a respawn (a DEAD_* input frame, ON_HALO_DESCENT by the model's pick) appears at the top of the stage's
    # respawn platform. Slippi records a death's age as -1 throughout, so the model cannot tell how long it has been
    # dead: its deaths lasted 1 to 193 frames, and respawns flickered back into deaths at the blast zone (65 % of its
    # frames alive past one); the ~250-unit jump to the platform it did not learn either
    respawn_snap: bool = False
    # A hit the model picks (its action enters a DAMAGE_* state: 91 % of real hit frames, and a damage action entered
    # raises the percent on 99.6 %) raises the percent by a damage head's value, learnt on real hit frames alone.
    # Without it the gate said "unchanged" on 95 % of real hit frames and the percent head's value, learnt on every
    # frame, was +0.14 % at a hit (real +8 %): the damage never came, even where the model picked the hit
    hit_percent: bool = False
    # With hit_percent: the launch of that hit (knockback x and y speeds, and hitlag), by a launch head learnt on
    # real hit frames alone. Melee sets a hit's knockback and hitlag on the frame of the hit (603 of 619 hits; hitlag
    # 6 frames, median); the heads learnt on every frame gave 0.02 where the real knockback was 0.84, so no hit
    # launched anyone
    hit_launch: bool = False
    # Knockback decays as in the game: in the air, out of hitlag and where the model picks no new hit, a launch's
    # knockback speed falls by KNOCKBACK_DECAY a frame along its direction until it is spent (97.8 % of such real
    # frames). The gate ended flights early: from a second before real KOs the model zeroed a launched character's
    # knockback a few frames in, and it fell short of the blast zone
    knockback_decay: bool = False
    # Hitlag freezes a character: where the input frame and the prediction both have hitlag, the position stays exactly
    # where it was (97.7 % of such real frames; the rest are smash-DI nudges). The velocity fields keep their values
    # through hitlag, so moving by them (x(t) = x(t-1) + v(t)) slid frozen characters; the model held half of its
    # hitlag frames still
    hitlag_freeze: bool = False
    # A jump starts at the game's speed: where the model's pick enters a ground jump, the vertical speed is the
    # character's short- or full-hop speed, whichever is nearer the model's own; entering a double jump, the character's
    # double-jump speed (GROUND_JUMP_SPEEDS, DOUBLE_JUMP_SPEEDS: every jump of the shared games takes one). The model
    # was 0.35 units off on entering a ground jump and 1.44 on entering a double jump, teacher-forced
    jump_speed: bool = False
    # An airdodge moves as in the game: where the model's pick enters one, the speed is AIRDODGE_SPEED along the control
    # stick (in place with the stick at rest); while it goes on, the speed falls by AIRDODGE_DECAY a frame for its first
    # frames (every airdodge of the shared games). The model was 0.49 units off on entering one, teacher-forced, and
    # 8.2 units off at airdodges over 20 frames of closed loop, the most of any common action
    airdodge_speed: bool = False
    # A character sliding on the ground slows by its friction: where the input and the model's pick are the same of the
    # SLIDING actions (standing, shielding, turning, grabbing, crouching, jumpsquat, landing lag) and both grounded, the
    # ground speed falls by the character's friction (GROUND_FRICTION), or twice it, whichever is nearer the model's
    # own value, and stops at 0 (90-100 % of such real frames). The model was 0.06-0.13 units off there, teacher-forced
    ground_friction: bool = False
    # Fox's Fire Fox and Falco's Fire Bird fly as in the game: where the model's pick is FIRE_AIR for one of them,
    # the speed on entering it is the character's (FIRE_TRAVEL) along the control stick (straight up at rest); while
    # it goes on, the input's direction at the schedule's speed for the frame's age. The model flew them at 0.1-0.7
    # units a frame where the game's is 3.8-4.2, so they hung off the stage and fell: the recovery of the two most
    # played characters
    fire_travel: bool = False
    # Fox's and Falco's Illusion in the air moves as in the game: where the model's pick is ILLUSION_AIR for one of
    # them, the dash's speed (ILLUSION_SPEED) along the facing, after a first frame standing still; ILLUSION_AIR_END
    # starts at ILLUSION_END_SPEED, slows to a stop and falls by the game's schedule. The model's dash moved 0.01 units
    # a frame (the game's: 16.5-18.7), so the move that crosses half a stage in three frames went nowhere
    illusion_travel: bool = False
    # A character drifts in the air as the game drifts it: where the input and the model's pick are both DRIFTS (the
    # jumps, falls, aerials and a tumble) in the air (not a jump's first frame), the air speed with the stick at rest
    # sideways is the input's less the air friction (AIR_FRICTION), never past 0 (86-100 % of such real frames per
    # character); with the stick held, it moves toward the stick's target speed by the character's acceleration, or
    # slows to it by the friction (AIR_DRIFT: 91-98 %)
    air_drift: bool = False
    # A character falls as the game drops it: in the same actions, out of hitlag, the fall speed grows by the
    # character's gravity up to its top fall speed, and with the stick pulled down once falling it is the fast-fall
    # speed, which holds (AIR_FALL: 93-99 % of such real frames per character)
    air_fall: bool = False
    # The main stage ends at its edges (``meleewm.melee.stages.ground_edge``): a grounded prediction past an edge is one
    # the game never shows. Walking up to it (grounded before, by an action that stops there), the character stops at
    # the edge; running, dashing or wavedashing, or landing there from the air, it is in the air instead: airborne, and
    # FALLING where its pick was a ground action. The model stood characters on air past the edge on 3 % of rolled-out
    # frames (real games: 0.08 %, DK carrying a character), dashing on and landing there. Nor is anyone grounded who
    # starts the frame past the edge, but on the ledge: such a prediction is airborne before the speed rules move it, so
    # the character falls (the model's own bit kept 2 % of its FALLING characters grounded there, still in the air).
    # The picks it sets are forced logits, so the switch is for models that are not trained with it
    stage_edge: bool = False
    # A ledge is caught where the game catches it: a pick that enters a ledge action is one only from where every real
    # catch came (LEDGE_CATCH_BOX, on the ledge's side), and there the character is at its catch point (still, at
    # LEDGE_CATCH_OFFSETS from the ledge); from anywhere else the model's next pick that is not a ledge action stands.
    # The model caught the ledge 27 units from it (median) and hung on air there: it picks a catch when the real
    # player does, wherever its own character is
    ledge_catch: bool = False
    # With ledge_catch: the game catches a ledge by itself. Where the input is an action that catches one (jumps,
    # falls, a tumble; Fox's and Falco's recoveries: LEDGE_GRAB_ACTIONS, LEDGE_GRAB_SPECIALS) and the pick goes on with
    # it or falls, a character that falls into its catch box (LEDGE_GRAB_BOXES, by the predicted position) this frame,
    # facing the ledge, catches it, unless the stick is held down or the other player holds that ledge (96.6 % of such
    # frames of held-out real games catch). The model caught the ledge 23 times in 300 rollouts where the real games
    # catch it 217 times: characters fell past it to their death
    ledge_grab: bool = False
    # A hit is taken within reach: where the model's pick enters a damage action (a new hit) and neither the other
    # player nor an item (a projectile, a turnip) was within HIT_REACH of the character in the input frame, the pick is
    # the model's best other action (of the shared games' 16,147 damage actions entered, 19 had nothing that near).
    # From 60 frames before real hits the model took 24 hits that never came, launching and damaging characters
    # nobody touched
    hit_reach: bool = False
    # With body_landing: the main stage is solid. Where the input is in the air over the main stage, above its solid
    # body, and the prediction falls into the body (more than BODY_TOLERANCE under the surface, between its sides),
    # the character lands: grounded, on the surface, in the model's best landing action (LANDING_STATES). Over the main
    # stage a real character in the air is never more than 5 units under the surface (26,181 frames that cross it);
    # the model alone fell into the stage 92 times in 300 rollouts without picking a landing (FAIR, a launch, a double
    # jump), and stayed there 11 frames (median). One that comes at the body from beside it stops short of it
    solid_stage: bool = False
    # A landing is on a surface: where the input is in the air and the prediction grounded, the predicted position lies
    # in one of the stage's landing areas (``meleewm.melee.stages.landing_areas``: all 41,337 landings of the shared
    # games do), or is put on the nearest within BODY_TOLERANCE under or over it (ground_snap's reach); farther from
    # every surface the character is still in the air, in the input's action (FALLING where that is an action of the
    # ground the model held in the air) where the pick was another. The
    # model alone landed 1 in 5 of its landings on nothing (13 % of its grounded frames were more than 5 units from
    # any surface; the games': under 1 %, carried and thrown characters) and stood there in the air. A ledge, a death
    # or the respawn platform is no landing here. A landing put off it falls a frame further from the input (air_fall)
    surface_landing: bool = False
    # A move ends when the game ends it: where the model's pick goes on with the input's action past the longest the
    # shared games went on with it for that character (``meleewm.melee.moves``: the move's limit, by the closed loop's
    # count of its frames), the pick is the model's best of the actions that followed it in the games, one airborne as
    # the prediction is where there is one (and the airborne bit is that successor's). Held actions (standing,
    # shielding, falls, hitstun...) have no limit. The model alone held 6 % of its moves past their limit, on 10 % of
    # its rolled-out frames: jabs, grabs, Fire Fox and airdodges that never ended
    move_end: bool = False
    # In the air, a character moves by its speeds: where the input and the prediction are airborne and alive, off the
    # ledge, and the gate held a position (unchanged or 0) while the frame's speeds move it, the position is the
    # input's plus the speeds' displacement (x(t) = x(t-1) + v(t) holds on 97 % of such real frames, and on 99.5 % of
    # them for y to 0.1 units). The gate held a character that ran off the stage at its height while its fall speed
    # grew, and Fire Fox flew up while x stayed put
    air_motion: bool = False
    # With surface_landing: a grounded character stands on a surface. Where the input and the prediction are grounded,
    # the character neither on the ledge, dead, respawning nor held or carried by another (CAPTURED_STATES), its
    # position lies in one of the stage's landing areas (99.96 % of such frames of the shared games), or is put on
    # the nearest within BODY_TOLERANCE; farther from every surface (off a platform's end) it falls: airborne, FALLING
    # where the pick was an action of the ground, a frame into the fall. The model alone stood 5 % of its grounded
    # frames where the stage has no surface, most of them 1 to 25 units over or under one
    surface_stand: bool = False
    # A KO begins at a blast zone: a death the model picks (a DEAD_* action entered) where the input frame is farther
    # from every blast zone of a stage with geometry than KO_REACH (16 units from a side, 7 from the bottom, 5 from the
    # top) is none; the pick is the model's best other action. Every real KO's frame before is that near a zone; the
    # model's falls died a median 12.6 units over the bottom one, a quarter of them more than 24 over it (up to 92)
    death_at_blast_zone: bool = False

    def __post_init__(self):
        if self.body not in ("mamba2", "mlp"):
            raise ValueError(f"model.body must be 'mamba2' or 'mlp', not {self.body!r}")
        if self.age_embed_dim < 0 or self.age_max < 1:
            raise ValueError(f"model.age_embed_dim must be >= 0 and model.age_max >= 1, got {self.age_embed_dim}, "
                             f"{self.age_max}")
        if self.ledge_grab and not self.ledge_catch:
            raise ValueError("model.ledge_grab makes a catch that ledge_catch places: it needs model.ledge_catch")
        if self.air_motion and not self.cont_gate:
            raise ValueError("model.air_motion overrides the gate's positions: it needs model.cont_gate")
        if self.move_end and not self.age_embed_dim:
            raise ValueError("model.move_end reads how long an action has lasted: it needs model.age_embed_dim")
        if self.surface_stand and not (self.surface_landing and self.stage_edge):
            raise ValueError("model.surface_stand checks standing as surface_landing checks landings, and falls into "
                             "stage_edge's FALLING: it needs model.surface_landing and model.stage_edge")
        if self.surface_landing and not self.air_fall:
            raise ValueError("model.surface_landing keeps a character falling by air_fall's speeds: it needs "
                             "model.air_fall")
        if self.solid_stage and not self.body_landing:
            raise ValueError("model.solid_stage lands on the main body of body_landing: it needs model.body_landing")
        if self.body_landing and not self.ground_snap:
            raise ValueError("model.body_landing places a landing of ground_snap: it needs model.ground_snap")
        if self.hit_percent and not self.cont_gate:
            raise ValueError("model.hit_percent overrides the percent gate of a hit: it needs model.cont_gate")
        for name in SPEED_RULES:
            if getattr(self, name) and not self.cont_gate:
                raise ValueError(f"model.{name} overrides the gate's speeds: it needs model.cont_gate")
        if self.hit_launch and not self.hit_percent:
            raise ValueError("model.hit_launch gives the launch of a hit_percent hit: it needs model.hit_percent")
        for name in ("d_model", "n_layer", "d_state", "headdim", "chunk_size", "context"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.body == "mamba2" and (self.expand * self.d_model) % self.headdim:
            raise ValueError(f"model.expand * model.d_model ({self.expand * self.d_model}) must be a multiple of "
                             f"model.headdim ({self.headdim})")


class WorldModel(nn.Module):
    def __init__(self, spec: EncodingSpec, config: WorldModelConfig):
        super().__init__()
        self.spec, self.config = spec, config
        self.cat_names = [name for name, _ in spec.cat_fields]
        self.cat_embeddings = nn.ModuleList(
            nn.Embedding(size, config.action_embed_dim if name == "post_state" else config.cat_embed_dim)
            for name, size in spec.cat_fields)
        self.stage_embedding = nn.Embedding(spec.n_stages, config.const_embed_dim)
        self.char_embedding = nn.Embedding(spec.n_chars, config.const_embed_dim)
        per_player = (2 * spec.n_cont + 2 * spec.n_bin + spec.n_ctrl + config.const_embed_dim
                      + sum(e.embedding_dim for e in self.cat_embeddings))
        width = 2 * per_player + config.const_embed_dim
        if spec.items:
            self.item_type_embedding = nn.Embedding(spec.n_item_types, config.cat_embed_dim)
            self.item_owner_embedding = nn.Embedding(spec.n_item_owners, config.cat_embed_dim)
            width += spec.item_slots * (1 + 2 * config.cat_embed_dim + spec.n_item_cont)
        # Optional inputs come last, so that a model without them is a prefix of the input layer (warm starts).
        if config.age_embed_dim:  # one more row for an unknown age (a game without post_state_age)
            self.age_embedding = nn.Embedding(config.age_max + 2, config.age_embed_dim)
            width += 2 * config.age_embed_dim
        if config.geometry_inputs or config.blast_inputs:
            self.register_buffer("stage_geometry", stage_geometry_table(spec), persistent=False)
        if config.geometry_inputs:
            width += 2 * N_GEOMETRY_FEATURES
        if config.blast_inputs:
            width += 2 * N_BLAST_FEATURES
        if config.relative_inputs:
            width += 2 * N_RELATIVE_FEATURES
        self.input_proj = nn.Linear(width, config.d_model)
        if config.body == "mamba2":
            self.body = Mamba2(Mamba2Config(d_model=config.d_model, n_layer=config.n_layer, d_state=config.d_state,
                                            d_conv=config.d_conv, expand=config.expand, headdim=config.headdim,
                                            chunk_size=config.chunk_size))
        else:
            self.body = FrameStackMLP(FrameStackConfig(d_model=config.d_model, n_layer=config.n_layer,
                                                       context=config.context, hidden_mult=config.hidden_mult))
        d = config.d_model
        self.cont_head = nn.Linear(d, 2 * spec.n_cont)
        self.bin_head = nn.Linear(d, 2 * spec.n_bin)
        self.cat_heads = nn.ModuleList(nn.Linear(d, 2 * size) for _, size in spec.cat_fields)
        if config.cont_gate:
            self.gate_head = nn.Linear(d, 2 * spec.n_cont * 3)
            # Start as the ungated model ("the head's value" everywhere); the weights learn from there.
            nn.init.zeros_(self.gate_head.weight)
            with torch.no_grad():
                self.gate_head.bias.copy_(torch.tensor([2.0, 0.0, 0.0]).repeat(2 * spec.n_cont))
        if config.hit_percent:
            # per player, the percent a hit adds, in units of the percent's typical per-frame change (softplus: > 0)
            self.damage_head = nn.Linear(d, 2)
        if config.hit_launch:
            # per player, what a hit sets: knockback speeds (x away from the other player, y) and hitlag, in units of
            # their typical per-frame change
            self.launch_head = nn.Linear(d, 6)
        if spec.items:
            s = spec.item_slots
            self.item_present_head = nn.Linear(d, s)
            self.item_type_head = nn.Linear(d, s * spec.n_item_types)
            self.item_owner_head = nn.Linear(d, s * spec.n_item_owners)
            self.item_cont_head = nn.Linear(d, s * spec.n_item_cont)
        # Continuous heads predict a change from the input state, in units of each field's typical per-frame
        # change (set from training data by the trainer; saved with the weights). Start from "nothing moves".
        self.register_buffer("cont_delta_scale", torch.ones(spec.n_cont))
        # Melee moves a character by its velocity of the same frame (x(t) = x(t-1) + v(t) on ~87% of frames), so
        # positions start from that rule and the head learns the corrections (landings, ledges, respawns).
        self.register_buffer("cont_mean", torch.tensor([spec.cont_stats[f][0] for f in spec.cont_fields]),
                             persistent=False)
        self.register_buffer("cont_std", torch.tensor([spec.cont_stats[f][1] for f in spec.cont_fields]),
                             persistent=False)
        # Raw 0 as the encoder writes it (float64 arithmetic, then float32), so a gated zero equals the data's.
        self.register_buffer("cont_zero", torch.tensor([-spec.cont_stats[f][0] / spec.cont_stats[f][1]
                                                        for f in spec.cont_fields], dtype=torch.float64).float(),
                             persistent=False)
        self.position_index = [spec.cont_index(f) for f in POSITION_FIELDS]
        self.register_buffer("position_columns", torch.tensor(self.position_index), persistent=False)
        self.velocity_index = [spec.cont_index(f) for f in MOTION_FIELDS]
        self.airborne_index = spec.bin_index("airborne")
        self.ground_column = spec.cat_index("post_ground")
        y_mean, y_std = spec.cont_stats["post_position_y"]
        self.register_buffer("surface_y", torch.tensor((spec.surface_heights() - y_mean) / y_std, dtype=torch.float32),
                             persistent=False)
        self.landing_tolerance = BODY_TOLERANCE / y_std
        if config.body_landing:
            self.register_buffer("main_body", main_body_table(spec), persistent=False)
        if config.solid_stage:
            self.register_buffer("landing_action", action_table(spec, LANDING_STATES), persistent=False)
        if config.surface_landing:
            self.register_buffer("landing_area", landing_area_table(spec), persistent=False)
            self.register_buffer("not_a_landing", action_table(spec, LEDGE_STATES | DEAD_STATES | RESPAWN_STATES),
                                 persistent=False)
        # Which action vocabulary indices are deaths (DEAD_*): respawns, for respawn_snap and the loss's weight
        self.register_buffer("dead_action", action_table(spec, DEAD_STATES), persistent=False)
        if config.hit_reach and not spec.items:
            raise ValueError("model.hit_reach counts projectiles in reach: it needs an encoding with items")
        # ... and which are hits taken (DAMAGE_*)
        if config.hit_percent or config.knockback_decay or config.air_fall or config.hit_reach:
            self.register_buffer("damage_action", action_table(spec, DAMAGE_STATES), persistent=False)
        if config.hit_percent:
            self.percent_index = spec.cont_index("post_percent")
            self.register_buffer("percent_column", torch.tensor([self.percent_index]), persistent=False)
        # Continuous columns by field name, and the input frame's internal character: what the rules of motion read
        self.cont_column = {f: spec.cont_index(f) for f in spec.cont_fields}
        # the speed rules switched on, in SPEED_RULES order: each is the method ``_<name>(cont, bin_logits, pick, x)``
        self.speed_rules = tuple(name for name in SPEED_RULES if getattr(config, name))
        self.character_column = spec.cat_index("post_character")
        self.stick_index = [spec.ctrl_index("pre_joystick_x"), spec.ctrl_index("pre_joystick_y")]
        self.facing_index = spec.bin_index("facing")
        if config.fire_travel:
            self.register_buffer("fire_travel_table", character_columns(spec, FIRE_TRAVEL), persistent=False)
            self.fire_action = spec.cat_value_index("post_state", FIRE_AIR)
        if config.air_drift:
            self.register_buffer("air_friction", character_table(spec, AIR_FRICTION), persistent=False)
            self.register_buffer("air_drift_table", character_columns(spec, AIR_DRIFT), persistent=False)
        if config.air_fall:   # hitstun falls as well (no fast fall but in a tumble)
            self.register_buffer("air_fall_table", character_columns(spec, AIR_FALL), persistent=False)
            self.register_buffer("fall_action", action_table(spec, DRIFT_ACTIONS + HITSTUN_FALLS), persistent=False)
        if config.air_drift or config.air_fall:
            self.register_buffer("drift_action", action_table(spec, DRIFTS), persistent=False)
            self.register_buffer("jump_start", action_table(spec, GROUND_JUMPS + DOUBLE_JUMPS), persistent=False)
        if config.illusion_travel:
            self.register_buffer("illusion_speed", character_table(spec, ILLUSION_SPEED), persistent=False)
            self.illusion_actions = [spec.cat_value_index("post_state", a) for a in (ILLUSION_AIR, ILLUSION_AIR_END)]
        if config.airdodge_speed:
            self.airdodge_action = spec.cat_value_index("post_state", ACTION_IDS["AIRDODGE"])
        if config.ground_friction:
            self.register_buffer("friction", character_table(spec, GROUND_FRICTION), persistent=False)
            self.register_buffer("sliding", action_table(spec, SLIDING), persistent=False)
        if config.jump_speed:
            self.register_buffer("jump_speeds", jump_speed_table(spec), persistent=False)
            self.register_buffer("ground_jump", action_table(spec, GROUND_JUMPS), persistent=False)
            self.register_buffer("double_jump", action_table(spec, DOUBLE_JUMPS), persistent=False)
        if config.hit_launch:
            self.register_buffer("launch_columns", torch.tensor([spec.cont_index(f) for f in LAUNCH_FIELDS]),
                                 persistent=False)
        if config.ledge_catch or config.stage_edge:
            self.register_buffer("ledge_action", action_table(spec, LEDGE_STATES), persistent=False)
        if config.ledge_catch:
            # each stage's ledge point, |x| and y; NaN where the stage has no such fact
            self.register_buffer("ledge_point", stage_table(spec, ledge_point, float("nan"), (2,)), persistent=False)
            self.register_buffer("catch_offset", character_columns(spec, LEDGE_CATCH_OFFSETS), persistent=False)
        if config.ledge_grab:
            self.register_buffer("grab_box", character_columns(spec, LEDGE_GRAB_BOXES), persistent=False)
            self.register_buffer("grab_action", character_action_table(spec, LEDGE_GRAB_ACTIONS, LEDGE_GRAB_SPECIALS),
                                 persistent=False)
            self.register_buffer("falls", action_table(spec, FALLS), persistent=False)
            self.catching_action = spec.cat_value_index("post_state", ACTION_IDS["EDGE_CATCHING"])
        if config.stage_edge:
            # the farthest |x| a character stands at on each main stage; anywhere where the stage has no such fact
            self.register_buffer("ground_edge", stage_table(spec, ground_edge, float("inf")), persistent=False)
            self.register_buffer("run_off", action_table(spec, RUN_OFF), persistent=False)
        if config.surface_stand:
            self.register_buffer("not_standing", action_table(
                spec, LEDGE_STATES | DEAD_STATES | RESPAWN_STATES | CAPTURED_STATES), persistent=False)
        # the actions of the ground, and the fall a character in one of them without ground under it falls in
        self.register_buffer("ground_action", action_table(spec, GROUND_ACTIONS), persistent=False)
        self.falling_action = spec.cat_value_index("post_state", FALLING)
        if config.death_at_blast_zone:
            self.register_buffer("blast_zones", stage_table(spec, blast_zones, float("nan"), (4,)), persistent=False)
            self.register_buffer("ko_reach", torch.tensor(KO_REACH), persistent=False)
        if config.move_end:
            limit, successors, successor_air = move_tables(spec)
            self.register_buffer("move_limit", limit, persistent=False)
            self.register_buffer("move_successors", successors, persistent=False)
            self.register_buffer("move_successor_air", successor_air, persistent=False)
        if config.air_motion:
            self.register_buffer("in_place", action_table(spec, LEDGE_STATES | DEAD_STATES | RESPAWN_STATES
                                                          | ENTRY_STATES), persistent=False)
        if config.respawn_snap:
            self.register_buffer("halo_start", halo_start_table(spec), persistent=False)
            self.halo_action = spec.cat_value_index("post_state", ACTION_IDS["ON_HALO_DESCENT"])
            self.register_buffer("dead_frames", dead_frames_table(spec), persistent=False)
        if spec.items:
            for name, values in zip(("item_mean", "item_std"), spec.item_scale()):
                self.register_buffer(name, torch.tensor(values, dtype=torch.float32), persistent=False)
            self.item_position_index = [spec.item_cont_fields.index(f) for f in ("position_x", "position_y")]
            self.register_buffer("item_position_columns", torch.tensor(self.item_position_index), persistent=False)
            self.item_velocity_index = [spec.item_cont_fields.index(f) for f in ("velocity_x", "velocity_y")]
        nn.init.zeros_(self.cont_head.weight)
        nn.init.zeros_(self.cont_head.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- input encoding -----------------------------------------------------------------------------------------

    def embed(self, x: StepInput) -> torch.Tensor:
        """Inputs with leading dims L (``[B]`` or ``[B, T]``) → ``[*L, d_model]``."""
        cont = x.state_cont * x.cont_mask
        parts = [cont, x.cont_mask.to(cont.dtype), x.state_bin.to(cont.dtype) * x.bin_mask,
                 x.bin_mask.to(cont.dtype), x.ctrl.to(cont.dtype)]
        cat = x.state_cat.long() * x.cat_mask.long()  # masked entries read as UNKNOWN
        parts += [emb(cat[..., i]) for i, emb in enumerate(self.cat_embeddings)]
        chars = x.chars.long()
        while chars.dim() < cont.dim() - 1:          # broadcast constants over the time axis
            chars = chars.unsqueeze(-2)
        parts.append(self.char_embedding(chars).expand(*cont.shape[:-1], -1))
        players = torch.cat(parts, dim=-1)            # [*L, 2, per_player]
        stage = x.stage.long()
        while stage.dim() < cont.dim() - 2:
            stage = stage.unsqueeze(-1)
        features = [players.flatten(-2), self.stage_embedding(stage).expand(*cont.shape[:-2], -1)]
        if self.spec.items:
            features.append(torch.cat([x.state_item_present.to(cont.dtype).unsqueeze(-1),
                                       self.item_type_embedding(x.state_item_type.long()),
                                       self.item_owner_embedding(x.state_item_owner.long()),
                                       x.state_item_cont.to(cont.dtype)], dim=-1).flatten(-2))
        if self.config.age_embed_dim:
            features.append(self.age_embedding(self.age_bucket(x.state_age)).flatten(-2))
        if self.config.geometry_inputs or self.config.blast_inputs:
            place = self._place(x)   # shared by both: a step's inputs are on the play tick's budget
            if self.config.geometry_inputs:
                features.append(self.geometry_features(x, place).to(cont.dtype).flatten(-2))
            if self.config.blast_inputs:
                features.append(self.blast_features(x, place).to(cont.dtype).flatten(-2))
        if self.config.relative_inputs:
            features.append(self.relative_features(x).to(cont.dtype).flatten(-2))
        return self.input_proj(torch.cat(features, dim=-1))

    def _place(self, x: StepInput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw positions x, y ``[*L, 2]`` of the input frame, the stage geometry table's rows for them
        ``[*L, 2, 7 + 3 * 3]``, and ``[*L, 2, 1]``: 1 where the stage's geometry and the position are known."""
        iy = self.position_index[1]
        px, py = (x.state_cont[..., i] * self.cont_std[i] + self.cont_mean[i] for i in self.position_index)
        g = self.stage_geometry[self._stage_of(x, px)]
        return px, py, g, (g[..., 0] * x.cont_mask[..., iy].to(px.dtype)).unsqueeze(-1)

    def relative_features(self, x: StepInput) -> torch.Tensor:
        """``[*L, 2, N_RELATIVE_FEATURES]``: per player, the other player's position relative to its own, x along
        its facing (positive: in front of it) and y (positive: above it), in units of 10, clipped to -4..4; zero
        where either position or the facing is unknown."""
        ix, iy = self.position_index
        px, py = self._raw(x.state_cont, POSITION_FIELDS).unbind(-1)
        facing = self._facing(x, px.dtype)
        known = (x.cont_mask[..., ix] > 0) & (x.cont_mask[..., iy] > 0)
        known = known & known.flip(-1) & (x.bin_mask[..., self.facing_index] > 0)
        ahead, above = (px.flip(-1) - px) * facing, py.flip(-1) - py
        features = (torch.stack([ahead, above], dim=-1) / 10).clamp(-4, 4)
        return torch.nan_to_num(features) * known.unsqueeze(-1).to(px.dtype)

    def blast_features(self, x: StepInput, place=None) -> torch.Tensor:
        """``[*L, 2, N_BLAST_FEATURES]``: the margins to the side, bottom and top blast zones after one more frame at
        the input frame's velocity (negative: past it), in units of 10, clipped to -1..3; zero on a stage without
        known geometry or without a position. ``place`` is :meth:`_place` of ``x`` when the caller has it."""
        px, py, g, present = place or self._place(x)
        airborne = (x.state_bin[..., self.airborne_index] * x.bin_mask[..., self.airborne_index]).to(px.dtype)
        dx, dy = self._displacement(x.state_cont, airborne, x.cont_mask)
        left, right, top, bottom = g[..., 3:7].unbind(-1)
        nx, ny = px + dx, py + dy
        features = torch.stack([torch.minimum(nx - left, right - nx), ny - bottom, top - ny], dim=-1)
        return torch.nan_to_num((features / 10).clamp(-1, 3)) * present

    def geometry_features(self, x: StepInput, place=None) -> torch.Tensor:
        """``[*L, 2, N_GEOMETRY_FEATURES]``: each player's place on the stage, in units of 10 (clearances, the
        ledge) or 40 (blast zones), clipped; zero on a stage without known geometry or without a position.
        ``place`` is :meth:`_place` of ``x`` when the caller has it."""
        px, py, g, present = place or self._place(x)
        ledge, main_y, left, right, top, bottom = g[..., 1:7].unbind(-1)
        plat_y, plat_left, plat_right = g[..., 7::3], g[..., 8::3], g[..., 9::3]
        over_main = (px.abs() <= ledge).to(px.dtype)
        under = (px.unsqueeze(-1) >= plat_left) & (px.unsqueeze(-1) <= plat_right) & (
            py.unsqueeze(-1) >= plat_y - 10.0)                 # platforms a character is over (or just through)
        clearance = torch.where(under, py.unsqueeze(-1) - plat_y, torch.full_like(plat_y, 1e9)).amin(-1)
        over_platform = (clearance < 1e9).to(px.dtype)
        features = torch.stack([
            over_main, over_main * ((py - main_y) / 10).clamp(-3, 3), ((ledge - px.abs()) / 10).clamp(-3, 3),
            over_platform, over_platform * (clearance / 10).clamp(-3, 3),
            (torch.minimum(px - left, right - px) / 40).clamp(-1, 3), ((py - bottom) / 40).clamp(-1, 3),
            ((top - py) / 40).clamp(-1, 3)], dim=-1)
        return torch.nan_to_num(features) * present

    def age_bucket(self, age: torch.Tensor) -> torch.Tensor:
        """Embedding rows of raw state ages: floor(age) clipped to 0..age_max; NaN (unknown) → age_max + 1."""
        top = self.config.age_max
        bucket = torch.nan_to_num(age.float(), nan=0.0).floor().clamp(0, top).long()
        return torch.where(torch.isnan(age), torch.full_like(bucket, top + 1), bucket)

    def heads(self, h: torch.Tensor, x: StepInput) -> dict[str, torch.Tensor]:
        """Body features ``[*L, d]`` → predictions of the next state (continuous as residual on the input).

        With the gate, each continuous field is the gate's choice (argmax) of the head's value, the encoded raw 0,
        or the input value, exactly; positions move by the gated velocities. ``cont_free`` is the head's value
        everywhere (what the regression loss reads); ``cont`` is what a rollout feeds back.
        """
        lead = h.shape[:-1]
        delta = self.cont_head(h).view(*lead, 2, -1) * self.cont_delta_scale
        bin_logits = self.bin_head(h).view(*lead, 2, -1)
        base = x.state_cont * x.cont_mask
        free = base + delta
        out = {"bin_logits": bin_logits, "cat_logits": [head(h).view(*lead, 2, -1) for head in self.cat_heads]}
        pick = out["cat_logits"][ACTION_COLUMN].argmax(-1)   # the model's action, as next_inputs takes it greedily
        if self.config.hit_reach:   # before the rules that read a hit
            pick = self._hit_reach(out, pick, x)
        if self.config.respawn_snap:
            pick = self._death_hold(out, pick, x)
        if self.config.death_at_blast_zone:
            pick = self._death_at_blast_zone(out, pick, x)
        if self.config.stage_edge:   # before the speed rules, which move only characters in the air
            pick = self._off_the_stage(out, pick, x)
            bin_logits = out["bin_logits"]
        if self.config.move_end:     # before the speed rules, which read the pick
            pick = self._move_end(out, pick, x)
            bin_logits = out["bin_logits"]
        if self.config.cont_gate:
            gate_logits = self.gate_head(h).view(*lead, 2, -1, 3)
            choice = gate_logits.argmax(-1)

            def gated(values):
                return torch.where(choice == GATE_ZERO, self.cont_zero.to(values.dtype),
                                   torch.where(choice == GATE_SAME, base.to(values.dtype), values))
            velocities = gated(free)
            for name in self.speed_rules:
                velocities = getattr(self, f"_{name}")(velocities, bin_logits, pick, x)
            motion = self._motion(velocities, bin_logits, x.cont_mask)
            moved = free + motion
            cont = gated(moved)
            if self.config.air_motion:
                cont = self._air_motion(cont, base + motion, choice, bin_logits, pick, x)
            if self.speed_rules:   # the output's speeds are the ones that moved the character
                cont[..., self.velocity_index] = velocities[..., self.velocity_index]
            out.update(cont=cont, cont_free=moved, gate_logits=gate_logits)
            if self.config.hit_percent:
                out["damage"] = F.softplus(self.damage_head(h)) * self.cont_delta_scale[self.percent_index]
                if self.config.hit_launch:
                    out["launch"] = self._launch(h, x)
                out["cont"] = self._hit(out["cont"], out, pick, x)
        else:
            out["cont"] = free + self._motion(free, bin_logits, x.cont_mask)
        if self.config.hitlag_freeze:
            out["cont"] = self._hitlag_freeze(out["cont"], x)
        if self.config.ledge_catch:
            pick = self._ledge_catch(out, pick, x)
        if self.config.stage_edge:
            pick = self._stage_edge(out, pick, x)
        if self.config.ground_snap:
            out["cont"] = self._ground_snap(out["cont"], out["bin_logits"], out["cat_logits"][self.ground_column], x)
        if self.config.solid_stage:
            pick = self._solid_stage(out, pick, x)
        if self.config.surface_landing:
            pick = self._surface_landing(out, pick, x)
        if self.config.surface_stand:
            pick = self._surface_stand(out, pick, x)
        if self.config.respawn_snap:
            out["cont"] = self._respawn_snap(out["cont"], pick, x)
        if self.spec.items:
            s = self.spec.item_slots
            out["item_present_logits"] = self.item_present_head(h).view(*lead, s)
            out["item_type_logits"] = self.item_type_head(h).view(*lead, s, -1)
            out["item_owner_logits"] = self.item_owner_head(h).view(*lead, s, -1)
            item_cont = x.state_item_cont + self.item_cont_head(h).view(*lead, s, -1)
            if self.config.item_motion:
                item_cont = self._item_motion(item_cont, x.state_item_cont, x.state_item_present)
            out["item_cont"] = item_cont
        return out

    def _displacement(self, cont: torch.Tensor, p_air: torch.Tensor, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (dx, dy) by the velocities in ``cont`` (normalised), airborne with probability ``p_air``.

        x moves by the air or the ground speed (blended by ``p_air``) plus knockback; y by its own speed plus
        knockback (with ``ground_motion``, in the air only: times ``p_air``). Games whose version lacks velocities
        do not move.
        """
        air_x, ground_x, knock_x, self_y, knock_y = (
            cont[..., i] * self.cont_std[i] + self.cont_mean[i] for i in self.velocity_index)
        present = mask[..., self.velocity_index[0]].to(cont.dtype)
        dx = (p_air * air_x + (1 - p_air) * ground_x + knock_x) * present
        dy = (self_y + knock_y) * present
        if self.config.ground_motion:
            dy = dy * p_air
        return dx, dy

    def _motion(self, cont: torch.Tensor, bin_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The displacement by the predicted velocities of the frame (airborne by the predicted probability), added
        to positions (normalised units)."""
        p_air = torch.sigmoid(bin_logits[..., self.airborne_index].float()).to(cont.dtype)
        dx, dy = self._displacement(cont, p_air, mask)
        ix, iy = self.position_index
        moves = torch.stack([dx / self.cont_std[ix], dy / self.cont_std[iy]], dim=-1)
        return torch.zeros_like(cont).index_copy(-1, self.position_columns, moves)

    def _ground_snap(self, cont: torch.Tensor, bin_logits: torch.Tensor, ground_logits: torch.Tensor,
                     x: StepInput) -> torch.Tensor:
        """``cont`` with y on the surface's height where the input frame is airborne and the prediction grounded
        (argmax, as the gate) on a surface of one height."""
        a = self.airborne_index
        landing = (x.state_bin[..., a] > 0) & (x.bin_mask[..., a] > 0) & (bin_logits[..., a] <= 0)
        stage = self._stage_of(x, landing)
        height = self.surface_y[stage, ground_logits.argmax(-1)].to(cont.dtype)
        iy = self.position_index[1]
        # within BODY_TOLERANCE of the surface the frame before (97 % of real landings): a pick of the wrong surface
        # (the platform last stood on, while landing on the stage under it) must not lift or drop a character
        reachable = (x.state_cont[..., iy] - height).abs() <= self.landing_tolerance
        snap = landing & torch.isfinite(height) & reachable
        y = torch.where(snap, height, cont[..., iy])
        if self.config.body_landing:
            ix = self.position_index[0]
            half, surface, bottom, _ = self.main_body[stage].unbind(-1)
            px, py = x.state_cont[..., ix] * self.cont_std[ix] + self.cont_mean[ix], x.state_cont[..., iy]
            inside = (px.abs() < half) & (py < surface) & (py > bottom)
            y = torch.where(landing & inside, surface.to(cont.dtype), y)
        return cont.index_copy(-1, self.position_columns[1:], y.unsqueeze(-1))

    def _solid_stage(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) landed on the main stage's surface where the input
        is in the air above it (to SOLID_INSET from its ledges) and the prediction falls under it, and at the body's
        side where the input is beside the body and the prediction in it (see ``WorldModelConfig.solid_stage``).
        Returns the action picked now."""
        a, iy = self.airborne_index, self.position_index[1]
        half, surface, bottom, over = self.main_body[self._stage_of(x, pick)].unbind(-1)
        top, py = surface - self.landing_tolerance, out["cont"][..., iy]
        low = (py < top) & (py > bottom)
        if not bool(low.any()):   # most frames: nobody is that low (a play tick's budget)
            return pick
        px, qx = self._raw(out["cont"], "post_position_x"), self._raw(x.state_cont, "post_position_x")
        qy = x.state_cont[..., iy]
        known = (x.cont_mask[..., self.position_index] > 0).all(-1) & (x.bin_mask[..., a] > 0)
        # from beside the body: stopped where it was, outside (the side's exact x is the box's guess)
        beside = known & low & (px.abs() < half) & (qx.abs() >= half) & (qy < top)
        out["cont"] = self._put_encoded(out["cont"], "post_position_x", beside,
                                        x.state_cont[..., self.position_index[0]])
        lands = known & low & (x.state_bin[..., a] > 0) & (qx.abs() < over) & (px.abs() < over) & (qy >= top)
        out["cont"] = self._put_encoded(out["cont"], "post_position_y", lands, surface.to(out["cont"].dtype))
        out["bin_logits"] = self._force_airborne(out["bin_logits"], lands, airborne=False)
        return self._forbid_picks(out, lands, ~self.landing_action)

    def _surface_landing(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) landed on the nearest of the stage's landing areas
        where the input is in the air and the prediction lands within reach of one, and still in the air, in the
        input's action, where it lands farther from all of them (see ``WorldModelConfig.surface_landing``). Returns
        the action picked now."""
        a = self.airborne_index
        landing = ((x.state_bin[..., a] > 0) & (x.bin_mask[..., a] > 0) & (out["bin_logits"][..., a] <= 0)
                   & ~self.not_a_landing[pick])
        if not bool(landing.any()):   # most frames: nobody lands (a play tick's budget)
            return pick
        nowhere = self._onto_a_surface(out, landing, x)
        before = x.state_cat[..., ACTION_COLUMN].long()
        # the input's air action goes on; an action of the ground the model had put in the air is a fall (where it
        # went on, past its limit too: move_end had ended it)
        still = torch.where(self.ground_action[before], self.falling_action, before)
        return self._force_pick(out, pick, nowhere, still)

    def _surface_stand(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) standing on the nearest of the stage's landing areas
        where the input and the prediction are grounded and the prediction is within reach of one, and falling where
        it is farther from all of them (see ``WorldModelConfig.surface_stand``). Returns the action picked now."""
        a = self.airborne_index
        standing = ((x.state_bin[..., a] <= 0) & (x.bin_mask[..., a] > 0) & (out["bin_logits"][..., a] <= 0)
                    & ~self.not_standing[pick] & ~self.not_standing[x.state_cat[..., ACTION_COLUMN].long()])
        nowhere = self._onto_a_surface(out, standing, x)
        if not bool(nowhere.any()):
            return pick
        return self._force_pick(out, pick, nowhere & self.ground_action[pick], self.falling_action)

    def _onto_a_surface(self, out: dict[str, torch.Tensor], grounded: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` where ``grounded``: the position put on the nearest landing area's height within BODY_TOLERANCE
        of it (off it by more than LANDING_SLACK), and airborne a frame further into a fall from the input farther
        from every area. Returns where it falls."""
        areas = self.landing_area[self._stage_of(x, grounded)]                 # [*L, 2, areas, 4], raw
        px, py = (self._raw(out["cont"], f).unsqueeze(-1) for f in POSITION_FIELDS)
        x_low, x_high, y_low, y_high = (bound.to(px.dtype) for bound in areas.unbind(-1))
        spans = (px >= x_low - LANDING_SLACK) & (px <= x_high + LANDING_SLACK)
        surface = torch.minimum(torch.maximum(py, y_low), y_high)             # the nearest height of each area
        gap = torch.where(spans, (py - surface).abs(), torch.full_like(py, float("inf")))
        nearest = gap.min(-1)
        known = (grounded & torch.isfinite(areas[..., 0, 0]) & (x.cont_mask[..., self.position_index] > 0).all(-1)
                 & (x.cat_mask[..., ACTION_COLUMN] > 0))
        # within ground_snap's reach of a surface the character is on it; farther from every surface it is not
        off = known & (nearest.values > LANDING_SLACK)
        if not bool(off.any()):   # most frames: everyone stands on a surface (a play tick's budget)
            return off
        onto = off & (nearest.values <= BODY_TOLERANCE)
        height = surface.gather(-1, nearest.indices.unsqueeze(-1)).squeeze(-1)
        out["cont"] = self._put(out["cont"], "post_position_y", onto, height)
        nowhere = off & (nearest.values > BODY_TOLERANCE)
        out["bin_logits"] = self._force_airborne(out["bin_logits"], nowhere)
        out["cont"] = self._fall_on(out["cont"], nowhere, x)   # the speed rules took the model's bit: no fall yet
        return nowhere

    @staticmethod
    def _stage_of(x: StepInput, like: torch.Tensor) -> torch.Tensor:
        """The stage index of ``x``'s game for every entry of ``like`` (``[*L, 2]``: one per player)."""
        stage = x.stage.long()
        while stage.dim() < like.dim():
            stage = stage.unsqueeze(-1)
        return stage.expand_as(like)

    def _columns(self, field: str | tuple[str, ...]) -> int | list[int]:
        """The continuous column of ``field``, or the columns of several (indexing a last axis)."""
        return self.cont_column[field] if isinstance(field, str) else [self.cont_column[f] for f in field]

    def _raw(self, values: torch.Tensor, field: str | tuple[str, ...]) -> torch.Tensor:
        """Game units of the continuous ``field`` (or fields) of normalised ``values``."""
        i = self._columns(field)
        return values[..., i] * self.cont_std[i] + self.cont_mean[i]

    def _put(self, cont: torch.Tensor, field: str | tuple[str, ...], where: torch.Tensor, raw: torch.Tensor
             ) -> torch.Tensor:
        """``cont`` with ``field`` (or fields) set to ``raw`` (game units) where ``where`` holds."""
        i = self._columns(field)
        return self._put_encoded(cont, field, where, (raw - self.cont_mean[i]) / self.cont_std[i])

    def _put_encoded(self, cont: torch.Tensor, field: str | tuple[str, ...], where: torch.Tensor,
                     values: torch.Tensor) -> torch.Tensor:
        """``cont`` with ``field`` (or fields) set to the normalised ``values`` where ``where`` holds."""
        i = self._columns(field)
        out = cont.clone()
        out[..., i] = torch.where(where, values.to(cont.dtype), cont[..., i])
        return out

    def _new_hit(self, pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``[*L, 2]``: ``pick`` enters a damage action (a DAMAGE_* action other than the input frame's)."""
        return (self.damage_action[pick] & (pick != x.state_cat[..., ACTION_COLUMN].long())
                & (x.cat_mask[..., ACTION_COLUMN] > 0))

    def _in_hitlag(self, cont: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[*L, 2]``: the frame ``cont`` (normalised) has hitlag (at least half a frame of it left, raw)."""
        return (self._raw(cont, "post_hitlag") >= 0.5) & (mask[..., self.cont_column["post_hitlag"]] > 0)

    def _hitlag_freeze(self, cont: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``cont`` with the input frame's position where the input frame and the prediction are both in hitlag."""
        frozen = self._in_hitlag(x.state_cont, x.cont_mask) & self._in_hitlag(cont, x.cont_mask)
        if not bool(frozen.any()):   # most frames: nobody is in hitlag (a play tick's budget)
            return cont
        return self._put_encoded(cont, POSITION_FIELDS, frozen.unsqueeze(-1), x.state_cont[..., self.position_index])

    def _stick_direction(self, x: StepInput, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The control stick of ``x``'s frame as a unit vector ``[*L, 2, 2]`` (0 at rest) and its length
        ``[*L, 2, 1]``."""
        stick = x.ctrl[..., self.stick_index].to(dtype)
        length = stick.norm(dim=-1, keepdim=True)
        return stick / length.clamp_min(1e-6), length

    def _facing(self, x: StepInput, dtype: torch.dtype) -> torch.Tensor:
        """``[*L, 2]``: +1 where ``x``'s frame faces right, -1 where it faces left."""
        return torch.where(x.state_bin[..., self.facing_index] > 0, 1.0, -1.0).to(dtype)

    def _force_airborne(self, bin_logits: torch.Tensor, where: torch.Tensor, airborne: bool = True) -> torch.Tensor:
        """``bin_logits`` with the airborne bit forced on (or off: ``airborne``; FORCED_LOGIT) where ``where`` holds: a
        fact of the game."""
        a = self.airborne_index
        bin_logits = bin_logits.clone()
        bin_logits[..., a] = torch.where(where, FORCED_LOGIT if airborne else -FORCED_LOGIT, bin_logits[..., a])
        return bin_logits

    def _force_pick(self, out: dict[str, torch.Tensor], pick: torch.Tensor, where: torch.Tensor,
                    action: int | torch.Tensor) -> torch.Tensor:
        """The action head's logits in ``out`` forced to ``action`` (a vocabulary index, or one per entry of ``pick``)
        where ``where`` holds, as the decode reads any pick; returns ``pick`` with it."""
        logits = out["cat_logits"][ACTION_COLUMN]
        action = torch.as_tensor(action, device=pick.device).expand_as(pick)
        forced = torch.full_like(logits, -FORCED_LOGIT).scatter(-1, action.unsqueeze(-1), FORCED_LOGIT)
        out["cat_logits"] = list(out["cat_logits"])
        out["cat_logits"][ACTION_COLUMN] = torch.where(where.unsqueeze(-1), forced, logits)
        return torch.where(where, action, pick)

    def _knockback_decay(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor,
                         x: StepInput) -> torch.Tensor:
        """``cont`` with the knockback of the input frame, spent by KNOCKBACK_DECAY along its direction, where the
        prediction is airborne, out of hitlag and ``pick`` enters no damage action, and the input frame has
        knockback."""
        knockback = self._raw(x.state_cont, KNOCKBACK_FIELDS)
        speed = knockback.norm(dim=-1)
        if not bool((speed > 0).any()):   # most frames: nobody is flying (a play tick's budget)
            return cont
        left = (1 - KNOCKBACK_DECAY / speed.clamp_min(KNOCKBACK_DECAY)).clamp_min(0)
        known = x.cont_mask[..., self._columns((KNOCKBACK_FIELDS[0], "post_hitlag"))].all(-1)
        flying = ((bin_logits[..., self.airborne_index] > 0) & ~self._in_hitlag(cont, x.cont_mask)
                  & ~self._new_hit(pick, x) & (speed > 0) & known)
        return self._put(cont, KNOCKBACK_FIELDS, flying.unsqueeze(-1), knockback * left.unsqueeze(-1))

    def _jump_speed(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput
                    ) -> torch.Tensor:
        """``cont`` with the game's first vertical speed of a jump where ``pick`` enters one from another action: a
        ground jump's short- or full-hop speed, the nearer to the model's own, or the double jump's; for characters in
        the jump tables (the input frame's internal character)."""
        before = x.state_cat[..., ACTION_COLUMN].long()
        ground = self.ground_jump[pick] & ~self.ground_jump[before]
        double = self.double_jump[pick] & ~self.double_jump[before]
        if not bool((ground | double).any()):   # most frames: no jump starts (a play tick's budget)
            return cont
        known = (x.cat_mask[..., ACTION_COLUMN] > 0) & (x.cat_mask[..., self.character_column] > 0)
        short, full, again = self.jump_speeds[x.state_cat[..., self.character_column].long()].unbind(-1)
        own = self._raw(cont, "post_velocities_self_y")
        hop = torch.where((own - short).abs() <= (own - full).abs(), short, full)
        speed = torch.where(double, again, hop)
        start = ((ground | double) & known & torch.isfinite(speed)
                 & (x.cont_mask[..., self.cont_column["post_velocities_self_y"]] > 0))
        return self._put(cont, "post_velocities_self_y", start, speed)

    def _airdodge_speed(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput
                        ) -> torch.Tensor:
        """``cont`` with an airdodge's speeds (x in the air, y) where ``pick`` is one: on entering it, AIRDODGE_SPEED
        along the frame's control stick (0 at rest); while it goes on, the input's speed times AIRDODGE_DECAY up to an
        input age of AIRDODGE_DECAY_FRAMES (Slippi counts an airdodge's ages from 1; a rollout, from 0: one frame more
        of slowing, 0.015 units). Without the ages, entries only."""
        dodging = (pick == self.airdodge_action) & (x.cat_mask[..., ACTION_COLUMN] > 0)
        if not bool(dodging.any()):   # most frames: nobody airdodges (a play tick's budget)
            return cont
        enter = dodging & (x.state_cat[..., ACTION_COLUMN].long() != self.airdodge_action)
        aim, length = self._stick_direction(x, cont.dtype)
        start = torch.where(length > 0, AIRDODGE_SPEED * aim, torch.zeros_like(aim))
        fields = AIR_SPEED_FIELDS
        early = (torch.nan_to_num(x.state_age.to(cont.dtype), nan=torch.inf) <= AIRDODGE_DECAY_FRAMES
                 if x.state_age is not None else torch.zeros_like(dodging))
        ruled = (enter | (dodging & early)) & (x.cont_mask[..., self.cont_column[fields[0]]] > 0)
        raw = torch.where(enter.unsqueeze(-1), start, AIRDODGE_DECAY * self._raw(x.state_cont, fields))
        return self._put(cont, fields, ruled.unsqueeze(-1), raw)

    def _fire_travel(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput
                     ) -> torch.Tensor:
        """``cont`` with Fire Fox's or Fire Bird's speeds (x in the air, y) where ``pick`` is FIRE_AIR for Fox or
        Falco: on entering it, the character's speed along the frame's control stick (up, at rest); while it goes on,
        the schedule's speed for the frame's age along the input's direction. Without the ages, entries only."""
        travel = self.fire_travel_table[x.state_cat[..., self.character_column].long()]   # [*L, 2, 3]
        flying = ((pick == self.fire_action) & (self.fire_action > 0) & torch.isfinite(travel[..., 0])
                  & (x.cat_mask[..., ACTION_COLUMN] > 0)
                  & (x.cat_mask[..., self.character_column] > 0)
                  & (x.cont_mask[..., self.cont_column[AIR_SPEED_FIELDS[0]]] > 0))
        if not bool(flying.any()):   # most frames: nobody flies up (a play tick's budget)
            return cont
        start, hold, slowdown = travel.to(cont.dtype).unbind(-1)
        enter = flying & (x.state_cat[..., ACTION_COLUMN].long() != self.fire_action)
        aim, length = self._stick_direction(x, cont.dtype)
        up = torch.tensor([0.0, 1.0], dtype=cont.dtype, device=cont.device).expand_as(aim)
        aim = torch.where(length >= STICK_DEADZONE, aim, up)
        velocity = self._raw(x.state_cont, AIR_SPEED_FIELDS)
        speed = velocity.norm(dim=-1, keepdim=True)
        heading = velocity / speed.clamp_min(1e-6)
        if x.state_age is None:
            going, age = torch.zeros_like(flying), torch.zeros_like(start)
        else:
            age = torch.nan_to_num(x.state_age.to(cont.dtype), nan=-1.0) + 1       # the predicted frame's age
            going = flying & ~enter & (age >= 1) & (speed.squeeze(-1) > 0)
        scheduled = (start - slowdown * (age - (hold - 1)).clamp_min(0)).clamp_min(0)
        raw = torch.where(enter.unsqueeze(-1), start.unsqueeze(-1) * aim, scheduled.unsqueeze(-1) * heading)
        return self._put(cont, AIR_SPEED_FIELDS, (enter | going).unsqueeze(-1), raw)

    def _in_the_air(self, bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput, field: str,
                    actions: torch.Tensor) -> torch.Tensor:
        """``[*L, 2]``: the input and ``pick`` are ``actions`` (an action table) in the air, the pick starts no jump,
        and the input has the character and ``field``."""
        a, previous = self.airborne_index, x.state_cat[..., ACTION_COLUMN].long()
        return (actions[pick] & actions[previous] & ~(self.jump_start[pick] & (pick != previous))
                & (bin_logits[..., a] > 0) & (x.state_bin[..., a] > 0) & (x.cat_mask[..., ACTION_COLUMN] > 0)
                & (x.cat_mask[..., self.character_column] > 0) & (x.cont_mask[..., self.cont_column[field]] > 0))

    def _air_fall(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput
                  ) -> torch.Tensor:
        """``cont`` with the fall speed the game gives where the input and ``pick`` are DRIFT_ACTIONS or hitstun falls
        in the air, the pick starts no jump and takes no new hit, and the prediction has no hitlag: the input's less
        the gravity, down to the top fall speed; out of hitstun (but in a tumble), the fast-fall speed where the
        character already fast-falls, or falls with the stick pulled down."""
        field = AIR_SPEED_FIELDS[1]
        falling = (self._in_the_air(bin_logits, pick, x, field, self.fall_action) & ~self._new_hit(pick, x)
                   & ~self._in_hitlag(cont, x.cont_mask))
        if not bool(falling.any()):   # most frames: nobody is in the air (a play tick's budget)
            return cont
        speed, gravity, top, fast = self._fall_speeds(x)
        pulled = (x.ctrl[..., self.stick_index[1]].to(speed.dtype) <= FAST_FALL_STICK) & (speed <= 0)
        fast_falling = (pulled | ((speed + fast).abs() < 1e-3)) & ~self.damage_action[pick]
        fall = torch.where(fast_falling, -fast, torch.maximum(speed - gravity, -top))
        return self._put(cont, field, falling & torch.isfinite(gravity), fall)

    def _fall_speeds(self, x: StepInput) -> tuple[torch.Tensor, ...]:
        """The input frame's fall speed (raw), and its character's gravity, top and fast-fall speeds (AIR_FALL)."""
        speed = self._raw(x.state_cont, AIR_SPEED_FIELDS[1])
        char = x.state_cat[..., self.character_column].long()
        return (speed, *self.air_fall_table[char].to(speed.dtype).unbind(-1))

    def _fall_on(self, cont: torch.Tensor, where: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``cont`` where ``where`` holds with the character a frame further into a fall from the input frame: its
        fall speed less the gravity (down to the top fall speed, AIR_FALL), and y moved by it and the knockback."""
        field = AIR_SPEED_FIELDS[1]
        speed, gravity, top, _ = self._fall_speeds(x)
        where = where & torch.isfinite(gravity) & (x.cont_mask[..., self.cont_column[field]] > 0)
        fall = torch.maximum(speed - gravity, -top)
        y = self._raw(x.state_cont, "post_position_y") + fall + self._raw(cont, KNOCKBACK_FIELDS[1])
        return self._put(self._put(cont, field, where, fall), "post_position_y", where, y)

    def _air_drift(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput
                   ) -> torch.Tensor:
        """``cont`` with the air speed the game's drift gives where the input and ``pick`` are DRIFTS in the air and
        the pick starts no jump: the input's slowed by the air friction (never past 0) with the stick at rest
        sideways; with it held, moved toward the stick's target speed (stopping there), or slowed to it when beyond."""
        field = AIR_SPEED_FIELDS[0]
        drifting = self._in_the_air(bin_logits, pick, x, field, self.drift_action)
        if not bool(drifting.any()):   # most frames: nobody drifts (a play tick's budget)
            return cont
        speed = self._raw(x.state_cont, field)
        char = x.state_cat[..., self.character_column].long()
        friction = self.air_friction[char].to(speed.dtype)
        accel, accel_sign, top = self.air_drift_table[char].to(speed.dtype).unbind(-1)
        stick = x.ctrl[..., self.stick_index[0]].to(speed.dtype)
        held = stick.abs() >= STICK_DEADZONE
        direction = stick.sign()
        target = stick * top
        slowed = (speed.abs() - friction).clamp_min(0) * speed.sign()
        # beyond the target in the stick's direction: slowed by the friction, not past the target
        beyond = direction * torch.maximum(direction * slowed, direction * target)
        step = accel * stick + accel_sign * direction
        pushed = torch.minimum(direction * (speed + step), direction * target) * direction
        under = direction * speed < direction * target
        drift = torch.where(held, torch.where(under, pushed, beyond), slowed)
        known = torch.isfinite(friction) & (~held | torch.isfinite(top))
        return self._put(cont, field, drifting & known, drift)

    def _illusion_travel(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput
                         ) -> torch.Tensor:
        """``cont`` with the Illusion's speeds (x in the air, y) where ``pick`` is ILLUSION_AIR or ILLUSION_AIR_END for
        Fox or Falco: the dash along the facing (still on its first frame), and the end's slowing and falling by the
        schedule for the frame's age. Without the ages, entries only."""
        dash_action, end_action = self.illusion_actions
        dash_speed = self.illusion_speed[x.state_cat[..., self.character_column].long()].to(cont.dtype)
        known = (torch.isfinite(dash_speed) & (x.cat_mask[..., ACTION_COLUMN] > 0) & (dash_action > 0)
                 & (x.cat_mask[..., self.character_column] > 0) & (x.bin_mask[..., self.facing_index] > 0)
                 & (x.cont_mask[..., self.cont_column[AIR_SPEED_FIELDS[0]]] > 0))
        dash, end = known & (pick == dash_action), known & (pick == end_action)
        if not bool((dash | end).any()):   # most frames: nobody dashes (a play tick's budget)
            return cont
        facing = self._facing(x, cont.dtype)
        enter = pick != x.state_cat[..., ACTION_COLUMN].long()
        if x.state_age is None:
            age, aged = torch.zeros_like(dash_speed), enter
        else:
            going = torch.nan_to_num(x.state_age.to(cont.dtype), nan=-2.0) + 1   # the predicted frame's age
            age = torch.where(enter, torch.zeros_like(going), going)
            aged = enter | (going >= 1)
        speed_x, speed_y = self._raw(x.state_cont, AIR_SPEED_FIELDS).unbind(-1)
        dash_x = facing * torch.where(age >= 1, dash_speed, torch.zeros_like(dash_speed))
        end_x = facing * torch.where(enter, torch.full_like(speed_x, ILLUSION_END_SPEED),
                                     (facing * speed_x - ILLUSION_END_SLOWDOWN).clamp_min(0))
        end_y = torch.where(age < ILLUSION_END_FALL_START, torch.zeros_like(speed_y), speed_y - ILLUSION_END_GRAVITY)
        raw = torch.stack([torch.where(dash, dash_x, end_x), torch.where(dash, torch.zeros_like(end_y), end_y)], -1)
        ruled = (dash | (end & (age <= ILLUSION_END_MEASURED_FRAMES))) & aged
        return self._put(cont, AIR_SPEED_FIELDS, ruled.unsqueeze(-1), raw)

    def _ground_friction(self, cont: torch.Tensor, bin_logits: torch.Tensor, pick: torch.Tensor,
                         x: StepInput) -> torch.Tensor:
        """``cont`` with the input's ground speed slowed by the character's friction (or twice it, the nearer to the
        model's own value; never past 0) where the input and ``pick`` are the same SLIDING action, both grounded, for
        characters in GROUND_FRICTION."""
        field, a = "post_velocities_self_x_ground", self.airborne_index
        speed = self._raw(x.state_cont, field)
        sliding = (self.sliding[pick] & (pick == x.state_cat[..., ACTION_COLUMN].long()) & (speed != 0)
                   & (bin_logits[..., a] <= 0) & (x.state_bin[..., a] <= 0) & (x.cat_mask[..., ACTION_COLUMN] > 0)
                   & (x.cat_mask[..., self.character_column] > 0))
        if not bool(sliding.any()):   # most frames: nobody slides (a play tick's budget)
            return cont
        own = self._raw(cont, field)
        friction = self.friction[x.state_cat[..., self.character_column].long()].to(speed.dtype)
        once, twice = ((speed.abs() - k * friction).clamp_min(0) * speed.sign() for k in (1, 2))
        slowed = torch.where((own - once).abs() <= (own - twice).abs(), once, twice)
        ruled = sliding & torch.isfinite(friction) & (x.cont_mask[..., self.cont_column[field]] > 0)
        return self._put(cont, field, ruled, slowed)

    def _launch(self, h: torch.Tensor, x: StepInput) -> torch.Tensor:
        """Per player, the :data:`LAUNCH_FIELDS` of a hit (normalised values): the head's knockback x speed points
        away from the other player (as on 93 % of real hits' knockback), y as it is, and hitlag is positive."""
        k = self.launch_columns
        along, up, hitlag = (self.launch_head(h).view(*h.shape[:-1], 2, 3)).unbind(-1)
        position = x.state_cont[..., self.position_index[0]]
        away = torch.where(position >= position.flip(-1), 1.0, -1.0).to(along.dtype)
        launch = torch.stack([away * along, up, F.softplus(hitlag)], dim=-1)
        return self.cont_zero[k] + launch * self.cont_delta_scale[k]

    def _hit(self, cont: torch.Tensor, out: dict, pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``cont`` where ``pick`` (the model's action) enters a damage action (:meth:`_new_hit`): the percent is the
        input's plus ``out["damage"]`` (normalised units, per player), and with ``hit_launch`` the knockback speeds and
        hitlag are ``out["launch"]`` (normalised values)."""
        hit = self._new_hit(pick, x)
        i = self.percent_index
        raised = x.state_cont[..., i] + out["damage"].to(cont.dtype)
        cont = cont.index_copy(-1, self.percent_column, torch.where(hit, raised, cont[..., i]).unsqueeze(-1))
        if "launch" in out:
            k = self.launch_columns
            cont = cont.index_copy(-1, k, torch.where(hit.unsqueeze(-1), out["launch"].to(cont.dtype), cont[..., k]))
        return cont

    def _ledge_catch(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) with ledge catches where the game makes them (see
        ``WorldModelConfig.ledge_catch``): at the character's catch point, still, where the input frame is in the
        catch box of the nearer ledge; elsewhere the pick is the model's best action that is not a ledge action.
        Returns the action picked now."""
        grab = self._ledge_grab(out, pick, x) if self.config.ledge_grab else torch.zeros_like(pick, dtype=torch.bool)
        if bool(grab.any()):
            pick = self._force_pick(out, pick, grab, self.catching_action)
        catch = (self.ledge_action[pick] & ~self.ledge_action[x.state_cat[..., ACTION_COLUMN].long()]
                 & (x.cat_mask[..., ACTION_COLUMN] > 0))
        if not bool(catch.any()):   # most frames: nobody catches a ledge (a play tick's budget)
            return pick
        px, py = self._raw(x.state_cont, POSITION_FIELDS).unbind(-1)
        ledge_x, ledge_y = self.ledge_point[self._stage_of(x, px)].to(px.dtype).unbind(-1)
        out_x, below = px.abs() - ledge_x, py - ledge_y
        low_x, high_x, low_y, high_y = LEDGE_CATCH_BOX
        known = (torch.isfinite(ledge_x) & (x.cont_mask[..., self.position_index[0]] > 0)
                 & (x.cont_mask[..., self.position_index[1]] > 0))
        near = (out_x > low_x) & (out_x < high_x) & (below > low_y) & (below < high_y) | grab
        offset = self.catch_offset[x.state_cat[..., self.character_column].long()].to(px.dtype)
        snap = catch & known & near & torch.isfinite(offset[..., 0]) & (x.cat_mask[..., self.character_column] > 0)
        place = torch.stack([torch.sign(px) * (ledge_x + offset[..., 0]), ledge_y + offset[..., 1]], -1)
        cont = self._put(out["cont"], POSITION_FIELDS, snap.unsqueeze(-1), place)
        out["cont"] = self._put_encoded(cont, MOTION_FIELDS, snap.unsqueeze(-1), self.cont_zero[self.velocity_index])
        return self._forbid_picks(out, catch & known & ~near, self.ledge_action)

    def _hit_reach(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) with no hit taken out of reach (see
        ``WorldModelConfig.hit_reach``): where ``pick`` enters a damage action and neither the other player nor an item
        was within HIT_REACH of the character in the input frame, the pick is the model's best other action. Returns
        the action picked now."""
        hit = self._new_hit(pick, x)
        if not bool(hit.any()):   # most frames: nobody is hit (a play tick's budget)
            return pick
        position = self._raw(x.state_cont, POSITION_FIELDS)                      # [*L, 2, 2]
        known = (x.cont_mask[..., self.position_index] > 0).all(-1)
        reach = ((position - position.flip(-2)).norm(dim=-1) <= HIT_REACH) | ~known | ~known.flip(-1)
        p = self.item_position_index
        items = x.state_item_cont[..., p] * self.item_std[p] + self.item_mean[p]  # [*L, S, 2]
        to_items = (position.unsqueeze(-2) - items.unsqueeze(-3).to(position.dtype)).norm(dim=-1)   # [*L, 2, S]
        reach = reach | ((to_items <= HIT_REACH) & (x.state_item_present.unsqueeze(-2) > 0)).any(-1)
        return self._forbid_picks(out, hit & ~reach, self.damage_action)

    def _forbid_picks(self, out: dict[str, torch.Tensor], where: torch.Tensor, actions: torch.Tensor
                      ) -> torch.Tensor:
        """The action head's logits in ``out`` with ``actions`` (a vocabulary mask) ruled out where ``where`` holds, as
        the decode reads any pick; returns the action picked now."""
        logits = out["cat_logits"][ACTION_COLUMN]
        out["cat_logits"] = list(out["cat_logits"])
        out["cat_logits"][ACTION_COLUMN] = torch.where(where.unsqueeze(-1) & actions,
                                                       torch.full_like(logits, -FORCED_LOGIT), logits)
        return out["cat_logits"][ACTION_COLUMN].argmax(-1)

    def _ledge_grab(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``[*L, 2]``: the game catches the nearer ledge for the prediction in ``out`` (see
        ``WorldModelConfig.ledge_grab``): the input is an action that catches one and ``pick`` goes on with it or
        falls; the predicted position is in the character's catch box and the input's was not (or it was rising);
        it falls, faces the ledge, does not hold the stick down, and the other player is not on that ledge."""
        before = x.state_cat[..., ACTION_COLUMN].long()
        char = x.state_cat[..., self.character_column].long()
        able = (self.grab_action[char, before] & ((pick == before) | self.falls[pick] | self.ledge_action[pick])
                & (x.cat_mask[..., ACTION_COLUMN] > 0) & (x.cat_mask[..., self.character_column] > 0))
        if not bool(able.any()):   # on the ground, nobody catches a ledge
            return able
        px, py = self._raw(out["cont"], POSITION_FIELDS).unbind(-1)
        ledge_x, ledge_y = self.ledge_point[self._stage_of(x, px)].to(px.dtype).unbind(-1)
        low_x, high_x, low_y, high_y = self.grab_box[char].to(px.dtype).unbind(-1)

        def in_box(position_x: torch.Tensor, position_y: torch.Tensor) -> torch.Tensor:
            out_x, below = position_x.abs() - ledge_x, position_y - ledge_y
            return (out_x >= low_x) & (out_x <= high_x) & (below >= low_y) & (below <= high_y)

        reaching = able & in_box(px, py) & (x.cont_mask[..., self.position_index] > 0).all(-1)
        if not bool(reaching.any()):   # most frames: nobody in the air is at a ledge (a play tick's budget)
            return reaching
        qx, qy = self._raw(x.state_cont, POSITION_FIELDS).unbind(-1)
        fall_fields = ("post_velocities_self_y", "post_velocities_knockback_y")
        rose = ((self._raw(x.state_cont, fall_fields).sum(-1) >= 0)   # games before Slippi 3.5 record no speeds
                & (x.cont_mask[..., self._columns(fall_fields)] > 0).all(-1))
        facing_ledge = (self._facing(x, px.dtype) * torch.sign(px) < 0) & (x.bin_mask[..., self.facing_index] > 0)
        held_down = x.ctrl[..., self.stick_index[1]].to(px.dtype) <= FAST_FALL_STICK
        taken = (self.ledge_action[before.flip(-1)] & (x.cat_mask[..., ACTION_COLUMN].flip(-1) > 0)
                 & (torch.sign(qx.flip(-1)) == torch.sign(px)))
        return reaching & (~in_box(qx, qy) | rose) & (py < qy) & facing_ledge & ~held_down & ~taken

    def _off_the_stage(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) airborne where the input frame is past the main
        stage's edge and not on the ledge: no ground is there (see ``WorldModelConfig.stage_edge``); a pick there of an
        action of the ground (GROUND_ACTIONS: the model dashed and crouched in the air, held up by nothing) is FALLING,
        before the speed rules, so that the fall falls. Returns the action picked now."""
        px = self._raw(x.state_cont, "post_position_x")
        off = ((px.abs() > self.ground_edge[self._stage_of(x, px)].to(px.dtype))
               & (x.cont_mask[..., self.position_index[0]] > 0)
               & ~(self.ledge_action[x.state_cat[..., ACTION_COLUMN].long()] & (x.cat_mask[..., ACTION_COLUMN] > 0)))
        if not bool(off.any()):   # most frames: everyone is on the stage (a play tick's budget)
            return pick
        out["bin_logits"] = self._force_airborne(out["bin_logits"], off)
        return self._force_pick(out, pick, off & self.ground_action[pick], self.falling_action)

    def _stage_edge(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) made to stand only on the main stage (see
        ``WorldModelConfig.stage_edge``): the position of a grounded prediction past the edge is at the edge where the
        character walked up to it, and otherwise the prediction is airborne (FALLING, where the pick was a ground
        action). Returns the action picked now."""
        a = self.airborne_index
        px = self._raw(out["cont"], "post_position_x")
        edge = self.ground_edge[self._stage_of(x, px)].to(px.dtype)
        grounded = out["bin_logits"][..., a] <= 0
        beyond = (px.abs() > edge) & (x.cont_mask[..., self.position_index[0]] > 0)
        past = grounded & beyond
        # in the air past the edge in an action of the ground (a dash, a jump's squat): nothing holds it up
        hovering = ~grounded & beyond & self.ground_action[pick]
        if not bool((past | hovering).any()):   # most frames: nobody is at an edge (a play tick's budget)
            return pick
        was_grounded = (x.state_bin[..., a] <= 0) & (x.bin_mask[..., a] > 0)
        inside = self._raw(x.state_cont, "post_position_x").abs() <= edge
        stop = past & was_grounded & inside & ~self.run_off[pick]
        out["cont"] = self._put(out["cont"], "post_position_x", stop, torch.sign(px) * edge)
        airborne = past & ~stop
        out["bin_logits"] = self._force_airborne(out["bin_logits"], airborne)
        # a ground action (the input grounded, or a pick other than the air action going on) becomes a fall
        falls = (airborne & (was_grounded | (pick != x.state_cat[..., ACTION_COLUMN].long()))) | hovering
        return self._force_pick(out, pick, falls, self.falling_action)

    def _death_at_blast_zone(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) with no death entered where the input frame is
        farther from every blast zone than KO_REACH (see ``WorldModelConfig.death_at_blast_zone``). Returns the action
        picked now."""
        before = x.state_cat[..., ACTION_COLUMN].long()
        entering = self.dead_action[pick] & ~self.dead_action[before] & (x.cat_mask[..., ACTION_COLUMN] > 0)
        if not bool(entering.any()):   # most frames: nobody dies (a play tick's budget)
            return pick
        left, right, bottom, top = self.blast_zones[self._stage_of(x, pick)].to(x.state_cont.dtype).unbind(-1)
        px, py = (self._raw(x.state_cont, f) for f in POSITION_FIELDS)
        margins = torch.stack([px - left, right - px, py - bottom, top - py], -1)
        inside = (entering & ~(margins <= self.ko_reach.to(margins.dtype)).any(-1) & torch.isfinite(margins).all(-1)
                  & (x.cont_mask[..., self.position_index] > 0).all(-1))
        return self._forbid_picks(out, inside, self.dead_action)

    def _move_end(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) with the input's action ended where the pick goes on
        with it from its limit on (see ``WorldModelConfig.move_end``): the pick is the model's best successor, one
        airborne as the prediction where there is one, and the airborne bit is that successor's. Returns the action
        picked now."""
        before = x.state_cat[..., ACTION_COLUMN].long()
        char = x.state_cat[..., self.character_column].long()
        limit = self.move_limit[char, before]
        ending = ((pick == before) & (x.state_age >= limit) & (x.cat_mask[..., ACTION_COLUMN] > 0)
                  & (x.cat_mask[..., self.character_column] > 0))
        if not bool(ending.any()):   # most frames: every move is within its limit (a play tick's budget)
            return pick
        successors = self.move_successors[char, before]                    # [*L, 2, K]; 0 past the last
        successor_air = self.move_successor_air[char, before]
        logits = out["cat_logits"][ACTION_COLUMN].gather(-1, successors).float()
        airborne = (out["bin_logits"][..., self.airborne_index] > 0).unsqueeze(-1)
        # a successor airborne as the prediction comes first; the model's logits order the rest
        score = torch.where(successors > 0, logits + FORCED_LOGIT * (successor_air == airborne), -float("inf"))
        best = score.argmax(-1, keepdim=True)
        out["bin_logits"] = self._force_airborne(out["bin_logits"], ending & successor_air.gather(-1, best)[..., 0])
        out["bin_logits"] = self._force_airborne(out["bin_logits"], ending & ~successor_air.gather(-1, best)[..., 0],
                                                 airborne=False)
        return self._force_pick(out, pick, ending, successors.gather(-1, best)[..., 0])

    def _air_motion(self, cont: torch.Tensor, by_speeds: torch.Tensor, choice: torch.Tensor,
                    bin_logits: torch.Tensor, pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``cont`` with the positions ``by_speeds`` (the input's moved by the frame's speeds) where the input and the
        prediction are in the air, neither on the ledge, dead or respawning, and the gate held a position (see
        ``WorldModelConfig.air_motion``)."""
        a = self.airborne_index
        flying = ((x.state_bin[..., a] > 0) & (x.bin_mask[..., a] > 0) & (bin_logits[..., a] > 0)
                  & ~self.in_place[x.state_cat[..., ACTION_COLUMN].long()] & ~self.in_place[pick]
                  & (x.cat_mask[..., ACTION_COLUMN] > 0))
        held = (choice[..., self.position_columns] != GATE_FREE) & flying.unsqueeze(-1)
        if not bool(held.any()):
            return cont
        position = torch.where(held, by_speeds[..., self.position_columns], cont[..., self.position_columns])
        return cont.index_copy(-1, self.position_columns, position)

    def _death_hold(self, out: dict[str, torch.Tensor], pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``out`` (the heads' predictions; ``pick`` their action) with a death going on where the input frame is one
        that has not lasted its DEAD_FRAMES yet (see ``WorldModelConfig.respawn_snap``). Returns the action picked
        now."""
        before = x.state_cat[..., ACTION_COLUMN].long()
        early = (self.dead_action[before] & (x.cat_mask[..., ACTION_COLUMN] > 0) & (pick != before)
                 & (x.state_age >= 0) & (x.state_age < self.dead_frames[before] - 1))   # counted from 0; Slippi: -1
        if not bool(early.any()):   # most frames: nobody is dead
            return pick
        return self._force_pick(out, pick, early, before)

    def _respawn_snap(self, cont: torch.Tensor, pick: torch.Tensor, x: StepInput) -> torch.Tensor:
        """``cont`` with the position at the top of the respawn platform where the input frame is a death and ``pick``
        (the model's action) the first frame of ON_HALO_DESCENT, on a stage with respawn facts."""
        respawn = (self.dead_action[x.state_cat[..., ACTION_COLUMN].long()] & (x.cat_mask[..., ACTION_COLUMN] > 0)
                   & (pick == self.halo_action) & (self.halo_action > 0))
        stage = x.stage.long()
        while stage.dim() < respawn.dim() - 1:
            stage = stage.unsqueeze(-1)
        start = self.halo_start[stage].to(cont.dtype)            # [*L, 2 players, (x, y)]
        snap = respawn.unsqueeze(-1) & torch.isfinite(start)
        position = torch.where(snap, start, cont[..., self.position_columns])
        return cont.index_copy(-1, self.position_columns, position)

    def _item_motion(self, item_cont: torch.Tensor, prev: torch.Tensor, was_present: torch.Tensor) -> torch.Tensor:
        """``item_cont`` with the position of every slot that held an item in the input frame replaced by its
        previous position plus its predicted velocity (normalised units). A new item keeps the head's position:
        it has no previous one to move from."""
        v, p = self.item_velocity_index, self.item_position_index
        velocity = item_cont[..., v] * self.item_std[v] + self.item_mean[v]
        moved = prev[..., p] + velocity / self.item_std[p]
        position = torch.where(was_present.unsqueeze(-1) > 0, moved, item_cont[..., p])
        return item_cont.index_copy(-1, self.item_position_columns, position)

    # -- sequence (training) and step (inference) ---------------------------------------------------------------

    def forward(self, x: StepInput, state=None, return_state: bool = False):
        """Teacher-forced over a sequence: inputs ``[B, T, ...]`` → predictions ``[B, T, ...]``."""
        h = self.body(self.embed(x), state=state, return_state=return_state)
        if return_state:
            h, state = h
            return self.heads(h, x), state
        return self.heads(h, x)

    def init_state(self, batch_size: int, device=None, dtype=None):
        return self.body.init_state(batch_size, device=device, dtype=dtype)

    def step(self, x: StepInput, state):
        """One frame: inputs ``[B, ...]`` (no time axis) and the body state → (predictions, new state)."""
        h, state = self.body.step(self.embed(x), state)
        return self.heads(h, x), state


N_GEOMETRY_FEATURES = 8
N_BLAST_FEATURES = 3
N_RELATIVE_FEATURES = 2


def stage_geometry_table(spec: EncodingSpec) -> torch.Tensor:
    """``[n_stages, 16]`` per stage index: known, ledge x, main stage y, blast zones (left, right, top, bottom), then
    up to 3 platforms (y, left x, right x; NaN where fewer). Stages without known geometry: all 0 (not known)."""
    table = torch.zeros(spec.n_stages, 7 + 3 * 3)
    table[:, 7:] = float("nan")
    for stage_id in spec.stage_vocab:
        index, g = spec.stage_index(stage_id), geometry(stage_id)
        if g is None:
            continue
        table[index, :7] = torch.tensor([1.0, g.ledge_x, g.main_y, g.blast_left, g.blast_right, g.blast_top,
                                         g.blast_bottom])
        for k, platform in enumerate(g.platforms[:3]):
            table[index, 7 + 3 * k: 10 + 3 * k] = torch.tensor(platform)
    return table


def main_body_table(spec: EncodingSpec) -> torch.Tensor:
    """``[n_stages, 4]``: per stage index the half-width (raw) of the main stage's solid body
    (:func:`meleewm.melee.stages.body_bounds`), the normalised y of its surface and of the body's bottom, and the
    half-width (raw) over which a fall from above lands (SOLID_INSET from the ledges); a stage without geometry gets
    half-widths of 0 (nothing is inside)."""
    table = torch.zeros(spec.n_stages, 4)
    y_mean, y_std = spec.cont_stats["post_position_y"]
    for index, stage_id in enumerate(spec.stage_vocab, start=1):
        g = geometry(stage_id)
        if g is not None:
            half, _, bottom = body_bounds(stage_id)
            table[index] = torch.tensor([half, (g.main_y - y_mean) / y_std, (bottom - y_mean) / y_std,
                                         g.ledge_x - SOLID_INSET])
    return table


def stage_table(spec: EncodingSpec, fact, empty: float, width: tuple[int, ...] = ()) -> torch.Tensor:
    """``[n_stages, *width]``: ``fact(stage id)`` (raw) per stage index; ``empty`` where it is None."""
    table = torch.full((spec.n_stages, *width), empty)
    for index, stage_id in enumerate(spec.stage_vocab, start=1):
        value = fact(stage_id)
        if value is not None:
            table[index] = torch.tensor(value)
    return table


def blast_zones(stage_id: int) -> tuple[float, float, float, float] | None:
    """A stage's blast zones (left, right, bottom, top), raw; None without its geometry."""
    g = geometry(stage_id)
    return None if g is None else (g.blast_left, g.blast_right, g.blast_bottom, g.blast_top)


def landing_area_table(spec: EncodingSpec) -> torch.Tensor:
    """``[n_stages, areas, 4]``: per stage index its :func:`meleewm.melee.stages.landing_areas` (raw; NaN past a
    stage's last, and everywhere for a stage without them)."""
    width = max(len(landing_areas(stage_id)) for stage_id in LEGAL_STAGES)

    def padded(stage_id):
        areas = landing_areas(stage_id)
        return None if areas is None else [*areas, *[(float("nan"),) * 4] * (width - len(areas))]
    return stage_table(spec, padded, float("nan"), (width, 4))


def move_tables(spec: EncodingSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``meleewm.melee.moves``' table per [post_character vocabulary, action vocabulary]: the limit (inf where a move
    has none, and where none of its successors is in the vocabulary: a limited move always has one), and up to
    MAX_SUCCESSORS successors (action vocabulary indices, 0 past the last) with their airborne bits."""
    chars, actions = spec.decode_lut("post_character"), spec.decode_lut("post_state")
    limit = torch.full((len(chars), len(actions)), float("inf"))
    successors = torch.zeros((len(chars), len(actions), MAX_SUCCESSORS), dtype=torch.long)
    successor_air = torch.zeros_like(successors, dtype=torch.bool)
    table = moves()
    for c, char in enumerate(chars):
        for action, move in (table.get(int(char), {}) if c else {}).items():
            a = spec.cat_value_index("post_state", action)
            known = [(spec.cat_value_index("post_state", s), air) for s, air in move.successors]
            known = [(s, air) for s, air in known if s > 0]
            if a == 0 or not known:   # not in the vocabulary: never picked
                continue
            limit[c, a] = move.limit
            successors[c, a, :len(known)] = torch.tensor([s for s, _ in known])
            successor_air[c, a, :len(known)] = torch.tensor([air for _, air in known])
    return limit, successors, successor_air


def action_value_table(spec: EncodingSpec, values: dict[int, int]) -> torch.Tensor:
    """``[action vocabulary]``: each action's value in ``values`` (raw ids), 0 for every other action and at UNKNOWN
    (index 0)."""
    return torch.tensor([values.get(int(action), 0) if index else 0
                         for index, action in enumerate(spec.decode_lut("post_state"))])


def dead_frames_table(spec: EncodingSpec) -> torch.Tensor:
    """``[action vocabulary]``: how many frames each death action lasts (DEAD_FRAMES; 60 where the table has none of
    a DEAD_* action), 0 for every other action."""
    return action_value_table(spec, {action: DEAD_FRAMES.get(action, 60) for action in DEAD_STATES})


def halo_start_table(spec: EncodingSpec) -> torch.Tensor:
    """``[n_stages, 2 players, 2]``: the normalised (x, y) at which each player appears on the respawn platform
    (:func:`meleewm.melee.stages.halo_start`); NaN for a stage without respawn facts."""
    table = torch.full((spec.n_stages, 2, 2), float("nan"))
    (x_mean, x_std), (y_mean, y_std) = spec.cont_stats["post_position_x"], spec.cont_stats["post_position_y"]
    for index, stage_id in enumerate(spec.stage_vocab, start=1):
        start = halo_start(stage_id)
        if start is not None:
            table[index] = torch.tensor([[(px - x_mean) / x_std, (py - y_mean) / y_std] for px, py in start])
    return table


def character_table(spec: EncodingSpec, values: dict[int, float]) -> torch.Tensor:
    """``[post_character vocabulary]``: each internal character's value in ``values`` (NaN where it has none)."""
    lut = spec.decode_lut("post_character")
    return torch.tensor([values.get(int(char), float("nan")) if index else float("nan")
                         for index, char in enumerate(lut)])


def character_columns(spec: EncodingSpec, values: dict[int, tuple[float, ...]]) -> torch.Tensor:
    """``[post_character vocabulary, n]``: each internal character's n values in ``values`` (NaN where it has none)."""
    width = len(next(iter(values.values())))
    return torch.stack([character_table(spec, {char: row[k] for char, row in values.items()})
                        for k in range(width)], -1)


def jump_speed_table(spec: EncodingSpec) -> torch.Tensor:
    """``[post_character vocabulary, 3]``: each internal character's short-hop, full-hop and double-jump speeds (raw;
    NaN where the tables lack one)."""
    return torch.cat([character_columns(spec, GROUND_JUMP_SPEEDS),
                      character_table(spec, DOUBLE_JUMP_SPEEDS).unsqueeze(-1)], -1)


def action_table(spec: EncodingSpec, actions) -> torch.Tensor:
    """[action vocabulary] True at the indices of ``actions`` (raw ids); never at UNKNOWN (index 0), where an id
    missing from the vocabulary falls."""
    table = torch.zeros(len(spec.decode_lut("post_state")), dtype=torch.bool)
    table[[spec.cat_value_index("post_state", a) for a in sorted(actions)]] = True
    table[0] = False
    return table


def character_action_table(spec: EncodingSpec, actions, by_character: dict[int, tuple[int, ...]]) -> torch.Tensor:
    """``[post_character vocabulary, action vocabulary]``: True at ``actions`` (raw ids) for every character, and at
    each internal character's own ``by_character`` actions (special-action ids mean other moves for others)."""
    common = action_table(spec, actions)
    lut = spec.decode_lut("post_character")
    return torch.stack([common | action_table(spec, by_character.get(int(char), ())) if index
                        else torch.zeros_like(common) for index, char in enumerate(lut)])


def gate_classes(next_cont: torch.Tensor, prev_cont: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """The gate's target per continuous entry: GATE_ZERO where the next value is exactly the encoded raw 0 (first:
    a still character's velocity snaps to 0 in closed loop), else GATE_SAME where it equals the previous value
    exactly, else GATE_FREE."""
    classes = torch.full(next_cont.shape, GATE_FREE, dtype=torch.long, device=next_cont.device)
    classes = torch.where(next_cont == prev_cont, torch.full_like(classes, GATE_SAME), classes)
    return torch.where(next_cont == zero.to(next_cont.dtype), torch.full_like(classes, GATE_ZERO), classes)


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = F.softmax(logits.float() / temperature, dim=-1)
    flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return flat.view(probs.shape[:-1])


def next_inputs(pred: dict[str, torch.Tensor], prev: StepInput, *, temperature: float = 0.0,
                generator: torch.Generator | None = None, player_items_only: bool = False) -> StepInput:
    """The model's own predictions as the next step's inputs (argmax, or sampled at ``temperature``).

    Masks and constants carry over from ``prev`` (a field the game lacks stays absent for the whole rollout). The
    controllers of the next frame are not known yet, and the rule state is ``GameRules.apply``'s to set: ``ctrl``,
    ``rule_phase`` and ``rule_age`` are None. The state age follows :func:`apply_state_age_rule` from the previous
    input's action and age (when ``prev`` has one). With ``player_items_only`` (the encoding's option), a slot whose
    picked owner is nobody is empty: such items are not part of the state.
    """
    bin_logits = pred["bin_logits"].detach()
    if temperature <= 0:
        binary = (bin_logits > 0).to(prev.state_bin.dtype)
    else:
        probs = torch.sigmoid(bin_logits.float() / temperature)
        binary = torch.bernoulli(probs, generator=generator).to(prev.state_bin.dtype)
    cat = torch.stack([_pick(l.detach(), temperature, generator) for l in pred["cat_logits"]],
                      dim=-1).to(prev.state_cat.dtype)
    state = {"state_cont": pred["cont"].detach(), "state_bin": binary, "state_cat": cat, "ctrl": None,
             "rule_phase": None, "rule_age": None}
    if prev.state_age is not None:
        state["state_age"] = apply_state_age_rule(prev.state_cat[..., ACTION_COLUMN], prev.state_age,
                                                  cat[..., ACTION_COLUMN])
    if "item_present_logits" in pred:
        owner = _pick(pred["item_owner_logits"].detach(), temperature, generator)
        present = pred["item_present_logits"].detach() > 0
        if player_items_only:
            present = present & (owner != OWNER_NONE)
        present = present.to(prev.state_item_present.dtype)
        state["state_item_present"] = present
        state["state_item_type"] = _pick(pred["item_type_logits"].detach(), temperature, generator).to(
            prev.state_item_type.dtype)
        state["state_item_owner"] = owner.to(prev.state_item_owner.dtype)
        state["state_item_cont"] = pred["item_cont"].detach() * present.unsqueeze(-1).to(pred["item_cont"].dtype)
    return prev.replace(**state)


def last_step(pred: dict) -> dict:
    """Predictions of a sequence, at its last position."""
    return {k: ([v[:, -1] for v in value] if isinstance(value, list) else value[:, -1]) for k, value in pred.items()}
