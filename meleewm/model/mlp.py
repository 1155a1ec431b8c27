"""
Frame-stack MLP: the reference baseline body.

The output at frame t is an MLP of the last K input frames (t-K+1 .. t) concatenated,
with zeros before the start of the sequence. Same API as Mamba2 so the world model
can swap bodies:
    forward(x[B, T, D], state=None, return_state=False)
    init_state(batch_size, device, dtype)
    step(x[B, D], state) -> (y[B, D], new_state)

State: one tensor [B, K-1, d_model], the previous K-1 input frames, oldest first
(a shift register; step() returns a new tensor, it never writes into the old one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from meleewm.model.mamba2 import RMSNorm


@dataclass
class FrameStackConfig:
    d_model: int
    n_layer: int = 2        # number of hidden layers
    context: int = 10       # K: frames seen per output
    hidden_mult: int = 4    # hidden width = hidden_mult * d_model
    dropout: float = 0.0
    norm_eps: float = 1e-5

    def __post_init__(self):
        assert self.context >= 1 and self.n_layer >= 1


class FrameStackMLP(nn.Module):
    def __init__(self, cfg: FrameStackConfig):
        super().__init__()
        self.cfg = cfg
        K, d, h = cfg.context, cfg.d_model, cfg.hidden_mult * cfg.d_model
        layers: list[nn.Module] = []
        for i in range(cfg.n_layer):
            layers += [nn.Linear(K * d if i == 0 else h, h), nn.GELU(), nn.Dropout(cfg.dropout)]
        layers.append(nn.Linear(h, d))
        self.mlp = nn.Sequential(*layers)
        # Final norm, like Mamba2's norm_f, so the heads see features on the same scale
        # whichever body is used.
        self.norm_f = RMSNorm(d, eps=cfg.norm_eps)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        """The previous K-1 frames, all zeros: [B, K-1, d_model]."""
        p = self.norm_f.weight
        return torch.zeros(batch_size, self.cfg.context - 1, self.cfg.d_model,
                           device=p.device if device is None else device,
                           dtype=p.dtype if dtype is None else dtype)

    def forward(self, x: Tensor, state: Tensor | None = None, return_state: bool = False):
        """x: [B, T, d_model] -> [B, T, d_model] (and the last K-1 frames if return_state)."""
        B, T, d = x.shape
        K = self.cfg.context
        prev = self.init_state(B, x.device, x.dtype) if state is None else state.to(x.dtype)
        xp = torch.cat([prev, x], dim=1)                  # [B, K-1+T, d]
        windows = xp.unfold(1, K, 1)                      # [B, T, d, K]: frames t-K+1..t
        windows = windows.transpose(2, 3).reshape(B, T, K * d)  # oldest frame first
        y = self.norm_f(self.mlp(windows))
        if return_state:
            return y, xp[:, xp.shape[1] - (K - 1):]
        return y

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame: x [B, d_model] -> ([B, d_model], new state)."""
        window = torch.cat([state.to(x.dtype), x[:, None]], dim=1)  # [B, K, d]
        y = self.norm_f(self.mlp(window.reshape(x.shape[0], -1)))
        return y, window[:, 1:]
