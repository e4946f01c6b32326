"""Stable-Baselines3 integration: the dreamed batch as an SB3 ``VecEnv`` and a patch-feature
extractor for SB3 policies. Imports SB3 (the ``sb3`` extra) only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rla_gym.sb3.adapter import SB3PatchExtractor, SB3VecEnvAdapter, patch_policy_kwargs

__all__ = ["SB3PatchExtractor", "SB3VecEnvAdapter", "patch_policy_kwargs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rla_gym.sb3 import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
