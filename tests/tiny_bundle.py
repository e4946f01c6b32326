"""The tiny dreamed bundles the env tests share: a synthetic dataset of a square moved by the
actions (its raw proprio in LIBERO's format: the square's position is the end effector's), a few
steps of RLA and RLA-WM training, and the bundle built from them (CPU, seconds); and the same
with a world model that dreams the body.

``conftest.py`` builds them once per session as the ``bundle`` and ``body_bundle`` fixtures;
tests import the helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rla_gym.data.episodes import Episode, EpisodeStore
from rla_gym.features import make_encoder
from rla_gym.pipelines.build_bundle import BuildBundleConfig, build_bundle

__all__ = [
    "RES",
    "A",
    "K",
    "T",
    "build_tiny_body_bundle",
    "build_tiny_bundle",
    "bundle_config",
    "make_env",
    "make_vec_env",
    "write_dataset",
]

RES, A, T, K = 32, 2, 40, 8


def _square(actions: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The square's top-left corner at every frame, ``int (T+1, 2)``."""
    return np.clip(
        start + np.concatenate([[0, 0], np.cumsum(actions, 0)[:, :2].ravel()]).reshape(-1, 2) * 1.5,
        0,
        RES - 8,
    ).astype(int)


def _raw_proprio(pos: np.ndarray) -> np.ndarray:
    """LIBERO-format raw proprio ``float32 (T+1, 9)``: the square is the end effector (x, y in
    [0, 1], fixed height), an upright gripper turning with x, fingers closing with y."""
    xy = pos[:, ::-1] / RES
    yaw = xy[:, :1] * np.pi / 2
    quat = np.concatenate([np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2),
                           np.cos(yaw / 2)], 1)  # fmt: skip
    fingers = 0.04 * np.concatenate([1 - xy[:, 1:], xy[:, 1:] - 1], 1)
    return np.concatenate([xy, np.full_like(yaw, 0.9), quat, fingers], 1).astype(np.float32)


def _frames(actions: np.ndarray, start: np.ndarray) -> np.ndarray:
    """A bright square moved by the actions over a fixed noisy background: ``(T+1, R, R, 3)``."""
    bg = np.random.default_rng(7).integers(0, 60, (RES, RES, 3), dtype=np.uint8)
    pos = _square(actions, start)
    out = np.repeat(bg[None], len(pos), 0)
    for i, (y, x) in enumerate(pos):
        out[i, y : y + 8, x : x + 8] = (250, 200, 30)
    return out


def write_dataset(root: Path) -> EpisodeStore:
    store = EpisodeStore(root)
    store.init_manifest(
        {
            "sim": "libero",
            "task": "synthetic",
            "resolution": RES,
            "action_dim": A,
            "action_low": [-1.0] * A,
            "action_high": [1.0] * A,
        }
    )
    enc = make_encoder("tiny")
    store.begin_features("tiny", enc.fingerprint)
    rng = np.random.default_rng(0)
    for i in range(10):
        policy = "expert" if i < 7 else "noisy"
        start = rng.uniform(4, 12, 2)
        acts = rng.uniform(-1, 1, (T, A)).astype(np.float32)
        if policy == "expert":
            acts[:, :] = np.abs(acts) * 0.8  # experts drift towards the bottom-right "goal"
        frames = _frames(acts, start)
        success = np.zeros(T + 1, bool)
        success[-1] = policy == "expert"
        eid = store.episode_id(policy, i)
        store.write(
            eid,
            Episode(
                frames,
                acts,
                _raw_proprio(_square(acts, start)),
                np.zeros(T, np.float32),
                success,
                {"policy": policy, "init_state_id": i % 5},
            ),
        )
        store.write_features(eid, "tiny", enc.encode(frames), enc.fingerprint, (2, 2))
    return store


def bundle_config(root: Path, **kw: Any) -> BuildBundleConfig:
    """Build options of the tiny bundle (``root`` holds the fixture's data and runs)."""
    return BuildBundleConfig(
        **{
            "data": root / "data",
            "encoder": "tiny",
            "world_model": root / "wm" / "checkpoint",
            "chunk": K,
            "num_reference_demos": 3,
            "thumb_size": 16,
            "val_fraction": 0.3,
            **kw,
        }
    )


def make_env(bundle: Path, **kw: object) -> gym.Env:
    """A single dreamed env on ``bundle`` (2 flow steps)."""
    return gym.make("RLAWorld-libero-v0", artifacts=str(bundle), flow_steps=2, **kw)


def make_vec_env(bundle: Path, num_envs: int, **kw: object) -> gym.vector.VectorEnv:
    """The native vector env of ``num_envs`` dreamed envs on ``bundle``, set up as
    :func:`make_env` sets up one (2 flow steps)."""
    return gym.make_vec("RLAWorld-libero-v0", num_envs=num_envs,
                        vectorization_mode="vector_entry_point", artifacts=str(bundle),
                        flow_steps=2, **kw)  # fmt: skip


def _trainer() -> Any:
    """A few CPU steps, no validation or checkpoints on the way: the fixtures' training."""
    from rla_gym.utils.training import TrainerConfig

    return TrainerConfig(
        steps=15,
        batch_size=16,
        val_every=10_000,
        ckpt_every=10_000,
        device="cpu",
        num_threads=1,
        progress=False,
        tensorboard=False,
    )


def build_tiny_bundle(root: Path) -> Path:
    """Synthetic dataset -> tiny RLA + tiny RLA-WM (a few steps) -> artifacts bundle, all under
    ``root`` (``root / "data"``, ``"rla"``, ``"wm"``, ``"bundle"``)."""
    from rla_gym.data.feature_episodes import FeatureDataConfig
    from rla_gym.rla import RLAConfig
    from rla_gym.rla.train import TrainRLAConfig, train_rla
    from rla_gym.world_model.train import TrainWorldModelConfig, train_world_model

    torch.set_num_threads(1)
    write_dataset(root / "data")
    data = FeatureDataConfig(folder=str(root / "data"), encoder="tiny", val_pairs=8)
    trainer = _trainer()
    rla = train_rla(
        TrainRLAConfig(
            data=data,
            out=str(root / "rla"),
            trainer=trainer,
            rla=RLAConfig(latent_tokens=2, latent_dim=4, width=32, depth=1, heads=2, max_gap=16),
        )
    )
    train_world_model(
        TrainWorldModelConfig(
            data=data,
            rla=str(rla.checkpoint),
            out=str(root / "wm"),
            preset="tiny",
            norm_pairs=32,
            trainer=trainer,
        )
    )
    return build_bundle(bundle_config(root, out=root / "bundle"))


def build_tiny_body_bundle(root: Path) -> Path:
    """The tiny bundle's data and RLA -> an RLA-WM that dreams the body too (``proprio=True``,
    a few steps) -> ``root / "body_bundle"`` (``root``: :func:`build_tiny_bundle`'s)."""
    from rla_gym.data.feature_episodes import FeatureDataConfig
    from rla_gym.world_model.train import TrainWorldModelConfig, train_world_model

    torch.set_num_threads(1)
    data = FeatureDataConfig(folder=str(root / "data"), encoder="tiny", val_pairs=8)
    trainer = _trainer()
    train_world_model(
        TrainWorldModelConfig(
            data=data,
            rla=str(root / "rla" / "checkpoint"),
            out=str(root / "wm_body"),
            preset="tiny",
            norm_pairs=32,
            trainer=trainer,
            proprio=True,
        )
    )
    cfg = bundle_config(root, world_model=root / "wm_body" / "checkpoint", out=root / "body_bundle")
    return build_bundle(cfg)
