"""Stable-Baselines3 integration: the dreamed batch as an SB3 ``VecEnv``, a patch-feature
extractor for SB3 policies (and one that reads the scene through a bundle's goal readout), and a
callback that trains for a compute budget. Imports SB3 (the ``sb3`` extra) only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rla_gym.sb3.adapter import SB3PatchExtractor, SB3VecEnvAdapter, patch_policy_kwargs
    from rla_gym.sb3.budget import BudgetCallback
    from rla_gym.sb3.goal import SB3GoalExtractor, goal_policy_kwargs
    from rla_gym.sb3.groups import GroupRelativeAdvantages

__all__ = [
    "BudgetCallback",
    "GroupRelativeAdvantages",
    "SB3GoalExtractor",
    "SB3PatchExtractor",
    "SB3VecEnvAdapter",
    "goal_policy_kwargs",
    "patch_policy_kwargs",
]


def __getattr__(name: str) -> Any:
    if name == "BudgetCallback":
        from rla_gym.sb3 import budget

        return budget.BudgetCallback
    if name == "GroupRelativeAdvantages":
        from rla_gym.sb3 import groups

        return groups.GroupRelativeAdvantages
    if name in ("SB3GoalExtractor", "goal_policy_kwargs"):
        from rla_gym.sb3 import goal

        return getattr(goal, name)
    if name in __all__:
        from rla_gym.sb3 import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
