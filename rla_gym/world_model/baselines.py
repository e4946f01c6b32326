"""Baselines with the world-model API: copy-last-frame, direct regression, feature-space flow.

* :class:`CopyLastFrame` — ``ŝ_{t+h} = s_t``; the floor every model must beat.
* :class:`DirectRegressionWM` — DINO-WM-style: a transformer over the ``s_t`` tokens, conditioned
  on the action vector, regresses ``ŝ_{t+h}`` (as a residual on ``s_t``) with L1 + MSE.
* :class:`FeatureFlowWM` — FM-WM-style: flow matching directly in feature space, from noise
  ``(B, N, D)`` to the (standardised) tokens of ``s_{t+h}``, conditioned on ``s_t`` and the actions.

Both learned baselines reuse the RLA-WM building blocks (action GRU, adaLN condition stage, flow
stage) so that a comparison isolates *where* the prediction is made, not the network family.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from rla_gym.errors import ModelTypeError
from rla_gym.features.base import check_fingerprint
from rla_gym.flow import (
    flow_loss,
    interpolate,
    noise_for_rows,
    noise_like,
    sample,
    sample_time,
    velocity_target,
)
from rla_gym.utils.checkpoint import (
    config_type,
    load_checkpoint,
    model_config,
    read_config,
    save_checkpoint,
)
from rla_gym.world_model.action_encoder import ActionChunkEncoder
from rla_gym.world_model.base import FeatureWorldModel, Generators, load_state_strict
from rla_gym.world_model.config import BaselineConfig
from rla_gym.world_model.layers import ConditionStage, FlowStage, repeat_kv, zero_linear
from rla_gym.world_model.model import RLAWorldModel

__all__ = [
    "CopyLastFrame",
    "DirectRegressionWM",
    "FeatureFlowWM",
    "Predictor",
    "load_predictor",
]


@runtime_checkable
class Predictor(Protocol):
    """Anything that predicts future features from features and action chunks.

    What :func:`load_predictor` and a bundle's ``load_world_model`` return; the dreamed envs
    call only :meth:`sample` (and, on a model with ``proprio_fields``, its ``sample_state``,
    :meth:`FeatureWorldModel.sample_state`, which also returns the next body).
    """

    def sample(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        num_samples: int = 1,
        steps: int | None = None,
        generator: Generators | None = None,
        method: str = "euler",
        guidance: float = 1.0,
        s_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``s_t (B, N, D)``, ``actions (B, h, A)`` -> ``S`` samples ``(B, S, N, D)``; one
        generator for the batch or one per row; ``guidance``: classifier-free guidance weight
        over the action (``1``: off); ``s_prev (B, N, D)``: the frame ``history`` control steps
        before ``s_t`` (used by history models only)."""
        ...

    def check_guidance(self, guidance: float) -> None:
        """Raise ``ValueError`` unless this model can sample with ``guidance``."""
        ...

    def predict(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        method: str = "euler",
        num_samples: int = 1,
        s_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``s_t (B, N, D)``, ``actions (B, h, A)`` -> ``ŝ_{t+h} (B, N, D)``."""
        ...

    def rollout(
        self,
        s_0: torch.Tensor,
        chunks: Sequence[torch.Tensor],
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        method: str = "euler",
        s_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``s_0 (B, N, D)``, chunks ``(B, h_i, A)`` -> ``(B, len(chunks), N, D)``."""
        ...


class CopyLastFrame:
    """Predicts no change: ``ŝ_{t+h} = s_t``. Has no parameters and accepts any shapes."""

    MODEL_TYPE: ClassVar[str] = "copy"
    """Its name among the world models (it has no checkpoint)."""

    @staticmethod
    def check_guidance(guidance: float) -> None:
        """Copy-last ignores actions: only ``guidance == 1`` is meaningful."""
        if guidance != 1.0:
            raise ValueError(f"guidance={guidance}: copy-last ignores actions; use guidance=1")

    def sample(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        num_samples: int = 1,
        guidance: float = 1.0,
        **_: Any,
    ) -> torch.Tensor:
        """``s_t`` repeated ``S`` times: ``(B, S, N, D)``."""
        self.check_guidance(guidance)
        self._check(s_t, actions)
        return s_t[:, None].expand(-1, num_samples, -1, -1).clone()

    @staticmethod
    def _check(s_t: torch.Tensor, actions: torch.Tensor) -> None:
        if not isinstance(s_t, torch.Tensor) or s_t.ndim != 3:
            raise ValueError("s_t must have shape (B, N, D)")
        if (
            not isinstance(actions, torch.Tensor)
            or actions.ndim != 3
            or actions.shape[0] != len(s_t)
        ):
            raise ValueError(f"actions must have shape ({len(s_t)}, h, A)")
        if not torch.isfinite(s_t).all():
            raise ValueError("s_t (B, N, D) contains NaN or inf")

    def predict(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        method: str = "euler",
        num_samples: int = 1,
        s_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return a copy of ``s_t`` ``(B, N, D)``."""
        self._check(s_t, actions)
        return s_t.clone()

    def predict_with_uncertainty(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor | None = None,
        **_: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s_t, zeros (B,))``: a deterministic model has no spread."""
        return self.predict(s_t, actions, lengths), s_t.new_zeros(len(s_t))

    def rollout(
        self,
        s_0: torch.Tensor,
        chunks: Sequence[torch.Tensor],
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        method: str = "euler",
        s_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``s_0`` repeated: ``(B, len(chunks), N, D)``."""
        if len(chunks) == 0:
            raise ValueError("rollout needs at least one action chunk")
        for c in chunks:
            self._check(s_0, c)
        return s_0[:, None].expand(-1, len(chunks), -1, -1).clone()


class _LearnedBaseline(FeatureWorldModel):
    """Shared parts of the learned baselines: config, action GRU, condition stage, statistics."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.num_tokens, self.feature_dim = c.num_tokens, c.feature_dim
        self.action_dim, self.max_horizon = c.action_dim, c.max_horizon
        self.encoder_fingerprint = c.encoder_fingerprint
        self.action_encoder = ActionChunkEncoder(c.action_dim, c.action_hidden, c.width)
        self.condition = ConditionStage(
            c.feature_dim, c.num_tokens, c.width, c.heads, c.depth, c.mlp_ratio
        )
        self._init_action_stats(c.action_dim)
        # Per-channel feature and residual scales: inputs and targets are standardised so one set
        # of hyper-parameters works for encoders with very different feature magnitudes.
        self.register_buffer("feature_mean", torch.zeros(c.feature_dim))
        self.register_buffer("feature_std", torch.ones(c.feature_dim))
        self.register_buffer("delta_std", torch.ones(c.feature_dim))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """All parameters (nothing is frozen)."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def fit_normalization(self, batches: Iterable[dict[str, torch.Tensor]]) -> None:
        """Measure action, feature and residual statistics from training pairs."""
        acts, feats, deltas = [], [], []
        for b in batches:
            lengths = b["lengths"].to("cpu")
            mask = torch.arange(b["actions"].shape[1])[None] < lengths[:, None]
            acts.append(b["actions"].to("cpu")[mask])
            feats.append(b["s_t"].to("cpu").reshape(-1, self.feature_dim))
            deltas.append((b["s_th"] - b["s_t"]).to("cpu").reshape(-1, self.feature_dim))
        if not acts:
            raise ValueError("fit_normalization needs at least one batch")
        self._fit_action_stats(torch.cat(acts).float())
        f, d = torch.cat(feats).float(), torch.cat(deltas).float()
        self.feature_mean.copy_(f.mean(0))
        self.feature_std.copy_(f.std(0, unbiased=False).clamp_min(1e-4))
        self.delta_std.copy_(d.std(0, unbiased=False).clamp_min(1e-4))

    def _condition(
        self, s_t: torch.Tensor, actions: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Condition tokens ``(B, N, W)`` from standardised ``s_t`` and the action vector."""
        a = self.action_encoder(self.normalize_actions(actions, lengths), lengths)
        return self.condition((s_t - self.feature_mean) / self.feature_std, a)

    def save_pretrained(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + ``meta.json`` atomically."""
        meta = {"encoder_fingerprint": self.encoder_fingerprint, **(meta or {})}
        return save_checkpoint(path, self.checkpoint_config(), self, meta=meta)

    def checkpoint_config(self) -> dict[str, Any]:
        """The ``config.json`` content (its type added on save): the baseline config."""
        return {"baseline": self.config.to_dict()}

    def loss(
        self,
        s_t: torch.Tensor,
        s_th: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """Training loss; ``{"loss": scalar, ...metrics}``."""
        raise NotImplementedError

    def forward(
        self,
        s_t: torch.Tensor,
        s_th: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """Training loss (same as :meth:`loss`); calling the module lets DDP sync gradients."""
        return self.loss(s_t, s_th, actions, lengths, generator)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        expected_fingerprint: str | None = None,
        device: str | torch.device = "cpu",
    ) -> _LearnedBaseline:
        """Load a folder written by :meth:`save_pretrained` (fingerprint checked if given).

        Raises:
            ModelTypeError: the folder holds another model type.
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        config = BaselineConfig.from_dict(
            model_config(ckpt.config, cls.MODEL_TYPE, ckpt.path)["baseline"]
        )
        if expected_fingerprint is not None:
            check_fingerprint(
                config.encoder_fingerprint, expected_fingerprint, what=f"world model {path}"
            )
        model = cls(config)
        load_state_strict(model, ckpt.state_dict, ckpt.path)
        model.meta = ckpt.meta
        return model.to(device).eval()


class DirectRegressionWM(_LearnedBaseline):
    """DINO-WM-style deterministic regression of ``ŝ_{t+h} = s_t + head(tokens) * delta_std``.

    Args:
        config: baseline hyper-parameters (``depth`` blocks over the ``N`` state tokens).
    """

    MODEL_TYPE: ClassVar[str] = "direct"

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        # Zero-init head: the untrained model is exactly CopyLastFrame, a strong starting point.
        self.head = zero_linear(config.width, config.feature_dim)

    def regress(
        self, s_t: torch.Tensor, actions: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Checked ``s_t (B, N, D)``, ``actions (B, L, A)``, ``lengths (B,)`` -> ``(B, N, D)``."""
        return s_t + self.head(self._condition(s_t, actions, lengths)) * self.delta_std

    def loss(
        self,
        s_t: torch.Tensor,
        s_th: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """L1 + MSE between ``ŝ_{t+h}`` and ``s_{t+h}``, measured in residual-std units.

        Returns:
            ``{"loss", "feature_l1", "feature_mse"}`` scalars (``feature_*`` in raw units).
        """
        s_t, actions, lengths = self.check_inputs(s_t, actions, lengths)
        s_th = s_th.to(s_t.device, torch.float32)
        pred = self.regress(s_t, actions, lengths)
        # Scaling by delta_std balances channels the way the flow models' normalisation does.
        p, y = pred / self.delta_std, s_th / self.delta_std
        c = self.config
        loss = c.l1_weight * F.l1_loss(p, y) + c.mse_weight * F.mse_loss(p, y)
        return {
            "loss": loss,
            "feature_l1": F.l1_loss(pred.detach(), s_th),
            "feature_mse": F.mse_loss(pred.detach(), s_th),
        }

    def _predict_samples(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        *,
        steps: int | None,
        generator: Generators,
        method: str,
        num_samples: int,
        guidance: float = 1.0,
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        out = self.regress(s_t, actions, lengths)
        return out[:, None].expand(-1, num_samples, -1, -1), None


class FeatureFlowWM(_LearnedBaseline):
    """FM-WM-style flow matching over the ``N x D`` standardised feature tokens of ``s_{t+h}``.

    Args:
        config: baseline hyper-parameters (``depth`` condition blocks, ``flow_depth`` flow blocks).
    """

    MODEL_TYPE: ClassVar[str] = "fm"

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        c = config
        self.flow = FlowStage(
            c.feature_dim, c.num_tokens, c.width, c.heads, c.flow_depth, c.mlp_ratio
        )

    def loss(
        self,
        s_t: torch.Tensor,
        s_th: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """Flow-matching loss on standardised ``s_{t+h}`` tokens (logit-normal times).

        Returns:
            ``{"loss", "velocity_l1", "velocity_mse"}`` scalars.
        """
        s_t, actions, lengths = self.check_inputs(s_t, actions, lengths)
        x_1 = (s_th.to(s_t.device, torch.float32) - self.feature_mean) / self.feature_std
        x_0 = noise_like(x_1.shape, generator, x_1.device)
        t = sample_time(x_1.shape[0], generator, "logit_normal", device=x_1.device)
        cache = self.flow.prepare(self._condition(s_t, actions, lengths))
        v = self.flow(interpolate(x_0, x_1, t), t, cache)
        target = velocity_target(x_0, x_1)
        c = self.config
        return {
            "loss": flow_loss(v, target, c.l1_weight, c.mse_weight),
            "velocity_l1": F.l1_loss(v.detach(), target),
            "velocity_mse": F.mse_loss(v.detach(), target),
        }

    def _predict_samples(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        *,
        steps: int | None,
        generator: Generators,
        method: str,
        num_samples: int,
        guidance: float = 1.0,
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        b, n, d = s_t.shape
        cache = repeat_kv(self.flow.prepare(self._condition(s_t, actions, lengths)), num_samples)
        x_0 = noise_for_rows(b, num_samples, (n, d), generator, s_t.device)
        x_1 = sample(
            lambda x, t: self.flow(x, t, cache),
            x_0,
            steps or self.config.default_flow_steps,
            method,
        )  # type: ignore[arg-type]
        out = x_1 * self.feature_std + self.feature_mean
        return out.view(b, num_samples, n, d), None


_WORLD_MODELS: dict[str, Any] = {
    m.MODEL_TYPE: m for m in (RLAWorldModel, DirectRegressionWM, FeatureFlowWM)
}


def load_predictor(
    path: str | Path, expected_fingerprint: str | None = None, device: str | torch.device = "cpu"
) -> FeatureWorldModel:
    """Load any world-model checkpoint (RLA-WM or a learned baseline) by its stored type.

    Raises:
        ModelTypeError: the folder holds no world model.
    """
    stored = config_type(read_config(path))
    if stored not in _WORLD_MODELS:
        raise ModelTypeError(
            f"{path} holds {f'a {stored!r}' if stored else 'an untyped'} checkpoint, not a world "
            f"model; expected one of {sorted(_WORLD_MODELS)}"
        )
    return _WORLD_MODELS[stored].from_pretrained(
        path, expected_fingerprint=expected_fingerprint, device=device
    )
