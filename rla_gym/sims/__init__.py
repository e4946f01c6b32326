"""Real-simulator adapters (LIBERO, robosuite, dm-control), scripted experts and data policies.

Simulator packages are imported only when an adapter is built (``make_sim``), so importing this
room is cheap.
"""

from __future__ import annotations

from rla_gym.sims.base import SimAdapter, SimStep, ensure_headless_gl
from rla_gym.sims.factory import DEFAULT_TASKS, SIMS, make_sim
from rla_gym.sims.policies import POLICY_KINDS, Policy, make_policy

__all__ = [
    "DEFAULT_TASKS",
    "POLICY_KINDS",
    "SIMS",
    "Policy",
    "SimAdapter",
    "SimStep",
    "ensure_headless_gl",
    "make_policy",
    "make_sim",
]
