"""Known, exact rules of Melee enforced on the model's next inputs (encoded space): the model alone predicts a
frame, then :class:`GameRules` makes it obey what the game never breaks. Every action is counted.

The rules (game facts from ``meleewm.melee``, checked against the shared replays):

* **KO.** A live character past a blast zone (or one the model puts in a DEAD_* action) is KO'd: exactly one
  stock lost, on the first DEAD frame (a star KO's on its 131st, ``STOCK_LOSS_FRAMES``); then the death sequence
  real games show: the DEAD_* action of that blast zone (DEAD_LEFT / DEAD_RIGHT / DEAD_DOWN for 60 frames,
  DEAD_FLY_STAR for 176 above the top) at the crossing
  point with velocities 0 and percent unchanged; then ON_HALO_DESCENT for 60 frames down to the stage's respawn
  point at 0 %; then ON_HALO_WAIT while both sticks, triggers and buttons rest (at most 240 frames). The first
  input releases the character to the model. With no stock left the character stays dead.
* **Stocks** change only by that one KO: any other change the model predicts is undone; never negative.
* **Percent never falls** while a character is alive (it resets to 0 only on respawn).
* **Solid ground.** A live character never enters the main stage's solid body (``meleewm.melee.in_stage_body``):
  one that does is put back on the surface (or under the body, if it came from below), its velocity into the
  body zeroed.

State the rules carry between frames (the phase of each player's death sequence and how many frames it has run)
travels with the inputs (``StepInput.rule_phase`` and ``rule_age``); the model never reads it. ``post_state_age`` is not encoded and
follows ``apply_state_age_rule`` on the decoded actions, so it follows these rules too.
"""

from __future__ import annotations

import torch

from meleewm.data.encoding import STICK_FIELDS, TRIGGER_FIELDS, EncodingSpec, frames_in_last_action
from meleewm.data.step import StepInput
from meleewm.melee.actions import (
    ACTION_IDS,
    DEAD_STATES,
    HALO_DESCENT_FRAMES,
    HALO_WAIT_MAX_FRAMES,
    STOCK_LOSS_FRAMES,
)
from meleewm.melee.game import STICK_DEADZONE
from meleewm.melee.stages import HALO_DESCENT_SPEED, RESPAWN_POINTS, body_bounds, geometry
from meleewm.model.world import action_value_table, dead_frames_table

# Phases of a player's death sequence (rule_phase); rule_age counts frames since the phase began (0 = first).
LIVE, DEAD, DESCENT, WAIT, OUT = 0, 1, 2, 3, 4
# Counted rule actions, in the order of the counts tensor :meth:`GameRules.apply` returns.
RULE_EVENTS = ("ko_blast_zone", "ko_model", "respawn", "sequence_frames", "stocks_fixed", "percent_fixed",
               "floor_fixed", "halo_fixed")
DEAD_DOWN, DEAD_LEFT, DEAD_RIGHT = ACTION_IDS["DEAD_DOWN"], ACTION_IDS["DEAD_LEFT"], ACTION_IDS["DEAD_RIGHT"]
DEAD_TOP = ACTION_IDS["DEAD_FLY_STAR"]   # the top blast zone's KO in the shared replays (53 of 77)
HALO_DESCENT, HALO_WAIT = ACTION_IDS["ON_HALO_DESCENT"], ACTION_IDS["ON_HALO_WAIT"]
FALLING = ACTION_IDS["FALLING"]   # a live character the model puts on the respawn platform falls instead
NO_GROUND = 65535
TRIGGER_REST = 0.3
VELOCITIES = ("post_velocities_self_x_air", "post_velocities_self_y", "post_velocities_knockback_x",
              "post_velocities_knockback_y", "post_velocities_self_x_ground")
Y_VELOCITIES = ("post_velocities_self_y", "post_velocities_knockback_y")


class GameRules:
    """The rules for one encoding; stage facts are looked up per batch entry from the inputs' ``stage``."""

    def __init__(self, spec: EncodingSpec):
        self.spec = spec
        s = spec
        self.i_x, self.i_y = s.cont_index("post_position_x"), s.cont_index("post_position_y")
        self.i_percent = s.cont_index("post_percent")
        self.i_hitlag = s.cont_index("post_hitlag")
        self.i_vel = [s.cont_index(f) for f in VELOCITIES]
        self.i_vel_y = [s.cont_index(f) for f in Y_VELOCITIES]
        self.i_action, self.i_stocks = s.cat_index("post_state"), s.cat_index("post_stocks")
        self.i_ground = s.cat_index("post_ground")
        self.i_airborne = s.bin_index("airborne")
        # Controller layout (CTRL_FIELDS): main stick x, y; C-stick x, y; the triggers; the buttons.
        n_sticks, n_triggers = len(STICK_FIELDS), len(TRIGGER_FIELDS)
        self.main_stick, self.c_stick = slice(0, 2), slice(2, n_sticks)
        self.trigger_slice = slice(n_sticks, n_sticks + n_triggers)
        self.button_slice = slice(n_sticks + n_triggers, None)
        self.action_raw = torch.as_tensor(spec.decode_lut("post_state"))
        self.stocks_raw = torch.as_tensor(spec.decode_lut("post_stocks"))
        stock_values = [int(v) for v in spec.vocab("post_stocks")]
        self.stocks_index = torch.zeros(max(stock_values + [0]) + 1, dtype=torch.long)
        for v in stock_values:
            if v >= 0:
                self.stocks_index[v] = spec.cat_value_index("post_stocks", v)
        self.dead_ids = torch.tensor(sorted(DEAD_STATES))
        self.dead_frames = dead_frames_table(spec)
        self.stock_loss_frame = action_value_table(spec, STOCK_LOSS_FRAMES)
        self.action_index = {a: spec.cat_value_index("post_state", a)
                             for a in (DEAD_DOWN, DEAD_LEFT, DEAD_RIGHT, DEAD_TOP, HALO_DESCENT, HALO_WAIT, FALLING)}
        raw_actions = self.action_raw.tolist()
        # Vocabulary indices a live character may not be predicted in without a rule acting (DEAD_*, halo).
        self.sequence_indices = torch.tensor([i for i, a in enumerate(raw_actions)
                                              if a in DEAD_STATES or a in (HALO_DESCENT, HALO_WAIT)])
        self.halo_indices = torch.tensor([i for i, a in enumerate(raw_actions) if a in (HALO_DESCENT, HALO_WAIT)])
        self.position_mean = torch.tensor([spec.cont_stats[f][0] for f in ("post_position_x", "post_position_y")])
        self.position_std = torch.tensor([spec.cont_stats[f][1] for f in ("post_position_x", "post_position_y")])
        self.no_ground_index = spec.cat_value_index("post_ground", NO_GROUND)
        # Per stage vocabulary index: geometry present, blast zones, solid body, respawn points, descent speed.
        n = spec.n_stages
        self.has_geometry = torch.zeros(n, dtype=torch.bool)
        self.blast = torch.zeros(n, 4)            # left, right, top, bottom
        self.body = torch.zeros(n, 4)             # half-width, top, bottom, surface y
        self.respawn = torch.zeros(n, 2, 2)       # [player, (x, resting y)]
        self.descent_speed = torch.zeros(n)
        for index, stage_id in enumerate(spec.stage_vocab, start=1):
            g = geometry(stage_id)
            if g is None:
                continue
            self.has_geometry[index] = True
            self.blast[index] = torch.tensor([g.blast_left, g.blast_right, g.blast_top, g.blast_bottom])
            self.body[index] = torch.tensor([*body_bounds(stage_id), g.main_y])
            self.respawn[index] = torch.tensor(RESPAWN_POINTS[stage_id])
            self.descent_speed[index] = HALO_DESCENT_SPEED[stage_id]
        # The same facts as (x, y) boxes for the quick check: inside the blast zones, and the solid body.
        self.blast_low, self.blast_high = self.blast[:, [0, 3]], self.blast[:, [1, 2]]
        half, body_top, body_bottom = self.body[:, 0], self.body[:, 1], self.body[:, 2]
        self.body_low = torch.stack([-half, body_bottom], -1)
        self.body_high = torch.stack([half, body_top], -1)

    # -- rule state -------------------------------------------------------------------------------------------

    def initial_state(self, history: StepInput) -> tuple[torch.Tensor, torch.Tensor]:
        """The rule state ``(rule_phase, rule_age)`` of the last frame of ``history`` (inputs with a time axis
        ``[B, T, 2, ...]``, or one frame ``[B, 2, ...]``): where each player is in a death sequence, from the
        trailing run of its action."""
        cat = history.state_cat
        if cat.dim() == 3:
            cat = cat.unsqueeze(1)
        actions = cat[..., self.i_action].long()                       # [B, T, 2]
        lasted = frames_in_last_action(actions)
        raw = self.action_raw[actions[:, -1]]
        dead = torch.isin(raw, self.dead_ids)
        phase = torch.where(dead, DEAD, torch.where(raw == HALO_DESCENT, DESCENT,
                                                    torch.where(raw == HALO_WAIT, WAIT, LIVE)))
        age = torch.where(phase == LIVE, torch.zeros_like(lasted), lasted)
        return phase.long(), age.long()

    # -- the rules ----------------------------------------------------------------------------------------------

    def _any_rule_applies(self, prev: StepInput, nxt: StepInput) -> bool:
        """A quick test (few tensor ops, for play's per-tick budget): could any rule act on this frame?"""
        stage = prev.stage.long()
        cont, cat, prev_cont, prev_cat = nxt.state_cont, nxt.state_cat, prev.state_cont, prev.state_cat
        pos = cont[..., [self.i_x, self.i_y]] * self.position_std + self.position_mean        # [B, 2, 2]
        geo = self.has_geometry[stage].view(-1, 1)
        outside = ((pos <= self.blast_low[stage].unsqueeze(1)) | (pos >= self.blast_high[stage].unsqueeze(1))).any(-1)
        inside = ((pos > self.body_low[stage].unsqueeze(1)) & (pos < self.body_high[stage].unsqueeze(1))).all(-1)
        suspect = ((prev.rule_phase != LIVE) | (geo & (outside | inside))
                   | (cont[..., self.i_percent] < prev_cont[..., self.i_percent])
                   | (cat[..., self.i_stocks] != prev_cat[..., self.i_stocks])
                   | torch.isin(cat[..., self.i_action], self.sequence_indices))
        return bool(suspect.any())

    def _next_phase(self, ctrl, phase, age, ko, prev_action_index, out_of_stocks):
        """Each player's death-sequence phase and age after this frame: (phase, age, who starts the descent).
        DEAD runs its action's frames, then the halo descent (or OUT with no stock left); the halo wait ends at
        the first input or its limit; a KO starts DEAD."""
        dead_over = (phase == DEAD) & (age + 1 >= self.dead_frames[prev_action_index])
        neutral = ((ctrl[..., self.main_stick].norm(dim=-1) < STICK_DEADZONE)
                   & (ctrl[..., self.c_stick].norm(dim=-1) < STICK_DEADZONE)
                   & (ctrl[..., self.trigger_slice] < TRIGGER_REST).all(-1)
                   & (ctrl[..., self.button_slice] < 0.5).all(-1))
        descent_over = (phase == DESCENT) & (age + 1 >= HALO_DESCENT_FRAMES)
        waiting_over = (phase == WAIT) & (age + 1 >= HALO_WAIT_MAX_FRAMES)
        new_phase = phase.clone()
        new_age = age + 1
        new_phase[dead_over & out_of_stocks] = OUT
        start_descent = dead_over & ~out_of_stocks
        new_phase[start_descent] = DESCENT
        start_wait = descent_over & neutral
        new_phase[start_wait] = WAIT
        release = (descent_over & ~neutral) | ((phase == WAIT) & (~neutral | waiting_over))
        new_phase[release] = LIVE
        new_phase[ko] = DEAD
        reset_age = ko | start_descent | start_wait | release
        new_age = torch.where(reset_age | (new_phase == LIVE), torch.zeros_like(new_age), new_age)
        return new_phase, new_age, start_descent

    def apply(self, prev: StepInput, nxt: StepInput) -> tuple[StepInput, torch.Tensor]:
        """``nxt`` (the model's next inputs, from ``prev``, whose ``ctrl`` drove the step) made to obey the rules.

        Returns (the new next inputs, with the new rule state; a ``[B, len(RULE_EVENTS)]`` tensor of counts, one
        row per game of the batch). ``prev`` must carry the rule state (from :meth:`initial_state` or the previous
        apply)."""
        if not self._any_rule_applies(prev, nxt):
            return (nxt.replace(rule_phase=prev.rule_phase, rule_age=prev.rule_age),
                    torch.zeros(nxt.state_cat.shape[0], len(RULE_EVENTS), dtype=torch.long))
        spec = self.spec
        cont = nxt.state_cont.clone()
        binary = nxt.state_bin.clone()
        cat = nxt.state_cat.clone()
        prev_cont, prev_cat = prev.state_cont, prev.state_cat
        phase, age = prev.rule_phase, prev.rule_age
        stage = prev.stage.long()
        geo = self.has_geometry[stage].unsqueeze(-1)                    # [B, 1]
        blast, body = self.blast[stage].unsqueeze(1), self.body[stage].unsqueeze(1)   # [B, 1, 4]
        respawn, speed = self.respawn[stage], self.descent_speed[stage].unsqueeze(-1)

        x = spec.denormalise("post_position_x", cont[..., self.i_x])
        y = spec.denormalise("post_position_y", cont[..., self.i_y])
        prev_y = spec.denormalise("post_position_y", prev_cont[..., self.i_y])
        percent = spec.denormalise("post_percent", cont[..., self.i_percent])
        prev_percent = spec.denormalise("post_percent", prev_cont[..., self.i_percent])
        action = self.action_raw[cat[..., self.i_action].long()]
        prev_stock_index = prev_cat[..., self.i_stocks].long()
        prev_stocks = self.stocks_raw[prev_stock_index]
        stocks_known = prev_stocks >= 0

        # KOs: past a blast zone, or put in a DEAD action by the model.
        live = phase == LIVE
        left, right, bottom = x <= blast[..., 0], x >= blast[..., 1], y <= blast[..., 3]
        top = y >= blast[..., 2]
        outside = geo & (left | right | bottom | top)
        model_dead = torch.isin(action, self.dead_ids)
        ko_blast = live & outside
        ko_model = live & model_dead & ~outside
        ko = ko_blast | ko_model

        prev_action_index = prev_cat[..., self.i_action].long()
        if bool(((phase != LIVE) | ko).any()):
            new_phase, new_age, start_descent = self._next_phase(prev.ctrl, phase, age, ko, prev_action_index,
                                                                 stocks_known & (prev_stocks <= 0))
        else:  # everyone alive and no KO (most frames): the death sequence has nothing to do
            new_phase, new_age, start_descent = phase, torch.zeros_like(age), torch.zeros_like(ko)

        dead_now = (new_phase == DEAD) | (new_phase == OUT)
        halo = (new_phase == DESCENT) | (new_phase == WAIT)
        sequence = dead_now | halo
        if bool(sequence.any()):  # most frames have no one in a death sequence: skip its ~40 ops (play's budget)
            # Dead (or out of stocks): frozen where the KO happened (the crossing point on the KO frame).
            still = dead_now & ~ko
            zone_action = torch.where(left, self.action_index[DEAD_LEFT], torch.where(
                right, self.action_index[DEAD_RIGHT], torch.where(bottom, self.action_index[DEAD_DOWN],
                                                                   self.action_index[DEAD_TOP])))
            ko_action = torch.where(ko_blast, zone_action, cat[..., self.i_action].long())
            cat[..., self.i_action] = torch.where(ko, ko_action, torch.where(still, prev_action_index,
                                                                             cat[..., self.i_action].long()))
            cont[..., self.i_x] = torch.where(still, prev_cont[..., self.i_x], cont[..., self.i_x])
            cont[..., self.i_y] = torch.where(still, prev_cont[..., self.i_y], cont[..., self.i_y])
            cont[..., self.i_percent] = torch.where(dead_now, prev_cont[..., self.i_percent],
                                                    cont[..., self.i_percent])

            # On the respawn platform: descending to the respawn point, then resting there, at 0 %.
            descending = new_phase == DESCENT
            rest_x, rest_y = respawn[..., 0], respawn[..., 1]
            halo_y = rest_y + torch.where(descending, speed * (HALO_DESCENT_FRAMES - 1 - new_age),
                                          torch.zeros_like(rest_y))
            cont[..., self.i_x] = torch.where(halo, spec.normalise("post_position_x", rest_x), cont[..., self.i_x])
            cont[..., self.i_y] = torch.where(halo, spec.normalise("post_position_y", halo_y), cont[..., self.i_y])
            cont[..., self.i_percent] = torch.where(halo, spec.normalise("post_percent", torch.zeros_like(rest_x)),
                                                    cont[..., self.i_percent])
            halo_action = torch.where(descending, self.action_index[HALO_DESCENT], self.action_index[HALO_WAIT])
            cat[..., self.i_action] = torch.where(halo, halo_action, cat[..., self.i_action].long())
            cat[..., self.i_ground] = torch.where(halo, self.no_ground_index, cat[..., self.i_ground].long())
            binary[..., self.i_airborne] = torch.where(halo, torch.ones_like(binary[..., self.i_airborne]),
                                                       binary[..., self.i_airborne])
            for i, name in zip(self.i_vel, VELOCITIES):
                raw = torch.zeros_like(x)
                if name == "post_velocities_self_y":
                    raw = torch.where(descending, -speed.expand_as(raw), raw)
                cont[..., i] = torch.where(sequence, spec.normalise(name, raw), cont[..., i])
            cont[..., self.i_hitlag] = torch.where(sequence, spec.normalise("post_hitlag", torch.zeros_like(x)),
                                                   cont[..., self.i_hitlag])

        # Stocks: one fewer on the death's frame that takes it (the KO's own for most), otherwise exactly the previous
        # count.
        predicted_stocks = cat[..., self.i_stocks].long()
        loss_frame = self.stock_loss_frame[cat[..., self.i_action].long()]
        takes_stock = (new_phase == DEAD) & (new_age == loss_frame)   # a KO starts DEAD at age 0
        ko_stocks = self.stocks_index[(prev_stocks - 1).clamp(min=0).clamp(max=len(self.stocks_index) - 1)]
        wanted = torch.where(takes_stock, ko_stocks, prev_stock_index)
        wanted = torch.where(stocks_known, wanted, predicted_stocks)
        stocks_fixed = (wanted != predicted_stocks) & ~takes_stock
        cat[..., self.i_stocks] = wanted

        # Percent never falls while alive; the solid body of the stage.
        alive = new_phase == LIVE
        falling = alive & (percent < prev_percent)
        cont[..., self.i_percent] = torch.where(falling, prev_cont[..., self.i_percent], cont[..., self.i_percent])
        inside = alive & geo & (x.abs() < body[..., 0]) & (y < body[..., 1]) & (y > body[..., 2])
        from_below = prev_y <= body[..., 2]
        floor_y = torch.where(from_below, body[..., 2], body[..., 3])
        if bool(inside.any()):
            cont[..., self.i_y] = torch.where(inside, spec.normalise("post_position_y", floor_y), cont[..., self.i_y])
            for i, name in zip(self.i_vel_y, Y_VELOCITIES):
                v = spec.denormalise(name, cont[..., i])
                into_body = torch.where(from_below, v > 0, v < 0)
                cont[..., i] = torch.where(inside & into_body, spec.normalise(name, torch.zeros_like(v)),
                                           cont[..., i])

        halo_live = alive & torch.isin(cat[..., self.i_action].long(), self.halo_indices)
        cat[..., self.i_action] = torch.where(halo_live, self.action_index[FALLING], cat[..., self.i_action].long())

        counts = torch.stack([m.sum(-1) for m in (ko_blast, ko_model, start_descent, sequence & ~ko, stocks_fixed,
                                                  falling, inside, halo_live)], dim=-1)
        out = nxt.replace(state_cont=cont, state_bin=binary, state_cat=cat.to(nxt.state_cat.dtype),
                      rule_phase=new_phase, rule_age=new_age)
        return out, counts
