"""FrameStackMLP: a K-frame window, the same API as the Mamba2 body."""

import pytest
import torch

from meleewm.model.mlp import FrameStackConfig, FrameStackMLP

TOL = 1e-5


def make(K=4, seed=0):
    torch.manual_seed(seed)
    return FrameStackMLP(FrameStackConfig(d_model=8, n_layer=2, context=K, hidden_mult=2)).eval()


@pytest.mark.parametrize("K", [1, 4, 10])
def test_window_is_exactly_K_frames(K):
    model = make(K)
    x = torch.randn(2, 30, 8)
    with torch.no_grad():
        y = model(x)
        for t in (0, 3, 12, 29):
            x2 = x.clone()
            x2[:, t] += 5.0
            y2 = model(x2)
            # outputs before t, and from t+K on, never see frame t
            assert torch.equal(y[:, :t], y2[:, :t])
            assert torch.equal(y[:, t + K:], y2[:, t + K:])
            # outputs t .. t+K-1 do
            for u in range(t, min(t + K, 30)):
                assert not torch.allclose(y[:, u], y2[:, u])


def test_zero_padding_before_start():
    model = make(4)
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        y = model(x)
        y_padded = model(torch.cat([torch.zeros(1, 3, 8), x], 1))[:, 3:]
    assert torch.equal(y, y_padded) or (y - y_padded).abs().max() < TOL


@pytest.mark.parametrize("K", [1, 4])
def test_step_matches_forward(K):
    model = make(K)
    x = torch.randn(2, 20, 8)
    with torch.no_grad():
        y_full, s_full = model(x, return_state=True)
        s, ys = model.init_state(2), []
        for t in range(20):
            y, s = model.step(x[:, t], s)
            ys.append(y)
    assert (torch.stack(ys, 1) - y_full).abs().max() < TOL
    assert torch.equal(s, s_full)


@pytest.mark.parametrize("a", [1, 2, 7])
def test_forward_and_step_resume_from_state(a):
    model = make(4)
    x = torch.randn(2, 20, 8)
    with torch.no_grad():
        y_full = model(x)
        y1, s = model(x[:, :a], return_state=True)
        y2 = model(x[:, a:], s)
        s0 = s.clone()
        ys = []
        for t in range(a, 20):
            y, s = model.step(x[:, t], s)
            ys.append(y)
    assert (torch.cat([y1, y2], 1) - y_full).abs().max() < TOL
    assert (torch.stack(ys, 1) - y_full[:, a:]).abs().max() < TOL
    _, s_again = model(x[:, :a], return_state=True)
    assert torch.equal(s0, s_again)  # step() did not write into the old state


def test_gradients_flow():
    model = make(4).train()
    x = torch.randn(2, 12, 8, requires_grad=True)
    model(x).pow(2).mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert torch.isfinite(x.grad).all()
