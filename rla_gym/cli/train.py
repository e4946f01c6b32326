"""Training verbs of the ``rla-gym`` command: ``train-rla`` and ``train-wm``.

Both resume when their output folder already holds a checkpoint, and both run data-parallel under
``torchrun --nproc_per_node N -m rla_gym.cli.main train-...``.
"""

from __future__ import annotations

import json

from rla_gym.rla.train import TrainRLAConfig, train_rla
from rla_gym.world_model.train import TrainWorldModelConfig, train_world_model

__all__ = ["cmd_train_rla", "cmd_train_wm"]


def _report(result: object) -> None:
    info = {k: (str(v) if not isinstance(v, (int, float, dict, list, type(None))) else v)
            for k, v in vars(result).items() if k != "history"}
    print(json.dumps(info, indent=2, default=str))


def cmd_train_rla(cfg: TrainRLAConfig) -> None:
    """Train the RLA autoencoder on a dataset's cached features (resumes an existing run)."""
    _report(train_rla(cfg))


def cmd_train_wm(cfg: TrainWorldModelConfig) -> None:
    """Train the flow-matching world model (or a baseline) on a frozen RLA (resumes)."""
    _report(train_world_model(cfg))
