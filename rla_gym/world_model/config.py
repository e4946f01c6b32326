"""Configurations of the world models (RLA-WM and the feature-space baselines).

Sizes: the defaults (preset ``"cpu-small"``) are chosen so one RLA-WM trains on two CPU cores in
well under half an hour for LIBERO-sized inputs (64 tokens x 512 channels, 7-D actions, chunks of
up to 16 steps). Measured with torch 2.13 on 2 uncontended cores, batch 32, default ``RLAConfig``
(K=8, d=16, width 192, depth 3) as the frozen encoder: RLA-WM 4.2M trainable parameters,
~5.5 steps/s on 2 threads (6000 steps ~ 18 min), ~3.2 steps/s on 1 thread of a busy machine;
one 10-step prediction at batch 1 takes ~26 ms.
Preset ``"paper"`` reproduces the released RLA-WM network (width 1024, 8 + 8 blocks, 16 heads,
``z / 10`` latent scaling, 30 Euler steps) and needs a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "PRESETS",
    "BaselineConfig",
    "WorldModelConfig",
    "world_model_preset",
]

LatentNorm = Literal["scalar", "per_dim"]


@dataclass(frozen=True, kw_only=True)
class WorldModelConfig:
    """Hyper-parameters of :class:`rla_gym.world_model.RLAWorldModel`.

    Token count, feature size and latent shape are not repeated here: they are read from the frozen
    RLA autoencoder the world model wraps, so the two can never disagree.
    """

    action_dim: int
    """``A``: size of one action vector."""
    max_horizon: int = 16
    """``H_max``: the longest action chunk (in control steps) one prediction may consume."""
    width: int = 192
    """Transformer width of the condition and flow stages (and of the action vector)."""
    heads: int = 4
    """Attention heads; must divide ``width``."""
    cond_depth: int = 2
    """Blocks of the condition stage (run once per prediction over the ``N`` state tokens)."""
    flow_depth: int = 3
    """Blocks of the flow stage (run at every solver step over the ``K`` latent tokens)."""
    mlp_ratio: float = 4.0
    """Hidden size of the transformer MLPs relative to ``width``."""
    action_hidden: int = 64
    """Width of the per-step action MLP that feeds the GRU (64 in the official code)."""
    latent_norm: LatentNorm = "per_dim"
    """``"scalar"``: flow on ``z / latent_scale`` (the official code, scale 10). ``"per_dim"``: flow
    on ``(z - mean) / std`` with per-(token, channel) statistics measured on training latents by
    :meth:`RLAWorldModel.fit_normalization` (stored as buffers)."""
    latent_scale: float = 10.0
    """Divisor of ``z`` when ``latent_norm == "scalar"``."""
    default_flow_steps: int = 10
    """Solver steps used when ``predict`` is called without ``steps`` (the paper evaluates 30)."""
    time_distribution: Literal["logit_normal", "uniform"] = "logit_normal"
    """Distribution of the flow time during training (the paper: logit-normal)."""
    l1_weight: float = 1.0
    """Weight of the L1 term of the velocity loss (official configs: 1)."""
    mse_weight: float = 1.0
    """Weight of the MSE term of the velocity loss (official configs: 1)."""
    action_dropout: float = 0.0
    """Probability that a training pair's action vector is replaced by a learned "no action"
    vector. Above 0 the model also learns the action-free prediction, which classifier-free
    guidance (``guidance`` at sampling time) contrasts with the action-conditioned one."""
    action_in_flow: bool = False
    """Also add the action vector to the time embedding that modulates every flow block (as
    DiT adds its class embedding). Off, as in the released code, the action reaches the flow
    stage only through the cross-attended condition tokens."""
    history: int = 0
    """Control steps back to a second, earlier frame the model also sees: above 0 each prediction
    is conditioned on ``s_t`` and on the motion ``s_t - s_{t-history}`` (the frame before an
    episode's first is the first itself: at rest). One frame shows where a torque-driven arm is
    but not where it is going; DINO-WM and DIAMOND condition on a short history for this reason.
    Set it to the env's chunk ``K``: a dreamed episode then always has that frame, the previous
    chunk's start. ``0``: Markov in ``s_t`` (every bundle before 2026-12)."""
    proprio_fields: tuple[str, ...] = ()
    """The robot's body as part of the dreamed state (``rla_gym.data.proprio``; e.g. reacher's
    six ``shoulder_sin ... wrist_vel``). Non-empty: the current body vector is embedded into
    every condition token (beside the patches, as DINO-WM tiles its proprio embedding onto each
    patch) and a head on the condition stage predicts the next one. Empty: features only."""
    proprio_weight: float = 1.0
    """Weight of the body head's loss (MSE of the standardised body change) beside the flow's."""
    body_hidden: int = 256
    """Hidden width of the body head's MLP."""

    def __post_init__(self) -> None:
        _check_common(self.action_dim, self.max_horizon, self.width, self.heads)
        # JSON gives a list; the frozen config keeps a hashable tuple.
        object.__setattr__(self, "proprio_fields", tuple(str(f) for f in self.proprio_fields))
        if self.proprio_weight < 0 or self.body_hidden < 1:
            raise ValueError("proprio_weight must be >= 0 and body_hidden >= 1")
        if not 0.0 <= self.action_dropout < 1.0:
            raise ValueError(f"action_dropout must be in [0, 1), got {self.action_dropout}")
        if self.cond_depth < 0 or self.flow_depth < 1:
            raise ValueError("cond_depth must be >= 0 and flow_depth >= 1")
        if self.latent_norm not in ("scalar", "per_dim"):
            raise ValueError(f"latent_norm must be 'scalar' or 'per_dim', got {self.latent_norm!r}")
        if self.history < 0:
            raise ValueError(f"history must be >= 0 control steps, got {self.history}")
        if self.latent_scale <= 0 or self.default_flow_steps < 1:
            raise ValueError("latent_scale must be > 0 and default_flow_steps >= 1")

    @classmethod
    def paper_scale(cls, action_dim: int, **overrides: Any) -> WorldModelConfig:
        """The released RLA-WM network (preset ``"paper"``; GPU scale, ~345M trainable params)."""
        return world_model_preset("paper", action_dim, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for ``config.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorldModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected to catch version skew."""
        return cls(**d)


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """Hyper-parameters of the feature-space baselines (:mod:`rla_gym.world_model.baselines`).

    Both baselines reuse the RLA-WM building blocks (action GRU, adaLN condition stage) so that
    comparisons isolate the effect of predicting in RLA space.
    """

    feature_dim: int
    """``D``: channels per state token."""
    num_tokens: int
    """``N``: state tokens per frame."""
    action_dim: int
    """``A``: size of one action vector."""
    encoder_fingerprint: str = ""
    """Fingerprint of the feature encoder the training features came from (checked on load)."""
    max_horizon: int = 16
    """``H_max``: the longest action chunk one prediction may consume."""
    width: int = 192
    """Transformer width."""
    heads: int = 4
    """Attention heads; must divide ``width``."""
    depth: int = 3
    """Blocks of the action-conditioned stage over the state tokens."""
    flow_depth: int = 2
    """Flow-stage blocks over the ``N`` noisy feature tokens (``FeatureFlowWM`` only)."""
    mlp_ratio: float = 4.0
    """Hidden size of the transformer MLPs relative to ``width``."""
    action_hidden: int = 64
    """Width of the per-step action MLP that feeds the GRU."""
    default_flow_steps: int = 10
    """Solver steps when ``predict`` is called without ``steps`` (``FeatureFlowWM`` only)."""
    l1_weight: float = 1.0
    """Weight of the L1 term (regression error or velocity error)."""
    mse_weight: float = 1.0
    """Weight of the MSE term."""

    def __post_init__(self) -> None:
        _check_common(self.action_dim, self.max_horizon, self.width, self.heads)
        if self.feature_dim < 1 or self.num_tokens < 1 or self.depth < 1 or self.flow_depth < 1:
            raise ValueError("feature_dim, num_tokens, depth and flow_depth must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for ``config.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def _check_common(action_dim: int, max_horizon: int, width: int, heads: int) -> None:
    if action_dim < 1 or max_horizon < 1:
        raise ValueError(
            f"action_dim and max_horizon must be >= 1, got {action_dim}, {max_horizon}"
        )
    if width < 1 or heads < 1 or width % heads:
        raise ValueError(f"width ({width}) must be a positive multiple of heads ({heads})")


PRESETS: dict[str, dict[str, Any]] = {
    # Default: ~30 min of CPU training at N=64, D=512, A=7, H_max=16 (see the report in
    # benchmarks/ for the measured steps/s).
    "cpu-small": {},
    # What the embedded env bundles ship: small enough that the weights of one env stay ~3 MB in
    # float16 and a chunk dreams fast on a laptop CPU (measured in benchmarks/dream_speed.py).
    "cpu-compact": {"width": 128, "heads": 4, "cond_depth": 2, "flow_depth": 2},
    # Smallest sensible model, for tests and smoke runs.
    "tiny": {"width": 64, "heads": 2, "cond_depth": 1, "flow_depth": 2, "action_hidden": 32},
    # The released RLA-WM (mlzxy/rla-wm configs/rla_wm, ManiSkill): width 1024, 16 heads, 8
    # condition + 8 flow blocks, GRU hidden = width, horizon 15, z / 10, 30-step Euler.
    "paper": {
        "width": 1024,
        "heads": 16,
        "cond_depth": 8,
        "flow_depth": 8,
        "mlp_ratio": 4.0,
        "action_hidden": 64,
        "max_horizon": 15,
        "latent_norm": "scalar",
        "latent_scale": 10.0,
        "default_flow_steps": 30,
    },
}
"""Named :class:`WorldModelConfig` presets (``action_dim`` is supplied separately)."""


def world_model_preset(name: str, action_dim: int, **overrides: Any) -> WorldModelConfig:
    """Build a :class:`WorldModelConfig` from a named preset.

    Args:
        name: one of :data:`PRESETS` (``"cpu-small"``, ``"tiny"``, ``"paper"``).
        action_dim: ``A``.
        **overrides: fields replacing the preset's values.

    Raises:
        ValueError: unknown preset name.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown world-model preset {name!r}; choose one of {sorted(PRESETS)}")
    return WorldModelConfig(action_dim=action_dim, **{**PRESETS[name], **overrides})
