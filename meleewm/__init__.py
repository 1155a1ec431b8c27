"""meleewm: a playable world model of Super Smash Bros. Melee, learned from Slippi replays."""

__version__ = "0.1.0"
