"""Rewards computed in feature space from reference demonstrations (no simulator state)."""

from __future__ import annotations

from rla_gym.reward.aligned import AlignedReward, feature_distance

__all__ = ["AlignedReward", "feature_distance"]
