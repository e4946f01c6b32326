"""Flow matching without networks: the probability path, its loss and ODE solvers.

Convention (the paper's, mirrored from the official code): ``x_0`` is Gaussian noise at ``t = 0``
and ``x_1`` is data at ``t = 1``; samples are produced by integrating ``dx/dt = v(x, t)`` from
``t = 0`` to ``t = 1``.
"""

from __future__ import annotations

from rla_gym.flow.loss import flow_loss
from rla_gym.flow.path import (
    interpolate,
    noise_for_rows,
    noise_like,
    sample_time,
    velocity_target,
)
from rla_gym.flow.solver import euler, guided, midpoint, sample

__all__ = [
    "euler",
    "flow_loss",
    "guided",
    "interpolate",
    "midpoint",
    "noise_for_rows",
    "noise_like",
    "sample",
    "sample_time",
    "velocity_target",
]
