"""Stable-Baselines3 glue: the batched dream env as a ``VecEnv`` and a patch-feature extractor.

SB3's ``VecEnv`` expects *same-step* autoreset: when env ``i`` ends, ``step`` already returns
the first observation of its next episode, with the last observation of the finished one in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` set. This adapter
wraps a :class:`~rla_gym.envs.vector.RLAWorldVectorEnv` (composition: the two ``step``/``reset``
contracts are incompatible, so one class cannot honour both) and uses its internal
advance/reset-subset primitives directly.

SB3's default ``MlpPolicy`` flattens ``(N, D)`` patch features, e.g. 64 x 512 = 32,768 inputs per
layer; :class:`SB3PatchExtractor` pools them first with the bundled agents' patch pooler, and
:func:`patch_policy_kwargs` builds the ``policy_kwargs`` that select it. A dreamed env that
shows the robot's body (``obs_mode="features+proprio"``) gives a ``Dict`` observation: train on
it with ``MultiInputPolicy`` and the same ``policy_kwargs``; the extractor pools the features
and appends the body vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from rla_gym.agents._math import group_seeds
from rla_gym.envs.body import FEATURES, PROPRIO, space_reads_body
from rla_gym.envs.vector import RLAWorldVectorEnv

__all__ = ["SB3PatchExtractor", "SB3VecEnvAdapter", "patch_policy_kwargs"]


class SB3PatchExtractor(BaseFeaturesExtractor):
    """SB3 features extractor that pools ``(N, D)`` patch features into ``features_dim`` numbers.

    It wraps :class:`rla_gym.agents.PatchFeatureExtractor` (the bundled PPO's pooler), so SB3
    and bundled agents see observations through the same architecture: a LayerNorm and a
    ``D -> token_dim`` projection per token, then two 3x3 convolutions over the square token grid
    (``extractor="conv"``) or learned-query attention (``"attention"``), then a linear layer.
    For 64 x 512 features with the defaults this is about 0.4 M parameters instead of the
    8.4 M of a 256-wide first layer over the flattened features.

    Args:
        observation_space: ``Box`` of shape ``(N, D)`` (or ``(D,)``, pooled by an MLP), or the
            ``Dict(features=(N, D), proprio=(P,))`` of an env that shows the robot's body.
        features_dim: size of the pooled features; the vector handed to SB3's policy and value
            heads has ``features_dim + P`` numbers (the body vector appended as it is: its
            entries are positions, rotations and velocities of order one).
        extractor: ``auto`` (``conv`` when ``N`` is a square, else ``attention``), ``conv``,
            ``attention`` or ``mlp``.
        token_dim: width each token is projected to.
        num_queries: learned queries of the attention pooler.
        num_heads: attention heads (must divide ``token_dim``).

    Shapes:
        ``forward``: ``(B, N, D) -> (B, features_dim)``; ``{"features": (B, N, D), "proprio":
        (B, P)} -> (B, features_dim + P)``.

    Raises:
        ValueError: a ``Dict`` space other than ``{"features", "proprio"}``.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box | gym.spaces.Dict,
        features_dim: int = 256,
        extractor: str = "auto",
        token_dim: int = 64,
        num_queries: int = 4,
        num_heads: int = 4,
    ) -> None:
        # Imported here: this glue module is the one place where the env room meets the agents'
        # network code, and only when SB3 builds a policy.
        from rla_gym.agents.config import ActorCriticConfig
        from rla_gym.agents.networks import PatchFeatureExtractor

        patch, body_dim = observation_space, 0
        if space_reads_body(observation_space, "SB3PatchExtractor"):
            patch = observation_space[FEATURES]
            body_dim = int(observation_space[PROPRIO].shape[0])
        super().__init__(observation_space, features_dim + body_dim)
        self.body_dim = body_dim
        config = ActorCriticConfig(
            extractor=extractor,  # type: ignore[arg-type]
            token_dim=token_dim,
            feature_dim=features_dim,
            num_queries=num_queries,
            num_heads=num_heads,
        )
        self.pool = PatchFeatureExtractor(patch.shape, config)

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, N, D) -> (B, features_dim)``, or a ``{"features", "proprio"}`` dict ->
        ``(B, features_dim + P)``."""
        if isinstance(observations, dict):
            pooled = self.pool(observations[FEATURES])
            return torch.cat([pooled, observations[PROPRIO].to(pooled.dtype)], dim=-1)
        return self.pool(observations)


def patch_policy_kwargs(
    features_dim: int = 256,
    token_dim: int = 64,
    extractor: str = "auto",
    net_arch: Sequence[int] = (256, 256),
    **extra: Any,
) -> dict[str, Any]:
    """``policy_kwargs`` for SB3 PPO / SAC / TD3 that pool patch features with
    :class:`SB3PatchExtractor` before the ``net_arch`` MLP heads.

    Args:
        features_dim: pooled vector size.
        token_dim: per-token projection width.
        extractor: pooler kind (see :class:`SB3PatchExtractor`).
        net_arch: hidden widths of the policy and value (or Q) heads.
        **extra: further policy arguments (e.g. ``log_std_init=-0.5`` for PPO).

    Example:
        >>> from stable_baselines3 import PPO  # doctest: +SKIP
        >>> kwargs = patch_policy_kwargs(features_dim=128, log_std_init=-0.5)
        >>> PPO("MlpPolicy", env, policy_kwargs=kwargs)  # doctest: +SKIP
        >>> PPO("MultiInputPolicy", body_env, policy_kwargs=kwargs)  # doctest: +SKIP
    """
    return {
        "features_extractor_class": SB3PatchExtractor,
        "features_extractor_kwargs": {
            "features_dim": features_dim, "token_dim": token_dim, "extractor": extractor,
        },
        "net_arch": list(net_arch),
        **extra,
    }  # fmt: skip


class SB3VecEnvAdapter(VecEnv):
    """An SB3 ``VecEnv`` over ``num_envs`` dreamed episodes.

    Args:
        venv: an existing batched env; if ``None`` one is built from ``**kwargs``.
        group_size: ``seed(s)`` seeds env ``i`` with ``s + i // group_size``, so groups of
            ``group_size`` envs share their starts and flow noise (use with
            :class:`~rla_gym.sb3.groups.GroupRelativeAdvantages`); 1 gives SB3's ``s + i``.
        **kwargs: ``RLAWorldVectorEnv`` arguments (``num_envs``, ``artifacts``, ...).

    Example:
        >>> from stable_baselines3 import PPO  # doctest: +SKIP
        >>> env = SB3VecEnvAdapter(num_envs=16, artifacts="bundle")  # doctest: +SKIP
        >>> PPO("MlpPolicy", env).learn(10_000)  # doctest: +SKIP
    """

    def __init__(
        self, venv: RLAWorldVectorEnv | None = None, group_size: int = 1, **kwargs: Any
    ) -> None:
        self.venv = venv if venv is not None else RLAWorldVectorEnv(**kwargs)
        if group_size < 1 or self.venv.num_envs % group_size:
            raise ValueError(
                f"group_size {group_size} must be >= 1 and divide num_envs {self.venv.num_envs}"
            )
        self.group_size = int(group_size)
        self.render_mode = self.venv.render_mode
        self._actions: np.ndarray | None = None
        super().__init__(
            self.venv.num_envs, self.venv.single_observation_space, self.venv.single_action_space
        )

    def _obs(self) -> VecEnvObs:
        return self.venv.observe()

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """SB3's seeding (applied at the next ``reset``), shared within groups of envs."""
        if seed is None:  # as SB3 does: one random seed, so the envs still differ
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._seeds = group_seeds(int(seed), self.num_envs, self.group_size)
        return self._seeds

    def reset(self) -> VecEnvObs:
        """Reset all envs with the seeds/options set by ``seed()`` / ``set_options()``."""
        options = self._options[0] if self._options else {}
        starts = self.venv.reset_envs(np.arange(self.num_envs), list(self._seeds), options)
        self.reset_infos = [
            {"demo": s.demo, "t": s.t, "init_state_id": s.init_state_id} for s in starts
        ]
        self._reset_seeds()
        self._reset_options()
        return self._obs()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32).reshape(self.venv.action_space.shape)

    def step_wait(self) -> VecEnvStepReturn:
        """One batched dream step, then same-step reset of the envs that ended."""
        assert self._actions is not None, "step_async must be called first"
        reward, truncated, terms = self.venv.advance(self._actions)
        obs = self._obs()
        infos: list[dict[str, Any]] = [
            {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in terms.items()}
            for i in range(self.num_envs)
        ]
        done_idx = np.flatnonzero(truncated)
        if len(done_idx):
            for i in done_idx:
                infos[i]["TimeLimit.truncated"] = True
                infos[i]["terminal_observation"] = (
                    {k: v[i].copy() for k, v in obs.items()}
                    if isinstance(obs, dict)
                    else obs[i].copy()
                )
            self.venv.reset_envs(done_idx)
            obs = self._obs()
        return obs, reward.astype(np.float32), truncated.copy(), infos

    def close(self) -> None:
        self.venv.close()

    # The batch is one object: an attribute or method of "env i" is the batch's own. SB3's
    # contract (one value per index, a call per env) is kept where that is meaningful and refused
    # where it would silently do something else.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The batch's attribute, once per requested index."""
        return [getattr(self.venv, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set a batch attribute; only for all envs at once (they share it).

        Raises:
            ValueError: ``indices`` selects a strict subset of the envs.
        """
        self._require_all(indices, f"set_attr({attr_name!r})")
        setattr(self.venv, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call a batch method once and return its result for every requested index.

        Raises:
            ValueError: ``indices`` selects a strict subset of the envs (a shared method would
                act on all of them).
        """
        idx = self._require_all(indices, f"env_method({method_name!r})")
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in idx]

    def _require_all(self, indices: VecEnvIndices, what: str) -> list[int]:
        idx = list(self._get_indices(indices))
        if sorted(idx) != list(range(self.num_envs)):
            raise ValueError(
                f"{what} for envs {idx}: the {self.num_envs} dreamed envs share one batched "
                "object, so attributes and methods apply to all of them; pass indices=None"
            )
        return idx

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.venv.core.render(self.venv.state_features))

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)
