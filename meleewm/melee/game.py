"""Facts of a Melee game: when Slippi's frames start, how fast they run, and constants of its physics."""

FPS = 60                 # frames per second
FIRST_FRAME = -123       # the first frame Slippi records; game time (the timer) starts at frame 0
FULL_SHIELD = 60.0       # a full, untouched shield
# A launch's knockback speed falls by this much each frame, along its own direction, until it is spent (in the air, out
# of hitlag: 97.8 % of such frames with knockback in the shared games, to 0.001 units)
KNOCKBACK_DECAY = 0.051
