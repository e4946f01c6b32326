"""Encoder registry: names -> factories, the offline default, and rebuilding from a fingerprint."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from rla_gym.features.base import FeatureEncoder, check_fingerprint

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "encoder_from_fingerprint", "make_encoder"]

# The only pretrained encoder that installs offline (ImageNet-derived ResNet CNN, not DINO); see
# rla_gym.features.opennsfw for why.
DEFAULT_ENCODER = "opennsfw-resnet50-res4"


def _opennsfw(**kwargs: Any) -> FeatureEncoder:
    from rla_gym.features.opennsfw import OpenNSFWResNetEncoder

    return OpenNSFWResNetEncoder(**kwargs)


def _dinov2(variant: str, **kwargs: Any) -> FeatureEncoder:
    from rla_gym.features.dinov2 import Dinov2Encoder

    return Dinov2Encoder(variant=variant, **kwargs)


def _tiny(**kwargs: Any) -> FeatureEncoder:
    from rla_gym.features.tiny import TinyEncoder

    return TinyEncoder(**kwargs)


# Factories import lazily so that `import rla_gym.features` needs neither torch nor onnxruntime.
ENCODERS: dict[str, Callable[..., FeatureEncoder]] = {
    "opennsfw-resnet50-res4": _opennsfw,
    "dinov2-vits14": partial(_dinov2, "vits14"),
    "dinov2-vitb14": partial(_dinov2, "vitb14"),
    "tiny": _tiny,
}


def make_encoder(name: str = DEFAULT_ENCODER, **kwargs: Any) -> FeatureEncoder:
    """Build a registered encoder.

    Args:
        name: a key of :data:`ENCODERS`.
        **kwargs: passed to the encoder's constructor (e.g. ``weights=`` for DINOv2).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        factory = ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}") from None
    return factory(**kwargs)


_TINY_FP = re.compile(r"^tiny@s(-?\d+)-d(\d+)-[0-9a-f]{8}$")


def encoder_from_fingerprint(fingerprint: str, **kwargs: Any) -> FeatureEncoder:
    """Rebuild the encoder a fingerprint names and check that it really matches.

    Args:
        fingerprint: e.g. ``"opennsfw-resnet50-res4@864bb37bf886"`` or ``"tiny@s0-d16-1a2b3c4d"``.
        **kwargs: constructor arguments the fingerprint cannot carry (e.g. DINOv2 ``weights=``).

    Raises:
        ValueError: the fingerprint names no registered encoder, or names random DINOv2 weights
            (use ``Dinov2Encoder.random_init`` explicitly).
        EncoderMismatchError: the rebuilt encoder has a different fingerprint (other weights).
    """
    name, sep, rest = fingerprint.partition("@")
    if not sep:
        raise ValueError(f"not an encoder fingerprint (expected 'name@hash'): {fingerprint!r}")
    if rest.startswith("random-"):
        raise ValueError(
            f"{fingerprint!r} was made with randomly initialised weights; rebuild it explicitly "
            f"with "
            f"Dinov2Encoder.random_init(...) if that is really intended"
        )
    if name == "tiny" and (m := _TINY_FP.match(fingerprint)):
        kwargs = {"seed": int(m.group(1)), "feature_dim": int(m.group(2)), **kwargs}
    if name.startswith("dinov2-") and "+" in rest and "dtype" not in kwargs:
        import torch

        kwargs["dtype"] = getattr(torch, rest.split("+", 1)[1].replace("bf16", "bfloat16"))
    encoder = make_encoder(name, **kwargs)
    check_fingerprint(fingerprint, encoder.fingerprint, what="the requested encoder")
    return encoder
