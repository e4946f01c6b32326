"""The RLA autoencoder: residual latent actions between two feature frames (paper §3).

``z = f_enc(s_{t+h} - s_t)`` compresses the token-wise feature residual into ``K`` latent tokens
of ``d`` channels; ``ŝ_{t+h} = f_dec(s_t, z)`` reconstructs the future frame in one pass.

Both halves are pre-LN transformers over ``K + N`` tokens with ``K`` learned tokens prepended:

* encoder: residual tokens ``(B, N, D)`` -> Linear ``D -> width`` -> blocks -> LayerNorm ->
  Linear ``width -> d`` at the ``K`` learned positions -> ``z (B, K, d)``;
* decoder: ``s_t`` tokens -> Linear ``D -> width``; ``z`` -> Linear ``d -> width`` added to ``K``
  learned token embeddings and prepended -> blocks -> LayerNorm -> **zero-initialised** Linear
  ``width -> D`` at the ``N`` feature positions.

Positional embedding (our addition, ``RLAConfig.positional_embedding``): the paper adds none
because DINOv3 tokens carry their position. The encoder input is a *residual*, and a residual token
of a moved object says *what* changed but not *where*; with a permutation-equivariant transformer,
the latent would then be unable to tell a cube moving left from one moving right in another part of
the image. CNN features (our default encoder) carry even less absolute position than DINO tokens.
A learned per-token embedding (small init) fixes this at a cost of ``N * width`` parameters.

Linear path (``RLAConfig.linear_rank = r > 0``, our addition): ``z`` also receives a linear map of
the residual's coordinates along ``r`` directions ``U (r, N*D)``, and the decoder adds ``U^T``
times a linear map of ``z`` back. :meth:`RLAAutoencoder.init_linear_path` sets ``U`` to the
principal components of training residuals and the maps to scaled identities, so the model
starts as the optimal rank-``r`` linear autoencoder and the transformers learn what it misses.

Zero-initialised head: in ``"absolute"`` mode the untrained decoder predicts ``0`` (paper); in
``"residual"`` mode it predicts ``s_t``, i.e. "nothing moves", which is already a strong baseline
for short gaps and makes early training focus on what changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rla_gym.errors import CorruptFileError
from rla_gym.features.base import check_fingerprint
from rla_gym.rla.config import RLAConfig
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint

__all__ = ["RLAAutoencoder", "reconstruction_loss"]


def reconstruction_loss(
    s_hat: torch.Tensor,
    s_th: torch.Tensor,
    l1_weight: float = 1.0,
    mse_weight: float = 1.0,
    s_t: torch.Tensor | None = None,
    change_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``l1_weight * L1 + mse_weight * MSE`` between predicted and true tokens (paper §3.3).

    With ``change_weight = a > 0`` every token's error is weighted by
    ``(1 + a * c / mean(c)) / (1 + a)``, where ``c = mean_D |s_{t+h} - s_t|`` is how much that
    token changes (mean over the batch's tokens): the weights average 1, and the few patches an
    action moves count as much as the static background they are drowned in.

    Args:
        s_hat: predicted ``(B, N, D)``.
        s_th: target ``(B, N, D)``.
        l1_weight: weight of the L1 term.
        mse_weight: weight of the MSE term.
        s_t: the start ``(B, N, D)``; needed when ``change_weight > 0``.
        change_weight: ``a`` above.

    Returns:
        ``(loss, l1, mse)`` scalars (``l1`` and ``mse`` weighted like the loss).
    """
    err = s_hat - s_th
    if change_weight > 0:
        if s_t is None:
            raise ValueError("change_weight > 0 needs s_t to know which tokens change")
        with torch.no_grad():
            c = (s_th - s_t).abs().mean(-1, keepdim=True)  # (B, N, 1)
            w = (1 + change_weight * c / c.mean().clamp_min(1e-8)) / (1 + change_weight)
        l1, mse = (w * err.abs()).mean(), (w * err.square()).mean()
    else:
        l1, mse = err.abs().mean(), err.square().mean()
    return l1_weight * l1 + mse_weight * mse, l1, mse


class _TokenTransformer(nn.Module):
    """Pre-LN transformer over ``[K learned tokens; N input tokens]`` with a final LayerNorm.

    Args:
        cfg: sizes.
        in_dim: channels of the ``N`` input tokens.
    """

    def __init__(self, cfg: RLAConfig, in_dim: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(in_dim, cfg.width)
        # The official code initialises latent tokens with N(0, 1) * 0.2; same scale here.
        self.latent = nn.Parameter(torch.randn(cfg.latent_tokens, cfg.width) * 0.2)
        self.pos = (
            nn.Parameter(torch.randn(cfg.num_tokens, cfg.width) * 0.02)
            if cfg.positional_embedding
            else None
        )
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.width,
            nhead=cfg.heads,
            dim_feedforward=round(cfg.width * cfg.mlp_ratio),
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor only matters with padding masks, which we never use.
        self.blocks = nn.TransformerEncoder(layer, num_layers=cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.k = cfg.latent_tokens

    def forward(self, x: torch.Tensor, latent_extra: torch.Tensor | None = None) -> torch.Tensor:
        """Run the blocks.

        Args:
            x: input tokens ``(B, N, in_dim)``.
            latent_extra: optional ``(B, K, width)`` added to the learned tokens.

        Returns:
            Normalised outputs ``(B, K + N, width)``.
        """
        h = self.in_proj(x)
        if self.pos is not None:
            h = h + self.pos
        lat = self.latent.expand(x.shape[0], -1, -1)
        if latent_extra is not None:
            lat = lat + latent_extra
        return self.norm(self.blocks(torch.cat([lat, h], dim=1)))


class RLAAutoencoder(nn.Module):
    """Residual latent action autoencoder.

    Args:
        config: an :class:`RLAConfig`.
    """

    MODEL_TYPE: ClassVar[str] = "rla"
    """``config.json`` type of its checkpoints."""

    def __init__(self, config: RLAConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = _TokenTransformer(c, c.feature_dim)
        self.enc_out = nn.Linear(c.width, c.latent_dim)
        self.decoder = _TokenTransformer(c, c.feature_dim)
        self.z_proj = nn.Linear(c.latent_dim, c.width)
        self.dec_out = nn.Linear(c.width, c.feature_dim)
        nn.init.zeros_(self.dec_out.weight)
        nn.init.zeros_(self.dec_out.bias)
        if c.linear_rank:
            r, flat = c.linear_rank, c.num_tokens * c.feature_dim
            # Placeholder directions (orthonormal rows) until init_linear_path sees data.
            basis = torch.linalg.qr(torch.randn(flat, r))[0].T.contiguous()
            self.linear_basis = nn.Parameter(basis)
            self.linear_in = nn.Linear(r, c.latent_size, bias=False)
            self.linear_out = nn.Linear(c.latent_size, r, bias=False)
            self._set_linear_scales(torch.ones(r))
            # The transformer's share of z starts at zero, so the untrained model *is* the
            # linear autoencoder rather than that plus noise.
            nn.init.zeros_(self.enc_out.weight)
            nn.init.zeros_(self.enc_out.bias)

    def _set_linear_scales(self, scale: torch.Tensor) -> None:
        """Diagonal maps: coordinate ``i`` -> ``z`` number ``i`` / ``scale[i]``, and back."""
        r = self.config.linear_rank
        with torch.no_grad():
            self.linear_in.weight.zero_()
            self.linear_out.weight.zero_()
            idx = torch.arange(r)
            self.linear_in.weight[idx, idx] = 1.0 / scale
            self.linear_out.weight[idx, idx] = scale

    @torch.no_grad()
    def init_linear_path(self, residuals: torch.Tensor) -> torch.Tensor:
        """Set the linear path to the best rank-``r`` linear code of ``residuals``.

        Args:
            residuals: training residuals ``s_{t+h} - s_t``, ``(M, N, D)`` with ``M >= r``.

        Returns:
            The fraction of the residuals' energy the ``r`` directions keep (a scalar tensor).

        Raises:
            ValueError: the model has no linear path, or wrong shapes / too few residuals.
        """
        c = self.config
        if not c.linear_rank:
            raise ValueError("this RLA has no linear path (RLAConfig.linear_rank = 0)")
        self._check_tokens(residuals, "residuals")
        if residuals.shape[0] < c.linear_rank:
            raise ValueError(
                f"need at least linear_rank={c.linear_rank} residuals, got {residuals.shape[0]}"
            )
        flat = residuals.reshape(residuals.shape[0], -1).float()
        # Uncentred: the mean motion is part of what the code should carry.
        q = min(c.linear_rank + 10, *flat.shape)
        _, sv, v = torch.svd_lowrank(flat, q=q, niter=4)
        basis = v[:, : c.linear_rank].T.contiguous()
        self.linear_basis.copy_(basis.to(self.linear_basis))
        # One scale for all r coordinates (their joint RMS), not whitening: a flow model whose
        # loss treats every number of z alike then weighs each direction by how much of the
        # residual it carries. Whitened coordinates made a Lift RLA-WM spend its loss on the
        # many small, unpredictable directions (counterfactual direction 0.07; one scale: 0.19).
        rms = (sv[: c.linear_rank].square().mean() / flat.shape[0]).sqrt().clamp_min(1e-6)
        self._set_linear_scales(rms.expand(c.linear_rank).to(self.linear_in.weight))
        return (flat @ basis.T).square().sum() / flat.square().sum().clamp_min(1e-12)

    # ------------------------------------------------------------------ checks
    def _check_tokens(self, x: torch.Tensor, name: str) -> None:
        c = self.config
        if (
            not isinstance(x, torch.Tensor)
            or x.ndim != 3
            or x.shape[1:] != (c.num_tokens, c.feature_dim)
        ):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{name} must have shape (B, {c.num_tokens}, {c.feature_dim}) = (batch, tokens, "
                f"feature_dim) for this autoencoder, got {got}; were the features made with "
                f"another encoder or resolution?"
            )
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf values")

    def _check_latent(self, z: torch.Tensor) -> None:
        c = self.config
        if (
            not isinstance(z, torch.Tensor)
            or z.ndim != 3
            or z.shape[1:] != (c.latent_tokens, c.latent_dim)
        ):
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape (B, {c.latent_tokens}, {c.latent_dim}), got {got}")
        if not torch.isfinite(z).all():
            raise ValueError("z contains NaN or inf values")

    # ------------------------------------------------------------------ API
    def encode(self, s_t: torch.Tensor, s_th: torch.Tensor) -> torch.Tensor:
        """Latent action between two frames.

        Args:
            s_t: features at ``t``, ``(B, N, D)``.
            s_th: features at ``t + h``, ``(B, N, D)``.

        Returns:
            ``z`` of shape ``(B, K, d)``.

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        self._check_tokens(s_t, "s_t")
        self._check_tokens(s_th, "s_th")
        if s_t.shape[0] != s_th.shape[0]:
            raise ValueError(f"s_t and s_th batch sizes differ: {s_t.shape[0]} vs {s_th.shape[0]}")
        c = self.config
        residual = s_th - s_t
        z = self.enc_out(self.encoder(residual)[:, : c.latent_tokens])
        if c.linear_rank:
            coords = residual.reshape(residual.shape[0], -1) @ self.linear_basis.T  # (B, r)
            z = z + self.linear_in(coords).view_as(z)
        return z

    def decode(self, s_t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Predict ``s_{t+h}`` from ``s_t`` and a latent action.

        Args:
            s_t: features at ``t``, ``(B, N, D)``.
            z: latent action ``(B, K, d)``.

        Returns:
            ``ŝ_{t+h}`` of shape ``(B, N, D)``.

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        self._check_tokens(s_t, "s_t")
        self._check_latent(z)
        if s_t.shape[0] != z.shape[0]:
            raise ValueError(f"s_t and z batch sizes differ: {s_t.shape[0]} vs {z.shape[0]}")
        h = self.decoder(s_t, latent_extra=self.z_proj(z))
        out = self.dec_out(h[:, self.config.latent_tokens :])
        if self.config.linear_rank:
            coords = self.linear_out(z.reshape(z.shape[0], -1))  # (B, r)
            out = out + (coords @ self.linear_basis).view_as(out)
        return s_t + out if self.config.decoder_target == "residual" else out

    def forward(self, s_t: torch.Tensor, s_th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode then decode.

        Args:
            s_t: ``(B, N, D)``.
            s_th: ``(B, N, D)``.

        Returns:
            ``(ŝ_{t+h} (B, N, D), z (B, K, d))``.
        """
        z = self.encode(s_t, s_th)
        return self.decode(s_t, z), z

    def loss(self, s_t: torch.Tensor, s_th: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction loss of one batch plus logging metrics.

        Returns:
            ``(loss, metrics)`` with metrics ``rla/l1``, ``rla/mse``, ``rla/copy_l1`` (the L1 of
            predicting "no change", a per-batch baseline) and ``rla/z_std``.
        """
        s_hat, z = self(s_t, s_th)
        c = self.config
        loss, _, _ = reconstruction_loss(
            s_hat, s_th, c.l1_weight, c.mse_weight, s_t, c.change_weight
        )
        with torch.no_grad():
            metrics = {
                "rla/l1": float(F.l1_loss(s_hat, s_th)),
                "rla/mse": float(F.mse_loss(s_hat, s_th)),
                "rla/copy_l1": float(F.l1_loss(s_t, s_th)),
                "rla/z_std": float(z.std()),
            }
        return loss, metrics

    # ------------------------------------------------------------------ persistence
    def save_pretrained(
        self, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
    ) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ ``meta.json``) atomically."""
        return save_checkpoint(path, self.config.to_dict(), self, meta=meta)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        expected_fingerprint: str | None = None,
    ) -> RLAAutoencoder:
        """Load a checkpoint folder.

        Args:
            path: folder written by :meth:`save_pretrained` or the trainer (also one written
                before ``config.json`` named its type).
            device: device of the returned model.
            expected_fingerprint: if given, the encoder fingerprint the checkpoint must match.

        Returns:
            The model in eval mode.

        Raises:
            MissingWeightsError: ``path`` does not exist.
            CorruptFileError: files missing/unreadable, or weights inconsistent with the config.
            EncoderMismatchError: the checkpoint was trained on another encoder's features.
            ModelTypeError: the folder holds another model type.
            ValueError: ``config.json`` has unknown keys or invalid values.
        """
        ckpt = load_checkpoint(path, map_location=device)
        try:
            config = RLAConfig.from_dict(
                model_config(ckpt.config, cls.MODEL_TYPE, ckpt.path, untyped=True)
            )
        except TypeError as err:
            raise ValueError(f"{ckpt.path}/config.json is not a valid RLAConfig: {err}") from err
        if expected_fingerprint is not None:
            check_fingerprint(
                config.encoder_fingerprint, expected_fingerprint, what=f"RLA checkpoint {ckpt.path}"
            )
        model = cls(config)
        own = model.state_dict()
        missing = sorted(set(own) - set(ckpt.state_dict))
        unexpected = sorted(set(ckpt.state_dict) - set(own))
        bad = sorted(
            f"{k}: file {tuple(v.shape)} vs config {tuple(own[k].shape)}"
            for k, v in ckpt.state_dict.items()
            if k in own and v.shape != own[k].shape
        )
        if missing or unexpected or bad:
            raise CorruptFileError(
                f"weights in {ckpt.path} do not match its config.json "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatches "
                f"{bad[:5]}); the folder mixes files of different models — re-save it"
            )
        model.load_state_dict(ckpt.state_dict)
        return model.to(device).eval()

    def num_parameters(self) -> int:
        """Total trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
