"""Actor-critic networks for flat vectors and ``(N, D)`` patch-feature observations.

Only Gymnasium spaces and torch are assumed, so the same module drives a toy env (Pendulum) and the
world-model env whose observations are DINO patch features ``float32 (N, D)``, e.g. ``(64, 512)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

from rla_gym.agents.config import ActorCriticConfig
from rla_gym.data.proprio import FEATURES, PROPRIO
from rla_gym.errors import RLAGymError
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint

Observation = torch.Tensor | dict[str, torch.Tensor]
"""A batch the policy reads: features ``(B, *observation_shape)``, or ``{"features": ...,
"proprio": (B, P)}`` (a policy with ``config.body_dim`` needs the latter)."""

__all__ = [
    "ActorCritic",
    "PatchFeatureExtractor",
    "SpaceMismatchError",
    "UnsupportedSpaceError",
    "check_spaces",
]


class UnsupportedSpaceError(RLAGymError, TypeError):
    """The env's observation or action space is not one the bundled agents handle."""


class SpaceMismatchError(RLAGymError, ValueError):
    """A policy was used with an env (or data) whose observation/action shape differs."""


def check_spaces(observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raise :class:`UnsupportedSpaceError` unless both spaces are float ``Box`` spaces.

    Args:
        observation_space: the (single-env) observation space.
        action_space: the (single-env) action space.
    """
    if not isinstance(action_space, gym.spaces.Box):
        raise UnsupportedSpaceError(
            f"the bundled agents need a continuous Box action space, got {action_space}; wrap the "
            f"env (e.g. map discrete choices to a Box) or use an agent for that space"
        )
    if isinstance(observation_space, gym.spaces.Dict) and FEATURES in observation_space.spaces:
        raise UnsupportedSpaceError(
            f"the bundled agents train on (N, D) features, got {observation_space}; make the "
            "dreamed env with obs_mode='patch' (its world model still dreams the body), or train "
            "with SB3's MultiInputPolicy and rla_gym.sb3.patch_policy_kwargs()"
        )
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) not in (
        1,
        2,
    ):
        raise UnsupportedSpaceError(
            f"the bundled agents need a Box observation space of shape (D,) or patch features "
            f"(N, D), got {observation_space}; flatten the observation with "
            f"gymnasium.wrappers.FlattenObservation"
        )


def as_float_tensor(x: Any, device: str | torch.device = "cpu") -> torch.Tensor:
    """``float32`` tensor on ``device`` from a tensor, numpy array or nested sequence."""
    return torch.as_tensor(x if torch.is_tensor(x) else np.asarray(x), dtype=torch.float32,
                           device=device)  # fmt: skip


def _mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: type[nn.Module] = nn.Tanh,
    out_gain: float = 1.0,
) -> nn.Sequential:
    """MLP with orthogonal init; a small ``out_gain`` starts the output near zero (CleanRL)."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in itertools.pairwise(dims):
        layer = nn.Linear(a, b)
        nn.init.orthogonal_(layer.weight, math.sqrt(2))
        nn.init.zeros_(layer.bias)
        layers += [layer, activation()]
    head = nn.Linear(dims[-1], out_dim)
    nn.init.orthogonal_(head.weight, out_gain)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


class PatchFeatureExtractor(nn.Module):
    """Pool an observation to a feature vector.

    * flat ``(D,)`` observations: a tanh MLP (toy envs).
    * ``(N, D)`` patch features: LayerNorm + projection of each token ``D -> c``, then either
      ``conv``: two 3x3 convolutions over the ``g x g`` grid (``N = g * g``, tokens in row-major
      order), the second with stride 2, flattened and projected; or
      ``attention``: learned queries attend over the tokens (with learned positions), and the
      ``Q x c`` outputs are flattened and projected.

    Args:
        observation_shape: ``(D,)`` or ``(N, D)``.
        config: architecture.

    Shapes:
        ``forward``: ``(B, *observation_shape) -> (B, config.feature_dim)``.
    """

    def __init__(self, observation_shape: Sequence[int], config: ActorCriticConfig) -> None:
        super().__init__()
        self.observation_shape = tuple(int(s) for s in observation_shape)
        self.feature_dim = config.feature_dim
        kind = config.extractor
        if len(self.observation_shape) == 1:
            if kind not in ("auto", "mlp"):
                raise UnsupportedSpaceError(
                    f"extractor {kind!r} needs (N, D) patch observations, got shape "
                    f"{self.observation_shape}; use extractor='mlp' or 'auto'"
                )
            kind = "mlp"
        elif len(self.observation_shape) != 2:
            raise UnsupportedSpaceError(
                f"observations must be (D,) or (N, D), got shape {self.observation_shape}"
            )
        n, d = self.observation_shape if len(self.observation_shape) == 2 else (1, 0)
        grid = math.isqrt(n)
        if kind == "auto":
            kind = "conv" if grid * grid == n else "attention"
        if kind == "conv" and grid * grid != n:
            raise UnsupportedSpaceError(
                f"extractor 'conv' needs a square number of patches, got N={n}; use 'attention'"
            )
        self.kind = kind
        c = config.token_dim
        if kind == "mlp":
            flat = int(np.prod(self.observation_shape))
            self.net = nn.Sequential(
                _mlp(flat, config.mlp_hidden, config.feature_dim, out_gain=math.sqrt(2)), nn.Tanh()
            )
            return
        # Patch features from a frozen encoder have arbitrary scale: normalise each token first.
        self.tokens = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, c), nn.GELU())
        if kind == "conv":
            self.grid = grid
            out_grid = (grid + 1) // 2
            self.pool = nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(c, c, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Flatten(),
                nn.Linear(c * out_grid * out_grid, config.feature_dim),
                nn.GELU(),
            )
        elif kind == "attention":
            if c % config.num_heads:
                raise ValueError(f"token_dim {c} is not divisible by num_heads {config.num_heads}")
            self.positions = nn.Parameter(torch.randn(n, c) * 0.02)
            self.queries = nn.Parameter(torch.randn(config.num_queries, c) * 0.02)
            self.attention = nn.MultiheadAttention(c, config.num_heads, batch_first=True)
            self.out = nn.Sequential(
                nn.Linear(config.num_queries * c, config.feature_dim), nn.GELU()
            )
        else:
            raise ValueError(f"unknown extractor {kind!r}; use auto, conv, attention or mlp")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, *observation_shape) -> (B, feature_dim)``."""
        if self.kind == "mlp":
            return self.net(obs.flatten(1))
        tokens = self.tokens(obs)  # (B, N, c)
        if self.kind == "conv":
            b, _, c = tokens.shape
            grid = tokens.transpose(1, 2).reshape(b, c, self.grid, self.grid)
            return self.pool(grid)
        keys = tokens + self.positions
        queries = self.queries.expand(tokens.shape[0], -1, -1)
        pooled, _ = self.attention(queries, keys, keys, need_weights=False)  # (B, Q, c)
        return self.out(pooled.flatten(1))


class ActorCritic(nn.Module):
    """Gaussian policy and value function over a Box action space.

    The policy is ``Normal(mean(obs), exp(log_std))`` with a state-independent ``log_std``.
    Samples are *not* squashed: log-probabilities are those of the unclipped sample (CleanRL), and
    actions are clipped to ``[action_low, action_high]`` only when sent to the env or returned by
    :meth:`predict`. Actions of any Box shape are handled flat, ``(A,) = (prod(shape),)``.

    Residual mode (``config.residual``): the extractor and mean head form a frozen *base* (e.g. a
    BC policy) and ``mean = base_mean + residual_scale * tanh(residual(features))`` with the last
    residual layer zero-initialised, so at initialisation the mean equals the base's exactly.

    Args:
        observation_shape: single observation shape, ``(D,)`` or ``(N, D)``.
        action_dim: flat action size ``A``.
        config: architecture.
        action_low: ``(A,)`` lower action bounds (default -1).
        action_high: ``(A,)`` upper action bounds (default 1).
    """

    MODEL_TYPE: ClassVar[str] = "actor-critic"
    """``config.json`` type of its checkpoints."""

    def __init__(
        self,
        observation_shape: Sequence[int],
        action_dim: int,
        config: ActorCriticConfig | None = None,
        action_low: np.ndarray | torch.Tensor | None = None,
        action_high: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config or ActorCriticConfig()
        self.observation_shape = tuple(int(s) for s in observation_shape)
        self.action_dim = int(action_dim)
        low = -torch.ones(action_dim) if action_low is None else torch.as_tensor(action_low)
        high = torch.ones(action_dim) if action_high is None else torch.as_tensor(action_high)
        self.register_buffer("action_low", low.float().reshape(action_dim).clone())
        self.register_buffer("action_high", high.float().reshape(action_dim).clone())

        self.extractor = PatchFeatureExtractor(self.observation_shape, config)
        f = config.feature_dim
        self.body_join: nn.Sequential | None = None
        if config.body_dim:
            p = int(config.body_dim)
            # Standardised with the training rows' statistics (set by BC, saved with the weights).
            self.register_buffer("body_mean", torch.zeros(p))
            self.register_buffer("body_std", torch.ones(p))
            self.body_join = nn.Sequential(nn.Linear(f + p, f), nn.GELU())
        self.actor_mean = _mlp(f, config.actor_hidden, action_dim, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(config.log_std_init)))
        self.critic_extractor = (
            None
            if config.share_extractor
            else PatchFeatureExtractor(self.observation_shape, config)
        )
        self.critic = _mlp(f, config.critic_hidden, 1, out_gain=1.0)
        self.residual: nn.Sequential | None = None
        if config.residual:
            self.residual = _mlp(f, config.residual_hidden, action_dim, activation=nn.ReLU)
            # Zero-init of the last layer makes tanh(0) = 0: the policy starts as the base.
            nn.init.zeros_(self.residual[-1].weight)
            nn.init.zeros_(self.residual[-1].bias)
            self.freeze_base()

    # -- structure -------------------------------------------------------------------------------

    @property
    def reads_body(self) -> bool:
        """Whether the policy reads the robot's body beside the features (``config.body_dim``);
        real evaluation then shows it the real body (``obs_mode="features+proprio"``)."""
        return self.body_join is not None

    def freeze_base(self) -> None:
        """Stop gradients into the base extractor and mean head (residual mode)."""
        base = [self.extractor, self.actor_mean]
        if self.body_join is not None:  # the body's join is part of the base's features
            base.append(self.body_join)
        for module in base:
            for p in module.parameters():
                p.requires_grad_(False)

    def actor_parameters(self) -> list[nn.Parameter]:
        """Trainable policy parameters (extractor, mean head or residual head, log-std)."""
        modules: list[nn.Module] = [self.extractor, self.actor_mean]
        if self.body_join is not None:
            modules.append(self.body_join)
        if self.residual is not None:
            modules.append(self.residual)
        params = [p for m in modules for p in m.parameters()] + [self.log_std]
        return [p for p in params if p.requires_grad]

    def critic_parameters(self) -> list[nn.Parameter]:
        """Trainable value-function parameters."""
        modules = [self.critic] + ([self.critic_extractor] if self.critic_extractor else [])
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    # -- forward ---------------------------------------------------------------------------------

    def check_obs(self, obs: Observation) -> None:
        """Raise :class:`SpaceMismatchError` unless ``obs`` is ``(B, *observation_shape)`` (with
        the body ``(B, P)`` for a policy that reads it)."""
        self._split(obs)

    def _split(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features (B, *observation_shape), body (B, P) or None)`` of a batch: a tensor of
        features, or the ``{"features", "proprio"}`` dict of an env that shows the body."""
        body = None
        if isinstance(obs, dict):
            if FEATURES not in obs:
                raise SpaceMismatchError(
                    f"policy reads patch features {self.observation_shape}; a dict observation "
                    f"must hold them under '{FEATURES}', got keys {sorted(obs)}"
                )
            body, obs = obs.get(PROPRIO), obs[FEATURES]
        if tuple(obs.shape[1:]) != self.observation_shape:
            raise SpaceMismatchError(
                f"policy expects observations of shape (B, *{self.observation_shape}), got "
                f"{tuple(obs.shape)}; use an env or dataset with the policy's observation space"
            )
        if not self.reads_body:
            return obs, None  # a features-only policy ignores a body it is shown
        p = self.config.body_dim
        if body is None or tuple(body.shape) != (obs.shape[0], p):
            got = "none" if body is None else tuple(body.shape)
            raise SpaceMismatchError(
                f"policy reads the robot's body too: pass {{'features': (B, "
                f"{', '.join(map(str, self.observation_shape))}), 'proprio': (B, {p})}} "
                f"(an env with obs_mode='features+proprio'), got body {got}"
            )
        return obs, body

    def encode(self, obs: Observation) -> torch.Tensor:
        """Pooled features ``(B, F)`` of a batch (joined with the standardised body for a policy
        that reads it): what the action and latent heads read."""
        feats, body = self._split(obs)
        feat = self.extractor(feats)
        if self.body_join is not None:
            assert body is not None
            z = (body.to(feat) - self.body_mean) / self.body_std
            feat = self.body_join(torch.cat([feat, z], -1))
        return feat

    def set_body_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardisation of the body input ``(P,)`` each (from the training rows)."""
        if self.body_join is None:
            raise ValueError("set_body_stats: this policy reads no body (config.body_dim = 0)")
        self.body_mean.copy_(torch.as_tensor(mean).reshape(-1))
        self.body_std.copy_(torch.as_tensor(std).reshape(-1).clamp_min(1e-6))

    def mean_from_features(self, feat: torch.Tensor) -> torch.Tensor:
        """Action mean ``(B, A)`` from extractor features ``(B, F)`` (base head + residual):
        the seam BC trains through, sharing one extractor pass with other losses."""
        mean = self.actor_mean(feat)
        if self.residual is not None:
            mean = mean + self.config.residual_scale * torch.tanh(self.residual(feat))
        return mean

    def _value_from_obs(self, obs: Observation, feat: torch.Tensor | None) -> torch.Tensor:
        """Values ``(B,)``; ``feat``: the policy's :meth:`encode` of ``obs``, which a shared
        extractor's critic reads (``None`` if not computed: it is then computed here)."""
        if self.critic_extractor is None:
            # Shared extractor: the critic must not reshape the policy's features (paper §8.2).
            feat = self.encode(obs) if feat is None else feat
            return self.critic(feat.detach()).squeeze(-1)
        # A critic of its own reads the features only (the body joins the policy's features).
        return self.critic(self.critic_extractor(self._split(obs)[0])).squeeze(-1)

    def distribution(self, obs: Observation) -> Normal:
        """``obs (B, *obs_shape) ->`` Normal with ``(B, A)`` mean and scale."""
        mean = self.mean_from_features(self.encode(obs))
        return Normal(mean, self.log_std.exp().expand_as(mean))

    def mean_action(self, obs: Observation) -> torch.Tensor:
        """Deterministic (unclipped) action ``(B, A)``."""
        return self.mean_from_features(self.encode(obs))

    def value(self, obs: Observation) -> torch.Tensor:
        """State values ``(B,)``."""
        return self._value_from_obs(obs, None)

    def act(
        self, obs: Observation, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for a rollout.

        Args:
            obs: ``(B, *obs_shape)``.
            deterministic: return the mean instead of a sample.

        Returns:
            ``(action (B, A) unclipped, log_prob (B,), value (B,))``.
        """
        feat = self.encode(obs)
        mean = self.mean_from_features(feat)
        dist = Normal(mean, self.log_std.exp().expand_as(mean))
        action = mean if deterministic else dist.sample()
        return action, dist.log_prob(action).sum(-1), self._value_from_obs(obs, feat)

    def evaluate_actions(
        self, obs: Observation, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob (B,), entropy (B,), value (B,))`` of ``actions (B, A)`` at ``obs``."""
        feat = self.encode(obs)
        mean = self.mean_from_features(feat)
        dist = Normal(mean, self.log_std.exp().expand_as(mean))
        logp = dist.log_prob(actions).sum(-1)
        return logp, dist.entropy().sum(-1), self._value_from_obs(obs, feat)

    def clip_action(self, action: torch.Tensor) -> torch.Tensor:
        """Clip ``(B, A)`` actions to the Box bounds."""
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)

    @torch.no_grad()
    def predict(
        self,
        observation: np.ndarray | torch.Tensor | dict[str, np.ndarray | torch.Tensor],
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """SB3-style prediction: numpy in, clipped numpy action out.

        Args:
            observation: one observation ``obs_shape`` or a batch ``(B, *obs_shape)``; or the
                ``{"features", "proprio"}`` dict of a dreamed (or real) env that shows the
                robot's body: a policy with ``config.body_dim`` reads both, one trained on
                features only reads ``"features"``.
            deterministic: mean action (default) or a sample.

        Returns:
            ``(action, None)``: ``(A,)`` or ``(B, A)`` float32; ``None`` stands for SB3's state.

        Raises:
            SpaceMismatchError: a dict without ``"features"``, observations of another shape, or
                no body (of size ``P``) for a policy that reads it.
        """
        device = self.log_std.device
        obs: Observation
        if isinstance(observation, dict):
            obs = {k: as_float_tensor(v, device) for k, v in observation.items() if v is not None}
            feats = obs.get(FEATURES)
        else:
            obs = feats = as_float_tensor(observation, device)
        single = feats is not None and feats.dim() == len(self.observation_shape)
        if single:  # one observation: a batch of one (the body (P,) -> (1, P) with it)
            obs = (
                {k: v.unsqueeze(0) for k, v in obs.items()} if isinstance(obs, dict) else obs[None]
            )
        action, _, _ = self.act(obs, deterministic=deterministic)
        action = self.clip_action(action).cpu().numpy().astype(np.float32)
        return (action[0] if single else action), None

    # -- persistence -----------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description from which :meth:`from_spec` rebuilds the module."""
        return {
            "observation_shape": list(self.observation_shape),
            "action_dim": self.action_dim,
            "policy": dataclasses.asdict(self.config),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ActorCritic:
        """Build an (untrained) module from :meth:`spec` output; bounds come with the weights."""
        return cls(
            spec["observation_shape"],
            spec["action_dim"],
            ActorCriticConfig.from_dict(spec["policy"]),
        )

    def save(self, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to the folder ``path``."""
        return save_checkpoint(path, self.spec(), self, meta=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ActorCritic:
        """Read a folder written by :meth:`save` (or the policy inside a ``PPO.save`` folder).

        Raises:
            ModelTypeError: the folder holds neither a policy nor a PPO agent.
        """
        ckpt = load_checkpoint(path, map_location=device)
        # A PPO folder stores this policy's weights and its spec under "policy_spec".
        config = model_config(ckpt.config, (cls.MODEL_TYPE, "ppo"), ckpt.path, untyped=True)
        spec = config.get("policy_spec", config)
        policy = cls.from_spec(spec).to(device)
        policy.load_state_dict(ckpt.state_dict)
        return policy
