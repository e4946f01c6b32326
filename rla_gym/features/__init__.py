"""Frozen visual encoders: frames ``uint8 (B, H, W, 3)`` -> patch features ``float32 (B, N, D)``.

Encoder classes are imported lazily (PEP 562) so that importing this package pulls in neither torch
nor onnxruntime; only the encoder you build loads its runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rla_gym.features.base import FeatureEncoder, check_fingerprint, sha256_file
from rla_gym.features.registry import (
    DEFAULT_ENCODER,
    ENCODERS,
    encoder_from_fingerprint,
    make_encoder,
)

if TYPE_CHECKING:
    from rla_gym.features.dinov2 import Dinov2Encoder
    from rla_gym.features.opennsfw import OpenNSFWResNetEncoder
    from rla_gym.features.tiny import TinyEncoder

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "Dinov2Encoder",
    "FeatureEncoder",
    "OpenNSFWResNetEncoder",
    "TinyEncoder",
    "check_fingerprint",
    "encoder_from_fingerprint",
    "make_encoder",
    "sha256_file",
]

_LAZY = {
    "Dinov2Encoder": "rla_gym.features.dinov2",
    "OpenNSFWResNetEncoder": "rla_gym.features.opennsfw",
    "TinyEncoder": "rla_gym.features.tiny",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
