"""Pure tensor functions behind PPO: GAE, the clipped surrogate, the value loss, explained variance.

They take and return tensors on any device and hold no state, so they are unit-tested against
hand-computed values (``tests/test_agents.py``).
"""

from __future__ import annotations

import torch

__all__ = [
    "compute_gae",
    "explained_variance",
    "group_relative",
    "group_seeds",
    "ppo_clip_loss",
    "value_loss",
]


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor | None,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
    final_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a rollout of ``T`` steps from ``B`` envs.

    Convention. Row ``t`` is the transition ``(s_t, a_t, r_t, s_{t+1})``; ``values[t] = V(s_t)``.
    The value of the *next* state is ``values[t + 1]`` (``last_value`` for ``t = T - 1``), except:

    * ``terminated[t]``: the next state is absorbing, so nothing is bootstrapped
      (``delta = r_t - V(s_t)``).
    * ``truncated[t]``: the episode was cut by a time limit, so the true next state still has
      value; it is bootstrapped from ``final_values[t]`` when given (SAME_STEP autoreset, where
      ``values[t + 1]`` belongs to the *reset* observation), otherwise from ``values[t + 1]``
      (NEXT_STEP autoreset, where row ``t + 1`` holds the episode's final observation).

    In both cases the advantage recursion is cut at ``t`` so no credit leaks across episodes.

    Args:
        rewards: ``(T, B)`` rewards.
        values: ``(T, B)`` value estimates ``V(s_t)``.
        terminated: ``(T, B)`` bool, the episode ended in an absorbing state at ``t``.
        truncated: ``(T, B)`` bool or ``None`` (no truncation), the episode was cut at ``t``.
        last_value: ``(B,)`` value of the observation after the last row.
        gamma: discount factor.
        lam: GAE lambda; ``1`` gives Monte-Carlo returns, ``0`` one-step TD errors.
        final_values: optional ``(T, B)`` values of the true next state, read where truncated.

    Returns:
        ``(advantages, returns)``, both ``(T, B)``; ``returns = advantages + values`` (the
        lambda-returns that the critic regresses to).
    """
    terminated = terminated.bool()
    truncated = torch.zeros_like(terminated) if truncated is None else truncated.bool()
    next_values = torch.cat([values[1:], last_value.reshape(1, -1).to(values)], dim=0)
    if final_values is not None:
        next_values = torch.where(truncated, final_values.to(values), next_values)
    not_terminal = (~terminated).to(values.dtype)
    not_done = (~(terminated | truncated)).to(values.dtype)
    deltas = rewards + gamma * not_terminal * next_values - values
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(last_value, dtype=values.dtype).reshape(-1)
    # The recursion runs over time only; all envs are handled at once.
    for t in range(values.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def group_seeds(seed: int, num_envs: int, group_size: int) -> list[int]:
    """Reset seeds of ``num_envs`` envs in groups of ``group_size``: env ``i`` gets
    ``seed + i // group_size``, so a group's members start alike and draw alike (``G = 1``: the
    usual ``seed + i``)."""
    return [seed + i // group_size for i in range(num_envs)]


def group_relative(advantages: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """Advantages relative to the leave-one-out mean of their group at the same step.

    Envs ``g * G .. g * G + G - 1`` form group ``g``: they start from the same state and draw the
    same environment noise (common random numbers), so whatever their advantages share (the
    start's worth, the noise's luck, the critic's error) is not the action's doing. Subtracting
    the mean of the *other* members keeps the estimate unbiased (it does not depend on the
    member's own action) and leaves the part the action decided. A member whose peers are all
    masked at that step keeps its advantage.

    Args:
        advantages: ``(T, B)`` advantages, ``B`` a multiple of ``group_size``.
        valid: ``(T, B)`` bool, rows that count (masked rows neither give nor get a baseline).
        group_size: ``G`` envs per group; ``1`` returns ``advantages`` unchanged.

    Returns:
        ``(T, B)`` group-relative advantages, zero on masked rows.
    """
    if group_size <= 1:
        return advantages
    t, b = advantages.shape
    if b % group_size:
        raise ValueError(f"{b} envs do not split into groups of {group_size}")
    adv = advantages.reshape(t, b // group_size, group_size)
    mask = valid.reshape(t, b // group_size, group_size).to(adv.dtype)
    total = (adv * mask).sum(-1, keepdim=True)
    peers = mask.sum(-1, keepdim=True) - mask  # valid members besides oneself
    baseline = (total - adv * mask) / peers.clamp(min=1.0)
    out = torch.where(peers > 0, adv - baseline, adv) * mask
    return out.reshape(t, b)


def ppo_clip_loss(
    logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate, as a loss to minimise.

    Args:
        logp_new: ``(M,)`` log-probabilities of the taken actions under the current policy.
        logp_old: ``(M,)`` the same under the policy that collected them.
        advantages: ``(M,)`` advantage estimates (normalised or not).
        clip: the ratio is clipped to ``[1 - clip, 1 + clip]``.

    Returns:
        ``(loss, approx_kl, clip_fraction)``: scalar loss; the ``k3`` estimator
        ``E[(r - 1) - log r]`` of ``KL(old || new)`` (non-negative, low variance); and the share of
        samples whose ratio was clipped. The last two are detached diagnostics.
    """
    log_ratio = logp_new - logp_old
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip).float().mean()
    return loss, approx_kl, clip_fraction


def value_loss(
    values_new: torch.Tensor,
    returns: torch.Tensor,
    values_old: torch.Tensor | None = None,
    clip: float | None = None,
) -> torch.Tensor:
    """Half mean squared error of the critic, optionally clipped around the old values.

    With ``clip``, the loss is ``0.5 * max((v - R)^2, (v_old + clip(v - v_old, ±clip) - R)^2)``,
    so a single update cannot move the value far from the one used to compute the advantages.

    Args:
        values_new: ``(M,)`` current value estimates.
        returns: ``(M,)`` regression targets.
        values_old: ``(M,)`` values at collection time; required with ``clip``.
        clip: clip range in value units, or ``None`` for the plain loss.

    Returns:
        Scalar loss.
    """
    unclipped = (values_new - returns).pow(2)
    if clip is None:
        return 0.5 * unclipped.mean()
    if values_old is None:
        raise ValueError("value_loss with clip needs values_old")
    v_clipped = values_old + (values_new - values_old).clamp(-clip, clip)
    return 0.5 * torch.maximum(unclipped, (v_clipped - returns).pow(2)).mean()


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """``1 - Var[y_true - y_pred] / Var[y_true]``: 1 is perfect, 0 is a constant predictor.

    Returns ``nan`` when ``y_true`` has zero variance (the ratio is undefined).
    """
    var_true = y_true.var(unbiased=False)
    if var_true.item() == 0.0:
        return float("nan")
    return float(1.0 - (y_true - y_pred).var(unbiased=False) / var_true)
