"""Training the RLA autoencoder on cached feature episodes.

``train_rla`` loads train/validation episodes from an :class:`~rla_gym.data.EpisodeStore` (or
takes in-memory episodes), samples ``(s_t, s_{t+h})`` pairs with
:class:`~rla_gym.data.windows.PairSampler`, and runs the shared trainer
(:func:`rla_gym.utils.training.fit`). The result is a checkpoint folder that
:meth:`RLAAutoencoder.from_pretrained` reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rla_gym.data.windows import PairSampler
from rla_gym.rla.config import RLAConfig
from rla_gym.rla.model import RLAAutoencoder
from rla_gym.utils.training import TrainerConfig, TrainResult, fit

__all__ = ["TrainRLAConfig", "load_feature_episodes", "train_rla"]

Episodes = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, kw_only=True)
class TrainRLAConfig:
    """Everything ``rla-gym train-rla`` needs.

    The defaults train the CPU preset in roughly half an hour on two cores (see ``RLAConfig``).
    """

    data: str = ""
    """Dataset folder (an ``EpisodeStore``); unused when episodes are passed in memory."""
    encoder: str = "opennsfw-resnet50-res4"
    """Name of the cached feature encoder (``features/<encoder>/`` in the dataset)."""
    out: str = "runs/rla"
    """Output folder; the model is written to ``<out>/checkpoint``. Re-running resumes."""
    rla: RLAConfig = field(default_factory=RLAConfig)
    """Autoencoder sizes; ``feature_dim``, ``num_tokens`` and ``encoder_fingerprint`` are
    overwritten from the data."""
    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 32
    """Pairs per step (per rank under torchrun)."""
    lr: float = 3e-4
    """AdamW learning rate (paper: 1e-4 at batch 128 for 100k steps; small models and short
    runs tolerate a higher rate)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up steps."""
    grad_clip: float | None = 1.0
    """Global gradient-norm clip (``None`` to disable)."""
    interaction_bias: float = 0.9
    """Probability of starting a pair at an interaction frame (paper: 0.9)."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for validation (split by episode id hash)."""
    val_pairs: int = 256
    """Fixed validation pairs."""
    val_every: int = 500
    """Validate every this many steps."""
    ckpt_every: int = 500
    """Write a resumable checkpoint every this many steps."""
    log_every: int = 10
    """Log training metrics every this many steps."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    seed: int = 0
    """Seed of weights, sampling and split."""
    progress: bool = True
    """Show a progress bar."""


def load_feature_episodes(
    data: str | Path, encoder: str, ids: Sequence[str], fingerprint: str | None = None
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str, tuple[int, int]]:
    """Load cached features of the given episodes.

    Features are kept in ``float16`` (their on-disk precision), which halves memory: the reference
    data (300 episodes x 200 frames x 64 x 512) is ~4 GB in float16 vs ~8 GB in float32.

    Args:
        data: dataset folder.
        encoder: encoder name.
        ids: episode ids.
        fingerprint: if given, every episode must have been encoded with it.

    Returns:
        ``(episodes, fingerprint, grid)``.

    Raises:
        EncoderMismatchError: episodes encoded with different encoders.
    """
    from rla_gym.data.episodes import EpisodeStore

    store = EpisodeStore(data)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    grid: tuple[int, int] = (0, 0)
    for eid in ids:
        fe = store.load_features(eid, encoder, expected_fingerprint=fingerprint)
        fingerprint = fe.fingerprint
        grid = fe.grid
        out.append((fe.features.astype(np.float16), fe.actions.astype(np.float32)))
    return out, fingerprint or "", grid


def _rla_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction loss through ``model(...)`` so that DDP synchronises gradients."""
    del generator  # the autoencoder is deterministic
    s_hat, z = model(batch["s_t"], batch["s_th"])
    base: RLAAutoencoder = model.module if hasattr(model, "module") else model  # type: ignore[assignment]
    c = base.config
    l1 = torch.nn.functional.l1_loss(s_hat, batch["s_th"])
    mse = torch.nn.functional.mse_loss(s_hat, batch["s_th"])
    loss = c.l1_weight * l1 + c.mse_weight * mse
    return loss, {"rla/l1": l1.item(), "rla/mse": mse.item(), "rla/z_std": float(z.detach().std())}


def evaluate_rla(
    model: RLAAutoencoder, sampler: PairSampler, num_pairs: int = 256, batch_size: int = 64
) -> dict[str, float]:
    """Mean reconstruction metrics on the sampler's fixed evaluation pairs.

    Returns:
        ``val/l1``, ``val/mse``, ``val/copy_l1`` (L1 of predicting ``s_t``, i.e. "nothing moves")
        and ``val/l1_vs_copy`` (``val/l1 / val/copy_l1``; below 1 means the latent carries
        information about the change).
    """
    device = next(model.parameters()).device
    sums = {"l1": 0.0, "mse": 0.0, "copy_l1": 0.0}
    n = 0
    with torch.no_grad():
        for batch in sampler.iter_eval(num_pairs=num_pairs, batch_size=batch_size):
            s_t, s_th = batch["s_t"].to(device), batch["s_th"].to(device)
            s_hat, _ = model(s_t, s_th)
            b = s_t.shape[0]
            sums["l1"] += float(torch.nn.functional.l1_loss(s_hat, s_th)) * b
            sums["mse"] += float(torch.nn.functional.mse_loss(s_hat, s_th)) * b
            sums["copy_l1"] += float(torch.nn.functional.l1_loss(s_t, s_th)) * b
            n += b
    out = {f"val/{k}": v / n for k, v in sums.items()}
    out["val/l1_vs_copy"] = out["val/l1"] / max(out["val/copy_l1"], 1e-12)
    return out


def train_rla(
    cfg: TrainRLAConfig,
    episodes: Episodes | None = None,
    val_episodes: Episodes | None = None,
    fingerprint: str | None = None,
) -> TrainResult:
    """Train (or resume training) an RLA autoencoder.

    Args:
        cfg: options.
        episodes: in-memory ``(features (T+1, N, D), actions (T, A))`` training episodes; when
            ``None`` they are loaded from ``cfg.data`` / ``cfg.encoder`` and split by
            ``cfg.val_fraction``.
        val_episodes: in-memory validation episodes (default: none when ``episodes`` is given).
        fingerprint: encoder fingerprint of in-memory episodes (stored in the checkpoint).

    Returns:
        The trainer's :class:`~rla_gym.utils.training.TrainResult`; ``result.checkpoint`` is the
        folder to pass to :meth:`RLAAutoencoder.from_pretrained`.
    """
    grid: tuple[int, int] | None = None
    if episodes is None:
        if not cfg.data:
            raise ValueError(
                "pass in-memory episodes or set TrainRLAConfig.data to a dataset folder"
            )
        from rla_gym.data.episodes import EpisodeStore

        train_ids, val_ids = EpisodeStore(cfg.data).split(cfg.val_fraction, seed=cfg.seed)
        if not train_ids:
            raise ValueError(f"no episodes in {cfg.data}; run `rla-gym collect` first")
        episodes, fingerprint, grid = load_feature_episodes(cfg.data, cfg.encoder, train_ids)
        val_episodes = (
            load_feature_episodes(cfg.data, cfg.encoder, val_ids, fingerprint)[0]
            if val_ids
            else None
        )
    rla_cfg = dataclasses.replace(
        cfg.rla,
        feature_dim=int(episodes[0][0].shape[2]),
        num_tokens=int(episodes[0][0].shape[1]),
        encoder_fingerprint=fingerprint or cfg.rla.encoder_fingerprint,
    )
    sampler = PairSampler(
        episodes, rla_cfg.min_gap, rla_cfg.max_gap, cfg.interaction_bias, cfg.seed
    )
    val_sampler = (
        PairSampler(val_episodes, rla_cfg.min_gap, rla_cfg.max_gap, cfg.interaction_bias, cfg.seed)
        if val_episodes
        else None
    )
    # Same seed on every rank: identical initial weights even before DDP's broadcast.
    torch.manual_seed(cfg.seed)
    model = RLAAutoencoder(rla_cfg)

    def val_fn(m: nn.Module) -> dict[str, float]:
        assert val_sampler is not None
        return evaluate_rla(m, val_sampler, num_pairs=cfg.val_pairs)  # type: ignore[arg-type]

    trainer_cfg = TrainerConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps,
        grad_clip=cfg.grad_clip,
        val_every=cfg.val_every,
        ckpt_every=cfg.ckpt_every,
        log_every=cfg.log_every,
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
    )
    meta: dict[str, Any] = {
        "kind": "rla_autoencoder",
        "encoder": cfg.encoder,
        "encoder_fingerprint": rla_cfg.encoder_fingerprint,
        "grid": list(grid) if grid else None,
        "train_episodes": len(episodes),
        "val_episodes": len(val_episodes) if val_episodes else 0,
        "parameters": model.num_parameters(),
        "train_config": _jsonable(dataclasses.asdict(cfg)),
    }
    return fit(
        model,
        _rla_loss,
        sampler,
        trainer_cfg,
        cfg.out,
        rla_cfg.to_dict(),
        val_fn=val_fn if val_sampler is not None else None,
        meta=meta,
    )


def _jsonable(obj: Any) -> Any:
    """Tuples to lists, everything else as is (dataclasses.asdict already recursed)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
