"""Planning in the dream: CEM / MPPI over action chunks, MPC control and distillation.

This room imports :mod:`rla_gym.envs` (the dream's model and reward, through
:class:`~rla_gym.envs.rla_world.DreamCore`) and :mod:`rla_gym.agents` (base and distilled
policies); it imports no simulator. Importing the package is light (the config only); the rest
loads, with torch, on first use.

==========================  ===============================================================
:class:`PlannerConfig`      options (samples, iterations, horizon, elite fraction, ...)
:func:`search_chunks`       the CEM / MPPI search alone, over any ``rollout`` that scores
:class:`DreamPlanner`       one plan from given features, demo and time index
:class:`MPCController`      plan every decision, execute the first chunk, warm-start by shifting
:class:`PlannerPolicy`      picklable factory of a controller (``rla-gym eval --policy plan``)
:func:`record_plans`        planner rollouts in the dream -> (features, chunk) pairs
:func:`distill`             behaviour cloning on those pairs (a policy at BC cost)
==========================  ===============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rla_gym.planning.config import PlannerConfig, PlannerMode

if TYPE_CHECKING:
    from rla_gym.planning.distillation import distill, record_plans
    from rla_gym.planning.mpc import MPCController, PlannerPolicy
    from rla_gym.planning.planner import DreamPlanner, Plan
    from rla_gym.planning.search import search_chunks

__all__ = [
    "DreamPlanner",
    "MPCController",
    "Plan",
    "PlannerConfig",
    "PlannerMode",
    "PlannerPolicy",
    "distill",
    "record_plans",
    "search_chunks",
]

_LAZY = {
    "DreamPlanner": "rla_gym.planning.planner",
    "Plan": "rla_gym.planning.planner",
    "MPCController": "rla_gym.planning.mpc",
    "PlannerPolicy": "rla_gym.planning.mpc",
    "distill": "rla_gym.planning.distillation",
    "record_plans": "rla_gym.planning.distillation",
    "search_chunks": "rla_gym.planning.search",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
