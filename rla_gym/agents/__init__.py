"""Bundled agents: PPO, behaviour cloning and a residual actor-critic for any Gymnasium env.

This room imports only gymnasium, torch, :mod:`rla_gym.utils` and :mod:`rla_gym.errors`, so the
agents run unchanged on toy envs, real simulators and the world-model env.
"""

from __future__ import annotations

from rla_gym.agents._math import (
    compute_gae,
    explained_variance,
    group_relative,
    ppo_clip_loss,
    value_loss,
)
from rla_gym.agents.bc import BehaviourCloning, make_residual_policy, train_bc
from rla_gym.agents.config import ActorCriticConfig, BCConfig, PPOConfig
from rla_gym.agents.networks import (
    ActorCritic,
    PatchFeatureExtractor,
    SpaceMismatchError,
    UnsupportedSpaceError,
)
from rla_gym.agents.ppo import PPO, RolloutBuffer, UnsupportedEnvError

__all__ = [
    "PPO",
    "ActorCritic",
    "ActorCriticConfig",
    "BCConfig",
    "BehaviourCloning",
    "PPOConfig",
    "PatchFeatureExtractor",
    "RolloutBuffer",
    "SpaceMismatchError",
    "UnsupportedEnvError",
    "UnsupportedSpaceError",
    "compute_gae",
    "explained_variance",
    "group_relative",
    "make_residual_policy",
    "ppo_clip_loss",
    "train_bc",
    "value_loss",
]
