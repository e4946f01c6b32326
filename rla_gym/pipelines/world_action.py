"""World action model (paper §7): behaviour cloning that also learns from action-free videos.

A BC policy gets one extra linear head on its extractor features that predicts the frozen RLA
latent ``z`` of ``(s_t, s_{t+K})``. Frames of videos without actions train the shared extractor
through that head; labelled frames train both heads. The head is discarded after training, so the
saved policy is a plain :class:`~rla_gym.agents.ActorCritic` and costs what plain BC costs. The
plain-BC baseline has the same network, the same optimizer steps and the same labelled minibatches
(:class:`~rla_gym.agents.BehaviourCloning` with and without latents).

Steps, shared by ``rla-gym train-bc``, ``examples/world_action_model.py`` and
``benchmarks/world_action_model.py``:

1. :func:`select_episodes`: a few labelled train-split episodes, the other train-split episodes
   as videos, and the validation split for offline scoring;
2. :func:`~rla_gym.data.chunks.load_chunks`: ``(s_t, a_{t:t+K}, s_{t+K})`` rows, ``nan`` actions
   on video rows;
3. :func:`load_rla` + :func:`rla_latents`: ``z`` of every row from the frozen encoder;
4. :func:`fit_policy`: BC, or BC + RLA head when latents are given;
5. :func:`action_mse`: held-out action error; :mod:`rla_gym.evaluation.real` for real success.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rla_gym.agents import ActorCritic, ActorCriticConfig, BCConfig, BehaviourCloning
from rla_gym.data import EpisodeStore
from rla_gym.data.chunks import ChunkData, load_chunks
from rla_gym.data.proprio import FEATURES, PROPRIO
from rla_gym.errors import EncoderMismatchError, RLAGymError
from rla_gym.rla import RLAAutoencoder, encode_pairs

__all__ = [
    "EpisodeSelection",
    "EpisodeSelectionError",
    "MissingRLAError",
    "TrainBCConfig",
    "action_mse",
    "fit_policy",
    "load_rla",
    "mask_actions",
    "rla_latents",
    "select_episodes",
    "train_bc_from_dataset",
]


class MissingRLAError(RLAGymError, ValueError):
    """The RLA head was asked for without an RLA checkpoint to compute its targets."""


class EpisodeSelectionError(RLAGymError, ValueError):
    """The dataset has fewer episodes than the labelled/video selection asks for."""


@dataclass(frozen=True, kw_only=True)
class TrainBCConfig:
    """Behaviour cloning on a dataset's action chunks (``rla-gym train-bc``). With ``--rla-head``
    it is the world action model (paper §7): the policy also learns from action-free videos."""

    data: Path
    """dataset folder with cached features of --encoder"""
    out: Path = Path("runs/bc")
    """policy folder to write: a plain ActorCritic (config.json, model.safetensors, meta.json)"""
    encoder: str = "opennsfw-resnet50-res4"
    """encoder whose cached features the policy reads"""
    labelled: int | None = None
    """labelled episodes: this many successful train-split episodes of --labelled-policy, drawn
    with --seed (default: all of them)"""
    labelled_policy: str = "expert"
    """policy whose episodes provide the labelled actions"""
    videos: tuple[str, ...] = ("expert", "noisy")
    """policies whose other train-split episodes serve as action-free videos (--rla-head only)"""
    max_videos: int | None = None
    """use at most this many video episodes, drawn with --seed (default: all)"""
    rla: Path | None = None
    """frozen RLA checkpoint whose latents the head predicts (trained on --encoder features)"""
    rla_head: bool = False
    """add the RLA head and learn from the videos; needs --rla"""
    chunk: int = 8
    """control steps per decision K; the head's target is z(s_t, s_{t+K})"""
    steps: int = 2000
    """optimizer steps (the same for plain BC and BC + RLA head)"""
    batch_size: int = 32
    """labelled rows per step; the RLA head adds as many video rows"""
    learning_rate: float = 3e-4
    """AdamW learning rate, cosine-decayed over --steps"""
    latent_weight: float = 0.3
    """weight of the RLA-head loss (MSE on per-dimension normalised z)"""
    val_fraction: float = 0.0
    """share of labelled rows held out for early stopping (0: train all --steps)"""
    seed: int = 0
    """seed of the episode draw, the weights and the minibatch order"""
    proprio: bool = False
    """the policy also reads the robot's body vector (the dataset's recorded proprio, see
    rla_gym.data.proprio); it then acts on {"features", "proprio"} observations (envs with
    obs_mode="features+proprio"; real evaluation shows it the real body)"""
    device: str = "auto"
    """auto, cpu or cuda"""


@dataclass(frozen=True)
class EpisodeSelection:
    """Which episodes play which part.

    Attributes:
        labelled: train-split episodes whose actions are used.
        videos: train-split episodes used as action-free videos.
        heldout: validation-split episodes of the labelled policy (offline scoring only).
    """

    labelled: tuple[str, ...]
    videos: tuple[str, ...]
    heldout: tuple[str, ...]


def select_episodes(
    store: EpisodeStore,
    labelled: int | None = None,
    labelled_policy: str = "expert",
    videos: Sequence[str] = ("expert", "noisy"),
    max_videos: int | None = None,
    seed: int = 0,
) -> EpisodeSelection:
    """Split a dataset into labelled episodes, action-free videos and held-out episodes.

    The train/validation split is :meth:`~rla_gym.data.EpisodeStore.split`'s (the one the RLA and
    world model train on). Labelled episodes are successful train-split episodes of
    ``labelled_policy``; videos are the remaining train-split episodes of ``videos``.

    Args:
        store: an :class:`~rla_gym.data.EpisodeStore`.
        labelled: how many labelled episodes to draw with ``seed`` (``None``: all).
        labelled_policy: policy of the labelled episodes.
        videos: policies of the video episodes.
        max_videos: cap on video episodes (drawn with ``seed``).
        seed: seed of both draws.

    Raises:
        EpisodeSelectionError: too few episodes.
    """
    train, val = store.split()
    pool = [e for e in store.episode_ids(labelled_policy) if e in set(train)]
    pool = [e for e in pool if bool(store.read(e, frames=False).success[-1])]
    n = len(pool) if labelled is None else labelled
    if not 0 < n <= len(pool):
        raise EpisodeSelectionError(
            f"{store.root} has {len(pool)} successful train-split {labelled_policy!r} episodes, "
            f"but {n} labelled ones were asked for; pass --labelled between 1 and {len(pool)}"
        )
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(pool, n, replace=False).tolist())
    rest = [e for p in videos for e in store.episode_ids(p) if e in set(train) and e not in chosen]
    if max_videos is not None and max_videos < len(rest):
        rest = sorted(rng.choice(rest, max_videos, replace=False).tolist())
    heldout = [e for e in store.episode_ids(labelled_policy) if e in set(val)]
    return EpisodeSelection(tuple(chosen), tuple(rest), tuple(heldout))


def mask_actions(chunks: ChunkData, labelled: Sequence[str]) -> np.ndarray:
    """The actions of ``chunks`` (a :class:`~rla_gym.data.chunks.ChunkData`) with the rows of
    episodes outside ``labelled`` set to ``nan``: ``float32 (M, K * A)``."""
    keep = np.isin(np.asarray(chunks.episode_ids)[chunks.episode], list(labelled))
    return np.where(keep[:, None], chunks.actions, np.nan).astype(np.float32)


def load_rla(path: str | Path, store: EpisodeStore, encoder: str) -> RLAAutoencoder:
    """The frozen RLA autoencoder at ``path``, checked against the dataset's features.

    Raises:
        MissingWeightsError, CorruptFileError: no readable checkpoint at ``path``.
        EncoderMismatchError: it was trained on another encoder's features.
    """
    model = RLAAutoencoder.from_pretrained(path)
    want, have = store.feature_fingerprint(encoder), model.config.encoder_fingerprint
    if want != have:
        raise EncoderMismatchError(
            f"RLA checkpoint {path} was trained on {have!r} features but {store.root} holds "
            f"{want!r} features under --encoder {encoder}; pass an RLA trained on this encoder's "
            f"features (rla-gym train-rla --data {store.root} --encoder {encoder})"
        )
    return model


def rla_latents(
    rla: RLAAutoencoder, obs: np.ndarray, next_obs: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Flattened RLA latents ``float32 (M, K * d)`` of the pairs ``(obs, next_obs)`` (CPU)."""
    return encode_pairs(rla, obs, next_obs, batch_size).reshape(len(obs), -1)


def fit_policy(
    obs: np.ndarray,
    actions: np.ndarray,
    latents: np.ndarray | None,
    config: BCConfig,
    seed: int = 0,
    policy_config: ActorCriticConfig | None = None,
    device: str = "auto",
    bodies: np.ndarray | None = None,
) -> tuple[ActorCritic, BehaviourCloning]:
    """Build a fresh :class:`~rla_gym.agents.ActorCritic` (weights seeded by ``seed``) and fit it.

    Args:
        obs: ``(M, N, D)`` features (float16 is fine).
        actions: ``(M, K * A)`` in ``[-1, 1]``; ``nan`` rows are action-free.
        latents: ``(M, L)`` RLA targets for BC + RLA head, or ``None`` for plain BC.
        config: a :class:`~rla_gym.agents.BCConfig`.
        seed: seed of the initial weights.
        policy_config: an :class:`~rla_gym.agents.ActorCriticConfig` (default architecture).
        device: compute device.
        bodies: ``(M, P)`` body vectors: the policy reads the body too (``body_dim = P``).

    Returns:
        ``(policy on CPU in eval mode, the BehaviourCloning trainer with its loss history)``.
    """
    a = actions.shape[1]
    if bodies is not None:
        policy_config = replace(policy_config or ActorCriticConfig(), body_dim=bodies.shape[1])
    torch.manual_seed(seed)
    policy = ActorCritic(
        obs.shape[1:],
        a,
        policy_config,
        action_low=-np.ones(a, np.float32),
        action_high=np.ones(a, np.float32),
    )
    bc = BehaviourCloning(policy, config, device)
    bc.fit(obs, actions, latents, bodies)
    return policy.cpu().eval(), bc


@torch.no_grad()
def action_mse(
    policy: ActorCritic,
    obs: np.ndarray,
    actions: np.ndarray,
    batch_size: int = 512,
    bodies: np.ndarray | None = None,
) -> float:
    """Mean squared error of the policy's clipped deterministic chunks against ``actions``
    ``(M, K * A)`` in ``[-1, 1]`` (rows with ``nan`` actions are skipped); ``bodies (M, P)``
    for a policy that reads the body."""
    keep = np.isfinite(actions).all(1)
    obs, actions = obs[keep], actions[keep]
    bodies = None if bodies is None else bodies[keep]
    total = 0.0
    for start in range(0, len(obs), batch_size):
        batch: Any = obs[start : start + batch_size].astype(np.float32)
        if bodies is not None:
            batch = {FEATURES: batch, PROPRIO: bodies[start : start + batch_size]}
        pred, _ = policy.predict(batch)
        total += float(((pred - actions[start : start + batch_size]) ** 2).sum())
    return total / max(1, actions.size)


def train_bc_from_dataset(cfg: TrainBCConfig) -> dict[str, Any]:
    """Train and save one policy as ``cfg`` says (``rla-gym train-bc``).

    Returns:
        The summary stored in ``<out>/meta.json``: episodes, rows, losses, held-out action MSE.

    Raises:
        MissingRLAError: ``rla_head`` without ``rla``.
        EpisodeSelectionError: too few episodes for the selection.
        EncoderMismatchError: the RLA was trained on another encoder's features.
    """
    if cfg.rla_head and cfg.rla is None:
        raise MissingRLAError(
            "--rla-head needs the RLA checkpoint that makes its targets: add --rla <checkpoint> "
            "(e.g. runs/rla_residual/checkpoint from `rla-gym train-rla`)"
        )
    t0 = time.perf_counter()
    store = EpisodeStore(cfg.data)
    sel = select_episodes(
        store,
        cfg.labelled,
        cfg.labelled_policy,
        cfg.videos if cfg.rla_head else (),
        cfg.max_videos,
        cfg.seed,
    )
    rla = load_rla(cfg.rla, store, cfg.encoder) if cfg.rla_head and cfg.rla is not None else None
    chunks = load_chunks(
        store,
        sel.labelled + sel.videos,
        cfg.chunk,
        cfg.encoder,
        action_free=sel.videos,
        body=cfg.proprio,
    )
    latents = None if rla is None else rla_latents(rla, chunks.obs, chunks.next_obs)
    obs, actions, bodies, fields = chunks.obs, chunks.actions, chunks.body, chunks.body_fields
    del chunks  # the t + K frames are no longer needed
    bc_cfg = BCConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        latent_weight=cfg.latent_weight,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
    )
    policy, bc = fit_policy(
        obs, actions, latents, bc_cfg, cfg.seed, device=cfg.device, bodies=bodies
    )
    heldout = None
    if sel.heldout:
        heldout = load_chunks(store, sel.heldout, cfg.chunk, cfg.encoder, body=cfg.proprio)
    labelled = np.isfinite(actions).all(1)
    meta = {
        "method": "bc+rla" if rla is not None else "bc",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
        "labelled_episodes": list(sel.labelled),
        "video_episodes": len(sel.videos),
        "labelled_rows": int(labelled.sum()),
        "video_rows": int((~labelled).sum()),
        "rla_fingerprint": None if rla is None else rla.config.encoder_fingerprint,
        "train_action_loss": bc.train_losses[-1] if bc.train_losses else None,
        "train_latent_loss": bc.latent_losses[-1] if bc.latent_losses else None,
        "heldout_episodes": len(sel.heldout),
        "heldout_action_mse": None
        if heldout is None
        else action_mse(policy, heldout.obs, heldout.actions, bodies=heldout.body),
        "proprio_fields": list(fields),
        "wall_clock_s": time.perf_counter() - t0,
    }
    policy.save(cfg.out, meta=meta)
    return {"out": str(cfg.out), **meta}
