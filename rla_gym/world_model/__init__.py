"""World models in feature space: RLA-WM (flow matching in RLA latent space) and baselines.

The body's own dynamics (:class:`BodyDynamics`: the next body vector from the body and the action
chunk) is a separate small model a bundle may ship beside its world model.

All models share one API (:class:`Predictor`): ``predict(s_t (B, N, D), actions (B, h, A)) ->
(B, N, D)`` and ``rollout(s_0, [chunk_1, chunk_2, ...]) -> (B, num_chunks, N, D)``.
"""

from __future__ import annotations

from rla_gym.world_model.action_encoder import ActionChunkEncoder
from rla_gym.world_model.base import FeatureWorldModel
from rla_gym.world_model.baselines import (
    CopyLastFrame,
    DirectRegressionWM,
    FeatureFlowWM,
    Predictor,
    load_predictor,
)
from rla_gym.world_model.body import BodyDynamics, BodyDynamicsConfig
from rla_gym.world_model.config import PRESETS, BaselineConfig, WorldModelConfig, world_model_preset
from rla_gym.world_model.model import RLAWorldModel

__all__ = [
    "PRESETS",
    "ActionChunkEncoder",
    "BaselineConfig",
    "BodyDynamics",
    "BodyDynamicsConfig",
    "CopyLastFrame",
    "DirectRegressionWM",
    "FeatureFlowWM",
    "FeatureWorldModel",
    "Predictor",
    "RLAWorldModel",
    "TrainWorldModelConfig",
    "WorldModelConfig",
    "load_predictor",
    "train_world_model",
    "world_model_preset",
]


def __getattr__(name: str) -> object:
    # The trainer pulls in the data layer (h5py) and logging; import it only when asked for.
    if name in ("TrainWorldModelConfig", "train_world_model"):
        from rla_gym.world_model import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
