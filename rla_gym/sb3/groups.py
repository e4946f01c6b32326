"""Group-relative advantages for Stable-Baselines3's on-policy algorithms in the dream.

The bundled PPO's ``PPOConfig.group_size`` (see :func:`rla_gym.agents.group_relative`) for SB3:
build the adapter with ``SB3VecEnvAdapter(group_size=G, ...)`` so that ``seed(s)`` gives env
``i`` the seed ``s + i // G`` (a group shares its start and the dream's flow noise), and pass
:class:`GroupRelativeAdvantages` to ``learn``: after each rollout it replaces SB3's advantages
by their difference from the other group members' at the same step. The critic's returns are
left as SB3 computed them.

Example:
    >>> env = SB3VecEnvAdapter(num_envs=32, group_size=8)  # doctest: +SKIP
    >>> model = PPO("MlpPolicy", env, seed=0)  # doctest: +SKIP
    >>> model.learn(10_000, callback=GroupRelativeAdvantages(8))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rla_gym.agents._math import group_relative

__all__ = ["GroupRelativeAdvantages"]


class GroupRelativeAdvantages(BaseCallback):
    """Make an on-policy algorithm's advantages relative to their group (see the module).

    Args:
        group_size: envs per group ``G``; must divide the env count.
    """

    def __init__(self, group_size: int) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        if n % self.group_size:
            raise ValueError(f"group_size {self.group_size} does not divide num_envs {n}")
        env_group = getattr(self.training_env, "group_size", None)
        if env_group is not None and env_group != self.group_size:
            raise ValueError(
                f"the env seeds groups of {env_group} but the callback takes groups of "
                f"{self.group_size}; pass the same group_size to both"
            )

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        adv = torch.as_tensor(buf.advantages)  # (n_steps, n_envs)
        valid = torch.ones_like(adv, dtype=torch.bool)  # SB3 resets within the step
        buf.advantages = group_relative(adv, valid, self.group_size).numpy().astype(np.float32)
