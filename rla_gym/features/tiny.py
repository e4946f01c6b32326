"""A deterministic random-projection encoder. For tests only: its features mean nothing."""

from __future__ import annotations

import hashlib

import numpy as np

from rla_gym.features.base import FeatureEncoder

__all__ = ["TinyEncoder"]


class TinyEncoder(FeatureEncoder):
    """Fixed random stride-16 patch projection, for tests only (never for real training).

    Each non-overlapping 16x16x3 patch is flattened, scaled to ``[-1, 1]`` and projected with a
    seeded Gaussian matrix, then passed through ``tanh``: this is a 16x16 conv with stride 16. It is
    fast, needs only numpy and gives the same features for the same ``(seed, feature_dim)`` on every
    machine, so tests can exercise the data path without weights.

    Args:
        feature_dim: ``D``, channels per token.
        seed: seed of the projection matrix.
        batch_size: frames per projection inside :meth:`encode`.
    """

    name = "tiny"
    stride = 16

    def __init__(self, feature_dim: int = 16, seed: int = 0, batch_size: int = 256) -> None:
        if feature_dim <= 0:
            raise ValueError(f"feature_dim must be positive, got {feature_dim}")
        self.feature_dim = int(feature_dim)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        patch = self.stride * self.stride * 3
        rng = np.random.default_rng(self.seed)
        # 1/sqrt(fan_in) keeps pre-activations O(1), so tanh does not saturate to +-1 everywhere.
        self._weight = (rng.standard_normal((patch, self.feature_dim)) / np.sqrt(patch)).astype(
            np.float32
        )
        self._sha256 = hashlib.sha256(self._weight.tobytes()).hexdigest()

    @property
    def weights_sha256(self) -> str:
        """sha256 of the projection matrix bytes (a function of seed and ``D``)."""
        return self._sha256

    @property
    def fingerprint(self) -> str:
        """``"tiny@s<seed>-d<D>-<8 hex>"``: seed and ``D`` readable, hash guards numpy changes."""
        return f"{self.name}@s{self.seed}-d{self.feature_dim}-{self._sha256[:8]}"

    def _encode_batch(self, frames: np.ndarray) -> np.ndarray:
        """``uint8 (b, H, W, 3)`` -> ``float32 (b, H/16 * W/16, D)``."""
        b, h, w, _ = frames.shape
        s = self.stride
        gh, gw = h // s, w // s
        # (b, gh, s, gw, s, 3) -> (b, gh, gw, s, s, 3): tokens in raster order, patch pixels inner.
        patches = frames.reshape(b, gh, s, gw, s, 3).transpose(0, 1, 3, 2, 4, 5)
        x = patches.reshape(b, gh * gw, s * s * 3).astype(np.float32) * (2.0 / 255.0) - 1.0
        return np.tanh(x @ self._weight)
