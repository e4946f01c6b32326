"""Rewards of dreamed frames: feature-space rewards from reference demonstrations
(:mod:`~rla_gym.reward.aligned`) and the learned progress / success head
(:mod:`~rla_gym.reward.progress`), which may also read the robot's body. None reads simulator
state at run time."""

from __future__ import annotations

from rla_gym.reward.aligned import AlignedReward, feature_distance
from rla_gym.reward.progress import ProgressHead, ProgressHeadConfig

__all__ = ["AlignedReward", "ProgressHead", "ProgressHeadConfig", "feature_distance"]
