"""One loader for every checkpoint folder: :func:`load_model` dispatches on ``config.json``'s type.

Each model class declares its ``MODEL_TYPE`` next to the model, and
:func:`~rla_gym.utils.checkpoint.save_checkpoint` writes it as ``"type"`` in ``config.json``
(LeRobot's ``type`` field). This module sits above the model rooms, so it may import them all; the
rooms themselves only see :mod:`rla_gym.utils.checkpoint`.

Example:
    >>> from rla_gym.models import model_loaders
    >>> sorted(model_loaders())
    ['actor-critic', 'direct', 'fm', 'frame-decoder', 'ppo', 'progress-head', 'rla', 'rla-wm']
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from rla_gym.agents.networks import ActorCritic
from rla_gym.agents.ppo import PPO
from rla_gym.decoder.model import FrameDecoder
from rla_gym.errors import ModelTypeError
from rla_gym.reward.progress import ProgressHead
from rla_gym.rla.model import RLAAutoencoder
from rla_gym.utils.checkpoint import TYPE_KEY, config_type, read_config
from rla_gym.world_model.baselines import DirectRegressionWM, FeatureFlowWM
from rla_gym.world_model.model import RLAWorldModel

__all__ = ["load_model", "model_loaders"]


def model_loaders() -> dict[str, Callable[..., Any]]:
    """``type -> loader(path, device=...)`` of every model that writes checkpoint folders."""
    pretrained = (
        RLAAutoencoder,
        RLAWorldModel,
        DirectRegressionWM,
        FeatureFlowWM,
        ProgressHead,
        FrameDecoder,
    )
    return {
        **{cls.MODEL_TYPE: cls.from_pretrained for cls in pretrained},
        ActorCritic.MODEL_TYPE: ActorCritic.load,
        PPO.MODEL_TYPE: PPO.load,
    }


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Any:
    """Load any checkpoint folder with the loader its ``config.json`` type names.

    Args:
        path: a folder written by a model's ``save_pretrained`` / ``save`` or by a trainer.
        device: where the model goes.

    Returns:
        The model as its class's loader returns it (a PPO folder gives a
        :class:`~rla_gym.agents.PPO` without an env).

    Raises:
        MissingWeightsError: ``path`` does not exist.
        CorruptFileError: ``path`` has no readable ``config.json`` (or broken weights).
        ModelTypeError: ``config.json`` names no type (checkpoints written before it carried one:
            load those with the model class's own loader) or a type no loader knows.
    """
    loaders = model_loaders()
    stored = config_type(read_config(path))
    if stored not in loaders:
        names = ", ".join(sorted(loaders))
        if stored is None:
            raise ModelTypeError(
                f"{path}/config.json names no model type (no {TYPE_KEY!r} key: it predates "
                f"them); load it with its class's loader, e.g. RLAAutoencoder.from_pretrained or "
                f'FrameDecoder.from_pretrained, or add "{TYPE_KEY}": one of {names}'
            )
        raise ModelTypeError(
            f"{path} holds model type {stored!r}; known types: {names} (a checkpoint of a newer "
            f"rla-gym, or a typo in its config.json)"
        )
    return loaders[stored](path, device=device)
