"""``FrameDecoder``: patch features ``(N, D)`` on the encoder's grid -> an RGB frame.

RLA-WM dreams in feature space; this small convolutional network turns features back into
pixels so that a dreamed state can be *seen* (renders, videos, debugging). It is trained on a
dataset's real ``(features, frame)`` pairs (:mod:`rla_gym.decoder.train`) and never feeds back
into the dream: the world model, reward and agents only ever see features.

Architecture (defaults: 8x8 x 512 -> 128 px)::

    (B, N, D) -> (B, D, 8, 8)  standardised per channel with the training data's mean / std
    1x1 conv D -> 192, 3x3 conv 192 -> 192 + GroupNorm + SiLU              8 x 8
    3 x [nearest 2x upsample, 3x3 conv, GroupNorm, SiLU]  192 -> 128 -> 64 -> 32   16 .. 64
    3x3 conv 32 -> 12, pixel shuffle 2x, sigmoid                          3 x 128 x 128
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rla_gym.decoder.config import DecoderConfig
from rla_gym.errors import CorruptFileError, EncoderMismatchError
from rla_gym.utils.checkpoint import load_checkpoint, model_config, save_checkpoint

__all__ = ["FrameDecoder", "psnr"]


def _block(c_in: int, c_out: int, groups: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU()]


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for values in ``[0, 1]``.

    Args:
        pred: ``(B, 3, H, W)`` or ``(B, H, W, 3)``.
        target: same shape as ``pred``.

    Returns:
        ``(B,)``: ``10 log10(1 / MSE)`` (capped at 100 dB for identical images).
    """
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


class FrameDecoder(nn.Module):
    """Convolutional decoder from a grid of patch features to an RGB frame.

    Args:
        config: sizes, the token grid and the encoder fingerprint (see :class:`DecoderConfig`).

    Buffers ``feature_mean`` / ``feature_std`` (``(D,)``) standardise the input; they are set once
    from the training data (:meth:`fit_statistics`) and saved with the weights.
    """

    MODEL_TYPE: ClassVar[str] = "frame-decoder"
    """``config.json`` type of its checkpoints."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("feature_mean", torch.zeros(c.feature_dim))
        self.register_buffer("feature_std", torch.ones(c.feature_dim))
        layers: list[nn.Module] = [
            nn.Conv2d(c.feature_dim, c.width, 1),
            *_block(c.width, c.width, c.groups),
        ]
        prev = c.width
        for ch in c.channels:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_block(prev, ch, c.groups)]
            prev = ch
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(prev, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    # ------------------------------------------------------------------ checks
    def check_features(self, features: torch.Tensor, fingerprint: str | None = None) -> None:
        """Refuse features this decoder cannot have been trained on.

        Args:
            features: ``(B, N, D)``.
            fingerprint: the encoder fingerprint of ``features``, when known.

        Raises:
            EncoderMismatchError: another encoder fingerprint, or another ``(N, D)`` (grid or
                channels); the message names both.
        """
        c = self.config
        if fingerprint is not None and fingerprint != c.encoder_fingerprint:
            raise EncoderMismatchError(
                f"the frame decoder was trained on features of encoder "
                f"{c.encoder_fingerprint!r} but got features of {fingerprint!r}; train a decoder "
                f"on this encoder's features (`rla-gym train-decoder`)"
            )
        if features.dim() != 3 or tuple(features.shape[1:]) != (c.num_tokens, c.feature_dim):
            raise EncoderMismatchError(
                f"the frame decoder takes (B, {c.num_tokens}, {c.feature_dim}) features "
                f"({c.grid[0]}x{c.grid[1]} grid of encoder {c.encoder_fingerprint!r}) but got "
                f"shape {tuple(features.shape)}: features of another encoder or grid"
            )

    # ------------------------------------------------------------------ forward
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Decode features to frames.

        Args:
            features: ``(B, N, D)`` in raster token order.

        Returns:
            ``(B, 3, H, W)`` in ``[0, 1]``.
        """
        c = self.config
        gh, gw = c.grid
        x = (features.float() - self.feature_mean) / self.feature_std
        x = x.transpose(1, 2).reshape(len(x), c.feature_dim, gh, gw)
        return torch.sigmoid(self.head(self.body(x)))

    @torch.no_grad()
    def render(self, features: torch.Tensor, fingerprint: str | None = None) -> np.ndarray:
        """Checked decoding to displayable frames: ``(B, N, D)`` -> ``uint8 (B, H, W, 3)``.

        Raises:
            EncoderMismatchError: see :meth:`check_features`.
        """
        self.check_features(features, fingerprint)
        param = next(self.parameters())
        img = self(features.to(param.device))
        return (img.permute(0, 2, 3, 1) * 255.0).round().clamp(0, 255).byte().cpu().numpy()

    @torch.no_grad()
    def fit_statistics(self, features: torch.Tensor, frames: torch.Tensor) -> None:
        """Set the input standardisation and the output bias from training data.

        Args:
            features: ``(M, N, D)`` sample of training features.
            frames: ``(M, 3, H, W)`` their frames in ``[0, 1]``; the head starts at their mean
                colour, so the first steps do not spend themselves learning the background.
        """
        flat = features.float().reshape(-1, self.config.feature_dim)
        self.feature_mean.copy_(flat.mean(0))
        # A constant channel (dead ReLU) must not divide by ~0.
        self.feature_std.copy_(flat.std(0, unbiased=False).clamp_min(1e-3))
        colour = frames.float().mean(dim=(0, 2, 3)).clamp(1e-3, 1 - 1e-3)
        conv = self.head[0]
        assert isinstance(conv, nn.Conv2d) and conv.bias is not None
        # Pixel shuffle reads channel 4*c + i as sub-pixel i of colour c.
        conv.bias.copy_(torch.logit(colour).repeat_interleave(4))

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ persistence
    def save_pretrained(
        self, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
    ) -> None:
        """Write ``config.json`` + ``model.safetensors`` (+ ``meta.json``)."""
        save_checkpoint(path, self.config.to_dict(), self, meta=meta)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        expected_fingerprint: str | None = None,
        expected_grid: tuple[int, int] | None = None,
        expected_feature_dim: int | None = None,
    ) -> FrameDecoder:
        """Load a checkpoint folder (a trainer's ``checkpoint/`` or a bundle's ``decoder/``).

        Weights stored as int8 are dequantised by the checkpoint loader; kernels stored flattened
        to ``(out, in * k * k)`` (how bundles keep int8 groups along the input channels) are
        reshaped back.

        Args:
            path: the folder (also one written before ``config.json`` named its type).
            device: device of the returned model.
            expected_fingerprint: the encoder fingerprint the decoder must have been trained on.
            expected_grid: the token grid it must decode.
            expected_feature_dim: the feature size ``D`` it must take.

        Returns:
            The decoder in eval mode.

        Raises:
            MissingWeightsError: ``path`` does not exist.
            CorruptFileError: files missing/unreadable or weights inconsistent with the config.
            EncoderMismatchError: another encoder fingerprint, grid or feature size than expected.
            ModelTypeError: the folder holds another model type.
            ValueError: ``config.json`` is not a decoder config.
        """
        ckpt = load_checkpoint(path, map_location=device)
        try:
            config = DecoderConfig.from_dict(
                model_config(ckpt.config, cls.MODEL_TYPE, ckpt.path, untyped=True)
            )
        except TypeError as err:
            raise ValueError(
                f"{ckpt.path}/config.json is not a valid DecoderConfig: {err}"
            ) from err
        want = {
            "encoder": expected_fingerprint,
            "grid": expected_grid,
            "feature_dim": expected_feature_dim,
        }
        have = {
            "encoder": config.encoder_fingerprint,
            "grid": config.grid,
            "feature_dim": config.feature_dim,
        }
        bad = [
            k
            for k, v in want.items()
            if v is not None and (tuple(v) if k == "grid" else v) != have[k]
        ]  # type: ignore[arg-type]
        if bad:
            raise EncoderMismatchError(
                f"frame decoder {ckpt.path} does not match: "
                + "; ".join(f"{k} {have[k]!r} in the decoder vs {want[k]!r} expected" for k in bad)
                + ". Train a decoder on this bundle's data (`rla-gym train-decoder`) and add it "
                "with `rla-gym add-decoder`"
            )
        model = cls(config)
        own = model.state_dict()
        state = {
            k: v.reshape(own[k].shape)
            if k in own and v.shape != own[k].shape and v.numel() == own[k].numel()
            else v
            for k, v in ckpt.state_dict.items()
        }
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise CorruptFileError(
                f"weights in {ckpt.path} do not match its config.json ({str(err)[:300]}); the "
                f"folder mixes files of different models — re-train or re-save it"
            ) from err
        return model.to(device).eval()
