"""
Mamba-2 sequence body, in plain PyTorch.

Reference: "Transformers are SSMs: Generalized Models and Efficient Algorithms
Through Structured State Space Duality" (Dao & Gu, 2024), and the `ssd_minimal`
listing from the official repository (state-spaces/mamba).

Two ways to run the same model:
  - forward(x[B, T, D]): chunked SSD scan, parallel over time (training, warm-up).
  - step(x[B, D], state): one frame at a time, O(1) work and memory per frame (play).
Both can start from and return a recurrent state, so a caller can warm up on real
frames with forward() and then continue frame by frame with step().

State layout (one entry per layer, a plain list of tuples so it is easy to clone,
index by batch, or move with tree-maps):
    state[i] = (conv_state [B, conv_dim, d_conv - 1],   # the last d_conv-1 conv inputs, oldest first
                ssm_state  [B, nheads, headdim, d_state])
step() and forward() never modify the state passed in; they return new tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# The fused Triton kernel is optional: a CUDA-only speed-up of the training scan.
try:
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
except Exception:  # ImportError, or a broken CUDA/Triton install
    mamba_chunk_scan_combined = None

# One layer's recurrent state: (conv_state, ssm_state).
LayerState = tuple[Tensor, Tensor]


@dataclass
class Mamba2Config:
    d_model: int
    n_layer: int
    d_state: int = 64      # N: size of the SSM state per head channel
    d_conv: int = 4        # width of the causal depthwise conv
    expand: int = 2        # d_inner = expand * d_model
    headdim: int = 32      # P: channels per head; nheads = d_inner // headdim
    ngroups: int = 1       # B and C are shared by the nheads // ngroups heads of a group
    chunk_size: int = 64   # chunk length of the SSD scan (training path only)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    norm_eps: float = 1e-5
    use_fused_kernel: bool = True  # use mamba_ssm's kernel when importable and on CUDA

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def conv_dim(self) -> int:
        # the conv runs over x, B and C together
        return self.d_inner + 2 * self.ngroups * self.d_state

    def __post_init__(self):
        assert self.d_inner % self.headdim == 0, "expand * d_model must be divisible by headdim"
        assert self.nheads % self.ngroups == 0, "nheads must be divisible by ngroups"
        assert self.d_conv >= 1 and self.chunk_size >= 1


class RMSNorm(nn.Module):
    """RMSNorm, optionally gated (norm(x * silu(z))) and group-wise as in Mamba-2."""

    def __init__(self, dim: int, eps: float = 1e-5, group_size: int | None = None):
        super().__init__()
        self.eps = eps
        self.group_size = group_size or dim
        assert dim % self.group_size == 0
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        dtype = x.dtype
        x = x.float()
        if z is not None:
            # gate before normalising (Mamba-2's norm_before_gate=False)
            x = x * F.silu(z.float())
        shape = x.shape
        x = x.reshape(*shape[:-1], -1, self.group_size)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x.reshape(shape) * self.weight.float()).to(dtype)


def segsum(x: Tensor) -> Tensor:
    """Stable segment sum: out[..., i, j] = sum(x[..., j+1 : i+1]) for j <= i, -inf above.

    exp(segsum(a)) is the 1-semiseparable decay matrix L of the SSD paper. Summing
    masked copies (rather than differencing a cumsum) avoids catastrophic cancellation.
    """
    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)  # [..., T(i), T(j)] holding x[..., i]
    below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=-1)
    x = x.masked_fill(~below, 0)
    x_segsum = torch.cumsum(x, dim=-2)
    on_or_below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=0)
    return x_segsum.masked_fill(~on_or_below, -torch.inf)


def ssd_chunked(X: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int,
                initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The chunked SSD scan (the paper's `ssd_minimal_discrete`), for any length T.

    X: [b, T, h, p]  input already multiplied by dt
    A: [b, T, h]     log-decay per step (A * dt, <= 0)
    B: [b, T, h, n], C: [b, T, h, n]  (already expanded from groups to heads)
    initial_state: [b, h, p, n] or None (zeros)
    Returns Y [b, T, h, p] and the final state [b, h, p, n].
    """
    b, T, h, p = X.shape
    # Pad T up to a multiple of chunk_size. Padded steps have A=0 (no decay) and X=0
    # (no input), so they leave the state untouched and the final state stays exact.
    pad = (-T) % chunk_size
    if pad:
        X = F.pad(X, (0, 0, 0, 0, 0, pad))
        A = F.pad(A, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    nc = X.shape[1] // chunk_size
    X, B, C = (t.reshape(b, nc, chunk_size, *t.shape[2:]) for t in (X, B, C))
    A = A.reshape(b, nc, chunk_size, h).permute(0, 3, 1, 2)  # [b, h, c, l]
    A_cumsum = torch.cumsum(A, dim=-1)

    # 1. Within each chunk: the quadratic, attention-like form (diagonal blocks).
    # Contractions are written pairwise: torch.einsum contracts multi-operand expressions left to right
    # (without opt_einsum), which here materialises [b, c, l, s, h, n]-sized products and runs 5x slower.
    L = torch.exp(segsum(A))  # [b, h, c, l, s]
    scores = torch.einsum("bclhn,bcshn->bchls", C, B) * L.transpose(1, 2)
    Y_diag = torch.einsum("bchls,bcshp->bclhp", scores, X)

    # 2. The state each chunk produces on its own, decayed to the chunk's end.
    decay_states = torch.exp(A_cumsum[..., -1:] - A_cumsum)  # [b, h, c, l]
    states = torch.einsum("bclhn,bclhp->bchpn", B * decay_states.permute(0, 2, 3, 1)[..., None], X)

    # 3. Across chunks: a linear recurrence over chunk boundaries (done as a small
    # c x c matmul), seeded with the initial state.
    if initial_state is None:
        initial_state = torch.zeros_like(states[:, 0])
    states = torch.cat([initial_state[:, None].to(states.dtype), states], dim=1)  # [b, c+1, h, p, n]
    decay_chunk = torch.exp(segsum(F.pad(A_cumsum[..., -1], (1, 0))))  # [b, h, c+1, c+1]
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]

    # 4. State entering each chunk -> outputs inside it (off-diagonal blocks).
    state_decay_out = torch.exp(A_cumsum)  # [b, h, c, l]
    Y_off = torch.einsum("bclhn,bchpn->bclhp", C, states) * state_decay_out.permute(0, 2, 3, 1)[..., None]

    Y = (Y_diag + Y_off).reshape(b, nc * chunk_size, h, p)[:, :T]
    return Y, final_state


class Mamba2Mixer(nn.Module):
    """The Mamba-2 (SSD) mixer: in_proj -> conv -> SSD -> gated RMSNorm -> out_proj."""

    def __init__(self, cfg: Mamba2Config):
        super().__init__()
        self.cfg = cfg
        d_in_proj = 2 * cfg.d_inner + 2 * cfg.ngroups * cfg.d_state + cfg.nheads  # z, xBC, dt
        self.in_proj = nn.Linear(cfg.d_model, d_in_proj, bias=False)
        # Depthwise causal conv; we pad by hand so the left context can come from a state.
        self.conv1d = nn.Conv1d(cfg.conv_dim, cfg.conv_dim, cfg.d_conv, groups=cfg.conv_dim, bias=True)

        # dt bias: softplus(dt_bias) is log-uniform in [dt_min, dt_max] at init.
        dt = torch.exp(torch.rand(cfg.nheads) * (math.log(cfg.dt_max) - math.log(cfg.dt_min))
                       + math.log(cfg.dt_min)).clamp(min=cfg.dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        # A = -exp(A_log), one scalar per head, A in [-16, -1] at init.
        self.A_log = nn.Parameter(torch.log(torch.empty(cfg.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(cfg.nheads))  # skip connection
        # Optimizers should not decay these (mamba_ssm's convention).
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True

        self.norm = RMSNorm(cfg.d_inner, eps=cfg.norm_eps, group_size=cfg.d_inner // cfg.ngroups)
        self.out_proj = nn.Linear(cfg.d_inner, cfg.d_model, bias=False)

    def _split(self, zxbcdt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c = self.cfg
        return torch.split(zxbcdt, [c.d_inner, c.conv_dim, c.nheads], dim=-1)

    def _split_xBC(self, xBC: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c = self.cfg
        gn = c.ngroups * c.d_state
        return torch.split(xBC, [c.d_inner, gn, gn], dim=-1)

    def forward(self, u: Tensor, state: LayerState | None = None) -> tuple[Tensor, LayerState]:
        """u: [b, T, d_model] -> y [b, T, d_model], final (conv_state, ssm_state)."""
        c = self.cfg
        b, T, _ = u.shape
        z, xBC, dt = self._split(self.in_proj(u))

        # Causal conv: left context is the previous d_conv-1 inputs (zeros at the start).
        xBC = xBC.transpose(1, 2)  # [b, conv_dim, T]
        if state is None:
            conv_prev = xBC.new_zeros(b, c.conv_dim, c.d_conv - 1)
            ssm_state = None
        else:
            conv_prev, ssm_state = state
            conv_prev = conv_prev.to(xBC.dtype)
        xBC = torch.cat([conv_prev, xBC], dim=-1)  # [b, conv_dim, d_conv-1+T]
        new_conv_state = xBC[:, :, xBC.shape[-1] - (c.d_conv - 1):]
        xBC = F.silu(self.conv1d(xBC)).transpose(1, 2)  # [b, T, conv_dim]

        x, B, C = self._split_xBC(xBC)
        x = x.reshape(b, T, c.nheads, c.headdim)
        B = B.reshape(b, T, c.ngroups, c.d_state)
        C = C.reshape(b, T, c.ngroups, c.d_state)
        A = -torch.exp(self.A_log.float())
        dt = F.softplus(dt.float() + self.dt_bias.float())  # [b, T, h]

        if mamba_chunk_scan_combined is not None and c.use_fused_kernel and u.is_cuda:
            # Fused Triton kernel (same math; it also adds the D skip).
            y, new_ssm_state = mamba_chunk_scan_combined(
                x, dt, A, B, C, c.chunk_size, D=self.D.float(),
                initial_states=ssm_state, return_final_states=True)
        else:
            y, new_ssm_state = self._ssd_torch(x, dt, A, B, C, ssm_state)

        y = y.reshape(b, T, c.d_inner).to(u.dtype)
        y = self.norm(y, z)
        return self.out_proj(y), (new_conv_state, new_ssm_state)

    def _ssd_torch(self, x, dt, A, B, C, ssm_state):
        c = self.cfg
        # Run the scan in float32 even under autocast: exp(cumsum) is fragile in bf16.
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            rep = c.nheads // c.ngroups
            Bh = B.float().repeat_interleave(rep, dim=2)  # head h uses group h // rep
            Ch = C.float().repeat_interleave(rep, dim=2)
            init = None if ssm_state is None else ssm_state.float()
            y, final = ssd_chunked(xf * dt[..., None], A * dt, Bh, Ch, c.chunk_size, init)
            y = y + xf * self.D.float()[:, None]
        return y, final

    def step(self, u: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        """One frame: u [b, d_model] -> y [b, d_model], new state. Pure recurrence."""
        c = self.cfg
        b = u.shape[0]
        conv_prev, ssm_state = state
        z, xBC, dt = self._split(self.in_proj(u))

        # Conv over the window [previous d_conv-1 inputs, this input].
        window = torch.cat([conv_prev.to(xBC.dtype), xBC[:, :, None]], dim=-1)  # [b, conv_dim, d_conv]
        xBC = (window * self.conv1d.weight[:, 0, :]).sum(-1) + self.conv1d.bias
        xBC = F.silu(xBC)
        new_conv_state = window[:, :, 1:]

        x, B, C = self._split_xBC(xBC)
        sdt = ssm_state.dtype
        x = x.reshape(b, c.nheads, c.headdim).to(sdt)
        rep = c.nheads // c.ngroups
        B = B.reshape(b, c.ngroups, c.d_state).repeat_interleave(rep, dim=1).to(sdt)  # [b, h, n]
        C = C.reshape(b, c.ngroups, c.d_state).repeat_interleave(rep, dim=1).to(sdt)
        A = -torch.exp(self.A_log.to(sdt))
        dt = F.softplus(dt.to(sdt) + self.dt_bias.to(sdt))  # [b, h]

        # h_t = exp(dt A) h_{t-1} + dt x_t B_t^T ;  y_t = h_t C_t + D x_t
        dA = torch.exp(dt * A)[:, :, None, None]
        new_ssm_state = ssm_state * dA + torch.einsum("bh,bhp,bhn->bhpn", dt, x, B)
        y = torch.einsum("bhpn,bhn->bhp", new_ssm_state, C) + self.D.to(sdt)[:, None] * x

        y = y.reshape(b, c.d_inner).to(u.dtype)
        y = self.norm(y, z)
        return self.out_proj(y), (new_conv_state, new_ssm_state)


class Mamba2Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x))."""

    def __init__(self, cfg: Mamba2Config):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer = Mamba2Mixer(cfg)

    def forward(self, x: Tensor, state: LayerState | None = None) -> tuple[Tensor, LayerState]:
        y, state = self.mixer(self.norm(x), state)
        return x + y, state

    def step(self, x: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        y, state = self.mixer.step(self.norm(x), state)
        return x + y, state


class Mamba2(nn.Module):
    """A stack of n_layer Mamba-2 blocks and a final RMSNorm. [B, T, D] -> [B, T, D]."""

    def __init__(self, cfg: Mamba2Config):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList([Mamba2Block(cfg) for _ in range(cfg.n_layer)])
        self.norm_f = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        # Keep the residual stream's variance from growing with depth (as mamba_ssm,
        # GPT-2): scale each block's output projection by 1/sqrt(n_layer).
        with torch.no_grad():
            for layer in self.layers:
                layer.mixer.out_proj.weight.div_(math.sqrt(cfg.n_layer))

    def init_state(self, batch_size: int, device=None, dtype=None) -> list[LayerState]:
        """Zero state: list per layer of (conv_state [B, conv_dim, d_conv-1],
        ssm_state [B, nheads, headdim, d_state])."""
        c = self.cfg
        p = self.layers[0].mixer.in_proj.weight if self.layers else self.norm_f.weight
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        return [(torch.zeros(batch_size, c.conv_dim, c.d_conv - 1, device=device, dtype=dtype),
                 torch.zeros(batch_size, c.nheads, c.headdim, c.d_state, device=device, dtype=dtype))
                for _ in range(c.n_layer)]

    def forward(self, x: Tensor, state: list[LayerState] | None = None, return_state: bool = False):
        """x: [B, T, d_model] -> [B, T, d_model] (and the final state if return_state).

        With `state`, the sequence continues from it, exactly as if the frames that
        produced the state had been prepended to x.
        """
        new_state = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, None if state is None else state[i])
            new_state.append(s)
        x = self.norm_f(x)
        return (x, new_state) if return_state else x

    def step(self, x: Tensor, state: list[LayerState]) -> tuple[Tensor, list[LayerState]]:
        """One frame: x [B, d_model] -> ([B, d_model], new state). Does not modify `state`."""
        new_state = []
        for layer, s in zip(self.layers, state):
            x, s = layer.step(x, s)
            new_state.append(s)
        return self.norm_f(x), new_state
