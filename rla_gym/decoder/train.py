"""Training the frame decoder on a dataset's real ``(features, frame)`` pairs.

``train_decoder`` loads the cached features and the camera frames of an
:class:`~rla_gym.data.EpisodeStore`, splits it by episode (the store's hash split, so the held-out
episodes never train the decoder), and runs the shared trainer
(:func:`rla_gym.utils.training.fit`): resumable, with ``val/psnr`` on held-out frames. The result
is a checkpoint folder that :meth:`FrameDecoder.from_pretrained` reads and ``rla-gym add-decoder``
puts into a bundle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rla_gym.data.windows import SeededStream
from rla_gym.decoder.config import DecoderConfig
from rla_gym.decoder.model import FrameDecoder, psnr
from rla_gym.errors import RLAGymError
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.training import TrainerConfig, TrainResult, fit, set_threads

__all__ = ["FramePairs", "TrainDecoderConfig", "load_frame_pairs", "train_decoder"]


def _default_trainer() -> TrainerConfig:
    # ~1-1.5 s per step at batch 8 on one shared core: 500 steps is a 10-minute run.
    return TrainerConfig(
        steps=500,
        batch_size=8,
        learning_rate=2e-3,
        warmup_steps=20,
        val_every=100,
        ckpt_every=50,
        log_every=10,
    )


@dataclass(frozen=True, kw_only=True)
class TrainDecoderConfig:
    """Everything ``rla-gym train-decoder`` needs."""

    data: str = ""
    """Dataset folder (an ``EpisodeStore`` with frames and cached features)."""
    encoder: str = "opennsfw-resnet50-res4"
    """Name of the cached feature encoder (``features/<encoder>/`` in the dataset)."""
    out: str = "runs/decoder"
    """Output folder; the model is written to ``<out>/checkpoint``. Re-running resumes."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """Decoder sizes; ``feature_dim``, ``grid``, ``resolution`` and ``encoder_fingerprint`` are
    overwritten from the data."""
    trainer: TrainerConfig = field(default_factory=_default_trainer)
    """Optimisation, checkpointing and resumption (see ``rla_gym.utils.training``)."""
    val_fraction: float = 0.1
    """Fraction of episodes held out (the store's hash split by episode id, seeded with the
    trainer's seed, as for the world models)."""
    val_frames: int = 128
    """Held-out frames scored at each validation (evenly spaced over the held-out episodes)."""
    frame_stride: int = 1
    """Keep every ``frame_stride``-th frame of each episode (bounds memory on long episodes)."""


@dataclass
class FramePairs:
    """Real ``(features, frame)`` pairs held in memory.

    Attributes:
        features: ``float16 (M, N, D)``.
        frames: ``uint8 (M, H, W, 3)``.
        episode: ``int64 (M,)`` index of each pair's episode in ``episode_ids``.
        episode_ids: the episodes the pairs come from.
        fingerprint: the encoder fingerprint of the features.
        grid: ``(gh, gw)``.
    """

    features: np.ndarray
    frames: np.ndarray
    episode: np.ndarray
    episode_ids: list[str]
    fingerprint: str
    grid: tuple[int, int]

    def __len__(self) -> int:
        return len(self.features)


def load_frame_pairs(
    data: str | Path,
    encoder: str,
    ids: Sequence[str],
    frame_stride: int = 1,
    fingerprint: str | None = None,
) -> FramePairs:
    """Load the frames and cached features of the given episodes.

    Raises:
        KeyError: an episode has no cached features (run ``rla-gym encode``).
        EncoderMismatchError: episodes encoded with different encoders (or not ``fingerprint``).
    """
    from rla_gym.data.episodes import EpisodeStore

    store = EpisodeStore(data)
    feats, frames, owner = [], [], []
    grid: tuple[int, int] = (0, 0)
    for i, eid in enumerate(ids):
        fe = store.load_features(eid, encoder, expected_fingerprint=fingerprint)
        fingerprint, grid = fe.fingerprint, fe.grid
        rows = np.arange(0, len(fe.features), max(1, frame_stride))
        feats.append(fe.features[rows].astype(np.float16))
        frames.append(store.read(eid).frames[rows])
        owner.append(np.full(len(rows), i, np.int64))
    if not feats:
        raise RLAGymError(f"no episodes to load from {data}")
    return FramePairs(
        np.concatenate(feats),
        np.concatenate(frames),
        np.concatenate(owner),
        list(ids),
        fingerprint or "",
        grid,
    )


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8 (B, H, W, 3)`` -> ``float32 (B, 3, H, W)`` in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


class _PairSampler(SeededStream):
    """Uniform random pairs for :func:`rla_gym.utils.training.fit` (resumable numpy stream).

    Batches hold ``features (B, N, D)``, ``frames (B, 3, H, W)`` in ``[0, 1]`` and ``foreground
    (B, 1, H, W)``: 1 where a frame differs from the median training frame by more than
    ``threshold`` (mean absolute RGB difference), else 0.
    """

    def __init__(self, pairs: FramePairs, seed: int = 0, threshold: float = 0.1) -> None:
        self.pairs = pairs
        self.threshold = threshold
        # The median of evenly spaced frames is the static background (robot and objects move).
        sub = _subset(pairs, 256).frames
        self.background = frames_to_tensor(np.median(sub, axis=0).astype(np.uint8)[None])
        self.reseed(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        idx = np.sort(self.rng.integers(0, len(self.pairs), batch_size))
        feats = torch.from_numpy(self.pairs.features[idx].astype(np.float32))
        frames = frames_to_tensor(self.pairs.frames[idx])
        diff = (frames - self.background).abs().mean(1, keepdim=True)
        return {"features": feats, "frames": frames, "foreground": (diff > self.threshold).float()}


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return img[..., :, 1:] - img[..., :, :-1], img[..., 1:, :] - img[..., :-1, :]


def decoder_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, float]]:
    """Foreground-weighted L1 on pixels plus (optionally) L1 on image gradients.

    Called as ``model(...)`` so that DDP synchronises gradients.
    """
    del generator  # the decoder is deterministic
    base: FrameDecoder = model.module if hasattr(model, "module") else model  # type: ignore[assignment]
    c = base.config
    pred, target = model(batch["features"]), batch["frames"]
    err = (pred - target).abs()
    l1 = err.mean()
    weight = 1.0 + c.foreground_weight * batch["foreground"]
    # Normalised by the mean weight so the loss scale does not depend on the foreground share.
    loss = c.l1_weight * (weight * err).mean() / weight.mean()
    metrics = {"decoder/l1": l1.item(), "decoder/foreground": float(batch["foreground"].mean())}
    if batch["foreground"].any():
        fg = batch["foreground"].expand_as(err).bool()
        metrics["decoder/foreground_l1"] = float(err.detach()[fg].mean())
    if c.gradient_weight > 0:
        (px, py), (tx, ty) = _gradients(pred), _gradients(target)
        grad = F.l1_loss(px, tx) + F.l1_loss(py, ty)
        loss = loss + c.gradient_weight * grad
        metrics["decoder/grad_l1"] = grad.item()
    with torch.no_grad():
        metrics["decoder/psnr"] = float(psnr(pred, target).mean())
    return loss, metrics


@torch.no_grad()
def evaluate_decoder(
    model: FrameDecoder,
    pairs: FramePairs,
    background: torch.Tensor | None = None,
    threshold: float = 0.1,
    batch_size: int = 32,
) -> dict[str, float]:
    """Mean PSNR (dB) and L1 of decoded vs real frames over ``pairs``.

    With ``background`` (``(1, 3, H, W)``, the median training frame) it also reports the L1 over
    foreground pixels only (``val/foreground_l1``): what moves, which PSNR over the whole frame
    hardly sees.
    """
    device = next(model.parameters()).device
    tot_psnr = tot_l1 = fg_err = fg_n = 0.0
    for i in range(0, len(pairs), batch_size):
        feats = torch.from_numpy(pairs.features[i : i + batch_size].astype(np.float32)).to(device)
        real = frames_to_tensor(pairs.frames[i : i + batch_size]).to(device)
        pred = model(feats)
        tot_psnr += float(psnr(pred, real).sum())
        err = (pred - real).abs()
        tot_l1 += float(err.flatten(1).mean(1).sum())
        if background is not None:
            fg = (real - background.to(device)).abs().mean(1, keepdim=True) > threshold
            fg_err += float(err.mean(1, keepdim=True)[fg].sum())
            fg_n += float(fg.sum())
    out = {"val/psnr": tot_psnr / len(pairs), "val/l1": tot_l1 / len(pairs)}
    if background is not None and fg_n > 0:
        out["val/foreground_l1"] = fg_err / fg_n
    return out


def _subset(pairs: FramePairs, count: int) -> FramePairs:
    idx = np.unique(np.linspace(0, len(pairs) - 1, min(count, len(pairs))).round().astype(int))
    return dataclasses.replace(
        pairs, features=pairs.features[idx], frames=pairs.frames[idx], episode=pairs.episode[idx]
    )


def train_decoder(cfg: TrainDecoderConfig) -> TrainResult:
    """Train (or resume training) a frame decoder on a dataset.

    Returns:
        The trainer's :class:`~rla_gym.utils.training.TrainResult`; ``result.checkpoint`` is the
        folder to pass to :meth:`FrameDecoder.from_pretrained` or ``rla-gym add-decoder``. Its
        ``meta.json`` holds the encoder fingerprint, grid, split and held-out PSNR.

    Raises:
        RLAGymError: the folder is not a dataset or holds no encoded episodes.
        EncoderMismatchError: episodes were encoded with different encoders.
    """
    from rla_gym.data.episodes import EpisodeStore

    if not cfg.data:
        raise ValueError("set TrainDecoderConfig.data (--data) to a dataset folder")
    set_threads(cfg.trainer)
    store = EpisodeStore(cfg.data)
    resolution = int(store.manifest()["resolution"])
    encoded = [e for e in store.episode_ids() if store.has_features(e, cfg.encoder)]
    if not encoded:
        raise RLAGymError(
            f"no {cfg.encoder} features in {cfg.data}; run "
            f"`rla-gym encode --data {cfg.data} --encoder {cfg.encoder}`"
        )
    train_ids, val_ids = store.split(cfg.val_fraction, seed=cfg.trainer.seed, ids=encoded)
    train = load_frame_pairs(cfg.data, cfg.encoder, train_ids, cfg.frame_stride)
    val = (
        _subset(
            load_frame_pairs(cfg.data, cfg.encoder, val_ids, cfg.frame_stride, train.fingerprint),
            cfg.val_frames,
        )
        if val_ids
        else None
    )
    # Grid, size and fingerprint come from the data, never from defaults.
    derived = ("grid", "resolution", "feature_dim", "encoder_fingerprint")
    dec_cfg = DecoderConfig.for_grid(
        train.grid,
        resolution,
        feature_dim=int(train.features.shape[2]),
        encoder_fingerprint=train.fingerprint,
        **{k: v for k, v in dataclasses.asdict(cfg.decoder).items() if k not in derived},
    )
    torch.manual_seed(cfg.trainer.seed)
    model = FrameDecoder(dec_cfg)
    stats = _subset(train, 512)
    model.fit_statistics(
        torch.from_numpy(stats.features.astype(np.float32)), frames_to_tensor(stats.frames)
    )

    sampler = _PairSampler(train, cfg.trainer.seed, dec_cfg.foreground_threshold)

    def val_fn(m: nn.Module) -> dict[str, float]:
        assert val is not None
        return evaluate_decoder(
            m,
            val,
            sampler.background,  # type: ignore[arg-type]
            dec_cfg.foreground_threshold,
        )

    meta: dict[str, Any] = {
        "data": str(cfg.data),
        "encoder": cfg.encoder,
        "encoder_fingerprint": train.fingerprint,
        "grid": list(train.grid),
        "resolution": resolution,
        "train_episodes": len(train_ids),
        "val_episodes": len(val_ids),
        "val_episode_ids": list(val_ids),
        "train_frames": len(train),
        "parameters": model.num_parameters(),
        "train_config": to_jsonable(cfg),
    }
    return fit(
        model,
        decoder_loss,
        sampler,
        cfg.trainer,
        cfg.out,
        dec_cfg.to_dict(),
        val_fn=val_fn if val is not None else None,
        meta=meta,
    )
