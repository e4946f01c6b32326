"""Planar two-link arm kinematics (dm-control reacher), on numpy arrays and torch tensors alike.

The one place the reacher's links and the angles that reach a point are worked out: the scripted
expert aims with :func:`two_link_ik`, and :mod:`rla_gym.data.proprio` turns a goal *place* read
off the scene into the joint-angle errors a policy acts on (a PD loop acts on angle errors; on the
true state, PPO shown them solves 100 of 100 held-out starts, shown the fingertip-to-target
vector 49: ``benchmarks/reacher_policy_input.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["REACHER_LINKS", "two_link_ik", "wrap_angle"]

REACHER_LINKS = (0.12, 0.12)
"""Shoulder-to-wrist and wrist-to-fingertip lengths (m) of dm_control's ``reacher.xml``, the
base at the origin (checked against the simulator in ``tests/test_body_state.py``)."""


def wrap_angle(angle: Any) -> Any:
    """Wrap to ``[-pi, pi)`` (a float, a numpy array or a torch tensor)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _xp(x: Any) -> Any:
    """The array module of ``x``: numpy, or torch for a tensor (imported only then)."""
    if isinstance(x, np.ndarray | float | int):
        return np
    import torch

    return torch


def two_link_ik(target: Any, q: Any, links: tuple[float, float] = REACHER_LINKS) -> Any:
    """Joint angles placing the fingertip at ``target``, of the two elbow branches the one
    nearest the current angles ``q``.

    Args:
        target: ``(..., 2)`` fingertip place (x, y in metres, base at the origin); a place out of
            reach is taken at the nearest reachable radius.
        q: ``(..., 2)`` current shoulder and wrist angles (radians); broadcast with ``target``.
        links: the two link lengths.

    Returns:
        ``(..., 2)`` shoulder and wrist angles; the shoulder is unlimited, so it is given as the
        turn nearest ``q``'s (``result - q`` needs no wrapping there).
    """
    xp = _xp(target)
    l1, l2 = links
    # Broadcast a single place against a batch of arms (and the reverse).
    x, y = target[..., 0] + 0 * q[..., 0], target[..., 1] + 0 * q[..., 1]
    r2 = xp.clip(x * x + y * y, (l1 - l2) ** 2 + 1e-9, (l1 + l2) ** 2 - 1e-9)
    cos_wrist = xp.clip((r2 - l1**2 - l2**2) / (2 * l1 * l2), -1.0, 1.0)
    best = best_cost = None
    for sign in (1.0, -1.0):  # elbow-left / elbow-right
        wrist = sign * xp.arccos(cos_wrist)
        shoulder = xp.arctan2(y, x) - xp.arctan2(l2 * xp.sin(wrist), l1 + l2 * xp.cos(wrist))
        shoulder = q[..., 0] + wrap_angle(shoulder - q[..., 0])
        cand = xp.stack([shoulder, wrist], -1)
        cost = abs(shoulder - q[..., 0]) + abs(wrist - q[..., 1])
        if best is None:
            best, best_cost = cand, cost
        else:  # the first branch wins ties
            take = cost < best_cost
            best = xp.where(take[..., None], cand, best)
    return best
