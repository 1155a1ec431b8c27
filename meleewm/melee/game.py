"""Facts of a Melee game's clock: when Slippi's frames start, and how fast they run."""

FPS = 60                 # frames per second
FIRST_FRAME = -123       # the first frame Slippi records; game time (the timer) starts at frame 0
FULL_SHIELD = 60.0       # a full, untouched shield
