"""The RLA (residual latent action) autoencoder: config, model and training."""

from __future__ import annotations

from rla_gym.rla.config import RLAConfig
from rla_gym.rla.latents import encode_pairs
from rla_gym.rla.model import RLAAutoencoder, reconstruction_loss

__all__ = [
    "RLAAutoencoder",
    "RLAConfig",
    "TrainRLAConfig",
    "encode_pairs",
    "reconstruction_loss",
    "train_rla",
]


def __getattr__(name: str) -> object:
    # The trainer pulls in the data layer (h5py); import it only when asked for.
    if name in ("TrainRLAConfig", "train_rla"):
        from rla_gym.rla import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
