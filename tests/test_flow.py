"""Flow-matching path, loss and solvers against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from rla_gym.flow import (
    euler,
    flow_loss,
    interpolate,
    midpoint,
    noise_like,
    sample,
    sample_time,
    velocity_target,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_path_endpoints_and_target() -> None:
    x_0 = noise_like((4, 3, 2), _gen(0))
    x_1 = noise_like((4, 3, 2), _gen(1))
    torch.testing.assert_close(interpolate(x_0, x_1, 0.0), x_0)
    torch.testing.assert_close(interpolate(x_0, x_1, 1.0), x_1)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x_t = interpolate(x_0, x_1, t)
    torch.testing.assert_close(x_t[1], 0.75 * x_0[1] + 0.25 * x_1[1])
    torch.testing.assert_close(velocity_target(x_0, x_1), x_1 - x_0)
    # The target is the time derivative of the path.
    eps = 1e-3
    fd = (interpolate(x_0, x_1, 0.3 + eps) - interpolate(x_0, x_1, 0.3)) / eps
    torch.testing.assert_close(fd, x_1 - x_0, atol=1e-3, rtol=1e-3)


def test_path_shape_errors() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        interpolate(torch.zeros(2, 3), torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="batch"):
        interpolate(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))


def test_sample_time_logit_normal_and_uniform() -> None:
    t = sample_time(10_000, _gen(3))
    assert t.shape == (10_000,) and t.dtype == torch.float32
    assert bool((t > 0).all() and (t < 1).all())
    assert abs(float(t.mean()) - 0.5) < 0.02  # symmetric around 1/2 for mean 0
    torch.testing.assert_close(t, sample_time(10_000, _gen(3)))
    assert not torch.equal(t, sample_time(10_000, _gen(4)))
    shifted = sample_time(10_000, _gen(3), mean=1.0)
    assert float(shifted.mean()) > 0.6
    u = sample_time(10_000, _gen(5), kind="uniform")
    assert bool((u >= 0).all() and (u < 1).all()) and abs(float(u.mean()) - 0.5) < 0.02
    with pytest.raises(ValueError, match="unknown time distribution"):
        sample_time(4, _gen(), kind="beta")  # type: ignore[arg-type]


def test_noise_like_reproducible() -> None:
    a = noise_like((3, 5), _gen(7))
    torch.testing.assert_close(a, noise_like((3, 5), _gen(7)))
    assert a.shape == (3, 5)


def test_flow_loss_weights() -> None:
    v = torch.tensor([[1.0, -2.0]])
    zero = torch.zeros_like(v)
    assert math.isclose(float(flow_loss(v, zero)), 1.5 + 2.5)
    assert math.isclose(float(flow_loss(v, zero, l1_weight=0.0)), 2.5)
    assert math.isclose(float(flow_loss(v, zero, mse_weight=0.0)), 1.5)


def test_solvers_exact_on_polynomial_time_field() -> None:
    # A field linear in t is integrated exactly by the midpoint rule: dx/dt = 2t => x(1) = x(0) + 1.
    x_0 = torch.randn(5, 2, generator=_gen(1))
    lin = midpoint(lambda x, t: 2 * t[:, None].expand_as(x), x_0, steps=3)
    torch.testing.assert_close(lin, x_0 + 1.0)
    # Euler on v = 3 t^2 with h = 1/n: sum 3 (i h)^2 h = (n-1)(2n-1) / (2 n^2); compare exactly.
    n = 10
    eu = euler(lambda x, t: 3 * t[:, None].expand_as(x) ** 2, x_0, steps=n)
    torch.testing.assert_close(eu, x_0 + (n - 1) * (2 * n - 1) / (2 * n**2))
    # Midpoint on v = 3 t^2: sum 3 ((i + 1/2) h)^2 h = 1 - 1/(4 n^2).
    mp = midpoint(lambda x, t: 3 * t[:, None].expand_as(x) ** 2, x_0, steps=n)
    torch.testing.assert_close(mp, x_0 + 1 - 1 / (4 * n**2))
    # A constant velocity is exact for both.
    torch.testing.assert_close(sample(lambda x, t: torch.ones_like(x), x_0, 1), x_0 + 1)


def test_solver_orders_on_linear_decay() -> None:
    x_0 = torch.ones(1, 1)
    exact = math.exp(-1.0)

    def err(method: str, steps: int) -> float:
        return abs(float(sample(lambda x, t: -x, x_0, steps, method)) - exact)  # type: ignore[arg-type]

    # Euler: (1 - h)^n; first order.
    assert math.isclose(float(sample(lambda x, t: -x, x_0, 4, "euler")), 0.75**4, rel_tol=1e-6)
    e_ratio = err("euler", 20) / err("euler", 40)
    m_ratio = err("midpoint", 20) / err("midpoint", 40)
    assert 1.8 < e_ratio < 2.2  # O(h)
    assert 3.6 < m_ratio < 4.4  # O(h^2)
    assert err("midpoint", 10) < err("euler", 10) / 10


def test_solver_bad_arguments() -> None:
    with pytest.raises(ValueError, match="steps"):
        euler(lambda x, t: x, torch.zeros(1, 1), 0)
    with pytest.raises(ValueError, match="unknown solver"):
        sample(lambda x, t: x, torch.zeros(1, 1), 2, "rk4")  # type: ignore[arg-type]
