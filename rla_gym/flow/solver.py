"""Fixed-step ODE solvers for ``dx/dt = v(x, t)`` from ``t = 0`` (noise) to ``t = 1`` (data).

The velocity function receives ``x`` of shape ``(B, ...)`` and ``t`` of shape ``(B,)`` (the same
time for every row), so networks that embed a per-sample time work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

__all__ = ["VelocityFn", "euler", "guided", "midpoint", "sample"]

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``v(x, t)``: ``x (B, ...)``, ``t (B,)`` -> velocity ``(B, ...)``."""

Method = Literal["euler", "midpoint"]


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def _time(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def euler(velocity_fn: VelocityFn, x_0: torch.Tensor, steps: int) -> torch.Tensor:
    """Explicit Euler: ``x <- x + h v(x, t)``, ``h = 1 / steps`` (first order, ``steps`` NFEs).

    Args:
        velocity_fn: ``v(x, t)``.
        x_0: initial state (noise) ``(B, ...)``.
        steps: number of equal steps.

    Returns:
        ``x_1`` with the shape of ``x_0``.
    """
    _check_steps(steps)
    h = 1.0 / steps
    x = x_0
    for i in range(steps):
        x = x + h * velocity_fn(x, _time(x, i * h))
    return x


def midpoint(velocity_fn: VelocityFn, x_0: torch.Tensor, steps: int) -> torch.Tensor:
    """Explicit midpoint (RK2): second order in ``h``, two NFEs per step.

    Args:
        velocity_fn: ``v(x, t)``.
        x_0: initial state (noise) ``(B, ...)``.
        steps: number of equal steps.

    Returns:
        ``x_1`` with the shape of ``x_0``.
    """
    _check_steps(steps)
    h = 1.0 / steps
    x = x_0
    for i in range(steps):
        t = i * h
        x_mid = x + 0.5 * h * velocity_fn(x, _time(x, t))
        x = x + h * velocity_fn(x_mid, _time(x, t + 0.5 * h))
    return x


_SOLVERS: dict[str, Callable[[VelocityFn, torch.Tensor, int], torch.Tensor]] = {
    "euler": euler,
    "midpoint": midpoint,
}


def sample(
    velocity_fn: VelocityFn, x_0: torch.Tensor, steps: int, method: Method = "euler"
) -> torch.Tensor:
    """Integrate the flow from noise ``x_0`` at ``t = 0`` to a sample at ``t = 1``.

    Args:
        velocity_fn: ``v(x, t)``.
        x_0: noise ``(B, ...)`` (draw it with :func:`rla_gym.flow.noise_like`).
        steps: number of solver steps.
        method: ``"euler"`` or ``"midpoint"``.

    Returns:
        Sample with the shape of ``x_0``.
    """
    try:
        solver = _SOLVERS[method]
    except KeyError:
        raise ValueError(f"unknown solver {method!r}; use one of {sorted(_SOLVERS)}") from None
    return solver(velocity_fn, x_0, steps)


def guided(paired_fn: VelocityFn, weight: float) -> VelocityFn:
    """Classifier-free guidance: ``v = v_free + weight * (v_cond - v_free)``.

    Args:
        paired_fn: ``v(x2, t2)`` on the batch doubled along dim 0: rows ``[:B]`` are evaluated
            with the condition, rows ``[B:]`` without it (one network call for both).
        weight: guidance weight (``1``: conditional; ``0``: unconditional; ``> 1`` amplifies what
            the condition changes).

    Returns:
        ``v(x, t)`` on the original batch, for :func:`sample`.
    """

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_cond, v_free = paired_fn(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        return v_free + weight * (v_cond - v_free)

    return velocity
