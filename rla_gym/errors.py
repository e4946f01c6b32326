"""Exceptions that name their fix.

Every error the package raises on bad input derives from :class:`RLAGymError`, and its message says
what was expected and how to put it right.
"""

from __future__ import annotations

__all__ = [
    "CorruptFileError",
    "EncoderMismatchError",
    "MissingExtraError",
    "MissingWeightsError",
    "ModelTypeError",
    "RLAGymError",
]


class RLAGymError(Exception):
    """Base class of all rla-gym errors."""


class MissingExtraError(RLAGymError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""

    def __init__(self, package: str, extra: str, what: str = "") -> None:
        what = f" {what}" if what else ""
        super().__init__(
            f"{package} is required{what} but is not installed. "
            f'Install it with: pip install "rla-gym[{extra}]"'
        )
        self.package = package
        self.extra = extra


class MissingWeightsError(RLAGymError, FileNotFoundError):
    """Pretrained weights were asked for but cannot be found; never replaced by random weights."""


class EncoderMismatchError(RLAGymError, ValueError):
    """Features, datasets or checkpoints made with one encoder were used with another."""


class CorruptFileError(RLAGymError, OSError):
    """A stored file is truncated, unreadable or inconsistent."""


class ModelTypeError(RLAGymError, ValueError):
    """A checkpoint holds another model type than its loader reads, or a type no loader knows."""
