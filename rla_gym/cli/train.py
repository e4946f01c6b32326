"""Training verbs of the ``rla-gym`` command: ``train-rla``, ``train-wm``, ``train-bc``,
``train-progress``, ``train-decoder`` and ``train-body``.

``train-rla`` and ``train-wm`` resume when their output folder already holds a checkpoint, and both
run data-parallel under ``torchrun --nproc_per_node N -m rla_gym.cli.main train-...``.
``train-bc`` is a minutes-long single-process fit; ``train-decoder`` resumes like the first two.
"""

from __future__ import annotations

import json

from rla_gym.decoder.train import TrainDecoderConfig, train_decoder
from rla_gym.pipelines.world_action import TrainBCConfig, train_bc_from_dataset
from rla_gym.reward.train_progress import TrainProgressConfig, train_progress_head
from rla_gym.rla.train import TrainRLAConfig, train_rla
from rla_gym.world_model.train import TrainWorldModelConfig, train_world_model
from rla_gym.world_model.train_body import TrainBodyConfig, train_body_dynamics

__all__ = [
    "cmd_train_bc",
    "cmd_train_body",
    "cmd_train_decoder",
    "cmd_train_progress",
    "cmd_train_rla",
    "cmd_train_wm",
]


def _report(result: object) -> None:
    info = {
        k: (str(v) if not isinstance(v, (int, float, dict, list, type(None))) else v)
        for k, v in vars(result).items()
        if k != "history"
    }
    print(json.dumps(info, indent=2, default=str))


def cmd_train_rla(cfg: TrainRLAConfig) -> None:
    """Train the RLA autoencoder on a dataset's cached features (resumes an existing run)."""
    _report(train_rla(cfg))


def cmd_train_wm(cfg: TrainWorldModelConfig) -> None:
    """Train the flow-matching world model (or a baseline) on a frozen RLA (resumes)."""
    _report(train_world_model(cfg))


def cmd_train_bc(cfg: TrainBCConfig) -> None:
    """Behaviour-clone a feature policy from a dataset's action chunks. With --rla-head --rla <ckpt>
    it becomes the world action model: an RLA head lets action-free videos train the policy too."""
    print(json.dumps(train_bc_from_dataset(cfg), indent=2))


def cmd_train_progress(cfg: TrainProgressConfig) -> None:
    """Train the progress / success head on every episode of a dataset (resumes): the reward of
    ``reward_mode="progress"`` and the success estimate (held-out AUC, start-frame false
    positives)."""
    _report(train_progress_head(cfg))


def cmd_train_decoder(cfg: TrainDecoderConfig) -> None:
    """Train the frame decoder (features -> pixels) on a dataset's real (features, frame) pairs,
    held-out split by episode (resumes an existing run; --steps extends it)."""
    _report(train_decoder(cfg))


def cmd_train_body(cfg: TrainBodyConfig) -> None:
    """Train the body's own dynamics (next body from body + action chunk) on a dataset's recorded
    proprio and actions; add it to a bundle with ``rla-gym add-body-model``."""
    print(json.dumps(train_body_dynamics(cfg), indent=2))
