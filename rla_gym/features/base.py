"""The encoder interface: camera frames in, patch features out.

An encoder is frozen. It maps ``uint8`` RGB frames of shape ``(B, H, W, 3)`` to ``float32``
patch features of shape ``(B, N, D)`` where ``N = gh * gw`` tokens in raster order over a
``(gh, gw)`` grid. Its :attr:`FeatureEncoder.fingerprint` (name + weights checksum) is stored
with every dataset and checkpoint so features of different encoders are never mixed silently.
"""

from __future__ import annotations

import abc
import hashlib
from pathlib import Path

import numpy as np

from rla_gym.errors import EncoderMismatchError

__all__ = ["FeatureEncoder", "check_fingerprint", "sha256_file"]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_fingerprint(expected: str, actual: str, what: str = "features") -> None:
    """Raise :class:`EncoderMismatchError` unless two encoder fingerprints agree."""
    if expected != actual:
        raise EncoderMismatchError(
            f"{what} were made with encoder {expected!r} but encoder {actual!r} was requested; "
            f"use the same encoder (rla_gym.features.make_encoder) or re-encode with "
            f"`rla-gym encode`"
        )


class FeatureEncoder(abc.ABC):
    """A frozen image encoder producing a grid of patch features.

    Attributes:
        name: registry name, e.g. ``"opennsfw-resnet50-res4"``.
        feature_dim: ``D``, channels per token.
        stride: pixels per token side; ``H`` and ``W`` must be multiples of it.
        batch_size: frames per forward pass inside :meth:`encode` (bounds memory).
    """

    name: str
    feature_dim: int
    stride: int
    batch_size: int = 32

    @property
    @abc.abstractmethod
    def weights_sha256(self) -> str:
        """Hex sha256 of the weights actually loaded (or of the seed for test encoders)."""

    @property
    def fingerprint(self) -> str:
        """Stable identity: ``"<name>@<first 12 hex of the weights sha256>"``."""
        return f"{self.name}@{self.weights_sha256[:12]}"

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(gh, gw)`` for a frame of ``height x width`` pixels.

        Raises:
            ValueError: the size is not a positive multiple of :attr:`stride`.
        """
        if height <= 0 or width <= 0 or height % self.stride or width % self.stride:
            raise ValueError(
                f"{self.name} needs frames whose height and width are positive multiples of "
                f"{self.stride} px, got {height}x{width}; collect at e.g. 128 or 224 px"
            )
        return height // self.stride, width // self.stride

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """Encode frames.

        Args:
            frames: ``uint8`` array ``(B, H, W, 3)``; a single ``(H, W, 3)`` frame is accepted.

        Returns:
            ``float32`` array ``(B, N, D)`` with ``N = gh * gw`` in raster order.
        """
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"{self.name} expects uint8 frames of shape (B, H, W, 3), got "
                f"{frames.dtype} {tuple(frames.shape)}"
            )
        gh, gw = self.grid_shape(frames.shape[1], frames.shape[2])
        out = np.empty((frames.shape[0], gh * gw, self.feature_dim), dtype=np.float32)
        for i in range(0, frames.shape[0], self.batch_size):
            out[i : i + self.batch_size] = self._encode_batch(frames[i : i + self.batch_size])
        return out

    __call__ = encode

    @abc.abstractmethod
    def _encode_batch(self, frames: np.ndarray) -> np.ndarray:
        """Encode one batch: ``uint8 (b, H, W, 3)`` -> ``float32 (b, N, D)`` (sizes are checked)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fingerprint={self.fingerprint!r}, dim={self.feature_dim})"
