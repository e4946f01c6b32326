"""Frozen visual encoders: frames ``uint8 (B, H, W, 3)`` -> patch features ``float32 (B, N, D)``."""

from __future__ import annotations

from rla_gym.features.base import FeatureEncoder, check_fingerprint, sha256_file

__all__ = ["FeatureEncoder", "check_fingerprint", "sha256_file"]
