"""Facts of a Melee game: when Slippi's frames start, how fast they run, and constants of its physics."""

FPS = 60                 # frames per second
FIRST_FRAME = -123       # the first frame Slippi records; game time (the timer) starts at frame 0
FULL_SHIELD = 60.0       # a full, untouched shield
# A launch's knockback speed falls by this much each frame, along its own direction, until it is spent (in the air, out
# of hitlag: 97.8 % of such frames with knockback in the shared games, to 0.001 units)
KNOCKBACK_DECAY = 0.051
# An airdodge starts at this speed along the control stick (at rest: in place), then its speed falls by AIRDODGE_DECAY a
# frame for AIRDODGE_DECAY_FRAMES frames, and gravity takes over (every airdodge of the shared games, to 0.001 units)
AIRDODGE_SPEED = 2.79
AIRDODGE_DECAY = 0.9
AIRDODGE_DECAY_FRAMES = 28
# Melee reads a control stick inside this radius as at rest
STICK_DEADZONE = 0.2875
# A falling character fast-falls when the control stick is pulled down past this
FAST_FALL_STICK = -0.6625
# A hit is taken within this distance of the other player or an item (a projectile, a turnip), at the frame before:
# of the shared games' 16,147 damage actions entered, 19 (0.12 %) had neither that near (50 at 40 units, 218 at 30)
HIT_REACH = 50.0
# A KO begins at a blast zone: on the frame before each of the shared games' 1,260 deaths (DEAD_*), the character was
# within this many units of the left, right, bottom or top one (at most 15.7, 15.1, 6.7 and 5.0 from the nearest:
# a launch crosses a side zone fast; a fall, the bottom one at its top fall speed)
KO_REACH = (16.0, 16.0, 7.0, 5.0)
