"""Stable-Baselines3 integration: the dreamed batch as an SB3 ``VecEnv`` and a patch-feature
extractor for SB3 policies, and a callback that trains for a compute budget. Imports SB3 (the
``sb3`` extra) only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rla_gym.sb3.adapter import SB3PatchExtractor, SB3VecEnvAdapter, patch_policy_kwargs
    from rla_gym.sb3.budget import BudgetCallback
    from rla_gym.sb3.groups import GroupRelativeAdvantages

__all__ = [
    "BudgetCallback",
    "GroupRelativeAdvantages",
    "SB3PatchExtractor",
    "SB3VecEnvAdapter",
    "patch_policy_kwargs",
]


def __getattr__(name: str) -> Any:
    if name == "BudgetCallback":
        from rla_gym.sb3 import budget

        return budget.BudgetCallback
    if name == "GroupRelativeAdvantages":
        from rla_gym.sb3 import groups

        return groups.GroupRelativeAdvantages
    if name in __all__:
        from rla_gym.sb3 import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
