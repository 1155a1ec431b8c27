"""Mamba2 body: the chunked scan, the recurrence and the state hand-off must agree."""

import pytest
import torch

from meleewm.model.mamba2 import Mamba2, Mamba2Config, segsum, ssd_chunked

TOL = 1e-4

CONFIGS = {
    # T=150 is not a multiple of chunk_size=64: exercises padding of the last chunk.
    "default": dict(d_model=32, n_layer=2, d_state=16, headdim=16, chunk_size=64),
    # several groups, a non-default headdim, a short chunk (many chunks), wider conv.
    "groups": dict(d_model=48, n_layer=2, d_state=8, headdim=12, ngroups=2, chunk_size=16, d_conv=3),
}


def make(name, seed=0):
    torch.manual_seed(seed)
    model = Mamba2(Mamba2Config(**CONFIGS[name])).eval()
    return model


def run_steps(model, x, state):
    ys = []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


def close(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", CONFIGS)
def test_step_matches_chunked_forward(name):
    model = make(name)
    x = torch.randn(2, 150, model.cfg.d_model)
    with torch.no_grad():
        y_full, s_full = model(x, return_state=True)
        y_step, s_step = run_steps(model, x, model.init_state(2))
    assert y_full.shape == x.shape
    assert close(y_full, y_step) < TOL
    for (c1, h1), (c2, h2) in zip(s_full, s_step):
        assert close(c1, c2) < TOL and close(h1, h2) < TOL


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("a", [1, 2, 64, 97])
def test_forward_resumes_from_state(name, a):
    model = make(name)
    x = torch.randn(2, 150, model.cfg.d_model)
    with torch.no_grad():
        y_full = model(x)
        y1, s = model(x[:, :a], return_state=True)
        y2 = model(x[:, a:], s)
    assert close(torch.cat([y1, y2], 1), y_full) < TOL


@pytest.mark.parametrize("name", CONFIGS)
def test_step_continues_from_chunked_state(name):
    """Warm up with the chunked forward, then play frame by frame."""
    model = make(name)
    x = torch.randn(2, 100, model.cfg.d_model)
    a = 70
    with torch.no_grad():
        y_full = model(x)
        _, s = model(x[:, :a], return_state=True)
        s_before = [(c.clone(), h.clone()) for c, h in s]
        y_step, _ = run_steps(model, x[:, a:], s)
    assert close(y_step, y_full[:, a:]) < TOL
    # step() must not have written into the state it was given.
    for (c, h), (c0, h0) in zip(s, s_before):
        assert torch.equal(c, c0) and torch.equal(h, h0)


def test_state_can_be_indexed_by_batch():
    model = make("default")
    x = torch.randn(3, 40, model.cfg.d_model)
    with torch.no_grad():
        y_full = model(x)
        _, s = model(x[:, :30], return_state=True)
        s1 = [(c[1:2], h[1:2]) for c, h in s]
        y1 = model(x[1:2, 30:], s1)
    assert close(y1, y_full[1:2, 30:]) < TOL


@pytest.mark.parametrize("name", CONFIGS)
def test_causal(name):
    model = make(name)
    x = torch.randn(2, 150, model.cfg.d_model)
    for t in (0, 5, 64, 100, 149):
        x2 = x.clone()
        x2[:, t] += 10 * torch.randn(model.cfg.d_model)
        with torch.no_grad():
            y, y2 = model(x), model(x2)
        assert torch.equal(y[:, :t], y2[:, :t])
        assert not torch.allclose(y[:, t], y2[:, t])  # and the input does matter


def test_gradients_flow():
    model = make("groups").train()
    x = torch.randn(2, 50, model.cfg.d_model, requires_grad=True)
    s = model.init_state(2)
    s = [(c.normal_(), h.normal_().requires_grad_()) for c, h in s]
    y, s_out = model(x, s, return_state=True)
    loss = y.pow(2).mean() + sum(h.pow(2).mean() for _, h in s_out)
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert s[0][1].grad is not None and torch.isfinite(s[0][1].grad).all()


def test_ssd_chunked_matches_naive_recurrence():
    """The scan itself, against the textbook recurrence, with an initial state."""
    torch.manual_seed(0)
    b, T, h, p, n = 2, 37, 3, 4, 5
    X, B, C = torch.randn(b, T, h, p), torch.randn(b, T, h, n), torch.randn(b, T, h, n)
    A = -torch.rand(b, T, h)
    s0 = torch.randn(b, h, p, n)
    Y, final = ssd_chunked(X, A, B, C, chunk_size=8, initial_state=s0)
    s, ys = s0, []
    for t in range(T):
        s = s * A[:, t].exp()[..., None, None] + X[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", s, C[:, t]))
    assert close(Y, torch.stack(ys, 1)) < 1e-4
    assert close(final, s) < 1e-4


def test_segsum():
    x = torch.tensor([1.0, 2.0, 3.0])
    out = segsum(x)
    assert out[2, 0] == 5.0 and out[1, 1] == 0.0 and out[2, 1] == 3.0
    assert torch.isinf(out[0, 1]) and out[0, 1] < 0


def test_init():
    model = make("default")
    cfg = model.cfg
    mixer = model.layers[0].mixer
    dt = torch.nn.functional.softplus(mixer.dt_bias)
    assert (dt >= cfg.dt_min * 0.999).all() and (dt <= cfg.dt_max * 1.001).all()
    A = mixer.A_log.exp()
    assert (A >= 1).all() and (A <= 16).all()
    assert torch.equal(mixer.D, torch.ones(cfg.nheads))
    s = model.init_state(4)
    assert len(s) == cfg.n_layer
    assert s[0][0].shape == (4, cfg.conv_dim, cfg.d_conv - 1)
    assert s[0][1].shape == (4, cfg.nheads, cfg.headdim, cfg.d_state)
