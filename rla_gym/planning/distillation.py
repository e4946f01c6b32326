"""Distil the planner into a policy that runs at behaviour-cloning cost.

:func:`record_plans` runs the MPC controller in a dreamed env from reset-bank starts and records
``(features, executed chunk)`` pairs; :func:`distill` fits a policy to them with the package's
behaviour cloning (:func:`rla_gym.agents.train_bc`): a residual head on a frozen base (e.g. the
bundle's BC policy, the planner's base in residual mode), or a fresh policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rla_gym.envs.rla_world import RLAWorldEnv
from rla_gym.planning.mpc import MPCController

__all__ = ["distill", "record_plans"]


def record_plans(
    controller: MPCController,
    starts: Sequence[int],
    seed: int = 0,
    env: RLAWorldEnv | None = None,
) -> dict[str, np.ndarray]:
    """Planner rollouts in the dream, one episode per reset-bank start.

    Each episode starts at bank entry ``starts[i]`` with seed ``seed + i`` and runs the env's
    episode horizon; the planner plans from the env's state with the env's demo and time index
    and the env executes the planned chunk with its own flow noise.

    Args:
        controller: the MPC controller (its planner's bundle and reward are used).
        starts: reset-bank indices.
        seed: base seed of the env episodes and the plans.
        env: the dreamed env that executes the chunks (default: one on the planner's bundle,
            with the planner's env options).

    Returns:
        ``features (M, N, D)`` float32, ``chunks (M, K * A)`` float32, ``returns (E,)`` dream
        returns of the ``E`` episodes and ``plan_seconds (M,)``.
    """
    planner = controller.planner
    env = env if env is not None else RLAWorldEnv(config=planner.env_config)
    horizon = planner.episode_horizon
    feats, chunks, returns, secs = [], [], [], []
    for i, start in enumerate(starts):
        obs, info = env.reset(seed=seed + i, options={"start": "init", "index": int(start)})
        controller.reset(seed=seed + i, demo=info["demo"], t=info["t"])
        total = 0.0
        for _ in range(horizon):
            chunk = controller(obs)
            feats.append(obs)
            chunks.append(chunk)
            secs.append(controller.plan_seconds[-1])
            obs, reward, terminated, truncated, _ = env.step(chunk)
            total += float(reward)
            if terminated or truncated:
                break
        returns.append(total)
    return {
        "features": np.stack(feats).astype(np.float32),
        "chunks": np.stack(chunks).astype(np.float32),
        "returns": np.asarray(returns),
        "plan_seconds": np.asarray(secs),
    }


def distill(
    features: np.ndarray,
    chunks: np.ndarray,
    base_policy: Any = None,
    residual_scale: float = 0.1,
    bc_config: Any = None,
    policy_config: Any = None,
    device: str = "cpu",
) -> Any:
    """Fit a policy to planner outputs with behaviour cloning.

    Args:
        features: ``(M, N, D)`` observations (from :func:`record_plans`).
        chunks: ``(M, K * A)`` the planner's chunks.
        base_policy: an :class:`~rla_gym.agents.ActorCritic` to keep frozen under a
            zero-initialised residual head (only the head is fitted); ``None`` fits a fresh
            policy.
        residual_scale: largest change the residual head may make to each action value
            (match the planner's ``residual_scale`` when it planned around this base).
        bc_config: :class:`~rla_gym.agents.BCConfig` (default: its defaults).
        policy_config: :class:`~rla_gym.agents.ActorCriticConfig` of a fresh policy.
        device: where to train.

    Returns:
        The fitted :class:`~rla_gym.agents.ActorCritic` (save it with ``.save(path)``; it
        evaluates with ``rla-gym eval --policy <path>``).
    """
    from rla_gym.agents import ActorCritic, ActorCriticConfig, make_residual_policy, train_bc

    if base_policy is not None:
        policy = make_residual_policy(base_policy, scale=residual_scale)
    else:
        policy = ActorCritic(
            features.shape[1:], int(chunks.shape[1]), policy_config or ActorCriticConfig()
        )
    return train_bc(policy, features, chunks, bc_config, device)
