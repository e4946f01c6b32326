"""Behaviour cloning of an :class:`ActorCritic`, and the residual wrapper PPO fine-tunes.

The paper's WMRL recipe (§8.2) starts RL from a BC policy: the base is frozen and a zero-initialised
residual head adds at most ``scale`` to each action, so RL starts exactly at the BC behaviour.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from rla_gym.agents.config import BCConfig
from rla_gym.agents.networks import ActorCritic, SpaceMismatchError, as_float_tensor
from rla_gym.utils.device import resolve_device

__all__ = ["BehaviourCloning", "make_residual_policy", "train_bc"]


class BehaviourCloning:
    """Supervised fit of a policy's mean action (or Gaussian likelihood) to demonstrations.

    Args:
        policy: the policy to train in place (its critic is not touched).
        config: hyper-parameters.
        device: where the minibatches are computed; data stays on the host until sampled, so
            large feature datasets ``(M, N, D)`` need not fit on the device.

    Attributes:
        train_losses: mean training loss per epoch.
        val_losses: validation loss per epoch (empty without a validation split).
        best_epoch: epoch whose weights were restored (the last one without validation).
    """

    def __init__(
        self,
        policy: ActorCritic,
        config: BCConfig | None = None,
        device: str | torch.device = "auto",
    ) -> None:
        self.policy = policy
        self.config = config or BCConfig()
        self.device = resolve_device(device)
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self.best_epoch = -1

    def _loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "mse":
            return (self.policy.mean_action(obs) - actions).pow(2).mean()
        return -self.policy.distribution(obs).log_prob(actions).sum(-1).mean()

    def fit(
        self, observations: np.ndarray | torch.Tensor, actions: np.ndarray | torch.Tensor
    ) -> ActorCritic:
        """Train on ``observations (M, *obs_shape)`` and ``actions (M, A)`` (or ``(M, K, A)``
        chunks, flattened); restores the weights of the best validation epoch.

        Returns:
            The trained policy (the same object).

        Raises:
            SpaceMismatchError: shapes do not match the policy.
        """
        cfg, policy = self.config, self.policy
        obs, act = as_float_tensor(observations), as_float_tensor(actions)
        m = obs.shape[0]
        act = act.reshape(act.shape[0], -1)
        if tuple(obs.shape[1:]) != policy.observation_shape or act.shape != (m, policy.action_dim):
            raise SpaceMismatchError(
                f"BC data has observations {tuple(obs.shape)} and actions {tuple(act.shape)}, but "
                f"the policy expects (M, {', '.join(map(str, policy.observation_shape))}) and "
                f"(M, {policy.action_dim})"
            )
        gen = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(m, generator=gen)
        n_val = round(m * cfg.val_fraction) if m > 1 else 0
        val_idx, train_idx = perm[:n_val], perm[n_val:]

        policy.to(self.device)
        params = [
            p for p in policy.actor_parameters() if p is not policy.log_std or cfg.loss == "nll"
        ]
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, max(1, cfg.epochs * steps_per_epoch)
        )
        best, best_state, bad = float("inf"), None, 0
        for epoch in range(cfg.epochs):
            policy.train()
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                loss = self._loss(obs[idx].to(self.device), act[idx].to(self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            self.train_losses.append(total / max(1, len(order)))
            if n_val == 0:
                self.best_epoch = epoch
                continue
            val = self.evaluate(obs[val_idx], act[val_idx])
            self.val_losses.append(val)
            if val < best:
                best, bad, self.best_epoch = val, 0, epoch
                best_state = copy.deepcopy(policy.state_dict())
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        if best_state is not None:
            policy.load_state_dict(best_state)
        policy.eval()
        return policy

    @torch.no_grad()
    def evaluate(self, observations: torch.Tensor, actions: torch.Tensor) -> float:
        """Mean loss of ``observations (M, *obs_shape)``, ``actions (M, A)``, in batches."""
        self.policy.eval()
        total, m = 0.0, observations.shape[0]
        for start in range(0, m, 1024):
            o = observations[start : start + 1024].to(self.device)
            a = actions[start : start + 1024].to(self.device)
            total += float(self._loss(o, a)) * o.shape[0]
        return total / max(1, m)


def train_bc(
    policy: ActorCritic,
    observations: np.ndarray | torch.Tensor,
    actions: np.ndarray | torch.Tensor,
    config: BCConfig | None = None,
    device: str | torch.device = "auto",
) -> ActorCritic:
    """Functional form of :class:`BehaviourCloning`: fit ``policy`` in place and return it.

    Args:
        policy: policy to train.
        observations: ``(M, *obs_shape)``.
        actions: ``(M, A)`` or ``(M, K, A)`` demonstration actions, in the policy's action space.
        config: hyper-parameters.
        device: compute device.
    """
    return BehaviourCloning(policy, config, device).fit(observations, actions)


def make_residual_policy(
    base_policy: ActorCritic, scale: float = 0.1, log_std: float | None = None
) -> ActorCritic:
    """A copy of ``base_policy`` with its extractor and mean head frozen and a residual head added.

    ``mean = base_mean + scale * tanh(residual(features))``; the residual's last layer is zero, so
    the new policy's mean equals the base's exactly until PPO updates it. PPO then trains only the
    residual head, the log-std and the critic.

    Args:
        base_policy: e.g. a BC policy (left unchanged).
        scale: largest change the residual can make to each action component (paper: 0.1).
        log_std: initial log-std of the exploration noise. The default ``log(scale * ln 2)`` matches
            the paper's ``scale * softplus(0)``, so exploration is on the residual's scale rather
            than the base's (often untrained) log-std.

    Returns:
        A new :class:`ActorCritic` in residual mode.
    """
    if base_policy.config.residual:
        raise ValueError("base_policy is already residual; pass its own base instead")
    config = dataclasses.replace(base_policy.config, residual=True, residual_scale=float(scale))
    policy = ActorCritic(
        base_policy.observation_shape,
        base_policy.action_dim,
        config,
        action_low=base_policy.action_low.cpu(),
        action_high=base_policy.action_high.cpu(),
    )
    missing, unexpected = policy.load_state_dict(base_policy.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("residual.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        policy.log_std.fill_(math.log(scale * math.log(2.0)) if log_std is None else log_std)
    return policy.to(base_policy.log_std.device)
