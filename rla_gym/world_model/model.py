"""RLA-WM: conditional flow matching in the residual-latent-action space of a frozen RLA.

Prediction of ``s_{t+h}`` from ``s_t`` (``(N, D)`` feature tokens) and an action chunk
``a_{t:t+h}`` (paper §4):

1. the action chunk is encoded by a per-step MLP + GRU into one vector (``action_encoder.py``);
2. the **condition stage** (run once per prediction) maps the ``N`` state tokens through adaLN
   blocks modulated by the action vector into ``N`` condition tokens;
3. the **flow stage** (run at every solver step) predicts the velocity of the ``K`` noisy latent
   tokens with adaLN(time) self-attention, cross-attention into the condition tokens and an MLP;
   the cross-attention keys/values of the condition tokens are computed once and cached;
4. integrating the flow from noise (``t = 0``) to ``t = 1`` gives a normalised RLA latent ``z``
   ``(K, d)``; the frozen RLA decoder maps ``(s_t, z)`` to ``ŝ_{t+h}`` in one pass.

Deviation from the released code, on purpose: the flow stage adds a learned per-index embedding to
the ``K`` latent tokens (the official flow network is permutation-equivariant over them while the
RLA decoder is not; paper digest §4.2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rla_gym.features.base import check_fingerprint
from rla_gym.flow import (
    flow_loss,
    guided,
    interpolate,
    noise_for_rows,
    noise_like,
    sample,
    sample_time,
    velocity_target,
)
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint
from rla_gym.world_model.action_encoder import ActionChunkEncoder
from rla_gym.world_model.base import FeatureWorldModel, Generators, load_state_strict
from rla_gym.world_model.config import WorldModelConfig
from rla_gym.world_model.layers import (
    ConditionStage,
    FlowCache,
    FlowStage,
    repeat_kv,
    zero_linear,
)

# FeatureWorldModel, Generators and load_state_strict live in world_model.base; they are
# re-exported here, where they were first defined and where callers still import them from.
__all__ = [
    "FeatureWorldModel",
    "Generators",
    "RLAWorldModel",
    "load_state_strict",
]


def _share_within_pairs(x: torch.Tensor, pairs: int) -> torch.Tensor:
    """``x`` with row ``2i + 1`` replaced by row ``2i`` for ``i < pairs`` (sibling rows share
    their draw)."""
    if not pairs:
        return x
    x = x.clone()
    x[1 : 2 * pairs : 2] = x[0 : 2 * pairs : 2]
    return x


# --------------------------------------------------------------------------- RLA-WM
def _rla_config_dict(rla: nn.Module) -> dict[str, Any]:
    cfg = rla.config
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))


def _rla_fingerprint(rla: nn.Module) -> str:
    for holder in (rla, getattr(rla, "config", None)):
        for name in ("encoder_fingerprint", "fingerprint"):
            fp = getattr(holder, name, None)
            if isinstance(fp, str):
                return fp
    return ""


class RLAWorldModel(FeatureWorldModel):
    """Flow-matching world model in the latent space of a frozen RLA autoencoder.

    Args:
        config: world-model hyper-parameters.
        rla: a trained ``RLAAutoencoder``; it is frozen (no gradients, always in eval mode) and its
            weights are embedded in this model's checkpoint.
    """

    MODEL_TYPE: ClassVar[str] = "rla-wm"

    def __init__(self, config: WorldModelConfig, rla: nn.Module) -> None:
        super().__init__()
        rc = rla.config
        self.config = config
        self.num_tokens, self.feature_dim = int(rc.num_tokens), int(rc.feature_dim)
        self.latent_tokens, self.latent_dim = int(rc.latent_tokens), int(rc.latent_dim)
        self.action_dim, self.max_horizon = config.action_dim, config.max_horizon
        self.history = config.history
        self.encoder_fingerprint = _rla_fingerprint(rla)
        self.rla = rla
        self.rla.requires_grad_(False)
        for p in self.rla.parameters():
            p.grad = None  # stale gradients from the RLA's own training must not linger
        self.rla.eval()
        w = config.width
        self.action_encoder = ActionChunkEncoder(config.action_dim, config.action_hidden, w)
        self.condition = ConditionStage(
            self.feature_dim, self.num_tokens, w, config.heads, config.cond_depth, config.mlp_ratio
        )
        self.flow = FlowStage(
            self.latent_dim,
            self.latent_tokens,
            w,
            config.heads,
            config.flow_depth,
            config.mlp_ratio,
            vector=config.action_in_flow,
        )
        if config.action_dropout > 0:
            # Only models trained with action dropout have it, so older checkpoints load as-is.
            self.null_action = nn.Parameter(torch.zeros(w))
        if config.history > 0:
            # The motion s_t - s_prev enters every condition token beside s_t. Zero-initialised,
            # so training starts from the Markov model; the motion is divided by its RMS on
            # training pairs (fit_normalization) because it is ~10x smaller than the features.
            self.motion_proj = zero_linear(self.feature_dim, w)
            self.register_buffer("motion_scale", torch.ones(()))
        self.proprio_fields = config.proprio_fields
        if self.proprio_fields:
            p = len(self.proprio_fields)
            # The current body enters every condition token, zero-initialised like the motion.
            self.proprio_proj = zero_linear(p, w)
            # The next body is read off the condition stage (pooled tokens), the action vector
            # and the current body; it predicts the standardised change.
            self.body_head = nn.Sequential(
                nn.Linear(2 * w + p, config.body_hidden),
                nn.GELU(),
                nn.Linear(config.body_hidden, config.body_hidden),
                nn.GELU(),
                nn.Linear(config.body_hidden, p),
            )
            self.register_buffer("proprio_mean", torch.zeros(p))
            self.register_buffer("proprio_std", torch.ones(p))
            self.register_buffer("body_delta_std", torch.ones(p))
        self._init_action_stats(config.action_dim)
        shape = (self.latent_tokens, self.latent_dim)
        if config.latent_norm == "scalar":
            mean, std = torch.zeros(shape), torch.full(shape, config.latent_scale)
        else:
            mean, std = torch.zeros(shape), torch.ones(shape)
        self.register_buffer("latent_mean", mean)
        self.register_buffer("latent_std", std)

    def train(self, mode: bool = True) -> RLAWorldModel:
        """Switch the trainable parts; the frozen RLA always stays in eval mode."""
        super().train(mode)
        self.rla.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser should see (everything except the frozen RLA)."""
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ latents
    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, K, d)`` -> flow space ``(z - mean) / std``."""
        return (z - self.latent_mean) / self.latent_std

    def denormalize_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Flow space ``(B, K, d)`` -> RLA latent ``z``."""
        return x * self.latent_std + self.latent_mean

    @torch.no_grad()
    def encode_latent(self, s_t: torch.Tensor, s_th: torch.Tensor) -> torch.Tensor:
        """Frozen RLA encoder: ``(B, N, D)`` x 2 -> ``z (B, K, d)``."""
        return self.rla.encode(s_t, s_th)

    @torch.no_grad()
    def fit_normalization(self, batches: Iterable[dict[str, torch.Tensor]]) -> None:
        """Measure action statistics and (for ``latent_norm="per_dim"``) latent statistics.

        Args:
            batches: training batches in the :class:`rla_gym.data.windows.PairSampler` format
                (``s_t``, ``s_th``, ``actions`` padded, ``lengths``; ``s_prev`` for history
                models, whose motion scale is measured here too).
        """
        dev = self._device()
        zs, acts, motion, bodies, deltas = [], [], [], [], []
        for b in batches:
            if self.proprio_fields:
                if "p_t" not in b:
                    raise ValueError(
                        "this world model dreams the body; its batches need p_t and p_th "
                        "(PairSampler(..., proprio=...))"
                    )
                bodies.append(b["p_t"].float())
                deltas.append((b["p_th"] - b["p_t"]).float())
            if self.history > 0:
                if "s_prev" not in b:
                    raise ValueError(
                        f"this world model has history={self.history}; its batches need s_prev "
                        "(PairSampler(..., history=...))"
                    )
                motion.append(((b["s_t"] - b["s_prev"]).float() ** 2).mean(dim=(1, 2)))
            lengths = b["lengths"].to("cpu")
            mask = torch.arange(b["actions"].shape[1])[None] < lengths[:, None]
            acts.append(b["actions"].to("cpu")[mask])
            if self.config.latent_norm == "per_dim":
                zs.append(self.encode_latent(b["s_t"].to(dev), b["s_th"].to(dev)).cpu())
        if not acts:
            raise ValueError("fit_normalization needs at least one batch")
        self._fit_action_stats(torch.cat(acts).float())
        if bodies:
            # A constant body entry (e.g. a gripper that never moves) must not divide by ~0.
            self.proprio_mean.copy_(torch.cat(bodies).mean(0))
            self.proprio_std.copy_(torch.cat(bodies).std(0, unbiased=False).clamp_min(1e-3))
            self.body_delta_std.copy_(torch.cat(deltas).std(0, unbiased=False).clamp_min(1e-4))
        if motion:
            # RMS over the pairs; a data set without motion keeps the scale at 1.
            rms = float(torch.cat(motion).mean().sqrt())
            self.motion_scale.fill_(rms if rms > 0 else 1.0)
        if zs:
            z = torch.cat(zs).float()
            self.latent_mean.copy_(z.mean(0))
            std = z.std(0, unbiased=False) if len(z) > 1 else torch.ones_like(z[0])
            # Floor relative to the typical scale so near-constant latent channels are not blown up.
            self.latent_std.copy_(std.clamp_min(1e-3 * float(std.mean()) + 1e-6))

    # ------------------------------------------------------------------ network
    def condition_tokens(
        self,
        s_t: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        drop: torch.Tensor | None = None,
        s_prev: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The condition stage: ``(tokens (B, N, W), action vector (B, W))``.

        Args:
            s_t: ``(B, N, D)``.
            actions: ``(B, L, A)`` raw (un-normalised) actions, zero-padded.
            lengths: ``(B,)``.
            drop: optional ``bool (B,)``: rows whose action vector is replaced by the learned
                "no action" vector (needs ``config.action_dropout > 0``).
            s_prev: ``(B, N, D)`` the earlier frame (history models; checked).
            proprio: ``(B, P)`` the current body vector (body models; checked).
        """
        a = self.action_encoder(self.normalize_actions(actions, lengths), lengths)
        if drop is not None:
            a = torch.where(drop[:, None].to(a.device), self.null_action.to(a.dtype), a)
        extra = None
        if self.history > 0:
            prev = s_t if s_prev is None else s_prev
            extra = self.motion_proj((s_t - prev) / self.motion_scale)
        if self.proprio_fields:
            if proprio is None:
                raise ValueError("this world model dreams the body; pass proprio (B, P)")
            body = self.proprio_proj(self.normalize_body(proprio))[:, None]
            extra = body if extra is None else extra + body
        return self.condition(s_t, a, extra), a

    def flow_cache(self, tokens: torch.Tensor, a: torch.Tensor) -> FlowCache:
        """The flow stage's cache of the condition stage's output (:meth:`condition_tokens`):
        cross-attention K/V, and the action vector when ``config.action_in_flow``."""
        return self.flow.prepare(tokens, a if self.config.action_in_flow else None)

    # ------------------------------------------------------------------ body
    def normalize_body(self, proprio: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` body vector -> standardised with the training statistics."""
        return (proprio - self.proprio_mean) / self.proprio_std

    def body_change(
        self, tokens: torch.Tensor, a: torch.Tensor, proprio: torch.Tensor
    ) -> torch.Tensor:
        """The body head: condition ``tokens (B, N, W)``, action vector ``a (B, W)`` and current
        body ``(B, P)`` -> the standardised change of the body over the chunk ``(B, P)``."""
        return self.body_head(torch.cat([tokens.mean(1), a, self.normalize_body(proprio)], -1))

    def next_body(
        self, tokens: torch.Tensor, a: torch.Tensor, proprio: torch.Tensor
    ) -> torch.Tensor:
        """The predicted body vector after the chunk ``(B, P)`` (see :meth:`body_change`)."""
        return proprio + self.body_change(tokens, a, proprio) * self.body_delta_std

    def check_guidance(self, guidance: float) -> None:
        """Raise ``ValueError`` unless ``guidance`` can be used with this model.

        ``1`` is plain conditional sampling; any other weight needs the action-free prediction,
        which only a model trained with ``action_dropout > 0`` has learned.
        """
        if not (guidance >= 0 and math.isfinite(guidance)):
            raise ValueError(f"guidance must be a finite weight >= 0, got {guidance}")
        if guidance != 1.0 and self.config.action_dropout <= 0:
            raise ValueError(
                f"guidance={guidance} needs a world model trained with action dropout "
                "(WorldModelConfig.action_dropout > 0); this one was trained without it, so it "
                "has no action-free prediction to contrast with. Use guidance=1."
            )

    def loss(
        self,
        s_t: torch.Tensor,
        s_th: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
        s_prev: torch.Tensor | None = None,
        sibling_pairs: int = 0,
        sibling_weight: float = 0.0,
        p_t: torch.Tensor | None = None,
        p_th: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Flow-matching loss on normalised RLA latents of the true pair (+ the body head's).

        Args:
            s_t, s_th: ``(B, N, D)`` features at ``t`` and ``t + h``.
            actions: ``(B, H_max, A)`` zero-padded chunk ``a_{t:t+h}``.
            lengths: ``(B,)`` gaps ``h``.
            generator: source of the noise and flow times.
            s_prev: ``(B, N, D)`` features at ``t - history`` (history models).
            sibling_pairs: ``P``: rows ``2i`` and ``2i + 1`` (``i < P``) are siblings, two
                outcomes of one real state under different actions. They share their noise and
                flow time, and ``sibling_weight`` times the same loss is added on the *difference*
                of their velocities: with shared noise the target difference is exactly the
                difference of their latents, the part of the outcome the action decides, which
                the plain loss weighs no more than the action-independent rest.
            sibling_weight: weight of that difference loss.
            p_t, p_th: ``(B, P)`` body vectors at ``t`` and ``t + h`` (body models).

        Returns:
            ``{"loss": scalar, "velocity_l1": scalar, "velocity_mse": scalar}`` (plus
            ``"sibling_l1"`` with sibling pairs and ``"body_mse"``, the standardised body
            change's error, for body models).
        """
        s_t, actions, lengths = self.check_inputs(s_t, actions, lengths)
        s_prev = self.check_previous(s_t, s_prev)
        p_t = self.check_proprio(s_t, p_t)
        s_th = s_th.to(s_t.device, torch.float32)
        x_1 = self.normalize_latent(self.encode_latent(s_t, s_th))
        x_0 = noise_like(x_1.shape, generator, x_1.device)
        t = sample_time(x_1.shape[0], generator, self.config.time_distribution, device=x_1.device)
        if not 0 <= 2 * sibling_pairs <= x_1.shape[0]:
            raise ValueError(f"{sibling_pairs} sibling pairs do not fit a batch of {x_1.shape[0]}")
        x_0, t = _share_within_pairs(x_0, sibling_pairs), _share_within_pairs(t, sibling_pairs)
        drop = None
        if self.config.action_dropout > 0:
            u = torch.rand(x_1.shape[0], generator=generator, device=generator.device)
            drop = u < self.config.action_dropout
        tokens, a = self.condition_tokens(s_t, actions, lengths, drop, s_prev, p_t)
        cache = self.flow_cache(tokens, a)
        v = self.flow(interpolate(x_0, x_1, t), t, cache)
        target = velocity_target(x_0, x_1)
        loss = flow_loss(v, target, self.config.l1_weight, self.config.mse_weight)
        extra = {}
        if p_t is not None:
            if p_th is None:
                raise ValueError("a body model's loss needs p_th, the body vector at t + h")
            want = (p_th.to(p_t.device, torch.float32) - p_t) / self.body_delta_std
            body_mse = F.mse_loss(self.body_change(tokens, a, p_t), want)
            loss = loss + self.config.proprio_weight * body_mse
            extra["body_mse"] = body_mse.detach()
        if sibling_pairs:
            rows = slice(0, 2 * sibling_pairs)
            dv = v[rows][0::2] - v[rows][1::2]
            du = target[rows][0::2] - target[rows][1::2]
            loss = loss + sibling_weight * flow_loss(
                dv, du, self.config.l1_weight, self.config.mse_weight
            )
            extra["sibling_l1"] = F.l1_loss(dv.detach(), du)
        return {
            "loss": loss,
            "velocity_l1": F.l1_loss(v.detach(), target),
            "velocity_mse": F.mse_loss(v.detach(), target),
            **extra,
        }

    def forward(
        self,
        s_t: torch.Tensor,
        s_th: torch.Tensor,
        actions: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
        s_prev: torch.Tensor | None = None,
        sibling_pairs: int = 0,
        sibling_weight: float = 0.0,
        p_t: torch.Tensor | None = None,
        p_th: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training loss (same as :meth:`loss`); calling the module lets DDP sync gradients."""
        return self.loss(
            s_t, s_th, actions, lengths, generator, s_prev, sibling_pairs, sibling_weight, p_t, p_th
        )

    def sample_latent(
        self,
        cache: FlowCache,
        batch: int,
        *,
        steps: int,
        generator: Generators,
        method: str,
        num_samples: int = 1,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """Integrate the flow for a prepared cache of ``batch * num_samples`` rows (sample-major
        within a row) -> ``z (batch * num_samples, K, d)``.

        With ``guidance != 1`` the cache holds twice the rows: the action-conditioned ones first,
        then the same rows conditioned on the "no action" vector, and the velocity is
        classifier-free guided over the action.
        """
        x_0 = noise_for_rows(
            batch, num_samples, (self.latent_tokens, self.latent_dim), generator, self._device()
        )

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.flow(x, t, cache)

        fn = velocity if guidance == 1.0 else guided(velocity, guidance)
        x_1 = sample(fn, x_0, steps, method)  # type: ignore[arg-type]
        return self.denormalize_latent(x_1)

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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = s_t.shape[0]
        if guidance == 1.0:
            tokens, a = self.condition_tokens(s_t, actions, lengths, s_prev=s_prev, proprio=proprio)
            body_tokens, body_a = tokens, a
        else:
            # One condition pass for both halves: the rows with their actions, then without.
            drop = torch.arange(2 * b, device=s_t.device) >= b

            def two(x: torch.Tensor | None) -> torch.Tensor | None:
                return None if x is None else torch.cat([x, x])

            tokens, a = self.condition_tokens(
                two(s_t), two(actions), two(lengths), drop, two(s_prev), two(proprio)
            )
            body_tokens, body_a = tokens[:b], a[:b]
        cache = self.flow_cache(tokens, a)
        body = None if proprio is None else self.next_body(body_tokens, body_a, proprio)
        z = self.sample_latent(
            repeat_kv(cache, num_samples),
            b,
            steps=steps or self.config.default_flow_steps,
            generator=generator,
            method=method,
            num_samples=num_samples,
            guidance=guidance,
        )
        s_rep = s_t.repeat_interleave(num_samples, 0)
        s_next = self.rla.decode(s_rep, z)
        return s_next.view(b, num_samples, self.num_tokens, self.feature_dim), body

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write a self-contained checkpoint folder (the frozen RLA weights are embedded).

        Args:
            path: destination folder (replaced atomically).
            meta: extra provenance (training wall-clock, data, ...) for ``meta.json``.
        """
        meta = {"encoder_fingerprint": self.encoder_fingerprint, **(meta or {})}
        return save_checkpoint(path, self.checkpoint_config(), self, meta=meta)

    def checkpoint_config(self) -> dict[str, Any]:
        """The ``config.json`` content (its type added on save): WM config, embedded RLA config,
        fingerprint."""
        return {
            "world_model": self.config.to_dict(),
            "rla": _rla_config_dict(self.rla),
            "encoder_fingerprint": self.encoder_fingerprint,
        }

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        expected_fingerprint: str | None = None,
        device: str | torch.device = "cpu",
    ) -> RLAWorldModel:
        """Load a folder written by :meth:`save_pretrained`.

        Raises:
            MissingWeightsError, CorruptFileError: no or a broken checkpoint.
            EncoderMismatchError: ``expected_fingerprint`` differs from the stored one.
            ModelTypeError: the folder holds another model type.
        """
        from rla_gym.rla import RLAAutoencoder, RLAConfig

        ckpt = load_checkpoint(path, map_location="cpu")
        cfg = model_config(ckpt.config, cls.MODEL_TYPE, ckpt.path)
        if expected_fingerprint is not None:
            check_fingerprint(
                cfg.get("encoder_fingerprint", ""), expected_fingerprint, what=f"world model {path}"
            )
        rla = RLAAutoencoder(RLAConfig.from_dict(cfg["rla"]))
        model = cls(WorldModelConfig.from_dict(cfg["world_model"]), rla)
        load_state_strict(model, ckpt.state_dict, ckpt.path)
        model.encoder_fingerprint = cfg.get("encoder_fingerprint", "")
        model.meta = ckpt.meta
        return model.to(device).eval()
