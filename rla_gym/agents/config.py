"""Frozen configs of the bundled agents: network shape, PPO and behaviour cloning.

Every field carries an attribute docstring, which is what ``tyro --help`` prints. Configs are never
mutated; derive a variant with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ActorCriticConfig", "BCConfig", "PPOConfig"]


@dataclass(frozen=True, kw_only=True)
class ActorCriticConfig:
    """Architecture of :class:`~rla_gym.agents.networks.ActorCritic`."""

    extractor: Literal["auto", "conv", "attention", "mlp"] = "auto"
    """How to pool observations to a vector. ``auto``: ``mlp`` for flat obs, ``conv`` for ``(N, D)``
    patch features whose N is a square, ``attention`` otherwise."""
    token_dim: int = 64
    """Width ``c`` that each ``D``-dim patch token is projected to."""
    feature_dim: int = 256
    """Size of the pooled feature vector."""
    num_queries: int = 4
    """Learned queries of the attention pooler."""
    num_heads: int = 4
    """Attention heads of the attention pooler (must divide ``token_dim``)."""
    mlp_hidden: tuple[int, ...] = (256,)
    """Hidden widths of the flat-observation extractor."""
    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the mean-action head."""
    critic_hidden: tuple[int, ...] = (256, 128)
    """Hidden widths of the value head (paper: 256, 128)."""
    share_extractor: bool = False
    """Actor and critic share one extractor. The critic then reads *detached* features (as in the
    paper), so only the policy loss shapes them; otherwise the critic owns a second extractor."""
    log_std_init: float = -0.5
    """Initial log standard deviation of the state-independent Gaussian."""
    residual: bool = False
    """Residual mode: a frozen base (extractor + actor) plus a zero-initialised residual head.
    Set by :func:`~rla_gym.agents.bc.make_residual_policy`; stored so loading rebuilds it."""
    residual_hidden: tuple[int, ...] = (512, 256)
    """Hidden widths of the residual head (paper: 512, 256)."""
    residual_scale: float = 0.1
    """Mean = base mean + ``residual_scale * tanh(residual(features))``."""
    body_dim: int = 0
    """``P``: the policy also reads the robot's body vector (:mod:`rla_gym.data.proprio`),
    standardised with statistics stored in the policy and joined to the pooled features; its
    observations are then ``{"features": (N, D), "proprio": (P,)}``. 0: features only."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActorCriticConfig:
        """Rebuild from :func:`dataclasses.asdict` output (JSON turns tuples into lists)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class PPOConfig:
    """Hyper-parameters of :class:`~rla_gym.agents.ppo.PPO`. Defaults are CleanRL-like; use
    :meth:`wmrl` for the paper's §8.2 settings."""

    n_steps: int = 128
    """Steps collected per env per iteration; the batch is ``n_steps * num_envs`` transitions."""
    n_epochs: int = 4
    """Passes over the batch per iteration."""
    minibatch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 3e-4
    """Adam(W) learning rate of the actor (and of the critic unless ``critic_learning_rate``)."""
    critic_learning_rate: float | None = None
    """Separate critic learning rate (paper: 1e-4); ``None`` uses ``learning_rate``."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    anneal_lr: bool = False
    """Decay learning rates linearly to zero over ``total_timesteps`` of a ``learn`` call."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO ratio clip."""
    clip_range_vf: float | None = None
    """Value clip in value units; ``None`` disables it."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch (paper)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop the iteration's updates once the approximate KL exceeds this; ``None`` never stops."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before GAE (paper: 5). Logged returns are unscaled."""
    group_size: int = 1
    """Envs per group of common random numbers: env ``i`` is reset with seed ``seed + i // G``,
    so a group's members start from the same state and (in a dreamed env, whose flow noise is
    seeded by the reset) draw the same noise, and each advantage is taken relative to the other
    members' at the same step (:func:`~rla_gym.agents._math.group_relative`). ``num_envs`` must
    be a multiple; ``1`` is plain PPO. In the dream the action's effect on the return is far
    smaller than the spread across starts and flow samples, and a critic does not resolve it
    (explained variance ~0 on LIBERO); a group isolates it."""
    seed: int = 0
    """Seed of torch sampling and of the first env reset."""
    policy: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    """Network used when ``PPO`` builds its own policy."""

    @classmethod
    def wmrl(cls, **overrides: Any) -> PPOConfig:
        """The paper's WMRL settings (§8.2): γ 0.9, λ 0.95, clip 0.2, target-KL 0.1, lr 1e-4,
        4 epochs, grad clip 0.5, reward scale 5, no entropy bonus."""
        base: dict[str, Any] = dict(
            gamma=0.9, gae_lambda=0.95, clip_range=0.2, target_kl=0.1, learning_rate=1e-4,
            critic_learning_rate=1e-4, weight_decay=0.01, n_epochs=4, n_steps=4,
            minibatch_size=224, max_grad_norm=0.5, reward_scale=5.0, ent_coef=0.0, vf_coef=0.5,
        )  # fmt: skip
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        """Rebuild from :func:`dataclasses.asdict` output."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if isinstance(kwargs.get("policy"), dict):
            kwargs["policy"] = ActorCriticConfig.from_dict(kwargs["policy"])
        return cls(**kwargs)


@dataclass(frozen=True, kw_only=True)
class BCConfig:
    """Behaviour-cloning hyper-parameters for :func:`~rla_gym.agents.bc.train_bc`."""

    epochs: int = 40
    """Maximum passes over the training split (paper: 40)."""
    batch_size: int = 32
    """Samples per gradient step (paper: 32)."""
    learning_rate: float = 3e-4
    """AdamW learning rate (paper: 3e-4), cosine-decayed over ``epochs``."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    loss: Literal["mse", "nll"] = "mse"
    """``mse`` on the mean action, or Gaussian ``nll`` (also fits the log-std)."""
    val_fraction: float = 0.1
    """Share of samples held out for validation and early stopping (0 disables both)."""
    patience: int = 5
    """Stop after this many epochs without a better validation loss."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    seed: int = 0
    """Seed of the split and the minibatch order."""
    steps: int | None = None
    """Total optimizer steps, overriding ``epochs``. An epoch is one pass over the labelled
    training rows, so plain BC and BC with a latent head run the same steps on the same labelled
    minibatches."""
    latent_weight: float = 0.3
    """Weight of the latent-head loss when :meth:`~rla_gym.agents.bc.BehaviourCloning.fit` gets
    latent targets (the world action model's RLA head, paper §7): MSE on targets normalised per
    dimension, added to the action loss. On one LIBERO split (5 labelled episodes, 2000 steps)
    0.3 gave a lower held-out action error than 1, and both beat plain BC."""
